//! `POST /oauth2/revoke` (RFC 7009).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::auth::{form_credentials, Credentials};
use super::form::Form;
use super::reply;
use super::state::Shared;

pub(crate) async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.revocation_calls.fetch_add(1, Ordering::SeqCst);
    let form = Form::from_request(&headers, &body);
    let creds = match form_credentials(&headers, &form) {
        Ok(creds) => creds,
        Err(refusal) => return *refusal,
    };
    let mut state = shared.lock();
    let authenticated = match creds {
        Credentials::Client { id, secret } => state.verify_client(&id, secret.as_deref()).is_some(),
        _ => false,
    };
    if !authenticated {
        return reply::invalid_client();
    }
    let Some(token) = form.get("token") else {
        return reply::invalid_request("missing `token` parameter");
    };
    if let Some(record) = state.tokens.get_mut(token) {
        record.revoked = true;
    }
    reply::empty(StatusCode::OK)
}
