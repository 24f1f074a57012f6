//! MCP servers and RFC 9728 over real TCP: the protected-resource metadata
//! at its well-known URLs, `resource_metadata` and `scope` in every
//! challenge form, the audience-is-the-resource check for introspected and
//! local JWTs, and the JSON-RPC per-operation guard's edge cases. The test AS
//! is the crate's own; an echo handler stands in for the MCP server (the
//! rmcp server and the official TypeScript client are in
//! `tests/interop/mcp.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::routing::{get, post};
use axum::Router;
use tower_introspection::test_util::{JwtSpec, TestAuthServer, TokenSpec};
use tower_introspection::{
    jsonrpc::JsonRpcScopes, jwt::JwtVerifier, metadata::ProtectedResourceMetadata, scope::Hierarchical,
    IntrospectionLayer, Scoped, Verifier,
};

use common::{challenge, challenge_params};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

tower_introspection::scope_requirement! {
    /// `GET /scoped`.
    pub NotesRead: "notes:read";
}

fn metadata() -> ProtectedResourceMetadata {
    ProtectedResourceMetadata::builder(RESOURCE)
        .authorization_server("https://as.example")
        .scopes_supported(["notes:read", "notes:write"])
        .build()
        .unwrap()
}

/// An MCP-shaped app: `/mcp` (an echo of the JSON-RPC body) behind the
/// guard and the layer, `/scoped` (an extractor), and the metadata.
fn app(
    verifier: impl Into<Verifier>,
    layer: impl FnOnce(IntrospectionLayer) -> IntrospectionLayer,
) -> Router {
    let metadata = metadata();
    let guard = JsonRpcScopes::new()
        .method("resources/read", ["notes:read"])
        .tool("add_note", ["notes:write"])
        .tool("archive", ["notes:write", "notes:admin"])
        .max_body(1024);
    let mcp = Router::new()
        .route(
            "/mcp",
            post(|body: String| async move { body }).get(|| async { "stream" }),
        )
        .route_layer(guard);
    let protected = Router::new()
        .merge(mcp)
        .route("/scoped", get(|_: Scoped<NotesRead>| async { "ok" }))
        .route_layer(layer(IntrospectionLayer::new(verifier)));
    protected
        .route_service(metadata.path(), metadata.service())
        .route_service(tower_introspection::metadata::WELL_KNOWN_PATH, metadata.service())
}

fn mcp_layer(layer: IntrospectionLayer) -> IntrospectionLayer {
    layer.resource_metadata(metadata().url()).unwrap()
}

struct Mcp {
    auth: TestAuthServer,
    base: String,
    http: reqwest::Client,
}

impl Mcp {
    async fn with(layer: impl FnOnce(IntrospectionLayer) -> IntrospectionLayer) -> Self {
        let auth = TestAuthServer::start().await.unwrap();
        let introspector = common::builder(&auth)
            .expected_resource(RESOURCE)
            .build()
            .unwrap();
        let base = common::serve(app(introspector, layer)).await;
        Self {
            auth,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn new() -> Self {
        Self::with(mcp_layer).await
    }

    /// A token for this resource with `scopes`.
    fn token(&self, scopes: &str) -> String {
        self.auth.mint(TokenSpec::new().scope(scopes).aud(RESOURCE))
    }

    async fn post(&self, token: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    async fn call(&self, token: &str, method: &str, tool: Option<&str>) -> reqwest::Response {
        let params = tool.map_or_else(
            || "{}".to_owned(),
            |t| format!(r#"{{"name":"{t}","arguments":{{}}}}"#),
        );
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        self.post(Some(token), body).await
    }
}

// ---------------------------------------------------------------- metadata

/// The path-aware URL serves the document of `/mcp`; the root form does
/// not (its `resource` would not match it, RFC 9728 §3.3) but serves a
/// path-less resource's own document, and `also_at_root` is refused for a
/// resource with a path.
#[tokio::test]
async fn metadata_is_served_at_the_path_aware_and_the_root_url() {
    let s = Mcp::new().await;
    for path in ["/.well-known/oauth-protected-resource/mcp"] {
        let response = s.http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
        let document: serde_json::Value = response.json().await.unwrap();
        assert_eq!(document["resource"], RESOURCE);
        assert_eq!(
            document["authorization_servers"],
            serde_json::json!(["https://as.example"])
        );
        assert_eq!(
            document["scopes_supported"],
            serde_json::json!(["notes:read", "notes:write"])
        );
    }
    let post = s
        .http
        .post(format!("{}/.well-known/oauth-protected-resource/mcp", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    let root = s
        .http
        .get(format!("{}/.well-known/oauth-protected-resource", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);

    assert!(ProtectedResourceMetadata::builder(RESOURCE)
        .also_at_root(true)
        .build()
        .is_err());
    let origin = ProtectedResourceMetadata::builder("https://mcp.example.com/")
        .authorization_server("https://as.example")
        .also_at_root(true)
        .build()
        .unwrap();
    let base = common::serve(
        Router::new().route_service(tower_introspection::metadata::WELL_KNOWN_PATH, origin.service()),
    )
    .await;
    let response = s
        .http
        .get(format!("{base}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.unwrap();
    assert_eq!(document["resource"], "https://mcp.example.com");
}

// ---------------------------------------------------------------- challenges

/// Every challenge form of the layer, the extractors and the guard carries
/// `resource_metadata` right after the realm; 403s name the operation's
/// scopes.
#[tokio::test]
async fn every_challenge_carries_resource_metadata() {
    let s = Mcp::new().await;
    let read = s.token("notes:read");

    let missing = s.post(None, "{}").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(
        challenge(&missing),
        format!(r#"Bearer realm="api", resource_metadata="{METADATA}""#)
    );

    let invalid = s.post(Some("not-a-token"), "{}").await;
    assert_eq!(invalid.status(), 401);
    assert_eq!(
        challenge(&invalid),
        format!(
            r#"Bearer realm="api", resource_metadata="{METADATA}", error="invalid_token", error_description="the token is not active""#
        )
    );

    let malformed = s
        .http
        .post(format!("{}/mcp", s.base))
        .header("authorization", "Bearer a b")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let params = challenge_params(&challenge(&malformed));
    assert_eq!(params[1], ("resource_metadata".into(), METADATA.into()));
    assert_eq!(params[2], ("error".into(), "invalid_request".into()));

    let denied = s.call(&read, "tools/call", Some("add_note")).await;
    assert_eq!(denied.status(), 403);
    assert_eq!(
        challenge(&denied),
        format!(
            r#"Bearer realm="api", resource_metadata="{METADATA}", error="insufficient_scope", scope="notes:write""#
        )
    );

    // The extractor's 403, through the principal's realm.
    let scoped = s
        .http
        .get(format!("{}/scoped", s.base))
        .bearer_auth(s.token("notes:write"))
        .send()
        .await
        .unwrap();
    assert_eq!(scoped.status(), 403);
    assert_eq!(
        challenge(&scoped),
        format!(
            r#"Bearer realm="api", resource_metadata="{METADATA}", error="insufficient_scope", scope="notes:read""#
        )
    );
}

/// MCP asks 401s to name the scopes needed; 403s keep the operation's own.
#[tokio::test]
async fn challenge_scope_goes_into_401s_only() {
    let s = Mcp::with(|layer| {
        mcp_layer(layer)
            .realm("mcp")
            .unwrap()
            .challenge_scope(["notes:read"])
            .unwrap()
    })
    .await;
    let missing = s.post(None, "{}").await;
    assert_eq!(
        challenge(&missing),
        format!(r#"Bearer realm="mcp", resource_metadata="{METADATA}", scope="notes:read""#)
    );
    let invalid = s.post(Some("not-a-token"), "{}").await;
    assert_eq!(
        challenge(&invalid),
        format!(
            r#"Bearer realm="mcp", resource_metadata="{METADATA}", error="invalid_token", error_description="the token is not active", scope="notes:read""#
        )
    );
    let denied = s
        .call(&s.token("notes:read"), "tools/call", Some("add_note"))
        .await;
    assert_eq!(
        challenge(&denied),
        format!(
            r#"Bearer realm="mcp", resource_metadata="{METADATA}", error="insufficient_scope", scope="notes:write""#
        )
    );
}

/// Without a metadata URL the challenges stay exactly RFC 6750's, whatever
/// order the settings came in.
#[tokio::test]
async fn without_metadata_challenges_are_unchanged() {
    let s = Mcp::with(|layer| layer.realm("api").unwrap()).await;
    assert_eq!(challenge(&s.post(None, "{}").await), r#"Bearer realm="api""#);
    let denied = s.call(&s.token(""), "tools/call", Some("add_note")).await;
    assert_eq!(
        challenge(&denied),
        r#"Bearer realm="api", error="insufficient_scope", scope="notes:write""#
    );
    // Set, then the realm changed: the metadata URL stays.
    let s = Mcp::with(|layer| mcp_layer(layer).realm("other").unwrap()).await;
    assert_eq!(
        challenge(&s.post(None, "{}").await),
        format!(r#"Bearer realm="other", resource_metadata="{METADATA}""#)
    );
}

#[test]
fn layer_settings_refuse_what_cannot_be_sent() {
    let layer = || {
        IntrospectionLayer::new(
            tower_introspection::Introspector::builder("https://as.example/introspect")
                .client_secret_basic("a", "b")
                .build()
                .unwrap(),
        )
    };
    for url in [
        "/relative",
        "https://a.example/x#f",
        "ftp://a.example/x",
        "not a url",
    ] {
        assert!(layer().resource_metadata(url).is_err(), "{url}");
    }
    assert!(layer().challenge_scope(["a b"]).is_err());
    assert!(layer().challenge_scope(["a\"b"]).is_err());
    assert!(layer().challenge_scope([""]).is_err());
    assert!(layer().challenge_scope(Vec::<String>::new()).is_ok());
}

// ---------------------------------------------------------------- audience

#[tokio::test]
async fn introspected_tokens_must_name_the_resource() {
    let s = Mcp::new().await;
    for (aud, status) in [
        (RESOURCE, 200),
        ("https://mcp.example.com/mcp/", 200),
        ("HTTPS://MCP.EXAMPLE.COM/mcp", 200),
        ("https://mcp.example.com:443/mcp", 200),
        ("https://mcp.example.com", 401),
        ("https://mcp.example.com/mcp/other", 401),
        ("https://other.example/mcp", 401),
        ("http://mcp.example.com/mcp", 401),
        // Values a URL parser would resolve to the resource (B1).
        ("https://mcp%2Eexample.com/mcp", 401),
        ("https://mcp.example.com/x/../mcp", 401),
        ("https://mcp.example.com\\mcp", 401),
        ("https:mcp.example.com/mcp", 401),
        ("https://mcp.example.com/mcp ", 401),
    ] {
        let token = s.auth.mint(TokenSpec::new().aud(aud));
        let response = s.call(&token, "tools/list", None).await;
        assert_eq!(response.status(), status, "{aud}");
        if status == 401 {
            assert!(
                challenge(&response).contains("the token is meant for another audience"),
                "{aud}"
            );
        }
    }
    let none = s.auth.mint(TokenSpec::new());
    assert_eq!(s.call(&none, "tools/list", None).await.status(), 401);
    let several = s
        .auth
        .mint(TokenSpec::new().audiences(["https://other.example", RESOURCE]));
    assert_eq!(s.call(&several, "tools/list", None).await.status(), 200);
}

#[tokio::test]
async fn local_jwts_must_name_the_resource() {
    let auth = TestAuthServer::start().await.unwrap();
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_resource(RESOURCE)
        .build()
        .unwrap();
    let base = common::serve(app(jwt, mcp_layer)).await;
    let http = reqwest::Client::new();
    let post = |token: String| {
        http.post(format!("{base}/mcp"))
            .bearer_auth(token)
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
    };
    let ours = auth.mint_jwt(JwtSpec::rfc9068().aud("https://MCP.example.com/mcp/"));
    assert_eq!(post(ours).await.unwrap().status(), 200);
    let theirs = auth.mint_jwt(JwtSpec::rfc9068().aud("https://other.example/mcp"));
    let response = post(theirs).await.unwrap();
    assert_eq!(response.status(), 401);
    let params = challenge_params(&challenge(&response));
    assert_eq!(params[2], ("error".into(), "invalid_token".into()));
}

/// With an expected audience configured too (the example's
/// `EXPECTED_AUDIENCE`), a token naming only that audience is still refused:
/// the resource check is not an alternative, it is required.
#[tokio::test]
async fn an_expected_audience_never_stands_in_for_the_resource() {
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::builder(&auth)
        .expected_audience("mcp-client")
        .expected_resource(RESOURCE)
        .build()
        .unwrap();
    let jwt = JwtVerifier::builder()
        .expected_issuer(auth.issuer())
        .jwks_url(auth.jwks_url())
        .expected_audience("mcp-client")
        .expected_resource(RESOURCE)
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    for (name, base) in [
        ("introspection", common::serve(app(introspector, mcp_layer)).await),
        ("jwt", common::serve(app(jwt, mcp_layer)).await),
    ] {
        let post = |token: String| {
            http.post(format!("{base}/mcp"))
                .bearer_auth(token)
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
                .send()
        };
        let only_audience = if name == "jwt" {
            auth.mint_jwt(JwtSpec::rfc9068().aud("mcp-client"))
        } else {
            auth.mint(TokenSpec::new().aud("mcp-client"))
        };
        let response = post(only_audience).await.unwrap();
        assert_eq!(response.status(), 401, "{name}");
        let params = challenge_params(&challenge(&response));
        assert_eq!(params[2], ("error".into(), "invalid_token".into()), "{name}");
        let only_resource = if name == "jwt" {
            auth.mint_jwt(JwtSpec::rfc9068().aud(RESOURCE))
        } else {
            auth.mint(TokenSpec::new().aud(RESOURCE))
        };
        assert_eq!(post(only_resource).await.unwrap().status(), 401, "{name}");
        let both = if name == "jwt" {
            auth.mint_jwt(JwtSpec::rfc9068().claim("aud", serde_json::json!(["mcp-client", RESOURCE])))
        } else {
            auth.mint(TokenSpec::new().audiences(["mcp-client", RESOURCE]))
        };
        assert_eq!(post(both).await.unwrap().status(), 200, "{name}");
    }
}

#[test]
fn expected_resource_is_checked_at_build() {
    for bad in [
        "mcp.example.com",
        "https://mcp.example.com/mcp#x",
        "http://mcp.example.com/mcp",
    ] {
        assert!(
            tower_introspection::Introspector::builder("https://as.example/introspect")
                .client_secret_basic("a", "b")
                .expected_resource(bad)
                .build()
                .is_err(),
            "{bad}"
        );
        assert!(
            JwtVerifier::builder()
                .jwks_url("https://as.example/jwks")
                .expected_resource(bad)
                .build()
                .is_err(),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------- JSON-RPC guard

#[tokio::test]
async fn each_operation_needs_exactly_its_scopes() {
    let s = Mcp::new().await;
    let none = s.token("");
    let write = s.token("notes:write");
    for (token, method, tool, status, scope) in [
        (&none, "initialize", None, 200, None),
        (&none, "tools/list", None, 200, None),
        (&none, "tools/call", Some("whoami"), 200, None),
        (&none, "tools/call", Some("add_note"), 403, Some("notes:write")),
        (&write, "tools/call", Some("add_note"), 200, None),
        (
            &write,
            "tools/call",
            Some("archive"),
            403,
            Some("notes:write notes:admin"),
        ),
        (&none, "resources/read", None, 403, Some("notes:read")),
        (&write, "resources/read", None, 403, Some("notes:read")),
    ] {
        let response = s.call(token, method, tool).await;
        assert_eq!(response.status(), status, "{method} {tool:?}");
        if let Some(scope) = scope {
            let params = challenge_params(&challenge(&response));
            assert_eq!(
                params.last().unwrap(),
                &("scope".to_owned(), scope.to_owned()),
                "{method} {tool:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_body_reaches_the_server_unchanged() {
    let s = Mcp::new().await;
    let body = "  {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"add_note\",\"arguments\":{\"text\":\"é\"}}}\n";
    let response = s.post(Some(&s.token("notes:write")), body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), body);
}

#[tokio::test]
async fn notifications_batches_and_responses() {
    let s = Mcp::new().await;
    let none = s.token("");
    let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(s.post(Some(&none), notification).await.status(), 200);
    let response = r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#;
    assert_eq!(s.post(Some(&none), response).await.status(), 200);
    // A batch is refused as a whole for its first refused message.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"n:1"}},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add_note"}}]"#;
    let refused = s.post(Some(&none), batch).await;
    assert_eq!(refused.status(), 403);
    assert!(challenge(&refused).ends_with(r#"scope="notes:read""#));
    let allowed = s.post(Some(&s.token("notes:read notes:write")), batch).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(s.post(Some(&none), "[]").await.status(), 200);
}

#[tokio::test]
async fn unreadable_bodies_are_refused() {
    let s = Mcp::new().await;
    let write = s.token("notes:write");
    for body in [
        "",
        "not json",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"add_note"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"add_note"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["add_note"]}}"#,
    ] {
        let response = s.post(Some(&write), body).await;
        assert_eq!(response.status(), 400, "{body}");
        let params = challenge_params(&challenge(&response));
        assert_eq!(params[1], ("resource_metadata".into(), METADATA.into()));
        assert_eq!(params[2], ("error".into(), "invalid_request".into()));
    }
    // Over the limit (1 KiB here), announced or not.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"x":"{}"}}}}"#,
        "a".repeat(2000)
    );
    assert_eq!(s.post(Some(&write), big.clone()).await.status(), 400);
    assert_eq!(chunked_status(&s.base, &write, &big).await, 400);
    assert_eq!(chunked_status(&s.base, &write, "{}").await, 200);
}

/// The status of a POST whose body is sent chunked, without `Content-Length`.
async fn chunked_status(base: &str, token: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn other_methods_and_hierarchies() {
    // GET (an event stream) needs the default scopes.
    let auth = TestAuthServer::start().await.unwrap();
    let introspector = common::builder(&auth)
        .expected_resource(RESOURCE)
        .build()
        .unwrap();
    let mcp = Router::new()
        .route("/mcp", post(|| async { "ok" }).get(|| async { "stream" }))
        .route_layer(
            JsonRpcScopes::new()
                .default_scopes(["notes"])
                .tool("add_note", ["notes:write"])
                .matcher(Hierarchical),
        )
        .route_layer(mcp_layer(IntrospectionLayer::new(introspector)));
    let base = common::serve(mcp).await;
    let http = reqwest::Client::new();
    let token = |scopes: &str| auth.mint(TokenSpec::new().scope(scopes).aud(RESOURCE));
    let get = |token: String| http.get(format!("{base}/mcp")).bearer_auth(token).send();
    assert_eq!(get(token("notes")).await.unwrap().status(), 200);
    let refused = get(token("other")).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(challenge(&refused).ends_with(r#"scope="notes""#));
    // `notes` grants `notes:write` hierarchically.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_note"}}"#;
    let post = |token: String| {
        http.post(format!("{base}/mcp"))
            .bearer_auth(token)
            .body(call)
            .send()
    };
    assert_eq!(post(token("notes")).await.unwrap().status(), 200);
    assert_eq!(post(token("notes:read")).await.unwrap().status(), 403);
}

#[tokio::test]
async fn no_layer_in_front_is_a_server_error_and_anonymous_is_401() {
    let guard_only = Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .route_layer(JsonRpcScopes::new().tool("add_note", ["notes:write"]));
    let base = common::serve(guard_only).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);

    let s = Mcp::with(|layer| mcp_layer(layer).allow_anonymous(true)).await;
    let anonymous = s.post(None, "{}").await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        challenge(&anonymous),
        format!(r#"Bearer realm="api", resource_metadata="{METADATA}""#)
    );
}

/// A scope no token can hold (a space, a quote, non-ASCII, empty) is a
/// `ConfigError` from the `try_` methods; the infallible ones make the guard
/// refuse every request with 500 instead of a 403 naming a cleaned-up scope.
#[tokio::test]
async fn scope_rules_refuse_what_no_token_can_hold() {
    for bad in [
        "notes write",
        "notes\"write",
        "notes\\write",
        "n\u{f6}tes",
        "",
        "notes\twrite",
    ] {
        assert!(
            JsonRpcScopes::new().try_tool("add_note", [bad]).is_err(),
            "{bad:?}"
        );
        assert!(
            JsonRpcScopes::new().try_method("m", ["ok", bad]).is_err(),
            "{bad:?}"
        );
        assert!(JsonRpcScopes::new().try_default_scopes([bad]).is_err(), "{bad:?}");
    }
    assert!(JsonRpcScopes::new()
        .try_tool(
            "add_note",
            [
                "notes:write",
                "https://x.example/notes!#$%&'()*+,-./:;<=>?@[]^_`{|}~"
            ]
        )
        .and_then(|g| g.try_method("m", Vec::<String>::new()))
        .and_then(|g| g.try_default_scopes(["notes:read"]))
        .is_ok());

    let s = Mcp::new().await;
    let token = s.token("notes:read notes:write");
    for (guard, status) in [
        (JsonRpcScopes::new().tool("add_note", ["notes:write"]), 200),
        (JsonRpcScopes::new().tool("add_note", ["notes write"]), 500),
        (JsonRpcScopes::new().method("tools/list", ["n\u{f6}tes"]), 500),
        (JsonRpcScopes::new().default_scopes(["\"notes\""]), 500),
    ] {
        let app = Router::new()
            .route("/mcp", post(|body: String| async move { body }))
            .route_layer(guard)
            .route_layer(mcp_layer(IntrospectionLayer::new(
                common::builder(&s.auth)
                    .expected_resource(RESOURCE)
                    .build()
                    .unwrap(),
            )));
        let base = common::serve(app).await;
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_note"}}"#,
        ] {
            let response = s
                .http
                .post(format!("{base}/mcp"))
                .bearer_auth(&token)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{body}");
        }
    }
}

// ---------------------------------------------------------------- the example

/// `examples/mcp_server.rs` (rmcp) with the test AS's JWTs: the `listening
/// on http://ADDR/mcp` line, the curl contract (401 with
/// `resource_metadata`), its metadata, the audience check and the per-tool
/// scope, over real TCP. (The official TypeScript client drives it in
/// `tests/interop/mcp.sh`.)
#[tokio::test]
async fn the_rmcp_example_server() {
    use std::io::{BufRead, BufReader};
    let auth = TestAuthServer::start().await.unwrap();
    let mut child = std::process::Command::new(common::example("mcp_server"))
        .env_remove("INTROSPECTION_URL")
        .env("JWT_ISSUER", auth.issuer())
        .env("AUTHORIZATION_SERVERS", auth.issuer())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Off the runtime: the example asks the test AS (on this runtime) for its
    // metadata before it prints the line.
    let line = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next())
        .await
        .unwrap();
    let result = async {
        let line = line.expect("the listening line").unwrap();
        let url = line.strip_prefix("listening on ").unwrap().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
            "{url}"
        );
        let metadata_url = url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp");
        let http = reqwest::Client::new();

        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            challenge(&response),
            format!(r#"Bearer realm="api", resource_metadata="{metadata_url}""#)
        );
        let document: serde_json::Value = http
            .get(&metadata_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(document["resource"], url.as_str());
        assert_eq!(
            document["authorization_servers"],
            serde_json::json!([auth.issuer()])
        );

        let post = |token: String, body: &'static str| {
            http.post(&url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body)
                .send()
        };
        let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let ours = auth.mint_jwt(JwtSpec::rfc9068().aud(url.as_str()).scope("notes:read"));
        assert_eq!(post(ours.clone(), initialize).await.unwrap().status(), 200);
        let theirs = auth.mint_jwt(JwtSpec::rfc9068().aud("https://other.example/mcp"));
        let refused = post(theirs, initialize).await.unwrap();
        assert_eq!(refused.status(), 401);
        assert!(challenge(&refused).contains(r#"error="invalid_token""#));
        let add_note = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add_note","arguments":{"text":"x"}}}"#;
        let denied = post(ours.clone(), add_note).await.unwrap();
        assert_eq!(denied.status(), 403);
        assert_eq!(
            challenge(&denied),
            format!(
                r#"Bearer realm="api", resource_metadata="{metadata_url}", error="insufficient_scope", scope="notes:write""#
            )
        );

        // A session belongs to the principal that opened it: another valid
        // token with its id gets 404, the owner goes on.
        let in_session = |token: String, session: String, body: &'static str| {
            http.post(&url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .body(body)
                .send()
        };
        let alice = auth.mint_jwt(JwtSpec::rfc9068().aud(url.as_str()).sub("alice").client_id("app"));
        let opened = post(alice.clone(), initialize).await.unwrap();
        assert_eq!(opened.status(), 200);
        let session = opened.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
        for other in [
            JwtSpec::rfc9068().aud(url.as_str()).sub("bob").client_id("app"),
            JwtSpec::rfc9068()
                .aud(url.as_str())
                .sub("alice")
                .client_id("other-app"),
        ] {
            let other = auth.mint_jwt(other);
            for body in [initialized, list] {
                let response = in_session(other.clone(), session.clone(), body).await.unwrap();
                assert_eq!(response.status(), 404, "{body}");
            }
        }
        let response = in_session(alice.clone(), session.clone(), initialized)
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let response = in_session(alice.clone(), session.clone(), list).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("whoami"));
        // Another token of the same principal may go on with it.
        let alice_again = auth.mint_jwt(
            JwtSpec::rfc9068()
                .aud(url.as_str())
                .sub("alice")
                .client_id("app")
                .scope("notes:read"),
        );
        let response = in_session(alice_again, session.clone(), list).await.unwrap();
        assert_eq!(response.status(), 200);
    };
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `examples/mcp_server.rs` run as a process with the test AS's JWTs and
/// `env`; its stderr (the log) comes line by line. Killed when dropped.
struct McpExample {
    child: std::process::Child,
    url: String,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
    http: reqwest::Client,
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;

impl McpExample {
    async fn start(auth: &TestAuthServer, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(common::example("mcp_server"));
        command
            .env_remove("INTROSPECTION_URL")
            .env("JWT_ISSUER", auth.issuer())
            .env("AUTHORIZATION_SERVERS", auth.issuer())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn,mcp_server=info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines, log) = tokio::sync::mpsc::unbounded_channel();
        // Drained all along, so the example never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        // Off the runtime: the example asks the test AS (on this runtime) for
        // its metadata before it prints the line.
        let line = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next())
            .await
            .unwrap();
        // Built first, so a failure below still kills the example.
        let mut example = Self {
            child,
            url: String::new(),
            log,
            http: reqwest::Client::new(),
        };
        let line = line.expect("the listening line").unwrap();
        example.url = line.strip_prefix("listening on ").unwrap().to_owned();
        example
    }

    fn token(&self, auth: &TestAuthServer, sub: &str) -> String {
        auth.mint_jwt(
            JwtSpec::rfc9068()
                .aud(self.url.as_str())
                .sub(sub)
                .client_id("app")
                .scope("notes:read"),
        )
    }

    /// A POST of `body` with `token`, in `session` if given.
    async fn post(&self, token: &str, session: Option<&str>, body: &'static str) -> reqwest::Response {
        let mut request = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send().await.unwrap()
    }

    /// Opens a session for `token`; its id.
    async fn open(&self, token: &str) -> String {
        let opened = self.post(token, None, INITIALIZE).await;
        assert_eq!(opened.status(), 200);
        let session = opened.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        assert_eq!(self.post(token, Some(&session), INITIALIZED).await.status(), 202);
        session
    }

    /// The status of `tools/list` in `session` with `token`.
    async fn list(&self, token: &str, session: &str) -> u16 {
        self.post(token, Some(session), TOOLS_LIST)
            .await
            .status()
            .as_u16()
    }

    /// Waits (a minute at most: the machine may be slow) for a log line
    /// containing `needle`; returns it.
    async fn logged(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, self.log.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the example exited before logging {needle:?}"),
                Err(_) => panic!("no {needle:?} in the example's log within a minute"),
            }
        }
    }
}

impl Drop for McpExample {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session left unused for the keep-alive (`MCP_SESSION_KEEP_ALIVE_SECS`,
/// rmcp's and the owner record's) is forgotten: the example logs each one
/// going, down to none held, and its id is 404 for its owner and everyone
/// else from then on.
#[tokio::test]
async fn the_rmcp_example_forgets_sessions_unused_for_the_keep_alive() {
    let auth = TestAuthServer::start().await.unwrap();
    let mut example = McpExample::start(&auth, &[("MCP_SESSION_KEEP_ALIVE_SECS", "3")]).await;
    let (alice, bob) = (example.token(&auth, "alice"), example.token(&auth, "bob"));
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let session = example.open(&alice).await;
        assert_eq!(example.list(&alice, &session).await, 200);
        sessions.push(session);
    }
    // Abandoned: nothing is sent until all three are logged gone, the last
    // leaving none held.
    let mut line = String::new();
    for _ in 0..3 {
        line = example.logged("MCP session closed: unused for 3s").await;
    }
    assert!(line.ends_with("; 0 open"), "{line}");
    for session in &sessions {
        assert_eq!(example.list(&alice, session).await, 404);
        assert_eq!(example.list(&bob, session).await, 404);
    }
    // A new session opens and works.
    let session = example.open(&alice).await;
    assert_eq!(example.list(&alice, &session).await, 200);
    assert_eq!(example.list(&bob, &session).await, 404);
}

/// At `MCP_MAX_SESSIONS`, opening a session closes the least recently used
/// one: its id is 404 for its owner as for everyone (a forgotten session is
/// no one's), the others go on for their owner only.
#[tokio::test]
async fn the_rmcp_example_caps_sessions_and_fails_closed() {
    let auth = TestAuthServer::start().await.unwrap();
    let mut example = McpExample::start(&auth, &[("MCP_MAX_SESSIONS", "2")]).await;
    let (alice, bob) = (example.token(&auth, "alice"), example.token(&auth, "bob"));
    let first = example.open(&alice).await;
    let second = example.open(&alice).await;
    // `second` is now the least recently used.
    assert_eq!(example.list(&alice, &first).await, 200);
    let third = example.open(&bob).await;
    for token in [&alice, &bob] {
        assert_eq!(example.list(token, &second).await, 404);
    }
    assert_eq!(example.list(&alice, &first).await, 200);
    assert_eq!(example.list(&bob, &first).await, 404);
    assert_eq!(example.list(&bob, &third).await, 200);
    assert_eq!(example.list(&alice, &third).await, 404);
    let line = example.logged("MCP_MAX_SESSIONS (2) reached").await;
    assert!(line.ends_with("2 open"), "{line}");
}

/// A keep-alive or a cap the example cannot honour stops it with a message.
#[tokio::test]
async fn the_rmcp_example_refuses_bad_session_settings() {
    let auth = TestAuthServer::start().await.unwrap();
    for (name, value) in [
        ("MCP_SESSION_KEEP_ALIVE_SECS", "0"),
        ("MCP_SESSION_KEEP_ALIVE_SECS", "86401"),
        ("MCP_SESSION_KEEP_ALIVE_SECS", "soon"),
        ("MCP_MAX_SESSIONS", "0"),
        ("MCP_MAX_SESSIONS", "-1"),
        ("MCP_MAX_SESSIONS", "many"),
    ] {
        let mut child = std::process::Command::new(common::example("mcp_server"))
            .env_remove("INTROSPECTION_URL")
            .env("JWT_ISSUER", auth.issuer())
            .env("AUTHORIZATION_SERVERS", auth.issuer())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env(name, value)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The first line, or none once it exits (off the runtime, which the
        // test AS needs if the example gets as far as asking it).
        let line = tokio::task::spawn_blocking(move || {
            use std::io::{BufRead, BufReader};
            BufReader::new(stdout).lines().next()
        })
        .await
        .unwrap();
        if line.is_some() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        assert!(line.is_none(), "{name}={value}: it started: {line:?}");
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}
