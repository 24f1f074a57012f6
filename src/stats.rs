//! Counters: a cheap snapshot ([`CacheStats`]) and, with the `metrics`
//! feature, the same events exported through the `metrics` facade.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tower_introspection_cache_hits_total` | counter | |
//! | `tower_introspection_cache_negative_hits_total` | counter | |
//! | `tower_introspection_cache_misses_total` | counter | |
//! | `tower_introspection_cache_coalesced_waits_total` | counter | |
//! | `tower_introspection_stale_served_total` | counter | |
//! | `tower_introspection_introspections_total` | counter | `outcome`: `active`, `inactive`, `as_fault`, `config_error`, `throttled` |
//! | `tower_introspection_introspection_duration_seconds` | histogram | `outcome` |
//! | `tower_introspection_rejections_total` | counter | `status`: `400`, `401`, `403`, `500`, `503` |
//! | `tower_introspection_revocation_events_total` | counter | `receiver`, `outcome` (see `revocation::EventStats`) |
//! | `tower_introspection_revocation_evictions_total` | counter | `receiver` |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What one introspection call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Active,
    Inactive,
    AsFault,
    ConfigError,
    Throttled,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::AsFault => "as_fault",
            Self::ConfigError => "config_error",
            Self::Throttled => "throttled",
        }
    }
}

/// Relaxed atomic counters. Hits, counted on every cached request, are
/// striped so that threads do not write one cache line in turn.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: StripedCounter,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    coalesced_waits: AtomicU64,
    stale_served: AtomicU64,
}

/// Introspection calls by outcome: the introspection source's own counters.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    active: AtomicU64,
    inactive: AtomicU64,
    as_fault: AtomicU64,
    config_error: AtomicU64,
    throttled: AtomicU64,
}

/// A counter that many threads increment without contending: each thread
/// writes its own stripe (its own cache line, as long as there are no more
/// threads than stripes), and a read sums the stripes.
#[derive(Debug, Default)]
pub(crate) struct StripedCounter {
    stripes: [Stripe; STRIPES],
}

/// Enough for the worker threads of most servers; beyond, threads share
/// stripes, which stays correct and is still spread out.
const STRIPES: usize = 16;

/// One stripe, alone on its cache line (128 bytes: two lines are fetched
/// together on recent x86 cores).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl StripedCounter {
    #[inline]
    pub(crate) fn increment(&self) {
        self.stripes[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.stripes.iter().fold(0u64, |sum, stripe| {
            sum.wrapping_add(stripe.0.load(Ordering::Relaxed))
        })
    }
}

/// This thread's stripe: threads are numbered in the order they first count.
#[inline]
fn stripe() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

macro_rules! export {
    ($($tt:tt)*) => {
        #[cfg(feature = "metrics")]
        { $($tt)* }
    };
}

/// Counting methods: each adds one to its field and exports the same
/// event as a `metrics` counter of that name.
macro_rules! counting {
    ($($(#[$attr:meta])* $vis:vis fn $name:ident => $field:ident, $metric:literal;)*) => {
        $(
            $(#[$attr])*
            $vis fn $name(&self) {
                self.$field.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                $crate::stats::export!(metrics::counter!($metric).increment(1));
            }
        )*
    };
}

// By path: `counting!` expands `export!` wherever it is used (the fleet).
#[allow(unused_imports)]
pub(crate) use {counting, export};

impl Counters {
    #[inline]
    pub(crate) fn hit(&self) {
        self.hits.increment();
        export!(metrics::counter!("tower_introspection_cache_hits_total").increment(1));
    }

    counting! {
        pub(crate) fn negative_hit => negative_hits, "tower_introspection_cache_negative_hits_total";
        pub(crate) fn miss => misses, "tower_introspection_cache_misses_total";
        pub(crate) fn coalesced_wait => coalesced_waits, "tower_introspection_cache_coalesced_waits_total";
        pub(crate) fn stale_served => stale_served, "tower_introspection_stale_served_total";
    }

    pub(crate) fn snapshot(&self, entries: u64, bytes: u64, negative_entries: u64) -> CacheStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: self.hits.sum(),
            negative_hits: load(&self.negative_hits),
            misses: load(&self.misses),
            coalesced_waits: load(&self.coalesced_waits),
            stale_served: load(&self.stale_served),
            introspections: IntrospectionStats::default(),
            entries,
            bytes,
            negative_entries,
            shared: SharedCacheStats::default(),
        }
    }
}

impl Outcomes {
    pub(crate) fn count(&self, outcome: Outcome, elapsed: Duration) {
        bump(match outcome {
            Outcome::Active => &self.active,
            Outcome::Inactive => &self.inactive,
            Outcome::AsFault => &self.as_fault,
            Outcome::ConfigError => &self.config_error,
            Outcome::Throttled => &self.throttled,
        });
        export!(
            metrics::counter!("tower_introspection_introspections_total", "outcome" => outcome.as_str()).increment(1);
            metrics::histogram!("tower_introspection_introspection_duration_seconds", "outcome" => outcome.as_str())
                .record(elapsed.as_secs_f64());
        );
        let _ = elapsed;
    }

    pub(crate) fn snapshot(&self) -> IntrospectionStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        IntrospectionStats {
            active: load(&self.active),
            inactive: load(&self.inactive),
            as_fault: load(&self.as_fault),
            config_error: load(&self.config_error),
            throttled: load(&self.throttled),
        }
    }
}

/// Counts a rejection by status (exported with the `metrics` feature).
pub(crate) fn rejection(status: http::StatusCode) {
    export!(
        metrics::counter!("tower_introspection_rejections_total", "status" => status.as_str().to_owned())
            .increment(1)
    );
    let _ = status;
}

/// A snapshot of an introspector's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Requests answered from the active cache.
    pub hits: u64,
    /// Requests answered from the inactive cache.
    pub negative_hits: u64,
    /// Requests that found nothing cached (including coalesced waiters).
    pub misses: u64,
    /// Misses that waited for another request's introspection call instead
    /// of making their own.
    pub coalesced_waits: u64,
    /// Requests accepted on a stale answer while the authorization server
    /// was unavailable (see `stale_if_error`).
    pub stale_served: u64,
    /// Introspection calls, by outcome.
    pub introspections: IntrospectionStats,
    /// Active entries currently cached (moka's estimate).
    pub entries: u64,
    /// The estimated bytes those entries hold, as weighed against
    /// `max_bytes` (each counts at least `max_bytes / max_entries`).
    pub bytes: u64,
    /// Inactive entries currently cached (moka's estimate).
    pub negative_entries: u64,
    /// The shared tier in Redis (feature `redis`; all zero without it).
    pub shared: SharedCacheStats,
}

/// Introspection calls by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntrospectionStats {
    /// The authorization server said active.
    pub active: u64,
    /// The authorization server said inactive.
    pub inactive: u64,
    /// The authorization server could not be used (503).
    pub as_fault: u64,
    /// The authorization server refused our credentials (500).
    pub config_error: u64,
    /// Not made: too many calls were already in flight (503).
    pub throttled: u64,
}

impl IntrospectionStats {
    /// All outcomes, including throttled calls that were never sent.
    pub fn total(&self) -> u64 {
        self.active + self.inactive + self.as_fault + self.config_error + self.throttled
    }
}

/// The shared tier's counters (feature `redis`), in [`CacheStats::shared`].
///
/// Exported with the `metrics` feature as
/// `tower_introspection_shared_cache_{hits,misses,errors,refused_values,skipped,fleet_waits,dpop_local_only,notice_flushes}_total`
/// and the gauge `tower_introspection_shared_cache_breaker_open` (0 or 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedCacheStats {
    /// Whether the introspector has a shared tier.
    pub enabled: bool,
    /// In-process misses answered from the shared tier.
    pub hits: u64,
    /// In-process misses the shared tier did not have either (this replica
    /// then introspected for the fleet).
    pub misses: u64,
    /// Redis commands that failed or timed out.
    pub errors: u64,
    /// Values that did not open under the fleet secret, or outlived the
    /// life sealed into them, or were answered before an invalidation:
    /// treated as misses. Also notices that did not verify.
    pub refused_values: u64,
    /// Lookups not tried because the circuit breaker was open.
    pub skipped: u64,
    /// Misses that waited for another replica's introspection.
    pub fleet_waits: u64,
    /// DPoP proofs accepted on this replica's replay cache alone, Redis
    /// being unavailable (its failures are also in `errors` or `skipped`):
    /// a replay of one at another replica within the DPoP window would not
    /// have been seen.
    pub dpop_local_only: u64,
    /// Whole in-process drops for invalidation notices that could not name
    /// this replica's entry. Expected during step 1 of a fleet-secret
    /// rotation: a replica not rotated yet names the entry under the old
    /// secret only (refilled from Redis). Otherwise a notice that did not
    /// verify (also in `refused_values`): a replica whose secrets this one
    /// shares none of — a rotation that skipped a step — or a forgery; then
    /// shared answers given before it are refused too (refilled from the
    /// authorization server), at most once every 5 s.
    pub notice_flushes: u64,
    /// Whether the circuit breaker is open now.
    pub breaker_open: bool,
    /// How many times the breaker opened.
    pub breaker_trips: u64,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_striped_counter_sums_the_increments_of_every_thread() {
        let counter = Arc::new(StripedCounter::default());
        let threads: Vec<_> = (0..2 * STRIPES)
            .map(|_| {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || (0..1000).for_each(|_| counter.increment()))
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.sum(), 2 * STRIPES as u64 * 1000);
        // Spread over the stripes, not all on one.
        assert!(
            counter
                .stripes
                .iter()
                .filter(|s| s.0.load(Ordering::Relaxed) > 0)
                .count()
                > 1
        );
    }
}
