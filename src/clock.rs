//! One clock read per cached request: the monotonic clock, with the wall
//! clock derived from it.
//!
//! A cache hit needs two times: the monotonic one, for how long an answer has
//! been cached (a step of the wall clock must neither stretch nor shorten
//! that), and the wall clock, for the token's own `exp` and `nbf`. Reading
//! both costs two clock reads per request; instead the wall clock is the
//! monotonic reading plus an offset, and the offset is read again from the
//! system at most once per [`RESYNC`]. So a step of the wall clock (NTP, an
//! operator) is seen within a second, and the checks against `exp` and `nbf`,
//! which are whole seconds with a leeway, keep their meaning.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the wall clock's offset is read again.
const RESYNC: Duration = Duration::from_secs(1);

/// A moment, on both clocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Milliseconds on the monotonic clock since this process first asked.
    pub(crate) monotonic_ms: u64,
    /// Milliseconds since the Unix epoch (negative only on a clock set
    /// before 1970).
    pub(crate) unix_ms: i64,
}

impl Now {
    /// Whole seconds since the Unix epoch, as `exp` and `nbf` count them.
    pub(crate) fn unix_secs(self) -> i64 {
        self.unix_ms.div_euclid(1000)
    }
}

struct Clock {
    origin: Instant,
    /// The wall clock minus the monotonic one, in milliseconds.
    offset_ms: AtomicI64,
    /// When (monotonic milliseconds, plus one so that zero means never) the
    /// offset was last read.
    synced_at: AtomicU64,
}

fn clock() -> &'static Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    CLOCK.get_or_init(|| Clock {
        origin: Instant::now(),
        offset_ms: AtomicI64::new(0),
        synced_at: AtomicU64::new(0),
    })
}

/// Now, from one read of the monotonic clock (and, once a second, one of the
/// wall clock).
pub(crate) fn now() -> Now {
    let clock = clock();
    let monotonic_ms = millis(clock.origin.elapsed());
    let synced_at = clock.synced_at.load(Ordering::Acquire);
    let offset_ms = if synced_at == 0 || monotonic_ms.saturating_sub(synced_at - 1) >= millis(RESYNC) {
        // Several threads may resync at once; each stores a correct offset.
        let monotonic = clock.origin.elapsed();
        let offset = wall_ms().saturating_sub(i64::try_from(millis(monotonic)).unwrap_or(i64::MAX));
        clock.offset_ms.store(offset, Ordering::Relaxed);
        clock
            .synced_at
            .store(millis(monotonic).saturating_add(1), Ordering::Release);
        offset
    } else {
        clock.offset_ms.load(Ordering::Relaxed)
    };
    Now {
        monotonic_ms,
        unix_ms: offset_ms.saturating_add(i64::try_from(monotonic_ms).unwrap_or(i64::MAX)),
    }
}

/// Milliseconds on the monotonic clock since this process first asked.
pub(crate) fn monotonic_ms() -> u64 {
    millis(clock().origin.elapsed())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The wall clock, read from the system.
fn wall_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_wall_clock_follows_the_system_one() {
        let before = wall_ms();
        let now = now();
        let after = wall_ms();
        // The offset was read within the last second; the clocks agree to
        // within a few milliseconds on a machine whose wall clock does not step.
        assert!(
            now.unix_ms >= before - 50 && now.unix_ms <= after + 50,
            "{before} {now:?} {after}"
        );
        assert_eq!(now.unix_secs(), now.unix_ms / 1000);
    }

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let first = now().monotonic_ms;
        let second = monotonic_ms();
        assert!(second >= first);
    }

    #[test]
    fn seconds_round_down_before_1970_too() {
        let at = |unix_ms| Now {
            monotonic_ms: 0,
            unix_ms,
        };
        assert_eq!(at(1_999).unix_secs(), 1);
        assert_eq!(at(-1).unix_secs(), -1);
    }
}
