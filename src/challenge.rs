//! Building `WWW-Authenticate: Bearer …` challenges (RFC 6750 §3).
//!
//! Every challenge carries `realm`, so no bare `Bearer` is ever sent (B8).
//! Parameter values are reduced to the characters RFC 6750 §3 allows before
//! they are quoted, so a value can never break out of its quoted string or
//! add a second parameter (B9, B10).

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::HeaderValue;

/// A `WWW-Authenticate: Bearer` challenge under construction.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    value: String,
}

impl Challenge {
    /// Starts a `Bearer` challenge with the `realm` parameter.
    #[cfg(test)]
    pub(crate) fn new(realm: &str) -> Self {
        Self::with_scheme("Bearer", realm)
    }

    /// Starts a challenge of another scheme (`DPoP`, RFC 9449 §7.1).
    pub(crate) fn with_scheme(scheme: &str, realm: &str) -> Self {
        let mut value = String::with_capacity(64);
        value.push_str(scheme);
        value.push_str(" realm=\"");
        push_sanitized(&mut value, realm, is_error_char);
        value.push('"');
        Self { value }
    }

    /// Adds `resource_metadata` (RFC 9728 §5.1): the URL of the protected
    /// resource's metadata, checked when it was configured.
    pub(crate) fn resource_metadata(self, url: &str) -> Self {
        self.param("resource_metadata", url, is_error_char)
    }

    /// Adds `algs` (RFC 9449 §7.1): the space-separated JWS algorithms
    /// accepted for DPoP proofs, from configuration.
    pub(crate) fn algs(self, algs: &str) -> Self {
        self.param("algs", algs, is_error_char)
    }

    /// Adds the `error` parameter.
    pub(crate) fn error(self, code: &str) -> Self {
        self.param("error", code, is_error_char)
    }

    /// Adds `error_description`, dropping characters RFC 6750 §3 forbids;
    /// omitted when nothing is left.
    pub(crate) fn description(self, description: &str) -> Self {
        if !description.chars().any(is_error_char) {
            return self;
        }
        self.param("error_description", description, is_error_char)
    }

    /// Adds `scope`: scope tokens separated by single spaces
    /// (`scope-token *( SP scope-token )`); omitted when none is left.
    pub(crate) fn scope(self, scope: &str) -> Self {
        let cleaned: String = scope.chars().filter(|&c| is_scope_char(c)).collect();
        let tokens: Vec<&str> = cleaned.split(' ').filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            return self;
        }
        self.param("scope", &tokens.join(" "), is_scope_char)
    }

    /// Finishes the challenge as a header value.
    pub(crate) fn into_header_value(self) -> HeaderValue {
        // Only visible ASCII and spaces were pushed, which is always a valid header value.
        HeaderValue::try_from(self.value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    fn param(mut self, name: &str, value: &str, allowed: fn(char) -> bool) -> Self {
        self.value.push_str(", ");
        self.value.push_str(name);
        self.value.push_str("=\"");
        push_sanitized(&mut self.value, value, allowed);
        self.value.push('"');
        self
    }
}

/// A configured realm as a header value; `None` when it holds a character
/// RFC 6750 §3 does not allow in a quoted value (`"`, `\`, anything outside
/// printable ASCII and space). Such a realm cannot be sent as given, so the
/// setters report it rather than send another one.
pub(crate) fn realm_value(realm: &str) -> Option<HeaderValue> {
    if !realm.chars().all(is_error_char) {
        return None;
    }
    kept_value(realm.as_bytes())
}

/// A header value for `bytes`, in static memory when it can be (see
/// [`interned`]).
fn kept_value(bytes: &[u8]) -> Option<HeaderValue> {
    match interned(bytes) {
        Some(kept) => HeaderValue::from_maybe_shared(Bytes::from_static(kept)).ok(),
        None => HeaderValue::from_bytes(bytes).ok(),
    }
}

/// Every authenticated request carries its layer's realm (in the
/// `Principal`; with the challenge parameters packed beside it, see
/// [`ChallengeBase`]). A value held in static memory is cloned without
/// touching a reference count, which all cores would otherwise write in
/// turn. Realms are configuration, a handful per process: each distinct one
/// is kept for the life of the process, up to [`MAX_INTERNED`]; past that,
/// they are allocated as any header value.
fn interned(realm: &[u8]) -> Option<&'static [u8]> {
    static REALMS: Mutex<Vec<&'static [u8]>> = Mutex::new(Vec::new());
    let mut realms = REALMS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = realms.iter().find(|known| **known == realm) {
        return Some(known);
    }
    if realms.len() >= MAX_INTERNED || realm.len() > MAX_INTERNED_LEN {
        return None;
    }
    let kept: &'static [u8] = Box::leak(Box::from(realm));
    realms.push(kept);
    Some(kept)
}

/// How many distinct realms are kept in static memory, and how long each
/// may be: at most 128 KiB kept for the life of the process.
const MAX_INTERNED: usize = 256;
const MAX_INTERNED_LEN: usize = 512;
/// The parameters every challenge of one layer carries: its realm, and,
/// when configured, the `resource_metadata` URL (RFC 9728 §5.1) and the
/// `scope` its 401s name.
///
/// They travel packed in one [`HeaderValue`] (the layer's `LayerRealm`, a
/// `Principal`'s realm, an `AuthError`'s realm), so the per-request path
/// clones one value, as it did when there was only the realm; a layer without
/// metadata or scope packs exactly its realm. The fields are separated by the
/// byte `0xFF`, which a header value may hold but no `&str` can: a realm
/// built from text can never read as packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChallengeBase<'a> {
    pub(crate) realm: &'a str,
    pub(crate) resource_metadata: Option<&'a str>,
    pub(crate) scope: Option<&'a str>,
}

const FIELD_SEPARATOR: u8 = 0xFF;

impl<'a> ChallengeBase<'a> {
    /// Reads packed parameters. Anything not packed by [`pack`](Self::pack)
    /// (a plain realm) reads as a realm alone.
    pub(crate) fn unpack(value: &'a HeaderValue) -> Self {
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).unwrap_or_default();
        let mut fields = value.as_bytes().split(|&b| b == FIELD_SEPARATOR);
        let realm = fields.next().map(text).unwrap_or_default();
        let mut next = || fields.next().map(text).filter(|field| !field.is_empty());
        let resource_metadata = next();
        let scope = next();
        Self {
            realm,
            resource_metadata,
            scope,
        }
    }

    /// Packs the parameters; `None` when one holds a character its
    /// parameter may not (the setters check this first, so it means a bug).
    pub(crate) fn pack(self) -> Option<HeaderValue> {
        let fields_ok = self.realm.chars().all(is_error_char)
            && self
                .resource_metadata
                .is_none_or(|url| url.chars().all(is_error_char))
            && self.scope.is_none_or(|scope| scope.chars().all(is_scope_char));
        if !fields_ok {
            return None;
        }
        if self.resource_metadata.is_none() && self.scope.is_none() {
            return kept_value(self.realm.as_bytes());
        }
        let mut packed = Vec::with_capacity(
            self.realm.len()
                + self.resource_metadata.map_or(0, str::len)
                + self.scope.map_or(0, str::len)
                + 2,
        );
        packed.extend_from_slice(self.realm.as_bytes());
        packed.push(FIELD_SEPARATOR);
        packed.extend_from_slice(self.resource_metadata.unwrap_or_default().as_bytes());
        packed.push(FIELD_SEPARATOR);
        packed.extend_from_slice(self.scope.unwrap_or_default().as_bytes());
        kept_value(&packed)
    }
}

/// A `resource_metadata` URL as it may be sent: an absolute `http(s)` URL
/// made only of characters a quoted challenge value may hold.
pub(crate) fn resource_metadata_value(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let usable = matches!(parsed.scheme(), "https" | "http")
        && parsed.host_str().is_some()
        && parsed.fragment().is_none()
        && parsed.as_str().chars().all(is_error_char);
    usable.then(|| parsed.as_str().to_owned())
}

/// Scope tokens as a `scope` value (`scope-token *( SP scope-token )`):
/// `None` when there is none, or one holds a character RFC 6750 §3 forbids.
pub(crate) fn scope_value<I, S>(scopes: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut value = String::new();
    for scope in scopes {
        let scope = scope.as_ref();
        if scope.is_empty() || !scope.chars().all(|c| c != ' ' && is_scope_char(c)) {
            return None;
        }
        if !value.is_empty() {
            value.push(' ');
        }
        value.push_str(scope);
    }
    (!value.is_empty()).then_some(value)
}

fn push_sanitized(out: &mut String, value: &str, allowed: fn(char) -> bool) {
    out.extend(value.chars().filter(|&c| allowed(c)));
}

/// `%x20-21 / %x23-5B / %x5D-7E`: printable ASCII without `"` and `\`.
pub(crate) fn is_error_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

/// `%x21 / %x23-5B / %x5D-7E` plus the space that separates scope tokens.
fn is_scope_char(c: char) -> bool {
    c == ' ' || matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn realm_value_takes_allowed_characters_only() {
        for realm in ["api", "my api", "", "a!#$%&'()*+,-./:;<=>?@[]^_`{|}~"] {
            assert_eq!(realm_value(realm).unwrap().to_str().unwrap(), realm);
        }
        for realm in ["my \"realm\"", "a\\b", "café", "a\r\nb", "\0", "tab\t"] {
            assert!(realm_value(realm).is_none(), "{realm:?}");
        }
    }

    #[test]
    fn a_realm_is_kept_once_and_its_value_shares_static_memory() {
        let first = realm_value("interned realm").unwrap();
        let again = realm_value("interned realm").unwrap();
        assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr());
        assert_eq!(interned(b"interned realm"), interned(b"interned realm"));
        // Past the cap, realms still work, allocated as before.
        for i in 0..MAX_INTERNED {
            realm_value(&format!("realm {i}")).unwrap();
        }
        let long = "r".repeat(MAX_INTERNED_LEN + 1);
        assert_eq!(realm_value(&long).unwrap(), long.as_str());
        assert!(interned(long.as_bytes()).is_none(), "too long to keep");
        let late = realm_value("one realm too many").unwrap();
        assert_eq!(late, "one realm too many");
        assert!(interned(b"one realm too many").is_none());
    }

    /// Parses a `Bearer` challenge into its parameters, failing on anything
    /// that is not `name="value"` pairs separated by `, `.
    pub(crate) fn parse(header: &str) -> Option<Vec<(String, String)>> {
        let rest = header.strip_prefix("Bearer ")?;
        let mut params = Vec::new();
        let mut rest = rest;
        loop {
            let eq = rest.find("=\"")?;
            let name = &rest[..eq];
            let after = &rest[eq + 2..];
            let close = after.find('"')?;
            params.push((name.to_owned(), after[..close].to_owned()));
            rest = &after[close + 1..];
            if rest.is_empty() {
                return Some(params);
            }
            rest = rest.strip_prefix(", ")?;
        }
    }

    #[test]
    fn challenge_base_round_trips() {
        let plain = HeaderValue::from_static("my api");
        let base = ChallengeBase::unpack(&plain);
        assert_eq!(
            (base.realm, base.resource_metadata, base.scope),
            ("my api", None, None)
        );
        // A realm alone packs to itself: the pinned challenge forms stay.
        assert_eq!(base.pack().unwrap(), "my api");

        let full = ChallengeBase {
            realm: "api",
            resource_metadata: Some("https://a.example/.well-known/oauth-protected-resource/mcp"),
            scope: Some("read write"),
        };
        let packed = full.pack().unwrap();
        assert_eq!(ChallengeBase::unpack(&packed), full);
        let only_scope = ChallengeBase {
            scope: Some("read"),
            resource_metadata: None,
            ..full
        };
        assert_eq!(ChallengeBase::unpack(&only_scope.pack().unwrap()), only_scope);
        for bad in [
            ChallengeBase {
                realm: "a\tb",
                ..full
            },
            ChallengeBase {
                resource_metadata: Some("https://a.example/\"x"),
                ..full
            },
            ChallengeBase {
                scope: Some("a\tb"),
                ..full
            },
        ] {
            assert!(bad.pack().is_none(), "{bad:?}");
        }
    }

    #[test]
    fn resource_metadata_and_scope_values() {
        assert_eq!(
            resource_metadata_value("HTTPS://A.example/.well-known/oauth-protected-resource").unwrap(),
            "https://a.example/.well-known/oauth-protected-resource"
        );
        for bad in [
            "/relative",
            "ftp://a.example/x",
            "https://a.example/#f",
            "not a url",
        ] {
            assert!(resource_metadata_value(bad).is_none(), "{bad}");
        }
        assert_eq!(scope_value(["a", "b:c"]).unwrap(), "a b:c");
        assert!(scope_value(["a b"]).is_none());
        assert!(scope_value(["a\"b"]).is_none());
        assert!(scope_value([""]).is_none());
        assert!(scope_value(Vec::<String>::new()).is_none());
    }

    #[test]
    fn realm_only() {
        let value = Challenge::new("api").into_header_value();
        assert_eq!(value, "Bearer realm=\"api\"");
    }

    #[test]
    fn full_challenge_has_unique_params() {
        let value = Challenge::new("api")
            .error("insufficient_scope")
            .scope("read write")
            .into_header_value();
        assert_eq!(
            value,
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"read write\""
        );
    }

    #[test]
    fn b10_description_is_sanitized() {
        let value = Challenge::new("a\"b")
            .error("invalid_token")
            .description("bad \"token\" é\\, error=\"x")
            .into_header_value();
        let text = value.to_str().unwrap();
        let params = parse(text).unwrap();
        assert_eq!(params.len(), 3);
        assert_eq!(params[0], ("realm".into(), "ab".into()));
        assert_eq!(params[2].1, "bad token , error=x");
    }

    #[test]
    fn description_without_allowed_characters_is_omitted() {
        let value = Challenge::new("api")
            .error("invalid_token")
            .description("é\"\\")
            .into_header_value();
        assert_eq!(value, "Bearer realm=\"api\", error=\"invalid_token\"");
    }

    #[test]
    fn scope_follows_the_scope_token_grammar() {
        let value = Challenge::new("api").scope(" a  é b ").into_header_value();
        assert_eq!(value, "Bearer realm=\"api\", scope=\"a b\"");
        let value = Challenge::new("api").scope("é").into_header_value();
        assert_eq!(value, "Bearer realm=\"api\"");
    }
}
