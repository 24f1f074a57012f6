//! Scope guards over real TCP: extractors, groups, matchers, route layer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks and tests fail loudly

mod common;

use common::{challenge, Setup};

#[tokio::test]
async fn all_of_requirement() {
    let s = Setup::new().await;
    let both = s.auth.mint_token("read write");
    let one = s.auth.mint_token("read");
    assert_eq!(s.status("/read-write", Some(&both)).await, 200);
    assert_eq!(s.status("/read-write", Some(&one)).await, 403);
}

#[tokio::test]
async fn any_of_requirement() {
    let s = Setup::new().await;
    for (scopes, status) in [("read", 200), ("admin", 200), ("write", 403), ("", 403)] {
        let token = s.auth.mint_token(scopes);
        assert_eq!(
            s.status("/read-or-admin", Some(&token)).await,
            status,
            "{scopes:?}"
        );
    }
    let token = s.auth.mint_token("write");
    let response = s.get("/read-or-admin", Some(&token)).await;
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"read\""
    );
}

#[tokio::test]
async fn or_of_and_groups() {
    let s = Setup::new().await;
    for (scopes, status) in [
        ("items:write items:read", 200),
        ("admin", 200),
        ("items:write", 403),
        ("items:read", 403),
    ] {
        let token = s.auth.mint_token(scopes);
        assert_eq!(s.status("/editors", Some(&token)).await, status, "{scopes:?}");
    }
}

#[tokio::test]
async fn matching_strategies() {
    let s = Setup::new().await;
    for (path, scopes, status) in [
        ("/tree", "items", 200),
        ("/tree", "items:read", 200),
        ("/tree", "item", 403),
        ("/tree", "items:*", 403),
        ("/wild", "items:*", 200),
        ("/wild", "items", 403),
        ("/wild", "items:read", 200),
        ("/items", "items:*", 403),
    ] {
        let token = s.auth.mint_token(scopes);
        assert_eq!(s.status(path, Some(&token)).await, status, "{path} {scopes:?}");
    }
}

#[tokio::test]
async fn exact_403_header_and_json_body() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    let response = s
        .http
        .post(format!("{}/items", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"write\""
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");
}

#[tokio::test]
async fn require_scope_route_layer() {
    let s = Setup::new().await;
    let admin = s.auth.mint_token("admin");
    let reader = s.auth.mint_token("read");
    assert_eq!(s.status("/admin", Some(&admin)).await, 200);
    let response = s.get("/admin", Some(&reader)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"admin\""
    );
    assert_eq!(s.status("/group-any", Some(&reader)).await, 200);
    assert_eq!(s.status("/group-any", Some(&admin)).await, 200);
    let writer = s.auth.mint_token("write");
    assert_eq!(s.status("/group-any", Some(&writer)).await, 403);
    // Unknown paths stay 404, with or without a token.
    assert_eq!(s.status("/nope", None).await, 404);
    assert_eq!(s.status("/nope", Some(&reader)).await, 404);
}

#[tokio::test]
async fn require_scope_without_introspection_layer_is_500() {
    use tower::ServiceExt;
    use tower_introspection::scope::RequireScope;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route_layer(RequireScope::all(["read"]));
    let response = app
        .oneshot(http::Request::get("/").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
}

#[tokio::test]
async fn option_principal_anonymous_and_authenticated() {
    let s = Setup::with(|b| b, |l| l.allow_anonymous(true)).await;
    assert_eq!(s.get("/maybe", None).await.text().await.unwrap(), "anonymous");
    let token = s
        .auth
        .mint(tower_introspection::test_util::TokenSpec::new().sub("bob"));
    assert_eq!(
        s.get("/maybe", Some(&token)).await.text().await.unwrap(),
        "user:bob"
    );
    assert_eq!(s.status("/maybe", Some("bad token")).await, 400);
    assert_eq!(s.status("/maybe", Some("not-a-known-token")).await, 401);
    // Scope guards answer an anonymous request 401, not 403 or 500.
    assert_eq!(s.status("/admin", None).await, 401);
    assert_eq!(s.status("/items", None).await, 401);
}

#[tokio::test]
async fn require_scope_on_a_single_method_router() {
    use axum::routing::get;
    use tower::ServiceExt;
    use tower_introspection::{scope::RequireScope, IntrospectionLayer};

    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/admin",
            get(|| async { "admin" }).route_layer(RequireScope::all(["admin"])),
        )
        .route_layer(IntrospectionLayer::new(common::introspector(&auth)));
    for (scopes, status) in [("admin", 200), ("read", 403)] {
        let request = http::Request::get("/admin")
            .header("authorization", format!("Bearer {}", auth.mint_token(scopes)))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(request).await.unwrap().status(),
            status,
            "{scopes}"
        );
    }
}
