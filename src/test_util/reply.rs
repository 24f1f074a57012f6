//! Response helpers shared by the endpoints.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// A JSON response with `Cache-Control: no-store`.
pub(crate) fn json(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// A JSON response without cache headers, for a public document that
/// clients may cache as they see fit (a JWK Set).
pub(crate) fn public_json(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// `{"error": code}` (and `error_description` when given).
pub(crate) fn oauth_error(status: StatusCode, code: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({ "error": code, "error_description": d }),
        None => json!({ "error": code }),
    };
    json(status, &body)
}

/// `400 {"error":"invalid_request","error_description":…}`.
pub(crate) fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", Some(description))
}

/// `401` with `WWW-Authenticate: Basic realm="test"` and `{"error":"invalid_client"}`.
pub(crate) fn invalid_client() -> Response {
    let mut res = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"test\""),
    );
    res
}

/// A response with a status and an empty body.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    res
}
