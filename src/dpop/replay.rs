//! The replay cache of DPoP proofs (RFC 9449 §11.1): a proof's `jti` is
//! accepted once within the window its `iat` is accepted in. Separate from
//! the token cache.
//!
//! - This process's cache first: SHA-256(thumbprint ‖ 0 ‖ `jti`) of every
//!   proof accepted within the window, each kept until its window ends and
//!   **never forgotten earlier**: an LRU or any other eviction would let a
//!   client with a bound token of its own push out the proofs of others
//!   (by sending fresh proofs of its own) and then replay one it captured.
//!   So the cache is bounded by refusing, not by forgetting: when it holds
//!   `capacity` proofs, a new proof is answered 503 (`Retry-After`) until
//!   older ones expire; and one key may hold at most `per_key` of them, so
//!   that one busy or hostile client runs out of room before the others do.
//!   Refusals are counted ([`DpopStats`](super::DpopStats)) and logged.
//! - Then, when the layer's verifier has an introspector with a
//!   [shared cache](crate::IntrospectorBuilder::shared_cache) (feature
//!   `redis`), the fleet's replay cache: one atomic `SET NX PX` in Redis,
//!   under a name keyed with the fleet secret (neither the `jti` nor the
//!   thumbprint is readable there), living as long as the window. A proof
//!   another replica accepted is refused.
//! - Redis unavailable (down, slower than `command_timeout`, circuit breaker
//!   open): this process's cache alone decides. A proof is still accepted
//!   once per replica, and a replay at the same replica still refused; the
//!   fleet-wide guarantee is lost for the proofs accepted meanwhile (counted
//!   in `SharedCacheStats::dpop_local_only`, logged). Refusing every DPoP
//!   request instead would make Redis a single point of failure, which the
//!   shared tier never is.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ring::digest::{Context as Digest, SHA256};

use crate::clock;
use crate::verifier::Verifier;

/// What the replay cache says of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Its first use within the window: accepted, and now remembered.
    First,
    /// Seen before within the window (here or, with a shared tier, at
    /// another replica).
    Replayed,
    /// Not remembered, so refused: the cache holds `capacity` proofs.
    Full,
    /// Not remembered, so refused: its key holds `per_key` proofs already.
    KeyFull,
}

/// The proofs accepted within the window: in this process, and through the
/// fleet's shared tier when there is one.
pub(crate) struct ReplayCache {
    local: Mutex<Window>,
    capacity: usize,
    per_key: usize,
    /// How long a `jti` is remembered.
    window: Duration,
    pub(crate) counters: Counters,
}

/// The replay cache's counters, read by `DpopStats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) replays: AtomicU64,
    pub(crate) refused_full: AtomicU64,
    pub(crate) refused_key_full: AtomicU64,
}

/// Every proof remembered, in the order they were accepted (which is the
/// order they expire in: each lives for the same window on the monotonic
/// clock).
#[derive(Default)]
struct Window {
    /// Proof key → when it may be forgotten (monotonic ms).
    seen: HashMap<[u8; 32], u64>,
    /// (proof key, key of its DPoP key, when it may be forgotten).
    order: VecDeque<([u8; 32], [u8; 32], u64)>,
    /// DPoP key → how many of its proofs are remembered.
    per_key: HashMap<[u8; 32], usize>,
}

impl Window {
    /// Forgets every proof whose window has ended by `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        while let Some(&(proof, key, until)) = self.order.front() {
            if until > now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&proof);
            if let Some(count) = self.per_key.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.per_key.remove(&key);
                }
            }
        }
    }
}

impl ReplayCache {
    /// Remembers up to `capacity` proofs, at most `per_key` of one DPoP
    /// key, each for as long as a proof issued at its `iat` could be
    /// accepted (`max_age` and `leeway`).
    pub(crate) fn new(capacity: usize, per_key: usize, max_age: Duration, leeway: Duration) -> Self {
        Self {
            local: Mutex::new(Window::default()),
            capacity,
            per_key: per_key.clamp(1, capacity.max(1)),
            window: window(max_age, leeway),
            counters: Counters::default(),
        }
    }

    /// How many proofs this process remembers now.
    pub(crate) fn len(&self) -> usize {
        self.lock().seen.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Nothing in the critical sections panics; should one, the maps are
        // still consistent enough to go on with (the worst is a count that
        // is off by one, which refuses sooner).
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this is the first use of the proof `jti` by the key `jkt`
    /// within the window (as far as this process, and the fleet when it
    /// answers, know); remembers it if it is.
    pub(crate) async fn first_use(&self, verifier: &Verifier, jkt: &str, jti: &str) -> Use {
        let local = self.remember(jkt, jti, clock::now().monotonic_ms);
        match local {
            Use::First => {}
            Use::Replayed => {
                self.counters.replays.fetch_add(1, Ordering::Relaxed);
                return local;
            }
            Use::Full => {
                self.counters.refused_full.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    capacity = self.capacity,
                    "the DPoP replay cache is full: new proofs are refused (503) until older ones expire; raise DpopConfig::replay_capacity"
                );
                return local;
            }
            Use::KeyFull => {
                self.counters.refused_key_full.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    per_key = self.per_key,
                    "a DPoP key holds its whole share of the replay cache: its new proofs are refused (503) until older ones expire; see DpopConfig::replay_capacity_per_key"
                );
                return local;
            }
        }
        #[cfg(feature = "redis")]
        if let Some(tier) = verifier.shared_tier() {
            use crate::fleet::FirstUse;
            // `Unknown`: Redis could not be asked (counted and logged by
            // the tier); the local cache has vouched for it.
            if tier.first_dpop_use(jkt, jti, self.window).await == FirstUse::No {
                self.counters.replays.fetch_add(1, Ordering::Relaxed);
                return Use::Replayed;
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = verifier;
        Use::First
    }

    /// This process's part of [`first_use`](Self::first_use), at `now_ms`.
    fn remember(&self, jkt: &str, jti: &str, now_ms: u64) -> Use {
        let proof = local_key(jkt, jti);
        let key = key_of(jkt);
        let mut window = self.lock();
        window.expire(now_ms);
        if window.seen.contains_key(&proof) {
            return Use::Replayed;
        }
        if window.seen.len() >= self.capacity {
            return Use::Full;
        }
        let held = window.per_key.get(&key).copied().unwrap_or(0);
        if held >= self.per_key {
            return Use::KeyFull;
        }
        let until = now_ms.saturating_add(u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX));
        window.seen.insert(proof, until);
        window.order.push_back((proof, key, until));
        window.per_key.insert(key, held + 1);
        Use::First
    }
}

/// How long a `jti` must be remembered: `iat` is compared in whole seconds
/// with `leeway` either way, so a second more on each side.
fn window(max_age: Duration, leeway: Duration) -> Duration {
    max_age
        .saturating_add(leeway.saturating_mul(2))
        .saturating_add(Duration::from_secs(2))
}

/// The in-process key of a proof: SHA-256 of the thumbprint, a 0 byte
/// (never in a base64url thumbprint) and the `jti`.
fn local_key(jkt: &str, jti: &str) -> [u8; 32] {
    let mut digest = Digest::new(&SHA256);
    digest.update(jkt.as_bytes());
    digest.update(&[0]);
    digest.update(jti.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.finish().as_ref());
    key
}

/// The in-process key of a DPoP key (its thumbprint hashed, so that a
/// thumbprint of any length takes 32 bytes).
fn key_of(jkt: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(ring::digest::digest(&SHA256, jkt.as_bytes()).as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize, per_key: usize) -> ReplayCache {
        ReplayCache::new(capacity, per_key, Duration::from_secs(60), Duration::from_secs(5))
    }

    #[test]
    fn the_window_covers_max_age_and_leeway_both_ways() {
        assert_eq!(
            window(Duration::from_secs(60), Duration::from_secs(5)),
            Duration::from_secs(72)
        );
        assert_eq!(window(Duration::ZERO, Duration::ZERO), Duration::from_secs(2));
    }

    #[test]
    fn the_local_key_separates_thumbprint_and_jti() {
        assert_ne!(local_key("ab", "c"), local_key("a", "bc"));
        assert_eq!(local_key("ab", "c"), local_key("ab", "c"));
    }

    #[test]
    fn a_proof_is_remembered_for_its_whole_window_and_then_forgotten() {
        let cache = cache(10, 10);
        assert_eq!(cache.remember("k", "1", 1_000), Use::First);
        assert_eq!(cache.remember("k", "1", 1_000 + 71_999), Use::Replayed);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.remember("k", "1", 1_000 + 72_000), Use::First);
        // The same `jti` of another key is another proof.
        assert_eq!(cache.remember("other", "1", 1_000 + 72_000), Use::First);
    }

    /// A full cache refuses new proofs and forgets nothing: the flood that
    /// would push a captured proof out of an LRU.
    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = cache(4, 4);
        for (i, key) in ["a", "a", "b", "c"].into_iter().enumerate() {
            assert_eq!(cache.remember(key, &i.to_string(), 0), Use::First);
        }
        assert_eq!(cache.remember("d", "x", 10), Use::Full);
        assert_eq!(cache.remember("a", "0", 10), Use::Replayed);
        assert_eq!(cache.len(), 4);
        // Room again once the oldest expire, all at once here.
        assert_eq!(cache.remember("d", "x", 72_000), Use::First);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn one_key_holds_at_most_its_share() {
        let cache = cache(10, 2);
        assert_eq!(cache.remember("a", "1", 0), Use::First);
        assert_eq!(cache.remember("a", "2", 1), Use::First);
        assert_eq!(cache.remember("a", "3", 2), Use::KeyFull);
        assert_eq!(cache.remember("b", "1", 3), Use::First);
        // Its share comes back as its proofs expire, one by one.
        assert_eq!(cache.remember("a", "3", 72_000), Use::First);
        assert_eq!(cache.remember("a", "4", 72_000), Use::KeyFull);
        assert_eq!(cache.remember("a", "4", 72_001), Use::First);
    }

    #[test]
    fn the_share_is_at_least_one_and_at_most_the_capacity() {
        assert_eq!(cache(10, 0).per_key, 1);
        assert_eq!(cache(10, 50).per_key, 10);
    }
}
