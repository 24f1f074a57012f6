//! Token sources of your own: implement [`LoadToken`], wrap it in a
//! [`CachedSource`], and the layer validates your tokens with the same
//! cache, single flight, negative cache, fleet tier, stale-if-error and
//! RFC 6750 answers as introspected ones.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use tower_introspection::source::{CachedSource, LoadError, LoadToken};
//! use tower_introspection::{IntrospectionLayer, Principal};
//!
//! /// Opaque session tokens, looked up in a store of your own.
//! struct Sessions;
//!
//! impl LoadToken for Sessions {
//!     async fn load(&self, token: &str) -> Result<Principal, LoadError> {
//!         match token {
//!             "session-of-alice" => Principal::from_json(br#"{"active":true,"sub":"alice","exp":4102444800}"#)
//!                 .map_err(|_| LoadError::unusable("the session store is unreadable")),
//!             _ => Err(LoadError::invalid("the session is unknown")),
//!         }
//!     }
//! }
//!
//! let sessions = CachedSource::builder(Sessions)
//!     .name("sessions")
//!     .max_ttl(Duration::from_secs(30))
//!     .build()?;
//! let app = Router::new()
//!     .route("/whoami", get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }))
//!     .route_layer(IntrospectionLayer::new(sessions.clone()));
//!
//! let request = |token: &str| {
//!     http::Request::get("/whoami")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(axum::body::Body::empty())
//! };
//! assert_eq!(app.clone().oneshot(request("session-of-alice")?).await?.status(), 200);
//! let refused = app.oneshot(request("session-of-mallory")?).await?;
//! assert_eq!(refused.status(), 401);
//! assert_eq!(
//!     refused.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_token", error_description="the session is unknown""#,
//! );
//! assert_eq!(sessions.stats().misses, 2);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::engine::{LoadError, LoadErrorKind, LoadToken};

use crate::engine::{CacheSettings, Engine, Parts, Policy};
use crate::error::{AuthError, ConfigError};
use crate::macros::setters;
use crate::principal::Principal;
use crate::revocation::{Revocation, RevokeError, Revoked};
use crate::settings::{ClaimSettings, MAX_DURATION};
use crate::stats::CacheStats;

/// The default bound on one load of a [`CachedSource`]: 5 s.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`LoadToken`] source with the crate's cache in front; see the module
/// docs. Hand it to [`IntrospectionLayer::new`](crate::IntrospectionLayer::new),
/// and keep a clone for [`invalidate`](Self::invalidate) and
/// [`stats`](Self::stats). Cloning is a pointer copy.
pub struct CachedSource<L> {
    engine: Arc<Engine<Bounded<L>>>,
}

impl<L> Clone for CachedSource<L> {
    fn clone(&self) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
        }
    }
}

/// A source whose loads are bounded in time.
pub(crate) struct Bounded<L> {
    source: L,
    timeout: Duration,
}

impl<L: LoadToken> LoadToken for Bounded<L> {
    async fn load(&self, token: &str) -> Result<Principal, LoadError> {
        match tokio::time::timeout(self.timeout, self.source.load(token)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::warn!("a token source did not answer in time");
                Err(LoadError::unavailable("the token source did not answer in time"))
            }
        }
    }
}

impl<L: LoadToken> CachedSource<L> {
    /// Starts configuring the cache in front of `source`.
    pub fn builder(source: L) -> CachedSourceBuilder<L> {
        CachedSourceBuilder {
            source,
            name: String::new(),
            timeout: DEFAULT_LOAD_TIMEOUT,
            claims: ClaimSettings::default(),
            cache: CacheSettings::default(),
            allow_insecure_http: false,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// The source.
    pub fn source(&self) -> &L {
        &self.engine.source().source
    }

    /// Validates a token: the cached answer or a load, then the local
    /// checks (`exp`, `nbf`, issuer, audience, token kind). A
    /// sender-constrained token (any `cnf`) is refused, as by the layer's
    /// `Bearer` path.
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.engine
            .validate(token)
            .await
            .and_then(crate::binding::unless_bound)
    }

    /// Forgets what is cached for `token` (an answer or a refusal), here
    /// and, with a [shared cache](CachedSourceBuilder::shared_cache), on
    /// every replica.
    pub async fn invalidate(&self, token: &str) {
        self.engine.invalidate(token).await;
    }

    /// Carries out a revocation here; see
    /// [`Verifier::revoke`](crate::Verifier::revoke).
    pub async fn revoke(&self, revocation: &Revocation) -> Result<Revoked, RevokeError> {
        self.engine.revoke(revocation).await
    }

    /// Forgets everything cached, here and on every replica.
    pub fn invalidate_all(&self) {
        self.engine.invalidate_all();
    }

    /// A snapshot of the cache counters (`introspections` stays zero).
    pub fn stats(&self) -> CacheStats {
        self.engine.stats()
    }

    /// Runs moka's pending maintenance, so that entry counts are exact.
    pub async fn run_pending_tasks(&self) {
        self.engine.run_pending_tasks().await;
    }

    /// The engine, for the verifier that routes to it.
    pub(crate) fn engine(&self) -> Arc<Engine<Bounded<L>>> {
        Arc::clone(&self.engine)
    }
}

impl<L: LoadToken> fmt::Debug for CachedSource<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSource")
            .field("source", &std::any::type_name::<L>())
            .field("checks", self.engine.checks())
            .finish_non_exhaustive()
    }
}

/// Configures a [`CachedSource`]; see [`CachedSource::builder`].
#[must_use]
pub struct CachedSourceBuilder<L> {
    source: L,
    name: String,
    timeout: Duration,
    claims: ClaimSettings,
    cache: CacheSettings,
    allow_insecure_http: bool,
    #[cfg(feature = "redis")]
    shared: Option<crate::fleet::SharedCache>,
}

impl<L: LoadToken> CachedSourceBuilder<L> {
    setters! {
        /// A name for the source (default: empty). Keys are scoped to it: two
        /// sources that share a fleet cache must have different names, and the
        /// replicas of one source the same.
        pub fn name(name: impl Into<String>) => name = name.into();

        /// The longest one load may take (default 5 s, at most an hour); a
        /// source slower than that is answered 503.
        pub fn timeout(timeout: Duration) => timeout = timeout;

        /// Allow `http://` resource identifiers on non-loopback hosts in
        /// [`expected_resource`](Self::expected_resource) (default: refused).
        pub fn allow_insecure_http(allow: bool) => allow_insecure_http = allow;
    }

    crate::settings::claim_setters!();
    crate::settings::cache_setters!();

    setters! {
        /// Adds the fleet tier in Redis (see
        /// [`IntrospectorBuilder::shared_cache`](crate::introspection::IntrospectorBuilder::shared_cache)):
        /// one load per token for the whole fleet, and invalidations that reach
        /// every replica. Needs a Tokio runtime at `build()`.
        #[cfg(feature = "redis")]
        #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
        pub fn shared_cache(shared: crate::fleet::SharedCache) => shared = Some(shared);
    }

    /// Checks the settings and builds the cached source.
    pub fn build(self) -> Result<CachedSource<L>, ConfigError> {
        if self.timeout.is_zero() || self.timeout > MAX_DURATION {
            return Err(ConfigError::OutOfRange {
                setting: "timeout",
                range: "more than zero, at most one hour",
            });
        }
        self.cache.check()?;
        let checks = self.claims.checks(None, false, self.allow_insecure_http)?;
        let parts = Parts {
            settings: self.cache,
            checks,
            policy: Policy {
                refused: "the token was refused",
                remember_lasting: true,
                share_answers: true,
            },
            scope: ("source", &self.name),
            #[cfg(feature = "redis")]
            shared: self.shared.as_ref().map(|config| {
                let times = crate::engine::SharedTimes {
                    call: self.timeout,
                    load: self.timeout,
                };
                (config, times)
            }),
        };
        let source = Bounded {
            source: self.source,
            timeout: self.timeout,
        };
        Ok(CachedSource {
            engine: Engine::build(source, parts)?,
        })
    }
}

impl<L> fmt::Debug for CachedSourceBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSourceBuilder")
            .field("source", &std::any::type_name::<L>())
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
