//! What this replica invalidated recently, kept in process: a shared value
//! answered at or before a token's invalidation is refused even if Redis
//! still holds it (a `DEL` lost in an outage, a flush not finished yet).
//! Also the invalidation commands Redis did not take, replayed once it
//! answers again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::keys::Names;
use crate::cache_key::Key;

/// Invalidations remembered per token before the memory folds into the
/// floor (see [`Revoked::remember`]).
const MAX_REMEMBERED: usize = 10_000;
/// Failed invalidations kept for replay; the oldest go first.
pub(crate) const MAX_PENDING: usize = 10_000;

/// Recent invalidations: token key → when (Unix ms), and a floor below
/// which every shared value is refused.
#[derive(Debug)]
pub(crate) struct Revoked {
    /// How long an invalidation is remembered: the longest life of a shared
    /// value.
    retain_ms: u64,
    map: Mutex<HashMap<Key, u64>>,
    /// Values answered at or before it are refused (an `invalidate_all`, or
    /// a memory that overflowed).
    floor_ms: AtomicU64,
}

impl Revoked {
    pub(crate) fn new(retain_ms: u64) -> Self {
        Self {
            retain_ms,
            map: Mutex::new(HashMap::new()),
            floor_ms: AtomicU64::new(0),
        }
    }

    /// Remembers that `key` was invalidated at `at_ms`. Bounded: when full
    /// of live entries, they fold into the floor, which refuses more than
    /// needed (costing AS calls) but never less.
    pub(crate) fn remember(&self, key: Key, at_ms: u64) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_REMEMBERED {
            let retain = self.retain_ms;
            map.retain(|_, at| at.saturating_add(retain) > at_ms);
            if map.len() >= MAX_REMEMBERED {
                let newest = map.values().copied().max().unwrap_or(0);
                self.raise_floor(newest);
                map.clear();
            }
        }
        let at = map.entry(key).or_insert(at_ms);
        *at = (*at).max(at_ms);
    }

    /// Refuses every value answered at or before `at_ms`.
    pub(crate) fn raise_floor(&self, at_ms: u64) {
        self.floor_ms.fetch_max(at_ms, Ordering::AcqRel);
    }

    /// Values of `key` answered at or before this time are refused.
    pub(crate) fn cutoff(&self, key: &Key, now_ms: u64) -> u64 {
        let floor = self.floor_ms.load(Ordering::Acquire);
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let own = map
            .get(key)
            .copied()
            .filter(|at| at.saturating_add(self.retain_ms) > now_ms)
            .unwrap_or(0);
        floor.max(own)
    }
}

/// An invalidation Redis did not take.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    One {
        names: Names,
        at_ms: u64,
    },
    All {
        at_ms: u64,
    },
    /// A revocation's sealed copies (see `cutoffs`).
    Cut {
        members: Vec<Vec<u8>>,
        forget_at_ms: u64,
    },
}

/// Invalidations to replay when Redis answers again (bounded).
#[derive(Debug, Default)]
pub(crate) struct Replay {
    queue: Mutex<VecDeque<Pending>>,
}

impl Replay {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `pending`; false when the oldest had to be dropped for it.
    pub(crate) fn push(&self, pending: Pending) -> bool {
        let mut queue = self.lock();
        let kept_all = queue.len() < MAX_PENDING;
        if !kept_all {
            queue.pop_front();
        }
        queue.push_back(pending);
        kept_all
    }

    /// Takes everything queued, oldest first.
    pub(crate) fn take(&self) -> Vec<Pending> {
        self.lock().drain(..).collect()
    }

    /// Puts back what could not be replayed, ahead of anything newer.
    pub(crate) fn put_back(&self, mut rest: Vec<Pending>) {
        let mut queue = self.lock();
        while let Some(pending) = rest.pop() {
            if queue.len() >= MAX_PENDING {
                break;
            }
            queue.push_front(pending);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_key_until_retained_then_forgets() {
        let revoked = Revoked::new(1000);
        revoked.remember([1; 16], 5000);
        assert_eq!(revoked.cutoff(&[1; 16], 5500), 5000);
        assert_eq!(revoked.cutoff(&[2; 16], 5500), 0);
        assert_eq!(revoked.cutoff(&[1; 16], 6000), 0, "past the longest shared life");
        revoked.raise_floor(7000);
        assert_eq!(revoked.cutoff(&[2; 16], 7100), 7000);
    }

    #[test]
    fn a_full_memory_folds_into_the_floor_never_forgets() {
        let revoked = Revoked::new(u64::MAX);
        for i in 0..MAX_REMEMBERED as u64 {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&i.to_be_bytes());
            revoked.remember(key, 100 + i);
        }
        revoked.remember([0xff; 16], 1_000_000);
        let first = [0u8; 16];
        assert!(revoked.cutoff(&first, 1_000_001) >= 100, "still refused");
        assert_eq!(revoked.cutoff(&[0xff; 16], 1_000_001), 1_000_000);
    }

    #[test]
    fn replay_is_bounded_and_keeps_order() {
        let replay = Replay::default();
        for at_ms in 0..(MAX_PENDING as u64 + 1) {
            replay.push(Pending::All { at_ms });
        }
        let taken = replay.take();
        assert_eq!(taken.len(), MAX_PENDING);
        assert!(matches!(taken[0], Pending::All { at_ms: 1 }));
        replay.push(Pending::All { at_ms: 99_999 });
        replay.put_back(taken[..2].to_vec());
        let again = replay.take();
        assert!(matches!(again[0], Pending::All { at_ms: 1 }));
        assert!(matches!(again[2], Pending::All { at_ms: 99_999 }));
        assert!(replay.is_empty());
    }
}
