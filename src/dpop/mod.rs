//! DPoP at the resource server (RFC 9449 §4.3, §7): [`DpopConfig`] turns it
//! on for an [`IntrospectionLayer`](crate::IntrospectionLayer).
//!
//! A request with `Authorization: DPoP <token>` must carry exactly one
//! `DPoP` header holding a proof JWT signed by the key the token is bound to
//! (`cnf.jkt` in the introspection answer or the JWT's claims). The proof is
//! checked on the slower path (it is never cached); a `Bearer` request is
//! untouched, except that a DPoP-bound token is never accepted as a bearer
//! token, whether DPoP is configured or not.

mod nonce;
pub(crate) mod proof;
mod replay;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Uri};

use crate::binding::{Proof, Rules};
use crate::clock;
use crate::error::{AuthError, ConfigError, DpopAnswer, ErrorKind};
use crate::jose::Algorithm;
use crate::macros::setters;
use crate::principal::Principal;
use crate::token::{is_b64token, TokenError, DEFAULT_MAX_TOKEN_LENGTH};
use crate::verifier::Verifier;

use self::replay::{ReplayCache, Use};

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
/// The replay cache is this process's, and, when the layer's introspector
/// has a shared cache (`IntrospectorBuilder::shared_cache`, feature
/// `redis`), the fleet's too: a proof one replica accepted is refused by the
/// others. While Redis cannot be used, each replica still refuses the
/// replays it has seen, but a proof could be replayed once at each other
/// replica within the window (counted in `SharedCacheStats::dpop_local_only`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tower_introspection::{dpop::DpopConfig, IntrospectionLayer, Introspector};
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
    replay_capacity_per_token: Option<u64>,
    accept_unbound: bool,
    nonces: Option<nonce::Nonces>,
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
            replay_capacity_per_token: None,
            accept_unbound: false,
            nonces: None,
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
    /// (absolute in HTTP/2) or `http://` plus its `Host` header — which the
    /// client chooses: a proof made for another server that shares this
    /// one's audience would then pass `htu` here too. Set it in production.
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

    setters! {
        /// How long after its `iat` a proof is accepted (default
        /// [`DEFAULT_DPOP_MAX_AGE`]); also how long its `jti` is remembered.
        /// At most an hour (longer is taken as an hour).
        pub fn max_age(max_age: Duration) => max_age = max_age.min(MAX_WINDOW);

        /// Clock skew allowed on `iat` either way (default 5 s; at most an
        /// hour).
        pub fn leeway(leeway: Duration) => leeway = leeway.min(MAX_WINDOW);

        /// How many proofs the replay cache holds (default
        /// [`DEFAULT_DPOP_REPLAY_CAPACITY`]); at least 1 000. Size it above the
        /// proofs one process accepts within `max_age` (plus twice the
        /// `leeway` and 2 s): each takes 150 to 250 bytes.
        ///
        /// A proof is never forgotten before its window ends: were the oldest
        /// forgotten to make room (an LRU), a client holding a bound token of
        /// its own could flush the cache with fresh proofs and then replay one
        /// it captured from another client. So a full cache **refuses** new
        /// proofs instead, answered 503 with `Retry-After`
        /// ([`ErrorKind::Unavailable`]), until
        /// older proofs expire; counted in [`DpopStats::refused_full`] and
        /// logged (at most every 10 s). To keep one token from filling it for
        /// everyone, the proofs of each access token hold at most a share of it
        /// ([`replay_capacity_per_token`](Self::replay_capacity_per_token)).
        pub fn replay_capacity(capacity: u64) => replay_capacity = capacity.max(1_000);

        /// How many proofs sent with one access token the replay cache holds
        /// at most (default: a quarter of
        /// [`replay_capacity`](Self::replay_capacity), 25 000 at the defaults,
        /// some 340 requests a second per token and replica; at least 1, at
        /// most the capacity). A token past its share has its new proofs
        /// answered 503 with `Retry-After` until its older ones expire (counted
        /// in [`DpopStats::refused_token_full`]); other tokens are unaffected.
        ///
        /// The share is per token, not per key: with
        /// [`accept_unbound_tokens`](Self::accept_unbound_tokens), one token
        /// could sign each proof with a new key. Only proofs of valid tokens
        /// take places (they are recorded last). A client holding several
        /// tokens (at the default, four) can still fill the cache: the share
        /// keeps one token from crowding out the others, and refusing when full
        /// is what keeps every replay out; size the capacity for your traffic.
        pub fn replay_capacity_per_token(per_token: u64) => replay_capacity_per_token = Some(per_token.max(1));

        /// Accept a token without `cnf.jkt` sent with the `DPoP` scheme (and a
        /// valid proof). Off by default: RFC 9449 §7.1 makes the binding the
        /// point of the scheme. The `Principal` still shows the token unbound.
        pub fn accept_unbound_tokens(accept: bool) => accept_unbound = accept;

        /// Requires every proof to carry a nonce this server handed out (RFC
        /// 9449 §8, §9), a new one every `rotation`: a proof made ahead of time,
        /// by a client's stolen key or a compromised client, stops working
        /// within two rotations. Off by default.
        ///
        /// A proof without a nonce, or with one that is neither the current
        /// period's nor the previous one's, is answered 401
        /// `error="use_dpop_nonce"` with the nonce to use in a `DPoP-Nonce`
        /// header; the client signs a new proof with it and retries. Every 401
        /// to a `DPoP` request (and with [`required`](Self::required), every
        /// 401) carries the current nonce, and so does the response to a proof
        /// that used the previous period's. With `allowed`, a `Bearer` request never
        /// gets one (with `required`, its 401 does: it must come back with DPoP).
        ///
        /// Nonces are derived, not stored (HMAC-SHA-256 of the period under a
        /// secret drawn from the operating system at this call): clones of this
        /// configuration share them, but another process has its own, so a
        /// client whose requests land on another replica is sent
        /// `use_dpop_nonce` again; [`shared_nonces`](Self::shared_nonces)
        /// gives replicas the same ones. `rotation` is counted in whole seconds,
        /// at least 1 s and at most a day (outside, the nearest bound). A
        /// browser client reads `DPoP-Nonce` only if CORS exposes it
        /// (`Access-Control-Expose-Headers: DPoP-Nonce`).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// use std::time::Duration;
        ///
        /// use axum::{body::Body, routing::get, Router};
        /// use tower::ServiceExt;
        /// use tower_introspection::test_util::{
        ///     DpopKey, TestAuthServer, TokenSpec, RS_CLIENT_ID, RS_CLIENT_SECRET,
        /// };
        /// use tower_introspection::{dpop::DpopConfig, IntrospectionLayer, Introspector};
        ///
        /// let auth = TestAuthServer::start().await?;
        /// let introspector = Introspector::builder(auth.introspection_url())
        ///     .client_secret_basic(RS_CLIENT_ID, RS_CLIENT_SECRET)
        ///     .build()?;
        /// let dpop = DpopConfig::required().nonces(Duration::from_secs(300));
        /// let app = Router::new()
        ///     .route("/items", get(|| async { "items" }))
        ///     .route_layer(IntrospectionLayer::new(introspector).dpop(dpop));
        ///
        /// let key = DpopKey::generate();
        /// let token = auth.mint(TokenSpec::new().claim("cnf", key.cnf()));
        /// let url = "http://api.example/items";
        /// let request = |proof: String| {
        ///     http::Request::get(url)
        ///         .header("authorization", format!("DPoP {token}"))
        ///         .header("dpop", proof)
        ///         .body(Body::empty())
        /// };
        ///
        /// // A proof without a nonce: 401, and the nonce to use.
        /// let response = app.clone().oneshot(request(key.proof("GET", url, &token))?).await?;
        /// assert_eq!(response.status(), 401);
        /// assert_eq!(
        ///     response.headers()["www-authenticate"],
        ///     r#"DPoP realm="api", error="use_dpop_nonce", error_description="the DPoP proof must carry the server's nonce (DPoP-Nonce)", algs="ES256 ES384 EdDSA PS256 RS256""#,
        /// );
        /// let nonce = response.headers()["dpop-nonce"].to_str()?.to_owned();
        ///
        /// // A new proof with that nonce passes.
        /// let proof = key.proof_with_nonce("GET", url, &token, &nonce);
        /// let response = app.oneshot(request(proof)?).await?;
        /// assert_eq!(response.status(), 200);
        /// # Ok(()) }
        /// ```
        pub fn nonces(rotation: Duration) => nonces = Some(nonce::Nonces::random(rotation));
    }

    /// [`nonces`](Self::nonces) under `secret`, so that every replica given
    /// the same secret and rotation hands out and accepts the same nonces
    /// (their clocks must agree to within a rotation). Use a secret of its
    /// own, random, and keep it like a key; it is never printed.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] when `secret` is shorter than 32
    /// bytes.
    pub fn shared_nonces(
        mut self,
        rotation: Duration,
        secret: impl AsRef<[u8]>,
    ) -> Result<Self, ConfigError> {
        let nonces = nonce::Nonces::shared(rotation, secret.as_ref()).ok_or(ConfigError::InvalidSetting(
            "the DPoP nonce secret must be at least 32 bytes",
        ))?;
        self.nonces = Some(nonces);
        Ok(self)
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
            .field("replay_capacity_per_token", &self.replay_capacity_per_token)
            .field("accept_unbound", &self.accept_unbound)
            .field(
                "nonce_rotation",
                &self.nonces.as_ref().map(nonce::Nonces::rotation),
            )
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
    /// Every proof accepted within `max_age`, in this process and through
    /// the fleet's shared tier; separate from the token cache.
    replay: ReplayCache,
    /// [`scope_answer`](Self::scope_answer)'s, `Bearer` then `DPoP`.
    scope_answers: [Arc<DpopAnswer>; 2],
}

/// A layer's DPoP, left in the extensions of a request let through
/// anonymously: a scope check that answers 401 further in answers as the
/// layer would (its nonce computed then, only if needed).
#[derive(Clone)]
pub(crate) struct LayerDpop(pub(crate) Arc<Dpop>);

/// Credentials sent with the `DPoP` scheme.
pub(crate) struct Presented {
    token: String,
    proof: String,
}

impl Dpop {
    pub(crate) fn new(config: DpopConfig) -> Self {
        let algs: Vec<&str> = config.algorithms.iter().map(|a| a.as_str()).collect();
        let capacity = usize::try_from(config.replay_capacity).unwrap_or(usize::MAX);
        let per_token = config
            .replay_capacity_per_token
            .map_or(capacity / 4, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let replay = ReplayCache::new(capacity, per_token, config.max_age, config.leeway);
        let algs: Arc<str> = Arc::from(algs.join(" "));
        let scope_answers = [false, true]
            .map(|via_dpop| Arc::new(Self::answer_without_nonce(&algs, config.required, via_dpop)));
        Self {
            algs,
            config,
            replay,
            scope_answers,
        }
    }

    pub(crate) fn required(&self) -> bool {
        self.config.required
    }

    /// What every rejection of a request with `via_dpop` scheme says; with
    /// nonces, a 401 to a `DPoP` request or where `DPoP` is required also
    /// carries the current one (RFC 9449 §8.2), a `Bearer` request's never.
    pub(crate) fn answer(&self, via_dpop: bool) -> DpopAnswer {
        let nonce = match &self.config.nonces {
            Some(nonces) if via_dpop || self.config.required => {
                nonces.current(clock::now().unix_secs()).map(Box::new)
            }
            _ => None,
        };
        DpopAnswer {
            nonce,
            ..Self::answer_without_nonce(&self.algs, self.config.required, via_dpop)
        }
    }

    /// The challenges alone, for the scope checks further in (a 403 needs
    /// no nonce), built once: a principal holds a pointer to it.
    pub(crate) fn scope_answer(&self, via_dpop: bool) -> Arc<DpopAnswer> {
        self.scope_answers[usize::from(via_dpop)].clone()
    }

    fn answer_without_nonce(algs: &Arc<str>, required: bool, via_dpop: bool) -> DpopAnswer {
        DpopAnswer {
            algs: algs.clone(),
            bearer: !required,
            via_dpop,
            nonce: None,
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
    /// none at all. `max_length` is the layer's extractor's: a token is as
    /// long at most in either scheme.
    pub(crate) fn presented(
        &self,
        headers: &HeaderMap,
        max_length: usize,
    ) -> Result<Option<Presented>, AuthError> {
        let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
        let Some(first) = authorizations.next() else {
            return Ok(None);
        };
        let bytes = first.as_bytes();
        // `DPoP ` with nothing after it is our scheme with malformed
        // credentials (400), as `Bearer ` is.
        let is_dpop = bytes.len() >= 5 && bytes[..5].eq_ignore_ascii_case(b"dpop ");
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
        if token.len() > max_length {
            // As the `Bearer` path answers it.
            return Err(answer(TokenError::TooLong.into()));
        }
        if !is_b64token(token) {
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
    /// the URI, or `http://` and `Host`; the path from the URI (the one the
    /// client called: see [`called_uri`]).
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

    /// Checks the proof, its nonce, then the token, then the binding: the
    /// whole of a `DPoP` request's authentication, on the slower path. With
    /// the principal, the `DPoP-Nonce` the response must carry, if any.
    pub(crate) fn verify(
        self: Arc<Self>,
        verifier: Verifier,
        presented: Presented,
        checking: crate::binding::Checking,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> impl std::future::Future<Output = Result<(Principal, Option<HeaderValue>), AuthError>> + Send + 'static
    {
        let target = self.target(uri, headers);
        let method = method.as_str().to_owned();
        async move {
            let outcome = self
                .verify_inner(verifier, presented, checking, &method, target)
                .await;
            match outcome {
                Ok((mut principal, nonce)) => {
                    // Scope checks further in answer in the DPoP scheme too
                    // (a 403 needs no nonce).
                    principal.set_dpop_answer(self.scope_answer(true));
                    Ok((principal, nonce))
                }
                // Answered at the end, not the start: the nonce handed out
                // is current even after a slow introspection.
                Err(error) => Err(error.with_dpop(self.answer(true))),
            }
        }
    }

    async fn verify_inner(
        &self,
        verifier: Verifier,
        presented: Presented,
        checking: crate::binding::Checking,
        method: &str,
        target: Option<url::Url>,
    ) -> Result<(Principal, Option<HeaderValue>), AuthError> {
        let target = target.ok_or_else(|| {
            AuthError::new(
                ErrorKind::InvalidRequest,
                "the request's URL cannot be determined",
            )
        })?;
        let now = clock::now().unix_secs();
        let expected = proof::Expected {
            method,
            url: &target,
            access_token: &presented.token,
            now,
            max_age: secs(self.config.max_age),
            leeway: secs(self.config.leeway),
        };
        let checked =
            proof::check(&presented.proof, &self.config.algorithms, &expected).map_err(proof_error)?;
        // After the signature and the other proof checks, so a forged proof
        // is `invalid_dpop_proof`, never `use_dpop_nonce`; before the token
        // is looked up, so a proof refused here costs no introspection and
        // takes no replay-cache place (the client retries with a new one).
        let renew_nonce = match &self.config.nonces {
            None => false,
            Some(nonces) => match nonces.admit(checked.nonce.as_deref(), now) {
                nonce::Admission::Current => false,
                nonce::Admission::Previous => true,
                nonce::Admission::Refused => return Err(nonce_error(checked.nonce.is_some())),
            },
        };
        let principal = match verifier.cached(&presented.token) {
            Some(outcome) => outcome?,
            None => verifier.validate_any(&presented.token).await?,
        };
        let proof = Proof {
            dpop_jkt: Some(&checked.jkt),
            certificate: checking.certificate.as_ref(),
        };
        let rules = Rules {
            accept_unbound: self.config.accept_unbound,
            ..checking.rules
        };
        crate::binding::check(&principal, proof, rules)?;
        // Last, once the token is valid and bound to this key: proofs that
        // anyone can sign with a key of their own, without a token, must
        // not take places in the replay cache.
        let first_use = self
            .replay
            .first_use(&verifier, &checked.jkt, &checked.jti, &checked.token_digest);
        match first_use.await {
            Use::First => {}
            Use::Replayed => return Err(proof_error("the DPoP proof was used before (jti)")),
            Use::Full => {
                return Err(AuthError::new(
                    ErrorKind::Unavailable,
                    "the DPoP replay cache is full; retry later",
                ))
            }
            Use::TokenFull => {
                return Err(AuthError::new(
                    ErrorKind::Unavailable,
                    "too many DPoP proofs with this token within the proof window; retry later",
                ))
            }
        }
        // Read the clock again: the nonce handed out must be current even
        // after a slow introspection.
        let fresh_nonce = match &self.config.nonces {
            Some(nonces) if renew_nonce => nonces.current(clock::now().unix_secs()),
            _ => None,
        };
        Ok((principal, fresh_nonce))
    }
}

/// The URI the client called: axum's `OriginalUri` where a `Router` recorded
/// it (inside `Router::nest`, the request's own URI has lost the prefix the
/// client named in `htu`), else the request's URI.
pub(crate) fn called_uri<B>(request: &http::Request<B>) -> &Uri {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(uri)) = request.extensions().get() {
        return uri;
    }
    request.uri()
}

/// What a layer's DPoP replay cache has done (see
/// [`IntrospectionLayer::dpop_stats`](crate::IntrospectionLayer::dpop_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopStats {
    /// Proofs this process remembers now (each until its window ends).
    pub remembered: u64,
    /// Proofs refused as replays (seen before within the window, here or
    /// at another replica).
    pub replays: u64,
    /// Proofs refused (503) because the replay cache was full.
    pub refused_full: u64,
    /// Proofs refused (503) because their access token's proofs held its
    /// whole share of the replay cache.
    pub refused_token_full: u64,
}

impl Dpop {
    pub(crate) fn stats(&self) -> DpopStats {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = &self.replay.counters;
        DpopStats {
            remembered: u64::try_from(self.replay.len()).unwrap_or(u64::MAX),
            replays: counters.replays.load(Relaxed),
            refused_full: counters.refused_full.load(Relaxed),
            refused_token_full: counters.refused_token_full.load(Relaxed),
        }
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

/// RFC 9449 §9: the client is to sign a new proof with the nonce in
/// `DPoP-Nonce`.
fn nonce_error(had_one: bool) -> AuthError {
    let reason = if had_one {
        "the DPoP proof's nonce is unknown or expired; use the one in DPoP-Nonce"
    } else {
        "the DPoP proof must carry the server's nonce (DPoP-Nonce)"
    };
    AuthError::new(ErrorKind::UseDpopNonce, reason)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The layer's `Debug` shows its DPoP settings (never a secret).
    #[test]
    fn debug_shows_the_settings() {
        let dpop = Dpop::new(DpopConfig::required().replay_capacity_per_token(7));
        let debug = format!("{dpop:?}");
        assert!(debug.starts_with("DpopConfig { required: true"), "{debug}");
        assert!(debug.contains("replay_capacity_per_token: Some(7)"), "{debug}");
    }

    #[test]
    fn external_url_must_be_absolute_http_or_https() {
        assert!(DpopConfig::allowed().external_url("https://api.example").is_ok());
        assert!(DpopConfig::allowed()
            .external_url("http://api.example/base")
            .is_ok());
        for refused in [
            "ftp://api.example",
            "api.example",
            "data:text/plain,x",
            "unix:/run/api",
        ] {
            assert!(
                matches!(
                    DpopConfig::allowed().external_url(refused),
                    Err(ConfigError::InvalidUrl { .. })
                ),
                "{refused}"
            );
        }
    }
}
