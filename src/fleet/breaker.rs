//! A circuit breaker for the shared tier: after `threshold` consecutive
//! failures, stop asking Redis for `open_for`; then let one probe through,
//! and close again on its success. Requests never wait on an open breaker:
//! they go to the authorization server as if the tier were absent.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::monotonic_ms as monotonic_millis;

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    open_for_ms: u64,
    failures: AtomicU32,
    /// Monotonic ms until which nothing is tried; 0 when closed.
    open_until_ms: AtomicU64,
    open: AtomicBool,
    trips: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for_ms: u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX).max(1),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            open: AtomicBool::new(false),
            trips: AtomicU64::new(0),
        }
    }

    /// Whether to try Redis now. While open, one caller per `open_for` is
    /// let through as a probe.
    pub(crate) fn allow(&self) -> bool {
        if !self.open.load(Ordering::Acquire) {
            return true;
        }
        let now = monotonic_millis();
        let until = self.open_until_ms.load(Ordering::Acquire);
        now >= until
            && self
                .open_until_ms
                .compare_exchange(
                    until,
                    now.saturating_add(self.open_for_ms),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open.swap(false, Ordering::AcqRel) {
            tracing::info!("shared cache (Redis) answers again; circuit breaker closed");
        }
    }

    /// Counts a failure; returns true when it opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if self.open.load(Ordering::Acquire) {
            // A failed probe: stay open another `open_for` (set by `allow`).
            return false;
        }
        if failures < self.threshold {
            return false;
        }
        self.open_until_ms.store(
            monotonic_millis().saturating_add(self.open_for_ms),
            Ordering::Release,
        );
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.trips.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn open_for(&self) -> Duration {
        Duration::from_millis(self.open_for_ms)
    }

    pub(crate) fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }
}

/// Lets one log line through per interval.
#[derive(Debug, Default)]
pub(crate) struct LogEvery {
    last_ms: AtomicU64,
}

impl LogEvery {
    pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

    pub(crate) fn allow(&self) -> bool {
        let now = monotonic_millis().saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(Self::INTERVAL.as_millis()).unwrap_or(u64::MAX);
        (last == 0 || now >= last.saturating_add(interval))
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let breaker = Breaker::new(3, Duration::from_millis(50));
        assert!(breaker.allow());
        assert!(!breaker.failure());
        breaker.success();
        assert!(!breaker.failure() && !breaker.failure(), "the count restarted");
        assert!(breaker.failure(), "third in a row opens");
        assert!(breaker.is_open() && !breaker.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow(), "one probe");
        assert!(!breaker.allow(), "only one");
        assert!(!breaker.failure(), "a failed probe keeps it open");
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow());
        breaker.success();
        assert!(!breaker.is_open() && breaker.allow() && breaker.allow());
        assert_eq!(breaker.trips(), 1);
        for _ in 0..3 {
            breaker.failure();
        }
        assert_eq!(breaker.trips(), 2, "each opening counts");
        assert_eq!(breaker.open_for(), Duration::from_millis(50), "as logged");
    }

    #[test]
    fn logs_once_per_interval() {
        let log = LogEvery::default();
        assert!(log.allow());
        assert!(!log.allow());
    }
}
