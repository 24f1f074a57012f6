//! DPoP-bound tokens (RFC 9449) at the resource server, over real TCP with
//! the test AS: a token whose answer or claims name `cnf.jkt` is refused as a
//! bearer token, and its `Principal` shows the binding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Setup;
use serde_json::json;
use tower_introspection::test_util::{JwtSpec, TokenSpec};
use tower_introspection::{IntrospectionLayer, JwtVerifier};

const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
const BOUND_AS_BEARER: &str = "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token is bound to a DPoP key and must be sent with the DPoP scheme and a proof\"";

/// Introspection answers `cnf.jkt`: the `Bearer` scheme is refused, on the
/// miss and on the cache hit that follows (the answer is cached; the
/// refusal is decided per request).
#[tokio::test]
async fn introspected_bound_token_as_bearer_is_refused() {
    let s = Setup::new().await;
    let token = s
        .auth
        .mint(TokenSpec::new().scope("read").claim("cnf", json!({ "jkt": JKT })));
    for round in ["miss", "hit"] {
        let response = s.get("/ping", Some(&token)).await;
        assert_eq!(response.status(), 401, "{round}");
        assert_eq!(common::challenge(&response), BOUND_AS_BEARER, "{round}");
    }
    // A `cnf` without `jkt` (e.g. an mTLS binding) is not a DPoP binding.
    let other = s.auth.mint(
        TokenSpec::new()
            .scope("read")
            .claim("cnf", json!({ "x5t#S256": "abc" })),
    );
    assert_eq!(s.status("/ping", Some(&other)).await, 200);
}

/// A JWT access token with `cnf.jkt` is refused the same way.
#[tokio::test]
async fn jwt_bound_token_as_bearer_is_refused() {
    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let jwt = JwtVerifier::builder()
        .issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let base = common::serve(common::app(IntrospectionLayer::new(jwt))).await;
    let http = reqwest::Client::new();
    let token = auth.mint_jwt(
        JwtSpec::rfc9068()
            .aud("https://api.example")
            .claim("scope", json!("read"))
            .claim("cnf", json!({ "jkt": JKT })),
    );
    for round in ["miss", "hit"] {
        let response = http
            .get(format!("{base}/ping"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{round}");
        assert_eq!(common::challenge(&response), BOUND_AS_BEARER, "{round}");
    }
}

/// The `Principal` shows the confirmation; an unbound token shows none.
#[tokio::test]
async fn principal_exposes_the_confirmation() {
    let s = Setup::new().await;
    let bound = s
        .introspector
        .validate(
            &s.auth
                .mint(TokenSpec::new().scope("read").claim("cnf", json!({ "jkt": JKT }))),
        )
        .await
        .unwrap();
    assert!(bound.is_dpop_bound());
    assert_eq!(bound.dpop_jkt(), Some(JKT));
    assert_eq!(bound.confirmation(), Some(&json!({ "jkt": JKT })));
    let plain = s.introspector.validate(&s.auth.mint_token("read")).await.unwrap();
    assert!(!plain.is_dpop_bound());
    assert_eq!(plain.dpop_jkt(), None);
}
