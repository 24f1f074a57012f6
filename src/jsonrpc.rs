//! Per-operation scopes for JSON-RPC endpoints such as MCP servers:
//! [`JsonRpcScopes`] reads the JSON-RPC body, finds the operation — the
//! `method`, and for MCP's `tools/call` the tool's `params.name` — and lets
//! the request through only if the token holds that operation's scopes.
//! Otherwise it answers 403 `insufficient_scope` naming exactly the scopes of
//! that operation (with `resource_metadata` when the introspection layer has
//! it), before the server behind it runs, so that clients can step up (MCP
//! authorization, "Scope Challenge Handling").

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Extensions, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tower_layer::Layer;
use tower_service::Service;

use crate::challenge::scope_value;
use crate::error::{AuthError, ConfigError, ErrorKind};
use crate::principal::Principal;
use crate::rejection::{reject, JsonBody, RejectionBody};
use crate::scope::{authorize, unauthenticated, Exact, ScopeMatcher};

/// The default limit on a JSON-RPC body the guard reads.
pub const DEFAULT_MAX_JSONRPC_BODY: usize = 4 * 1024 * 1024;

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
/// - No [`Principal`] (no introspection layer in front, or an anonymous
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
    rules: Arc<Rules>,
    body: R,
}

#[derive(Clone)]
struct Rules {
    methods: HashMap<Box<str>, Rule>,
    tools: HashMap<Box<str>, Rule>,
    default: Option<Rule>,
    matcher: Arc<dyn ScopeMatcher>,
    max_body: usize,
    /// A rule was given a scope no token can hold (see [`INVALID_SCOPE`]):
    /// every request is then answered 500.
    invalid_scope: bool,
}

/// Why a rule's scope is refused.
const INVALID_SCOPE: &str = "`JsonRpcScopes`: each scope must be non-empty printable ASCII without spaces, `\"` or `\\` (RFC 6749 §3.3)";

/// The scopes one operation needs, all of them.
#[derive(Clone, Debug)]
struct Rule {
    scopes: Box<[Box<str>]>,
    /// The `scope` of its 403 challenge.
    required: Arc<str>,
}

impl Rule {
    /// The rule for `scopes`: `None` for an empty list (it requires
    /// nothing), an error for a scope no token can hold and no challenge can
    /// name as it is (RFC 6749 §3.3, RFC 6750 §3).
    fn new<I, S>(scopes: I) -> Result<Option<Self>, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Box<[Box<str>]> = scopes.into_iter().map(|s| s.into().into_boxed_str()).collect();
        if scopes.is_empty() {
            return Ok(None);
        }
        let required = scope_value(&scopes).ok_or(ConfigError::InvalidSetting(INVALID_SCOPE))?;
        Ok(Some(Self {
            scopes,
            required: required.into(),
        }))
    }

    /// A rule that requires nothing (and overrides a less specific one).
    fn nothing() -> Self {
        Self {
            scopes: Box::new([]),
            required: "".into(),
        }
    }
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

    /// Replaces the body of this layer's 400 and 403 responses; see
    /// [`RejectionBody`].
    pub fn rejection_body<R2>(self, body: R2) -> JsonRpcScopes<R2> {
        JsonRpcScopes {
            rules: self.rules,
            body,
        }
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

impl<S, R: Clone> Layer<S> for JsonRpcScopes<R> {
    type Service = JsonRpcScopesService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonRpcScopesService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`JsonRpcScopes`].
#[derive(Clone)]
pub struct JsonRpcScopesService<S, R = JsonBody> {
    inner: S,
    layer: JsonRpcScopes<R>,
}

impl<S, R> JsonRpcScopesService<S, R> {
    /// Gets a reference to the wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the wrapped service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, R> fmt::Debug for JsonRpcScopesService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRpcScopesService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R, B, ResBody> Service<Request<B>> for JsonRpcScopesService<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    R: RejectionBody<ResBody>,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let rules = self.layer.rules.clone();
        let rejection_body = self.layer.body.clone();
        if rules.invalid_scope {
            tracing::error!("{INVALID_SCOPE}: every request is refused");
            let error = AuthError::new(ErrorKind::Misconfigured, "a scope rule is invalid");
            return Box::pin(async move { Ok(reject(error, &rejection_body)) });
        }
        // No principal: 401 or 500 at once, without reading the body.
        if request.extensions().get::<Principal>().is_none() {
            let error = unauthenticated(request.extensions());
            return Box::pin(async move { Ok(reject(error, &rejection_body)) });
        }
        if request.method() != Method::POST {
            return match rules.check(request.extensions(), rules.default.as_ref()) {
                Ok(()) => Box::pin(inner.call(request)),
                Err(error) => Box::pin(async move { Ok(reject(error, &rejection_body)) }),
            };
        }
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let refuse = |description: &'static str| {
                let error = AuthError::new(ErrorKind::InvalidRequest, description)
                    .with_realm(realm(&parts.extensions));
                reject(error, &rejection_body)
            };
            let bytes = match Limited::new(body, rules.max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return Ok(refuse("the JSON-RPC body is too large or broken")),
            };
            let Some(operations) = operations(&bytes) else {
                return Ok(refuse(
                    "the body is not a JSON-RPC message the server can be asked",
                ));
            };
            for operation in &operations {
                if let Err(error) = rules.check(&parts.extensions, rules.rule_for(operation)) {
                    return Ok(reject(error, &rejection_body));
                }
            }
            inner.call(Request::from_parts(parts, B::from(bytes))).await
        })
    }
}

/// The packed challenge parameters of the layer that let the request
/// through, for this guard's own 400s.
fn realm(extensions: &Extensions) -> Option<&http::HeaderValue> {
    extensions.get::<Principal>().and_then(Principal::realm)
}

impl Rules {
    fn rule_for(&self, operation: &Operation) -> Option<&Rule> {
        let Some(method) = &operation.method else {
            return None;
        };
        let by_tool = (&**method == "tools/call")
            .then(|| operation.tool.as_deref().and_then(|tool| self.tools.get(tool)))
            .flatten();
        by_tool
            .or_else(|| self.methods.get(&**method))
            .or(self.default.as_ref())
    }

    fn check(&self, extensions: &Extensions, rule: Option<&Rule>) -> Result<(), AuthError> {
        let Some(rule) = rule.filter(|rule| !rule.scopes.is_empty()) else {
            return Ok(());
        };
        let group = rule.scopes.iter().map(|s| &**s);
        authorize(extensions, [group], &*self.matcher, || rule.required.clone()).map(|_| ())
    }
}

/// What one JSON-RPC message asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Operation {
    method: Option<Box<str>>,
    /// `params.name`, for `tools/call`.
    tool: Option<Box<str>>,
}

/// The operations of a message or a batch; `None` when the body is not one.
fn operations(body: &[u8]) -> Option<Vec<Operation>> {
    let parsed: Envelope = serde_json::from_slice(body).ok()?;
    Some(match parsed {
        Envelope::One(operation) => vec![operation],
        Envelope::Batch(operations) => operations,
    })
}

enum Envelope {
    One(Operation),
    Batch(Vec<Operation>),
}

impl<'de> de::Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;
        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message or batch")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Envelope, A::Error> {
                MessageVisitor.visit_map(map).map(Envelope::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
                let mut operations = Vec::new();
                while let Some(Message(operation)) = seq.next_element()? {
                    operations.push(operation);
                }
                Ok(Envelope::Batch(operations))
            }
        }
        deserializer.deserialize_any(EnvelopeVisitor)
    }
}

/// One message, as a JSON object only.
struct Message(Operation);

impl<'de> de::Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor).map(Message)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Operation;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Operation, A::Error> {
        let mut method: Option<Box<str>> = None;
        let mut params: Option<Params> = None;
        while let Some(key) = map.next_key::<Box<str>>()? {
            match &*key {
                "method" => {
                    if method.is_some() {
                        return Err(de::Error::duplicate_field("method"));
                    }
                    method = Some(map.next_value()?);
                }
                "params" => {
                    if params.is_some() {
                        return Err(de::Error::duplicate_field("params"));
                    }
                    params = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let tool = params.and_then(|p| p.name);
        Ok(Operation { method, tool })
    }
}

/// `params`: an object whose `name` (if any) is read, or an array (by-position
/// parameters, which carry no name).
struct Params {
    name: Option<Box<str>>,
}

impl<'de> de::Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON-RPC params (an object or an array)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut name: Option<Box<str>> = None;
                while let Some(key) = map.next_key::<Box<str>>()? {
                    if &*key == "name" {
                        if name.is_some() {
                            return Err(de::Error::duplicate_field("name"));
                        }
                        name = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Params { name })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Params { name: None })
            }
        }
        deserializer.deserialize_any(ParamsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, tool: Option<&str>) -> Operation {
        Operation {
            method: Some(method.into()),
            tool: tool.map(Into::into),
        }
    }

    #[test]
    fn reads_messages_batches_and_notifications() {
        assert_eq!(
            operations(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_note","arguments":{"name":"x"}}}"#),
            Some(vec![op("tools/call", Some("add_note"))])
        );
        assert_eq!(
            operations(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Some(vec![op("notifications/initialized", None)])
        );
        assert_eq!(
            operations(
                br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"result":{}}]"#
            ),
            Some(vec![op("tools/list", None), Operation::default()])
        );
        assert_eq!(operations(b"[]"), Some(vec![]));
        assert_eq!(
            operations(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":[1,"a"]}"#),
            Some(vec![op("m", None)])
        );
        // Escaped names are the names they spell, as for any JSON parser.
        assert_eq!(
            operations(br#"{"meth\u006fd":"tools/c\u0061ll","params":{"n\u0061me":"add_note"}}"#),
            Some(vec![op("tools/call", Some("add_note"))])
        );
        // `name` elsewhere than in `params` is no tool name.
        assert_eq!(
            operations(
                br#"{"name":"add_note","method":"tools/call","params":{"arguments":{"name":"add_note"}}}"#
            ),
            Some(vec![op("tools/call", None)])
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for body in [
            &b""[..],
            b"not json",
            b"42",
            br#""tools/call""#,
            br#"{"method":"tools/list","method":"tools/call"}"#,
            br#"{"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
            br#"{"method":"tools/call","params":{"name":"whoami","name":"add_note"}}"#,
            br#"{"method":42}"#,
            br#"{"method":"tools/call","params":{"name":7}}"#,
            br#"{"method":"tools/call","params":"add_note"}"#,
            br#"[["tools/call",{"name":"add_note"}]]"#,
            br#"[{"method":"tools/list"},"x"]"#,
            br#"{"method":"tools/list"} trailing"#,
        ] {
            assert_eq!(operations(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let layer = JsonRpcScopes::new()
            .default_scopes(["mcp"])
            .method("tools/call", ["tools"])
            .tool("add_note", ["notes:write"])
            .tool("whoami", Vec::<String>::new());
        let rules = &layer.rules;
        let required = |operation: Operation| rules.rule_for(&operation).map(|r| r.required.to_string());
        assert_eq!(
            required(op("tools/call", Some("add_note"))).as_deref(),
            Some("notes:write")
        );
        assert_eq!(
            required(op("tools/call", Some("other"))).as_deref(),
            Some("tools")
        );
        assert_eq!(required(op("tools/call", None)).as_deref(), Some("tools"));
        assert_eq!(required(op("tools/call", Some("whoami"))).as_deref(), Some(""));
        assert_eq!(required(op("tools/list", None)).as_deref(), Some("mcp"));
        // A tool rule applies to `tools/call` only.
        assert_eq!(
            required(op("prompts/get", Some("add_note"))).as_deref(),
            Some("mcp")
        );
        assert_eq!(required(Operation::default()), None);
    }

    /// serde's messages say what was expected (in logs of a custom
    /// deserializer use; the guard itself answers with its own words).
    #[test]
    fn the_visitors_say_what_they_expect() {
        let error = |json: &str| {
            serde_json::from_str::<Envelope>(json)
                .err()
                .map(|e| e.to_string())
        };
        assert!(error("5").unwrap().contains("a JSON-RPC message or batch"));
        assert!(error("[5]").unwrap().contains("a JSON-RPC message (an object)"));
        let params = error(r#"{"jsonrpc":"2.0","method":"m","params":5}"#).unwrap();
        assert!(
            params.contains("JSON-RPC params (an object or an array)"),
            "{params}"
        );
    }

    /// The default the README states: 4 MiB.
    #[test]
    fn the_default_body_limit_is_4_mib() {
        assert_eq!(DEFAULT_MAX_JSONRPC_BODY, 4 << 20);
    }

    #[test]
    fn debug_shows_the_rules() {
        let layer = JsonRpcScopes::new().max_body(9);
        assert!(format!("{layer:?}").starts_with("JsonRpcScopes {"), "{layer:?}");
        assert!(format!("{layer:?}").contains("max_body: 9"), "{layer:?}");
        let service = layer.layer(7u8);
        assert!(
            format!("{service:?}").starts_with("JsonRpcScopesService { inner: 7"),
            "{service:?}"
        );
    }

    /// Backpressure passes through: the guard is ready when the service
    /// behind it is.
    #[test]
    fn poll_ready_is_the_inner_services() {
        #[derive(Clone)]
        struct NeverReady;
        impl Service<Request<http_body_util::Full<Bytes>>> for NeverReady {
            type Response = Response<http_body_util::Full<Bytes>>;
            type Error = std::convert::Infallible;
            type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Pending
            }
            fn call(&mut self, _: Request<http_body_util::Full<Bytes>>) -> Self::Future {
                std::future::ready(Ok(Response::new(http_body_util::Full::default())))
            }
        }
        let mut service = JsonRpcScopes::new().layer(NeverReady);
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(service.poll_ready(&mut cx).is_pending());
    }

    #[test]
    fn accessors() {
        let mut service: JsonRpcScopesService<u8> = JsonRpcScopes::new().layer(7);
        *service.get_mut() += 1;
        assert_eq!(*service.get_ref(), 8);
        assert_eq!(service.into_inner(), 8);
    }
}
