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
pub fn parse_answer(body: &[u8]) -> Result<bool, crate::AnswerError> {
    crate::introspect::parse_answer(body).map(|answer| matches!(answer, crate::introspect::Answer::Active(_)))
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
