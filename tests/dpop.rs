//! DPoP-bound tokens (RFC 9449) at the resource server, over real TCP with
//! the test AS: a token whose answer or claims name `cnf.jkt` is refused as a
//! bearer token, its `Principal` shows the binding, and with
//! `IntrospectionLayer::dpop` every proof check has its refusal, with the
//! exact status and challenges of RFC 9449 §7.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Setup;
use serde_json::json;
use serde_json::Value;
use tower_introspection::test_util::{DpopKey, JwtSpec, TokenSpec};
use tower_introspection::{
    dpop::DpopConfig,
    jwt::{Algorithm, JwtVerifier},
    IntrospectionLayer,
};

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
    // A `cnf` without `jkt` (an mTLS binding) is not a DPoP binding, but
    // still not a bearer token: the layer cannot check it (RFC 8705 §3).
    let other = s.auth.mint(
        TokenSpec::new()
            .scope("read")
            .claim("cnf", json!({ "x5t#S256": "abc" })),
    );
    let response = s.get("/ping", Some(&other)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        common::challenge(&response),
        "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token is bound to a client certificate (cnf x5t#S256), which this server does not check\""
    );
}

/// A JWT access token with `cnf.jkt` is refused the same way.
#[tokio::test]
async fn jwt_bound_token_as_bearer_is_refused() {
    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let base = common::serve(common::app(IntrospectionLayer::new(jwt.clone()))).await;
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
        let error = jwt.validate(&token).await.unwrap_err();
        assert_eq!(
            error.kind(),
            tower_introspection::ErrorKind::InvalidToken,
            "{round}"
        );
    }
}

/// A JWT that is introspected too (`introspect_jwts_too`): its principal
/// comes from its claims, so an AS answer binding it to a key the claims do
/// not name must not let it pass as a bearer token (nor the other way).
#[tokio::test]
async fn jwt_and_introspection_must_agree_on_the_binding() {
    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let verifier = tower_introspection::Verifier::builder()
        .jwt(jwt)
        .introspector(common::introspector(&auth))
        .introspect_jwts_too(true)
        .build()
        .unwrap();
    let spec = || {
        JwtSpec::rfc9068()
            .aud("https://api.example")
            .claim("scope", json!("read"))
    };
    let differs = "the token's DPoP binding differs between its claims and the introspection answer";
    // Unbound claims, bound answer; claims bound to another key.
    let unbound_jwt = auth.mint_jwt(spec());
    auth.mint(
        TokenSpec::new()
            .token_value(unbound_jwt.as_str())
            .scope("read")
            .claim("cnf", json!({ "jkt": JKT })),
    );
    let other_key = DpopKey::generate();
    let other_jwt = auth.mint_jwt(spec().claim("cnf", other_key.cnf()));
    auth.mint(
        TokenSpec::new()
            .token_value(other_jwt.as_str())
            .scope("read")
            .claim("cnf", json!({ "jkt": JKT })),
    );
    for token in [&unbound_jwt, &other_jwt] {
        for round in ["miss", "hit"] {
            let error = verifier.validate(token).await.unwrap_err();
            assert_eq!(error.description(), differs, "{round}");
        }
    }
    // An answer that binds the token to a certificate the claims do not
    // name: refused too (the layer cannot check that binding either).
    let cert_jwt = auth.mint_jwt(spec());
    auth.mint(
        TokenSpec::new()
            .token_value(cert_jwt.as_str())
            .scope("read")
            .claim("cnf", json!({ "x5t#S256": "abc" })),
    );
    let error = verifier.validate(&cert_jwt).await.unwrap_err();
    assert_eq!(
        error.description(),
        "the token's binding (cnf) differs between its claims and the introspection answer"
    );
    // Bound claims where the answer is silent: the claims' binding holds
    // (refused as a bearer token, as any bound token).
    let bound_jwt = auth.mint_jwt(spec().claim("cnf", json!({ "jkt": JKT })));
    auth.mint(TokenSpec::new().token_value(bound_jwt.as_str()).scope("read"));
    let error = verifier.validate(&bound_jwt).await.unwrap_err();
    assert_eq!(
        error.description(),
        "the token is bound to a DPoP key and must be sent with the DPoP scheme and a proof"
    );
    // Agreeing: a plain JWT the AS knows unbound passes.
    let plain = auth.mint_jwt(spec());
    auth.mint(TokenSpec::new().token_value(plain.as_str()).scope("read"));
    assert!(verifier.validate(&plain).await.is_ok());
}

/// The `Principal` shows the confirmation; an unbound token shows none.
/// Outside the layer, `validate` refuses a bound token as the layer's
/// `Bearer` path does: it sees no proof of the key.
#[tokio::test]
async fn principal_exposes_the_confirmation() {
    let d = Dpop::allowed().await;
    let proof = d.key.proof("GET", &d.url("/confirmation"), &d.token);
    let response = d.send("/confirmation", &d.token, &[&proof]).await;
    assert_eq!(response.status(), 200);
    let shown: Value = response.json().await.unwrap();
    assert_eq!(
        shown,
        json!({ "bound": true, "jkt": d.key.jkt(), "cnf": { "jkt": d.key.jkt() } })
    );
    let plain = d.s.auth.mint_token("read");
    let response = d.s.get("/confirmation", Some(&plain)).await;
    let shown: Value = response.json().await.unwrap();
    assert_eq!(shown, json!({ "bound": false, "jkt": null, "cnf": null }));

    for round in ["cached", "fresh"] {
        let error = d.s.introspector.validate(&d.token).await.unwrap_err();
        assert_eq!(error.status(), 401, "{round}");
        assert_eq!(
            error.description(),
            "the token is bound to a DPoP key and must be sent with the DPoP scheme and a proof",
            "{round}"
        );
        let verifier = tower_introspection::Verifier::from(d.s.introspector.clone());
        assert_eq!(
            verifier.validate(&d.token).await.unwrap_err().status(),
            401,
            "{round}"
        );
        d.s.introspector.invalidate_all();
    }
    assert!(d.s.introspector.validate(&plain).await.is_ok());
}

const ALGS: &str = "algs=\"ES256 ES384 EdDSA PS256 RS256\"";

/// Every `WWW-Authenticate` value, in order.
fn challenges(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The DPoP challenge of a refusal, with `error` and its description.
fn dpop_error(error: &str, description: &str) -> String {
    format!("DPoP realm=\"api\", error=\"{error}\", error_description=\"{description}\", {ALGS}")
}

struct Dpop {
    s: Setup,
    key: DpopKey,
    token: String,
}

impl Dpop {
    async fn with(config: DpopConfig) -> Self {
        let s = Setup::with(|b| b, |l| l.dpop(config)).await;
        let key = DpopKey::generate();
        let token = s
            .auth
            .mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
        Self { s, key, token }
    }

    async fn allowed() -> Self {
        Self::with(DpopConfig::allowed()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.s.base)
    }

    /// GET `path` with `Authorization: DPoP <token>` and these proofs.
    async fn send(&self, path: &str, token: &str, proofs: &[&str]) -> reqwest::Response {
        let mut request = self
            .s
            .http
            .get(self.url(path))
            .header("authorization", format!("DPoP {token}"));
        for proof in proofs {
            request = request.header("dpop", *proof);
        }
        request.send().await.unwrap()
    }

    /// A proof with `claims` changed by `edit`.
    fn edited(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = DpopKey::claims("GET", &self.url("/ping"), &self.token);
        edit(&mut claims);
        self.key.sign(&self.key.header(), &claims)
    }

    /// Asserts a 401 whose challenges are a bare Bearer one (both schemes
    /// accepted) and this DPoP one.
    async fn refused(&self, proofs: &[&str], error: &str, description: &str) {
        let response = self.send("/ping", &self.token, proofs).await;
        assert_eq!(response.status(), 401, "{description}");
        assert_eq!(
            challenges(&response),
            ["Bearer realm=\"api\"".to_owned(), dpop_error(error, description)],
        );
    }
}

#[tokio::test]
async fn fresh_proof_passes_and_a_replayed_one_is_refused() {
    let d = Dpop::allowed().await;
    let proof = d.key.proof("GET", &d.url("/whoami"), &d.token);
    let response = d.send("/whoami", &d.token, &[&proof]).await;
    assert_eq!(response.status(), 200);
    // A second fresh proof passes too (the token is now a cache hit).
    let again = d.key.proof("GET", &d.url("/whoami"), &d.token);
    assert_eq!(d.send("/whoami", &d.token, &[&again]).await.status(), 200);
    let response = d.send("/whoami", &d.token, &[&proof]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            dpop_error("invalid_dpop_proof", "the DPoP proof was used before (jti)")
        ],
    );
}

#[tokio::test]
async fn proof_for_another_method_or_url_is_refused() {
    let d = Dpop::allowed().await;
    let post = d.key.proof("POST", &d.url("/ping"), &d.token);
    d.refused(
        &[&post],
        "invalid_dpop_proof",
        "the DPoP proof is for another HTTP method (htm)",
    )
    .await;
    let other = d.key.proof("GET", &d.url("/items"), &d.token);
    d.refused(
        &[&other],
        "invalid_dpop_proof",
        "the DPoP proof is for another URL (htu)",
    )
    .await;
    // The query is not part of htu.
    let with_query = d.key.proof("GET", &format!("{}?a=1", d.url("/ping")), &d.token);
    let response = d.send("/ping?b=2", &d.token, &[&with_query]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn proof_by_another_key_is_refused() {
    let d = Dpop::allowed().await;
    let other = DpopKey::generate().proof("GET", &d.url("/ping"), &d.token);
    d.refused(
        &[&other],
        "invalid_token",
        "the token is bound to another DPoP key",
    )
    .await;
}

#[tokio::test]
async fn stale_future_and_missing_iat_are_refused() {
    let d = Dpop::allowed().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stale = d.edited(|c| c["iat"] = json!(now - 120));
    d.refused(&[&stale], "invalid_dpop_proof", "the DPoP proof is too old (iat)")
        .await;
    let future = d.edited(|c| c["iat"] = json!(now + 60));
    d.refused(
        &[&future],
        "invalid_dpop_proof",
        "the DPoP proof was issued in the future (iat)",
    )
    .await;
    let none = d.edited(|c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    d.refused(&[&none], "invalid_dpop_proof", "the DPoP proof has no iat")
        .await;
}

#[tokio::test]
async fn wrong_or_missing_ath_is_refused() {
    let d = Dpop::allowed().await;
    let other_token = d.key.proof("GET", &d.url("/ping"), "another-token");
    d.refused(
        &[&other_token],
        "invalid_dpop_proof",
        "the DPoP proof is for another access token (ath)",
    )
    .await;
    let none = d.edited(|c| {
        c.as_object_mut().unwrap().remove("ath");
    });
    d.refused(
        &[&none],
        "invalid_dpop_proof",
        "the DPoP proof is for another access token (ath)",
    )
    .await;
}

#[tokio::test]
async fn malformed_proofs_are_refused() {
    let d = Dpop::allowed().await;
    let claims = DpopKey::claims("GET", &d.url("/ping"), &d.token);
    let mut header = d.key.header();
    header["typ"] = json!("jwt");
    let typ = d.key.sign(&header, &claims);
    d.refused(
        &[&typ],
        "invalid_dpop_proof",
        "the DPoP proof is not typed dpop+jwt",
    )
    .await;
    let mut header = d.key.header();
    header.as_object_mut().unwrap().remove("jwk");
    let no_jwk = d.key.sign(&header, &claims);
    d.refused(
        &[&no_jwk],
        "invalid_dpop_proof",
        "the DPoP proof has no jwk header",
    )
    .await;
    let mut header = d.key.header();
    header["jwk"]["d"] = json!("c2VjcmV0");
    let private = d.key.sign(&header, &claims);
    d.refused(
        &[&private],
        "invalid_dpop_proof",
        "the DPoP proof's jwk holds a private key",
    )
    .await;
    // Signed, then the claims swapped: the signature no longer holds.
    let good = d.key.proof("GET", &d.url("/ping"), &d.token);
    let forged = d.key.proof("GET", &d.url("/items"), &d.token);
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = forged.split('.').nth(1).unwrap();
    let tampered = parts.join(".");
    d.refused(
        &[&tampered],
        "invalid_dpop_proof",
        "the DPoP proof's signature is invalid",
    )
    .await;
    d.refused(
        &["not-a-jwt"],
        "invalid_dpop_proof",
        "the DPoP proof is not a well-formed signed JWT",
    )
    .await;
    d.refused(&[], "invalid_dpop_proof", "no DPoP proof header").await;
    let a = d.key.proof("GET", &d.url("/ping"), &d.token);
    let b = d.key.proof("GET", &d.url("/ping"), &d.token);
    d.refused(&[&a, &b], "invalid_dpop_proof", "more than one DPoP proof header")
        .await;
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_is_refused() {
    let d = Dpop::with(DpopConfig::allowed().algorithms([Algorithm::EdDsa])).await;
    let proof = d.key.proof("GET", &d.url("/ping"), &d.token);
    let response = d.send("/ping", &d.token, &[&proof]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            "DPoP realm=\"api\", error=\"invalid_dpop_proof\", error_description=\"the DPoP proof's algorithm is not accepted\", algs=\"EdDSA\"".to_owned()
        ],
    );
}

#[tokio::test]
async fn unbound_token_as_dpop_is_refused_unless_configured() {
    let d = Dpop::allowed().await;
    let unbound = d.s.auth.mint_token("read");
    let proof = d.key.proof("GET", &d.url("/ping"), &unbound);
    let response = d.send("/ping", &unbound, &[&proof]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            dpop_error("invalid_token", "the token is not bound to a DPoP key")
        ],
    );
    let d = Dpop::with(DpopConfig::allowed().accept_unbound_tokens(true)).await;
    let unbound = d.s.auth.mint_token("read");
    let proof = d.key.proof("GET", &d.url("/ping"), &unbound);
    assert_eq!(d.send("/ping", &unbound, &[&proof]).await.status(), 200);
}

/// Both schemes accepted: a bound token as `Bearer` gets the error in the
/// Bearer challenge and a bare DPoP one; an unbound bearer token passes.
#[tokio::test]
async fn allowed_bearer_use_of_a_bound_token_names_both_schemes() {
    let d = Dpop::allowed().await;
    let response = d.s.get("/ping", Some(&d.token)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [BOUND_AS_BEARER.to_owned(), format!("DPoP realm=\"api\", {ALGS}")],
    );
    let unbound = d.s.auth.mint_token("read");
    assert_eq!(d.s.status("/ping", Some(&unbound)).await, 200);
    let response = d.s.get("/ping", None).await;
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            format!("DPoP realm=\"api\", {ALGS}")
        ],
    );
}

/// Only DPoP: any bearer token is refused with the DPoP challenge alone.
#[tokio::test]
async fn required_refuses_bearer_with_a_dpop_challenge() {
    let d = Dpop::with(DpopConfig::required()).await;
    let unbound = d.s.auth.mint_token("read");
    let response = d.s.get("/ping", Some(&unbound)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenges(&response), [format!("DPoP realm=\"api\", {ALGS}")]);
    let proof = d.key.proof("GET", &d.url("/ping"), &d.token);
    assert_eq!(d.send("/ping", &d.token, &[&proof]).await.status(), 200);
    let replay = d.send("/ping", &d.token, &[&proof]).await;
    assert_eq!(
        challenges(&replay),
        [dpop_error(
            "invalid_dpop_proof",
            "the DPoP proof was used before (jti)"
        )],
    );
}

/// `allow_anonymous` still lets a request without any credentials through
/// where DPoP is required; a bearer token is not "no credentials".
#[tokio::test]
async fn required_with_anonymous_lets_only_credential_free_requests_through() {
    let s = Setup::with(|b| b, |l| l.dpop(DpopConfig::required()).allow_anonymous(true)).await;
    let response = s.get("/maybe", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "anonymous");
    let unbound = s.auth.mint_token("read");
    assert_eq!(s.status("/maybe", Some(&unbound)).await, 401);
    // A scope guard further in refuses the anonymous request with the
    // layer's challenge: DPoP alone.
    let response = s.get("/a", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenges(&response), [format!("DPoP realm=\"api\", {ALGS}")]);
    // Both schemes accepted: both challenges.
    let s = Setup::with(|b| b, |l| l.dpop(DpopConfig::allowed()).allow_anonymous(true)).await;
    let response = s.get("/a", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            format!("DPoP realm=\"api\", {ALGS}")
        ]
    );
}

/// Behind a proxy, `htu` names the external URL, not the one the server sees.
#[tokio::test]
async fn external_url_is_what_htu_must_name() {
    let d = Dpop::with(DpopConfig::allowed().external_url("https://api.example").unwrap()).await;
    let external = d.key.proof("GET", "https://api.example/ping", &d.token);
    assert_eq!(d.send("/ping", &d.token, &[&external]).await.status(), 200);
    let internal = d.key.proof("GET", &d.url("/ping"), &d.token);
    d.refused(
        &[&internal],
        "invalid_dpop_proof",
        "the DPoP proof is for another URL (htu)",
    )
    .await;
}

/// A JWT access token bound with `cnf.jkt` works with its proof too.
#[tokio::test]
async fn jwt_bound_token_with_its_proof_passes() {
    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let layer = IntrospectionLayer::new(jwt).dpop(DpopConfig::required());
    let base = common::serve(common::app(layer)).await;
    let key = DpopKey::generate();
    let token = auth.mint_jwt(
        JwtSpec::rfc9068()
            .aud("https://api.example")
            .claim("scope", json!("read"))
            .claim("cnf", key.cnf()),
    );
    let url = format!("{base}/ping");
    let response = reqwest::Client::new()
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", key.proof("GET", &url, &token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The `resource_server` example with `DPOP=required` and
/// `DPOP_EXTERNAL_URL` (contract): a fresh proof passes, a replayed one and
/// the token as `Bearer` are refused; a bad `DPOP` value stops it.
#[tokio::test]
async fn resource_server_example_dpop_settings() {
    use std::io::{BufRead, BufReader};

    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let spawn = |dpop: &str| {
        std::process::Command::new(common::example("resource_server"))
            .env("INTROSPECTION_URL", auth.introspection_url())
            .env("CLIENT_ID", common::RS_ID)
            .env("CLIENT_SECRET", common::RS_SECRET)
            .env("DPOP", dpop)
            .env("DPOP_EXTERNAL_URL", "https://api.example")
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut bad = spawn("sometimes");
    let exited = exit_within_10s(&mut bad).await;
    assert!(
        exited.is_some_and(|status| !status.success()),
        "DPOP=sometimes must stop it"
    );

    let mut child = spawn("required");
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let base = line.strip_prefix("listening on ").unwrap().to_owned();
    let http = reqwest::Client::new();
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
    let proof = key.proof("GET", "https://api.example/items", &token);
    let send = |proof: Option<&str>| {
        let mut request = http.get(format!("{base}/items"));
        request = match proof {
            Some(proof) => request
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof),
            None => request.bearer_auth(&token),
        };
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let results = (
        send(Some(&proof)).await,
        send(Some(&proof)).await,
        send(None).await,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(results, (200, 401, 401));
}

/// A scope check further in answers 403 in the scheme the request used
/// (RFC 9449 §7.1): the error in the `DPoP` challenge after a proof (a
/// bare Bearer one beside it, both schemes being accepted); after a bearer
/// token on a layer accepting both, the error in the Bearer challenge and
/// a bare DPoP one, as the layer's own 401s.
#[tokio::test]
async fn insufficient_scope_is_answered_in_the_scheme_used() {
    let d = Dpop::allowed().await;
    // The `/admin` route requires the `admin` scope; the tokens hold `read`.
    let proof = d.key.proof("GET", &d.url("/admin"), &d.token);
    let response = d.send("/admin", &d.token, &[&proof]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            format!("DPoP realm=\"api\", error=\"insufficient_scope\", scope=\"admin\", {ALGS}"),
        ],
    );
    let unbound = d.s.auth.mint_token("read");
    for round in ["miss", "hit"] {
        let response = d.s.get("/admin", Some(&unbound)).await;
        assert_eq!(response.status(), 403, "{round}");
        assert_eq!(
            challenges(&response),
            [
                "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"admin\"".to_owned(),
                format!("DPoP realm=\"api\", {ALGS}"),
            ],
            "{round}"
        );
    }
}

// --- Server nonces (RFC 9449 §8, §9) ---

const NO_NONCE: &str = "the DPoP proof must carry the server's nonce (DPoP-Nonce)";
const BAD_NONCE: &str = "the DPoP proof's nonce is unknown or expired; use the one in DPoP-Nonce";

/// The `DPoP-Nonce` of a response (exactly one), if any.
fn nonce_of(response: &reqwest::Response) -> Option<String> {
    let mut values = response.headers().get_all("dpop-nonce").iter();
    let nonce = values.next().map(|v| v.to_str().unwrap().to_owned());
    assert!(values.next().is_none(), "one DPoP-Nonce at most");
    nonce
}

impl Dpop {
    fn proof_with_nonce(&self, nonce: &str) -> String {
        self.key
            .proof_with_nonce("GET", &self.url("/ping"), &self.token, nonce)
    }

    /// Sends `proof`; asserts a 401 `use_dpop_nonce` (`description`) with
    /// both challenges and returns the nonce it hands out.
    async fn told_to_use_a_nonce(&self, proof: &str, description: &str) -> String {
        let response = self.send("/ping", &self.token, &[proof]).await;
        assert_eq!(response.status(), 401, "{description}");
        assert_eq!(
            challenges(&response),
            [
                "Bearer realm=\"api\"".to_owned(),
                dpop_error("use_dpop_nonce", description)
            ],
        );
        let nonce = nonce_of(&response).expect("a DPoP-Nonce with use_dpop_nonce");
        assert_eq!(nonce.len(), 22, "16 bytes, base64url");
        nonce
    }
}

/// Waits until `offset_ms` into the next whole second of the wall clock
/// (the nonce periods of a 1 s rotation), and returns that second.
async fn next_second(offset_ms: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let next = now.as_secs() + 1;
    let target = std::time::Duration::from_millis(next * 1000 + offset_ms);
    tokio::time::sleep(target - now).await;
    next
}

/// Without a nonce, or with a wrong one: 401 `use_dpop_nonce` and the nonce
/// to use; a new proof with it passes, and is handed no other nonce (it is
/// the current one).
#[tokio::test]
async fn nonce_is_required_handed_out_and_then_accepted() {
    let d = Dpop::with(DpopConfig::allowed().nonces(std::time::Duration::from_secs(300))).await;
    let plain = d.key.proof("GET", &d.url("/ping"), &d.token);
    let nonce = d.told_to_use_a_nonce(&plain, NO_NONCE).await;
    let response = d.send("/ping", &d.token, &[&d.proof_with_nonce(&nonce)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(nonce_of(&response), None);
    let again = d
        .told_to_use_a_nonce(&d.proof_with_nonce("not-our-nonce"), BAD_NONCE)
        .await;
    assert_eq!(again, nonce, "the same period, the same nonce");
    // A nonce that is not a string is no nonce.
    let number = d.edited(|c| c["nonce"] = json!(42));
    d.told_to_use_a_nonce(&number, NO_NONCE).await;
}

/// The nonce is checked after the signature and the other proof checks: a
/// forged proof is `invalid_dpop_proof` whatever its nonce (the 401 still
/// carries a nonce, as every 401 to a DPoP request does).
#[tokio::test]
async fn forged_proof_is_invalid_not_asked_for_a_nonce() {
    let d = Dpop::with(DpopConfig::allowed().nonces(std::time::Duration::from_secs(300))).await;
    let good = d.key.proof("GET", &d.url("/ping"), &d.token);
    let forged = d.key.proof("GET", &d.url("/items"), &d.token);
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = forged.split('.').nth(1).unwrap();
    let tampered = parts.join(".");
    let response = d.send("/ping", &d.token, &[&tampered]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            dpop_error("invalid_dpop_proof", "the DPoP proof's signature is invalid")
        ],
    );
    let nonce = nonce_of(&response).expect("every DPoP 401 carries the nonce");
    // Signed by the right key with the right nonce, but for another method.
    let post = d.key.proof_with_nonce("POST", &d.url("/ping"), &d.token, &nonce);
    d.refused(
        &[&post],
        "invalid_dpop_proof",
        "the DPoP proof is for another HTTP method (htm)",
    )
    .await;
    // A valid nonce does not stand in for the key the token is bound to.
    let other = DpopKey::generate().proof_with_nonce("GET", &d.url("/ping"), &d.token, &nonce);
    let response = d.send("/ping", &d.token, &[&other]).await;
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            dpop_error("invalid_token", "the token is bound to another DPoP key")
        ],
    );
    assert_eq!(nonce_of(&response).as_deref(), Some(nonce.as_str()));
}

/// A proof refused for its nonce takes no replay-cache place: the same
/// `jti`, signed again with the nonce, passes once (and only once).
#[tokio::test]
async fn nonce_refused_proof_does_not_spend_its_jti() {
    let d = Dpop::with(DpopConfig::allowed().nonces(std::time::Duration::from_secs(300))).await;
    let claims = DpopKey::claims("GET", &d.url("/ping"), &d.token);
    let first = d.key.sign(&d.key.header(), &claims);
    let nonce = d.told_to_use_a_nonce(&first, NO_NONCE).await;
    let mut with_nonce = claims.clone();
    with_nonce["nonce"] = json!(nonce);
    let retried = d.key.sign(&d.key.header(), &with_nonce);
    assert_eq!(d.send("/ping", &d.token, &[&retried]).await.status(), 200);
    d.refused(
        &[&retried],
        "invalid_dpop_proof",
        "the DPoP proof was used before (jti)",
    )
    .await;
}

/// 1 s rotation: a nonce of the previous period still passes, and the
/// response hands out the current one; two periods old, it is refused.
#[tokio::test]
async fn previous_period_nonce_passes_and_is_renewed_older_is_refused() {
    let d = Dpop::with(DpopConfig::allowed().nonces(std::time::Duration::from_secs(1))).await;
    let plain = d.key.proof("GET", &d.url("/ping"), &d.token);
    // 300 ms into a period: far from both of its ends.
    next_second(300).await;
    let nonce = d.told_to_use_a_nonce(&plain, NO_NONCE).await;
    next_second(300).await;
    let response = d.send("/ping", &d.token, &[&d.proof_with_nonce(&nonce)]).await;
    assert_eq!(response.status(), 200);
    let renewed = nonce_of(&response).expect("the current nonce, for the next proof");
    assert_ne!(renewed, nonce);
    next_second(300).await;
    let current = d
        .told_to_use_a_nonce(&d.proof_with_nonce(&nonce), BAD_NONCE)
        .await;
    assert_ne!(current, renewed);
    // The renewed one is the previous period's now: still good.
    let response = d.send("/ping", &d.token, &[&d.proof_with_nonce(&renewed)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(nonce_of(&response).as_deref(), Some(current.as_str()));
}

/// With `required`, every 401 carries a nonce, even to a `Bearer` request
/// (the client must come back with DPoP); with `allowed`, a `Bearer`
/// request is never handed one, refused or not.
#[tokio::test]
async fn bearer_requests_get_a_nonce_only_where_dpop_is_required() {
    let rotation = std::time::Duration::from_secs(300);
    let d = Dpop::with(DpopConfig::required().nonces(rotation)).await;
    let unbound = d.s.auth.mint_token("read");
    let response = d.s.get("/ping", Some(&unbound)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenges(&response), [format!("DPoP realm=\"api\", {ALGS}")]);
    let nonce = nonce_of(&response).expect("a nonce where DPoP is required");
    let response = d.send("/ping", &d.token, &[&d.proof_with_nonce(&nonce)]).await;
    assert_eq!(response.status(), 200);

    let d = Dpop::with(DpopConfig::allowed().nonces(rotation)).await;
    let unbound = d.s.auth.mint_token("read");
    let response = d.s.get("/ping", Some(&unbound)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(nonce_of(&response), None);
    for token in [Some("unknown-token"), Some(d.token.as_str()), None] {
        let response = d.s.get("/ping", token).await;
        assert_eq!(response.status(), 401);
        assert_eq!(nonce_of(&response), None, "{token:?}");
    }
}

/// Replicas given the same secret accept each other's nonces; with a
/// secret of its own, each replica refuses the other's.
#[tokio::test]
async fn shared_nonces_work_across_replicas() {
    let rotation = std::time::Duration::from_secs(300);
    let secret = "a nonce secret shared by replicas";
    let shared = DpopConfig::allowed().shared_nonces(rotation, secret).unwrap();
    let d = Dpop::with(shared.clone()).await;
    let replica = |config: DpopConfig| {
        common::serve(common::app(
            IntrospectionLayer::new(d.s.introspector.clone()).dpop(config),
        ))
    };
    let sibling = replica(DpopConfig::allowed().shared_nonces(rotation, secret).unwrap()).await;
    let stranger = replica(DpopConfig::allowed().nonces(rotation)).await;
    let plain = d.key.proof("GET", &d.url("/ping"), &d.token);
    let nonce = d.told_to_use_a_nonce(&plain, NO_NONCE).await;
    let send = |base: &str, nonce: &str| {
        let url = format!("{base}/ping");
        let proof = d.key.proof_with_nonce("GET", &url, &d.token, nonce);
        d.s.http
            .get(url)
            .header("authorization", format!("DPoP {}", d.token))
            .header("dpop", proof)
            .send()
    };
    assert_eq!(send(&sibling, &nonce).await.unwrap().status(), 200);
    let refused = send(&stranger, &nonce).await.unwrap();
    assert_eq!(refused.status(), 401);
    let own = nonce_of(&refused).unwrap();
    assert_ne!(own, nonce);
    assert_eq!(send(&stranger, &own).await.unwrap().status(), 200);
    // A short secret is refused, not weakened.
    let error = DpopConfig::allowed()
        .shared_nonces(rotation, "short")
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid setting: the DPoP nonce secret must be at least 32 bytes"
    );
    // The secret never shows in Debug.
    let debug = format!("{shared:?}");
    assert!(debug.contains("nonce_rotation: Some(300s)"), "{debug}");
    assert!(!debug.contains("replicas"), "{debug}");
}

/// The `resource_server` example with `DPOP_NONCE_SECS` (contract): a proof
/// without a nonce is told to use one, the retry passes; a bad value, the
/// setting without `DPOP`, a short `DPOP_NONCE_SECRET` or one without
/// `DPOP_NONCE_SECS` stops it.
#[tokio::test]
async fn resource_server_example_dpop_nonce_setting() {
    use std::io::{BufRead, BufReader};

    let auth = tower_introspection::test_util::TestAuthServer::start()
        .await
        .unwrap();
    let spawn = |dpop: &str, secs: &str, secret: &str| {
        let mut command = std::process::Command::new(common::example("resource_server"));
        command
            .env("INTROSPECTION_URL", auth.introspection_url())
            .env("CLIENT_ID", common::RS_ID)
            .env("CLIENT_SECRET", common::RS_SECRET)
            .env("DPOP", dpop)
            .env("DPOP_NONCE_SECS", secs)
            .env("DPOP_NONCE_SECRET", secret)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if dpop != "off" {
            command.env("DPOP_EXTERNAL_URL", "https://api.example");
        }
        command.spawn().unwrap()
    };
    let bad_settings = [
        (
            "required",
            "soon",
            "",
            "DPOP_NONCE_SECS must be a whole number of seconds",
        ),
        ("required", "0", "", "DPOP_NONCE_SECS must be between 1 and 86400"),
        (
            "off",
            "300",
            "",
            "DPOP_NONCE_SECS: set DPOP to allowed or required",
        ),
        ("required", "300", "shorter than 32 bytes", "DPOP_NONCE_SECRET: "),
        (
            "required",
            "",
            "a nonce secret without a rotation",
            "DPOP_NONCE_SECRET is set but DPOP_NONCE_SECS is not",
        ),
    ];
    for (dpop, secs, secret, reason) in bad_settings {
        let mut bad = spawn(dpop, secs, secret);
        let exited = exit_within_10s(&mut bad).await;
        assert!(
            exited.is_some_and(|status| !status.success()),
            "DPOP={dpop} DPOP_NONCE_SECS={secs} DPOP_NONCE_SECRET={secret} must stop it"
        );
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut bad.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(stderr.contains(reason), "{reason:?} not in {stderr:?}");
        assert!(
            secret.is_empty() || !stderr.contains(secret),
            "the secret was printed"
        );
    }

    let mut child = spawn("required", "300", "");
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let base = line.strip_prefix("listening on ").unwrap().to_owned();
    let http = reqwest::Client::new();
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
    let send = |proof: String| {
        let request = http
            .get(format!("{base}/items"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof);
        async move { request.send().await.unwrap() }
    };
    let url = "https://api.example/items";
    let first = send(key.proof("GET", url, &token)).await;
    let nonce = nonce_of(&first);
    let retried = match &nonce {
        Some(nonce) => send(key.proof_with_nonce("GET", url, &token, nonce))
            .await
            .status(),
        None => reqwest::StatusCode::IM_A_TEAPOT,
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first.status(), 401);
    assert_eq!(
        challenges(&first),
        [format!(
            "DPoP realm=\"api\", error=\"use_dpop_nonce\", error_description=\"{NO_NONCE}\", {ALGS}"
        )]
    );
    assert_eq!(retried, 200);
}

/// Malformed `DPoP` credentials: 400 `invalid_request` in the DPoP
/// challenge (the scheme the request used), a bare Bearer one beside it; a
/// malformed `Bearer` header the other way round.
#[tokio::test]
async fn malformed_credentials_are_answered_in_the_scheme_used() {
    let d = Dpop::allowed().await;
    let proof = d.key.proof("GET", &d.url("/ping"), &d.token);
    let response = d.send("/ping", "not a b64token", &[&proof]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            dpop_error("invalid_request", "the DPoP credentials are malformed"),
        ],
    );
    let response =
        d.s.http
            .get(d.url("/ping"))
            .header("authorization", "Bearer not a b64token")
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), 400);
    let all = challenges(&response);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[0].starts_with("Bearer realm=\"api\", error=\"invalid_request\""),
        "{all:?}"
    );
    assert_eq!(all[1], format!("DPoP realm=\"api\", {ALGS}"));
}

/// How `child` exited, if it did within 10 s; killed otherwise (`None`).
async fn exit_within_10s(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
