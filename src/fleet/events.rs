//! The fleet's notices, on one Redis channel per verifier:
//!
//! - `i <key> [<key>…]`: drop these in-process cache keys (one per fleet
//!   secret, so that replicas on either side of a rotation find theirs);
//! - `a <ms>`: drop every in-process entry (`invalidate_all` at Unix ms);
//! - `f <id>`: the shared entry `id` was written or its lock released:
//!   replicas waiting for it look again;
//! - `r <sealed> [<sealed>…]`: a revocation, sealed under each secret of
//!   the sender (see `cutoffs`): carried out as this replica's own.
//!
//! Each ends with ` m:<tag>`, an HMAC-SHA-256 (128 bits) under a key derived
//! from the fleet secret, over the channel and the notice, once per secret
//! the sender has. A recorded `a` is not applied twice, nor when older than
//! five minutes.
//!
//! During a rotation a receiver may not find its own entry in an `i`: its
//! in-process keys derive from its first secret, which the sender may not
//! have. Every invalidation still reaches it, failing closed:
//!
//! - tagged under the receiver's first secret: the sender has it, so one of
//!   the keys is the receiver's; that entry is dropped;
//! - tagged under a previous secret of the receiver only (a replica not
//!   rotated yet, step 1 of a rotation): the receiver drops its whole
//!   in-process cache, refilled from Redis, where the sender's tombstone
//!   under the shared secret keeps the revoked answer from being read;
//! - not verifying at all: the sender shares no secret with the receiver
//!   (old only and new only; the rotation procedure never lets them meet,
//!   see the README) or is a forgery, and the two cannot be told apart. An
//!   `i` or `a` then makes the receiver drop its in-process cache and refuse
//!   every shared answer given before it (the sender could delete or
//!   tombstone no entry under the receiver's secrets), so refilled from the
//!   authorization server: more calls, never a revoked token accepted.
//!   Bounded, as anyone with Redis access can publish: at most one such
//!   drop every [`UNVERIFIED_EVERY`]; notices within one are applied
//!   together at its end. A fill notice that does not verify is ignored.
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

use tokio::sync::mpsc::Receiver;
use tokio::sync::Notify;

use super::cutoffs::{notice_copies, open_revocation};
use super::keys::{hex, unhex16, Signer};
use super::store::Push;
use super::TierInner;
use crate::cache_key::Key;
use crate::revocation::Revocation;

/// How often the listener checks the connection (which makes the
/// connection manager reconnect and subscribe again after an outage).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// An `a` notice older than this is not applied (a replay).
const FLUSH_NOTICE_LIFE_MS: u64 = 5 * 60 * 1000;

/// At most one whole drop for invalidation notices that do not verify, per
/// this: what anyone able to publish on the channel can cost a replica.
const UNVERIFIED_EVERY: Duration = Duration::from_secs(5);

/// Notices waiting for the listener, at most. Beyond, fill notices are
/// dropped (waiters poll anyway), and anything else makes the replica drop
/// its whole in-process cache: an invalidation is never lost.
pub(crate) const QUEUED_NOTICES: usize = 4096;

/// Where notices are applied: the in-process cache of an introspector.
pub(crate) trait L1Sink: Send + Sync {
    /// Drops one in-process entry (and spoils its loads in flight).
    fn drop_key(&self, key: Key) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Drops every in-process entry.
    fn drop_all(&self);
    /// Carries out a revocation another replica (or the stored cut-offs)
    /// told of, cut off at `at` (Unix s), in this process only; false when
    /// the cut-offs were full (its answers were evicted all the same).
    fn revoke(&self, revocation: Revocation, at: i64) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
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
    mut pushes: Receiver<Push>,
    overflowed: Arc<AtomicBool>,
) {
    let mut subscribed = false;
    let mut last_flush_ms = 0u64;
    let mut unverified = Unverified::default();
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
        if unverified.due(tokio::time::Instant::now()) {
            drop_unverified(&tier, &*sink);
        }
        if overflowed.swap(false, Ordering::AcqRel) {
            tracing::warn!("shared cache (Redis) notices came faster than they were applied; dropping the in-process cache, as an invalidation may have been among those dropped");
            sink.drop_all();
            // Dropped notices may include a disconnection or a revocation:
            // drop again, and read the stored cut-offs, once Redis answers.
            lost = true;
            tier.cutoffs_unread();
        }
        match push {
            Some(None) => return,
            Some(Some(Push::Notice(payload))) => {
                apply(&tier, &*sink, &payload, &mut last_flush_ms, &mut unverified).await;
            }
            Some(Some(Push::Disconnected)) => {
                if !lost {
                    tracing::warn!("shared cache (Redis) subscription lost; invalidations from other replicas are not seen until it is back");
                }
                lost = true;
                tier.cutoffs_unread();
            }
            None => {
                let ok = if subscribed {
                    matches!(
                        tokio::time::timeout(tier.command_timeout(), tier.store().ping()).await,
                        Ok(Ok(()))
                    )
                } else {
                    let channel = tier.keys().channel();
                    subscribed = matches!(
                        tokio::time::timeout(tier.command_timeout(), tier.store().subscribe(&channel)).await,
                        Ok(Ok(()))
                    );
                    if subscribed {
                        // A revocation stored after a load read the
                        // cut-offs, but before this subscription, came in
                        // no notice: the next load reads them again.
                        tier.cutoffs_subscribed();
                    }
                    subscribed
                };
                if !ok && !lost && subscribed {
                    // A paused or partitioned Redis drops no connection,
                    // but notices stop all the same.
                    tracing::warn!("shared cache (Redis) does not answer; invalidations from other replicas are not seen until it does");
                    lost = true;
                    tier.cutoffs_unread();
                }
                if ok && lost {
                    // Notices may have been missed meanwhile.
                    tracing::info!("shared cache (Redis) subscription back; dropping the in-process cache, as invalidations may have been missed");
                    // The next load reads the stored cut-offs first.
                    tier.cutoffs_unread();
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

/// Whole drops for invalidation notices that do not verify: at most one
/// per [`UNVERIFIED_EVERY`], the rest put off to its end.
#[derive(Debug, Default)]
struct Unverified {
    last: Option<tokio::time::Instant>,
    pending: bool,
}

impl Unverified {
    /// One more such notice: whether to drop now (else it is pending).
    fn arrived(&mut self, now: tokio::time::Instant) -> bool {
        self.pending = true;
        self.due(now)
    }

    /// Whether a pending drop is due now; if so, it is no longer pending.
    fn due(&mut self, now: tokio::time::Instant) -> bool {
        let due = self.pending
            && self
                .last
                .is_none_or(|last| now.saturating_duration_since(last) >= UNVERIFIED_EVERY);
        if due {
            self.pending = false;
            self.last = Some(now);
        }
        due
    }
}

/// Whether a payload is shaped like an invalidation (`i …`, `a …` or a
/// revocation, `r …`).
fn is_invalidation(payload: &[u8]) -> bool {
    matches!(
        payload.split(|byte| *byte == b' ').next(),
        Some(b"i" | b"a" | b"r")
    )
}

/// Fails closed on invalidations this replica cannot verify: shared answers
/// given until now are refused first, so that nothing read from Redis
/// between the two steps refills the in-process cache.
fn drop_unverified(tier: &TierInner, sink: &dyn L1Sink) {
    tier.refuse_shared_before(super::now_ms());
    sink.drop_all();
    // It may have been a revocation: read the stored cut-offs again.
    tier.cutoffs_unread();
    tier.notice_flush();
}

async fn apply(
    tier: &TierInner,
    sink: &dyn L1Sink,
    payload: &[u8],
    last_flush_ms: &mut u64,
    unverified: &mut Unverified,
) {
    let Some((body, signer)) = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| tier.keys().open_notice(text))
    else {
        tier.unsigned_notice();
        if is_invalidation(payload) && unverified.arrived(tokio::time::Instant::now()) {
            drop_unverified(tier, sink);
        }
        return;
    };
    let mut words = body.split(' ');
    match words.next() {
        Some("i") => match signer {
            Signer::InProcessSecret => {
                for key in words.filter_map(unhex16) {
                    sink.drop_key(key).await;
                }
            }
            // Its keys are under secrets ours are not derived from; the
            // shared tier has the sender's tombstones under a secret we
            // read, so only the in-process cache must go.
            Signer::PreviousSecretOnly => {
                tracing::debug!("an invalidation from a replica without this one's first fleet secret (a rotation under way): dropping the in-process cache");
                sink.drop_all();
                tier.notice_flush();
            }
        },
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
        // Sealed under every secret the sender has: whichever opens.
        Some("r") => {
            let now = super::now_ms();
            match notice_copies(words).find_map(|copy| open_revocation(tier.keys(), &copy, now)) {
                Some((revocation, at)) => {
                    if !sink.revoke(revocation, at).await {
                        tier.cutoffs_full();
                    }
                }
                // Signed by the fleet but unreadable here: what it revoked
                // may be in the store; read it before the next load.
                None => {
                    tracing::debug!("a revocation notice that opens under none of this replica's secrets, or past its retention: the stored cut-offs are read again");
                    tier.cutoffs_unread();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures_util::FutureExt as _;

    use super::*;
    use crate::fleet::SharedTier;

    #[test]
    fn notices_carry_keys_in_hex() {
        assert_eq!(
            invalidate_notice(&[[0; 16], [255; 16]]),
            format!("i {} {}", "00".repeat(16), "ff".repeat(16))
        );
        assert_eq!(fill_notice("ab"), "f ab");
        assert_eq!(invalidate_all_notice(7), "a 7");
    }

    #[test]
    fn unverified_invalidations_drop_at_once_then_once_per_window() {
        let mut unverified = Unverified::default();
        let start = tokio::time::Instant::now();
        assert!(!unverified.due(start), "nothing pending");
        assert!(unverified.arrived(start), "the first drops at once");
        assert!(!unverified.due(start));
        let soon = start + UNVERIFIED_EVERY / 2;
        assert!(!unverified.arrived(soon), "within the window: put off");
        assert!(!unverified.arrived(soon), "and coalesced");
        assert!(!unverified.due(start + UNVERIFIED_EVERY - Duration::from_millis(1)));
        let end = start + UNVERIFIED_EVERY;
        assert!(unverified.due(end), "not lost: dropped at the window's end");
        assert!(!unverified.due(end + UNVERIFIED_EVERY), "once");
        assert!(
            unverified.arrived(end + UNVERIFIED_EVERY),
            "a window after the last drop: at once again"
        );
    }

    #[test]
    fn invalidations_are_told_from_other_notices_by_their_first_word() {
        for payload in ["i 00 m:00", "a 1", "i", "a", "r 00 m:00"] {
            assert!(is_invalidation(payload.as_bytes()), "{payload}");
        }
        for payload in ["f ab m:00", "", "hello", "ia 1", " i 00"] {
            assert!(!is_invalidation(payload.as_bytes()), "{payload}");
        }
    }

    #[test]
    fn a_fill_wakes_every_waiter_of_its_id_and_no_other() {
        let waiters = Waiters::default();
        let (x1, x2, y) = (
            waiters.register("x"),
            waiters.register("x"),
            waiters.register("y"),
        );
        let mut woken = [x1.notify(), x2.notify(), y.notify()].map(|notify| Box::pin(notify.notified()));
        for notified in &mut woken {
            notified.as_mut().enable();
        }
        waiters.wake("x");
        let [x1, x2, y] = woken.map(|notified| notified.now_or_never().is_some());
        assert!(x1 && x2, "both waiters of `x`");
        assert!(!y, "not the waiter of `y`");
    }

    /// Records what notices drop.
    #[derive(Default)]
    struct Drops {
        all: AtomicUsize,
        keys: std::sync::Mutex<Vec<Key>>,
        revocations: std::sync::Mutex<Vec<(Revocation, i64)>>,
    }

    impl L1Sink for Drops {
        fn drop_key(&self, key: Key) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.keys.lock().unwrap().push(key);
            Box::pin(async {})
        }

        fn drop_all(&self) {
            self.all.fetch_add(1, Ordering::SeqCst);
        }

        fn revoke(&self, revocation: Revocation, at: i64) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
            self.revocations.lock().unwrap().push((revocation, at));
            Box::pin(async { true })
        }
    }

    /// A tier on an in-memory store, as a replica has it.
    fn tier() -> SharedTier {
        let store = crate::fleet::MemoryStore::new();
        let config = crate::fleet::SharedCache::in_memory(&store, "a fleet secret of at least 32 bytes!")
            .build()
            .unwrap();
        let second = Duration::from_secs(1);
        let settings = crate::fleet::TierSettings {
            as_timeout: second,
            load_bound: second,
            max_ttl: second,
            negative_ttl: second,
            cutoff_retention: Duration::from_secs(60),
            max_cutoffs: 10,
        };
        SharedTier::new(&config, "https://as/i", "rs", settings).unwrap()
    }

    /// Applies the notice `body`, signed as a replica of the fleet signs it.
    async fn apply_signed(tier: &TierInner, sink: &Drops, body: &str, last_flush_ms: &mut u64) {
        let notice = tier.keys().sign_notice(body);
        apply(
            tier,
            sink,
            notice.as_bytes(),
            last_flush_ms,
            &mut Unverified::default(),
        )
        .await;
    }

    #[tokio::test]
    async fn invalidate_all_notices_apply_once_and_only_while_recent() {
        let tier = tier();
        let (tier, sink) = (&*tier.inner, Drops::default());
        let minute = 60 * 1000;
        let mut last = 0;
        apply_signed(
            tier,
            &sink,
            &invalidate_all_notice(super::super::now_ms() - 6 * minute),
            &mut last,
        )
        .await;
        assert_eq!(sink.all.load(Ordering::SeqCst), 0, "six minutes old: a replay");
        let at = super::super::now_ms() - 3 * minute;
        apply_signed(tier, &sink, &invalidate_all_notice(at), &mut last).await;
        assert_eq!(sink.all.load(Ordering::SeqCst), 1, "three minutes old: applied");
        apply_signed(tier, &sink, &invalidate_all_notice(at), &mut last).await;
        assert_eq!(sink.all.load(Ordering::SeqCst), 1, "the same one again: not");
        apply_signed(tier, &sink, &invalidate_all_notice(at - 1), &mut last).await;
        assert_eq!(sink.all.load(Ordering::SeqCst), 1, "an older one: not");
        apply_signed(tier, &sink, &invalidate_all_notice(at + 1), &mut last).await;
        assert_eq!(sink.all.load(Ordering::SeqCst), 2, "a newer one: applied");
    }

    #[tokio::test]
    async fn fill_notices_wake_the_waiters_of_their_entry() {
        let tier = tier();
        let (tier, sink) = (&*tier.inner, Drops::default());
        let names = tier.keys().names("a token");
        let waiting = tier.waiters().register(names.id());
        let mut notified = std::pin::pin!(waiting.notify().notified());
        notified.as_mut().enable();
        apply_signed(tier, &sink, &fill_notice(names.id()), &mut 0).await;
        assert!(notified.now_or_never().is_some(), "woken by the fill");
        assert_eq!(sink.all.load(Ordering::SeqCst), 0, "a fill drops nothing");
    }

    #[tokio::test]
    async fn a_revocation_notice_is_carried_out_and_an_unreadable_one_makes_the_cutoffs_unread() {
        let tier = tier();
        let (tier, sink) = (&*tier.inner, Drops::default());
        tier.cutoffs_subscribed();
        let revocation = Revocation::session("https://as", "s1");
        let sealed =
            super::super::cutoffs::seal_revocation(tier.keys(), &revocation, 1_700_000_000, u64::MAX);
        let notice = super::super::cutoffs::revocation_notice(&sealed);
        apply_signed(tier, &sink, &notice, &mut 0).await;
        assert_eq!(
            *sink.revocations.lock().unwrap(),
            [(revocation, 1_700_000_000)],
            "carried out, at the sender's cut-off"
        );
        tier.mark_cutoffs_read();
        apply_signed(tier, &sink, "r 00ff", &mut 0).await;
        assert_eq!(sink.revocations.lock().unwrap().len(), 1);
        assert!(
            !tier.cutoffs_current(),
            "read the store again before the next load"
        );
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
