//! JWT access tokens verified locally: [`JwtVerifier`].
//!
//! The signature is checked once per token, with a configured key (from a
//! JWK Set URL, an issuer's metadata, or PEM/DER files); the claims are then
//! cached like an introspection answer, so a cached JWT costs what a cached
//! introspection answer costs. Every read re-runs the local checks (`exp`,
//! `nbf`, `iss`, `aud`, token kind), and a token that fails verification is
//! remembered in the bounded negative cache, so a flood of forged tokens
//! costs one signature check each and evicts no good entry. A signature
//! failure is remembered only when the keys tried could have verified the
//! token (see `JwtVerifier::no_key`): a genuine token signed with a key the
//! AS has just added is accepted as soon as the new keys are fetched.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_introspection::test_util::{JwtSpec, TestAuthServer};
//! use tower_introspection::jwt::{JwtProfile, JwtVerifier};
//!
//! // A Laravel Passport stand-in: RS256, no `kid`, no `iss`, scopes in an array.
//! let passport = TestAuthServer::start().await?;
//! let pem = passport.rsa_public_key_pem(); // what storage/oauth-public.key holds
//!
//! let verifier = JwtVerifier::builder()
//!     .public_key_pem(pem)
//!     .profile(JwtProfile::Passport)
//!     .expected_audience("3") // the OAuth client ids Passport puts in `aud`
//!     .build()?;
//!
//! let token = passport.mint_jwt(JwtSpec::passport().client_id("3").sub("42").scope("read"));
//! let principal = verifier.validate(&token).await?;
//! assert_eq!(principal.subject(), Some("42"));
//! assert_eq!(principal.client_id(), Some("3"));
//! assert!(principal.scopes().contains("read"));
//!
//! // The same token with one bit of its signature flipped.
//! let forged = passport.mint_jwt(JwtSpec::passport().client_id("3").tamper());
//! assert_eq!(verifier.validate(&forged).await.unwrap_err().status(), 401);
//! # Ok(()) }
//! ```

mod builder;
mod profile;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub use self::builder::JwtVerifierBuilder;
pub use self::profile::JwtProfile;
pub use crate::jose::{Algorithm, UnsupportedAlgorithm, DEFAULT_JWKS_MAX_AGE, DEFAULT_JWKS_REFRESH_INTERVAL};

use self::profile::Shape;
use crate::discovery::Discovery;
use crate::engine::{Engine, LoadError, LoadToken};
use crate::error::{AuthError, ConfigError};
use crate::fetch::AsFault;
use crate::jose::{Compact, Jwks, PublicKey, Refresh};
use crate::principal::Principal;
use crate::revocation::{Revocation, RevokeError, Revoked};
use crate::stats::CacheStats;
use serde_json::{Map, Value};

/// Verifies JWT access tokens locally, with a cache in front.
///
/// Build one with [`JwtVerifier::builder`] or [`JwtVerifier::discover`], and
/// hand it to [`IntrospectionLayer`](crate::IntrospectionLayer) alone or
/// with other sources in a [`Verifier`](crate::Verifier). Cloning is a
/// pointer copy.
#[derive(Clone)]
pub struct JwtVerifier {
    engine: Arc<Engine<JwtSource>>,
}

/// The token source: a signature check and the profile's rules.
pub(crate) struct JwtSource {
    /// The issuer tokens must name, and route by.
    issuer: Option<Box<str>>,
    static_keys: Box<[PublicKey]>,
    jwks: Option<Jwks>,
    /// Accepted algorithms; `None`: the one each key declares.
    algorithms: Option<Box<[Algorithm]>>,
    shape: Shape,
    signature_checks: AtomicU64,
}

/// Counters of a [`JwtVerifier`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtStats {
    /// The cache: hits, negative hits, misses, coalesced waits, entries.
    pub cache: CacheStats,
    /// JWK Set fetches started (the first, and refreshes on unknown keys).
    pub jwks_fetches: u64,
    /// Signature checks made (one per token not found in the cache).
    pub signature_checks: u64,
}

/// The refusal of a token whose signature no key verifies.
const SIGNATURE_INVALID: &str = "the token's signature is invalid";

/// What a negative hit answers.
pub(crate) const REFUSED: &str = "the token was refused";

/// Why a token was not verified.
enum Refusal {
    /// Refused for good: remembered in the negative cache.
    Invalid(&'static str),
    /// Refused for now (an unknown `kid`, or a signature the keys at hand
    /// fail but newer keys might verify): not remembered.
    Refused(&'static str),
    /// No key could be had: 503, not remembered.
    Unavailable(AsFault),
}

impl JwtVerifier {
    /// Starts configuring a verifier.
    pub fn builder() -> JwtVerifierBuilder {
        JwtVerifierBuilder::new()
    }

    /// Starts from an issuer's metadata (RFC 8414, else OpenID Connect
    /// discovery): its `jwks_uri` gives the keys, and tokens must carry this
    /// `iss`. For other discovery settings, use
    /// [`Discovery::jwt_verifier`](crate::introspection::Discovery::jwt_verifier).
    pub async fn discover(issuer: impl Into<String>) -> Result<JwtVerifierBuilder, ConfigError> {
        Discovery::new(issuer.into()).jwt_verifier().await
    }

    /// The issuer tokens must name, if one is configured.
    pub fn issuer(&self) -> Option<&str> {
        self.engine.source().issuer.as_deref()
    }

    /// Verifies a token: the cached claims or a signature check, then the
    /// local checks (`exp`, `nbf`, `iss`, `aud`, token kind).
    ///
    /// A sender-constrained token (any `cnf`: DPoP's `jkt`, RFC 8705's
    /// `x5t#S256`, …) is refused here with 401 `invalid_token`, as by the
    /// layer's `Bearer` path: this call sees no proof of possession.
    /// DPoP-bound tokens pass through
    /// [`IntrospectionLayer::dpop`](crate::IntrospectionLayer::dpop).
    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        self.engine
            .validate(token)
            .await
            .and_then(crate::binding::unless_bound)
    }

    /// The engine, for the verifier that routes to it.
    pub(crate) fn engine(&self) -> &Engine<JwtSource> {
        &self.engine
    }

    /// Forgets the cached claims (or refusal) for `token`.
    pub async fn invalidate(&self, token: &str) {
        self.engine.invalidate(token).await;
    }

    /// Carries out a revocation here; see
    /// [`Verifier::revoke`](crate::Verifier::revoke).
    pub async fn revoke(&self, revocation: &Revocation) -> Result<Revoked, RevokeError> {
        self.engine.revoke(revocation).await
    }

    /// Forgets every cached token.
    pub fn invalidate_all(&self) {
        self.engine.invalidate_all();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> JwtStats {
        let source = self.engine.source();
        JwtStats {
            cache: self.engine.stats(),
            jwks_fetches: source.jwks.as_ref().map_or(0, Jwks::fetches),
            signature_checks: source.signature_checks.load(Ordering::Relaxed),
        }
    }

    /// Runs moka's pending maintenance, so that entry counts are exact.
    pub async fn run_pending_tasks(&self) {
        self.engine.run_pending_tasks().await;
    }
}

impl LoadToken for JwtSource {
    async fn load(&self, token: &str) -> Result<Principal, LoadError> {
        match self.verify(token).await {
            Ok(principal) => Ok(principal),
            Err(Refusal::Invalid(reason)) => {
                tracing::debug!(reason, "JWT refused");
                Err(LoadError::invalid(reason))
            }
            Err(Refusal::Refused(reason)) => Err(LoadError::refused(reason)),
            Err(Refusal::Unavailable(fault)) => {
                tracing::warn!(reason = fault.reason(), "no key to verify a JWT with");
                Err(LoadError::unavailable(
                    "the authorization server's keys are unavailable",
                ))
            }
        }
    }
}

impl JwtVerifier {
    /// A JWT signed by this verifier's issuer with one of its keys, not an
    /// access token (a logout token, a security event token): its header
    /// `typ` and its claims, unchecked but for the signature and the
    /// allowed algorithms. `Err(None)`: no key could be had (retry later).
    pub(crate) async fn signed_claims(
        &self,
        token: &str,
    ) -> Result<(Option<String>, Map<String, Value>), Option<&'static str>> {
        let source = self.engine.source();
        let jws = Compact::parse(token).map_err(Some)?;
        if let Some(allowed) = &source.algorithms {
            if !allowed.contains(&jws.alg) {
                return Err(Some("the token's algorithm is not allowed"));
            }
        }
        match source.check_signature(&jws).await {
            Ok(()) => Ok((jws.typ, jws.claims)),
            Err(Refusal::Invalid(why) | Refusal::Refused(why)) => Err(Some(why)),
            Err(Refusal::Unavailable(_)) => Err(None),
        }
    }
}

impl JwtSource {
    /// The signature check and the profile's rules, uncached.
    async fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        let jws = Compact::parse(token).map_err(Refusal::Invalid)?;
        if let Some(allowed) = &self.algorithms {
            if !allowed.contains(&jws.alg) {
                return Err(Refusal::Invalid("the token's algorithm is not allowed"));
            }
        }
        self.shape
            .check_typ(jws.typ.as_deref())
            .map_err(Refusal::Invalid)?;
        self.check_signature(&jws).await?;
        let claims = self.shape.claims(jws.claims).map_err(Refusal::Invalid)?;
        Ok(Principal::from_claims(claims))
    }

    /// Tries the keys the token may be signed with. The JWK Set is fetched
    /// again when it is older than its maximum age, and when the token names
    /// a `kid` it does not hold (or has none and no key fits): one fetch at a
    /// time, at most one per refresh interval.
    async fn check_signature(&self, jws: &Compact<'_>) -> Result<(), Refusal> {
        let kid = jws.kid.as_deref();
        if self.any_key_verifies(&self.static_keys, jws) {
            return Ok(());
        }
        let Some(jwks) = &self.jwks else {
            // The static keys are all the keys there will ever be.
            return Err(self.no_key(&self.static_keys, kid, true));
        };
        // No fetch started before this instant can hold a key made for this
        // token.
        let seen = Instant::now();
        let current = jwks.current();
        if let Some(current) = &current {
            if self.any_key_verifies(current, jws) {
                return Ok(());
            }
            // A kid we hold whose signature fails: a forgery, which must not
            // make us fetch again.
            if kid.is_some_and(|kid| current.iter().any(|k| k.kid() == Some(kid))) {
                return Err(Refusal::Invalid(SIGNATURE_INVALID));
            }
        }
        match jwks.refresh().await {
            Refresh::Fetched(keys, started) => {
                if self.any_key_verifies(&keys, jws) {
                    Ok(())
                } else {
                    Err(self.no_key(&keys, kid, started >= seen))
                }
            }
            Refresh::TooSoon(Some(keys)) => {
                // The keys just tried, most often: no second check.
                let tried = current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &keys));
                if !tried && self.any_key_verifies(&keys, jws) {
                    Ok(())
                } else {
                    Err(self.no_key(&keys, kid, false))
                }
            }
            Refresh::TooSoon(None) | Refresh::Failed(_, None) => Err(Refusal::Unavailable(
                AsFault::Unavailable("no JWK Set could be fetched".into()),
            )),
            // The keys we have do not fit, and newer ones cannot be had: the
            // AS may well have rotated, so this is not the token's fault.
            Refresh::Failed(fault, Some(keys)) => {
                if self.any_key_verifies(&keys, jws) {
                    Ok(())
                } else {
                    Err(Refusal::Unavailable(fault))
                }
            }
        }
    }

    fn any_key_verifies(&self, keys: &[PublicKey], jws: &Compact<'_>) -> bool {
        let candidates = keys.iter().filter(|key| {
            let kid_fits = match (key.kid(), jws.kid.as_deref()) {
                (Some(own), Some(wanted)) => own == wanted,
                (None, _) => true,
                (Some(_), None) => true,
            };
            let alg_fits = match &self.algorithms {
                Some(_) => key.fits(jws.alg),
                None => key.default_algorithm() == jws.alg,
            };
            kid_fits && alg_fits
        });
        candidates.into_iter().any(|key| {
            self.signature_checks.fetch_add(1, Ordering::Relaxed);
            key.verify(jws.alg, jws.signing_input, &jws.signature)
        })
    }

    /// No key verified the token: always 401, but remembered only when the
    /// keys tried could have verified it, so that the refusal holds for good.
    /// They could when they hold the `kid` the token names, or when they
    /// are `current` — fetched after the token was seen, or static keys.
    ///
    /// Otherwise the refusal is not remembered: an unknown `kid` may appear
    /// in the JWK Set at the next refresh, and a token without a `kid` (or
    /// naming one while the keys carry none) may be signed with a key the AS
    /// added since the last fetch. Remembered, such a genuine token would be
    /// refused for `negative_ttl` after its key is fetched.
    ///
    /// Forged tokens refused this way are verified again each time they come,
    /// and that is bounded: each costs what a new forgery costs (a check
    /// against the candidate keys held, whose number the JWK Set's size cap
    /// bounds), and no fetch, since one starts at most once per refresh
    /// interval whatever the tokens. Remembering them would not stop an
    /// attacker, who can mint a new forgery per request for the same price.
    /// Remembering them until the next fetch is allowed would need a
    /// lifetime per entry in the negative cache, for no gain.
    fn no_key(&self, keys: &[PublicKey], kid: Option<&str>, current: bool) -> Refusal {
        match kid {
            Some(kid) if keys.iter().any(|k| k.kid() == Some(kid)) => Refusal::Invalid(SIGNATURE_INVALID),
            Some(_) if !keys.iter().any(|k| k.kid().is_none()) => {
                Refusal::Refused("the token is signed with an unknown key (kid)")
            }
            _ if current => Refusal::Invalid(SIGNATURE_INVALID),
            _ => Refusal::Refused(SIGNATURE_INVALID),
        }
    }
}

impl Discovery {
    /// Fetches the metadata and starts a [`JwtVerifierBuilder`] with its
    /// `jwks_uri` and its issuer (which tokens must then carry as `iss`, per
    /// RFC 9068 §4). A metadata document without `jwks_uri` is an error.
    pub async fn jwt_verifier(&self) -> Result<JwtVerifierBuilder, ConfigError> {
        let metadata = self.metadata().await?;
        let jwks_uri = metadata.jwks_uri.ok_or_else(|| {
            ConfigError::Discovery(format!(
                "the metadata of {} has no jwks_uri (RFC 8414 §2)",
                metadata.issuer
            ))
        })?;
        let mut builder = JwtVerifier::builder()
            .expected_issuer(metadata.issuer)
            .jwks_url(jwks_uri)
            .allow_insecure_http(self.allows_insecure_http());
        if let Some(client) = self.client() {
            builder = builder.http_client(client.clone());
        }
        Ok(builder)
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.engine.source();
        f.debug_struct("JwtVerifier")
            .field("issuer", &inner.issuer)
            .field("jwks_url", &inner.jwks.as_ref().map(|j| j.url().as_str()))
            .field("static_keys", &inner.static_keys.len())
            .field("profile", &inner.shape.profile)
            .field("checks", self.engine.checks())
            .finish_non_exhaustive()
    }
}
