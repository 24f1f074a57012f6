//! One buffered-body service for the guards that must read a request's
//! body before they can decide ([`FormBodyTokenLayer`] reads a form's
//! `access_token`, [`JsonRpcScopes`] the JSON-RPC operations): each supplies
//! a [`BodyGuard`]; reading the body (bounded), refusing, and handing the
//! same bytes on are written once, here.
//!
//! [`FormBodyTokenLayer`]: crate::form::FormBodyTokenLayer
//! [`JsonRpcScopes`]: crate::jsonrpc::JsonRpcScopes

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_service::Service;

use crate::error::AuthError;
use crate::rejection::{reject, RejectionBody};

/// The future of a buffered-body service.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a guard decides before the body is read.
pub(crate) enum Plan {
    /// Hand the request on untouched, body unread.
    Pass,
    /// Answer with this refusal, body unread.
    Refuse(AuthError),
    /// Read at most this many bytes, then [`BodyGuard::inspect`] them.
    Read(usize),
}

/// The decisions of a guard that reads bodies.
pub(crate) trait BodyGuard: Clone + Send + Sync + 'static {
    /// What to do with `request`, from its head alone.
    fn plan<B>(&self, request: &Request<B>) -> Plan;

    /// The refusal of a body larger than the plan's limit, or broken off.
    fn unreadable(&self, extensions: &Extensions) -> AuthError;

    /// The whole body: may add extensions, or refuse the request.
    fn inspect(&self, parts: &mut Parts, body: &Bytes) -> Result<(), AuthError>;
}

/// The call of a buffered-body service: `inner` (the service driven to
/// readiness; a clone is left in its place) gets the request, its body read
/// and handed on unchanged, unless `guard` refuses it, answered with
/// `rejection`.
pub(crate) fn call<S, G, R, B, ResBody>(
    inner: &mut S,
    guard: &G,
    rejection: &R,
    request: Request<B>,
) -> BoxFuture<Result<Response<ResBody>, S::Error>>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    G: BodyGuard,
    R: RejectionBody<ResBody>,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
    ResBody: Send + 'static,
{
    let clone = inner.clone();
    let mut inner = std::mem::replace(inner, clone);
    let max = match guard.plan(&request) {
        Plan::Pass => return Box::pin(inner.call(request)),
        Plan::Refuse(error) => {
            let response = reject(error, rejection);
            return Box::pin(async move { Ok(response) });
        }
        Plan::Read(max) => max,
    };
    // Only requests whose body is read pay for these clones (a shared
    // table or buffer and, by default, a unit struct).
    let guard = guard.clone();
    let rejection = rejection.clone();
    Box::pin(async move {
        let (mut parts, body) = request.into_parts();
        let bytes = match Limited::new(body, max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Ok(reject(guard.unreadable(&parts.extensions), &rejection)),
        };
        if let Err(error) = guard.inspect(&mut parts, &bytes) {
            return Ok(reject(error, &rejection));
        }
        inner.call(Request::from_parts(parts, B::from(bytes))).await
    })
}

/// The `Debug` and `Service` impls of a buffered-body service `$name<S, R>`
/// with fields `inner` and `layer`, whose layer holds `$guard` and `body`.
macro_rules! impl_buffered_service {
    ($name:ident, $guard:ident) => {
        impl<S: std::fmt::Debug, R> std::fmt::Debug for $name<S, R> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("inner", &self.inner)
                    .field("layer", &self.layer)
                    .finish()
            }
        }

        impl<S, R, B, ResBody> tower_service::Service<http::Request<B>> for $name<S, R>
        where
            S: tower_service::Service<http::Request<B>, Response = http::Response<ResBody>>
                + Clone
                + Send
                + 'static,
            S::Future: Send,
            R: crate::rejection::RejectionBody<ResBody>,
            B: http_body::Body + From<bytes::Bytes> + Send + 'static,
            B::Data: Send,
            B::Error: std::error::Error + Send + Sync + 'static,
            ResBody: Send + 'static,
        {
            type Response = http::Response<ResBody>;
            type Error = S::Error;
            type Future = crate::buffered::BoxFuture<Result<http::Response<ResBody>, S::Error>>;

            fn poll_ready(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                self.inner.poll_ready(cx)
            }

            fn call(&mut self, request: http::Request<B>) -> Self::Future {
                crate::buffered::call(
                    &mut self.inner,
                    &self.layer.$guard,
                    &self.layer.body,
                    request,
                )
            }
        }
    };
}

pub(crate) use impl_buffered_service;
