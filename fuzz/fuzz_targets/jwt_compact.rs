//! `parse_jwt` (the compact JWS reader `JwtVerifier` runs before trying a
//! key) and `peek_issuer` (how the layer routes a token to an issuer) on
//! arbitrary tokens.
//!
//! Beyond "no panic":
//! - an accepted token has exactly three dot-separated segments, and what
//!   the signature covers is everything before the last dot;
//! - its header is a JSON object with a string `alg` that is neither
//!   `none` nor HMAC, no `crit`, and `kid`/`typ` as read;
//! - `peek_issuer` says `None` (not JWT-shaped) for anything without exactly
//!   two dots; for an accepted token whose decoded header starts with `{`,
//!   it says the token's string `iss` (or `Some(None)`).

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_introspection::fuzzing::{parse_jwt, peek_issuer};

fuzz_target!(|data: &[u8]| {
    let peeked = peek_issuer(data);
    let dots = data.iter().filter(|&&b| b == b'.').count();
    if dots != 2 {
        assert_eq!(peeked, None, "peeked into a token with {dots} dots: {data:?}");
    }
    let Ok(parsed) = parse_jwt(data) else {
        return;
    };
    assert_eq!(dots, 2, "accepted a token with {dots} dots: {data:?}");
    let token = std::str::from_utf8(data).expect("accepted a token that is not UTF-8");
    let last_dot = token.rfind('.').expect("two dots");
    assert_eq!(parsed.signing_input_len, last_dot, "signing input of {token:?}");
    let header_segment = token.split('.').next().expect("a first segment");
    let header_bytes = URL_SAFE_NO_PAD
        .decode(header_segment)
        .expect("accepted header is base64url");
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&header_bytes) else {
        panic!("accepted a header that is not a JSON object: {token:?}");
    };
    assert_eq!(
        header.get("alg").and_then(Value::as_str),
        Some(parsed.alg),
        "{token:?}"
    );
    assert!(!matches!(parsed.alg, "none" | "HS256" | "HS384" | "HS512"));
    assert!(!header.contains_key("crit"), "accepted crit: {token:?}");
    assert_eq!(header.get("kid").and_then(Value::as_str), parsed.kid.as_deref());
    assert_eq!(header.get("typ").and_then(Value::as_str), parsed.typ.as_deref());
    if header_bytes.first() == Some(&b'{') {
        let iss = parsed
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_owned);
        assert_eq!(peeked, Some(iss), "peek and parse disagree on {token:?}");
    }
});
