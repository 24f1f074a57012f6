//! Faults of the authorization server, one test each over real TCP: the
//! answer to the client, nothing cached, and recovery once the AS heals.
//! Also stale-if-error and the bound on concurrent introspection calls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Setup;
use tower_introspection::test_util::{Fault, TestAuthServer, TokenSpec};
use tower_introspection::{IntrospectionLayer, Introspector};

/// The fault gives `status`; nothing is cached; after `clear_fault` the same
/// token is introspected again and accepted.
async fn fault_row(fault: Fault, status: u16) {
    let s = Setup::with(|b| b.timeout(Duration::from_millis(300)), |l| l).await;
    let token = s.auth.mint_token("read");
    s.auth.set_fault(fault);
    let response = s.get("/ping", Some(&token)).await;
    assert_eq!(response.status(), status);
    assert!(
        response.headers().get("www-authenticate").is_none(),
        "AS faults carry no challenge"
    );
    if status == 503 {
        assert_eq!(response.headers()["retry-after"], "5");
    }
    s.introspector.run_pending_tasks().await;
    let stats = s.introspector.stats();
    assert_eq!(
        (stats.entries, stats.negative_entries),
        (0, 0),
        "nothing cached: {stats:?}"
    );
    s.auth.clear_fault();
    let calls = s.auth.introspection_calls();
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    assert_eq!(
        s.auth.introspection_calls(),
        calls + 1,
        "a new call after the AS healed"
    );
}

macro_rules! fault_rows {
    ($($name:ident: $fault:expr => $status:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                fault_row($fault, $status).await;
            }
        )*
    };
}

fault_rows! {
    hang_beyond_the_timeout: Fault::Hang => 503;
    slow_answer: Fault::Delay(Duration::from_millis(600)) => 503;
    status_500: Fault::Status(500) => 503;
    status_502: Fault::Status(502) => 503;
    status_503: Fault::Status(503) => 503;
    html_body: Fault::Html => 503;
    truncated_json: Fault::TruncatedJson => 503;
    body_over_the_cap: Fault::Oversized(65 * 1024) => 503;
    body_over_the_cap_without_content_length: Fault::OversizedChunked(65 * 1024) => 503;
    active_as_a_string: Fault::ActiveAsString => 503;
    active_as_a_number: Fault::ActiveAsNumber => 503;
    json_array_instead_of_object: Fault::JsonArray => 503;
    json_null_instead_of_object: Fault::JsonNull => 503;
    connection_closed_mid_answer: Fault::CloseConnection => 503;
    redirect_is_not_followed: Fault::Redirect("http://127.0.0.1:9/elsewhere".into()) => 503;
    our_credentials_rejected_401: Fault::Status(401) => 500;
    our_credentials_rejected_403: Fault::Status(403) => 500;
}

#[tokio::test]
async fn connection_refused_is_503() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let introspector = Introspector::builder(format!("http://{closed}/introspect"))
        .client_secret_basic("a", "b")
        .build()
        .unwrap();
    let error = introspector.validate("some-token").await.unwrap_err();
    assert_eq!(error.status(), 503);
    assert_eq!(introspector.stats().introspections.as_fault, 1);
}

#[tokio::test]
async fn token_endpoint_failure_while_fetching_the_bearer_credential() {
    let auth = TestAuthServer::start().await.unwrap();
    auth.register_client(
        tower_introspection::test_util::ClientSpec::new("rs-bearer", "s")
            .grants(&["client_credentials"])
            .scopes("introspection"),
    );
    let introspector = Introspector::builder(auth.introspection_url())
        .bearer_from_client_credentials(auth.token_url(), "rs-bearer", "s")
        .build()
        .unwrap();
    let token = auth.mint_token("read");
    auth.set_token_endpoint_fault(Some(Fault::Html));
    assert_eq!(introspector.validate(&token).await.unwrap_err().status(), 503);
    assert_eq!(auth.introspection_calls(), 0, "no call without a credential");
    auth.set_token_endpoint_fault(None);
    // A failed fetch is not retried within its backoff (1 s after a first
    // failure): still 503, without a new token request.
    assert_eq!(introspector.validate(&token).await.unwrap_err().status(), 503);
    assert_eq!(auth.token_calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    introspector.validate(&token).await.unwrap();
    assert_eq!(auth.token_calls(), 2);
}

#[tokio::test]
async fn stale_if_error_serves_recent_answers_while_the_as_is_down() {
    let s = Setup::with(
        |b| {
            b.max_ttl(Duration::from_millis(300))
                .stale_if_error(Duration::from_secs(2))
        },
        |l| l,
    )
    .await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    s.auth.set_fault(Fault::Status(503));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.status("/ping", Some(&token)).await,
        200,
        "inside the window: stale answer served"
    );
    assert_eq!(s.introspector.stats().stale_served, 1);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(s.status("/ping", Some(&token)).await, 503, "outside the window");
    s.auth.clear_fault();
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
}

#[tokio::test]
async fn stale_if_error_never_serves_past_exp_or_an_inactive_token() {
    let s = Setup::with(
        |b| {
            b.max_ttl(Duration::from_millis(200))
                .stale_if_error(Duration::from_secs(60))
        },
        |l| l,
    )
    .await;
    let short = s
        .auth
        .mint(TokenSpec::new().scope("read").exp_in(Duration::from_secs(2)));
    let revoked = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&short)).await, 200);
    assert_eq!(s.status("/ping", Some(&revoked)).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.auth.revoke(&revoked);
    assert_eq!(
        s.status("/ping", Some(&revoked)).await,
        401,
        "a refresh that says inactive wins"
    );
    s.auth.set_fault(Fault::Status(500));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // The entry left the cache at exp and the AS is down: not accepted.
    assert_eq!(s.status("/ping", Some(&short)).await, 503, "never past exp");
    assert_eq!(s.introspector.stats().stale_served, 0);
}

#[tokio::test]
async fn stale_if_error_is_off_by_default() {
    let s = Setup::with(|b| b.max_ttl(Duration::from_millis(200)), |l| l).await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    s.auth.set_fault(Fault::Status(503));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.status("/ping", Some(&token)).await, 503);
}

#[tokio::test]
async fn concurrent_introspections_are_bounded() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::builder(&auth)
        .max_concurrent_introspections(4, Duration::from_millis(250))
        .build()
        .unwrap();
    let base = common::serve(common::app(IntrospectionLayer::new(introspector.clone()))).await;
    auth.set_fault(Fault::Delay(Duration::from_millis(100)));
    let tokens: Vec<String> = (0..40).map(|_| auth.mint_token("read")).collect();
    let http = reqwest::Client::new();
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for token in tokens {
        let (http, base, statuses) = (http.clone(), base.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            let response = http
                .get(format!("{base}/ping"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            statuses.lock().unwrap().push(response.status().as_u16());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    assert!(
        auth.peak_concurrent_introspections() <= 4,
        "peak {}",
        auth.peak_concurrent_introspections()
    );
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let shed = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(ok + shed, 40, "{statuses:?}");
    assert!(ok >= 8 && shed >= 1, "{ok} accepted, {shed} shed");
    assert_eq!(introspector.stats().introspections.throttled as usize, shed);
}

#[tokio::test]
async fn stale_refresh_is_single_flight_and_backs_off_during_an_outage() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::builder(&auth)
        .max_ttl(Duration::from_millis(200))
        .stale_if_error(Duration::from_secs(30))
        .build()
        .unwrap();
    let token = Arc::new(auth.mint_token("read"));
    introspector.validate(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    auth.set_fault(Fault::Status(503));
    let calls = auth.introspection_calls();
    let wave = || {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (introspector, token) = (introspector.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                introspector.validate(&token).await.is_ok()
            }));
        }
        tasks
    };
    for task in wave() {
        assert!(task.await.unwrap(), "stale answer served");
    }
    assert!(
        auth.introspection_calls() - calls <= 2,
        "{} calls",
        auth.introspection_calls() - calls
    );
    let calls = auth.introspection_calls();
    for task in wave() {
        assert!(task.await.unwrap());
    }
    assert_eq!(
        auth.introspection_calls(),
        calls,
        "backing off: no call right after a failed refresh"
    );
    assert!(introspector.stats().stale_served >= 200);
}

#[tokio::test]
async fn leeway_applies_to_exp_without_caching() {
    let auth = TestAuthServer::start().await.unwrap();
    let token = auth.mint(
        TokenSpec::new()
            .scope("read")
            .exp_ago(Duration::from_secs(3))
            .active_even_if_expired(),
    );
    let lenient = common::builder(&auth)
        .leeway(Duration::from_secs(10))
        .build()
        .unwrap();
    lenient.validate(&token).await.expect("within the leeway");
    lenient.validate(&token).await.expect("within the leeway");
    assert_eq!(
        auth.introspection_calls(),
        2,
        "an answer past exp is never cached"
    );

    let strict = common::builder(&auth).build().unwrap();
    assert_eq!(strict.validate(&token).await.unwrap_err().status(), 401);
    assert_eq!(strict.validate(&token).await.unwrap_err().status(), 401);
    assert_eq!(
        auth.introspection_calls(),
        3,
        "past exp and the leeway: remembered as inactive"
    );
}

#[tokio::test]
async fn invalidate_during_an_introspection_call_is_not_lost() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::introspector(&auth);
    let token = Arc::new(auth.mint_token("read"));
    auth.set_fault(Fault::Delay(Duration::from_millis(300)));
    let in_flight = {
        let (introspector, token) = (introspector.clone(), token.clone());
        tokio::spawn(async move { introspector.validate(&token).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    introspector.invalidate(&token).await;
    let outcome = in_flight.await.unwrap();
    assert!(
        outcome.is_ok(),
        "the request in flight gets its answer: {outcome:?}"
    );
    auth.clear_fault();
    introspector.validate(&token).await.unwrap();
    assert_eq!(
        auth.introspection_calls(),
        2,
        "the answer that raced the invalidation was not cached"
    );
}

/// A tiny AS whose token endpoint answers `token_json` and whose
/// introspection endpoint answers `introspect_status` (with an active answer
/// on 200); returns its base URL and the number of token requests.
async fn scripted_as(
    token_json: serde_json::Value,
    introspect_status: u16,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::post;
    let token_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = token_calls.clone();
    let app = axum::Router::new()
        .route(
            "/token",
            post(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = token_json.clone();
                async move { axum::Json(body) }
            }),
        )
        .route(
            "/introspect",
            post(move || async move {
                let status = http::StatusCode::from_u16(introspect_status).unwrap();
                (
                    status,
                    axum::Json(serde_json::json!({"active": true, "scope": "read"})),
                )
            }),
        );
    let base = common::serve(app).await;
    (base, token_calls)
}

#[tokio::test]
async fn absurd_expires_in_does_not_panic() {
    let (base, _) = scripted_as(
        serde_json::json!({"access_token": "abc", "expires_in": 10_000_000_000_000_000_000u64}),
        200,
    )
    .await;
    let introspector = Introspector::builder(format!("{base}/introspect"))
        .bearer_from_client_credentials(format!("{base}/token"), "rs", "secret")
        .build()
        .unwrap();
    introspector
        .validate("t1")
        .await
        .expect("capped lifetime, no overflow");
    introspector.validate("t2").await.unwrap();
}

#[tokio::test]
async fn refused_bearer_credential_forces_at_most_one_fetch_per_interval() {
    let (base, token_calls) = scripted_as(
        serde_json::json!({"access_token": "abc", "expires_in": 3600}),
        401,
    )
    .await;
    let introspector = Introspector::builder(format!("{base}/introspect"))
        .bearer_from_client_credentials(format!("{base}/token"), "rs", "secret")
        .max_ttl(Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(introspector.validate("t").await.unwrap_err().status(), 500);
    }
    assert_eq!(
        token_calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the first fetch and one forced refresh, not one per request"
    );
}
