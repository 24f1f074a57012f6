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
    /// Starts a challenge with the `realm` parameter.
    pub(crate) fn new(realm: &str) -> Self {
        let mut value = String::with_capacity(64);
        value.push_str("Bearer realm=\"");
        push_sanitized(&mut value, realm, is_error_char);
        value.push('"');
        Self { value }
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
    match interned(realm) {
        Some(realm) => HeaderValue::from_maybe_shared(Bytes::from_static(realm.as_bytes())).ok(),
        None => HeaderValue::from_str(realm).ok(),
    }
}

/// Every authenticated request carries its layer's realm (in the
/// `Principal`). A realm held in static memory is cloned without touching a
/// reference count, which all cores would otherwise write in turn. Realms
/// are configuration, a handful per process: each distinct one is kept for
/// the life of the process, up to [`MAX_INTERNED`]; past that, realms are
/// allocated as any header value.
fn interned(realm: &str) -> Option<&'static str> {
    static REALMS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut realms = REALMS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = realms.iter().find(|known| **known == realm) {
        return Some(known);
    }
    if realms.len() >= MAX_INTERNED {
        return None;
    }
    let kept: &'static str = Box::leak(Box::from(realm));
    realms.push(kept);
    Some(kept)
}

/// How many distinct realms are kept in static memory.
const MAX_INTERNED: usize = 256;

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
        assert_eq!(interned("interned realm"), interned("interned realm"));
        // Past the cap, realms still work, allocated as before.
        for i in 0..MAX_INTERNED {
            realm_value(&format!("realm {i}")).unwrap();
        }
        let late = realm_value("one realm too many").unwrap();
        assert_eq!(late, "one realm too many");
        assert!(interned("one realm too many").is_none());
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
