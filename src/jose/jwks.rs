//! Keys fetched from a JWK Set URL: fetched on first use, fetched again when
//! a token names an unknown `kid` — one fetch at a time, shared by every
//! caller, and at most one per refresh interval — within the crate's HTTP
//! rules (TLS, no redirects, a size cap, timeouts).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt as _, Shared};

use super::keys::{JwkSet, PublicKey};
use crate::fetch::{read_capped, AsFault, HttpSettings};

/// The default shortest time between two JWKS fetches.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The default longest time a fetched key set is used before it is fetched
/// again, so that a key the AS withdrew (say, because it leaked) stops being
/// trusted even when no token names a new `kid`.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(600);

/// While no key set was ever fetched, the shortest time between two tries
/// (capped by the refresh interval).
const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);

pub(crate) type KeySet = Arc<[PublicKey]>;
type SharedFetch = Shared<BoxFuture<'static, Result<KeySet, AsFault>>>;

/// A JWK Set URL and what was last fetched from it.
pub(crate) struct Jwks {
    url: url::Url,
    http: HttpSettings,
    interval: Duration,
    max_age: Duration,
    state: Mutex<State>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct State {
    keys: Option<KeySet>,
    /// When `keys` were fetched.
    fetched_at: Option<Instant>,
    /// When the last fetch started, successful or not.
    last_attempt: Option<Instant>,
    last_error: Option<AsFault>,
    /// The fetch under way, and when it started.
    in_flight: Option<(SharedFetch, Instant)>,
}

/// What a refresh came to.
pub(crate) enum Refresh {
    /// A new key set, from a fetch that started at this instant (perhaps
    /// before this caller asked: concurrent callers share one fetch).
    Fetched(KeySet, Instant),
    /// Too soon after the last fetch; the current keys, if any.
    TooSoon(Option<KeySet>),
    /// The fetch failed; the current keys, if any.
    Failed(AsFault, Option<KeySet>),
}

impl Jwks {
    pub(crate) fn new(url: url::Url, http: HttpSettings, interval: Duration, max_age: Duration) -> Self {
        Self {
            url,
            http,
            interval,
            max_age,
            state: Mutex::new(State::default()),
            fetches: AtomicU64::new(0),
        }
    }

    pub(crate) fn url(&self) -> &url::Url {
        &self.url
    }

    /// How many fetches were started.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update is one assignment: a poisoned state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys fetched last, unless they are older than the maximum age
    /// (then a refresh is due).
    pub(crate) fn current(&self) -> Option<KeySet> {
        let state = self.lock();
        match state.fetched_at {
            Some(at) if at.elapsed() < self.max_age => state.keys.clone(),
            _ => None,
        }
    }

    /// The keys fetched last, while a failed refresh keeps newer ones out of
    /// reach: usable up to twice the maximum age, then no more.
    fn last_good(&self, state: &State) -> Option<KeySet> {
        match state.fetched_at {
            Some(at) if at.elapsed() < self.max_age.saturating_mul(2) => state.keys.clone(),
            _ => None,
        }
    }

    /// Fetches the key set again, unless a fetch started less than the
    /// refresh interval ago (then the current keys are the answer).
    /// Concurrent callers share one fetch.
    pub(crate) async fn refresh(&self) -> Refresh {
        let (fetch, started) = {
            let mut state = self.lock();
            match &state.in_flight {
                Some((fetch, started)) => (fetch.clone(), *started),
                None => {
                    let gap = match state.keys {
                        Some(_) => self.interval,
                        None => self.interval.min(FIRST_FETCH_RETRY),
                    };
                    if let Some(last) = state.last_attempt {
                        if last.elapsed() < gap {
                            // While the last fetch failed, newer keys are out
                            // of reach: that is an outage, not the token's fault.
                            let keys = self.last_good(&state);
                            return match &state.last_error {
                                Some(fault) => Refresh::Failed(fault.clone(), keys),
                                None => Refresh::TooSoon(keys),
                            };
                        }
                    }
                    let started = Instant::now();
                    state.last_attempt = Some(started);
                    self.fetches.fetch_add(1, Ordering::Relaxed);
                    let fetch = fetch(self.url.clone(), self.http.clone()).boxed().shared();
                    state.in_flight = Some((fetch.clone(), started));
                    (fetch, started)
                }
            }
        };
        let result = fetch.clone().await;
        let mut state = self.lock();
        if state.in_flight.as_ref().is_some_and(|(f, _)| f.ptr_eq(&fetch)) {
            state.in_flight = None;
            match &result {
                Ok(keys) => {
                    state.keys = Some(keys.clone());
                    state.fetched_at = Some(Instant::now());
                    state.last_error = None;
                }
                Err(fault) => {
                    tracing::warn!(
                        url = self.url.as_str(),
                        reason = fault.reason(),
                        "could not fetch the JWK Set"
                    );
                    state.last_error = Some(fault.clone());
                }
            }
        }
        match result {
            Ok(keys) => Refresh::Fetched(keys, started),
            Err(fault) => Refresh::Failed(fault, self.last_good(&state)),
        }
    }
}

/// One GET of the key set.
async fn fetch(url: url::Url, http: HttpSettings) -> Result<KeySet, AsFault> {
    let response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| AsFault::transport("JWKS endpoint", &e))?;
    if response.url() != &url {
        return Err(AsFault::Unusable(
            "the JWKS answer came from another URL (redirect)".into(),
        ));
    }
    let status = response.status();
    if !status.is_success() {
        return Err(AsFault::from_status("JWKS endpoint", status));
    }
    let body = read_capped(response, http.max_body).await?;
    let set: JwkSet = serde_json::from_slice(&body).map_err(|_| {
        AsFault::Unusable("the JWKS endpoint answered something that is not a JWK Set".into())
    })?;
    let keys = set
        .public_keys()
        .map_err(|reason| AsFault::Unusable(format!("the JWK Set holds {reason}")))?;
    Ok(keys.into())
}
