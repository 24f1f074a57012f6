//! The shared store behind the fleet tier: the few atomic operations the
//! tier needs ([`SharedStore`]), whatever holds the data. Redis is one
//! implementation ([`super::redis`]); memory is another
//! ([`MemoryStore`](super::MemoryStore)), so that the fleet logic, and
//! users' tests, run without a Redis server.
//!
//! Everything above this seam is the fleet logic, written once: names and
//! sealing under the fleet secret, the circuit breaker, command timeouts,
//! invalidations remembered and replayed, notices and their signatures.
//! Below it, values are opaque bytes under opaque names.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

/// A store operation in flight.
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed (for logs; every failure means "not
/// shared").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    TimedOut,
    Unreachable,
    Refused,
    /// An answer the operation never gives.
    Unexpected,
}

impl StoreError {
    pub(crate) fn why(self) -> &'static str {
        match self {
            Self::TimedOut => "timed out",
            Self::Unreachable => "could not be reached",
            Self::Refused => "refused the command",
            Self::Unexpected => "answered something unexpected",
        }
    }
}

/// What [`SharedStore::get_or_lock`] found. `cutoff` is the latest
/// invalidation time among the markers (Unix ms, 0 for none): a value
/// answered at or before it must not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// The value under `values[index]`.
    Value {
        index: usize,
        value: Vec<u8>,
        cutoff: u64,
    },
    /// No value; the lock is now ours.
    Locked { cutoff: u64 },
    /// No value; another holds the lock.
    Busy,
    /// A value larger than the limit (not sent).
    TooLarge,
}

/// A lookup: the first value present among `values`, else the lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GetOrLock<'a> {
    pub(crate) values: &'a [String],
    /// Names holding invalidation times (the token's tombstones, the flush
    /// marker).
    pub(crate) markers: &'a [&'a str],
    pub(crate) lock: &'a str,
    pub(crate) lock_token: &'a str,
    pub(crate) lock_ttl_ms: u64,
    pub(crate) max_value_bytes: usize,
}

/// A write: `sealed` under `value` for `ttl_ms` (unless empty, or answered
/// at or before a time in `markers`), then the lock released if it is
/// still `lock_token`'s, then `notice` published on `channel`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Put<'a> {
    pub(crate) value: &'a str,
    pub(crate) sealed: &'a [u8],
    pub(crate) ttl_ms: u64,
    pub(crate) answered_ms: u64,
    pub(crate) markers: &'a [&'a str],
    pub(crate) lock: &'a str,
    pub(crate) lock_token: &'a str,
    pub(crate) channel: &'a str,
    pub(crate) notice: &'a str,
}

/// An invalidation: `values` deleted, `markers` set to `at_ms` for
/// `retain_ms` unless they hold a later time, `notice` published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Invalidate<'a> {
    pub(crate) values: &'a [String],
    pub(crate) markers: &'a [&'a str],
    pub(crate) at_ms: u64,
    pub(crate) retain_ms: u64,
    pub(crate) channel: &'a str,
    pub(crate) notice: &'a str,
}

/// A revocation for the fleet (see `cutoffs`): members forgotten by
/// `now_ms` taken out of the sorted set `set`, then `members` (one sealed
/// copy per secret) added with the score `forget_at_ms` unless the set
/// would then hold more than `max`, then `notice` published either way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CutOff<'a> {
    pub(crate) set: &'a str,
    pub(crate) members: &'a [Vec<u8>],
    pub(crate) forget_at_ms: u64,
    pub(crate) now_ms: u64,
    pub(crate) max: u64,
    pub(crate) channel: &'a str,
    pub(crate) notice: &'a str,
}

/// The operations of the fleet tier, each atomic in the store.
pub(crate) trait SharedStore: Send + Sync + 'static {
    /// The value of a token, or the fleet-wide lock to load it.
    fn get_or_lock<'a>(&'a self, op: GetOrLock<'a>) -> StoreFuture<'a, Fetched>;

    /// Writes a value (or only releases the lock); whether it was written.
    fn put<'a>(&'a self, op: Put<'a>) -> StoreFuture<'a, bool>;

    /// Invalidates values and tells every replica.
    fn invalidate<'a>(&'a self, op: Invalidate<'a>) -> StoreFuture<'a, ()>;

    /// Deletes every value whose name matches `pattern` (a prefix and `*`).
    fn delete_matching<'a>(&'a self, pattern: &'a str) -> StoreFuture<'a, ()>;

    /// Stores and announces a revocation; whether the set had room for it.
    fn cut_off<'a>(&'a self, op: CutOff<'a>) -> StoreFuture<'a, bool>;

    /// Members of the sorted set `set` with their scores, by descending
    /// score from `max` (inclusive) down to above `after`, skipping the
    /// first `skip`, at most `count`: one page of the stored cut-offs.
    fn cutoffs<'a>(
        &'a self,
        set: &'a str,
        max: u64,
        after: u64,
        skip: u64,
        count: u64,
    ) -> StoreFuture<'a, Vec<(u64, Vec<u8>)>>;

    /// Sets every name in `names` for `ttl_ms`, unless one of them exists:
    /// whether they were set (the first use of a DPoP proof).
    #[cfg(feature = "jwt")]
    fn mark_once<'a>(&'a self, names: &'a [String], ttl_ms: u64) -> StoreFuture<'a, bool>;

    /// Subscribes this connection to `channel`: what is published there
    /// arrives in the connection's [`PushQueue`].
    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, ()>;

    /// Whether the store answers.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// What arrives from the store on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Push {
    /// A notice published on the channel.
    Notice(Vec<u8>),
    /// The connection broke: notices may be lost until it is back.
    Disconnected,
}

/// Where a connection queues what arrives, without blocking: when the
/// queue is full, a fill notice is dropped (waiters poll anyway), and
/// anything else raises `overflowed` (the listener then drops the whole
/// in-process cache: an invalidation is never lost).
#[derive(Debug, Clone)]
pub(crate) struct PushQueue {
    queue: Sender<Push>,
    overflowed: Arc<AtomicBool>,
}

impl PushQueue {
    pub(crate) fn new(queue: Sender<Push>, overflowed: Arc<AtomicBool>) -> Self {
        Self { queue, overflowed }
    }

    /// Queues `push`; `Err` once the listener is gone.
    pub(crate) fn push(&self, push: Push) -> Result<(), ()> {
        match self.queue.try_send(push) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(push)) => {
                let fill = matches!(&push, Push::Notice(payload) if payload.starts_with(b"f "));
                if !fill {
                    self.overflowed.store(true, Ordering::Release);
                }
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_fills_and_flags_anything_else() {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let overflowed = Arc::new(AtomicBool::new(false));
        let queue = PushQueue::new(sender, Arc::clone(&overflowed));
        assert!(queue.push(Push::Notice(b"i 00".to_vec())).is_ok());
        assert!(queue.push(Push::Notice(b"f id".to_vec())).is_ok());
        assert!(!overflowed.load(Ordering::Acquire), "a dropped fill is harmless");
        assert!(queue.push(Push::Notice(b"i 01".to_vec())).is_ok());
        assert!(
            overflowed.load(Ordering::Acquire),
            "a dropped invalidation is not"
        );
        overflowed.store(false, Ordering::Release);
        assert!(queue.push(Push::Disconnected).is_ok());
        assert!(overflowed.load(Ordering::Acquire), "nor a dropped disconnection");
        assert_eq!(receiver.recv().await, Some(Push::Notice(b"i 00".to_vec())));
        drop(receiver);
        assert!(queue.push(Push::Disconnected).is_err(), "the listener is gone");
    }
}
