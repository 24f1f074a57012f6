//! What reaches the logs, captured at TRACE level: secrets hygiene (RFC 7662
//! §5, checklist I12) and rate-limited configuration errors.
//!
//! Every test here captures logs: `tracing` caches per-callsite interest
//! process-wide, so a test without a subscriber running beside a capturing
//! one could hide events from it. Keep non-capturing tests elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use tower_introspection::test_util::{
    client_secret_basic, AuthFailure, ClientSpec, Fault, TestAuthServer, TokenSpec,
};
use tower_introspection::{IntrospectionLayer, Introspector};

const SECRET: &str = "s3cret-Ab+/c%:d";
const BEARER_CLIENT_SECRET: &str = "bearer-client-s3cret";

/// No token and no credential of the resource server reaches the logs (or
/// the introspectors' `Debug`) in any form it takes on the wire: the raw and
/// urlencoded secret, the HTTP Basic value `base64(urlencode(id) ":"
/// urlencode(secret))` (RFC 6749 §2.3.1), and every bearer credential the
/// introspector fetched from the token endpoint.
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
    // Every `Authorization` header the AS received from the introspectors.
    // Only the last request is recorded, so look after each of ours: a bearer
    // credential replaced after a 401 was the last one before that.
    let mut sent = BTreeSet::new();
    let mut record = |auth: &TestAuthServer| {
        if let Some(header) = auth.last_introspection_request().and_then(|r| r.authorization) {
            sent.insert(header);
        }
    };
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
                record(&auth);
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
            record(&auth);
            tokens.push(faulted);
            auth.clear_fault();
        }
        introspector.invalidate(&active).await;
        tokens.extend([active, revoked, unknown]);
    }

    // What the wire carried: the Basic value we expect, and the bearer
    // credentials, one per token-endpoint call (the 401 fault forced a second).
    let basic = client_secret_basic("rs-secret-client", SECRET);
    assert!(sent.contains(&basic), "Basic mode sent the RFC 6749 §2.3.1 value");
    let bearers: Vec<&str> = sent.iter().filter_map(|h| h.strip_prefix("Bearer ")).collect();
    assert_eq!(
        bearers.len(),
        auth.token_calls(),
        "every bearer credential fetched was seen on the wire"
    );
    assert!(
        bearers.len() >= 2,
        "the 401 fault made the introspector fetch a new one"
    );
    let mut credentials: Vec<&str> = sent
        .iter()
        .map(|h| h.split_once(' ').expect("scheme and credentials").1)
        .collect();
    assert_eq!(
        credentials.len(),
        bearers.len() + 1,
        "no other Authorization header"
    );
    let encoded = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect::<String>();
    credentials.extend([SECRET, BEARER_CLIENT_SECRET, encoded.as_str()]);

    let text = logs.text() + &format!("{introspectors:?}");
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
    for credential in credentials {
        assert!(
            !text.contains(credential),
            "a credential of the resource server leaked into the logs"
        );
    }
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
