//! Back-channel logout from a real node-oidc-provider to two replicas of
//! `examples/resource_server.rs` sharing a real `redis-server`: a scripted
//! login and end-session at the authorization server, after which the
//! token cached on both replicas is refused on both, and a token of the same
//! session neither has seen is refused too. Both servers are started by the
//! harness (`.ci/run` does it):
//!
//! ```text
//! eval "$(tests/interop/oidc.sh start)"; eval "$(tests/interop/redis.sh start)"
//! cargo test --all-features --test interop_logout -- --ignored --test-threads=1
//! tests/interop/oidc.sh stop; tests/interop/redis.sh stop
//! ```

#![cfg(all(feature = "redis", feature = "jwt"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};

const RESOURCE: &str = "https://api.example/";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const SECRET: &str = "the fleet secret: 32 bytes or more, never logged";

/// `NAME=value` lines of a harness's env file, the environment first.
fn harness_env(name: &str, prefix: &str) -> HashMap<String, String> {
    let file = format!("{}/tests/interop/.run/{name}/env", env!("CARGO_MANIFEST_DIR"));
    let mut vars: HashMap<String, String> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    vars.extend(std::env::vars().filter(|(k, _)| k.starts_with(prefix)));
    vars
}

/// A browser, as far as the development interactions need one: cookies
/// (every cookie on every request; the flow is sequential) and redirects
/// followed by hand.
struct Browser {
    http: reqwest::Client,
    issuer: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(issuer: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            issuer: issuer.to_owned(),
            cookies: HashMap::new(),
        }
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for cookie in headers.get_all(SET_COOKIE) {
            let cookie = cookie.to_str().unwrap();
            let pair = cookie.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.issuer)
        } else {
            location.to_owned()
        }
    }

    /// GET (or POST `form`) `url`; the status, the redirect, and the body.
    async fn send(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> (u16, Option<String>, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = match form {
            Some(form) => self.http.post(url).form(form),
            None => self.http.get(url),
        };
        let response = request.header(COOKIE, cookie).send().await.unwrap();
        self.keep(response.headers());
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|location| self.absolute(location.to_str().unwrap()));
        (status, location, response.text().await.unwrap())
    }

    /// Follows the authorization request through the login and consent
    /// pages (the first time) to the redirect with a code.
    async fn authorize(&mut self, client_id: &str) -> String {
        let query = [
            ("client_id", client_id),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid read"),
            ("resource", RESOURCE),
        ];
        let url = reqwest::Url::parse_with_params(&format!("{}/auth", self.issuer), query).unwrap();
        let mut next = url.to_string();
        for _ in 0..8 {
            let (status, location, body) = if next.contains("/interaction/") {
                // The development interactions' login, then consent.
                let (_, _, page) = self.send(&next, None).await;
                let form: &[(&str, &str)] = if page.contains("name=\"login\"") {
                    &[("prompt", "login"), ("login", "alice"), ("password", "any")]
                } else {
                    &[("prompt", "consent")]
                };
                self.send(&next, Some(form)).await
            } else {
                self.send(&next, None).await
            };
            let location = location.unwrap_or_else(|| panic!("no redirect ({status}): {body}"));
            if let Some(query) = location.strip_prefix(&format!("{REDIRECT}?")) {
                return url::form_urlencoded::parse(query.as_bytes())
                    .find(|(name, _)| name == "code")
                    .map(|(_, code)| code.into_owned())
                    .unwrap_or_else(|| panic!("no code: {location}"));
            }
            next = location;
        }
        panic!("the authorization never redirected back");
    }

    /// Ends the session at the authorization server (RP-initiated logout,
    /// confirmed), which sends the logout token before it answers.
    async fn end_session(&mut self) {
        let (_, _, page) = self.send(&format!("{}/session/end", self.issuer), None).await;
        let xsrf = page
            .split("name=\"xsrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the logout page's xsrf")
            .to_owned();
        let confirm = format!("{}/session/end/confirm", self.issuer);
        let (status, _, _) = self
            .send(&confirm, Some(&[("xsrf", &xsrf), ("logout", "yes")]))
            .await;
        assert!(matches!(status, 200 | 303), "end-session answered {status}");
    }
}

/// A replica of `examples/resource_server.rs` on `listen`, a JWT verifier
/// of the provider's tokens sharing `redis_url`, receiving logout tokens
/// for `client_id`.
fn replica(
    listen: &str,
    oidc: &HashMap<String, String>,
    redis_url: &str,
    client_id: &str,
) -> common::ExampleServer {
    common::start_example(
        "resource_server",
        &[
            ("JWT_ISSUER", &oidc["OIDC_ISSUER"]),
            ("JWKS_URL", &oidc["OIDC_JWKS_URL"]),
            ("EXPECTED_AUDIENCE", RESOURCE),
            ("BACKCHANNEL_LOGOUT_PATH", "/backchannel-logout"),
            ("LOGOUT_TOKEN_AUDIENCE", client_id),
            ("REDIS_URL", redis_url),
            ("CACHE_SHARED_SECRET", SECRET),
            ("LISTEN_ADDR", listen),
        ],
        &["INTROSPECTION_URL", "AS_ISSUER"],
    )
}

/// Whether `replica` refuses `token` as revoked (not for any other reason).
async fn refuses_as_revoked(replica: &common::ExampleServer, token: &str) -> bool {
    let response = reqwest::Client::new()
        .get(format!("{}/whoami", replica.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    response.status() == 401 && common::challenge(&response).contains("the token was revoked")
}

async fn whoami(replica: &common::ExampleServer, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/whoami", replica.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
#[ignore = "needs node-oidc-provider and redis-server: tests/interop/oidc.sh start; tests/interop/redis.sh start"]
async fn an_end_session_at_the_as_ends_the_sessions_tokens_on_every_replica() {
    let oidc = harness_env("oidc", "OIDC_");
    let issuer = oidc
        .get("OIDC_ISSUER")
        .expect("node-oidc-provider is not running: eval \"$(tests/interop/oidc.sh start)\"");
    let redis = harness_env("redis", "REDIS_");
    let redis_url = redis
        .get("REDIS_URL")
        .expect("redis-server is not running: eval \"$(tests/interop/redis.sh start)\"");

    // Replica A's port first: the client registers it as its logout URI.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registration: Value = reqwest::Client::new()
        .post(format!("{issuer}/reg"))
        .json(&json!({
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "backchannel_logout_uri": format!("http://127.0.0.1:{port}/backchannel-logout"),
            "backchannel_logout_session_required": true,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registration["client_id"].as_str().expect("registered").to_owned();
    let client_secret = registration["client_secret"].as_str().unwrap().to_owned();
    let a = replica(&format!("127.0.0.1:{port}"), &oidc, redis_url, &client_id);
    let b = replica("127.0.0.1:0", &oidc, redis_url, &client_id);

    // A login, and two tokens of its session.
    let mut browser = Browser::new(issuer);
    let token = async |browser: &mut Browser| {
        let code = browser.authorize(&client_id).await;
        let answer: Value = reqwest::Client::new()
            .post(format!("{issuer}/token"))
            .basic_auth(&client_id, Some(&client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("resource", RESOURCE),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    };
    let cached = token(&mut browser).await;
    let unseen = token(&mut browser).await;
    assert_eq!((whoami(&a, &cached).await, whoami(&b, &cached).await), (200, 200));

    browser.end_session().await;
    assert!(refuses_as_revoked(&a, &cached).await, "the replica the AS told");
    let start = Instant::now();
    while !refuses_as_revoked(&b, &cached).await {
        assert_eq!(whoami(&b, &cached).await, 200, "refused, but not as revoked");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the other replica never heard"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refuses_as_revoked(&a, &unseen).await && refuses_as_revoked(&b, &unseen).await);

    // A replica started after the logout honours it too, and accepts the
    // token of a new login.
    let late = replica("127.0.0.1:0", &oidc, redis_url, &client_id);
    assert!(refuses_as_revoked(&late, &unseen).await);
    // A new second: issued after the logout.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = token(&mut browser).await;
    assert_eq!(
        (whoami(&late, &fresh).await, whoami(&a, &fresh).await),
        (200, 200)
    );
}
