//! Every way to express a scope requirement, served against the in-process
//! test authorization server.
//!
//! ```text
//! cargo run --example scopes
//! ```
//!
//! Prints one line per request: the route, the token's scopes, the status,
//! and the challenge when there is one. Exits when done.

use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use tower_introspection::test_util::TestAuthServer;
use tower_introspection::{
    scope::{Hierarchical, RequireScope, Wildcard},
    scope_requirement, IntrospectionLayer, Introspector, Scoped,
};

scope_requirement! {
    /// One scope.
    pub ReadItems: "items:read";
    /// All of several scopes (AND).
    pub ReadAndWrite: all("items:read", "items:write");
    /// Any one of several scopes (OR).
    pub ReadOrAdmin: any("items:read", "admin");
    /// An OR of AND-groups: both item scopes, or `admin` alone.
    pub EditorOrAdmin: ["items:read", "items:write"] | ["admin"];
    /// Hierarchical matching: `items` grants `items:read`.
    pub ReadItemsTree: "items:read", using Hierarchical;
    /// Wildcard matching: `items:*` grants `items:read`.
    pub ReadItemsWild: "items:read", using Wildcard;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let auth_server = TestAuthServer::start().await?;
    let introspector = Introspector::builder(auth_server.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .build()?;

    // Route layers guard a whole group of routes, with or without a marker type.
    let reports = Router::new()
        .route("/reports", get(|| async { "reports" }))
        .route_layer(RequireScope::any(["reports", "admin"]));
    let exports = Router::new()
        .route("/exports", get(|| async { "exports" }))
        .route_layer(RequireScope::of::<EditorOrAdmin>());
    let tree = Router::new()
        .route("/tree", get(|| async { "tree" }))
        .route_layer(RequireScope::all(["items:read"]).matcher(Hierarchical));

    // Extractors put the requirement in the handler's signature.
    let app = Router::new()
        .route("/items", get(|_: Scoped<ReadItems>| async { "items" }))
        .route("/items/edit", get(|_: Scoped<ReadAndWrite>| async { "edit" }))
        .route("/items/peek", get(|_: Scoped<ReadOrAdmin>| async { "peek" }))
        .route(
            "/items/manage",
            get(|_: Scoped<EditorOrAdmin>| async { "manage" }),
        )
        .route("/items/tree", get(|_: Scoped<ReadItemsTree>| async { "tree" }))
        .route("/items/wild", get(|_: Scoped<ReadItemsWild>| async { "wild" }))
        .merge(reports)
        .merge(exports)
        .merge(tree)
        .route_layer(IntrospectionLayer::new(introspector));

    let cases = [
        ("/items", "items:read"),
        ("/items", "items:write"),
        ("/items/edit", "items:read items:write"),
        ("/items/edit", "items:read"),
        ("/items/peek", "admin"),
        ("/items/manage", "admin"),
        ("/items/manage", "items:write"),
        ("/items/tree", "items"),
        ("/items/wild", "items:*"),
        ("/items/wild", "items"),
        ("/reports", "reports"),
        ("/exports", "items:read items:write"),
        ("/tree", "items"),
    ];
    for (path, scopes) in cases {
        let token = auth_server.mint_token(scopes);
        let request = http::Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        println!(
            "{path:<14} {scopes:<24} {} {challenge}",
            response.status().as_u16()
        );
    }
    Ok(())
}
