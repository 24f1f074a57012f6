//! The resource server's own bearer credential (client-credentials mode)
//! under failure: one fetch shared by every waiting request, a backoff after
//! a failure, the current credential kept while a refresh fails, and a floor
//! on the refresh interval. Over real TCP, against a small scripted AS whose
//! token endpoint can hang, fail or answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use serde_json::json;
use tower_introspection::{ErrorKind, Introspector};

/// What the token endpoint does next.
#[derive(Clone, Copy)]
enum TokenEndpoint {
    /// Issues a new token with this `expires_in`.
    Issue { expires_in: u64 },
    /// Never answers.
    Hang,
    /// Answers this status.
    Fail(u16),
}

/// A scripted AS: the token endpoint follows `mode`; the introspection
/// endpoint accepts any `Bearer` token the token endpoint issued (expiry is
/// the resource server's business here) and answers every token active.
#[derive(Clone)]
struct ScriptedAs {
    base: String,
    mode: Arc<Mutex<TokenEndpoint>>,
    token_calls: Arc<AtomicUsize>,
    introspection_calls: Arc<AtomicUsize>,
}

impl ScriptedAs {
    async fn start(mode: TokenEndpoint) -> Self {
        let mode = Arc::new(Mutex::new(mode));
        let issued = Arc::new(Mutex::new(Vec::<String>::new()));
        let token_calls = Arc::new(AtomicUsize::new(0));
        let introspection_calls = Arc::new(AtomicUsize::new(0));
        let token = {
            let (mode, issued, calls) = (mode.clone(), issued.clone(), token_calls.clone());
            move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let mode = *mode.lock().unwrap();
                let issued = issued.clone();
                async move {
                    match mode {
                        TokenEndpoint::Issue { expires_in } => {
                            let token = format!("rs-token-{n}");
                            issued.lock().unwrap().push(token.clone());
                            (
                                StatusCode::OK,
                                Json(
                                    json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}),
                                ),
                            )
                        }
                        TokenEndpoint::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            (StatusCode::GATEWAY_TIMEOUT, Json(json!({})))
                        }
                        TokenEndpoint::Fail(status) => (
                            StatusCode::from_u16(status).unwrap(),
                            Json(json!({"error": "temporarily_unavailable"})),
                        ),
                    }
                }
            }
        };
        let introspect = {
            let (issued, calls) = (issued.clone(), introspection_calls.clone());
            move |headers: HeaderMap| {
                calls.fetch_add(1, Ordering::SeqCst);
                let bearer = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_owned);
                let known = bearer.is_some_and(|b| issued.lock().unwrap().contains(&b));
                async move {
                    if known {
                        (StatusCode::OK, Json(json!({"active": true, "scope": "read"})))
                    } else {
                        (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"})))
                    }
                }
            }
        };
        let app = axum::Router::new()
            .route("/token", post(token))
            .route("/introspect", post(introspect));
        Self {
            base: common::serve(app).await,
            mode,
            token_calls,
            introspection_calls,
        }
    }

    fn set(&self, mode: TokenEndpoint) {
        *self.mode.lock().unwrap() = mode;
    }

    fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }

    fn introspector(&self, timeout: Duration) -> Introspector {
        Introspector::builder(format!("{}/introspect", self.base))
            .bearer_from_client_credentials(format!("{}/token", self.base), "rs", "secret")
            .timeout(timeout)
            // Every validation below is a new introspection.
            .max_ttl(Duration::ZERO)
            .build()
            .unwrap()
    }
}

/// Before: each waiting caller fetched again after the previous one timed
/// out, one after another (the 8th waited about 8 × timeout).
#[tokio::test]
async fn a_hanging_token_endpoint_costs_every_waiter_one_timeout_at_most() {
    let scripted = ScriptedAs::start(TokenEndpoint::Hang).await;
    let timeout = Duration::from_millis(400);
    let introspector = scripted.introspector(timeout);
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let introspector = introspector.clone();
            tokio::spawn(async move { introspector.validate(&format!("token-{i}")).await })
        })
        .collect();
    for task in tasks {
        let error = task.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < timeout * 2,
        "8 validations took {elapsed:?} with a {timeout:?} timeout"
    );
    assert_eq!(scripted.token_calls(), 1, "one fetch, shared by all eight");
}

/// After a failed fetch, requests within the backoff fail at once, without
/// asking the token endpoint again; after it, one fetch recovers.
#[tokio::test]
async fn a_failed_fetch_backs_off_then_recovers() {
    let scripted = ScriptedAs::start(TokenEndpoint::Fail(503)).await;
    let introspector = scripted.introspector(Duration::from_secs(2));
    for i in 0..5 {
        let error = introspector.validate(&format!("t{i}")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
    assert_eq!(scripted.token_calls(), 1, "no new fetch within the backoff");
    scripted.set(TokenEndpoint::Issue { expires_in: 3600 });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    introspector.validate("after").await.unwrap();
    introspector.validate("again").await.unwrap();
    assert_eq!(scripted.token_calls(), 2);
}

/// Before: once the early-refresh point had passed, a failed refresh was an
/// error although the current credential was still valid.
#[tokio::test]
async fn a_failed_early_refresh_keeps_the_current_credential() {
    // Refreshed at 4.5 s (a tenth of the life early), valid until 5 s.
    let scripted = ScriptedAs::start(TokenEndpoint::Issue { expires_in: 5 }).await;
    let introspector = scripted.introspector(Duration::from_secs(2));
    introspector.validate("first").await.unwrap();
    assert_eq!(scripted.token_calls(), 1);
    scripted.set(TokenEndpoint::Fail(503));
    tokio::time::sleep(Duration::from_millis(4650)).await;
    let principal = introspector.validate("in-the-window").await;
    assert!(principal.is_ok(), "{principal:?}");
    assert_eq!(scripted.token_calls(), 2, "the refresh was tried");
    assert_eq!(scripted.introspection_calls.load(Ordering::SeqCst), 2);
}

/// Before: `expires_in: 0` made one token fetch per introspection.
#[tokio::test]
async fn expires_in_zero_does_not_mean_a_fetch_per_introspection() {
    let scripted = ScriptedAs::start(TokenEndpoint::Issue { expires_in: 0 }).await;
    let introspector = scripted.introspector(Duration::from_secs(2));
    for i in 0..5 {
        introspector.validate(&format!("t{i}")).await.unwrap();
    }
    assert_eq!(scripted.token_calls(), 1);
}
