//! What the revocation event receivers (back-channel logout, Shared
//! Signals push) share: the checks of who sent an event token, to whom and
//! when; reading the body; the answers; the replay memory; the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::{Map, Value};

use crate::claims::numeric_date;
use crate::error::ConfigError;
use crate::jwt::JwtVerifier;
use crate::revocation::EventStats;

/// The largest request body read: an event token is a few kilobytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Event ids (`jti`) remembered against replay, at most.
const MAX_JTIS: u64 = 100_000;

/// The longest `max_age` a receiver accepts.
const MAX_AGE_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// The largest `leeway` a receiver accepts.
const LEEWAY_LIMIT: Duration = Duration::from_secs(300);

/// Who may send a receiver event tokens, to whom, and how old they may be.
pub(crate) struct Envelope {
    pub(crate) issuer: Box<str>,
    pub(crate) audiences: Box<[Box<str>]>,
    max_age_secs: i64,
    leeway_secs: i64,
    /// How long an event id is remembered against replay: as long as its
    /// token can be accepted.
    pub(crate) replay_life: Duration,
}

/// Why an envelope was refused; each receiver words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misfit {
    Issuer,
    Audience,
    NoIssuedAt,
    IssuedAt,
    Expired,
}

impl Envelope {
    /// Checks a receiver's settings; `what` names the issuer's and the
    /// audience's absence in the errors.
    pub(crate) fn new(
        keys: &JwtVerifier,
        audiences: Vec<Box<str>>,
        max_age: Duration,
        leeway: Duration,
        no_issuer: &'static str,
        no_audience: &'static str,
    ) -> Result<Self, ConfigError> {
        let Some(issuer) = keys.issuer().map(Box::<str>::from) else {
            return Err(ConfigError::InvalidSetting(no_issuer));
        };
        if audiences.is_empty() {
            return Err(ConfigError::InvalidSetting(no_audience));
        }
        if max_age.is_zero() || max_age > MAX_AGE_LIMIT {
            return Err(ConfigError::OutOfRange {
                setting: "max_age",
                range: "more than zero, at most one day",
            });
        }
        if leeway > LEEWAY_LIMIT {
            return Err(ConfigError::OutOfRange {
                setting: "leeway",
                range: "at most five minutes",
            });
        }
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(Self {
            issuer,
            audiences: audiences.into(),
            max_age_secs: secs(max_age),
            leeway_secs: secs(leeway),
            replay_life: max_age + 2 * leeway,
        })
    }

    /// `iss` is the issuer, `aud` names an audience, `iat` is within
    /// `max_age` (and not ahead), `exp` where present has not passed, all
    /// at `now` with the leeway: the token's `iat`.
    pub(crate) fn check(&self, claims: &Map<String, Value>, now: i64) -> Result<i64, Misfit> {
        if text(claims, "iss") != Some(&*self.issuer) {
            return Err(Misfit::Issuer);
        }
        let named = |aud: &str| self.audiences.iter().any(|audience| **audience == *aud);
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => named(aud),
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(named),
            _ => false,
        };
        if !audience_ok {
            return Err(Misfit::Audience);
        }
        let Ok(Some(iat)) = numeric_date(claims.get("iat")) else {
            return Err(Misfit::NoIssuedAt);
        };
        let oldest = now
            .saturating_sub(self.max_age_secs)
            .saturating_sub(self.leeway_secs);
        if iat > now.saturating_add(self.leeway_secs) || iat < oldest {
            return Err(Misfit::IssuedAt);
        }
        // Present, it must be a NumericDate not yet past.
        if claims.contains_key("exp") {
            let exp = numeric_date(claims.get("exp")).ok().flatten();
            if exp.is_none_or(|exp| exp <= now.saturating_sub(self.leeway_secs)) {
                return Err(Misfit::Expired);
            }
        }
        Ok(iat)
    }
}

/// A refused event: its status, the error code it is counted under, and
/// the JSON body in the receiver's own format.
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) description: &'static str,
    pub(crate) body: Value,
}

/// The answer to one event, counted: `accepted` with the evictions, or the
/// refusal (a 401 names the `Bearer` scheme, RFC 7235).
pub(crate) fn respond(
    counters: &EventCounters,
    outcome: Result<u64, Refusal>,
    accepted: StatusCode,
) -> Response<Full<Bytes>> {
    match outcome {
        Ok(evicted) => {
            counters.accepted(evicted);
            tracing::info!(evicted, "event accepted");
            answer(accepted, None)
        }
        Err(refusal) => {
            counters.refused(refusal.code);
            // Anyone can send one: not worth more than debug.
            tracing::debug!(
                error = refusal.code,
                reason = refusal.description,
                "event refused"
            );
            let mut response = answer(refusal.status, Some(refusal.body));
            if refusal.status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// A claim's string value.
pub(crate) fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name)?.as_str()
}

/// Reads a request body up to [`MAX_BODY`]; `None` when it cannot be read
/// or is larger.
pub(crate) async fn read_body<B>(body: B) -> Option<Bytes>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Some(Limited::new(body, MAX_BODY).collect().await.ok()?.to_bytes())
}

/// An answer that no cache keeps; `json` as its body when given.
pub(crate) fn answer(status: StatusCode, json: Option<serde_json::Value>) -> Response<Full<Bytes>> {
    let body = json.map_or_else(Bytes::new, |json| Bytes::from(json.to_string()));
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status.is_client_error() || status.is_server_error() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// The ids of the events carried out, as SHA-256 digests (bounded,
/// whatever the ids), until they are too old to be accepted anyway.
pub(crate) struct Seen {
    digests: moka::future::Cache<[u8; 32], ()>,
}

impl Seen {
    pub(crate) fn new(life: Duration) -> Self {
        Self {
            digests: moka::future::Cache::builder()
                .max_capacity(MAX_JTIS)
                .time_to_live(life)
                .build(),
        }
    }

    pub(crate) fn digest(jti: &str) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, jti.as_bytes()).as_ref());
        digest
    }

    pub(crate) fn contains(&self, digest: &[u8; 32]) -> bool {
        self.digests.contains_key(digest)
    }

    pub(crate) async fn insert(&self, digest: [u8; 32]) {
        self.digests.insert(digest, ()).await;
    }
}

/// The first bytes of an event id's digest in hex: enough to follow one
/// event through the logs, nothing of the id itself.
pub(crate) fn digest_prefix(digest: &[u8; 32]) -> String {
    digest[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The counters of one receiver (`name` labels its metrics).
pub(crate) struct EventCounters {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    name: &'static str,
    received: AtomicU64,
    accepted: AtomicU64,
    evicted: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

impl EventCounters {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            received: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        crate::stats::export!(metrics::counter!("tower_introspection_revocation_events_total", "receiver" => self.name, "outcome" => "received").increment(1));
    }

    pub(crate) fn accepted(&self, evicted: u64) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.evicted(evicted);
        crate::stats::export!(metrics::counter!("tower_introspection_revocation_events_total", "receiver" => self.name, "outcome" => "accepted").increment(1));
    }

    /// Cached answers evicted (also by an event that was then refused, as
    /// when the cut-offs were full).
    pub(crate) fn evicted(&self, evicted: u64) {
        self.evicted.fetch_add(evicted, Ordering::Relaxed);
        crate::stats::export!(
            metrics::counter!("tower_introspection_revocation_evictions_total", "receiver" => self.name)
                .increment(evicted)
        );
    }

    /// One event refused, with `reason` (the answer's error code).
    pub(crate) fn refused(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(reason)
            .or_default() += 1;
        crate::stats::export!(metrics::counter!("tower_introspection_revocation_events_total", "receiver" => self.name, "outcome" => reason).increment(1));
    }

    pub(crate) fn snapshot(&self) -> EventStats {
        let refused_by = self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        EventStats {
            received: self.received.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: refused_by.values().sum(),
            refused_by,
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }
}
