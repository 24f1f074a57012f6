//! Revocation by subject, session and client, against the crate's test AS
//! over real TCP: cached answers are evicted, and tokens issued up to the
//! event are refused even when the AS (or a JWT's signature) still vouches
//! for them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tower_introspection::jwt::JwtVerifier;
use tower_introspection::revocation::{Revocation, RevokeError};
use tower_introspection::test_util::{JwtSpec, TestAuthServer, TokenSpec, RS_CLIENT_ID, RS_CLIENT_SECRET};
use tower_introspection::{ErrorKind, Introspector, Verifier};

const API: &str = "https://api.example";

fn introspector(auth: &TestAuthServer) -> tower_introspection::introspection::IntrospectorBuilder {
    Introspector::builder(auth.introspection_url()).client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
}

fn jwt(auth: &TestAuthServer) -> JwtVerifier {
    JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience(API)
        .build()
        .unwrap()
}

/// Refused as revoked: 401 `invalid_token`.
fn assert_revoked(outcome: Result<tower_introspection::Principal, tower_introspection::AuthError>) {
    let error = outcome.expect_err("revoked");
    assert_eq!(error.kind(), ErrorKind::InvalidToken);
    assert_eq!(error.description(), "the token was revoked");
}

/// Waits until the clock has moved into the next second, so that tokens
/// minted from now on were issued after a revocation made before.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn a_subjects_cached_answers_are_evicted_and_its_tokens_refused() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = introspector(&auth)
        .expected_issuer(auth.issuer())
        .build()
        .unwrap();
    let alice = auth.mint(TokenSpec::new().sub("alice").scope("read"));
    let alices_other = auth.mint(TokenSpec::new().sub("alice"));
    let bob = auth.mint(TokenSpec::new().sub("bob"));
    for token in [&alice, &alices_other, &bob] {
        verifier.validate(token).await.unwrap();
    }
    assert_eq!(auth.introspection_calls(), 3);

    let revoked = verifier
        .revoke(&Revocation::subject(auth.issuer(), "alice"))
        .await
        .unwrap();
    assert_eq!(revoked.evicted, 2);

    // The AS still says active: the cut-off refuses them all the same.
    assert_revoked(verifier.validate(&alice).await);
    assert_revoked(verifier.validate(&alices_other).await);
    assert_eq!(auth.introspection_calls(), 5, "evicted: asked again");
    assert!(verifier.validate(&alice).await.is_err());
    assert_eq!(auth.introspection_calls(), 5, "refused again without asking");
    verifier.validate(&bob).await.unwrap();
    assert_eq!(auth.introspection_calls(), 5, "bob's answer stayed cached");

    // A token alice gets after the event is hers to use.
    next_second().await;
    let fresh = auth.mint(TokenSpec::new().sub("alice"));
    assert_eq!(verifier.validate(&fresh).await.unwrap().subject(), Some("alice"));
}

#[tokio::test]
async fn a_session_or_a_client_is_revoked_alone() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = introspector(&auth)
        .expected_issuer(auth.issuer())
        .build()
        .unwrap();
    let in_session = |sid: &str| TokenSpec::new().sub("alice").claim("sid", json!(sid));
    let (one, two) = (auth.mint(in_session("s1")), auth.mint(in_session("s2")));
    let (app, other_app) = (
        auth.mint(TokenSpec::new().client_id("app")),
        auth.mint(TokenSpec::new().client_id("other-app")),
    );
    for token in [&one, &two, &app, &other_app] {
        verifier.validate(token).await.unwrap();
    }

    let session = Revocation::session(auth.issuer(), "s1");
    assert_eq!(verifier.revoke(&session).await.unwrap().evicted, 1);
    assert_revoked(verifier.validate(&one).await);
    verifier.validate(&two).await.unwrap();

    let client = Revocation::client(auth.issuer(), "app");
    assert_eq!(verifier.revoke(&client).await.unwrap().evicted, 1);
    assert_revoked(verifier.validate(&app).await);
    verifier.validate(&other_app).await.unwrap();
    verifier.validate(&two).await.unwrap();
}

#[tokio::test]
async fn another_issuers_revocation_leaves_answers_that_name_their_issuer() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = introspector(&auth).build().unwrap();
    let named = auth.mint(TokenSpec::new().sub("alice"));
    let unnamed = auth.mint(TokenSpec::new().sub("alice").omit("iss"));
    verifier.validate(&named).await.unwrap();
    verifier.validate(&unnamed).await.unwrap();

    let elsewhere = Revocation::subject("https://other-as.example", "alice");
    // Without `expected_issuer`, an answer without `iss` could be the other
    // issuer's: it is evicted and refused (fail closed).
    assert_eq!(verifier.revoke(&elsewhere).await.unwrap().evicted, 1);
    verifier.validate(&named).await.unwrap();
    assert_revoked(verifier.validate(&unnamed).await);
}

#[tokio::test]
async fn jwts_never_seen_are_refused_by_iat_or_auth_time() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = jwt(&auth);
    let good = || JwtSpec::rfc9068().aud(API).sub("alice");
    let before = auth.mint_jwt(good());
    let logged_in_before = auth.mint_jwt(good().claim("auth_time", json!(auth_time_now())));
    let cached = auth.mint_jwt(good());
    verifier.validate(&cached).await.unwrap();

    let revoked = verifier
        .revoke(&Revocation::subject(auth.issuer(), "alice"))
        .await
        .unwrap();
    assert_eq!(revoked.evicted, 1);
    assert_revoked(verifier.validate(&cached).await);
    assert_revoked(verifier.validate(&before).await);

    next_second().await;
    // Issued after the event, but for a login before it (a refresh).
    let refreshed = auth.mint_jwt(good().claim("auth_time", json!(auth_time_now() - 2)));
    assert_revoked(verifier.validate(&refreshed).await);
    assert_revoked(verifier.validate(&logged_in_before).await);
    let new_login = auth.mint_jwt(good().claim("auth_time", json!(auth_time_now())));
    verifier.validate(&new_login).await.unwrap();
    verifier.validate(&auth.mint_jwt(good())).await.unwrap();
}

fn auth_time_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_verifier_revokes_in_every_source() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = Verifier::builder()
        .jwt(jwt(&auth))
        .introspector(introspector(&auth).build().unwrap())
        .build()
        .unwrap();
    let opaque = auth.mint(TokenSpec::new().sub("alice"));
    let signed = auth.mint_jwt(JwtSpec::rfc9068().aud(API).sub("alice"));
    verifier.validate(&opaque).await.unwrap();
    verifier.validate(&signed).await.unwrap();

    let revoked = verifier
        .revoke(&Revocation::subject(auth.issuer(), "alice"))
        .await
        .unwrap();
    assert_eq!(revoked.evicted, 2, "one answer in each source");
    assert_revoked(verifier.validate(&opaque).await);
    assert_revoked(verifier.validate(&signed).await);
}

#[tokio::test]
async fn full_cutoffs_still_evict_and_say_so() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = introspector(&auth).max_cutoffs(1).build().unwrap();
    let (alice, bob) = (
        auth.mint(TokenSpec::new().sub("alice")),
        auth.mint(TokenSpec::new().sub("bob")),
    );
    verifier.validate(&alice).await.unwrap();
    verifier.validate(&bob).await.unwrap();
    // Without `expected_issuer`, a cut-off takes two slots (the issuer's,
    // and no issuer's): one slot holds none.
    let error = verifier
        .revoke(&Revocation::subject(auth.issuer(), "bob"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        RevokeError::Full {
            capacity: 1,
            evicted: 1
        }
    );
    // Evicted, but not refused: the AS still says active.
    let calls = auth.introspection_calls();
    verifier.validate(&bob).await.unwrap();
    assert_eq!(auth.introspection_calls(), calls + 1, "evicted: asked again");
    verifier.validate(&alice).await.unwrap();
}

#[tokio::test]
async fn cutoffs_are_forgotten_after_their_retention() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = introspector(&auth)
        .expected_issuer(auth.issuer())
        .cutoff_retention(Duration::from_secs(3))
        // A revoked token is also remembered as refused: not here.
        .negative_ttl(Duration::ZERO)
        .max_cutoffs(2)
        .build()
        .unwrap();
    let alice = auth.mint(TokenSpec::new().sub("alice"));
    verifier
        .revoke(&Revocation::subject(auth.issuer(), "alice"))
        .await
        .unwrap();
    assert_revoked(verifier.validate(&alice).await);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    // Past the retention: forgotten (the AS's token lives longer than the
    // retention here, which the docs say not to do).
    verifier.validate(&alice).await.unwrap();
    // And its slots are free again.
    verifier
        .revoke(&Revocation::subject(auth.issuer(), "bob"))
        .await
        .unwrap();
    verifier
        .revoke(&Revocation::subject(auth.issuer(), "carol"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_zero_retention_is_refused_and_the_leeway_widens_the_cutoff() {
    let auth = TestAuthServer::start().await.unwrap();
    assert!(introspector(&auth)
        .cutoff_retention(Duration::ZERO)
        .build()
        .is_err());
    let verifier = introspector(&auth)
        .expected_issuer(auth.issuer())
        .leeway(Duration::from_secs(30))
        .build()
        .unwrap();
    // Issued "10 s from now" by an AS whose clock runs ahead.
    let ahead = auth.mint(TokenSpec::new().sub("alice").iat(auth_time_now() + 10));
    verifier
        .revoke(&Revocation::subject(auth.issuer(), "alice"))
        .await
        .unwrap();
    assert_revoked(verifier.validate(&ahead).await);
}
