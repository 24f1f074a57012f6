//! [`MemoryStore`]: the fleet's shared store in this process's memory, for
//! tests: several verifiers given one store behave as replicas sharing one
//! Redis, with the same atomic operations, expiries and notices.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::store::{
    CutOff, Fetched, GetOrLock, Invalidate, Push, PushQueue, Put, SharedStore, StoreError, StoreFuture,
};

/// A shared store held in memory: what a fleet's replicas share, without a
/// Redis server. Give one store (cloning is a pointer copy) to several
/// verifiers through [`SharedCache::in_memory`](crate::fleet::SharedCache::in_memory),
/// and they share answers, the single flight and invalidations as replicas
/// sharing one Redis do. For tests: it lives as long as the process, and
/// one process is not a fleet.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_introspection::test_util::TestAuthServer;
/// use tower_introspection::{Introspector, fleet::{MemoryStore, SharedCache}};
///
/// let auth_server = TestAuthServer::start().await?;
/// let store = MemoryStore::new();
/// let replica = || -> Result<Introspector, Box<dyn std::error::Error>> {
///     let shared = SharedCache::in_memory(&store, "a fleet secret of at least 32 bytes!").build()?;
///     Ok(Introspector::builder(auth_server.introspection_url())
///         .client_secret_basic("rs-client", "rs-secret")
///         .shared_cache(shared)
///         .build()?)
/// };
/// let (a, b) = (replica()?, replica()?);
/// let token = auth_server.mint_token("read");
/// a.validate(&token).await?;
/// b.validate(&token).await?;
/// assert_eq!(auth_server.introspection_calls(), 1, "b read a's answer");
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Off: every operation fails as an unreachable Redis would.
    down: AtomicBool,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Stored>,
    /// Entries at the last sweep of expired ones.
    swept_at: usize,
    subscribers: HashMap<String, Vec<PushQueue>>,
    /// Sorted sets: members with their scores.
    sets: HashMap<String, Vec<(u64, Vec<u8>)>>,
}

struct Stored {
    data: Vec<u8>,
    until: Option<Instant>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every operation fail (`false`) as an unreachable Redis would,
    /// or answer again (`true`): for tests of what the fleet does while its
    /// store is down. Replicas are not told that notices were lost (as
    /// Redis tells them on a disconnection) before it answers again.
    pub fn set_available(&self, available: bool) {
        self.shared.down.store(!available, Ordering::Release);
    }

    /// How many names the store holds now (values, locks, markers).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .entries
            .values()
            .filter(|stored| stored.live(now))
            .count()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each operation leaves the map whole before it can panic.
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One connection, as a replica has: its own queue for notices.
    pub(crate) fn connect(&self, pushes: PushQueue) -> MemoryConnection {
        MemoryConnection {
            store: self.clone(),
            pushes,
        }
    }

    /// Runs `op` on the state, unless the store is down.
    fn with<T>(&self, op: impl FnOnce(&mut State, Instant) -> T) -> Result<T, StoreError> {
        if self.shared.down.load(Ordering::Acquire) {
            return Err(StoreError::Unreachable);
        }
        let now = Instant::now();
        let mut state = self.lock();
        state.sweep(now);
        Ok(op(&mut state, now))
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("names", &self.len()).finish()
    }
}

impl Stored {
    fn live(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

impl State {
    fn get(&self, name: &str, now: Instant) -> Option<&[u8]> {
        self.entries
            .get(name)
            .filter(|stored| stored.live(now))
            .map(|stored| stored.data.as_slice())
    }

    fn set(&mut self, name: &str, data: Vec<u8>, ttl_ms: u64, now: Instant) {
        let until = now.checked_add(Duration::from_millis(ttl_ms.max(1)));
        self.entries.insert(name.to_owned(), Stored { data, until });
    }

    /// A marker's time (0 when absent or unreadable), as the scripts read it.
    fn time(&self, name: &str, now: Instant) -> u64 {
        self.get(name, now)
            .and_then(|data| std::str::from_utf8(data).ok())
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    }

    fn publish(&mut self, channel: &str, notice: &str) {
        if let Some(queues) = self.subscribers.get_mut(channel) {
            queues.retain(|queue| queue.push(Push::Notice(notice.as_bytes().to_vec())).is_ok());
        }
    }

    /// Drops expired entries once the map has doubled since the last sweep,
    /// so memory follows what is live.
    fn sweep(&mut self, now: Instant) {
        if self.entries.len() > 2 * self.swept_at.max(512) {
            self.entries.retain(|_, stored| stored.live(now));
            self.swept_at = self.entries.len();
        }
    }
}

/// One replica's connection to a [`MemoryStore`].
pub(crate) struct MemoryConnection {
    store: MemoryStore,
    pushes: PushQueue,
}

impl SharedStore for MemoryConnection {
    fn get_or_lock<'a>(&'a self, op: GetOrLock<'a>) -> StoreFuture<'a, Fetched> {
        let result = self.store.with(|state, now| {
            let cutoff = op
                .markers
                .iter()
                .map(|marker| state.time(marker, now))
                .max()
                .unwrap_or(0);
            for (index, name) in op.values.iter().enumerate() {
                if let Some(value) = state.get(name, now) {
                    if value.len() > op.max_value_bytes {
                        return Fetched::TooLarge;
                    }
                    return Fetched::Value {
                        index,
                        value: value.to_vec(),
                        cutoff,
                    };
                }
            }
            if state.get(op.lock, now).is_some() {
                return Fetched::Busy;
            }
            state.set(op.lock, op.lock_token.as_bytes().to_vec(), op.lock_ttl_ms, now);
            Fetched::Locked { cutoff }
        });
        Box::pin(std::future::ready(result))
    }

    fn put<'a>(&'a self, op: Put<'a>) -> StoreFuture<'a, bool> {
        let result = self.store.with(|state, now| {
            let fresh = !op.sealed.is_empty()
                && op
                    .markers
                    .iter()
                    .all(|marker| op.answered_ms > state.time(marker, now));
            if fresh {
                state.set(op.value, op.sealed.to_vec(), op.ttl_ms, now);
            }
            if !op.lock_token.is_empty() && state.get(op.lock, now) == Some(op.lock_token.as_bytes()) {
                state.entries.remove(op.lock);
            }
            state.publish(op.channel, op.notice);
            fresh
        });
        Box::pin(std::future::ready(result))
    }

    fn invalidate<'a>(&'a self, op: Invalidate<'a>) -> StoreFuture<'a, ()> {
        let result = self.store.with(|state, now| {
            for name in op.values {
                state.entries.remove(name);
            }
            for marker in op.markers {
                if op.at_ms > state.time(marker, now) {
                    state.set(marker, op.at_ms.to_string().into_bytes(), op.retain_ms, now);
                }
            }
            state.publish(op.channel, op.notice);
        });
        Box::pin(std::future::ready(result))
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> StoreFuture<'a, ()> {
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        let result = self.store.with(|state, _| {
            state.entries.retain(|name, _| !name.starts_with(prefix));
        });
        Box::pin(std::future::ready(result))
    }

    fn cut_off<'a>(&'a self, op: CutOff<'a>) -> StoreFuture<'a, bool> {
        let result = self.store.with(|state, _| {
            let set = state.sets.entry(op.set.to_owned()).or_default();
            set.retain(|(score, _)| *score > op.now_ms);
            let room = u64::try_from(set.len() + op.members.len()).is_ok_and(|len| len <= op.max);
            if room {
                for member in op.members {
                    set.retain(|(_, held)| held != member);
                    set.push((op.forget_at_ms, member.clone()));
                }
            }
            if set.is_empty() {
                state.sets.remove(op.set);
            }
            state.publish(op.channel, op.notice);
            room
        });
        Box::pin(std::future::ready(result))
    }

    fn cutoffs<'a>(
        &'a self,
        set: &'a str,
        max: u64,
        after: u64,
        skip: u64,
        count: u64,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        let result = self.store.with(|state, _| {
            let mut page: Vec<(u64, Vec<u8>)> = state
                .sets
                .get(set)
                .into_iter()
                .flatten()
                .filter(|(score, _)| *score <= max && *score > after)
                .cloned()
                .collect();
            // Redis orders equal scores by member, in reverse here.
            page.sort_unstable_by(|a, b| b.cmp(a));
            page.into_iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .take(usize::try_from(count).unwrap_or(usize::MAX))
                .collect()
        });
        Box::pin(std::future::ready(result))
    }

    #[cfg(feature = "jwt")]
    fn mark_once<'a>(&'a self, names: &'a [String], ttl_ms: u64) -> StoreFuture<'a, bool> {
        let result = self.store.with(|state, now| {
            if names.iter().any(|name| state.get(name, now).is_some()) {
                return false;
            }
            for name in names {
                state.set(name, b"1".to_vec(), ttl_ms, now);
            }
            true
        });
        Box::pin(std::future::ready(result))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, ()> {
        let pushes = self.pushes.clone();
        let result = self.store.with(|state, _| {
            state
                .subscribers
                .entry(channel.to_owned())
                .or_default()
                .push(pushes);
        });
        Box::pin(std::future::ready(result))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(self.store.with(|_, _| ())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(store: &MemoryStore) -> (MemoryConnection, tokio::sync::mpsc::Receiver<Push>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let queue = PushQueue::new(sender, Arc::new(AtomicBool::new(false)));
        (store.connect(queue), receiver)
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[tokio::test]
    async fn cut_offs_are_kept_by_score_bounded_and_announced() {
        let store = MemoryStore::new();
        let (a, mut notices) = connection(&store);
        a.subscribe("events").await.unwrap();
        fn cut(members: &[Vec<u8>], forget_at_ms: u64, now_ms: u64) -> CutOff<'_> {
            CutOff {
                set: "cutoffs",
                members,
                forget_at_ms,
                now_ms,
                max: 3,
                channel: "events",
                notice: "r x",
            }
        }
        let (first, third, fourth) = (
            vec![b"a".to_vec(), b"b".to_vec()],
            vec![b"c".to_vec()],
            vec![b"d".to_vec()],
        );
        assert_eq!(a.cut_off(cut(&first, 200, 100)).await, Ok(true));
        assert_eq!(a.cut_off(cut(&third, 300, 100)).await, Ok(true));
        assert_eq!(a.cut_off(cut(&fourth, 400, 100)).await, Ok(false), "full");
        for _ in 0..3 {
            assert_eq!(
                notices.recv().await,
                Some(Push::Notice(b"r x".to_vec())),
                "announced either way"
            );
        }
        // Pages by descending score, from `max` to above `after`,
        // skipping `skip`.
        let all = a.cutoffs("cutoffs", u64::MAX, 100, 0, 10).await.unwrap();
        assert_eq!(
            all,
            [(300, b"c".to_vec()), (200, b"b".to_vec()), (200, b"a".to_vec())]
        );
        assert_eq!(
            a.cutoffs("cutoffs", 200, 100, 1, 1).await.unwrap(),
            [(200, b"a".to_vec())]
        );
        assert_eq!(
            a.cutoffs("cutoffs", u64::MAX, 200, 0, 10).await.unwrap(),
            [(300, b"c".to_vec())]
        );
        // Forgotten by 250: pruned, so there is room again.
        assert_eq!(a.cut_off(cut(&fourth, 400, 250)).await, Ok(true));
        assert_eq!(
            a.cutoffs("cutoffs", u64::MAX, 0, 0, 10).await.unwrap(),
            [(400, b"d".to_vec()), (300, b"c".to_vec())]
        );
    }

    #[tokio::test]
    async fn get_or_lock_put_and_invalidate_follow_the_scripts() {
        let store = MemoryStore::new();
        let (a, mut notices) = connection(&store);
        a.subscribe("events").await.unwrap();
        let values = names(&["v1", "v0"]);
        let lookup = |token: &'static str| GetOrLock {
            values: &values,
            markers: &["t", "flush"],
            lock: "lock",
            lock_token: token,
            lock_ttl_ms: 10_000,
            max_value_bytes: 8,
        };
        assert_eq!(
            a.get_or_lock(lookup("me")).await,
            Ok(Fetched::Locked { cutoff: 0 })
        );
        assert_eq!(a.get_or_lock(lookup("other")).await, Ok(Fetched::Busy));
        let put = |sealed: &'static [u8], answered_ms| Put {
            value: "v0",
            sealed,
            ttl_ms: 10_000,
            answered_ms,
            markers: &["t", "flush"],
            lock: "lock",
            lock_token: "me",
            channel: "events",
            notice: "f id",
        };
        assert_eq!(a.put(put(b"answer", 100)).await, Ok(true));
        assert_eq!(notices.recv().await, Some(Push::Notice(b"f id".to_vec())));
        assert_eq!(
            a.get_or_lock(lookup("other")).await,
            Ok(Fetched::Value {
                index: 1,
                value: b"answer".to_vec(),
                cutoff: 0
            })
        );
        let invalidate = Invalidate {
            values: &values,
            markers: &["t"],
            at_ms: 150,
            retain_ms: 10_000,
            channel: "events",
            notice: "i 00",
        };
        a.invalidate(invalidate).await.unwrap();
        assert_eq!(notices.recv().await, Some(Push::Notice(b"i 00".to_vec())));
        // A later time stays; an answer from before the invalidation is
        // not written back.
        a.invalidate(Invalidate {
            at_ms: 120,
            ..invalidate
        })
        .await
        .unwrap();
        assert_eq!(a.put(put(b"answer", 150)).await, Ok(false));
        assert_eq!(
            a.get_or_lock(lookup("me")).await,
            Ok(Fetched::Locked { cutoff: 150 })
        );
        assert_eq!(a.put(put(b"answer!!!", 151)).await, Ok(true));
        assert_eq!(a.get_or_lock(lookup("x")).await, Ok(Fetched::TooLarge));
        a.delete_matching("v*").await.unwrap();
        assert_eq!(
            a.get_or_lock(lookup("x")).await,
            Ok(Fetched::Locked { cutoff: 150 })
        );
    }

    #[cfg(feature = "jwt")]
    #[tokio::test]
    async fn marks_are_set_once_and_expire() {
        let store = MemoryStore::new();
        let (a, _notices) = connection(&store);
        let marks = names(&["m1", "m2"]);
        assert_eq!(a.mark_once(&marks, 30).await, Ok(true));
        assert_eq!(a.mark_once(&names(&["m2"]), 30).await, Ok(false));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(a.mark_once(&marks, 30).await, Ok(true));
    }

    #[tokio::test]
    async fn a_store_set_down_fails_every_operation() {
        let store = MemoryStore::new();
        let (a, _notices) = connection(&store);
        store.set_available(false);
        assert_eq!(a.ping().await, Err(StoreError::Unreachable));
        assert_eq!(a.delete_matching("v*").await, Err(StoreError::Unreachable));
        store.set_available(true);
        assert_eq!(a.ping().await, Ok(()));
        assert!(store.is_empty());
    }
}
