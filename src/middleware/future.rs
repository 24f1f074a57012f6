//! The response future of [`Introspection`](super::Introspection).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{reject, RejectionBody};
use crate::error::AuthError;
use crate::principal::Principal;

/// The token's validation. Boxed because moka's lookup future cannot be
/// named; kept small by boxing the miss path separately.
pub(crate) type Validation = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>;

pin_project! {
    /// Response future of [`Introspection`](super::Introspection): a
    /// rejection, a validation followed by the inner call, or the inner call.
    ///
    /// The inner service's future is not boxed.
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
            validation: Validation,
            pending: Option<(Request<ReqBody>, S)>,
            realm: HeaderValue,
            body: R,
            private: bool,
        },
        Calling {
            #[pin]
            future: S::Future,
            private: bool,
        },
    }
}

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

    pub(crate) fn calling(future: S::Future) -> Self {
        Self {
            state: State::Calling {
                future,
                private: false,
            },
        }
    }

    /// `private`: the token came from the query; a successful response gets
    /// `Cache-Control: private` (RFC 6750 §2.3).
    pub(crate) fn validating(
        validation: Validation,
        request: Request<ReqBody>,
        inner: S,
        realm: HeaderValue,
        body: R,
        private: bool,
    ) -> Self {
        Self {
            state: State::Validating {
                validation,
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
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending, // polled after completion
                    };
                }
                StateProj::Validating {
                    validation,
                    pending,
                    realm,
                    body,
                    private,
                } => {
                    let outcome = ready!(validation.as_mut().poll(cx));
                    let Some((mut request, mut inner)) = pending.take() else {
                        return Poll::Pending; // polled after completion
                    };
                    let private = *private;
                    match outcome {
                        Ok(mut principal) => {
                            // This state is left now: move the realm out rather than clone it.
                            principal.set_realm(std::mem::replace(realm, HeaderValue::from_static("")));
                            request.extensions_mut().insert(principal);
                            let future = inner.call(request);
                            state.set(State::Calling { future, private });
                        }
                        Err(error) => {
                            let response = reject(error.with_realm(Some(realm)), body);
                            state.set(State::Rejected { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Calling { future, private } => {
                    let mut response = ready!(future.poll(cx))?;
                    if *private && response.status().is_success() {
                        mark_private(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
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
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
