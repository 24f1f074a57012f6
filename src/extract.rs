//! axum extractors: [`Principal`], `Option<Principal>` and [`Scoped<R>`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::error::AuthError;
use crate::middleware::LayerRealm;
use crate::principal::Principal;
use crate::rejection::{reject, JsonBody};
use crate::scope::{authorize, required_scope, unauthenticated, ScopeRequirement};

/// The validated principal of the request.
///
/// Answers 500 (a server bug, like axum's `MissingExtension`) when the route
/// is not covered by [`IntrospectionLayer`](crate::IntrospectionLayer), and
/// 401 when the layer let the request through anonymously.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(principal) => Ok(principal.clone()),
            None => Err(unauthenticated(&parts.extensions)),
        }
    }
}

/// `None` for a request the layer let through anonymously (see
/// [`IntrospectionLayer::allow_anonymous`](crate::IntrospectionLayer::allow_anonymous)).
/// Still 500 when no layer ran at all.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(Some(principal.clone()));
        }
        match parts.extensions.get::<LayerRealm>() {
            Some(_) => Ok(None),
            None => Err(AuthError::missing_layer()),
        }
    }
}

/// A principal holding the scopes `R` requires; derefs to [`Principal`].
///
/// A token lacking them is answered 403 `insufficient_scope` with the
/// required scopes in the challenge, before the handler runs.
///
/// ```
/// use tower_introspection::{scope_requirement, Scoped};
///
/// scope_requirement! {
///     pub WriteItems: "write";
/// }
///
/// async fn create_item(principal: Scoped<WriteItems>) -> String {
///     format!("created by {}", principal.subject().unwrap_or("?"))
/// }
/// # let _ = axum::Router::<()>::new().route("/items", axum::routing::post(create_item));
/// ```
pub struct Scoped<R> {
    principal: Principal,
    requirement: PhantomData<fn() -> R>,
}

impl<R> Scoped<R> {
    /// The principal.
    pub fn into_inner(self) -> Principal {
        self.principal
    }
}

impl<R> Deref for Scoped<R> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<R> Clone for Scoped<R> {
    fn clone(&self) -> Self {
        Self {
            principal: self.principal.clone(),
            requirement: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Scoped<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Scoped").field(&self.principal).finish()
    }
}

impl<S: Send + Sync, R: ScopeRequirement> FromRequestParts<S> for Scoped<R> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let groups = R::GROUPS.iter().map(|group| group.iter().copied());
        let principal = authorize(&parts.extensions, groups, R::matcher(), || {
            required_scope(R::GROUPS.iter().map(|group| group.iter().copied()))
        })?;
        Ok(Self {
            principal,
            requirement: PhantomData,
        })
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        reject(self, &JsonBody)
    }
}
