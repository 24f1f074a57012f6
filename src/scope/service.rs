//! [`RequireScopeService`]: the service of [`RequireScope`].

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{authorize, RequireScope, RequireScopeFuture};
use crate::rejection::{reject, RejectionBody};

crate::macros::define_guard_service! {
    /// The service of [`RequireScope`].
    pub struct RequireScopeService for RequireScope(requirement);
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopeService<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RejectionBody<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireScopeFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let requirement = &*self.layer.requirement;
        let groups = requirement.groups.iter().map(|group| group.iter().map(|s| &**s));
        match authorize(request.extensions(), groups, &*requirement.matcher, || {
            requirement.required.clone()
        }) {
            Ok(_) => RequireScopeFuture::inner(self.inner.call(request)),
            Err(error) => RequireScopeFuture::rejected(reject(error, &self.layer.body)),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for RequireScopeService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopeService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}
