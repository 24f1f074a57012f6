//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells
//! clients which authorization servers issue tokens for this API, and the
//! tower service that publishes it at its well-known URI.

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};
use tower_service::Service;

use crate::error::ConfigError;
use crate::resource::canonical_resource;

/// The well-known URI suffix of RFC 9728 §3.
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The default `max-age` of the document (`Cache-Control`).
pub const DEFAULT_METADATA_MAX_AGE: Duration = Duration::from_secs(3600);

/// A protected resource's metadata document (RFC 9728), ready to serve.
///
/// [`ProtectedResourceMetadata::builder`] takes the resource identifier (the
/// canonical URI of the API, RFC 8707 §2) and the optional fields of RFC 9728
/// §2. The well-known URI is derived from the identifier as RFC 9728 §3.1
/// says: `https://api.example/mcp` is described at
/// `https://api.example/.well-known/oauth-protected-resource/mcp`, so the
/// `resource` in the document is always the identifier it is published for
/// (RFC 9728 §3.3). [`url`](ProtectedResourceMetadata::url) goes into the
/// layer's challenges ([`IntrospectionLayer::resource_metadata`](crate::IntrospectionLayer::resource_metadata)),
/// [`service`](ProtectedResourceMetadata::service) answers at
/// [`path`](ProtectedResourceMetadata::path) (and at the root form
/// `/.well-known/oauth-protected-resource` with
/// [`also_at_root`](ProtectedResourceMetadataBuilder::also_at_root), for
/// clients that only try that one).
///
/// The document is public: it is served with `Cache-Control: public,
/// max-age=3600` (configurable) and `Access-Control-Allow-Origin: *`, so that
/// browser-based clients can read it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::Router;
/// use tower::ServiceExt;
/// use tower_introspection::ProtectedResourceMetadata;
///
/// let metadata = ProtectedResourceMetadata::builder("https://api.example/mcp")
///     .authorization_server("https://as.example")
///     .scopes_supported(["notes:read", "notes:write"])
///     .resource_name("Notes")
///     .build()?;
/// assert_eq!(metadata.path(), "/.well-known/oauth-protected-resource/mcp");
/// assert_eq!(metadata.url(), "https://api.example/.well-known/oauth-protected-resource/mcp");
///
/// let app = Router::new().route_service(metadata.path(), metadata.service());
/// let response = app
///     .oneshot(http::Request::get(metadata.path()).body(axum::body::Body::empty())?)
///     .await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// let body = axum::body::to_bytes(response.into_body(), 4096).await?;
/// let document: serde_json::Value = serde_json::from_slice(&body)?;
/// assert_eq!(document["resource"], "https://api.example/mcp");
/// assert_eq!(document["authorization_servers"][0], "https://as.example");
/// assert_eq!(document["bearer_methods_supported"][0], "header");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProtectedResourceMetadata {
    inner: Arc<Inner>,
}

struct Inner {
    resource: String,
    url: String,
    path: String,
    at_root: bool,
    document: Bytes,
    cache_control: HeaderValue,
}

impl ProtectedResourceMetadata {
    /// Starts the document of the resource `resource`: the canonical URI of
    /// the API (for an MCP server, its endpoint, e.g.
    /// `https://mcp.example.com/mcp`).
    pub fn builder(resource: impl Into<String>) -> ProtectedResourceMetadataBuilder {
        ProtectedResourceMetadataBuilder::new(resource.into())
    }

    /// The resource identifier, in canonical form (lower-case scheme and
    /// host, no default port, no trailing slash): the `resource` of the
    /// document, and the audience tokens for this API carry (use it with
    /// `expected_resource`).
    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The well-known URL of the document (RFC 9728 §3.1), for
    /// [`IntrospectionLayer::resource_metadata`](crate::IntrospectionLayer::resource_metadata).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The path of [`url`](Self::url), to route [`service`](Self::service) at.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The document, as served.
    pub fn document(&self) -> &[u8] {
        &self.inner.document
    }

    /// A tower service that answers `GET` and `HEAD` of [`path`](Self::path)
    /// (and of [`WELL_KNOWN_PATH`] with
    /// [`also_at_root`](ProtectedResourceMetadataBuilder::also_at_root)) with
    /// the document, `OPTIONS` as a CORS preflight, other methods with 405
    /// and other paths with 404. Mount it with axum's `route_service` (which
    /// keeps the full path), once for each path it answers.
    pub fn service(&self) -> ProtectedResourceMetadataService {
        ProtectedResourceMetadataService {
            metadata: self.clone(),
        }
    }
}

impl fmt::Debug for ProtectedResourceMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedResourceMetadata")
            .field("resource", &self.inner.resource)
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ProtectedResourceMetadata`]; see
/// [`ProtectedResourceMetadata::builder`]. Every setter adds one field of RFC
/// 9728 §2; `build()` checks them.
#[must_use]
pub struct ProtectedResourceMetadataBuilder {
    resource: String,
    fields: Map<String, Value>,
    urls: Vec<(&'static str, String)>,
    bearer_methods: Vec<String>,
    extra_refused: Option<String>,
    allow_insecure_http: bool,
    at_root: bool,
    max_age: Duration,
}

impl ProtectedResourceMetadataBuilder {
    fn new(resource: String) -> Self {
        Self {
            resource,
            fields: Map::new(),
            urls: Vec::new(),
            bearer_methods: vec!["header".to_owned()],
            extra_refused: None,
            allow_insecure_http: false,
            at_root: false,
            max_age: DEFAULT_METADATA_MAX_AGE,
        }
    }

    fn push_string(&mut self, name: &'static str, value: String) {
        let entry = self
            .fields
            .entry(name)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(value));
        }
    }

    fn url_field(mut self, name: &'static str, url: String) -> Self {
        self.urls.push((name, url.clone()));
        self.fields.insert(name.to_owned(), Value::String(url));
        self
    }

    /// `authorization_servers`: the issuer identifier (RFC 8414) of an
    /// authorization server whose tokens this resource accepts. Repeat for
    /// several. (MCP servers must name at least one.)
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.urls.push(("authorization_servers", issuer.clone()));
        self.push_string("authorization_servers", issuer);
        self
    }

    /// `scopes_supported`: the scopes clients may request for this
    /// resource.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for scope in scopes {
            self.push_string("scopes_supported", scope.into());
        }
        self
    }

    /// `bearer_methods_supported`: how the resource accepts tokens, among
    /// `header`, `body` and `query` (RFC 6750 §2). Default `["header"]`, the
    /// only one the layer reads without opting in; an empty list omits the
    /// field (which RFC 9728 reads as "no preference stated").
    pub fn bearer_methods_supported<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.bearer_methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// `jwks_uri`: the resource's own public keys (for signed responses),
    /// not the authorization server's.
    pub fn jwks_uri(self, url: impl Into<String>) -> Self {
        self.url_field("jwks_uri", url.into())
    }

    /// `resource_signing_alg_values_supported`: JWS algorithms the resource
    /// signs responses with.
    pub fn resource_signing_alg_values_supported<I, S>(mut self, algorithms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for alg in algorithms {
            self.push_string("resource_signing_alg_values_supported", alg.into());
        }
        self
    }

    /// `resource_name`: a human-readable name for end users.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.fields
            .insert("resource_name".to_owned(), Value::String(name.into()));
        self
    }

    /// `resource_documentation`: a page with developer documentation.
    pub fn resource_documentation(self, url: impl Into<String>) -> Self {
        self.url_field("resource_documentation", url.into())
    }

    /// `resource_policy_uri`: how data from the resource may be used.
    pub fn resource_policy_uri(self, url: impl Into<String>) -> Self {
        self.url_field("resource_policy_uri", url.into())
    }

    /// `resource_tos_uri`: the terms of service.
    pub fn resource_tos_uri(self, url: impl Into<String>) -> Self {
        self.url_field("resource_tos_uri", url.into())
    }

    /// `tls_client_certificate_bound_access_tokens` (RFC 8705).
    pub fn tls_client_certificate_bound_access_tokens(mut self, yes: bool) -> Self {
        self.fields.insert(
            "tls_client_certificate_bound_access_tokens".to_owned(),
            Value::Bool(yes),
        );
        self
    }

    /// `authorization_details_types_supported` (RFC 9396).
    pub fn authorization_details_types_supported<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for kind in types {
            self.push_string("authorization_details_types_supported", kind.into());
        }
        self
    }

    /// `dpop_signing_alg_values_supported` (RFC 9449).
    pub fn dpop_signing_alg_values_supported<I, S>(mut self, algorithms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for alg in algorithms {
            self.push_string("dpop_signing_alg_values_supported", alg.into());
        }
        self
    }

    /// `dpop_bound_access_tokens_required` (RFC 9449).
    pub fn dpop_bound_access_tokens_required(mut self, yes: bool) -> Self {
        self.fields
            .insert("dpop_bound_access_tokens_required".to_owned(), Value::Bool(yes));
        self
    }

    /// Another member, such as one registered after RFC 9728 or
    /// `signed_metadata`. `resource` cannot be set this way (`build()`
    /// refuses it): it is the identifier the document is published for.
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if name == "resource" {
            self.extra_refused = Some(name.clone());
        }
        self.fields.insert(name, value.into());
        self
    }

    /// Allow `http://` URLs on hosts other than loopback (for the resource
    /// and every URL field). Default: refused.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Also answer at the root form of the well-known URI,
    /// [`WELL_KNOWN_PATH`]. Only for a resource without a path, whose
    /// well-known URI that already is (RFC 9728 §3.1): `build()` refuses it
    /// for a resource with a path, because a client that fetched the root
    /// form must reject a document whose `resource` is not the bare origin
    /// (RFC 9728 §3.3). An MCP client that falls back to the root form
    /// finds nothing and uses the `resource_metadata` of the challenge.
    pub fn also_at_root(mut self, yes: bool) -> Self {
        self.at_root = yes;
        self
    }

    /// The `max-age` of `Cache-Control: public, max-age=…` (default one
    /// hour, at most a day).
    pub fn cache_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Checks the fields and builds the document.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] or [`ConfigError::InsecureUrl`] for a
    /// resource that is not a resource identifier (RFC 8707 §2: absolute,
    /// `https` or loopback `http`, no fragment; this crate also refuses a
    /// query) or a URL field that is not a URL;
    /// [`ConfigError::InvalidSetting`] for an unknown bearer method or a
    /// `resource` set through [`extra`](Self::extra);
    /// [`ConfigError::OutOfRange`] for a `cache_max_age` over a day.
    pub fn build(mut self) -> Result<ProtectedResourceMetadata, ConfigError> {
        if self.extra_refused.is_some() {
            return Err(ConfigError::InvalidSetting(
                "`resource` is the identifier the metadata is published for (RFC 9728 §3.3); set it in `builder`",
            ));
        }
        if self.max_age > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::OutOfRange {
                setting: "cache_max_age",
                range: "at most one day",
            });
        }
        let resource = canonical_resource("resource", &self.resource, self.allow_insecure_http)?;
        for (name, url) in &self.urls {
            crate::introspect::checked_url(name, url, self.allow_insecure_http)?;
        }
        if self
            .bearer_methods
            .iter()
            .any(|m| !matches!(m.as_str(), "header" | "body" | "query"))
        {
            return Err(ConfigError::InvalidSetting(
                "bearer_methods_supported takes `header`, `body` and `query` only (RFC 9728 §2)",
            ));
        }
        if !self.bearer_methods.is_empty() {
            let methods = self.bearer_methods.drain(..).map(Value::String).collect();
            self.fields
                .insert("bearer_methods_supported".to_owned(), Value::Array(methods));
        }
        let parsed = url::Url::parse(&resource).map_err(|e| ConfigError::InvalidUrl {
            what: "resource",
            reason: e.to_string(),
        })?;
        // RFC 9728 §3.1: the suffix goes between the host and the path; a
        // path of "/" alone adds nothing.
        let resource_path = parsed.path().trim_end_matches('/');
        // RFC 9728 §3.3: a client checks `resource` against the URL it
        // fetched, so the root form may only describe the host itself.
        if self.at_root && !resource_path.is_empty() {
            return Err(ConfigError::InvalidSetting(
                "also_at_root: a resource with a path cannot be described at the root well-known URI, whose clients expect `resource` to be the bare origin (RFC 9728 §3.3)",
            ));
        }
        let path = format!("{WELL_KNOWN_PATH}{resource_path}");
        let mut origin = parsed.origin().ascii_serialization();
        origin.push_str(&path);
        let url = origin;

        // `resource` first, for readers; the other members in name order.
        let mut document = format!("{{\"resource\":{}", Value::String(resource.clone()));
        for (name, value) in &self.fields {
            document.push(',');
            document.push_str(&Value::String(name.clone()).to_string());
            document.push(':');
            document.push_str(&value.to_string());
        }
        document.push('}');
        let document = Bytes::from(document);
        let cache_control = HeaderValue::from_str(&format!("public, max-age={}", self.max_age.as_secs()))
            .map_err(|_| ConfigError::InvalidSetting("cache_max_age"))?;
        Ok(ProtectedResourceMetadata {
            inner: Arc::new(Inner {
                resource,
                url,
                path,
                at_root: self.at_root,
                document,
                cache_control,
            }),
        })
    }
}

impl fmt::Debug for ProtectedResourceMetadataBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedResourceMetadataBuilder")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// The tower service of [`ProtectedResourceMetadata::service`].
#[derive(Clone, Debug)]
pub struct ProtectedResourceMetadataService {
    metadata: ProtectedResourceMetadata,
}

impl<B> Service<Request<B>> for ProtectedResourceMetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.answer(request.method(), request.uri().path())))
    }
}

impl ProtectedResourceMetadataService {
    fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let inner = &self.metadata.inner;
        let ours = path == inner.path || (inner.at_root && path == WELL_KNOWN_PATH);
        let mut response = Response::new(Full::new(Bytes::new()));
        if !ours {
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let (status, body) = Self::fill(&mut parts.headers, method, inner, body);
        parts.status = status;
        Response::from_parts(parts, body)
    }

    fn fill(
        headers: &mut http::HeaderMap,
        method: &Method,
        inner: &Inner,
        empty: Full<Bytes>,
    ) -> (StatusCode, Full<Bytes>) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        match *method {
            Method::GET | Method::HEAD => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(header::CACHE_CONTROL, inner.cache_control.clone());
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(inner.document.len()));
                if *method == Method::GET {
                    return (StatusCode::OK, Full::new(inner.document.clone()));
                }
                (StatusCode::OK, empty)
            }
            Method::OPTIONS => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("*"),
                );
                headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(86_400u32));
                (StatusCode::NO_CONTENT, empty)
            }
            _ => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
                (StatusCode::METHOD_NOT_ALLOWED, empty)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(resource: &str) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata::builder(resource)
            .authorization_server("https://as.example")
            .build()
            .unwrap()
    }

    #[test]
    fn well_known_url_is_path_aware() {
        for (resource, url) in [
            (
                "https://api.example/mcp",
                "https://api.example/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "https://api.example/public/mcp/",
                "https://api.example/.well-known/oauth-protected-resource/public/mcp",
            ),
            (
                "https://api.example",
                "https://api.example/.well-known/oauth-protected-resource",
            ),
            (
                "https://api.example/",
                "https://api.example/.well-known/oauth-protected-resource",
            ),
            (
                "HTTPS://API.Example:443/mcp",
                "https://api.example/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "https://api.example:8443/mcp",
                "https://api.example:8443/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "http://127.0.0.1:3001/mcp",
                "http://127.0.0.1:3001/.well-known/oauth-protected-resource/mcp",
            ),
        ] {
            let metadata = build(resource);
            assert_eq!(metadata.url(), url, "{resource}");
            assert!(url.ends_with(metadata.path()), "{resource}");
        }
    }

    #[test]
    fn document_names_the_resource_it_is_published_for() {
        let metadata = ProtectedResourceMetadata::builder("HTTPS://API.example/mcp/")
            .authorization_server("https://as.example")
            .authorization_server("https://as2.example/tenant")
            .scopes_supported(["a", "b"])
            .jwks_uri("https://api.example/jwks")
            .resource_name("Notes")
            .resource_documentation("https://api.example/docs")
            .resource_policy_uri("https://api.example/policy")
            .resource_tos_uri("https://api.example/tos")
            .resource_signing_alg_values_supported(["RS256"])
            .tls_client_certificate_bound_access_tokens(false)
            .authorization_details_types_supported(["payment"])
            .dpop_signing_alg_values_supported(["ES256"])
            .dpop_bound_access_tokens_required(false)
            .extra("x_custom", 1)
            .build()
            .unwrap();
        assert!(metadata
            .document()
            .starts_with(br#"{"resource":"https://api.example/mcp","#));
        let document: Value = serde_json::from_slice(metadata.document()).unwrap();
        assert_eq!(
            document,
            serde_json::json!({
                "resource": "https://api.example/mcp",
                "authorization_servers": ["https://as.example", "https://as2.example/tenant"],
                "scopes_supported": ["a", "b"],
                "bearer_methods_supported": ["header"],
                "jwks_uri": "https://api.example/jwks",
                "resource_name": "Notes",
                "resource_documentation": "https://api.example/docs",
                "resource_policy_uri": "https://api.example/policy",
                "resource_tos_uri": "https://api.example/tos",
                "resource_signing_alg_values_supported": ["RS256"],
                "tls_client_certificate_bound_access_tokens": false,
                "authorization_details_types_supported": ["payment"],
                "dpop_signing_alg_values_supported": ["ES256"],
                "dpop_bound_access_tokens_required": false,
                "x_custom": 1,
            })
        );
        assert_eq!(metadata.resource(), "https://api.example/mcp");
    }

    #[test]
    fn build_refuses_what_cannot_be_published() {
        let refused = |builder: ProtectedResourceMetadataBuilder| builder.build().unwrap_err();
        for resource in [
            "api.example/mcp",
            "https://api.example/mcp#x",
            "https://api.example/mcp?x=1",
            "http://api.example/mcp",
        ] {
            refused(ProtectedResourceMetadata::builder(resource));
        }
        refused(ProtectedResourceMetadata::builder("https://api.example").authorization_server("as.example"));
        refused(
            ProtectedResourceMetadata::builder("https://api.example")
                .authorization_server("http://as.example"),
        );
        refused(
            ProtectedResourceMetadata::builder("https://api.example").bearer_methods_supported(["cookie"]),
        );
        refused(
            ProtectedResourceMetadata::builder("https://api.example")
                .extra("resource", "https://other.example"),
        );
        refused(
            ProtectedResourceMetadata::builder("https://api.example")
                .cache_max_age(Duration::from_secs(90_000)),
        );
        // Opt-ins.
        assert!(ProtectedResourceMetadata::builder("http://api.example/mcp")
            .authorization_server("http://as.example")
            .allow_insecure_http(true)
            .build()
            .is_ok());
        let no_methods = ProtectedResourceMetadata::builder("https://api.example")
            .bearer_methods_supported(Vec::<String>::new())
            .build()
            .unwrap();
        assert_eq!(no_methods.document(), br#"{"resource":"https://api.example"}"#);
    }

    fn body(response: Response<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt;
        let collected = futures_util::FutureExt::now_or_never(response.into_body().collect());
        collected.unwrap().unwrap().to_bytes()
    }

    #[test]
    fn service_answers_its_paths_and_methods() {
        let metadata = ProtectedResourceMetadata::builder("https://api.example/mcp")
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap();
        let service = metadata.service();
        let get: Response<Full<Bytes>> =
            service.answer(&Method::GET, "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(get.status(), 200);
        assert_eq!(get.headers()["cache-control"], "public, max-age=60");
        assert_eq!(get.headers()["access-control-allow-origin"], "*");
        assert_eq!(body(get), metadata.document());
        let head: Response<Full<Bytes>> = service.answer(&Method::HEAD, metadata.path());
        assert_eq!(head.status(), 200);
        assert!(body(head).is_empty());
        let options: Response<Full<Bytes>> = service.answer(&Method::OPTIONS, metadata.path());
        assert_eq!(options.status(), 204);
        let post: Response<Full<Bytes>> = service.answer(&Method::POST, metadata.path());
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()["allow"], "GET, HEAD, OPTIONS");
        let root: Response<Full<Bytes>> = service.answer(&Method::GET, WELL_KNOWN_PATH);
        assert_eq!(root.status(), 404);

        let at_root = ProtectedResourceMetadata::builder("https://api.example/")
            .also_at_root(true)
            .build()
            .unwrap();
        assert_eq!(at_root.path(), WELL_KNOWN_PATH);
        let root: Response<Full<Bytes>> = at_root.service().answer(&Method::GET, WELL_KNOWN_PATH);
        assert_eq!(root.status(), 200);
        assert_eq!(
            body(root),
            &br#"{"resource":"https://api.example","bearer_methods_supported":["header"]}"#[..]
        );
        // Served at the root, it still answers no other path.
        let other: Response<Full<Bytes>> = at_root.service().answer(&Method::GET, "/other");
        assert_eq!(other.status(), 404);
    }

    /// A day is the longest `cache_max_age`, and it is accepted.
    #[test]
    fn cache_max_age_is_at_most_a_day() {
        let day = Duration::from_secs(24 * 3600);
        let with = |max_age| {
            ProtectedResourceMetadata::builder("https://api.example")
                .cache_max_age(max_age)
                .build()
        };
        assert!(with(day).is_ok());
        assert!(matches!(
            with(day + Duration::from_secs(1)),
            Err(ConfigError::OutOfRange {
                setting: "cache_max_age",
                ..
            })
        ));
    }

    #[test]
    fn debug_names_the_resource() {
        let builder = ProtectedResourceMetadata::builder("https://api.example/mcp");
        assert!(
            format!("{builder:?}").contains(r#"resource: "https://api.example/mcp""#),
            "{builder:?}"
        );
        let metadata = builder.build().unwrap();
        let debug = format!("{metadata:?}");
        assert!(debug.starts_with("ProtectedResourceMetadata {"), "{debug}");
        assert!(debug.contains("https://api.example/mcp"), "{debug}");
        assert!(debug.contains(metadata.url()), "{debug}");
    }

    /// The root form describes the origin: a document for a resource with a
    /// path served there would fail the client's RFC 9728 §3.3 check.
    #[test]
    fn root_form_only_for_a_resource_without_a_path() {
        for resource in ["https://api.example/mcp", "https://api.example/a/mcp/"] {
            let error = ProtectedResourceMetadata::builder(resource)
                .also_at_root(true)
                .build()
                .unwrap_err();
            assert!(matches!(error, ConfigError::InvalidSetting(_)), "{resource}");
            assert!(ProtectedResourceMetadata::builder(resource)
                .also_at_root(false)
                .build()
                .is_ok());
        }
        for resource in [
            "https://api.example",
            "https://api.example/",
            "https://api.example:8443",
        ] {
            assert!(
                ProtectedResourceMetadata::builder(resource)
                    .also_at_root(true)
                    .build()
                    .is_ok(),
                "{resource}"
            );
        }
    }
}
