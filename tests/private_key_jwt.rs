//! `private_key_jwt` client authentication (RFC 7523 §2.2) toward the
//! introspection and token endpoints, against the test AS over real TCP:
//! the AS checks each assertion's signature with the registered public key,
//! its `iss`/`sub`/`aud`/`exp`, and refuses a replayed `jti`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tower_introspection::test_util::{client_private_key_pem, ClientSpec, JwtAlg, TestAuthServer};
use tower_introspection::{
    introspection::{AssertionAudience, ClientKey},
    jwt::Algorithm,
    Introspector,
};

const RS: &str = "rs-keyed";

fn key(alg: &JwtAlg) -> ClientKey {
    let key = ClientKey::from_pkcs8_pem(&client_private_key_pem(alg, 0).unwrap()).unwrap();
    match alg {
        JwtAlg::Ps256 => key.with_algorithm(Algorithm::Ps256).unwrap(),
        _ => key,
    }
}

/// A test AS with `RS` registered under `registered`'s public key.
async fn server_with(registered: &ClientKey) -> TestAuthServer {
    let auth = TestAuthServer::start().await.unwrap();
    auth.register_client(
        ClientSpec::new(RS, "unused-secret")
            .can_introspect(true)
            .scopes("introspection")
            .public_jwk(registered.public_jwk()),
    );
    auth
}

fn claims(assertion: &str) -> Value {
    let payload = assertion.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn last_form(auth: &TestAuthServer, name: &str) -> Option<String> {
    let request = auth.last_introspection_request().unwrap();
    request
        .form
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn every_algorithm_authenticates_and_each_call_signs_a_new_assertion() {
    for alg in [JwtAlg::Rs256, JwtAlg::Ps256, JwtAlg::Es256, JwtAlg::EdDsa] {
        let key = key(&alg);
        let auth = server_with(&key).await;
        let introspector = Introspector::builder(auth.introspection_url())
            .private_key_jwt(RS, key)
            .build()
            .unwrap();
        let first = auth.mint_token("read");
        let second = auth.mint_token("read");
        introspector.validate(&first).await.unwrap();
        let assertion = last_form(&auth, "client_assertion").unwrap();
        assert_eq!(
            last_form(&auth, "client_assertion_type").as_deref(),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert_eq!(last_form(&auth, "client_secret"), None);
        assert_eq!(auth.last_introspection_request().unwrap().authorization, None);
        let c = claims(&assertion);
        assert_eq!(c["iss"], RS, "{alg:?}");
        assert_eq!(c["sub"], RS);
        assert_eq!(c["aud"], json!(auth.introspection_url()));
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);
        // The AS refuses a replayed jti: the second call only passes with a new one.
        introspector.validate(&second).await.unwrap();
        let again = last_form(&auth, "client_assertion").unwrap();
        assert_ne!(claims(&again)["jti"], c["jti"]);
        assert_eq!(auth.introspection_calls(), 2);
    }
}

#[tokio::test]
async fn the_test_as_refuses_a_replayed_assertion() {
    let key = key(&JwtAlg::Es256);
    let auth = server_with(&key).await;
    let introspector = Introspector::builder(auth.introspection_url())
        .private_key_jwt(RS, key)
        .build()
        .unwrap();
    introspector.validate(&auth.mint_token("read")).await.unwrap();
    let assertion = last_form(&auth, "client_assertion").unwrap();
    let form = [
        ("token", auth.mint_token("read")),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        ("client_assertion", assertion),
    ];
    let replayed = reqwest::Client::new()
        .post(auth.introspection_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
}

#[tokio::test]
async fn a_key_the_as_does_not_know_is_a_server_error_not_a_token_error() {
    let registered = key(&JwtAlg::Es256);
    let auth = server_with(&registered).await;
    let other = key(&JwtAlg::Es256);
    let introspector = Introspector::builder(auth.introspection_url())
        .private_key_jwt(RS, other)
        .build()
        .unwrap();
    let error = introspector.validate(&auth.mint_token("read")).await.unwrap_err();
    assert_eq!(error.status(), 500, "as for a wrong client secret");
    assert!(!format!("{introspector:?}").contains("BEGIN"));
}

#[tokio::test]
async fn assertion_audience_is_the_issuer_when_known_and_configurable() {
    let key = key(&JwtAlg::EdDsa);
    let auth = server_with(&key).await;
    let introspector = Introspector::discover(auth.issuer())
        .introspector()
        .await
        .unwrap()
        .private_key_jwt(RS, key.clone())
        .build()
        .unwrap();
    introspector.validate(&auth.mint_token("read")).await.unwrap();
    let c = claims(&last_form(&auth, "client_assertion").unwrap());
    assert_eq!(c["aud"], json!(auth.issuer()));
    // Without discovery, the issuer that signs the answers is known too.
    let signed = Introspector::builder(auth.introspection_url())
        .private_key_jwt(RS, key.clone())
        .signed_answers(auth.issuer(), auth.jwks_url())
        .build()
        .unwrap();
    signed.validate(&auth.mint_token("read")).await.unwrap();
    let c = claims(&last_form(&auth, "client_assertion").unwrap());
    assert_eq!(c["aud"], json!(auth.issuer()));
    // An audience that names another server is refused by the AS.
    let wrong = Introspector::builder(auth.introspection_url())
        .private_key_jwt(RS, key)
        .client_assertion_audience(AssertionAudience::Issuer("https://other.example".into()))
        .build()
        .unwrap();
    assert_eq!(
        wrong
            .validate(&auth.mint_token("read"))
            .await
            .unwrap_err()
            .status(),
        500
    );
}

#[tokio::test]
async fn the_client_credentials_grant_uses_the_key_too() {
    let key = key(&JwtAlg::Rs256);
    let auth = server_with(&key).await;
    let introspector = Introspector::builder(auth.introspection_url())
        .bearer_from_client_credentials_with_key(auth.token_url(), RS, key)
        .token_scope("introspection")
        .build()
        .unwrap();
    introspector.validate(&auth.mint_token("read")).await.unwrap();
    assert_eq!(auth.token_calls(), 1);
    let authorization = auth.last_introspection_request().unwrap().authorization.unwrap();
    assert!(authorization.starts_with("Bearer "), "{authorization}");
    // With a key the AS does not know, no token: a configuration error.
    let stranger = Introspector::builder(auth.introspection_url())
        .bearer_from_client_credentials_with_key(auth.token_url(), RS, self::key(&JwtAlg::Es256))
        .build()
        .unwrap();
    assert_eq!(
        stranger
            .validate(&auth.mint_token("read"))
            .await
            .unwrap_err()
            .status(),
        500
    );
}

#[test]
fn the_audience_setting_needs_private_key_jwt() {
    let error = Introspector::builder("https://as.example/introspect")
        .client_secret_basic("a", "b")
        .client_assertion_audience(AssertionAudience::Endpoint)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("private_key_jwt"), "{error}");
}

/// `examples/resource_server` with `CLIENT_AUTH=private_key_jwt`, a JWK key
/// file and `SIGNED_INTROSPECTION=true`: a token is accepted through a signed
/// answer, and a spoiled signed answer is a 503.
#[tokio::test]
async fn resource_server_example_with_a_key_file_and_signed_answers() {
    use std::io::{BufRead, BufReader};
    use tower_introspection::test_util::SignedAnswerFault;
    let pem = client_private_key_pem(&JwtAlg::Es256, 0).unwrap();
    let key = ClientKey::from_pkcs8_pem(&pem).unwrap();
    let auth = server_with(&key).await;
    let dir = std::env::temp_dir().join(format!("tower-introspection-pkjwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("client-key.pem");
    std::fs::write(&key_file, &pem).unwrap();
    let mut child = std::process::Command::new(common::example("resource_server"))
        .env("INTROSPECTION_URL", auth.introspection_url())
        .env("CLIENT_AUTH", "private_key_jwt")
        .env("CLIENT_ID", RS)
        .env_remove("CLIENT_SECRET")
        .env("CLIENT_KEY_FILE", &key_file)
        .env("AS_ISSUER", auth.issuer())
        .env("AS_JWKS_URL", auth.jwks_url())
        .env("SIGNED_INTROSPECTION", "true")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let base = line.strip_prefix("listening on ").unwrap().to_owned();
    let http = reqwest::Client::new();
    let status = |token: String| {
        let request = http.get(format!("{base}/items")).bearer_auth(token).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    let good = status(auth.mint_token("read")).await;
    let aud = last_form(&auth, "client_assertion").map(|a| claims(&a)["aud"].clone());
    auth.set_signed_answer_fault(Some(SignedAnswerFault::Unsigned));
    let unsigned = status(auth.mint_token("read")).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((good, unsigned), (200, 503));
    assert_eq!(aud, Some(json!(auth.issuer())));
}
