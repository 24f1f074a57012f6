//! The fleet's notices, on one Redis channel per verifier:
//!
//! - `i <key> [<key>…]`: drop these in-process cache keys (one per fleet
//!   secret, so that replicas on either side of a rotation find theirs);
//! - `a <ms>`: drop every in-process entry (`invalidate_all` at Unix ms);
//! - `f <id>`: the shared entry `id` was written or its lock released:
//!   replicas waiting for it look again.
//!
//! Each ends with ` m:<tag>`, an HMAC-SHA-256 (128 bits) under a key derived
//! from the fleet secret, over the channel and the notice: notices that do
//! not verify are ignored, so Redis access alone cannot flush the fleet's
//! in-process caches. A recorded `a` is not applied twice, nor when older
//! than five minutes.
//!
//! Notices cost one sub-millisecond hop, so a replica drops an invalidated
//! entry about when the invalidating call returns. While the subscription
//! is down notices are lost: when it is back, the replica drops its whole
//! in-process cache (refilled from the shared tier, not the authorization
//! server), so an invalidation is never missed for longer than the outage
//! (and never longer than `max_ttl`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::{error::TrySendError, Receiver, Sender};
use tokio::sync::Notify;

use super::keys::{hex, unhex16};
use super::TierInner;
use crate::cache::Key;

/// How often the listener checks the connection (which makes the
/// connection manager reconnect and subscribe again after an outage).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// An `a` notice older than this is not applied (a replay).
const FLUSH_NOTICE_LIFE_MS: u64 = 5 * 60 * 1000;

/// Notices waiting for the listener, at most. Beyond, fill notices are
/// dropped (waiters poll anyway), and anything else makes the replica drop
/// its whole in-process cache: an invalidation is never lost.
pub(crate) const QUEUED_NOTICES: usize = 4096;

/// What the connection calls with each notice: queue it without blocking;
/// when the queue is full, drop a fill notice, or raise `overflowed`.
pub(crate) fn push_sender(
    queue: Sender<PushInfo>,
    overflowed: Arc<AtomicBool>,
) -> impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static {
    move |push| match queue.try_send(push) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(push)) => {
            let fill = push.kind == PushKind::Message
                && matches!(push.data.get(1), Some(Value::BulkString(payload)) if payload.starts_with(b"f "));
            if !fill {
                overflowed.store(true, Ordering::Release);
            }
            Ok(())
        }
        Err(TrySendError::Closed(_)) => Err(()),
    }
}

/// Where notices are applied: the in-process cache of an introspector.
pub(crate) trait L1Sink: Send + Sync {
    /// Drops one in-process entry (and spoils its loads in flight).
    fn drop_key(&self, key: Key) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Drops every in-process entry.
    fn drop_all(&self);
}

pub(crate) fn invalidate_notice(keys: &[Key]) -> String {
    let mut notice = String::from("i");
    for key in keys {
        notice.push(' ');
        notice.push_str(&hex(key));
    }
    notice
}

pub(crate) fn invalidate_all_notice(at_ms: u64) -> String {
    format!("a {at_ms}")
}

pub(crate) fn fill_notice(id: &str) -> String {
    format!("f {id}")
}

/// Replicas' waiters for fills, by entry id.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<String, Weak<Notify>>>,
}

/// One wait for a fill; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct Waiting<'a> {
    owner: &'a Waiters,
    id: String,
    notify: Arc<Notify>,
}

impl Waiting<'_> {
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.lock();
        if map.get(&self.id).is_some_and(|weak| weak.strong_count() <= 1) {
            map.remove(&self.id);
        }
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Notify>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register(&self, id: &str) -> Waiting<'_> {
        let mut map = self.lock();
        let notify = match map.get(id).and_then(Weak::upgrade) {
            Some(notify) => notify,
            None => {
                let notify = Arc::new(Notify::new());
                map.insert(id.to_owned(), Arc::downgrade(&notify));
                notify
            }
        };
        Waiting {
            owner: self,
            id: id.to_owned(),
            notify,
        }
    }

    fn wake(&self, id: &str) {
        if let Some(notify) = self.lock().get(id).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }
}

/// Applies notices to `sink` until the tier or the sink is gone.
pub(crate) async fn listen(
    tier: Weak<TierInner>,
    sink: Weak<dyn L1Sink>,
    mut pushes: Receiver<PushInfo>,
    overflowed: Arc<AtomicBool>,
) {
    let mut subscribed = false;
    let mut last_flush_ms = 0u64;
    let mut lost = false;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let push = {
            let next = pushes.recv();
            let tick = heartbeat.tick();
            tokio::pin!(next, tick);
            match futures_util::future::select(next, tick).await {
                futures_util::future::Either::Left((push, _)) => Some(push),
                futures_util::future::Either::Right(_) => None,
            }
        };
        let (Some(tier), Some(sink)) = (tier.upgrade(), sink.upgrade()) else {
            return;
        };
        if overflowed.swap(false, Ordering::AcqRel) {
            tracing::warn!("shared cache (Redis) notices came faster than they were applied; dropping the in-process cache, as an invalidation may have been among those dropped");
            sink.drop_all();
            // Dropped notices may include a disconnection: drop again once
            // Redis answers.
            lost = true;
        }
        match push {
            Some(None) => return,
            Some(Some(push)) => match push.kind {
                PushKind::Message => {
                    if let Some(Value::BulkString(payload)) = push.data.get(1) {
                        apply(&tier, &*sink, payload, &mut last_flush_ms).await;
                    }
                }
                PushKind::Disconnection => {
                    if !lost {
                        tracing::warn!("shared cache (Redis) subscription lost; invalidations from other replicas are not seen until it is back");
                    }
                    lost = true;
                }
                _ => {}
            },
            None => {
                let mut conn = tier.conn();
                let ok = if subscribed {
                    let ping = redis::cmd("PING").clone();
                    matches!(
                        tokio::time::timeout(tier.command_timeout(), ping.query_async::<()>(&mut conn)).await,
                        Ok(Ok(()))
                    )
                } else {
                    let channel = tier.keys().channel();
                    subscribed = matches!(
                        tokio::time::timeout(tier.command_timeout(), conn.subscribe(channel)).await,
                        Ok(Ok(()))
                    );
                    subscribed
                };
                if !ok && !lost && subscribed {
                    // A paused or partitioned Redis drops no connection,
                    // but notices stop all the same.
                    tracing::warn!("shared cache (Redis) does not answer; invalidations from other replicas are not seen until it does");
                    lost = true;
                }
                if ok && lost {
                    // Notices may have been missed meanwhile.
                    tracing::info!("shared cache (Redis) subscription back; dropping the in-process cache, as invalidations may have been missed");
                    sink.drop_all();
                    lost = false;
                }
                if ok {
                    tier.replay().await;
                }
            }
        }
    }
}

async fn apply(tier: &TierInner, sink: &dyn L1Sink, payload: &[u8], last_flush_ms: &mut u64) {
    let Some(body) = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| tier.keys().open_notice(text))
    else {
        tier.unsigned_notice();
        return;
    };
    let mut words = body.split(' ');
    match words.next() {
        Some("i") => {
            for key in words.filter_map(unhex16) {
                sink.drop_key(key).await;
            }
        }
        Some("a") => {
            let at_ms = words.next().and_then(|at| at.parse::<u64>().ok()).unwrap_or(0);
            if at_ms > *last_flush_ms && at_ms.saturating_add(FLUSH_NOTICE_LIFE_MS) > super::now_ms() {
                *last_flush_ms = at_ms;
                sink.drop_all();
            }
        }
        Some("f") => {
            if let Some(id) = words.next() {
                tier.waiters().wake(id);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_carry_keys_in_hex() {
        assert_eq!(
            invalidate_notice(&[[0; 16], [255; 16]]),
            format!("i {} {}", "00".repeat(16), "ff".repeat(16))
        );
        assert_eq!(fill_notice("ab"), "f ab");
        assert_eq!(invalidate_all_notice(7), "a 7");
    }

    fn message(payload: &str) -> PushInfo {
        PushInfo {
            kind: PushKind::Message,
            data: vec![
                Value::BulkString(b"channel".to_vec()),
                Value::BulkString(payload.as_bytes().to_vec()),
            ],
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_fills_but_never_an_invalidation() {
        let (queue, mut pushes) = tokio::sync::mpsc::channel(1);
        let overflowed = Arc::new(AtomicBool::new(false));
        let send = push_sender(queue, Arc::clone(&overflowed));
        assert!(send(message("f ab")).is_ok());
        assert!(send(message("f cd")).is_ok(), "full: a fill is dropped");
        assert!(!overflowed.load(Ordering::Acquire));
        assert!(send(message("i 00")).is_ok());
        assert!(
            overflowed.load(Ordering::Acquire),
            "an invalidation raises the flag"
        );
        overflowed.store(false, Ordering::Release);
        assert!(send(PushInfo {
            kind: PushKind::Disconnection,
            data: vec![]
        })
        .is_ok());
        assert!(overflowed.load(Ordering::Acquire), "so does a disconnection");
        assert!(pushes.recv().await.is_some());
        drop(pushes);
        assert!(send(message("f ab")).is_err(), "closed");
    }

    #[test]
    fn waiters_are_forgotten_when_done() {
        let waiters = Waiters::default();
        let a = waiters.register("x");
        let b = waiters.register("x");
        assert!(Arc::ptr_eq(&a.notify, &b.notify));
        drop(a);
        assert_eq!(waiters.lock().len(), 1);
        drop(b);
        assert!(waiters.lock().is_empty());
    }
}
