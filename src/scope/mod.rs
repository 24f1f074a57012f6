//! Scope requirements: the [`ScopeRequirement`] trait behind the
//! [`Scoped`](crate::Scoped) extractor, the [`RequireScope`] route layer, and
//! [`ScopeMatcher`] strategies.
//!
//! A requirement is an OR of AND-groups: the token must hold every scope of
//! at least one group. A token lacking them is answered 403 with
//! `WWW-Authenticate: Bearer realm="…", error="insufficient_scope",
//! scope="…"`, where `scope` lists the first group: the scopes *required*,
//! never the ones granted (RFC 6750 §3.1, B13).

mod future;
mod layer;
mod service;

use std::sync::Arc;

use http::Extensions;

pub use self::future::RequireScopeFuture;
pub use self::layer::RequireScope;
pub use self::service::RequireScopeService;

use crate::error::AuthError;
use crate::middleware::LayerRealm;
use crate::principal::{Principal, Scopes};

/// Decides whether granted scopes satisfy a required scope.
pub trait ScopeMatcher: Send + Sync + 'static {
    /// Whether `granted` satisfies `required`.
    fn grants(&self, granted: &Scopes, required: &str) -> bool;
}

/// Exact matching (the default): `items:read` is granted only by `items:read`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exact;

impl ScopeMatcher for Exact {
    fn grants(&self, granted: &Scopes, required: &str) -> bool {
        granted.contains(required)
    }
}

/// Hierarchical matching on `:`: a scope grants itself and everything below
/// it. `items` grants `items:read` and `items:read:own`; `items:read` does
/// not grant `items`, and `item` does not grant `items:read`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hierarchical;

impl ScopeMatcher for Hierarchical {
    fn grants(&self, granted: &Scopes, required: &str) -> bool {
        granted.contains(required)
            || required
                .match_indices(':')
                .any(|(at, _)| granted.contains(&required[..at]))
    }
}

/// Wildcard matching: `items:*` grants every scope below `items:`
/// (`items:read`, `items:read:own`), but not `items` itself. A lone `*` grants
/// nothing special.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wildcard;

impl ScopeMatcher for Wildcard {
    fn grants(&self, granted: &Scopes, required: &str) -> bool {
        granted.contains(required)
            || granted.iter().any(|scope| {
                scope.strip_suffix('*').is_some_and(|prefix| {
                    prefix.ends_with(':') && required.len() > prefix.len() && required.starts_with(prefix)
                })
            })
    }
}

/// A scope requirement as a type, for the [`Scoped`](crate::Scoped)
/// extractor. Declare one with [`scope_requirement!`](crate::scope_requirement).
pub trait ScopeRequirement: Send + Sync + 'static {
    /// Alternatives (OR) of scope groups that must be held entirely (AND).
    const GROUPS: &'static [&'static [&'static str]];

    /// How granted scopes are matched (default: [`Exact`]).
    fn matcher() -> &'static dyn ScopeMatcher {
        &Exact
    }
}

/// Declares [`ScopeRequirement`] marker types, one per line.
///
/// ```
/// use tower_introspection::{scope_requirement, scope::{ScopeRequirement, Hierarchical}};
///
/// scope_requirement! {
///     /// `GET /items`.
///     pub ReadItems: "items:read";
///     /// Both scopes.
///     pub ReadWrite: all("read", "write");
///     /// Either scope.
///     pub ReadOrAdmin: any("read", "admin");
///     /// `items:write` and `items:read`, or `admin`.
///     pub Editors: ["items:write", "items:read"] | ["admin"];
///     /// `items` grants `items:read` with hierarchical matching.
///     pub ReadItemsTree: "items:read", using Hierarchical;
/// }
///
/// assert_eq!(ReadWrite::GROUPS, &[&["read", "write"][..]]);
/// assert_eq!(ReadOrAdmin::GROUPS, &[&["read"][..], &["admin"][..]]);
/// assert_eq!(Editors::GROUPS.len(), 2);
/// ```
#[macro_export]
macro_rules! scope_requirement {
    () => {};
    ($(#[$attr:meta])* $vis:vis $name:ident : $scope:literal $(, using $matcher:path)? ; $($rest:tt)*) => {
        $crate::scope_requirement!(@define [$(#[$attr])*] $vis $name [[$scope]] $($matcher)?);
        $crate::scope_requirement!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis $name:ident : all($($scope:literal),+ $(,)?) $(, using $matcher:path)? ; $($rest:tt)*) => {
        $crate::scope_requirement!(@define [$(#[$attr])*] $vis $name [[$($scope),+]] $($matcher)?);
        $crate::scope_requirement!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis $name:ident : any($($scope:literal),+ $(,)?) $(, using $matcher:path)? ; $($rest:tt)*) => {
        $crate::scope_requirement!(@define [$(#[$attr])*] $vis $name [$([$scope]),+] $($matcher)?);
        $crate::scope_requirement!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis $name:ident : $([$($scope:literal),+ $(,)?])|+ $(, using $matcher:path)? ; $($rest:tt)*) => {
        $crate::scope_requirement!(@define [$(#[$attr])*] $vis $name [$([$($scope),+]),+] $($matcher)?);
        $crate::scope_requirement!($($rest)*);
    };
    (@define [$($attr:tt)*] $vis:vis $name:ident [$([$($scope:literal),+]),+] $($matcher:path)?) => {
        $($attr)*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $crate::scope::ScopeRequirement for $name {
            const GROUPS: &'static [&'static [&'static str]] = &[$(&[$($scope),+]),+];
            $(
                fn matcher() -> &'static dyn $crate::scope::ScopeMatcher {
                    &$matcher
                }
            )?
        }
    };
}

/// Whether `scopes` satisfy one of the groups.
pub(crate) fn satisfies<'a, G, I>(scopes: &Scopes, groups: G, matcher: &dyn ScopeMatcher) -> bool
where
    G: IntoIterator<Item = I>,
    I: IntoIterator<Item = &'a str>,
{
    groups
        .into_iter()
        .any(|group| group.into_iter().all(|required| matcher.grants(scopes, required)))
}

/// The principal of a request that must hold a scope requirement:
/// 403 when it does not, 401 when the request was let through anonymously,
/// 500 when no [`IntrospectionLayer`](crate::IntrospectionLayer) ran.
pub(crate) fn authorize<'a, G, I>(
    extensions: &Extensions,
    groups: G,
    matcher: &dyn ScopeMatcher,
    required: impl FnOnce() -> Arc<str>,
) -> Result<Principal, AuthError>
where
    G: IntoIterator<Item = I>,
    I: IntoIterator<Item = &'a str>,
{
    let Some(principal) = extensions.get::<Principal>() else {
        return Err(unauthenticated(extensions));
    };
    if satisfies(principal.scopes(), groups, matcher) {
        Ok(principal.clone())
    } else {
        let error = AuthError::insufficient_scope(required()).with_realm(principal.realm());
        #[cfg(feature = "jwt")]
        let error = match principal.dpop_answer() {
            Some(answer) => error.with_dpop(answer.clone()),
            None => error,
        };
        Err(error)
    }
}

/// Why a request has no principal: let through anonymously (401 with the
/// layer's realm), or no layer ran at all (500).
pub(crate) fn unauthenticated(extensions: &Extensions) -> AuthError {
    let Some(LayerRealm(realm)) = extensions.get::<LayerRealm>() else {
        return AuthError::missing_layer();
    };
    let error = AuthError::missing_token().with_realm(Some(realm));
    // A layer with DPoP leaves its answer beside the realm.
    #[cfg(feature = "jwt")]
    let error = match extensions.get::<crate::dpop::LayerDpop>() {
        Some(dpop) => error.with_dpop(dpop.0.answer(false)),
        None => error,
    };
    error
}

/// The `scope` value of a 403 challenge: the first group, space-separated.
pub(crate) fn required_scope<'a, G, I>(groups: G) -> Arc<str>
where
    G: IntoIterator<Item = I>,
    I: IntoIterator<Item = &'a str>,
{
    let first: Vec<&str> = groups.into_iter().next().into_iter().flatten().collect();
    first.join(" ").into()
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll};

    use http::{Request, Response};
    use tower_layer::Layer;
    use tower_service::Service;

    use super::future::Kind;
    use super::*;

    fn scopes(s: &str) -> Scopes {
        s.parse().unwrap()
    }

    /// Each matcher against `(granted, required, grants)` cases.
    #[test]
    fn matchers() {
        let cases: [(&dyn ScopeMatcher, &str, &str, bool); 15] = [
            (&Exact, "items:read", "items:read", true),
            (&Exact, "items", "items:read", false),
            (&Hierarchical, "items", "items:read", true),
            (&Hierarchical, "items", "items:read:own", true),
            (&Hierarchical, "items:read", "items:read:own", true),
            (&Hierarchical, "items", "items", true),
            (&Hierarchical, "items:read", "items", false),
            (&Hierarchical, "item", "items:read", false),
            (&Hierarchical, "items:write", "items:read", false),
            (&Wildcard, "items:*", "items:read", true),
            (&Wildcard, "items:*", "items:read:own", true),
            (&Wildcard, "items:*", "items", false),
            (&Wildcard, "items:*", "itemsx:read", false),
            (&Wildcard, "*", "items:read", false),
            (&Wildcard, "items:read", "items:read", true),
        ];
        for (matcher, granted, required, grants) in cases {
            assert_eq!(
                matcher.grants(&scopes(granted), required),
                grants,
                "{granted} for {required}"
            );
        }
    }

    #[test]
    fn groups_are_or_of_and() {
        let groups: &[&[&str]] = &[&["a", "b"], &["c"]];
        let check = |s: &str| satisfies(&scopes(s), groups.iter().map(|g| g.iter().copied()), &Exact);
        assert!(check("a b"));
        assert!(check("c"));
        assert!(!check("a"));
        assert!(!check("b"));
        assert!(!check(""));
    }

    type Ready200 = std::future::Ready<Result<Response<()>, std::convert::Infallible>>;

    /// Polls to completion, which must take one poll, then polls once more.
    fn poll_twice(future: RequireScopeFuture<Ready200, ()>) {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_ready());
        let _ = future.as_mut().poll(&mut cx);
    }

    #[test]
    #[should_panic(expected = "RequireScopeFuture polled after completion")]
    fn rejected_polled_after_completion_panics() {
        poll_twice(RequireScopeFuture {
            kind: Kind::Rejected {
                response: Some(Response::new(())),
            },
        });
    }

    #[test]
    #[should_panic(expected = "RequireScopeFuture polled after completion")]
    fn inner_polled_after_completion_panics() {
        poll_twice(RequireScopeFuture {
            kind: Kind::Inner {
                future: std::future::ready(Ok(Response::new(()))),
            },
        });
    }

    /// The default type parameter names the service of a plain
    /// `RequireScope`, and the accessors reach the inner service.
    #[test]
    fn default_type_parameter_and_accessors() {
        let mut service: RequireScopeService<u8> = RequireScope::all(["read"]).layer(7);
        *service.get_mut() += 1;
        assert_eq!(*service.get_ref(), 8);
        assert_eq!(service.into_inner(), 8);
    }

    #[test]
    fn wildcard_needs_a_scope_below_its_prefix() {
        // `items:` is not below `items:`: the prefix alone is not granted.
        assert!(!Wildcard.grants(&scopes("items:*"), "items:"));
        assert!(Wildcard.grants(&scopes("items:*"), "items:r"));
    }

    crate::scope_requirement! {
        TreeRead: "items:read", using Hierarchical;
    }

    fn principal(scope: &str) -> Principal {
        Principal::from_json(format!(r#"{{"active":true,"scope":"{scope}"}}"#).as_bytes()).unwrap()
    }

    /// The status `layer` answers for a request carrying `principal`.
    async fn status(layer: RequireScope, principal: Option<Principal>) -> u16 {
        use tower::ServiceExt as _;
        let inner = tower::service_fn(|_: Request<Bytes>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Bytes::new()))
        });
        let mut request = Request::new(Bytes::new());
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        let response = layer.layer(inner).oneshot(request).await.unwrap();
        response.status().as_u16()
    }

    use bytes::Bytes;

    #[tokio::test]
    async fn require_scope_of_uses_the_requirement_matcher() {
        // `items` grants `items:read` only through `Hierarchical`.
        assert_eq!(
            status(RequireScope::of::<TreeRead>(), Some(principal("items"))).await,
            200
        );
        assert_eq!(
            status(RequireScope::of::<TreeRead>(), Some(principal("item"))).await,
            403
        );
        assert_eq!(
            status(RequireScope::all(["items:read"]), Some(principal("items"))).await,
            403
        );
        assert_eq!(
            status(
                RequireScope::all(["items:read"]).matcher(Hierarchical),
                Some(principal("items"))
            )
            .await,
            200
        );
        // No principal and no introspection layer: a server bug, 500.
        assert_eq!(status(RequireScope::all(["items:read"]), None).await, 500);
    }

    /// An inner service that is never ready.
    #[derive(Debug, Clone)]
    struct NotReady;

    impl Service<Request<Bytes>> for NotReady {
        type Response = Response<Bytes>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Response<Bytes>, &'static str>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err("not ready"))
        }

        fn call(&mut self, _: Request<Bytes>) -> Self::Future {
            std::future::ready(Err("called"))
        }
    }

    #[test]
    fn poll_ready_is_the_inner_services() {
        let mut service = RequireScope::all(["read"]).layer(NotReady);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(service.poll_ready(&mut cx), Poll::Ready(Err("not ready")));
    }

    #[test]
    fn debug_shows_the_requirement_and_the_state() {
        let layer = RequireScope::groups([["read", "write"]]);
        assert_eq!(
            format!("{layer:?}"),
            r#"RequireScope { groups: [["read", "write"]], .. }"#
        );
        let service = layer.layer(NotReady);
        assert_eq!(
            format!("{service:?}"),
            r#"RequireScopeService { inner: NotReady, layer: RequireScope { groups: [["read", "write"]], .. } }"#
        );
        let future: RequireScopeFuture<Ready200, ()> = RequireScopeFuture {
            kind: Kind::Rejected { response: None },
        };
        assert_eq!(
            format!("{future:?}"),
            r#"RequireScopeFuture { state: "rejected" }"#
        );
        let future: RequireScopeFuture<Ready200, ()> = RequireScopeFuture {
            kind: Kind::Inner {
                future: std::future::ready(Ok(Response::new(()))),
            },
        };
        assert_eq!(format!("{future:?}"), r#"RequireScopeFuture { state: "inner" }"#);
        let future: RequireScopeFuture<Ready200, ()> = RequireScopeFuture { kind: Kind::Done };
        assert_eq!(format!("{future:?}"), r#"RequireScopeFuture { state: "done" }"#);
    }

    #[test]
    fn required_scope_lists_the_first_group() {
        let groups: &[&[&str]] = &[&["read", "write"], &["admin"]];
        assert_eq!(
            &*required_scope(groups.iter().map(|g| g.iter().copied())),
            "read write"
        );
    }
}
