//! Review findings on sender-constrained tokens (issue 19, points 1, 3, 6
//! and 7), over real TCP with the test AS: `htu` inside nested routers, a
//! replay cache that cannot be flushed, one extraction path for both
//! schemes, and bindings the layer cannot check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, Request, Response, Uri};
use serde_json::json;
use tower::ServiceExt;
use tower_introspection::test_util::{DpopKey, JwtSpec, TestAuthServer, TokenSpec};
use tower_introspection::{
    dpop::DpopConfig,
    jwt::JwtVerifier,
    token::{BearerExtractor, ExtractToken},
    IntrospectionLayer,
};

const ALGS: &str = "algs=\"ES256 ES384 EdDSA PS256 RS256\"";

async fn body_text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn dpop_request(uri: &str, token: &str, proof: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Body::empty())
        .unwrap()
}

/// One route, `/items`, behind `layer`.
fn items<E: ExtractToken>(layer: IntrospectionLayer<E>) -> Router {
    Router::new()
        .route("/items", get(|| async { "items" }))
        .route_layer(layer)
}

fn challenges<B>(response: &Response<B>) -> Vec<String> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

// ---- 1. `htu` names the URL the client called, inside nested routers ----

/// `Router::nest` strips the prefix from the URI the layer sees; the proof
/// names the URL the client called, which axum keeps in `OriginalUri`.
/// Both directions, nested once and twice.
#[tokio::test]
async fn htu_inside_nested_routers_is_the_url_the_client_called() {
    let auth = TestAuthServer::start().await.unwrap();
    let dpop = DpopConfig::required().external_url("http://api.example").unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth)).dpop(dpop);
    let api = items(layer);
    let app = Router::new()
        .nest("/v1", api.clone())
        .nest("/outer", Router::new().nest("/v2", api));
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
    let htu_refused = format!(
        "DPoP realm=\"api\", error=\"invalid_dpop_proof\", error_description=\"the DPoP proof is for another URL (htu)\", {ALGS}"
    );
    for (path, stripped) in [("/v1/items", "/items"), ("/outer/v2/items", "/v2/items")] {
        let called = key.proof("GET", &format!("http://api.example{path}"), &token);
        let response = app
            .clone()
            .oneshot(dpop_request(path, &token, &called))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        // A proof for the path the nested router sees is for another URL.
        let inner = key.proof("GET", &format!("http://api.example{stripped}"), &token);
        let response = app
            .clone()
            .oneshot(dpop_request(path, &token, &inner))
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            challenges(&response),
            std::slice::from_ref(&htu_refused),
            "{path}"
        );
    }
}

// ---- 3. The replay cache cannot be flushed ----

/// A layer with `config`, a handle on it for its stats, and two clients
/// with DPoP-bound tokens of their own.
struct Replay {
    app: Router,
    layer: IntrospectionLayer,
    victim: (DpopKey, String),
    attacker: (DpopKey, String),
    _auth: TestAuthServer,
}

const URL: &str = "http://api.example/items";

impl Replay {
    async fn with(config: DpopConfig) -> Self {
        let auth = TestAuthServer::start().await.unwrap();
        let layer = IntrospectionLayer::new(common::introspector(&auth))
            .dpop(config.external_url("http://api.example").unwrap());
        let app = items(layer.clone());
        let client = || {
            let key = DpopKey::generate();
            let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
            (key, token)
        };
        Self {
            app,
            layer,
            victim: client(),
            attacker: client(),
            _auth: auth,
        }
    }

    async fn send(&self, (key, token): &(DpopKey, String), proof: Option<&str>) -> Response<Body> {
        let fresh;
        let proof = match proof {
            Some(proof) => proof,
            None => {
                fresh = key.proof("GET", URL, token);
                &fresh
            }
        };
        self.app
            .clone()
            .oneshot(dpop_request("/items", token, proof))
            .await
            .unwrap()
    }
}

/// The attack of the review: a client with a bound token of its own sends
/// three times the capacity in fresh proofs, then replays a proof it
/// captured from another client. Nothing is forgotten before its window
/// ends, so the replay is refused; the flooding token runs out of its share
/// (503), and the other client's fresh proofs still pass.
#[tokio::test]
async fn a_flood_of_fresh_proofs_cannot_flush_a_captured_one() {
    let r = Replay::with(DpopConfig::required().replay_capacity(1_000)).await;
    let captured = r.victim.0.proof("GET", URL, &r.victim.1);
    assert_eq!(r.send(&r.victim, Some(&captured)).await.status(), 200);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..3_000 {
        let response = r.send(&r.attacker, None).await;
        match response.status().as_u16() {
            200 => accepted += 1,
            503 => {
                refused += 1;
                assert_eq!(response.headers()["retry-after"], "5");
                assert_eq!(
                    body_text(response).await,
                    r#"{"error":"temporarily_unavailable","error_description":"too many DPoP proofs with this token within the proof window; retry later"}"#
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    // A quarter of the capacity per token, by default.
    assert_eq!((accepted, refused), (250, 2_750));
    let response = r.send(&r.victim, Some(&captured)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [format!(
            "DPoP realm=\"api\", error=\"invalid_dpop_proof\", error_description=\"the DPoP proof was used before (jti)\", {ALGS}"
        )]
    );
    assert_eq!(r.send(&r.victim, None).await.status(), 200);
    let stats = r.layer.dpop_stats().unwrap();
    assert_eq!(stats.remembered, 252);
    assert_eq!(stats.replays, 1);
    assert_eq!(stats.refused_token_full, 2_750);
    assert_eq!(stats.refused_full, 0);
}

/// With unbound tokens accepted, one token may sign each proof with a new
/// key: its share is still one share.
#[tokio::test]
async fn the_share_is_per_token_whatever_the_keys() {
    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth)).dpop(
        DpopConfig::required()
            .external_url("http://api.example")
            .unwrap()
            .accept_unbound_tokens(true)
            .replay_capacity(1_000),
    );
    let app = items(layer.clone());
    let token = auth.mint(TokenSpec::new().scope("read"));
    let mut statuses = Vec::new();
    for _ in 0..300 {
        let key = DpopKey::generate();
        let proof = key.proof("GET", URL, &token);
        let response = app
            .clone()
            .oneshot(dpop_request("/items", &token, &proof))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 250);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 50);
    assert_eq!(layer.dpop_stats().unwrap().refused_token_full, 50);
}

/// When the whole cache is full, legitimate traffic gets 503 with
/// `Retry-After` (and a counter) rather than a cache that forgets: a
/// replay is still refused.
#[tokio::test]
async fn a_full_replay_cache_refuses_new_proofs_and_forgets_none() {
    let r = Replay::with(
        DpopConfig::required()
            .replay_capacity(1_000)
            .replay_capacity_per_token(1_000),
    )
    .await;
    let captured = r.victim.0.proof("GET", URL, &r.victim.1);
    assert_eq!(r.send(&r.victim, Some(&captured)).await.status(), 200);
    for i in 0..999 {
        assert_eq!(r.send(&r.attacker, None).await.status(), 200, "proof {i}");
    }
    let response = r.send(&r.victim, None).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(
        body_text(response).await,
        r#"{"error":"temporarily_unavailable","error_description":"the DPoP replay cache is full; retry later"}"#
    );
    assert_eq!(r.send(&r.victim, Some(&captured)).await.status(), 401);
    let stats = r.layer.dpop_stats().unwrap();
    assert_eq!(
        (stats.remembered, stats.refused_full, stats.replays),
        (1_000, 1, 1)
    );
}

// ---- 6. One extraction path for both schemes ----

/// The extractor's `max_length` holds for a `DPoP` token too, answered as
/// the `Bearer` path answers it.
#[tokio::test]
async fn a_dpop_token_obeys_the_extractors_max_length() {
    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth))
        .token_extractor(BearerExtractor::new().max_length(64))
        .dpop(DpopConfig::required().external_url("http://api.example").unwrap());
    let app = items(layer);
    let key = DpopKey::generate();
    let long = "a".repeat(65);
    let proof = key.proof("GET", URL, &long);
    let response = app.oneshot(dpop_request("/items", &long, &proof)).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        [format!(
            "DPoP realm=\"api\", error=\"invalid_token\", error_description=\"the token is longer than allowed\", {ALGS}"
        )]
    );
}

/// The headers the extractor reads (here a cookie) are marked sensitive
/// on the `DPoP` path too, and a token it finds beside the `DPoP`
/// credentials (here in the query) is a second method: 400, so the query
/// token never reaches the inner service.
#[tokio::test]
async fn the_dpop_path_marks_and_refuses_what_the_extractor_reads() {
    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth))
        .token_extractor(BearerExtractor::new().allow_query(true).cookie("session"))
        .dpop(DpopConfig::allowed().external_url("http://api.example").unwrap());
    let app = Router::new()
        .route(
            "/items",
            get(|headers: HeaderMap, uri: Uri| async move {
                let cookie = headers.get("cookie").map(|v| v.is_sensitive());
                let dpop = headers["authorization"].is_sensitive() && headers["dpop"].is_sensitive();
                format!("{cookie:?} {dpop} {uri}")
            }),
        )
        .route_layer(layer);
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));

    let mut request = dpop_request("/items?a=1", &token, &key.proof("GET", URL, &token));
    request
        .headers_mut()
        .insert("cookie", "theme=dark".parse().unwrap());
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(body_text(response).await, "Some(true) true /items?a=1");

    let uri = format!("/items?a=1&access_token={token}");
    let request = dpop_request(&uri, &token, &key.proof("GET", URL, &token));
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        challenges(&response),
        [
            "Bearer realm=\"api\"".to_owned(),
            format!(
                "DPoP realm=\"api\", error=\"invalid_request\", error_description=\"the token was sent by more than one method\", {ALGS}"
            ),
        ]
    );
}

// ---- 7. Bindings the layer cannot check ----

const CERT_BOUND: &str = "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token is bound to a client certificate (cnf x5t#S256), which this server does not check\"";
const OTHER_BOUND: &str = "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token is bound to its sender by a method (cnf) this server does not check\"";

fn bearer(token: &str) -> Request<Body> {
    Request::get("/items")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// An introspected token bound to a client certificate (RFC 8705) is
/// refused as a bearer token, on the miss and on the hit, and by
/// `validate`; so is any `cnf` naming a method the layer cannot check, or
/// one that is not an object. The opt-out lets them through.
#[tokio::test]
async fn introspected_tokens_with_unverifiable_bindings_are_refused() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::introspector(&auth);
    let strict = items(IntrospectionLayer::new(introspector.clone()));
    let lenient = items(IntrospectionLayer::new(introspector.clone()).accept_unverifiable_bindings(true));
    let mint = |cnf: serde_json::Value| auth.mint(TokenSpec::new().scope("read").claim("cnf", cnf));
    let cases = [
        (
            mint(json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" })),
            CERT_BOUND,
        ),
        (mint(json!({ "jwk": { "kty": "EC" } })), OTHER_BOUND),
        (mint(json!("x5t#S256")), OTHER_BOUND),
        (mint(json!({})), OTHER_BOUND),
    ];
    for (token, challenge) in &cases {
        for round in ["miss", "hit"] {
            let response = strict.clone().oneshot(bearer(token)).await.unwrap();
            assert_eq!(response.status(), 401, "{challenge} {round}");
            assert_eq!(challenges(&response), [challenge.to_string()], "{round}");
        }
        assert_eq!(
            introspector.validate(token).await.unwrap_err().kind(),
            tower_introspection::ErrorKind::InvalidToken
        );
        let response = lenient.clone().oneshot(bearer(token)).await.unwrap();
        assert_eq!(response.status(), 200, "{challenge}");
    }
    // A DPoP binding stays a DPoP binding with the opt-out.
    let key = DpopKey::generate();
    let dpop_bound = mint(key.cnf());
    assert_eq!(lenient.oneshot(bearer(&dpop_bound)).await.unwrap().status(), 401);
}

/// A JWT access token bound to a certificate is refused the same way.
#[tokio::test]
async fn jwt_with_a_certificate_binding_is_refused() {
    let auth = TestAuthServer::start().await.unwrap();
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let app = items(IntrospectionLayer::new(jwt));
    let token = auth.mint_jwt(
        JwtSpec::rfc9068()
            .aud("https://api.example")
            .claim("scope", json!("read"))
            .claim(
                "cnf",
                json!({ "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" }),
            ),
    );
    for round in ["miss", "hit"] {
        let response = app.clone().oneshot(bearer(&token)).await.unwrap();
        assert_eq!(response.status(), 401, "{round}");
        assert_eq!(challenges(&response), [CERT_BOUND.to_owned()], "{round}");
    }
}

/// A token bound both to a DPoP key and to a certificate: the DPoP proof
/// covers only half of it, so the `DPoP` scheme refuses it too, unless
/// the opt-out accepts the unverifiable half.
#[tokio::test]
async fn a_dpop_proof_does_not_cover_a_second_binding() {
    let auth = TestAuthServer::start().await.unwrap();
    let key = DpopKey::generate();
    let mut cnf = key.cnf();
    cnf["x5t#S256"] = json!("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2");
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", cnf));
    for accept in [false, true] {
        let layer = IntrospectionLayer::new(common::introspector(&auth))
            .accept_unverifiable_bindings(accept)
            .dpop(DpopConfig::required().external_url("http://api.example").unwrap());
        let app = items(layer);
        let proof = key.proof("GET", URL, &token);
        let response = app.oneshot(dpop_request("/items", &token, &proof)).await.unwrap();
        if accept {
            assert_eq!(response.status(), 200);
        } else {
            assert_eq!(response.status(), 401);
            assert_eq!(
                challenges(&response),
                [format!(
                    "DPoP realm=\"api\", error=\"invalid_token\", error_description=\"the token is bound to a client certificate (cnf x5t#S256), which this server does not check\", {ALGS}"
                )]
            );
        }
    }
}

// ---- Edges the mutation run found untested ----

/// A layer requiring DPoP in front of one route, and a client with a
/// bound token.
async fn required_app() -> (Router, DpopKey, String, TestAuthServer) {
    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth))
        .token_extractor(BearerExtractor::new().max_length(64))
        .dpop(DpopConfig::required().external_url("http://api.example").unwrap());
    let app = items(layer);
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", key.cnf()));
    (app, key, token, auth)
}

fn dpop_refusal(error: &str, description: &str) -> Vec<String> {
    vec![format!(
        "DPoP realm=\"api\", error=\"{error}\", error_description=\"{description}\", {ALGS}"
    )]
}

/// `DPoP ` with no token is the `DPoP` scheme with malformed credentials
/// (400), as `Bearer ` is; a token of exactly `max_length` bytes is not too
/// long.
#[tokio::test]
async fn empty_dpop_credentials_and_a_token_of_exactly_max_length() {
    let (app, key, _, _auth) = required_app().await;
    let request = Request::get("/items")
        .header("authorization", "DPoP ")
        .header("dpop", key.proof("GET", URL, ""))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        challenges(&response),
        dpop_refusal("invalid_request", "the DPoP credentials are malformed")
    );
    let exact = "a".repeat(64);
    let proof = key.proof("GET", URL, &exact);
    let response = app.oneshot(dpop_request("/items", &exact, &proof)).await.unwrap();
    assert_eq!(
        challenges(&response),
        dpop_refusal("invalid_token", "the token is not active")
    );
}

/// A proof may be up to twice the token limit of the default extractor
/// (8 192 bytes: a proof carries its key, and RSA keys are long); longer
/// is refused before any signature check.
#[tokio::test]
async fn a_proof_of_up_to_8192_bytes_is_read() {
    let (app, key, token, _auth) = required_app().await;
    let proof_with = |padding: usize| {
        let mut claims = DpopKey::claims("GET", URL, &token);
        claims["pad"] = json!("p".repeat(padding));
        key.sign(&key.header(), &claims)
    };
    let long = proof_with(5_000);
    assert!((4_200..8_192).contains(&long.len()), "{}", long.len());
    let response = app
        .clone()
        .oneshot(dpop_request("/items", &token, &long))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let too_long = proof_with(6_200);
    assert!(too_long.len() > 8_192, "{}", too_long.len());
    let response = app
        .oneshot(dpop_request("/items", &token, &too_long))
        .await
        .unwrap();
    assert_eq!(
        challenges(&response),
        dpop_refusal(
            "invalid_dpop_proof",
            "the DPoP proof is not a well-formed signed JWT"
        )
    );
}

/// A `cnf.jkt` that is not a string claims a binding nothing can prove:
/// refused as malformed, not as unbound (which `accept_unbound_tokens`
/// would let through).
#[tokio::test]
async fn a_jkt_that_is_not_a_string_is_a_malformed_binding() {
    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth)).dpop(
        DpopConfig::required()
            .external_url("http://api.example")
            .unwrap()
            .accept_unbound_tokens(true),
    );
    let app = items(layer);
    let key = DpopKey::generate();
    let token = auth.mint(TokenSpec::new().scope("read").claim("cnf", json!({ "jkt": 5 })));
    let proof = key.proof("GET", URL, &token);
    let response = app.oneshot(dpop_request("/items", &token, &proof)).await.unwrap();
    assert_eq!(
        challenges(&response),
        dpop_refusal("invalid_token", "the token's DPoP binding (cnf.jkt) is malformed")
    );
}

/// `iat` is accepted within `max_age` in the past and `leeway` in the
/// future, in whole seconds as configured.
#[tokio::test]
async fn iat_within_max_age_and_leeway_is_accepted() {
    let (app, key, token, _auth) = required_app().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (iat, status) in [(now - 40, 200), (now + 3, 200), (now - 90, 401), (now + 30, 401)] {
        let mut claims = DpopKey::claims("GET", URL, &token);
        claims["iat"] = json!(iat);
        let proof = key.sign(&key.header(), &claims);
        let response = app
            .clone()
            .oneshot(dpop_request("/items", &token, &proof))
            .await
            .unwrap();
        assert_eq!(response.status(), status, "iat {}", iat as i64 - now as i64);
    }
}
