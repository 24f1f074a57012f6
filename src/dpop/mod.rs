//! DPoP at the resource server (RFC 9449 §4.3, §7): [`DpopConfig`] turns it
//! on for an [`IntrospectionLayer`](crate::IntrospectionLayer).
//!
//! A request with `Authorization: DPoP <token>` must carry exactly one
//! `DPoP` header holding a proof JWT signed by the key the token is bound to
//! (`cnf.jkt` in the introspection answer or the JWT's claims). The proof is
//! checked on the slower path (it is never cached); a `Bearer` request is
//! untouched, except that a DPoP-bound token is never accepted as a bearer
//! token, whether DPoP is configured or not.

pub(crate) mod proof;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Method, Uri};
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use ring::digest::{Context as Digest, SHA256};

use crate::clock;
use crate::error::{AuthError, ConfigError, DpopAnswer, ErrorKind};
use crate::jwt::Algorithm;
use crate::principal::Principal;
use crate::token::{is_b64token, DEFAULT_MAX_TOKEN_LENGTH};
use crate::verifier::Verifier;

/// How long a proof is accepted after its `iat` by default (RFC 9449 §11.1
/// leaves it to the server; a few seconds suffice for a fresh proof).
pub const DEFAULT_DPOP_MAX_AGE: Duration = Duration::from_secs(60);
/// How many proofs the replay cache remembers by default.
pub const DEFAULT_DPOP_REPLAY_CAPACITY: u64 = 100_000;

/// DPoP settings of an [`IntrospectionLayer`](crate::IntrospectionLayer)
/// (see [`IntrospectionLayer::dpop`](crate::IntrospectionLayer::dpop)).
///
/// - [`allowed`](Self::allowed): `Bearer` and `DPoP` are both accepted
///   (a DPoP-bound token only as `DPoP`); 401s carry both challenges.
/// - [`required`](Self::required): only `DPoP`.
///
/// Each proof must be typed `dpop+jwt`, signed with an accepted asymmetric
/// algorithm by the public `jwk` in its header (no private members), name
/// the request's method (`htm`) and URL without query and fragment (`htu`),
/// be issued within [`max_age`](Self::max_age) (`iat`), never be seen before
/// within that window (`jti`), and carry the hash of the access token
/// (`ath`). The key's RFC 7638 thumbprint must equal the token's `cnf.jkt`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tower_introspection::{DpopConfig, IntrospectionLayer, Introspector};
///
/// let introspector = Introspector::builder("https://as.example/oauth2/introspect")
///     .client_secret_basic("my-api", "my-api-secret")
///     .build()?;
/// let dpop = DpopConfig::required().external_url("https://api.example")?;
/// let app = Router::new()
///     .route("/items", get(|| async { "items" }))
///     .route_layer(IntrospectionLayer::new(introspector).dpop(dpop));
///
/// // No credentials: 401, and the challenge names the DPoP algorithms.
/// let response = app
///     .oneshot(http::Request::get("/items").body(axum::body::Body::empty())?)
///     .await?;
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"DPoP realm="api", algs="ES256 ES384 EdDSA PS256 RS256""#,
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct DpopConfig {
    required: bool,
    algorithms: Vec<Algorithm>,
    external_url: Option<url::Url>,
    max_age: Duration,
    leeway: Duration,
    replay_capacity: u64,
    accept_unbound: bool,
}

impl DpopConfig {
    /// `DPoP` beside `Bearer`.
    pub fn allowed() -> Self {
        Self {
            required: false,
            algorithms: vec![
                Algorithm::Es256,
                Algorithm::Es384,
                Algorithm::EdDsa,
                Algorithm::Ps256,
                Algorithm::Rs256,
            ],
            external_url: None,
            max_age: DEFAULT_DPOP_MAX_AGE,
            leeway: Duration::from_secs(5),
            replay_capacity: DEFAULT_DPOP_REPLAY_CAPACITY,
            accept_unbound: false,
        }
    }

    /// `DPoP` only: a `Bearer` request is answered 401 with a `DPoP`
    /// challenge.
    pub fn required() -> Self {
        Self {
            required: true,
            ..Self::allowed()
        }
    }

    /// The proof algorithms accepted, named in `algs` of the challenges
    /// (default ES256, ES384, EdDSA, PS256, RS256).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self.algorithms.dedup();
        self
    }

    /// The scheme and authority clients use to reach this server (behind a
    /// proxy, the request itself does not say): `htu` must be this URL
    /// followed by the request's path. Without it, the request's own URI
    /// (absolute in HTTP/2) or `http://` plus its `Host` header.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] when `url` is not an absolute `http(s)`
    /// URL.
    pub fn external_url(mut self, url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidUrl {
            what: "DPoP external",
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid("an absolute http(s) URL is needed"));
        }
        self.external_url = Some(parsed);
        Ok(self)
    }

    /// How long after its `iat` a proof is accepted (default
    /// [`DEFAULT_DPOP_MAX_AGE`]); also how long its `jti` is remembered.
    /// At most an hour (longer is taken as an hour).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.min(MAX_WINDOW);
        self
    }

    /// Clock skew allowed on `iat` either way (default 5 s; at most an
    /// hour).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_WINDOW);
        self
    }

    /// How many proofs the replay cache holds (default
    /// [`DEFAULT_DPOP_REPLAY_CAPACITY`]). Past it the oldest are forgotten
    /// first, and could be replayed until their `iat` is too old: size it
    /// above the proofs one process sees within `max_age`.
    /// At least 1 000: a smaller cache would hardly stop a replay.
    pub fn replay_capacity(mut self, capacity: u64) -> Self {
        self.replay_capacity = capacity.max(1_000);
        self
    }

    /// Accept a token without `cnf.jkt` sent with the `DPoP` scheme (and a
    /// valid proof). Off by default: RFC 9449 §7.1 makes the binding the
    /// point of the scheme. The `Principal` still shows the token unbound.
    pub fn accept_unbound_tokens(mut self, accept: bool) -> Self {
        self.accept_unbound = accept;
        self
    }
}

impl fmt::Debug for DpopConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopConfig")
            .field("required", &self.required)
            .field("algorithms", &self.algorithms)
            .field("external_url", &self.external_url.as_ref().map(url::Url::as_str))
            .field("max_age", &self.max_age)
            .field("replay_capacity", &self.replay_capacity)
            .field("accept_unbound", &self.accept_unbound)
            .finish_non_exhaustive()
    }
}

/// The longest `max_age` or `leeway`: longer would let moka refuse the
/// replay cache's lifetime, and no proof should live that long anyway.
const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// A layer's DPoP state: its settings and its replay cache, shared by the
/// layer's clones.
pub(crate) struct Dpop {
    config: DpopConfig,
    algs: Arc<str>,
    /// SHA-256 of (thumbprint, `jti`) of every proof accepted within
    /// `max_age`; separate from the token cache.
    replay: Cache<[u8; 32], ()>,
}

/// Credentials sent with the `DPoP` scheme.
pub(crate) struct Presented {
    token: String,
    proof: String,
}

impl Dpop {
    pub(crate) fn new(config: DpopConfig) -> Self {
        let algs: Vec<&str> = config.algorithms.iter().map(|a| a.as_str()).collect();
        // `iat` is compared in whole seconds: a second more on each side.
        let window = config
            .max_age
            .saturating_add(config.leeway.saturating_mul(2))
            .saturating_add(Duration::from_secs(2));
        let replay = Cache::builder()
            .max_capacity(config.replay_capacity)
            .time_to_live(window.max(Duration::from_secs(1)))
            // Every new proof must be remembered: TinyLFU could refuse to
            // admit it, LRU forgets the oldest instead.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self {
            algs: Arc::from(algs.join(" ")),
            config,
            replay,
        }
    }

    pub(crate) fn required(&self) -> bool {
        self.config.required
    }

    /// What every rejection of a request with `via_dpop` scheme says.
    pub(crate) fn answer(&self, via_dpop: bool) -> DpopAnswer {
        DpopAnswer {
            algs: self.algs.clone(),
            bearer: !self.config.required,
            via_dpop,
        }
    }

    /// The 401 for a request without `DPoP` credentials when they are required.
    pub(crate) fn scheme_required(&self) -> AuthError {
        AuthError::new(
            ErrorKind::MissingToken,
            "a DPoP-bound token and a DPoP proof are required",
        )
    }

    /// The `DPoP` credentials of a request, `None` for any other scheme or
    /// none at all.
    pub(crate) fn presented(&self, headers: &HeaderMap) -> Result<Option<Presented>, AuthError> {
        let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
        let Some(first) = authorizations.next() else {
            return Ok(None);
        };
        let bytes = first.as_bytes();
        let is_dpop = bytes.len() > 5 && bytes[..5].eq_ignore_ascii_case(b"dpop ");
        if !is_dpop {
            return Ok(None);
        }
        let answer = |error: AuthError| error.with_dpop(self.answer(true));
        if authorizations.next().is_some() {
            return Err(answer(AuthError::new(
                ErrorKind::InvalidRequest,
                "more than one Authorization header",
            )));
        }
        let token = &bytes[5..];
        if token.len() > DEFAULT_MAX_TOKEN_LENGTH || !is_b64token(token) {
            return Err(answer(AuthError::new(
                ErrorKind::InvalidRequest,
                "the DPoP credentials are malformed",
            )));
        }
        let mut proofs = headers.get_all("dpop").iter();
        let proof = match (proofs.next(), proofs.next()) {
            (Some(proof), None) => proof
                .to_str()
                .ok()
                .filter(|p| p.len() <= 2 * DEFAULT_MAX_TOKEN_LENGTH),
            (None, _) => return Err(answer(proof_error("no DPoP proof header"))),
            (Some(_), Some(_)) => return Err(answer(proof_error("more than one DPoP proof header"))),
        };
        let Some(proof) = proof else {
            return Err(answer(proof_error(
                "the DPoP proof is not a well-formed signed JWT",
            )));
        };
        Ok(Some(Presented {
            // `is_b64token` allows only ASCII.
            token: String::from_utf8_lossy(token).into_owned(),
            proof: proof.to_owned(),
        }))
    }

    /// The URL `htu` must name: scheme and authority from the external URL,
    /// the URI, or `http://` and `Host`; the path from the URI.
    fn target(&self, uri: &Uri, headers: &HeaderMap) -> Option<url::Url> {
        let path = uri.path();
        let mut url = match &self.config.external_url {
            Some(external) => external.clone(),
            None => {
                let scheme = uri.scheme_str().unwrap_or("http");
                let authority = match uri.authority() {
                    Some(authority) => authority.as_str(),
                    None => headers.get(header::HOST)?.to_str().ok()?,
                };
                url::Url::parse(&format!("{scheme}://{authority}/")).ok()?
            }
        };
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url.set_query(None);
        url.set_fragment(None);
        Some(url)
    }

    /// Checks the proof, then the token, then the binding: the whole of a
    /// `DPoP` request's authentication, on the slower path.
    pub(crate) fn verify(
        self: Arc<Self>,
        verifier: Verifier,
        presented: Presented,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> impl std::future::Future<Output = Result<Principal, AuthError>> + Send + 'static {
        let target = self.target(uri, headers);
        let method = method.as_str().to_owned();
        async move {
            let answer = self.answer(true);
            self.verify_inner(verifier, presented, &method, target)
                .await
                .map_err(|error| error.with_dpop(answer))
        }
    }

    async fn verify_inner(
        &self,
        verifier: Verifier,
        presented: Presented,
        method: &str,
        target: Option<url::Url>,
    ) -> Result<Principal, AuthError> {
        let target = target.ok_or_else(|| {
            AuthError::new(
                ErrorKind::InvalidRequest,
                "the request's URL cannot be determined",
            )
        })?;
        let expected = proof::Expected {
            method,
            url: &target,
            access_token: &presented.token,
            now: clock::now().unix_secs(),
            max_age: secs(self.config.max_age),
            leeway: secs(self.config.leeway),
        };
        let checked =
            proof::check(&presented.proof, &self.config.algorithms, &expected).map_err(proof_error)?;
        let mut key = Digest::new(&SHA256);
        key.update(checked.jkt.as_bytes());
        key.update(&[0]);
        key.update(checked.jti.as_bytes());
        let mut replay_key = [0u8; 32];
        replay_key.copy_from_slice(key.finish().as_ref());
        let principal = match verifier.cached(&presented.token) {
            Some(outcome) => outcome?,
            None => verifier.validate(&presented.token).await?,
        };
        let principal = match principal.dpop_jkt() {
            Some(jkt) if jkt == checked.jkt => principal,
            Some(_) => return Err(AuthError::invalid_token("the token is bound to another DPoP key")),
            None if principal.is_dpop_bound() => {
                return Err(AuthError::invalid_token(
                    "the token's DPoP binding (cnf.jkt) is malformed",
                ))
            }
            None if self.config.accept_unbound => principal,
            None => return Err(AuthError::invalid_token("the token is not bound to a DPoP key")),
        };
        // Last, once the token is valid and bound to this key: proofs that
        // anyone can sign with a key of their own, without a token, must
        // not take places in the replay cache and push real ones out.
        if !self.replay.entry(replay_key).or_insert(()).await.is_fresh() {
            return Err(proof_error("the DPoP proof was used before (jti)"));
        }
        Ok(principal)
    }
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

fn proof_error(reason: &'static str) -> AuthError {
    AuthError::new(ErrorKind::InvalidDpopProof, reason)
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

const DPOP_HEADER: &str = "dpop";

/// Inner layers that log requests must not print the token or the proof.
pub(crate) fn mark_sensitive(headers: &mut HeaderMap) {
    if let Some(value) = headers.get_mut(header::AUTHORIZATION) {
        value.set_sensitive(true);
    }
    if let Some(value) = headers.get_mut(DPOP_HEADER) {
        value.set_sensitive(true);
    }
}
