//! Certificate-bound access tokens (RFC 8705 §3) over real TCP: the test AS
//! binds tokens to client certificates made here (rcgen), and a layer with
//! `mtls` reads the certificate a trusted proxy forwards in each of the
//! three header formats.

#![cfg(feature = "jwt")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;
use tower_introspection::mtls::{CertificateHeader, MtlsConfig};
use tower_introspection::test_util::{JwtSpec, TestAuthServer, TokenSpec, RS_CLIENT_ID, RS_CLIENT_SECRET};
use tower_introspection::{IntrospectionLayer, Introspector, Verifier};

/// A client certificate's DER, and its `x5t#S256`.
fn certificate() -> (Vec<u8>, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["client.example".to_owned()]).unwrap();
    let der = certified.cert.der().to_vec();
    let x5t = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &der));
    (der, x5t)
}

fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD.encode(der)
    )
}

/// What each proxy puts in its header for `der`.
fn forwarded(format: CertificateHeader, der: &[u8]) -> String {
    let escaped = url::form_urlencoded::byte_serialize(pem(der).as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    match format {
        CertificateHeader::ClientCert => format!(":{}:", STANDARD.encode(der)),
        CertificateHeader::Xfcc => format!(r#"By=spiffe://proxy;Cert="{escaped}";Subject="CN=client, O=x""#),
        _ => escaped,
    }
}

/// The layer with `mtls`, served with the peer address recorded; the
/// handler answers whether the forwarded header reached it.
async fn serve(auth: &TestAuthServer, mtls: MtlsConfig, header: &'static str) -> String {
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
        .build()
        .unwrap();
    let jwt = tower_introspection::jwt::JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("https://api.example")
        .build()
        .unwrap();
    let verifier = Verifier::builder()
        .jwt(jwt)
        .introspector(introspector)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/whoami",
            get(move |headers: http::HeaderMap| async move {
                if headers.contains_key(header) {
                    "with the header"
                } else {
                    "without the header"
                }
            }),
        )
        .layer(IntrospectionLayer::new(verifier).mtls(mtls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    format!("http://{addr}/whoami")
}

async fn call(url: &str, token: &str, header: Option<(&str, &str)>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url).bearer_auth(token);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    (status, challenge.unwrap_or(body))
}

#[tokio::test]
async fn each_header_format_from_a_trusted_proxy_proves_the_certificate() {
    let auth = TestAuthServer::start().await.unwrap();
    let (der, x5t) = certificate();
    let (other, _) = certificate();
    let bound_opaque = auth.mint(TokenSpec::new().claim("cnf", json!({ "x5t#S256": x5t })));
    let bound_jwt = auth.mint_jwt(
        JwtSpec::rfc9068()
            .aud("https://api.example")
            .claim("cnf", json!({ "x5t#S256": x5t })),
    );
    let unbound = auth.mint(TokenSpec::new());
    for format in [
        CertificateHeader::ClientCert,
        CertificateHeader::Xfcc,
        CertificateHeader::Nginx,
    ] {
        let name = format.default_name();
        let mtls = MtlsConfig::allowed()
            .forwarded_by(format)
            .trusted_proxies(["127.0.0.1/32"])
            .unwrap();
        let url = serve(&auth, mtls, name).await;
        let right = forwarded(format, &der);
        let wrong = forwarded(format, &other);
        for token in [&bound_opaque, &bound_jwt] {
            // Twice: the miss path, then the hit path.
            for _ in 0..2 {
                assert_eq!(
                    call(&url, token, Some((name, &right))).await,
                    (200, "with the header".into()),
                    "{format:?}"
                );
            }
            let (status, challenge) = call(&url, token, Some((name, &wrong))).await;
            assert_eq!(status, 401, "{format:?}");
            assert!(
                challenge.contains("the token is bound to another client certificate"),
                "{challenge}"
            );
            let (status, challenge) = call(&url, token, None).await;
            assert_eq!(status, 401);
            assert!(
                challenge.contains("which the request did not present"),
                "{challenge}"
            );
        }
        assert_eq!(
            call(&url, &unbound, None).await.0,
            200,
            "unbound tokens pass (allowed)"
        );
        let (status, challenge) = call(&url, &unbound, Some((name, "%%%garbage:"))).await;
        assert_eq!(status, 400, "{format:?}");
        assert!(challenge.contains("invalid_request"), "{challenge}");
    }
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_ignored_and_removed() {
    let auth = TestAuthServer::start().await.unwrap();
    let (der, x5t) = certificate();
    let bound = auth.mint(TokenSpec::new().claim("cnf", json!({ "x5t#S256": x5t })));
    let unbound = auth.mint(TokenSpec::new());
    let format = CertificateHeader::Nginx;
    // The proxies are elsewhere: this test's requests come from 127.0.0.1.
    let mtls = MtlsConfig::allowed()
        .forwarded_by(format)
        .trusted_proxies(["10.0.0.0/8"])
        .unwrap();
    let url = serve(&auth, mtls, format.default_name()).await;
    let header = (format.default_name(), forwarded(format, &der));
    let (status, challenge) = call(&url, &bound, Some((header.0, &header.1))).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("which the request did not present"),
        "{challenge}"
    );
    assert_eq!(
        call(&url, &unbound, Some((header.0, &header.1))).await,
        (200, "without the header".into()),
        "removed before the inner service"
    );
}

#[tokio::test]
async fn required_refuses_unbound_tokens_and_off_refuses_bound_ones() {
    let auth = TestAuthServer::start().await.unwrap();
    let (der, x5t) = certificate();
    let bound = auth.mint(TokenSpec::new().claim("cnf", json!({ "x5t#S256": x5t })));
    let unbound = auth.mint(TokenSpec::new());
    let format = CertificateHeader::ClientCert;
    let required = MtlsConfig::required()
        .forwarded_by(format)
        .trusted_proxies(["127.0.0.1"])
        .unwrap();
    let url = serve(&auth, required, format.default_name()).await;
    let header = forwarded(format, &der);
    assert_eq!(
        call(&url, &bound, Some((format.default_name(), &header))).await.0,
        200
    );
    let (status, challenge) = call(&url, &unbound, Some((format.default_name(), &header))).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("the token is not bound to a client certificate"),
        "{challenge}"
    );

    // Without `mtls`, a certificate-bound token cannot be checked: refused.
    let introspector = Introspector::builder(auth.introspection_url())
        .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
        .build()
        .unwrap();
    let plain = common::serve(
        Router::new()
            .route("/whoami", get(|| async { "ok" }))
            .layer(IntrospectionLayer::new(introspector)),
    )
    .await;
    let (status, challenge) = call(
        &format!("{plain}/whoami"),
        &bound,
        Some((format.default_name(), &header)),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("which this server does not check"),
        "{challenge}"
    );
}

/// `examples/resource_server.rs` with `MTLS`, `MTLS_CERT_HEADER` and
/// `MTLS_TRUSTED_PROXIES`: a bound token needs the certificate nginx
/// forwards.
#[tokio::test]
async fn resource_server_example_checks_forwarded_certificates() {
    let auth = TestAuthServer::start().await.unwrap();
    let (der, x5t) = certificate();
    let (other, _) = certificate();
    let bound = auth.mint(
        TokenSpec::new()
            .scope("read")
            .claim("cnf", json!({ "x5t#S256": x5t })),
    );
    let server = common::start_example(
        "resource_server",
        &[
            ("INTROSPECTION_URL", &auth.introspection_url()),
            ("CLIENT_ID", RS_CLIENT_ID),
            ("CLIENT_SECRET", RS_CLIENT_SECRET),
            ("MTLS", "allowed"),
            ("MTLS_CERT_HEADER", "nginx"),
            ("MTLS_TRUSTED_PROXIES", "127.0.0.1/32, ::1/128"),
        ],
        &["JWT_ISSUER", "JWKS_URL", "REDIS_URL"],
    );
    let url = format!("{}/whoami", server.base);
    let name = CertificateHeader::Nginx.default_name();
    let right = call(
        &url,
        &bound,
        Some((name, &forwarded(CertificateHeader::Nginx, &der))),
    )
    .await
    .0;
    let wrong = call(
        &url,
        &bound,
        Some((name, &forwarded(CertificateHeader::Nginx, &other))),
    )
    .await
    .0;
    let none = call(&url, &bound, None).await.0;
    assert_eq!((right, wrong, none), (200, 401, 401));
}
