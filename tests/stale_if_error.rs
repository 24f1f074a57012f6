//! Stale-if-error serves a stale answer only while the AS is *unavailable*
//! (connection failures, timeouts, 5xx, 429), and a refresh always reaches
//! the AS, however short `max_ttl` is. Over real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Setup;
use tower_introspection::test_util::Fault;

async fn setup() -> Setup {
    Setup::with(
        |b| {
            b.max_ttl(Duration::from_millis(200))
                .stale_if_error(Duration::from_secs(30))
        },
        |l| l,
    )
    .await
}

/// Before: any status other than 200/401/403, and any unusable body, counted
/// as "AS unavailable", so an AS answering a revoked token with a 4xx kept
/// it alive for the whole grace period.
#[tokio::test]
async fn an_as_that_answers_unusably_gets_no_grace() {
    for fault in [
        Fault::Status(400),
        Fault::Status(404),
        Fault::Status(410),
        Fault::Redirect("http://127.0.0.1:9/elsewhere".into()),
        Fault::Html,
        Fault::JsonArray,
    ] {
        let s = setup().await;
        let token = s.auth.mint_token("read");
        assert_eq!(s.status("/ping", Some(&token)).await, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.auth.set_fault(fault.clone());
        assert_eq!(s.status("/ping", Some(&token)).await, 503, "{fault:?}");
        assert_eq!(s.introspector.stats().stale_served, 0, "{fault:?}");
    }
}

#[tokio::test]
async fn transient_faults_get_the_grace() {
    for fault in [Fault::Status(500), Fault::Status(503), Fault::Status(429)] {
        let s = setup().await;
        let token = s.auth.mint_token("read");
        assert_eq!(s.status("/ping", Some(&token)).await, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.auth.set_fault(fault.clone());
        assert_eq!(s.status("/ping", Some(&token)).await, 200, "{fault:?}");
        assert_eq!(s.introspector.stats().stale_served, 1, "{fault:?}");
    }
}

/// Before: the cache that coalesces refreshes kept each answer for 1 s, so
/// with `max_ttl` under a second, a refresh within that second was answered
/// from it and never reached the AS: a revoked token kept working.
#[tokio::test]
async fn every_refresh_reaches_the_as_however_short_max_ttl() {
    let s = setup().await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(s.status("/ping", Some(&token)).await, 200, "refreshed");
    assert_eq!(s.auth.introspection_calls(), 2);
    s.auth.revoke(&token);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        s.status("/ping", Some(&token)).await,
        401,
        "the second refresh asked the AS, which said inactive"
    );
    assert_eq!(s.auth.introspection_calls(), 3);
}

/// The grace is checked when the refresh fails, not when it starts: a
/// refresh that outlasts the grace (here an AS that hangs until our timeout)
/// does not fall back to the stale answer.
#[tokio::test]
async fn a_refresh_that_outlasts_the_grace_serves_nothing_stale() {
    let s = Setup::with(
        |b| {
            b.max_ttl(Duration::from_millis(100))
                .stale_if_error(Duration::from_millis(600))
                .timeout(Duration::from_millis(500))
        },
        |l| l,
    )
    .await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.auth.set_fault(Fault::Hang);
    // Stale and within the grace when asked; past it when the call times out.
    assert_eq!(s.status("/ping", Some(&token)).await, 503);
    assert_eq!(s.introspector.stats().stale_served, 0);
}
