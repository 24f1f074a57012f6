//! `check_dpop_proof` on arbitrary DPoP proofs (RFC 9449 §4.3), checked
//! against a fixed request (`GET https://api.example/items`, a fixed access
//! token and time: `tower_introspection::fuzzing::DPOP_*`).
//!
//! Beyond "no panic", an accepted proof must be what the rules say, read
//! here independently of the crate (`serde_json` as the JSON oracle):
//! - exactly three dot-separated segments, header and payload base64url
//!   JSON objects;
//! - header `typ` `dpop+jwt` (any case), `alg` an accepted asymmetric one, a
//!   `jwk` object without private members (`d`, `p`, `q`, `dp`, `dq`, `qi`,
//!   `oth`, `k`);
//! - claims `htm` `GET`, `iat` a number within 65 s before `DPOP_NOW` and 5 s
//!   after, `jti` a non-empty string of at most 256 bytes (the one returned),
//!   `ath` a string;
//! - the returned thumbprint is 43 base64url characters (a SHA-256).

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tower_introspection::fuzzing::{check_dpop_proof, DPOP_NOW};

const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn object(segment: &str) -> Map<String, Value> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap_or_else(|e| panic!("accepted a segment that is not base64url ({e}): {segment:?}"));
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => map,
        other => panic!("accepted a segment that is not a JSON object: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok((jkt, jti)) = check_dpop_proof(data) else {
        return;
    };
    let proof = std::str::from_utf8(data).expect("accepted a proof that is not UTF-8");
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted {proof:?}");
    let header = object(parts[0]);
    let claims = object(parts[1]);
    let text =
        |map: &Map<String, Value>, name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    assert!(
        text(&header, "typ").is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")),
        "accepted typ {:?}",
        header.get("typ")
    );
    assert!(
        matches!(
            text(&header, "alg").as_deref(),
            Some("ES256" | "ES384" | "EdDSA" | "PS256" | "RS256")
        ),
        "accepted alg {:?}",
        header.get("alg")
    );
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        panic!("accepted a proof without a jwk object: {header:?}");
    };
    assert!(
        !PRIVATE.iter().any(|m| jwk.contains_key(*m)),
        "accepted a private jwk {jwk:?}"
    );
    assert_eq!(text(&claims, "htm").as_deref(), Some("GET"));
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .expect("accepted a proof without a numeric iat");
    assert!(
        iat >= (DPOP_NOW - 65) as f64 && iat < (DPOP_NOW + 6) as f64,
        "accepted iat {iat} at {DPOP_NOW}"
    );
    assert_eq!(text(&claims, "jti").as_deref(), Some(jti.as_str()));
    assert!(!jti.is_empty() && jti.len() <= 256, "accepted jti {jti:?}");
    assert!(text(&claims, "ath").is_some());
    assert!(
        jkt.len() == 43
            && jkt
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "thumbprint {jkt:?}"
    );
});
