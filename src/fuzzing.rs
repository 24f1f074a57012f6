//! Entry points for the fuzz targets (`fuzz/`) and property tests. Not part
//! of the public API: no stability promise.

use http::{HeaderValue, Request};

use crate::error::{AuthError, ErrorKind};
use crate::token::{BearerExtractor, ExtractToken, TokenError};

/// Runs the default extractor on one `Authorization` header value.
pub fn parse_authorization(value: &[u8]) -> Result<Option<String>, TokenError> {
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return Ok(None);
    };
    let mut request = Request::new(());
    request.headers_mut().insert(http::header::AUTHORIZATION, value);
    BearerExtractor::new()
        .extract(&request)
        .map(|token| token.map(|t| t.secret().to_owned()))
}

/// Whether `bytes` follow RFC 6750's `b64token` grammar.
pub fn is_b64token(bytes: &[u8]) -> bool {
    crate::token::is_b64token(bytes)
}

/// Parses an introspection answer: `Ok(true)` active, `Ok(false)` inactive.
pub fn parse_answer(body: &[u8]) -> Result<bool, crate::introspection::AnswerError> {
    crate::claims::parse_answer(body).map(|answer| matches!(answer, crate::claims::Answer::Active(_)))
}

/// The `WWW-Authenticate` value the crate sends for an `invalid_token` and an
/// `insufficient_scope` rejection with these texts.
pub fn challenges(realm: &str, description: &str, scope: &str) -> Vec<HeaderValue> {
    let realm = HeaderValue::from_str(realm).ok();
    let invalid = AuthError::new(ErrorKind::InvalidToken, description.to_owned()).with_realm(realm.as_ref());
    let scope = AuthError::insufficient_scope(scope.into()).with_realm(realm.as_ref());
    let missing = AuthError::missing_token().with_realm(realm.as_ref());
    [invalid, scope, missing]
        .iter()
        .filter_map(AuthError::challenge)
        .collect()
}

/// The method of the request every [`check_dpop_proof`] input is for (`htm`).
#[cfg(feature = "jwt")]
pub const DPOP_METHOD: &str = "GET";
/// The URL of that request (`htu`).
#[cfg(feature = "jwt")]
pub const DPOP_URL: &str = "https://api.example/items";
/// The access token sent with it (`ath` is its hash).
#[cfg(feature = "jwt")]
pub const DPOP_ACCESS_TOKEN: &str = "fuzz-access-token";
/// The time of the check, Unix seconds (`iat` within 60 s before it, 5 s leeway).
#[cfg(feature = "jwt")]
pub const DPOP_NOW: i64 = 1_700_000_000;

/// Checks one DPoP proof (RFC 9449 §4.3) the way the layer does, for a
/// request fixed by [`DPOP_METHOD`], [`DPOP_URL`], [`DPOP_ACCESS_TOKEN`] and
/// [`DPOP_NOW`], with the default settings of
/// `DpopConfig::allowed()` (60 s `max_age`, 5 s leeway, ES256, ES384, EdDSA,
/// PS256 and RS256). `Ok` holds the proof key's RFC 7638 thumbprint and the
/// proof's `jti`; `Err` the refusal's `error_description`. Input that is not
/// UTF-8 is refused as malformed (the layer reads the header with
/// `to_str`, which is stricter still). The replay cache and the token are
/// not involved.
#[cfg(feature = "jwt")]
pub fn check_dpop_proof(proof: &[u8]) -> Result<(String, String), &'static str> {
    use crate::dpop::proof;
    use crate::jose::Algorithm;

    let malformed = "the DPoP proof is not a well-formed signed JWT";
    let proof = std::str::from_utf8(proof).map_err(|_| malformed)?;
    let url = url::Url::parse(DPOP_URL).map_err(|_| "the request's URL cannot be determined")?;
    let expected = proof::Expected {
        method: DPOP_METHOD,
        url: &url,
        access_token: DPOP_ACCESS_TOKEN,
        now: DPOP_NOW,
        max_age: 60,
        leeway: 5,
    };
    let algorithms = [
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
        Algorithm::Ps256,
        Algorithm::Rs256,
    ];
    proof::check(proof, &algorithms, &expected).map(|checked| (checked.jkt, checked.jti))
}

/// What [`parse_jwt`] read from a compact JWS, its signature not checked.
#[cfg(feature = "jwt")]
#[derive(Debug)]
pub struct ParsedJwt {
    /// `alg`, as the crate names it.
    pub alg: &'static str,
    /// `kid`, if the header has one.
    pub kid: Option<String>,
    /// `typ`, if the header has one.
    pub typ: Option<String>,
    /// The claims.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The length of `header.payload`, what the signature covers.
    pub signing_input_len: usize,
    /// The decoded signature's length.
    pub signature_len: usize,
}

/// Reads a JWT the way `JwtVerifier` does before trying a key (RFC 7515
/// §7.1 and the crate's header rules: no `none`, no HMAC, no `crit`, unique
/// members). Input that is not UTF-8 is refused as malformed.
#[cfg(feature = "jwt")]
pub fn parse_jwt(token: &[u8]) -> Result<ParsedJwt, &'static str> {
    let token = std::str::from_utf8(token).map_err(|_| "the token is not a well-formed JWT")?;
    crate::jose::Compact::parse(token).map(|jws| ParsedJwt {
        alg: jws.alg.as_str(),
        kid: jws.kid,
        typ: jws.typ,
        claims: jws.claims,
        signing_input_len: jws.signing_input.len(),
        signature_len: jws.signature.len(),
    })
}

/// The unverified `iss` the layer routes a token by: `None` for a token
/// that is not JWT-shaped, `Some(None)` for a JWT without a string `iss`.
#[cfg(feature = "jwt")]
pub fn peek_issuer(token: &[u8]) -> Option<Option<String>> {
    crate::jose::peek_issuer(std::str::from_utf8(token).ok()?)
}
