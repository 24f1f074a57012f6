//! Interop with a real Django OAuth Toolkit (DOT) server, started by
//! `tests/interop/dot.sh start` (`.ci/run` does it).
//!
//! ```text
//! eval "$(tests/interop/dot.sh start)"
//! cargo test --all-features --test interop_dot -- --ignored --test-threads=1
//! tests/interop/dot.sh stop
//! ```
//!
//! Ignored by default so `cargo test` needs no Python; run with `--ignored`
//! they fail with a clear message when the harness is not running. One
//! thread: one test stops and starts the server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::{challenge, challenge_params, param};
use serde_json::Value;
use tower_introspection::{
    introspection::{DiscoveryKind, IntrospectorBuilder},
    IntrospectionLayer, Introspector,
};

const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/dot.sh");

/// The harness's variables: the environment first, then `.run/env`.
fn dot() -> HashMap<String, String> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/.run/env");
    let mut vars: HashMap<String, String> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (key, value) in std::env::vars().filter(|(k, _)| k.starts_with("DOT_")) {
        vars.insert(key, value);
    }
    assert!(
        vars.contains_key("DOT_BASE_URL"),
        "Django OAuth Toolkit is not running: start it with `eval \"$(tests/interop/dot.sh start)\"`"
    );
    vars
}

struct Dot {
    vars: HashMap<String, String>,
    http: reqwest::Client,
}

impl Dot {
    fn new() -> Self {
        Self {
            vars: dot(),
            http: reqwest::Client::new(),
        }
    }

    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} is not set"))
    }

    /// Exactly the seed's curl: a password grant with form fields.
    async fn password_token(&self, scope: Option<&str>, resource: Option<&str>) -> String {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", self.var("DOT_USERNAME")),
            ("password", self.var("DOT_PASSWORD")),
            ("client_id", self.var("DOT_PW_CLIENT_ID")),
            ("client_secret", self.var("DOT_PW_CLIENT_SECRET")),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        self.token(&form).await
    }

    async fn client_credentials_token(&self) -> String {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.var("DOT_CC_CLIENT_ID")),
            ("client_secret", self.var("DOT_CC_CLIENT_SECRET")),
            ("scope", "read"),
        ];
        self.token(&form).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> String {
        let response = self
            .http
            .post(self.var("DOT_TOKEN_URL"))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "token endpoint");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    fn builder(&self) -> IntrospectorBuilder {
        Introspector::builder(self.var("DOT_INTROSPECTION_URL"))
            .client_secret_basic(self.var("DOT_RS_CLIENT_ID"), self.var("DOT_RS_CLIENT_SECRET"))
    }

    /// The test app behind a layer built from `builder`; returns its base URL.
    async fn serve(&self, builder: IntrospectorBuilder) -> (String, Introspector) {
        let introspector = builder.build().unwrap();
        let base = common::serve(common::app(IntrospectionLayer::new(introspector.clone()))).await;
        (base, introspector)
    }

    async fn get(&self, url: String, token: &str) -> reqwest::Response {
        self.http.get(url).bearer_auth(token).send().await.unwrap()
    }

    fn harness(&self, args: &[&str]) {
        let status = Command::new("bash").arg(HARNESS).args(args).status().unwrap();
        assert!(status.success(), "dot.sh {args:?} failed");
    }
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn password_grant_token_reaches_whoami_with_username() {
    let dot = Dot::new();
    let (base, _) = dot.serve(dot.builder()).await;
    let token = dot.password_token(None, None).await;
    let response = dot.get(format!("{base}/whoami"), &token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], dot.var("DOT_USERNAME"));
    assert_eq!(body["client_id"], dot.var("DOT_PW_CLIENT_ID"));
    assert!(body["exp"].as_i64().unwrap() > 0);
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn client_credentials_token_has_client_id() {
    let dot = Dot::new();
    let (base, _) = dot.serve(dot.builder()).await;
    let token = dot.client_credentials_token().await;
    let response = dot.get(format!("{base}/whoami"), &token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["client_id"], dot.var("DOT_CC_CLIENT_ID"));
    assert_eq!(body["scope"], "read");
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn resource_server_authenticates_three_ways() {
    let dot = Dot::new();
    let (id, secret) = (dot.var("DOT_RS_CLIENT_ID"), dot.var("DOT_RS_CLIENT_SECRET"));
    let endpoint = dot.var("DOT_INTROSPECTION_URL");
    let builders = [
        Introspector::builder(endpoint).client_secret_basic(id, secret),
        Introspector::builder(endpoint).client_secret_post(id, secret),
        Introspector::builder(endpoint)
            .bearer_from_client_credentials(dot.var("DOT_TOKEN_URL"), id, secret)
            .token_scope("introspection"),
    ];
    for builder in builders {
        let introspector = builder.build().unwrap();
        let token = dot.password_token(Some("read"), None).await;
        let principal = introspector
            .validate(&token)
            .await
            .expect("DOT accepts our credentials");
        assert_eq!(principal.username(), Some(dot.var("DOT_USERNAME")));
    }
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn wrong_resource_server_credentials_are_500_and_not_cached() {
    let dot = Dot::new();
    let builder = Introspector::builder(dot.var("DOT_INTROSPECTION_URL"))
        .client_secret_basic(dot.var("DOT_RS_CLIENT_ID"), "wrong-secret");
    let (base, introspector) = dot.serve(builder).await;
    let token = dot.password_token(None, None).await;
    for _ in 0..2 {
        let response = dot.get(format!("{base}/ping"), &token).await;
        assert_eq!(
            response.status(),
            500,
            "DOT's 403 with an empty HTML body is our configuration error"
        );
        assert!(response.headers().get("www-authenticate").is_none());
    }
    let stats = introspector.stats();
    assert_eq!(stats.introspections.config_error, 2, "nothing was cached");
    assert_eq!(stats.entries + stats.negative_entries, 0);
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn revocation_takes_effect_after_max_ttl_or_invalidate() {
    let dot = Dot::new();
    let (base, introspector) = dot.serve(dot.builder().max_ttl(Duration::from_secs(1))).await;
    let revoke = |token: String| {
        let dot = &dot;
        async move {
            let response = dot
                .http
                .post(dot.var("DOT_REVOCATION_URL"))
                .form(&[
                    ("token", token.as_str()),
                    ("client_id", dot.var("DOT_PW_CLIENT_ID")),
                    ("client_secret", dot.var("DOT_PW_CLIENT_SECRET")),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    };

    let token = dot.password_token(None, None).await;
    assert_eq!(dot.get(format!("{base}/ping"), &token).await.status(), 200);
    revoke(token.clone()).await;
    assert_eq!(
        dot.get(format!("{base}/ping"), &token).await.status(),
        200,
        "still cached"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        dot.get(format!("{base}/ping"), &token).await.status(),
        401,
        "rejected after max_ttl"
    );

    let token = dot.password_token(None, None).await;
    assert_eq!(dot.get(format!("{base}/ping"), &token).await.status(), 200);
    revoke(token.clone()).await;
    introspector.invalidate(&token).await;
    assert_eq!(
        dot.get(format!("{base}/ping"), &token).await.status(),
        401,
        "rejected at once after invalidate"
    );
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn expired_token_is_invalid_token() {
    let dot = Dot::new();
    let (base, _) = dot.serve(dot.builder()).await;
    let token = dot.password_token(None, None).await;
    dot.harness(&["expire-token", &token]);
    let response = dot.get(format!("{base}/ping"), &token).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        param(&challenge_params(&challenge(&response)), "error"),
        Some("invalid_token")
    );
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn resource_indicator_audience_array_is_checked() {
    let dot = Dot::new();
    let token = dot.password_token(None, Some("https://api.example")).await;
    let right = dot
        .builder()
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let principal = right.validate(&token).await.expect("the right audience");
    assert_eq!(principal.audiences().collect::<Vec<_>>(), ["https://api.example"]);
    let wrong = dot
        .builder()
        .expected_audience("https://other.example")
        .build()
        .unwrap();
    let error = wrong.validate(&token).await.unwrap_err();
    assert_eq!(error.status(), 401);
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn read_token_gets_403_on_post_items() {
    let dot = Dot::new();
    let (base, _) = dot.serve(dot.builder()).await;
    let token = dot.password_token(Some("read"), None).await;
    assert_eq!(dot.get(format!("{base}/items"), &token).await.status(), 200);
    let response = dot
        .http
        .post(format!("{base}/items"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"write\""
    );
}

#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn discovery_finds_dot_introspection_endpoint() {
    let dot = Dot::new();
    let issuer = format!("{}/o", dot.var("DOT_BASE_URL"));
    let metadata = Introspector::discover(&issuer)
        .kind(DiscoveryKind::Rfc8414)
        .metadata()
        .await
        .unwrap();
    assert_eq!(
        metadata.introspection_endpoint.as_deref(),
        Some(dot.var("DOT_INTROSPECTION_URL"))
    );
    // DOT's OpenID Connect document names no introspection endpoint: a clear error.
    let error = Introspector::discover(&issuer)
        .kind(DiscoveryKind::OpenIdConnect)
        .introspector()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no introspection_endpoint"), "{error}");
    // DOT lists client_secret_basic and client_secret_post (not bearer, although it accepts it).
    let introspector = Introspector::discover(&issuer)
        .introspector()
        .await
        .unwrap()
        .client_secret_basic(dot.var("DOT_RS_CLIENT_ID"), dot.var("DOT_RS_CLIENT_SECRET"))
        .build()
        .unwrap();
    let token = dot.password_token(None, None).await;
    introspector.validate(&token).await.unwrap();
}

/// Runs last in name order (`zz`) because it stops the server.
#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn zz_dot_down_is_503_and_recovers_without_restart() {
    let dot = Dot::new();
    let (base, _) = dot.serve(dot.builder().max_ttl(Duration::ZERO)).await;
    let token = dot.password_token(None, None).await;
    assert_eq!(dot.get(format!("{base}/ping"), &token).await.status(), 200);
    dot.harness(&["stop-server"]);
    let response = dot.get(format!("{base}/ping"), &token).await;
    let down = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    dot.harness(&["start-server"]);
    assert_eq!(down, 503);
    assert!(retry_after.is_some());
    assert_eq!(dot.get(format!("{base}/ping"), &token).await.status(), 200);
}

/// `examples/resource_server.rs` itself, configured from the environment
/// against DOT: the routes, the variables and the `listening on` line are a
/// contract.
#[tokio::test]
#[ignore = "needs Django OAuth Toolkit: eval \"$(tests/interop/dot.sh start)\""]
async fn resource_server_example_against_dot() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dot = Dot::new();
    // cargo builds examples next to the test binaries' `deps` directory.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("resource_server"))
        .filter(|path| path.exists())
        .expect("examples are built by `cargo test`");
    let mut child = Command::new(example)
        .env("INTROSPECTION_URL", dot.var("DOT_INTROSPECTION_URL"))
        .env("CLIENT_ID", dot.var("DOT_RS_CLIENT_ID"))
        .env("CLIENT_SECRET", dot.var("DOT_RS_CLIENT_SECRET"))
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
        .expect("the listening line")
        .to_owned();

    let token = dot.password_token(Some("read"), None).await;
    let http = &dot.http;
    let result = async {
        assert_eq!(
            http.get(format!("{base}/public")).send().await?.text().await?,
            "ok"
        );
        let response = http.get(format!("{base}/whoami")).send().await?;
        assert_eq!(response.status(), 401);
        assert_eq!(challenge(&response), "Bearer realm=\"interop\"");
        let response = dot.get(format!("{base}/whoami"), &token).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await?;
        assert_eq!(body["username"], dot.var("DOT_USERNAME"));
        assert_eq!(dot.get(format!("{base}/ping"), &token).await.text().await?, "ok");
        assert_eq!(dot.get(format!("{base}/items"), &token).await.status(), 200);
        let response = http
            .post(format!("{base}/items"))
            .bearer_auth(&token)
            .send()
            .await?;
        assert_eq!(response.status(), 403);
        assert_eq!(dot.get(format!("{base}/admin"), &token).await.status(), 403);
        let response = dot.get(format!("{base}/whoami"), "unknown-token").await;
        assert_eq!(
            param(&challenge_params(&challenge(&response)), "error"),
            Some("invalid_token")
        );
        let response = http
            .get(format!("{base}/whoami"))
            .header("authorization", "Bearer a b")
            .send()
            .await?;
        assert_eq!(response.status(), 400);
        Ok::<_, reqwest::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result.unwrap();

    // Bad configuration: a clear message and a non-zero exit.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/resource_server");
    let output = Command::new(example)
        .env_remove("INTROSPECTION_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("INTROSPECTION_URL is required"));
}
