//! The cached validation path against the same service without the layer.
//!
//! ```text
//! cargo bench --bench cached
//! ```
//!
//! - `cached/bare` vs `cached/layer`: one request through a ready service,
//!   in-process; the difference is what the layer adds on a cache hit.
//! - `cached_2_workers/*`: the same, with requests issued concurrently on a
//!   2-worker tokio runtime (per-request time = batch time / batch size).
//! - `cached/layer_jwt`: the same with a JWT access token verified by a
//!   `JwtVerifier` (cached after its first signature check);
//!   `cached/part_*`: pieces of the difference, alone.
//! - `jwt_cold/*`: a JWT seen for the first time (cache off): parsing, the
//!   signature check (RS256, ES256, EdDSA) and the claims, keys already fetched.
//! - `key/*`: the cache key derivation alone, for 32, 256 and 1024-byte tokens.
//! - `miss/*`: one uncached validation against the in-process test AS over
//!   loopback, against a bare loopback HTTP round trip to the same server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks and tests fail loudly

use std::convert::Infallible;
use std::hint::black_box;
use std::task::Context;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_introspection::test_util::{JwtAlg, JwtSpec, TestAuthServer};
use tower_introspection::{
    jwt::{Algorithm, JwtVerifier},
    token::{BearerExtractor, ExtractToken},
    IntrospectionLayer, Introspector, Principal,
};

type Body = bytes::Bytes;

async fn handler(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::new()))
}

struct Fixture {
    _auth: TestAuthServer,
    introspector: Introspector,
    token: String,
    jwt: JwtVerifier,
    jwt_token: String,
}

async fn fixture() -> Fixture {
    let auth = TestAuthServer::start().await.expect("test AS");
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .max_ttl(Duration::from_secs(3600))
        .build()
        .expect("introspector");
    let token = auth.mint_token("read write");
    introspector.validate(&token).await.expect("warm the cache");
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .max_ttl(Duration::from_secs(3600))
        .build()
        .expect("JWT verifier");
    let jwt_token = auth.mint_jwt(JwtSpec::rfc9068().aud("https://api.example").scope("read write"));
    jwt.validate(&jwt_token).await.expect("warm the cache");
    Fixture {
        _auth: auth,
        introspector,
        token,
        jwt,
        jwt_token,
    }
}

/// A request whose header values share one buffer, as hyper builds them
/// from the bytes it read.
fn request(token: &str) -> Request<Body> {
    let wire = bytes::Bytes::from(format!("Bearer {token}application/json"));
    let split = wire.len() - "application/json".len();
    let value = |bytes: bytes::Bytes| http::HeaderValue::from_maybe_shared(bytes).expect("header value");
    Request::get("/items")
        .header("authorization", value(wire.slice(..split)))
        .header("accept", value(wire.slice(split..)))
        .body(Body::new())
        .expect("request")
}

/// Polls readiness (both services are always ready) and starts the call; the
/// returned future owns everything, so the service is not borrowed across it.
fn call_ready<S: Service<Request<Body>>>(service: &mut S, request: Request<Body>) -> S::Future {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    assert!(service.poll_ready(&mut cx).is_ready());
    service.call(request)
}

fn cached(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fixture = runtime.block_on(fixture());
    let mut group = c.benchmark_group("cached");
    let mut bare = ServiceBuilder::new().service(service_fn(handler));
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&fixture.token),
            |req| {
                let future = call_ready(&mut bare, req);
                async move { black_box(future.await.expect("response")) }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let mut layered = ServiceBuilder::new()
        .layer(IntrospectionLayer::new(fixture.introspector.clone()))
        .service(service_fn(handler));
    group.bench_function("layer", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&fixture.token),
            |req| {
                let future = call_ready(&mut layered, req);
                async move {
                    let response = future.await.expect("response");
                    assert_eq!(response.status(), 200);
                    black_box(response)
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let mut layered_jwt = ServiceBuilder::new()
        .layer(IntrospectionLayer::new(fixture.jwt.clone()))
        .service(service_fn(handler));
    group.bench_function("layer_jwt", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&fixture.jwt_token),
            |req| {
                let future = call_ready(&mut layered_jwt, req);
                async move {
                    let response = future.await.expect("response");
                    assert_eq!(response.status(), 200);
                    black_box(response)
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // The parts of the difference, measured alone.
    let extractor = BearerExtractor::new();
    group.bench_function("part_extract_token", |b| {
        b.iter_batched(
            || request(&fixture.token),
            |req| {
                black_box(extractor.extract(&req).expect("well-formed"));
                req
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("part_extract_token_jwt", |b| {
        b.iter_batched(
            || request(&fixture.jwt_token),
            |req| {
                black_box(extractor.extract(&req).expect("well-formed"));
                req
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let principal = Principal::from_json(br#"{"active":true,"scope":"read"}"#).expect("active");
    group.bench_function("part_extensions_insert", |b| {
        b.iter_batched(
            || (request(&fixture.token), principal.clone()),
            |(mut req, principal)| {
                req.extensions_mut().insert(principal);
                req
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("part_validate", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                fixture
                    .introspector
                    .validate(&fixture.token)
                    .await
                    .expect("active"),
            )
        })
    });
    group.finish();
}

fn cached_two_workers(c: &mut Criterion) {
    const BATCH: u64 = 256;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fixture = runtime.block_on(fixture());
    let mut group = c.benchmark_group("cached_2_workers");
    group.throughput(Throughput::Elements(BATCH));
    let run = |with_layer: bool| {
        let introspector = fixture.introspector.clone();
        let token = fixture.token.clone();
        move || {
            let introspector = introspector.clone();
            let token = token.clone();
            async move {
                let mut tasks = Vec::with_capacity(2);
                for _ in 0..2 {
                    let introspector = introspector.clone();
                    let token = token.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut service = ServiceBuilder::new()
                            .option_layer(with_layer.then(|| IntrospectionLayer::new(introspector)))
                            .service(service_fn(handler));
                        for _ in 0..BATCH / 2 {
                            let response = service
                                .ready()
                                .await
                                .expect("ready")
                                .call(request(&token))
                                .await
                                .expect("response");
                            black_box(response);
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("task");
                }
            }
        }
    };
    group.bench_function("bare", |b| b.to_async(&runtime).iter(run(false)));
    group.bench_function("layer", |b| b.to_async(&runtime).iter(run(true)));
    group.finish();
}

fn jwt_cold(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let auth = runtime.block_on(TestAuthServer::start()).expect("test AS");
    let uncached = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .algorithms([Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa])
        .max_ttl(Duration::ZERO)
        .build()
        .expect("JWT verifier");
    let mut group = c.benchmark_group("jwt_cold");
    for (name, alg) in [
        ("rs256", JwtAlg::Rs256),
        ("es256", JwtAlg::Es256),
        ("eddsa", JwtAlg::EdDsa),
    ] {
        let token = auth.mint_jwt(
            JwtSpec::rfc9068()
                .alg(alg)
                .aud("https://api.example")
                .scope("read"),
        );
        runtime.block_on(uncached.validate(&token)).expect("valid");
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(uncached.validate(&token).await.expect("valid")) })
        });
    }
    group.finish();
}

fn key(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fixture = runtime.block_on(fixture());
    let mut group = c.benchmark_group("key");
    for len in [32usize, 256, 1024] {
        let token = "a".repeat(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &token, |b, token| {
            b.iter(|| black_box(fixture.introspector.cache_key(black_box(token))))
        });
    }
    group.finish();
}

fn miss(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let auth = runtime.block_on(TestAuthServer::start()).expect("test AS");
    let uncached = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .max_ttl(Duration::ZERO)
        .build()
        .expect("introspector");
    let token = auth.mint_token("read");
    let http = reqwest::Client::new();
    let metadata_url = auth.metadata_url();
    let mut group = c.benchmark_group("miss");
    group.sample_size(30);
    group.bench_function("loopback_round_trip", |b| {
        b.to_async(&runtime).iter(|| {
            let request = http.get(&metadata_url).send();
            async move { black_box(request.await.expect("response").bytes().await.expect("body")) }
        })
    });
    group.bench_function("introspection", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(uncached.validate(&token).await.expect("active")) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = cached, cached_two_workers, jwt_cold, key, miss
}
criterion_main!(benches);
