//! The answer cache: moka, keyed by a keyed hash of the token, bounded by
//! the token's `exp`, with inactive answers kept apart.
//!
//! - Keys are keyed hashes of the token (see [`cache_key`](crate::cache_key));
//!   raw tokens are never stored.
//! - Active answers live `min(exp − now, max_ttl)` (RFC 7662 §4, I9); reads
//!   never extend that.
//! - Both caches are bounded in bytes as well as in entries: an entry weighs
//!   its estimated size, and at least `max_bytes / max_entries`, so neither
//!   bound can be exceeded (see [`weight`]).
//! - Inactive answers live `negative_ttl` in their own bounded cache, so a
//!   flood of random tokens can never evict an active entry.
//! - Faults are never cached.
//! - An invalidation is per key: it spoils only the loads in flight for that
//!   token (see [`Invalidations`]).
//! - Hits read the [`ReadIndex`], which mirrors moka's active entries
//!   without moka's per-read bookkeeping; misses go to moka.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::index::ReadIndex;
use super::tickets::{Invalidations, LoadTicket};
use super::who::Who;
use crate::cache_key::{Key, KeyScheme};
use crate::clock::{self, Now};
use crate::error::AuthError;
use crate::principal::{Claims, Principal};
use crate::revocation::Revocation;
use crate::stats::{CacheStats, Counters};
use crate::token::is_b64token;
use crate::validate::{since_epoch, Checks};

/// Default capacity of the active cache, in entries.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default capacity of the active cache, in (estimated) bytes: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default capacity of the inactive cache, in (estimated) bytes: 4 MiB.
pub const DEFAULT_NEGATIVE_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// The longest `max_ttl`, `negative_ttl` or `stale_if_error` accepted: one
/// year. Longer ones are a configuration error (moka refuses TTLs over 1000
/// years, and no answer should be trusted that long anyway).
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// What moka keeps per entry besides the value (measured by
/// `benches/memory.rs`: about 320 B), and the key.
const ENTRY_OVERHEAD: usize = 320 + std::mem::size_of::<Key>();
/// What the read index adds to an active entry (measured by
/// `benches/memory.rs`: 44 bytes; its node, its slot, the key again).
const INDEX_OVERHEAD: usize = 48;
/// Default upper bound on how long an active answer is reused.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(60);
/// Default capacity of the inactive cache, in entries.
pub const DEFAULT_NEGATIVE_ENTRIES: u64 = 10_000;
/// After a failed refresh, how long a stale answer is served without asking
/// the AS again.
pub(crate) const REFRESH_BACKOFF: Duration = Duration::from_secs(2);

/// Default time an inactive answer is reused.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// A cached active answer: the parsed claims, shared with every request.
pub(crate) type Entry = Arc<Claims>;

/// Expires an entry at its `exp`; `time_to_live(max_ttl)` caps it further.
struct UntilExp;

impl UntilExp {
    fn until_exp(claims: &Claims) -> Option<Duration> {
        // The entry is written right after the answer arrived, and only when
        // `exp` has not passed; ZERO is a safe answer should the clock move.
        let until_exp =
            active_ttl(claims.expires_at.get(), since_epoch(), Duration::MAX).unwrap_or(Duration::ZERO);
        // An answer from the shared tier lives no longer here than there.
        Some(match claims.shared_until_ms {
            0 => until_exp,
            until => until_exp.min(Duration::from_millis(until.saturating_sub(clock::monotonic_ms()))),
        })
    }
}

/// An entry's weight for moka: its estimated size in bytes, but at least
/// `budget / max_entries`, so that `budget` bounds the bytes and the entries
/// at once (a cache full of small entries holds `max_entries` of them).
pub(crate) fn weight(bytes: usize, budget: u64, max_entries: u64) -> u32 {
    let floor = budget.div_ceil(max_entries.max(1));
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
}

/// The estimated heap footprint of a cached answer, moka's share included.
pub(crate) fn entry_bytes(claims: &Claims) -> usize {
    let text = |s: &Option<Box<str>>| s.as_ref().map_or(0, |s| s.len());
    ENTRY_OVERHEAD
        + INDEX_OVERHEAD
        + std::mem::size_of::<Claims>()
        + claims.scopes.as_str().len()
        + text(&claims.subject)
        + text(&claims.username)
        + text(&claims.client_id)
        + text(&claims.token_type)
        + text(&claims.issuer)
        + text(&claims.jwt_id)
        + claims
            .audiences
            .iter()
            .map(|a| std::mem::size_of::<Box<str>>() + a.len())
            .sum::<usize>()
        + claims.extra.as_ref().map_or(0, |extra| map_bytes(extra))
}

/// A `serde_json` map's footprint: per member its key, its value and the
/// map's node overhead (an estimate; it errs on the large side).
fn map_bytes(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    std::mem::size_of::<serde_json::Map<String, serde_json::Value>>()
        + map
            .iter()
            .map(|(key, value)| 32 + std::mem::size_of::<String>() + key.len() + value_bytes(value))
            .sum::<usize>()
}

fn value_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    std::mem::size_of::<Value>()
        + match value {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(map) => map_bytes(map),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

impl Expiry<Key, Entry> for UntilExp {
    fn expire_after_create(&self, _key: &Key, claims: &Entry, _created_at: Instant) -> Option<Duration> {
        Self::until_exp(claims)
    }

    /// A refreshed answer (stale-if-error) brings its own `exp`.
    fn expire_after_update(
        &self,
        _key: &Key,
        claims: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Self::until_exp(claims)
    }
}

/// How long an active answer may be cached: `min(exp − now, max_ttl)`, or
/// `None` when `exp` has already passed (the answer must not be used at all).
///
/// `now` is the time since the Unix epoch, with sub-second precision, so that
/// a token expiring in 1.2 s is cached for 1.2 s, not 2.
pub(crate) fn active_ttl(exp: Option<i64>, now: Duration, max_ttl: Duration) -> Option<Duration> {
    let Some(exp) = exp else {
        return Some(max_ttl);
    };
    let exp = Duration::from_secs(u64::try_from(exp).ok()?);
    let remaining = exp.checked_sub(now).filter(|d| !d.is_zero())?;
    Some(remaining.min(max_ttl))
}

/// The caches of one introspector.
pub(crate) struct TokenCache {
    active: Option<Cache<Key, Entry>>,
    /// What hits read; present with `active`, holding only what it holds.
    index: Option<Arc<ReadIndex>>,
    inactive: Option<Cache<Key, ()>>,
    max_ttl: Duration,
    /// With stale-if-error: how long after its arrival an answer may still be
    /// used while the authorization server is unavailable.
    stale_grace: Option<Duration>,
    /// With stale-if-error: one refresh per key at a time (single flight).
    refreshing: Option<Cache<Key, Entry>>,
    /// With stale-if-error: keys whose refresh just failed; their stale
    /// answer is served without asking the AS again until this entry expires.
    refresh_failed: Option<Cache<Key, ()>>,
    /// Invalidations that loads in flight must see.
    invalidations: Invalidations,
    /// How keys are made (under the process's secret, or the fleet's).
    keys: KeyScheme,
    /// Who each answer names, and the revocation cut-offs.
    who: Arc<Who>,
    counters: Counters,
}

/// Cache settings, as given to the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSettings {
    pub(crate) max_entries: u64,
    pub(crate) max_bytes: u64,
    pub(crate) max_ttl: Duration,
    pub(crate) negative_entries: u64,
    pub(crate) negative_max_bytes: u64,
    pub(crate) negative_ttl: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) max_cutoffs: u64,
    pub(crate) cutoff_retention: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_ttl: DEFAULT_MAX_TTL,
            negative_entries: DEFAULT_NEGATIVE_ENTRIES,
            negative_max_bytes: DEFAULT_NEGATIVE_MAX_BYTES,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            stale_if_error: Duration::ZERO,
            max_cutoffs: crate::revocation::DEFAULT_MAX_CUTOFFS,
            cutoff_retention: crate::revocation::DEFAULT_CUTOFF_RETENTION,
        }
    }
}

impl CacheSettings {
    /// Refuses what moka would panic on or what cannot work as written.
    pub(crate) fn check(&self) -> Result<(), crate::error::ConfigError> {
        use crate::error::ConfigError::OutOfRange;
        for (setting, ttl) in [
            ("max_ttl", self.max_ttl),
            ("negative_ttl", self.negative_ttl),
            ("stale_if_error", self.stale_if_error),
            ("cutoff_retention", self.cutoff_retention),
        ] {
            if ttl > MAX_CACHE_TTL {
                return Err(OutOfRange {
                    setting,
                    range: "at most 365 days",
                });
            }
        }
        if self.cutoff_retention.is_zero() {
            return Err(OutOfRange {
                setting: "cutoff_retention",
                range: "more than zero: a cut-off must outlive the tokens issued before it",
            });
        }
        // About 48 bytes each here, and 130 per secret in a fleet's store.
        if self.max_cutoffs > crate::revocation::MAX_CUTOFFS {
            return Err(OutOfRange {
                setting: "max_cutoffs",
                range: "at most 10 000 000",
            });
        }
        if !self.stale_if_error.is_zero() && self.stale_if_error <= self.max_ttl {
            return Err(OutOfRange {
                setting: "stale_if_error",
                range: "zero (off) or longer than max_ttl: answers younger than max_ttl are served anyway",
            });
        }
        // A budget below one entry's overhead could never hold anything.
        const MIN_BUDGET: u64 = ENTRY_OVERHEAD as u64;
        if self.max_bytes < MIN_BUDGET && self.max_entries > 0 && !self.max_ttl.is_zero() {
            return Err(OutOfRange {
                setting: "max_bytes",
                range: "at least one entry's overhead (336 bytes)",
            });
        }
        if self.negative_max_bytes < MIN_BUDGET && self.negative_entries > 0 {
            return Err(OutOfRange {
                setting: "negative_max_bytes",
                range: "at least one entry's overhead (336 bytes)",
            });
        }
        Ok(())
    }
}

impl TokenCache {
    pub(crate) fn new(settings: CacheSettings, keys: KeyScheme, default_issuer: Option<&str>) -> Self {
        let who = Arc::new(Who::new(
            default_issuer,
            settings.max_cutoffs,
            settings.cutoff_retention,
        ));
        let enabled = !settings.max_ttl.is_zero() && settings.max_entries > 0;
        let stale_grace =
            (enabled && settings.stale_if_error > settings.max_ttl).then_some(settings.stale_if_error);
        let (budget, entries) = (settings.max_bytes, settings.max_entries);
        let index = enabled.then(|| Arc::new(ReadIndex::new()));
        let active = index.as_ref().map(|index| {
            let index = Arc::clone(index);
            let (who, scheme) = (Arc::clone(&who), keys.clone());
            Cache::builder()
                .max_capacity(budget)
                // Called once per insert: the estimate walks the claims once.
                .weigher(move |_key: &Key, claims: &Entry| weight(entry_bytes(claims), budget, entries))
                // With stale-if-error, entries outlive `max_ttl` (never `exp`)
                // and are refreshed on use once older than `max_ttl`.
                .time_to_live(stale_grace.unwrap_or(settings.max_ttl))
                .expire_after(UntilExp)
                // Whatever moka drops, for whatever cause, hits stop finding.
                .eviction_listener(move |key: Arc<Key>, claims: Entry, _| {
                    // A newer answer for the key stays filed.
                    if index.remove_answer(&key, &claims) {
                        who.remove(&who.keys_of(&scheme, &claims), &key);
                    }
                })
                .build()
        });
        let negative = enabled && !settings.negative_ttl.is_zero() && settings.negative_entries > 0;
        let (negative_budget, negative_entries) = (settings.negative_max_bytes, settings.negative_entries);
        let inactive = negative.then(|| {
            Cache::builder()
                .max_capacity(negative_budget)
                .weigher(move |_key: &Key, _: &()| weight(ENTRY_OVERHEAD, negative_budget, negative_entries))
                .time_to_live(settings.negative_ttl)
                .build()
        });
        Self {
            active,
            index,
            inactive,
            max_ttl: settings.max_ttl,
            stale_grace,
            refreshing: stale_grace.map(|_| {
                // Successful refreshes are written to `active` at once; this
                // only coalesces concurrent ones.
                Cache::builder()
                    .max_capacity(settings.max_entries)
                    .time_to_live(Duration::from_secs(1))
                    .build()
            }),
            refresh_failed: stale_grace.map(|_| {
                Cache::builder()
                    .max_capacity(settings.max_entries)
                    .time_to_live(REFRESH_BACKOFF)
                    .build()
            }),
            invalidations: Invalidations::default(),
            keys,
            who,
            counters: Counters::default(),
        }
    }

    /// The active cache, unless caching is off.
    pub(crate) fn active(&self) -> Option<&Cache<Key, Entry>> {
        self.active.as_ref()
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Whether refusals are remembered at all.
    pub(crate) fn has_negative(&self) -> bool {
        self.inactive.is_some()
    }

    /// Whether `key` is remembered as refused.
    pub(crate) async fn negative_hit(&self, key: &Key) -> bool {
        match &self.inactive {
            Some(inactive) => inactive.get(key).await.is_some(),
            None => false,
        }
    }

    /// Remembers `key` as refused, for `negative_ttl`.
    pub(crate) async fn remember_refusal(&self, key: Key) {
        if let Some(inactive) = &self.inactive {
            inactive.insert(key, ()).await;
        }
    }

    /// Registers a load of `key` that invalidations must spoil.
    pub(crate) fn ticket(&self, key: Key) -> LoadTicket<'_> {
        self.invalidations.ticket(key)
    }

    /// Whether a refresh of `key` failed within the last
    /// [`REFRESH_BACKOFF`].
    pub(crate) fn refresh_failed_recently(&self, key: &Key) -> bool {
        match &self.refresh_failed {
            Some(failed) => failed.contains_key(key),
            None => false,
        }
    }

    /// Notes that a refresh of `key` failed: its stale answer is served
    /// without asking again for [`REFRESH_BACKOFF`].
    pub(crate) async fn refresh_failed(&self, key: Key) {
        if let Some(failed) = &self.refresh_failed {
            failed.insert(key, ()).await;
        }
    }

    /// Runs `load` as the one refresh of `key` in flight; concurrent
    /// refreshes of the key get its outcome.
    pub(crate) async fn refresh_once<E: Send + Sync + 'static>(
        &self,
        key: Key,
        load: impl std::future::Future<Output = Result<Entry, E>>,
    ) -> Result<Entry, Arc<E>> {
        match &self.refreshing {
            Some(refreshing) => refreshing.try_get_with(key, load).await,
            None => load.await.map_err(Arc::new),
        }
    }

    /// Stores the answer of a refresh this caller made.
    pub(crate) async fn store_refreshed(
        &self,
        key: Key,
        token: &str,
        fresh: &Entry,
        ticket: &LoadTicket<'_>,
    ) {
        if let Some(active) = &self.active {
            active.insert(key, fresh.clone()).await;
            self.admit(key, token, fresh, ticket).await;
        }
        // `refreshing` only coalesces concurrent refreshes: the next one
        // must reach the source, however short `max_ttl`.
        if let Some(refreshing) = &self.refreshing {
            refreshing.invalidate(&key).await;
        }
    }

    #[inline]
    pub(crate) fn key(&self, token: &str) -> Key {
        self.keys.key(token)
    }

    /// The entry for `key` from `load`, shared by every concurrent caller for
    /// the same key (single flight). Cached if it succeeds, unless `ticket`
    /// was spoiled by an invalidation meanwhile: then it is taken out again
    /// (the load checks the ticket before it returns, but an invalidation can
    /// still slip in before moka stores the entry). Every verifier's miss
    /// path goes through here.
    pub(crate) async fn get_or_load<E: Send + Sync + 'static>(
        &self,
        active: &Cache<Key, Entry>,
        key: Key,
        token: &str,
        ticket: &LoadTicket<'_>,
        load: impl std::future::Future<Output = Result<Entry, E>>,
    ) -> Result<Entry, Arc<E>> {
        let loaded = AtomicBool::new(false);
        let load = async {
            loaded.store(true, Ordering::Relaxed);
            load.await
        };
        let result = active.try_get_with(key, load).await;
        if !loaded.load(Ordering::Relaxed) {
            self.counters.coalesced_wait();
        } else if let Ok(entry) = &result {
            self.admit(key, token, entry, ticket).await;
        }
        result
    }

    /// The usable answer cached for `token` at `now`, read from the index
    /// alone: no lock, no channel, no allocation (see
    /// [`ReadIndex`](crate::read_index)). `None` sends the caller to the
    /// full path ([`get_or_load`](Self::get_or_load) and moka). Not counted:
    /// the verifiers count a hit once they know the request is answered
    /// from the caches.
    #[inline]
    pub(crate) fn peek(&self, key: &Key, now: Now) -> Option<Entry> {
        self.index.as_ref()?.get(key, now.monotonic_ms)
    }

    /// [`peek`](Self::peek), then the local checks every read runs: the
    /// outcome of a cached request, for both verifiers.
    #[inline]
    pub(crate) fn peek_checked(
        &self,
        checks: &Checks,
        key: &Key,
        now: Now,
    ) -> Option<Result<Principal, AuthError>> {
        let principal = Principal::from_shared(self.peek(key, now)?);
        Some(checks.check(&principal, now.unix_secs()).map(|()| principal))
    }

    /// Shows an answer that this caller loaded, and that moka now holds, to
    /// hits — until `min(exp, arrival + max_ttl)`, as long as moka would
    /// keep it fresh. Unless `ticket` was spoiled: the invalidation that
    /// spoiled it may have run before the answer was stored, so the check
    /// comes after, and takes the answer out of both again.
    ///
    /// Only tokens in the `b64token` grammar enter the index: the middleware
    /// probes it with tokens whose grammar it has not checked (see
    /// `BearerExtractor::cache_probe`), and a hit must mean the
    /// same bytes passed that check. A token outside the grammar reaches a
    /// verifier only through its public `validate`, never through the layer.
    pub(crate) async fn admit(&self, key: Key, token: &str, claims: &Entry, ticket: &LoadTicket<'_>) {
        let index = self.index.as_ref().filter(|_| is_b64token(token.as_bytes()));
        if let Some(index) = index {
            // Filed by who before hits can see it: a revocation that misses
            // it here finds its cut-off checked below.
            let who = self.who.keys_of(&self.keys, claims);
            self.who.insert(&who, key);
            let mut held = false;
            let now = clock::now();
            let since_epoch = Duration::from_millis(u64::try_from(now.unix_ms).unwrap_or(0));
            if let Some(until_exp) = active_ttl(claims.expires_at.get(), since_epoch, Duration::MAX) {
                let until = claims
                    .received_at_ms
                    .saturating_add(millis(self.max_ttl))
                    .min(now.monotonic_ms.saturating_add(millis(until_exp)));
                // An answer from the shared tier: no longer than there.
                let until = match claims.shared_until_ms {
                    0 => until,
                    shared_until => until.min(shared_until),
                };
                index.insert(key, Arc::clone(claims), until);
                // moka may have dropped the answer (size, admission, expiry)
                // before it reached the index: its listener then had nothing
                // to remove, and nothing else would. A drop after the insert
                // fires the listener, which finds it.
                if let Some(active) = &self.active {
                    held = active
                        .get(&key)
                        .await
                        .is_some_and(|held| Arc::ptr_eq(&held, claims));
                    if !held {
                        index.remove_answer(&key, claims);
                    }
                }
            }
            // Not held (dropped before it was filed, or already expired):
            // nothing else would take it out of the who-index.
            if !held {
                self.who.remove(&who, &key);
            }
        }
        if ticket.spoiled() || self.revoked(claims) {
            self.forget(&key).await;
        }
    }

    pub(crate) fn max_cutoffs(&self) -> u64 {
        self.who.max_cutoffs()
    }

    /// Whether a revocation cut-off refuses the answer `claims`.
    pub(crate) fn revoked(&self, claims: &Claims) -> bool {
        if !self.who.any_cutoff() {
            return false;
        }
        let who = self.who.keys_of(&self.keys, claims);
        self.who.refuses(claims, &who, crate::validate::unix_now())
    }

    /// Carries out `revocation` at `at` (Unix seconds): records its
    /// cut-off, then evicts every answer filed under it. False with the
    /// cut-offs full (the answers are evicted all the same).
    pub(crate) async fn revoke(&self, revocation: &Revocation, at: i64) -> (bool, u64) {
        let who = self.who.matching(&self.keys, revocation);
        let recorded = self.who.cut_off(&who, at, crate::validate::unix_now());
        let mut evicted = 0;
        for key in self.who.take(&who) {
            if self
                .active
                .as_ref()
                .is_some_and(|active| active.contains_key(&key))
            {
                evicted += 1;
            }
            self.invalidate(&key).await;
        }
        (recorded, evicted)
    }

    /// Takes the active answer for `key` out of moka and the index.
    pub(crate) async fn forget(&self, key: &Key) {
        if let Some(index) = &self.index {
            index.remove(key);
        }
        if let Some(active) = &self.active {
            active.invalidate(key).await;
        }
    }

    /// Forgets everything cached for `key` (active or inactive) and spoils
    /// the loads in flight for it.
    pub(crate) async fn invalidate(&self, key: &Key) {
        self.invalidations.invalidate(key);
        self.forget(key).await;
        if let Some(refreshing) = &self.refreshing {
            refreshing.invalidate(key).await;
        }
        for keys in [&self.inactive, &self.refresh_failed].into_iter().flatten() {
            keys.invalidate(key).await;
        }
    }

    /// Forgets everything cached and spoils every load in flight.
    pub(crate) fn invalidate_all(&self) {
        self.invalidations.invalidate_all();
        if let Some(index) = &self.index {
            index.clear();
        }
        self.who.clear_index();
        for entries in [&self.active, &self.refreshing].into_iter().flatten() {
            entries.invalidate_all();
        }
        for keys in [&self.inactive, &self.refresh_failed].into_iter().flatten() {
            keys.invalidate_all();
        }
    }

    /// Runs moka's pending maintenance (expiry, eviction, and the listener
    /// that keeps the index in step), so that entry counts are exact.
    pub(crate) async fn run_pending_tasks(&self) {
        if let Some(active) = &self.active {
            run_until_settled(active).await;
        }
        if let Some(inactive) = &self.inactive {
            run_until_settled(inactive).await;
        }
    }

    /// Whether an active answer may be cached: not when its `exp` has passed.
    pub(crate) fn cacheable(&self, principal: &Principal, now: Duration) -> bool {
        active_ttl(principal.expires_at(), now, self.max_ttl).is_some()
    }

    /// The entry for an active answer, stamped with its arrival time (on the
    /// monotonic clock).
    pub(crate) fn entry(&self, principal: Principal) -> Entry {
        let mut claims = principal.into_shared();
        if let Some(claims) = Arc::get_mut(&mut claims) {
            claims.received_at_ms = clock::monotonic_ms();
        }
        claims
    }

    /// Whether a cached answer is older than `max_ttl` (only possible with
    /// stale-if-error, which keeps entries longer).
    pub(crate) fn is_stale(&self, claims: &Claims) -> bool {
        self.stale_grace.is_some() && self.age(claims) >= self.max_ttl
    }

    /// Whether a stale answer is still within the stale-if-error grace.
    pub(crate) fn within_grace(&self, claims: &Claims) -> bool {
        self.stale_grace.is_some_and(|grace| self.age(claims) < grace)
    }

    /// How long ago the answer arrived, on the monotonic clock: a step of
    /// the wall clock neither stretches nor shortens it.
    fn age(&self, claims: &Claims) -> Duration {
        Duration::from_millis(clock::monotonic_ms().saturating_sub(claims.received_at_ms))
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.counters.snapshot(
            self.active.as_ref().map_or(0, Cache::entry_count),
            self.active.as_ref().map_or(0, Cache::weighted_size),
            self.inactive.as_ref().map_or(0, Cache::entry_count),
        )
    }
}

/// Runs moka's maintenance until the entry count settles: with an eviction
/// listener, moka removes what `invalidate_all` dropped a batch per run.
async fn run_until_settled<V: Clone + Send + Sync + 'static>(cache: &Cache<Key, V>) {
    let mut last = None;
    while last != Some(cache.entry_count()) {
        last = Some(cache.entry_count());
        cache.run_pending_tasks().await;
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads racing moka's maintenance on two workers: an answer moka drops
    /// (size, admission) before it reaches the index must not stay there,
    /// or the index would outgrow moka for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_index_never_outgrows_moka() {
        let settings = CacheSettings {
            max_entries: 10,
            max_ttl: Duration::from_secs(3600),
            ..CacheSettings::default()
        };
        let cache = Arc::new(TokenCache::new(
            settings,
            KeyScheme::new("https://as/introspect", "rs"),
            None,
        ));
        let tasks: Vec<_> = (0..8u8)
            .map(|task| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move {
                    let active = cache.active.as_ref().unwrap();
                    for i in 0..2000u32 {
                        let key = cache.key(&format!("{task}-{i}"));
                        let ticket = cache.invalidations.ticket(key);
                        let load = async { Ok::<_, ()>(cache.entry(Principal::from_shared(Arc::default()))) };
                        let _ = cache.get_or_load(active, key, "t", &ticket, load).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        cache.run_pending_tasks().await;
        let index = cache.index.as_ref().unwrap().len();
        let moka = cache.active.as_ref().unwrap().entry_count();
        assert!(index as u64 <= moka, "index {index} entries, moka {moka}");
    }
    use crate::principal::Scopes;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(secs: u64, millis: u64) -> Duration {
        Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn ttl_is_bounded_by_exp() {
        assert_eq!(
            active_ttl(Some(1002), at(1000, 0), MINUTE),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            active_ttl(Some(1002), at(1000, 800), MINUTE),
            Some(Duration::from_millis(1200))
        );
    }

    #[test]
    fn ttl_is_bounded_by_max_ttl() {
        assert_eq!(active_ttl(Some(100_000), at(1000, 0), MINUTE), Some(MINUTE));
    }

    #[test]
    fn no_exp_means_max_ttl() {
        assert_eq!(active_ttl(None, at(1000, 0), MINUTE), Some(MINUTE));
    }

    #[test]
    fn passed_exp_is_not_cached() {
        assert_eq!(active_ttl(Some(1000), at(1000, 0), MINUTE), None);
        assert_eq!(active_ttl(Some(999), at(1000, 0), MINUTE), None);
        assert_eq!(active_ttl(Some(-5), at(1000, 0), MINUTE), None);
    }

    fn cache(endpoint: &str, client_id: &str) -> TokenCache {
        TokenCache::new(
            CacheSettings::default(),
            KeyScheme::new(endpoint, client_id),
            None,
        )
    }

    /// An answer loaded while its revocation was under way (the revocation
    /// looked for it before it was filed) is not admitted to hits.
    #[tokio::test]
    async fn an_answer_a_cutoff_refuses_is_not_admitted() {
        let cache = cache("e", "c");
        let now = crate::validate::unix_now();
        let claims = |iat: i64| {
            let json = format!(r#"{{"active":true,"sub":"alice","iat":{iat}}}"#);
            Principal::from_json(json.as_bytes()).unwrap().into_shared()
        };
        let (before, after) = (claims(now - 10), claims(now + 10));
        let (recorded, evicted) = cache
            .revoke(&Revocation::subject("https://as", "alice"), now)
            .await;
        assert!(recorded);
        assert_eq!(evicted, 0);
        let active = cache.active().unwrap();
        for (token, entry, admitted) in [("old", &before, false), ("new", &after, true)] {
            let key = cache.key(token);
            active.insert(key, Arc::clone(entry)).await;
            cache.admit(key, token, entry, &cache.ticket(key)).await;
            let now = clock::now();
            assert_eq!(cache.peek(&key, now).is_some(), admitted, "{token}");
        }
    }

    /// The who-index holds what moka holds: nothing once moka dropped an
    /// answer, and nothing after `invalidate_all`.
    #[tokio::test]
    async fn the_who_index_follows_the_cache() {
        let cache = cache("e", "c");
        let active = cache.active().unwrap();
        let claims = Principal::from_json(br#"{"active":true,"sub":"alice","client_id":"app"}"#)
            .unwrap()
            .into_shared();
        for token in ["one", "two"] {
            let key = cache.key(token);
            active.insert(key, Arc::clone(&claims)).await;
            cache.admit(key, token, &claims, &cache.ticket(key)).await;
        }
        assert_eq!(cache.who.sizes().1, 2, "alice and the client");
        active.invalidate(&cache.key("one")).await;
        cache.run_pending_tasks().await;
        let sub = cache.who.matching(&cache.keys, &Revocation::subject("", "alice"));
        assert_eq!(
            cache.who.take(&sub),
            vec![cache.key("two")],
            "the evicted answer left"
        );
        cache.invalidate_all();
        assert_eq!(cache.who.sizes().1, 0);
        // An answer moka no longer holds when it is admitted is not filed.
        let dropped = cache.key("three");
        cache
            .admit(dropped, "three", &claims, &cache.ticket(dropped))
            .await;
        assert_eq!(cache.who.sizes().1, 0);
    }

    #[test]
    fn weight_bounds_bytes_and_entries_at_once() {
        // 1000 bytes for at most 10 entries: every entry weighs at least 100.
        assert_eq!(weight(1, 1000, 10), 100);
        assert_eq!(weight(250, 1000, 10), 250);
        assert_eq!(weight(1, 1001, 10), 101, "rounded up, never more than 10 entries");
        assert_eq!(weight(1, 1000, 0), 1000, "no division by zero");
        assert_eq!(weight(usize::MAX, 1000, 10), u32::MAX);
    }

    #[test]
    fn entry_bytes_grow_with_extra_members() {
        let small = Principal::from_json(br#"{"active":true,"sub":"alice"}"#).unwrap();
        let large = Principal::from_json(
            format!(
                r#"{{"active":true,"sub":"alice","blob":"{}"}}"#,
                "x".repeat(60_000)
            )
            .as_bytes(),
        )
        .unwrap();
        let (small, large) = (
            entry_bytes(&small.into_shared()),
            entry_bytes(&large.into_shared()),
        );
        assert!((ENTRY_OVERHEAD..1024).contains(&small), "{small}");
        assert!((60_001..61_000).contains(&large), "{large}");
    }

    /// The default settings, changed by `f`, checked.
    fn with(f: fn(&mut CacheSettings)) -> Result<(), crate::error::ConfigError> {
        let mut settings = CacheSettings::default();
        f(&mut settings);
        settings.check()
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(with(|_| {}).is_ok());
        assert!(with(|s| s.max_ttl = Duration::from_secs(40_000_000_000)).is_err());
        assert!(with(|s| s.negative_ttl = Duration::MAX).is_err());
        assert!(with(|s| s.max_ttl = MAX_CACHE_TTL).is_ok());
        assert!(
            with(|s| s.stale_if_error = Duration::from_secs(30)).is_err(),
            "not longer than max_ttl"
        );
        assert!(with(|s| s.stale_if_error = Duration::from_secs(61)).is_ok());
        assert!(with(|s| s.max_bytes = 10).is_err());
        assert!(with(|s| s.negative_max_bytes = 0).is_err());
    }

    #[test]
    fn documented_defaults_and_limits() {
        assert_eq!(DEFAULT_MAX_BYTES, 64 * 1024 * 1024, "64 MiB");
        assert_eq!(DEFAULT_NEGATIVE_MAX_BYTES, 4 * 1024 * 1024, "4 MiB");
        assert_eq!(MAX_CACHE_TTL, Duration::from_secs(31_536_000), "365 days");
        assert_eq!(ENTRY_OVERHEAD, 336, "named in the `max_bytes` error");
    }

    #[test]
    fn a_budget_of_one_entry_overhead_is_enough_and_a_disabled_cache_needs_none() {
        assert!(with(|s| s.max_bytes = 336).is_ok());
        assert!(with(|s| s.max_bytes = 335).is_err());
        assert!(with(|s| s.negative_max_bytes = 336).is_ok());
        assert!(with(|s| s.negative_max_bytes = 335).is_err());
        let disabled: [fn(&mut CacheSettings); 2] = [
            |s| (s.max_bytes, s.max_entries) = (0, 0),
            |s| (s.negative_max_bytes, s.negative_entries) = (0, 0),
        ];
        for disable in disabled {
            assert!(with(disable).is_ok(), "a disabled cache needs no budget");
        }
    }

    #[test]
    fn entry_bytes_count_every_string_once() {
        const N: usize = 1000;
        let text = || Some("x".repeat(N).into_boxed_str());
        let base = entry_bytes(&Claims::default());
        assert_eq!(
            base,
            ENTRY_OVERHEAD + INDEX_OVERHEAD + std::mem::size_of::<Claims>()
        );
        let fields: [fn(&mut Claims); 7] = [
            |c| c.scopes = Scopes::from_iter_unsorted(["s".repeat(N)]),
            |c| c.subject = Some("x".repeat(N).into_boxed_str()),
            |c| c.username = Some("x".repeat(N).into_boxed_str()),
            |c| c.client_id = Some("x".repeat(N).into_boxed_str()),
            |c| c.token_type = Some("x".repeat(N).into_boxed_str()),
            |c| c.issuer = Some("x".repeat(N).into_boxed_str()),
            |c| c.jwt_id = Some("x".repeat(N).into_boxed_str()),
        ];
        for (i, set) in fields.iter().enumerate() {
            let mut claims = Claims::default();
            set(&mut claims);
            assert_eq!(entry_bytes(&claims), base + N, "field {i}");
        }
        let all = Claims {
            scopes: Scopes::from_iter_unsorted(["s".repeat(N)]),
            subject: text(),
            username: text(),
            client_id: text(),
            token_type: text(),
            issuer: text(),
            jwt_id: text(),
            ..Claims::default()
        };
        assert_eq!(entry_bytes(&all), base + 7 * N);
        let audiences = Claims {
            audiences: vec!["a".repeat(N).into_boxed_str(), "b".into()].into_boxed_slice(),
            ..Claims::default()
        };
        assert_eq!(
            entry_bytes(&audiences),
            base + 2 * std::mem::size_of::<Box<str>>() + N + 1
        );
    }

    #[test]
    fn extra_members_weigh_their_keys_and_values() {
        let bytes = |json: &str| entry_bytes(&Principal::from_json(json.as_bytes()).unwrap().into_shared());
        let base = bytes(r#"{"active":true,"a":0}"#);
        let long = "k".repeat(1000);
        // Each measured difference is the text added plus at most a few
        // words of bookkeeping: neither forgotten nor multiplied.
        let within = |grown: usize, added: usize| {
            assert!(
                (added..added + 256).contains(&(grown - base)),
                "{grown} - {base} for {added} bytes"
            );
        };
        within(bytes(&format!(r#"{{"active":true,"{long}":0}}"#)), 999);
        within(bytes(&format!(r#"{{"active":true,"a":"{long}"}}"#)), 1000);
        within(bytes(&format!(r#"{{"active":true,"a":["{long}",1]}}"#)), 1000);
        within(
            bytes(&format!(r#"{{"active":true,"a":{{"{long}":"{long}"}}}}"#)),
            2000,
        );
        within(
            bytes(&format!(r#"{{"active":true,"a":0,"{long}":"{long}"}}"#)),
            2000,
        );
        // One small member: the map, the member's node, its key and value.
        assert_eq!(
            base - bytes(r#"{"active":true}"#),
            std::mem::size_of::<serde_json::Map<String, serde_json::Value>>()
                + 32
                + std::mem::size_of::<String>()
                + 1
                + std::mem::size_of::<serde_json::Value>()
        );
    }

    #[test]
    fn expiry_follows_exp() {
        let claims = |exp: Option<i64>| -> Entry {
            Arc::new(Claims {
                expires_at: crate::principal::Timestamp::new(exp),
                ..Claims::default()
            })
        };
        let now = i64::try_from(since_epoch().as_secs()).unwrap();
        let (key, at) = ([0; 16], Instant::now());
        let in_30s = Duration::from_secs(28)..=Duration::from_secs(30);
        let until_exp = |entry: &Entry| UntilExp::until_exp(entry);
        let on_create = |entry: &Entry| UntilExp.expire_after_create(&key, entry, at);
        let on_update = |entry: &Entry| UntilExp.expire_after_update(&key, entry, at, Some(MINUTE));
        type Expire<'a> = &'a dyn Fn(&Entry) -> Option<Duration>;
        let expiries: [(&str, Expire<'_>); 3] = [
            ("until_exp", &until_exp),
            ("create", &on_create),
            ("update", &on_update),
        ];
        for (name, expiry) in expiries {
            let soon = expiry(&claims(Some(now + 30))).unwrap();
            assert!(in_30s.contains(&soon), "{name}: {soon:?}");
            // Without `exp`, `time_to_live` (max_ttl) alone bounds the entry.
            assert_eq!(expiry(&claims(None)), Some(Duration::MAX), "{name}");
            assert_eq!(expiry(&claims(Some(now - 1))), Some(Duration::ZERO), "{name}");
        }
    }

    #[test]
    fn only_answers_before_exp_are_cacheable() {
        let cache = cache("e", "c");
        let now = at(1_800_000_000, 0);
        let with_exp =
            |exp: &str| Principal::from_json(format!(r#"{{"active":true{exp}}}"#).as_bytes()).unwrap();
        assert!(cache.cacheable(&with_exp(r#","exp":1800000001"#), now));
        assert!(cache.cacheable(&with_exp(""), now));
        assert!(!cache.cacheable(&with_exp(r#","exp":1800000000"#), now));
    }

    #[test]
    fn entries_are_stamped_with_their_arrival() {
        let cache = cache("e", "c");
        let before = clock::monotonic_ms();
        let entry = cache.entry(Principal::from_json(br#"{"active":true,"sub":"alice"}"#).unwrap());
        assert_eq!(entry.subject.as_deref(), Some("alice"));
        assert!((before..=clock::monotonic_ms()).contains(&entry.received_at_ms));
    }

    /// Claims that arrived `age_ms` ago, and whether `check` held for them;
    /// retried until the monotonic clock did not tick during the check, so
    /// the age is exact.
    fn at_age(age_ms: u64, check: impl Fn(&Claims) -> bool) -> bool {
        loop {
            let now = clock::monotonic_ms();
            let claims = Claims {
                received_at_ms: now - age_ms,
                ..Claims::default()
            };
            let held = check(&claims);
            if clock::monotonic_ms() == now {
                return held;
            }
        }
    }

    #[test]
    fn staleness_and_grace_are_measured_on_the_monotonic_clock() {
        let settings = CacheSettings {
            max_ttl: Duration::from_millis(20),
            stale_if_error: Duration::from_millis(50),
            ..CacheSettings::default()
        };
        let cache = TokenCache::new(settings, KeyScheme::new("e", "c"), None);
        // The monotonic clock must have run long enough to express the ages.
        let _ = clock::monotonic_ms();
        std::thread::sleep(Duration::from_millis(100));
        for (age, stale, within) in [
            (0, false, true),
            (19, false, true),
            (20, true, true),
            (49, true, true),
            (50, true, false),
        ] {
            assert_eq!(at_age(age, |c| cache.is_stale(c)), stale, "stale at {age} ms");
            assert_eq!(
                at_age(age, |c| cache.within_grace(c)),
                within,
                "grace at {age} ms"
            );
        }
        assert!(at_age(30, |c| cache.age(c) == Duration::from_millis(30)));

        // Without stale-if-error nothing is stale: entries leave at max_ttl.
        let plain = TokenCache::new(
            CacheSettings {
                max_ttl: Duration::from_millis(20),
                ..CacheSettings::default()
            },
            KeyScheme::new("e", "c"),
            None,
        );
        assert!(!at_age(30, |c| plain.is_stale(c)));
        assert!(!at_age(0, |c| plain.within_grace(c)));
    }

    #[test]
    fn zero_max_ttl_disables_caching() {
        let settings = CacheSettings {
            max_ttl: Duration::ZERO,
            ..CacheSettings::default()
        };
        let cache = TokenCache::new(settings, KeyScheme::new("e", "c"), None);
        assert!(cache.active.is_none() && cache.inactive.is_none());
    }
}
