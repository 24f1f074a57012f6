//! Sender constraints (RFC 7800 `cnf`): what a token is bound to
//! ([`Binding`](crate::principal::Binding)), what a request proved ([`Proof`]), and the one check
//! between them ([`check`]) that every path runs: the layer's hit and miss
//! paths, the `DPoP` scheme, and `validate` outside a layer.
//!
//! - A token bound by a method the request proved is accepted: DPoP's
//!   `jkt` (RFC 9449 §6), against the thumbprint of the proof's key, and a
//!   client certificate's `x5t#S256` (RFC 8705 §3), against the SHA-256 of
//!   the certificate the request came with. A token bound both ways needs
//!   both.
//! - A bound token without its proof is refused (RFC 9449 §7.1, RFC 8705
//!   §3): whoever presents it may have stolen it.
//! - A method this layer does not check (RFC 7800's `jwk`, …, and
//!   `x5t#S256` without mutual TLS) is refused, unless the layer accepts
//!   unverifiable bindings.
//!
//! A new method adds a bit to `Binding`, a member to [`Proof`], and its arm
//! in [`check`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use serde_json::Value;

use crate::error::AuthError;
use crate::principal::Principal;

/// What a request proved possession of.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Proof<'a> {
    /// The RFC 7638 thumbprint of the key a valid DPoP proof was signed with.
    pub(crate) dpop_jkt: Option<&'a str>,
    /// The SHA-256 of the DER client certificate the request came with.
    pub(crate) certificate: Option<&'a [u8; 32]>,
}

/// What a layer accepts besides proven bindings.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rules {
    /// Accept tokens bound by a method this crate cannot check.
    pub(crate) accept_unverifiable: bool,
    /// On the `DPoP` scheme: accept a token with no DPoP binding.
    pub(crate) accept_unbound: bool,
    /// The layer checks client certificates (mutual TLS is on).
    pub(crate) certificates: bool,
    /// Every token must be bound to a client certificate.
    pub(crate) require_certificate: bool,
}

/// How a layer checks one request's bindings: its rules, and the SHA-256
/// of the client certificate the request came with.
#[cfg(feature = "jwt")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checking {
    pub(crate) rules: Rules,
    pub(crate) certificate: Option<[u8; 32]>,
}

/// Whether `principal`'s bindings are proven by `proof`, under `rules`.
/// The hit path calls it only for bound tokens (one byte tested first).
#[cold]
#[inline(never)]
pub(crate) fn check(principal: &Principal, proof: Proof<'_>, rules: Rules) -> Result<(), AuthError> {
    let binding = principal.binding();
    match proof.dpop_jkt {
        None if binding.names_dpop() => return Err(bound_token_as_bearer()),
        None => {}
        Some(proven) => match principal.dpop_jkt() {
            Some(jkt) if jkt == proven => {}
            Some(_) => return Err(AuthError::invalid_token("the token is bound to another DPoP key")),
            None if binding.names_dpop() => {
                return Err(AuthError::invalid_token(
                    "the token's DPoP binding (cnf.jkt) is malformed",
                ))
            }
            None if rules.accept_unbound => {}
            None => return Err(AuthError::invalid_token("the token is not bound to a DPoP key")),
        },
    }
    // RFC 8705 §3: the certificate the request came with.
    if binding.names_certificate() {
        match (proof.certificate, rules.certificates) {
            (Some(presented), _) => {
                let bound = principal
                    .certificate_thumbprint()
                    .and_then(|x5t| URL_SAFE_NO_PAD.decode(x5t).ok());
                match bound {
                    Some(bound) if bound.as_slice() == presented.as_slice() => {}
                    Some(bound) if bound.len() == 32 => {
                        return Err(AuthError::invalid_token(
                            "the token is bound to another client certificate",
                        ))
                    }
                    _ => {
                        return Err(AuthError::invalid_token(
                            "the token's certificate binding (cnf x5t#S256) is malformed",
                        ))
                    }
                }
            }
            (None, true) => {
                return Err(AuthError::invalid_token(
                    "the token is bound to a client certificate, which the request did not present",
                ))
            }
            (None, false) if rules.accept_unverifiable => {}
            (None, false) => return Err(unverifiable(principal)),
        }
    } else if rules.require_certificate {
        return Err(AuthError::invalid_token(
            "the token is not bound to a client certificate",
        ));
    }
    // A binding no layer can check: a proof covers only part of it.
    if binding.names_other() && !rules.accept_unverifiable {
        return Err(unverifiable(principal));
    }
    Ok(())
}

/// The principal of a token sent as a bearer token (no proof at all): a
/// sender-constrained one is refused, unless `rules` accept its binding.
/// One byte is tested on the way of an unbound token.
#[inline]
pub(crate) fn as_bearer(principal: Principal, rules: Rules) -> Result<Principal, AuthError> {
    if principal.is_bound() || rules.require_certificate {
        check(&principal, Proof::default(), rules)?;
    }
    Ok(principal)
}

/// As [`as_bearer`], for a request that came with a client certificate
/// (its SHA-256).
#[inline]
pub(crate) fn as_bearer_with(
    principal: Principal,
    certificate: Option<&[u8; 32]>,
    rules: Rules,
) -> Result<Principal, AuthError> {
    if principal.is_bound() || rules.require_certificate {
        let proof = Proof {
            dpop_jkt: None,
            certificate,
        };
        check(&principal, proof, rules)?;
    }
    Ok(principal)
}

/// The principal of a token seen outside a layer, where nothing proves the
/// sender: a sender-constrained one is refused.
pub(crate) fn unless_bound(principal: Principal) -> Result<Principal, AuthError> {
    as_bearer(principal, Rules::default())
}

/// A JWT also introspected: the principal comes from its claims, so the
/// AS's answer must not bind it to a DPoP key the claims do not name (nor
/// to another one), nor by a method the claims do not name. Otherwise a
/// bound token would pass as a bearer token. Claims bound where the answer
/// is silent need nothing more: the claims' binding is enforced already
/// (RFC 9449 §6.2 does not oblige the AS to echo `cnf`).
#[cfg(feature = "jwt")]
pub(crate) fn same_in_both(principal: Principal, answer: &Principal) -> Result<Principal, AuthError> {
    let same_dpop = !answer.is_dpop_bound()
        || (principal.is_dpop_bound()
            && principal.dpop_jkt().is_some()
            && principal.dpop_jkt() == answer.dpop_jkt());
    // Bound to a certificate by the answer: the claims must name the same
    // one (a malformed thumbprint in both is no match).
    let same_certificate = !answer.binding().names_certificate()
        || (principal.binding().names_certificate()
            && principal.certificate_thumbprint().is_some()
            && principal.certificate_thumbprint() == answer.certificate_thumbprint());
    let same_other =
        (!answer.binding().names_other() || principal.binding().names_other()) && same_certificate;
    if !same_dpop {
        Err(AuthError::invalid_token(
            "the token's DPoP binding differs between its claims and the introspection answer",
        ))
    } else if !same_other {
        Err(AuthError::invalid_token(
            "the token's binding (cnf) differs between its claims and the introspection answer",
        ))
    } else {
        Ok(principal)
    }
}

/// RFC 9449 §7.1: a token bound to a DPoP key is not a bearer token; whoever
/// presents it without a proof of the key may have stolen it.
fn bound_token_as_bearer() -> AuthError {
    AuthError::invalid_token(
        "the token is bound to a DPoP key and must be sent with the DPoP scheme and a proof",
    )
}

/// The refusal of a token bound by a method this crate cannot check
/// (RFC 8705 §3: without the proof of possession, it is refused).
fn unverifiable(principal: &Principal) -> AuthError {
    let certificate = principal
        .confirmation()
        .and_then(Value::as_object)
        .is_some_and(|cnf| cnf.contains_key("x5t#S256"));
    AuthError::invalid_token(if certificate {
        "the token is bound to a client certificate (cnf x5t#S256), which this server does not check"
    } else {
        "the token is bound to its sender by a method (cnf) this server does not check"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(cnf: &str) -> Principal {
        let json = format!(r#"{{"active":true{cnf}}}"#);
        Principal::from_json(json.as_bytes()).unwrap()
    }

    fn refusal(principal: &Principal, jkt: Option<&str>, rules: Rules) -> Option<String> {
        check(
            principal,
            Proof {
                dpop_jkt: jkt,
                certificate: None,
            },
            rules,
        )
        .err()
        .map(|error| error.description().to_owned())
    }

    const STRICT: Rules = Rules {
        accept_unverifiable: false,
        accept_unbound: false,
        certificates: false,
        require_certificate: false,
    };

    #[test]
    fn the_bits_name_each_method() {
        let of = |cnf: &str| principal(cnf).binding();
        assert!(!of("").is_bound());
        assert!(of(r#","cnf":{"jkt":"k"}"#).names_dpop());
        assert!(!of(r#","cnf":{"jkt":"k"}"#).names_other());
        assert!(of(r#","cnf":{"x5t#S256":"t"}"#).names_certificate());
        assert!(!of(r#","cnf":{"x5t#S256":"t"}"#).names_other());
        assert!(of(r#","cnf":{"jwk":{}}"#).names_other());
        // Fails closed: a `cnf` nothing can prove still binds.
        for cnf in [r#","cnf":{}"#, r#","cnf":"k""#, r#","cnf":null"#] {
            assert!(of(cnf).names_other(), "{cnf}");
        }
    }

    #[test]
    fn a_bearer_request_proves_nothing() {
        assert_eq!(refusal(&principal(""), None, STRICT), None);
        let dpop = principal(r#","cnf":{"jkt":"k"}"#);
        assert_eq!(
            refusal(&dpop, None, STRICT).as_deref(),
            Some("the token is bound to a DPoP key and must be sent with the DPoP scheme and a proof")
        );
        let lenient = Rules {
            accept_unverifiable: true,
            ..STRICT
        };
        assert!(
            refusal(&dpop, None, lenient).is_some(),
            "DPoP can be proven: never waived"
        );
        let certificate = principal(r#","cnf":{"x5t#S256":"t"}"#);
        assert_eq!(
            refusal(&certificate, None, STRICT).as_deref(),
            Some(
                "the token is bound to a client certificate (cnf x5t#S256), which this server does not check"
            )
        );
        assert_eq!(refusal(&certificate, None, lenient), None);
        assert_eq!(
            refusal(&principal(r#","cnf":{"jwk":{}}"#), None, STRICT).as_deref(),
            Some("the token is bound to its sender by a method (cnf) this server does not check")
        );
        assert!(unless_bound(certificate).is_err());
        assert!(unless_bound(principal("")).is_ok());
        assert!(as_bearer(principal(r#","cnf":{"jwk":{}}"#), lenient).is_ok());
    }

    #[test]
    fn a_dpop_proof_proves_its_key_only() {
        let proof = Some("k");
        assert_eq!(refusal(&principal(r#","cnf":{"jkt":"k"}"#), proof, STRICT), None);
        assert_eq!(
            refusal(&principal(r#","cnf":{"jkt":"other"}"#), proof, STRICT).as_deref(),
            Some("the token is bound to another DPoP key")
        );
        assert_eq!(
            refusal(&principal(r#","cnf":{"jkt":7}"#), proof, STRICT).as_deref(),
            Some("the token's DPoP binding (cnf.jkt) is malformed")
        );
        assert_eq!(
            refusal(&principal(""), proof, STRICT).as_deref(),
            Some("the token is not bound to a DPoP key")
        );
        let unbound_ok = Rules {
            accept_unbound: true,
            ..STRICT
        };
        assert_eq!(refusal(&principal(""), proof, unbound_ok), None);
        // Bound twice: the proof covers only DPoP's part.
        let both = principal(r#","cnf":{"jkt":"k","x5t#S256":"t"}"#);
        assert!(refusal(&both, proof, STRICT).is_some());
        let lenient = Rules {
            accept_unverifiable: true,
            ..STRICT
        };
        assert_eq!(refusal(&both, proof, lenient), None);
    }

    fn with_certificate(
        principal: &Principal,
        jkt: Option<&str>,
        certificate: &[u8; 32],
        rules: Rules,
    ) -> Option<String> {
        let proof = Proof {
            dpop_jkt: jkt,
            certificate: Some(certificate),
        };
        check(principal, proof, rules)
            .err()
            .map(|error| error.description().to_owned())
    }

    #[test]
    #[cfg(feature = "jwt")]
    fn an_answer_bound_to_a_certificate_needs_the_same_in_the_claims() {
        let answer = |cnf: &str| principal(cnf);
        let claims = |cnf: &str| principal(cnf);
        let ok = |c: &str, a: &str| same_in_both(claims(c), &answer(a)).is_ok();
        assert!(ok(r#","cnf":{"x5t#S256":"t"}"#, r#","cnf":{"x5t#S256":"t"}"#));
        assert!(!ok("", r#","cnf":{"x5t#S256":"t"}"#), "unbound claims");
        assert!(
            !ok("", r#","cnf":{"x5t#S256":null}"#),
            "a malformed binding still binds"
        );
        assert!(!ok(r#","cnf":{"x5t#S256":"u"}"#, r#","cnf":{"x5t#S256":"t"}"#));
        assert!(
            ok(r#","cnf":{"x5t#S256":"t"}"#, ""),
            "the claims bind on their own"
        );
    }

    #[test]
    fn a_certificate_proves_its_thumbprint_only() {
        let presented = [7u8; 32];
        let x5t = URL_SAFE_NO_PAD.encode(presented);
        let bound = principal(&format!(r#","cnf":{{"x5t#S256":"{x5t}"}}"#));
        let mtls = Rules {
            certificates: true,
            ..STRICT
        };
        assert_eq!(with_certificate(&bound, None, &presented, mtls), None);
        assert_eq!(
            with_certificate(&bound, None, &[8u8; 32], mtls).as_deref(),
            Some("the token is bound to another client certificate")
        );
        assert_eq!(
            refusal(&bound, None, mtls).as_deref(),
            Some("the token is bound to a client certificate, which the request did not present")
        );
        let malformed = principal(r#","cnf":{"x5t#S256":"short"}"#);
        assert_eq!(
            with_certificate(&malformed, None, &presented, mtls).as_deref(),
            Some("the token's certificate binding (cnf x5t#S256) is malformed")
        );
        // Unbound tokens pass unless every token must be bound.
        assert_eq!(with_certificate(&principal(""), None, &presented, mtls), None);
        let required = Rules {
            require_certificate: true,
            ..mtls
        };
        assert_eq!(
            with_certificate(&principal(""), None, &presented, required).as_deref(),
            Some("the token is not bound to a client certificate")
        );
        assert!(
            as_bearer(principal(""), required).is_err(),
            "checked even when unbound"
        );
        // Bound both ways: both proofs.
        let both = principal(&format!(r#","cnf":{{"jkt":"k","x5t#S256":"{x5t}"}}"#));
        assert_eq!(with_certificate(&both, Some("k"), &presented, mtls), None);
        assert!(
            with_certificate(&both, None, &presented, mtls).is_some(),
            "no DPoP proof"
        );
        assert!(refusal(&both, Some("k"), mtls).is_some(), "no certificate");
    }
}
