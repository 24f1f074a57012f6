//! The validated identity behind a token: [`Principal`] and its [`Scopes`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The identity and grants of a validated token, as the authorization server
/// described them in its introspection answer (RFC 7662 §2.2).
///
/// The middleware puts one into the request extensions of every request it
/// lets through. Cloning is a pointer copy. Its `Debug` shows the subject,
/// client and scopes, never the token.
///
/// ```
/// use tower_introspection::Principal;
///
/// let principal = Principal::from_json(br#"{
///     "active": true, "scope": "read write", "client_id": "pw-client",
///     "username": "alice", "exp": 4102444800, "tenant": "acme"
/// }"#).unwrap();
/// assert_eq!(principal.username(), Some("alice"));
/// assert!(principal.scopes().contains_all(["read", "write"]));
/// assert_eq!(principal.claim::<String>("tenant").unwrap().unwrap(), "acme");
/// ```
#[derive(Clone)]
pub struct Principal {
    inner: Arc<Claims>,
}

/// Boxed strings keep a cached entry small (16 bytes each instead of 24).
#[derive(Default)]
pub(crate) struct Claims {
    pub(crate) scopes: Scopes,
    pub(crate) subject: Option<Box<str>>,
    pub(crate) username: Option<Box<str>>,
    pub(crate) client_id: Option<Box<str>>,
    pub(crate) token_type: Option<Box<str>>,
    pub(crate) issuer: Option<Box<str>>,
    pub(crate) jwt_id: Option<Box<str>>,
    pub(crate) audiences: Box<[Box<str>]>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) issued_at: Option<i64>,
    pub(crate) not_before: Option<i64>,
    pub(crate) extra: Option<Box<Map<String, Value>>>,
}

impl Principal {
    pub(crate) fn from_claims(claims: Claims) -> Self {
        Self {
            inner: Arc::new(claims),
        }
    }

    /// Parses an active RFC 7662 introspection answer.
    ///
    /// Meant for tests and custom integrations; the middleware does this for
    /// you. An inactive answer or one that does not follow RFC 7662 is an
    /// error.
    pub fn from_json(json: &[u8]) -> Result<Self, crate::introspect::AnswerError> {
        match crate::introspect::parse_answer(json)? {
            crate::introspect::Answer::Active(principal) => Ok(principal),
            crate::introspect::Answer::Inactive => Err(crate::introspect::AnswerError::inactive()),
        }
    }

    /// `sub`: the subject of the token, usually the resource owner.
    pub fn subject(&self) -> Option<&str> {
        self.inner.subject.as_deref()
    }

    /// `username`: a human-readable identifier of the resource owner.
    pub fn username(&self) -> Option<&str> {
        self.inner.username.as_deref()
    }

    /// `client_id`: the client the token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.inner.client_id.as_deref()
    }

    /// `token_type`, e.g. `Bearer`.
    pub fn token_type(&self) -> Option<&str> {
        self.inner.token_type.as_deref()
    }

    /// `iss`: the issuer of the token.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// `jti`: the token's identifier.
    pub fn jwt_id(&self) -> Option<&str> {
        self.inner.jwt_id.as_deref()
    }

    /// `aud`: the audiences, whether the answer sent a string or an array.
    pub fn audiences(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.inner.audiences.iter().map(|a| &**a)
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.inner.scopes
    }

    /// `exp` in seconds since the Unix epoch.
    pub fn expires_at(&self) -> Option<i64> {
        self.inner.expires_at
    }

    /// `iat` in seconds since the Unix epoch.
    pub fn issued_at(&self) -> Option<i64> {
        self.inner.issued_at
    }

    /// `nbf` in seconds since the Unix epoch.
    pub fn not_before(&self) -> Option<i64> {
        self.inner.not_before
    }

    /// `exp` as a [`SystemTime`].
    pub fn expiry(&self) -> Option<SystemTime> {
        let exp = u64::try_from(self.inner.expires_at?).ok()?;
        UNIX_EPOCH.checked_add(Duration::from_secs(exp))
    }

    /// Any other member of the answer, deserialized into `T`.
    ///
    /// `None` when the member is absent, `Some(Err(_))` when it has another
    /// shape than `T`.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<Result<T, serde_json::Error>> {
        self.claim_value(name).map(|value| T::deserialize(value))
    }

    /// Any other member of the answer, as JSON.
    pub fn claim_value(&self, name: &str) -> Option<&Value> {
        self.inner.extra.as_ref()?.get(name)
    }

    /// Every other member of the answer.
    pub fn extra_claims(&self) -> impl Iterator<Item = (&str, &Value)> + '_ {
        self.inner
            .extra
            .iter()
            .flat_map(|map| map.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("sub", &self.subject())
            .field("client_id", &self.client_id())
            .field("scopes", &self.inner.scopes)
            .field("exp", &self.inner.expires_at)
            .finish_non_exhaustive()
    }
}

/// The set of scopes a token grants (RFC 6749 §3.3), sorted and unique.
///
/// ```
/// use tower_introspection::Scopes;
///
/// let scopes: Scopes = "write read read".parse().unwrap();
/// assert!(scopes.contains("read"));
/// assert!(scopes.contains_all(["read", "write"]));
/// assert!(scopes.contains_any(["admin", "write"]));
/// assert_eq!(scopes.to_string(), "read write");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes {
    items: Box<[Box<str>]>,
}

impl Scopes {
    pub(crate) fn from_iter_unsorted<I, S>(iter: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let mut items: Vec<Box<str>> = iter
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .collect();
        items.sort_unstable();
        items.dedup();
        Self {
            items: items.into_boxed_slice(),
        }
    }

    /// Whether `scope` was granted.
    pub fn contains(&self, scope: &str) -> bool {
        self.items.binary_search_by(|item| (**item).cmp(scope)).is_ok()
    }

    /// Whether every one of `scopes` was granted.
    pub fn contains_all<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> bool {
        scopes.into_iter().all(|scope| self.contains(scope))
    }

    /// Whether at least one of `scopes` was granted.
    pub fn contains_any<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> bool {
        scopes.into_iter().any(|scope| self.contains(scope))
    }

    /// The scopes, in sorted order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.items.iter().map(|s| &**s)
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no scope was granted.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl std::str::FromStr for Scopes {
    type Err = std::convert::Infallible;

    /// Parses a space-delimited scope string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_iter_unsorted(s.split_ascii_whitespace()))
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a str;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Box<str>>, fn(&'a Box<str>) -> &'a str>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter().map(|s| &**s)
    }
}

impl fmt::Display for Scopes {
    /// Space-delimited, as in the `scope` member.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
