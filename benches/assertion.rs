//! The cost of `private_key_jwt`: signing one client assertion, per
//! algorithm, and one uncached validation against the in-process test AS
//! over loopback with `private_key_jwt` (ES256) against the same with
//! `client_secret_basic` (the baseline: the ratio is what a fresh assertion
//! per call adds to a cache miss).
//!
//! ```text
//! cargo bench --bench assertion
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks fail loudly

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_introspection::test_util::{client_private_key_pem, ClientSpec, JwtAlg, TestAuthServer};
use tower_introspection::{introspection::ClientKey, jwt::Algorithm, Introspector};

fn key(alg: &JwtAlg) -> ClientKey {
    let key = ClientKey::from_pkcs8_pem(&client_private_key_pem(alg, 0).unwrap()).unwrap();
    match alg {
        JwtAlg::Ps256 => key.with_algorithm(Algorithm::Ps256).unwrap(),
        _ => key,
    }
}

fn sign(c: &mut Criterion) {
    let mut group = c.benchmark_group("assertion");
    for (name, alg) in [
        ("RS256", JwtAlg::Rs256),
        ("PS256", JwtAlg::Ps256),
        ("ES256", JwtAlg::Es256),
        ("EdDSA", JwtAlg::EdDsa),
    ] {
        let key = key(&alg);
        group.bench_function(name, |b| {
            b.iter(|| black_box(key.client_assertion("rs", "https://as.example")).unwrap())
        });
    }
    group.finish();
}

fn miss(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let auth = runtime.block_on(TestAuthServer::start()).unwrap();
    let key = key(&JwtAlg::Es256);
    auth.register_client(
        ClientSpec::new("rs-keyed", "unused")
            .can_introspect(true)
            .public_jwk(key.public_jwk()),
    );
    let token = auth.mint_token("read");
    let secret = Introspector::builder(auth.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .max_ttl(std::time::Duration::ZERO)
        .negative_ttl(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let keyed = Introspector::builder(auth.introspection_url())
        .private_key_jwt("rs-keyed", key)
        .max_ttl(std::time::Duration::ZERO)
        .negative_ttl(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("miss");
    group.bench_function("client_secret_basic", |b| {
        b.iter(|| runtime.block_on(secret.validate(&token)).unwrap())
    });
    group.bench_function("private_key_jwt_es256", |b| {
        b.iter(|| runtime.block_on(keyed.validate(&token)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, sign, miss);
criterion_main!(benches);
