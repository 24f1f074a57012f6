//! What reaches the logs, captured at TRACE level: secrets hygiene (RFC 7662
//! §5, checklist I12) and rate-limited configuration errors.
//!
//! Every test here captures logs: `tracing` caches per-callsite interest
//! process-wide, so a test without a subscriber running beside a capturing
//! one could hide events from it. Keep non-capturing tests elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use tower_introspection::test_util::{AuthFailure, ClientSpec, Fault, TestAuthServer, TokenSpec};
use tower_introspection::{IntrospectionLayer, Introspector};

const SECRET: &str = "s3cret-Ab+/c%:d";
const BEARER_CLIENT_SECRET: &str = "bearer-client-s3cret";

#[tokio::test]
async fn no_token_or_secret_in_trace_logs() {
    let logs = common::capture_logs();
    let auth = TestAuthServer::start().await.unwrap();
    auth.register_client(ClientSpec::new("rs-secret-client", SECRET).can_introspect(true));
    auth.register_client(
        ClientSpec::new("rs-bearer", BEARER_CLIENT_SECRET)
            .grants(&["client_credentials"])
            .scopes("introspection"),
    );
    let introspectors = [
        Introspector::builder(auth.introspection_url()).client_secret_basic("rs-secret-client", SECRET),
        Introspector::builder(auth.introspection_url()).client_secret_post("rs-secret-client", SECRET),
        Introspector::builder(auth.introspection_url())
            .bearer_from_client_credentials(auth.token_url(), "rs-bearer", BEARER_CLIENT_SECRET)
            .token_scope("introspection"),
    ]
    .map(|b| b.timeout(Duration::from_millis(300)).build().unwrap());

    let mut tokens = Vec::new();
    for introspector in &introspectors {
        let base = common::serve(common::app(IntrospectionLayer::new(introspector.clone()))).await;
        let http = reqwest::Client::new();
        let active = auth.mint(TokenSpec::new().scope("read").sub("alice"));
        let revoked = auth.mint_token("read");
        auth.revoke(&revoked);
        let unknown = "unknown-token-value-1234567890".to_owned();
        for token in [&active, &revoked, &unknown] {
            for path in ["/whoami", "/admin", "/items"] {
                http.get(format!("{base}{path}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
            }
        }
        for fault in [Fault::Status(500), Fault::Html, Fault::Hang, Fault::Status(401)] {
            auth.set_fault(fault);
            let faulted = auth.mint_token("read");
            http.get(format!("{base}/ping"))
                .bearer_auth(&faulted)
                .send()
                .await
                .unwrap();
            tokens.push(faulted);
            auth.clear_fault();
        }
        introspector.invalidate(&active).await;
        tokens.extend([active, revoked, unknown]);
    }

    // The bearer credential the introspector fetched for itself.
    let credential = auth
        .last_introspection_request()
        .and_then(|r| r.authorization)
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .expect("the last call used the bearer credential");

    let text = logs.text();
    assert!(
        text.contains("introspect"),
        "the capture works: {} bytes",
        text.len()
    );
    assert!(
        text.len() > 10_000,
        "TRACE output from the HTTP stack was captured too"
    );
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a token leaked into the logs");
    }
    for secret in [SECRET, BEARER_CLIENT_SECRET, credential.as_str()] {
        assert!(!text.contains(secret), "a secret leaked into the logs");
    }
    let encoded = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect::<String>();
    assert!(!text.contains(&encoded), "an encoded secret leaked into the logs");
}

#[tokio::test]
async fn configuration_error_is_logged_once_per_interval() {
    let logs = common::capture_logs();
    let auth = TestAuthServer::start().await.unwrap();
    auth.set_auth_failure(AuthFailure::DotHtml403);
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "wrong")
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(introspector.validate("t").await.unwrap_err().status(), 500);
    }
    let text = logs.text();
    assert_eq!(
        text.matches("introspection configuration error").count(),
        1,
        "{text}"
    );
}
