//! Shared pieces of the integration tests: a real axum app behind the layer,
//! served over TCP on 127.0.0.1, and a real HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_introspection::test_util::TestAuthServer;
use tower_introspection::{
    introspection::IntrospectorBuilder, scope::RequireScope, scope_requirement, IntrospectionLayer,
    Introspector, Principal, Scoped,
};

scope_requirement! {
    pub Read: "read";
    pub Write: "write";
    pub ScopeA: "a";
    pub ScopeB: "b";
    pub ReadAndWrite: all("read", "write");
    pub ReadOrAdmin: any("read", "admin");
    pub EditorsOrAdmin: ["items:write", "items:read"] | ["admin"];
    pub ItemsReadTree: "items:read", using tower_introspection::scope::Hierarchical;
    pub ItemsReadWild: "items:read", using tower_introspection::scope::Wildcard;
}

/// The resource server's credentials registered in the test AS by default.
pub const RS_ID: &str = "rs-client";
pub const RS_SECRET: &str = "rs-secret";

pub fn builder(auth: &TestAuthServer) -> IntrospectorBuilder {
    Introspector::builder(auth.introspection_url()).client_secret_basic(RS_ID, RS_SECRET)
}

pub fn introspector(auth: &TestAuthServer) -> Introspector {
    builder(auth).build().expect("valid configuration")
}

/// Every route the tests use, behind `layer`; `/public` and `/unprotected`
/// are outside it.
pub fn app(layer: IntrospectionLayer) -> Router {
    let admin = Router::new()
        .route("/admin", get(|| async { "admin" }))
        .route_layer(RequireScope::all(["admin"]));
    let any_group = Router::new()
        .route("/group-any", get(|| async { "any" }))
        .route_layer(RequireScope::any(["read", "admin"]));
    let protected = Router::new()
        .route("/ping", get(|| async { "ok" }))
        .route("/whoami", get(whoami))
        .route("/confirmation", get(confirmation))
        .route(
            "/items",
            get(|_: Scoped<Read>| async { "list" }).post(|_: Scoped<Write>| async { "created" }),
        )
        .route("/a", get(|_: Scoped<ScopeA>| async { "a" }))
        .route("/b", get(|_: Scoped<ScopeB>| async { "b" }))
        .route("/read-write", get(|_: Scoped<ReadAndWrite>| async { "rw" }))
        .route("/read-or-admin", get(|_: Scoped<ReadOrAdmin>| async { "ra" }))
        .route("/editors", get(|_: Scoped<EditorsOrAdmin>| async { "ed" }))
        .route("/tree", get(|_: Scoped<ItemsReadTree>| async { "tree" }))
        .route("/wild", get(|_: Scoped<ItemsReadWild>| async { "wild" }))
        .route("/maybe", get(maybe))
        .route("/form", post(|| async { "posted" }))
        .merge(admin)
        .merge(any_group)
        .route_layer(layer);
    Router::new()
        .route("/public", get(|| async { "ok" }))
        .route("/unprotected/whoami", get(whoami))
        .route("/unprotected/scoped", get(|_: Scoped<Read>| async { "never" }))
        .route("/unprotected/maybe", get(maybe))
        .merge(protected)
}

async fn whoami(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.subject(),
        "username": principal.username(),
        "client_id": principal.client_id(),
        "scope": principal.scopes().to_string(),
        "exp": principal.expires_at(),
        "aud": principal.audiences().collect::<Vec<_>>(),
    }))
}

/// What the principal says of its DPoP binding (RFC 9449 §6).
async fn confirmation(principal: Principal) -> Json<Value> {
    Json(json!({
        "bound": principal.is_dpop_bound(),
        "jkt": principal.dpop_jkt(),
        "cnf": principal.confirmation(),
    }))
}

async fn maybe(principal: Option<Principal>) -> String {
    match principal {
        Some(p) => format!("user:{}", p.subject().unwrap_or("?")),
        None => "anonymous".to_owned(),
    }
}

/// An example binary, which `cargo test` builds next to the test binaries'
/// `deps` directory.
pub fn example(name: &str) -> std::path::PathBuf {
    std::env::current_exe()
        .expect("test binary path")
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory")
        .join("examples")
        .join(name)
}

/// An example server running as a child process, stopped when dropped.
pub struct ExampleServer {
    child: std::process::Child,
    /// `http://ADDR`, from its `listening on` line.
    pub base: String,
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the example `name` with the variables `vars` set (and
/// `LISTEN_ADDR` on a free loopback port unless given) and `removed`
/// unset; waits for its `listening on` line.
pub fn start_example(name: &str, vars: &[(&str, &str)], removed: &[&str]) -> ExampleServer {
    use std::io::{BufRead, BufReader};
    let mut command = std::process::Command::new(example(name));
    command.env("LISTEN_ADDR", "127.0.0.1:0");
    for name in removed {
        command.env_remove(name);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().expect("its stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let Some(base) = line.strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{name} did not start: {line:?}");
    };
    ExampleServer { child, base }
}

/// Serves `router` on a free loopback port; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A test AS, an introspector built by `configure`, and the app served.
pub struct Setup {
    pub auth: TestAuthServer,
    pub introspector: Introspector,
    pub base: String,
    pub http: reqwest::Client,
}

impl Setup {
    pub async fn new() -> Self {
        Self::with(|b| b, |l| l).await
    }

    pub async fn with(
        configure: impl FnOnce(IntrospectorBuilder) -> IntrospectorBuilder,
        layer: impl FnOnce(IntrospectionLayer) -> IntrospectionLayer,
    ) -> Self {
        let auth = TestAuthServer::start().await.expect("test AS");
        let introspector = configure(builder(&auth)).build().expect("valid configuration");
        let base = serve(app(layer(IntrospectionLayer::new(introspector.clone())))).await;
        Self {
            auth,
            introspector,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.send().await.expect("request")
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request")
    }

    pub async fn status(&self, path: &str, token: Option<&str>) -> u16 {
        self.get(path, token).await.status().as_u16()
    }
}

/// The `WWW-Authenticate` header, which must be present.
pub fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate header")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

/// Parses `Bearer name="value", …`; panics on anything else, and on a
/// parameter given twice (B9).
pub fn challenge_params(header: &str) -> Vec<(String, String)> {
    let rest = header
        .strip_prefix("Bearer ")
        .expect("Bearer scheme with parameters");
    let mut params: Vec<(String, String)> = Vec::new();
    let mut rest = rest;
    loop {
        let eq = rest.find("=\"").expect("name=\"value\"");
        let name = rest[..eq].to_owned();
        let after = &rest[eq + 2..];
        let close = after.find('"').expect("closing quote");
        assert!(
            params.iter().all(|(n, _)| *n != name),
            "{name} appears twice in {header}"
        );
        params.push((name, after[..close].to_owned()));
        rest = &after[close + 1..];
        if rest.is_empty() {
            return params;
        }
        rest = rest.strip_prefix(", ").expect("parameters separated by \", \"");
    }
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Captures every `tracing` event at TRACE level on this thread while the
/// returned handle lives. Use with a current-thread runtime (the default of
/// `#[tokio::test]`), so the test AS and the HTTP client log here too.
pub fn capture_logs() -> CapturedLogs {
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let text = buffer.0.clone();
    CapturedLogs {
        _guard: guard,
        text: Box::new(move || String::from_utf8_lossy(&text.lock().unwrap()).into_owned()),
    }
}

pub struct CapturedLogs {
    _guard: tracing::subscriber::DefaultGuard,
    text: Box<dyn Fn() -> String>,
}

impl CapturedLogs {
    pub fn text(&self) -> String {
        (self.text)()
    }
}
