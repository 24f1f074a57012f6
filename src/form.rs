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
//! source for [`BearerExtractor`](crate::token::BearerExtractor): sent together with
//! an `Authorization` header, the request is answered 400 `invalid_request`.
//! A body without `Content-Length` that turns out larger than `max_body` is
//! answered 400 by this layer itself, with its own realm and rejection body
//! (set them like the introspection layer's).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_layer::Layer;
use tower_service::Service;

use crate::challenge::realm_value;
use crate::error::{AuthError, ConfigError, ErrorKind, DEFAULT_REALM};
use crate::rejection::{reject, JsonBody, RejectionBody};
use crate::token::{FormToken, TokenError};

/// The default limit on a form body that is read for a token.
pub const DEFAULT_MAX_FORM_BODY: usize = 16 * 1024;

/// Reads `access_token` from form-encoded bodies (RFC 6750 §2.2), opt-in.
///
/// It reads the parameter only when RFC 6750 §2.2 allows it: a
/// `Content-Type: application/x-www-form-urlencoded` body, on a method with
/// body semantics (never `GET` or `HEAD`), of at most `max_body` bytes
/// (default 16 KiB), entirely ASCII; otherwise the body is not used for a
/// token. A body announced larger than the limit is not read; one that turns
/// out larger while being read (no `Content-Length`) is answered 400
/// `invalid_request`, with this layer's [`realm`](Self::realm) in the
/// challenge and its [`rejection_body`](Self::rejection_body): give it the
/// same ones as the [`IntrospectionLayer`](crate::IntrospectionLayer). The
/// body is handed on unchanged. Place the layer outside the
/// `IntrospectionLayer`, so it runs first; a token in the body and in a
/// header is answered 400 `invalid_request`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::post, Router};
/// use tower::ServiceExt;
/// use tower_introspection::{form::FormBodyTokenLayer, IntrospectionLayer, Introspector};
///
/// # let introspector = Introspector::builder("https://as.example/introspect")
/// #     .client_secret_basic("api", "secret").build()?;
/// let app: Router = Router::new()
///     .route("/submit", post(|| async { "ok" }))
///     .layer(IntrospectionLayer::new(introspector).realm("my-api")?)
///     .layer(FormBodyTokenLayer::new().max_body(4).realm("my-api")?); // outermost: runs first
///
/// // A form body that turns out larger than `max_body` while it is read.
/// let chunks = ["access_", "token=abc"].map(Ok::<_, std::convert::Infallible>);
/// let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
/// let request = http::Request::post("/submit")
///     .header("content-type", "application/x-www-form-urlencoded")
///     .body(body)?;
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), 400);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer realm="my-api", error="invalid_request", error_description="the form body is too large or broken""#,
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct FormBodyTokenLayer<R = JsonBody> {
    max_body: usize,
    realm: HeaderValue,
    body: R,
}

impl Default for FormBodyTokenLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FormBodyTokenLayer {
    /// Reads bodies up to [`DEFAULT_MAX_FORM_BODY`] bytes; realm `"api"`,
    /// JSON rejection bodies.
    pub fn new() -> Self {
        Self {
            max_body: DEFAULT_MAX_FORM_BODY,
            realm: HeaderValue::from_static(DEFAULT_REALM),
            body: JsonBody,
        }
    }
}

impl<R> FormBodyTokenLayer<R> {
    /// Largest form body read for a token; a larger one is answered 400.
    pub fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The `realm` of the challenge this layer's 400 carries (default
    /// `"api"`); use the one given to
    /// [`IntrospectionLayer::realm`](crate::IntrospectionLayer::realm).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] when `realm` holds a character that
    /// RFC 6750 §3 does not allow in a quoted value (`"`, `\`, anything
    /// outside printable ASCII and space): such a realm cannot be sent as
    /// given, and the layer does not send another one in its place.
    pub fn realm(mut self, realm: impl AsRef<str>) -> Result<Self, ConfigError> {
        self.realm = realm_value(realm.as_ref()).ok_or(ConfigError::InvalidSetting(
            "`FormBodyTokenLayer::realm` may hold only printable ASCII characters and spaces, without `\"` and `\\` (RFC 6750 §3)",
        ))?;
        Ok(self)
    }

    /// Replaces the body of this layer's 400; see
    /// [`RejectionBody`](crate::middleware::RejectionBody). Use the one given to
    /// [`IntrospectionLayer::rejection_body`](crate::IntrospectionLayer::rejection_body).
    pub fn rejection_body<R2>(self, body: R2) -> FormBodyTokenLayer<R2> {
        FormBodyTokenLayer {
            max_body: self.max_body,
            realm: self.realm,
            body,
        }
    }
}

impl<S, R: Clone> Layer<S> for FormBodyTokenLayer<R> {
    type Service = FormBodyToken<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        FormBodyToken {
            inner,
            layer: self.clone(),
        }
    }
}

impl<R> fmt::Debug for FormBodyTokenLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormBodyTokenLayer")
            .field("max_body", &self.max_body)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// The service of [`FormBodyTokenLayer`].
#[derive(Clone)]
pub struct FormBodyToken<S, R = JsonBody> {
    inner: S,
    layer: FormBodyTokenLayer<R>,
}

impl<S, R> FormBodyToken<S, R> {
    /// Gets a reference to the wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the wrapped service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, R> fmt::Debug for FormBodyToken<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormBodyToken")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R, B, ResBody> Service<Request<B>> for FormBodyToken<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    R: RejectionBody<ResBody>,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
    ResBody: Send + 'static,
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
        let max_body = self.layer.max_body;
        if !applies(&request, max_body) {
            return Box::pin(inner.call(request));
        }
        // Only the rare form request pays for these clones (a shared buffer
        // and, by default, a unit struct).
        let realm = self.layer.realm.clone();
        let rejection_body = self.layer.body.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let bytes = match Limited::new(body, max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    // Answered like every other rejection: the configured
                    // realm in the challenge, the configured body.
                    let error =
                        AuthError::new(ErrorKind::InvalidRequest, "the form body is too large or broken")
                            .with_realm(Some(&realm));
                    return Ok(reject(error, &rejection_body));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The accessors reach the inner service.
    #[test]
    fn accessors() {
        let mut service: FormBodyToken<u8> = FormBodyTokenLayer::new().layer(7);
        *service.get_mut() += 1;
        assert_eq!(*service.get_ref(), 8);
        assert_eq!(service.into_inner(), 8);
    }
}
