//! The validated identity behind a token: [`Principal`] and its [`Scopes`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
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
    /// The realm of the layer that let the request through, for the
    /// challenges of scope checks further in.
    realm: Option<HeaderValue>,
    /// With DPoP on the layer: how its challenges are answered, so the
    /// scope checks further in answer 403 with the scheme the request used
    /// (RFC 9449 §7.1). Built once per layer: one pointer here, one
    /// refcount per request.
    #[cfg(feature = "jwt")]
    dpop: Option<Arc<crate::error::DpopAnswer>>,
}

/// The parsed answer, as cached: one allocation plus its strings. Boxed
/// strings and sentinel timestamps keep a cached entry small.
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
    pub(crate) expires_at: Timestamp,
    pub(crate) issued_at: Timestamp,
    pub(crate) not_before: Timestamp,
    pub(crate) extra: Option<Box<Map<String, Value>>>,
    /// A kind other than an access token, if the answer declared one.
    pub(crate) other_kind: Option<OtherKind>,
    /// When the answer arrived, in milliseconds on a monotonic clock (for
    /// stale-if-error).
    pub(crate) received_at_ms: u64,
    /// With the shared tier: when the shared entry this answer came from
    /// expires, in milliseconds on the same monotonic clock (0: none), which
    /// bounds its life in the in-process cache.
    pub(crate) shared_until_ms: u64,
    /// How the answer binds the token to its sender (`cnf`). A byte beside
    /// the padding, so the middleware's hit path tests one byte rather than
    /// looking `cnf` up.
    pub(crate) binding: Binding,
}

/// The confirmation methods (RFC 7800 §3.1 `cnf`) an answer binds its token
/// with, as bits: `jkt` (DPoP, RFC 9449 §6) and `x5t#S256` (a client
/// certificate, RFC 8705 §3.1), which a layer can check, and anything else
/// (RFC 7800's `jwk`, `kid`, …), which it cannot. A token with any binding is not a bearer token (RFC 8705 §3,
/// RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Binding(u8);

impl Binding {
    const DPOP: u8 = 1;
    const OTHER: u8 = 2;
    const CERTIFICATE: u8 = 4;

    /// The binding the remaining members of an answer name. A `cnf` that is
    /// not an object, is empty, or whose `jkt` is not a string still binds
    /// the token: it claims a binding nothing can prove, so it fails closed.
    pub(crate) fn of(extra: &Map<String, Value>) -> Self {
        let Some(cnf) = extra.get("cnf") else {
            return Self(0);
        };
        let Some(methods) = cnf.as_object().filter(|methods| !methods.is_empty()) else {
            return Self(Self::OTHER);
        };
        Self(methods.keys().fold(0, |bits, method| {
            bits | match method.as_str() {
                "jkt" => Self::DPOP,
                "x5t#S256" => Self::CERTIFICATE,
                _ => Self::OTHER,
            }
        }))
    }

    pub(crate) fn is_bound(self) -> bool {
        self.0 != 0
    }

    pub(crate) fn names_dpop(self) -> bool {
        self.0 & Self::DPOP != 0
    }

    /// Whether it names a method no layer can check.
    pub(crate) fn names_other(self) -> bool {
        self.0 & Self::OTHER != 0
    }

    /// Whether it names a client certificate (`x5t#S256`).
    pub(crate) fn names_certificate(self) -> bool {
        self.0 & Self::CERTIFICATE != 0
    }
}

/// A token that is not an access token, as some authorization servers mark
/// it in their introspection answers (RFC 7662 lets them introspect every
/// token they issued, and `token_type_hint` is only a hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtherKind {
    Refresh,
    Id,
    Logout,
}

impl OtherKind {
    /// The kind declared by the conventions in use: `token_use` (Ory Hydra,
    /// Amazon Cognito), `typ` (Keycloak) and a `token_type` naming a
    /// refresh token.
    pub(crate) fn declared(
        token_use: Option<&Value>,
        typ: Option<&Value>,
        token_type: Option<&str>,
    ) -> Option<Self> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_ascii_lowercase);
        let by_use = match text(token_use).as_deref() {
            Some("refresh_token" | "refresh") => Some(Self::Refresh),
            Some("id_token" | "id") => Some(Self::Id),
            _ => None,
        };
        let by_typ = match text(typ).as_deref() {
            Some("refresh" | "offline" | "refresh_token") => Some(Self::Refresh),
            Some("id" | "id_token") => Some(Self::Id),
            Some("logout") => Some(Self::Logout),
            _ => None,
        };
        let by_type = token_type
            .is_some_and(|t| t.eq_ignore_ascii_case("refresh_token"))
            .then_some(Self::Refresh);
        by_use.or(by_typ).or(by_type)
    }

    pub(crate) fn refusal(self) -> &'static str {
        match self {
            Self::Refresh => "a refresh token is not an access token",
            Self::Id => "an ID token is not an access token",
            Self::Logout => "a logout token is not an access token",
        }
    }
}

/// Seconds since the Unix epoch, with `i64::MIN` for "absent" (half the size
/// of an `Option<i64>`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp(i64);

impl Timestamp {
    pub(crate) const ABSENT: Self = Self(i64::MIN);

    pub(crate) fn new(value: Option<i64>) -> Self {
        match value {
            None => Self::ABSENT,
            // Still far in the past, so it fails closed instead of reading as absent.
            Some(i64::MIN) => Self(i64::MIN + 1),
            Some(secs) => Self(secs),
        }
    }

    pub(crate) fn get(self) -> Option<i64> {
        (self != Self::ABSENT).then_some(self.0)
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Self::ABSENT
    }
}

/// The accessors of the claims held as text: one method per field, named
/// after it.
macro_rules! text_claims {
    ($($(#[$doc:meta])* $field:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(&self) -> Option<&str> {
                self.inner.$field.as_deref()
            }
        )*
    };
}

impl Principal {
    pub(crate) fn from_claims(claims: Claims) -> Self {
        Self::from_shared(Arc::new(claims))
    }

    pub(crate) fn from_shared(claims: Arc<Claims>) -> Self {
        Self {
            inner: claims,
            realm: None,
            #[cfg(feature = "jwt")]
            dpop: None,
        }
    }

    pub(crate) fn into_shared(self) -> Arc<Claims> {
        self.inner
    }

    pub(crate) fn set_realm(&mut self, realm: HeaderValue) {
        self.realm = Some(realm);
    }

    pub(crate) fn realm(&self) -> Option<&HeaderValue> {
        self.realm.as_ref()
    }

    /// Whether the token is bound to its sender in any way (`cnf`): the
    /// one-byte test of the middleware's hit path.
    #[inline]
    pub(crate) fn is_bound(&self) -> bool {
        self.inner.binding.is_bound()
    }

    /// The confirmation methods the token is bound with.
    #[inline]
    pub(crate) fn binding(&self) -> Binding {
        self.inner.binding
    }

    #[cfg(feature = "jwt")]
    pub(crate) fn set_dpop_answer(&mut self, answer: Arc<crate::error::DpopAnswer>) {
        self.dpop = Some(answer);
    }

    #[cfg(feature = "jwt")]
    pub(crate) fn dpop_answer(&self) -> Option<&crate::error::DpopAnswer> {
        self.dpop.as_deref()
    }

    pub(crate) fn other_kind(&self) -> Option<OtherKind> {
        self.inner.other_kind
    }

    text_claims! {
        /// `sub`: the subject of the token, usually the resource owner.
        subject;
        /// `username`: a human-readable identifier of the resource owner.
        username;
        /// `client_id`: the client the token was issued to.
        client_id;
        /// `token_type`, e.g. `Bearer`.
        token_type;
        /// `iss`: the issuer of the token.
        issuer;
        /// `jti`: the token's identifier.
        jwt_id;
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
        self.inner.expires_at.get()
    }

    /// `iat` in seconds since the Unix epoch.
    pub fn issued_at(&self) -> Option<i64> {
        self.inner.issued_at.get()
    }

    /// `nbf` in seconds since the Unix epoch.
    pub fn not_before(&self) -> Option<i64> {
        self.inner.not_before.get()
    }

    /// `exp` as a [`SystemTime`].
    pub fn expiry(&self) -> Option<SystemTime> {
        let exp = u64::try_from(self.expires_at()?).ok()?;
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

    /// `cnf`: the token's confirmation (RFC 7800 §3.1), as JSON, when the
    /// authorization server bound the token to a key. See
    /// [`dpop_jkt`](Self::dpop_jkt) for DPoP.
    pub fn confirmation(&self) -> Option<&Value> {
        self.claim_value("cnf")
    }

    /// `cnf.jkt`: the RFC 7638 thumbprint of the key the token is bound to
    /// (RFC 9449 §6). A token with one is sender-constrained: the layer
    /// accepts it only with a DPoP proof signed by that key, never as a
    /// plain bearer token.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.confirmation()?.get("jkt")?.as_str()
    }

    /// `cnf.x5t#S256`: the base64url SHA-256 of the DER client certificate
    /// the token is bound to (RFC 8705 §3.1). A token with one is accepted
    /// only from a request that presents that certificate (see
    /// [`IntrospectionLayer::mtls`](crate::IntrospectionLayer::mtls)).
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        self.confirmation()?.get("x5t#S256")?.as_str()
    }

    /// Whether the token is DPoP-bound (its answer names `cnf.jkt`).
    pub fn is_dpop_bound(&self) -> bool {
        self.inner.binding.names_dpop()
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
            .field("exp", &self.expires_at())
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
    /// Sorted, unique, space-separated: one allocation for the whole set.
    joined: Box<str>,
}

impl Scopes {
    pub(crate) fn from_iter_unsorted<I, S>(iter: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut items: Vec<S> = iter.into_iter().filter(|s| !s.as_ref().is_empty()).collect();
        items.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        items.dedup_by(|a, b| a.as_ref() == b.as_ref());
        let mut joined = String::with_capacity(items.iter().map(|s| s.as_ref().len() + 1).sum());
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                joined.push(' ');
            }
            joined.push_str(item.as_ref());
        }
        Self {
            joined: joined.into_boxed_str(),
        }
    }

    /// Whether `scope` was granted.
    pub fn contains(&self, scope: &str) -> bool {
        !scope.is_empty() && self.iter().any(|granted| granted == scope)
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
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.joined.split(' ').filter(|s| !s.is_empty())
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no scope was granted.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// The scopes as one space-delimited string, as in the `scope` member.
    pub fn as_str(&self) -> &str {
        &self.joined
    }
}

impl std::str::FromStr for Scopes {
    type Err = std::convert::Infallible;

    /// Parses a space-delimited scope string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_iter_unsorted(s.split_ascii_whitespace()))
    }
}

impl fmt::Display for Scopes {
    /// Space-delimited, as in the `scope` member.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.joined)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
