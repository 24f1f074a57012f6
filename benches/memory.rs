//! Bytes per cached entry for a Django OAuth Toolkit–shaped answer, measured
//! with a counting global allocator at 100 000 entries.
//!
//! ```text
//! cargo bench --bench memory
//! ```
//!
//! The cache is filled through the real path (one introspection call per
//! token against the in-process test AS). The figure is the heap the entries
//! hold: the live bytes freed when every entry is invalidated, divided by the
//! number of entries. The heap growth over the whole fill is printed too; it
//! also holds what the HTTP path and the runtime keep (buffers, pools), which
//! is not per entry.
//!
//! A second part checks the byte budget: 3 000 distinct tokens whose answers
//! carry ~60 KB each (180 MB in all) go through a cache with the default
//! 64 MiB budget. It prints the heap the cache holds afterwards, its own
//! weighed size, and the process's RSS growth over the fill.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks and tests fail loudly

use std::alloc::System;
use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower_introspection::test_util::{AnswerShape, TestAuthServer, TokenSpec};
use tower_introspection::Introspector;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARM: usize = 1_000;
const ENTRIES: usize = 100_000;

/// Live heap growth since the region began. stats_alloc books a reallocation
/// as a new allocation plus the release of the old block, so allocated minus
/// deallocated is the net change.
fn live_bytes(region: &Region<'_, System>) -> isize {
    let stats = region.change();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let auth = TestAuthServer::start().await.expect("test AS");
        auth.set_shape(AnswerShape::Dot);
        let introspector = Introspector::builder(auth.introspection_url())
            .client_secret_basic("rs-client", "rs-secret")
            .max_entries(200_000)
            // The per-entry figure needs every entry kept: no byte bound.
            .max_bytes(1 << 40)
            .max_ttl(Duration::from_secs(3600))
            .build()
            .expect("introspector");
        let tokens: Vec<String> = (0..WARM + ENTRIES)
            .map(|_| {
                auth.mint(
                    TokenSpec::new()
                        .scope("read write")
                        .client_id("pw-client")
                        .username("alice")
                        .exp_in(Duration::from_secs(36_000)),
                )
            })
            .collect();

        let fill = |range: std::ops::Range<usize>| {
            let introspector = introspector.clone();
            let tokens = tokens[range].to_vec();
            async move {
                for chunk in tokens.chunks(64) {
                    let calls = chunk.iter().map(|t| introspector.validate(t));
                    for result in futures_join(calls).await {
                        result.expect("active");
                    }
                }
                introspector.run_pending_tasks().await;
            }
        };

        fill(0..WARM).await;
        let region = Region::new(GLOBAL);
        fill(WARM..WARM + ENTRIES).await;
        let grown = live_bytes(&region);
        let stats = introspector.stats();
        assert_eq!(stats.entries as usize, WARM + ENTRIES, "every answer is cached");
        introspector.invalidate_all();
        introspector.run_pending_tasks().await;
        assert_eq!(introspector.stats().entries, 0, "every entry is gone");
        let freed = grown - live_bytes(&region);
        let per_entry = freed as f64 / stats.entries as f64;
        println!("memory/entries: {}", stats.entries);
        println!("memory/heap_growth_during_fill_bytes: {grown}");
        println!("memory/bytes_freed_by_invalidate_all: {freed}");
        println!("memory/bytes_per_entry: {per_entry:.0}");
        println!(
            "memory/verdict: {} (budget 512 bytes per entry)",
            if per_entry <= 512.0 {
                "within budget"
            } else {
                "OVER budget"
            }
        );
        drop(tokens);
        byte_budget(&auth).await;
    });
}

const LARGE: usize = 3_000;
const BLOB_BYTES: usize = 60_000;

/// The default 64 MiB budget against 3 000 answers of ~60 KB.
async fn byte_budget(auth: &TestAuthServer) {
    let budget = tower_introspection::cache::DEFAULT_MAX_BYTES;
    // Every member of the answer, the large one included.
    auth.set_shape(AnswerShape::Full);
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .max_ttl(Duration::from_secs(3600))
        .build()
        .expect("introspector");
    let blob = serde_json::Value::from("x".repeat(BLOB_BYTES));
    let tokens: Vec<String> = (0..LARGE)
        .map(|_| auth.mint(TokenSpec::new().scope("read").claim("blob", blob.clone())))
        .collect();
    let rss_before = rss_bytes();
    let region = Region::new(GLOBAL);
    for token in &tokens {
        introspector.validate(token).await.expect("active");
    }
    introspector.run_pending_tasks().await;
    let grown = live_bytes(&region);
    let rss_grown = rss_bytes().saturating_sub(rss_before);
    let stats = introspector.stats();
    introspector.invalidate_all();
    introspector.run_pending_tasks().await;
    let held = grown - live_bytes(&region);
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    println!("budget/answers: {LARGE} of ~{BLOB_BYTES} bytes");
    println!("budget/max_bytes: {:.1} MiB", mib(budget as f64));
    println!("budget/entries_kept: {}", stats.entries);
    println!("budget/weighed_bytes: {:.1} MiB", mib(stats.bytes as f64));
    println!("budget/heap_held_by_entries: {:.1} MiB", mib(held as f64));
    println!("budget/heap_growth_during_fill: {:.1} MiB", mib(grown as f64));
    println!("budget/rss_growth_during_fill: {:.1} MiB", mib(rss_grown as f64));
    println!(
        "budget/verdict: {} (heap held within the budget plus 8 MiB)",
        if (held as f64) <= budget as f64 + 8.0 * 1024.0 * 1024.0 {
            "within budget"
        } else {
            "OVER budget"
        }
    );
}

/// The resident set size, from `/proc/self/statm` (0 where there is none).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for future in futures {
        set.push(future);
    }
    let mut out = Vec::with_capacity(set.len());
    // Sequential awaiting is enough: the point is the final heap, not speed.
    for future in set {
        out.push(future.await);
    }
    out
}
