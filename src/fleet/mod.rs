//! The shared second tier (feature `redis`): answers cached in Redis for a
//! fleet of replicas, behind each replica's in-process cache.
//!
//! - Read path: in-process hit → done (no network). Miss → one Redis round
//!   trip that returns the shared value, or else takes the fleet-wide lock
//!   for the token (`SET NX PX`). Whoever holds the lock introspects and
//!   writes the sealed answer; the others wait for its fill notice (or poll)
//!   up to `lock_wait`, then call the authorization server themselves.
//! - What is stored: see [`keys`] (names) and [`seal`] (values).
//! - Invalidation: the entry is deleted, tombstones holding the
//!   invalidation time keep answers given before it from being written back
//!   or read, a notice on the tier's channel makes every replica drop its
//!   in-process entry — or, in a rotation, whatever it must to fail closed
//!   (see [`events`]) — and the invalidating replica
//!   remembers it whatever Redis does, replaying it if Redis missed it
//!   (see [`revoked`]).
//! - Redis is never a single point of failure: every command is bounded by
//!   `command_timeout`, failures feed a circuit breaker ([`breaker`]), and
//!   any failure means "not in the shared tier".

mod breaker;
mod config;
mod events;
mod keys;
mod revoked;
mod seal;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo as _, ProtocolVersion, Script, Value};

pub use self::config::{
    SharedCache, SharedCacheBuilder, DEFAULT_SHARED_BREAKER_OPEN_FOR, DEFAULT_SHARED_BREAKER_THRESHOLD,
    DEFAULT_SHARED_COMMAND_TIMEOUT, DEFAULT_SHARED_KEY_PREFIX,
};
pub(crate) use self::events::L1Sink;
pub(crate) use self::keys::Names;
pub use self::keys::MIN_SECRET_BYTES;
pub(crate) use self::seal::{active_json, Opened, INACTIVE_JSON};

use self::breaker::{Breaker, LogEvery};
use self::events::Waiters;
use self::keys::FleetKeys;
use self::revoked::{Pending, Replay, Revoked};
use self::seal::Refused;
use crate::error::ConfigError;
use crate::stats::SharedCacheStats;
use crate::validate::since_epoch;

/// The largest shared value read: an answer is at most the introspection
/// response limit (64 KiB by default, 1 MiB is generous), sealed with 41
/// bytes more. Anything larger was not written by this fleet.
const MAX_VALUE_BYTES: usize = 1 << 20;

/// How often a replica waiting for another's fill looks again, should the
/// notice be lost.
const POLL: Duration = Duration::from_millis(25);

/// Returns `{index, value, cutoff}`: the stored value under one of the
/// value names (index from 1), or else takes the lock `KEYS[1]` (index 0),
/// or says it is held (-1), or that a value is larger than `ARGV[3]` bytes
/// (-2, not sent: nothing this fleet writes is). `KEYS[2..1+ARGV[4]]` are
/// the token's tombstones and the flush marker, the value names follow;
/// `cutoff` is the latest invalidation time they hold: a value answered at
/// or before it is refused.
const GET_OR_LOCK: &str = r"
local m = tonumber(ARGV[4]) or 0
local cut = 0
for i = 2, 1 + m do
  local t = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if t > cut then cut = t end
end
for i = 2 + m, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    if #v > tonumber(ARGV[3]) then return {-2, '', cut} end
    return {i - 1 - m, v, cut}
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, '', cut} end
return {-1, '', cut}
";

/// Writes `ARGV[1]` (unless empty) to `KEYS[1]` for `ARGV[2]` ms unless it
/// was answered (`ARGV[6]`, Unix ms) at or before an invalidation (the
/// times in the flush marker and the tombstones under every secret,
/// `KEYS[3..]`), releases our
/// lock `KEYS[2]` (token `ARGV[3]`), and tells the waiters.
const PUT: &str = r"
local written = 0
local answered = tonumber(ARGV[6]) or 0
local fresh = ARGV[1] ~= ''
for i = 3, #KEYS do
  local t = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if answered <= t then fresh = false end
end
if fresh then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  written = 1
end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return written
";

/// Deletes the values `KEYS[1..ARGV[1]]`, marks the rest (tombstones or the
/// flush marker) with the invalidation time `ARGV[2]` for `ARGV[3]` ms
/// unless they hold a later one, and publishes `ARGV[5]` on `ARGV[4]`.
const INVALIDATE: &str = r"
local n = tonumber(ARGV[1]) or 0
local at = tonumber(ARGV[2]) or 0
for i = 1, n do redis.call('DEL', KEYS[i]) end
for i = n + 1, #KEYS do
  local t = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if at > t then redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3]) end
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Sets every name in `KEYS` to 1 for `ARGV[1]` ms and returns 1, unless
/// one of them exists (returns 0): `SET NX PX` over the names under every
/// secret, so that replicas on either side of a rotation see each other's
/// markers.
#[cfg(feature = "jwt")]
const MARK_ONCE: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[1])
end
return 1
";

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

/// The shared tier of one introspector.
pub(crate) struct SharedTier {
    inner: Arc<TierInner>,
}

pub(crate) struct TierInner {
    conn: ConnectionManager,
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
    get_or_lock: Script,
    put: Script,
    invalidate: Script,
    #[cfg(feature = "jwt")]
    mark_once: Script,
    #[cfg(feature = "jwt")]
    dpop_log: LogEvery,
    push: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<redis::PushInfo>>>,
    /// Raised when a notice other than a fill found the queue full.
    overflowed: Arc<std::sync::atomic::AtomicBool>,
    /// This replica's recent invalidations, refused even if Redis lost them.
    revoked: Revoked,
    /// Invalidations Redis did not take, replayed when it answers again.
    replay: Replay,
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
        as_timeout: Duration,
        load_bound: Duration,
        max_ttl: Duration,
        negative_ttl: Duration,
    ) -> Result<Self, ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::InvalidSetting(
                "the shared cache must be built inside a Tokio runtime",
            ));
        }
        let secrets: Vec<&[u8]> = config.secrets.iter().map(Vec::as_slice).collect();
        let keys = FleetKeys::new(&secrets, &config.key_prefix, endpoint, client_id)?;
        let invalid = |reason: &str| ConfigError::InvalidUrl {
            what: "shared cache (Redis)",
            reason: reason.to_owned(),
        };
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|_| invalid("not a Redis URL"))?;
        // RESP3: notices arrive on the command connection, and the
        // connection manager subscribes again after a reconnection.
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|_| invalid("not a Redis URL"))?;
        let (push_tx, push_rx) = tokio::sync::mpsc::channel(events::QUEUED_NOTICES);
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.command_timeout))
            .set_connection_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_push_sender(events::push_sender(push_tx, Arc::clone(&overflowed)))
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|_| invalid("the Redis client could not be set up"))?;
        let lock_ttl = load_bound.saturating_add(Duration::from_secs(1));
        let retain = lock_ttl.max(max_ttl).max(negative_ttl);
        Ok(Self {
            inner: Arc::new(TierInner {
                conn,
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
                get_or_lock: Script::new(GET_OR_LOCK),
                put: Script::new(PUT),
                invalidate: Script::new(INVALIDATE),
                #[cfg(feature = "jwt")]
                mark_once: Script::new(MARK_ONCE),
                #[cfg(feature = "jwt")]
                dpop_log: LogEvery::default(),
                push: std::sync::Mutex::new(Some(push_rx)),
                overflowed,
                revoked: Revoked::new(
                    u64::try_from(max_ttl.max(negative_ttl).as_millis()).unwrap_or(u64::MAX),
                ),
                replay: Replay::default(),
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
        let mut invocation = inner.get_or_lock.key(&names.lock);
        invocation.key(&names.tombstones).key(inner.keys.flush_marker());
        for name in &names.values {
            invocation.key(name);
        }
        invocation
            .arg(&token)
            .arg(u64::try_from(inner.lock_ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(MAX_VALUE_BYTES)
            .arg(names.tombstones.len() + 1);
        let mut conn = inner.conn.clone();
        let Some(reply) = inner.run(invocation.invoke_async::<Value>(&mut conn)).await else {
            return Lookup::Unavailable;
        };
        let (index, value, invalidated) = match reply {
            Value::Array(items) => {
                let mut items = items.into_iter();
                let index = match items.next() {
                    Some(Value::Int(index)) => index,
                    _ => return inner.protocol_error(),
                };
                let value = match items.next() {
                    Some(Value::BulkString(bytes)) if !bytes.is_empty() => Some(bytes),
                    _ => None,
                };
                let invalidated = match items.next() {
                    Some(Value::Int(at)) => u64::try_from(at).unwrap_or(0),
                    _ => return inner.protocol_error(),
                };
                (index, value, invalidated)
            }
            _ => return inner.protocol_error(),
        };
        match (index, value) {
            (0, _) => {
                inner.counters.miss();
                Lookup::Locked(Lock(token))
            }
            (-1, _) => Lookup::Busy,
            (-2, _) => {
                inner.counters.refused();
                if inner.refused_log.allow() {
                    tracing::warn!(
                        "a shared cache value is larger than any this fleet writes; not read, treated as a miss (logged at most every 10 s)"
                    );
                }
                Lookup::Unavailable
            }
            (index, Some(value)) => {
                let position = index
                    .checked_sub(1)
                    .and_then(|position| usize::try_from(position).ok())
                    .unwrap_or(usize::MAX);
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
            _ => inner.protocol_error(),
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
        let mut invocation = inner.put.key(names.values.first().map_or("", String::as_str));
        invocation
            .key(&names.lock)
            .key(inner.keys.flush_marker())
            .key(&names.tombstones)
            .arg(sealed)
            .arg(ttl_ms.max(1))
            .arg(lock.map(|lock| lock.0).unwrap_or_default())
            .arg(inner.keys.channel())
            .arg(inner.keys.sign_notice(&events::fill_notice(names.id())))
            .arg(answered_ms);
        let mut conn = inner.conn.clone();
        let _: Option<i64> = inner.run(invocation.invoke_async::<i64>(&mut conn)).await;
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
        let mut invocation = inner.mark_once.key(&names);
        invocation.arg(millis(window).max(1));
        let mut conn = inner.conn.clone();
        match inner.run(invocation.invoke_async::<i64>(&mut conn)).await {
            Some(1) => FirstUse::Yes,
            Some(0) => FirstUse::No,
            unusable => {
                if unusable.is_some() {
                    // Not an answer the script gives: counted and logged.
                    let _: Lookup = inner.protocol_error();
                }
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
        let mut invocation = self.invalidate.key(&names.values);
        invocation
            .key(&names.tombstones)
            .arg(names.values.len())
            .arg(at_ms)
            .arg(millis(self.retain))
            .arg(self.keys.channel())
            .arg(self.keys.sign_notice(&events::invalidate_notice(&names.l1)));
        let mut conn = self.conn.clone();
        self.run_always(invocation.invoke_async::<i64>(&mut conn))
            .await
            .is_some()
    }

    /// The commands of one `invalidate_all`; false when Redis did not take
    /// them all. The flush marker carries the time, so values the scan has
    /// not reached yet are refused by every replica meanwhile.
    async fn flush(&self, at_ms: u64) -> bool {
        let mut conn = self.conn.clone();
        let mut mark = self.invalidate.key(self.keys.flush_marker());
        mark.arg(0)
            .arg(at_ms)
            .arg(millis(self.retain))
            .arg(self.keys.channel())
            .arg(self.keys.sign_notice(&events::invalidate_all_notice(at_ms)));
        if self
            .run_always(mark.invoke_async::<i64>(&mut conn))
            .await
            .is_none()
        {
            return false;
        }
        let mut cursor: u64 = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.keys.value_pattern())
                .arg("COUNT")
                .arg(1000)
                .clone();
            let Some((next, names)) = self
                .run_always(scan.query_async::<(u64, Vec<String>)>(&mut conn))
                .await
            else {
                return false;
            };
            if !names.is_empty() {
                let unlink = redis::cmd("UNLINK").arg(&names).clone();
                if self
                    .run_always(unlink.query_async::<i64>(&mut conn))
                    .await
                    .is_none()
                {
                    return false;
                }
            }
            if next == 0 {
                return true;
            }
            cursor = next;
        }
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

    /// Runs one Redis operation through the breaker, bounded in time;
    /// `None` on any failure (counted, and logged once per interval).
    async fn run<T>(&self, op: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        if !self.breaker.allow() {
            self.counters.skipped();
            return None;
        }
        self.run_always(op).await
    }

    /// Like [`run`](Self::run), but tried even while the breaker is open:
    /// for invalidations, which must reach Redis if it answers at all.
    async fn run_always<T>(&self, op: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        let why = match tokio::time::timeout(self.command_timeout, op).await {
            Ok(Ok(value)) => {
                self.breaker.success();
                return Some(value);
            }
            Ok(Err(error)) if error.is_timeout() => "timed out",
            Ok(Err(error))
                if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() =>
            {
                "could not be reached"
            }
            Ok(Err(_)) => "refused the command",
            Err(_) => "timed out",
        };
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

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
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

    /// Counts a whole in-process drop for an invalidation notice that could
    /// not name this replica's entry.
    pub(crate) fn notice_flush(&self) {
        self.counters.notice_flush();
    }

    pub(crate) fn waiters(&self) -> &Waiters {
        &self.waiters
    }
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

macro_rules! export {
    ($($tt:tt)*) => {
        #[cfg(feature = "metrics")]
        { $($tt)* }
    };
}

impl SharedCounters {
    fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_hits_total").increment(1));
    }

    fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_misses_total").increment(1));
    }

    fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_errors_total").increment(1));
    }

    fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_refused_values_total").increment(1));
    }

    fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_skipped_total").increment(1));
    }

    fn fleet_wait(&self) {
        self.fleet_waits.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_fleet_waits_total").increment(1));
    }

    fn notice_flush(&self) {
        self.notice_flushes.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_notice_flushes_total").increment(1));
    }

    #[cfg(feature = "jwt")]
    fn dpop_local_only(&self) {
        self.dpop_local_only.fetch_add(1, Ordering::Relaxed);
        export!(metrics::counter!("tower_introspection_shared_cache_dpop_local_only_total").increment(1));
    }

    fn snapshot(&self, breaker_open: bool, breaker_trips: u64) -> SharedCacheStats {
        export!(
            metrics::gauge!("tower_introspection_shared_cache_breaker_open").set(if breaker_open {
                1.0
            } else {
                0.0
            })
        );
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
