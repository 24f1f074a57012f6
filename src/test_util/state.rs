//! The server's shared state: registrations, tokens, answer controls and
//! counters. The `Mutex` is never held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::keys::KeySet;
use super::random::{random_id, random_token};
use super::spec::{
    AnswerShape, AuthFailure, ClientSpec, ExpSpec, Fault, RecordedRequest, SignedAnswerFault, TokenSpec,
};

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now, in Unix microseconds.
pub(crate) fn unix_now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Everything the handlers and the handles share.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    state: Mutex<State>,
    /// The signing keys, apart from `state`: replaced whole by a rotation,
    /// read by minting and the JWKS endpoint.
    keys: Mutex<Arc<KeySet>>,
    pub(crate) introspection_calls: AtomicUsize,
    pub(crate) token_calls: AtomicUsize,
    pub(crate) revocation_calls: AtomicUsize,
    pub(crate) metadata_calls: AtomicUsize,
    pub(crate) jwks_calls: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(base_url: String, keys: KeySet) -> Self {
        Self {
            base_url,
            state: Mutex::new(State::default()),
            keys: Mutex::new(Arc::new(keys)),
            introspection_calls: AtomicUsize::new(0),
            token_calls: AtomicUsize::new(0),
            revocation_calls: AtomicUsize::new(0),
            metadata_calls: AtomicUsize::new(0),
            jwks_calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Locks the state, recovering from poisoning (a panicking test thread
    /// must not take the server down with it).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The signing keys' lock (poisoning recovered as for the state).
    pub(crate) fn keys_lock(&self) -> MutexGuard<'_, Arc<KeySet>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current signing keys.
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys_lock())
    }

    /// The issuer: the one set with `set_issuer`, else the base URL.
    pub(crate) fn issuer(&self, state: &State) -> String {
        state.issuer.clone().unwrap_or_else(|| self.base_url.clone())
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    pub(crate) fn reset_counters(&self) {
        self.introspection_calls.store(0, Ordering::SeqCst);
        self.token_calls.store(0, Ordering::SeqCst);
        self.revocation_calls.store(0, Ordering::SeqCst);
        self.metadata_calls.store(0, Ordering::SeqCst);
        self.jwks_calls.store(0, Ordering::SeqCst);
        self.peak.store(self.in_flight(), Ordering::SeqCst);
        self.lock().last_introspection = None;
    }
}

/// Counts one in-flight introspection handler until dropped (also when the
/// client gives up and the handler future is dropped mid-`Delay`/`Hang`).
pub(crate) struct InFlight(Arc<Shared>);

impl InFlight {
    pub(crate) fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fault armed for the introspection endpoint: forever, or a number of times.
#[derive(Debug, Clone)]
pub(crate) struct ArmedFault {
    pub(crate) fault: Fault,
    pub(crate) remaining: Option<usize>,
}

/// The mutable part of the server.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) issuer: Option<String>,
    pub(crate) clients: HashMap<String, ClientSpec>,
    pub(crate) users: HashMap<String, String>,
    pub(crate) tokens: HashMap<String, TokenRecord>,
    pub(crate) shape: AnswerShape,
    pub(crate) fault: Option<ArmedFault>,
    pub(crate) token_fault: Option<Fault>,
    pub(crate) metadata_failures: usize,
    pub(crate) jwks_fault: Option<Fault>,
    pub(crate) auth_failure: AuthFailure,
    pub(crate) last_introspection: Option<RecordedRequest>,
    /// The `jti` of every client assertion accepted, so none is replayed.
    pub(crate) seen_assertions: HashSet<String>,
    pub(crate) signed_answer_fault: Option<SignedAnswerFault>,
}

impl State {
    /// The fault for this introspection request, consuming one use of a
    /// counted fault.
    pub(crate) fn take_fault(&mut self) -> Option<Fault> {
        let armed = self.fault.as_mut()?;
        match armed.remaining {
            None => Some(armed.fault.clone()),
            Some(0) => {
                self.fault = None;
                None
            }
            Some(n) => {
                let fault = armed.fault.clone();
                if n == 1 {
                    self.fault = None;
                } else {
                    armed.remaining = Some(n - 1);
                }
                Some(fault)
            }
        }
    }

    /// The client with this id if `secret` is its secret.
    pub(crate) fn verify_client(&self, id: &str, secret: Option<&str>) -> Option<&ClientSpec> {
        let client = self.clients.get(id)?;
        (secret? == client.secret).then_some(client)
    }

    /// Stores a token built from `spec` and returns its value.
    pub(crate) fn insert_token(&mut self, spec: TokenSpec, now: i64, issuer: String) -> String {
        let value = spec.value.clone().unwrap_or_else(random_token);
        let record = TokenRecord::from_spec(spec, now, issuer);
        self.tokens.insert(value.clone(), record);
        value
    }

    /// The token if the server considers it active now.
    pub(crate) fn active_token(&self, token: &str, now: i64) -> Option<&TokenRecord> {
        self.tokens.get(token).filter(|t| t.is_active(now))
    }
}

/// A stored token.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub(crate) scope: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) aud: Vec<String>,
    pub(crate) iss: Option<String>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: Option<String>,
    pub(crate) token_type: Option<String>,
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
    pub(crate) omit: Vec<String>,
    pub(crate) raw_answer: Option<serde_json::Value>,
    pub(crate) active_even_if_expired: bool,
    pub(crate) revoked: bool,
}

impl TokenRecord {
    fn from_spec(spec: TokenSpec, now: i64, issuer: String) -> Self {
        let exp = match spec.exp {
            ExpSpec::Default => Some(now.saturating_add(3600)),
            ExpSpec::Never => None,
            ExpSpec::When(when) => Some(when.resolve(now)),
        };
        Self {
            scope: spec.scope,
            sub: spec.sub,
            username: spec.username,
            client_id: spec.client_id,
            aud: spec.aud,
            iss: Some(spec.iss.unwrap_or(issuer)),
            exp,
            nbf: spec.nbf.map(|w| w.resolve(now)),
            iat: Some(spec.iat.unwrap_or(now)),
            jti: Some(spec.jti.unwrap_or_else(random_id)),
            token_type: Some(spec.token_type.unwrap_or_else(|| "Bearer".to_owned())),
            claims: spec.claims,
            omit: spec.omit,
            raw_answer: spec.raw_answer,
            active_even_if_expired: spec.active_even_if_expired,
            revoked: false,
        }
    }

    /// Not revoked, and not expired (`exp <= now`) unless told to ignore it.
    pub(crate) fn is_active(&self, now: i64) -> bool {
        if self.revoked {
            return false;
        }
        match self.exp {
            Some(exp) if exp <= now => self.active_even_if_expired,
            _ => true,
        }
    }

    /// Whether the token's scope contains this scope token.
    pub(crate) fn has_scope(&self, wanted: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|s| s == wanted))
    }
}
