//! [`IntrospectionLayer`]: configuration of the middleware.

use std::fmt;

use http::HeaderValue;
use tower_layer::Layer;

use super::service::Introspection;
use crate::challenge::{realm_value, resource_metadata_value, scope_value, ChallengeBase};
use crate::error::{ConfigError, DEFAULT_REALM};
use crate::macros::setters;
use crate::rejection::JsonBody;
use crate::token::{BearerExtractor, ExtractToken};
use crate::verifier::Verifier;

/// The layer's realm, with its `resource_metadata` URL and 401 `scope` when
/// configured, packed as a [`ChallengeBase`]. Also the request extension that
/// marks a request the layer let through anonymously, so that extractors and
/// scope guards further in answer 401 with these rather than 500 (no layer).
/// An authenticated request carries them in its `Principal` instead.
#[derive(Debug, Clone)]
pub(crate) struct LayerRealm(pub(crate) HeaderValue);

/// Validates the bearer token of every request: by introspection, as a JWT
/// verified locally, or both (see [`Verifier`]).
///
/// On success the [`Principal`](crate::Principal) is inserted into the
/// request extensions and the inner service is called. Otherwise the request
/// is answered per RFC 6750 without reaching the inner service:
///
/// | case | status | `WWW-Authenticate` |
/// |---|---|---|
/// | no token, or another scheme | 401 | `Bearer realm="…"` |
/// | malformed credentials, token in two places | 400 | `… error="invalid_request"` |
/// | inactive, expired, unknown, wrong issuer or audience | 401 | `… error="invalid_token"` |
/// | DPoP-bound token (`cnf.jkt`, RFC 9449) sent as a bearer token | 401 | `… error="invalid_token"` |
/// | authorization server unreachable, slow, 5xx, unparsable | 503 | none; `Retry-After` |
/// | authorization server refuses our credentials | 500 | none |
///
/// The [`AuthError`](crate::AuthError) is attached to the rejection's
/// extensions. With axum, apply it with `route_layer` so unknown paths stay
/// 404.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tower_introspection::{IntrospectionLayer, Introspector, Principal};
///
/// let introspector = Introspector::builder("https://as.example/oauth2/introspect")
///     .client_secret_basic("my-api", "my-api-secret")
///     .build()?;
/// let app = Router::new()
///     .route("/whoami", get(|p: Principal| async move { p.subject().unwrap_or("").to_owned() }))
///     .route_layer(IntrospectionLayer::new(introspector).realm("my-api")?);
///
/// // No token: 401 and a bare challenge; the authorization server is not asked.
/// let response = app
///     .oneshot(http::Request::get("/whoami").body(axum::body::Body::empty())?)
///     .await?;
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="my-api""#);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct IntrospectionLayer<E = BearerExtractor, R = JsonBody> {
    pub(super) verifier: Verifier,
    pub(super) realm: LayerRealm,
    pub(super) anonymous: bool,
    /// Whether tokens bound by a method the layer cannot check pass as
    /// bearer tokens (off by default).
    pub(super) accept_unverifiable: bool,
    pub(super) extractor: E,
    pub(super) body: R,
    /// DPoP verification, when configured: the only thing the hot path of
    /// a `Bearer` request tests about it is that it is `None`.
    #[cfg(feature = "jwt")]
    pub(super) dpop: Option<std::sync::Arc<crate::dpop::Dpop>>,
    /// Certificate-bound tokens (RFC 8705), when configured.
    #[cfg(feature = "jwt")]
    pub(super) mtls: Option<std::sync::Arc<crate::mtls::MtlsConfig>>,
}

impl IntrospectionLayer {
    /// A layer validating `Authorization: Bearer` tokens with `verifier` —
    /// an [`Introspector`](crate::Introspector), a
    /// [`JwtVerifier`](crate::jwt::JwtVerifier), or a [`Verifier`] combining
    /// several — with realm `"api"` and JSON rejection bodies.
    pub fn new(verifier: impl Into<Verifier>) -> Self {
        Self {
            verifier: verifier.into(),
            realm: LayerRealm(HeaderValue::from_static(DEFAULT_REALM)),
            anonymous: false,
            accept_unverifiable: false,
            extractor: BearerExtractor::new(),
            body: JsonBody,
            #[cfg(feature = "jwt")]
            dpop: None,
            #[cfg(feature = "jwt")]
            mtls: None,
        }
    }
}

impl<E, R> IntrospectionLayer<E, R> {
    /// With DPoP on: tells the scope checks further in to answer a `Bearer`
    /// request's 403 with both challenges, as this layer's 401s.
    #[cfg(feature = "jwt")]
    pub(super) fn answer_scopes_in_dpop(&self, principal: &mut crate::Principal) {
        if let Some(dpop) = &self.dpop {
            principal.set_dpop_answer(dpop.scope_answer(false));
        }
    }

    /// The `realm` of every challenge (default `"api"`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] when `realm` holds a character that
    /// RFC 6750 §3 does not allow in a quoted value (`"`, `\`, anything
    /// outside printable ASCII and space): such a realm cannot be sent as
    /// given, and the layer does not send another one in its place.
    ///
    /// ```
    /// use tower_introspection::{ConfigError, IntrospectionLayer, Introspector};
    ///
    /// # let introspector = Introspector::builder("https://as.example/introspect")
    /// #     .client_secret_basic("api", "secret").build()?;
    /// let layer = IntrospectionLayer::new(introspector.clone()).realm("my-api")?;
    /// # let _ = layer;
    /// assert!(matches!(
    ///     IntrospectionLayer::new(introspector).realm("my \"api\""),
    ///     Err(ConfigError::InvalidSetting(_)),
    /// ));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn realm(self, realm: impl AsRef<str>) -> Result<Self, ConfigError> {
        realm_value(realm.as_ref()).ok_or(ConfigError::InvalidSetting(
            "`IntrospectionLayer::realm` may hold only printable ASCII characters and spaces, without `\"` and `\\` (RFC 6750 §3)",
        ))?;
        self.with_challenge_field(Field::Realm(realm.as_ref()))
    }

    /// The URL of this resource's protected-resource metadata (RFC 9728),
    /// sent as `resource_metadata="…"` in every challenge of this layer, and
    /// of the scope guards and extractors behind it (RFC 9728 §5.1; the MCP
    /// authorization specification requires it in 401s and asks for it in
    /// 403s). Usually [`ProtectedResourceMetadata::url`](crate::metadata::ProtectedResourceMetadata::url).
    /// Without it, challenges are exactly RFC 6750's.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] when `url` is not an absolute `http(s)`
    /// URL without a fragment, or holds a character a quoted challenge value
    /// cannot (`"`, `\`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{routing::post, Router};
    /// use tower::ServiceExt;
    /// use tower_introspection::{IntrospectionLayer, Introspector, metadata::ProtectedResourceMetadata};
    ///
    /// let metadata = ProtectedResourceMetadata::builder("https://api.example/mcp")
    ///     .authorization_server("https://as.example")
    ///     .build()?;
    /// let introspector = Introspector::builder("https://as.example/oauth2/introspect")
    ///     .client_secret_basic("my-api", "my-api-secret")
    ///     .expected_resource(metadata.resource())
    ///     .build()?;
    /// let app = Router::new()
    ///     .route("/mcp", post(|| async { "ok" }))
    ///     .route_layer(IntrospectionLayer::new(introspector).resource_metadata(metadata.url())?)
    ///     .route_service(metadata.path(), metadata.service());
    ///
    /// let response = app
    ///     .oneshot(http::Request::post("/mcp").body(axum::body::Body::empty())?)
    ///     .await?;
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(
    ///     response.headers()["www-authenticate"],
    ///     r#"Bearer realm="api", resource_metadata="https://api.example/.well-known/oauth-protected-resource/mcp""#,
    /// );
    /// # Ok(()) }
    /// ```
    pub fn resource_metadata(self, url: impl AsRef<str>) -> Result<Self, ConfigError> {
        let url = resource_metadata_value(url.as_ref()).ok_or_else(|| ConfigError::InvalidUrl {
            what: "resource metadata",
            reason: "an absolute http(s) URL without a fragment, `\"` or `\\` is needed".to_owned(),
        })?;
        self.with_challenge_field(Field::ResourceMetadata(Some(&url)))
    }

    /// The scopes this layer's 401 challenges name (`scope="…"`): what a
    /// client should ask for to use the resource at all. The MCP
    /// authorization specification asks servers to send them (RFC 6750 §3
    /// allows it); 403s name the scopes of the refused operation instead.
    /// Not set by default; an empty list removes it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] when a scope is empty or holds a
    /// space, `"`, `\` or a character outside printable ASCII (RFC 6749 §3.3).
    pub fn challenge_scope<I, S>(self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let scopes: Vec<S> = scopes.into_iter().collect();
        let value = if scopes.is_empty() {
            None
        } else {
            Some(scope_value(&scopes).ok_or(ConfigError::InvalidSetting(
                "`IntrospectionLayer::challenge_scope`: each scope must be printable ASCII without spaces, `\"` or `\\` (RFC 6749 §3.3)",
            ))?)
        };
        self.with_challenge_field(Field::Scope(value.as_deref()))
    }

    /// Replaces one of the packed challenge parameters.
    fn with_challenge_field(mut self, field: Field<'_>) -> Result<Self, ConfigError> {
        let current = self.realm.0.clone();
        let mut base = ChallengeBase::unpack(&current);
        match field {
            Field::Realm(realm) => base.realm = realm,
            Field::ResourceMetadata(url) => base.resource_metadata = url,
            Field::Scope(scope) => base.scope = scope,
        }
        let packed = base.pack().ok_or(ConfigError::InvalidSetting(
            "a challenge parameter holds a character RFC 6750 §3 forbids",
        ))?;
        self.realm = LayerRealm(packed);
        Ok(self)
    }

    setters! {
        /// Let requests without any token through without a `Principal` (for
        /// routes that read `Option<Principal>`). A request with a malformed or
        /// invalid token is still rejected. Off by default.
        pub fn allow_anonymous(allow: bool) => anonymous = allow;

        /// Accept tokens bound to their sender by a confirmation method this
        /// layer does not check, such as a client certificate (RFC 8705
        /// `cnf.x5t#S256`) without [`mtls`](Self::mtls), as plain bearer
        /// tokens. Off by default: such a
        /// token is refused with 401 `invalid_token` and a description that
        /// names the binding, because accepting it without its proof of
        /// possession defeats the binding (RFC 8705 §3; RFC 9449 §7.1): whoever
        /// stole it could use it. Turn it on only where something else checks
        /// the binding (a TLS-terminating proxy that matches the client
        /// certificate against the token), or where you accept that risk.
        ///
        /// DPoP bindings (`cnf.jkt`) are not affected: they are checked with
        /// [`dpop`](Self::dpop) and never accepted as `Bearer`. A token bound
        /// to a DPoP key and by such a method passes the `DPoP` scheme only
        /// with this on (with `mtls`, a certificate binding is checked
        /// whatever this says). Calls to
        /// `validate` outside a layer refuse every bound token.
        pub fn accept_unverifiable_bindings(accept: bool) => accept_unverifiable = accept;
    }

    /// What the layer accepts besides proven bindings, on the `Bearer` path.
    #[inline]
    pub(super) fn binding_rules(&self) -> crate::binding::Rules {
        #[cfg(feature = "jwt")]
        let (certificates, require_certificate) = match &self.mtls {
            Some(mtls) => (true, mtls.is_required()),
            None => (false, false),
        };
        #[cfg(not(feature = "jwt"))]
        let (certificates, require_certificate) = (false, false);
        crate::binding::Rules {
            accept_unverifiable: self.accept_unverifiable,
            accept_unbound: false,
            certificates,
            require_certificate,
        }
    }

    /// Where tokens are read from; see [`BearerExtractor`] for the options.
    pub fn token_extractor<E2: ExtractToken>(self, extractor: E2) -> IntrospectionLayer<E2, R> {
        IntrospectionLayer {
            verifier: self.verifier,
            realm: self.realm,
            anonymous: self.anonymous,
            accept_unverifiable: self.accept_unverifiable,
            extractor,
            body: self.body,
            #[cfg(feature = "jwt")]
            dpop: self.dpop,
            #[cfg(feature = "jwt")]
            mtls: self.mtls,
        }
    }

    /// Replaces the body of rejection responses; see [`RejectionBody`](crate::middleware::RejectionBody).
    pub fn rejection_body<R2>(self, body: R2) -> IntrospectionLayer<E, R2> {
        IntrospectionLayer {
            verifier: self.verifier,
            realm: self.realm,
            anonymous: self.anonymous,
            accept_unverifiable: self.accept_unverifiable,
            extractor: self.extractor,
            body,
            #[cfg(feature = "jwt")]
            dpop: self.dpop,
            #[cfg(feature = "jwt")]
            mtls: self.mtls,
        }
    }

    setters! {
        /// Accepts DPoP-bound tokens with the `DPoP` scheme and a proof (RFC
        /// 9449), beside `Bearer` or instead of it; see [`DpopConfig`](crate::dpop::DpopConfig).
        /// Off by default; a DPoP-bound token is refused as a bearer token
        /// either way. Rejections of this layer then carry the `DPoP`
        /// challenge (`algs`, `error="invalid_dpop_proof"`, and with server
        /// nonces `use_dpop_nonce` and a `DPoP-Nonce` header), and so do the
        /// 403s of the scope guards further in (`insufficient_scope` in the
        /// challenge of the scheme the request used).
        #[cfg(feature = "jwt")]
        pub fn dpop(config: crate::dpop::DpopConfig) => dpop = Some(std::sync::Arc::new(crate::dpop::Dpop::new(config)));
    }

    setters! {
        /// Accepts certificate-bound tokens (RFC 8705 §3, `cnf.x5t#S256`)
        /// from requests that present their certificate, on their TLS
        /// connection or through a trusted proxy; see
        /// [`MtlsConfig`](crate::mtls::MtlsConfig). Off by default: a
        /// certificate-bound token is then refused (401 `invalid_token`),
        /// unless [`accept_unverifiable_bindings`](Self::accept_unverifiable_bindings).
        #[cfg(feature = "jwt")]
        pub fn mtls(config: crate::mtls::MtlsConfig) => mtls = Some(std::sync::Arc::new(config));
    }

    /// What the DPoP replay cache of this layer (and its clones) has done,
    /// if [`dpop`](Self::dpop) is on: proofs remembered, replays refused,
    /// and proofs refused because the cache or a token's share of it was
    /// full (see [`DpopConfig::replay_capacity`](crate::dpop::DpopConfig::replay_capacity)).
    #[cfg(feature = "jwt")]
    pub fn dpop_stats(&self) -> Option<crate::dpop::DpopStats> {
        self.dpop.as_ref().map(|dpop| dpop.stats())
    }

    /// The verifier, e.g. to validate a token outside a request.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The introspector, if the verifier has one (to invalidate tokens or
    /// read statistics).
    pub fn introspector(&self) -> Option<&crate::Introspector> {
        self.verifier.introspector()
    }
}

/// One of the parameters packed in [`LayerRealm`].
enum Field<'a> {
    Realm(&'a str),
    ResourceMetadata(Option<&'a str>),
    Scope(Option<&'a str>),
}

impl<S, E: Clone, R: Clone> Layer<S> for IntrospectionLayer<E, R> {
    type Service = Introspection<S, E, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Introspection::new(inner, self.clone())
    }
}

impl<E: fmt::Debug, R> fmt::Debug for IntrospectionLayer<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let challenge = ChallengeBase::unpack(&self.realm.0);
        let mut debug = f.debug_struct("IntrospectionLayer");
        debug
            .field("verifier", &self.verifier)
            .field("realm", &challenge.realm)
            .field("resource_metadata", &challenge.resource_metadata)
            .field("challenge_scope", &challenge.scope)
            .field("anonymous", &self.anonymous)
            .field("accept_unverifiable_bindings", &self.accept_unverifiable)
            .field("extractor", &self.extractor);
        #[cfg(feature = "jwt")]
        debug.field("dpop", &self.dpop);
        #[cfg(feature = "jwt")]
        debug.field("mtls", &self.mtls);
        debug.finish_non_exhaustive()
    }
}
