//! Per-operation scopes for JSON-RPC endpoints such as MCP servers:
//! [`JsonRpcScopes`] reads the JSON-RPC body, finds the operation — the
//! `method`, and for MCP's `tools/call` the tool's `params.name` — and lets
//! the request through only if the token holds that operation's scopes.
//! Otherwise it answers 403 `insufficient_scope` naming exactly the scopes of
//! that operation (with `resource_metadata` when the introspection layer has
//! it), before the server behind it runs, so that clients can step up (MCP
//! authorization, "Scope Challenge Handling").

mod layer;
mod message;
mod service;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, Method, Request};

pub use self::layer::JsonRpcScopes;
pub use self::service::JsonRpcScopesService;

use self::message::{operations, Operation};
use crate::buffered::{BodyGuard, Plan};
use crate::challenge::scope_value;
use crate::error::{AuthError, ConfigError, ErrorKind};
use crate::principal::Principal;
use crate::scope::{authorize, unauthenticated, ScopeMatcher};

/// The default limit on a JSON-RPC body the guard reads.
pub const DEFAULT_MAX_JSONRPC_BODY: usize = 4 * 1024 * 1024;

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

impl BodyGuard for Arc<Rules> {
    fn plan<B>(&self, request: &Request<B>) -> Plan {
        if self.invalid_scope {
            tracing::error!("{INVALID_SCOPE}: every request is refused");
            return Plan::Refuse(AuthError::new(
                ErrorKind::Misconfigured,
                "a scope rule is invalid",
            ));
        }
        // No principal: 401 or 500 at once, without reading the body.
        if request.extensions().get::<Principal>().is_none() {
            return Plan::Refuse(unauthenticated(request.extensions()));
        }
        if request.method() != Method::POST {
            return match self.check(request.extensions(), self.default.as_ref()) {
                Ok(()) => Plan::Pass,
                Err(error) => Plan::Refuse(error),
            };
        }
        Plan::Read(self.max_body)
    }

    fn unreadable(&self, extensions: &Extensions) -> AuthError {
        AuthError::new(
            ErrorKind::InvalidRequest,
            "the JSON-RPC body is too large or broken",
        )
        .with_realm(realm(extensions))
    }

    fn inspect(&self, parts: &mut Parts, body: &Bytes) -> Result<(), AuthError> {
        let Some(operations) = operations(body) else {
            return Err(AuthError::new(
                ErrorKind::InvalidRequest,
                "the body is not a JSON-RPC message the server can be asked",
            )
            .with_realm(realm(&parts.extensions)));
        };
        for operation in &operations {
            self.check(&parts.extensions, self.rule_for(operation))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use http::Response;
    use tower_layer::Layer;
    use tower_service::Service;

    use super::message::Envelope;
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
