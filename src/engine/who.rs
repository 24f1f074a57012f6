//! Who a cached answer was issued to: an index from (issuer, subject),
//! (issuer, session) and (issuer, client) to the cache keys of their
//! answers, and the revocation cut-offs. Kept on the miss path and at
//! eviction; a hit never looks here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::cache_key::{Key, KeyScheme};
use crate::principal::Claims;
use crate::revocation::{Kind, Revocation};

/// The who-keys of an answer: one per kind it names, under its issuer.
pub(crate) type WhoKeys = [Option<Key>; 3];

/// The index and the cut-offs of one engine.
pub(crate) struct Who {
    /// Filed under this issuer when an answer names none.
    default_issuer: Box<str>,
    index: Mutex<HashMap<Key, Vec<Key>>>,
    cutoffs: Mutex<HashMap<Key, Cutoff>>,
    /// Whether any cut-off is held: a miss with none pays one load.
    any_cutoff: AtomicBool,
    max_cutoffs: u64,
    retention_secs: i64,
}

/// Tokens issued at or before `at` are refused until `forget_at` (Unix
/// seconds).
#[derive(Debug, Clone, Copy)]
struct Cutoff {
    at: i64,
    forget_at: i64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing in the critical sections panics; should one, the maps are
    // still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Who {
    pub(crate) fn new(default_issuer: Option<&str>, max_cutoffs: u64, retention: Duration) -> Self {
        Self {
            default_issuer: default_issuer.unwrap_or("").into(),
            index: Mutex::new(HashMap::new()),
            cutoffs: Mutex::new(HashMap::new()),
            any_cutoff: AtomicBool::new(false),
            max_cutoffs,
            retention_secs: i64::try_from(retention.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// The who-keys of `claims`, under its issuer (or the default one).
    pub(crate) fn keys_of(&self, keys: &KeyScheme, claims: &Claims) -> WhoKeys {
        let issuer = claims.issuer.as_deref().unwrap_or(&self.default_issuer);
        Kind::ALL.map(|kind| value(claims, kind).map(|value| keys.who(kind as u8, issuer, value)))
    }

    /// Files the answer under `key` by who it names.
    pub(crate) fn insert(&self, who: &WhoKeys, key: Key) {
        let mut index = lock(&self.index);
        for who in who.iter().flatten() {
            let keys = index.entry(*who).or_default();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }

    /// Takes the answer under `key` out of the index (it left the cache).
    pub(crate) fn remove(&self, who: &WhoKeys, key: &Key) {
        let mut index = lock(&self.index);
        for who in who.iter().flatten() {
            if let Some(keys) = index.get_mut(who) {
                keys.retain(|held| held != key);
                if keys.is_empty() {
                    index.remove(who);
                }
            }
        }
    }

    pub(crate) fn max_cutoffs(&self) -> u64 {
        self.max_cutoffs
    }

    pub(crate) fn clear_index(&self) {
        lock(&self.index).clear();
    }

    /// The who-keys a revocation matches: its issuer's and, when answers
    /// without `iss` are filed under no issuer, no issuer's (see the
    /// `revocation` module docs).
    pub(crate) fn matching(&self, keys: &KeyScheme, revocation: &Revocation) -> Vec<Key> {
        let kind = revocation.kind as u8;
        let mut who = vec![keys.who(kind, &revocation.issuer, &revocation.value)];
        if self.default_issuer.is_empty() {
            who.push(keys.who(kind, "", &revocation.value));
        }
        who
    }

    /// Records the cut-off `at` (Unix seconds) for `who`. False when full.
    pub(crate) fn cut_off(&self, who: &[Key], at: i64) -> bool {
        let mut cutoffs = lock(&self.cutoffs);
        let forget_at = at.saturating_add(self.retention_secs);
        let capacity = usize::try_from(self.max_cutoffs).unwrap_or(usize::MAX);
        let new = who.iter().filter(|who| !cutoffs.contains_key(*who)).count();
        if cutoffs.len().saturating_add(new) > capacity {
            cutoffs.retain(|_, cutoff| cutoff.forget_at > at);
        }
        if cutoffs.len().saturating_add(new) > capacity {
            return false;
        }
        for who in who {
            let cutoff = cutoffs.entry(*who).or_insert(Cutoff { at, forget_at });
            cutoff.at = cutoff.at.max(at);
            cutoff.forget_at = cutoff.forget_at.max(forget_at);
        }
        self.any_cutoff.store(!cutoffs.is_empty(), Ordering::Release);
        true
    }

    /// The cache keys filed under `who`, taken out of the index.
    pub(crate) fn take(&self, who: &[Key]) -> Vec<Key> {
        let mut index = lock(&self.index);
        let mut keys: Vec<Key> = who.iter().filter_map(|who| index.remove(who)).flatten().collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Whether a cut-off refuses `claims` (whose who-keys are `who`) at
    /// `now` (Unix seconds).
    pub(crate) fn refuses(&self, claims: &Claims, who: &WhoKeys, now: i64) -> bool {
        if !self.any_cutoff.load(Ordering::Acquire) {
            return false;
        }
        let issued = auth_time(claims).or(claims.issued_at.get());
        let cutoffs = lock(&self.cutoffs);
        who.iter().flatten().any(|who| {
            cutoffs.get(who).is_some_and(|cutoff| {
                cutoff.forget_at > now && issued.is_none_or(|issued| issued <= cutoff.at)
            })
        })
    }

    /// How many cut-offs are held, and how many who-keys are indexed.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (lock(&self.cutoffs).len(), lock(&self.index).len())
    }
}

/// The claim a kind matches, if the answer has it.
fn value(claims: &Claims, kind: Kind) -> Option<&str> {
    match kind {
        Kind::Subject => claims.subject.as_deref(),
        Kind::Client => claims.client_id.as_deref(),
        Kind::Session => claims.extra.as_ref()?.get("sid")?.as_str(),
    }
}

/// OpenID Connect's `auth_time`: when the user logged in.
fn auth_time(claims: &Claims) -> Option<i64> {
    claims.extra.as_ref()?.get("auth_time")?.as_i64()
}
