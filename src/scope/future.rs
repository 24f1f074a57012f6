//! [`RequireScopeFuture`]: the response future of [`RequireScopeService`](super::RequireScopeService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

/// Polling a future again after it returned `Ready` breaks the `Future`
/// contract; only the caller can do it, never request input. tower-http
/// panics with a message here too: a hang (`Poll::Pending` forever) would
/// hide the bug.
const POLLED_AFTER_COMPLETION: &str = "RequireScopeFuture polled after completion";

pin_project! {
    /// Response future of [`RequireScopeService`].
    ///
    /// # Panics
    ///
    /// When polled again after it returned `Poll::Ready` (a breach of the
    /// [`Future`] contract by the caller), with the message
    /// `RequireScopeFuture polled after completion`, as tower-http's futures do.
    pub struct RequireScopeFuture<F, B> {
        #[pin]
        pub(super) kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    pub(super) enum Kind<F, B> {
        Rejected { response: Option<Response<B>> },
        Inner { #[pin] future: F },
        Done,
    }
}

impl<F, B, E> Future for RequireScopeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        let output = match kind.as_mut().project() {
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Ok(response),
                None => panic!("{POLLED_AFTER_COMPLETION}"),
            },
            KindProj::Inner { future } => ready!(future.poll(cx)),
            KindProj::Done => panic!("{POLLED_AFTER_COMPLETION}"),
        };
        // Done: drop the inner future, so that a further poll panics here
        // rather than polling it again.
        kind.set(Kind::Done);
        Poll::Ready(output)
    }
}

impl<F, B> fmt::Debug for RequireScopeFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Inner { .. } => "inner",
            Kind::Done => "done",
        };
        f.debug_struct("RequireScopeFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B> RequireScopeFuture<F, B> {
    pub(super) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(super) fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}
