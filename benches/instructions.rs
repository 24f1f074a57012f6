//! Instructions per cached request, for `bench/instructions.sh`, which runs
//! this binary under `valgrind --tool=callgrind` twice per mode (5 000 and
//! 15 000 requests) and prints the difference divided by 10 000: the
//! instructions one more request costs, with the setup (test AS, warm-up,
//! key generation) cancelled out. Instruction counts do not depend on what
//! else the machine is doing, so the figures repeat on a loaded machine,
//! which timings do not.
//!
//! ```text
//! bash bench/instructions.sh
//! ```
//!
//! Modes: `bare` and `bare_jwt` (the service alone, with an opaque or a JWT
//! `Authorization` header), `layer` and `layer_jwt` (the same behind
//! `IntrospectionLayer`, the token already cached). Each request is built,
//! sent through `poll_ready` + `call`, polled once (a cache hit completes at
//! once), and dropped with its response.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks and tests fail loudly

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, Service, ServiceBuilder};
use tower_introspection::revocation::Revocation;
use tower_introspection::test_util::{JwtSpec, TestAuthServer};
use tower_introspection::{jwt::JwtVerifier, IntrospectionLayer, Introspector};

type Body = bytes::Bytes;

async fn handler(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::new()))
}

/// As `benches/cached.rs` builds it: header values sharing one buffer.
fn request(token: &str) -> Request<Body> {
    let wire = bytes::Bytes::from(format!("Bearer {token}application/json"));
    let split = wire.len() - "application/json".len();
    let value = |bytes: bytes::Bytes| http::HeaderValue::from_maybe_shared(bytes).unwrap();
    Request::get("/items")
        .header("authorization", value(wire.slice(..split)))
        .header("accept", value(wire.slice(split..)))
        .body(Body::new())
        .unwrap()
}

fn run<S>(service: &mut S, token: &str, requests: usize)
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..requests {
        let request = request(token);
        assert!(service.poll_ready(&mut cx).is_ready());
        let mut future = std::pin::pin!(service.call(request));
        let Poll::Ready(response) = future.as_mut().poll(&mut cx) else {
            panic!("a cached request completes at once");
        };
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        black_box(response);
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let Some(mode) = args.next() else {
        // `cargo bench` runs every bench binary without arguments: nothing to do.
        println!("instructions: run through bench/instructions.sh");
        return;
    };
    let requests: usize = args
        .next()
        .map_or(10_000, |n| n.parse().expect("a request count"));
    // `CUTOFFS=n`: hold n revocation cut-offs (README › Revocation).
    let cutoffs: u64 = std::env::var("CUTOFFS").map_or(0, |n| n.parse().expect("a cut-off count"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_auth, introspector, token, jwt, jwt_token) = runtime.block_on(async {
        let auth = TestAuthServer::start().await.unwrap();
        let introspector = Introspector::builder(auth.introspection_url())
            .client_secret_basic("rs-client", "rs-secret")
            .max_ttl(Duration::from_secs(3600))
            .max_cutoffs(2 * cutoffs + 2)
            .build()
            .unwrap();
        let token = auth.mint_token("read write");
        introspector.validate(&token).await.unwrap();
        let jwt = JwtVerifier::builder()
            .expected_issuer(auth.issuer())
            .jwks_url(auth.jwks_url())
            .expected_audience("https://api.example")
            .max_ttl(Duration::from_secs(3600))
            .max_cutoffs(2 * cutoffs + 2)
            .build()
            .unwrap();
        // Revocations of other subjects held while the hits run: a hit must
        // not pay for them.
        for n in 0..cutoffs {
            let other = Revocation::subject(auth.issuer(), format!("someone-{n}"));
            introspector.revoke(&other).await.unwrap();
            jwt.revoke(&other).await.unwrap();
        }
        let jwt_token = auth.mint_jwt(JwtSpec::rfc9068().aud("https://api.example").scope("read write"));
        jwt.validate(&jwt_token).await.unwrap();
        (auth, introspector, token, jwt, jwt_token)
    });
    let _runtime = runtime.enter();
    let bare = || ServiceBuilder::new().service(service_fn(handler));
    match mode.as_str() {
        "bare" => run(&mut bare(), &token, requests),
        "bare_jwt" => run(&mut bare(), &jwt_token, requests),
        "layer" => run(
            &mut ServiceBuilder::new()
                .layer(IntrospectionLayer::new(introspector))
                .service(service_fn(handler)),
            &token,
            requests,
        ),
        "layer_jwt" => run(
            &mut ServiceBuilder::new()
                .layer(IntrospectionLayer::new(jwt))
                .service(service_fn(handler)),
            &jwt_token,
            requests,
        ),
        other => panic!("unknown mode {other}: bare, bare_jwt, layer, layer_jwt"),
    }
}
