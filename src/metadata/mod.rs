//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells
//! clients which authorization servers issue tokens for this API, and the
//! tower service that publishes it at its well-known URI.

mod builder;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;

pub use self::builder::ProtectedResourceMetadataBuilder;
pub use self::service::ProtectedResourceMetadataService;

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
/// use tower_introspection::metadata::ProtectedResourceMetadata;
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

#[cfg(test)]
mod tests {
    use http::{Method, Response};
    use http_body_util::Full;
    use serde_json::Value;

    use super::*;
    use crate::error::ConfigError;

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
