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
//! | `MCP_SESSION_KEEP_ALIVE_SECS` | how long an MCP session may stay unused before it ends (rmcp's session keep-alive, and the life of its owner entry), 1 to 86400; default 300 |
//! | `MCP_MAX_SESSIONS` | how many sessions may be open at once; at the cap, opening one closes the least recently used (its owner gets 404 and opens a new one). Default 10000 |
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
//! another principal presents its id, or an id it does not know. The record
//! is bounded like rmcp's sessions: an entry unused for the keep-alive is
//! forgotten, at most `MCP_MAX_SESSIONS` are kept, and a session whose entry
//! goes is closed in rmcp too, so no one can use it after. Copy it with the
//! rest.
//!
//! Prints `listening on http://ADDR/mcp` once it accepts connections; exits
//! non-zero with a message on bad configuration.

#[path = "settings/mod.rs"]
mod settings;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{HeaderValue, Method, StatusCode};
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::{
    SessionId, SessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use serde_json::json;
use tower_introspection::{
    jsonrpc::JsonRpcScopes, metadata::ProtectedResourceMetadata, IntrospectionLayer, Principal,
};

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

/// Who may use each MCP session: pairs of an `Mcp-Session-Id` and the `iss`,
/// `sub` and `client_id` of the token that opened it. Bounded as rmcp's
/// sessions are: a pair unused for the keep-alive is forgotten (rmcp ends
/// the session then too), and past the cap the least recently used goes.
/// A session whose pair goes is closed in rmcp, and its id is answered 404
/// for everyone: a forgotten session is no one's.
#[derive(Clone)]
struct SessionOwners {
    owners: Cache<(HeaderValue, Owner), ()>,
    /// Pairs held, for the log: counted before they go in, so never below.
    open: Arc<AtomicUsize>,
}

type Owner = (Option<String>, Option<String>, Option<String>);

impl SessionOwners {
    fn new(keep_alive: Duration, max: u64, sessions: Arc<LocalSessionManager>) -> Result<Self, String> {
        // Closing runs on the runtime, not in the cache's housekeeping.
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        let open = Arc::new(AtomicUsize::new(0));
        let held = open.clone();
        let owners = Cache::builder()
            .max_capacity(max)
            .time_to_idle(keep_alive)
            // The newest session always gets in (TinyLFU could refuse it,
            // leaving a session no one can use).
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |pair: Arc<(HeaderValue, Owner)>, (), cause| {
                let left = decrement(&held);
                match cause {
                    RemovalCause::Expired => tracing::info!(
                        "MCP session closed: unused for {}s; {left} open",
                        keep_alive.as_secs()
                    ),
                    RemovalCause::Size => tracing::warn!(
                        "MCP session closed: MCP_MAX_SESSIONS ({max}) reached, the least recently used made room; {left} open"
                    ),
                    // Deleted, or already gone from rmcp.
                    RemovalCause::Explicit | RemovalCause::Replaced => {
                        tracing::debug!("MCP session forgotten; {left} open");
                        return;
                    }
                }
                let Ok(id) = pair.0.to_str() else { return };
                let id: SessionId = id.into();
                let sessions = sessions.clone();
                runtime.spawn(async move {
                    // Gone already (rmcp's own keep-alive) is fine.
                    let _ = sessions.close_session(&id).await;
                });
            })
            .build();
        Ok(Self { owners, open })
    }

    /// Records that `owner` opened `id`.
    async fn insert(&self, id: HeaderValue, owner: Owner) {
        self.open.fetch_add(1, Ordering::Relaxed);
        if !self.owners.entry((id, owner)).or_insert(()).await.is_fresh() {
            decrement(&self.open);
        }
        // Hold the cap now, not at the next housekeeping.
        self.owners.run_pending_tasks().await;
    }
}

/// One less in `count`, never below zero; what is left.
fn decrement(count: &AtomicUsize) -> usize {
    let before = count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(1))
        })
        .unwrap_or_default();
    before.saturating_sub(1)
}

/// Runs the cache's housekeeping every `period`, so sessions unused for the
/// keep-alive are closed and counted out even when no request comes.
fn sweep(owners: &SessionOwners, period: Duration) {
    let owners = owners.owners.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            owners.run_pending_tasks().await;
        }
    });
}

const SESSION_ID: &str = "mcp-session-id";

/// `MCP_MAX_SESSIONS` unset: a session is a task and a few channels in
/// rmcp, an entry here.
const DEFAULT_MAX_SESSIONS: u64 = 10_000;

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
    let Some(id) = request.headers().get(SESSION_ID).cloned() else {
        let response = next.run(request).await;
        if let Some(opened) = response.headers().get(SESSION_ID) {
            if response.status().is_success() {
                owners.insert(opened.clone(), caller).await;
            }
        }
        return response;
    };
    // Someone else's session, or one not recorded (never opened here, or
    // forgotten: idle or past the cap) is not handed on. Only the owner's
    // use keeps the pair alive.
    let pair = (id, caller);
    if owners.owners.get(&pair).await.is_none() {
        return (StatusCode::NOT_FOUND, "no such session").into_response();
    }
    let closing = request.method() == Method::DELETE;
    let response = next.run(request).await;
    // Closed, or gone from rmcp (its keep-alive): forget it.
    if response.status() == StatusCode::NOT_FOUND || (closing && response.status().is_success()) {
        owners.owners.invalidate(&pair).await;
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
    let keep_alive = match settings::secs("MCP_SESSION_KEEP_ALIVE_SECS")? {
        None => SessionConfig::DEFAULT_KEEP_ALIVE,
        Some(secs) if (1..=86_400).contains(&secs.as_secs()) => secs,
        Some(secs) => {
            return Err(format!(
                "MCP_SESSION_KEEP_ALIVE_SECS must be 1 to 86400, got {}",
                secs.as_secs()
            ))
        }
    };
    let max_sessions = match var("MCP_MAX_SESSIONS") {
        None => DEFAULT_MAX_SESSIONS,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(max) if max > 0 => max,
            _ => {
                return Err(format!(
                    "MCP_MAX_SESSIONS must be a whole number above 0, got {v:?}"
                ))
            }
        },
    };
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
    // rmcp ends a session unused for `keep_alive` (its worker's idle
    // timeout); the owners forget it after the same time.
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(keep_alive);
    let sessions = Arc::new(sessions);
    let owners = SessionOwners::new(keep_alive, max_sessions, sessions.clone())?;
    sweep(
        &owners,
        (keep_alive / 2).clamp(Duration::from_millis(500), Duration::from_secs(60)),
    );
    let mcp = StreamableHttpService::new(
        move || Ok(Notes::new(notes.clone())),
        sessions,
        StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts),
    );

    let app = Router::new()
        .route_service(resource_url.path(), mcp)
        .route_layer(from_fn_with_state(owners, bind_sessions))
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
