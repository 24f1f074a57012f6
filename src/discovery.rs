//! Configuring from an issuer URL: RFC 8414 authorization-server metadata, or
//! OpenID Connect discovery.
//!
//! - RFC 8414 inserts `/.well-known/oauth-authorization-server` between the
//!   host and the issuer's path (D1); OpenID Connect appends
//!   `/.well-known/openid-configuration` to the issuer.
//! - The metadata's `issuer` must equal the configured issuer exactly, or the
//!   metadata is refused (D2).
//! - A missing `introspection_endpoint` is a clear error (D3).
//! - A failed fetch is retried a few times and never remembered (D6).

use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::fetch::{
    read_capped, AsFault, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT,
};
use crate::macros::setters;
use crate::resource::{checked_url, redact_url};

/// Which discovery document to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DiscoveryKind {
    /// RFC 8414 first; OpenID Connect if the server has no RFC 8414 document.
    #[default]
    Any,
    /// RFC 8414: `/.well-known/oauth-authorization-server` inserted before the
    /// issuer's path.
    Rfc8414,
    /// OpenID Connect Discovery: `/.well-known/openid-configuration` appended.
    OpenIdConnect,
}

/// The members of an authorization server's metadata this crate uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier; equal to the one discovery started from.
    pub issuer: String,
    /// The RFC 7662 introspection endpoint.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// The token endpoint (for bearer client authentication).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// How the introspection endpoint accepts callers, if the server says.
    #[serde(default)]
    pub introspection_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// The JWK Set with the server's signing keys.
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

/// Fetches an authorization server's metadata; see [`Introspector::discover`](crate::Introspector::discover).
///
/// The verified issuer is not turned into an `expected_issuer` check on
/// tokens: some servers (Django OAuth Toolkit) send no `iss` in their
/// answers. Add [`expected_issuer`](crate::introspection::IntrospectorBuilder::expected_issuer)
/// yourself where the server sends it.
#[derive(Clone)]
#[must_use]
pub struct Discovery {
    issuer: String,
    kind: DiscoveryKind,
    attempts: u32,
    retry_delay: Duration,
    allow_insecure_http: bool,
    client: Option<reqwest::Client>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &redact_url(&self.issuer))
            .field("kind", &self.kind)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    pub(crate) fn new(issuer: String) -> Self {
        Self {
            issuer,
            kind: DiscoveryKind::Any,
            attempts: 3,
            retry_delay: Duration::from_millis(200),
            allow_insecure_http: false,
            client: None,
        }
    }

    setters! {
        /// Which document to read (default: RFC 8414, then OpenID Connect).
        pub fn kind(kind: DiscoveryKind) => kind = kind;
    }

    /// How many times a failed fetch is tried (default 3), and the pause
    /// between tries (default 200 ms, doubled each time).
    pub fn retries(mut self, attempts: u32, delay: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.retry_delay = delay;
        self
    }

    setters! {
        /// Allow an `http://` issuer on a non-loopback host.
        pub fn allow_insecure_http(allow: bool) => allow_insecure_http = allow;

        /// Use this client for the metadata fetch.
        pub fn http_client(client: reqwest::Client) => client = Some(client);
    }

    /// Fetches and checks the metadata.
    pub async fn metadata(&self) -> Result<AuthorizationServerMetadata, ConfigError> {
        let issuer = checked_url("issuer", &self.issuer, self.allow_insecure_http)?;
        let client = match &self.client {
            Some(client) => client.clone(),
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
                .timeout(DEFAULT_TIMEOUT)
                .build()
                .map_err(ConfigError::HttpClient)?,
        };
        let urls = match self.kind {
            DiscoveryKind::Any => vec![rfc8414_url(&issuer), oidc_url(&issuer)],
            DiscoveryKind::Rfc8414 => vec![rfc8414_url(&issuer)],
            DiscoveryKind::OpenIdConnect => vec![oidc_url(&issuer)],
        };
        let mut delay = self.retry_delay;
        let mut last_error = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            for url in &urls {
                match fetch(&client, url).await {
                    Ok(Some(metadata)) => return self.checked(metadata),
                    // No document here: try the other kind, without a pause.
                    Ok(None) => last_error = format!("no metadata at {url}"),
                    Err(why) => {
                        tracing::warn!(%url, attempt, %why, "discovery failed");
                        last_error = why;
                    }
                }
            }
        }
        Err(ConfigError::Discovery(last_error))
    }

    /// Whether plain `http` outside loopback is allowed, for the builders
    /// this discovery starts.
    pub(crate) fn allows_insecure_http(&self) -> bool {
        self.allow_insecure_http
    }

    /// The HTTP client set with [`http_client`](Self::http_client).
    #[cfg(feature = "jwt")]
    pub(crate) fn client(&self) -> Option<&reqwest::Client> {
        self.client.as_ref()
    }

    fn checked(
        &self,
        metadata: AuthorizationServerMetadata,
    ) -> Result<AuthorizationServerMetadata, ConfigError> {
        if metadata.issuer != self.issuer {
            return Err(ConfigError::Discovery(format!(
                "the metadata names issuer {:?}, not {:?} (RFC 8414 §3.3: the metadata must not be used)",
                metadata.issuer, self.issuer
            )));
        }
        Ok(metadata)
    }
}

/// `Ok(None)` when the server has no document at `url` (404 or 405).
async fn fetch(
    client: &reqwest::Client,
    url: &url::Url,
) -> Result<Option<AuthorizationServerMetadata>, String> {
    let response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| AsFault::transport("metadata endpoint", &e).reason().to_owned())?;
    let status = response.status();
    if matches!(status.as_u16(), 404 | 405) {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("the metadata endpoint answered HTTP {}", status.as_u16()));
    }
    let body = read_capped(response, DEFAULT_MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| e.reason().to_owned())?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| format!("unusable metadata: {e}"))
}

/// RFC 8414 §3.1: `https://as/tenant` → `https://as/.well-known/oauth-authorization-server/tenant`.
pub(crate) fn rfc8414_url(issuer: &url::Url) -> url::Url {
    with_path(issuer, |path| {
        format!("/.well-known/oauth-authorization-server{path}")
    })
}

/// OpenID Connect Discovery §4: the issuer plus `/.well-known/openid-configuration`.
pub(crate) fn oidc_url(issuer: &url::Url) -> url::Url {
    with_path(issuer, |path| format!("{path}/.well-known/openid-configuration"))
}

/// The issuer with its path (without a trailing slash) made into another,
/// and no query.
fn with_path(issuer: &url::Url, path: impl FnOnce(&str) -> String) -> url::Url {
    let mut url = issuer.clone();
    url.set_path(&path(issuer.path().trim_end_matches('/')));
    url.set_query(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn d1_rfc8414_inserts_before_the_path_and_oidc_appends() {
        type Make = fn(&url::Url) -> url::Url;
        let cases: [(Make, &str, &str); 5] = [
            (
                rfc8414_url,
                "https://as/tenant1",
                "https://as/.well-known/oauth-authorization-server/tenant1",
            ),
            (
                rfc8414_url,
                "https://as",
                "https://as/.well-known/oauth-authorization-server",
            ),
            (
                rfc8414_url,
                "https://as:8443/a/b/",
                "https://as:8443/.well-known/oauth-authorization-server/a/b",
            ),
            (
                oidc_url,
                "https://as/tenant1",
                "https://as/tenant1/.well-known/openid-configuration",
            ),
            (
                oidc_url,
                "https://as/",
                "https://as/.well-known/openid-configuration",
            ),
        ];
        for (make, issuer, expected) in cases {
            assert_eq!(make(&url(issuer)).as_str(), expected, "{issuer}");
        }
    }
}
