//! `GET /.well-known/oauth-authorization-server` (RFC 8414) and
//! `GET /.well-known/openid-configuration`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::reply;
use super::state::Shared;

pub(crate) async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    shared.metadata_calls.fetch_add(1, Ordering::SeqCst);
    let mut state = shared.lock();
    if state.metadata_failures > 0 {
        state.metadata_failures -= 1;
        return reply::oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            Some("injected metadata failure"),
        );
    }
    let scopes: BTreeSet<&str> = state
        .clients
        .values()
        .flat_map(|c| c.scopes.iter().map(String::as_str))
        .collect();
    let base = &shared.base_url;
    let body = json!({
        "issuer": shared.issuer(&state),
        "token_endpoint": format!("{base}/oauth2/token"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "jwks_uri": format!("{base}/oauth2/jwks"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "bearer"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "grant_types_supported": ["password", "client_credentials"],
        "response_types_supported": [],
        "scopes_supported": scopes,
    });
    reply::json(StatusCode::OK, &body)
}
