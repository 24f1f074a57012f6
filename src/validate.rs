//! The local checks that run on every request, after the cache lookup
//! (RFC 7662 §4, checklist I13, A1–A5): the cache holds the authorization
//! server's answer, never a decision.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::AuthError;
use crate::principal::Principal;
use crate::resource::is_resource;

/// What every accepted token must satisfy besides being active.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checks {
    pub(crate) leeway_secs: i64,
    /// Accepted issuers; empty means any. Compared exactly (A4).
    pub(crate) issuers: Box<[Box<str>]>,
    /// Accepted audiences; one match is enough (A2). Compared exactly (A3).
    pub(crate) audiences: Box<[Box<str>]>,
    /// Accepted resources (RFC 8707 §2), in canonical form: when any is
    /// configured, `aud` must name one of them (compared as [`is_resource`]
    /// does), whatever `audiences` says: both lists must be matched.
    pub(crate) resources: Box<[Box<str>]>,
    /// Required `token_type`, compared case-insensitively (RFC 6749 §5.1).
    pub(crate) token_type: Option<Box<str>>,
    /// Accept answers that say they describe a refresh, ID or logout token.
    pub(crate) any_token_kind: bool,
    /// Refuse an `iat` in the future (beyond the leeway): for JWTs, whose
    /// times nobody else has checked.
    pub(crate) iat_not_in_future: bool,
}

impl Checks {
    pub(crate) fn check(&self, principal: &Principal, now: i64) -> Result<(), AuthError> {
        self.kind(principal)
            .and_then(|()| self.times(principal, now))
            .and_then(|()| self.lasting_after_kind(principal))
            .map_err(AuthError::invalid_token)
    }

    /// The checks whose outcome never changes for a given answer (kind,
    /// issuer, audience, resource, token type): a token failing one fails
    /// for good, and a verifier may remember the refusal.
    pub(crate) fn lasting(&self, principal: &Principal) -> Result<(), &'static str> {
        self.kind(principal)?;
        self.lasting_after_kind(principal)
    }

    #[inline]
    fn kind(&self, principal: &Principal) -> Result<(), &'static str> {
        match principal.other_kind() {
            Some(kind) if !self.any_token_kind => Err(kind.refusal()),
            _ => Ok(()),
        }
    }

    #[inline]
    fn times(&self, principal: &Principal, now: i64) -> Result<(), &'static str> {
        if let Some(exp) = principal.expires_at() {
            if now >= exp.saturating_add(self.leeway_secs) {
                return Err("the token has expired");
            }
        }
        if let Some(nbf) = principal.not_before() {
            if nbf > now.saturating_add(self.leeway_secs) {
                return Err("the token is not valid yet");
            }
        }
        // On every read, like `nbf`: a token from an AS whose clock runs
        // ahead becomes acceptable once ours catches up.
        if let Some(iat) = principal.issued_at().filter(|_| self.iat_not_in_future) {
            if iat > now.saturating_add(self.leeway_secs) {
                return Err("the token was issued in the future (iat)");
            }
        }
        Ok(())
    }

    #[inline]
    fn lasting_after_kind(&self, principal: &Principal) -> Result<(), &'static str> {
        if !self.issuers.is_empty() {
            let issuer = principal.issuer().unwrap_or_default();
            if !self.issuers.iter().any(|expected| **expected == *issuer) {
                return Err("the token was issued by another issuer");
            }
        }
        // Each configured list must be matched on its own: an expected
        // audience never stands in for the resource (the MCP specification
        // requires tokens issued for this resource).
        if !self.audiences.is_empty()
            && !principal
                .audiences()
                .any(|aud| self.audiences.iter().any(|expected| **expected == *aud))
        {
            return Err(audience_refusal(principal));
        }
        if !self.resources.is_empty()
            && !principal
                .audiences()
                .any(|aud| self.resources.iter().any(|resource| is_resource(aud, resource)))
        {
            return Err(audience_refusal(principal));
        }
        if let Some(required) = &self.token_type {
            let matches = principal
                .token_type()
                .is_some_and(|tt| tt.eq_ignore_ascii_case(required));
            if !matches {
                return Err("the token has another token type");
            }
        }
        Ok(())
    }
}

/// Why a token was refused for its audience, in the same words whichever
/// verifier refused it (a JWT profile that requires `aud` says
/// [`NO_AUDIENCE`] too).
#[cold]
fn audience_refusal(principal: &Principal) -> &'static str {
    // `aud` absent, or `[]` (Hydra's way of saying none): nothing to compare.
    if principal.audiences().next().is_none() {
        NO_AUDIENCE
    } else {
        OTHER_AUDIENCE
    }
}

/// The refusal of a token without `aud` where an audience is expected.
pub(crate) const NO_AUDIENCE: &str = "the token has no audience (aud)";

/// The refusal of a token whose `aud` names none of the expected audiences
/// (or resources).
pub(crate) const OTHER_AUDIENCE: &str = "the token is meant for another audience";

/// The current time as a duration since the Unix epoch.
pub(crate) fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

pub(crate) fn unix_now() -> i64 {
    i64::try_from(since_epoch().as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(json: &str) -> Principal {
        Principal::from_json(json.as_bytes()).unwrap()
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn i13_exp_and_nbf_with_leeway() {
        let strict = Checks::default();
        assert!(strict
            .check(&principal(r#"{"active":true,"exp":1800000001}"#), NOW)
            .is_ok());
        assert!(strict
            .check(&principal(r#"{"active":true,"exp":1800000000}"#), NOW)
            .is_err());
        assert!(strict
            .check(&principal(r#"{"active":true,"nbf":1800000001}"#), NOW)
            .is_err());
        let lenient = Checks {
            leeway_secs: 5,
            ..Checks::default()
        };
        assert!(lenient
            .check(&principal(r#"{"active":true,"exp":1799999996}"#), NOW)
            .is_ok());
        assert!(lenient
            .check(&principal(r#"{"active":true,"exp":1799999995}"#), NOW)
            .is_err());
        assert!(lenient
            .check(&principal(r#"{"active":true,"nbf":1800000005}"#), NOW)
            .is_ok());
    }

    #[test]
    fn a1_a3_audience_exact_any_of() {
        let v = Checks {
            audiences: vec!["https://api.example".into()].into(),
            ..Checks::default()
        };
        assert!(v
            .check(
                &principal(r#"{"active":true,"aud":["x","https://api.example"]}"#),
                NOW
            )
            .is_ok());
        assert!(v
            .check(&principal(r#"{"active":true,"aud":"https://api.example"}"#), NOW)
            .is_ok());
        assert!(v
            .check(&principal(r#"{"active":true,"aud":"https://API.example"}"#), NOW)
            .is_err());
        let refusal = |answer: &str| refusal(&v, answer);
        assert_eq!(refusal(r#"{"active":true}"#), NO_AUDIENCE);
        assert_eq!(refusal(r#"{"active":true,"aud":[]}"#), NO_AUDIENCE);
        assert_eq!(refusal(r#"{"active":true,"aud":"x"}"#), OTHER_AUDIENCE);
    }

    /// Why `v` refuses `answer`.
    fn refusal(v: &Checks, answer: &str) -> String {
        v.check(&principal(answer), NOW)
            .unwrap_err()
            .description()
            .to_owned()
    }

    #[test]
    fn audience_is_the_resource() {
        let v = Checks {
            resources: vec!["https://mcp.example/mcp".into()].into(),
            ..Checks::default()
        };
        for aud in [
            r#""https://mcp.example/mcp""#,
            r#""https://mcp.example/mcp/""#,
            r#""HTTPS://MCP.example/mcp""#,
            r#"["https://other.example","https://mcp.example/mcp"]"#,
        ] {
            let answer = format!(r#"{{"active":true,"aud":{aud}}}"#);
            assert!(v.check(&principal(&answer), NOW).is_ok(), "{aud}");
        }
        for aud in [r#""https://other.example/mcp""#, r#""https://mcp.example""#, "[]"] {
            let answer = format!(r#"{{"active":true,"aud":{aud}}}"#);
            let error = v.check(&principal(&answer), NOW).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidToken, "{aud}");
        }
        let refusal = |answer: &str| refusal(&v, answer);
        assert_eq!(refusal(r#"{"active":true}"#), NO_AUDIENCE);
        assert_eq!(
            refusal(r#"{"active":true,"aud":"https://other.example/mcp"}"#),
            OTHER_AUDIENCE
        );
    }

    /// An expected audience never stands in for the resource: with both
    /// configured, `aud` must name the resource and contain an audience.
    #[test]
    fn resource_is_required_whatever_the_audiences() {
        let both = Checks {
            audiences: vec!["api-client".into()].into(),
            resources: vec!["https://mcp.example/mcp".into()].into(),
            ..Checks::default()
        };
        for aud in [r#""api-client""#, r#"["api-client","https://other.example/mcp"]"#] {
            let answer = format!(r#"{{"active":true,"aud":{aud}}}"#);
            let error = both.check(&principal(&answer), NOW).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidToken, "{aud}");
        }
        assert!(both
            .check(
                &principal(r#"{"active":true,"aud":"https://mcp.example/mcp"}"#),
                NOW
            )
            .is_err());
        assert!(both
            .check(
                &principal(r#"{"active":true,"aud":["api-client","https://mcp.example/mcp/"]}"#),
                NOW
            )
            .is_ok());
    }

    #[test]
    fn a4_issuer_exact() {
        let v = Checks {
            issuers: vec!["https://as.example".into()].into(),
            ..Checks::default()
        };
        assert!(v
            .check(&principal(r#"{"active":true,"iss":"https://as.example"}"#), NOW)
            .is_ok());
        assert!(v
            .check(&principal(r#"{"active":true,"iss":"https://as.example/"}"#), NOW)
            .is_err());
        assert!(v.check(&principal(r#"{"active":true}"#), NOW).is_err());
    }

    #[test]
    fn other_token_kinds_are_refused_unless_allowed() {
        let strict = Checks::default();
        let lenient = Checks {
            any_token_kind: true,
            ..Checks::default()
        };
        for answer in [
            r#"{"active":true,"token_use":"refresh_token"}"#,
            r#"{"active":true,"token_use":"id_token"}"#,
            r#"{"active":true,"token_use":"id"}"#,
            r#"{"active":true,"typ":"Refresh"}"#,
            r#"{"active":true,"typ":"Offline"}"#,
            r#"{"active":true,"typ":"ID"}"#,
            r#"{"active":true,"typ":"Logout"}"#,
            r#"{"active":true,"token_type":"refresh_token"}"#,
        ] {
            let error = strict.check(&principal(answer), NOW).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidToken, "{answer}");
            assert!(lenient.check(&principal(answer), NOW).is_ok(), "{answer}");
        }
        for answer in [
            r#"{"active":true,"token_use":"access_token"}"#,
            r#"{"active":true,"token_use":"access"}"#,
            r#"{"active":true,"typ":"Bearer"}"#,
            r#"{"active":true,"typ":"at+jwt"}"#,
            r#"{"active":true,"token_type":"Bearer"}"#,
            r#"{"active":true,"token_use":42}"#,
        ] {
            assert!(strict.check(&principal(answer), NOW).is_ok(), "{answer}");
        }
    }

    #[test]
    fn token_type_case_insensitive() {
        let v = Checks {
            token_type: Some("Bearer".into()),
            ..Checks::default()
        };
        assert!(v
            .check(&principal(r#"{"active":true,"token_type":"bearer"}"#), NOW)
            .is_ok());
        assert!(v
            .check(&principal(r#"{"active":true,"token_type":"DPoP"}"#), NOW)
            .is_err());
        assert!(v.check(&principal(r#"{"active":true}"#), NOW).is_err());
    }
}
