//! The request path end to end over real TCP: RFC 6750 answers (B*), the
//! RFC 7662 client (I*), client authentication (C*), and every fault of the
//! test authorization server with its status.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks and tests fail loudly

mod common;

use std::time::Duration;

use common::{challenge, challenge_params, param, Setup, RS_ID, RS_SECRET};
use serde_json::{json, Value};
use tower_introspection::test_util::{AuthFailure, ClientSpec, Fault, TestAuthServer, TokenSpec};
use tower_introspection::{token::BearerExtractor, ConfigError, IntrospectionLayer, Introspector};

fn far_future() -> i64 {
    4_102_444_800 // 2100-01-01
}

#[tokio::test]
async fn b1_valid_token_reaches_handler_with_principal() {
    let s = Setup::new().await;
    let token = s.auth.mint(
        TokenSpec::new()
            .scope("read write")
            .sub("alice")
            .username("alice")
            .client_id("pw-client")
            .exp(far_future()),
    );
    let response = s.get("/whoami", Some(&token)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["client_id"], "pw-client");
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["exp"], far_future());
}

#[tokio::test]
async fn b2_scheme_is_case_insensitive() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    for scheme in ["bearer", "BEARER", "Bearer", "beARer"] {
        let value = format!("{scheme} {token}");
        let response = s.get_with("/ping", &[("authorization", &value)]).await;
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn b3_malformed_credentials_are_400_invalid_request() {
    // Documented choice: a malformed header is 400 invalid_request (DESIGN.md).
    let s = Setup::new().await;
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a,b",
        "Bearer =x",
        "Bearer a\"b",
    ] {
        let response = s.get_with("/ping", &[("authorization", value)]).await;
        assert_eq!(response.status(), 400, "{value:?}");
        let params = challenge_params(&challenge(&response));
        assert_eq!(param(&params, "error"), Some("invalid_request"), "{value:?}");
    }
    let non_ascii = reqwest::header::HeaderValue::from_bytes("Bearer tök".as_bytes()).unwrap();
    let response = s
        .http
        .get(format!("{}/ping", s.base))
        .header("authorization", non_ascii)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        s.auth.introspection_calls(),
        0,
        "malformed tokens never reach the AS"
    );
}

#[tokio::test]
async fn b3_two_authorization_headers_are_400() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    let value = format!("Bearer {token}");
    let response = s
        .get_with("/ping", &[("authorization", &value), ("authorization", &value)])
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn overlong_token_is_401_without_introspection() {
    let s = Setup::with(
        |b| b,
        |l| l.token_extractor(BearerExtractor::new().max_length(64)),
    )
    .await;
    let response = s.get("/ping", Some(&"a".repeat(65))).await;
    assert_eq!(response.status(), 401);
    let params = challenge_params(&challenge(&response));
    assert_eq!(param(&params, "error"), Some("invalid_token"));
    // A huge header is refused too, and nothing panics.
    let response = s.get("/ping", Some(&"a".repeat(60_000))).await;
    assert!(
        matches!(response.status().as_u16(), 401 | 431),
        "{}",
        response.status()
    );
    assert_eq!(s.auth.introspection_calls(), 0);
}

#[tokio::test]
async fn b4_form_body_token_is_not_read() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    let response = s
        .http
        .post(format!("{}/form", s.base))
        .form(&[("access_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(challenge(&response), "Bearer realm=\"api\"");
}

#[tokio::test]
async fn b5_query_token_is_opt_in_and_private() {
    let off = Setup::new().await;
    let token = off.auth.mint_token("read");
    let response = off.get(&format!("/ping?access_token={token}"), None).await;
    assert_eq!(response.status(), 401, "query tokens are off by default");

    let on = Setup::with(
        |b| b,
        |l| l.token_extractor(BearerExtractor::new().allow_query(true)),
    )
    .await;
    let token = on.auth.mint_token("read");
    let response = on.get(&format!("/ping?access_token={token}"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "private");
    // Again, now a cache hit (the middleware's other path): still private.
    let response = on.get(&format!("/ping?access_token={token}"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "private");
    assert_eq!(on.auth.introspection_calls(), 1);
    let response = on.get("/ping", Some(&token)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("cache-control").is_none());
}

#[tokio::test]
async fn b6_token_in_two_places_is_400() {
    let s = Setup::with(
        |b| b,
        |l| l.token_extractor(BearerExtractor::new().allow_query(true)),
    )
    .await;
    let token = s.auth.mint_token("read");
    let response = s.get(&format!("/ping?access_token={token}"), Some(&token)).await;
    assert_eq!(response.status(), 400);
    let params = challenge_params(&challenge(&response));
    assert_eq!(param(&params, "error"), Some("invalid_request"));
}

#[tokio::test]
async fn b7_b8_b9_every_401_has_a_challenge_with_realm_and_unique_params() {
    let s = Setup::new().await;
    let expired = s
        .auth
        .mint(TokenSpec::new().scope("read").exp_in(Duration::from_secs(0)));
    let unknown = "unknown-token".to_owned();
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("authorization", "Basic dXNlcjpwYXNz".into())],
        vec![("authorization", format!("Bearer {unknown}"))],
        vec![("authorization", format!("Bearer {expired}"))],
    ];
    for headers in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = s.get_with("/ping", &headers).await;
        assert_eq!(response.status(), 401, "{headers:?}");
        let params = challenge_params(&challenge(&response));
        assert_eq!(param(&params, "realm"), Some("api"));
    }
}

#[tokio::test]
async fn b10_realm_and_description_stay_in_allowed_characters() {
    let s = Setup::with(
        |b| b,
        |l| {
            // A realm the challenge cannot carry as given is refused when
            // configured, never sent altered.
            for realm in ["my \"realm\" é\\", "a\r\nb"] {
                let refused = l.clone().realm(realm);
                assert!(
                    matches!(refused, Err(ConfigError::InvalidSetting(_))),
                    "{realm:?}"
                );
            }
            l.realm("my realm ").unwrap()
        },
    )
    .await;
    let response = s.get("/ping", Some("unknown")).await;
    let header = challenge(&response);
    let params = challenge_params(&header);
    assert_eq!(param(&params, "realm"), Some("my realm "));
    for (_, value) in &params {
        assert!(value
            .chars()
            .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')));
    }
}

#[tokio::test]
async fn b11_no_credentials_or_other_scheme_get_a_bare_challenge() {
    let s = Setup::new().await;
    for headers in [
        vec![],
        vec![("authorization", "Basic dXNlcjpwYXNz")],
        vec![("authorization", "Token x")],
    ] {
        let response = s.get_with("/ping", &headers).await;
        assert_eq!(response.status(), 401);
        assert_eq!(challenge(&response), "Bearer realm=\"api\"", "{headers:?}");
    }
    assert_eq!(s.auth.introspection_calls(), 0);
}

#[tokio::test]
async fn b12_inactive_unknown_revoked_expired_are_invalid_token() {
    let s = Setup::new().await;
    let revoked = s.auth.mint_token("read");
    s.auth.revoke(&revoked);
    let expired = s.auth.mint_token("read");
    s.auth.expire(&expired);
    for token in ["never-issued", revoked.as_str(), expired.as_str()] {
        let response = s.get("/ping", Some(token)).await;
        assert_eq!(response.status(), 401);
        let params = challenge_params(&challenge(&response));
        assert_eq!(param(&params, "error"), Some("invalid_token"));
        assert!(param(&params, "error_description").is_some());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
}

#[tokio::test]
async fn b13_insufficient_scope_lists_required_scopes() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    let response = s.get("/read-write", Some(&token)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"read write\""
    );
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_invalid_token() {
    let s = Setup::with(
        |b| {
            b.expected_issuer("https://as.example")
                .expected_audience("https://api.example")
        },
        |l| l,
    )
    .await;
    let good = s.auth.mint(
        TokenSpec::new()
            .iss("https://as.example")
            .aud("https://api.example"),
    );
    let other_iss = s.auth.mint(
        TokenSpec::new()
            .iss("https://as.example/")
            .aud("https://api.example"),
    );
    let other_aud = s.auth.mint(
        TokenSpec::new()
            .iss("https://as.example")
            .aud("https://API.example"),
    );
    let many_aud = s.auth.mint(
        TokenSpec::new()
            .iss("https://as.example")
            .audiences(["x", "https://api.example"]),
    );
    assert_eq!(s.status("/ping", Some(&good)).await, 200);
    assert_eq!(s.status("/ping", Some(&many_aud)).await, 200);
    // Twice each: the second answer comes from the cache, and the checks
    // run on every read, not only after an introspection call.
    for token in [&other_iss, &other_aud, &other_iss, &other_aud] {
        let response = s.get("/ping", Some(token)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            param(&challenge_params(&challenge(&response)), "error"),
            Some("invalid_token")
        );
    }
    assert_eq!(s.auth.introspection_calls(), 4, "the last two were cache hits");
}

/// An answer without `aud`, where an audience is expected, is refused in the
/// words the JWT path uses; one naming another audience keeps its own words.
/// Twice each: the second answer comes from the cache.
#[tokio::test]
async fn an_introspected_token_without_aud_is_refused_for_having_none() {
    let s = Setup::with(|b| b.expected_audience("https://api.example"), |l| l).await;
    let none = s.auth.mint(TokenSpec::new().scope("read"));
    let other = s
        .auth
        .mint(TokenSpec::new().scope("read").aud("https://other.example"));
    let no_audience =
        "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token has no audience (aud)\"";
    let other_audience = "Bearer realm=\"api\", error=\"invalid_token\", \
        error_description=\"the token is meant for another audience\"";
    for (token, expected) in [(&none, no_audience), (&other, other_audience)].repeat(2) {
        let response = s.get("/ping", Some(token)).await;
        assert_eq!(response.status(), 401);
        // `HeaderValue == &str` compares the bytes.
        assert_eq!(response.headers()["www-authenticate"], expected);
    }
    assert_eq!(s.auth.introspection_calls(), 2, "the last two were cache hits");
}

#[tokio::test]
async fn i1_i2_c2_request_is_a_form_post_with_basic_only() {
    let s = Setup::new().await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    let recorded = s.auth.last_introspection_request().expect("a recorded request");
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(recorded.accept.as_deref(), Some("application/json"));
    let form: Vec<(&str, &str)> = recorded
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        form,
        [("token", token.as_str()), ("token_type_hint", "access_token")]
    );
    assert!(recorded
        .authorization
        .as_deref()
        .unwrap_or_default()
        .starts_with("Basic "));
}

#[tokio::test]
async fn i2_token_type_hint_can_be_turned_off() {
    let s = Setup::with(|b| b.token_type_hint(false), |l| l).await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200);
    let recorded = s.auth.last_introspection_request().unwrap();
    assert!(recorded.form.iter().all(|(k, _)| k != "token_type_hint"));
}

#[tokio::test]
async fn i4_non_boolean_or_missing_active_is_an_as_fault() {
    let s = Setup::new().await;
    for answer in [
        json!({}),
        json!({"active": "true"}),
        json!({"active": 1}),
        json!({"active": null}),
    ] {
        let token = s.auth.mint(TokenSpec::new().raw_answer(answer.clone()));
        let response = s.get("/ping", Some(&token)).await;
        assert_eq!(response.status(), 503, "{answer}");
        assert!(response.headers().contains_key("retry-after"));
        assert!(response.headers().get("www-authenticate").is_none());
    }
}

#[tokio::test]
async fn i5_inactive_answer_members_are_ignored() {
    let s = Setup::new().await;
    let token = s
        .auth
        .mint(TokenSpec::new().raw_answer(json!({"active": false, "scope": "admin"})));
    let response = s.get("/admin", Some(&token)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        param(&challenge_params(&challenge(&response)), "error"),
        Some("invalid_token")
    );
}

#[tokio::test]
async fn i6_i7_lenient_shapes_are_read() {
    let s = Setup::new().await;
    let token = s.auth.mint(TokenSpec::new().raw_answer(json!({
        "active": true, "scope": ["read", "write"], "exp": far_future().to_string(),
        "aud": "https://api.example", "sub": "alice"
    })));
    let response = s.get("/whoami", Some(&token)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["exp"], far_future());
    assert_eq!(body["aud"], json!(["https://api.example"]));
}

#[tokio::test]
async fn dot_and_hydra_shapes_are_read() {
    use tower_introspection::test_util::AnswerShape;
    let s = Setup::new().await;
    for shape in [AnswerShape::Dot, AnswerShape::Hydra, AnswerShape::Full] {
        s.auth.set_shape(shape);
        let token = s.auth.mint(
            TokenSpec::new()
                .scope("read write")
                .sub("alice")
                .username("alice")
                .client_id("pw-client")
                .audiences(["https://api.example"])
                .exp(far_future()),
        );
        let response = s.get("/whoami", Some(&token)).await;
        assert_eq!(response.status(), 200, "{shape:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["scope"], "read write", "{shape:?}");
        assert_eq!(body["client_id"], "pw-client", "{shape:?}");
        assert_eq!(body["aud"], json!(["https://api.example"]), "{shape:?}");
    }
}

#[tokio::test]
async fn i8_as_refusing_our_credentials_is_500_and_not_invalid_token() {
    for style in [AuthFailure::Json401, AuthFailure::DotHtml403] {
        let auth = TestAuthServer::start().await.unwrap();
        auth.set_auth_failure(style);
        let introspector = Introspector::builder(auth.introspection_url())
            .client_secret_basic(RS_ID, "wrong-secret")
            .build()
            .unwrap();
        let base = common::serve(common::app(IntrospectionLayer::new(introspector.clone()))).await;
        let token = auth.mint_token("read");
        for _ in 0..2 {
            let response = reqwest::Client::new()
                .get(format!("{base}/ping"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 500, "{style:?}");
            assert!(response.headers().get("www-authenticate").is_none());
        }
        assert_eq!(
            auth.introspection_calls(),
            2,
            "configuration errors are never cached"
        );
        assert_eq!(introspector.stats().introspections.config_error, 2);
    }
}

#[tokio::test]
async fn i13_active_answer_with_passed_exp_is_rejected() {
    let s = Setup::new().await;
    let token = s.auth.mint(
        TokenSpec::new()
            .scope("read")
            .exp(1_000_000_000)
            .active_even_if_expired(),
    );
    let response = s.get("/ping", Some(&token)).await;
    assert_eq!(response.status(), 401);
    let token = s.auth.mint(
        TokenSpec::new()
            .scope("read")
            .nbf(far_future())
            .active_even_if_expired(),
    );
    assert_eq!(s.status("/ping", Some(&token)).await, 401, "nbf in the future");
}

/// I14 (RFC 7662 §2.2): an answer given to one resource server is not used
/// for another. The cache key of a token depends on the introspection
/// endpoint and the client id, so two resource servers sharing a process (or
/// a cache) cannot read each other's entries; the same configuration gives
/// the same key.
#[tokio::test]
async fn i14_two_resource_servers_do_not_share_answers() {
    let auth = TestAuthServer::start().await.unwrap();
    let other_as = TestAuthServer::start().await.unwrap();
    auth.register_client(ClientSpec::new("rs-two", "rs-two-secret").can_introspect(true));
    let one = common::introspector(&auth);
    let same = common::introspector(&auth);
    let other_client = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-two", "rs-two-secret")
        .build()
        .unwrap();
    let other_endpoint = common::introspector(&other_as);
    let token = auth.mint_token("read");

    assert_eq!(
        one.cache_key(&token),
        same.cache_key(&token),
        "same configuration"
    );
    assert_ne!(
        one.cache_key(&token),
        other_client.cache_key(&token),
        "another client_id"
    );
    assert_ne!(
        one.cache_key(&token),
        other_endpoint.cache_key(&token),
        "another endpoint"
    );

    one.validate(&token).await.unwrap();
    other_client.validate(&token).await.unwrap();
    assert_eq!(auth.introspection_calls(), 2, "each asked for itself");
}

#[tokio::test]
async fn c1_basic_credentials_are_urlencoded() {
    let auth = TestAuthServer::start().await.unwrap();
    let (id, secret) = ("rs weird:id", "a+b/c%:é");
    auth.register_client(ClientSpec::new(id, secret).can_introspect(true));
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic(id, secret)
        .build()
        .unwrap();
    let token = auth.mint_token("read");
    introspector
        .validate(&token)
        .await
        .expect("the AS decoded our credentials");
}

#[tokio::test]
async fn c2_c3_post_mode_sends_credentials_in_the_body_only() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_post(RS_ID, RS_SECRET)
        .build()
        .unwrap();
    let token = auth.mint_token("read");
    introspector.validate(&token).await.unwrap();
    let recorded = auth.last_introspection_request().unwrap();
    assert!(recorded.authorization.is_none());
    assert!(recorded.form.contains(&("client_id".into(), RS_ID.into())));
    assert!(recorded
        .form
        .contains(&("client_secret".into(), RS_SECRET.into())));
}

#[tokio::test]
async fn c5_bearer_from_client_credentials_is_cached_and_refreshed_once() {
    let auth = TestAuthServer::start().await.unwrap();
    auth.register_client(
        ClientSpec::new("rs-bearer", "rs-bearer-secret")
            .grants(&["client_credentials"])
            .scopes("introspection"),
    );
    let introspector = Introspector::builder(auth.introspection_url())
        .bearer_from_client_credentials(auth.token_url(), "rs-bearer", "rs-bearer-secret")
        .token_scope("introspection")
        .max_ttl(Duration::ZERO)
        .build()
        .unwrap();
    let first = auth.mint_token("read");
    let second = auth.mint_token("read");
    introspector.validate(&first).await.unwrap();
    introspector.validate(&second).await.unwrap();
    assert_eq!(auth.token_calls(), 1, "the bearer credential is reused");
    let recorded = auth.last_introspection_request().unwrap();
    let credential = recorded.authorization.expect("a bearer credential");
    assert!(credential.starts_with("Bearer "));
    assert_ne!(
        credential,
        format!("Bearer {second}"),
        "never the introspected token"
    );

    // Revoke our own credential: the next call gets 401, fetches a new token once, and succeeds.
    auth.revoke(credential.trim_start_matches("Bearer "));
    introspector.validate(&first).await.unwrap();
    assert_eq!(auth.token_calls(), 2);
}

#[tokio::test]
async fn c5_token_endpoint_failure_is_reported() {
    let auth = TestAuthServer::start().await.unwrap();
    let bad_secret = Introspector::builder(auth.introspection_url())
        .bearer_from_client_credentials(auth.token_url(), "test-client", "wrong")
        .build()
        .unwrap();
    let token = auth.mint_token("read");
    let error = bad_secret.validate(&token).await.unwrap_err();
    assert_eq!(error.status(), 500);

    auth.register_client(
        ClientSpec::new("rs-bearer", "s")
            .grants(&["client_credentials"])
            .scopes("introspection"),
    );
    let failing = Introspector::builder(auth.introspection_url())
        .bearer_from_client_credentials(auth.token_url(), "rs-bearer", "s")
        .build()
        .unwrap();
    auth.set_token_endpoint_fault(Some(Fault::Status(503)));
    assert_eq!(failing.validate(&token).await.unwrap_err().status(), 503);
    auth.set_token_endpoint_fault(None);
    // Not before the backoff after a failed fetch (1 s after a first one).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    failing
        .validate(&token)
        .await
        .expect("recovers once the token endpoint works");
}

/// Each fault of the test AS, with the status the client sees; nothing is
/// cached: once the fault clears, the next request for the same token makes
/// a new call and succeeds (a cached fault would answer without a call).
#[tokio::test]
async fn as_faults_are_503_uncached_and_recover() {
    let s = Setup::with(|b| b.timeout(Duration::from_millis(300)), |l| l).await;
    let faults = [
        Fault::Delay(Duration::from_millis(800)),
        Fault::Hang,
        Fault::Status(500),
        Fault::Status(502),
        Fault::Status(503),
        Fault::Status(404),
        Fault::Html,
        Fault::TruncatedJson,
        Fault::Oversized(70 * 1024),
        Fault::OversizedChunked(70 * 1024),
        Fault::ActiveAsString,
        Fault::ActiveAsNumber,
        Fault::JsonArray,
        Fault::JsonNull,
        Fault::CloseConnection,
        Fault::Redirect(format!("{}/elsewhere", s.auth.base_url())),
    ];
    let count = u64::try_from(faults.len()).unwrap();
    for fault in faults {
        let label = format!("{fault:?}");
        // A token of its own: the recovery below caches it as active.
        let token = s.auth.mint_token("read");
        s.auth.set_fault(fault);
        let response = s.get("/ping", Some(&token)).await;
        assert_eq!(response.status(), 503, "{label}");
        assert_eq!(response.headers()["retry-after"], "5", "{label}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{label}");
        s.auth.clear_fault();

        let calls = s.auth.introspection_calls();
        assert_eq!(s.status("/ping", Some(&token)).await, 200, "{label}: recovers");
        assert_eq!(
            s.auth.introspection_calls(),
            calls + 1,
            "{label}: the fault was not cached, the AS was asked again"
        );
    }
    assert_eq!(s.introspector.stats().introspections.active, count);
}

#[tokio::test]
async fn as_down_is_503_and_recovery_needs_no_restart() {
    let auth = TestAuthServer::start().await.unwrap();
    let addr = auth.addr();
    let introspector = common::introspector(&auth);
    let base = common::serve(common::app(IntrospectionLayer::new(introspector))).await;
    let token = auth.mint_token("read");
    let http = reqwest::Client::new();
    let status = |t: String| {
        let http = http.clone();
        let url = format!("{base}/ping");
        async move {
            http.get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    auth.shutdown().await;
    assert_eq!(status(token.clone()).await, 503);

    let restarted = TestAuthServer::start_on(addr).await.unwrap();
    let token = restarted.mint_token("read");
    assert_eq!(status(token).await, 200);
}

#[tokio::test]
async fn unprotected_route_extractor_is_500_naming_the_layer() {
    let s = Setup::new().await;
    for path in ["/unprotected/whoami", "/unprotected/scoped", "/unprotected/maybe"] {
        let response = s.get(path, None).await;
        assert_eq!(response.status(), 500, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("IntrospectionLayer"));
    }
}

#[tokio::test]
async fn anonymous_mode_lets_only_tokenless_requests_through() {
    let s = Setup::with(|b| b, |l| l.allow_anonymous(true)).await;
    assert_eq!(s.get("/maybe", None).await.text().await.unwrap(), "anonymous");
    let token = s.auth.mint(TokenSpec::new().scope("read").sub("alice"));
    assert_eq!(
        s.get("/maybe", Some(&token)).await.text().await.unwrap(),
        "user:alice"
    );
    assert_eq!(
        s.status("/maybe", Some("a b")).await,
        400,
        "malformed is still rejected"
    );
    assert_eq!(
        s.status("/maybe", Some("unknown")).await,
        401,
        "invalid is still rejected"
    );
    // Routes that need a principal answer 401 to anonymous requests.
    let response = s.get("/whoami", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenge(&response), "Bearer realm=\"api\"");
    assert_eq!(s.status("/items", None).await, 401);
}

#[tokio::test]
async fn rejection_carries_the_error_in_extensions_and_body_is_replaceable() {
    use tower::ServiceExt;
    use tower_introspection::{AuthError, ErrorKind};

    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth)).rejection_body(
        |e: &AuthError, _: &mut http::HeaderMap| {
            axum::body::Body::from(format!("no: {}", e.status().as_u16()))
        },
    );
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    let response = app
        .oneshot(http::Request::get("/").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"api\"");
    assert_eq!(
        response.extensions().get::<AuthError>().unwrap().kind(),
        ErrorKind::MissingToken
    );
    let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
    assert!(body.starts_with(b"no: "));
}

#[tokio::test]
async fn layer_works_with_a_plain_tower_service() {
    use tower::{service_fn, ServiceBuilder, ServiceExt};
    use tower_introspection::Principal;

    let auth = TestAuthServer::start().await.unwrap();
    let service = ServiceBuilder::new()
        .layer(IntrospectionLayer::new(common::introspector(&auth)))
        .service(service_fn(|request: http::Request<String>| async move {
            let subject = request
                .extensions()
                .get::<Principal>()
                .and_then(|p| p.subject().map(str::to_owned));
            Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::from(
                subject.unwrap_or_default(),
            )))
        }));
    let token = auth.mint(TokenSpec::new().sub("svc-user"));
    let request = http::Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.into_body(), "svc-user");
}

/// Ory Hydra's admin introspection shape (the medblocks seed's `/oauth2/*`
/// server): `token_use`, `ext`, `aud` as an array, `nbf`, `iss`.
#[tokio::test]
async fn hydra_shaped_answer_is_read_fully() {
    use tower_introspection::test_util::AnswerShape;
    let auth = TestAuthServer::start().await.unwrap();
    auth.set_shape(AnswerShape::Hydra);
    let introspector = common::builder(&auth)
        .expected_issuer(auth.issuer())
        .expected_audience("https://api.example")
        .required_token_type("bearer")
        .build()
        .unwrap();
    let token = auth.mint(
        TokenSpec::new()
            .scope("openid offline fhir:read")
            .sub("user-42")
            .client_id("spa-client")
            .audiences(["https://api.example", "https://other.example"])
            .nbf(1_700_000_000)
            .claim("tenant", json!("acme")),
    );
    let recorded_answer = {
        let principal = introspector.validate(&token).await.unwrap();
        assert_eq!(principal.subject(), Some("user-42"));
        assert_eq!(principal.client_id(), Some("spa-client"));
        assert_eq!(principal.issuer(), Some(auth.issuer().as_str()));
        assert_eq!(principal.token_type(), Some("Bearer"));
        assert_eq!(principal.not_before(), Some(1_700_000_000));
        assert!(principal
            .scopes()
            .contains_all(["openid", "offline", "fhir:read"]));
        assert_eq!(
            principal.claim::<String>("token_use").unwrap().unwrap(),
            "access_token"
        );
        principal.claim::<Value>("ext").unwrap().unwrap()
    };
    assert_eq!(recorded_answer["tenant"], "acme");
    // Hydra sends `aud: []` when the token has no audience: the audience check fails closed.
    let no_aud = auth.mint(TokenSpec::new().scope("read").sub("user-42"));
    assert_eq!(introspector.validate(&no_aud).await.unwrap_err().status(), 401);
}

async fn serve_with_form_layer() -> (TestAuthServer, String) {
    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth));
    let app = common::app(layer).layer(tower_introspection::form::FormBodyTokenLayer::new().max_body(1024));
    (auth, common::serve(app).await)
}

#[tokio::test]
async fn b4_form_body_token_when_opted_in() {
    let (auth, base) = serve_with_form_layer().await;
    let token = auth.mint_token("read");
    let http = reqwest::Client::new();
    let post = |body: String, content_type: &'static str| {
        http.post(format!("{base}/form"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let form = "application/x-www-form-urlencoded";
    let response = post(format!("a=1&access_token={token}"), form).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "posted",
        "the handler still gets the body's route"
    );

    // Not form-encoded: not read.
    let response = post(format!(r#"{{"access_token":"{token}"}}"#), "application/json")
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Repeated parameter, or header and body together: 400.
    let response = post(format!("access_token={token}&access_token={token}"), form)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = http
        .post(format!("{base}/form"))
        .header("content-type", form)
        .bearer_auth(&token)
        .body(format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        param(&challenge_params(&challenge(&response)), "error"),
        Some("invalid_request")
    );
    // Announced larger than the limit: not read, so no token.
    let response = post(format!("access_token={token}&pad={}", "x".repeat(2048)), form)
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Not ASCII: §2.2 does not apply, and a header token still works.
    let response = http
        .post(format!("{base}/form"))
        .header("content-type", form)
        .bearer_auth(&token)
        .body("name=café")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // GET never has its body read (RFC 6750 §2.2).
    let response = http
        .get(format!("{base}/ping"))
        .header("content-type", form)
        .body(format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// The `Authorization` header still reaches the inner service, marked
/// sensitive so inner layers that log headers do not print the token; a
/// `Cache-Control` stronger than the layer's own is kept.
#[tokio::test]
async fn inner_service_sees_a_sensitive_header_and_keeps_a_stronger_cache_control() {
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let auth = TestAuthServer::start().await.unwrap();
    let token = auth.mint_token("read");
    let service = ServiceBuilder::new()
        .layer(
            IntrospectionLayer::new(common::introspector(&auth))
                .token_extractor(BearerExtractor::new().allow_query(true)),
        )
        .service(service_fn(|request: http::Request<String>| async move {
            // `None` if the header was removed, `Some(false)` if not marked.
            let sensitive = request
                .headers()
                .get("authorization")
                .map(http::HeaderValue::is_sensitive);
            let mut response = http::Response::new(bytes::Bytes::from(format!("{sensitive:?}")));
            if request.uri().path() == "/no-store" {
                response
                    .headers_mut()
                    .insert("cache-control", http::HeaderValue::from_static("no-store"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }));

    let request = http::Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.into_body(),
        "Some(true)",
        "the header reaches inner layers, marked sensitive"
    );

    let request = http::Request::get(format!("/no-store?access_token={token}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "a stronger directive stays"
    );
}

/// The layer's hit path skips the `b64token` scan, because cached answers
/// hold only tokens that passed it. A token outside the grammar that the
/// introspector cached through its public `validate` is still malformed to
/// the layer (400), not a cache hit.
#[tokio::test]
async fn a_cached_token_outside_the_grammar_is_still_malformed_at_the_layer() {
    let s = Setup::new().await;
    for token in ["a\"b", "abc,def", "tok(en)"] {
        let token = s.auth.mint(TokenSpec::new().token_value(token));
        s.introspector.validate(&token).await.unwrap();
        let response = s.get("/ping", Some(&token)).await;
        assert_eq!(response.status(), 400, "{token}");
        assert_eq!(
            param(&challenge_params(&challenge(&response)), "error"),
            Some("invalid_request")
        );
    }
}
