//! `POST /oauth2/token` (RFC 6749): the `password` and `client_credentials`
//! grants.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map};

use super::auth::{form_credentials, Credentials};
use super::fault;
use super::form::Form;
use super::random::random_token;
use super::reply;
use super::spec::{ClientSpec, TokenSpec};
use super::state::{unix_now, Shared};

/// Lifetime of issued access tokens, in seconds.
const EXPIRES_IN: u64 = 3600;

pub(crate) async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.token_calls.fetch_add(1, Ordering::SeqCst);
    let fault = shared.lock().token_fault.clone();
    if let Some(fault) = fault {
        if let Some(res) = fault::apply(fault, Map::new()).await {
            return res;
        }
    }

    let form = Form::from_request(&headers, &body);
    let creds = match form_credentials(&headers, &form) {
        Ok(creds) => creds,
        Err(refusal) => return *refusal,
    };
    let mut state = shared.lock();
    let client: ClientSpec = match creds {
        Credentials::Client { id, secret } => match state.verify_client(&id, secret.as_deref()) {
            Some(client) => client.clone(),
            None => return reply::invalid_client(),
        },
        Credentials::Assertion(assertion) => {
            let issuer = shared.issuer(&state);
            let endpoint = format!("{}{}", shared.base_url, super::server::TOKEN_PATH);
            match super::assertion::verify(&mut state, &assertion, &[&issuer, &endpoint]) {
                Some(client) => client,
                None => return reply::invalid_client(),
            }
        }
        _ => return reply::invalid_client(),
    };

    let Some(grant) = form.get("grant_type") else {
        return reply::invalid_request("missing `grant_type` parameter");
    };
    if grant != "password" && grant != "client_credentials" {
        return reply::oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", None);
    }
    if !client.grants.iter().any(|g| g == grant) {
        return reply::oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", None);
    }
    let scope = match granted_scope(&client, form.get("scope")) {
        Some(scope) => scope,
        None => return reply::oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", None),
    };

    let mut spec = TokenSpec::new()
        .client_id(client.id.clone())
        .exp_in(std::time::Duration::from_secs(EXPIRES_IN))
        .audiences(form.all("resource").filter(|r| !r.is_empty()));
    if !scope.is_empty() {
        spec = spec.scope(scope.clone());
    }
    let password_grant = grant == "password";
    if password_grant {
        let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
            return reply::invalid_request("missing `username` or `password` parameter");
        };
        if state.users.get(username).map(String::as_str) != Some(password) {
            return reply::oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                Some("Invalid credentials given."),
            );
        }
        spec = spec.sub(username).username(username);
    } else {
        spec = spec.sub(client.id.clone());
    }

    let issuer = shared.issuer(&state);
    let access_token = state.insert_token(spec, unix_now(), issuer);
    drop(state);
    let mut answer = json!({
        "access_token": access_token,
        "expires_in": EXPIRES_IN,
        "token_type": "Bearer",
        "scope": scope,
    });
    if password_grant {
        answer["refresh_token"] = json!(random_token());
    }
    reply::json(StatusCode::OK, &answer)
}

/// The scope to grant: the requested one if it is a subset of the client's
/// scopes (`None` if not), else all the client's scopes.
fn granted_scope(client: &ClientSpec, requested: Option<&str>) -> Option<String> {
    let requested: Vec<&str> = requested.unwrap_or("").split_whitespace().collect();
    if requested.is_empty() {
        return Some(client.scopes.join(" "));
    }
    let allowed = requested.iter().all(|s| client.scopes.iter().any(|c| c == s));
    allowed.then(|| requested.join(" "))
}
