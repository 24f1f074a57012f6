//! What a DPoP check (RFC 9449) costs through the layer, against the
//! `Bearer` hit of the same run.
//!
//! ```text
//! cargo bench --bench dpop
//! ```
//!
//! One layer, `IntrospectionLayer::new(v).dpop(DpopConfig::allowed())`, on
//! a `service_fn`; requests name `Host: api.example`, so `htu` is
//! `http://api.example/items`.
//!
//! - `dpop/bare`: the service without the layer.
//! - `dpop/bearer_hit`: an unbound opaque token, cached, sent as `Bearer`
//!   (the layer's hit path).
//! - `dpop/cached_*`: a token bound to the proof's key (`cnf.jkt` in its
//!   introspection answer), cached, sent as `DPoP` with a new proof per
//!   request (new `jti`, so the replay cache takes each): the proof's
//!   parse, signature and claims, the replay cache's insert, the cached
//!   token read on the slower path (a boxed future). One group per proof
//!   algorithm. Proofs are signed in the batch setup, outside the timing,
//!   and each batch just before it runs (`iat` must be within 60 s).
//! - `dpop_cold/bearer_jwt`: an unbound ES256 JWT access token never seen
//!   before (a new one per request), sent as `Bearer`: a `JwtVerifier`
//!   miss (keys already fetched: parse, signature, claims, cache insert).
//! - `dpop_cold/dpop_jwt_es256`: the same with the JWT bound to the key and
//!   sent as `DPoP` with a new ES256 proof: the whole first request of a
//!   DPoP client, without any network.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks and tests fail loudly

use std::convert::Infallible;
use std::hint::black_box;
use std::task::Context;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use http::{HeaderValue, Request, Response};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use serde_json::{json, Value};
use tower::{service_fn, Service, ServiceBuilder};
use tower_introspection::test_util::{DpopKey, JwtAlg, JwtSpec, TestAuthServer, TokenSpec};
use tower_introspection::{dpop::DpopConfig, jwt::JwtVerifier, IntrospectionLayer, Introspector};

type Body = bytes::Bytes;

const HOST: &str = "api.example";
const HTU: &str = "http://api.example/items";

async fn handler(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::new()))
}

/// A request whose header values share one buffer, as hyper builds them
/// from the bytes it read: `Authorization: <scheme> <token>`, `DPoP` when a
/// proof is given, `Host` and `Accept`.
fn request(scheme: &str, token: &str, proof: Option<&str>) -> Request<Body> {
    let authorization = format!("{scheme} {token}");
    let proof = proof.unwrap_or_default();
    let wire = bytes::Bytes::from(format!("{authorization}{proof}{HOST}application/json"));
    let value = |from: usize, len: usize| {
        HeaderValue::from_maybe_shared(wire.slice(from..from + len)).expect("header value")
    };
    let mut at = 0;
    let mut next = |len: usize| {
        let v = value(at, len);
        at += len;
        v
    };
    let mut builder = Request::get("/items").header("authorization", next(authorization.len()));
    if !proof.is_empty() {
        builder = builder.header("dpop", next(proof.len()));
    }
    builder
        .header("host", next(HOST.len()))
        .header("accept", next("application/json".len()))
        .body(Body::new())
        .expect("request")
}

/// Polls readiness (the services are always ready) and starts the call.
fn call_ready<S: Service<Request<Body>>>(service: &mut S, request: Request<Body>) -> S::Future {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    assert!(service.poll_ready(&mut cx).is_ready());
    service.call(request)
}

/// A proof signer for the algorithms `test_util::DpopKey` (ES256 only) does
/// not cover; the claims are `DpopKey::claims`, so only the key differs.
enum Signer {
    Es256(DpopKey),
    EdDsa(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static str),
}

impl Signer {
    fn es256() -> Self {
        Self::Es256(DpopKey::generate())
    }

    fn eddsa() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("random source");
        Self::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key just generated"))
    }

    /// RSA-2048, one of the committed test keys (ring cannot generate RSA).
    fn rsa(alg: &'static str) -> Self {
        let pem = include_str!("../src/test_util/keys/test-only-rsa-2.pkcs8.pem");
        let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
        let der = STANDARD.decode(body).expect("PEM body");
        Self::Rsa(RsaKeyPair::from_pkcs8(&der).expect("RSA test key"), alg)
    }

    fn jwk(&self) -> Value {
        match self {
            Self::Es256(key) => key.jwk().clone(),
            Self::EdDsa(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
            Self::Rsa(pair, _) => {
                let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
                json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(&public.n),
                    "e": URL_SAFE_NO_PAD.encode(&public.e),
                })
            }
        }
    }

    /// The RFC 7638 thumbprint, for `cnf.jkt`.
    fn jkt(&self) -> String {
        let jwk = self.jwk();
        let members: &[&str] = match jwk["kty"].as_str() {
            Some("EC") => &["crv", "kty", "x", "y"],
            Some("OKP") => &["crv", "kty", "x"],
            _ => &["e", "kty", "n"],
        };
        let canonical: serde_json::Map<String, Value> = members
            .iter()
            .map(|m| ((*m).to_owned(), jwk[*m].clone()))
            .collect();
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            Value::Object(canonical).to_string().as_bytes(),
        );
        URL_SAFE_NO_PAD.encode(digest)
    }

    /// A fresh proof (new `jti`, `iat` now) for `GET HTU` with `token`.
    fn proof(&self, token: &str) -> String {
        let claims = DpopKey::claims("GET", HTU, token);
        let alg = match self {
            Self::Es256(key) => return key.sign(&key.header(), &claims),
            Self::EdDsa(_) => "EdDSA",
            Self::Rsa(_, alg) => alg,
        };
        let header = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": self.jwk() });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match self {
            Self::Es256(_) => unreachable!("signed above"),
            Self::EdDsa(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Self::Rsa(pair, alg) => {
                let padding: &dyn ring::signature::RsaEncoding = if *alg == "PS256" {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut signature)
                    .expect("RSA signature");
                signature
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cached(c: &mut Criterion) {
    let runtime = runtime();
    let auth = runtime.block_on(TestAuthServer::start()).expect("test AS");
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .max_ttl(Duration::from_secs(3600))
        .build()
        .expect("introspector");
    let layer = IntrospectionLayer::new(introspector.clone()).dpop(DpopConfig::allowed());
    let unbound = auth.mint_token("read write");
    runtime
        .block_on(introspector.validate(&unbound))
        .expect("warm the cache");

    let mut group = c.benchmark_group("dpop");
    let mut bare = ServiceBuilder::new().service(service_fn(handler));
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter_batched(
            || request("Bearer", &unbound, None),
            |req| {
                let future = call_ready(&mut bare, req);
                async move { black_box(future.await.expect("response")) }
            },
            BatchSize::SmallInput,
        )
    });
    let mut layered = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(handler));
    group.bench_function("bearer_hit", |b| {
        b.to_async(&runtime).iter_batched(
            || request("Bearer", &unbound, None),
            |req| {
                let future = call_ready(&mut layered, req);
                async move {
                    let response = future.await.expect("response");
                    assert_eq!(response.status(), 200);
                    black_box(response)
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // One group per proof algorithm. RSA signing (in the setup, outside the
    // timing) takes ~0.5-1 ms a proof against ~30 µs a request, and criterion
    // sizes both phases by the timed part alone: those groups run shorter.
    for (name, signer) in [
        ("es256", Signer::es256()),
        ("eddsa", Signer::eddsa()),
        ("rs256", Signer::rsa("RS256")),
        ("ps256", Signer::rsa("PS256")),
    ] {
        let bound = auth.mint(
            TokenSpec::new()
                .scope("read write")
                .claim("cnf", json!({ "jkt": signer.jkt() })),
        );
        // `validate` caches the answer, then refuses the bound token as a
        // bearer token (it sees no proof): the cache is warm all the same.
        let refused = runtime
            .block_on(introspector.validate(&bound))
            .expect_err("a bound token is no bearer token");
        assert_eq!(refused.kind(), tower_introspection::ErrorKind::InvalidToken);
        let mut group = c.benchmark_group(format!("dpop/cached_{name}"));
        if name.starts_with("rs") || name.starts_with("ps") {
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(20)
                .warm_up_time(Duration::from_millis(100))
                .measurement_time(Duration::from_millis(300));
        }
        group.bench_function("dpop_hit", |b| {
            b.to_async(&runtime).iter_batched(
                || request("DPoP", &bound, Some(&signer.proof(&bound))),
                |req| {
                    let future = call_ready(&mut layered, req);
                    async move {
                        let response = future.await.expect("response");
                        assert_eq!(response.status(), 200, "{:?}", response.headers());
                        black_box(response)
                    }
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

fn cold(c: &mut Criterion) {
    let runtime = runtime();
    let auth = runtime.block_on(TestAuthServer::start()).expect("test AS");
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .max_ttl(Duration::from_secs(3600))
        .build()
        .expect("JWT verifier");
    let mut layered = ServiceBuilder::new()
        .layer(IntrospectionLayer::new(jwt.clone()).dpop(DpopConfig::allowed()))
        .service(service_fn(handler));
    let key = DpopKey::generate();
    let spec = || {
        JwtSpec::rfc9068()
            .alg(JwtAlg::Es256)
            .aud("https://api.example")
            .scope("read write")
    };
    // Fetch the JWK Set once: "cold" is the token's first sight, not the keys'.
    runtime
        .block_on(jwt.validate(&auth.mint_jwt(spec())))
        .expect("keys fetched");

    let mut group = c.benchmark_group("dpop_cold");
    group.bench_function("bearer_jwt", |b| {
        b.to_async(&runtime).iter_batched(
            || request("Bearer", &auth.mint_jwt(spec()), None),
            |req| {
                let future = call_ready(&mut layered, req);
                async move {
                    let response = future.await.expect("response");
                    assert_eq!(response.status(), 200);
                    black_box(response)
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("dpop_jwt_es256", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                let token = auth.mint_jwt(spec().claim("cnf", key.cnf()));
                request("DPoP", &token, Some(&key.proof("GET", HTU, &token)))
            },
            |req| {
                let future = call_ready(&mut layered, req);
                async move {
                    let response = future.await.expect("response");
                    assert_eq!(response.status(), 200, "{:?}", response.headers());
                    black_box(response)
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = cached, cold
}
criterion_main!(benches);
