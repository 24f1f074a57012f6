//! [`Introspection`]: the middleware service.

use std::fmt;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response};
use tower_service::Service;

use super::body::{reject, RejectionBody};
use super::future::ResponseFuture;
use super::layer::IntrospectionLayer;
use crate::error::AuthError;
use crate::token::{ExtractToken, TokenSource};

/// Middleware that validates bearer tokens; see
/// [`IntrospectionLayer`](super::IntrospectionLayer).
#[derive(Clone)]
pub struct Introspection<S, E, R> {
    inner: S,
    layer: IntrospectionLayer<E, R>,
}

impl<S, E, R> Introspection<S, E, R> {
    pub(super) fn new(inner: S, layer: IntrospectionLayer<E, R>) -> Self {
        Self { inner, layer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, E, R, ReqBody, ResBody> Service<Request<ReqBody>> for Introspection<S, E, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    E: ExtractToken,
    R: RejectionBody<ResBody>,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let layer = &self.layer;
        let token = match layer.extractor.extract(&request) {
            Ok(Some(token)) => token,
            Ok(None) if layer.anonymous => {
                request.extensions_mut().insert(layer.covered.clone());
                return ResponseFuture::inner(self.inner.call(request));
            }
            Ok(None) => return ResponseFuture::rejected(self.reject(AuthError::missing_token())),
            Err(error) => return ResponseFuture::rejected(self.reject(error.into())),
        };
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let introspector = layer.introspector.clone();
        let covered = layer.covered.clone();
        let body = layer.body.clone();
        ResponseFuture::validating(Box::pin(async move {
            match introspector.validate(token.secret()).await {
                Ok(principal) => {
                    let extensions = request.extensions_mut();
                    extensions.insert(principal);
                    extensions.insert(covered);
                    let mut response = inner.call(request).await?;
                    if token.source() == TokenSource::Query && response.status().is_success() {
                        // RFC 6750 §2.3: a response to a query-token request is private.
                        response
                            .headers_mut()
                            .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
                    }
                    Ok(response)
                }
                Err(error) => Ok(reject(error.with_realm(Some(&covered.realm)), &body)),
            }
        }))
    }
}

impl<S, E, R> Introspection<S, E, R> {
    fn reject<B>(&self, error: AuthError) -> Response<B>
    where
        R: RejectionBody<B>,
    {
        reject(
            error.with_realm(Some(&self.layer.covered.realm)),
            &self.layer.body,
        )
    }
}

impl<S: fmt::Debug, E: fmt::Debug, R> fmt::Debug for Introspection<S, E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}
