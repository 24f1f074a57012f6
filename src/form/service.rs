//! [`FormBodyToken`]: the service of [`FormBodyTokenLayer`].

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::FormBodyTokenLayer;
use crate::buffered::{self, BoxFuture};
use crate::rejection::{JsonBody, RejectionBody};

/// The service of [`FormBodyTokenLayer`].
#[derive(Clone)]
pub struct FormBodyToken<S, R = JsonBody> {
    pub(super) inner: S,
    pub(super) layer: FormBodyTokenLayer<R>,
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
        buffered::call(&mut self.inner, &self.layer.guard, &self.layer.body, request)
    }
}

#[cfg(test)]
mod tests {
    use tower_layer::Layer;

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
