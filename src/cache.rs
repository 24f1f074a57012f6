//! The answer cache: moka, keyed by a SHA-256 of the token, bounded by the
//! token's `exp`, with inactive answers kept apart.
//!
//! - Keys are `SHA-256(domain ‖ len ‖ endpoint ‖ len ‖ client_id ‖ padding ‖ token)`:
//!   the length prefixes make the encoding injective (the token is the last
//!   field, so it needs none), and the endpoint and `client_id` keep answers
//!   given to one resource server from being used by another (RFC 7662 §2.2,
//!   I14). The prefix is padded to a whole SHA-256 block and hashed once, so a
//!   token of up to 55 bytes costs one compression. Raw tokens are never
//!   stored.
//! - Active answers live `min(exp − now, max_ttl)` (RFC 7662 §4, I9); reads
//!   never extend that.
//! - Inactive answers live `negative_ttl` in their own bounded cache, so a
//!   flood of random tokens can never evict an active entry.
//! - Faults are never cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::principal::{Claims, Principal};
use crate::stats::{CacheStats, Counters};
use crate::validate::since_epoch;

/// The cache key: the first 128 bits of a SHA-256 digest. Finding two tokens
/// with one key takes about 2^64 work, and finding a token for a given key
/// 2^128; half the digest keeps 16 bytes out of every cached entry.
pub(crate) type Key = [u8; 16];

const DOMAIN: &[u8] = b"tower-introspection/v1\0";
const BLOCK: usize = 64;

/// Default capacity of the active cache, in entries.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
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
        Some(active_ttl(claims.expires_at.get(), since_epoch(), Duration::MAX).unwrap_or(Duration::ZERO))
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
    /// Bumped by every invalidation: a load that started before one must not
    /// cache its answer, or the invalidation would be lost.
    generation: AtomicU64,
    /// The hasher state after the domain, endpoint and client id.
    prefix: Sha256,
    pub(crate) counters: Counters,
}

/// Cache settings, as given to the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSettings {
    pub(crate) max_entries: u64,
    pub(crate) max_ttl: Duration,
    pub(crate) negative_entries: u64,
    pub(crate) negative_ttl: Duration,
    pub(crate) stale_if_error: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_ttl: DEFAULT_MAX_TTL,
            negative_entries: DEFAULT_NEGATIVE_ENTRIES,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            stale_if_error: Duration::ZERO,
        }
    }
}

impl TokenCache {
    pub(crate) fn new(settings: CacheSettings, endpoint: &str, client_id: &str) -> Self {
        let enabled = !settings.max_ttl.is_zero() && settings.max_entries > 0;
        let stale_grace =
            (enabled && settings.stale_if_error > settings.max_ttl).then_some(settings.stale_if_error);
        let active = enabled.then(|| {
            Cache::builder()
                .max_capacity(settings.max_entries)
                // With stale-if-error, entries outlive `max_ttl` (never `exp`)
                // and are refreshed on use once older than `max_ttl`.
                .time_to_live(stale_grace.unwrap_or(settings.max_ttl))
                .expire_after(UntilExp)
                .build()
        });
        let negative = enabled && !settings.negative_ttl.is_zero() && settings.negative_entries > 0;
        let inactive = negative.then(|| {
            Cache::builder()
                .max_capacity(settings.negative_entries)
                .time_to_live(settings.negative_ttl)
                .build()
        });
        let mut prefix = Sha256::new();
        let mut len = DOMAIN.len();
        prefix.update(DOMAIN);
        for part in [endpoint, client_id] {
            prefix.update((part.len() as u64).to_be_bytes());
            prefix.update(part.as_bytes());
            len += 8 + part.len();
        }
        prefix.update(&[0u8; BLOCK][..(BLOCK - len % BLOCK) % BLOCK]);
        Self {
            active,
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
            generation: AtomicU64::new(0),
            prefix,
            counters: Counters::default(),
        }
    }

    pub(crate) fn key(&self, token: &str) -> Key {
        let mut hasher = self.prefix.clone();
        hasher.update(token.as_bytes());
        let digest = hasher.finalize();
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// Whether an active answer may be cached: not when its `exp` has passed.
    pub(crate) fn cacheable(&self, principal: &Principal, now: Duration) -> bool {
        active_ttl(principal.expires_at(), now, self.max_ttl).is_some()
    }

    /// The entry for an active answer, stamped with its arrival time.
    pub(crate) fn entry(&self, principal: Principal, now: Duration) -> Entry {
        let mut claims = principal.into_shared();
        if let Some(claims) = Arc::get_mut(&mut claims) {
            claims.received_at_ms = millis(now);
        }
        claims
    }

    /// Whether a cached answer is older than `max_ttl` (only possible with
    /// stale-if-error, which keeps entries longer).
    pub(crate) fn is_stale(&self, claims: &Claims) -> bool {
        self.stale_grace.is_some() && self.age(claims) >= self.max_ttl
    }

    /// The invalidation generation; see [`TokenCache::invalidated`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records an invalidation, before the entries are removed.
    pub(crate) fn invalidated(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a stale answer is still within the stale-if-error grace.
    pub(crate) fn within_grace(&self, claims: &Claims) -> bool {
        self.stale_grace.is_some_and(|grace| self.age(claims) < grace)
    }

    fn age(&self, claims: &Claims) -> Duration {
        Duration::from_millis(millis(since_epoch()).saturating_sub(claims.received_at_ms))
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.counters.snapshot(
            self.active.as_ref().map_or(0, Cache::entry_count),
            self.inactive.as_ref().map_or(0, Cache::entry_count),
        )
    }
}

fn millis(since_epoch: Duration) -> u64 {
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// The first bytes of a key in hex: enough to correlate log lines, useless
/// for recovering the token.
pub(crate) fn key_prefix(key: &Key) -> String {
    key[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // The zero padding cannot be mistaken for the start of a token.
        assert_ne!(cache("a", "b").key("\0t"), cache("a", "b").key("t"));
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
