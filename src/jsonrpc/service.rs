//! [`JsonRpcScopesService`]: the service of [`JsonRpcScopes`].

use super::JsonRpcScopes;
use crate::rejection::JsonBody;

/// The service of [`JsonRpcScopes`].
#[derive(Clone)]
pub struct JsonRpcScopesService<S, R = JsonBody> {
    pub(super) inner: S,
    pub(super) layer: JsonRpcScopes<R>,
}

impl<S, R> JsonRpcScopesService<S, R> {
    crate::macros::define_inner_service_accessors!();
}

crate::buffered::impl_buffered_service!(JsonRpcScopesService, rules);
