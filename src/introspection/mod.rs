//! The RFC 7662 introspection client with its cache: [`Introspector`].
//!
//! One `Introspector` per authorization server and resource-server identity,
//! shared by every layer of a process (cloning is a pointer copy).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tower_introspection::Introspector;
//!
//! let introspector = Introspector::builder("https://as.example/oauth2/introspect")
//!     .client_secret_basic("my-api", "my-api-secret")
//!     .expected_audience("https://api.example")
//!     .max_ttl(Duration::from_secs(30))
//!     .build()?;
//! assert_eq!(introspector.endpoint(), "https://as.example/oauth2/introspect");
//! # Ok(()) }
//! ```

#[cfg(feature = "jwt")]
mod assertion;
mod auth;
mod builder;
mod client;
mod signed;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

#[cfg(feature = "jwt")]
pub use self::assertion::{AssertionAudience, ClientKey};
pub use self::builder::{IntrospectorBuilder, DEFAULT_MAX_CONCURRENT_INTROSPECTIONS};
pub use crate::claims::AnswerError;
pub use crate::discovery::{AuthorizationServerMetadata, Discovery, DiscoveryKind};
pub use crate::fetch::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT};

use self::auth::ClientAuth;
use crate::claims::Answer;
use crate::engine::{Engine, LoadError, LoadToken};
use crate::error::{AuthError, ConfigError};
use crate::fetch::{AsFault, HttpSettings};
use crate::principal::Principal;
use crate::revocation::{Revocation, RevokeError, Revoked};
use crate::stats::{CacheStats, Outcome, Outcomes};
use crate::validate::since_epoch;

/// Validates bearer tokens by introspection, with a cache in front.
///
/// Build one with [`Introspector::builder`], hand it to
/// [`IntrospectionLayer`](crate::IntrospectionLayer), and keep a clone for
/// revocation signals ([`invalidate`](Self::invalidate)) and statistics
/// ([`stats`](Self::stats)).
#[derive(Clone)]
pub struct Introspector {
    engine: Arc<Engine<IntrospectionSource>>,
}

/// The token source: one RFC 7662 call per token the cache does not hold.
pub(crate) struct IntrospectionSource {
    endpoint: url::Url,
    http: HttpSettings,
    auth: ClientAuth,
    token_type_hint: bool,
    limiter: Option<Limiter>,
    config_error_log: RateLimit,
    /// RFC 9701: ask for signed answers and check them.
    signed: Option<self::signed::SignedAnswers>,
    outcomes: Outcomes,
}

/// What a negative hit answers, as an introspection said.
const NOT_ACTIVE: &str = "the token is not active";

impl Introspector {
    /// Starts configuring an introspector for this introspection endpoint.
    pub fn builder(endpoint: impl Into<String>) -> IntrospectorBuilder {
        IntrospectorBuilder::new(endpoint.into())
    }

    /// Starts discovery from an issuer URL (RFC 8414 or OpenID Connect).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_introspection::test_util::TestAuthServer;
    /// use tower_introspection::Introspector;
    ///
    /// let auth_server = TestAuthServer::start().await?;
    /// let introspector = Introspector::discover(auth_server.issuer())
    ///     .introspector()
    ///     .await?
    ///     .client_secret_basic("rs-client", "rs-secret")
    ///     .build()?;
    /// assert_eq!(introspector.endpoint(), auth_server.introspection_url());
    /// # Ok(()) }
    /// ```
    pub fn discover(issuer: impl Into<String>) -> Discovery {
        Discovery::new(issuer.into())
    }

    /// Starts a builder for the introspection endpoint named in `metadata`.
    /// `build()` then refuses a client authentication method that the
    /// metadata's `introspection_endpoint_auth_methods_supported` omits.
    pub fn builder_from_metadata(
        metadata: &AuthorizationServerMetadata,
    ) -> Result<IntrospectorBuilder, ConfigError> {
        let endpoint = metadata.introspection_endpoint.clone().ok_or_else(|| {
            ConfigError::Discovery(format!(
                "the metadata of {} has no introspection_endpoint (RFC 8414 §2)",
                metadata.issuer
            ))
        })?;
        Ok(IntrospectorBuilder::new(endpoint)
            .supported_auth_methods(metadata.introspection_endpoint_auth_methods_supported.clone())
            .discovered_issuer(metadata.issuer.clone()))
    }

    /// The introspection endpoint.
    pub fn endpoint(&self) -> &str {
        self.engine.source().endpoint.as_str()
    }

    /// Validates a token: the cached answer or a new introspection call, then
    /// the local checks (expiry, `nbf`, issuer, audience, token type).
    ///
    /// Scopes are not checked here; see [`Scoped`](crate::Scoped) and
    /// [`RequireScope`](crate::scope::RequireScope).
    ///
    /// A sender-constrained token (any `cnf`: DPoP's `jkt`, RFC 8705's
    /// `x5t#S256`, …) is refused here with 401 `invalid_token`, as by the
    /// layer's `Bearer` path: this call sees no proof of possession.
    /// DPoP-bound tokens pass through
    /// [`IntrospectionLayer::dpop`](crate::IntrospectionLayer::dpop).
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.engine
            .validate(token)
            .await
            .and_then(crate::binding::unless_bound)
    }

    /// The engine, for the verifier that routes to it.
    pub(crate) fn engine(&self) -> &Engine<IntrospectionSource> {
        &self.engine
    }

    /// Forgets the cached answer for `token` (active or inactive), so the next
    /// request introspects it again. Call it on a revocation signal.
    ///
    /// An introspection call already in flight for the token still answers
    /// the requests waiting for it, but its answer is not cached.
    pub async fn invalidate(&self, token: &str) {
        self.engine.invalidate(token).await;
    }

    /// Carries out a revocation here; see
    /// [`Verifier::revoke`](crate::Verifier::revoke).
    pub async fn revoke(&self, revocation: &Revocation) -> Result<Revoked, RevokeError> {
        self.engine.revoke(revocation).await
    }

    /// Forgets every cached answer.
    ///
    /// With a [shared tier](IntrospectorBuilder::shared_cache), it is
    /// flushed in the background and every replica is told.
    pub fn invalidate_all(&self) {
        self.engine.invalidate_all();
    }

    /// A snapshot of the cache counters.
    pub fn stats(&self) -> CacheStats {
        let mut stats = self.engine.stats();
        stats.introspections = self.engine.source().outcomes.snapshot();
        stats
    }

    /// Runs moka's pending maintenance, so that [`stats`](Self::stats) entry
    /// counts are exact. Useful in tests.
    pub async fn run_pending_tasks(&self) {
        self.engine.run_pending_tasks().await;
    }

    /// The cache key of `token` (a keyed 128-bit hash), for benchmarks and tests.
    #[doc(hidden)]
    pub fn cache_key(&self, token: &str) -> [u8; 16] {
        self.engine.cache_key(token)
    }
}

impl LoadToken for IntrospectionSource {
    /// One introspection call, its outcome counted and logged once (not
    /// once per coalesced waiter).
    async fn load(&self, token: &str) -> Result<Principal, LoadError> {
        let span = tracing::debug_span!(
            "introspect",
            host = self.endpoint.host_str().unwrap_or_default(),
            outcome = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let result = self.call(token).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(Answer::Active(_)) => Outcome::Active,
            Ok(Answer::Inactive) => Outcome::Inactive,
            Err(Call::Throttled) => Outcome::Throttled,
            Err(Call::Fault(AsFault::Misconfigured(_))) => Outcome::ConfigError,
            Err(Call::Fault(_)) => Outcome::AsFault,
        };
        self.outcomes.count(outcome, elapsed);
        span.record("outcome", outcome.as_str());
        span.record("elapsed_ms", elapsed.as_secs_f64() * 1e3);
        let _entered = span.enter();
        match result {
            Ok(Answer::Active(principal)) => {
                tracing::debug!("token is active");
                Ok(principal)
            }
            Ok(Answer::Inactive) => {
                tracing::debug!("token is inactive");
                Err(LoadError::invalid(NOT_ACTIVE))
            }
            Err(Call::Throttled) => {
                tracing::warn!("too many introspection calls in flight; request shed");
                Err(LoadError::unusable(
                    "too many token validations are waiting for the authorization server",
                ))
            }
            Err(Call::Fault(fault)) => {
                let answer = match &fault {
                    AsFault::Misconfigured(reason) => {
                        if self.config_error_log.allow() {
                            tracing::error!(%reason, "introspection configuration error (logged at most once a minute)");
                        }
                        return Err(LoadError::misconfigured(
                            "the resource server could not authenticate to the authorization server",
                        ));
                    }
                    AsFault::Unavailable(_) => LoadError::unavailable(UNAVAILABLE),
                    AsFault::Unusable(_) => LoadError::unusable(UNAVAILABLE),
                };
                tracing::warn!(reason = fault.reason(), "authorization server unavailable");
                Err(answer)
            }
        }
    }
}

/// The 503 of an authorization server that could not be used.
const UNAVAILABLE: &str = "the authorization server is unavailable";

/// Why an introspection call gave no answer.
enum Call {
    Throttled,
    Fault(AsFault),
}

impl IntrospectionSource {
    /// Our own credential, a slot among the calls in flight, and the call.
    async fn call(&self, token: &str) -> Result<Answer, Call> {
        // Our own credential first: waiting for it takes no slot from
        // the calls that already have one.
        let bearer = match &self.auth {
            ClientAuth::ClientCredentials(fetcher) => {
                Some(fetcher.header(&self.http).await.map_err(Call::Fault)?)
            }
            _ => None,
        };
        let _permit = match &self.limiter {
            Some(limiter) => Some(limiter.acquire().await.ok_or(Call::Throttled)?),
            None => None,
        };
        let call = self::client::introspect(self, bearer, token);
        // Each request has this timeout already; this also bounds a
        // retry with a fresh credential after a 401.
        match tokio::time::timeout(self.http.timeout, call).await {
            Ok(answer) => answer.map_err(Call::Fault),
            Err(_) => Err(Call::Fault(AsFault::Unavailable(
                "the call to the introspection endpoint timed out".into(),
            ))),
        }
    }
}

impl Discovery {
    /// Fetches the metadata and starts an introspector builder for its
    /// introspection endpoint. Set the client authentication on the builder;
    /// `build()` refuses a method the metadata says the endpoint does not
    /// accept (RFC 8414 §2).
    pub async fn introspector(&self) -> Result<IntrospectorBuilder, ConfigError> {
        let metadata = self.metadata().await?;
        Introspector::builder_from_metadata(&metadata)
            .map(|b| b.allow_insecure_http(self.allows_insecure_http()))
    }
}

/// A bound on concurrent introspection calls: a flood of unknown tokens
/// cannot open thousands of connections to the AS. Excess calls wait up to
/// `wait`, then are answered 503.
#[derive(Debug)]
pub(crate) struct Limiter {
    permits: tokio::sync::Semaphore,
    wait: Duration,
}

impl Limiter {
    pub(crate) fn new(max: usize, wait: Duration) -> Self {
        Self {
            permits: tokio::sync::Semaphore::new(max),
            wait,
        }
    }

    async fn acquire(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = self.engine.source();
        f.debug_struct("Introspector")
            .field("endpoint", &source.endpoint.as_str())
            .field("client_auth", &source.auth.method_name())
            .field("client_id", &source.auth.client_id())
            .field("checks", self.engine.checks())
            .field("max_ttl", &self.engine.max_ttl())
            .finish_non_exhaustive()
    }
}

/// Lets one event through per interval, so a persistent configuration error
/// is logged once a minute rather than once per request.
#[derive(Debug, Default)]
struct RateLimit {
    last_secs: AtomicU64,
}

impl RateLimit {
    const INTERVAL_SECS: u64 = 60;

    fn allow(&self) -> bool {
        let now = since_epoch().as_secs();
        let last = self.last_secs.load(Ordering::Relaxed);
        (last == 0 || now >= last + Self::INTERVAL_SECS)
            && self
                .last_secs
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
