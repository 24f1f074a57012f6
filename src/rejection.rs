//! Rejection responses, shaped in one place ([`reject`]) for the
//! middleware, the form layer, the scope guard and the axum extractors: the
//! status and headers are the contract (RFC 6750 §3), the body is
//! replaceable ([`RejectionBody`]).

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};

use crate::error::AuthError;

/// Makes the body of a rejection response.
///
/// The middleware sets the status, `WWW-Authenticate` and `Retry-After`
/// itself, and attaches the [`AuthError`] to the response extensions; this
/// trait only supplies the body (and may add headers such as
/// `Content-Type`). A closure `Fn(&AuthError, &mut HeaderMap) -> B`
/// implements it.
///
/// It shapes the rejections of the layer it is given to. The axum
/// extractors answer through [`AuthError`]'s `IntoResponse` (JSON); to
/// reshape those too, map the rejection in your handler or with axum's
/// `HandleErrorLayer`/`map_response`.
///
/// ```
/// use http::HeaderMap;
/// use tower_introspection::{AuthError, IntrospectionLayer, Introspector};
///
/// # let introspector = Introspector::builder("https://as.example/introspect")
/// #     .client_secret_basic("api", "secret").build().unwrap();
/// let layer = IntrospectionLayer::new(introspector)
///     .rejection_body(|error: &AuthError, _headers: &mut HeaderMap| {
///         axum::body::Body::from(format!("denied: {}", error.description()))
///     });
/// # let _ = layer;
/// ```
pub trait RejectionBody<B>: Clone + Send + Sync + 'static {
    /// The body for `error`.
    fn body(&self, error: &AuthError, headers: &mut HeaderMap) -> B;
}

/// The default body: `{"error": "…", "error_description": "…"}` as
/// `application/json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody;

impl<B: From<Bytes>> RejectionBody<B> for JsonBody {
    fn body(&self, error: &AuthError, headers: &mut HeaderMap) -> B {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        B::from(error.json_body())
    }
}

impl<B, F> RejectionBody<B> for F
where
    F: Fn(&AuthError, &mut HeaderMap) -> B + Clone + Send + Sync + 'static,
{
    fn body(&self, error: &AuthError, headers: &mut HeaderMap) -> B {
        self(error, headers)
    }
}

/// Builds the rejection response for `error`: its status, its
/// `WWW-Authenticate` challenge or `Retry-After`, the body from `body`, and
/// the error itself in the response extensions. Every rejection the crate
/// sends is made here.
pub(crate) fn reject<B>(error: AuthError, body: &impl RejectionBody<B>) -> Response<B> {
    crate::stats::rejection(error.status());
    let mut headers = HeaderMap::new();
    error.write_headers(&mut headers);
    let payload = body.body(&error, &mut headers);
    let mut response = Response::new(payload);
    *response.status_mut() = error.status();
    *response.headers_mut() = headers;
    response.extensions_mut().insert(error);
    response
}
