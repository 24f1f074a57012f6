//! RFC 9701 signed introspection answers: asked for with
//! `Accept: application/token-introspection+jwt`, the answer is a JWT signed
//! by the authorization server, so its content cannot be altered on the
//! way. Checked here: the signature against the AS's JWK Set, `typ`, `iss`,
//! `aud` and a fresh `iat`; then `token_introspection` is read as a plain
//! RFC 7662 answer. Any failure is an unusable answer (503, never cached).
//!
//! What it does not prove: that the answer is about *this* token. RFC 9701
//! puts nothing of the token in the answer, so a man in the middle holding
//! another fresh signed answer (within the `iat` window) could return it
//! for a different token. Keep TLS to the AS; the signature adds integrity
//! and origin, not binding.

use crate::claims::Answer;
use crate::fetch::AsFault;

/// The media type of a signed answer (RFC 9701 §5).
pub(crate) const SIGNED_ANSWER_TYPE: &str = "application/token-introspection+jwt";

#[cfg(feature = "jwt")]
pub(crate) use self::checked::SignedAnswers;

/// Without the `jwt` feature there is no way to configure signed answers:
/// an uninhabited type keeps the call sites the same.
#[cfg(not(feature = "jwt"))]
#[derive(Debug)]
pub(crate) enum SignedAnswers {}

#[cfg(not(feature = "jwt"))]
impl SignedAnswers {
    pub(crate) async fn read(&self, _content_type: Option<&str>, _body: &[u8]) -> Result<Answer, AsFault> {
        match *self {}
    }
}

/// Whether a `Content-Type` names the signed-answer media type.
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
fn is_signed(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case(SIGNED_ANSWER_TYPE))
}

#[cfg(feature = "jwt")]
mod checked {
    use std::fmt;

    use serde_json::Value;

    use super::*;
    use crate::claims::parse_answer;
    use crate::jose::{Compact, Jwks, PublicKey, Refresh};
    use crate::validate::unix_now;

    /// How old a signed answer's `iat` may be.
    const MAX_AGE_SECS: i64 = 60;

    /// What a signed answer is checked against.
    pub(crate) struct SignedAnswers {
        pub(crate) issuer: Box<str>,
        pub(crate) client_id: Box<str>,
        pub(crate) jwks: Jwks,
        pub(crate) accept_unsigned: bool,
        pub(crate) leeway_secs: i64,
    }

    impl fmt::Debug for SignedAnswers {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SignedAnswers")
                .field("issuer", &self.issuer)
                .field("jwks_uri", &self.jwks.url().as_str())
                .field("accept_unsigned", &self.accept_unsigned)
                .finish_non_exhaustive()
        }
    }

    fn unusable(reason: &str) -> AsFault {
        AsFault::Unusable(format!("signed introspection answer refused: {reason}"))
    }

    impl SignedAnswers {
        /// The answer in `body`, signed (and checked) or, if allowed, plain.
        pub(crate) async fn read(&self, content_type: Option<&str>, body: &[u8]) -> Result<Answer, AsFault> {
            if !is_signed(content_type) {
                if self.accept_unsigned {
                    return parse_answer(body).map_err(|e| AsFault::Unusable(e.to_string()));
                }
                return Err(unusable("the answer is not signed"));
            }
            let text = std::str::from_utf8(body).map_err(|_| unusable("not a JWT"))?;
            let jws = Compact::parse(text.trim()).map_err(unusable)?;
            let typ_ok = jws.typ.as_deref().is_some_and(|typ| {
                typ.eq_ignore_ascii_case("token-introspection+jwt")
                    || typ.eq_ignore_ascii_case(SIGNED_ANSWER_TYPE)
            });
            if !typ_ok {
                return Err(unusable("`typ` is not token-introspection+jwt"));
            }
            self.check_signature(&jws).await?;
            let claims = &jws.claims;
            if claims.get("iss").and_then(Value::as_str) != Some(&*self.issuer) {
                return Err(unusable("`iss` is not the authorization server"));
            }
            let aud_ok = match claims.get("aud") {
                Some(Value::String(aud)) => *aud == *self.client_id,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&*self.client_id)),
                _ => false,
            };
            if !aud_ok {
                return Err(unusable("`aud` is not this resource server's client id"));
            }
            let now = unix_now();
            let iat = claims
                .get("iat")
                .and_then(Value::as_i64)
                .ok_or_else(|| unusable("no `iat`"))?;
            if iat > now.saturating_add(self.leeway_secs)
                || iat < now.saturating_sub(MAX_AGE_SECS.saturating_add(self.leeway_secs))
            {
                return Err(unusable("`iat` is not fresh"));
            }
            let Some(inner @ Value::Object(_)) = claims.get("token_introspection") else {
                return Err(unusable("no `token_introspection` object"));
            };
            let inner = serde_json::to_vec(inner).map_err(|_| unusable("no `token_introspection` object"))?;
            parse_answer(&inner).map_err(|e| AsFault::Unusable(e.to_string()))
        }

        /// The current keys, then (for an unknown `kid` or no fitting key)
        /// one refresh of the JWK Set within its rate limit.
        async fn check_signature(&self, jws: &Compact<'_>) -> Result<(), AsFault> {
            if let Some(keys) = self.jwks.current() {
                if verifies(&keys, jws) {
                    return Ok(());
                }
                let kid = jws.kid.as_deref();
                if kid.is_some_and(|kid| keys.iter().any(|k| k.kid() == Some(kid))) {
                    return Err(unusable("the signature is invalid"));
                }
            }
            match self.jwks.refresh().await {
                Refresh::Fetched(keys, _) | Refresh::TooSoon(Some(keys)) | Refresh::Failed(_, Some(keys)) => {
                    if verifies(&keys, jws) {
                        Ok(())
                    } else {
                        Err(unusable("the signature is invalid or made with an unknown key"))
                    }
                }
                Refresh::TooSoon(None) => Err(AsFault::Unavailable("no JWK Set could be fetched".into())),
                Refresh::Failed(fault, None) => Err(fault),
            }
        }
    }

    fn verifies(keys: &[PublicKey], jws: &Compact<'_>) -> bool {
        keys.iter()
            .filter(|key| match (key.kid(), jws.kid.as_deref()) {
                (Some(own), Some(wanted)) => own == wanted,
                _ => true,
            })
            .any(|key| key.verify(jws.alg, jws.signing_input, &jws.signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_media_type() {
        assert!(is_signed(Some("application/token-introspection+jwt")));
        assert!(is_signed(Some(
            "Application/Token-Introspection+JWT; charset=utf-8"
        )));
        assert!(!is_signed(Some("application/json")));
        assert!(!is_signed(None));
    }
}
