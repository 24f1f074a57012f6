//! JWT access tokens over real TCP: the test AS mints them and serves its
//! JWK Set; the layer verifies them locally, with the same `Principal`,
//! scope guards and RFC 6750 answers as for introspection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::json;
use tower_introspection::test_util::{Fault, JwtAlg, JwtSpec, TestAuthServer, TokenSpec};
use tower_introspection::{
    jwt::{Algorithm, JwtProfile, JwtVerifier, JwtVerifierBuilder},
    IntrospectionLayer, Verifier,
};

const API: &str = "https://api.example";

fn rfc9068(auth: &TestAuthServer) -> JwtVerifierBuilder {
    JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience(API)
}

struct Jwt {
    auth: TestAuthServer,
    verifier: JwtVerifier,
    base: String,
    http: reqwest::Client,
}

impl Jwt {
    async fn with(configure: impl FnOnce(JwtVerifierBuilder) -> JwtVerifierBuilder) -> Self {
        let auth = TestAuthServer::start().await.unwrap();
        let verifier = configure(rfc9068(&auth)).build().unwrap();
        Self::serving(auth, verifier).await
    }

    /// The layer with `verifier`, for tokens of `auth`.
    async fn serving(auth: TestAuthServer, verifier: JwtVerifier) -> Self {
        let base = common::serve(common::app(IntrospectionLayer::new(verifier.clone()))).await;
        Self {
            auth,
            verifier,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn new() -> Self {
        Self::with(|b| b).await
    }

    fn token(&self, spec: JwtSpec) -> String {
        self.auth.mint_jwt(spec)
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn status(&self, path: &str, token: &str) -> u16 {
        self.get(path, token).await.status().as_u16()
    }

    /// The request is refused 401 `invalid_token` with this description.
    async fn refused(&self, token: &str, description: &str) {
        let response = self.get("/ping", token).await;
        assert_eq!(response.status(), 401, "{description}");
        assert_eq!(
            common::challenge(&response),
            format!("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\"")
        );
    }
}

fn good() -> JwtSpec {
    JwtSpec::rfc9068().aud(API).scope("read")
}

#[tokio::test]
async fn an_rfc9068_token_reaches_the_handler_with_its_principal() {
    let s = Jwt::new().await;
    let token = s.token(good().sub("bob").client_id("app"));
    let whoami: serde_json::Value = s.get("/whoami", &token).await.json().await.unwrap();
    assert_eq!(whoami["sub"], "bob");
    assert_eq!(whoami["client_id"], "app");
    assert_eq!(whoami["scope"], "read");
    assert_eq!(whoami["aud"], json!([API]));
    assert_eq!(s.status("/items", &token).await, 200);
    let response = s.get("/admin", &token).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        common::challenge(&response),
        "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"admin\""
    );
}

/// Each JWK declares its algorithm (`alg`), and only that one is accepted
/// with it: the test AS's RSA key says RS256.
#[tokio::test]
async fn the_jwks_keys_verify_their_declared_algorithms() {
    let s = Jwt::with(|b| b.algorithms(Algorithm::ALL)).await;
    for alg in [JwtAlg::Rs256, JwtAlg::Es256, JwtAlg::Es384, JwtAlg::EdDsa] {
        let token = s.token(good().alg(alg.clone()));
        assert_eq!(s.status("/ping", &token).await, 200, "{alg:?}");
    }
    assert_eq!(s.verifier.stats().jwks_fetches, 1, "one JWKS fetch for all");
    let ps256 = s.token(good().alg(JwtAlg::Ps256));
    s.refused(&ps256, "the token's signature is invalid").await;
}

/// A PEM key declares nothing: RS256 by default, any RSA algorithm from an
/// explicit list.
#[tokio::test]
async fn a_static_rsa_key_verifies_every_listed_rsa_algorithm() {
    let auth = TestAuthServer::start().await.unwrap();
    let rsa = [
        JwtAlg::Rs256,
        JwtAlg::Rs384,
        JwtAlg::Rs512,
        JwtAlg::Ps256,
        JwtAlg::Ps384,
        JwtAlg::Ps512,
    ];
    let listed = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .public_key_pem(auth.rsa_public_key_pem())
        .algorithms(Algorithm::ALL)
        .expected_audience(API)
        .build()
        .unwrap();
    let default = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .public_key_der(auth.rsa_public_key_der())
        .expected_audience(API)
        .build()
        .unwrap();
    for alg in rsa {
        let token = auth.mint_jwt(good().alg(alg.clone()));
        assert!(listed.validate(&token).await.is_ok(), "{alg:?}");
        assert_eq!(
            default.validate(&token).await.is_ok(),
            alg == JwtAlg::Rs256,
            "{alg:?}"
        );
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let s = Jwt::new().await;
    s.refused(
        &s.token(good().alg(JwtAlg::None)),
        "unsigned tokens (alg none) are refused",
    )
    .await;
}

/// Algorithm confusion: HS256 with the RSA public key's bytes as the secret.
#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let s = Jwt::new().await;
    let pem = s.auth.rsa_public_key_pem();
    for secret in [pem.clone().into_bytes(), s.auth.rsa_public_key_der()] {
        s.refused(
            &s.token(good().alg(JwtAlg::Hs256(secret))),
            "HMAC-signed tokens are refused",
        )
        .await;
    }
}

/// A token signed by another key, naming that key in its header (`jwk`,
/// `jku`, `x5u`, `x5c`): the header's key is never fetched or used.
#[tokio::test]
async fn keys_named_by_the_token_are_never_fetched_or_trusted() {
    let s = Jwt::new().await;
    assert_eq!(s.status("/ping", &s.token(good())).await, 200);
    let attacker = TestAuthServer::start().await.unwrap();
    let jwks: serde_json::Value = reqwest::get(attacker.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let attacker_key = jwks["keys"][1].clone();
    attacker.reset_counters();
    // Test servers share their RSA test keys; EC keys are made per server.
    let forged = attacker.mint_jwt(
        good()
            .alg(JwtAlg::Es256)
            .iss(s.auth.issuer())
            .no_kid()
            .header("jku", json!(attacker.jwks_url()))
            .header("x5u", json!(attacker.jwks_url()))
            .header("jwk", attacker_key)
            .header("x5c", json!(["MIIB"])),
    );
    s.refused(&forged, "the token's signature is invalid").await;
    let forged_kid = attacker.mint_jwt(
        good()
            .alg(JwtAlg::Es256)
            .kid("attacker-key")
            .iss(s.auth.issuer())
            .header("jku", json!(attacker.jwks_url())),
    );
    s.refused(&forged_kid, "the token is signed with an unknown key (kid)")
        .await;
    assert_eq!(attacker.jwks_calls(), 0, "the attacker's jku was never fetched");
}

#[tokio::test]
async fn an_unknown_crit_header_is_refused() {
    let s = Jwt::new().await;
    let token = s.token(good().header("crit", json!(["exp"])).header("exp", json!(1)));
    s.refused(
        &token,
        "the token requires a header extension (crit) that is not supported",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_typ_is_refused() {
    let s = Jwt::new().await;
    s.refused(
        &s.token(good().typ("JWT")),
        "the token is not typed as an access token (typ at+jwt)",
    )
    .await;
    s.refused(
        &s.token(good().no_typ()),
        "the token is not typed as an access token (typ at+jwt)",
    )
    .await;
    assert_eq!(
        s.status("/ping", &s.token(good().typ("application/at+jwt")))
            .await,
        200
    );
}

#[tokio::test]
async fn audience_issuer_and_time_claims_are_checked() {
    let s = Jwt::new().await;
    let other_audience = s.token(good().aud("https://other.example"));
    s.refused(&other_audience, "the token is meant for another audience")
        .await;
    // A signed token for another audience fails for good: the second time
    // the refusal is remembered (one signature check in all), and the
    // token takes no place among the active entries.
    s.refused(&other_audience, "the token was refused").await;
    s.verifier.run_pending_tasks().await;
    let stats = s.verifier.stats();
    assert_eq!(stats.signature_checks, 1);
    assert_eq!(stats.cache.negative_hits, 1);
    assert_eq!(stats.cache.entries, 0);
    // Without a negative cache, such a token stays among the active entries,
    // where each read refuses it without another signature check.
    let s = Jwt::with(|b| b.negative_ttl(Duration::ZERO)).await;
    let other_audience = s.token(good().aud("https://other.example"));
    for _ in 0..3 {
        s.refused(&other_audience, "the token is meant for another audience")
            .await;
    }
    assert_eq!(s.verifier.stats().signature_checks, 1);
    let both = s.token(good().claim("aud", json!(["https://other.example", API])));
    assert_eq!(s.status("/ping", &both).await, 200, "aud: any of");
    s.refused(
        &s.token(good().iss("https://evil.example")),
        "the token was issued by another issuer",
    )
    .await;
    s.refused(
        &s.token(good().exp_ago(Duration::from_secs(60))),
        "the token has expired",
    )
    .await;
    s.refused(
        &s.token(good().nbf_in(Duration::from_secs(60))),
        "the token is not valid yet",
    )
    .await;
    s.refused(&s.token(good().tamper()), "the token's signature is invalid")
        .await;
    s.refused(
        &s.token(good().without("jti")),
        "the token has no identifier (jti)",
    )
    .await;
}

/// A token without `aud` where an audience is expected gets the same words
/// whether the profile requires `aud` or the audience check finds none.
#[tokio::test]
async fn a_missing_aud_is_refused_in_the_same_words_in_every_profile() {
    let s = Jwt::new().await;
    s.refused(&s.token(good().without("aud")), "the token has no audience (aud)")
        .await;
    let s = Jwt::with(|b| b.profile(JwtProfile::Generic)).await;
    s.refused(&s.token(JwtSpec::new()), "the token has no audience (aud)")
        .await;
    s.refused(
        &s.token(JwtSpec::new().claim("aud", json!([]))),
        "the token has no audience (aud)",
    )
    .await;
    s.refused(
        &s.token(JwtSpec::new().aud("https://other.example")),
        "the token is meant for another audience",
    )
    .await;
}

/// RFC 7519 §2: a NumericDate may have a fraction.
#[tokio::test]
async fn non_integer_numeric_dates_are_valid() {
    let s = Jwt::new().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let token = s.token(
        good()
            .claim("exp", json!(now + 600.25))
            .claim("iat", json!(now - 1.5)),
    );
    assert_eq!(s.status("/ping", &token).await, 200);
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_jwks_at_most_once_per_interval() {
    let s = Jwt::new().await;
    assert_eq!(s.status("/ping", &s.token(good())).await, 200);
    for i in 0..50 {
        let token = s.token(good().kid(format!("unknown-{i}")));
        s.refused(&token, "the token is signed with an unknown key (kid)")
            .await;
    }
    let stats = s.verifier.stats();
    assert!(stats.jwks_fetches <= 2, "{stats:?}");
    assert_eq!(s.auth.jwks_calls() as u64, stats.jwks_fetches);
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_with_one_fetch() {
    let s = Jwt::with(|b| b.jwks_refresh_interval(Duration::from_secs(1))).await;
    let before = s.token(good());
    assert_eq!(s.status("/ping", &before).await, 200);
    assert_eq!(s.auth.jwks_calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new_kid = s.auth.rotate_keys();
    let after = s.token(good());
    assert!(after.len() > 10 && !new_kid.is_empty());
    assert_eq!(s.status("/ping", &after).await, 200);
    assert_eq!(s.auth.jwks_calls(), 2, "one more fetch");
    assert_eq!(s.verifier.stats().jwks_fetches, 2, "and counted");
    assert_eq!(s.status("/ping", &before).await, 200, "still cached");
}

/// A token whose `kid` the held keys name but whose signature they refuse
/// is a forgery: refused at once, with no fetch, even once the refresh
/// interval would allow one (the keys are within their maximum age).
#[tokio::test]
async fn a_forgery_naming_a_held_kid_makes_no_fetch() {
    let s = Jwt::with(|b| b.jwks_refresh_interval(Duration::from_secs(1))).await;
    assert_eq!(s.status("/ping", &s.token(good())).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.refused(
        &s.token(good().sub("mallory").tamper()),
        "the token's signature is invalid",
    )
    .await;
    assert_eq!(s.auth.jwks_calls(), 1, "no fetch for a forgery");
    assert_eq!(s.verifier.stats().jwks_fetches, 1);
}

/// While the JWK Set cannot be fetched again, the keys fetched last keep
/// verifying tokens up to twice their maximum age, and no longer: then a
/// token is 503 (the keys are unavailable), not accepted on keys nobody
/// vouches for any more.
#[tokio::test]
async fn the_last_keys_serve_an_outage_up_to_twice_their_max_age() {
    let s = Jwt::with(|b| {
        b.jwks_refresh_interval(Duration::from_secs(1))
            .jwks_max_age(Duration::from_secs(2))
    })
    .await;
    assert_eq!(s.status("/ping", &s.token(good())).await, 200);
    s.auth.set_jwks_fault(Some(Fault::Status(502)));
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        s.status("/ping", &s.token(good().sub("within"))).await,
        200,
        "older than max_age, younger than twice that: still used"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        s.status("/ping", &s.token(good().sub("beyond"))).await,
        503,
        "older than twice max_age: no longer used"
    );
}

/// The refresh interval of the rotation tests: long enough that the few
/// requests before it on a loaded machine stay within it.
const REFRESH: Duration = Duration::from_secs(5);

/// After a key rotation, a genuine token that no held key verifies and that
/// names no `kid` the keys hold comes before the refresh interval allows a
/// fetch: it is refused, but not remembered, so it passes once the new keys
/// are fetched (not `negative_ttl` later).
async fn refused_before_the_refresh_accepted_after(s: &Jwt, spec: impl FnOnce(JwtSpec) -> JwtSpec) {
    assert_eq!(s.status("/ping", &s.token(good())).await, 200);
    assert_eq!(s.auth.jwks_calls(), 1);
    s.auth.rotate_keys();
    let token = s.token(spec(good()));
    s.refused(&token, "the token's signature is invalid").await;
    assert_eq!(s.auth.jwks_calls(), 1, "too soon for a fetch");
    tokio::time::sleep(REFRESH + Duration::from_millis(100)).await;
    assert_eq!(s.status("/ping", &token).await, 200);
    assert_eq!(s.auth.jwks_calls(), 2);
}

#[tokio::test]
async fn a_kid_less_token_after_a_rotation_passes_once_the_keys_are_fetched() {
    let s = Jwt::with(|b| b.jwks_refresh_interval(REFRESH)).await;
    refused_before_the_refresh_accepted_after(&s, JwtSpec::no_kid).await;
    // Forged kid-less tokens are refused without being remembered, and cost
    // no fetch and one signature check each (the one RS256 key, not checked
    // twice); should the interval pass meanwhile, one fetch more, and one
    // check more against the keys it brings.
    let checks = s.verifier.stats().signature_checks;
    let started = std::time::Instant::now();
    let forged = s.token(good().no_kid().sub("mallory").tamper());
    for i in 0..20 {
        assert_eq!(s.status("/ping", &forged).await, 401);
        let other = s.token(good().no_kid().sub(format!("forged-{i}")).tamper());
        assert_eq!(s.status("/ping", &other).await, 401);
    }
    // At most one fetch per interval begun, whatever the machine's speed.
    let intervals = started.elapsed().as_secs() / REFRESH.as_secs() + 1;
    let fetched = u64::try_from(s.auth.jwks_calls() - 2).unwrap();
    assert!(fetched <= intervals, "{fetched} fetches in {intervals} intervals");
    let stats = s.verifier.stats();
    assert!(stats.signature_checks - checks <= 40 + fetched, "{stats:?}");
}

/// A kid-less forgery checked against keys fetched after it came is
/// remembered: those keys could have verified it.
#[tokio::test]
async fn a_kid_less_forgery_failing_keys_fetched_for_it_is_remembered() {
    let s = Jwt::new().await;
    let forged = s.token(good().no_kid().tamper());
    s.refused(&forged, "the token's signature is invalid").await;
    s.refused(&forged, "the token was refused").await;
    assert_eq!(s.auth.jwks_calls(), 1);
    assert_eq!(s.verifier.stats().signature_checks, 1);
}

/// The same for a token naming a `kid` while the JWK Set's keys carry none:
/// any of them may have signed it.
#[tokio::test]
async fn a_kid_the_jwks_does_not_name_passes_once_the_keys_are_fetched() {
    let auth = TestAuthServer::start().await.unwrap();
    let jwks = jwks_without_kids(&auth).await;
    let verifier = rfc9068(&auth)
        .jwks_url(jwks)
        .jwks_refresh_interval(REFRESH)
        .build()
        .unwrap();
    let s = Jwt::serving(auth, verifier).await;
    refused_before_the_refresh_accepted_after(&s, |spec| spec).await;
}

/// A real server in front of the test AS's JWK Set that drops every `kid`.
async fn jwks_without_kids(auth: &TestAuthServer) -> String {
    let upstream = auth.jwks_url();
    let http = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (http, upstream) = (http.clone(), upstream.clone());
            async move {
                let response = http.get(upstream).send().await.unwrap();
                let mut set: serde_json::Value = response.json().await.unwrap();
                for key in set["keys"].as_array_mut().unwrap() {
                    key.as_object_mut().unwrap().remove("kid");
                }
                axum::Json(set)
            }
        }),
    );
    format!("{}/jwks", common::serve(app).await)
}

/// A key the AS withdrew from its JWK Set stops being trusted once the set
/// is older than its maximum age, even if no token names a new `kid`.
#[tokio::test]
async fn a_withdrawn_key_stops_being_trusted_after_the_max_age() {
    let s = Jwt::with(|b| {
        b.jwks_refresh_interval(Duration::from_secs(1))
            .jwks_max_age(Duration::from_secs(1))
    })
    .await;
    let signed_with_old_key = s.token(good().sub("mallory"));
    assert_eq!(s.status("/ping", &s.token(good())).await, 200);
    s.auth.rotate_keys();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.refused(
        &signed_with_old_key,
        "the token is signed with an unknown key (kid)",
    )
    .await;
    assert_eq!(s.auth.jwks_calls(), 2, "the old set was fetched again");
}

/// While the JWK Set cannot be fetched, a token naming a new `kid` is 503
/// (retry), not 401 (throw the token away), and is not remembered.
#[tokio::test]
async fn a_new_kid_during_a_jwks_outage_is_503_and_not_remembered() {
    let s = Jwt::with(|b| b.jwks_refresh_interval(Duration::from_secs(1))).await;
    assert_eq!(s.status("/ping", &s.token(good())).await, 200);
    s.auth.set_jwks_fault(Some(Fault::Status(502)));
    s.auth.rotate_keys();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let first = s.token(good().sub("first"));
    let second = s.token(good().sub("second"));
    assert_eq!(s.status("/ping", &first).await, 503);
    assert_eq!(
        s.status("/ping", &second).await,
        503,
        "within the interval, still an outage"
    );
    s.auth.set_jwks_fault(None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.status("/ping", &second).await, 200);
    assert_eq!(s.status("/ping", &first).await, 200);
}

/// An AS clock a little ahead: the token is refused until ours catches up,
/// then accepted (the refusal is not remembered).
#[tokio::test]
async fn a_token_issued_in_the_future_is_accepted_once_it_is_not() {
    let s = Jwt::new().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = s.token(good().claim("iat", json!(now + 2)));
    s.refused(&token, "the token was issued in the future (iat)")
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(s.status("/ping", &token).await, 200);
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_not_401_and_nothing_is_cached() {
    let s = Jwt::new().await;
    s.auth.set_jwks_fault(Some(Fault::Status(500)));
    let token = s.token(good());
    let response = s.get("/ping", &token).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    s.auth.set_jwks_fault(None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.status("/ping", &token).await, 200);
}

/// A verified token costs one signature check; a forged one costs one too,
/// and is then remembered: a flood of forgeries evicts no good entry.
#[tokio::test]
async fn the_cache_serves_jwts_and_remembers_forgeries() {
    let s = Jwt::new().await;
    let token = s.token(good());
    for _ in 0..5 {
        assert_eq!(s.status("/ping", &token).await, 200);
    }
    assert_eq!(s.verifier.stats().signature_checks, 1);
    let forged = s.token(good().tamper());
    for _ in 0..5 {
        assert_eq!(s.status("/ping", &forged).await, 401);
    }
    let stats = s.verifier.stats();
    assert_eq!(stats.signature_checks, 2, "{stats:?}");
    assert_eq!(stats.cache.negative_hits, 4);
    for i in 0..200 {
        let forged = s.token(good().sub(format!("forged-{i}")).tamper());
        assert_eq!(s.status("/ping", &forged).await, 401);
    }
    assert_eq!(s.status("/ping", &token).await, 200);
    assert_eq!(
        s.verifier.stats().signature_checks,
        202,
        "the good token is still cached"
    );
}

/// Laravel Passport: RS256 with the key from `oauth-public.key`, no `kid`,
/// no `iss`, the client id in `aud`, scopes in a `scopes` array.
#[tokio::test]
async fn passport_tokens_pass_with_the_public_key_file_shape() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .public_key_pem(auth.rsa_public_key_pem())
        .profile(JwtProfile::Passport)
        .expected_audience("3")
        .build()
        .unwrap();
    let base = common::serve(common::app(IntrospectionLayer::new(verifier))).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str, token: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    };
    let reader = auth.mint_jwt(JwtSpec::passport().aud("3").sub("42").scope("read"));
    assert_eq!(get("/items", reader.clone()).await, 200);
    assert_eq!(get("/admin", reader).await, 403);
    let admin = auth.mint_jwt(JwtSpec::passport().aud("3").scope("read admin"));
    assert_eq!(get("/admin", admin).await, 200);
    let other_client = auth.mint_jwt(JwtSpec::passport().aud("4").scope("admin"));
    assert_eq!(get("/admin", other_client).await, 401);
    let rfc9068 = auth.mint_jwt(good());
    assert_eq!(
        get("/ping", rfc9068).await,
        401,
        "typ at+jwt is not a Passport token"
    );
}

#[tokio::test]
async fn generic_profile_reads_scp() {
    let s = Jwt::with(|b| b.profile(JwtProfile::Generic)).await;
    let entra = s.token(JwtSpec::new().aud(API).claim("scp", json!("read write")));
    assert_eq!(s.status("/items", &entra).await, 200);
    let okta = s.token(JwtSpec::new().aud(API).claim("scp", json!(["admin"])));
    assert_eq!(s.status("/admin", &okta).await, 200);
    assert_eq!(s.status("/items", &okta).await, 403);
}

/// One layer, several sources: JWTs of the configured issuer are verified
/// locally, anything else is introspected.
#[tokio::test]
async fn jwts_are_verified_locally_and_opaque_tokens_introspected() {
    let auth = TestAuthServer::start().await.unwrap();
    let jwt = rfc9068(&auth).build().unwrap();
    let verifier = Verifier::builder()
        .jwt(jwt)
        .introspector(common::introspector(&auth))
        .build()
        .unwrap();
    let jwt_token = auth.mint_jwt(good());
    verifier.validate(&jwt_token).await.unwrap();
    assert_eq!(auth.introspection_calls(), 0, "verified locally");
    let opaque = auth.mint_token("read");
    verifier.validate(&opaque).await.unwrap();
    assert_eq!(auth.introspection_calls(), 1);
    // A JWT from an issuer no JWT verifier knows goes to introspection,
    // which has never heard of it.
    let foreign = auth.mint_jwt(good().iss("https://elsewhere.example"));
    assert_eq!(verifier.validate(&foreign).await.unwrap_err().status(), 401);
    assert_eq!(auth.introspection_calls(), 2);
}

#[tokio::test]
async fn introspect_jwts_too_asks_the_as_as_well() {
    let auth = TestAuthServer::start().await.unwrap();
    let jwt = rfc9068(&auth).build().unwrap();
    let introspector = common::introspector(&auth);
    let verifier = Verifier::builder()
        .jwt(jwt.clone())
        .introspector(introspector.clone())
        .introspect_jwts_too(true)
        .build()
        .unwrap();
    // The test AS does not know tokens minted as JWTs: it answers inactive,
    // as for a revoked token.
    let token = auth.mint_jwt(good());
    assert_eq!(verifier.validate(&token).await.unwrap_err().status(), 401);
    assert_eq!(auth.introspection_calls(), 1);
    // Again: the JWT's claims are cached now, and so is the AS's refusal;
    // the JWT's hit is counted once.
    assert_eq!(verifier.validate(&token).await.unwrap_err().status(), 401);
    assert_eq!(auth.introspection_calls(), 1);
    assert_eq!(jwt.stats().cache.hits, 1);

    // A JWT the AS also knows as active: both answers cached, one hit each
    // per request.
    let known = auth.mint_jwt(good());
    auth.mint(TokenSpec::new().token_value(known.as_str()).scope("read"));
    verifier.validate(&known).await.unwrap();
    verifier.validate(&known).await.unwrap();
    verifier.validate(&known).await.unwrap();
    assert_eq!(auth.introspection_calls(), 2);
    assert_eq!(jwt.stats().cache.hits, 3);
    assert_eq!(introspector.stats().hits, 2);
    assert!(Verifier::builder()
        .jwt(rfc9068(&auth).build().unwrap())
        .introspect_jwts_too(true)
        .build()
        .is_err());
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_fixes_the_issuer() {
    let auth = TestAuthServer::start().await.unwrap();
    let verifier = JwtVerifier::discover(auth.issuer())
        .await
        .unwrap()
        .expected_audience(API)
        .build()
        .unwrap();
    assert_eq!(verifier.issuer(), Some(auth.issuer().as_str()));
    verifier.validate(&auth.mint_jwt(good())).await.unwrap();
}

/// `examples/resource_server` with `JWT_PUBLIC_KEY_FILE` and
/// `JWT_PROFILE=passport`: scopes from the `scopes` array guard `/items`
/// and `/admin`.
#[tokio::test]
async fn resource_server_example_with_a_passport_key_file() {
    use std::io::{BufRead, BufReader};
    let auth = TestAuthServer::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("tower-introspection-passport-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("oauth-public.key");
    std::fs::write(&key_file, auth.rsa_public_key_pem()).unwrap();
    let mut child = std::process::Command::new(common::example("resource_server"))
        .env_remove("INTROSPECTION_URL")
        .env("JWT_PUBLIC_KEY_FILE", &key_file)
        .env("JWT_PROFILE", "passport")
        .env("EXPECTED_AUDIENCE", "3")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let base = line.strip_prefix("listening on ").unwrap().to_owned();
    let http = reqwest::Client::new();
    let status = |path: &str, token: &str| {
        let request = http.get(format!("{base}{path}")).bearer_auth(token).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    let reader = auth.mint_jwt(JwtSpec::passport().aud("3").scope("read"));
    let admin = auth.mint_jwt(JwtSpec::passport().aud("3").scope("read admin"));
    let results = (
        status("/items", &reader).await,
        status("/admin", &reader).await,
        status("/admin", &admin).await,
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(results, (200, 403, 200));
}
