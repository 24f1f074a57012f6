//! [`RequireScope`]: the route layer.

use std::fmt;
use std::sync::Arc;

use super::{required_scope, Exact, ScopeMatcher, ScopeRequirement};
use crate::principal::Scopes;
use crate::rejection::JsonBody;

/// A route layer that lets a request through only if its principal holds
/// the required scopes; any tower service can sit behind it.
///
/// Place it inside [`IntrospectionLayer`](crate::IntrospectionLayer) (with
/// axum: `.route_layer(RequireScope::all(["admin"]))` before the
/// introspection layer is added), so unknown paths stay 404.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tower_introspection::test_util::TestAuthServer;
/// use tower_introspection::{IntrospectionLayer, Introspector, scope::RequireScope};
///
/// let auth_server = TestAuthServer::start().await?;
/// let introspector = Introspector::builder(auth_server.introspection_url())
///     .client_secret_basic("rs-client", "rs-secret")
///     .build()?;
/// let admin = Router::new()
///     .route("/admin/stats", get(|| async { "ok" }))
///     .route_layer(RequireScope::all(["admin"]));
/// let app = Router::new().merge(admin).route_layer(IntrospectionLayer::new(introspector));
///
/// let token = auth_server.mint_token("read");
/// let request = http::Request::get("/admin/stats")
///     .header("authorization", format!("Bearer {token}"))
///     .body(axum::body::Body::empty())?;
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), 403);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer realm="api", error="insufficient_scope", scope="admin""#,
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RequireScope<R = JsonBody> {
    pub(super) requirement: Arc<Requirement>,
    pub(super) body: R,
}

pub(super) struct Requirement {
    pub(super) groups: Box<[Box<[Box<str>]>]>,
    pub(super) matcher: Box<dyn ScopeMatcher>,
    pub(super) required: Arc<str>,
}

impl RequireScope {
    /// Every one of `scopes` is required. An empty list requires nothing:
    /// any validated token passes.
    pub fn all<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::groups([scopes])
    }

    /// At least one of `scopes` is required. An empty list admits no token.
    pub fn any<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::groups(scopes.into_iter().map(|scope| [scope]))
    }

    /// Every scope of at least one group is required (an OR of AND-groups).
    pub fn groups<G, I, S>(groups: G) -> Self
    where
        G: IntoIterator<Item = I>,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_matcher(groups, Box::new(Exact))
    }

    /// The requirement of a [`ScopeRequirement`] type, with its matcher.
    pub fn of<Req: ScopeRequirement>() -> Self {
        let groups = Req::GROUPS.iter().map(|group| group.iter().copied());
        Self::with_matcher(groups, Box::new(StaticMatcher(Req::matcher())))
    }

    fn with_matcher<G, I, S>(groups: G, matcher: Box<dyn ScopeMatcher>) -> Self
    where
        G: IntoIterator<Item = I>,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let groups: Box<[Box<[Box<str>]>]> = groups
            .into_iter()
            .map(|group| group.into_iter().map(|s| s.into().into_boxed_str()).collect())
            .collect();
        let required = required_scope(groups.iter().map(|group| group.iter().map(|s| &**s)));
        Self {
            requirement: Arc::new(Requirement {
                groups,
                matcher,
                required,
            }),
            body: JsonBody,
        }
    }
}

/// Lets a `&'static dyn ScopeMatcher` from a [`ScopeRequirement`] be boxed.
struct StaticMatcher(&'static dyn ScopeMatcher);

impl ScopeMatcher for StaticMatcher {
    fn grants(&self, granted: &Scopes, required: &str) -> bool {
        self.0.grants(granted, required)
    }
}

impl<R> RequireScope<R> {
    /// Matches scopes with `matcher` instead of [`Exact`].
    pub fn matcher(mut self, matcher: impl ScopeMatcher) -> Self {
        let requirement = Requirement {
            groups: self.requirement.groups.clone(),
            matcher: Box::new(matcher),
            required: self.requirement.required.clone(),
        };
        self.requirement = Arc::new(requirement);
        self
    }
}

impl<R> fmt::Debug for RequireScope<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("groups", &self.requirement.groups)
            .finish_non_exhaustive()
    }
}
