//! RFC 9701 signed introspection answers against the test AS over real
//! TCP: asked for with `Accept`, checked (signature against the AS's JWK
//! Set, `typ`, `iss`, `aud`, `iat`) and read; every spoiled answer, and an
//! unsigned one when signing is required, is a 503 and never cached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use tower_introspection::test_util::{SignedAnswerFault, TestAuthServer};
use tower_introspection::{introspection::IntrospectorBuilder, ErrorKind, Introspector};

fn signed(auth: &TestAuthServer) -> IntrospectorBuilder {
    common::builder(auth).signed_answers(auth.issuer(), auth.jwks_url())
}

#[tokio::test]
async fn a_signed_answer_is_asked_for_checked_and_read() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = signed(&auth).build().unwrap();
    let token = auth.mint_token("read write");
    let principal = introspector.validate(&token).await.unwrap();
    assert!(principal.scopes().contains("write"));
    let request = auth.last_introspection_request().unwrap();
    assert_eq!(
        request.accept.as_deref(),
        Some("application/token-introspection+jwt")
    );
    // An inactive token, signed, is still inactive.
    let error = introspector.validate("unknown-token").await.unwrap_err();
    assert_eq!(error.status(), 401);
    // Without the setting, plain JSON is asked for, as before.
    let plain = common::introspector(&auth);
    plain.validate(&auth.mint_token("read")).await.unwrap();
    let request = auth.last_introspection_request().unwrap();
    assert_eq!(request.accept.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn every_spoiled_answer_is_refused_and_never_cached() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = signed(&auth).build().unwrap();
    for fault in [
        SignedAnswerFault::BadSignature,
        SignedAnswerFault::WrongAudience,
        SignedAnswerFault::WrongIssuer,
        SignedAnswerFault::WrongTyp,
        SignedAnswerFault::StaleIat,
        SignedAnswerFault::Unsigned,
    ] {
        let token = auth.mint_token("read");
        auth.set_signed_answer_fault(Some(fault));
        let calls = auth.introspection_calls();
        for _ in 0..2 {
            let error = introspector.validate(&token).await.unwrap_err();
            assert_eq!(error.status(), 503, "{fault:?}");
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{fault:?}");
        }
        assert_eq!(auth.introspection_calls(), calls + 2, "{fault:?}: not cached");
        auth.set_signed_answer_fault(None);
        introspector.validate(&token).await.unwrap();
    }
}

#[tokio::test]
async fn unsigned_answers_pass_only_when_allowed() {
    let auth = TestAuthServer::start().await.unwrap();
    auth.set_signed_answer_fault(Some(SignedAnswerFault::Unsigned));
    let lenient = signed(&auth).accept_unsigned_answers(true).build().unwrap();
    lenient.validate(&auth.mint_token("read")).await.unwrap();
    // A signed answer is still checked when unsigned ones are allowed.
    auth.set_signed_answer_fault(Some(SignedAnswerFault::WrongAudience));
    assert_eq!(
        lenient
            .validate(&auth.mint_token("read"))
            .await
            .unwrap_err()
            .status(),
        503
    );
}

#[test]
fn signed_answers_need_a_client_id() {
    let error = Introspector::builder("https://as.example/introspect")
        .bearer_token("static-token")
        .signed_answers("https://as.example", "https://as.example/jwks")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("client id"), "{error}");
}
