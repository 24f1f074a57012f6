//! The response future of [`Introspection`](super::Introspection) and
//! [`RequireScopeService`](crate::RequireScopeService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

type BoxFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// Response future of the middleware: a rejection, the inner service's
    /// future, or a validation followed by the inner call.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Rejected { response: Option<Response<B>> },
        Inner { #[pin] future: F },
        Validating { future: BoxFuture<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn validating(future: BoxFuture<B, E>) -> Self {
        Self {
            kind: Kind::Validating { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Validating { future } => Poll::Ready(ready!(future.as_mut().poll(cx))),
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Inner { .. } => "inner",
            Kind::Validating { .. } => "validating",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
