//! The answer cache: moka, keyed by a keyed hash of the token, bounded by
//! the token's `exp`, with inactive answers kept apart.
//!
//! - Keys are `SipHash-1-3-128_k(domain ‖ len ‖ endpoint ‖ len ‖ client_id ‖ token)`
//!   under a secret key `k` drawn once per process from the operating
//!   system's random source. The length prefixes make the encoding
//!   injective (the token is the last field, so it needs none), and the
//!   endpoint and `client_id` keep answers given to one resource server from
//!   being used by another (RFC 7662 §2.2, I14). The hasher state after the
//!   prefix is kept, so a key costs one pass over the token. Raw tokens are
//!   never stored.
//! - Why a keyed hash suffices: the only harmful collision is a token the
//!   attacker makes that lands on the key of a token they do not know. SipHash
//!   is a pseudorandom function of its key; without `k` (which never leaves
//!   the process, and is never logged: log lines carry 4 bytes of a key, an
//!   output), each guess hits one of `n` cached keys with probability
//!   `n / 2^128`, whatever the attacker knows of the algorithm. It is 3×
//!   cheaper than SHA-256 on a 800-byte JWT, which keeps a cached JWT close to
//!   a cached opaque token.
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
//! - Hits read the [`ReadIndex`](crate::read_index), which mirrors moka's
//!   active entries without moka's per-read bookkeeping; misses go to moka.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use siphasher::sip128::{Hasher128 as _, SipHasher13};
use std::hash::{BuildHasher as _, Hasher as _};

use crate::clock::{self, Now};
use crate::error::AuthError;
use crate::principal::{Claims, Principal};
use crate::read_index::ReadIndex;
use crate::stats::{CacheStats, Counters};
use crate::token::is_b64token;
use crate::validate::{since_epoch, Checks};

/// The cache key: a 128-bit keyed hash of the token (see the module docs).
pub(crate) type Key = [u8; 16];

/// The secret key of every cache key in this process: 128 bits from the
/// operating system's random source, drawn once.
fn process_key() -> (u64, u64) {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut bytes = [0u8; 16];
        if getrandom::getrandom(&mut bytes).is_err() {
            // No OS source (exotic targets): the standard library's hasher
            // seed, which std draws from whatever source it has.
            tracing::warn!(
                "no OS random source; the cache key secret comes from the standard library's hasher seed"
            );
            let draw = |label: &str| std::collections::hash_map::RandomState::new().hash_one(label);
            bytes[..8].copy_from_slice(&draw("tower-introspection k0").to_le_bytes());
            bytes[8..].copy_from_slice(&draw("tower-introspection k1").to_le_bytes());
        }
        let (k0, k1) = bytes.split_at(8);
        let word = |half: &[u8]| half.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        (word(k0), word(k1))
    })
}

const DOMAIN: &[u8] = b"tower-introspection/v1\0";

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
    pub(crate) active: Option<Cache<Key, Entry>>,
    /// What hits read; present with `active`, holding only what it holds.
    index: Option<Arc<ReadIndex>>,
    pub(crate) inactive: Option<Cache<Key, ()>>,
    pub(crate) max_ttl: Duration,
    /// With stale-if-error: how long after its arrival an answer may still be
    /// used while the authorization server is unavailable.
    stale_grace: Option<Duration>,
    /// With stale-if-error: one refresh per key at a time (single flight).
    pub(crate) refreshing: Option<Cache<Key, Entry>>,
    /// With stale-if-error: keys whose refresh just failed; their stale
    /// answer is served without asking the AS again until this entry expires.
    pub(crate) refresh_failed: Option<Cache<Key, ()>>,
    /// Invalidations that loads in flight must see.
    pub(crate) invalidations: Invalidations,
    /// The hasher state after the domain, endpoint and client id.
    prefix: SipHasher13,
    pub(crate) counters: Counters,
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
        ] {
            if ttl > MAX_CACHE_TTL {
                return Err(OutOfRange {
                    setting,
                    range: "at most 365 days",
                });
            }
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
    pub(crate) fn new(settings: CacheSettings, endpoint: &str, client_id: &str) -> Self {
        let enabled = !settings.max_ttl.is_zero() && settings.max_entries > 0;
        let stale_grace =
            (enabled && settings.stale_if_error > settings.max_ttl).then_some(settings.stale_if_error);
        let (budget, entries) = (settings.max_bytes, settings.max_entries);
        let index = enabled.then(|| Arc::new(ReadIndex::new()));
        let active = index.as_ref().map(|index| {
            let index = Arc::clone(index);
            Cache::builder()
                .max_capacity(budget)
                // Called once per insert: the estimate walks the claims once.
                .weigher(move |_key: &Key, claims: &Entry| weight(entry_bytes(claims), budget, entries))
                // With stale-if-error, entries outlive `max_ttl` (never `exp`)
                // and are refreshed on use once older than `max_ttl`.
                .time_to_live(stale_grace.unwrap_or(settings.max_ttl))
                .expire_after(UntilExp)
                // Whatever moka drops, for whatever cause, hits stop finding.
                .eviction_listener(move |key: Arc<Key>, claims: Entry, _| index.remove_answer(&key, &claims))
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
        let prefix = key_prefix_hasher(process_key(), endpoint, client_id);
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
            prefix,
            counters: Counters::default(),
        }
    }

    pub(crate) fn key(&self, token: &str) -> Key {
        let mut hasher = self.prefix;
        hasher.write(token.as_bytes());
        hasher.finish128().as_bytes()
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
    pub(crate) fn peek(&self, token: &str, now: Now) -> Option<Entry> {
        self.index.as_ref()?.get(&self.key(token), now.monotonic_ms)
    }

    /// [`peek`](Self::peek), then the local checks every read runs: the
    /// outcome of a cached request, for both verifiers.
    #[inline]
    pub(crate) fn peek_checked(
        &self,
        checks: &Checks,
        token: &str,
        now: Now,
    ) -> Option<Result<Principal, AuthError>> {
        let principal = Principal::from_shared(self.peek(token, now)?);
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
    /// `ExtractToken::extract_for_cache_probe`), and a hit must mean the
    /// same bytes passed that check. A token outside the grammar reaches a
    /// verifier only through its public `validate`, never through the layer.
    pub(crate) async fn admit(&self, key: Key, token: &str, claims: &Entry, ticket: &LoadTicket<'_>) {
        let index = self.index.as_ref().filter(|_| is_b64token(token.as_bytes()));
        if let Some(index) = index {
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
                    if !active
                        .get(&key)
                        .await
                        .is_some_and(|held| Arc::ptr_eq(&held, claims))
                    {
                        index.remove_answer(&key, claims);
                    }
                }
            }
        }
        if ticket.spoiled() {
            self.forget(&key).await;
        }
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

/// The hasher state after the domain, endpoint and client id, under the
/// SipHash key `k`.
fn key_prefix_hasher(k: (u64, u64), endpoint: &str, client_id: &str) -> SipHasher13 {
    let mut prefix = SipHasher13::new_with_keys(k.0, k.1);
    prefix.write(DOMAIN);
    for part in [endpoint, client_id] {
        prefix.write(&(part.len() as u64).to_be_bytes());
        prefix.write(part.as_bytes());
    }
    prefix
}

/// What a fleet of replicas shares so that they compute the same cache key
/// for a token, and can name an entry to drop in each other's cache.
#[cfg(feature = "redis")]
impl TokenCache {
    /// Replaces the per-process SipHash key with `k` (derived from the fleet
    /// secret), so every replica's key for a token is the same.
    pub(crate) fn set_fleet_key(&mut self, k: (u64, u64), endpoint: &str, client_id: &str) {
        self.prefix = key_prefix_hasher(k, endpoint, client_id);
    }
}

/// The cache key of `token` under the SipHash key `k`: what a replica whose
/// fleet secret derives `k` uses.
#[cfg(feature = "redis")]
pub(crate) fn key_under(k: (u64, u64), endpoint: &str, client_id: &str, token: &str) -> Key {
    let mut hasher = key_prefix_hasher(k, endpoint, client_id);
    hasher.write(token.as_bytes());
    hasher.finish128().as_bytes()
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

/// Invalidations, as the loads in flight must see them.
///
/// A load registers a [`LoadTicket`] for its key before it starts; an
/// invalidation of that key (or of everything) spoils the tickets in flight,
/// and a spoiled load's answer is not cached, or removed again if it already
/// was. Only keys with a load in flight are tracked, so the map stays as
/// small as the number of concurrent loads, and invalidating one token never
/// spoils the loads of another.
#[derive(Debug, Default)]
pub(crate) struct Invalidations {
    /// Bumped by `invalidate_all`.
    epoch: AtomicU64,
    in_flight: Mutex<HashMap<Key, InFlight>>,
}

#[derive(Debug, Default)]
struct InFlight {
    tickets: usize,
    invalidations: u64,
}

impl Invalidations {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, InFlight>> {
        // Every update is a single step: a poisoned map is still consistent.
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a load of `key`; dropping the ticket unregisters it.
    pub(crate) fn ticket(&self, key: Key) -> LoadTicket<'_> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut map = self.lock();
        let entry = map.entry(key).or_default();
        entry.tickets += 1;
        LoadTicket {
            owner: self,
            key,
            epoch,
            seen: entry.invalidations,
        }
    }

    /// Spoils the loads in flight for `key`. Call before removing entries.
    pub(crate) fn invalidate(&self, key: &Key) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.invalidations += 1;
        }
    }

    /// Spoils every load in flight. Call before removing entries.
    pub(crate) fn invalidate_all(&self) {
        // Under the lock, as `ticket` and `spoiled` read it: the lock's
        // ordering (not only the atomic's) makes a load that stored its
        // answer before this bump see it, whatever the memory model allows.
        let _in_flight = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// A load in flight for one key; see [`Invalidations`].
#[derive(Debug)]
pub(crate) struct LoadTicket<'a> {
    owner: &'a Invalidations,
    key: Key,
    epoch: u64,
    seen: u64,
}

impl LoadTicket<'_> {
    /// Whether the key (or everything) was invalidated since the ticket was
    /// taken: the load's answer must not stay cached.
    pub(crate) fn spoiled(&self) -> bool {
        // The epoch is read under the lock that `invalidate_all` bumps it
        // under (see there).
        let in_flight = self.owner.lock();
        self.owner.epoch.load(Ordering::Acquire) != self.epoch
            || in_flight
                .get(&self.key)
                .is_some_and(|entry| entry.invalidations != self.seen)
    }
}

impl Drop for LoadTicket<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.lock();
        if let Some(entry) = map.get_mut(&self.key) {
            entry.tickets -= 1;
            if entry.tickets == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The first bytes of a key in hex: enough to correlate log lines, useless
/// for recovering the token.
pub(crate) fn key_prefix(key: &Key) -> String {
    key[..4].iter().map(|b| format!("{b:02x}")).collect()
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
        let cache = Arc::new(TokenCache::new(settings, "https://as/introspect", "rs"));
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
        TokenCache::new(CacheSettings::default(), endpoint, client_id)
    }

    #[test]
    fn keys_separate_endpoint_client_and_token() {
        let a = cache("https://as/introspect", "rs");
        assert_eq!(a.key("t"), a.key("t"));
        assert_ne!(a.key("t"), a.key("u"));
        assert_ne!(a.key("t"), cache("https://as/introspect", "rs2").key("t"));
        assert_ne!(a.key("t"), cache("https://as2/introspect", "rs").key("t"));
        // Shifting bytes between the parts must not collide.
        assert_ne!(cache("ab", "c").key("t"), cache("a", "bc").key("t"));
        assert_ne!(cache("a", "bc").key("t"), cache("a", "b").key("ct"));
        assert_ne!(cache("a", "b").key("\0t"), cache("a", "b").key("t"));
    }

    #[test]
    fn keys_are_keyed_by_a_process_secret() {
        // Not SipHash under the zero key: the key is secret and random.
        let unkeyed = {
            let mut hasher = SipHasher13::new_with_keys(0, 0);
            hasher.write(DOMAIN);
            for part in ["e", "c"] {
                hasher.write(&(part.len() as u64).to_be_bytes());
                hasher.write(part.as_bytes());
            }
            hasher.write(b"t");
            hasher.finish128().as_bytes()
        };
        assert_ne!(cache("e", "c").key("t"), unkeyed);
        assert_ne!(process_key(), (0, 0));
        assert_eq!(process_key(), process_key(), "one key per process");
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

    #[test]
    fn invalidation_spoils_only_its_own_key() {
        let invalidations = Invalidations::default();
        let (a, b) = ([1; 16], [2; 16]);
        let ticket_a = invalidations.ticket(a);
        let ticket_b = invalidations.ticket(b);
        invalidations.invalidate(&b);
        assert!(!ticket_a.spoiled());
        assert!(ticket_b.spoiled());
        invalidations.invalidate_all();
        assert!(ticket_a.spoiled());
        drop((ticket_a, ticket_b));
        assert!(invalidations.lock().is_empty(), "dropped tickets are forgotten");
        // An invalidation with no load in flight leaves nothing behind.
        invalidations.invalidate(&a);
        assert!(invalidations.lock().is_empty());
        assert!(!invalidations.ticket(a).spoiled());
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let with = |f: fn(&mut CacheSettings)| {
            let mut settings = CacheSettings::default();
            f(&mut settings);
            settings.check()
        };
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
        assert!(
            with(|s| {
                s.max_bytes = 0;
                s.max_entries = 0;
            })
            .is_ok(),
            "a disabled cache needs no budget"
        );
    }

    #[test]
    fn documented_defaults_and_limits() {
        assert_eq!(DEFAULT_MAX_BYTES, 64 * 1024 * 1024, "64 MiB");
        assert_eq!(DEFAULT_NEGATIVE_MAX_BYTES, 4 * 1024 * 1024, "4 MiB");
        assert_eq!(MAX_CACHE_TTL, Duration::from_secs(31_536_000), "365 days");
        assert_eq!(ENTRY_OVERHEAD, 336, "named in the `max_bytes` error");
    }

    #[test]
    fn a_budget_of_one_entry_overhead_is_enough() {
        let with = |f: fn(&mut CacheSettings)| {
            let mut settings = CacheSettings::default();
            f(&mut settings);
            settings.check()
        };
        assert!(with(|s| s.max_bytes = 336).is_ok());
        assert!(with(|s| s.max_bytes = 335).is_err());
        assert!(with(|s| s.negative_max_bytes = 336).is_ok());
        assert!(with(|s| s.negative_max_bytes = 335).is_err());
        assert!(
            with(|s| {
                s.negative_max_bytes = 0;
                s.negative_entries = 0;
            })
            .is_ok(),
            "a disabled inactive cache needs no budget"
        );
        assert!(
            with(|s| {
                s.max_bytes = 0;
                s.max_ttl = Duration::ZERO;
            })
            .is_ok(),
            "nor does a disabled active cache"
        );
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
        let cache = TokenCache::new(settings, "e", "c");
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
            "e",
            "c",
        );
        assert!(!at_age(30, |c| plain.is_stale(c)));
        assert!(!at_age(0, |c| plain.within_grace(c)));
    }

    #[test]
    fn key_prefix_is_four_bytes_in_hex() {
        let mut key = [0xff; 16];
        key[..4].copy_from_slice(&[0x01, 0xab, 0x00, 0x7f]);
        assert_eq!(key_prefix(&key), "01ab007f");
    }

    #[test]
    fn zero_max_ttl_disables_caching() {
        let settings = CacheSettings {
            max_ttl: Duration::ZERO,
            ..CacheSettings::default()
        };
        let cache = TokenCache::new(settings, "e", "c");
        assert!(cache.active.is_none() && cache.inactive.is_none());
    }
}
