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
//!   older ones expire; and the proofs of one access token may hold at most
//!   `per_token` places, so that one busy or hostile token runs out of room
//!   before the others do (per token, not per key: with unbound tokens
//!   accepted, one token could sign with a new key per proof). A client
//!   holding several tokens holds several shares: the share keeps one token
//!   from crowding out the rest; refusing when full is what keeps every
//!   replay out. Refusals are counted ([`DpopStats`](super::DpopStats)) and
//!   logged at most every 10 s.
//! - Then, when the layer's verifier has an introspector with a
//!   [shared cache](crate::introspection::IntrospectorBuilder::shared_cache) (feature
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
    /// Not remembered, so refused: its token's proofs hold `per_token`
    /// places already.
    TokenFull,
}

/// The proofs accepted within the window: in this process, and through the
/// fleet's shared tier when there is one.
pub(crate) struct ReplayCache {
    local: Mutex<Window>,
    capacity: usize,
    per_token: usize,
    /// How long a `jti` is remembered.
    window: Duration,
    pub(crate) counters: Counters,
    /// When a refusal was last logged (monotonic ms, plus one; 0: never).
    logged_ms: AtomicU64,
}

/// The replay cache's counters, read by `DpopStats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) replays: AtomicU64,
    pub(crate) refused_full: AtomicU64,
    pub(crate) refused_token_full: AtomicU64,
}

/// Every proof remembered, in the order they were accepted (which is the
/// order they expire in: each lives for the same window on the monotonic
/// clock).
#[derive(Default)]
struct Window {
    /// Proof key → when it may be forgotten (monotonic ms).
    seen: HashMap<[u8; 32], u64>,
    /// (proof key, key of its access token, when it may be forgotten).
    order: VecDeque<([u8; 32], [u8; 32], u64)>,
    /// Access token → how many of its proofs are remembered.
    per_token: HashMap<[u8; 32], usize>,
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
            if let Some(count) = self.per_token.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.per_token.remove(&key);
                }
            }
        }
    }
}

impl ReplayCache {
    /// Remembers up to `capacity` proofs, at most `per_token` of one
    /// access token, each for as long as a proof issued at its `iat` could
    /// be accepted (`max_age` and `leeway`).
    pub(crate) fn new(capacity: usize, per_token: usize, max_age: Duration, leeway: Duration) -> Self {
        Self {
            local: Mutex::new(Window::default()),
            capacity,
            per_token: per_token.clamp(1, capacity.max(1)),
            window: window(max_age, leeway),
            counters: Counters::default(),
            logged_ms: AtomicU64::new(0),
        }
    }

    /// How many proofs this process remembers now (those whose window has
    /// ended are forgotten first).
    pub(crate) fn len(&self) -> usize {
        let mut window = self.lock();
        window.expire(clock::now().monotonic_ms);
        window.seen.len()
    }

    /// Whether a refusal may be logged now: at most one line every 10 s,
    /// since whoever holds a token decides how many refusals there are.
    fn may_log(&self, now_ms: u64) -> bool {
        let now = now_ms.saturating_add(1);
        let last = self.logged_ms.load(Ordering::Relaxed);
        (last == 0 || now >= last.saturating_add(LOG_EVERY_MS))
            && self
                .logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Counts a proof refused for want of room (`full`: the whole cache or
    /// the token's share), and says so in the log at most every 10 s.
    fn count_full(&self, full: Use, now_ms: u64) {
        let token_full = matches!(full, Use::TokenFull);
        let counter = if token_full {
            &self.counters.refused_token_full
        } else {
            &self.counters.refused_full
        };
        let refused = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.may_log(now_ms) {
            return;
        }
        if token_full {
            tracing::warn!(
                per_token = self.per_token,
                refused,
                "an access token's DPoP proofs hold its whole share of the replay cache: its new proofs are refused (503) until older ones expire; see DpopConfig::replay_capacity_per_token (logged at most every 10 s)"
            );
        } else {
            tracing::warn!(
                capacity = self.capacity,
                refused,
                "the DPoP replay cache is full: new proofs are refused (503) until older ones expire; raise DpopConfig::replay_capacity (logged at most every 10 s)"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Nothing in the critical sections panics; should one, the maps are
        // still consistent enough to go on with (the worst is a count that
        // is off by one, which refuses sooner).
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this is the first use of the proof `jti` by the key `jkt`
    /// within the window (as far as this process, and the fleet when it
    /// answers, know); remembers it if it is. `token` is the SHA-256 of the
    /// access token the proof came with, whose share it takes.
    pub(crate) async fn first_use(&self, verifier: &Verifier, jkt: &str, jti: &str, token: &[u8; 32]) -> Use {
        let now_ms = clock::now().monotonic_ms;
        let local = self.remember(jkt, jti, token, now_ms);
        match local {
            Use::First => {}
            Use::Replayed => {
                self.counters.replays.fetch_add(1, Ordering::Relaxed);
                return local;
            }
            Use::Full | Use::TokenFull => {
                self.count_full(local, now_ms);
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
    fn remember(&self, jkt: &str, jti: &str, token: &[u8; 32], now_ms: u64) -> Use {
        let proof = local_key(jkt, jti);
        let key = *token;
        let mut window = self.lock();
        window.expire(now_ms);
        if window.seen.contains_key(&proof) {
            return Use::Replayed;
        }
        if window.seen.len() >= self.capacity {
            return Use::Full;
        }
        let held = window.per_token.get(&key).copied().unwrap_or(0);
        if held >= self.per_token {
            return Use::TokenFull;
        }
        let until = now_ms.saturating_add(u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX));
        window.seen.insert(proof, until);
        window.order.push_back((proof, key, until));
        window.per_token.insert(key, held + 1);
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

/// How often a refusal is logged at most.
const LOG_EVERY_MS: u64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::proof::token_digest;

    fn cache(capacity: usize, per_token: usize) -> ReplayCache {
        ReplayCache::new(
            capacity,
            per_token,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
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
        assert_eq!(cache.remember("k", "1", &token_digest("k"), 1_000), Use::First);
        assert_eq!(
            cache.remember("k", "1", &token_digest("k"), 1_000 + 71_999),
            Use::Replayed
        );
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.remember("k", "1", &token_digest("k"), 1_000 + 72_000),
            Use::First
        );
        // The same `jti` of another key is another proof.
        assert_eq!(
            cache.remember("other", "1", &token_digest("other"), 1_000 + 72_000),
            Use::First
        );
    }

    /// A full cache refuses new proofs and forgets nothing: the flood that
    /// would push a captured proof out of an LRU.
    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = cache(4, 4);
        for (i, key) in ["a", "a", "b", "c"].into_iter().enumerate() {
            assert_eq!(
                cache.remember(key, &i.to_string(), &token_digest(key), 0),
                Use::First
            );
        }
        assert_eq!(cache.remember("d", "x", &token_digest("d"), 10), Use::Full);
        assert_eq!(cache.remember("a", "0", &token_digest("a"), 10), Use::Replayed);
        assert_eq!(cache.len(), 4);
        // Room again once the oldest expire, all at once here.
        assert_eq!(cache.remember("d", "x", &token_digest("d"), 72_000), Use::First);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn one_token_holds_at_most_its_share() {
        let cache = cache(10, 2);
        assert_eq!(cache.remember("a", "1", &token_digest("a"), 0), Use::First);
        assert_eq!(cache.remember("a", "2", &token_digest("a"), 1), Use::First);
        assert_eq!(cache.remember("a", "3", &token_digest("a"), 2), Use::TokenFull);
        assert_eq!(cache.remember("b", "1", &token_digest("b"), 3), Use::First);
        // Its share comes back as its proofs expire, one by one.
        assert_eq!(cache.remember("a", "3", &token_digest("a"), 72_000), Use::First);
        assert_eq!(
            cache.remember("a", "4", &token_digest("a"), 72_000),
            Use::TokenFull
        );
        assert_eq!(cache.remember("a", "4", &token_digest("a"), 72_001), Use::First);
    }

    /// With unbound tokens accepted, one token may sign with a new key per
    /// proof: the share is the token's, whatever the keys.
    #[test]
    fn the_share_is_the_tokens_whatever_the_key() {
        let cache = cache(10, 2);
        assert_eq!(cache.remember("k1", "1", &token_digest("t"), 0), Use::First);
        assert_eq!(cache.remember("k2", "1", &token_digest("t"), 0), Use::First);
        assert_eq!(cache.remember("k3", "1", &token_digest("t"), 0), Use::TokenFull);
        assert_eq!(cache.remember("k3", "1", &token_digest("u"), 0), Use::First);
    }

    #[test]
    fn refusals_are_logged_at_most_every_ten_seconds() {
        let cache = cache(10, 2);
        assert!(cache.may_log(0));
        assert!(!cache.may_log(9_999));
        assert!(cache.may_log(10_000));
        assert!(!cache.may_log(10_001));
    }

    #[test]
    fn the_share_is_at_least_one_and_at_most_the_capacity() {
        assert_eq!(cache(10, 0).per_token, 1);
        assert_eq!(cache(10, 50).per_token, 10);
    }
}
