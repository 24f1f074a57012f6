//! The response future of [`Introspection`](super::Introspection).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::{AuthError, DPOP_NONCE};
use crate::principal::Principal;
use crate::rejection::{reject, RejectionBody};

/// The verification of a token that was not a cache hit, yielding its
/// [`Principal`] and, for a DPoP request, a `DPoP-Nonce` value for the
/// response (RFC 9449 §8.2). Boxed because the verifiers' futures cannot be
/// named; hits never get here (`Introspection::call` answers them
/// synchronously).
pub(crate) type PendingPrincipal =
    Pin<Box<dyn Future<Output = Result<(Principal, Option<HeaderValue>), AuthError>> + Send>>;

pin_project! {
    /// Response future of [`Introspection`](super::Introspection): a
    /// rejection, the token's verification followed by the inner call, or
    /// the inner call.
    ///
    /// The inner service's future is not boxed.
    ///
    /// # Panics
    ///
    /// When polled again after it returned `Poll::Ready` (a breach of the
    /// [`Future`] contract by the caller), with the message
    /// `ResponseFuture polled after completion`, as tower-http's futures do.
    pub struct ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        Rejected { response: Option<S::Response> },
        Validating {
            principal: PendingPrincipal,
            pending: Option<(Request<ReqBody>, S)>,
            realm: HeaderValue,
            body: R,
            private: bool,
        },
        Calling {
            #[pin]
            future: S::Future,
            private: bool,
            // A DPoP nonce to hand the client; always `None` on the hit
            // path. Boxed: unboxed, it would grow every response future by
            // 40 bytes for a header a few DPoP responses carry.
            dpop_nonce: Option<Box<HeaderValue>>,
        },
        Done,
    }
}

/// Polling a future again after it returned `Ready` breaks the `Future`
/// contract; only the caller can do it, never request input. tower-http
/// panics with a message here too: a hang (`Poll::Pending` forever) would
/// hide the bug.
const POLLED_AFTER_COMPLETION: &str = "ResponseFuture polled after completion";

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn rejected(response: S::Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    /// `private`: as for [`validating`](Self::validating).
    pub(crate) fn calling(future: S::Future, private: bool) -> Self {
        Self {
            state: State::Calling {
                future,
                private,
                dpop_nonce: None,
            },
        }
    }

    /// `private`: the token came from the query; a successful response gets
    /// `Cache-Control: private` (RFC 6750 §2.3).
    pub(crate) fn validating(
        principal: PendingPrincipal,
        request: Request<ReqBody>,
        inner: S,
        realm: HeaderValue,
        body: R,
        private: bool,
    ) -> Self {
        Self {
            state: State::Validating {
                principal,
                pending: Some((request, inner)),
                realm,
                body,
                private,
            },
        }
    }
}

impl<S, ReqBody, ResBody, R> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RejectionBody<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Rejected { response } => {
                    let Some(response) = response.take() else {
                        panic!("{POLLED_AFTER_COMPLETION}");
                    };
                    state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Validating {
                    principal,
                    pending,
                    realm,
                    body,
                    private,
                } => {
                    let outcome = ready!(principal.as_mut().poll(cx));
                    let Some((mut request, mut inner)) = pending.take() else {
                        // Not reached: this state is always left once `pending` is taken.
                        panic!("{POLLED_AFTER_COMPLETION}");
                    };
                    let private = *private;
                    match outcome {
                        Ok((mut principal, dpop_nonce)) => {
                            // This state is left now: move the realm out rather than clone it.
                            principal.set_realm(std::mem::replace(realm, HeaderValue::from_static("")));
                            request.extensions_mut().insert(principal);
                            let future = inner.call(request);
                            state.set(State::Calling {
                                future,
                                private,
                                dpop_nonce: dpop_nonce.map(Box::new),
                            });
                        }
                        Err(error) => {
                            let response = reject(error.with_realm(Some(realm)), body);
                            state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Calling {
                    future,
                    private,
                    dpop_nonce,
                } => {
                    let result = ready!(future.poll(cx));
                    let private = *private;
                    let dpop_nonce = dpop_nonce.take();
                    // The inner future is done: drop it, so that a further
                    // poll panics here rather than polling it again.
                    state.set(State::Done);
                    let mut response = result?;
                    if private && response.status().is_success() {
                        mark_private(response.headers_mut());
                    }
                    if let Some(nonce) = dpop_nonce {
                        response.headers_mut().insert(DPOP_NONCE, *nonce);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("{POLLED_AFTER_COMPLETION}"),
            }
        }
    }
}

/// RFC 6750 §2.3: `Cache-Control: private`, unless the handler already
/// said `private` or the stronger `no-store`.
fn mark_private(headers: &mut http::HeaderMap) {
    let strong_enough = headers.get_all(header::CACHE_CONTROL).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|d| d.eq_ignore_ascii_case("private") || d.eq_ignore_ascii_case("no-store"))
        })
    });
    if !strong_enough {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

impl<S, ReqBody, R> fmt::Debug for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Rejected { .. } => "rejected",
            State::Validating { .. } => "validating",
            State::Calling { .. } => "calling",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{ready, Ready};

    use bytes::Bytes;

    use super::*;
    use crate::error::ErrorKind;
    use crate::rejection::JsonBody;

    /// Answers 200 at once.
    #[derive(Clone)]
    struct Ok200;

    impl Service<Request<()>> for Ok200 {
        type Response = Response<Bytes>;
        type Error = Infallible;
        type Future = Ready<Result<Response<Bytes>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            ready(Ok(Response::new(Bytes::new())))
        }
    }

    type Future200 = ResponseFuture<Ok200, (), JsonBody>;

    /// Polls to completion, which must take one poll, then polls once more.
    fn poll_twice(future: Future200) {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_ready());
        let _ = future.as_mut().poll(&mut cx);
    }

    fn validating(outcome: Result<Principal, AuthError>) -> Future200 {
        ResponseFuture::validating(
            Box::pin(ready(outcome.map(|principal| (principal, None)))),
            Request::new(()),
            Ok200,
            HeaderValue::from_static("api"),
            JsonBody,
            false,
        )
    }

    #[test]
    #[should_panic(expected = "ResponseFuture polled after completion")]
    fn rejected_polled_after_completion_panics() {
        poll_twice(ResponseFuture::rejected(Response::new(Bytes::new())));
    }

    #[test]
    #[should_panic(expected = "ResponseFuture polled after completion")]
    fn failed_validation_polled_after_completion_panics() {
        poll_twice(validating(Err(AuthError::new(ErrorKind::InvalidToken, "no"))));
    }

    #[test]
    #[should_panic(expected = "ResponseFuture polled after completion")]
    fn inner_call_polled_after_completion_panics() {
        poll_twice(ResponseFuture::calling(
            ready(Ok(Response::new(Bytes::new()))),
            false,
        ));
    }
}
