//! Settings are range-checked into errors, never panics, and the cache is
//! bounded in bytes: answers that carry large claims cannot grow it past its
//! budget, however many tokens are minted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tower_introspection::test_util::{TestAuthServer, TokenSpec};
use tower_introspection::ConfigError;

/// `examples/resource_server`, which `cargo test` builds beside the tests.
fn resource_server() -> Command {
    let mut command = Command::new(common::example("resource_server"));
    command
        .env("INTROSPECTION_URL", "http://127.0.0.1:9/introspect")
        .env("CLIENT_ID", "rs")
        .env("CLIENT_SECRET", "secret")
        .env("LISTEN_ADDR", "127.0.0.1:0");
    command
}

/// Before: moka's assertion on TTLs over 1000 years made the example panic
/// (exit 101) instead of exiting 2 with a message.
#[test]
fn a_huge_cache_ttl_is_a_configuration_error_not_a_panic() {
    for variable in ["CACHE_MAX_TTL_SECS", "CACHE_NEGATIVE_TTL_SECS"] {
        let output = resource_server().env(variable, "40000000000").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains("out of range"), "{variable}: {stderr}");
    }
}

#[tokio::test]
async fn every_duration_setting_is_range_checked() {
    let auth = TestAuthServer::start().await.unwrap();
    let huge = Duration::from_secs(40_000_000_000);
    let builds = [
        common::builder(&auth).max_ttl(huge).build(),
        common::builder(&auth).negative_ttl(huge).build(),
        common::builder(&auth).stale_if_error(huge).build(),
        common::builder(&auth).timeout(huge).build(),
        common::builder(&auth).connect_timeout(huge).build(),
        common::builder(&auth).leeway(huge).build(),
        common::builder(&auth)
            .max_concurrent_introspections(8, huge)
            .build(),
    ];
    for (i, built) in builds.into_iter().enumerate() {
        assert!(
            matches!(built, Err(ConfigError::OutOfRange { .. })),
            "setting #{i}: {built:?}"
        );
    }
}

/// ~60 KB answers against a 1 MiB budget: far more tokens than fit, and the
/// cache's weighed size stays within the budget while it keeps the recent
/// ones.
#[tokio::test]
async fn answers_with_large_claims_stay_within_the_byte_budget() {
    const BUDGET: u64 = 1024 * 1024;
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::builder(&auth).max_bytes(BUDGET).build().unwrap();
    let blob = "x".repeat(60_000);
    let tokens: Vec<String> = (0..60)
        .map(|_| auth.mint(TokenSpec::new().scope("read").claim("blob", json!(blob))))
        .collect();
    for token in &tokens {
        introspector.validate(token).await.unwrap();
    }
    introspector.run_pending_tasks().await;
    let stats = introspector.stats();
    assert!(stats.bytes <= BUDGET, "{stats:?}");
    assert!(stats.bytes > BUDGET / 2, "the budget is used: {stats:?}");
    assert!(
        (8..=17).contains(&stats.entries),
        "about 1 MiB / 60 KB entries: {stats:?}"
    );
    // Small answers are bounded by max_entries as before.
    let small = common::builder(&auth).max_entries(10).build().unwrap();
    for _ in 0..50 {
        small.validate(&auth.mint_token("read")).await.unwrap();
    }
    small.run_pending_tasks().await;
    assert!(small.stats().entries <= 10, "{:?}", small.stats());
}
