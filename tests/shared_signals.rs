//! Shared Signals push (RFC 8935) over real TCP: the test AS signs Security
//! Event Tokens (RFC 8417) as a transmitter would, a receiver mounted in an
//! axum router checks them and revokes what each CAEP and RISC event names.

#![cfg(feature = "jwt")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::routing::post_service;
use axum::Router;
use serde_json::{json, Value};
use tower_introspection::jwt::JwtVerifier;
use tower_introspection::ssf::{
    SharedSignals, ACCOUNT_DISABLED, ACCOUNT_PURGED, CREDENTIAL_CHANGE, SESSIONS_REVOKED, SESSION_REVOKED,
    TOKEN_CLAIMS_CHANGE,
};
use tower_introspection::test_util::{JwtSpec, TestAuthServer, TokenSpec, RS_CLIENT_ID, RS_CLIENT_SECRET};
use tower_introspection::{Introspector, Verifier};

const AUDIENCE: &str = "https://api.example";
const PUSH_TOKEN: &str = "the stream's push authorization";

struct Receiver {
    auth: TestAuthServer,
    verifier: Verifier,
    signals: SharedSignals,
    url: String,
}

async fn receiver() -> Receiver {
    let auth = TestAuthServer::start().await.unwrap();
    let transmitter = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .build()
        .unwrap();
    let verifier = Verifier::from(
        Introspector::builder(auth.introspection_url())
            .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
            .expected_issuer(auth.issuer())
            .build()
            .unwrap(),
    );
    let signals = SharedSignals::builder(transmitter, verifier.clone())
        .audience(AUDIENCE)
        .bearer_token(PUSH_TOKEN)
        .build()
        .unwrap();
    let url = common::serve(Router::new().route("/ssf/events", post_service(signals.clone()))).await;
    Receiver {
        auth,
        verifier,
        signals,
        url: format!("{url}/ssf/events"),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("set-{nanos}")
}

/// A SET carrying `event` about `subject` (in `sub_id`), as SSF 1.0
/// transmitters send them.
fn set(event: &str, subject: Value) -> JwtSpec {
    JwtSpec::new()
        .typ("secevent+jwt")
        .without("exp")
        .aud(AUDIENCE)
        .claim("jti", json!(unique()))
        .claim("sub_id", subject)
        .claim("events", json!({ event: { "event_timestamp": now() } }))
}

async fn push_as(
    url: &str,
    set: &str,
    authorization: Option<&str>,
    content_type: &str,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(set.to_owned());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap()
    };
    (status, cache, json)
}

async fn push(url: &str, set: &str) -> (u16, Option<String>, Value) {
    push_as(
        url,
        set,
        Some(&format!("Bearer {PUSH_TOKEN}")),
        "application/secevent+jwt",
    )
    .await
}

fn is_revoked(outcome: &Result<tower_introspection::Principal, tower_introspection::AuthError>) -> bool {
    outcome
        .as_ref()
        .is_err_and(|error| error.description() == "the token was revoked")
}

#[tokio::test]
async fn each_caep_and_risc_event_revokes_what_its_subject_names() {
    let r = receiver().await;
    let iss = r.auth.issuer();
    let user = |sub: &str| json!({"format": "iss_sub", "iss": iss, "sub": sub});
    // (event, subject, the token it must end, one it must leave)
    let cases: Vec<(&str, Value, TokenSpec, TokenSpec)> = vec![
        (
            SESSION_REVOKED,
            json!({"format": "complex", "user": user("u1"), "session": {"format": "opaque", "id": "s1"}}),
            TokenSpec::new().sub("u1").claim("sid", json!("s1")),
            TokenSpec::new().sub("u1").claim("sid", json!("s2")),
        ),
        (
            CREDENTIAL_CHANGE,
            user("u2"),
            TokenSpec::new().sub("u2"),
            TokenSpec::new().sub("someone-else"),
        ),
        (
            TOKEN_CLAIMS_CHANGE,
            json!({"format": "opaque", "id": "u3"}),
            TokenSpec::new().sub("u3"),
            TokenSpec::new().sub("u3-not"),
        ),
        (
            ACCOUNT_DISABLED,
            json!({"format": "email", "email": "u4@example.com"}),
            TokenSpec::new().sub("u4").claim("email", json!("u4@example.com")),
            TokenSpec::new()
                .sub("u4b")
                .claim("email", json!("u4b@example.com")),
        ),
        (
            ACCOUNT_PURGED,
            json!({"format": "aliases", "identifiers": [{"format": "phone_number", "phone_number": "+1"}, user("u5")]}),
            TokenSpec::new().sub("u5"),
            TokenSpec::new().sub("u6"),
        ),
        (
            SESSIONS_REVOKED,
            user("u7"),
            TokenSpec::new().sub("u7").claim("sid", json!("any")),
            TokenSpec::new().sub("u8").claim("sid", json!("any")),
        ),
    ];
    for (event, subject, ended, kept) in cases {
        let (ended, kept) = (r.auth.mint(ended), r.auth.mint(kept));
        r.verifier.validate(&ended).await.unwrap();
        r.verifier.validate(&kept).await.unwrap();
        let (status, cache, body) = push(&r.url, &r.auth.mint_jwt(set(event, subject))).await;
        assert_eq!(
            (status, cache.as_deref(), body),
            (202, Some("no-store"), Value::Null),
            "{event}"
        );
        assert!(is_revoked(&r.verifier.validate(&ended).await), "{event}");
        r.verifier.validate(&kept).await.unwrap();
    }
    let stats = r.signals.stats();
    assert_eq!(
        (stats.received, stats.accepted, stats.refused, stats.evicted),
        (6, 6, 0, 6)
    );
}

#[tokio::test]
async fn the_subject_may_sit_in_the_event_and_other_events_are_acknowledged() {
    let r = receiver().await;
    let alice = r.auth.mint(TokenSpec::new().sub("alice"));
    r.verifier.validate(&alice).await.unwrap();
    // An event this receiver does not act on: 202, nothing revoked.
    let other = set(
        "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change",
        json!({"format": "opaque", "id": "alice"}),
    );
    assert_eq!(push(&r.url, &r.auth.mint_jwt(other)).await.0, 202);
    r.verifier.validate(&alice).await.unwrap();
    // An older CAEP draft: the subject inside the event.
    let draft = set(CREDENTIAL_CHANGE, Value::Null).without("sub_id").claim(
        "events",
        json!({ CREDENTIAL_CHANGE: {"subject": {"format": "opaque", "id": "alice"}} }),
    );
    assert_eq!(push(&r.url, &r.auth.mint_jwt(draft)).await.0, 202);
    assert!(is_revoked(&r.verifier.validate(&alice).await));
}

#[tokio::test]
async fn forged_stale_replayed_and_misaddressed_sets_are_refused_and_revoke_nothing() {
    let r = receiver().await;
    let alice = r.auth.mint(TokenSpec::new().sub("alice"));
    r.verifier.validate(&alice).await.unwrap();
    let attacker = TestAuthServer::start().await.unwrap();
    let good = || set(CREDENTIAL_CHANGE, json!({"format": "opaque", "id": "alice"}));
    let long_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 7200;
    let cases: Vec<(u16, &str, &str, String)> = vec![
        (
            400,
            "invalid_key",
            "the token's signature is invalid",
            r.auth.mint_jwt(good().tamper()),
        ),
        (
            400,
            "invalid_key",
            "the token's signature is invalid",
            attacker.mint_jwt(good().iss(r.auth.issuer())),
        ),
        (
            400,
            "invalid_issuer",
            "the SET's iss is not the transmitter",
            r.auth.mint_jwt(good().iss("https://other.example")),
        ),
        (
            400,
            "invalid_audience",
            "the SET's aud does not name this receiver",
            r.auth.mint_jwt(good().aud("https://other-api.example")),
        ),
        (
            400,
            "invalid_request",
            "the token's typ is not secevent+jwt",
            r.auth.mint_jwt(good().typ("logout+jwt")),
        ),
        (
            400,
            "invalid_request",
            "the SET's iat is too old or in the future",
            r.auth.mint_jwt(good().claim("iat", json!(long_ago))),
        ),
        (
            400,
            "invalid_request",
            "the SET has expired",
            r.auth.mint_jwt(good().claim("exp", json!(long_ago + 60))),
        ),
        (
            400,
            "invalid_request",
            "the SET has no jti",
            r.auth.mint_jwt(good().without("jti")),
        ),
        (
            400,
            "invalid_request",
            "the SET has no events object",
            r.auth.mint_jwt(good().without("events")),
        ),
        (
            400,
            "invalid_request",
            "the SET's events are not objects, or too many",
            r.auth
                .mint_jwt(good().claim("events", json!({ CREDENTIAL_CHANGE: "yes" }))),
        ),
        (
            400,
            "invalid_request",
            "the event names no subject (sub_id)",
            r.auth.mint_jwt(good().without("sub_id")),
        ),
        (
            400,
            "invalid_request",
            "the body is not a signed JWT",
            "a.b.c.d.e".to_owned(),
        ),
    ];
    for (status, err, description, token) in &cases {
        let (got, cache, body) = push(&r.url, token).await;
        assert_eq!(got, *status, "{description}");
        assert_eq!(cache.as_deref(), Some("no-store"));
        assert_eq!(body, json!({"err": err, "description": description}));
    }
    let genuine = r.auth.mint_jwt(good());
    let (_, _, refused) = push_as(&r.url, &genuine, None, "application/secevent+jwt").await;
    assert_eq!(refused["err"], "authentication_failed");
    let challenge = reqwest::Client::new()
        .post(&r.url)
        .header("content-type", "application/secevent+jwt")
        .body(genuine.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        challenge.headers()["www-authenticate"],
        "Bearer",
        "RFC 7235: a 401 names its scheme"
    );
    for (authorization, content_type, status, err) in [
        (None, "application/secevent+jwt", 401, "authentication_failed"),
        (
            Some("Bearer guessed"),
            "application/secevent+jwt",
            401,
            "authentication_failed",
        ),
        (
            Some(PUSH_TOKEN),
            "application/secevent+jwt",
            401,
            "authentication_failed",
        ),
        (
            Some(&*format!("Bearer {PUSH_TOKEN}")),
            "application/jwt",
            400,
            "invalid_request",
        ),
    ] {
        let (got, _, body) = push_as(&r.url, &genuine, authorization, content_type).await;
        assert_eq!(
            (got, body["err"].as_str()),
            (status, Some(err)),
            "{authorization:?} {content_type}"
        );
    }
    r.verifier.validate(&alice).await.unwrap();
    let stats = r.signals.stats();
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.refused_with("invalid_key"), 2);
    assert_eq!(stats.refused_with("authentication_failed"), 5);
    assert_eq!(stats.refused, stats.received);

    // The refusals consumed no jti: the genuine SET works once, not twice.
    assert_eq!(push(&r.url, &genuine).await.0, 202);
    assert!(is_revoked(&r.verifier.validate(&alice).await));
    let (status, _, body) = push(&r.url, &genuine).await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("the SET was already received (jti)"))
    );
}

/// The cut-off is the event's time: a push that arrives late refuses the
/// tokens issued before the event, not those issued since.
#[tokio::test]
async fn a_late_event_cuts_off_at_its_own_time() {
    let r = receiver().await;
    let now = now() as i64;
    let before = r.auth.mint(TokenSpec::new().sub("alice").iat(now - 20));
    let since = r.auth.mint(TokenSpec::new().sub("alice").iat(now - 5));
    r.verifier.validate(&before).await.unwrap();
    r.verifier.validate(&since).await.unwrap();
    let late = set(CREDENTIAL_CHANGE, json!({"format": "opaque", "id": "alice"}))
        .claim(
            "events",
            json!({ CREDENTIAL_CHANGE: { "event_timestamp": now - 10 } }),
        )
        // Untyped SETs (older transmitters) are accepted too, and the
        // scheme is read in any case.
        .no_typ();
    let (status, _, _) = push_as(
        &r.url,
        &r.auth.mint_jwt(late),
        Some(&format!("bearer {PUSH_TOKEN}")),
        "application/secevent+jwt",
    )
    .await;
    assert_eq!(status, 202);
    assert!(is_revoked(&r.verifier.validate(&before).await));
    r.verifier.validate(&since).await.unwrap();
}

#[tokio::test]
async fn too_many_events_and_unreachable_keys_are_answered_not_carried_out() {
    let r = receiver().await;
    let events: serde_json::Map<String, Value> = (0..17)
        .map(|i| (format!("https://example.com/event/{i}"), json!({})))
        .collect();
    let crowded = set(CREDENTIAL_CHANGE, json!({"format": "opaque", "id": "alice"}))
        .claim("events", Value::Object(events));
    let (status, _, body) = push(&r.url, &r.auth.mint_jwt(crowded)).await;
    assert_eq!((status, body["err"].as_str()), (400, Some("invalid_request")));

    // The transmitter's keys cannot be fetched: 503, so that it retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let transmitter = JwtVerifier::builder()
        .expected_issuer(r.auth.issuer())
        .jwks_url(format!("http://{closed}/jwks"))
        .build()
        .unwrap();
    let signals = SharedSignals::builder(transmitter, r.verifier.clone())
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let url = common::serve(Router::new().route("/ssf", post_service(signals))).await;
    let event = r
        .auth
        .mint_jwt(set(CREDENTIAL_CHANGE, json!({"format": "opaque", "id": "alice"})));
    let (status, cache, body) =
        push_as(&format!("{url}/ssf"), &event, None, "application/secevent+jwt").await;
    assert_eq!(
        (status, cache.as_deref(), body["err"].as_str()),
        (503, Some("no-store"), Some("temporarily_unavailable"))
    );
}

#[test]
fn settings_are_checked_and_the_push_token_never_printed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let auth = rt.block_on(TestAuthServer::start()).unwrap();
    let _runtime = rt.enter();
    let verifier = || {
        Verifier::from(
            Introspector::builder(auth.introspection_url())
                .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
                .build()
                .unwrap(),
        )
    };
    let keys = || JwtVerifier::builder().jwks_url(auth.jwks_url());
    let with_issuer = || keys().expected_issuer(auth.issuer()).build().unwrap();
    assert!(SharedSignals::builder(keys().build().unwrap(), verifier())
        .audience(AUDIENCE)
        .build()
        .is_err());
    assert!(SharedSignals::builder(with_issuer(), verifier()).build().is_err());
    assert!(SharedSignals::builder(with_issuer(), verifier())
        .audience(AUDIENCE)
        .bearer_token("")
        .build()
        .is_err());
    assert!(SharedSignals::builder(with_issuer(), verifier())
        .audience(AUDIENCE)
        .max_age(std::time::Duration::ZERO)
        .build()
        .is_err());
    let builder = SharedSignals::builder(with_issuer(), verifier())
        .audience(AUDIENCE)
        .bearer_token(PUSH_TOKEN);
    assert!(!format!("{builder:?}").contains(PUSH_TOKEN));
    let signals = builder.build().unwrap();
    assert!(!format!("{signals:?}").contains(PUSH_TOKEN));
}

/// `examples/resource_server.rs` with `SSF_PUSH_PATH`: the receiver is
/// served outside the layer, wants the push token, and a SET ends the
/// user's cached token.
#[tokio::test]
async fn resource_server_example_serves_the_receiver() {
    let auth = TestAuthServer::start().await.unwrap();
    let audiences = format!("other,{AUDIENCE}");
    let server = common::start_example(
        "resource_server",
        &[
            ("INTROSPECTION_URL", &auth.introspection_url()),
            ("CLIENT_ID", RS_CLIENT_ID),
            ("CLIENT_SECRET", RS_CLIENT_SECRET),
            ("SSF_PUSH_PATH", "/ssf/events"),
            ("SSF_ISSUER", &auth.issuer()),
            ("SSF_JWKS_URL", &auth.jwks_url()),
            ("SSF_AUDIENCE", &audiences),
            ("SSF_PUSH_TOKEN", PUSH_TOKEN),
        ],
        &["JWT_ISSUER", "JWKS_URL", "AS_ISSUER", "REDIS_URL"],
    );
    let base = server.base.clone();
    let token = auth.mint(TokenSpec::new().sub("alice").scope("read"));
    let http = reqwest::Client::new();
    let whoami = || http.get(format!("{base}/whoami")).bearer_auth(&token).send();
    let before = whoami().await.unwrap().status().as_u16();
    let event = auth.mint_jwt(set(ACCOUNT_DISABLED, json!({"format": "opaque", "id": "alice"})));
    let url = format!("{base}/ssf/events");
    let unauthenticated = push_as(&url, &event, None, "application/secevent+jwt").await.0;
    let still = whoami().await.unwrap().status().as_u16();
    let answered = push(&url, &event).await.0;
    let after = whoami().await.unwrap().status().as_u16();
    assert_eq!(
        (before, unauthenticated, still, answered, after),
        (200, 401, 200, 202, 401)
    );
}
