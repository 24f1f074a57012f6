//! [`JsonRpcScopesService`]: the service of [`JsonRpcScopes`].

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::JsonRpcScopes;
use crate::buffered::{self, BoxFuture};
use crate::rejection::{JsonBody, RejectionBody};

/// The service of [`JsonRpcScopes`].
#[derive(Clone)]
pub struct JsonRpcScopesService<S, R = JsonBody> {
    pub(super) inner: S,
    pub(super) layer: JsonRpcScopes<R>,
}

impl<S, R> JsonRpcScopesService<S, R> {
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

impl<S: fmt::Debug, R> fmt::Debug for JsonRpcScopesService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRpcScopesService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, R, B, ResBody> Service<Request<B>> for JsonRpcScopesService<S, R>
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
        buffered::call(&mut self.inner, &self.layer.rules, &self.layer.body, request)
    }
}
