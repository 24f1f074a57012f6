//! Tests of the test authorization server, over real TCP with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use super::*;

async fn start() -> TestAuthServer {
    TestAuthServer::start().await.expect("start the test server")
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Waits up to two seconds for the condition, then asserts it.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(condition(), "condition not met within two seconds");
}

async fn json_of(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let body = res.bytes().await.unwrap();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, value)
}

/// Introspects as the resource server, with HTTP Basic.
async fn introspect(server: &TestAuthServer, token: &str) -> (StatusCode, Value) {
    let res = client()
        .post(server.introspection_url())
        .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    json_of(res).await
}

fn introspect_request(server: &TestAuthServer, token: &str) -> reqwest::RequestBuilder {
    client()
        .post(server.introspection_url())
        .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .form(&[("token", token)])
}

async fn password_grant(server: &TestAuthServer, password: &str, scope: &str) -> (StatusCode, Value) {
    let res = client()
        .post(server.token_url())
        .basic_auth(TEST_CLIENT_ID, Some(TEST_CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", TEST_USERNAME),
            ("password", password),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    json_of(res).await
}

#[tokio::test]
async fn password_grant_issues_introspectable_tokens() {
    let server = start().await;
    let (status, body) = password_grant(&server, TEST_PASSWORD, "read write").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read write");
    assert!(body["refresh_token"].is_string());
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 43);

    let (status, answer) = introspect(&server, token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], TEST_USERNAME);
    assert_eq!(answer["username"], TEST_USERNAME);
    assert_eq!(answer["client_id"], TEST_CLIENT_ID);
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["iss"], server.issuer());
    let exp = answer["exp"].as_i64().unwrap();
    assert!((exp - unix_now() - 3600).abs() <= 2);
    assert_eq!(server.token_calls(), 1);
}

#[tokio::test]
async fn password_grant_rejects_bad_credentials_like_dot() {
    let server = start().await;
    let (status, body) = password_grant(&server, "wrong", "read").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "Invalid credentials given."})
    );
    let (status, body) = password_grant(&server, TEST_PASSWORD, "read nope").await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, json!({"error": "invalid_scope"}))
    );
}

#[tokio::test]
async fn token_endpoint_client_authentication() {
    let server = start().await;
    let (id, secret) = ("weird client", "s+%:/é");
    server.register_client(ClientSpec::new(id, secret).scopes("read write"));

    // RFC 6749 §2.3.1: form-urlencoded before base64.
    let res = client()
        .post(server.token_url())
        .header(header::AUTHORIZATION, client_secret_basic(id, secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "https://api.example"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "read write");
    assert!(body.get("refresh_token").is_none());
    let (_, answer) = introspect(&server, body["access_token"].as_str().unwrap()).await;
    assert_eq!(answer["sub"], id);
    assert_eq!(answer["client_id"], id);
    assert_eq!(answer["aud"], "https://api.example");
    assert!(answer.get("username").is_none());

    // Without the encoding the `+` decodes to a space: wrong secret.
    let res = client()
        .post(server.token_url())
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(json_of(res).await.1, json!({"error": "invalid_client"}));

    // client_secret_post works; both methods at once do not.
    let res = client()
        .post(server.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client()
        .post(server.token_url())
        .header(header::AUTHORIZATION, client_secret_basic(id, secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(res).await.1["error"], "invalid_request");

    // Grants.
    let res = client()
        .post(server.token_url())
        .basic_auth(TEST_CLIENT_ID, Some(TEST_CLIENT_SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(res).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"})
        )
    );
    let res = client()
        .post(server.token_url())
        .header(header::AUTHORIZATION, client_secret_basic(id, secret))
        .form(&[
            ("grant_type", "password"),
            ("username", TEST_USERNAME),
            ("password", TEST_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res).await.1["error"], "unauthorized_client");
}

#[tokio::test]
async fn introspection_caller_authentication() {
    let server = start().await;
    let token = server.mint_token("read");

    let (status, answer) = introspect(&server, &token).await;
    assert_eq!((status, answer["active"].clone()), (StatusCode::OK, json!(true)));

    let res = client()
        .post(server.introspection_url())
        .form(&[
            ("token", token.as_str()),
            ("client_id", RS_CLIENT_ID),
            ("client_secret", RS_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res).await.1["active"], true);

    let bearer = server.mint(TokenSpec::new().scope("introspection"));
    let res = client()
        .post(server.introspection_url())
        .bearer_auth(&bearer)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res).await.1["active"], true);

    let weak = server.mint_token("read write");
    let res = client()
        .post(server.introspection_url())
        .bearer_auth(&weak)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    // Missing, wrong, and not-allowed-to-introspect credentials.
    for builder in [
        client().post(server.introspection_url()),
        client()
            .post(server.introspection_url())
            .basic_auth(RS_CLIENT_ID, Some("wrong")),
        client()
            .post(server.introspection_url())
            .basic_auth(TEST_CLIENT_ID, Some(TEST_CLIENT_SECRET)),
    ] {
        let res = builder.form(&[("token", token.as_str())]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"test\"");
        assert_eq!(json_of(res).await.1, json!({"error": "invalid_client"}));
    }

    // Both methods, and no token.
    let res = client()
        .post(server.introspection_url())
        .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .form(&[
            ("token", token.as_str()),
            ("client_id", RS_CLIENT_ID),
            ("client_secret", RS_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(res).await.1["error"], "invalid_request");
    let res = client()
        .post(server.introspection_url())
        .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Django OAuth Toolkit style.
    server.set_auth_failure(AuthFailure::DotHtml403);
    let res = client()
        .post(server.introspection_url())
        .basic_auth(RS_CLIENT_ID, Some("wrong"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(res.bytes().await.unwrap().is_empty());

    // Other methods are counted and refused.
    let res = client().get(server.introspection_url()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(server.last_introspection_request().unwrap().method, "GET");
    assert_eq!(server.introspection_calls(), 11);
}

#[tokio::test]
async fn inactive_tokens_answer_exactly_active_false() {
    let server = start().await;
    let revoked = server.mint_token("read");
    let expired = server.mint_token("read");
    let past = server.mint(TokenSpec::new().scope("read").exp_ago(Duration::from_secs(5)));
    let lying = server.mint(
        TokenSpec::new()
            .scope("read")
            .exp_ago(Duration::from_secs(5))
            .active_even_if_expired(),
    );
    let by_endpoint = server.mint_token("read");
    server.revoke(&revoked);
    server.expire(&expired);
    assert!(!server.is_active(&revoked));

    for token in [revoked.as_str(), expired.as_str(), past.as_str(), "unknown-token"] {
        let res = introspect_request(&server, token).send().await.unwrap();
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(res.text().await.unwrap(), r#"{"active":false}"#);
    }
    let (_, answer) = introspect(&server, &lying).await;
    assert_eq!(answer["active"], true);
    assert!(answer["exp"].as_i64().unwrap() < unix_now());

    let res = client()
        .post(server.revocation_url())
        .basic_auth(TEST_CLIENT_ID, Some(TEST_CLIENT_SECRET))
        .form(&[("token", by_endpoint.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        introspect(&server, &by_endpoint).await.1,
        json!({"active": false})
    );
    let res = client()
        .post(server.revocation_url())
        .form(&[("token", by_endpoint.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.revocation_calls(), 2);
}

#[tokio::test]
async fn answer_shapes() {
    let server = start().await;
    let one = server.mint(
        TokenSpec::new()
            .scope("read write")
            .sub("bob")
            .username("bob")
            .client_id("c")
            .aud("https://api")
            .nbf(1000)
            .iat(999)
            .claim("tenant", json!("acme")),
    );
    let several = server.mint(TokenSpec::new().audiences(["a", "b"]).omit("iss").iss("x"));

    let (_, full) = introspect(&server, &one).await;
    assert_eq!(full["aud"], "https://api");
    assert_eq!(full["tenant"], "acme");
    assert_eq!(
        (full["nbf"].clone(), full["iat"].clone()),
        (json!(1000), json!(999))
    );
    for member in [
        "active",
        "scope",
        "client_id",
        "username",
        "sub",
        "exp",
        "iss",
        "token_type",
        "jti",
    ] {
        assert!(full.get(member).is_some(), "{member} missing from {full}");
    }
    let (_, full) = introspect(&server, &several).await;
    assert_eq!(full["aud"], json!(["a", "b"]));
    assert!(full.get("iss").is_none());

    server.set_shape(AnswerShape::Dot);
    let (_, dot) = introspect(&server, &one).await;
    let keys: Vec<&str> = dot.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["active", "aud", "client_id", "exp", "scope", "username"]);
    assert_eq!(dot["aud"], json!(["https://api"]));

    server.set_shape(AnswerShape::Hydra);
    let (_, hydra) = introspect(&server, &one).await;
    assert_eq!(hydra["aud"], json!(["https://api"]));
    assert_eq!(hydra["ext"], json!({"tenant": "acme"}));
    assert_eq!(hydra["token_use"], "access_token");
    assert_eq!(hydra["token_type"], "Bearer");
    assert!(hydra.get("username").is_none() && hydra.get("tenant").is_none());
    let bare = server.mint(TokenSpec::new());
    assert_eq!(introspect(&server, &bare).await.1["aud"], json!([]));

    let raw = json!({"active": "true", "scope": ["read"], "exp": "soon"});
    let weird = server.mint(TokenSpec::new().raw_answer(raw.clone()).token_value("tok~en.1"));
    assert_eq!(weird, "tok~en.1");
    assert_eq!(introspect(&server, &weird).await.1, raw);
}

#[tokio::test]
async fn faults_produce_what_they_say() {
    let server = start().await;
    let token = server.mint_token("read");

    server.set_fault(Fault::Status(503));
    let (status, body) = json_of(introspect_request(&server, &token).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].is_string());

    server.set_fault(Fault::Html);
    let res = introspect_request(&server, &token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(res.text().await.unwrap().starts_with("<html>"));

    for (fault, expected) in [
        (Fault::TruncatedJson, r#"{"active": tr"#),
        (Fault::JsonArray, "[]"),
        (Fault::JsonNull, "null"),
    ] {
        server.set_fault(fault);
        let res = introspect_request(&server, &token).send().await.unwrap();
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(res.text().await.unwrap(), expected);
    }

    server.set_fault(Fault::ActiveAsString);
    let (_, body) = json_of(introspect_request(&server, &token).send().await.unwrap()).await;
    assert_eq!(
        (body["active"].clone(), body["scope"].clone()),
        (json!("true"), json!("read"))
    );
    server.set_fault(Fault::ActiveAsNumber);
    let (_, body) = json_of(introspect_request(&server, "unknown").send().await.unwrap()).await;
    assert_eq!(body, json!({"active": 1}));

    server.set_fault(Fault::Oversized(100_000));
    let res = introspect_request(&server, &token).send().await.unwrap();
    let length = res.content_length().unwrap();
    let body = res.bytes().await.unwrap();
    assert!(length >= 100_000 && body.len() as u64 == length);
    assert!(serde_json::from_slice::<Value>(&body).is_ok());

    server.set_fault(Fault::OversizedChunked(100_000));
    let res = introspect_request(&server, &token).send().await.unwrap();
    assert!(res.headers().get(header::CONTENT_LENGTH).is_none());
    assert_eq!(res.headers()[header::TRANSFER_ENCODING], "chunked");
    assert!(res.bytes().await.unwrap().len() >= 100_000);

    server.set_fault(Fault::CloseConnection);
    match introspect_request(&server, &token).send().await {
        Err(_) => {}
        Ok(res) => assert!(res.bytes().await.is_err(), "the body must fail"),
    }

    server.set_fault(Fault::Redirect("http://127.0.0.1:9/elsewhere".to_owned()));
    let res = introspect_request(&server, &token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()[header::LOCATION], "http://127.0.0.1:9/elsewhere");

    // Faults are served before authentication.
    server.set_fault(Fault::JsonNull);
    let res = client()
        .post(server.introspection_url())
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "null");

    server.clear_fault();
    assert_eq!(introspect(&server, &token).await.1["active"], true);

    server.set_fault_times(Fault::Status(500), 2);
    assert_eq!(
        introspect(&server, &token).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        introspect(&server, &token).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(introspect(&server, &token).await.0, StatusCode::OK);

    server.set_token_endpoint_fault(Some(Fault::Status(502)));
    assert_eq!(
        password_grant(&server, TEST_PASSWORD, "read").await.0,
        StatusCode::BAD_GATEWAY
    );
    server.set_token_endpoint_fault(None);
    assert_eq!(
        password_grant(&server, TEST_PASSWORD, "read").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hang_counts_as_in_flight_until_the_client_gives_up() {
    let server = start().await;
    let token = server.mint_token("read");
    server.set_fault(Fault::Hang);
    let err = introspect_request(&server, &token)
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(server.peak_concurrent_introspections(), 1);
    wait_until(|| server.in_flight_introspections() == 0).await;
}

#[tokio::test]
async fn delay_and_concurrency_are_counted() {
    let server = start().await;
    let token = server.mint_token("read");
    server.set_fault(Fault::Delay(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..4).map(|_| introspect(&server, &token))).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    for (status, answer) in answers {
        assert_eq!((status, answer["active"].clone()), (StatusCode::OK, json!(true)));
    }
    assert_eq!(server.introspection_calls(), 4);
    assert_eq!(server.peak_concurrent_introspections(), 4);
    assert_eq!(server.in_flight_introspections(), 0);

    server.reset_counters();
    assert_eq!(
        (
            server.introspection_calls(),
            server.peak_concurrent_introspections()
        ),
        (0, 0)
    );
    assert!(server.last_introspection_request().is_none());
}

#[tokio::test]
async fn records_the_last_introspection_request() {
    let server = start().await;
    let token = server.mint_token("read");
    introspect_request(&server, &token)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let recorded = server.last_introspection_request().unwrap();
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(recorded.accept.as_deref(), Some("application/json"));
    assert!(recorded.authorization.unwrap().starts_with("Basic "));
    assert_eq!(recorded.form, vec![("token".to_owned(), token)]);
}

#[tokio::test]
async fn metadata_documents() {
    let server = start().await;
    server.set_metadata_failures(2);
    for _ in 0..2 {
        let res = client().get(server.metadata_url()).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let (status, meta) = json_of(client().get(server.metadata_url()).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["issuer"], server.base_url());
    assert_eq!(meta["token_endpoint"], server.token_url());
    assert_eq!(meta["introspection_endpoint"], server.introspection_url());
    assert_eq!(meta["revocation_endpoint"], server.revocation_url());
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "bearer"
        ])
    );
    assert_eq!(
        meta["scopes_supported"],
        json!(["admin", "introspection", "read", "write"])
    );

    server.set_issuer("https://issuer.example");
    assert_eq!(server.issuer(), "https://issuer.example");
    let (_, meta) = json_of(
        client()
            .get(server.openid_configuration_url())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(meta["issuer"], "https://issuer.example");
    assert_eq!(server.metadata_calls(), 4);
    let token = server.mint_token("read");
    assert_eq!(
        introspect(&server, &token).await.1["iss"],
        "https://issuer.example"
    );
}

#[tokio::test]
async fn shutdown_refuses_connections_and_restart_keeps_state() {
    let server = start().await;
    let token = server.mint_token("read");
    let pooled = client();
    let send = |c: &Client| {
        c.post(server.introspection_url())
            .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
            .form(&[("token", token.as_str())])
            .send()
    };
    assert_eq!(send(&pooled).await.unwrap().status(), StatusCode::OK);

    let other = server.clone();
    drop(other);
    assert!(server.is_running());
    server.shutdown().await;
    assert!(!server.is_running());
    // Neither a pooled keep-alive connection nor a new one gets an answer.
    assert!(send(&pooled).await.is_err());
    let err = send(&client()).await.unwrap_err();
    assert!(err.is_connect(), "{err}");

    server.restart().await.unwrap();
    assert_eq!(introspect(&server, &token).await.1["active"], true);

    // A request in flight when the server stops fails instead of being answered.
    server.set_fault(Fault::Delay(Duration::from_millis(300)));
    let in_flight = tokio::spawn(introspect_request(&server, &token).send());
    while server.in_flight_introspections() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.shutdown().await;
    assert!(in_flight.await.unwrap().is_err());
    wait_until(|| server.in_flight_introspections() == 0).await;
    server.restart().await.unwrap();
    server.clear_fault();

    let addr = server.addr();
    server.shutdown().await;
    let fresh = TestAuthServer::start_on(addr).await.unwrap();
    assert_eq!(fresh.addr(), addr);
    assert_eq!(introspect(&fresh, &token).await.1, json!({"active": false}));
    drop(fresh);
}

#[tokio::test]
async fn minted_tokens_and_debug() {
    let server = start().await;
    let a = server.mint_token("read");
    let b = server.mint(TokenSpec::new());
    assert_ne!(a, b);
    for t in [&a, &b] {
        assert_eq!(t.len(), 43);
        assert!(t
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
    let debug = format!("{server:?}");
    assert!(
        !debug.contains(&a) && !debug.contains(RS_CLIENT_SECRET),
        "{debug}"
    );
    let spec = format!("{:?}", ClientSpec::new("id", "hunter2"));
    assert!(!spec.contains("hunter2"));
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let server = start().await;
    let url = server.metadata_url();
    let clone = server.clone();
    drop(server);
    assert_eq!(client().get(&url).send().await.unwrap().status(), StatusCode::OK);
    drop(clone);
    let mut refused = false;
    for _ in 0..100 {
        if let Err(err) = client().get(&url).send().await {
            refused = err.is_connect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener must close once the last handle is gone");
}
