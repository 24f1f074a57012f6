//! Who a cached answer was issued to: an index from (issuer, subject),
//! (issuer, session) and (issuer, client) to the cache keys of their
//! answers, and the revocation cut-offs. Kept on the miss path and at
//! eviction; a hit never looks here.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::cache_key::{Key, KeyScheme};
use crate::claims::numeric_date;
use crate::principal::Claims;
use crate::revocation::{Kind, Revocation};

/// The who-keys of an answer: one per kind it names, under its issuer.
pub(crate) type WhoKeys = [Option<Key>; 4];

/// The index and the cut-offs of one engine.
pub(crate) struct Who {
    /// Filed under this issuer when an answer names none.
    default_issuer: Box<str>,
    /// By the first eight bytes of a who-key: a collision only evicts an
    /// answer more, which is reloaded.
    index: Mutex<HashMap<u64, Filed>>,
    cutoffs: Mutex<HashMap<Key, Cutoff>>,
    /// Whether any cut-off is held: a miss with none pays one load.
    any_cutoff: AtomicBool,
    max_cutoffs: u64,
    retention_secs: i64,
}

/// The cache keys filed under one who-key: mostly one (a subject's or a
/// session's token), many for a busy client.
enum Filed {
    One(Key),
    Many(Vec<Key>),
}

fn short(who: &Key) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&who[..8]);
    u64::from_ne_bytes(bytes)
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
        Kind::ALL.map(|kind| {
            let value = value(claims, kind)?;
            // Addresses are compared in lower case (see `Revocation::email`).
            Some(
                if kind == Kind::Email && value.bytes().any(|b| b.is_ascii_uppercase()) {
                    keys.who(kind as u8, issuer, &value.to_ascii_lowercase())
                } else {
                    keys.who(kind as u8, issuer, value)
                },
            )
        })
    }

    /// Files the answer under `key` by who it names.
    pub(crate) fn insert(&self, who: &WhoKeys, key: Key) {
        let mut index = lock(&self.index);
        for who in who.iter().flatten() {
            match index.entry(short(who)) {
                Entry::Vacant(vacant) => {
                    vacant.insert(Filed::One(key));
                }
                Entry::Occupied(mut occupied) => match occupied.get_mut() {
                    Filed::One(one) if *one == key => {}
                    Filed::One(one) => {
                        let one = *one;
                        occupied.insert(Filed::Many(vec![one, key]));
                    }
                    Filed::Many(many) if many.contains(&key) => {}
                    Filed::Many(many) => many.push(key),
                },
            }
        }
    }

    /// Takes the answer under `key` out of the index (it left the cache).
    pub(crate) fn remove(&self, who: &WhoKeys, key: &Key) {
        let mut index = lock(&self.index);
        for who in who.iter().flatten() {
            let Entry::Occupied(mut occupied) = index.entry(short(who)) else {
                continue;
            };
            match occupied.get_mut() {
                Filed::One(one) if one == key => {
                    occupied.remove();
                }
                Filed::One(_) => {}
                Filed::Many(many) => {
                    many.retain(|held| held != key);
                    match many.as_slice() {
                        [] => {
                            occupied.remove();
                        }
                        &[one] => {
                            occupied.insert(Filed::One(one));
                        }
                        _ => many.shrink_to(many.len() * 2),
                    }
                }
            }
        }
    }

    /// Whether any cut-off is held (a miss with none hashes nothing).
    pub(crate) fn any_cutoff(&self) -> bool {
        self.any_cutoff.load(Ordering::Acquire)
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

    /// Records the cut-off `at` (Unix seconds, the event's time) for `who`
    /// at `now`. False when full. An event older than the retention needs
    /// none: every token issued before it has expired (see the retention's
    /// docs).
    pub(crate) fn cut_off(&self, who: &[Key], at: i64, now: i64) -> bool {
        let forget_at = at.saturating_add(self.retention_secs);
        if forget_at <= now {
            return true;
        }
        let mut cutoffs = lock(&self.cutoffs);
        let capacity = usize::try_from(self.max_cutoffs).unwrap_or(usize::MAX);
        let new = who.iter().filter(|who| !cutoffs.contains_key(*who)).count();
        if cutoffs.len().saturating_add(new) > capacity {
            cutoffs.retain(|_, cutoff| cutoff.forget_at > now);
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
        let mut keys = Vec::new();
        for filed in who.iter().filter_map(|who| index.remove(&short(who))) {
            match filed {
                Filed::One(one) => keys.push(one),
                Filed::Many(many) => keys.extend(many),
            }
        }
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
        Kind::Email => claims.extra.as_ref()?.get("email")?.as_str(),
    }
}

/// OpenID Connect's `auth_time`: when the user logged in.
fn auth_time(claims: &Claims) -> Option<i64> {
    numeric_date(claims.extra.as_ref()?.get("auth_time"))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Principal;

    fn claims(json: &str) -> std::sync::Arc<Claims> {
        Principal::from_json(json.as_bytes()).unwrap().into_shared()
    }

    #[test]
    fn a_who_key_files_one_answer_then_many_and_forgets_them_one_by_one() {
        let who = Who::new(Some("https://as"), 10, Duration::from_secs(60));
        let keys = KeyScheme::new("e", "c");
        let app = |sub: &str| claims(&format!(r#"{{"active":true,"sub":"{sub}","client_id":"app"}}"#));
        let (a, b, c) = (app("a"), app("b"), app("c"));
        let filed: Vec<(WhoKeys, Key)> = [&a, &b, &c]
            .iter()
            .zip([[1u8; 16], [2; 16], [3; 16]])
            .map(|(claims, key)| (who.keys_of(&keys, claims), key))
            .collect();
        for (who_keys, key) in &filed {
            who.insert(who_keys, *key);
            who.insert(who_keys, *key);
        }
        assert_eq!(who.sizes().1, 4, "three subjects and one client");
        who.remove(&filed[0].0, &filed[0].1);
        who.remove(&filed[1].0, &filed[1].1);
        assert_eq!(who.sizes().1, 2, "one subject and the client, back to one answer");
        let client = who.matching(&keys, &Revocation::client("https://as", "app"));
        assert_eq!(who.take(&client), vec![[3; 16]]);
        who.remove(&filed[2].0, &filed[2].1);
        assert_eq!(who.sizes().1, 0);

        for (who_keys, key) in &filed {
            who.insert(who_keys, *key);
        }
        assert_eq!(who.take(&client), vec![[1; 16], [2; 16], [3; 16]], "each once");
        let subject = who.matching(&keys, &Revocation::subject("https://as", "b"));
        assert_eq!(who.take(&subject), vec![[2; 16]]);
        let elsewhere = who.matching(&keys, &Revocation::subject("https://other", "a"));
        assert_eq!(
            who.take(&elsewhere),
            Vec::<Key>::new(),
            "another issuer's subject"
        );
    }

    #[test]
    fn cutoffs_refuse_what_was_issued_up_to_them_and_no_later() {
        let who = Who::new(None, 3, Duration::from_secs(60));
        let keys = KeyScheme::new("e", "c");
        let s1 = Revocation::session("https://as", "s1");
        let s2 = Revocation::session("https://as", "s2");
        assert!(who.cut_off(&who.matching(&keys, &s1), 1000, 1000));
        assert_eq!(who.sizes().0, 2, "the issuer's, and no issuer's");
        let at = |iat: &str| claims(&format!(r#"{{"active":true,"sid":"s1"{iat}}}"#));
        for (claims, refused) in [
            (at(r#","iat":999"#), true),
            (at(r#","iat":1000"#), true),
            (at(r#","iat":1001"#), false),
            (at(""), true),
            (at(r#","iat":1001,"auth_time":1000"#), true),
            (at(r#","iat":999,"auth_time":1001"#), false),
            (at(r#","iat":1001,"auth_time":999.5"#), true),
        ] {
            let keys_of = who.keys_of(&keys, &claims);
            let iat = claims.issued_at.get();
            assert_eq!(who.refuses(&claims, &keys_of, 1000), refused, "{iat:?}");
            assert!(
                !who.refuses(&claims, &keys_of, 1060),
                "forgotten after the retention"
            );
        }
        let other = claims(r#"{"active":true,"sid":"s2","iat":1}"#);
        assert!(!who.refuses(&other, &who.keys_of(&keys, &other), 1000));
        assert!(who.cut_off(&who.matching(&keys, &s1), 1010, 1010), "no new slot");
        let later = at(r#","iat":1005"#);
        let later_keys = who.keys_of(&keys, &later);
        assert!(
            who.refuses(&later, &later_keys, 1065),
            "moved on to the later event"
        );
        assert!(!who.cut_off(&who.matching(&keys, &s2), 1010, 1010), "full");
        assert!(
            !who.cut_off(&who.matching(&keys, &s2), 1010, 1069),
            "an event from before the others expire: still full"
        );
        assert!(
            who.cut_off(&who.matching(&keys, &s2), 1010, 1071),
            "the expired are purged, whenever the event"
        );
        assert!(
            who.cut_off(&who.matching(&keys, &s2), 900, 1071),
            "an event older than the retention needs no slot"
        );
    }
}
