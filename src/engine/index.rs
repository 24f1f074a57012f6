//! The cache's read index: what a cache hit reads, without a lock, a channel
//! send or a shared write.
//!
//! moka owns the cached answers: it bounds them in entries and bytes, expires
//! them, evicts them, and makes concurrent misses for one token share one
//! introspection call. But every moka read also records the access for its
//! eviction policy (a channel send), reads its clock, and now and then runs
//! maintenance: about 2000 instructions per hit, most of a cached request.
//!
//! So hits read this index instead: a lock-free map ([`papaya`]) from cache
//! key to the same shared answer and the moment it stops being usable. The
//! index holds only what moka holds:
//!
//! - an answer enters the index after it entered moka, from the call that
//!   loaded it, and is taken out again if the token was invalidated meanwhile
//!   (see `TokenCache::admit`);
//! - when moka drops an answer (expiry, eviction, invalidation, replacement),
//!   its eviction listener drops the same answer from the index — the same
//!   one, compared by pointer, so a newer answer for the key stays;
//! - an invalidation removes the key from both at once;
//! - each entry carries its own deadline, `min(exp, arrival + max_ttl)` on
//!   the monotonic clock, checked on every read: moka's listener runs during
//!   its maintenance, some time after the expiry, and an entry must not be
//!   used a moment longer than moka would have kept it.
//!
//! What the index gives up: moka no longer sees hits, so under memory
//! pressure its policy evicts by insertion order and frequency of loads
//! rather than of use. Entries live at most `max_ttl` (a minute by default)
//! anyway, so a hot token evicted early costs one introspection call.
//!
//! The map's hash is the first eight bytes of the key. The key is already a
//! keyed pseudorandom function of the token (see the cache module), so
//! without the process's secret nobody can pick tokens that pile into one
//! bucket; hashing it again would only cost time.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use super::cache::Entry;
use crate::cache_key::Key;

/// A cached answer as the index holds it.
pub(crate) struct Indexed {
    pub(crate) claims: Entry,
    /// Past this moment (monotonic milliseconds), the entry is not used.
    pub(crate) until_ms: u64,
}

/// See the module docs.
pub(crate) struct ReadIndex {
    map: papaya::HashMap<Key, Indexed, KeyHash>,
}

impl ReadIndex {
    pub(crate) fn new() -> Self {
        Self {
            map: papaya::HashMap::builder().hasher(KeyHash).build(),
        }
    }

    /// The answer cached for `key`, if it is usable at `now_ms`.
    #[inline]
    pub(crate) fn get(&self, key: &Key, now_ms: u64) -> Option<Entry> {
        let map = self.map.pin();
        let indexed = map.get(key)?;
        (now_ms < indexed.until_ms).then(|| indexed.claims.clone())
    }

    pub(crate) fn insert(&self, key: Key, claims: Entry, until_ms: u64) {
        self.map.pin().insert(key, Indexed { claims, until_ms });
    }

    pub(crate) fn remove(&self, key: &Key) {
        self.map.pin().remove(key);
    }

    /// Removes `key` only while it still maps to `claims` (the very same
    /// answer): moka's listener reports the answers it dropped, and a newer
    /// one for the same key must stay.
    /// Takes `claims` out for `key`, if the index holds that very answer.
    /// True unless it holds another one for the key (a newer answer).
    pub(crate) fn remove_answer(&self, key: &Key, claims: &Entry) -> bool {
        let map = self.map.pin();
        match map.remove_if(key, |_, indexed| Arc::ptr_eq(&indexed.claims, claims)) {
            Ok(_) => true,
            Err(_) => map.get(key).is_none(),
        }
    }

    pub(crate) fn clear(&self) {
        self.map.pin().clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Hashes a [`Key`] to its first eight bytes (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// See [`KeyHash`].
#[derive(Debug)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// A key's bytes. Anything shorter than eight bytes is mixed in too, so
    /// the hasher stays usable (if slow-witted) should other types reach it.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(first) => self.0 ^= u64::from_le_bytes(*first),
            None => {
                for &byte in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(byte);
                }
            }
        }
    }

    /// The length prefix that `[u8; 16]`'s `Hash` writes: always 16, so it
    /// carries nothing.
    #[inline]
    fn write_usize(&mut self, _: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Claims;

    fn claims() -> Entry {
        Arc::new(Claims::default())
    }

    #[test]
    fn an_entry_is_used_until_its_deadline_only() {
        let index = ReadIndex::new();
        index.insert([1; 16], claims(), 1000);
        assert!(index.get(&[1; 16], 999).is_some());
        assert!(index.get(&[1; 16], 1000).is_none());
        assert!(index.get(&[2; 16], 0).is_none());
    }

    #[test]
    fn a_listener_removes_only_the_answer_it_was_told_of() {
        let index = ReadIndex::new();
        let (old, new) = (claims(), claims());
        index.insert([1; 16], old.clone(), u64::MAX);
        index.insert([1; 16], new.clone(), u64::MAX);
        index.remove_answer(&[1; 16], &old);
        let kept = index.get(&[1; 16], 0).unwrap();
        assert!(Arc::ptr_eq(&kept, &new));
        index.remove_answer(&[1; 16], &new);
        assert!(index.get(&[1; 16], 0).is_none());
    }

    #[test]
    fn remove_and_clear() {
        let index = ReadIndex::new();
        index.insert([1; 16], claims(), u64::MAX);
        index.insert([2; 16], claims(), u64::MAX);
        index.remove(&[1; 16]);
        assert!(index.get(&[1; 16], 0).is_none());
        assert_eq!(index.len(), 1);
        index.clear();
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn the_hash_of_a_key_is_its_first_eight_bytes() {
        let key: Key = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        assert_eq!(
            KeyHash.hash_one(key),
            u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8])
        );
        // Short input still moves the hash.
        let mut short = KeyHash.build_hasher();
        short.write(&[1, 2]);
        assert_ne!(short.finish(), 0);
    }
}
