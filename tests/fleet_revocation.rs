//! Revocation across a fleet (feature `redis`): replicas that share a
//! store carry out each other's revocations, and a replica that starts (or
//! comes back) later honours the ones still in force. Every scenario runs
//! on the in-memory store, and, ignored by default, on a real
//! `redis-server` started by the harness (`.ci/run` does it):
//!
//! ```text
//! eval "$(tests/interop/redis.sh start)"
//! cargo test --all-features --test fleet_revocation -- --ignored --test-threads=1
//! tests/interop/redis.sh stop
//! ```

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, Instant};

use tower_introspection::fleet::{MemoryStore, SharedCache};
use tower_introspection::jwt::JwtVerifier;
use tower_introspection::revocation::Revocation;
use tower_introspection::test_util::{JwtSpec, TestAuthServer, TokenSpec, RS_CLIENT_ID, RS_CLIENT_SECRET};
use tower_introspection::{ErrorKind, Introspector, Principal};

const SECRET: &str = "the fleet secret: 32 bytes or more, never logged";
const NEXT_SECRET: &str = "the next fleet secret, rotated in: also 32+ bytes";

/// Where the replicas meet.
#[derive(Clone)]
enum Store {
    Memory(MemoryStore),
    Redis { url: String, prefix: String },
}

impl Store {
    fn redis() -> Self {
        let url = std::env::var("REDIS_URL").ok().or_else(|| {
            let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/.run/redis/env");
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .find_map(|line| line.strip_prefix("export REDIS_URL=").map(str::to_owned))
        });
        let url = url
            .expect("redis-server is not running: start it with `eval \"$(tests/interop/redis.sh start)\"`");
        let mut bytes = [0u8; 6];
        getrandom::getrandom(&mut bytes).unwrap();
        let prefix = format!(
            "test-{}:",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Self::Redis { url, prefix }
    }

    fn shared(&self, secrets: &[&str]) -> SharedCache {
        let (first, previous) = secrets.split_first().unwrap();
        let mut builder = match self {
            Self::Memory(store) => SharedCache::in_memory(store, first),
            Self::Redis { url, prefix } => SharedCache::builder(url.clone(), first).key_prefix(prefix),
        };
        for secret in previous {
            builder = builder.previous_secret(secret);
        }
        builder.build().unwrap()
    }

    /// A replica: an introspector of its own, sharing only the store.
    fn replica_with(&self, auth: &TestAuthServer, secrets: &[&str]) -> Introspector {
        Introspector::builder(auth.introspection_url())
            .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
            .expected_issuer(auth.issuer())
            .shared_cache(self.shared(secrets))
            .cutoff_retention(Duration::from_secs(3600))
            .build()
            .unwrap()
    }

    fn replica(&self, auth: &TestAuthServer) -> Introspector {
        self.replica_with(auth, &[SECRET])
    }

    /// A replica verifying JWTs locally, in the fleet for revocations.
    fn jwt_replica(&self, auth: &TestAuthServer) -> JwtVerifier {
        JwtVerifier::builder()
            .expected_issuer(auth.issuer())
            .jwks_url(auth.jwks_url())
            .expected_audience(API)
            .shared_cache(self.shared(&[SECRET]))
            .build()
            .unwrap()
    }
}

const API: &str = "https://api.example";

/// What the replicas of a test are: introspectors or JWT verifiers.
trait Replica {
    async fn check(&self, token: &str) -> Result<Principal, tower_introspection::AuthError>;
}

impl Replica for Introspector {
    async fn check(&self, token: &str) -> Result<Principal, tower_introspection::AuthError> {
        self.validate(token).await
    }
}

impl Replica for JwtVerifier {
    async fn check(&self, token: &str) -> Result<Principal, tower_introspection::AuthError> {
        self.validate(token).await
    }
}

fn is_revoked(outcome: &Result<tower_introspection::Principal, tower_introspection::AuthError>) -> bool {
    outcome.as_ref().is_err_and(|error| {
        error.kind() == ErrorKind::InvalidToken && error.description() == "the token was revoked"
    })
}

/// Waits (up to two seconds) until `replica` refuses `token` as revoked;
/// how long it took.
async fn until_revoked(replica: &impl Replica, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        let outcome = replica.check(token).await;
        if is_revoked(&outcome) {
            return start.elapsed();
        }
        assert!(outcome.is_ok(), "refused, but not as revoked: {outcome:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the revocation never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets every replica's listener subscribe (its first heartbeat).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn a_revocation_reaches_every_replica(store: Store) {
    let auth = TestAuthServer::start().await.unwrap();
    let replicas: Vec<Introspector> = (0..3).map(|_| store.replica(&auth)).collect();
    settle().await;
    let alice = auth.mint(TokenSpec::new().sub("alice"));
    let bob = auth.mint(TokenSpec::new().sub("bob"));
    for replica in &replicas {
        replica.validate(&alice).await.unwrap();
        replica.validate(&bob).await.unwrap();
    }
    assert_eq!(auth.introspection_calls(), 2, "one call per token for the fleet");

    let revoked = replicas[0]
        .revoke(&Revocation::subject(auth.issuer(), "alice"))
        .await
        .unwrap();
    assert_eq!(revoked.evicted, 1);
    assert!(is_revoked(&replicas[0].validate(&alice).await));
    for replica in &replicas[1..] {
        until_revoked(replica, &alice).await;
        replica.validate(&bob).await.unwrap();
    }
}

async fn a_replica_that_starts_later_refuses_what_was_revoked_before(store: Store) {
    let auth = TestAuthServer::start().await.unwrap();
    let first = store.replica(&auth);
    settle().await;
    let in_session = auth.mint(
        TokenSpec::new()
            .sub("alice")
            .claim("sid", serde_json::json!("s1")),
    );
    let other_session = auth.mint(
        TokenSpec::new()
            .sub("alice")
            .claim("sid", serde_json::json!("s2")),
    );
    first
        .revoke(&Revocation::session(auth.issuer(), "s1"))
        .await
        .unwrap();

    // Built after the event, never told of it by a notice: it reads the
    // stored cut-off before its first load.
    let late = store.replica(&auth);
    assert!(is_revoked(&late.validate(&in_session).await));
    late.validate(&other_session).await.unwrap();
}

/// More revocations than one page of the store's reply: a replica that
/// starts later reads them all.
async fn a_late_replica_reads_every_page_of_stored_revocations(store: Store) {
    let auth = TestAuthServer::start().await.unwrap();
    let first = store.replica(&auth);
    // Issued before every event.
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 1300;
    let in_session = |sid: String| {
        auth.mint(
            TokenSpec::new()
                .sub("alice")
                .iat(issued)
                .claim("sid", serde_json::json!(sid)),
        )
    };
    let (oldest, newest, kept) = (
        in_session("s0".into()),
        in_session("s1200".into()),
        in_session("s1201".into()),
    );
    // Each a second older than the next: a score of its own, so that the
    // pages are read in order, and the oldest come last.
    let now = std::time::SystemTime::now();
    for i in 0..=1200u64 {
        let at = now - Duration::from_secs(1200 - i);
        first
            .revoke(&Revocation::session(auth.issuer(), format!("s{i}")).at(at))
            .await
            .unwrap();
    }
    let late = store.replica(&auth);
    assert!(is_revoked(&late.validate(&oldest).await), "the last page");
    assert!(is_revoked(&late.validate(&newest).await), "the first page");
    late.validate(&kept).await.unwrap();
}

async fn a_revocation_reaches_both_sides_of_a_rotation(store: Store) {
    let auth = TestAuthServer::start().await.unwrap();
    // Step 2 of a rotation: one replica writes under the next secret and
    // still reads the old one; the other is not rotated yet.
    let rotated = store.replica_with(&auth, &[NEXT_SECRET, SECRET]);
    let old = store.replica_with(&auth, &[SECRET]);
    settle().await;
    let token = auth.mint(TokenSpec::new().client_id("app"));
    old.validate(&token).await.unwrap();
    rotated.validate(&token).await.unwrap();
    rotated
        .revoke(&Revocation::client(auth.issuer(), "app"))
        .await
        .unwrap();
    until_revoked(&old, &token).await;
    // And the other way.
    let other = auth.mint(TokenSpec::new().client_id("other-app"));
    rotated.validate(&other).await.unwrap();
    old.revoke(&Revocation::client(auth.issuer(), "other-app"))
        .await
        .unwrap();
    until_revoked(&rotated, &other).await;
}

async fn jwt_replicas_share_revocations_but_not_answers(store: Store) {
    let auth = TestAuthServer::start().await.unwrap();
    let (a, b) = (store.jwt_replica(&auth), store.jwt_replica(&auth));
    settle().await;
    let in_session = || {
        JwtSpec::rfc9068()
            .aud(API)
            .sub("alice")
            .claim("sid", serde_json::json!("s1"))
    };
    let seen = auth.mint_jwt(in_session());
    a.validate(&seen).await.unwrap();
    b.validate(&seen).await.unwrap();
    for replica in [&a, &b] {
        let stats = replica.stats();
        assert_eq!(stats.signature_checks, 1, "each checks the signature itself");
        assert_eq!(
            stats.cache.shared.misses + stats.cache.shared.hits,
            0,
            "no answer looked up in the store"
        );
    }
    a.revoke(&Revocation::session(auth.issuer(), "s1")).await.unwrap();
    until_revoked(&b, &seen).await;
    let never_seen = auth.mint_jwt(in_session());
    assert!(is_revoked(&b.validate(&never_seen).await));
    let late = store.jwt_replica(&auth);
    assert!(is_revoked(&late.validate(&never_seen).await));
    let other = auth.mint_jwt(
        JwtSpec::rfc9068()
            .aud(API)
            .sub("alice")
            .claim("sid", serde_json::json!("s2")),
    );
    late.validate(&other).await.unwrap();
}

#[tokio::test]
async fn jwt_replicas_share_revocations_but_not_answers_in_memory() {
    jwt_replicas_share_revocations_but_not_answers(Store::Memory(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn jwt_replicas_share_revocations_but_not_answers_on_redis() {
    jwt_replicas_share_revocations_but_not_answers(Store::redis()).await;
}

#[tokio::test]
async fn a_revocation_reaches_every_replica_in_memory() {
    a_revocation_reaches_every_replica(Store::Memory(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_replica_that_starts_later_refuses_what_was_revoked_before_in_memory() {
    a_replica_that_starts_later_refuses_what_was_revoked_before(Store::Memory(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_late_replica_reads_every_page_of_stored_revocations_in_memory() {
    a_late_replica_reads_every_page_of_stored_revocations(Store::Memory(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_late_replica_reads_every_page_of_stored_revocations_on_redis() {
    a_late_replica_reads_every_page_of_stored_revocations(Store::redis()).await;
}

#[tokio::test]
async fn a_revocation_reaches_both_sides_of_a_rotation_in_memory() {
    a_revocation_reaches_both_sides_of_a_rotation(Store::Memory(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_revocation_made_while_the_store_is_down_is_replayed() {
    let store = MemoryStore::new();
    let fleet = Store::Memory(store.clone());
    let auth = TestAuthServer::start().await.unwrap();
    let (a, b) = (fleet.replica(&auth), fleet.replica(&auth));
    settle().await;
    let token = auth.mint(TokenSpec::new().sub("alice"));
    a.validate(&token).await.unwrap();
    b.validate(&token).await.unwrap();

    store.set_available(false);
    a.revoke(&Revocation::subject(auth.issuer(), "alice"))
        .await
        .unwrap();
    assert!(is_revoked(&a.validate(&token).await), "here at once");
    store.set_available(true);
    // Replayed when the store answers again (a's next heartbeat), or read
    // from the store by b once its own listener saw the outage.
    until_revoked(&b, &token).await;
    let late = fleet.replica(&auth);
    assert!(is_revoked(&late.validate(&token).await), "and stored");
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_revocation_reaches_every_replica_on_redis() {
    a_revocation_reaches_every_replica(Store::redis()).await;
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_replica_that_starts_later_refuses_what_was_revoked_before_on_redis() {
    a_replica_that_starts_later_refuses_what_was_revoked_before(Store::redis()).await;
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_revocation_reaches_both_sides_of_a_rotation_on_redis() {
    a_revocation_reaches_both_sides_of_a_rotation(Store::redis()).await;
}
