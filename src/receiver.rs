//! What the revocation event receivers (back-channel logout, Shared
//! Signals push) share: reading the body, the answer's headers, the replay
//! memory, and the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, Limited};

/// The largest request body read: an event token is a few kilobytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Event ids (`jti`) remembered against replay, at most.
const MAX_JTIS: u64 = 100_000;

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

/// Counters of a revocation event receiver
/// ([`BackChannelLogout`](crate::logout::BackChannelLogout),
/// [`SharedSignals`](crate::ssf::SharedSignals)). With the `metrics`
/// feature they are also exported:
/// `tower_introspection_revocation_events_total` (labels `receiver`, and
/// `outcome`: `received`, `accepted` or the refusal's error code) and
/// `tower_introspection_revocation_evictions_total` (label `receiver`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Requests received.
    pub received: u64,
    /// Events accepted (and carried out).
    pub accepted: u64,
    /// Requests refused.
    pub refused: u64,
    /// Refusals by the error code answered (`invalid_request`,
    /// `invalid_key`, ...).
    pub refused_by: BTreeMap<&'static str, u64>,
    /// Cached answers evicted.
    pub evicted: u64,
}

impl EventStats {
    /// Refusals answered with `error`.
    pub fn refused_with(&self, error: &str) -> u64 {
        self.refused_by.get(error).copied().unwrap_or(0)
    }
}
