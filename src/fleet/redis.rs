//! The Redis (or Valkey) store: each operation one Lua script or command,
//! atomic in Redis, on a connection manager that reconnects and subscribes
//! again by itself (RESP3: notices arrive on the command connection).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo as _, ProtocolVersion, PushInfo, PushKind, RedisError, Script, Value};

use super::store::{
    CutOff, Fetched, GetOrLock, Invalidate, Push, PushQueue, Put, SharedStore, StoreError, StoreFuture,
};
use crate::error::ConfigError;

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

/// Takes the members of the sorted set `KEYS[1]` forgotten by `ARGV[2]`
/// (Unix ms) out, adds `ARGV[6..]` with the score `ARGV[1]` unless the set
/// would then hold more than `ARGV[3]` (returns whether they were added),
/// keeps the set as long as its last member, and publishes `ARGV[5]` on
/// `ARGV[4]`.
const CUT_OFF: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local added = 0
if redis.call('ZCARD', KEYS[1]) + #ARGV - 5 <= tonumber(ARGV[3]) then
  for i = 6, #ARGV do redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i]) end
  added = 1
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return added
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

/// One replica's connection to Redis.
pub(crate) struct RedisStore {
    conn: ConnectionManager,
    get_or_lock: Script,
    put: Script,
    invalidate: Script,
    cut_off: Script,
    #[cfg(feature = "jwt")]
    mark_once: Script,
}

impl RedisStore {
    /// Sets up the connection (lazily: nothing is sent yet); what Redis
    /// pushes goes to `pushes`.
    pub(crate) fn connect(
        url: &str,
        command_timeout: Duration,
        pushes: PushQueue,
    ) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidUrl {
            what: "shared cache (Redis)",
            reason: reason.to_owned(),
        };
        let info = url
            .into_connection_info()
            .map_err(|_| invalid("not a Redis URL"))?;
        // RESP3: notices arrive on the command connection, and the
        // connection manager subscribes again after a reconnection.
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|_| invalid("not a Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(command_timeout))
            .set_connection_timeout(Some(command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_push_sender(move |push: PushInfo| match translate(push) {
                Some(push) => pushes.push(push),
                None => Ok(()),
            })
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|_| invalid("the Redis client could not be set up"))?;
        Ok(Self {
            conn,
            get_or_lock: Script::new(GET_OR_LOCK),
            put: Script::new(PUT),
            invalidate: Script::new(INVALIDATE),
            cut_off: Script::new(CUT_OFF),
            #[cfg(feature = "jwt")]
            mark_once: Script::new(MARK_ONCE),
        })
    }
}

/// A push as the tier sees it; `None` for the kinds it ignores (a
/// subscription's confirmation, say).
fn translate(push: PushInfo) -> Option<Push> {
    match push.kind {
        PushKind::Message => match push.data.into_iter().nth(1) {
            Some(Value::BulkString(payload)) => Some(Push::Notice(payload)),
            _ => None,
        },
        PushKind::Disconnection => Some(Push::Disconnected),
        _ => None,
    }
}

fn store_error(error: &RedisError) -> StoreError {
    if error.is_timeout() {
        StoreError::TimedOut
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        StoreError::Unreachable
    } else {
        StoreError::Refused
    }
}

fn millis_arg(ms: u64) -> u64 {
    ms.max(1)
}

impl SharedStore for RedisStore {
    fn get_or_lock<'a>(&'a self, op: GetOrLock<'a>) -> StoreFuture<'a, Fetched> {
        Box::pin(async move {
            let mut invocation = self.get_or_lock.key(op.lock);
            for marker in op.markers {
                invocation.key(*marker);
            }
            for name in op.values {
                invocation.key(name);
            }
            invocation
                .arg(op.lock_token)
                .arg(op.lock_ttl_ms)
                .arg(op.max_value_bytes)
                .arg(op.markers.len());
            let mut conn = self.conn.clone();
            let reply = invocation
                .invoke_async::<Value>(&mut conn)
                .await
                .map_err(|e| store_error(&e))?;
            let Value::Array(items) = reply else {
                return Err(StoreError::Unexpected);
            };
            let mut items = items.into_iter();
            let (Some(Value::Int(index)), value, Some(Value::Int(cutoff))) =
                (items.next(), items.next(), items.next())
            else {
                return Err(StoreError::Unexpected);
            };
            let cutoff = u64::try_from(cutoff).unwrap_or(0);
            match (index, value) {
                (0, _) => Ok(Fetched::Locked { cutoff }),
                (-1, _) => Ok(Fetched::Busy),
                (-2, _) => Ok(Fetched::TooLarge),
                (index, Some(Value::BulkString(value))) if index > 0 && !value.is_empty() => {
                    let index = usize::try_from(index - 1).map_err(|_| StoreError::Unexpected)?;
                    Ok(Fetched::Value { index, value, cutoff })
                }
                _ => Err(StoreError::Unexpected),
            }
        })
    }

    fn put<'a>(&'a self, op: Put<'a>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut invocation = self.put.key(op.value);
            invocation.key(op.lock);
            for marker in op.markers {
                invocation.key(*marker);
            }
            invocation
                .arg(op.sealed)
                .arg(millis_arg(op.ttl_ms))
                .arg(op.lock_token)
                .arg(op.channel)
                .arg(op.notice)
                .arg(op.answered_ms);
            let mut conn = self.conn.clone();
            let written = invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| store_error(&e))?;
            Ok(written == 1)
        })
    }

    fn invalidate<'a>(&'a self, op: Invalidate<'a>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut invocation = self.invalidate.prepare_invoke();
            for name in op.values {
                invocation.key(name);
            }
            for marker in op.markers {
                invocation.key(*marker);
            }
            invocation
                .arg(op.values.len())
                .arg(op.at_ms)
                .arg(op.retain_ms)
                .arg(op.channel)
                .arg(op.notice);
            let mut conn = self.conn.clone();
            invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| store_error(&e))?;
            Ok(())
        })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut cursor: u64 = 0;
            loop {
                let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| store_error(&e))?;
                if !names.is_empty() {
                    redis::cmd("UNLINK")
                        .arg(&names)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map_err(|e| store_error(&e))?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })
    }

    fn cut_off<'a>(&'a self, op: CutOff<'a>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut invocation = self.cut_off.key(op.set);
            invocation
                .arg(op.forget_at_ms)
                .arg(op.now_ms)
                .arg(op.max)
                .arg(op.channel)
                .arg(op.notice);
            for member in op.members {
                invocation.arg(member.as_slice());
            }
            let mut conn = self.conn.clone();
            match invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| store_error(&e))?
            {
                1 => Ok(true),
                0 => Ok(false),
                _ => Err(StoreError::Unexpected),
            }
        })
    }

    fn cutoffs<'a>(
        &'a self,
        set: &'a str,
        max: u64,
        after: u64,
        skip: u64,
        count: u64,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let max = if max == u64::MAX {
                "+inf".to_owned()
            } else {
                max.to_string()
            };
            let page: Vec<(Vec<u8>, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(set)
                .arg(max)
                .arg(format!("({after}"))
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(skip)
                .arg(count)
                .query_async(&mut conn)
                .await
                .map_err(|e| store_error(&e))?;
            // Scores are Unix ms, exact in a double.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(page
                .into_iter()
                .map(|(member, score)| (score.max(0.0) as u64, member))
                .collect())
        })
    }

    #[cfg(feature = "jwt")]
    fn mark_once<'a>(&'a self, names: &'a [String], ttl_ms: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut invocation = self.mark_once.key(names);
            invocation.arg(millis_arg(ttl_ms));
            let mut conn = self.conn.clone();
            match invocation
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| store_error(&e))?
            {
                1 => Ok(true),
                0 => Ok(false),
                _ => Err(StoreError::Unexpected),
            }
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            conn.subscribe(channel).await.map_err(|e| store_error(&e))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| store_error(&e))
        })
    }
}
