//! Revocation across a fleet (feature `redis`): from a revocation's arrival
//! at one replica to the moment every replica of three refuses the token it
//! had cached, over 1 000 revocations; then the memory a cut-off takes.
//!
//! ```text
//! eval "$(tests/interop/redis.sh start)"
//! cargo bench --features redis --bench revocation
//! ```
//!
//! Three replicas (each an `Introspector` with its own in-process cache and
//! its own Redis connection) share one Redis in front of the in-process
//! test AS. Per round: a token of a new subject is cached on all three,
//! replica 0 revokes the subject (what a logout or a security event does once
//! checked), and replicas 1 and 2 are asked for the token in a loop until
//! both refuse it. The figure is that time, p50 and p99.
//!
//! Then 100 000 cut-offs are recorded in a fresh verifier and the process's
//! resident memory growth is divided by them.
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs 20 rounds on
//! the in-memory store, to check that it works.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks fail loudly

use std::time::{Duration, Instant};

use tower_introspection::fleet::{MemoryStore, SharedCache};
use tower_introspection::revocation::Revocation;
use tower_introspection::test_util::{TestAuthServer, TokenSpec};
use tower_introspection::Introspector;

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

fn replica(auth: &TestAuthServer, shared: SharedCache) -> Introspector {
    Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .expected_issuer(auth.issuer())
        .max_ttl(Duration::from_secs(3600))
        .max_cutoffs(1_000_000)
        .shared_cache(shared)
        .build()
        .expect("introspector")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split(' ').nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let auth = TestAuthServer::start().await.unwrap();
        let memory = MemoryStore::new();
        let (store, rounds) = match (measuring, redis_url()) {
            (true, Some(url)) => (format!("Redis at {url}"), 1000),
            (true, None) => {
                println!("revocation: no Redis (REDIS_URL, or tests/interop/redis.sh start); skipped");
                return;
            }
            (false, _) => ("the in-memory store (a smoke run)".to_owned(), 20),
        };
        let prefix = format!("bench-revocation-{}:", std::process::id());
        let shared = || match redis_url().filter(|_| measuring) {
            Some(url) => SharedCache::builder(url, SECRET).key_prefix(&prefix).build().unwrap(),
            None => SharedCache::in_memory(&memory, SECRET).build().unwrap(),
        };
        let replicas: Vec<Introspector> = (0..3).map(|_| replica(&auth, shared())).collect();
        // Every replica subscribed (its first heartbeat).
        tokio::time::sleep(Duration::from_millis(300)).await;

        let mut latencies = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let subject = format!("user-{round}");
            let token = auth.mint(TokenSpec::new().sub(&subject));
            for replica in &replicas {
                replica.validate(&token).await.unwrap();
            }
            let start = Instant::now();
            replicas[0]
                .revoke(&Revocation::subject(auth.issuer(), &subject))
                .await
                .unwrap();
            let mut pending = vec![1, 2];
            while !pending.is_empty() {
                let mut still = Vec::new();
                for i in pending {
                    if replicas[i].validate(&token).await.is_ok() {
                        still.push(i);
                    }
                }
                pending = still;
                assert!(start.elapsed() < Duration::from_secs(5), "a replica never heard");
                tokio::task::yield_now().await;
            }
            latencies.push(start.elapsed());
        }
        latencies.sort_unstable();
        println!(
            "revocation to refusal on every replica of 3, through {store}, {rounds} revocations: p50 {:?}, p99 {:?}, max {:?}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1],
        );

        // Memory per cut-off: a fresh verifier without a fleet.
        let verifier = Introspector::builder(auth.introspection_url())
            .client_secret_basic("rs-client", "rs-secret")
            .expected_issuer(auth.issuer())
            .max_cutoffs(1_000_000)
            .build()
            .unwrap();
        let count = if measuring { 100_000 } else { 1_000 };
        let before = resident_bytes();
        for i in 0..count {
            verifier
                .revoke(&Revocation::session(auth.issuer(), format!("session-{i}")))
                .await
                .unwrap();
        }
        let grown = resident_bytes().saturating_sub(before);
        println!(
            "memory per cut-off: {} B ({count} cut-offs, resident memory growth)",
            grown / count
        );
    });
}
