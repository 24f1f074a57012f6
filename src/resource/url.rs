//! The rules every configured URL obeys (an introspection or token
//! endpoint, an issuer, a JWK Set, a resource identifier, a metadata URL):
//! TLS outside loopback (I10), no credentials in the URL, and a redacted form
//! for `Debug` output.

use crate::error::ConfigError;

/// A URL for `Debug` output: without any user or password (which `build()`
/// refuses, but the builder may still hold).
pub(crate) fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.into()
        }
        Err(_) => "[not a URL]".to_owned(),
    }
}

/// Parses an endpoint URL and enforces TLS outside loopback (I10).
pub(crate) fn checked_url(
    what: &'static str,
    raw: &str,
    allow_insecure_http: bool,
) -> Result<url::Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl {
        what,
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not allowed; use the builder's client authentication",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url),
        "http" => Err(ConfigError::InsecureUrl { what }),
        _ => Err(invalid("the scheme must be https or http")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
