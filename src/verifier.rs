//! [`Verifier`]: what the layer asks about each token — an introspector, a
//! JWT verifier, or several of them keyed by issuer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::{self, Now};
use crate::engine::{Engine, LoadToken};
use crate::error::{AuthError, ConfigError};
use crate::introspection::Introspector;
#[cfg(feature = "jwt")]
use crate::jose::peek_issuer;
#[cfg(feature = "jwt")]
use crate::jwt::JwtVerifier;
use crate::macros::setters;
use crate::principal::Principal;
use crate::revocation::{Revocation, RevokeError, Revoked};
use crate::source::CachedSource;

/// The token verification behind [`IntrospectionLayer`](crate::IntrospectionLayer):
/// one source, or several routed by the token's issuer.
///
/// An [`Introspector`] or a `JwtVerifier` converts into a `Verifier` (so
/// `IntrospectionLayer::new(introspector)` works as it always did). For
/// several sources, [`Verifier::builder`] routes each token:
///
/// 1. a JWT whose (unverified) `iss` names a configured JWT issuer goes to
///    that issuer's `JwtVerifier`, which checks the signature with its own
///    keys (the `iss` only chooses the keys; it is verified with the rest);
/// 2. another JWT goes to the `JwtVerifier` configured without an issuer
///    (static keys, such as Laravel Passport's), if there is one;
/// 3. anything else goes to introspection, or is `invalid_token` when no
///    introspector is configured.
///
/// With [`introspect_jwts_too`](VerifierBuilder::introspect_jwts_too), a JWT
/// that verified locally must also be active at the introspection endpoint
/// (both answers are cached): for routes where revocation must be seen
/// within `max_ttl`.
///
/// The `Principal`, the scope guards and every RFC 6750 answer are the same
/// whatever verified the token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_introspection::{IntrospectionLayer, Introspector, Verifier, jwt::JwtVerifier};
///
/// let introspector = Introspector::builder("https://as.example/oauth2/introspect")
///     .client_secret_basic("my-api", "my-api-secret")
///     .expected_audience("https://api.example")
///     .build()?;
/// let jwt = JwtVerifier::builder()
///     .expected_issuer("https://as.example")
///     .jwks_url("https://as.example/jwks")
///     .expected_audience("https://api.example")
///     .build()?;
/// let verifier = Verifier::builder().jwt(jwt).introspector(introspector).build()?;
/// let layer = IntrospectionLayer::new(verifier);
///
/// // An opaque token that is not even a JWT, with no AS reachable: 503.
/// let error = layer.verifier().validate("opaque-token").await.unwrap_err();
/// assert_eq!(error.status(), 503);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    route: Route,
}

#[derive(Clone)]
enum Route {
    Introspection(Introspector),
    /// A source of the user's ([`CachedSource`]).
    Custom(Arc<dyn DynSource>),
    #[cfg(feature = "jwt")]
    Jwt(JwtVerifier),
    #[cfg(feature = "jwt")]
    Several(Arc<Sources>),
}

#[cfg(feature = "jwt")]
struct Sources {
    by_issuer: Box<[JwtVerifier]>,
    without_issuer: Option<JwtVerifier>,
    introspector: Option<Introspector>,
    introspect_jwts: bool,
}

impl Verifier {
    /// Starts combining several sources.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// Verifies a token with the source it belongs to.
    ///
    /// A sender-constrained token (any `cnf`: DPoP's `jkt`, RFC 8705's
    /// `x5t#S256`, …) is refused here with 401 `invalid_token`, as by the
    /// layer's `Bearer` path: this call sees no proof of possession.
    /// DPoP-bound tokens pass through
    /// [`IntrospectionLayer::dpop`](crate::IntrospectionLayer::dpop).
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.validate_any(token)
            .await
            .and_then(crate::binding::unless_bound)
    }

    /// As [`validate`](Self::validate), DPoP-bound tokens included: the
    /// layer decides what their binding requires.
    pub(crate) async fn validate_any(&self, token: &str) -> Result<Principal, AuthError> {
        // Each source's engine probes its cache first.
        match &self.route {
            Route::Introspection(introspector) => introspector.engine().validate(token).await,
            Route::Custom(source) => source.validate(token).await,
            #[cfg(feature = "jwt")]
            Route::Jwt(jwt) => jwt.engine().validate(token).await,
            #[cfg(feature = "jwt")]
            Route::Several(sources) => sources.validate(token).await,
        }
    }

    /// The outcome for `token` if everything it needs is cached and fresh:
    /// no `await`, no allocation but the `Principal`'s. `None`: ask
    /// [`validate_any`](Self::validate_any). The middleware's hit path.
    #[inline]
    pub(crate) fn cached(&self, token: &str) -> Option<Result<Principal, AuthError>> {
        let now = clock::now();
        match &self.route {
            Route::Introspection(introspector) => introspector.engine().cached(token, now),
            Route::Custom(source) => source.cached(token, now),
            #[cfg(feature = "jwt")]
            Route::Jwt(jwt) => jwt.engine().cached(token, now),
            #[cfg(feature = "jwt")]
            Route::Several(sources) => sources.cached(token, now),
        }
    }

    /// Carries out a [`Revocation`](crate::revocation::Revocation): evicts
    /// the cached answers of its subject, session or client, and refuses
    /// from now on the tokens issued to them up to the event (its
    /// [`at`](crate::revocation::Revocation::at), else now), cached or not;
    /// with a fleet tier, on every replica. See
    /// [`revocation`](crate::revocation).
    ///
    /// # Errors
    ///
    /// [`RevokeError::Full`](crate::revocation::RevokeError::Full) when no
    /// cut-off slot is free (here, or in the fleet's store): the answers
    /// were evicted, but tokens not seen yet are not refused;
    /// [`RevokeError::NotShared`](crate::revocation::RevokeError::NotShared)
    /// when it was carried out here but could not be sent to the fleet.
    pub async fn revoke(&self, revocation: &Revocation) -> Result<Revoked, RevokeError> {
        let outcomes = match &self.route {
            Route::Introspection(introspector) => vec![introspector.revoke(revocation).await],
            Route::Custom(source) => vec![source.revoke(revocation).await],
            #[cfg(feature = "jwt")]
            Route::Jwt(jwt) => vec![jwt.revoke(revocation).await],
            #[cfg(feature = "jwt")]
            Route::Several(sources) => {
                let mut outcomes = Vec::new();
                for jwt in sources.by_issuer.iter().chain(&sources.without_issuer) {
                    outcomes.push(jwt.revoke(revocation).await);
                }
                if let Some(introspector) = &sources.introspector {
                    outcomes.push(introspector.revoke(revocation).await);
                }
                outcomes
            }
        };
        // Every source is revoked; the first error is reported.
        let evicted = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(revoked) => revoked.evicted,
                Err(error) => error.evicted(),
            })
            .sum();
        // The worst first: a cut-off not recorded here over one not shared.
        let mut errors: Vec<RevokeError> = outcomes.into_iter().filter_map(Result::err).collect();
        errors.sort_by_key(|error| !matches!(error, RevokeError::Full { .. }));
        match errors.into_iter().next() {
            Some(error) => Err(error.with_evicted(evicted)),
            None => Ok(Revoked { evicted }),
        }
    }

    /// The introspector, if this verifier has one.
    pub fn introspector(&self) -> Option<&Introspector> {
        match &self.route {
            Route::Introspection(introspector) => Some(introspector),
            #[cfg(feature = "jwt")]
            Route::Several(sources) => sources.introspector.as_ref(),
            #[cfg(feature = "jwt")]
            Route::Jwt(_) => None,
            Route::Custom(_) => None,
        }
    }

    /// The fleet's shared tier: its introspector's, if it has one with a
    /// [shared cache](crate::introspection::IntrospectorBuilder::shared_cache). JWT
    /// verifiers have none.
    #[cfg(all(feature = "redis", feature = "jwt"))]
    pub(crate) fn shared_tier(&self) -> Option<&crate::fleet::SharedTier> {
        match &self.route {
            Route::Custom(source) => source.shared_tier(),
            _ => self.introspector()?.engine().shared_tier(),
        }
    }
}

#[cfg(feature = "jwt")]
impl Sources {
    async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(jwt) = self.jwt_source(token) {
            let principal = jwt.engine().validate(token).await?;
            if self.introspect_jwts {
                if let Some(introspector) = &self.introspector {
                    let answer = introspector.engine().validate(token).await?;
                    return crate::binding::same_in_both(principal, &answer);
                }
            }
            return Ok(principal);
        }
        match &self.introspector {
            Some(introspector) => introspector.engine().validate(token).await,
            None => Err(AuthError::invalid_token(
                "the token is not a JWT from a configured issuer",
            )),
        }
    }

    /// As [`validate`](Self::validate), from the caches alone.
    fn cached(&self, token: &str, now: Now) -> Option<Result<Principal, AuthError>> {
        let Some(jwt) = self.jwt_source(token) else {
            return self.introspector.as_ref()?.engine().cached(token, now);
        };
        let Some(introspector) = self.introspector.as_ref().filter(|_| self.introspect_jwts) else {
            return jwt.engine().cached(token, now);
        };
        // Both answers must be cached to answer here; each hit is counted
        // only then, so that the full path does not count the JWT's twice.
        let from_jwt = jwt.engine().peek_cached(token, now)?;
        let from_as = introspector.engine().peek_cached(token, now)?;
        jwt.engine().count_hit();
        introspector.engine().count_hit();
        Some(from_jwt.and_then(|principal| crate::binding::same_in_both(principal, &from_as?)))
    }

    /// The JWT verifier for this token, if it is a JWT one of them takes.
    fn jwt_source(&self, token: &str) -> Option<&JwtVerifier> {
        if self.by_issuer.is_empty() && self.without_issuer.is_none() {
            return None;
        }
        let issuer = peek_issuer(token)?;
        issuer
            .and_then(|iss| {
                self.by_issuer
                    .iter()
                    .find(|jwt| jwt.issuer() == Some(iss.as_str()))
            })
            .or(self.without_issuer.as_ref())
    }
}

/// A user's source behind the verifier: its engine, with the source's type
/// erased.
trait DynSource: Send + Sync {
    fn cached(&self, token: &str, now: Now) -> Option<Result<Principal, AuthError>>;

    fn validate<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>>;

    fn revoke<'a>(
        &'a self,
        revocation: &'a Revocation,
    ) -> Pin<Box<dyn Future<Output = Result<Revoked, RevokeError>> + Send + 'a>>;

    #[cfg(all(feature = "redis", feature = "jwt"))]
    fn shared_tier(&self) -> Option<&crate::fleet::SharedTier>;
}

impl<L: LoadToken> DynSource for Engine<L> {
    #[inline]
    fn cached(&self, token: &str, now: Now) -> Option<Result<Principal, AuthError>> {
        Engine::cached(self, token, now)
    }

    fn validate<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>> {
        Box::pin(Engine::validate(self, token))
    }

    fn revoke<'a>(
        &'a self,
        revocation: &'a Revocation,
    ) -> Pin<Box<dyn Future<Output = Result<Revoked, RevokeError>> + Send + 'a>> {
        Box::pin(Engine::revoke(self, revocation))
    }

    #[cfg(all(feature = "redis", feature = "jwt"))]
    fn shared_tier(&self) -> Option<&crate::fleet::SharedTier> {
        Engine::shared_tier(self)
    }
}

impl<L: LoadToken> From<CachedSource<L>> for Verifier {
    fn from(source: CachedSource<L>) -> Self {
        Self {
            route: Route::Custom(source.engine()),
        }
    }
}

impl From<Introspector> for Verifier {
    fn from(introspector: Introspector) -> Self {
        Self {
            route: Route::Introspection(introspector),
        }
    }
}

#[cfg(feature = "jwt")]
impl From<JwtVerifier> for Verifier {
    fn from(jwt: JwtVerifier) -> Self {
        Self {
            route: Route::Jwt(jwt),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.route {
            Route::Introspection(introspector) => f.debug_tuple("Verifier").field(introspector).finish(),
            Route::Custom(_) => f.debug_tuple("Verifier").field(&"CachedSource").finish(),
            #[cfg(feature = "jwt")]
            Route::Jwt(jwt) => f.debug_tuple("Verifier").field(jwt).finish(),
            #[cfg(feature = "jwt")]
            Route::Several(sources) => f
                .debug_struct("Verifier")
                .field("jwt_by_issuer", &sources.by_issuer)
                .field("jwt_without_issuer", &sources.without_issuer)
                .field("introspect_jwts_too", &sources.introspect_jwts)
                .field("introspector", &sources.introspector)
                .finish(),
        }
    }
}

/// Combines sources into a [`Verifier`]; see [`Verifier::builder`].
#[derive(Default)]
#[must_use]
pub struct VerifierBuilder {
    #[cfg(feature = "jwt")]
    jwt: Vec<JwtVerifier>,
    introspector: Option<Introspector>,
    #[cfg(feature = "jwt")]
    introspect_jwts: bool,
    conflict: Option<&'static str>,
}

impl VerifierBuilder {
    /// Adds a JWT verifier: for tokens naming its issuer, or, configured
    /// without one, for JWTs no other verifier takes. At most one per issuer
    /// and one without.
    #[cfg(feature = "jwt")]
    pub fn jwt(mut self, verifier: JwtVerifier) -> Self {
        let clash = self.jwt.iter().any(|other| other.issuer() == verifier.issuer());
        if clash {
            self.conflict = Some("two JWT verifiers for the same issuer (or two without one)");
        }
        self.jwt.push(verifier);
        self
    }

    /// Sets the introspector, for every token no JWT verifier takes.
    pub fn introspector(mut self, introspector: Introspector) -> Self {
        if self.introspector.is_some() {
            self.conflict = Some("two introspectors");
        }
        self.introspector = Some(introspector);
        self
    }

    setters! {
        /// Also ask the introspection endpoint about JWTs that verified locally
        /// (both must accept the token). Needs an introspector.
        #[cfg(feature = "jwt")]
        pub fn introspect_jwts_too(yes: bool) => introspect_jwts = yes;
    }

    /// Checks the combination and builds the verifier.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if let Some(conflict) = self.conflict {
            return Err(ConfigError::InvalidSetting(conflict));
        }
        #[cfg(feature = "jwt")]
        {
            if self.introspect_jwts && self.introspector.is_none() {
                return Err(ConfigError::InvalidSetting(
                    "introspect_jwts_too needs an introspector",
                ));
            }
            let (without, by_issuer): (Vec<_>, Vec<_>) =
                self.jwt.into_iter().partition(|jwt| jwt.issuer().is_none());
            if by_issuer.is_empty() && without.is_empty() && self.introspector.is_none() {
                return Err(ConfigError::InvalidSetting(
                    "a verifier needs at least one source",
                ));
            }
            Ok(Verifier {
                route: Route::Several(Arc::new(Sources {
                    by_issuer: by_issuer.into(),
                    without_issuer: without.into_iter().next(),
                    introspector: self.introspector,
                    introspect_jwts: self.introspect_jwts,
                })),
            })
        }
        #[cfg(not(feature = "jwt"))]
        match self.introspector {
            Some(introspector) => Ok(Verifier::from(introspector)),
            None => Err(ConfigError::InvalidSetting(
                "a verifier needs at least one source",
            )),
        }
    }
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder").finish_non_exhaustive()
    }
}
