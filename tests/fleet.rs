//! The shared tier (feature `redis`) against a real `redis-server`, started
//! by `tests/interop/redis.sh start` (`.ci/run` does it):
//!
//! ```text
//! eval "$(tests/interop/redis.sh start)"
//! cargo test --all-features --test fleet -- --ignored --test-threads=1
//! tests/interop/redis.sh stop
//! ```
//!
//! Each replica is an `Introspector` of its own (its own in-process cache,
//! its own Redis connection) behind its own axum app on its own port; the
//! replicas share nothing but Redis, in front of one counting test AS.
//! Ignored by default so `cargo test` needs no Redis; run with `--ignored`
//! they fail with a clear message when the harness is not running. One
//! thread: some tests stop, restart and pause the server.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{app, builder, serve};
use redis::AsyncCommands as _;
use tower_introspection::test_util::{DpopKey, Fault, TestAuthServer, TokenSpec};
use tower_introspection::{
    dpop::DpopConfig,
    fleet::{SharedCache, SharedCacheBuilder},
    IntrospectionLayer, Introspector,
};

const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/redis.sh");
const SECRET: &str = "the fleet secret: 32 bytes or more, never logged";
const NEXT_SECRET: &str = "the next fleet secret, rotated in: also 32+ bytes";

/// `REDIS_URL` from the environment, else from the harness's env file.
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

fn harness(command: &str) {
    let status = Command::new("bash").arg(HARNESS).arg(command).status().unwrap();
    assert!(status.success(), "redis.sh {command} failed");
}

/// Runs `undo` through the harness when dropped, so a failing test leaves
/// Redis running for the next one.
struct Undo(&'static str);

impl Drop for Undo {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(HARNESS).arg(self.0).status();
    }
}

/// A prefix of our own, so tests never see each other's entries.
fn unique_prefix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::getrandom(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("test-{hex}:")
}

struct Replica {
    introspector: Introspector,
    base: String,
}

struct Fleet {
    auth: TestAuthServer,
    replicas: Vec<Replica>,
    prefix: String,
    http: reqwest::Client,
}

impl Fleet {
    async fn new(n: usize) -> Self {
        Self::with(n, |shared| shared).await
    }

    async fn with(n: usize, configure: impl Fn(SharedCacheBuilder) -> SharedCacheBuilder) -> Self {
        let auth = TestAuthServer::start().await.expect("test AS");
        let prefix = unique_prefix();
        let mut replicas = Vec::new();
        for _ in 0..n {
            let shared = configure(SharedCache::builder(redis_url(), SECRET).key_prefix(&prefix))
                .build()
                .unwrap();
            replicas.push(Self::replica(&auth, shared).await);
        }
        Self {
            auth,
            replicas,
            prefix,
            http: reqwest::Client::new(),
        }
    }

    async fn replica(auth: &TestAuthServer, shared: SharedCache) -> Replica {
        let introspector = builder(auth).shared_cache(shared).build().unwrap();
        let base = serve(app(IntrospectionLayer::new(introspector.clone()))).await;
        Replica { introspector, base }
    }

    async fn status(&self, replica: usize, token: &str) -> u16 {
        self.http
            .get(format!("{}/ping", self.replicas[replica].base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn stats(&self, replica: usize) -> tower_introspection::cache::SharedCacheStats {
        self.replicas[replica].introspector.stats().shared
    }

    /// Every name the fleet wrote in Redis.
    async fn names(&self) -> Vec<String> {
        let mut conn = redis_conn().await;
        let mut names: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        names.sort();
        names
    }

    async fn value_names(&self) -> Vec<String> {
        self.names()
            .await
            .into_iter()
            .filter(|n| n.contains(":v:"))
            .collect()
    }
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("redis-server is not answering: `eval \"$(tests/interop/redis.sh start)\"`")
}

/// Polls `check` every 10 ms until it holds or `within` passes.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn one_replicas_answer_serves_the_others() {
    let fleet = Fleet::new(3).await;
    let token = fleet.auth.mint_token("read");
    assert_eq!(fleet.status(0, &token).await, 200);
    assert_eq!(fleet.auth.introspection_calls(), 1);
    assert_eq!(fleet.status(1, &token).await, 200);
    assert_eq!(fleet.status(2, &token).await, 200);
    assert_eq!(
        fleet.auth.introspection_calls(),
        1,
        "the others read it from Redis"
    );
    assert_eq!((fleet.stats(1).hits, fleet.stats(2).hits), (1, 1));
    assert_eq!(fleet.stats(0).misses, 1);
    // In-process hits from now on: no more Redis lookups.
    assert_eq!(fleet.status(1, &token).await, 200);
    assert_eq!(fleet.stats(1).hits, 1);
    assert_eq!(fleet.replicas[1].introspector.stats().hits, 1);

    // Inactive answers are shared too (with the negative TTL).
    let unknown = "never-issued-token-value";
    assert_eq!(fleet.status(0, unknown).await, 401);
    let calls = fleet.auth.introspection_calls();
    assert_eq!(fleet.status(1, unknown).await, 401);
    assert_eq!(fleet.auth.introspection_calls(), calls);
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn three_hundred_requests_on_three_replicas_make_one_call() {
    // Redis commands bounded generously: on a loaded 2-core machine, 300
    // requests at once in a debug build can hold one past the default
    // 100 ms, and a replica then rightly goes on without Redis (its own
    // AS call), which is not what this test is about.
    let fleet = Fleet::with(3, |b| b.command_timeout(Duration::from_secs(3))).await;
    // A slow AS, so that every request arrives while the first call is out.
    fleet.auth.set_fault(Fault::Delay(Duration::from_millis(300)));
    let token = fleet.auth.mint_token("read");
    let requests = (0..300).map(|i| fleet.status(i % 3, &token));
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        fleet.auth.introspection_calls(),
        1,
        "one AS call for the whole fleet"
    );
    let waits: u64 = (0..3).map(|i| fleet.stats(i).fleet_waits).sum();
    assert_eq!(waits, 2, "two replicas waited for the third");
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn an_invalidation_reaches_every_replica() {
    let fleet = Fleet::new(3).await;
    let token = fleet.auth.mint_token("read");
    for replica in 0..3 {
        assert_eq!(fleet.status(replica, &token).await, 200);
    }
    assert_eq!(fleet.auth.introspection_calls(), 1);
    fleet.auth.revoke(&token);
    fleet.replicas[0].introspector.invalidate(&token).await;
    assert_eq!(fleet.status(0, &token).await, 401);
    // The notice reaches the others within milliseconds; 1 s is a bound
    // far below max_ttl (60 s), which would be the delay without it.
    for replica in [1, 2] {
        let started = Instant::now();
        assert!(
            eventually(Duration::from_secs(1), async || fleet
                .status(replica, &token)
                .await
                == 401)
            .await,
            "replica {replica} still accepts a revoked token"
        );
        eprintln!(
            "replica {replica} refused the token {:?} after the invalidation",
            started.elapsed()
        );
    }
    assert!(fleet.value_names().await.iter().all(|n| !n.contains("gone")));
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn invalidate_all_reaches_every_replica() {
    let fleet = Fleet::new(2).await;
    let tokens: Vec<String> = (0..3).map(|_| fleet.auth.mint_token("read")).collect();
    for token in &tokens {
        assert_eq!(fleet.status(0, token).await, 200);
        assert_eq!(fleet.status(1, token).await, 200);
    }
    let names = fleet.value_names().await;
    assert_eq!(names.len(), 3);
    let mut conn = redis_conn().await;
    let mut before = Vec::new();
    for name in &names {
        before.push(conn.get::<_, Vec<u8>>(name).await.unwrap());
    }
    for token in &tokens {
        fleet.auth.revoke(token);
    }
    fleet.replicas[0].introspector.invalidate_all();
    for token in &tokens {
        assert!(
            eventually(Duration::from_secs(1), async || fleet.status(1, token).await
                == 401)
            .await
        );
    }
    // Every value flushed (the fresh inactive answers may replace them).
    let mut conn = redis_conn().await;
    assert!(
        eventually(Duration::from_secs(1), async || {
            for (name, old) in names.iter().zip(&before) {
                let now: Option<Vec<u8>> = conn.get(name).await.unwrap();
                if now.as_ref() == Some(old) {
                    return false;
                }
            }
            true
        })
        .await
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn no_claim_and_no_token_is_readable_in_redis() {
    let fleet = Fleet::new(1).await;
    let token = fleet.auth.mint(
        TokenSpec::new()
            .scope("payroll:read")
            .sub("subject-4711")
            .username("maria.gonzalez")
            .client_id("hr-portal")
            .exp_in(Duration::from_secs(3600)),
    );
    assert_eq!(fleet.status(0, &token).await, 200);
    let names = fleet.value_names().await;
    assert_eq!(names.len(), 1);
    let mut conn = redis_conn().await;
    let value: Vec<u8> = conn.get(&names[0]).await.unwrap();
    let mut everything = fleet.names().await.concat().into_bytes();
    everything.extend_from_slice(&value);
    for secret in [
        token.as_str(),
        "payroll",
        "subject-4711",
        "maria",
        "hr-portal",
        "active",
        fleet.auth.introspection_url().as_str(),
        SECRET,
    ] {
        assert!(
            !everything.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} is readable in Redis"
        );
    }
    // The Redis TTL is bounded by max_ttl (60 s).
    let ttl: i64 = conn.pttl(&names[0]).await.unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_forged_value_in_redis_is_refused() {
    let fleet = Fleet::new(2).await;
    let (victim, donor) = (fleet.auth.mint_token("read"), fleet.auth.mint_token("admin"));
    assert_eq!(fleet.status(0, &victim).await, 200);
    let victim_name = fleet.value_names().await.pop().unwrap();
    assert_eq!(fleet.status(0, &donor).await, 200);
    let donor_name = fleet
        .value_names()
        .await
        .into_iter()
        .find(|n| *n != victim_name)
        .unwrap();
    fleet.auth.revoke(&victim);

    let mut conn = redis_conn().await;
    let genuine: Vec<u8> = conn.get(&donor_name).await.unwrap();
    let mut flipped: Vec<u8> = conn.get(&victim_name).await.unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let forgeries: [(&str, Vec<u8>); 4] = [
        ("another token's genuine value", genuine),
        ("a value with one bit flipped", flipped),
        ("plain JSON", br#"{"active":true,"scope":"read"}"#.to_vec()),
        ("a 2 MiB value (not even read)", vec![1u8; 2 << 20]),
    ];
    for (what, forged) in forgeries {
        let _: () = conn.set_ex(&victim_name, forged, 60).await.unwrap();
        let calls = fleet.auth.introspection_calls();
        let refused = fleet.stats(1).refused_values;
        // Replica 1 has nothing in process: it reads the forged value.
        assert_eq!(fleet.status(1, &victim).await, 401, "{what} was accepted");
        assert_eq!(fleet.stats(1).refused_values, refused + 1, "{what}");
        assert_eq!(
            fleet.auth.introspection_calls(),
            calls + 1,
            "{what}: asked the AS instead"
        );
        fleet.replicas[1].introspector.invalidate(&victim).await;
        // Let the tombstone of that invalidation lapse out of the way.
        let _: () = conn.del(fleet.names().await).await.unwrap();
    }
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn entries_written_under_the_previous_secret_are_read_during_a_rotation() {
    let auth = TestAuthServer::start().await.unwrap();
    let prefix = unique_prefix();
    let old = Fleet::replica(
        &auth,
        SharedCache::builder(redis_url(), SECRET)
            .key_prefix(&prefix)
            .build()
            .unwrap(),
    )
    .await;
    let rotated = Fleet::replica(
        &auth,
        SharedCache::builder(redis_url(), NEXT_SECRET)
            .previous_secret(SECRET)
            .key_prefix(&prefix)
            .build()
            .unwrap(),
    )
    .await;
    let stranger = Fleet::replica(
        &auth,
        SharedCache::builder(redis_url(), NEXT_SECRET)
            .key_prefix(&prefix)
            .build()
            .unwrap(),
    )
    .await;
    let http = reqwest::Client::new();
    let status = async |replica: &Replica, token: &str| {
        http.get(format!("{}/ping", replica.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let token = auth.mint_token("read");
    assert_eq!(status(&old, &token).await, 200);
    assert_eq!(status(&rotated, &token).await, 200);
    assert_eq!(auth.introspection_calls(), 1, "read under the previous secret");
    assert_eq!(status(&stranger, &token).await, 200);
    assert_eq!(
        auth.introspection_calls(),
        2,
        "without the old secret, nothing to read"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn redis_killed_and_restarted_never_costs_a_request() {
    let fleet = Fleet::with(2, |shared| shared.circuit_breaker(2, Duration::from_millis(300))).await;
    let warm = fleet.auth.mint_token("read");
    assert_eq!(fleet.status(0, &warm).await, 200);
    let held = fleet.auth.mint_token("read");
    assert_eq!(fleet.status(1, &held).await, 200);

    harness("stop-server");
    let restart = Undo("start-server");
    // An invalidation while Redis is down cannot reach replica 1...
    fleet.auth.revoke(&held);
    fleet.replicas[0].introspector.invalidate(&held).await;
    assert_eq!(fleet.status(0, &held).await, 401);
    assert_eq!(fleet.status(1, &held).await, 200, "replica 1 has not heard of it");
    let mut answered = 0;
    for round in 0..20 {
        // Fresh tokens miss both tiers; the warm one is served in process.
        let fresh = fleet.auth.mint_token("read");
        for replica in 0..2 {
            assert_eq!(fleet.status(replica, &fresh).await, 200, "round {round}");
            assert_eq!(fleet.status(replica, &warm).await, 200, "round {round}");
            answered += 2;
        }
    }
    let revoked = fleet.auth.mint_token("read");
    fleet.auth.revoke(&revoked);
    assert_eq!(
        fleet.status(1, &revoked).await,
        401,
        "fail closed without Redis too"
    );
    let down = fleet.stats(0);
    assert!(down.errors > 0 && down.breaker_trips > 0, "{down:?}");
    eprintln!("{answered} requests answered 200 while Redis was down; replica 0: {down:?}");

    drop(restart);
    // Back within the breaker's open time plus a reconnection.
    let token = fleet.auth.mint_token("read");
    assert!(
        eventually(Duration::from_secs(10), async || {
            let calls = fleet.auth.introspection_calls();
            let fresh = fleet.auth.mint_token("read");
            fleet.status(0, &fresh).await == 200
                && fleet.status(1, &fresh).await == 200
                && fleet.auth.introspection_calls() == calls + 1
        })
        .await,
        "the replicas share through Redis again"
    );
    assert!(!fleet.stats(0).breaker_open && !fleet.stats(1).breaker_open);
    assert_eq!(fleet.status(0, &token).await, 200);
    // ...but once its subscription is back it drops its in-process cache,
    // as it may have missed notices: the revoked token is refused.
    assert!(
        eventually(Duration::from_secs(5), async || fleet.status(1, &held).await
            == 401)
        .await,
        "replica 1 still accepts a token invalidated during the outage"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_paused_redis_costs_at_most_a_command_timeout() {
    let fleet = Fleet::with(2, |shared| {
        shared
            .command_timeout(Duration::from_millis(100))
            .circuit_breaker(3, Duration::from_millis(500))
    })
    .await;
    let warm = fleet.auth.mint_token("read");
    assert_eq!(fleet.status(0, &warm).await, 200);
    harness("pause");
    let resume = Undo("resume");
    let result = async {
        let started = Instant::now();
        for round in 0..10 {
            let fresh = fleet.auth.mint_token("read");
            for replica in 0..2 {
                let one = Instant::now();
                assert_eq!(fleet.status(replica, &fresh).await, 200, "round {round}");
                // A lookup and a write, each bounded by the command timeout.
                assert!(one.elapsed() < Duration::from_secs(2), "{:?}", one.elapsed());
                assert_eq!(fleet.status(replica, &warm).await, 200);
            }
        }
        started.elapsed()
    };
    let elapsed = tokio::time::timeout(Duration::from_secs(30), result).await;
    drop(resume);
    let elapsed = elapsed.expect("requests hung on a paused Redis");
    let stats = fleet.stats(0);
    assert!(stats.breaker_trips > 0, "{stats:?}");
    eprintln!("40 requests answered in {elapsed:?} while Redis was paused; {stats:?}");
    assert!(
        eventually(Duration::from_secs(10), async || {
            let calls = fleet.auth.introspection_calls();
            let fresh = fleet.auth.mint_token("read");
            fleet.status(0, &fresh).await == 200
                && fleet.status(1, &fresh).await == 200
                && fleet.auth.introspection_calls() == calls + 1
        })
        .await,
        "sharing again after SIGCONT"
    );
}

#[tokio::test]
async fn no_redis_at_all_is_no_refused_request() {
    // Nothing listens on this port: the tier is down from the start.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    drop(listener);
    let auth = TestAuthServer::start().await.unwrap();
    let shared = SharedCache::builder(url, SECRET)
        .circuit_breaker(2, Duration::from_secs(60))
        .build()
        .unwrap();
    let replica = Fleet::replica(&auth, shared).await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let token = auth.mint_token("read");
        let status = http
            .get(format!("{}/ping", replica.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let stats = replica.introspector.stats().shared;
    assert!(stats.breaker_open && stats.breaker_trips == 1, "{stats:?}");
    assert!(
        stats.skipped > 0,
        "the open breaker spares Redis the tries: {stats:?}"
    );
}

/// Starts `examples/resource_server` as a replica of the fleet; returns the
/// process and its base URL.
fn resource_server(auth: &TestAuthServer, secret: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(common::example("resource_server"))
        .env("INTROSPECTION_URL", auth.introspection_url())
        .env("CLIENT_ID", common::RS_ID)
        .env("CLIENT_SECRET", common::RS_SECRET)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", redis_url())
        .env("CACHE_SHARED_SECRET", secret)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the listening line")
        .to_owned();
    (child, base)
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn two_resource_server_processes_share_one_introspection() {
    let auth = TestAuthServer::start().await.unwrap();
    // A fresh secret per run: entries of earlier runs are not readable.
    let secret = format!("{}-and-enough-bytes-to-be-a-fleet-secret", unique_prefix());
    let (mut a, base_a) = resource_server(&auth, &secret);
    let (mut b, base_b) = resource_server(&auth, &secret);
    let http = reqwest::Client::new();
    let token = auth.mint_token("read");
    let mut statuses = Vec::new();
    for base in [&base_a, &base_b, &base_a, &base_b] {
        let response = http
            .get(format!("{base}/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    let calls = auth.introspection_calls();
    for child in [&mut a, &mut b] {
        let _ = child.kill();
    }
    let mut logs = String::new();
    for child in [a, b] {
        let output = child.wait_with_output().unwrap();
        logs.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    assert_eq!(statuses, [200; 4]);
    assert_eq!(
        calls, 1,
        "the second process read the first one's answer from Redis"
    );
    assert!(!logs.is_empty(), "trace logs were written");
    assert!(!logs.contains(&secret), "the fleet secret was logged");
    assert!(!logs.contains(&token), "the token was logged");
}

#[test]
fn resource_server_refuses_a_half_configured_fleet_without_printing_the_secret() {
    let run = |vars: &[(&str, &str)]| {
        let mut command = Command::new(common::example("resource_server"));
        command
            .env("INTROSPECTION_URL", "http://127.0.0.1:9/introspect")
            .env("CLIENT_ID", "rs")
            .env("CLIENT_SECRET", "s")
            .env_remove("REDIS_URL")
            .env_remove("CACHE_SHARED_SECRET");
        for (name, value) in vars {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{vars:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run(&[("REDIS_URL", "redis://127.0.0.1:9/")]).contains("REDIS_URL needs CACHE_SHARED_SECRET"));
    assert!(run(&[("CACHE_SHARED_SECRET", "x".repeat(40).as_str())]).contains("REDIS_URL is not"));
    let short = run(&[
        ("REDIS_URL", "redis://127.0.0.1:9/"),
        ("CACHE_SHARED_SECRET", "short-secret-value"),
    ]);
    assert!(short.contains("at least 32 bytes"), "{short}");
    assert!(!short.contains("short-secret-value"), "{short}");
}

#[test]
fn a_shared_cache_outside_a_tokio_runtime_is_a_config_error_not_a_panic() {
    let shared = SharedCache::builder("redis://127.0.0.1:9/", SECRET)
        .build()
        .unwrap();
    let built = Introspector::builder("http://127.0.0.1:9/introspect")
        .client_secret_basic("rs", "s")
        .shared_cache(shared)
        .build();
    assert!(built.is_err());
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn an_invalidation_is_not_undone_by_a_load_in_flight_on_another_replica() {
    let fleet = Fleet::new(2).await;
    fleet.auth.set_fault(Fault::Delay(Duration::from_millis(300)));
    let token = fleet.auth.mint_token("read");
    let load = fleet.status(1, &token);
    let invalidate = async {
        // While replica 1's introspection is out.
        tokio::time::sleep(Duration::from_millis(100)).await;
        fleet.replicas[0].introspector.invalidate(&token).await;
    };
    let (status, ()) = tokio::join!(load, invalidate);
    assert_eq!(status, 200, "the answer in flight still serves its request");
    assert!(
        fleet.value_names().await.is_empty(),
        "the load in flight wrote the invalidated entry back"
    );
    fleet.auth.clear_fault();
    let calls = fleet.auth.introspection_calls();
    assert_eq!(fleet.status(1, &token).await, 200);
    assert_eq!(
        fleet.auth.introspection_calls(),
        calls + 1,
        "nor kept it in process"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn an_answer_from_redis_lives_in_process_no_longer_than_in_redis() {
    let auth = TestAuthServer::start().await.unwrap();
    let prefix = unique_prefix();
    let shared = || {
        SharedCache::builder(redis_url(), SECRET)
            .key_prefix(&prefix)
            .build()
            .unwrap()
    };
    // The writer shares its answers for 1 s; the reader would keep its own
    // for a minute.
    let writer = builder(&auth)
        .max_ttl(Duration::from_secs(1))
        .shared_cache(shared())
        .build()
        .unwrap();
    let reader = builder(&auth).shared_cache(shared()).build().unwrap();
    let token = auth.mint_token("read");
    writer.validate(&token).await.unwrap();
    reader.validate(&token).await.unwrap();
    assert_eq!((auth.introspection_calls(), reader.stats().shared.hits), (1, 1));
    auth.revoke(&token);
    assert!(reader.validate(&token).await.is_ok(), "cached in process");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        reader.validate(&token).await.is_err(),
        "kept past the shared entry's life"
    );
}

/// Puts each value back under its name and removes the tombstones, on
/// `conn`, as a Redis that lost an invalidation's commands would hold them
/// (a partition, or a failover to a copy that never got them). Sent while
/// Redis is paused, it runs right after the invalidations' own buffered
/// commands.
fn lose_the_invalidations(
    mut conn: redis::aio::MultiplexedConnection,
    values: Vec<(String, Vec<u8>)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (name, value) in values {
            pipe.del(name.replace(":v:", ":gone:"))
                .ignore()
                .set_options(
                    &name,
                    value,
                    redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(60_000)),
                )
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    })
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_revocation_redis_lost_is_not_undone_when_it_returns() {
    let fleet = Fleet::with(2, |shared| shared.command_timeout(Duration::from_millis(100))).await;
    let mut conn = redis_conn().await;
    // `seen_by_1` is checked on replica 1 (the replay), `seen_by_0` on the
    // invalidating replica (its memory).
    let (seen_by_1, seen_by_0) = (fleet.auth.mint_token("read"), fleet.auth.mint_token("read"));
    let mut values = Vec::new();
    for token in [&seen_by_1, &seen_by_0] {
        assert_eq!(fleet.status(0, token).await, 200);
        assert_eq!(fleet.status(1, token).await, 200);
        let before = fleet.value_names().await;
        let name = before
            .iter()
            .find(|n| !values.iter().any(|(v, _)| v == *n))
            .unwrap()
            .clone();
        let value: Vec<u8> = conn.get(&name).await.unwrap();
        values.push((name, value));
        fleet.auth.revoke(token);
    }
    assert_eq!(fleet.auth.introspection_calls(), 2);

    harness("pause");
    let resume = Undo("resume");
    for token in [&seen_by_1, &seen_by_0] {
        fleet.replicas[0].introspector.invalidate(token).await;
    }
    let replant = lose_the_invalidations(conn, values.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(resume);
    tokio::time::timeout(Duration::from_secs(5), replant)
        .await
        .expect("Redis answers again")
        .unwrap();
    assert_eq!(
        fleet.value_names().await.len(),
        2,
        "Redis holds the revoked answers again"
    );

    // The invalidating replica remembers its revocation.
    assert_eq!(
        fleet.status(0, &seen_by_0).await,
        401,
        "revoked token served from Redis"
    );
    assert!(fleet.stats(0).refused_values >= 1, "{:?}", fleet.stats(0));
    // And replays it when Redis is back, which the others see.
    assert!(
        eventually(Duration::from_secs(5), async || fleet.status(1, &seen_by_1).await
            == 401)
        .await,
        "replica 1 serves the revoked token from what Redis kept"
    );
    let mut conn = redis_conn().await;
    let now: Option<Vec<u8>> = conn.get(&values[0].0).await.unwrap();
    assert_ne!(
        now,
        Some(values[0].1.clone()),
        "the replay deleted it (an inactive answer may replace it)"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_load_queued_past_the_lock_life_does_not_write_a_revoked_answer_back() {
    let auth = TestAuthServer::start().await.unwrap();
    let prefix = unique_prefix();
    let shared = || {
        SharedCache::builder(redis_url(), SECRET)
            .key_prefix(&prefix)
            .build()
            .unwrap()
    };
    // One introspection at a time, each under its 300 ms timeout, a slot
    // awaited up to 5 s: a queued load outlives 2 × timeout + 1 s, the
    // life tombstones had. (The in-process invalidation spoils the load
    // when the notice arrives; the tombstone's time covers a lost notice.)
    let replica = || builder(&auth).timeout(Duration::from_millis(300));
    let invalidator = replica().shared_cache(shared()).build().unwrap();
    let reader = replica().shared_cache(shared()).build().unwrap();
    let slow = builder(&auth)
        .timeout(Duration::from_millis(300))
        .max_concurrent_introspections(1, Duration::from_secs(5))
        .shared_cache(shared())
        .build()
        .unwrap();
    auth.set_fault(Fault::Delay(Duration::from_millis(250)));
    let ahead: Vec<String> = (0..8).map(|_| auth.mint_token("read")).collect();
    let token = auth.mint_token("read");
    let busy = futures_util::future::join_all(ahead.iter().map(|t| slow.validate(t)));
    let queued = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        slow.validate(&token).await
    };
    let invalidate = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        invalidator.invalidate(&token).await;
    };
    let (busy, queued, ()) = tokio::join!(busy, queued, invalidate);
    assert!(busy.iter().all(Result::is_ok));
    assert!(queued.is_ok(), "the answer in flight still serves its request");
    auth.clear_fault();
    let calls = auth.introspection_calls();
    reader.validate(&token).await.unwrap();
    assert_eq!(
        (auth.introspection_calls(), reader.stats().shared.hits),
        (calls + 1, 0),
        "the load in flight wrote the invalidated answer back"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_value_the_flush_has_not_reached_is_refused() {
    let fleet = Fleet::new(2).await;
    let token = fleet.auth.mint_token("read");
    assert_eq!(fleet.status(0, &token).await, 200);
    assert_eq!(fleet.status(1, &token).await, 200);
    let names = fleet.value_names().await;
    let mut conn = redis_conn().await;
    let value: Vec<u8> = conn.get(&names[0]).await.unwrap();
    fleet.auth.revoke(&token);
    fleet.replicas[0].introspector.invalidate_all();
    assert!(
        eventually(Duration::from_secs(1), async || fleet
            .value_names()
            .await
            .is_empty())
        .await
    );
    // As if the scan had not reached it yet (a large keyspace).
    let _: () = conn.set_ex(&names[0], value, 60).await.unwrap();
    assert_eq!(
        fleet.status(1, &token).await,
        401,
        "refilled from a value older than the flush"
    );
    assert!(fleet.stats(1).refused_values >= 1);
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn notices_without_the_fleets_tag_cost_at_most_one_drop_per_window() {
    let fleet = Fleet::new(1).await;
    let token = fleet.auth.mint_token("read");
    assert_eq!(fleet.status(0, &token).await, 200);
    let name = fleet.value_names().await.pop().unwrap();
    let channel = format!("{}events", name.split(":v:").next().unwrap().to_owned() + ":");
    let mut conn = redis_conn().await;
    let tag = format!("m:{}", "00".repeat(16));
    let processed = async |count: u64| {
        assert!(
            eventually(Duration::from_secs(10), async || fleet.stats(0).refused_values
                >= count)
            .await,
            "the replica never saw the notices: {:?}",
            fleet.stats(0)
        );
    };

    // Not invalidations: counted, nothing dropped.
    for forged in [
        format!("f {} {tag}", "ab".repeat(32)),
        "hello".to_owned(),
        String::new(),
    ] {
        let receivers: i64 = conn.publish(&channel, &forged).await.unwrap();
        assert_eq!(receivers, 1, "the replica listens on {channel}");
    }
    processed(3).await;
    let hits = fleet.replicas[0].introspector.stats().hits;
    assert_eq!(fleet.status(0, &token).await, 200);
    assert_eq!(
        fleet.replicas[0].introspector.stats().hits,
        hits + 1,
        "a forged fill notice flushed the in-process cache"
    );
    assert_eq!(fleet.stats(0).notice_flushes, 0);

    // Invalidations that do not verify: from a replica with a secret this
    // one does not have, or forged. Failing closed, each drops everything,
    // but a flood costs one drop at once and one at the window's end.
    let far = "9".repeat(13);
    let started = Instant::now();
    for i in 0..100 {
        let forged = match i % 3 {
            0 => format!("a {far}"),
            1 => format!("a {far} {tag}"),
            _ => format!("i {} {tag}", "00".repeat(16)),
        };
        let _: i64 = conn.publish(&channel, &forged).await.unwrap();
    }
    processed(103).await;
    assert!(fleet.stats(0).notice_flushes >= 1);
    let calls = fleet.auth.introspection_calls();
    assert_eq!(fleet.status(0, &token).await, 200);
    assert_eq!(
        fleet.auth.introspection_calls(),
        calls + 1,
        "the value in Redis, given before the drop, was read: it must be refused"
    );
    // The notices after the first drop are not lost: one more drop, at the
    // end of the window (5 s).
    assert!(
        eventually(Duration::from_secs(20), async || fleet.stats(0).notice_flushes
            >= 2)
        .await
    );
    let windows = started.elapsed().as_secs() / 5;
    let flushes = fleet.stats(0).notice_flushes;
    assert!(
        flushes <= 2 + windows,
        "{flushes} drops for 100 notices in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_tombstone_is_seen_on_both_sides_of_a_rotation() {
    let auth = TestAuthServer::start().await.unwrap();
    let prefix = unique_prefix();
    let shared = |secrets: &[&str]| {
        let mut shared = SharedCache::builder(redis_url(), secrets[0]).key_prefix(&prefix);
        for previous in &secrets[1..] {
            shared = shared.previous_secret(previous);
        }
        builder(&auth)
            .shared_cache(shared.build().unwrap())
            .build()
            .unwrap()
    };
    let not_yet_rotated = shared(&[SECRET]);
    let rotated = shared(&[NEXT_SECRET, SECRET]);
    let token = auth.mint_token("read");
    not_yet_rotated.validate(&token).await.unwrap();
    let mut conn = redis_conn().await;
    let names: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*:v:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let value: Vec<u8> = conn.get(&names[0]).await.unwrap();
    auth.revoke(&token);
    rotated.invalidate(&token).await;
    // A value under the old secret's name that outlived the invalidation
    // (a deletion lost, a write-back from a load in flight).
    let _: () = conn.set_ex(&names[0], value, 60).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        not_yet_rotated.validate(&token).await.is_err(),
        "the tombstone was only under the new secret's name"
    );
}

/// A replica's fleet secrets in each phase of a rotation (README, "Rotating
/// the fleet secret"): the writing one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not redeployed yet.
    OldOnly,
    /// Step 1: the new secret beside `previous_secret(old)`.
    NewAndOld,
    /// Step 2: the previous secret dropped.
    NewOnly,
}

const PHASES: [Phase; 3] = [Phase::OldOnly, Phase::NewAndOld, Phase::NewOnly];

impl Phase {
    fn secrets(self) -> &'static [&'static str] {
        match self {
            Phase::OldOnly => &[SECRET],
            Phase::NewAndOld => &[NEXT_SECRET, SECRET],
            Phase::NewOnly => &[NEXT_SECRET],
        }
    }

    fn introspector(self, auth: &TestAuthServer, prefix: &str) -> Introspector {
        let secrets = self.secrets();
        let mut shared = SharedCache::builder(redis_url(), secrets[0]).key_prefix(prefix);
        for previous in &secrets[1..] {
            shared = shared.previous_secret(previous);
        }
        builder(auth)
            .shared_cache(shared.build().unwrap())
            .build()
            .unwrap()
    }
}

/// What an invalidation sent by one replica cost another, seen from a
/// bystander token both had cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The sender knows the secret of the receiver's in-process keys: that
    /// one entry is dropped, the bystander is still an in-process hit.
    Entry,
    /// They share only the receiver's previous secret: the notice verifies
    /// but cannot name the receiver's entry, so the receiver drops its whole
    /// in-process cache; the bystander comes back from Redis.
    InProcessCache,
    /// They share no secret (old only and new only: the procedure never
    /// lets them meet): the notice does not verify, and the receiver drops
    /// its in-process cache and refuses every shared answer given before it;
    /// the bystander comes back from the AS.
    Everything,
}

impl Reach {
    fn expected(sender: Phase, receiver: Phase) -> Self {
        let sent_under = sender.secrets();
        let known = receiver.secrets();
        if sent_under.contains(&known[0]) {
            Reach::Entry
        } else if known.iter().any(|secret| sent_under.contains(secret)) {
            Reach::InProcessCache
        } else {
            Reach::Everything
        }
    }
}

/// Waits until both replicas listen on the fleet's channel, so that the
/// notice under test cannot be published before a replica subscribed.
async fn both_listening(prefix: &str) {
    let mut conn = redis_conn().await;
    let listening = eventually(Duration::from_secs(10), async || {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let Some(channel) = channels.first() else {
            return false;
        };
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        counts.first().is_some_and(|(_, subscribers)| *subscribers == 2)
    })
    .await;
    assert!(listening, "the replicas never subscribed");
}

/// One invalidation (of `token`, or of everything) from a replica in phase
/// `sender` to one in phase `receiver`: whether the receiver refused the
/// revoked token (asking the AS again), and what it cost the bystander.
async fn invalidate_across(
    auth: &TestAuthServer,
    sender: Phase,
    receiver: Phase,
    everything: bool,
) -> (bool, Option<Reach>) {
    let prefix = unique_prefix();
    let from = sender.introspector(auth, &prefix);
    let to = receiver.introspector(auth, &prefix);
    let token = auth.mint_token("read");
    let bystander = auth.mint_token("read");
    to.validate(&token).await.unwrap();
    to.validate(&bystander).await.unwrap();
    from.validate(&token).await.unwrap();
    both_listening(&prefix).await;

    auth.revoke(&token);
    let calls = auth.introspection_calls();
    if everything {
        from.invalidate_all();
    } else {
        from.invalidate(&token).await;
    }
    // The notice takes milliseconds; without it the receiver would keep
    // the token until max_ttl (60 s).
    let refused = eventually(Duration::from_secs(5), async || {
        to.validate(&token).await.is_err()
    })
    .await
        && auth.introspection_calls() > calls;
    let flushes = to.stats().shared.notice_flushes;
    let shares_a_secret = receiver
        .secrets()
        .iter()
        .any(|secret| sender.secrets().contains(secret));
    if everything {
        // Only a notice that does not verify costs a drop of its own.
        assert_eq!(flushes, u64::from(!shares_a_secret), "{sender:?} → {receiver:?}");
        return (refused, None);
    }

    let (hits, shared_hits, calls) = (
        to.stats().hits,
        to.stats().shared.hits,
        auth.introspection_calls(),
    );
    to.validate(&bystander).await.unwrap();
    let reach = if auth.introspection_calls() > calls {
        Reach::Everything
    } else if to.stats().shared.hits > shared_hits {
        Reach::InProcessCache
    } else {
        assert_eq!(to.stats().hits, hits + 1, "{sender:?} → {receiver:?}");
        Reach::Entry
    };
    assert_eq!(
        flushes,
        u64::from(reach != Reach::Entry),
        "{sender:?} → {receiver:?}: {:?}",
        to.stats().shared
    );
    (refused, Some(reach))
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn every_invalidation_reaches_every_phase_of_a_rotation() {
    let auth = TestAuthServer::start().await.unwrap();
    let mut wrong = Vec::new();
    for everything in [false, true] {
        for sender in PHASES {
            for receiver in PHASES {
                let (refused, reach) = invalidate_across(&auth, sender, receiver, everything).await;
                let expected = (!everything).then(|| Reach::expected(sender, receiver));
                let what = if everything {
                    "invalidate_all"
                } else {
                    "invalidate"
                };
                eprintln!("{what:>14} {sender:?} → {receiver:?}: refused {refused}, cost {reach:?}");
                if !refused || reach != expected {
                    wrong.push(format!(
                        "{what} {sender:?} → {receiver:?}: refused {refused}, cost {reach:?} (expected {expected:?})"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// DPoP (RFC 9449 §11.1): a proof's `jti` is accepted once within the window
// by the whole fleet, through the shared tier of the layer's introspector.

/// The URL every replica is reached at, behind the fleet's load balancer.
const API: &str = "https://api.example";
const DPOP_ALGS: &str = "algs=\"ES256 ES384 EdDSA PS256 RS256\"";

/// A replica whose layer accepts DPoP, at [`API`].
async fn dpop_replica(auth: &TestAuthServer, shared: SharedCache) -> Replica {
    let introspector = builder(auth).shared_cache(shared).build().unwrap();
    let dpop = DpopConfig::allowed().external_url(API).unwrap();
    let base = serve(app(IntrospectionLayer::new(introspector.clone()).dpop(dpop))).await;
    Replica { introspector, base }
}

/// A fleet of `n` DPoP replicas, a key and a token bound to it.
struct DpopFleet {
    fleet: Fleet,
    key: DpopKey,
    token: String,
}

impl DpopFleet {
    async fn new(n: usize, configure: impl Fn(SharedCacheBuilder) -> SharedCacheBuilder) -> Self {
        let auth = TestAuthServer::start().await.expect("test AS");
        let prefix = unique_prefix();
        let mut replicas = Vec::new();
        for _ in 0..n {
            let shared = configure(SharedCache::builder(redis_url(), SECRET).key_prefix(&prefix))
                .build()
                .unwrap();
            replicas.push(dpop_replica(&auth, shared).await);
        }
        let key = DpopKey::generate();
        let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
        let fleet = Fleet {
            auth,
            replicas,
            prefix,
            http: reqwest::Client::new(),
        };
        Self { fleet, key, token }
    }

    /// A fresh proof for `GET /ping` whose `jti` is `jti`.
    fn proof(&self, jti: &str) -> String {
        proof_with_jti(&self.key, &self.token, jti)
    }

    async fn send(&self, replica: usize, proof: &str) -> reqwest::Response {
        send_dpop(
            &self.fleet.http,
            &self.fleet.replicas[replica],
            &self.token,
            proof,
        )
        .await
    }

    async fn status(&self, replica: usize, proof: &str) -> u16 {
        self.send(replica, proof).await.status().as_u16()
    }

    /// The fleet's replay markers in Redis.
    async fn markers(&self) -> Vec<String> {
        self.fleet
            .names()
            .await
            .into_iter()
            .filter(|n| n.contains(":dpop-jti:"))
            .collect()
    }
}

fn proof_with_jti(key: &DpopKey, token: &str, jti: &str) -> String {
    let mut claims = DpopKey::claims("GET", &format!("{API}/ping"), token);
    claims["jti"] = serde_json::Value::from(jti);
    key.sign(&key.header(), &claims)
}

async fn send_dpop(http: &reqwest::Client, replica: &Replica, token: &str, proof: &str) -> reqwest::Response {
    http.get(format!("{}/ping", replica.base))
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap()
}

/// A random `jti`, recognisable in Redis if it were ever stored in clear.
fn fresh_jti(label: &str) -> String {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("jti-{label}-{hex}")
}

/// Asserts the exact refusal of a replayed proof: 401, a bare Bearer
/// challenge (both schemes allowed) and the DPoP one naming the `jti`.
fn assert_replay_refused(response: &reqwest::Response, context: &str) {
    assert_eq!(response.status(), 401, "{context}");
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        [
            "Bearer realm=\"api\"".to_owned(),
            format!(
                "DPoP realm=\"api\", error=\"invalid_dpop_proof\", error_description=\"the DPoP proof was used before (jti)\", {DPOP_ALGS}"
            ),
        ],
        "{context}"
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_dpop_proof_accepted_by_one_replica_is_refused_by_the_others() {
    let d = DpopFleet::new(3, |shared| shared).await;
    let jti = fresh_jti("replayed");
    let proof = d.proof(&jti);
    assert_eq!(d.status(0, &proof).await, 200);
    // Replica 1 never saw it: only Redis can tell.
    assert_replay_refused(&d.send(1, &proof).await, "replayed at another replica");
    // Replica 0 refuses from its own cache.
    assert_replay_refused(&d.send(0, &proof).await, "replayed at the same replica");
    assert_replay_refused(&d.send(2, &proof).await, "and at a third");
    // A fresh proof passes anywhere, once.
    let other = d.proof(&fresh_jti("fresh"));
    assert_eq!(d.status(1, &other).await, 200);
    assert_replay_refused(&d.send(2, &other).await, "the fresh one, replayed");
    for replica in 0..3 {
        assert_eq!(d.fleet.stats(replica).dpop_local_only, 0);
    }

    // One marker per proof, apart from the token cache, and none of the
    // proof's parts readable in Redis.
    let markers = d.markers().await;
    assert_eq!(markers.len(), 2, "{markers:?}");
    let values = d.fleet.value_names().await;
    assert_eq!(values.len(), 1, "the token's answer, shared once");
    let everything = d.fleet.names().await.concat();
    for part in [jti.as_str(), "jti-fresh", &d.key.jkt(), &d.token] {
        assert!(!everything.contains(part), "{part:?} is readable in Redis");
    }
    // Remembered as long as a proof is accepted: max_age (60 s) plus the
    // leeway (5 s) both ways and a second each side.
    let mut conn = redis_conn().await;
    for marker in &markers {
        let value: String = conn.get(marker).await.unwrap();
        assert_eq!(value, "1");
        let ttl: i64 = conn.pttl(marker).await.unwrap();
        assert!((60_000..=72_000).contains(&ttl), "{ttl}");
    }

    // Flushing the token cache leaves the replay cache alone.
    d.fleet.replicas[0].introspector.invalidate_all();
    assert!(
        eventually(Duration::from_secs(5), async || d
            .fleet
            .value_names()
            .await
            .is_empty())
        .await
    );
    assert_eq!(d.markers().await, markers);
    let fresh_replica = dpop_replica(
        &d.fleet.auth,
        SharedCache::builder(redis_url(), SECRET)
            .key_prefix(&d.fleet.prefix)
            .build()
            .unwrap(),
    )
    .await;
    assert_replay_refused(
        &send_dpop(&d.fleet.http, &fresh_replica, &d.token, &proof).await,
        "a replica started after the flush",
    );
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn dpop_replays_are_refused_per_replica_while_redis_is_down() {
    let d = DpopFleet::new(2, |shared| shared.circuit_breaker(2, Duration::from_millis(300))).await;
    // Warm: the token's answer is cached on both replicas.
    assert_eq!(d.status(0, &d.proof(&fresh_jti("warm"))).await, 200);
    assert_eq!(d.status(1, &d.proof(&fresh_jti("warm"))).await, 200);

    harness("stop-server");
    let restart = Undo("start-server");
    for round in 0..5 {
        let proof = d.proof(&fresh_jti("outage"));
        assert_eq!(d.status(0, &proof).await, 200, "round {round}");
        assert_replay_refused(&d.send(0, &proof).await, "the same replica, Redis down");
        // The documented loss: another replica cannot know of it.
        assert_eq!(d.status(1, &proof).await, 200, "round {round}");
        assert_replay_refused(&d.send(1, &proof).await, "replica 1's own cache");
    }
    let down = d.fleet.stats(0);
    assert_eq!(down.dpop_local_only, 5, "{down:?}");
    assert!(down.breaker_trips > 0 && down.skipped > 0, "{down:?}");
    assert_eq!(d.fleet.stats(1).dpop_local_only, 5);

    drop(restart);
    assert!(
        eventually(Duration::from_secs(10), async || {
            let proof = d.proof(&fresh_jti("back"));
            d.status(0, &proof).await == 200 && d.status(1, &proof).await == 401
        })
        .await,
        "the replicas share their replay cache again"
    );
}

/// A paused Redis (it accepts but never answers) costs a DPoP request at
/// most the command timeout, then nothing once the breaker opens.
#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn a_paused_redis_delays_a_dpop_request_at_most_a_command_timeout() {
    let d = DpopFleet::new(1, |shared| {
        shared
            .command_timeout(Duration::from_millis(100))
            .circuit_breaker(3, Duration::from_secs(30))
    })
    .await;
    assert_eq!(d.status(0, &d.proof(&fresh_jti("warm"))).await, 200);
    harness("pause");
    let resume = Undo("resume");
    let result = async {
        for round in 0..10 {
            let proof = d.proof(&fresh_jti("paused"));
            let started = Instant::now();
            assert_eq!(d.status(0, &proof).await, 200, "round {round}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
            assert_replay_refused(&d.send(0, &proof).await, "Redis paused");
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(20), result).await;
    drop(resume);
    finished.expect("DPoP requests hung on a paused Redis");
    let stats = d.fleet.stats(0);
    assert!(stats.breaker_open && stats.dpop_local_only == 10, "{stats:?}");
    // Three timeouts opened the breaker; the other proofs did not wait.
    assert!(stats.skipped >= 7, "the open breaker is respected: {stats:?}");
}

#[tokio::test]
#[ignore = "needs redis-server: eval \"$(tests/interop/redis.sh start)\""]
async fn dpop_replays_are_seen_on_both_sides_of_a_rotation() {
    let auth = TestAuthServer::start().await.unwrap();
    let prefix = unique_prefix();
    let old = dpop_replica(
        &auth,
        SharedCache::builder(redis_url(), SECRET)
            .key_prefix(&prefix)
            .build()
            .unwrap(),
    )
    .await;
    let rotated = dpop_replica(
        &auth,
        SharedCache::builder(redis_url(), NEXT_SECRET)
            .previous_secret(SECRET)
            .key_prefix(&prefix)
            .build()
            .unwrap(),
    )
    .await;
    let http = reqwest::Client::new();
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
    let first = proof_with_jti(&key, &token, &fresh_jti("rotated-first"));
    assert_eq!(send_dpop(&http, &rotated, &token, &first).await.status(), 200);
    assert_replay_refused(
        &send_dpop(&http, &old, &token, &first).await,
        "marked under the old secret too",
    );
    let second = proof_with_jti(&key, &token, &fresh_jti("old-first"));
    assert_eq!(send_dpop(&http, &old, &token, &second).await.status(), 200);
    assert_replay_refused(
        &send_dpop(&http, &rotated, &token, &second).await,
        "the old secret's marker is read",
    );
}

/// No Redis at all (not an ignored test): DPoP requests are served, each
/// proof once per replica, and every such acceptance is counted.
#[tokio::test]
async fn without_redis_dpop_proofs_are_still_accepted_once_per_replica() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    drop(listener);
    let auth = TestAuthServer::start().await.unwrap();
    let shared = SharedCache::builder(url, SECRET)
        .circuit_breaker(2, Duration::from_secs(60))
        .build()
        .unwrap();
    let replica = dpop_replica(&auth, shared).await;
    let http = reqwest::Client::new();
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
    for round in 0..4 {
        let proof = proof_with_jti(&key, &token, &fresh_jti("no-redis"));
        let response = send_dpop(&http, &replica, &token, &proof).await;
        assert_eq!(response.status(), 200, "round {round}");
        assert_replay_refused(
            &send_dpop(&http, &replica, &token, &proof).await,
            "the replica's own cache",
        );
    }
    let stats = replica.introspector.stats().shared;
    assert_eq!(stats.dpop_local_only, 4, "{stats:?}");
    assert!(stats.breaker_open, "{stats:?}");
}
