//! The cached-verification engine: one place that answers "is this token
//! cached?" and, when it is not, asks a token source once.
//!
//! An [`Engine`] owns the cache of one source (the read index that hits
//! read, moka, single flight, the negative cache, invalidation tickets,
//! stale-if-error and the fleet tier) and the local checks. A source
//! ([`LoadToken`]: introspection, JWT signatures, or one of the user's)
//! supplies only "load this token"; the engine decides what is cached, for
//! how long, and what each request is answered.
//!
//! - Hit: one key hash and one read of the index, no `await`
//!   ([`Engine::cached`]).
//! - Miss: the key is hashed once more, then moka (which may have the answer
//!   the index has not shown yet), the negative cache, and one load shared
//!   by every concurrent request for the token, through the fleet tier when
//!   there is one.

mod cache;
mod index;
#[cfg(feature = "redis")]
mod shared;
mod source;
mod tickets;
mod who;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

#[cfg(feature = "redis")]
use self::cache::active_ttl;
pub(crate) use self::cache::{CacheSettings, Entry};
pub use self::cache::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_TTL, DEFAULT_NEGATIVE_ENTRIES,
    DEFAULT_NEGATIVE_MAX_BYTES, DEFAULT_NEGATIVE_TTL, MAX_CACHE_TTL,
};
pub use self::source::{LoadError, LoadErrorKind, LoadToken};

use self::cache::TokenCache;
use self::tickets::LoadTicket;
use crate::cache_key::{key_prefix, Key, KeyScheme};
use crate::clock::{self, Now};
use crate::error::{AuthError, ConfigError};
use crate::principal::Principal;
use crate::revocation::{Revocation, RevokeError, Revoked};
use crate::stats::CacheStats;
use crate::validate::{since_epoch, unix_now, Checks};

/// A token source with its cache and checks; see the module docs.
pub(crate) struct Engine<L> {
    source: L,
    cache: TokenCache,
    checks: Checks,
    policy: Policy,
    /// The second tier, shared by a fleet of replicas.
    #[cfg(feature = "redis")]
    shared: Option<crate::fleet::SharedTier>,
}

/// What differs between sources in how their answers are cached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The description of a refusal answered from the negative cache.
    pub(crate) refused: &'static str,
    /// Whether an answer that fails a lasting check (issuer, audience,
    /// token kind) is remembered as a refusal, rather than cached as an
    /// answer that every read refuses.
    pub(crate) remember_lasting: bool,
    /// Whether answers go through the fleet tier (one load per token for
    /// the fleet); when not, the tier carries invalidations and
    /// revocations only.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) share_answers: bool,
}

/// Everything an engine is built from besides its source.
pub(crate) struct Parts<'a> {
    pub(crate) settings: CacheSettings,
    pub(crate) checks: Checks,
    pub(crate) policy: Policy,
    /// What the source's keys are scoped to (for introspection: the
    /// endpoint and the client id), so that no two sources share an entry.
    pub(crate) scope: (&'a str, &'a str),
    /// The fleet tier, with the longest time one load may take.
    #[cfg(feature = "redis")]
    pub(crate) shared: Option<(&'a crate::fleet::SharedCache, SharedTimes)>,
}

/// The times the fleet tier derives its own from.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedTimes {
    /// One call to the source: how long a replica waits for another's fill.
    pub(crate) call: Duration,
    /// The longest a load can take (a credential, a queue, the call): the
    /// fleet-wide lock outlives it.
    pub(crate) load: Duration,
}

/// Why a load gave no cacheable entry.
enum Failure {
    /// The source refused the token, or failed.
    Refused(LoadError),
    /// The source vouched for the token, but its `exp` has passed beyond
    /// the leeway: remembered as a refusal.
    Expired,
    /// A valid answer for the requests waiting for it, but not to be cached
    /// (within the leeway past `exp`, or invalidated meanwhile).
    Uncacheable(Entry),
}

impl Failure {
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
            Self::Refused(error) => error.to_auth_error(),
            Self::Expired => AuthError::invalid_token("the token has expired"),
            Self::Uncacheable(_) => AuthError::invalid_token("the token could not be validated"),
        }
    }
}

impl<L: LoadToken> Engine<L> {
    /// Builds the engine; with a fleet tier, starts listening to the
    /// fleet's notices (which needs a Tokio runtime).
    pub(crate) fn build(source: L, parts: Parts<'_>) -> Result<Arc<Self>, ConfigError> {
        let (scope, client_id) = parts.scope;
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut keys = KeyScheme::new(scope, client_id);
        #[cfg(feature = "redis")]
        let shared = match parts.shared {
            Some((config, times)) => {
                let tier = crate::fleet::SharedTier::new(
                    config,
                    scope,
                    client_id,
                    crate::fleet::TierSettings {
                        as_timeout: times.call,
                        load_bound: times.load,
                        max_ttl: parts.settings.max_ttl,
                        negative_ttl: parts.settings.negative_ttl,
                        cutoff_retention: parts.settings.cutoff_retention,
                        max_cutoffs: parts.settings.max_cutoffs,
                    },
                )?;
                // Every replica must compute the same in-process key.
                keys = KeyScheme::under(tier.l1_key(), scope, client_id);
                Some(tier)
            }
            None => None,
        };
        // Answers without `iss` are filed under the one expected issuer.
        let default_issuer = match &*parts.checks.issuers {
            [issuer] => Some(&**issuer),
            _ => None,
        };
        let cache = TokenCache::new(parts.settings, keys, default_issuer);
        let engine = Arc::new(Self {
            source,
            cache,
            checks: parts.checks,
            policy: parts.policy,
            #[cfg(feature = "redis")]
            shared,
        });
        #[cfg(feature = "redis")]
        if let Some(shared) = &engine.shared {
            let sink: std::sync::Weak<dyn crate::fleet::L1Sink> = Arc::downgrade(&engine) as _;
            shared.listen(sink);
        }
        Ok(engine)
    }

    /// The source.
    pub(crate) fn source(&self) -> &L {
        &self.source
    }

    /// The checks every read runs.
    pub(crate) fn checks(&self) -> &Checks {
        &self.checks
    }

    /// The longest an answer is reused.
    pub(crate) fn max_ttl(&self) -> Duration {
        self.cache.max_ttl()
    }

    /// The outcome for `token`: the cached answer or a load, then the local
    /// checks. Bound tokens are not refused here: the caller decides what
    /// their binding requires.
    pub(crate) async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        // One key for the probe and the load.
        let key = self.cache.key(token);
        if let Some(outcome) = self.cache.peek_checked(&self.checks, &key, clock::now()) {
            self.count_hit();
            return outcome;
        }
        self.validate_uncached(key, token).await
    }

    /// As [`validate`](Self::validate) after the read index had nothing:
    /// moka, then a load.
    async fn validate_uncached(&self, key: Key, token: &str) -> Result<Principal, AuthError> {
        let cache = &self.cache;
        // A replica that just started or reconnected carries out the
        // fleet's revocations before it admits anything.
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.ensure_cutoffs(self).await;
        }
        let claims = match cache.active() {
            Some(active) => match active.get(&key).await {
                Some(claims) if !cache.is_stale(&claims) => {
                    cache.counters().hit();
                    claims
                }
                // Boxed so that the hot path's future stays small.
                Some(stale) => Box::pin(self.refresh(key, token, stale)).await?,
                None => Box::pin(self.miss(key, token)).await?,
            },
            None => {
                cache.counters().miss();
                self.load(key, token, None)
                    .await
                    .or_else(Failure::into_uncached)?
            }
        };
        if cache.revoked(&claims) {
            cache.forget(&key).await;
            // Remembered, so that a revoked token the source still vouches
            // for costs no load each time it comes.
            cache.remember_refusal(key).await;
            return Err(AuthError::invalid_token("the token was revoked"));
        }
        let principal = Principal::from_shared(claims);
        self.checks.check(&principal, unix_now())?;
        Ok(principal)
    }

    /// The outcome for `token` if its answer is cached and fresh at `now`:
    /// the read index and the local checks, with no `await`. `None`: ask
    /// [`validate`](Self::validate).
    #[inline]
    pub(crate) fn cached(&self, token: &str, now: Now) -> Option<Result<Principal, AuthError>> {
        let outcome = self.peek_cached(token, now)?;
        self.count_hit();
        Some(outcome)
    }

    /// As [`cached`](Self::cached), without counting a hit.
    #[inline]
    pub(crate) fn peek_cached(&self, token: &str, now: Now) -> Option<Result<Principal, AuthError>> {
        self.cache.peek_checked(&self.checks, &self.cache.key(token), now)
    }

    #[inline]
    pub(crate) fn count_hit(&self) {
        self.cache.counters().hit();
    }

    /// Not in the active cache: the negative cache, or one load shared by
    /// every concurrent request for the same key.
    async fn miss(&self, key: Key, token: &str) -> Result<Entry, AuthError> {
        let cache = &self.cache;
        if cache.negative_hit(&key).await {
            cache.counters().negative_hit();
            return Err(AuthError::invalid_token(self.policy.refused));
        }
        cache.counters().miss();
        let Some(active) = cache.active() else {
            return self.load(key, token, None).await.or_else(Failure::into_uncached);
        };
        // Taken before the load can start, so no invalidation slips between.
        let ticket = cache.ticket(key);
        // With a shared tier, the in-process single flight covers its
        // lookup too: one Redis round trip per key and replica.
        #[cfg(feature = "redis")]
        let load = self.load_through(key, token, Some(&ticket));
        #[cfg(not(feature = "redis"))]
        let load = self.load(key, token, Some(&ticket));
        let result = cache.get_or_load(active, key, token, &ticket, load).await;
        result.or_else(Failure::uncached)
    }

    /// An answer older than `max_ttl` but within the stale-if-error grace:
    /// ask again (one load per key at a time), and fall back to it only while
    /// the source is unavailable. After a failed refresh the stale answer is
    /// served without asking for a short while, so an outage does not make
    /// every request wait for a timeout.
    async fn refresh(&self, key: Key, token: &str, stale: Entry) -> Result<Entry, AuthError> {
        let cache = &self.cache;
        if cache.refresh_failed_recently(&key) && cache.within_grace(&stale) {
            cache.counters().stale_served();
            return Ok(stale);
        }
        cache.counters().miss();
        let ticket = cache.ticket(key);
        let loaded = AtomicBool::new(false);
        let load = async {
            loaded.store(true, Ordering::Relaxed);
            self.load(key, token, Some(&ticket)).await
        };
        let error = match cache.refresh_once(key, load).await {
            Ok(fresh) => {
                // Only the caller that made the call stores its answer; the
                // others were handed the same one.
                if loaded.load(Ordering::Relaxed) {
                    cache.store_refreshed(key, token, &fresh, &ticket).await;
                }
                return Ok(fresh);
            }
            Err(error) => error,
        };
        match &*error {
            Failure::Uncacheable(claims) => Ok(claims.clone()),
            // Only a transient fault of the source: a local overload or a
            // source that answers but not usably (a 4xx for a revoked
            // token, say) must not stretch a revoked token's life.
            Failure::Refused(fault)
                if fault.kind() == LoadErrorKind::Unavailable && cache.within_grace(&stale) =>
            {
                cache.refresh_failed(key).await;
                cache.counters().stale_served();
                tracing::debug!(key = %key_prefix(&key), "serving a stale answer while the source is unavailable");
                Ok(stale)
            }
            // The source says no: forget the stale answer.
            Failure::Refused(refusal) if refusal.is_lasting() => {
                cache.forget(&key).await;
                Err(error.to_auth_error())
            }
            Failure::Expired => {
                cache.forget(&key).await;
                Err(error.to_auth_error())
            }
            other => Err(other.to_auth_error()),
        }
    }

    /// One load from the source, turned into a cacheable entry (unless
    /// `ticket` was spoiled by an invalidation meanwhile); a lasting refusal
    /// is remembered.
    async fn load(&self, key: Key, token: &str, ticket: Option<&LoadTicket<'_>>) -> Result<Entry, Failure> {
        let span = tracing::debug_span!("load", key = %key_prefix(&key));
        match self.source.load(token).instrument(span.clone()).await {
            Ok(principal) => self.admit_loaded(key, principal, ticket).instrument(span).await,
            Err(refusal) => {
                if refusal.is_lasting() {
                    self.remember_refusal(key).await;
                }
                Err(Failure::Refused(refusal))
            }
        }
    }

    /// A principal from the source (or the fleet tier) as a cache entry, or
    /// why it must not be cached: it fails a lasting check (remembered, if
    /// the policy says so), its `exp` has passed (within the leeway it is
    /// still served, uncached; beyond it the key joins the negative cache),
    /// or the token was invalidated while the load was in flight.
    async fn admit_loaded(
        &self,
        key: Key,
        principal: Principal,
        ticket: Option<&LoadTicket<'_>>,
    ) -> Result<Entry, Failure> {
        if self.policy.remember_lasting && self.cache.has_negative() {
            if let Err(reason) = self.checks.lasting(&principal) {
                tracing::debug!(key = %key_prefix(&key), reason, "token refused");
                self.remember_refusal(key).await;
                return Err(Failure::Refused(LoadError::invalid(reason)));
            }
        }
        if !self.cache.cacheable(&principal, since_epoch()) {
            let exp = principal.expires_at().unwrap_or(i64::MIN);
            if exp.saturating_add(self.checks.leeway_secs) > unix_now() {
                tracing::debug!("token is valid; answer not cached");
                return Err(Failure::Uncacheable(self.cache.entry(principal)));
            }
            tracing::debug!("the source vouched for the token, but exp has passed");
            self.remember_refusal(key).await;
            return Err(Failure::Expired);
        }
        let entry = self.cache.entry(principal);
        if ticket.is_none_or(LoadTicket::spoiled) {
            return Err(Failure::Uncacheable(entry));
        }
        Ok(entry)
    }

    async fn remember_refusal(&self, key: Key) {
        self.cache.remember_refusal(key).await;
    }

    /// Forgets what is cached for `token` (an answer or a refusal), here
    /// and, with a fleet tier, on every replica.
    pub(crate) async fn invalidate(&self, token: &str) {
        self.cache.invalidate(&self.cache.key(token)).await;
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.invalidate(token).await;
        }
    }

    /// Carries out `revocation`: evicts the answers it names and refuses,
    /// from now on, the tokens it names issued up to now.
    pub(crate) async fn revoke(&self, revocation: &Revocation) -> Result<Revoked, RevokeError> {
        // Tokens the checks accept as issued up to `leeway` ahead of this
        // clock are cut off too: an AS clock ahead must not slip past.
        let now = unix_now();
        let at = revocation
            .at
            .map_or(now, |at| at.min(now))
            .saturating_add(self.checks.leeway_secs);
        let (recorded, evicted) = self.cache.revoke(revocation, at).await;
        // Every replica carries it out, and those that start later too.
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            use crate::fleet::FleetRevocation;
            match shared.revoke(revocation, at).await {
                FleetRevocation::Sent => {}
                FleetRevocation::StoreFull if recorded => {
                    return Err(RevokeError::Full {
                        capacity: self.cache.max_cutoffs(),
                        evicted,
                    })
                }
                FleetRevocation::StoreFull => {}
                FleetRevocation::NotSealed if recorded => return Err(RevokeError::NotShared { evicted }),
                FleetRevocation::NotSealed => {}
            }
        }
        if recorded {
            Ok(Revoked { evicted })
        } else {
            Err(RevokeError::Full {
                capacity: self.cache.max_cutoffs(),
                evicted,
            })
        }
    }

    /// Forgets everything cached, here and on every replica.
    pub(crate) fn invalidate_all(&self) {
        self.cache.invalidate_all();
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.invalidate_all();
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> CacheStats {
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut stats = self.cache.stats();
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            stats.shared = shared.stats();
        }
        stats
    }

    /// Runs moka's pending maintenance, so that entry counts are exact.
    pub(crate) async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// The cache key of `token`.
    pub(crate) fn cache_key(&self, token: &str) -> Key {
        self.cache.key(token)
    }

    /// The fleet tier, if one is configured.
    #[cfg(all(feature = "redis", feature = "jwt"))]
    pub(crate) fn shared_tier(&self) -> Option<&crate::fleet::SharedTier> {
        self.shared.as_ref()
    }
}
