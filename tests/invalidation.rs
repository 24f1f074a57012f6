//! Invalidation against loads in flight, over real TCP: an invalidation is
//! never lost to an answer that was on its way, and it spoils only the loads
//! of its own token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower_introspection::test_util::{Fault, TestAuthServer};

/// Before: one global generation counter, so every `invalidate(x)` made every
/// load in flight, for any token, uncacheable. With an unrelated token
/// invalidated every 10 ms while 100 tokens are validated against a 50 ms
/// AS, the second round made 100 more calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_one_token_does_not_spoil_the_loads_of_others() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::introspector(&auth);
    let tokens: Vec<String> = (0..100).map(|_| auth.mint_token("read")).collect();
    let unrelated = auth.mint_token("read");
    auth.set_fault(Fault::Delay(Duration::from_millis(50)));

    let stop = Arc::new(AtomicBool::new(false));
    let invalidator = {
        let (introspector, stop) = (introspector.clone(), stop.clone());
        tokio::spawn(async move {
            let mut invalidations = 0;
            while !stop.load(Ordering::SeqCst) {
                introspector.invalidate(&unrelated).await;
                invalidations += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            invalidations
        })
    };
    for _round in 0..2 {
        let tasks: Vec<_> = tokens
            .iter()
            .cloned()
            .map(|token| {
                let introspector = introspector.clone();
                tokio::spawn(async move { introspector.validate(&token).await.is_ok() })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap());
        }
    }
    stop.store(true, Ordering::SeqCst);
    let invalidations = invalidator.await.unwrap();
    assert!(
        invalidations >= 5,
        "the invalidations overlapped the loads ({invalidations})"
    );
    assert_eq!(auth.introspection_calls(), 100, "one call per token, not 200");
}

/// The invariant: once `invalidate(token)` has returned, no answer that was
/// requested before it is served from the cache. Each round starts a load,
/// waits until it reached the AS, invalidates at a varying moment around its
/// end, and checks that the next validation asks the AS again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_requested_before_an_invalidation_outlives_it() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::introspector(&auth);
    for round in 0..60u64 {
        let token = auth.mint_token("read");
        auth.set_fault_times(Fault::Delay(Duration::from_millis(5)), 1);
        let calls_before = auth.introspection_calls();
        let load = {
            let (introspector, token) = (introspector.clone(), token.clone());
            tokio::spawn(async move { introspector.validate(&token).await })
        };
        while auth.introspection_calls() == calls_before {
            tokio::task::yield_now().await;
        }
        // 0 to 9 ms: before, around and after the answer arrives.
        tokio::time::sleep(Duration::from_micros(round % 10 * 1000)).await;
        introspector.invalidate(&token).await;
        load.await.unwrap().unwrap();
        introspector.validate(&token).await.unwrap();
        assert_eq!(
            auth.introspection_calls(),
            calls_before + 2,
            "round {round}: an answer from before the invalidation was served from the cache"
        );
    }
}
