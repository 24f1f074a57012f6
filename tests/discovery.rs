//! Discovery (RFC 8414 / OpenID Connect) against the test AS and small
//! hand-written metadata servers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_introspection::test_util::TestAuthServer;
use tower_introspection::{introspection::DiscoveryKind, ConfigError, Introspector};

#[tokio::test]
async fn rfc8414_and_oidc_discovery_configure_the_endpoint() {
    let auth = TestAuthServer::start().await.unwrap();
    for kind in [
        DiscoveryKind::Any,
        DiscoveryKind::Rfc8414,
        DiscoveryKind::OpenIdConnect,
    ] {
        let metadata = Introspector::discover(auth.issuer())
            .kind(kind)
            .metadata()
            .await
            .unwrap();
        assert_eq!(metadata.issuer, auth.issuer());
        assert_eq!(
            metadata.introspection_endpoint.as_deref(),
            Some(auth.introspection_url().as_str())
        );
        assert_eq!(
            metadata.token_endpoint.as_deref(),
            Some(auth.token_url().as_str())
        );
    }
    let introspector = Introspector::discover(auth.issuer())
        .introspector()
        .await
        .unwrap()
        .client_secret_basic(common::RS_ID, common::RS_SECRET)
        .build()
        .unwrap();
    let token = auth.mint_token("read");
    introspector.validate(&token).await.unwrap();
}

#[tokio::test]
async fn d2_issuer_mismatch_is_refused() {
    let auth = TestAuthServer::start().await.unwrap();
    let with_slash = format!("{}/", auth.issuer());
    let error = Introspector::discover(with_slash).metadata().await.unwrap_err();
    assert!(matches!(error, ConfigError::Discovery(_)), "{error}");
    auth.set_issuer("https://impostor.example");
    let error = Introspector::discover(auth.base_url())
        .metadata()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("impostor"), "{error}");
}

#[tokio::test]
async fn d6_failed_fetch_is_retried_and_not_remembered() {
    let auth = TestAuthServer::start().await.unwrap();
    auth.set_metadata_failures(1);
    Introspector::discover(auth.issuer())
        .kind(DiscoveryKind::Rfc8414)
        .retries(3, Duration::from_millis(10))
        .metadata()
        .await
        .expect("the second try succeeds");

    auth.set_metadata_failures(100);
    let discovery = Introspector::discover(auth.issuer())
        .kind(DiscoveryKind::Rfc8414)
        .retries(2, Duration::from_millis(10));
    assert!(discovery.metadata().await.is_err());
    auth.set_metadata_failures(0);
    discovery.metadata().await.expect("a later call fetches again");
}

/// Serves `metadata(issuer)` at both well-known locations for the issuer
/// `http://127.0.0.1:PORT/tenant`; returns the issuer.
async fn metadata_server(metadata: impl FnOnce(String) -> serde_json::Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/tenant", listener.local_addr().unwrap());
    let document = metadata(issuer.clone());
    let serve = move || {
        let document = document.clone();
        async move { Json(document) }
    };
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server/tenant",
            get(serve.clone()),
        )
        .route("/tenant/.well-known/openid-configuration", get(serve));
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

#[tokio::test]
async fn d3_missing_introspection_endpoint_is_a_clear_error() {
    let issuer =
        metadata_server(|issuer| json!({"issuer": issuer, "token_endpoint": format!("{issuer}/token")}))
            .await;
    let error = Introspector::discover(&issuer).introspector().await.unwrap_err();
    assert!(error.to_string().contains("no introspection_endpoint"), "{error}");
}

#[tokio::test]
async fn d4_unlisted_auth_method_is_refused() {
    let issuer = metadata_server(|issuer| {
        json!({
            "issuer": issuer,
            "introspection_endpoint": format!("{issuer}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_post"],
        })
    })
    .await;
    let builder = Introspector::discover(&issuer).introspector().await.unwrap();
    let error = builder.client_secret_basic("a", "b").build().unwrap_err();
    assert!(error.to_string().contains("client_secret_basic"), "{error}");
    let builder = Introspector::discover(&issuer).introspector().await.unwrap();
    builder
        .client_secret_post("a", "b")
        .build()
        .expect("a listed method");
    let key = tower_introspection::introspection::ClientKey::from_pkcs8_pem(
        &tower_introspection::test_util::client_private_key_pem(
            &tower_introspection::test_util::JwtAlg::EdDsa,
            0,
        )
        .unwrap(),
    )
    .unwrap();
    let builder = Introspector::discover(&issuer).introspector().await.unwrap();
    let error = builder.private_key_jwt("a", key).build().unwrap_err();
    assert!(error.to_string().contains("private_key_jwt"), "{error}");
}

#[tokio::test]
async fn d1_issuer_with_a_path_uses_both_locations() {
    let issuer = metadata_server(
        |issuer| json!({"issuer": issuer, "introspection_endpoint": format!("{issuer}/introspect")}),
    )
    .await;
    for kind in [DiscoveryKind::Rfc8414, DiscoveryKind::OpenIdConnect] {
        let metadata = Introspector::discover(&issuer)
            .kind(kind)
            .metadata()
            .await
            .unwrap();
        assert_eq!(
            metadata.introspection_endpoint,
            Some(format!("{issuer}/introspect"))
        );
    }
}
