//! `Debug` of every public type that touches a secret redacts it (I12).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use tower_introspection::test_util::{ClientSpec, TestAuthServer, TokenSpec};
use tower_introspection::{
    token::{BearerExtractor, BearerToken, TokenSource},
    IntrospectionLayer, Introspector,
};

const SECRET: &str = "s3cret-Ab+/c%:d";

#[tokio::test]
async fn debug_of_public_types_redacts_secrets() {
    let auth = TestAuthServer::start().await.unwrap();
    auth.register_client(ClientSpec::new("rs-secret-client", SECRET).can_introspect(true));
    let token = auth.mint(TokenSpec::new().scope("read").sub("alice"));
    let builder =
        Introspector::builder(auth.introspection_url()).client_secret_basic("rs-secret-client", SECRET);
    let builder_debug = format!("{builder:?}");
    let introspector = builder.build().unwrap();
    let layer = IntrospectionLayer::new(introspector.clone()).token_extractor(BearerExtractor::new());
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::new()))
        }),
    );
    let principal = introspector.validate(&token).await.unwrap();
    let bearer = BearerToken::new(token.clone(), TokenSource::AuthorizationHeader);
    let error = introspector.validate("not-a-real-token").await.unwrap_err();
    let bearer_builder = Introspector::builder(auth.introspection_url())
        .bearer_token("static-bearer-credential")
        .build()
        .unwrap();
    let client = ClientSpec::new("c", SECRET);

    let outputs = [
        builder_debug,
        format!("{introspector:?}"),
        format!("{layer:?}"),
        format!("{service:?}"),
        format!("{principal:?}"),
        format!("{bearer:?}"),
        format!("{error:?} {error}"),
        format!("{bearer_builder:?}"),
        format!("{client:?}"),
        format!("{auth:?}"),
    ];
    for output in &outputs {
        for secret in [SECRET, token.as_str(), "static-bearer-credential"] {
            assert!(!output.contains(secret), "{output}");
        }
    }
    assert!(outputs[5].contains("redacted"));
}
