//! [`JsonRpcScopes`]: the layer, and the rules it is built with.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{Rule, Rules, DEFAULT_MAX_JSONRPC_BODY};
use crate::error::ConfigError;
use crate::rejection::JsonBody;
use crate::scope::{Exact, ScopeMatcher};

/// A layer requiring scopes per JSON-RPC operation: it reads the body, finds
/// the operation — the `method`, and for MCP's `tools/call` the tool's
/// `params.name` — and answers 403 `insufficient_scope` naming exactly that
/// operation's scopes (with `resource_metadata` when the introspection layer
/// has it) when the token lacks them, before the server behind it runs, so
/// that clients can step up (MCP authorization, "Scope Challenge Handling").
///
/// Place it inside [`IntrospectionLayer`](crate::IntrospectionLayer) (with
/// axum: `.route_layer(JsonRpcScopes…)` before `.route_layer(IntrospectionLayer…)`).
///
/// How each request is handled:
///
/// - **The most specific rule wins**: a [`tool`](JsonRpcScopes::tool) rule
///   for `tools/call` of that tool, else a [`method`](JsonRpcScopes::method)
///   rule, else the [`default_scopes`](JsonRpcScopes::default_scopes) (none
///   unless set). Scopes are matched with the
///   [`matcher`](JsonRpcScopes::matcher) (default [`Exact`]; [`Hierarchical`](crate::scope::Hierarchical)
///   and [`Wildcard`](crate::scope::Wildcard) account for scope hierarchies).
/// - **Bodies are bounded**: a `POST` body is read up to
///   [`max_body`](JsonRpcScopes::max_body) bytes (default 4 MiB) and handed
///   on unchanged; a larger one is answered 400 `invalid_request`.
/// - **Not JSON-RPC**: a `POST` body that is not a JSON-RPC message or batch
///   (whatever its `Content-Type`) is answered 400 `invalid_request`, and so
///   is a message whose `method` or tool name is not a string, or that
///   repeats `method`, `params` or `name`: what the guard cannot read, it
///   does not let through, so no parser difference can smuggle an operation
///   past it.
/// - **Notifications** (no `id`) are operations like requests: a rule for
///   their method applies. **Responses** (no `method`, answers to the
///   server's requests) need nothing.
/// - **Batches** (JSON arrays, allowed by MCP 2025-03-26): every message
///   must be allowed; the 403 names the scopes of the first one refused. An
///   empty batch is handed on (the server answers it).
/// - **Other methods** (`GET` for a server-sent event stream, `DELETE` to end
///   a session) carry no JSON-RPC message: they need the default scopes.
/// - No [`Principal`](crate::Principal) (no introspection layer in front, or an anonymous
///   request): 500 or 401, as [`RequireScope`](crate::scope::RequireScope) answers.
/// - **A rule with a scope no token can hold** (empty, or not printable
///   ASCII without spaces, `"` and `\\`, RFC 6749 §3.3): the `try_` methods
///   ([`try_tool`](JsonRpcScopes::try_tool), …) return a
///   [`ConfigError`]; the others make the guard answer every request 500
///   (logged), rather than a 403 whose challenge could not name it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::post, Router};
/// use tower::ServiceExt;
/// use tower_introspection::test_util::TestAuthServer;
/// use tower_introspection::{IntrospectionLayer, Introspector, jsonrpc::JsonRpcScopes};
///
/// let auth_server = TestAuthServer::start().await?;
/// let introspector = Introspector::builder(auth_server.introspection_url())
///     .client_secret_basic("rs-client", "rs-secret")
///     .build()?;
/// let app = Router::new()
///     .route("/mcp", post(|body: String| async move { body }))
///     .route_layer(JsonRpcScopes::new().tool("add_note", ["notes:write"]))
///     .route_layer(IntrospectionLayer::new(introspector));
///
/// let token = auth_server.mint_token("notes:read");
/// let call = |tool: &str| {
///     let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
///     http::Request::post("/mcp")
///         .header("authorization", format!("Bearer {token}"))
///         .header("content-type", "application/json")
///         .body(axum::body::Body::from(body))
/// };
/// assert_eq!(app.clone().oneshot(call("whoami")?).await?.status(), 200);
/// let denied = app.oneshot(call("add_note")?).await?;
/// assert_eq!(denied.status(), 403);
/// assert_eq!(
///     denied.headers()["www-authenticate"],
///     r#"Bearer realm="api", error="insufficient_scope", scope="notes:write""#,
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct JsonRpcScopes<R = JsonBody> {
    pub(super) rules: Arc<Rules>,
    pub(super) body: R,
}

impl Default for JsonRpcScopes {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonRpcScopes {
    /// A guard with no rules yet: every operation needs only a valid token.
    pub fn new() -> Self {
        Self {
            rules: Arc::new(Rules {
                methods: HashMap::new(),
                tools: HashMap::new(),
                default: None,
                matcher: Arc::new(Exact),
                max_body: DEFAULT_MAX_JSONRPC_BODY,
                invalid_scope: false,
            }),
            body: JsonBody,
        }
    }
}

impl<R> JsonRpcScopes<R> {
    fn rules_mut(&mut self) -> &mut Rules {
        Arc::make_mut(&mut self.rules)
    }

    /// Calls of `method` (e.g. `resources/read`) need every one of `scopes`.
    /// An empty list requires nothing beyond a valid token (and overrides
    /// the default).
    ///
    /// A scope that is empty or not printable ASCII without spaces, `"` and
    /// `\\` (RFC 6749 §3.3) can never be held: it makes the guard answer
    /// every request 500 (fail closed, logged). Use
    /// [`try_method`](Self::try_method) to get the error at startup.
    pub fn method<I, S>(self, method: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match Rule::new(scopes) {
            Ok(rule) => self.with_method(method, rule),
            Err(_) => self.invalid(),
        }
    }

    /// [`method`](Self::method), or [`ConfigError::InvalidSetting`] for a
    /// scope no token can hold.
    pub fn try_method<I, S>(self, method: impl Into<String>, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(self.with_method(method, Rule::new(scopes)?))
    }

    /// MCP `tools/call` of the tool `name` needs every one of `scopes`,
    /// instead of what the `tools/call` method or the default needs. An
    /// empty list requires nothing beyond a valid token. An invalid scope
    /// is handled as by [`method`](Self::method); see
    /// [`try_tool`](Self::try_tool).
    pub fn tool<I, S>(self, name: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match Rule::new(scopes) {
            Ok(rule) => self.with_tool(name, rule),
            Err(_) => self.invalid(),
        }
    }

    /// [`tool`](Self::tool), or [`ConfigError::InvalidSetting`] for a scope
    /// no token can hold.
    pub fn try_tool<I, S>(self, name: impl Into<String>, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(self.with_tool(name, Rule::new(scopes)?))
    }

    /// What every operation without its own rule needs, and requests
    /// without a JSON-RPC body (`GET`, `DELETE`). Default: nothing beyond a
    /// valid token. An invalid scope is handled as by
    /// [`method`](Self::method); see
    /// [`try_default_scopes`](Self::try_default_scopes).
    pub fn default_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match Rule::new(scopes) {
            Ok(rule) => {
                self.rules_mut().default = rule;
                self
            }
            Err(_) => self.invalid(),
        }
    }

    /// [`default_scopes`](Self::default_scopes), or
    /// [`ConfigError::InvalidSetting`] for a scope no token can hold.
    pub fn try_default_scopes<I, S>(mut self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules_mut().default = Rule::new(scopes)?;
        Ok(self)
    }

    fn with_method(mut self, method: impl Into<String>, rule: Option<Rule>) -> Self {
        let rule = rule.unwrap_or_else(Rule::nothing);
        self.rules_mut()
            .methods
            .insert(method.into().into_boxed_str(), rule);
        self
    }

    fn with_tool(mut self, name: impl Into<String>, rule: Option<Rule>) -> Self {
        let rule = rule.unwrap_or_else(Rule::nothing);
        self.rules_mut().tools.insert(name.into().into_boxed_str(), rule);
        self
    }

    /// Fails closed: a rule nobody can satisfy as written refuses everything.
    fn invalid(mut self) -> Self {
        self.rules_mut().invalid_scope = true;
        self
    }

    /// Matches scopes with `matcher` instead of [`Exact`].
    pub fn matcher(mut self, matcher: impl ScopeMatcher) -> Self {
        self.rules_mut().matcher = Arc::new(matcher);
        self
    }

    /// The largest body read (default [`DEFAULT_MAX_JSONRPC_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.rules_mut().max_body = bytes;
        self
    }
}

impl<R> fmt::Debug for JsonRpcScopes<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRpcScopes")
            .field("methods", &self.rules.methods)
            .field("tools", &self.rules.tools)
            .field("default", &self.rules.default)
            .field("max_body", &self.rules.max_body)
            .field("invalid_scope", &self.rules.invalid_scope)
            .finish_non_exhaustive()
    }
}
