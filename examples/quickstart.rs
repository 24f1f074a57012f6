//! Quickstart: a protected API in front of an in-process authorization server.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Starts the crate's test authorization server on a free loopback port, the
//! API on `127.0.0.1:3000` (or `LISTEN_ADDR`), mints tokens — opaque ones,
//! introspected, and a JWT, verified locally with the server's JWK Set —
//! and prints `curl` commands with the answers to expect. Serves until
//! Ctrl-C.

mod common;

use std::net::SocketAddr;

use tower_introspection::test_util::{JwtSpec, TestAuthServer, TokenSpec};
use tower_introspection::{jwt::JwtVerifier, IntrospectionLayer, Introspector, Verifier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();

    let listen: SocketAddr = std::env::var("LISTEN_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()
        .map_err(|e| format!("LISTEN_ADDR: {e}"))?;

    let auth_server = TestAuthServer::start().await?;
    // Opaque tokens: introspection. The test AS names itself in `iss`.
    let introspector = Introspector::builder(auth_server.introspection_url())
        .client_secret_basic("rs-client", "rs-secret")
        .expected_issuer(auth_server.issuer())
        .build()?;
    // JWTs from the same AS: verified locally with its JWK Set (RFC 9068).
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth_server.issuer())
        .jwks_url(auth_server.jwks_url())
        .expected_audience("https://api.example")
        .build()?;
    let verifier = Verifier::builder().jwt(jwt).introspector(introspector).build()?;
    let app = common::app(IntrospectionLayer::new(verifier).realm("quickstart")?);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;

    let reader = auth_server.mint(
        TokenSpec::new()
            .scope("read")
            .sub("alice")
            .username("alice")
            .client_id("test-client"),
    );
    let writer = auth_server.mint(
        TokenSpec::new()
            .scope("read write")
            .sub("bob")
            .username("bob")
            .client_id("test-client"),
    );
    let admin = auth_server.mint(
        TokenSpec::new()
            .scope("admin")
            .sub("carol")
            .username("carol")
            .client_id("test-client"),
    );
    let jwt = auth_server.mint_jwt(
        JwtSpec::rfc9068()
            .sub("dave")
            .aud("https://api.example")
            .scope("read"),
    );
    let revoked = auth_server.mint(TokenSpec::new().scope("read"));
    auth_server.revoke(&revoked);

    let base = format!("http://{addr}");
    println!("authorization server on {}", auth_server.base_url());
    println!("listening on {base}");
    println!();
    println!("Try these (expected answer on the right):");
    let show = |what: &str, command: String| println!("  # {what}\n  {command}\n");
    show("200 ok: no token needed", format!("curl -i {base}/public"));
    show(
        "401, WWW-Authenticate: Bearer realm=\"quickstart\"",
        format!("curl -i {base}/whoami"),
    );
    show(
        "200 {\"sub\":\"alice\",\"username\":\"alice\",\"client_id\":\"test-client\",\"scope\":\"read\",…}",
        format!("curl -i -H 'Authorization: Bearer {reader}' {base}/whoami"),
    );
    show(
        "200 items",
        format!("curl -i -H 'Authorization: Bearer {reader}' {base}/items"),
    );
    show(
        "403, error=\"insufficient_scope\", scope=\"write\"",
        format!("curl -i -X POST -H 'Authorization: Bearer {reader}' {base}/items"),
    );
    show(
        "200 created",
        format!("curl -i -X POST -H 'Authorization: Bearer {writer}' {base}/items"),
    );
    show(
        "200 admin",
        format!("curl -i -H 'Authorization: Bearer {admin}' {base}/admin"),
    );
    show(
        "200 {\"sub\":\"dave\",…}: a JWT access token, verified locally (no AS call)",
        format!("curl -i -H 'Authorization: Bearer {jwt}' {base}/whoami"),
    );
    show(
        "401, error=\"invalid_token\" (revoked)",
        format!("curl -i -H 'Authorization: Bearer {revoked}' {base}/whoami"),
    );
    show(
        "400, error=\"invalid_request\" (malformed)",
        format!("curl -i -H 'Authorization: Bearer a b' {base}/whoami"),
    );
    println!("Ctrl-C to stop.");

    axum::serve(listener, app)
        .with_graceful_shutdown(common::shutdown_signal())
        .await?;
    Ok(())
}
