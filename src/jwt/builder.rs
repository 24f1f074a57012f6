//! [`JwtVerifierBuilder`]: every setting of a [`JwtVerifier`], checked at
//! `build()`.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::profile::{JwtProfile, Shape};
use super::{JwtSource, JwtVerifier};
use crate::engine::{CacheSettings, Engine, Parts, Policy};
use crate::error::ConfigError;
use crate::jose::{Algorithm, Jwks, PublicKey, DEFAULT_JWKS_MAX_AGE, DEFAULT_JWKS_REFRESH_INTERVAL};
use crate::macros::setters;
use crate::resource::{checked_url, redact_url};
use crate::settings::{ClaimSettings, HttpOptions, MAX_DURATION};

/// Configures a [`JwtVerifier`]; see [`JwtVerifier::builder`].
///
/// At least one key source is needed: a JWK Set URL
/// ([`jwks_url`](Self::jwks_url), or an issuer's `jwks_uri` through
/// [`JwtVerifier::discover`]) or static keys
/// ([`public_key_pem`](Self::public_key_pem), [`public_key_der`](Self::public_key_der)).
/// Several may be combined.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_introspection::jwt::{Algorithm, JwtVerifier};
///
/// let verifier = JwtVerifier::builder()
///     .expected_issuer("https://as.example")
///     .jwks_url("https://as.example/.well-known/jwks.json")
///     .expected_audience("https://api.example")
///     .algorithms([Algorithm::Rs256, Algorithm::Es256])
///     .leeway(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(verifier.issuer(), Some("https://as.example"));
///
/// // No key source: refused at build.
/// assert!(JwtVerifier::builder().expected_issuer("https://as.example").build().is_err());
/// # Ok(()) }
/// ```
#[must_use]
pub struct JwtVerifierBuilder {
    jwks_url: Option<String>,
    pem_keys: Vec<(Option<String>, String)>,
    der_keys: Vec<(Option<String>, Vec<u8>)>,
    algorithms: Option<Vec<Algorithm>>,
    profile: JwtProfile,
    required_typ: Option<String>,
    scope_claims: Vec<String>,
    claims: ClaimSettings,
    refresh_interval: Duration,
    max_age: Duration,
    generic_settings: Option<&'static str>,
    http: HttpOptions,
    cache: CacheSettings,
    #[cfg(feature = "redis")]
    shared: Option<crate::fleet::SharedCache>,
}

impl JwtVerifierBuilder {
    pub(crate) fn new() -> Self {
        Self {
            jwks_url: None,
            pem_keys: Vec::new(),
            der_keys: Vec::new(),
            algorithms: None,
            profile: JwtProfile::default(),
            required_typ: None,
            scope_claims: vec!["scope".to_owned(), "scp".to_owned()],
            claims: ClaimSettings::default(),
            refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
            max_age: DEFAULT_JWKS_MAX_AGE,
            generic_settings: None,
            http: HttpOptions::default(),
            cache: CacheSettings::default(),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    setters! {
        /// Fetch keys from this JWK Set URL: on first use, and again when a token
        /// names an unknown `kid` (at most once per
        /// [`jwks_refresh_interval`](Self::jwks_refresh_interval)).
        pub fn jwks_url(url: impl Into<String>) => jwks_url = Some(url.into());
    }

    /// A static public key in PEM: `BEGIN PUBLIC KEY` (RSA, P-256, P-384 or
    /// Ed25519) or `BEGIN RSA PUBLIC KEY`, as Laravel Passport's
    /// `storage/oauth-public.key`. It has no `kid`: it is tried for any token
    /// whose algorithm fits it. Repeat for several keys.
    pub fn public_key_pem(mut self, pem: impl Into<String>) -> Self {
        self.pem_keys.push((None, pem.into()));
        self
    }

    /// A static public key in DER (SubjectPublicKeyInfo, or PKCS #1 for RSA).
    pub fn public_key_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.der_keys.push((None, der.into()));
        self
    }

    /// A static public key in PEM with a `kid`: tried only for tokens naming
    /// that `kid` (or none).
    pub fn public_key_pem_with_kid(mut self, kid: impl Into<String>, pem: impl Into<String>) -> Self {
        self.pem_keys.push((Some(kid.into()), pem.into()));
        self
    }

    setters! {
        /// The accepted algorithms. Default: for each key, the one it declares
        /// (a JWK's `alg`), or the usual one for its type (RS256 for RSA, ES256
        /// or ES384 by curve, EdDSA). `none` and HMAC are never accepted.
        pub fn algorithms(algorithms: impl IntoIterator<Item = Algorithm>) => algorithms = Some(algorithms.into_iter().collect());

        /// The token profile (default [`JwtProfile::Rfc9068`]).
        pub fn profile(profile: JwtProfile) => profile = profile;
    }

    /// With [`JwtProfile::Generic`]: require this `typ` header
    /// (case-insensitive; `application/` may be left out).
    pub fn required_typ(mut self, typ: impl Into<String>) -> Self {
        self.required_typ = Some(typ.into());
        self.generic_settings = Some("required_typ");
        self
    }

    /// With [`JwtProfile::Generic`]: the claims scopes are read from, first
    /// present wins (default `scope`, then `scp`).
    pub fn scope_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope_claims = names.into_iter().map(Into::into).collect();
        self.generic_settings = Some("scope_claims");
        self
    }

    setters! {
        /// The shortest time between two JWK Set fetches (default 30 s; from
        /// 1 s to an hour): a flood of tokens with unknown `kid`s (or none) makes
        /// at most one fetch per interval. A token that comes meanwhile, names no
        /// `kid` the keys hold, and fails them is refused without being
        /// remembered: it may be signed with a key added since the last fetch.
        pub fn jwks_refresh_interval(interval: Duration) => refresh_interval = interval;

        /// The longest a fetched JWK Set is used before it is fetched again
        /// (default 10 min; from the refresh interval to a day), so that a key
        /// the authorization server withdrew stops being trusted even if no
        /// token names a new `kid`. While a fetch fails, the last key set is
        /// used up to twice this age; then tokens get 503.
        pub fn jwks_max_age(max_age: Duration) => max_age = max_age;
    }

    crate::settings::claim_setters!();
    crate::settings::http_setters!();
    crate::settings::cache_setters!();

    setters! {
        /// Joins a fleet of replicas through a shared store (see
        /// [`SharedCache`](crate::fleet::SharedCache)), for what must reach
        /// every replica: [`revoke`](JwtVerifier::revoke) and
        /// [`invalidate`](JwtVerifier::invalidate) made on one replica are
        /// carried out on all, and a replica that starts later honours the
        /// revocations still in force. Answers are not shared: checking a
        /// signature here costs less than a round trip to Redis. Needs a
        /// Tokio runtime at `build()`.
        #[cfg(feature = "redis")]
        #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
        pub fn shared_cache(shared: crate::fleet::SharedCache) => shared = Some(shared);
    }

    /// Checks the settings and builds the verifier. Keys given as PEM or DER
    /// are parsed here; a JWK Set is fetched on first use.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        if self.claims.issuers.len() > 1 {
            return Err(ConfigError::InvalidSetting(
                "a JWT verifier takes one expected issuer (a Verifier routes tokens by it); build one per issuer",
            ));
        }
        if self.refresh_interval > MAX_DURATION || self.refresh_interval < Duration::from_secs(1) {
            return Err(ConfigError::OutOfRange {
                setting: "jwks_refresh_interval",
                range: "from one second to one hour",
            });
        }
        if self.max_age < self.refresh_interval || self.max_age > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::OutOfRange {
                setting: "jwks_max_age",
                range: "from the refresh interval to one day",
            });
        }
        if let Some(setting) = self
            .generic_settings
            .filter(|_| self.profile != JwtProfile::Generic)
        {
            return Err(ConfigError::OutOfRange {
                setting,
                range: "only set with JwtProfile::Generic, which is the only profile that reads it",
            });
        }
        self.http.check()?;
        #[cfg(feature = "redis")]
        let http_timeout = self.http.timeout;
        if self.algorithms.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::InvalidSetting(
                "algorithms must list at least one algorithm",
            ));
        }
        self.cache.check()?;
        let invalid_key = |reason: &'static str| ConfigError::InvalidKey(reason);
        let mut static_keys = Vec::new();
        for (kid, pem) in &self.pem_keys {
            static_keys.push(
                PublicKey::from_pem(pem)
                    .map_err(invalid_key)?
                    .with_kid(kid.clone()),
            );
        }
        for (kid, der) in &self.der_keys {
            static_keys.push(
                PublicKey::from_der(der)
                    .map_err(invalid_key)?
                    .with_kid(kid.clone()),
            );
        }
        let jwks = match &self.jwks_url {
            Some(url) => {
                let url = checked_url("JWKS", url, self.http.allow_insecure_http)?;
                let http = self.http.settings()?;
                Some(Jwks::new(url, http, self.refresh_interval, self.max_age))
            }
            None => None,
        };
        if jwks.is_none() && static_keys.is_empty() {
            return Err(ConfigError::InvalidSetting(
                "a JWT verifier needs keys: a JWK Set URL, an issuer to discover, or a public key",
            ));
        }
        let checks = self.claims.checks(None, true, self.http.allow_insecure_http)?;
        let issuer: Option<Box<str>> = checks.issuers.first().cloned();
        if checks.issuers.is_empty() && self.jwks_url.is_some() {
            tracing::warn!(
                "a JWK Set without an expected issuer: tokens are not checked for `iss`, so a key set shared by several tenants or issuers accepts them all; set `expected_issuer`"
            );
        }
        if checks.audiences.is_empty() && checks.resources.is_empty() {
            tracing::warn!(
                issuer = issuer.as_deref().unwrap_or("(any)"),
                "no expected audience is configured: any token these keys signed, for any API, will be accepted; set `expected_audience`"
            );
        }
        // Keys of different sources never share cache entries.
        let identity = match (&issuer, &self.jwks_url) {
            (Some(issuer), _) => format!("jwt {issuer}"),
            (None, Some(url)) => format!("jwt {url}"),
            (None, None) => "jwt static".to_owned(),
        };
        let source = JwtSource {
            issuer,
            static_keys: static_keys.into(),
            jwks,
            algorithms: self.algorithms.map(Vec::into_boxed_slice),
            shape: Shape {
                profile: self.profile,
                required_typ: self.required_typ.map(String::into_boxed_str),
                scope_claims: self
                    .scope_claims
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect(),
            },
            signature_checks: AtomicU64::new(0),
        };
        let parts = Parts {
            settings: self.cache,
            checks,
            policy: Policy {
                refused: super::REFUSED,
                remember_lasting: true,
                share_answers: false,
            },
            scope: (&identity, ""),
            #[cfg(feature = "redis")]
            shared: self.shared.as_ref().map(|config| {
                let times = crate::engine::SharedTimes {
                    call: http_timeout,
                    load: http_timeout,
                };
                (config, times)
            }),
        };
        Ok(JwtVerifier {
            engine: Engine::build(source, parts)?,
        })
    }
}

impl fmt::Debug for JwtVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifierBuilder")
            .field("issuer", &self.claims.issuers.first())
            .field("jwks_url", &self.jwks_url.as_deref().map(redact_url))
            .field("static_keys", &(self.pem_keys.len() + self.der_keys.len()))
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}
