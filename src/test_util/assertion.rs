//! `private_key_jwt` at the test server (RFC 7523 §3): the assertion's
//! signature against the client's registered public key, `iss` = `sub` =
//! the client, `aud` naming this server, `exp` in the future and not too
//! far, and a `jti` never seen before.

use serde_json::Value;

use super::spec::ClientSpec;
use super::state::{unix_now, State};
use crate::jose::{Compact, Jwk, PublicKey};

/// `client_assertion_type` for a JWT assertion.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest assertion lifetime accepted.
const MAX_LIFETIME_SECS: i64 = 300;

/// The client the assertion authenticates, or `None` if it does not.
/// `audiences` are the values `aud` may name (the issuer, the endpoint).
pub(crate) fn verify(state: &mut State, assertion: &str, audiences: &[&str]) -> Option<ClientSpec> {
    let jws = Compact::parse(assertion).ok()?;
    let text = |name: &str| match jws.claims.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let iss = text("iss")?;
    if text("sub")? != iss {
        return None;
    }
    let client = state.clients.get(&iss)?.clone();
    let jwk: Jwk = serde_json::from_value(client.public_jwk.clone()?).ok()?;
    let key = PublicKey::from_jwk(&jwk).ok()??;
    if !key.verify(jws.alg, jws.signing_input, &jws.signature) {
        return None;
    }
    let aud_ok = match jws.claims.get("aud") {
        Some(Value::String(aud)) => audiences.contains(&aud.as_str()),
        Some(Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str().is_some_and(|a| audiences.contains(&a))),
        _ => false,
    };
    let now = unix_now();
    let exp = jws.claims.get("exp").and_then(Value::as_i64)?;
    if !aud_ok || exp <= now || exp > now + MAX_LIFETIME_SECS {
        return None;
    }
    let jti = text("jti")?;
    // A replayed assertion is refused (RFC 7523 §3, item 7).
    if !state.seen_assertions.insert(jti) {
        return None;
    }
    Some(client)
}
