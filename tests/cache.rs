//! The cache over real TCP, counting the test AS's introspection calls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks and tests fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Setup;
use tower_introspection::test_util::{Fault, TestAuthServer, TokenSpec};
use tower_introspection::Introspector;

#[tokio::test]
async fn concurrent_requests_with_one_new_token_make_one_call() {
    let s = Setup::new().await;
    let token = Arc::new(s.auth.mint_token("read"));
    s.auth.set_fault(Fault::Delay(Duration::from_millis(200)));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let introspector = s.introspector.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            introspector.validate(&token).await.is_ok()
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(s.auth.introspection_calls(), 1);
    let stats = s.introspector.stats();
    assert_eq!(stats.misses, 1000);
    assert!(stats.coalesced_waits >= 900, "{stats:?}");
    // The 1001st request is a hit.
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.auth.introspection_calls(), 1);
    assert_eq!(s.introspector.stats().hits, 1);
}

#[tokio::test]
async fn distinct_tokens_make_one_call_each() {
    let s = Setup::new().await;
    let tokens: Vec<String> = (0..1000).map(|_| s.auth.mint_token("read")).collect();
    let mut tasks = Vec::new();
    for token in tokens.clone() {
        let introspector = s.introspector.clone();
        tasks.push(tokio::spawn(async move {
            introspector.validate(&token).await.is_ok()
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(s.auth.introspection_calls(), 1000);
    for token in &tokens[..10] {
        s.introspector.validate(token).await.unwrap();
    }
    assert_eq!(s.auth.introspection_calls(), 1000, "cached tokens make no call");
}

/// I9: an active answer is cached until the token's `exp` and no longer, even
/// when `max_ttl` and the leeway would allow more. The leeway keeps the local
/// `exp` check from rejecting the token, so only the cache expiry can make the
/// AS be asked again: a cached entry would answer 200 without a call.
#[tokio::test]
async fn i9_exp_bounds_the_cache_lifetime() {
    let s = Setup::with(
        |b| {
            b.max_ttl(Duration::from_secs(300))
                .leeway(Duration::from_secs(60))
        },
        |l| l,
    )
    .await;
    let token = s
        .auth
        .mint(TokenSpec::new().scope("read").exp_in(Duration::from_secs(2)));
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.auth.introspection_calls(), 1, "the second request was a hit");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!s.auth.is_active(&token), "exp has passed at the AS");
    let status = s.status("/ping", Some(&token)).await;
    assert_eq!(
        s.auth.introspection_calls(),
        2,
        "the entry left the cache at exp, so the AS was asked again"
    );
    assert_eq!(status, 401, "the AS answered inactive");
}

#[tokio::test]
async fn max_ttl_shorter_than_exp_forces_a_new_call() {
    let s = Setup::with(|b| b.max_ttl(Duration::from_millis(500)), |l| l).await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.auth.introspection_calls(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.auth.introspection_calls(), 2);
}

#[tokio::test]
async fn i11_zero_max_ttl_disables_caching() {
    let s = Setup::with(|b| b.max_ttl(Duration::ZERO), |l| l).await;
    let token = s.auth.mint_token("read");
    for _ in 0..3 {
        assert_eq!(s.status("/ping", Some(&token)).await, 200);
    }
    assert_eq!(s.auth.introspection_calls(), 3);
}

/// Without a cache, every answer still goes through the same checks: an
/// inactive or expired token and an AS fault are refused, not let through.
#[tokio::test]
async fn i11_without_a_cache_inactive_tokens_and_faults_are_refused() {
    let s = Setup::with(|b| b.max_ttl(Duration::ZERO), |l| l).await;
    let revoked = s.auth.mint_token("read");
    s.auth.revoke(&revoked);
    assert_eq!(s.status("/ping", Some(&revoked)).await, 401);
    assert_eq!(s.status("/ping", Some("unknown")).await, 401);
    let expired = s.auth.mint(
        TokenSpec::new()
            .scope("read")
            .exp_ago(Duration::from_secs(5))
            .active_even_if_expired(),
    );
    assert_eq!(s.status("/ping", Some(&expired)).await, 401);
    let token = s.auth.mint_token("read");
    s.auth.set_fault_times(Fault::Status(500), 1);
    assert_eq!(s.status("/ping", Some(&token)).await, 503);
    let response = s.get("/whoami", Some(&token)).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "read", "the answer's claims, not empty ones");
    assert_eq!(s.auth.introspection_calls(), 5);
}

#[tokio::test]
async fn inactive_answers_are_cached_for_negative_ttl() {
    let s = Setup::with(|b| b.negative_ttl(Duration::from_millis(500)), |l| l).await;
    assert_eq!(s.status("/ping", Some("unknown")).await, 401);
    assert_eq!(s.status("/ping", Some("unknown")).await, 401);
    assert_eq!(s.auth.introspection_calls(), 1);
    assert_eq!(s.introspector.stats().negative_hits, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.status("/ping", Some("unknown")).await, 401);
    assert_eq!(s.auth.introspection_calls(), 2);
}

#[tokio::test]
async fn fault_then_recovery_makes_a_new_call() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    s.auth.set_fault_times(Fault::Status(500), 1);
    assert_eq!(s.status("/ping", Some(&token)).await, 503);
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.auth.introspection_calls(), 2);
    let stats = s.introspector.stats();
    assert_eq!(
        (stats.introspections.as_fault, stats.introspections.active),
        (1, 1)
    );
}

/// A flood of unknown tokens overflows the bounded inactive cache, which
/// evicts among its own entries, but never evicts an active entry: the
/// active token is still answered from the cache afterwards.
#[tokio::test]
async fn random_token_flood_cannot_evict_an_active_entry() {
    const CAPACITY: u64 = 100;
    const WORKERS: usize = 8;
    const PER_WORKER: usize = 250; // 20 times the capacity in all
    let flood = |worker: usize, i: usize| format!("random-{worker}-{i}");
    let auth = TestAuthServer::start().await.unwrap();
    // TTLs far beyond the test's run time: only capacity can remove an entry.
    let introspector = common::builder(&auth)
        .max_entries(CAPACITY)
        .max_ttl(Duration::from_secs(3600))
        .negative_entries(CAPACITY)
        .negative_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let token = auth.mint_token("read");
    introspector.validate(&token).await.unwrap();

    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let introspector = introspector.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WORKER {
                assert!(introspector.validate(&flood(worker, i)).await.is_err());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    introspector.run_pending_tasks().await;
    let calls = auth.introspection_calls();
    assert_eq!(
        calls,
        1 + WORKERS * PER_WORKER,
        "every random token was introspected"
    );
    introspector.validate(&token).await.unwrap();
    assert_eq!(
        auth.introspection_calls(),
        calls,
        "the active token is still cached"
    );
    let stats = introspector.stats();
    assert!(
        stats.negative_entries > 0 && stats.negative_entries <= CAPACITY,
        "the inactive cache is full, not larger: {stats:?}"
    );

    // The pressure was real: at most CAPACITY of these 2 × CAPACITY inactive
    // answers can still be cached, so the AS is asked again for the others.
    let sample = usize::try_from(2 * CAPACITY).unwrap();
    for i in 0..sample {
        assert!(introspector.validate(&flood(0, i)).await.is_err());
    }
    let asked_again = auth.introspection_calls() - calls;
    assert!(
        asked_again >= sample / 2,
        "inactive answers were evicted: {asked_again} of {sample} asked again"
    );
}

#[tokio::test]
async fn a5_scope_checks_run_after_the_cache() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("a");
    assert_eq!(s.status("/a", Some(&token)).await, 200);
    let response = s.get("/b", Some(&token)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        common::challenge(&response),
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"b\""
    );
    assert_eq!(s.auth.introspection_calls(), 1);
}

#[tokio::test]
async fn invalidate_forces_a_new_call_and_rejects_a_revoked_token() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    s.introspector.invalidate(&token).await;
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(s.auth.introspection_calls(), 2);

    s.auth.revoke(&token);
    assert_eq!(
        s.status("/ping", Some(&token)).await,
        200,
        "still cached until invalidated"
    );
    s.introspector.invalidate(&token).await;
    assert_eq!(s.status("/ping", Some(&token)).await, 401);

    let other = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&other)).await, 200);
    s.introspector.invalidate_all();
    assert_eq!(s.status("/ping", Some(&other)).await, 200);
    assert_eq!(s.auth.introspection_calls(), 5);
}

#[tokio::test]
async fn dropped_first_caller_does_not_fail_the_others() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::introspector(&auth);
    let token = Arc::new(auth.mint_token("read"));
    auth.set_fault(Fault::Delay(Duration::from_millis(300)));

    let first = {
        let (introspector, token) = (introspector.clone(), token.clone());
        tokio::spawn(async move { introspector.validate(&token).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut followers = Vec::new();
    for _ in 0..20 {
        let (introspector, token) = (introspector.clone(), token.clone());
        followers.push(tokio::spawn(async move { introspector.validate(&token).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.abort();
    for follower in followers {
        assert!(follower.await.unwrap().is_ok(), "a follower failed");
    }
    assert!(auth.introspection_calls() <= 2, "{}", auth.introspection_calls());
}

#[tokio::test]
async fn two_layers_share_one_introspector_cache() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector: Introspector = common::introspector(&auth);
    let a = common::serve(common::app(tower_introspection::IntrospectionLayer::new(
        introspector.clone(),
    )))
    .await;
    let b = common::serve(common::app(tower_introspection::IntrospectionLayer::new(
        introspector.clone(),
    )))
    .await;
    let token = auth.mint_token("read");
    let http = reqwest::Client::new();
    for base in [a, b] {
        let response = http
            .get(format!("{base}/ping"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(auth.introspection_calls(), 1);
}

/// Hits are served from a read index beside moka; whatever moka evicts
/// must leave the index too, or an evicted answer would be used until its
/// `exp` and the capacity would bound nothing.
#[tokio::test]
async fn an_answer_evicted_for_capacity_is_introspected_again() {
    const CAPACITY: u64 = 10;
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::builder(&auth)
        .max_entries(CAPACITY)
        .max_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let tokens: Vec<String> = (0..3 * CAPACITY).map(|_| auth.mint_token("read")).collect();
    for token in &tokens {
        introspector.validate(token).await.unwrap();
    }
    introspector.run_pending_tasks().await;
    let cached = introspector.stats().entries;
    assert!(cached <= CAPACITY, "moka kept to its capacity: {cached}");
    let before = auth.introspection_calls();
    for token in &tokens {
        introspector.validate(token).await.unwrap();
    }
    let asked_again = u64::try_from(auth.introspection_calls() - before).unwrap();
    assert!(
        asked_again >= 3 * CAPACITY - cached,
        "every evicted answer was asked for again: {asked_again} calls, {cached} cached"
    );
}
