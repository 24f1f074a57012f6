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
    });
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
