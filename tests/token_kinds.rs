//! Only access tokens are accepted: an active answer that says it describes
//! a refresh or ID token is 401 `invalid_token` (over real TCP, one test per
//! convention), and a configuration that checks neither audience nor issuer
//! says so once, at build time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Setup;
use serde_json::json;
use tower_introspection::test_util::TokenSpec;

async fn refused(claim: &str, value: &str, kind: &str) {
    let s = Setup::new().await;
    let token = s
        .auth
        .mint(TokenSpec::new().scope("read").claim(claim, json!(value)));
    let response = s.get("/ping", Some(&token)).await;
    assert_eq!(response.status(), 401, "{claim}: {value}");
    assert_eq!(
        common::challenge(&response),
        format!("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{kind} is not an access token\""),
        "{claim}: {value}"
    );
}

/// Ory Hydra introspects refresh tokens too and marks them `token_use`.
#[tokio::test]
async fn hydra_refresh_token_is_refused() {
    refused("token_use", "refresh_token", "a refresh token").await;
}

/// Amazon Cognito marks ID tokens `token_use: id`.
#[tokio::test]
async fn token_use_id_is_refused() {
    refused("token_use", "id", "an ID token").await;
}

/// Keycloak marks refresh tokens `typ: Refresh` (and offline ones `Offline`).
#[tokio::test]
async fn keycloak_refresh_and_offline_tokens_are_refused() {
    refused("typ", "Refresh", "a refresh token").await;
    refused("typ", "Offline", "a refresh token").await;
}

/// Keycloak marks ID tokens `typ: ID`.
#[tokio::test]
async fn keycloak_id_token_is_refused() {
    refused("typ", "ID", "an ID token").await;
}

#[tokio::test]
async fn access_tokens_marked_as_such_pass() {
    let s = Setup::new().await;
    for (claim, value) in [("token_use", "access_token"), ("typ", "Bearer")] {
        let token = s
            .auth
            .mint(TokenSpec::new().scope("read").claim(claim, json!(value)));
        assert_eq!(s.status("/ping", Some(&token)).await, 200, "{claim}: {value}");
    }
}

#[tokio::test]
async fn other_kinds_pass_when_allowed() {
    let s = Setup::with(|b| b.accept_any_token_kind(true), |l| l).await;
    let token = s.auth.mint(
        TokenSpec::new()
            .scope("read")
            .claim("token_use", json!("refresh_token")),
    );
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
}

const UNCHECKED: &str = "no expected audience or issuer is configured";

#[tokio::test]
async fn no_audience_or_issuer_warns_once_at_build() {
    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let logs = common::capture_logs();
    let introspector = common::introspector(&auth);
    let warning = logs.text();
    assert!(
        warning.contains("WARN") && warning.contains(UNCHECKED),
        "{warning}"
    );
    let token = auth.mint_token("read");
    introspector.validate(&token).await.unwrap();
    introspector.validate(&token).await.unwrap();
    assert_eq!(logs.text().matches(UNCHECKED).count(), 1, "at build only");
}

#[tokio::test]
async fn an_expected_audience_or_issuer_silences_the_warning() {
    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let logs = common::capture_logs();
    common::builder(&auth)
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    common::builder(&auth)
        .expected_issuer(auth.issuer())
        .build()
        .unwrap();
    assert!(!logs.text().contains(UNCHECKED), "{}", logs.text());
}
