//! The settings every verifier builder shares, and the setters that write
//! them: written once here, so that [`IntrospectorBuilder`],
//! [`JwtVerifierBuilder`] and [`CachedSourceBuilder`] offer the same names
//! with the same meaning.
//!
//! - [`cache_setters!`]: the cache's bounds and lifetimes
//!   ([`CacheSettings`], in a field `cache`);
//! - [`claim_setters!`]: what every accepted token must claim
//!   ([`ClaimSettings`], in a field `claims`);
//! - [`http_setters!`]: how the authorization server is called
//!   ([`HttpOptions`], in a field `http`).
//!
//! [`IntrospectorBuilder`]: crate::introspection::IntrospectorBuilder
//! [`JwtVerifierBuilder`]: crate::jwt::JwtVerifierBuilder
//! [`CachedSourceBuilder`]: crate::source::CachedSourceBuilder
//! [`CacheSettings`]: crate::engine::CacheSettings

use std::time::Duration;

use crate::error::ConfigError;
use crate::fetch::{HttpSettings, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT};
use crate::validate::Checks;

/// The longest timeout or leeway accepted.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(3600);

/// What every accepted token must claim, as given to a builder.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimSettings {
    pub(crate) leeway: Duration,
    pub(crate) issuers: Vec<Box<str>>,
    pub(crate) audiences: Vec<Box<str>>,
    pub(crate) resources: Vec<String>,
    pub(crate) any_token_kind: bool,
}

impl ClaimSettings {
    /// The checks, once the settings are in range; resources are put in
    /// canonical form (refused unless `https`, or `http` on loopback or
    /// with `allow_insecure_http`).
    pub(crate) fn checks(
        &self,
        token_type: Option<Box<str>>,
        iat_not_in_future: bool,
        allow_insecure_http: bool,
    ) -> Result<Checks, ConfigError> {
        if self.leeway > MAX_DURATION {
            return Err(ConfigError::OutOfRange {
                setting: "leeway",
                range: "at most one hour",
            });
        }
        Ok(Checks {
            leeway_secs: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            issuers: self.issuers.clone().into(),
            audiences: self.audiences.clone().into(),
            resources: self
                .resources
                .iter()
                .map(|raw| {
                    crate::resource::canonical_resource("resource", raw, allow_insecure_http)
                        .map(String::into_boxed_str)
                })
                .collect::<Result<_, _>>()?,
            token_type,
            any_token_kind: self.any_token_kind,
            iat_not_in_future,
        })
    }
}

/// How the authorization server is called, as given to a builder.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    pub(crate) client: Option<reqwest::Client>,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) allow_insecure_http: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            client: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            allow_insecure_http: false,
        }
    }
}

impl HttpOptions {
    /// Refuses zero or overlong timeouts and a zero size limit.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.max_response_bytes == 0 || self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::InvalidSetting(
                "timeouts and the response size limit must be greater than zero",
            ));
        }
        for (setting, value) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value > MAX_DURATION {
                return Err(ConfigError::OutOfRange {
                    setting,
                    range: "at most one hour",
                });
            }
        }
        Ok(())
    }

    /// The client and limits every call uses.
    pub(crate) fn settings(&self) -> Result<HttpSettings, ConfigError> {
        HttpSettings::new(
            self.client.clone(),
            self.connect_timeout,
            self.timeout,
            self.max_response_bytes,
        )
    }
}

/// The cache setters, for a builder with a field `cache: CacheSettings`.
macro_rules! cache_setters {
    () => {
        crate::macros::setters! {
            /// Longest reuse of an answer (default 60 s, at most a year); `exp`
            /// shortens it. `Duration::ZERO` disables caching.
            pub fn max_ttl(ttl: std::time::Duration) => cache.max_ttl = ttl;

            /// Capacity of the answer cache (default 100 000 entries); `0`
            /// disables caching, like `max_ttl(Duration::ZERO)`.
            pub fn max_entries(entries: u64) => cache.max_entries = entries;

            /// Capacity of the answer cache in bytes (default 64 MiB), beside
            /// [`max_entries`](Self::max_entries): whichever bound is reached
            /// first evicts. An entry counts its estimated heap size — the
            /// claims, extra ones included, and about 384 bytes of the cache's
            /// own — so answers carrying large claims cannot grow the cache past
            /// the budget, however many tokens are minted. At least 336.
            pub fn max_bytes(bytes: u64) => cache.max_bytes = bytes;

            /// Capacity of the negative cache (default 10 000 entries), which
            /// remembers refused tokens apart, so that random tokens cannot
            /// evict good entries.
            pub fn negative_entries(entries: u64) => cache.negative_entries = entries;

            /// Capacity of the negative cache in bytes (default 4 MiB), beside
            /// [`negative_entries`](Self::negative_entries): each entry counts
            /// about 336 bytes. At least 336.
            pub fn negative_max_bytes(bytes: u64) => cache.negative_max_bytes = bytes;

            /// How long a refusal is remembered (default 10 s, at most a year);
            /// `Duration::ZERO` disables the negative cache.
            pub fn negative_ttl(ttl: std::time::Duration) => cache.negative_ttl = ttl;

            /// Keep accepting a token whose answer arrived less than `grace` ago
            /// while the source is unavailable (for an authorization server:
            /// connection refused or broken off, timeout, 5xx, 429), never past
            /// its `exp`. A source that answers, but unusably (a redirect,
            /// another 4xx, an unreadable body), gets no such grace: that may be
            /// how it refuses a revoked token. Off by default
            /// (`Duration::ZERO`).
            ///
            /// `grace` must be longer than `max_ttl` (`build()` refuses it
            /// otherwise), and at most a year: answers older than `max_ttl` are
            /// refreshed on use, and only a failed refresh falls back to them.
            pub fn stale_if_error(grace: std::time::Duration) => cache.stale_if_error = grace;

            /// How long a [revocation](crate::revocation)'s cut-off is kept
            /// (default 24 hours, at most a year): at least the longest
            /// lifetime of the tokens the authorization server issues, so that
            /// every token issued before the event has expired when it is
            /// forgotten.
            pub fn cutoff_retention(retention: std::time::Duration) => cache.cutoff_retention = retention;

            /// How many [revocation](crate::revocation) cut-offs are held at
            /// most (default 100 000, at most 10 000 000; about 48 bytes each,
            /// and with a fleet about 130 bytes per fleet secret in the
            /// store). When all are taken by events younger than the
            /// retention, a revocation still evicts but answers
            /// `RevokeError::Full`.
            pub fn max_cutoffs(cutoffs: u64) => cache.max_cutoffs = cutoffs;
        }
    };
}

/// The claim setters, for a builder with a field `claims: ClaimSettings`.
macro_rules! claim_setters {
    () => {
        crate::macros::setters! {
            /// Clock skew tolerated on `exp` and `nbf` (default: none, at most
            /// an hour).
            pub fn leeway(leeway: std::time::Duration) => claims.leeway = leeway;
        }

        /// Accept only tokens whose `iss` equals this issuer exactly.
        pub fn expected_issuer(mut self, issuer: impl Into<String>) -> Self {
            self.claims.issuers.push(issuer.into().into_boxed_str());
            self
        }

        /// Accept only tokens whose `aud` contains this audience exactly.
        /// Repeat to accept any of several.
        pub fn expected_audience(mut self, audience: impl Into<String>) -> Self {
            self.claims.audiences.push(audience.into().into_boxed_str());
            self
        }

        /// Accept only tokens whose `aud` names this resource: the canonical
        /// URI of this API (RFC 8707 §2), such as an MCP server's
        /// `https://mcp.example.com/mcp`. Compared as the MCP authorization
        /// specification asks: an upper-case scheme or host, a default port
        /// and one trailing slash more or less still match; another path,
        /// host or port does not. The token's value is compared, never
        /// normalised: a value that only resolves to the resource
        /// (percent-encoding, dot segments, IDNA, numeric IPv4 forms,
        /// backslashes, whitespace) does not match. A token for another
        /// resource is answered 401 `invalid_token`. Repeat to accept any of
        /// several. The resource check is mandatory once configured: an
        /// [`expected_audience`](Self::expected_audience) never stands in
        /// for it (the MCP specification requires the token to be issued for
        /// this resource); with both set, `aud` must name one of the
        /// resources *and* contain one of the audiences.
        ///
        /// `build()` refuses a URI that is not a resource identifier: not
        /// absolute, not `https` (plain `http` only on loopback or with
        /// `allow_insecure_http`), or with a fragment, a query or user
        /// information.
        pub fn expected_resource(mut self, resource: impl Into<String>) -> Self {
            self.claims.resources.push(resource.into());
            self
        }

        crate::macros::setters! {
            /// Accept answers that say they describe a refresh, ID or logout
            /// token (default: refused with 401 `invalid_token`).
            ///
            /// An authorization server may introspect every token it issued, and
            /// a client may present a refresh token as if it were an access
            /// token; `token_type_hint` is only a hint. So, by default, an answer
            /// is refused when it declares another kind of token by any of these
            /// conventions:
            ///
            /// | member | values refused | used by |
            /// |---|---|---|
            /// | `token_use` | `refresh_token`, `refresh`, `id_token`, `id` | Ory Hydra, Amazon Cognito |
            /// | `typ` | `Refresh`, `Offline`, `ID`, `Logout` (any case) | Keycloak |
            /// | `token_type` | `refresh_token` | |
            pub fn accept_any_token_kind(accept: bool) => claims.any_token_kind = accept;
        }
    };
}

/// The HTTP setters, for a builder with a field `http: HttpOptions`.
macro_rules! http_setters {
    () => {
        crate::macros::setters! {
            /// Use this `reqwest::Client` instead of building one (e.g. to trust
            /// a private root certificate). Its own timeouts apply; the total
            /// [`timeout`](Self::timeout) set here is applied per request as
            /// well, but [`connect_timeout`](Self::connect_timeout) is not: a
            /// connect timeout belongs to the client, so set it when building
            /// yours.
            ///
            /// **Build it with `redirect(reqwest::redirect::Policy::none())`.**
            /// reqwest follows redirects by default, and on 307/308 it sends the
            /// body — a token, a client secret — to the new location before this
            /// crate can refuse the answer (an answer from another URL than the
            /// one called is refused, but too late for that).
            pub fn http_client(client: reqwest::Client) => http.client = Some(client);

            /// Connect timeout toward the authorization server (default 2 s, at
            /// most an hour). Ignored with a custom
            /// [`http_client`](Self::http_client), whose own connect timeout
            /// applies.
            pub fn connect_timeout(timeout: std::time::Duration) => http.connect_timeout = timeout;

            /// Total timeout of one call to the authorization server (default
            /// 5 s, at most an hour). A slow server is answered 503.
            pub fn timeout(timeout: std::time::Duration) => http.timeout = timeout;

            /// Largest answer read from the authorization server (default
            /// 64 KiB).
            pub fn max_response_bytes(max: usize) => http.max_response_bytes = max;

            /// Allow `http://` URLs on non-loopback hosts (default: refused;
            /// RFC 7662 §4 and RFC 8414 require TLS). Loopback hosts are always
            /// allowed.
            pub fn allow_insecure_http(allow: bool) => http.allow_insecure_http = allow;
        }
    };
}

pub(crate) use {cache_setters, claim_setters, http_setters};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_options_refuse_zero_and_overlong_settings() {
        let with = |f: fn(&mut HttpOptions)| {
            let mut options = HttpOptions::default();
            f(&mut options);
            options.check()
        };
        assert!(with(|_| {}).is_ok());
        assert!(matches!(
            with(|o| o.timeout = Duration::ZERO),
            Err(ConfigError::InvalidSetting(_))
        ));
        assert!(matches!(
            with(|o| o.connect_timeout = Duration::ZERO),
            Err(ConfigError::InvalidSetting(_))
        ));
        assert!(matches!(
            with(|o| o.max_response_bytes = 0),
            Err(ConfigError::InvalidSetting(_))
        ));
        assert!(with(|o| o.timeout = MAX_DURATION).is_ok());
        assert!(matches!(
            with(|o| o.timeout = MAX_DURATION + Duration::from_secs(1)),
            Err(ConfigError::OutOfRange {
                setting: "timeout",
                ..
            })
        ));
        assert!(matches!(
            with(|o| o.connect_timeout = MAX_DURATION + Duration::from_secs(1)),
            Err(ConfigError::OutOfRange {
                setting: "connect_timeout",
                ..
            })
        ));
    }

    #[test]
    fn claim_settings_bound_the_leeway_and_canonicalise_resources() {
        let mut claims = ClaimSettings {
            leeway: MAX_DURATION,
            resources: vec!["HTTPS://MCP.example/mcp/".into()],
            ..ClaimSettings::default()
        };
        let checks = claims.checks(None, false, false).unwrap();
        assert_eq!(checks.leeway_secs, 3600);
        assert_eq!(&*checks.resources[0], "https://mcp.example/mcp");
        claims.leeway += Duration::from_secs(1);
        assert!(matches!(
            claims.checks(None, false, false),
            Err(ConfigError::OutOfRange {
                setting: "leeway",
                ..
            })
        ));
        let insecure = ClaimSettings {
            resources: vec!["http://mcp.example/mcp".into()],
            ..ClaimSettings::default()
        };
        assert!(insecure.checks(None, false, false).is_err());
        assert!(insecure.checks(None, false, true).is_ok());
    }
}
