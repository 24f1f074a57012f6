//! The shared tier (feature `redis`): an in-process miss answered from Redis
//! next to one answered by the authorization server, in the same run.
//!
//! ```text
//! eval "$(tests/interop/redis.sh start)"
//! cargo bench --features redis --bench shared
//! ```
//!
//! - `shared/l2_hit`: a replica validates a token it has never seen, which
//!   another replica already introspected: one Redis round trip (a script
//!   that reads the value), opening the seal, parsing the claims, filling
//!   the in-process cache.
//! - `shared/redis_get_round_trip`: one `GET` through a redis-rs
//!   connection manager on the same runtime: the floor of an L2 hit.
//! - `shared/as_round_trip`: the same validation against the in-process
//!   test AS over loopback (cache off): one introspection call.
//! - `shared/as_round_trip_20ms`: the same with an AS that takes 20 ms.
//! - `shared/l1_hit`: the in-process hit of a replica with a shared tier
//!   (no network), for scale.
//!
//! Skipped, with a message, when no Redis answers at `REDIS_URL` (or the
//! harness's env file).

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks fail loudly

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tower_introspection::test_util::{Fault, TestAuthServer};
use tower_introspection::{fleet::SharedCache, Introspector};

const SECRET: &str = "the fleet secret of the benchmark, 32+ bytes";

fn redis_url() -> Option<String> {
    std::env::var("REDIS_URL").ok().or_else(|| {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/.run/redis/env");
        std::fs::read_to_string(file)
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("export REDIS_URL="))
            .map(str::to_owned)
    })
}

fn replica(auth: &TestAuthServer, url: &str, prefix: &str) -> Introspector {
    Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .max_ttl(Duration::from_secs(3600))
        .shared_cache(
            SharedCache::builder(url, SECRET)
                .key_prefix(prefix)
                .build()
                .expect("shared cache"),
        )
        .build()
        .expect("introspector")
}

fn shared(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(url) = redis_url() else {
        eprintln!("shared: skipped, no REDIS_URL: eval \"$(tests/interop/redis.sh start)\"");
        return;
    };
    let answering = runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
    });
    if answering.is_none() {
        eprintln!("shared: skipped, no Redis answers at {url}");
        return;
    }
    let auth = runtime.block_on(TestAuthServer::start()).expect("test AS");
    let prefix = format!("bench-{}:", std::process::id());
    let (writer, reader) =
        runtime.block_on(async { (replica(&auth, &url, &prefix), replica(&auth, &url, &prefix)) });
    let uncached = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .max_ttl(Duration::ZERO)
        .build()
        .expect("introspector");
    let token = auth.mint_token("read");

    let mut group = c.benchmark_group("shared");
    group.sample_size(30);
    group.bench_function("l2_hit", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (auth, writer, reader) = (&auth, &writer, &reader);
            async move {
                // Tokens the writer introspected and shared; the reader has
                // never seen them, so each validation is an L2 hit.
                let mut tokens = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    let token = auth.mint_token("read");
                    writer.validate(&token).await.expect("active");
                    tokens.push(token);
                }
                let hits = reader.stats().shared.hits;
                let started = Instant::now();
                for token in &tokens {
                    black_box(reader.validate(token).await.expect("active"));
                }
                let elapsed = started.elapsed();
                assert_eq!(reader.stats().shared.hits - hits, iters, "every one an L2 hit");
                elapsed
            }
        })
    });
    let conn = runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("client");
        redis::aio::ConnectionManager::new(client)
            .await
            .expect("connection")
    });
    group.bench_function("redis_get_round_trip", |b| {
        b.to_async(&runtime).iter(|| {
            let mut conn = conn.clone();
            async move {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg("bench-nothing")
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                black_box(value)
            }
        })
    });
    group.bench_function("as_round_trip", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(uncached.validate(&token).await.expect("active")) })
    });
    group.bench_function("l1_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(reader.validate(&token).await.expect("active")) })
    });
    group.sample_size(10);
    auth.set_fault(Fault::Delay(Duration::from_millis(20)));
    group.bench_function("as_round_trip_20ms", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(uncached.validate(&token).await.expect("active")) })
    });
    auth.clear_fault();
    group.finish();
    runtime.block_on(async {
        writer.invalidate_all();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = shared
}
criterion_main!(benches);
