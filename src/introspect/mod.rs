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
#[cfg(feature = "redis")]
mod shared;
mod signed;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

#[cfg(feature = "jwt")]
pub use self::assertion::{AssertionAudience, ClientKey};
pub use self::builder::{IntrospectorBuilder, DEFAULT_MAX_CONCURRENT_INTROSPECTIONS};

use self::auth::ClientAuth;
use crate::cache::{key_prefix, Entry, Key, LoadTicket, TokenCache};
use crate::claims::Answer;
use crate::clock::{self, Now};
use crate::discovery::{AuthorizationServerMetadata, Discovery};
use crate::error::{AuthError, ConfigError, ErrorKind};
use crate::fetch::{AsFault, HttpSettings};
use crate::principal::Principal;
use crate::stats::{CacheStats, Outcome};
use crate::validate::{since_epoch, unix_now, Checks};

/// Validates bearer tokens by introspection, with a cache in front.
///
/// Build one with [`Introspector::builder`], hand it to
/// [`IntrospectionLayer`](crate::IntrospectionLayer), and keep a clone for
/// revocation signals ([`invalidate`](Self::invalidate)) and statistics
/// ([`stats`](Self::stats)).
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: url::Url,
    http: HttpSettings,
    auth: ClientAuth,
    token_type_hint: bool,
    checks: Checks,
    cache: TokenCache,
    limiter: Option<Limiter>,
    config_error_log: RateLimit,
    /// RFC 9701: ask for signed answers and check them.
    signed: Option<self::signed::SignedAnswers>,
    /// The second tier, shared by a fleet of replicas.
    #[cfg(feature = "redis")]
    shared: Option<crate::fleet::SharedTier>,
}

/// Why loading an answer did not produce a cacheable active entry.
enum LoadError {
    Inactive,
    Expired,
    Throttled,
    Fault(AsFault),
    /// An active answer to serve to the requests waiting for it, but not to
    /// cache.
    Uncacheable(Entry),
}

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
        self.inner.endpoint.as_str()
    }

    /// Validates a token: the cached answer or a new introspection call, then
    /// the local checks (expiry, `nbf`, issuer, audience, token type).
    ///
    /// Scopes are not checked here; see [`Scoped`](crate::Scoped) and
    /// [`RequireScope`](crate::RequireScope).
    ///
    /// A sender-constrained token (any `cnf`: DPoP's `jkt`, RFC 8705's
    /// `x5t#S256`, …) is refused here with 401 `invalid_token`, as by the
    /// layer's `Bearer` path: this call sees no proof of possession.
    /// DPoP-bound tokens pass through
    /// [`IntrospectionLayer::dpop`](crate::IntrospectionLayer::dpop).
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.validate_any(token).await.and_then(Principal::unless_bound)
    }

    /// As [`validate`](Self::validate), DPoP-bound tokens included: the
    /// layer decides what their binding requires.
    pub(crate) async fn validate_any(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(outcome) = self.cached(token, clock::now()) {
            return outcome;
        }
        let inner = &*self.inner;
        let key = inner.cache.key(token);
        let claims = match &inner.cache.active {
            Some(active) => match active.get(&key).await {
                Some(claims) if !inner.cache.is_stale(&claims) => {
                    inner.cache.counters.hit();
                    claims
                }
                // Boxed so that the hot path's future stays small.
                Some(stale) => Box::pin(self.refresh(key, token, stale)).await?,
                None => Box::pin(self.miss(key, token)).await?,
            },
            None => {
                inner.cache.counters.miss();
                self.load(key, token, None).await.or_else(|e| e.into_uncached())?
            }
        };
        let principal = Principal::from_shared(claims);
        inner.checks.check(&principal, unix_now())?;
        Ok(principal)
    }

    /// The outcome for `token` if its answer is cached and fresh at `now`:
    /// the cache's read index and the local checks, with no `await`. `None`:
    /// ask [`validate`](Self::validate).
    #[inline]
    pub(crate) fn cached(&self, token: &str, now: Now) -> Option<Result<Principal, AuthError>> {
        let outcome = self.peek_cached(token, now)?;
        self.count_hit();
        Some(outcome)
    }

    /// As [`cached`](Self::cached), without counting a hit.
    #[inline]
    pub(crate) fn peek_cached(&self, token: &str, now: Now) -> Option<Result<Principal, AuthError>> {
        self.inner.cache.peek_checked(&self.inner.checks, token, now)
    }

    pub(crate) fn count_hit(&self) {
        self.inner.cache.counters.hit();
    }

    /// Not in the active cache: the inactive cache, or one introspection
    /// call shared by every concurrent request for the same key.
    async fn miss(&self, key: Key, token: &str) -> Result<Entry, AuthError> {
        let cache = &self.inner.cache;
        if self.negative_hit(&key).await {
            cache.counters.negative_hit();
            return Err(LoadError::Inactive.to_auth_error());
        }
        cache.counters.miss();
        let Some(active) = &cache.active else {
            return self.load(key, token, None).await.or_else(|e| e.into_uncached());
        };
        // Taken before the load can start, so no invalidation slips between.
        let ticket = cache.invalidations.ticket(key);
        // With a shared tier, the in-process single flight covers its
        // lookup too: one Redis round trip per key and replica.
        #[cfg(feature = "redis")]
        let load = self.load_through(key, token, Some(&ticket));
        #[cfg(not(feature = "redis"))]
        let load = self.load(key, token, Some(&ticket));
        let result = cache.get_or_load(active, key, token, &ticket, load).await;
        result.or_else(|error| error.uncached())
    }

    /// An answer older than `max_ttl` but within the stale-if-error grace:
    /// ask again (one call per key at a time), and fall back to it only while
    /// the AS is unavailable. After a failed refresh the stale answer is
    /// served without asking for a short while, so an outage does not make
    /// every request wait for a timeout.
    async fn refresh(&self, key: Key, token: &str, stale: Entry) -> Result<Entry, AuthError> {
        let cache = &self.inner.cache;
        if let Some(failed) = &cache.refresh_failed {
            if failed.contains_key(&key) && cache.within_grace(&stale) {
                cache.counters.stale_served();
                return Ok(stale);
            }
        }
        cache.counters.miss();
        let ticket = cache.invalidations.ticket(key);
        let loaded = AtomicBool::new(false);
        let load = async {
            loaded.store(true, Ordering::Relaxed);
            self.load(key, token, Some(&ticket)).await
        };
        let result = match &cache.refreshing {
            Some(refreshing) => refreshing.try_get_with(key, load).await,
            None => load.await.map_err(Arc::new),
        };
        let error = match result {
            Ok(fresh) => {
                // Only the caller that made the call stores its answer; the
                // others were handed the same one.
                if loaded.load(Ordering::Relaxed) {
                    if let Some(active) = &cache.active {
                        active.insert(key, fresh.clone()).await;
                        cache.admit(key, token, &fresh, &ticket).await;
                    }
                    // `refreshing` only coalesces concurrent refreshes: the
                    // next one must reach the AS, however short `max_ttl`.
                    if let Some(refreshing) = &cache.refreshing {
                        refreshing.invalidate(&key).await;
                    }
                }
                return Ok(fresh);
            }
            Err(error) => error,
        };
        match &*error {
            LoadError::Uncacheable(claims) => Ok(claims.clone()),
            // Only a transient fault of the AS: a local overload (throttling)
            // or an AS that answers but not usably (a 4xx for a revoked
            // token, say) must not stretch a revoked token's life.
            LoadError::Fault(AsFault::Unavailable(_)) if cache.within_grace(&stale) => {
                if let Some(failed) = &cache.refresh_failed {
                    failed.insert(key, ()).await;
                }
                cache.counters.stale_served();
                tracing::debug!(key = %key_prefix(&key), "serving a stale answer while the AS is unavailable");
                Ok(stale)
            }
            // The AS says no: forget the stale answer.
            LoadError::Inactive | LoadError::Expired => {
                cache.forget(&key).await;
                Err(error.to_auth_error())
            }
            other => Err(other.to_auth_error()),
        }
    }

    /// Forgets the cached answer for `token` (active or inactive), so the next
    /// request introspects it again. Call it on a revocation signal.
    ///
    /// An introspection call already in flight for the token still answers
    /// the requests waiting for it, but its answer is not cached.
    pub async fn invalidate(&self, token: &str) {
        let cache = &self.inner.cache;
        cache.invalidate(&cache.key(token)).await;
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            shared.invalidate(token).await;
        }
    }

    /// Forgets every cached answer.
    ///
    /// With a [shared tier](IntrospectorBuilder::shared_cache), it is
    /// flushed in the background and every replica is told.
    pub fn invalidate_all(&self) {
        self.inner.cache.invalidate_all();
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            shared.invalidate_all();
        }
    }

    /// The shared tier, if one is configured: DPoP proofs' `jti`s are
    /// marked there too (a replay cache shared by the fleet).
    #[cfg(all(feature = "redis", feature = "jwt"))]
    pub(crate) fn shared_tier(&self) -> Option<&crate::fleet::SharedTier> {
        self.inner.shared.as_ref()
    }

    /// A snapshot of the cache counters.
    pub fn stats(&self) -> CacheStats {
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut stats = self.inner.cache.stats();
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            stats.shared = shared.stats();
        }
        stats
    }

    /// Runs moka's pending maintenance, so that [`stats`](Self::stats) entry
    /// counts are exact. Useful in tests.
    pub async fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks().await;
    }

    /// The cache key of `token` (a keyed 128-bit hash), for benchmarks and tests.
    #[doc(hidden)]
    pub fn cache_key(&self, token: &str) -> [u8; 16] {
        self.inner.cache.key(token)
    }

    async fn negative_hit(&self, key: &Key) -> bool {
        match &self.inner.cache.inactive {
            Some(inactive) => inactive.get(key).await.is_some(),
            None => false,
        }
    }

    /// One introspection call, its outcome counted and logged once (not once
    /// per coalesced waiter), and turned into a cacheable entry (unless
    /// `ticket` was spoiled by an invalidation meanwhile).
    async fn load(&self, key: Key, token: &str, ticket: Option<&LoadTicket<'_>>) -> Result<Entry, LoadError> {
        let inner = &*self.inner;
        let counters = &inner.cache.counters;
        let span = tracing::debug_span!(
            "introspect",
            key = %key_prefix(&key),
            host = inner.endpoint.host_str().unwrap_or_default(),
            outcome = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let result = async {
            // Our own credential first: waiting for it takes no slot from
            // the calls that already have one.
            let bearer = match &inner.auth {
                ClientAuth::ClientCredentials(fetcher) => {
                    Some(fetcher.header(&inner.http).await.map_err(LoadError::Fault)?)
                }
                _ => None,
            };
            let _permit = match &inner.limiter {
                Some(limiter) => Some(limiter.acquire().await?),
                None => None,
            };
            let call = self::client::introspect(
                &inner.http,
                &inner.endpoint,
                &inner.auth,
                bearer,
                inner.token_type_hint,
                token,
                inner.signed.as_ref(),
            );
            // Each request has this timeout already; this also bounds a
            // retry with a fresh credential after a 401.
            match tokio::time::timeout(inner.http.timeout, call).await {
                Ok(answer) => answer.map_err(LoadError::Fault),
                Err(_) => Err(LoadError::Fault(AsFault::Unavailable(
                    "the call to the introspection endpoint timed out".into(),
                ))),
            }
        }
        .instrument(span.clone())
        .await;
        let elapsed = started.elapsed();
        let (outcome, result) = match result {
            Ok(Answer::Active(principal)) => {
                (Outcome::Active, self.active_entry(key, principal, ticket).await)
            }
            Ok(Answer::Inactive) => {
                if let Some(inactive) = &inner.cache.inactive {
                    inactive.insert(key, ()).await;
                }
                (Outcome::Inactive, Err(LoadError::Inactive))
            }
            Err(LoadError::Throttled) => (Outcome::Throttled, Err(LoadError::Throttled)),
            Err(LoadError::Fault(AsFault::Misconfigured(reason))) => (
                Outcome::ConfigError,
                Err(LoadError::Fault(AsFault::Misconfigured(reason))),
            ),
            Err(error) => (Outcome::AsFault, Err(error)),
        };
        counters.introspection(outcome, elapsed);
        span.record("outcome", outcome.as_str());
        span.record("elapsed_ms", elapsed.as_secs_f64() * 1e3);
        let _entered = span.enter();
        match &result {
            Ok(_) => tracing::debug!("token is active"),
            Err(LoadError::Uncacheable(_)) => tracing::debug!("token is active; answer not cached"),
            Err(LoadError::Inactive) => tracing::debug!("token is inactive"),
            Err(LoadError::Expired) => tracing::debug!("the AS said active, but exp has passed"),
            Err(LoadError::Throttled) => {
                tracing::warn!("too many introspection calls in flight; request shed")
            }
            Err(LoadError::Fault(AsFault::Unavailable(reason) | AsFault::Unusable(reason))) => {
                tracing::warn!(%reason, "authorization server unavailable")
            }
            Err(LoadError::Fault(AsFault::Misconfigured(reason))) => {
                if inner.config_error_log.allow() {
                    tracing::error!(%reason, "introspection configuration error (logged at most once a minute)");
                }
            }
        }
        result
    }

    /// An active answer as a cache entry, or why it must not be cached:
    /// its `exp` has passed (within the leeway it is still served, uncached;
    /// beyond it the key joins the inactive cache), or the token was
    /// invalidated while the call was in flight.
    async fn active_entry(
        &self,
        key: Key,
        principal: Principal,
        ticket: Option<&LoadTicket<'_>>,
    ) -> Result<Entry, LoadError> {
        let inner = &*self.inner;
        if !inner.cache.cacheable(&principal, since_epoch()) {
            let exp = principal.expires_at().unwrap_or(i64::MIN);
            if exp.saturating_add(inner.checks.leeway_secs) > unix_now() {
                return Err(LoadError::Uncacheable(inner.cache.entry(principal)));
            }
            if let Some(inactive) = &inner.cache.inactive {
                inactive.insert(key, ()).await;
            }
            return Err(LoadError::Expired);
        }
        let entry = inner.cache.entry(principal);
        if ticket.is_none_or(LoadTicket::spoiled) {
            return Err(LoadError::Uncacheable(entry));
        }
        Ok(entry)
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

    async fn acquire(&self) -> Result<tokio::sync::SemaphorePermit<'_>, LoadError> {
        match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(LoadError::Throttled),
        }
    }
}

impl fmt::Debug for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inactive => f.write_str("Inactive"),
            Self::Expired => f.write_str("Expired"),
            Self::Throttled => f.write_str("Throttled"),
            Self::Fault(fault) => f.debug_tuple("Fault").field(fault).finish(),
            Self::Uncacheable(_) => f.write_str("Uncacheable"),
        }
    }
}

impl LoadError {
    /// An uncacheable answer is still an answer; anything else is an error.
    fn into_uncached(self) -> Result<Entry, AuthError> {
        match self {
            Self::Uncacheable(entry) => Ok(entry),
            other => Err(other.to_auth_error()),
        }
    }

    fn uncached(self: Arc<Self>) -> Result<Entry, AuthError> {
        match &*self {
            Self::Uncacheable(entry) => Ok(entry.clone()),
            other => Err(other.to_auth_error()),
        }
    }

    fn to_auth_error(&self) -> AuthError {
        match self {
            Self::Uncacheable(_) => AuthError::invalid_token("the token could not be validated"),
            Self::Inactive => AuthError::invalid_token("the token is not active"),
            Self::Expired => AuthError::invalid_token("the token has expired"),
            Self::Fault(AsFault::Unavailable(_) | AsFault::Unusable(_)) => {
                AuthError::new(ErrorKind::Unavailable, "the authorization server is unavailable")
            }
            Self::Throttled => AuthError::new(
                ErrorKind::Unavailable,
                "too many token validations are waiting for the authorization server",
            ),
            Self::Fault(AsFault::Misconfigured(_)) => AuthError::new(
                ErrorKind::Misconfigured,
                "the resource server could not authenticate to the authorization server",
            ),
        }
    }
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Introspector")
            .field("endpoint", &inner.endpoint.as_str())
            .field("client_auth", &inner.auth.method_name())
            .field("client_id", &inner.auth.client_id())
            .field("checks", &inner.checks)
            .field("max_ttl", &inner.cache.max_ttl)
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
