//! [`IntrospectorBuilder`]: every setting of an [`Introspector`], checked at
//! `build()`.

use std::fmt;
use std::time::Duration;

#[cfg(feature = "jwt")]
use super::assertion::{AssertionAudience, AssertionSigner, ClientKey};
use super::auth::{basic_header, bearer_header, ClientAuth, Secret, TokenAuth, TokenFetcher};
use super::{IntrospectionSource, Introspector, Limiter, RateLimit};
use crate::macros::setters;
use crate::resource::{checked_url, redact_url};

/// The default bound on concurrent introspection calls per introspector.
pub const DEFAULT_MAX_CONCURRENT_INTROSPECTIONS: usize = 64;

#[cfg(feature = "redis")]
use crate::engine::SharedTimes;
use crate::engine::{CacheSettings, Engine, Parts, Policy};
use crate::error::ConfigError;
use crate::settings::{ClaimSettings, HttpOptions, MAX_DURATION};
use crate::stats::Outcomes;

/// Configures an [`Introspector`]; see [`Introspector::builder`].
///
/// Exactly one client authentication method must be chosen:
/// [`client_secret_basic`](Self::client_secret_basic) (recommended),
/// [`client_secret_post`](Self::client_secret_post),
/// [`bearer_token`](Self::bearer_token),
/// [`bearer_from_client_credentials`](Self::bearer_from_client_credentials), or
/// [`unauthenticated`](Self::unauthenticated) for an endpoint protected by the
/// network alone.
///
/// # Cache settings and revocation latency
///
/// A cached active answer is reused until `min(exp, max_ttl)`. A token revoked
/// at the authorization server therefore keeps working for up to `max_ttl`
/// unless [`Introspector::invalidate`] is called (RFC 7662 §4). The default
/// `max_ttl` of 60 s bounds that window; `max_ttl(Duration::ZERO)` turns
/// caching off for sensitive deployments, and every request is introspected.
#[must_use]
pub struct IntrospectorBuilder {
    endpoint: String,
    auth: Vec<PendingAuth>,
    http: HttpOptions,
    token_type_hint: bool,
    claims: ClaimSettings,
    token_type: Option<Box<str>>,
    token_scope: Option<String>,
    cache: CacheSettings,
    supported_auth_methods: Option<Vec<String>>,
    /// The issuer named by discovery, the default assertion audience.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    discovered_issuer: Option<String>,
    #[cfg(feature = "jwt")]
    assertion_audience: Option<AssertionAudience>,
    /// RFC 9701: the issuer and JWK Set URL signed answers are checked against.
    #[cfg(feature = "jwt")]
    signed_answers: Option<(String, String)>,
    #[cfg(feature = "jwt")]
    accept_unsigned_answers: bool,
    max_concurrent: usize,
    queue_wait: Option<Duration>,
    #[cfg(feature = "redis")]
    shared: Option<crate::fleet::SharedCache>,
}

enum PendingAuth {
    Basic {
        client_id: String,
        secret: Secret,
    },
    Post {
        client_id: String,
        secret: Secret,
    },
    Bearer(Secret),
    ClientCredentials {
        token_url: String,
        client_id: String,
        secret: TokenSecret,
        scope: Option<String>,
    },
    #[cfg(feature = "jwt")]
    PrivateKeyJwt {
        client_id: String,
        key: ClientKey,
    },
    Unauthenticated,
}

/// What authenticates the client-credentials grant.
enum TokenSecret {
    Secret(Secret),
    #[cfg(feature = "jwt")]
    Key(ClientKey),
}

impl PendingAuth {
    /// The method's name in RFC 8414 metadata (the client-auth and the
    /// access-token-type registries).
    fn metadata_name(&self) -> Option<&'static str> {
        match self {
            Self::Basic { .. } => Some("client_secret_basic"),
            Self::Post { .. } => Some("client_secret_post"),
            Self::Bearer(_) | Self::ClientCredentials { .. } => Some("bearer"),
            #[cfg(feature = "jwt")]
            Self::PrivateKeyJwt { .. } => Some("private_key_jwt"),
            Self::Unauthenticated => None,
        }
    }
}

impl IntrospectorBuilder {
    pub(super) fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            auth: Vec::new(),
            http: HttpOptions::default(),
            token_type_hint: true,
            claims: ClaimSettings::default(),
            token_type: None,
            token_scope: None,
            cache: CacheSettings::default(),
            supported_auth_methods: None,
            discovered_issuer: None,
            #[cfg(feature = "jwt")]
            assertion_audience: None,
            #[cfg(feature = "jwt")]
            signed_answers: None,
            #[cfg(feature = "jwt")]
            accept_unsigned_answers: false,
            max_concurrent: DEFAULT_MAX_CONCURRENT_INTROSPECTIONS,
            queue_wait: None,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    setters! {
        /// From discovery: the methods the endpoint accepts, if the metadata said.
        pub(super) fn supported_auth_methods(methods: Option<Vec<String>>) => supported_auth_methods = methods;

        /// From discovery: the issuer, the default `aud` of client assertions.
        pub(super) fn discovered_issuer(issuer: String) => discovered_issuer = Some(issuer);
    }

    /// Authenticate with HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1).
    /// The id and secret are form-urlencoded before base64, as the RFC asks.
    pub fn client_secret_basic(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.auth.push(PendingAuth::Basic {
            client_id: client_id.into(),
            secret: Secret::new(secret),
        });
        self
    }

    /// Authenticate with `client_id` and `client_secret` in the form body
    /// (`client_secret_post`; RFC 6749 advises it only for clients that cannot
    /// use Basic).
    pub fn client_secret_post(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.auth.push(PendingAuth::Post {
            client_id: client_id.into(),
            secret: Secret::new(secret),
        });
        self
    }

    /// Authenticate with a static bearer token (RFC 7662 §2.1 allows "a
    /// separate OAuth 2.0 access token").
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.auth.push(PendingAuth::Bearer(Secret::new(token)));
        self
    }

    /// Authenticate with a bearer token that the introspector obtains itself
    /// from `token_url` with the client credentials grant (client
    /// authenticated by HTTP Basic). It is reused until shortly before its
    /// `expires_in`, and fetched again once if the introspection endpoint
    /// answers 401 or 403. Django OAuth Toolkit wants scope `introspection`
    /// on such a token: set it with [`token_scope`](Self::token_scope).
    pub fn bearer_from_client_credentials(
        mut self,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.auth.push(PendingAuth::ClientCredentials {
            token_url: token_url.into(),
            client_id: client_id.into(),
            secret: TokenSecret::Secret(Secret::new(secret)),
            scope: None,
        });
        self
    }

    /// Authenticate with `private_key_jwt` (RFC 7523 §2.2, OpenID Connect
    /// Core §9): each call carries a new assertion signed with `key` — `iss`
    /// and `sub` the client id, `aud` the authorization server (see
    /// [`client_assertion_audience`](Self::client_assertion_audience)), a
    /// random `jti`, `iat` now and `exp` a minute later. No shared secret
    /// leaves the process; the key never reaches `Debug` output or logs.
    ///
    /// ```
    /// use tower_introspection::{introspection::{AssertionAudience, ClientKey}, Introspector};
    ///
    /// let key = ClientKey::from_jwk(r#"{"kty":"OKP","crv":"Ed25519",
    ///   "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    ///   "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)?;
    /// let introspector = Introspector::builder("https://as.example/introspect")
    ///     .private_key_jwt("my-api", key)
    ///     .client_assertion_audience(AssertionAudience::Issuer("https://as.example".into()))
    ///     .expected_audience("https://api.example")
    ///     .build()?;
    /// assert!(format!("{introspector:?}").contains("private_key_jwt"));
    /// # Ok::<(), tower_introspection::ConfigError>(())
    /// ```
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn private_key_jwt(mut self, client_id: impl Into<String>, key: ClientKey) -> Self {
        self.auth.push(PendingAuth::PrivateKeyJwt {
            client_id: client_id.into(),
            key,
        });
        self
    }

    /// Like [`bearer_from_client_credentials`](Self::bearer_from_client_credentials),
    /// but the token endpoint is called with `private_key_jwt` instead of a
    /// client secret.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn bearer_from_client_credentials_with_key(
        mut self,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        key: ClientKey,
    ) -> Self {
        self.auth.push(PendingAuth::ClientCredentials {
            token_url: token_url.into(),
            client_id: client_id.into(),
            secret: TokenSecret::Key(key),
            scope: None,
        });
        self
    }

    setters! {
        /// Ask for signed introspection answers (RFC 9701): each call sends
        /// `Accept: application/token-introspection+jwt`, and the answer must be
        /// a JWT signed with a key from `jwks_uri` (fetched and refreshed as for
        /// [`JwtVerifier`](crate::jwt::JwtVerifier)), with `typ`
        /// `token-introspection+jwt`, `iss` equal to `issuer`, `aud` naming this
        /// resource server's client id, and an `iat` at most a minute old (plus
        /// the [`leeway`](Self::leeway)). Its `token_introspection` member is
        /// then read as a plain answer. Anything else — an unsigned answer too,
        /// unless [`accept_unsigned_answers`](Self::accept_unsigned_answers) —
        /// is an unusable answer: 503, never cached.
        ///
        /// `build()` refuses it with a client authentication that has no client
        /// id (a static bearer token, `unauthenticated`).
        #[cfg(feature = "jwt")]
        #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
        pub fn signed_answers(issuer: impl Into<String>, jwks_uri: impl Into<String>) => signed_answers = Some((issuer.into(), jwks_uri.into()));

        /// With [`signed_answers`](Self::signed_answers), still accept a plain
        /// JSON answer from a server that ignores the request for a signed one
        /// (default: refused). A signed answer is checked all the same.
        #[cfg(feature = "jwt")]
        #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
        pub fn accept_unsigned_answers(accept: bool) => accept_unsigned_answers = accept;

        /// The `aud` of `private_key_jwt` assertions. Default: the issuer when
        /// it is known — from discovery, or from
        /// [`signed_answers`](Self::signed_answers) — else
        /// [`AssertionAudience::Endpoint`] (the URL of the endpoint called). `build()` refuses it without
        /// `private_key_jwt`.
        #[cfg(feature = "jwt")]
        #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
        pub fn client_assertion_audience(audience: AssertionAudience) => assertion_audience = Some(audience);

        /// The `scope` requested with [`bearer_from_client_credentials`](Self::bearer_from_client_credentials),
        /// before or after it in the chain. `build()` refuses it with any other
        /// client authentication method, where it would mean nothing.
        pub fn token_scope(scope: impl Into<String>) => token_scope = Some(scope.into());
    }

    /// Send no credentials. RFC 7662 requires the endpoint to be protected;
    /// use this only when the network protects it.
    pub fn unauthenticated(mut self) -> Self {
        self.auth.push(PendingAuth::Unauthenticated);
        self
    }

    setters! {
        /// Send `token_type_hint=access_token` (default: on).
        pub fn token_type_hint(send: bool) => token_type_hint = send;

        /// Accept only tokens whose `token_type` is this one (case-insensitive).
        pub fn required_token_type(token_type: impl Into<String>) => token_type = Some(token_type.into().into_boxed_str());
    }

    crate::settings::http_setters!();
    crate::settings::claim_setters!();
    crate::settings::cache_setters!();

    /// At most `max` introspection calls in flight at once (default 64,
    /// waiting up to the total [`timeout`](Self::timeout)); a call beyond that
    /// waits up to `wait` for a slot, then the request is answered 503. `0`
    /// removes the bound.
    pub fn max_concurrent_introspections(mut self, max: usize, wait: Duration) -> Self {
        self.max_concurrent = max;
        self.queue_wait = Some(wait);
        self
    }

    setters! {
        /// Share answers with the other replicas of a fleet through Redis, as a
        /// second tier behind the in-process cache (feature `redis`; see the
        /// README's "Running a fleet"). `build()` must then run inside a Tokio
        /// runtime; it does not wait for Redis, which may be down.
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// use tower_introspection::{Introspector, fleet::SharedCache};
        ///
        /// let shared = SharedCache::builder("redis://127.0.0.1:6379/", "a fleet secret of at least 32 bytes!")
        ///     .build()?;
        /// let introspector = Introspector::builder("https://as.example/introspect")
        ///     .client_secret_basic("my-api", "my-api-secret")
        ///     .expected_audience("https://api.example")
        ///     .shared_cache(shared)
        ///     .build()?;
        /// assert!(introspector.stats().shared.enabled);
        /// # Ok(()) }
        /// ```
        #[cfg(feature = "redis")]
        #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
        pub fn shared_cache(shared: crate::fleet::SharedCache) => shared = Some(shared);
    }

    /// Checks the settings and builds the introspector.
    ///
    /// Logs a `warn` when neither an audience nor an issuer is expected: any
    /// token the authorization server issued, for any API, is then accepted.
    pub fn build(self) -> Result<Introspector, ConfigError> {
        let endpoint = checked_url(
            "introspection endpoint",
            &self.endpoint,
            self.http.allow_insecure_http,
        )?;
        if self.max_concurrent > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::InvalidSetting(
                "max_concurrent_introspections is too large",
            ));
        }
        self.http.check()?;
        let checks = self
            .claims
            .checks(self.token_type.clone(), false, self.http.allow_insecure_http)?;
        if self.queue_wait.unwrap_or_default() > MAX_DURATION {
            return Err(ConfigError::OutOfRange {
                setting: "max_concurrent_introspections",
                range: "at most one hour",
            });
        }
        self.cache.check()?;
        let mut pending = self.auth;
        let auth = match pending.len() {
            0 => return Err(ConfigError::MissingCredentials),
            1 => pending.pop().ok_or(ConfigError::MissingCredentials)?,
            _ => return Err(ConfigError::ConflictingCredentials),
        };
        if let (Some(supported), Some(method)) = (&self.supported_auth_methods, auth.metadata_name()) {
            if !supported.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                return Err(ConfigError::Discovery(format!(
                    "the introspection endpoint does not list {method} in introspection_endpoint_auth_methods_supported ({})",
                    supported.join(", ")
                )));
            }
        }
        let auth = match (auth, self.token_scope) {
            (
                PendingAuth::ClientCredentials {
                    token_url,
                    client_id,
                    secret,
                    ..
                },
                Some(scope),
            ) => PendingAuth::ClientCredentials {
                token_url,
                client_id,
                secret,
                scope: Some(scope),
            },
            (_, Some(_)) => {
                return Err(ConfigError::InvalidSetting(
                    "token_scope applies only to bearer_from_client_credentials",
                ))
            }
            (auth, None) => auth,
        };
        #[cfg(feature = "jwt")]
        let audience = {
            let uses_key = matches!(
                auth,
                PendingAuth::PrivateKeyJwt { .. }
                    | PendingAuth::ClientCredentials {
                        secret: TokenSecret::Key(_),
                        ..
                    }
            );
            if self.assertion_audience.is_some() && !uses_key {
                return Err(ConfigError::InvalidSetting(
                    "client_assertion_audience applies only to private_key_jwt",
                ));
            }
            // The issuer whenever we know it: from discovery, or the one
            // that signs the answers.
            let known_issuer = self
                .discovered_issuer
                .clone()
                .or_else(|| self.signed_answers.as_ref().map(|(issuer, _)| issuer.clone()));
            match (self.assertion_audience.clone(), known_issuer) {
                (Some(audience), _) => audience,
                (None, Some(issuer)) => AssertionAudience::Issuer(issuer),
                (None, None) => {
                    if uses_key {
                        tracing::debug!(
                        "private_key_jwt without a known issuer: assertions name the endpoint called as `aud`; set client_assertion_audience to name the issuer"
                    );
                    }
                    AssertionAudience::Endpoint
                }
            }
        };
        let auth = match auth {
            #[cfg(feature = "jwt")]
            PendingAuth::PrivateKeyJwt { client_id, key } => {
                ClientAuth::PrivateKeyJwt(AssertionSigner::new(client_id, key, audience))
            }
            PendingAuth::Basic { client_id, secret } => ClientAuth::Basic {
                header: basic_header(&client_id, secret.expose()).ok_or(ConfigError::InvalidCredential {
                    what: "client secret",
                })?,
                client_id: client_id.into_boxed_str(),
            },
            PendingAuth::Post { client_id, secret } => ClientAuth::Post {
                client_id: client_id.into_boxed_str(),
                secret,
            },
            PendingAuth::Bearer(token) => ClientAuth::StaticBearer(
                bearer_header(token.expose())
                    .filter(|_| crate::token::is_b64token(token.expose().as_bytes()))
                    .ok_or(ConfigError::InvalidCredential { what: "bearer token" })?,
            ),
            PendingAuth::ClientCredentials {
                token_url,
                client_id,
                secret,
                scope,
            } => {
                let token_url = checked_url("token endpoint", &token_url, self.http.allow_insecure_http)?;
                let auth = match secret {
                    TokenSecret::Secret(secret) => TokenAuth::basic(&client_id, secret.expose()).ok_or(
                        ConfigError::InvalidCredential {
                            what: "client secret",
                        },
                    )?,
                    #[cfg(feature = "jwt")]
                    TokenSecret::Key(key) => {
                        TokenAuth::PrivateKeyJwt(AssertionSigner::new(client_id.clone(), key, audience))
                    }
                };
                let fetcher = TokenFetcher::new(token_url, &client_id, auth, scope);
                ClientAuth::ClientCredentials(Box::new(fetcher))
            }
            PendingAuth::Unauthenticated => ClientAuth::Unauthenticated,
        };
        let http = self.http.settings()?;
        #[cfg(feature = "jwt")]
        let signed = match self.signed_answers {
            Some((issuer, jwks_uri)) => {
                if auth.client_id().is_empty() {
                    return Err(ConfigError::InvalidSetting(
                        "signed_answers needs a client authentication with a client id (their `aud`)",
                    ));
                }
                let jwks_uri = checked_url("JWKS", &jwks_uri, self.http.allow_insecure_http)?;
                Some(super::signed::SignedAnswers {
                    issuer: issuer.into_boxed_str(),
                    client_id: auth.client_id().into(),
                    jwks: crate::jose::Jwks::new(
                        jwks_uri,
                        http.clone(),
                        crate::jose::DEFAULT_JWKS_REFRESH_INTERVAL,
                        crate::jose::DEFAULT_JWKS_MAX_AGE,
                    ),
                    accept_unsigned: self.accept_unsigned_answers,
                    leeway_secs: checks.leeway_secs,
                })
            }
            None => None,
        };
        #[cfg(not(feature = "jwt"))]
        let signed = None;
        if checks.issuers.is_empty() && checks.audiences.is_empty() && checks.resources.is_empty() {
            tracing::warn!(
                endpoint = endpoint.as_str(),
                "no expected audience or issuer is configured: any active token the authorization server issued, for any API, will be accepted; set `expected_audience`"
            );
        }
        let source = IntrospectionSource {
            endpoint,
            http,
            auth,
            token_type_hint: self.token_type_hint,
            limiter: (self.max_concurrent > 0)
                .then(|| Limiter::new(self.max_concurrent, self.queue_wait.unwrap_or(self.http.timeout))),
            config_error_log: RateLimit::default(),
            signed,
            outcomes: Outcomes::default(),
        };
        let endpoint = source.endpoint.as_str().to_owned();
        let client_id = source.auth.client_id().to_owned();
        let parts = Parts {
            settings: self.cache,
            checks,
            policy: Policy {
                refused: super::NOT_ACTIVE,
                remember_lasting: false,
                share_answers: true,
            },
            scope: (&endpoint, &client_id),
            #[cfg(feature = "redis")]
            shared: self.shared.as_ref().map(|config| {
                let times =
                    SharedTimes {
                        call: self.http.timeout,
                        // The longest a load can take: a token fetch, the queue
                        // for a slot, the introspection.
                        load: self.http.timeout.saturating_mul(2).saturating_add(
                            if self.max_concurrent > 0 {
                                self.queue_wait.unwrap_or(self.http.timeout)
                            } else {
                                Duration::ZERO
                            },
                        ),
                    };
                (config, times)
            }),
        };
        Ok(Introspector {
            engine: Engine::build(source, parts)?,
        })
    }
}

impl fmt::Debug for IntrospectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectorBuilder")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("auth_methods", &self.auth.len())
            .field("timeout", &self.http.timeout)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Introspector;

    fn err(builder: IntrospectorBuilder) -> ConfigError {
        builder.build().expect_err("the builder should refuse this")
    }

    #[test]
    fn i3_credentials_are_required() {
        assert!(matches!(
            err(Introspector::builder("https://as/introspect")),
            ConfigError::MissingCredentials
        ));
        assert!(Introspector::builder("https://as/introspect")
            .unauthenticated()
            .build()
            .is_ok());
    }

    #[test]
    fn c2_one_method_only() {
        let builder = Introspector::builder("https://as/introspect")
            .client_secret_basic("a", "b")
            .client_secret_post("a", "b");
        assert!(matches!(err(builder), ConfigError::ConflictingCredentials));
    }

    #[test]
    fn i10_plain_http_only_on_loopback() {
        let build = |url: &str| Introspector::builder(url).client_secret_basic("a", "b").build();
        assert!(matches!(
            build("http://as.example/introspect"),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(build("http://127.0.0.1:9/introspect").is_ok());
        assert!(build("http://[::1]:9/introspect").is_ok());
        assert!(build("http://localhost:9/introspect").is_ok());
        assert!(build("https://as.example/introspect").is_ok());
        assert!(matches!(
            build("ftp://as.example/"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(build("not a url"), Err(ConfigError::InvalidUrl { .. })));
        assert!(matches!(
            build("https://u:p@as.example/"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        let opted_in = Introspector::builder("http://as.example/introspect")
            .client_secret_basic("a", "b")
            .allow_insecure_http(true)
            .build();
        assert!(opted_in.is_ok());
    }

    #[test]
    fn out_of_range_settings_are_errors_not_panics() {
        let base = || Introspector::builder("https://as/introspect").client_secret_basic("a", "b");
        let refused = |builder: IntrospectorBuilder, name: &str| match err(builder) {
            ConfigError::OutOfRange { setting, .. } => assert_eq!(setting, name),
            other => panic!("{name}: {other:?}"),
        };
        refused(base().max_ttl(Duration::from_secs(40_000_000_000)), "max_ttl");
        refused(base().negative_ttl(Duration::MAX), "negative_ttl");
        refused(
            base()
                .max_ttl(Duration::from_secs(10))
                .stale_if_error(Duration::MAX),
            "stale_if_error",
        );
        refused(base().stale_if_error(Duration::from_secs(60)), "stale_if_error");
        refused(base().timeout(Duration::MAX), "timeout");
        refused(
            base().connect_timeout(Duration::from_secs(3601)),
            "connect_timeout",
        );
        refused(base().leeway(Duration::MAX), "leeway");
        refused(
            base().max_concurrent_introspections(4, Duration::MAX),
            "max_concurrent_introspections",
        );
        refused(base().max_bytes(1), "max_bytes");
        refused(base().negative_max_bytes(0), "negative_max_bytes");
        assert!(base()
            .max_ttl(Duration::from_secs(24 * 3600))
            .negative_ttl(crate::engine::MAX_CACHE_TTL)
            .stale_if_error(crate::engine::MAX_CACHE_TTL)
            .timeout(Duration::from_secs(3600))
            .build()
            .is_ok());
    }

    #[test]
    fn token_scope_goes_with_client_credentials_in_any_order() {
        let before = Introspector::builder("https://as/introspect")
            .token_scope("introspection")
            .bearer_from_client_credentials("https://as/token", "rs", "s")
            .build()
            .unwrap();
        assert!(format!("{:?}", before.engine.source().auth).contains(r#"scope: Some("introspection")"#));
        let orphan = Introspector::builder("https://as/introspect")
            .token_scope("introspection")
            .client_secret_basic("rs", "s");
        assert!(matches!(err(orphan), ConfigError::InvalidSetting(_)));
    }

    #[test]
    fn debug_shows_no_secret() {
        let builder = Introspector::builder("https://as/introspect").client_secret_basic("rs", "hunter2");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let introspector = builder.build().unwrap();
        let debug = format!("{introspector:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("client_secret_basic"));
    }
}
