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
//! A token request with a DPoP proof gets a token bound to its key
//! (`token_type` `DPoP`, `cnf.jkt`): the `dpop_*` tests run
//! `examples/resource_server` against it with `DPOP=allowed` and `required`.
//! They spawn the example binary: after a change to the crate, run
//! `cargo build --all-features --examples` first (`cargo test --all-features`
//! does it too), or they test a stale build.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::{challenge, challenge_params, param};
use serde_json::Value;
use tower_introspection::test_util::DpopKey;
use tower_introspection::{jwt::JwtVerifier, ErrorKind, IntrospectionLayer, Introspector, Verifier};

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

fn rs_key() -> tower_introspection::introspection::ClientKey {
    use tower_introspection::test_util::{client_private_key_pem, JwtAlg};
    tower_introspection::introspection::ClientKey::from_pkcs8_pem(
        &client_private_key_pem(&JwtAlg::Rs256, 2).unwrap(),
    )
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
            tower_introspection::introspection::ClientKey::from_pkcs8_pem(
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

// ------------------------------------------------------------------ DPoP
//
// RFC 9449 end to end: oidc-provider (`features.dPoP`, no AS nonce) binds a
// client credentials token to the key of the proof sent to its token
// endpoint; `examples/resource_server` (`DPOP=allowed` / `required`) then
// checks each request's proof against that binding, for an opaque token
// (introspection answers `cnf.jkt`) and a JWT (`cnf.jkt` in its claims).

const DPOP_ALGS: &str = "algs=\"ES256 ES384 EdDSA PS256 RS256\"";

/// A proof for the token endpoint: RFC 9449 §4.2 puts `ath` only in
/// proofs that present an access token, so none here.
fn token_request_proof(key: &DpopKey, token_url: &str) -> String {
    let mut claims = DpopKey::claims("POST", token_url, "");
    claims
        .as_object_mut()
        .expect("claims are an object")
        .remove("ath");
    key.sign(&key.header(), &claims)
}

impl Oidc {
    /// The token endpoint's answer to a client credentials grant carrying
    /// `proof` in a `DPoP` header: (status, JSON body).
    async fn token_with_proof(&self, proof: &str, resource: &str, scope: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.var("OIDC_TOKEN_URL"))
            .basic_auth(self.var("OIDC_CLIENT_ID"), Some(self.var("OIDC_CLIENT_SECRET")))
            .header("dpop", proof)
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", resource),
            ])
            .send()
            .await
            .expect("token endpoint reachable");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// A token for `resource` bound to `key`: token_type `DPoP`.
    async fn dpop_token(&self, key: &DpopKey, resource: &str, scope: &str) -> String {
        let proof = token_request_proof(key, self.var("OIDC_TOKEN_URL"));
        let (status, body) = self.token_with_proof(&proof, resource, scope).await;
        assert_eq!(status, 200, "token endpoint with a DPoP proof: {body}");
        assert_eq!(body["token_type"], "DPoP", "RFC 9449 §5: {body}");
        body["access_token"].as_str().expect("access_token").to_owned()
    }
}

/// `examples/resource_server` on a free loopback port; killed (its own PID)
/// when dropped, so a failed assertion does not leave it running.
struct ResourceServer {
    child: std::process::Child,
    base: String,
}

impl ResourceServer {
    /// Starts the example with `vars` alone (and `LISTEN_ADDR=127.0.0.1:0`;
    /// nothing from the test's environment, which may hold the example's
    /// variables), reads its URL from the `listening on` line.
    fn spawn(vars: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;

        let mut command = Command::new(common::example("resource_server"));
        command
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .expect("examples/resource_server is built (cargo build --all-features --examples)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("its first line");
        let Some(base) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the listening line, got {line:?} (bad configuration?)");
        };
        Self { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ResourceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `WWW-Authenticate` value, in order.
fn challenges(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_owned())
        .collect()
}

/// The DPoP challenge of a refusal in realm `interop`.
fn dpop_error(error: &str, description: &str) -> String {
    format!("DPoP realm=\"interop\", error=\"{error}\", error_description=\"{description}\", {DPOP_ALGS}")
}

/// `GET url` with `Authorization: DPoP token` and `DPoP: proof`.
async fn dpop_get(http: &reqwest::Client, url: &str, token: &str, proof: &str) -> reqwest::Response {
    http.get(url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .expect("resource server reachable")
}

/// With `DPOP=allowed`: every check of a bound `token` (bound to `key`) at
/// the resource server `rs`, with exact statuses and challenges.
async fn check_allowed(oidc: &Oidc, rs: &ResourceServer, key: &DpopKey, token: &str, route: &str) {
    let http = &oidc.http;
    let whoami = rs.url("/whoami");
    let refused = |error: &'static str, description: &'static str| {
        vec![
            "Bearer realm=\"interop\"".to_owned(),
            dpop_error(error, description),
        ]
    };

    let as_bearer = [
        "Bearer realm=\"interop\", error=\"invalid_token\", error_description=\"the token is bound to a DPoP key and must be sent with the DPoP scheme and a proof\"".to_owned(),
        format!("DPoP realm=\"interop\", {DPOP_ALGS}"),
    ];
    // First as a bearer token (its answer not cached yet): refused.
    let response = oidc.get(whoami.clone(), token).await;
    assert_eq!(response.status(), 401, "{route}: as Bearer, cache miss");
    assert_eq!(challenges(&response), as_bearer, "{route}: as Bearer, cache miss");

    // Two fresh proofs: 200 each.
    let proof = key.proof("GET", &whoami, token);
    let response = dpop_get(http, &whoami, token, &proof).await;
    assert_eq!(response.status(), 200, "{route}: a fresh proof");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["client_id"], oidc.var("OIDC_CLIENT_ID"), "{route}");
    let again = key.proof("GET", &whoami, token);
    let response = dpop_get(http, &whoami, token, &again).await;
    assert_eq!(response.status(), 200, "{route}: a second fresh proof");

    // The first proof again: a replay.
    let response = dpop_get(http, &whoami, token, &proof).await;
    assert_eq!(response.status(), 401, "{route}: replayed proof");
    assert_eq!(
        challenges(&response),
        refused("invalid_dpop_proof", "the DPoP proof was used before (jti)"),
        "{route}: replayed proof"
    );

    // A proof for POST, sent with GET.
    let post = key.proof("POST", &whoami, token);
    let response = dpop_get(http, &whoami, token, &post).await;
    assert_eq!(response.status(), 401, "{route}: htm");
    assert_eq!(
        challenges(&response),
        refused(
            "invalid_dpop_proof",
            "the DPoP proof is for another HTTP method (htm)"
        ),
        "{route}: htm"
    );

    // A proof for another URL of the same server, and for the AS's token
    // endpoint (the proof the client sent there).
    let items = key.proof("GET", &rs.url("/items"), token);
    for (what, proof) in [
        ("another path", items),
        (
            "the token endpoint",
            key.proof("GET", oidc.var("OIDC_TOKEN_URL"), token),
        ),
    ] {
        let response = dpop_get(http, &whoami, token, &proof).await;
        assert_eq!(response.status(), 401, "{route}: htu of {what}");
        assert_eq!(
            challenges(&response),
            refused("invalid_dpop_proof", "the DPoP proof is for another URL (htu)"),
            "{route}: htu of {what}"
        );
    }

    // A valid proof by another key: its thumbprint is not the token's cnf.jkt.
    let stranger = DpopKey::generate().proof("GET", &whoami, token);
    let response = dpop_get(http, &whoami, token, &stranger).await;
    assert_eq!(response.status(), 401, "{route}: another key");
    assert_eq!(
        challenges(&response),
        refused("invalid_token", "the token is bound to another DPoP key"),
        "{route}: another key"
    );

    // ath: missing (a proof as for the token endpoint), or for another token.
    let mut claims = DpopKey::claims("GET", &whoami, token);
    claims.as_object_mut().expect("object").remove("ath");
    let no_ath = key.sign(&key.header(), &claims);
    let other_ath = key.proof("GET", &whoami, "another-access-token");
    for (what, proof) in [("no ath", no_ath), ("another token's ath", other_ath)] {
        let response = dpop_get(http, &whoami, token, &proof).await;
        assert_eq!(response.status(), 401, "{route}: {what}");
        assert_eq!(
            challenges(&response),
            refused(
                "invalid_dpop_proof",
                "the DPoP proof is for another access token (ath)"
            ),
            "{route}: {what}"
        );
    }

    // The bound token as a bearer token again, its answer cached now.
    let response = oidc.get(whoami.clone(), token).await;
    assert_eq!(response.status(), 401, "{route}: as Bearer, cache hit");
    assert_eq!(challenges(&response), as_bearer, "{route}: as Bearer, cache hit");

    // And after all these refusals, a fresh proof still passes.
    let fresh = key.proof("GET", &whoami, token);
    assert_eq!(
        dpop_get(http, &whoami, token, &fresh).await.status(),
        200,
        "{route}: fresh proof after the refusals"
    );
}

const BOUND_AS_BEARER_REASON: &str =
    "the token is bound to a DPoP key and must be sent with the DPoP scheme and a proof";

/// What oidc-provider issues for a token request with a DPoP proof: a token
/// bound to the proof's key, `cnf.jkt` in the introspection answer (opaque)
/// or the claims (JWT); without a proof, an unbound bearer token; a
/// replayed proof refused.
#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn dpop_oidc_provider_binds_tokens_to_the_proof_key() {
    let oidc = Oidc::new();
    let key = DpopKey::generate();

    let opaque = oidc
        .dpop_token(&key, oidc.var("OIDC_OPAQUE_RESOURCE"), "read")
        .await;
    assert_eq!(opaque.split('.').count(), 1, "opaque: {opaque}");
    // The answer names `cnf.jkt`: outside the layer, `validate` sees no
    // proof and refuses the bound token as a bearer token. That the jkt is
    // our key's, the resource-server tests below show (another key: 401).
    let error = oidc
        .introspector()
        .await
        .validate(&opaque)
        .await
        .expect_err("a bound token is not a bearer token");
    assert_eq!(error.description(), BOUND_AS_BEARER_REASON);

    let jwt = oidc.dpop_token(&key, oidc.var("OIDC_RESOURCE"), "read").await;
    let (header, claims) = decode(&jwt);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["cnf"], serde_json::json!({ "jkt": key.jkt() }));
    let error = oidc
        .jwt_verifier()
        .await
        .validate(&jwt)
        .await
        .expect_err("a bound token is not a bearer token");
    assert_eq!(error.description(), BOUND_AS_BEARER_REASON);

    // No proof: a bearer token, unbound.
    let plain = oidc.token(Some(oidc.var("OIDC_OPAQUE_RESOURCE")), "read").await;
    let principal = oidc.introspector().await.validate(&plain).await.unwrap();
    assert!(!principal.is_dpop_bound());

    // The AS keeps its own replay cache of token-request proofs.
    let proof = token_request_proof(&key, oidc.var("OIDC_TOKEN_URL"));
    let resource = oidc.var("OIDC_OPAQUE_RESOURCE");
    assert_eq!(oidc.token_with_proof(&proof, resource, "read").await.0, 200);
    let (status, body) = oidc.token_with_proof(&proof, resource, "read").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &Value::from("invalid_grant")),
        "{body}"
    );
}

/// `examples/resource_server` with `DPOP=allowed`, authenticating to
/// oidc-provider with `private_key_jwt`, asking for signed introspection
/// answers (RFC 9701) and verifying the AS's JWTs locally: both routes to
/// `cnf.jkt`.
fn allowed_resource_server(oidc: &Oidc) -> ResourceServer {
    let key_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-rs-key-client.pem");
    std::fs::write(
        &key_file,
        tower_introspection::test_util::client_private_key_pem(
            &tower_introspection::test_util::JwtAlg::Rs256,
            2,
        )
        .expect("test RSA key 3"),
    )
    .expect("write the client key");
    let audiences = format!(
        "{},{}",
        oidc.var("OIDC_RESOURCE"),
        oidc.var("OIDC_OPAQUE_RESOURCE")
    );
    ResourceServer::spawn(&[
        ("INTROSPECTION_URL", oidc.var("OIDC_INTROSPECTION_URL")),
        ("CLIENT_AUTH", "private_key_jwt"),
        ("CLIENT_ID", RS_KEY_CLIENT_ID),
        ("CLIENT_KEY_FILE", key_file.to_str().expect("UTF-8 path")),
        ("AS_ISSUER", oidc.issuer()),
        ("SIGNED_INTROSPECTION", "true"),
        ("AS_JWKS_URL", oidc.var("OIDC_JWKS_URL")),
        ("JWT_ISSUER", oidc.issuer()),
        ("EXPECTED_AUDIENCE", &audiences),
        ("REALM", "interop"),
        ("DPOP", "allowed"),
    ])
}

/// An opaque DPoP-bound token: `cnf.jkt` from a signed introspection answer.
#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn dpop_allowed_opaque_token_through_signed_introspection() {
    let oidc = Oidc::new();
    let rs = allowed_resource_server(&oidc);
    let key = DpopKey::generate();
    let opaque = oidc
        .dpop_token(&key, oidc.var("OIDC_OPAQUE_RESOURCE"), "read")
        .await;
    check_allowed(&oidc, &rs, &key, &opaque, "opaque (introspection)").await;

    // An unbound bearer token from the same AS: fine as Bearer, refused
    // with the DPoP scheme (nothing to bind the proof to).
    let plain = oidc.token(Some(oidc.var("OIDC_OPAQUE_RESOURCE")), "read").await;
    let whoami = rs.url("/whoami");
    assert_eq!(oidc.get(whoami.clone(), &plain).await.status(), 200);
    let response = dpop_get(&oidc.http, &whoami, &plain, &key.proof("GET", &whoami, &plain)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"interop\"".to_owned(),
            dpop_error("invalid_token", "the token is not bound to a DPoP key"),
        ]
    );
}

/// A DPoP-bound JWT access token: `cnf.jkt` from its claims, verified locally.
#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn dpop_allowed_jwt_verified_locally() {
    let oidc = Oidc::new();
    let rs = allowed_resource_server(&oidc);
    let key = DpopKey::generate();
    let jwt = oidc.dpop_token(&key, oidc.var("OIDC_RESOURCE"), "read").await;
    check_allowed(&oidc, &rs, &key, &jwt, "JWT (local)").await;
}

/// `DPOP=required`, introspection with `client_secret_basic`: only the
/// `DPoP` scheme, and only its challenge.
#[tokio::test]
#[ignore = "needs node-oidc-provider: eval \"$(tests/interop/oidc.sh start)\""]
async fn dpop_required_at_the_resource_server() {
    let oidc = Oidc::new();
    let audiences = format!(
        "{},{}",
        oidc.var("OIDC_RESOURCE"),
        oidc.var("OIDC_OPAQUE_RESOURCE")
    );
    let rs = ResourceServer::spawn(&[
        ("INTROSPECTION_URL", oidc.var("OIDC_INTROSPECTION_URL")),
        ("CLIENT_ID", oidc.var("OIDC_RS_CLIENT_ID")),
        ("CLIENT_SECRET", oidc.var("OIDC_RS_CLIENT_SECRET")),
        ("JWT_ISSUER", oidc.issuer()),
        ("EXPECTED_AUDIENCE", &audiences),
        ("REALM", "interop"),
        ("DPOP", "required"),
    ]);
    let http = &oidc.http;
    let bare = vec![format!("DPoP realm=\"interop\", {DPOP_ALGS}")];
    let key = DpopKey::generate();
    let items = rs.url("/items");
    for resource in ["OIDC_RESOURCE", "OIDC_OPAQUE_RESOURCE"] {
        let token = oidc.dpop_token(&key, oidc.var(resource), "read").await;
        let proof = key.proof("GET", &items, &token);
        let response = dpop_get(http, &items, &token, &proof).await;
        assert_eq!(
            (response.status().as_u16(), challenges(&response)),
            (200, vec![]),
            "{resource}: a fresh proof"
        );
        let response = dpop_get(http, &items, &token, &proof).await;
        assert_eq!(response.status(), 401, "{resource}: replayed");
        assert_eq!(
            challenges(&response),
            [dpop_error(
                "invalid_dpop_proof",
                "the DPoP proof was used before (jti)"
            )],
            "{resource}: replayed"
        );
        let stranger = DpopKey::generate().proof("GET", &items, &token);
        let response = dpop_get(http, &items, &token, &stranger).await;
        assert_eq!(response.status(), 401, "{resource}: another key");
        assert_eq!(
            challenges(&response),
            [dpop_error(
                "invalid_token",
                "the token is bound to another DPoP key"
            )],
            "{resource}: another key"
        );
        let response = oidc.get(items.clone(), &token).await;
        assert_eq!(response.status(), 401, "{resource}: as Bearer");
        assert_eq!(challenges(&response), bare, "{resource}: as Bearer");
    }
    // An unbound bearer token: the Bearer scheme is not accepted at all.
    let plain = oidc.token(Some(oidc.var("OIDC_OPAQUE_RESOURCE")), "read").await;
    let response = oidc.get(items.clone(), &plain).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenges(&response), bare);
}
