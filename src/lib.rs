//! OAuth 2.0 resource-server middleware for tower and axum: every bearer
//! token is validated by [RFC 7662] token introspection against the
//! authorization server, answers are cached with [moka] so the hot path never
//! touches the network, and failures are answered per [RFC 6750].
//!
//! - [`IntrospectionLayer`] validates the token of every request and puts
//!   the [`Principal`] into the request extensions.
//! - [`Introspector`] is the cached introspection client, shared by all
//!   layers of a process; it also offers [`invalidate`](Introspector::invalidate)
//!   and [`stats`](Introspector::stats).
//! - [`Verifier::revoke`] (and the same on each source) carries out a
//!   [`Revocation`](revocation::Revocation): every cached token of a
//!   subject, session or client is evicted, and their tokens issued up to
//!   the event are refused, cached or not.
//! - [`ProtectedResourceMetadata`](metadata::ProtectedResourceMetadata) publishes RFC 9728 metadata at its
//!   well-known URL, which [`IntrospectionLayer::resource_metadata`] puts in
//!   every challenge; `expected_resource` on the verifier builders requires
//!   tokens issued for this resource (RFC 8707); [`JsonRpcScopes`](jsonrpc::JsonRpcScopes) requires
//!   scopes per JSON-RPC operation (MCP tools). The README's "MCP servers"
//!   section shows an `rmcp` server protected this way.
//! - With the `axum` feature, [`Principal`], `Option<Principal>` and
//!   [`Scoped<R>`] are extractors; [`RequireScope`](scope::RequireScope) guards groups of routes.
//! - With the `test-util` feature, [`test_util::TestAuthServer`] is an
//!   in-process authorization server for tests.
//! - With the `metrics` feature, cache and introspection counters and a
//!   latency histogram go through the `metrics` facade:
//!   `tower_introspection_cache_hits_total`, `…_cache_negative_hits_total`,
//!   `…_cache_misses_total`, `…_cache_coalesced_waits_total`,
//!   `…_stale_served_total`, `…_introspections_total{outcome}`,
//!   `…_introspection_duration_seconds{outcome}` and
//!   `…_rejections_total{status}`.
//! - With the `redis` feature, `IntrospectorBuilder::shared_cache` adds a
//!   second cache tier in Redis shared by a fleet of replicas
//!   (`SharedCache`): one introspection per token for the whole fleet,
//!   and invalidations that reach every replica.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use tower_introspection::test_util::TestAuthServer;
//! use tower_introspection::{scope_requirement, IntrospectionLayer, Introspector, Principal, Scoped};
//!
//! scope_requirement! {
//!     pub ReadItems: "read";
//! }
//!
//! // An in-process authorization server; in production, your AS's URL.
//! let auth_server = TestAuthServer::start().await?;
//! let introspector = Introspector::builder(auth_server.introspection_url())
//!     .client_secret_basic("rs-client", "rs-secret")
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/whoami", get(|p: Principal| async move { p.username().unwrap_or_default().to_owned() }))
//!     .route("/items", get(|_: Scoped<ReadItems>| async { "items" }))
//!     .route_layer(IntrospectionLayer::new(introspector));
//!
//! let token = auth_server.mint_token("read");
//! let request = |path: &str, token: &str| {
//!     http::Request::get(path)
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(axum::body::Body::empty())
//! };
//! let response = app.clone().oneshot(request("/items", &token)?).await?;
//! assert_eq!(response.status(), 200);
//!
//! let response = app.oneshot(request("/items", "unknown-token")?).await?;
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_token", error_description="the token is not active""#,
//! );
//! # Ok(()) }
//! ```
//!
//! # Guarding endpoints by scope
//!
//! Declare requirements as types with [`scope_requirement!`] and take
//! [`Scoped<R>`] in the handler: the signature says which scopes the handler
//! needs, and a token lacking them never reaches it (403
//! `insufficient_scope`, with the *required* scopes in the challenge). For a
//! group of routes, use the [`RequireScope`](scope::RequireScope) route layer. Matching is exact
//! by default; [`Hierarchical`](scope::Hierarchical) and [`Wildcard`](scope::Wildcard) are opt-in.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::{get, post}, Router};
//! use tower::ServiceExt;
//! use tower_introspection::test_util::TestAuthServer;
//! use tower_introspection::{scope_requirement, IntrospectionLayer, Introspector, Scoped, scope::RequireScope};
//!
//! scope_requirement! {
//!     pub WriteItems: "write";
//!     pub ReadOrAdmin: any("read", "admin");
//! }
//!
//! let auth_server = TestAuthServer::start().await?;
//! let introspector = Introspector::builder(auth_server.introspection_url())
//!     .client_secret_basic("rs-client", "rs-secret")
//!     .build()?;
//! let admin = Router::new()
//!     .route("/admin", get(|| async { "admin" }))
//!     .route_layer(RequireScope::all(["admin"]));
//! let app = Router::new()
//!     .route("/items", get(|_: Scoped<ReadOrAdmin>| async { "list" }))
//!     .route("/items", post(|_: Scoped<WriteItems>| async { "created" }))
//!     .merge(admin)
//!     .route_layer(IntrospectionLayer::new(introspector));
//!
//! let read_token = auth_server.mint_token("read");
//! let send = |method: &str, path: &str| {
//!     http::Request::builder()
//!         .method(method)
//!         .uri(path)
//!         .header("authorization", format!("Bearer {read_token}"))
//!         .body(axum::body::Body::empty())
//! };
//! assert_eq!(app.clone().oneshot(send("GET", "/items")?).await?.status(), 200);
//!
//! let denied = app.clone().oneshot(send("POST", "/items")?).await?;
//! assert_eq!(denied.status(), 403);
//! assert_eq!(
//!     denied.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="insufficient_scope", scope="write""#,
//! );
//! assert_eq!(app.oneshot(send("GET", "/admin")?).await?.status(), 403);
//! # Ok(()) }
//! ```
//!
//! [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
//! [RFC 6750]: https://www.rfc-editor.org/rfc/rfc6750
//! [moka]: https://docs.rs/moka

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod binding;
mod buffered;
pub mod cache;
mod cache_key;
mod challenge;
mod claims;
mod clock;
mod discovery;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod dpop;
mod engine;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod fetch;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
pub mod form;
#[doc(hidden)]
pub mod fuzzing;
pub mod introspection;
#[cfg(feature = "jwt")]
mod jose;
pub mod jsonrpc;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod logout;
mod macros;
pub mod metadata;
pub mod middleware;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod mtls;
mod principal;
#[cfg(feature = "jwt")]
mod receiver;
mod rejection;
mod resource;
pub mod revocation;
pub mod scope;
mod settings;
pub mod source;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod ssf;
mod stats;
pub mod token;
mod validate;
mod verifier;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;

pub use crate::error::{AuthError, ConfigError, ErrorKind};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::extract::Scoped;
pub use crate::introspection::Introspector;
pub use crate::middleware::{Introspection, IntrospectionLayer};
pub use crate::principal::{Principal, Scopes};
pub use crate::verifier::{Verifier, VerifierBuilder};
