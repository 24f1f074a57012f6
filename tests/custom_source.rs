//! A token source of the user's own, written with the public API only:
//! opaque session tokens looked up in a "session store" (a map behind a
//! lock, which counts its lookups and can be made slow or unavailable).
//! Behind the layer, over real TCP, it gets what introspected tokens get:
//! the cache, single flight, the negative cache, stale-if-error, RFC 6750
//! answers and, with `shared_cache`, the fleet tier in a real Redis
//! (ignored by default, as in `tests/fleet.rs`; `.ci/run` runs them with
//! `--ignored` against its `redis-server`) or in memory (`MemoryStore`:
//! the same fleet logic, no server).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tower_introspection::source::{CachedSource, CachedSourceBuilder, LoadError, LoadToken};
use tower_introspection::{IntrospectionLayer, Principal};

/// The session store: token → principal JSON.
#[derive(Clone, Default)]
struct Sessions {
    inner: Arc<Store>,
}

#[derive(Default)]
struct Store {
    sessions: Mutex<HashMap<String, String>>,
    lookups: AtomicU64,
    down: AtomicBool,
    slow: AtomicBool,
}

impl Sessions {
    fn open(&self, token: &str, subject: &str) {
        let json = format!(r#"{{"active":true,"sub":"{subject}","scope":"read","exp":4102444800}}"#);
        self.inner.sessions.lock().unwrap().insert(token.to_owned(), json);
    }

    fn close(&self, token: &str) {
        self.inner.sessions.lock().unwrap().remove(token);
    }

    fn lookups(&self) -> u64 {
        self.inner.lookups.load(Ordering::SeqCst)
    }
}

impl LoadToken for Sessions {
    async fn load(&self, token: &str) -> Result<Principal, LoadError> {
        self.inner.lookups.fetch_add(1, Ordering::SeqCst);
        // A store that takes its time, so concurrent requests overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if self.inner.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if self.inner.down.load(Ordering::SeqCst) {
            return Err(LoadError::unavailable("the session store is unavailable"));
        }
        let json = self.inner.sessions.lock().unwrap().get(token).cloned();
        match json {
            Some(json) => Principal::from_json(json.as_bytes())
                .map_err(|_| LoadError::unusable("the session store holds something unreadable")),
            None => Err(LoadError::invalid("the session is unknown")),
        }
    }
}

/// `/whoami` behind the layer, served on a loopback port.
async fn serve(source: CachedSource<Sessions>) -> String {
    let app = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        .route_layer(IntrospectionLayer::new(source));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/whoami")
}

async fn get_with(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The JSON body's `error_description` (a 503 carries no challenge).
async fn description(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error_description"].as_str().unwrap().to_owned()
}

fn builder(sessions: &Sessions) -> CachedSourceBuilder<Sessions> {
    CachedSource::builder(sessions.clone()).name("sessions")
}

#[tokio::test]
async fn a_valid_session_reaches_the_handler_and_is_looked_up_once() {
    let sessions = Sessions::default();
    sessions.open("s-alice", "alice");
    let source = builder(&sessions).build().unwrap();
    let url = serve(source.clone()).await;
    for _ in 0..3 {
        let response = get_with(&url, "s-alice").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "alice");
    }
    assert_eq!(sessions.lookups(), 1, "answered from the cache after the first");
    let stats = source.stats();
    assert_eq!((stats.hits, stats.misses), (2, 1), "{stats:?}");
}

#[tokio::test]
async fn an_unknown_session_is_401_with_the_sources_words_and_remembered() {
    let sessions = Sessions::default();
    let source = builder(&sessions).build().unwrap();
    let url = serve(source.clone()).await;
    let response = get_with(&url, "s-mallory").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="api", error="invalid_token", error_description="the session is unknown""#
    );
    // The negative cache remembers the refusal, not its words.
    for _ in 0..2 {
        let response = get_with(&url, "s-mallory").await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            challenge(&response),
            r#"Bearer realm="api", error="invalid_token", error_description="the token was refused""#
        );
    }
    assert_eq!(sessions.lookups(), 1, "the refusal is remembered");
    assert_eq!(source.stats().negative_hits, 2);
}

#[tokio::test]
async fn concurrent_requests_for_one_session_share_one_lookup() {
    let sessions = Sessions::default();
    sessions.open("s-alice", "alice");
    let url = serve(builder(&sessions).build().unwrap()).await;
    let requests = (0..20).map(|_| get_with(&url, "s-alice"));
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sessions.lookups(), 1);
}

#[tokio::test]
async fn an_invalidated_session_is_looked_up_again() {
    let sessions = Sessions::default();
    sessions.open("s-alice", "alice");
    let source = builder(&sessions).build().unwrap();
    let url = serve(source.clone()).await;
    assert_eq!(get_with(&url, "s-alice").await.status(), 200);
    sessions.close("s-alice");
    assert_eq!(get_with(&url, "s-alice").await.status(), 200, "still cached");
    source.invalidate("s-alice").await;
    assert_eq!(get_with(&url, "s-alice").await.status(), 401);
    assert_eq!(sessions.lookups(), 2);
}

#[tokio::test]
async fn an_unavailable_store_is_503_and_a_stale_answer_covers_it_when_allowed() {
    let sessions = Sessions::default();
    sessions.open("s-alice", "alice");
    let strict = builder(&sessions).build().unwrap();
    let url = serve(strict).await;
    sessions.inner.down.store(true, Ordering::SeqCst);
    let response = get_with(&url, "s-alice").await;
    assert_eq!(response.status(), 503);
    assert_eq!(description(response).await, "the session store is unavailable");
    sessions.inner.down.store(false, Ordering::SeqCst);

    let lenient = builder(&sessions)
        .max_ttl(Duration::from_millis(200))
        .stale_if_error(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = serve(lenient.clone()).await;
    assert_eq!(get_with(&url, "s-alice").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sessions.inner.down.store(true, Ordering::SeqCst);
    assert_eq!(get_with(&url, "s-alice").await.status(), 200, "the stale answer");
    assert_eq!(lenient.stats().stale_served, 1);
}

#[tokio::test]
async fn a_store_slower_than_the_timeout_is_503() {
    let sessions = Sessions::default();
    sessions.inner.slow.store(true, Ordering::SeqCst);
    let source = builder(&sessions)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = serve(source).await;
    let response = get_with(&url, "s-alice").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        description(response).await,
        "the token source did not answer in time"
    );
}

#[tokio::test]
async fn the_claim_checks_apply_to_the_sources_answers() {
    let sessions = Sessions::default();
    sessions.open("s-alice", "alice");
    let source = builder(&sessions)
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let url = serve(source).await;
    let response = get_with(&url, "s-alice").await;
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).contains("the token has no audience (aud)"));
}

#[tokio::test]
async fn settings_out_of_range_are_refused() {
    let sessions = Sessions::default();
    assert!(builder(&sessions).timeout(Duration::ZERO).build().is_err());
    assert!(builder(&sessions)
        .timeout(Duration::from_secs(7200))
        .build()
        .is_err());
    assert!(builder(&sessions)
        .max_ttl(Duration::from_secs(60))
        .stale_if_error(Duration::from_secs(30))
        .build()
        .is_err());
}

/// Two replicas of one source share one Redis: one lookup for the fleet,
/// and an invalidation on one reaches the other.
#[cfg(feature = "redis")]
mod fleet {
    use super::*;
    use tower_introspection::fleet::SharedCache;

    const SECRET: &str = "the fleet secret: 32 bytes or more, never logged";

    fn redis_url() -> String {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return url;
        }
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/.run/redis/env");
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("export REDIS_URL="))
            .map(str::to_owned)
            .expect("redis-server is not running: start it with `eval \"$(tests/interop/redis.sh start)\"`")
    }

    fn prefix() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("custom-source-test-{nanos}:")
    }

    async fn replica(sessions: &Sessions, prefix: &str) -> (CachedSource<Sessions>, String) {
        let shared = SharedCache::builder(redis_url(), SECRET)
            .key_prefix(prefix)
            .build()
            .unwrap();
        let source = builder(sessions).shared_cache(shared).build().unwrap();
        let url = serve(source.clone()).await;
        (source, url)
    }

    #[tokio::test]
    #[ignore = "needs redis-server: see tests/fleet.rs"]
    async fn two_replicas_share_one_lookup_and_one_invalidation() {
        let sessions = Sessions::default();
        sessions.open("s-alice", "alice");
        let prefix = prefix();
        let (a, url_a) = replica(&sessions, &prefix).await;
        let (b, url_b) = replica(&sessions, &prefix).await;
        assert_eq!(get_with(&url_a, "s-alice").await.status(), 200);
        assert_eq!(get_with(&url_b, "s-alice").await.status(), 200);
        assert_eq!(sessions.lookups(), 1, "replica b read replica a's answer");
        assert_eq!(b.stats().shared.hits, 1);

        sessions.close("s-alice");
        a.invalidate("s-alice").await;
        // The notice reaches b within a moment.
        let mut status = 200;
        for _ in 0..50 {
            status = get_with(&url_b, "s-alice").await.status().as_u16();
            if status == 401 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, 401, "the invalidation reached replica b");
    }

    #[tokio::test]
    #[ignore = "needs redis-server: see tests/fleet.rs"]
    async fn a_refusal_is_shared_too() {
        let sessions = Sessions::default();
        let prefix = prefix();
        let (_a, url_a) = replica(&sessions, &prefix).await;
        let (_b, url_b) = replica(&sessions, &prefix).await;
        assert_eq!(get_with(&url_a, "s-mallory").await.status(), 401);
        assert_eq!(get_with(&url_b, "s-mallory").await.status(), 401);
        assert_eq!(sessions.lookups(), 1);
    }
}

/// The same fleet, its store in memory: replicas in one process sharing a
/// `MemoryStore`.
#[cfg(feature = "redis")]
mod memory_fleet {
    use super::*;
    use tower_introspection::fleet::{MemoryStore, SharedCache};

    const SECRET: &str = "the fleet secret: 32 bytes or more, never logged";

    async fn replica(sessions: &Sessions, store: &MemoryStore) -> (CachedSource<Sessions>, String) {
        let shared = SharedCache::in_memory(store, SECRET).build().unwrap();
        let source = builder(sessions).shared_cache(shared).build().unwrap();
        let url = serve(source.clone()).await;
        (source, url)
    }

    #[tokio::test]
    async fn two_replicas_share_one_lookup_and_one_invalidation() {
        let sessions = Sessions::default();
        sessions.open("s-alice", "alice");
        let store = MemoryStore::new();
        let (a, url_a) = replica(&sessions, &store).await;
        let (b, url_b) = replica(&sessions, &store).await;
        assert_eq!(get_with(&url_a, "s-alice").await.status(), 200);
        assert_eq!(get_with(&url_b, "s-alice").await.status(), 200);
        assert_eq!(sessions.lookups(), 1, "replica b read replica a's answer");
        assert_eq!(b.stats().shared.hits, 1);
        assert!(!store.is_empty(), "the sealed answer is in the store");

        sessions.close("s-alice");
        a.invalidate("s-alice").await;
        let mut status = 200;
        for _ in 0..50 {
            status = get_with(&url_b, "s-alice").await.status().as_u16();
            if status == 401 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, 401, "the invalidation reached replica b");
    }

    #[tokio::test]
    async fn concurrent_misses_on_two_replicas_make_one_lookup() {
        let sessions = Sessions::default();
        sessions.open("s-alice", "alice");
        let store = MemoryStore::new();
        let (_a, url_a) = replica(&sessions, &store).await;
        let (_b, url_b) = replica(&sessions, &store).await;
        let requests = (0..10).flat_map(|_| [get_with(&url_a, "s-alice"), get_with(&url_b, "s-alice")]);
        for response in futures_util::future::join_all(requests).await {
            assert_eq!(response.status(), 200);
        }
        assert_eq!(sessions.lookups(), 1, "one lookup for the fleet");
    }

    /// A store that stops answering drops no connection (a paused or
    /// partitioned Redis): notices sent meanwhile are lost, so a replica
    /// that saw its store fail drops its in-process cache once the store
    /// answers again.
    #[tokio::test]
    async fn an_invalidation_lost_in_an_outage_is_made_good_when_the_store_is_back() {
        let sessions = Sessions::default();
        sessions.open("s-alice", "alice");
        let store = MemoryStore::new();
        let (a, _) = replica(&sessions, &store).await;
        let (_b, url_b) = replica(&sessions, &store).await;
        assert_eq!(get_with(&url_b, "s-alice").await.status(), 200);

        store.set_available(false);
        sessions.close("s-alice");
        a.invalidate("s-alice").await;
        // Replica b's listener checks its store once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        store.set_available(true);
        let mut status = 200;
        for _ in 0..40 {
            status = get_with(&url_b, "s-alice").await.status().as_u16();
            if status == 401 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            status, 401,
            "replica b dropped what it held once the store was back"
        );
    }

    #[tokio::test]
    async fn a_store_that_is_down_costs_lookups_never_answers() {
        let sessions = Sessions::default();
        sessions.open("s-alice", "alice");
        let store = MemoryStore::new();
        store.set_available(false);
        let (a, url_a) = replica(&sessions, &store).await;
        let (_b, url_b) = replica(&sessions, &store).await;
        assert_eq!(get_with(&url_a, "s-alice").await.status(), 200);
        assert_eq!(get_with(&url_b, "s-alice").await.status(), 200);
        assert_eq!(sessions.lookups(), 2, "each replica asked the source itself");
        assert!(a.stats().shared.errors > 0, "{:?}", a.stats().shared);
    }
}
