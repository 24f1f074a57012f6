//! Invalidations as the loads in flight see them: see [`Invalidations`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::cache_key::Key;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
