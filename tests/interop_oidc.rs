//! Interop with a real node-oidc-provider issuing RFC 9068 JWT access tokens
//! (and opaque ones), started by `tests/interop/oidc.sh start` (`.ci/run`
//! does it).
//!
//! ```text
//! eval "$(tests/interop/oidc.sh start)"
//! cargo test --all-features --test interop_oidc -- --ignored --test-threads=1
//! tests/interop/oidc.sh stop
//! ```
//!
//! Ignored by default so `cargo test` needs no Node.js; run with `--ignored`
//! they fail with a clear message when the harness is not running. One
//! thread: one test restarts the server with a new signing key.
//!
//! What oidc-provider issues (client credentials grant, see
//! `tests/interop/README.md`): `typ: at+jwt`, RS256, `kid` = the key's
//! RFC 7638 thumbprint; claims `jti`, `sub` (= the client id), `iat`, `exp`,
//! `scope` (what was asked for, absent if nothing was), `client_id`, `iss`,
//! `aud` (a string: the resource indicator). Its introspection endpoint
//! refuses JWTs (400 `unsupported_token_type`) and answers for opaque tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::{challenge, challenge_params, param};
use serde_json::Value;
use tower_introspection::{ErrorKind, IntrospectionLayer, Introspector, JwtVerifier, Verifier};

const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/oidc.sh");

/// The harness's variables: the environment first, then `.run/oidc/env`.
fn oidc() -> HashMap<String, String> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/.run/oidc/env");
    let mut vars: HashMap<String, String> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (key, value) in std::env::vars().filter(|(k, _)| k.starts_with("OIDC_")) {
        vars.insert(key, value);
    }
    assert!(
        vars.contains_key("OIDC_ISSUER"),
        "node-oidc-provider is not running: start it with `eval \"$(tests/interop/oidc.sh start)\"`"
    );
    vars
}

struct Oidc {
    vars: HashMap<String, String>,
    http: reqwest::Client,
}

impl Oidc {
    fn new() -> Self {
        Self {
            vars: oidc(),
            http: reqwest::Client::new(),
        }
    }

    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} is not set"))
    }

    fn issuer(&self) -> &str {
        self.var("OIDC_ISSUER")
    }

    /// A client credentials grant (HTTP Basic) for `resource` (none: the
    /// AS's default, `OIDC_RESOURCE`) with `scope`.
    async fn token(&self, resource: Option<&str>, scope: &str) -> String {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let response = self
            .http
            .post(self.var("OIDC_TOKEN_URL"))
            .basic_auth(self.var("OIDC_CLIENT_ID"), Some(self.var("OIDC_CLIENT_SECRET")))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "token endpoint");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn jwt(&self, scope: &str) -> String {
        self.token(Some(self.var("OIDC_RESOURCE")), scope).await
    }

    /// A verifier from discovery alone, for `OIDC_RESOURCE`.
    async fn jwt_verifier(&self) -> JwtVerifier {
        JwtVerifier::discover(self.issuer())
            .await
            .expect("discovery finds jwks_uri")
            .expected_audience(self.var("OIDC_RESOURCE"))
            .build()
            .unwrap()
    }

    /// The resource server's introspection client, from discovery.
    async fn introspector(&self) -> Introspector {
        Introspector::discover(self.issuer())
            .introspector()
            .await
            .expect("discovery finds introspection_endpoint")
            .client_secret_basic(self.var("OIDC_RS_CLIENT_ID"), self.var("OIDC_RS_CLIENT_SECRET"))
            .build()
            .unwrap()
    }

    async fn get(&self, url: String, token: &str) -> reqwest::Response {
        self.http.get(url).bearer_auth(token).send().await.unwrap()
    }

    fn harness(&self, args: &[&str]) -> String {
        let output = Command::new("bash").arg(HARNESS).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "oidc.sh {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

/// A JWT's protected header and claims, decoded without any check.
fn decode(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        let b64 = token.split('.').nth(i).expect("three parts");
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .expect("base64url");
        serde_json::from_slice(&json).expect("JSON")
    };
    assert_eq!(token.split('.').count(), 3, "a JWS compact serialization");
    (part(0), part(1))
}

#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn jwt_is_accepted_with_discovery_alone() {
    let oidc = Oidc::new();
    let token = oidc.jwt("read write").await;
    let (header, claims) = decode(&token);
    assert_eq!(header["typ"], "at+jwt", "RFC 9068");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"].as_str(), Some(oidc.harness(&["kid"]).as_str()));
    assert_eq!(claims["iss"], oidc.issuer());

    let jwt = oidc.jwt_verifier().await;
    let principal = jwt.validate(&token).await.expect("oidc-provider's JWT");
    assert!(principal.scopes().contains_all(["read", "write"]));
    assert!(!principal.scopes().contains("admin"));
    assert_eq!(principal.client_id(), Some(oidc.var("OIDC_CLIENT_ID")));
    assert_eq!(
        principal.subject(),
        Some(oidc.var("OIDC_CLIENT_ID")),
        "sub of a client credentials token is the client"
    );
    assert_eq!(
        principal.audiences().collect::<Vec<_>>(),
        [oidc.var("OIDC_RESOURCE")]
    );
    assert_eq!(principal.issuer(), Some(oidc.issuer()));
    assert_eq!(principal.jwt_id(), claims["jti"].as_str());
    assert_eq!(principal.expires_at(), claims["exp"].as_i64());
    assert_eq!(jwt.stats().jwks_fetches, 1);

    // Without `resource` the AS's default resource is the audience; the key
    // is known already.
    let token = oidc.token(None, "read").await;
    let principal = jwt.validate(&token).await.expect("default resource");
    assert_eq!(principal.scopes().as_str(), "read");
    assert_eq!(jwt.stats().jwks_fetches, 1, "no second JWKS fetch");
}

#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn opaque_token_goes_to_introspection_in_the_same_verifier() {
    let oidc = Oidc::new();
    let jwt = oidc.jwt_verifier().await;
    let introspector = oidc.introspector().await;
    let verifier = Verifier::builder()
        .jwt(jwt.clone())
        .introspector(introspector.clone())
        .build()
        .unwrap();

    let opaque = oidc
        .token(Some(oidc.var("OIDC_OPAQUE_RESOURCE")), "read admin")
        .await;
    assert_eq!(opaque.split('.').count(), 1, "opaque, not a JWT: {opaque}");
    let principal = verifier.validate(&opaque).await.expect("introspected");
    assert!(principal.scopes().contains_all(["read", "admin"]));
    assert_eq!(principal.client_id(), Some(oidc.var("OIDC_CLIENT_ID")));
    assert_eq!(
        principal.audiences().collect::<Vec<_>>(),
        [oidc.var("OIDC_OPAQUE_RESOURCE")]
    );
    assert_eq!(principal.issuer(), Some(oidc.issuer()));
    assert_eq!(introspector.stats().introspections.active, 1);

    // A JWT through the same verifier is checked locally: oidc-provider's
    // introspection endpoint would answer 400 unsupported_token_type.
    let token = oidc.jwt("read").await;
    let principal = verifier.validate(&token).await.expect("verified locally");
    assert_eq!(principal.scopes().as_str(), "read");
    assert_eq!(jwt.stats().jwks_fetches, 1);
    assert_eq!(
        introspector.stats().introspections.total(),
        1,
        "the JWT was not introspected"
    );

    // An opaque token the AS does not know: introspection says inactive.
    let error = verifier.validate("not-a-token-the-as-issued").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidToken);
    assert_eq!(error.status(), 401);

    // A JWT sent to introspection alone: oidc-provider answers 400
    // unsupported_token_type, which is an inactive token (401), not an
    // outage (503).
    let error = introspector.validate(&token).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidToken, "{error}");
}

#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn token_for_another_resource_is_invalid_token() {
    let oidc = Oidc::new();
    let token = oidc.token(Some(oidc.var("OIDC_OTHER_RESOURCE")), "read").await;
    let (_, claims) = decode(&token);
    assert_eq!(claims["aud"], oidc.var("OIDC_OTHER_RESOURCE"));

    let jwt = oidc.jwt_verifier().await;
    let error = jwt.validate(&token).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidToken);
    assert_eq!(error.status(), 401);

    // The same through a verifier with introspection too: a JWT of a
    // configured issuer is never handed to introspection instead.
    let introspector = oidc.introspector().await;
    let verifier = Verifier::builder()
        .jwt(jwt.clone())
        .introspector(introspector.clone())
        .build()
        .unwrap();
    let error = verifier.validate(&token).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidToken);
    assert_eq!(introspector.stats().introspections.total(), 0);

    // And the RFC 6750 answer through the layer.
    let base = common::serve(common::app(IntrospectionLayer::new(verifier))).await;
    let response = oidc.get(format!("{base}/ping"), &token).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        param(&challenge_params(&challenge(&response)), "error"),
        Some("invalid_token")
    );
    let right = oidc.jwt("read").await;
    assert_eq!(oidc.get(format!("{base}/items"), &right).await.status(), 200);
}

/// Runs last in name order (`zz`) because it restarts the server with a new key.
#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn zz_key_rotation_is_picked_up_with_one_jwks_fetch() {
    let oidc = Oidc::new();
    let jwt = JwtVerifier::discover(oidc.issuer())
        .await
        .unwrap()
        .expected_audience(oidc.var("OIDC_RESOURCE"))
        // NAME: the minimum interval between two refreshes on an unknown
        // `kid` (default 30 s); short so the test need not wait for it.
        .jwks_refresh_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let before = oidc.jwt("read").await;
    let old_kid = decode(&before).0["kid"].as_str().unwrap().to_owned();
    jwt.validate(&before).await.expect("the current key");
    let fetches = jwt.stats().jwks_fetches;
    assert_eq!(fetches, 1);

    oidc.harness(&["rotate"]);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refresh interval
    let after = oidc.jwt("read").await;
    let new_kid = decode(&after).0["kid"].as_str().unwrap().to_owned();
    assert_ne!(old_kid, new_kid, "the AS signs with the new key");
    assert_eq!(oidc.harness(&["kid"]), new_kid);

    let principal = jwt.validate(&after).await.expect("the new key, fetched");
    assert_eq!(principal.scopes().as_str(), "read");
    assert_eq!(jwt.stats().jwks_fetches, fetches + 1, "exactly one more fetch");
    // Known now: no further fetch for more tokens signed with it.
    let again = oidc.jwt("read write").await;
    jwt.validate(&again).await.expect("same key");
    assert_eq!(jwt.stats().jwks_fetches, fetches + 1);
}

/// `examples/resource_server.rs` configured with `JWT_ISSUER` alone (no
/// `INTROSPECTION_URL`): discovery → JWKS, `iss` and `aud` checked.
#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn resource_server_example_with_jwt_issuer_alone() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let oidc = Oidc::new();
    // cargo builds examples next to the test binaries' `deps` directory.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("resource_server"))
        .filter(|path| path.exists())
        .expect("examples are built by `cargo test`");
    let mut child = Command::new(example)
        .env_remove("INTROSPECTION_URL")
        .env("JWT_ISSUER", oidc.issuer())
        .env("EXPECTED_AUDIENCE", oidc.var("OIDC_RESOURCE"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("REALM", "interop")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the listening line, got {line:?}"))
        .to_owned();

    let read = oidc.jwt("read").await;
    let other = oidc
        .token(Some(oidc.var("OIDC_OTHER_RESOURCE")), "read admin")
        .await;
    let http = &oidc.http;
    let result = async {
        let response = http.get(format!("{base}/items")).send().await?;
        assert_eq!(response.status(), 401);
        assert_eq!(challenge(&response), "Bearer realm=\"interop\"");
        assert_eq!(oidc.get(format!("{base}/items"), &read).await.status(), 200);
        let response = oidc.get(format!("{base}/whoami"), &read).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await?;
        assert_eq!(body["client_id"], oidc.var("OIDC_CLIENT_ID"));
        assert_eq!(body["scope"], "read");
        let response = oidc.get(format!("{base}/admin"), &read).await;
        assert_eq!(response.status(), 403);
        assert_eq!(
            param(&challenge_params(&challenge(&response)), "error"),
            Some("insufficient_scope")
        );
        let response = oidc.get(format!("{base}/items"), &other).await;
        assert_eq!(response.status(), 401, "a token for another resource");
        assert_eq!(
            param(&challenge_params(&challenge(&response)), "error"),
            Some("invalid_token")
        );
        Ok::<_, reqwest::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result.unwrap();
}

/// The resource server's second registration at oidc-provider (see
/// `tests/interop/oidc/server.mjs`): `private_key_jwt` with the crate's
/// committed test RSA key 3, signed introspection answers (RS256).
const RS_KEY_CLIENT_ID: &str = "oidc-rs-key-client";

fn rs_key() -> tower_introspection::ClientKey {
    use tower_introspection::test_util::{client_private_key_pem, JwtAlg};
    tower_introspection::ClientKey::from_pkcs8_pem(&client_private_key_pem(&JwtAlg::Rs256, 2).unwrap())
        .unwrap()
}

#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn private_key_jwt_authenticates_introspection() {
    let oidc = Oidc::new();
    let opaque = oidc.token(Some(oidc.var("OIDC_OPAQUE_RESOURCE")), "read").await;
    // aud = the issuer, from discovery; oidc-provider checks the signature,
    // iss/sub, aud, exp and the jti.
    let introspector = Introspector::discover(oidc.issuer())
        .introspector()
        .await
        .unwrap()
        .private_key_jwt(RS_KEY_CLIENT_ID, rs_key())
        .build()
        .unwrap();
    let principal = introspector.validate(&opaque).await.expect("introspected");
    assert!(principal.scopes().contains("read"));
    // Twice more: a new assertion each time (oidc-provider refuses a replayed jti).
    introspector.invalidate(&opaque).await;
    introspector.validate(&opaque).await.expect("a fresh assertion");
    // A key oidc-provider does not know: its 401 is our configuration error.
    let stranger = Introspector::discover(oidc.issuer())
        .introspector()
        .await
        .unwrap()
        .private_key_jwt(
            RS_KEY_CLIENT_ID,
            tower_introspection::ClientKey::from_pkcs8_pem(
                &tower_introspection::test_util::client_private_key_pem(
                    &tower_introspection::test_util::JwtAlg::Rs256,
                    0,
                )
                .unwrap(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let error = stranger.validate(&opaque).await.unwrap_err();
    assert_eq!(error.status(), 500);
}

#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn signed_introspection_answers_from_oidc_provider() {
    let oidc = Oidc::new();
    let opaque = oidc
        .token(Some(oidc.var("OIDC_OPAQUE_RESOURCE")), "read write")
        .await;
    let introspector = Introspector::discover(oidc.issuer())
        .introspector()
        .await
        .unwrap()
        .private_key_jwt(RS_KEY_CLIENT_ID, rs_key())
        .signed_answers(oidc.issuer(), oidc.var("OIDC_JWKS_URL"))
        .build()
        .unwrap();
    let principal = introspector
        .validate(&opaque)
        .await
        .expect("a signed, checked answer");
    assert!(principal.scopes().contains_all(["read", "write"]));
    // A real signed answer checked against another issuer: refused, 503.
    let wrong_issuer = Introspector::discover(oidc.issuer())
        .introspector()
        .await
        .unwrap()
        .private_key_jwt(RS_KEY_CLIENT_ID, rs_key())
        .signed_answers("https://not-the-issuer.example", oidc.var("OIDC_JWKS_URL"))
        .build()
        .unwrap();
    let error = wrong_issuer.validate(&opaque).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(error.status(), 503);
}
