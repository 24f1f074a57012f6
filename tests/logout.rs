//! OpenID Connect Back-Channel Logout over real TCP: the test AS signs
//! logout tokens with its keys, a receiver mounted in an axum router
//! checks them (§2.6) and revokes the session's cached tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::routing::post_service;
use axum::Router;
use serde_json::{json, Value};
use tower_introspection::jwt::JwtVerifier;
use tower_introspection::logout::{BackChannelLogout, BACKCHANNEL_LOGOUT_EVENT};
use tower_introspection::test_util::{JwtSpec, TestAuthServer, TokenSpec, RS_CLIENT_ID, RS_CLIENT_SECRET};
use tower_introspection::{Introspector, Verifier};

const CLIENT: &str = "api-client";

struct Receiver {
    auth: TestAuthServer,
    verifier: Verifier,
    logout: BackChannelLogout,
    url: String,
}

async fn receiver() -> Receiver {
    let auth = TestAuthServer::start().await.unwrap();
    let keys = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .build()
        .unwrap();
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
        .expected_issuer(auth.issuer())
        .build()
        .unwrap();
    let verifier = Verifier::from(introspector);
    let logout = BackChannelLogout::builder(keys, verifier.clone())
        .audience(CLIENT)
        .build()
        .unwrap();
    let url = common::serve(Router::new().route("/backchannel-logout", post_service(logout.clone()))).await;
    Receiver {
        auth,
        verifier,
        logout,
        url: format!("{url}/backchannel-logout"),
    }
}

/// A valid logout token for session `sid`.
fn logout_token(sid: &str) -> JwtSpec {
    JwtSpec::new()
        .typ("logout+jwt")
        .aud(CLIENT)
        .sub("alice")
        .claim("sid", json!(sid))
        .claim("jti", json!(format!("jti-{sid}-{}", rand_suffix())))
        .claim("events", json!({ BACKCHANNEL_LOGOUT_EVENT: {} }))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn post(url: &str, form: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new().post(url).form(form).send().await.unwrap();
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

#[tokio::test]
async fn a_logout_token_revokes_its_sessions_cached_tokens() {
    let r = receiver().await;
    let in_session = |sid: &str| TokenSpec::new().sub("alice").claim("sid", json!(sid));
    let (ended, other) = (r.auth.mint(in_session("s1")), r.auth.mint(in_session("s2")));
    r.verifier.validate(&ended).await.unwrap();
    r.verifier.validate(&other).await.unwrap();

    let token = r.auth.mint_jwt(logout_token("s1"));
    let (status, cache, body) = post(&r.url, &[("logout_token", &token)]).await;
    assert_eq!(
        (status, cache.as_deref(), body),
        (200, Some("no-store"), Value::Null)
    );
    let error = r.verifier.validate(&ended).await.unwrap_err();
    assert_eq!(error.description(), "the token was revoked");
    r.verifier.validate(&other).await.unwrap();
    let stats = r.logout.stats();
    assert_eq!(
        (stats.received, stats.accepted, stats.refused, stats.evicted),
        (1, 1, 0, 1)
    );

    // The same logout token again: a replay.
    let (status, _, body) = post(&r.url, &[("logout_token", &token)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "the token was already used (jti)");
}

/// The cut-off is the logout's time (its `iat`): a logout token that
/// arrives late refuses the session's tokens issued before it, not one
/// issued since.
#[tokio::test]
async fn a_late_logout_cuts_off_at_its_own_time() {
    let r = receiver().await;
    let now = rand_suffix() as i64 / 1_000_000_000;
    let in_session = |iat: i64| TokenSpec::new().sub("alice").claim("sid", json!("s1")).iat(iat);
    let (before, since) = (
        r.auth.mint(in_session(now - 20)),
        r.auth.mint(in_session(now - 5)),
    );
    let token = r.auth.mint_jwt(logout_token("s1").claim("iat", json!(now - 10)));
    assert_eq!(post(&r.url, &[("logout_token", &token)]).await.0, 200);
    let error = r.verifier.validate(&before).await.unwrap_err();
    assert_eq!(error.description(), "the token was revoked");
    r.verifier.validate(&since).await.unwrap();
}

#[tokio::test]
async fn without_a_sid_the_subject_is_revoked() {
    let r = receiver().await;
    let alice = r.auth.mint(TokenSpec::new().sub("alice"));
    let bob = r.auth.mint(TokenSpec::new().sub("bob"));
    r.verifier.validate(&alice).await.unwrap();
    let token = r.auth.mint_jwt(logout_token("x").without("sid"));
    assert_eq!(post(&r.url, &[("logout_token", &token)]).await.0, 200);
    let error = r.verifier.validate(&alice).await.unwrap_err();
    assert_eq!(error.description(), "the token was revoked");
    r.verifier.validate(&bob).await.unwrap();
    // Without `typ` (older authorization servers): accepted as well.
    let untyped = r.auth.mint_jwt(logout_token("y").without("sid").no_typ());
    assert_eq!(post(&r.url, &[("logout_token", &untyped)]).await.0, 200);
}

#[tokio::test]
async fn forged_stale_misaddressed_and_malformed_logout_tokens_are_refused_and_revoke_nothing() {
    let r = receiver().await;
    let alice = r
        .auth
        .mint(TokenSpec::new().sub("alice").claim("sid", json!("s1")));
    r.verifier.validate(&alice).await.unwrap();
    let attacker = TestAuthServer::start().await.unwrap();
    let long_ago = rand_suffix() as i64 / 1_000_000_000 - 3600;
    let cases: Vec<(&str, String)> = vec![
        (
            "the token's signature is invalid",
            r.auth.mint_jwt(logout_token("s1").tamper()),
        ),
        (
            "the token's signature is invalid",
            attacker.mint_jwt(logout_token("s1").iss(r.auth.issuer())),
        ),
        (
            "the token's iss is not the expected issuer",
            r.auth.mint_jwt(logout_token("s1").iss("https://other.example")),
        ),
        (
            "the token's aud does not name this client",
            r.auth.mint_jwt(logout_token("s1").aud("someone-else")),
        ),
        (
            "the token's typ is not logout+jwt",
            r.auth.mint_jwt(logout_token("s1").typ("JWT+at")),
        ),
        (
            "the token's iat is too old or in the future",
            r.auth.mint_jwt(logout_token("s1").claim("iat", json!(long_ago))),
        ),
        (
            "the token's iat is too old or in the future",
            r.auth
                .mint_jwt(logout_token("s1").claim("iat", json!(long_ago + 7200))),
        ),
        (
            "the token has no iat",
            r.auth.mint_jwt(logout_token("s1").without("iat")),
        ),
        (
            "the token has expired",
            r.auth.mint_jwt(logout_token("s1").claim("exp", json!(long_ago))),
        ),
        (
            "the token carries no back-channel logout event",
            r.auth
                .mint_jwt(logout_token("s1").claim("events", json!({ "other": {} }))),
        ),
        (
            "the token carries no back-channel logout event",
            r.auth
                .mint_jwt(logout_token("s1").claim("events", json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" }))),
        ),
        (
            "a logout token must not carry a nonce",
            r.auth.mint_jwt(logout_token("s1").claim("nonce", json!("n"))),
        ),
        (
            "the token has no jti",
            r.auth.mint_jwt(logout_token("s1").without("jti")),
        ),
        (
            "the token names neither sub nor sid",
            r.auth.mint_jwt(logout_token("s1").without("sid").without("sub")),
        ),
        ("the token is not a well-formed JWT", "not.a.jwt".to_owned()),
    ];
    for (why, token) in &cases {
        let (status, cache, body) = post(&r.url, &[("logout_token", token)]).await;
        assert_eq!(status, 400, "{why}");
        assert_eq!(cache.as_deref(), Some("no-store"));
        assert_eq!(body["error"], "invalid_request", "{why}");
        assert_eq!(body["error_description"], *why);
    }
    let (status, _, body) = post(&r.url, &[]).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("exactly one logout_token parameter is required"))
    );
    let token = r.auth.mint_jwt(logout_token("s1"));
    let twice = [("logout_token", token.as_str()), ("logout_token", token.as_str())];
    assert_eq!(post(&r.url, &twice).await.0, 400);
    let as_json = reqwest::Client::new()
        .post(&r.url)
        .json(&json!({ "logout_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(as_json.status(), 400);

    r.verifier.validate(&alice).await.unwrap();
    assert_eq!(r.logout.stats().accepted, 0);
    // The refusals consumed no jti: the genuine token still works.
    assert_eq!(post(&r.url, &[("logout_token", &token)]).await.0, 200);
    assert!(r.verifier.validate(&alice).await.is_err());
}

#[tokio::test]
async fn an_audience_list_naming_this_client_is_accepted() {
    let r = receiver().await;
    let token = r
        .auth
        .mint_jwt(logout_token("s1").claim("aud", json!(["other", CLIENT])));
    assert_eq!(post(&r.url, &[("logout_token", &token)]).await.0, 200);
    let token = r
        .auth
        .mint_jwt(logout_token("s2").claim("aud", json!(["other", "another"])));
    assert_eq!(post(&r.url, &[("logout_token", &token)]).await.0, 400);
}

/// A logout that could not be recorded is not carried out: the sender may
/// send the same logout token again, and it works once there is room.
#[tokio::test]
async fn a_logout_that_could_not_be_recorded_can_be_sent_again() {
    let auth = TestAuthServer::start().await.unwrap();
    let keys = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .build()
        .unwrap();
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
        .expected_issuer(auth.issuer())
        .max_cutoffs(1)
        // Long enough that the second logout surely finds the first's
        // cut-off, however slow the machine.
        .cutoff_retention(std::time::Duration::from_secs(3))
        .build()
        .unwrap();
    let logout = BackChannelLogout::builder(keys, introspector)
        .audience(CLIENT)
        .build()
        .unwrap();
    let url = common::serve(Router::new().route("/bcl", post_service(logout))).await;
    let url = format!("{url}/bcl");
    let first = auth.mint_jwt(logout_token("s1"));
    assert_eq!(post(&url, &[("logout_token", &first)]).await.0, 200);
    let second = auth.mint_jwt(logout_token("s2"));
    let (status, _, body) = post(&url, &[("logout_token", &second)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("temporarily_unavailable"))
    );
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    assert_eq!(
        post(&url, &[("logout_token", &second)]).await.0,
        200,
        "sent again"
    );
}

#[test]
fn settings_are_checked() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let auth = rt.block_on(TestAuthServer::start()).unwrap();
    let _runtime = rt.enter();
    let verifier = || {
        let introspector = Introspector::builder(auth.introspection_url())
            .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
            .build()
            .unwrap();
        Verifier::from(introspector)
    };
    let keys = || JwtVerifier::builder().jwks_url(auth.jwks_url());
    let no_issuer = BackChannelLogout::builder(keys().build().unwrap(), verifier()).audience(CLIENT);
    assert!(no_issuer.build().is_err(), "the issuer's keys need the issuer");
    let with_issuer = || keys().expected_issuer(auth.issuer()).build().unwrap();
    assert!(
        BackChannelLogout::builder(with_issuer(), verifier())
            .build()
            .is_err(),
        "no audience"
    );
    let long = BackChannelLogout::builder(with_issuer(), verifier())
        .audience(CLIENT)
        .max_age(std::time::Duration::from_secs(2 * 24 * 3600));
    assert!(long.build().is_err());
    let skewed = BackChannelLogout::builder(with_issuer(), verifier())
        .audience(CLIENT)
        .leeway(std::time::Duration::from_secs(600));
    assert!(skewed.build().is_err());
}

/// `examples/resource_server.rs` with `BACKCHANNEL_LOGOUT_PATH`: the
/// receiver is served outside the layer, and a logout token from the AS
/// (`AS_ISSUER`, `AS_JWKS_URL`) ends the session's cached token.
#[tokio::test]
async fn resource_server_example_serves_the_receiver() {
    let auth = TestAuthServer::start().await.unwrap();
    let audiences = format!("other,{CLIENT}");
    let server = common::start_example(
        "resource_server",
        &[
            ("INTROSPECTION_URL", &auth.introspection_url()),
            ("CLIENT_ID", RS_CLIENT_ID),
            ("CLIENT_SECRET", RS_CLIENT_SECRET),
            ("AS_ISSUER", &auth.issuer()),
            ("AS_JWKS_URL", &auth.jwks_url()),
            ("BACKCHANNEL_LOGOUT_PATH", "/backchannel-logout"),
            ("LOGOUT_TOKEN_AUDIENCE", &audiences),
        ],
        &["JWT_ISSUER", "JWKS_URL", "REDIS_URL"],
    );
    let base = server.base.clone();
    let token = auth.mint(
        TokenSpec::new()
            .sub("alice")
            .scope("read")
            .claim("sid", json!("s1")),
    );
    let http = reqwest::Client::new();
    let whoami = || http.get(format!("{base}/whoami")).bearer_auth(&token).send();
    let before = whoami().await.unwrap().status().as_u16();
    let logout = auth.mint_jwt(logout_token("s1"));
    let (answered, _, _) = post(
        &format!("{base}/backchannel-logout"),
        &[("logout_token", &logout)],
    )
    .await;
    let after = whoami().await.unwrap().status().as_u16();
    assert_eq!((before, answered, after), (200, 200, 401));
}
