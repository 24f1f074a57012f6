//! RFC 6750 §2.2: the token in a form-encoded body, opt-in.
//!
//! Reading a body needs buffering, so this method has its own layer,
//! [`FormBodyTokenLayer`], placed *outside* (after, in axum's `.layer` order)
//! the [`IntrospectionLayer`](crate::IntrospectionLayer). It reads the
//! `access_token` parameter only when RFC 6750 §2.2 allows it:
//!
//! - `Content-Type: application/x-www-form-urlencoded`;
//! - a method with body semantics (never `GET` or `HEAD`);
//! - a body of at most `max_body` bytes (default 16 KiB), entirely ASCII.
//!
//! The body is handed on unchanged. The token then counts as one more
//! source for [`BearerExtractor`](crate::BearerExtractor): sent together with
//! an `Authorization` header, the request is answered 400 `invalid_request`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{AuthError, ErrorKind};
use crate::middleware::{reject, JsonBody};
use crate::token::TokenError;

/// The default limit on a form body that is read for a token.
pub const DEFAULT_MAX_FORM_BODY: usize = 16 * 1024;

/// What the form layer found, for the token extractor.
#[derive(Clone)]
pub(crate) struct FormToken(pub(crate) Result<Box<str>, TokenError>);

/// Reads `access_token` from form-encoded bodies (RFC 6750 §2.2), opt-in.
///
/// It reads the parameter only when RFC 6750 §2.2 allows it: a
/// `Content-Type: application/x-www-form-urlencoded` body, on a method with
/// body semantics (never `GET` or `HEAD`), of at most `max_body` bytes
/// (default 16 KiB), entirely ASCII; otherwise the body is not used for a
/// token. A body announced larger than the limit is not read; one that turns
/// out larger while being read (no `Content-Length`) is answered 400. The
/// body is handed on unchanged. Place the layer outside the
/// [`IntrospectionLayer`](crate::IntrospectionLayer), so it runs first; a
/// token in the body and in a header is answered 400 `invalid_request`.
///
/// ```
/// use axum::{routing::post, Router};
/// use tower_introspection::{FormBodyTokenLayer, IntrospectionLayer, Introspector};
///
/// # let introspector = Introspector::builder("https://as.example/introspect")
/// #     .client_secret_basic("api", "secret").build().unwrap();
/// let app: Router = Router::new()
///     .route("/submit", post(|| async { "ok" }))
///     .layer(IntrospectionLayer::new(introspector))
///     .layer(FormBodyTokenLayer::new()); // outermost: runs first
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FormBodyTokenLayer {
    max_body: usize,
}

impl Default for FormBodyTokenLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FormBodyTokenLayer {
    /// Reads bodies up to [`DEFAULT_MAX_FORM_BODY`] bytes.
    pub fn new() -> Self {
        Self {
            max_body: DEFAULT_MAX_FORM_BODY,
        }
    }

    /// Largest form body read for a token; a larger one is answered 400.
    pub fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }
}

impl<S> Layer<S> for FormBodyTokenLayer {
    type Service = FormBodyToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FormBodyToken {
            inner,
            max_body: self.max_body,
        }
    }
}

/// The service of [`FormBodyTokenLayer`].
#[derive(Debug, Clone)]
pub struct FormBodyToken<S> {
    inner: S,
    max_body: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for FormBodyToken<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !applies(&request, self.max_body) {
            return Box::pin(inner.call(request));
        }
        let max_body = self.max_body;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let bytes = match Limited::new(body, max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    let error =
                        AuthError::new(ErrorKind::InvalidRequest, "the form body is too large or broken");
                    return Ok(reject(error, &JsonBody));
                }
            };
            if let Some(found) = access_token(&bytes) {
                parts.extensions.insert(FormToken(found));
            }
            inner.call(Request::from_parts(parts, B::from(bytes))).await
        })
    }
}

/// RFC 6750 §2.2: a form-encoded body, on a method with body semantics,
/// not announced as larger than the limit (such a body is not read at all).
fn applies<B>(request: &Request<B>, max_body: usize) -> bool {
    let method = request.method();
    if method == Method::GET || method == Method::HEAD {
        return false;
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max_body as u64) {
        return false;
    }
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The `access_token` parameter: `None` when absent, or when the body is not
/// ASCII (then §2.2 does not apply); an error when repeated.
fn access_token(body: &[u8]) -> Option<Result<Box<str>, TokenError>> {
    if !body.is_ascii() {
        return None;
    }
    let mut found = None;
    for (name, value) in form_urlencoded::parse(body) {
        if name == "access_token" {
            if found.is_some() {
                return Some(Err(TokenError::Repeated));
            }
            found = Some(Ok(value.into_owned().into_boxed_str()));
        }
    }
    found
}

impl fmt::Debug for FormToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FormToken([redacted])")
    }
}
