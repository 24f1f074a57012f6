//! [`FormBodyTokenLayer`].

use std::fmt;

use http::HeaderValue;

use super::{FormGuard, DEFAULT_MAX_FORM_BODY};
use crate::challenge::realm_value;
use crate::error::{ConfigError, DEFAULT_REALM};
use crate::macros::setters;
use crate::rejection::JsonBody;

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
    pub(super) guard: FormGuard,
    pub(super) body: R,
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
            guard: FormGuard {
                max_body: DEFAULT_MAX_FORM_BODY,
                realm: HeaderValue::from_static(DEFAULT_REALM),
            },
            body: JsonBody,
        }
    }
}

impl<R> FormBodyTokenLayer<R> {
    setters! {
        /// Largest form body read for a token; a larger one is answered 400.
        pub fn max_body(max_body: usize) => guard.max_body = max_body;
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
        self.guard.realm = realm_value(realm.as_ref()).ok_or(ConfigError::InvalidSetting(
            "`FormBodyTokenLayer::realm` may hold only printable ASCII characters and spaces, without `\"` and `\\` (RFC 6750 §3)",
        ))?;
        Ok(self)
    }
}

impl<R> fmt::Debug for FormBodyTokenLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormBodyTokenLayer")
            .field("max_body", &self.guard.max_body)
            .field("realm", &self.guard.realm)
            .finish_non_exhaustive()
    }
}
