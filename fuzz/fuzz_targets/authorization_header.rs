//! `parse_authorization` on arbitrary `Authorization` header values.
//!
//! Beyond "no panic", the answer must be exactly what the rules give, with
//! `is_b64token` deciding the credentials (and itself checked against a small
//! independent reading of the grammar):
//! - not a valid header value → `Ok(None)`;
//! - `bearer` (any case) alone → `Err(Malformed)`;
//! - `bearer` (any case), one or more spaces, credentials → `Ok(Some(credentials))`
//!   if they are a `b64token` of at most 4096 bytes, `Err(TooLong)` if longer,
//!   `Err(Malformed)` if not a `b64token`;
//! - anything else (another scheme, `Bearerx …`, `Bearer\t…`) → `Ok(None)`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_introspection::fuzzing::{is_b64token, parse_authorization};
use tower_introspection::token::{TokenError, DEFAULT_MAX_TOKEN_LENGTH};

/// What `http::HeaderValue::from_bytes` accepts.
fn is_header_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`, read from the end.
fn reference_b64token(t: &[u8]) -> bool {
    let padding = t.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &t[..t.len() - padding];
    !body.is_empty()
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

fn expected(value: &[u8]) -> Result<Option<&[u8]>, TokenError> {
    if !is_header_value(value) {
        return Ok(None);
    }
    let Some((scheme, rest)) = value.split_at_checked(6) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    match rest.first() {
        None => return Err(TokenError::Malformed),
        Some(b' ') => {}
        Some(_) => return Ok(None),
    }
    let credentials = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    let grammar = is_b64token(credentials);
    assert_eq!(
        grammar,
        reference_b64token(credentials),
        "is_b64token disagrees with the grammar on {credentials:?}"
    );
    if !grammar {
        Err(TokenError::Malformed)
    } else if credentials.len() > DEFAULT_MAX_TOKEN_LENGTH {
        Err(TokenError::TooLong)
    } else {
        Ok(Some(credentials))
    }
}

fuzz_target!(|data: &[u8]| {
    let got = parse_authorization(data);
    let want = expected(data);
    let same = match (&got, &want) {
        (Ok(Some(token)), Ok(Some(credentials))) => token.as_bytes() == *credentials,
        (Ok(None), Ok(None)) => true,
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    assert!(same, "input {data:?}: got {got:?}, expected {want:?}");
});
