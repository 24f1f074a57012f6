//! An MCP server (the official Rust SDK, `rmcp`, Streamable HTTP) protected
//! as the MCP authorization specification asks: RFC 9728 metadata, a
//! `resource_metadata` pointer in every challenge, tokens only for this
//! resource (RFC 8707 audience), and per-tool scopes answered with 403
//! `insufficient_scope` so clients can step up.
//!
//! ```text
//! JWT_ISSUER=https://as.example AUTHORIZATION_SERVERS=https://as.example \
//!     cargo run --example mcp_server
//! curl -i http://127.0.0.1:3001/mcp    # 401, resource_metadata="http://127.0.0.1:3001/.well-known/oauth-protected-resource/mcp"
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `INTROSPECTION_URL`, `CLIENT_ID`, `CLIENT_SECRET`, `CLIENT_AUTH`, `TOKEN_URL`, `TOKEN_SCOPE`, `EXPECTED_ISSUER`, `EXPECTED_AUDIENCE`, `JWT_ISSUER`, `JWKS_URL`, `JWT_PUBLIC_KEY_FILE`, `JWT_PROFILE`, `JWT_ALGORITHMS`, `CACHE_MAX_TTL_SECS`, `CACHE_NEGATIVE_TTL_SECS`, `ALLOW_INSECURE_HTTP`, `REALM` | as for `resource_server` (an introspection endpoint, a JWT source, or both) |
//! | `RESOURCE_URL` | the canonical URI of the MCP endpoint; tokens must name it in `aud`, whatever `EXPECTED_AUDIENCE` says (that is an extra condition, never an alternative). Default `http://LISTEN_ADDR/mcp` |
//! | `AUTHORIZATION_SERVERS` | issuer URLs for the metadata, comma-separated (required: MCP clients find the AS here) |
//! | `LISTEN_ADDR` | default `127.0.0.1:3001` |
//!
//! Tools: `whoami` (any valid token: the caller's `sub`, `client_id` and
//! scopes, read from the `Principal` rmcp hands the tool in the request
//! parts) and `add_note` (scope `notes:write`). The metadata advertises
//! `notes:read notes:write`.
//!
//! The token is never passed on: a tool that calls another API must get its
//! own token for it (the MCP specification forbids token passthrough), which
//! is why the layer marks the `Authorization` header sensitive and tools only
//! see the `Principal`.
//!
//! Each MCP session belongs to the principal that opened it: rmcp's session
//! manager accepts any valid token with any `Mcp-Session-Id`, so
//! `bind_sessions` records who opened each session (`iss`, `sub`,
//! `client_id`) and answers 404 (the MCP answer for an unknown session) when
//! another principal presents its id. Copy it with the rest.
//!
//! Prints `listening on http://ADDR/mcp` once it accepts connections; exits
//! non-zero with a message on bad configuration.

#[path = "settings/mod.rs"]
mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{HeaderValue, Method, StatusCode};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use serde_json::json;
use tower_introspection::{IntrospectionLayer, JsonRpcScopes, Principal, ProtectedResourceMetadata};

use settings::{list, var};

/// The MCP server: two tools over a shared note list.
#[derive(Clone)]
struct Notes {
    notes: Arc<Mutex<Vec<String>>>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddNote {
    /// The text of the note.
    text: String,
}

impl Notes {
    fn new(notes: Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            notes,
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl Notes {
    #[tool(description = "Who the caller is, as the access token says")]
    async fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        // Put there by the introspection layer; rmcp hands tools the request parts.
        let Some(principal) = parts.extensions.get::<Principal>() else {
            return json!({ "error": "no principal" }).to_string();
        };
        json!({
            "sub": principal.subject(),
            "client_id": principal.client_id(),
            "scope": principal.scopes().to_string(),
        })
        .to_string()
    }

    #[tool(description = "Add a note (needs the notes:write scope)")]
    async fn add_note(&self, Parameters(AddNote { text }): Parameters<AddNote>) -> String {
        let mut notes = match self.notes.lock() {
            Ok(notes) => notes,
            Err(poisoned) => poisoned.into_inner(),
        };
        notes.push(text);
        format!("{} notes", notes.len())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Notes, protected by tower-introspection")
    }
}

/// Who may use each MCP session: the `iss`, `sub` and `client_id` of the
/// token that opened it, by `Mcp-Session-Id`.
#[derive(Clone, Default)]
struct SessionOwners(Arc<Mutex<HashMap<HeaderValue, Owner>>>);

type Owner = (Option<String>, Option<String>, Option<String>);

impl SessionOwners {
    fn lock(&self) -> MutexGuard<'_, HashMap<HeaderValue, Owner>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

const SESSION_ID: &str = "mcp-session-id";

/// Binds each session to the principal that opened it. Behind the
/// introspection layer (which puts the `Principal` there); fails closed
/// without one.
async fn bind_sessions(State(owners): State<SessionOwners>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let caller: Owner = (
        principal.issuer().map(str::to_owned),
        principal.subject().map(str::to_owned),
        principal.client_id().map(str::to_owned),
    );
    let session = request.headers().get(SESSION_ID).cloned();
    if let Some(id) = &session {
        // Unknown ids go on: rmcp answers 404 for sessions it does not have,
        // and every session it has was opened through here.
        if owners.lock().get(id).is_some_and(|owner| *owner != caller) {
            return (StatusCode::NOT_FOUND, "no such session").into_response();
        }
    }
    let closing = request.method() == Method::DELETE;
    let response = next.run(request).await;
    match (session, response.headers().get(SESSION_ID)) {
        (None, Some(opened)) if response.status().is_success() => {
            owners.lock().entry(opened.clone()).or_insert(caller);
        }
        // Closed, or gone from rmcp (expired): forget it.
        (Some(id), _)
            if response.status() == StatusCode::NOT_FOUND || (closing && response.status().is_success()) =>
        {
            owners.lock().remove(&id);
        }
        _ => {}
    }
    response
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mcp_server: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let listen: SocketAddr = var("LISTEN_ADDR")
        .unwrap_or_else(|| "127.0.0.1:3001".into())
        .parse()
        .map_err(|e| format!("LISTEN_ADDR: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let resource = var("RESOURCE_URL").unwrap_or_else(|| format!("http://{addr}/mcp"));
    let authorization_servers = list("AUTHORIZATION_SERVERS");
    if authorization_servers.is_empty() {
        return Err(
            "AUTHORIZATION_SERVERS is required: MCP clients find the authorization server in the metadata"
                .into(),
        );
    }

    let mut metadata = ProtectedResourceMetadata::builder(&resource);
    for issuer in authorization_servers {
        metadata = metadata.authorization_server(issuer);
    }
    let metadata = metadata
        .scopes_supported(["notes:read", "notes:write"])
        .resource_name("tower-introspection MCP example")
        .allow_insecure_http(settings::flag("ALLOW_INSECURE_HTTP")?)
        .build()
        .map_err(|e| format!("RESOURCE_URL / AUTHORIZATION_SERVERS: {e}"))?;
    let verifier = settings::verifier(Some(metadata.resource())).await?;
    let mut auth = IntrospectionLayer::new(verifier)
        .resource_metadata(metadata.url())
        .map_err(|e| e.to_string())?;
    if let Some(realm) = var("REALM") {
        auth = auth.realm(realm).map_err(|e| format!("REALM: {e}"))?;
    }

    // rmcp refuses Host headers it does not know (DNS rebinding): allow the
    // resource's own.
    let resource_url = url::Url::parse(metadata.resource()).map_err(|e| e.to_string())?;
    let mut allowed_hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    allowed_hosts.extend(resource_url.host_str().map(str::to_owned));
    let notes = Arc::new(Mutex::new(Vec::new()));
    let mcp = StreamableHttpService::new(
        move || Ok(Notes::new(notes.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts),
    );

    let app = Router::new()
        .route_service(resource_url.path(), mcp)
        .route_layer(from_fn_with_state(SessionOwners::default(), bind_sessions))
        .route_layer(JsonRpcScopes::new().tool("add_note", ["notes:write"]))
        .route_layer(auth)
        .route_service(metadata.path(), metadata.service());

    println!("listening on http://{addr}{}", resource_url.path());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
