//! The miss path through the fleet tier (feature `redis`): the shared
//! answer, or one load for the whole fleet, written back sealed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::tickets::LoadTicket;
use super::{active_ttl, Engine, Entry, Failure, LoadError, LoadToken};
use crate::cache_key::Key;
use crate::claims::Answer;
use crate::clock::monotonic_ms;
use crate::fleet::{active_json, now_ms, L1Sink, Lookup, Opened, INACTIVE_JSON};
use crate::revocation::Revocation;
use crate::validate::since_epoch;

impl<L: LoadToken> Engine<L> {
    /// Like [`load`](Self::load), with the shared tier first: its answer if
    /// it has one; else one replica of the fleet loads (the others wait for
    /// its answer, up to `lock_wait`) and writes the answer back. Any Redis
    /// failure means "not shared": the load goes on without it.
    pub(super) async fn load_through(
        &self,
        key: Key,
        token: &str,
        ticket: Option<&LoadTicket<'_>>,
    ) -> Result<Entry, Failure> {
        let Some(shared) = self.shared.as_ref().filter(|_| self.policy.share_answers) else {
            return self.load(key, token, ticket).await;
        };
        let names = shared.names(token);
        let lookup = match shared.get_or_lock(&names).await {
            Lookup::Busy => shared.wait_for_fill(&names).await,
            other => other,
        };
        let lock = match lookup {
            Lookup::Found(opened) => return self.shared_entry(key, opened, ticket).await,
            Lookup::Locked(lock) => Some(lock),
            Lookup::Busy | Lookup::Unavailable => None,
        };
        let answered_ms = now_ms();
        let result = self.load(key, token, ticket).await;
        match &result {
            Ok(entry) => match active_ttl(entry.expires_at.get(), since_epoch(), self.max_ttl()) {
                Some(ttl) => {
                    shared
                        .put(&names, &active_json(entry), answered_ms, ttl, lock)
                        .await;
                }
                None => shared.release(&names, lock).await,
            },
            Err(Failure::Refused(refusal)) if refusal.is_lasting() && !shared.negative_ttl().is_zero() => {
                shared
                    .put(&names, INACTIVE_JSON, answered_ms, shared.negative_ttl(), lock)
                    .await;
            }
            // Faults, throttling and spoiled loads are never shared.
            Err(_) => shared.release(&names, lock).await,
        }
        result
    }

    /// An answer from the shared tier, as an in-process entry: it lives no
    /// longer here than there, and its age counts from the source's answer.
    async fn shared_entry(
        &self,
        key: Key,
        opened: Opened,
        ticket: Option<&LoadTicket<'_>>,
    ) -> Result<Entry, Failure> {
        let principal = match opened.answer {
            Answer::Active(principal) => principal,
            Answer::Inactive => {
                if ticket.is_some_and(|ticket| !ticket.spoiled()) {
                    self.remember_refusal(key).await;
                }
                return Err(Failure::Refused(LoadError::invalid(self.policy.refused)));
            }
        };
        let mut result = self.admit_loaded(key, principal, ticket).await;
        if let Ok(entry) | Err(Failure::Uncacheable(entry)) = &mut result {
            if let Some(claims) = Arc::get_mut(entry) {
                let now = now_ms();
                let age = now.saturating_sub(opened.answered_ms);
                claims.received_at_ms = monotonic_ms().saturating_sub(age);
                // An absolute deadline, so that the time the insert takes
                // is not added to the entry's life.
                let remaining = opened.until_ms.saturating_sub(now).max(1);
                claims.shared_until_ms = monotonic_ms().saturating_add(remaining);
            }
        }
        result
    }
}

impl<L: LoadToken> L1Sink for Engine<L> {
    fn drop_key(&self, key: Key) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.cache.invalidate(&key).await })
    }

    fn drop_all(&self) {
        self.cache.invalidate_all();
    }

    fn revoke(&self, revocation: Revocation, at: i64) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move { self.cache.revoke(&revocation, at).await.0 })
    }
}
