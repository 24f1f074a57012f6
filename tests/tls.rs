//! B14 / I10: the introspection client verifies the AS's certificate. A
//! self-signed certificate is refused by default (503, never a pass); the
//! same server is trusted once its root is added to the client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;

use axum::routing::post;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tower_introspection::Introspector;

/// An HTTPS introspection endpoint on 127.0.0.1 with a fresh self-signed
/// certificate; returns its URL and the certificate.
async fn tls_endpoint() -> (String, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let app = Router::new().route(
        "/introspect",
        post(|| async { Json(json!({"active": true, "scope": "read", "sub": "alice"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate fails the handshake here.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, cert)
}

#[tokio::test]
async fn self_signed_certificate_is_refused_by_default() {
    let (url, _) = tls_endpoint().await;
    let introspector = Introspector::builder(url)
        .client_secret_basic("rs", "secret")
        .build()
        .unwrap();
    let error = introspector.validate("some-token").await.unwrap_err();
    assert_eq!(error.status(), 503, "{error}");
    assert_eq!(introspector.stats().introspections.as_fault, 1);
}

#[tokio::test]
async fn a_custom_root_certificate_can_be_trusted() {
    let (url, cert) = tls_endpoint().await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(&cert).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let introspector = Introspector::builder(url)
        .client_secret_basic("rs", "secret")
        .http_client(client)
        .build()
        .unwrap();
    let principal = introspector.validate("some-token").await.unwrap();
    assert_eq!(principal.subject(), Some("alice"));
}
