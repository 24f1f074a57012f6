//! Resource identifiers (RFC 8707 §2, RFC 9728 §1.2): the canonical URI of
//! a protected resource, and the comparison of a token's `aud` with it.
//!
//! The canonical form is an absolute `https` (or loopback `http`) URI with a
//! lower-case scheme and host, no default port, no fragment, no query, no
//! user information and no trailing slash (the form the MCP authorization
//! specification recommends). Audiences are compared as the MCP
//! authorization specification asks: an upper-case scheme or host is
//! accepted, and so is one trailing slash more or less.

use crate::error::ConfigError;

/// The canonical form of a resource identifier, or why it is not one.
pub(crate) fn canonical_resource(
    what: &'static str,
    raw: &str,
    allow_insecure_http: bool,
) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl {
        what,
        reason: reason.to_owned(),
    };
    let url = crate::introspect::checked_url(what, raw, allow_insecure_http)?;
    if url.fragment().is_some() || raw.contains('#') {
        return Err(invalid("a resource identifier has no fragment (RFC 8707 §2)"));
    }
    if url.query().is_some() {
        return Err(invalid(
            "a resource identifier should have no query (RFC 8707 §2); this crate refuses one",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("a resource identifier names a host"));
    }
    Ok(without_trailing_slash(url.as_str()).to_owned())
}

/// `url` without one trailing slash, unless the slash is the whole path of a
/// URI that `url::Url` always writes with one (`https://a.example/`).
fn without_trailing_slash(url: &str) -> &str {
    url.strip_suffix('/').unwrap_or(url)
}

/// Whether `audience` names the resource whose canonical form is
/// `canonical`: equal, or equal once both are canonical (case of scheme and
/// host, default port) and one trailing slash is ignored.
pub(crate) fn is_resource(audience: &str, canonical: &str) -> bool {
    // The common case costs no parsing.
    if without_trailing_slash(audience) == canonical {
        return true;
    }
    let Ok(url) = url::Url::parse(audience) else {
        return false;
    };
    if url.fragment().is_some() || url.query().is_some() {
        return false;
    }
    without_trailing_slash(url.as_str()) == canonical
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(raw: &str) -> String {
        canonical_resource("resource", raw, false).unwrap()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical("https://mcp.example.com"), "https://mcp.example.com");
        assert_eq!(canonical("https://mcp.example.com/"), "https://mcp.example.com");
        assert_eq!(
            canonical("HTTPS://MCP.Example.COM/mcp"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            canonical("https://mcp.example.com:443/mcp"),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            canonical("https://mcp.example.com:8443"),
            "https://mcp.example.com:8443"
        );
        assert_eq!(
            canonical("https://mcp.example.com/a/mcp/"),
            "https://mcp.example.com/a/mcp"
        );
        assert_eq!(
            canonical("http://127.0.0.1:3001/mcp"),
            "http://127.0.0.1:3001/mcp"
        );
        assert_eq!(
            canonical("http://localhost:3001/mcp"),
            "http://localhost:3001/mcp"
        );
    }

    #[test]
    fn refused_forms() {
        for raw in [
            "mcp.example.com",
            "https://mcp.example.com#fragment",
            "https://mcp.example.com/mcp#",
            "https://mcp.example.com/mcp?tenant=a",
            "https://user:pw@mcp.example.com/mcp",
            "ftp://mcp.example.com/mcp",
            "http://mcp.example.com/mcp",
            "urn:example:mcp",
        ] {
            assert!(canonical_resource("resource", raw, false).is_err(), "{raw}");
        }
        assert!(canonical_resource("resource", "http://mcp.example.com/mcp", true).is_ok());
    }

    #[test]
    fn audiences_that_name_the_resource() {
        let resource = canonical("https://mcp.example.com/mcp");
        for aud in [
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/mcp/",
            "HTTPS://MCP.EXAMPLE.COM/mcp",
            "https://mcp.example.com:443/mcp",
        ] {
            assert!(is_resource(aud, &resource), "{aud}");
        }
        for aud in [
            "https://mcp.example.com",
            "https://mcp.example.com/mcp//",
            "https://mcp.example.com/MCP",
            "https://mcp.example.com/mcp2",
            "https://mcp.example.com/mcp/tools",
            "https://mcp.example.com/mcp#x",
            "https://mcp.example.com/mcp?x",
            "http://mcp.example.com/mcp",
            "https://mcp.example.com:8443/mcp",
            "https://evil.example/https://mcp.example.com/mcp",
            "mcp.example.com/mcp",
            "",
        ] {
            assert!(!is_resource(aud, &resource), "{aud}");
        }
        let root = canonical("https://mcp.example.com/");
        assert!(is_resource("https://mcp.example.com", &root));
        assert!(is_resource("https://mcp.example.com/", &root));
        assert!(is_resource("https://MCP.example.com", &root));
    }
}
