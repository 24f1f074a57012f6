//! `POST /oauth2/introspect` (RFC 7662).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map};

use super::auth::{form_credentials, Credentials};
use super::fault;
use super::form::Form;
use super::render;
use super::reply;
use super::spec::{AuthFailure, RecordedRequest, SignedAnswerFault};
use super::state::{unix_now, InFlight, Shared};

/// The scope a bearer token needs to call the introspection endpoint.
const INTROSPECTION_SCOPE: &str = "introspection";

pub(crate) async fn introspect(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.introspection_calls.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&shared);
    let recorded = RecordedRequest {
        method: method.as_str().to_owned(),
        content_type: header_string(&headers, header::CONTENT_TYPE),
        accept: header_string(&headers, header::ACCEPT),
        authorization: header_string(&headers, header::AUTHORIZATION),
        form: Form::parse(&body).into_pairs(),
    };
    let form = Form::from_request(&headers, &body);

    let (fault, template) = {
        let mut state = shared.lock();
        state.last_introspection = Some(recorded);
        if method != Method::POST {
            drop(state);
            let mut res = reply::empty(StatusCode::METHOD_NOT_ALLOWED);
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return res;
        }
        let fault = state.take_fault();
        let template = match (&fault, form.get("token")) {
            (Some(_), Some(token)) => state
                .tokens
                .get(token)
                .map(|t| render::render(t, state.shape))
                .unwrap_or_default(),
            _ => Map::new(),
        };
        (fault, template)
    };
    if let Some(fault) = fault {
        if let Some(res) = fault::apply(fault, template).await {
            return res;
        }
    }

    let creds = match form_credentials(&headers, &form) {
        Ok(creds) => creds,
        Err(refusal) => return *refusal,
    };
    let now = unix_now();
    let mut state = shared.lock();
    let style = state.auth_failure;
    // Who called: the `aud` of a signed answer.
    let caller = match creds {
        Credentials::Assertion(assertion) => {
            let issuer = shared.issuer(&state);
            let endpoint = format!("{}{}", shared.base_url, super::server::INTROSPECTION_PATH);
            match super::assertion::verify(&mut state, &assertion, &[&issuer, &endpoint]) {
                Some(client) if client.can_introspect => client.id,
                _ => return client_rejected(style),
            }
        }
        Credentials::Client { id, secret } => {
            let allowed = state
                .verify_client(&id, secret.as_deref())
                .is_some_and(|c| c.can_introspect);
            if !allowed {
                return client_rejected(style);
            }
            id
        }
        Credentials::Bearer(token) => match state.active_token(&token, now) {
            None => return bearer_rejected(style, "invalid_token"),
            Some(t) if !t.has_scope(INTROSPECTION_SCOPE) => {
                return bearer_rejected(style, "insufficient_scope")
            }
            Some(t) => t.client_id.clone().unwrap_or_default(),
        },
        Credentials::None | Credentials::Malformed => return client_rejected(style),
    };
    let Some(token) = form.get("token") else {
        return reply::invalid_request("missing `token` parameter");
    };
    let answer = match state.active_token(token, now) {
        Some(t) => render::answer(t, state.shape),
        None => json!({ "active": false }),
    };
    let wants_signed = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(SIGNED_ANSWER_TYPE));
    let signed_fault = state.signed_answer_fault;
    if !wants_signed || signed_fault == Some(SignedAnswerFault::Unsigned) {
        return reply::json(StatusCode::OK, &answer);
    }
    let issuer = shared.issuer(&state);
    drop(state);
    signed_answer(&shared, answer, &issuer, &caller, signed_fault, now)
}

/// The media type of an RFC 9701 signed answer.
const SIGNED_ANSWER_TYPE: &str = "application/token-introspection+jwt";

/// `answer` as an RFC 9701 JWT signed with the server's RS256 key, spoiled
/// as `fault` says.
fn signed_answer(
    shared: &Shared,
    answer: serde_json::Value,
    issuer: &str,
    caller: &str,
    fault: Option<SignedAnswerFault>,
    now: i64,
) -> Response {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let keys = shared.keys();
    let typ = match fault {
        Some(SignedAnswerFault::WrongTyp) => "JWT",
        _ => "token-introspection+jwt",
    };
    let header = json!({"alg": "RS256", "kid": keys.rsa_kid(), "typ": typ});
    let claims = json!({
        "iss": if fault == Some(SignedAnswerFault::WrongIssuer) { "https://impostor.example" } else { issuer },
        "aud": if fault == Some(SignedAnswerFault::WrongAudience) { "someone-else" } else { caller },
        "iat": if fault == Some(SignedAnswerFault::StaleIat) { now - 3600 } else { now },
        "token_introspection": answer,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let Ok(mut signature) = keys.sign(&super::alg::JwtAlg::Rs256, input.as_bytes()) else {
        return reply::empty(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if fault == Some(SignedAnswerFault::BadSignature) {
        if let Some(byte) = signature.get_mut(7) {
            *byte ^= 1;
        }
    }
    let mut res = Response::new(Body::from(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SIGNED_ANSWER_TYPE));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Django OAuth Toolkit's answer to bad resource-server credentials.
fn dot_forbidden() -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::FORBIDDEN;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

fn client_rejected(style: AuthFailure) -> Response {
    match style {
        AuthFailure::Json401 => reply::invalid_client(),
        AuthFailure::DotHtml403 => dot_forbidden(),
    }
}

fn bearer_rejected(style: AuthFailure, error: &'static str) -> Response {
    match style {
        AuthFailure::DotHtml403 => dot_forbidden(),
        AuthFailure::Json401 => {
            let challenge = if error == "insufficient_scope" {
                HeaderValue::from_static(
                    "Bearer realm=\"test\", error=\"insufficient_scope\", scope=\"introspection\"",
                )
            } else {
                HeaderValue::from_static("Bearer realm=\"test\", error=\"invalid_token\"")
            };
            let mut res = reply::oauth_error(StatusCode::UNAUTHORIZED, error, None);
            res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
            res
        }
    }
}
