//! The replay cache of DPoP proofs (RFC 9449 §11.1): a proof's `jti` is
//! accepted once within the window its `iat` is accepted in. Separate from
//! the token cache.
//!
//! - This process's cache first: a bounded LRU of SHA-256(thumbprint ‖ 0 ‖
//!   `jti`). A proof seen here is refused without a Redis round trip.
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

use std::time::Duration;

use moka::future::Cache;
use moka::policy::EvictionPolicy;
use ring::digest::{Context as Digest, SHA256};

use crate::verifier::Verifier;

/// The proofs accepted within the window: in this process, and through the
/// fleet's shared tier when there is one.
pub(crate) struct ReplayCache {
    local: Cache<[u8; 32], ()>,
    /// How long a `jti` is remembered.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    window: Duration,
}

impl ReplayCache {
    /// Remembers up to `capacity` proofs, each for as long as a proof
    /// issued at its `iat` could be accepted (`max_age` and `leeway`).
    pub(crate) fn new(capacity: u64, max_age: Duration, leeway: Duration) -> Self {
        let window = window(max_age, leeway);
        let local = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(window)
            // Every new proof must be remembered: TinyLFU could refuse to
            // admit it, LRU forgets the oldest instead.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { local, window }
    }

    /// Whether this is the first use of the proof `jti` by the key `jkt`
    /// within the window (as far as this process, and the fleet when it
    /// answers, know); marks it used either way.
    pub(crate) async fn first_use(&self, verifier: &Verifier, jkt: &str, jti: &str) -> bool {
        if !self
            .local
            .entry(local_key(jkt, jti))
            .or_insert(())
            .await
            .is_fresh()
        {
            return false;
        }
        #[cfg(feature = "redis")]
        if let Some(tier) = verifier.shared_tier() {
            use crate::fleet::FirstUse;
            // `Unknown`: Redis could not be asked (counted and logged by
            // the tier); the local cache has vouched for it.
            return tier.first_dpop_use(jkt, jti, self.window).await != FirstUse::No;
        }
        #[cfg(not(feature = "redis"))]
        let _ = verifier;
        true
    }
}

/// How long a `jti` must be remembered: `iat` is compared in whole seconds
/// with `leeway` either way, so a second more on each side.
fn window(max_age: Duration, leeway: Duration) -> Duration {
    max_age
        .saturating_add(leeway.saturating_mul(2))
        .saturating_add(Duration::from_secs(2))
}

/// The in-process key: SHA-256 of the thumbprint, a 0 byte (never in a
/// base64url thumbprint) and the `jti`.
fn local_key(jkt: &str, jti: &str) -> [u8; 32] {
    let mut digest = Digest::new(&SHA256);
    digest.update(jkt.as_bytes());
    digest.update(&[0]);
    digest.update(jti.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
