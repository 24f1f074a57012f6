//! [`JsonRpcScopesService`]: the service of [`JsonRpcScopes`].

use super::JsonRpcScopes;

crate::macros::define_guard_service! {
    /// The service of [`JsonRpcScopes`].
    pub struct JsonRpcScopesService for JsonRpcScopes(rules);
}

crate::buffered::impl_buffered_service!(JsonRpcScopesService, rules);
