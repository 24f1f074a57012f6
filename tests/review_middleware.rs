//! Request-path fixes from the review of the middleware and extractors, over
//! real TCP: the form layer's 400 is shaped like every other rejection, a
//! query token is taken out of the URI the inner service sees, and the
//! headers a token can travel in are marked sensitive.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_introspection::test_util::TestAuthServer;
use tower_introspection::{form::FormBodyTokenLayer, token::BearerExtractor, AuthError, IntrospectionLayer};

/// Sends `request` as raw bytes on a new connection to `base`
/// (`http://host:port`) and reads the answer until the server closes it.
async fn raw_exchange(base: &str, request: &[u8]) -> (u16, HeaderMap, String) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            HeaderName::try_from(name.trim()).unwrap(),
            HeaderValue::try_from(value.trim()).unwrap(),
        );
    }
    (status, headers, body.to_owned())
}

/// Review finding: a chunked form body larger than the limit was answered
/// 400 with the default realm and the JSON body, whatever the user had
/// configured.
#[tokio::test]
async fn form_layer_400_for_an_oversized_chunked_body_uses_the_realm_and_rejection_body() {
    let auth = TestAuthServer::start().await.unwrap();
    let custom = |error: &AuthError, headers: &mut HeaderMap| {
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        Body::from(format!("custom {}", error.status().as_u16()))
    };
    let layer = IntrospectionLayer::new(common::introspector(&auth))
        .realm("forms")
        .unwrap()
        .rejection_body(custom);
    let app = Router::new()
        .route("/form", post(|| async { "posted" }))
        .route_layer(layer)
        .layer(
            FormBodyTokenLayer::new()
                .max_body(64)
                .realm("forms")
                .unwrap()
                .rejection_body(custom),
        );
    let base = common::serve(app).await;

    // No `Content-Length`: the size shows only while the body is read.
    let chunk = format!("access_token=abc&pad={}", "x".repeat(100));
    let request = format!(
        "POST /form HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (status, headers, body) = raw_exchange(&base, request.as_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="forms", error="invalid_request", error_description="the form body is too large or broken""#
    );
    assert_eq!(headers["content-type"], "text/plain");
    assert!(body.contains("custom 400"), "the configured body: {body:?}");
}

async fn serve_echo(extractor: BearerExtractor) -> (TestAuthServer, String) {
    let auth = TestAuthServer::start().await.unwrap();
    let layer = IntrospectionLayer::new(common::introspector(&auth)).token_extractor(extractor);
    let app = Router::new()
        .route("/echo", get(|uri: Uri| async move { uri.to_string() }))
        .route(
            "/sensitive",
            get(|headers: HeaderMap| async move {
                // One line per header name the token can travel in:
                // `name=<every value sensitive>`.
                ["authorization", "x-api-token", "cookie"]
                    .iter()
                    .filter(|name| headers.contains_key(**name))
                    .map(|name| {
                        let all = headers.get_all(*name).iter().all(HeaderValue::is_sensitive);
                        format!("{name}={all}\n")
                    })
                    .collect::<String>()
            }),
        )
        .route_layer(layer);
    let base = common::serve(app).await;
    (auth, base)
}

/// Review finding: with `allow_query(true)`, the inner service (and any
/// logging layer inside) saw the token in the request URI.
#[tokio::test]
async fn query_token_is_removed_from_the_uri_the_inner_service_sees() {
    let (auth, base) = serve_echo(BearerExtractor::new().allow_query(true)).await;
    let token = auth.mint_token("read");
    let http = reqwest::Client::new();

    let response = http
        .get(format!("{base}/echo?a=1&access_token={token}&b=x%20y+z&c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "private",
        "still a query-token answer"
    );
    let uri = response.text().await.unwrap();
    assert!(!uri.contains(&token), "the token reached the inner service");
    assert_eq!(
        uri, "/echo?a=1&b=x%20y+z&c",
        "the other parameters are kept as sent"
    );

    let response = http
        .get(format!("{base}/echo?access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "/echo");

    // A header token leaves the query alone.
    let response = http
        .get(format!("{base}/echo?a=1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "/echo?a=1");
}

/// Review finding: only `Authorization` was marked sensitive; a token in a
/// custom header or a cookie was printed by inner layers' `Debug`.
#[tokio::test]
async fn custom_header_and_cookie_tokens_are_marked_sensitive_for_the_inner_service() {
    let extractor = BearerExtractor::new()
        .header(HeaderName::from_static("x-api-token"))
        .unwrap()
        .cookie("at");
    let (auth, base) = serve_echo(extractor).await;
    let token = auth.mint_token("read");
    let http = reqwest::Client::new();

    let response = http
        .get(format!("{base}/sensitive"))
        .header("x-api-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "x-api-token=true\n");

    // Two `Cookie` headers, the token in the second: both are marked.
    let response = http
        .get(format!("{base}/sensitive"))
        .header("cookie", "theme=dark")
        .header("cookie", format!("at={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "cookie=true\n");

    let response = http
        .get(format!("{base}/sensitive"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "authorization=true\n");
}

/// Review finding: `BearerExtractor::header(AUTHORIZATION)` was accepted and
/// then refused every request with 400; it is now refused when configured.
#[tokio::test]
async fn authorization_as_a_custom_header_is_refused_at_configuration() {
    use tower_introspection::ConfigError;

    let refused = BearerExtractor::new().header(http::header::AUTHORIZATION);
    assert!(
        matches!(refused, Err(ConfigError::InvalidSetting(_))),
        "{refused:?}"
    );
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("Authorization"), "{message}");

    // The supported way still serves a bearer token.
    let (auth, base) = serve_echo(BearerExtractor::new()).await;
    let token = auth.mint_token("read");
    let response = reqwest::Client::new()
        .get(format!("{base}/echo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
