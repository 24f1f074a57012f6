//! The API both examples serve. `/public` needs nothing; every other route
//! sits behind the introspection layer.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_introspection::{scope_requirement, IntrospectionLayer, Principal, Scoped};

scope_requirement! {
    /// `GET /items`.
    pub ReadItems: "read";
    /// `POST /items`.
    pub WriteItems: "write";
    /// `GET /admin`.
    pub Admin: "admin";
}

/// The routes: `GET /public`, `GET /ping`, `GET /whoami`, `GET /items`,
/// `POST /items`, `GET /admin`.
pub(crate) fn app(layer: IntrospectionLayer) -> Router {
    let protected = Router::new()
        .route("/ping", get(|| async { "ok" }))
        .route("/whoami", get(whoami))
        .route("/items", get(list_items).post(create_item))
        .route("/admin", get(admin))
        .route_layer(layer);
    Router::new()
        .route("/public", get(|| async { "ok" }))
        .merge(protected)
}

async fn whoami(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.subject(),
        "username": principal.username(),
        "client_id": principal.client_id(),
        "scope": principal.scopes().to_string(),
        "exp": principal.expires_at(),
    }))
}

async fn list_items(_: Scoped<ReadItems>) -> Json<Value> {
    Json(json!({ "items": ["apple", "pear"] }))
}

async fn create_item(principal: Scoped<WriteItems>) -> Json<Value> {
    Json(json!({ "created": true, "by": principal.subject() }))
}

async fn admin(_: Scoped<Admin>) -> Json<Value> {
    Json(json!({ "admin": true }))
}

/// Resolves on Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
