//! The shared second tier (feature `redis`): answers cached in Redis for a
//! fleet of replicas, behind each replica's in-process cache.
//!
//! - Read path: in-process hit → done (no network). Miss → one Redis round
//!   trip that returns the shared value, or else takes the fleet-wide lock
//!   for the token (`SET NX PX`). Whoever holds the lock introspects and
//!   writes the sealed answer; the others wait for its fill notice (or poll)
//!   up to `lock_wait`, then call the authorization server themselves.
//! - What is stored: see `keys` (names) and `seal` (values).
//! - Invalidation: the entry is deleted, tombstones holding the
//!   invalidation time keep answers given before it from being written back
//!   or read, a notice on the tier's channel makes every replica drop its
//!   in-process entry — or, in a rotation, whatever it must to fail closed
//!   (see `events`) — and the invalidating replica
//!   remembers it whatever Redis does, replaying it if Redis missed it
//!   (see `revoked`).
//! - Revocation (see `cutoffs`): sealed, announced to every replica, and
//!   kept in a sorted set that a replica reads when it starts or its
//!   subscription comes back, before its first load (see
//!   `SharedTier::ensure_cutoffs`).
//! - Redis is never a single point of failure: every command is bounded by
//!   `command_timeout`, failures feed a circuit breaker (`breaker`), and
//!   any failure means "not in the shared tier".

mod breaker;
mod config;
mod cutoffs;
mod events;
mod keys;
mod memory;
mod redis;
mod revoked;
mod seal;
mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use self::config::{
    SharedCache, SharedCacheBuilder, DEFAULT_SHARED_BREAKER_OPEN_FOR, DEFAULT_SHARED_BREAKER_THRESHOLD,
    DEFAULT_SHARED_COMMAND_TIMEOUT, DEFAULT_SHARED_KEY_PREFIX,
};
pub(crate) use self::events::L1Sink;
pub(crate) use self::keys::Names;
pub use self::keys::MIN_SECRET_BYTES;
pub use self::memory::MemoryStore;
pub(crate) use self::seal::{active_json, Opened, INACTIVE_JSON};

use self::breaker::{Breaker, LogEvery};
use self::config::Backend;
use self::events::Waiters;
use self::keys::FleetKeys;
use self::revoked::{Pending, Replay, Revoked};
use self::seal::Refused;
use self::store::{
    CutOff, Fetched, GetOrLock, Invalidate, PushQueue, Put, SharedStore, StoreError, StoreFuture,
};
use crate::error::ConfigError;
use crate::revocation::Revocation;
use crate::stats::SharedCacheStats;
use crate::validate::since_epoch;

/// The largest shared value read: an answer is at most the introspection
/// response limit (64 KiB by default, 1 MiB is generous), sealed with 41
/// bytes more. Anything larger was not written by this fleet.
const MAX_VALUE_BYTES: usize = 1 << 20;

/// How often a replica waiting for another's fill looks again, should the
/// notice be lost.
const POLL: Duration = Duration::from_millis(25);

/// What the fleet knows of a DPoP proof's `jti`.
#[cfg(feature = "jwt")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstUse {
    /// No replica saw it within the window; it is now marked.
    Yes,
    /// A replica saw it within the window: a replay.
    No,
    /// Redis could not be asked (down, slow, breaker open): only this
    /// replica's replay cache vouches for it.
    Unknown,
}

/// What became of a revocation sent to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FleetRevocation {
    /// Stored and announced (or queued for replay while Redis is away).
    Sent,
    /// Announced, but the stored cut-offs were full: replicas that start
    /// later will not see it.
    StoreFull,
    /// Not sent: too large to seal, or no random source.
    NotSealed,
}

/// The shared tier of one introspector.
pub(crate) struct SharedTier {
    inner: Arc<TierInner>,
}

pub(crate) struct TierInner {
    store: Box<dyn SharedStore>,
    keys: FleetKeys,
    command_timeout: Duration,
    lock_wait: Duration,
    /// Lock life: longer than any load in flight (token fetch, queue wait
    /// and introspection).
    lock_ttl: Duration,
    /// Tombstone and flush marker life: longer than any load in flight and
    /// than any shared value.
    retain: Duration,
    pub(crate) negative_ttl: Duration,
    breaker: Breaker,
    log: LogEvery,
    refused_log: LogEvery,
    counters: SharedCounters,
    waiters: Waiters,
    #[cfg(feature = "jwt")]
    dpop_log: LogEvery,
    push: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<store::Push>>>,
    /// Raised when a notice other than a fill found the queue full.
    overflowed: Arc<std::sync::atomic::AtomicBool>,
    /// This replica's recent invalidations, refused even if Redis lost them.
    revoked: Revoked,
    /// Invalidations Redis did not take, replayed when it answers again.
    replay: Replay,
    /// How long a revocation cut-off is kept, and how many at most.
    cutoff_retention: Duration,
    max_cutoffs: u64,
    /// Whether the stored cut-offs were read since the tier started or
    /// its subscription came back; loads wait for it (see
    /// [`SharedTier::ensure_cutoffs`]).
    cutoff_reads: cutoffs::ReadState,
    reading_cutoffs: tokio::sync::Mutex<()>,
    cutoff_log: LogEvery,
}

/// The times and bounds the tier derives its own from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TierSettings {
    /// One call to the authorization server: how long a replica waits for
    /// another's fill.
    pub(crate) as_timeout: Duration,
    /// The longest a load can take: the fleet-wide lock outlives it.
    pub(crate) load_bound: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) cutoff_retention: Duration,
    pub(crate) max_cutoffs: u64,
}

/// What the shared tier had for a token.
pub(crate) enum Lookup {
    /// An answer, opened and within its life.
    Found(Opened),
    /// Nothing; this replica now holds the fleet-wide lock for the token.
    Locked(Lock),
    /// Nothing yet; another replica holds the lock.
    Busy,
    /// Redis could not be used (down, slow, breaker open, or a refused
    /// value): go on without it.
    Unavailable,
}

/// The fleet-wide lock for one token, released by [`SharedTier::put`].
#[derive(Debug)]
pub(crate) struct Lock(String);

impl SharedTier {
    /// Builds the tier (connecting lazily) for the verifier at `endpoint`
    /// with `client_id`; needs a Tokio runtime.
    pub(crate) fn new(
        config: &SharedCache,
        endpoint: &str,
        client_id: &str,
        settings: TierSettings,
    ) -> Result<Self, ConfigError> {
        let TierSettings {
            as_timeout,
            load_bound,
            max_ttl,
            negative_ttl,
            cutoff_retention,
            max_cutoffs,
        } = settings;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::InvalidSetting(
                "the shared cache must be built inside a Tokio runtime",
            ));
        }
        let secrets: Vec<&[u8]> = config.secrets.iter().map(Vec::as_slice).collect();
        let keys = FleetKeys::new(&secrets, &config.key_prefix, endpoint, client_id)?;
        let (push_tx, push_rx) = tokio::sync::mpsc::channel(events::QUEUED_NOTICES);
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pushes = PushQueue::new(push_tx, Arc::clone(&overflowed));
        let store: Box<dyn SharedStore> = match &config.backend {
            Backend::Redis(url) => Box::new(self::redis::RedisStore::connect(
                url,
                config.command_timeout,
                pushes,
            )?),
            Backend::Memory(store) => Box::new(store.connect(pushes)),
        };
        let lock_ttl = load_bound.saturating_add(Duration::from_secs(1));
        let retain = lock_ttl.max(max_ttl).max(negative_ttl);
        Ok(Self {
            inner: Arc::new(TierInner {
                store,
                keys,
                command_timeout: config.command_timeout,
                lock_wait: config.lock_wait.unwrap_or(as_timeout),
                lock_ttl,
                retain,
                negative_ttl,
                breaker: Breaker::new(config.breaker_threshold, config.breaker_open_for),
                log: LogEvery::default(),
                refused_log: LogEvery::default(),
                counters: SharedCounters::default(),
                waiters: Waiters::default(),
                #[cfg(feature = "jwt")]
                dpop_log: LogEvery::default(),
                push: std::sync::Mutex::new(Some(push_rx)),
                overflowed,
                revoked: Revoked::new(
                    u64::try_from(max_ttl.max(negative_ttl).as_millis()).unwrap_or(u64::MAX),
                ),
                replay: Replay::default(),
                cutoff_retention,
                max_cutoffs,
                cutoff_reads: cutoffs::ReadState::default(),
                reading_cutoffs: tokio::sync::Mutex::new(()),
                cutoff_log: LogEvery::default(),
            }),
        })
    }

    /// The SipHash key the in-process cache must use, shared by the fleet.
    pub(crate) fn l1_key(&self) -> (u64, u64) {
        self.inner.keys.l1_key()
    }

    /// Starts listening to the fleet's notices; they are applied to `sink`
    /// for as long as it lives.
    pub(crate) fn listen(&self, sink: Weak<dyn L1Sink>) {
        let receiver = self
            .inner
            .push
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(receiver) = receiver {
            tokio::spawn(events::listen(
                Arc::downgrade(&self.inner),
                sink,
                receiver,
                Arc::clone(&self.inner.overflowed),
            ));
        }
    }

    pub(crate) fn names(&self, token: &str) -> Names {
        self.inner.keys.names(token)
    }

    pub(crate) fn negative_ttl(&self) -> Duration {
        self.inner.negative_ttl
    }

    /// The shared answer for `names`, or the fleet-wide lock to fetch it.
    pub(crate) async fn get_or_lock(&self, names: &Names) -> Lookup {
        let inner = &*self.inner;
        let token = lock_token();
        let flush = inner.keys.flush_marker();
        let markers = markers(names, &flush);
        let op = GetOrLock {
            values: &names.values,
            markers: &markers,
            lock: &names.lock,
            lock_token: &token,
            lock_ttl_ms: millis(inner.lock_ttl),
            max_value_bytes: MAX_VALUE_BYTES,
        };
        let Some(fetched) = inner.run(inner.store.get_or_lock(op)).await else {
            return Lookup::Unavailable;
        };
        match fetched {
            Fetched::Locked { .. } => {
                inner.counters.miss();
                Lookup::Locked(Lock(token))
            }
            Fetched::Busy => Lookup::Busy,
            Fetched::TooLarge => {
                inner.counters.refused();
                if inner.refused_log.allow() {
                    tracing::warn!(
                        "a shared cache value is larger than any this fleet writes; not read, treated as a miss (logged at most every 10 s)"
                    );
                }
                Lookup::Unavailable
            }
            Fetched::Value {
                index: position,
                value,
                cutoff: invalidated,
            } => {
                let (Some(name), Some(keys)) = (names.values.get(position), inner.keys.secrets.get(position))
                else {
                    return inner.protocol_error();
                };
                let now = now_ms();
                let cutoff = names
                    .l1
                    .first()
                    .map_or(0, |key| inner.revoked.cutoff(key, now))
                    .max(invalidated);
                match seal::open(&keys.aead, name, &value, now).and_then(|opened| {
                    if opened.answered_ms <= cutoff {
                        Err(Refused::Invalidated)
                    } else {
                        Ok(opened)
                    }
                }) {
                    Ok(opened) => {
                        inner.counters.hit();
                        Lookup::Found(opened)
                    }
                    Err(refused) => {
                        inner.counters.refused();
                        if inner.refused_log.allow() {
                            match refused {
                                Refused::Forged => tracing::warn!(
                                    "a shared cache value did not open under the fleet secret (forged, or another secret); treated as a miss (logged at most every 10 s)"
                                ),
                                Refused::Expired => tracing::warn!(
                                    "a shared cache value outlived the life sealed into it (replayed, or its TTL was stretched); treated as a miss (logged at most every 10 s)"
                                ),
                                Refused::Invalidated => tracing::warn!(
                                    "a shared cache value was answered before the token's invalidation (Redis lost the deletion, or a flush is under way); treated as a miss (logged at most every 10 s)"
                                ),
                            }
                        }
                        Lookup::Unavailable
                    }
                }
            }
        }
    }

    /// Waits (up to `lock_wait`) for the replica holding the lock to write
    /// the answer; takes the lock itself if it is released without one.
    pub(crate) async fn wait_for_fill(&self, names: &Names) -> Lookup {
        let inner = &*self.inner;
        inner.counters.fleet_wait();
        let deadline = tokio::time::Instant::now() + inner.lock_wait;
        let notify = inner.waiters.register(names.id());
        loop {
            let notified = notify.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.get_or_lock(names).await {
                Lookup::Busy => {}
                other => return other,
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::debug!("gave up waiting for another replica's introspection");
                return Lookup::Unavailable;
            }
            let sleep = tokio::time::sleep(POLL.min(deadline - now));
            tokio::pin!(sleep);
            futures_util::future::select(notified, sleep).await;
        }
    }

    /// Writes `answer_json` (an answer given at `answered_ms`) for `ttl`,
    /// unless the token was invalidated meanwhile, and releases `lock`.
    pub(crate) async fn put(
        &self,
        names: &Names,
        answer_json: &[u8],
        answered_ms: u64,
        ttl: Duration,
        lock: Option<Lock>,
    ) {
        let inner = &*self.inner;
        let (Some(name), Some(keys)) = (names.values.first(), inner.keys.secrets.first()) else {
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let sealed = if ttl_ms == 0 {
            None
        } else {
            seal::seal(
                &keys.aead,
                name,
                answered_ms,
                answered_ms.saturating_add(ttl_ms),
                answer_json,
            )
        };
        // Larger than readers accept: not shared (a huge `max_response_bytes`).
        let sealed = sealed.filter(|value| value.len() <= MAX_VALUE_BYTES);
        if sealed.is_none() && lock.is_none() {
            return;
        }
        self.script_put(
            names,
            sealed.as_deref().unwrap_or_default(),
            ttl_ms,
            answered_ms,
            lock,
        )
        .await;
    }

    /// Releases `lock` without writing, so the waiters try themselves.
    pub(crate) async fn release(&self, names: &Names, lock: Option<Lock>) {
        if lock.is_some() {
            self.script_put(names, &[], 0, 0, lock).await;
        }
    }

    async fn script_put(
        &self,
        names: &Names,
        sealed: &[u8],
        ttl_ms: u64,
        answered_ms: u64,
        lock: Option<Lock>,
    ) {
        let inner = &*self.inner;
        let flush = inner.keys.flush_marker();
        let markers = markers(names, &flush);
        let lock_token = lock.map(|lock| lock.0).unwrap_or_default();
        let notice = inner.keys.sign_notice(&events::fill_notice(names.id()));
        let channel = inner.keys.channel();
        let op = Put {
            value: names.values.first().map_or("", String::as_str),
            sealed,
            ttl_ms: ttl_ms.max(1),
            answered_ms,
            markers: &markers,
            lock: &names.lock,
            lock_token: &lock_token,
            channel: &channel,
            notice: &notice,
        };
        let _: Option<bool> = inner.run(inner.store.put(op)).await;
    }

    /// Deletes the shared entry of a token, keeps loads in flight from
    /// writing it back, and tells every replica to drop it. This replica
    /// remembers the invalidation whatever Redis does, and replays it when
    /// Redis did not take it.
    pub(crate) async fn invalidate(&self, token: &str) {
        let inner = &*self.inner;
        let names = self.names(token);
        let at_ms = now_ms();
        if let Some(key) = names.l1.first() {
            inner.revoked.remember(*key, at_ms);
        }
        if !inner.invalidate_one(&names, at_ms).await {
            inner.keep(Pending::One { names, at_ms });
        }
    }

    /// Deletes every shared entry of this verifier (in the background) and
    /// tells every replica to drop its in-process entries.
    pub(crate) fn invalidate_all(&self) {
        let at_ms = now_ms();
        self.inner.revoked.raise_floor(at_ms);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("invalidate_all outside a Tokio runtime: the shared cache was not flushed");
            self.inner.keep(Pending::All { at_ms });
            return;
        };
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            if !inner.flush(at_ms).await {
                inner.keep(Pending::All { at_ms });
            }
        });
    }

    /// Tells the fleet about `revocation`, cut off at `at` (Unix s), which
    /// this replica has carried out: every replica carries it out on the
    /// notice, and the stored copy reaches replicas that start or reconnect
    /// later. Replayed when Redis does not take it.
    pub(crate) async fn revoke(&self, revocation: &Revocation, at: i64) -> FleetRevocation {
        let inner = &*self.inner;
        let retention_ms = millis(inner.cutoff_retention);
        let at_ms = u64::try_from(at).unwrap_or(0).saturating_mul(1000);
        let forget_at_ms = at_ms.saturating_add(retention_ms);
        // Older than the retention: no token issued before it is still
        // valid (see `cutoff_retention`); nothing to tell.
        if forget_at_ms <= now_ms() {
            return FleetRevocation::Sent;
        }
        let members = cutoffs::seal_revocation(&inner.keys, revocation, at, forget_at_ms);
        if members.is_empty() {
            tracing::warn!("a revocation could not be sealed for the fleet (too large, or no random source): only this replica carries it out");
            return FleetRevocation::NotSealed;
        }
        match inner.cut_off(&members, forget_at_ms).await {
            Some(true) => FleetRevocation::Sent,
            Some(false) => FleetRevocation::StoreFull,
            None => {
                inner.keep(Pending::Cut {
                    members,
                    forget_at_ms,
                });
                FleetRevocation::Sent
            }
        }
    }

    /// Before a load: unless done since the replica last could have missed
    /// a notice (it started, subscribed, lost its subscription or dropped
    /// notices), reads the stored cut-offs and carries them out on `sink`,
    /// so that no replica admits a token revoked while it was away. Once at
    /// a time; skipped while the breaker is open, and while the store does
    /// not answer the load goes on without them (tried again on the next
    /// load; see the README on that window).
    pub(crate) async fn ensure_cutoffs(&self, sink: &dyn L1Sink) {
        let inner = &*self.inner;
        if inner.cutoff_reads.is_current() {
            return;
        }
        let _reading = inner.reading_cutoffs.lock().await;
        if !inner.cutoff_reads.is_current() {
            inner.read_cutoffs(sink).await;
        }
    }

    /// Marks the DPoP proof `jti` by the key `jkt` as used for `window`,
    /// fleet-wide, in one atomic command; says whether it was the first use.
    /// Bounded by `command_timeout` and skipped while the breaker is open:
    /// then [`FirstUse::Unknown`] (counted, and logged once per interval).
    #[cfg(feature = "jwt")]
    pub(crate) async fn first_dpop_use(&self, jkt: &str, jti: &str, window: Duration) -> FirstUse {
        let inner = &*self.inner;
        let names = inner
            .keys
            .marker_names("dpop-jti", &[jkt.as_bytes(), jti.as_bytes()]);
        match inner
            .run(inner.store.mark_once(&names, millis(window).max(1)))
            .await
        {
            Some(true) => FirstUse::Yes,
            Some(false) => FirstUse::No,
            None => {
                inner.counters.dpop_local_only();
                if inner.dpop_log.allow() {
                    tracing::warn!(
                        "DPoP proof replays checked by this replica alone: the shared cache (Redis) cannot be used, so a proof could be replayed at another replica within the DPoP window (logged at most every 10 s)"
                    );
                }
                FirstUse::Unknown
            }
        }
    }

    pub(crate) fn stats(&self) -> SharedCacheStats {
        let inner = &*self.inner;
        inner
            .counters
            .snapshot(inner.breaker.is_open(), inner.breaker.trips())
    }
}

impl TierInner {
    /// The commands of one invalidation; false when Redis did not take them.
    async fn invalidate_one(&self, names: &Names, at_ms: u64) -> bool {
        let tombstones: Vec<&str> = names.tombstones.iter().map(String::as_str).collect();
        let channel = self.keys.channel();
        let notice = self.keys.sign_notice(&events::invalidate_notice(&names.l1));
        let op = Invalidate {
            values: &names.values,
            markers: &tombstones,
            at_ms,
            retain_ms: millis(self.retain),
            channel: &channel,
            notice: &notice,
        };
        self.run_always(self.store.invalidate(op)).await.is_some()
    }

    /// The commands of one `invalidate_all`; false when Redis did not take
    /// them all. The flush marker carries the time, so values the deletion
    /// has not reached yet are refused by every replica meanwhile.
    async fn flush(&self, at_ms: u64) -> bool {
        let flush = self.keys.flush_marker();
        let channel = self.keys.channel();
        let notice = self.keys.sign_notice(&events::invalidate_all_notice(at_ms));
        let mark = Invalidate {
            values: &[],
            markers: &[&flush],
            at_ms,
            retain_ms: millis(self.retain),
            channel: &channel,
            notice: &notice,
        };
        if self.run_always(self.store.invalidate(mark)).await.is_none() {
            return false;
        }
        let pattern = self.keys.value_pattern();
        self.run_always(self.store.delete_matching(&pattern))
            .await
            .is_some()
    }

    /// Stores and announces sealed revocations; `None` when Redis did not
    /// take them, else whether the set had room.
    async fn cut_off(&self, members: &[Vec<u8>], forget_at_ms: u64) -> Option<bool> {
        let set = self.keys.cutoff_set();
        let channel = self.keys.channel();
        let notice = self.keys.sign_notice(&cutoffs::revocation_notice(members));
        let secrets = u64::try_from(self.keys.secrets.len()).unwrap_or(u64::MAX);
        let op = CutOff {
            set: &set,
            members,
            forget_at_ms,
            now_ms: now_ms(),
            max: self.max_cutoffs.saturating_mul(secrets),
            channel: &channel,
            notice: &notice,
        };
        let kept = self.run_always(self.store.cut_off(op)).await?;
        if !kept && self.cutoff_log.allow() {
            tracing::warn!("the fleet's stored revocation cut-offs are full: replicas that start later will not see the newest (logged at most every 10 s)");
        }
        Some(kept)
    }

    /// Reads the stored cut-offs, a page at a time, and carries each out
    /// on `sink`. They count as read when every page came and no notice
    /// could have been missed meanwhile.
    async fn read_cutoffs(&self, sink: &dyn L1Sink) {
        let epoch = self.cutoff_reads.begin();
        let set = self.keys.cutoff_set();
        let secrets = u64::try_from(self.keys.secrets.len()).unwrap_or(u64::MAX);
        let max = self.max_cutoffs.saturating_mul(secrets);
        let now = now_ms();
        // Those forgotten last first (the newest events), should the set
        // hold more than this replica keeps. A cursor of (score, members at
        // that score already read): exact however many share a score.
        let (mut max_score, mut skip, mut read) = (u64::MAX, 0u64, 0u64);
        let (mut carried, mut full) = (0u64, 0u64);
        loop {
            let page = self.store.cutoffs(&set, max_score, now, skip, cutoffs::PAGE);
            let Some(page) = self.run(page).await else {
                return;
            };
            let last = u64::try_from(page.len()).unwrap_or(u64::MAX);
            for (score, member) in page {
                if score == max_score {
                    skip += 1;
                } else {
                    (max_score, skip) = (score, 1);
                }
                if let Some((revocation, at)) = cutoffs::open_revocation(&self.keys, &member, now) {
                    carried += 1;
                    if !sink.revoke(revocation, at).await {
                        full += 1;
                    }
                }
            }
            read = read.saturating_add(last);
            if last < cutoffs::PAGE || read >= max {
                break;
            }
        }
        if full > 0 {
            tracing::warn!(full, "the fleet's stored revocations found this replica's cut-offs full: their cached answers were evicted, but tokens not seen yet are not refused");
        }
        self.cutoff_reads.done(epoch);
        tracing::debug!(carried, "read the fleet's stored revocation cut-offs");
    }

    /// The stored cut-offs must be read again before the next load (notices
    /// may have been missed).
    pub(crate) fn cutoffs_unread(&self) {
        self.cutoff_reads.unread();
    }

    #[cfg(test)]
    pub(crate) fn cutoffs_current(&self) -> bool {
        self.cutoff_reads.is_current()
    }

    #[cfg(test)]
    pub(crate) fn mark_cutoffs_read(&self) {
        self.cutoff_reads.done(self.cutoff_reads.begin());
    }

    /// The subscription is up: reads made before it may have missed a
    /// notice.
    pub(crate) fn cutoffs_subscribed(&self) {
        self.cutoff_reads.subscribed();
    }

    /// Keeps an invalidation Redis did not take, for [`replay`](Self::replay).
    fn keep(&self, pending: Pending) {
        if !self.replay.push(pending) {
            tracing::warn!(
                "too many invalidations wait for Redis; the oldest will not be replayed (this replica still refuses them)"
            );
        }
    }

    /// Sends again the invalidations Redis did not take; stops at the first
    /// that fails again (kept for next time).
    pub(crate) async fn replay(&self) {
        if self.replay.is_empty() {
            return;
        }
        let mut pending = self.replay.take().into_iter();
        let mut replayed = 0usize;
        while let Some(next) = pending.next() {
            let done = match &next {
                Pending::One { names, at_ms } => self.invalidate_one(names, *at_ms).await,
                Pending::All { at_ms } => self.flush(*at_ms).await,
                Pending::Cut {
                    members,
                    forget_at_ms,
                } => *forget_at_ms <= now_ms() || self.cut_off(members, *forget_at_ms).await.is_some(),
            };
            if !done {
                let mut rest = vec![next];
                rest.extend(pending);
                self.replay.put_back(rest);
                break;
            }
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(
                replayed,
                "shared cache (Redis) answers again; invalidations it missed were replayed"
            );
        }
    }

    /// Runs one store operation through the breaker, bounded in time;
    /// `None` on any failure (counted, and logged once per interval).
    async fn run<T>(&self, op: StoreFuture<'_, T>) -> Option<T> {
        if !self.breaker.allow() {
            self.counters.skipped();
            return None;
        }
        self.run_always(op).await
    }

    /// Like [`run`](Self::run), but tried even while the breaker is open:
    /// for invalidations, which must reach Redis if it answers at all.
    async fn run_always<T>(&self, op: StoreFuture<'_, T>) -> Option<T> {
        let error = match tokio::time::timeout(self.command_timeout, op).await {
            Ok(Ok(value)) => {
                self.breaker.success();
                return Some(value);
            }
            Ok(Err(error)) => error,
            Err(_) => StoreError::TimedOut,
        };
        let why = error.why();
        self.counters.error();
        let opened = self.breaker.failure();
        if opened {
            tracing::warn!(
                %why,
                open_for_ms = u64::try_from(self.breaker_open_for().as_millis()).unwrap_or(u64::MAX),
                "shared cache (Redis) {why}; circuit breaker open, serving from the in-process cache and the authorization server"
            );
        } else if self.log.allow() {
            tracing::warn!(%why, "shared cache (Redis) {why}; going on without it (logged at most every 10 s)");
        }
        None
    }

    fn breaker_open_for(&self) -> Duration {
        self.breaker.open_for()
    }

    /// An answer the operation never gives: counted and logged as a failure.
    fn protocol_error(&self) -> Lookup {
        self.counters.error();
        if self.log.allow() {
            tracing::warn!("shared cache (Redis) answered something unexpected; going on without it");
        }
        Lookup::Unavailable
    }

    pub(crate) fn keys(&self) -> &FleetKeys {
        &self.keys
    }

    pub(crate) fn store(&self) -> &dyn SharedStore {
        &*self.store
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Counts and logs (once per interval) a notice that did not verify.
    pub(crate) fn unsigned_notice(&self) {
        self.counters.refused();
        if self.refused_log.allow() {
            tracing::warn!(
                "a notice on the fleet's channel did not verify under any of this replica's fleet secrets (a replica with a secret this one does not have, as when a rotation skips a step, or something with Redis access); an invalidation drops the in-process cache and refuses shared answers given before it, at most every 5 s (logged at most every 10 s)"
            );
        }
    }

    /// Refuses every shared value answered at or before `at_ms`, on this
    /// replica, whatever Redis holds.
    pub(crate) fn refuse_shared_before(&self, at_ms: u64) {
        self.revoked.raise_floor(at_ms);
    }

    /// Logs (once per interval) a fleet revocation this replica's cut-offs
    /// had no room for.
    pub(crate) fn cutoffs_full(&self) {
        if self.cutoff_log.allow() {
            tracing::warn!("a fleet revocation found this replica's cut-offs full: its cached answers were evicted, but tokens not seen yet are not refused (logged at most every 10 s)");
        }
    }

    /// Counts a whole in-process drop for an invalidation notice that could
    /// not name this replica's entry.
    pub(crate) fn notice_flush(&self) {
        self.counters.notice_flush();
    }

    pub(crate) fn waiters(&self) -> &Waiters {
        &self.waiters
    }
}

/// The names holding a token's invalidation times: its tombstones and the
/// flush marker.
fn markers<'a>(names: &'a Names, flush: &'a str) -> Vec<&'a str> {
    names
        .tombstones
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(flush))
        .collect()
}

/// A fresh random lock token, so that only the holder releases it.
fn lock_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        bytes[..8].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        bytes[8..].copy_from_slice(&now_ms().to_be_bytes());
    }
    keys::hex(&bytes)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn now_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// Relaxed counters of the shared tier.
#[derive(Debug, Default)]
struct SharedCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
    fleet_waits: AtomicU64,
    dpop_local_only: AtomicU64,
    notice_flushes: AtomicU64,
}

impl SharedCounters {
    crate::stats::counting! {
        fn hit => hits, "tower_introspection_shared_cache_hits_total";
        fn miss => misses, "tower_introspection_shared_cache_misses_total";
        fn error => errors, "tower_introspection_shared_cache_errors_total";
        fn refused => refused, "tower_introspection_shared_cache_refused_values_total";
        fn skipped => skipped, "tower_introspection_shared_cache_skipped_total";
        fn fleet_wait => fleet_waits, "tower_introspection_shared_cache_fleet_waits_total";
        fn notice_flush => notice_flushes, "tower_introspection_shared_cache_notice_flushes_total";
        #[cfg(feature = "jwt")]
        fn dpop_local_only => dpop_local_only, "tower_introspection_shared_cache_dpop_local_only_total";
    }

    fn snapshot(&self, breaker_open: bool, breaker_trips: u64) -> SharedCacheStats {
        crate::stats::export!(metrics::gauge!("tower_introspection_shared_cache_breaker_open")
            .set(if breaker_open { 1.0 } else { 0.0 }));
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SharedCacheStats {
            enabled: true,
            hits: load(&self.hits),
            misses: load(&self.misses),
            errors: load(&self.errors),
            refused_values: load(&self.refused),
            skipped: load(&self.skipped),
            fleet_waits: load(&self.fleet_waits),
            dpop_local_only: load(&self.dpop_local_only),
            notice_flushes: load(&self.notice_flushes),
            breaker_open,
            breaker_trips,
        }
    }
}
