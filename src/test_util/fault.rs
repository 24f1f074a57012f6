//! Rendering of injected [`Fault`]s.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::stream::{self, StreamExt as _};
use serde_json::{Map, Value};

use super::reply;
use super::spec::Fault;

/// Streamed bodies go out in chunks of this size.
const CHUNK: usize = 16 * 1024;

/// Applies a fault: `None` means "answer normally now" (after a `Delay`),
/// `Some` is the faulty answer. `template` is the answer the token would
/// get, used by `ActiveAsString` and `ActiveAsNumber`.
pub(crate) async fn apply(fault: Fault, template: Map<String, Value>) -> Option<Response> {
    let res = match fault {
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            return None;
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            reply::oauth_error(StatusCode::GATEWAY_TIMEOUT, "temporarily_unavailable", None)
        }
        Fault::Status(code) => status(code),
        Fault::Html => raw(
            "text/html; charset=utf-8",
            Body::from("<html><head><title>Login</title></head><body><h1>Please sign in</h1></body></html>"),
        ),
        Fault::TruncatedJson => raw("application/json", Body::from(r#"{"active": tr"#)),
        Fault::Oversized(n) => raw("application/json", Body::from(oversized(n))),
        Fault::OversizedChunked(n) => {
            let body = Bytes::from(oversized(n));
            let chunks: Vec<Result<Bytes, Infallible>> = (0..body.len())
                .step_by(CHUNK)
                .map(|start| Ok(body.slice(start..body.len().min(start + CHUNK))))
                .collect();
            raw("application/json", Body::from_stream(stream::iter(chunks)))
        }
        Fault::ActiveAsString => with_active(template, Value::from("true")),
        Fault::ActiveAsNumber => with_active(template, Value::from(1)),
        Fault::JsonArray => raw("application/json", Body::from("[]")),
        Fault::JsonNull => raw("application/json", Body::from("null")),
        Fault::CloseConnection => {
            let start = stream::iter([Ok::<_, io::Error>(Bytes::from_static(b"{\"active\":true,"))]);
            let abort = stream::once(async {
                // Give the headers and the first chunk time to go out.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "injected fault: connection closed",
                ))
            });
            raw("application/json", Body::from_stream(start.chain(abort)))
        }
        Fault::Redirect(location) => match HeaderValue::try_from(location) {
            Ok(location) => {
                let mut res = reply::empty(StatusCode::FOUND);
                res.headers_mut().insert(header::LOCATION, location);
                res
            }
            Err(_) => reply::oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("injected redirect has an invalid Location"),
            ),
        },
    };
    Some(res)
}

fn raw(content_type: &'static str, body: Body) -> Response {
    let mut res = Response::new(body);
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// That status with an OAuth-style JSON error body.
fn status(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = match status.as_u16() {
        400 => "invalid_request",
        401 => "invalid_client",
        403 => "access_denied",
        429 | 503 => "temporarily_unavailable",
        _ => "server_error",
    };
    let description = format!("injected fault: HTTP {}", status.as_u16());
    reply::oauth_error(status, error, Some(&description))
}

/// `{"active":false,"padding":"aaa…"}` of at least `n` bytes.
fn oversized(n: usize) -> Vec<u8> {
    const HEAD: &[u8] = br#"{"active":false,"padding":""#;
    const TAIL: &[u8] = br#""}"#;
    let pad = n.saturating_sub(HEAD.len() + TAIL.len());
    let mut body = Vec::with_capacity(HEAD.len() + pad + TAIL.len());
    body.extend_from_slice(HEAD);
    body.resize(HEAD.len() + pad, b'a');
    body.extend_from_slice(TAIL);
    body
}

fn with_active(mut template: Map<String, Value>, active: Value) -> Response {
    template.insert("active".to_owned(), active);
    reply::json(StatusCode::OK, &Value::Object(template))
}
