//! Resource identifiers (RFC 8707 §2, RFC 9728 §1.2): the canonical URI of
//! a protected resource, and the comparison of a token's `aud` with it.
//!
//! The canonical form is an absolute `https` (or loopback `http`) URI with a
//! lower-case scheme and host, no default port, no fragment, no query, no
//! user information and no trailing slash (the form the MCP authorization
//! specification recommends). Audiences are compared as the MCP
//! authorization specification asks: an upper-case scheme or host is
//! accepted, and so is one trailing slash more or less.

mod url;

pub(crate) use self::url::{checked_url, redact_url};
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
    let url = checked_url(what, raw, allow_insecure_http)?;
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
/// `canonical`: equal, or equal once the case of scheme and host, a default
/// port and one trailing slash are ignored.
///
/// The token's value is never normalised (no URL parser): a parser would
/// also accept what merely resolves to the resource (IDNA, percent-encoded
/// hosts, dot segments, backslashes, numeric IPv4 forms, whitespace), and an
/// audience the authorization server wrote that way is not this resource's
/// identifier. So it is split by hand: printable ASCII, no `\`, `?` or `#`,
/// no `%` or `@` in the authority, and a path equal to the resource's byte
/// for byte.
pub(crate) fn is_resource(audience: &str, canonical: &str) -> bool {
    // The common case costs no parsing.
    if without_trailing_slash(audience) == canonical {
        return true;
    }
    let (Some(aud), Some(res)) = (UriParts::split(audience), UriParts::split(canonical)) else {
        return false;
    };
    let aud_path = aud.path.strip_suffix('/').unwrap_or(aud.path);
    aud.scheme.eq_ignore_ascii_case(res.scheme)
        && aud.host.eq_ignore_ascii_case(res.host)
        && aud.port() == res.port()
        && aud_path == res.path
}

/// `scheme://host[:port]path` of an absolute `http(s)` URI, split without
/// decoding or normalising anything.
struct UriParts<'a> {
    scheme: &'a str,
    host: &'a str,
    /// The digits after `:`, if any.
    port: Option<&'a str>,
    path: &'a str,
}

impl<'a> UriParts<'a> {
    fn split(uri: &'a str) -> Option<Self> {
        // Printable ASCII only: no whitespace, controls or non-ASCII.
        if !uri.bytes().all(|b| b.is_ascii_graphic()) || uri.contains(['\\', '?', '#']) {
            return None;
        }
        let (scheme, rest) = uri.split_once("://")?;
        if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
            return None;
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.contains(['%', '@']) {
            return None;
        }
        let (host, port) = match authority.strip_prefix('[') {
            // An IPv6 literal: `[...]`, then an optional port.
            Some(v6) => {
                let (inside, after) = v6.split_once(']')?;
                let host = &authority[..inside.len() + 2];
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':')?)),
                }
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        Some(Self {
            scheme,
            host,
            port,
            path,
        })
    }

    /// The port, `None` for the scheme's default one (written or not).
    fn port(&self) -> Option<&'a str> {
        let default = if self.scheme.eq_ignore_ascii_case("https") {
            "443"
        } else {
            "80"
        };
        self.port.filter(|p| *p != default)
    }
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

    /// IPv6 literals: the brackets are part of the host, a default port is
    /// ignored, another address is another resource.
    #[test]
    fn ipv6_literal_hosts() {
        let resource = canonical("https://[::1]/mcp");
        assert!(is_resource("https://[::1]:443/mcp", &resource));
        assert!(is_resource("https://[::1]/mcp/", &resource));
        assert!(!is_resource("https://[::2]/mcp", &resource));
        assert!(!is_resource("https://[::1]:8443/mcp", &resource));
        assert!(!is_resource("https://[::1]x/mcp", &resource));
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
        assert!(is_resource("https://MCP.example.com:443/", &root));
        assert!(!is_resource("https://mcp.example.com//", &root));
        let local = canonical("http://127.0.0.1:3001/mcp");
        assert!(is_resource("HTTP://127.0.0.1:3001/mcp/", &local));
        let v6 = canonical("http://[::1]:3001/mcp");
        assert!(is_resource("http://[::1]:3001/mcp/", &v6));
        assert!(is_resource("HTTP://[::1]:3001/mcp", &v6));
        assert!(!is_resource("http://[::1]/mcp", &v6));
        let default_http = canonical("http://localhost:80/mcp");
        assert!(is_resource("http://LOCALHOST:80/mcp", &default_http));
        assert!(is_resource("http://localhost/mcp/", &default_http));
    }

    /// Values a URL parser would normalise into the resource, but that are
    /// not its identifier: the token's value is compared, not resolved.
    #[test]
    fn audiences_that_only_resolve_to_the_resource() {
        let resource = canonical("https://mcp.example.com/mcp");
        for aud in [
            "https://\u{ff4d}cp.example.com/mcp", // fullwidth m (IDNA)
            "https://mcp%2Eexample.com/mcp",
            "https://%6dcp.example.com/mcp",
            "https://mcp.example.com/x/../mcp",
            "https://mcp.example.com/./mcp",
            "https://mcp.example.com/%2e%2e/mcp",
            "https://mcp.example.com/%6dcp",
            "https://mcp.example.com\\mcp",
            "https:\\\\mcp.example.com/mcp",
            "https:mcp.example.com/mcp",
            "https:/mcp.example.com/mcp",
            " https://mcp.example.com/mcp",
            "https://mcp.example.com/mcp ",
            "https://mcp.example.com/mcp\n",
            "\thttps://mcp.example.com/mcp",
            "https://mcp.example.com./mcp",
            "https://user@mcp.example.com/mcp",
            "https://@mcp.example.com/mcp",
            "https://mcp.example.com:/mcp",
            "https://mcp.example.com:0443/mcp",
            "https://mcp.example.com/mcp/?",
            "https://mcp.example.com/mcp/#",
            "https://mcp.example.com/mcp;x",
        ] {
            assert!(!is_resource(aud, &resource), "{aud:?}");
        }
        let local = canonical("http://127.0.0.1:3001/mcp");
        for aud in [
            "http://2130706433:3001/mcp",
            "http://0x7f.1:3001/mcp",
            "http://0x7f000001:3001/mcp",
            "http://127.1:3001/mcp",
            "http://0177.0.0.1:3001/mcp",
            "http://127.0.0.1:3001/x/../mcp",
            "http://127.0.0.1:03001/mcp",
            "http://127.0.0.1:3001\\mcp",
        ] {
            assert!(!is_resource(aud, &local), "{aud:?}");
        }
        let v6 = canonical("http://[::1]:3001/mcp");
        for aud in [
            "http://[0:0::1]:3001/mcp",
            "http://[::1]x:3001/mcp",
            "http://[::1:3001/mcp",
        ] {
            assert!(!is_resource(aud, &v6), "{aud:?}");
        }
    }
}
