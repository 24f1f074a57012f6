//! Checking one DPoP proof (RFC 9449 §4.3): its header, signature and
//! claims, and the RFC 7638 thumbprint of its key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use serde_json::{Map, Value};

use crate::jose::{Algorithm, Compact as CompactJws, Jwk, PublicKey as JwkPublicKey};

/// Why a proof was refused; the text goes into `error_description`.
pub(crate) type Refusal = &'static str;

/// What a request must match, taken from the request itself.
pub(crate) struct Expected<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a url::Url,
    pub(crate) access_token: &'a str,
    pub(crate) now: i64,
    pub(crate) max_age: i64,
    pub(crate) leeway: i64,
}

/// A proof that passed every check but replay.
pub(crate) struct Checked {
    /// The RFC 7638 thumbprint of the proof's key, base64url.
    pub(crate) jkt: String,
    pub(crate) jti: String,
    /// The `nonce` claim, if a string: checked by the caller, against the
    /// server's nonces when it hands them out (RFC 9449 §4.3 item 10).
    pub(crate) nonce: Option<String>,
    /// SHA-256 of the access token (what `ath` names): the replay cache
    /// counts the token's share under it, without hashing the token again.
    pub(crate) token_digest: [u8; 32],
}

/// Members of a JWK that only a private key has (RFC 7518 §6): a proof
/// carrying one leaks the client's key and is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The longest `jti` kept in the replay cache (it is hashed, but a proof
/// must not make us hash megabytes).
const MAX_JTI: usize = 256;

pub(crate) fn check(
    proof: &str,
    algorithms: &[Algorithm],
    expected: &Expected<'_>,
) -> Result<Checked, Refusal> {
    let jws = CompactJws::parse(proof).map_err(|_| "the DPoP proof is not a well-formed signed JWT")?;
    if !jws
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err("the DPoP proof is not typed dpop+jwt");
    }
    if !algorithms.contains(&jws.alg) {
        return Err("the DPoP proof's algorithm is not accepted");
    }
    let header = proof
        .split('.')
        .next()
        .and_then(|segment| URL_SAFE_NO_PAD.decode(segment).ok())
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .ok_or("the DPoP proof is not a well-formed signed JWT")?;
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err("the DPoP proof has no jwk header");
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err("the DPoP proof's jwk holds a private key");
    }
    let parsed: Jwk = serde_json::from_value(Value::Object(jwk.clone()))
        .map_err(|_| "the DPoP proof's jwk is not a usable public key")?;
    let key = match JwkPublicKey::from_jwk(&parsed) {
        Ok(Some(key)) if key.fits(jws.alg) => key,
        _ => return Err("the DPoP proof's jwk is not a usable public key"),
    };
    if !key.verify(jws.alg, jws.signing_input, &jws.signature) {
        return Err("the DPoP proof's signature is invalid");
    }
    let claims = &jws.claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(expected.method) {
        return Err("the DPoP proof is for another HTTP method (htm)");
    }
    if !text("htu").is_some_and(|htu| same_target(htu, expected.url)) {
        return Err("the DPoP proof is for another URL (htu)");
    }
    let Some(iat) = claims.get("iat").and_then(Value::as_f64) else {
        return Err("the DPoP proof has no iat");
    };
    // Whole seconds; a fraction never decides freshness.
    #[allow(clippy::cast_possible_truncation)]
    let iat = iat.floor() as i64;
    if iat > expected.now.saturating_add(expected.leeway) {
        return Err("the DPoP proof was issued in the future (iat)");
    }
    if iat
        < expected
            .now
            .saturating_sub(expected.max_age.saturating_add(expected.leeway))
    {
        return Err("the DPoP proof is too old (iat)");
    }
    let jti = match text("jti") {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI => jti.to_owned(),
        _ => return Err("the DPoP proof has no usable jti"),
    };
    let token_digest = token_digest(expected.access_token);
    if text("ath") != Some(URL_SAFE_NO_PAD.encode(token_digest).as_str()) {
        return Err("the DPoP proof is for another access token (ath)");
    }
    let jkt = thumbprint(jwk).ok_or("the DPoP proof's jwk is not a usable public key")?;
    let nonce = text("nonce").map(str::to_owned);
    Ok(Checked {
        jkt,
        jti,
        nonce,
        token_digest,
    })
}

/// SHA-256 of the access token; `ath` is its base64url (RFC 9449 §4.2).
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    hash
}

/// The RFC 7638 thumbprint: SHA-256 over the required members in
/// lexicographic order, no whitespace, base64url.
pub(crate) fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&Value::String((*name).to_owned()).to_string());
        canonical.push(':');
        canonical.push_str(&Value::String(value.to_owned()).to_string());
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes())))
}

/// `htu` against the request's URL, without query and fragment, after the
/// normalization `url` applies (case of scheme and host, default port,
/// dot segments, also percent-encoded ones): RFC 9449 §4.3 item 9 asks for
/// RFC 3986's syntax- and scheme-based normalization before comparing. The
/// request's own path went through the same, so `/a/%2e%2e/b` matches a
/// proof for `/b`; the router, not this check, decides what that path is.
fn same_target(htu: &str, url: &url::Url) -> bool {
    let Ok(htu) = url::Url::parse(htu) else {
        return false;
    };
    htu.scheme() == url.scheme()
        && htu.host_str() == url.host_str()
        && htu.port_or_known_default() == url.port_or_known_default()
        && htu.path() == url.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_of_the_rfc_example() {
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    /// RFC 8037 §A.3's Ed25519 key: an `OKP` key has a thumbprint too.
    #[test]
    fn thumbprint_of_an_okp_key() {
        let jwk: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        )
        .unwrap();
        assert_eq!(
            thumbprint(&jwk).as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }

    /// The edges of `iat`, `jti` and the key's fit, against a fixed `now`.
    #[cfg(feature = "test-util")]
    mod edges {
        use super::*;
        use crate::test_util::DpopKey;

        const NOW: i64 = 1_900_000_000;
        const URL: &str = "https://api.example/items";

        fn checked(key: &DpopKey, header: &Value, edit: impl FnOnce(&mut Value)) -> Result<Checked, Refusal> {
            let mut claims = DpopKey::claims("GET", URL, "token");
            edit(&mut claims);
            let proof = key.sign(header, &claims);
            let url = url::Url::parse(URL).unwrap();
            let expected = Expected {
                method: "GET",
                url: &url,
                access_token: "token",
                now: NOW,
                max_age: 60,
                leeway: 5,
            };
            check(&proof, &[Algorithm::Es256, Algorithm::Es384], &expected)
        }

        #[test]
        fn iat_is_accepted_up_to_its_bounds_inclusive() {
            let key = DpopKey::generate();
            let at = |iat: i64| checked(&key, &key.header(), |c| c["iat"] = iat.into()).err();
            assert_eq!(at(NOW + 5), None);
            assert_eq!(at(NOW + 6), Some("the DPoP proof was issued in the future (iat)"));
            assert_eq!(at(NOW - 65), None);
            assert_eq!(at(NOW - 66), Some("the DPoP proof is too old (iat)"));
        }

        #[test]
        fn jti_must_be_present_and_at_most_256_bytes() {
            let key = DpopKey::generate();
            let with = |jti: Value| {
                checked(&key, &key.header(), |c| {
                    c["iat"] = NOW.into();
                    c["jti"] = jti;
                })
                .err()
            };
            assert_eq!(with("j".repeat(256).into()), None);
            for refused in [Value::from(""), "j".repeat(257).into(), Value::from(7)] {
                assert_eq!(with(refused), Some("the DPoP proof has no usable jti"));
            }
        }

        /// An ES256 key under an `ES384` header: refused for the key, before
        /// any signature check.
        #[test]
        fn the_key_must_fit_the_algorithm() {
            let key = DpopKey::generate();
            let mut header = key.header();
            header["alg"] = "ES384".into();
            let refusal = checked(&key, &header, |c| c["iat"] = NOW.into()).err();
            assert_eq!(refusal, Some("the DPoP proof's jwk is not a usable public key"));
        }
    }

    #[test]
    fn htu_ignores_query_and_default_port() {
        let url = url::Url::parse("https://API.example:443/a/b").unwrap();
        assert!(same_target("https://api.example/a/b?x=1#f", &url));
        assert!(!same_target("https://api.example/a", &url));
        assert!(!same_target("http://api.example/a/b", &url));
    }
}
