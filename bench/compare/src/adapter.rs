//! The harness's own small HTTP endpoints, next to the test AS:
//!
//! - `GET /.well-known/openid-configuration`: a complete OpenID Connect
//!   discovery document for zitadel. zitadel discovers through the
//!   `openidconnect` crate, which requires the OIDC members the test AS's
//!   RFC 8414 document does not have (`authorization_endpoint`, `jwks_uri`,
//!   `subject_types_supported`, `id_token_signing_alg_values_supported`, …)
//!   and then fetches `jwks_uri`. The document's `introspection_endpoint` is
//!   the test AS's own, so zitadel introspects at the same AS, with the same
//!   answers, as tower-introspection.
//! - `GET /jwks.json`: the JWKS of the shipped test RSA key, for
//!   jwt-authorizer (and for the discovery document above).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const JWKS: &str = include_str!("../keys/jwks.json");

#[derive(Debug, Default)]
pub struct Counters {
    pub discovery: AtomicUsize,
    pub jwks: AtomicUsize,
}

#[derive(Clone)]
struct AppState {
    base: String,
    as_base: String,
    counters: Arc<Counters>,
}

pub struct Adapter {
    pub base_url: String,
    pub counters: Arc<Counters>,
}

impl Adapter {
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.base_url)
    }
}

/// Starts the endpoints on `127.0.0.1:0` on the current runtime.
pub async fn start(as_base: String) -> std::io::Result<Adapter> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let counters = Arc::new(Counters::default());
    let state = AppState {
        base: base.clone(),
        as_base,
        counters: Arc::clone(&counters),
    };
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks.json", get(jwks))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Adapter {
        base_url: base,
        counters,
    })
}

async fn discovery(State(s): State<AppState>) -> Json<Value> {
    s.counters.discovery.fetch_add(1, Ordering::SeqCst);
    let (base, as_base) = (&s.base, &s.as_base);
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{as_base}/oauth2/authorize"),
        "token_endpoint": format!("{as_base}/oauth2/token"),
        "introspection_endpoint": format!("{as_base}/oauth2/introspect"),
        "revocation_endpoint": format!("{as_base}/oauth2/revoke"),
        "jwks_uri": format!("{base}/jwks.json"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn jwks(State(s): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    s.counters.jwks.fetch_add(1, Ordering::SeqCst);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], JWKS)
}
