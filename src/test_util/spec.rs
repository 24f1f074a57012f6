//! Public configuration and observation types: clients, tokens, answer
//! shapes, injected faults and recorded requests.

use crate::macros::setters;
use std::fmt;
use std::time::Duration;

/// A client registered at the [`TestAuthServer`](super::TestAuthServer).
///
/// Built with [`ClientSpec::new`] and the builder methods. Defaults: no
/// scopes, only the `client_credentials` grant, not allowed to introspect.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub(crate) id: String,
    pub(crate) secret: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) grants: Vec<String>,
    pub(crate) can_introspect: bool,
    pub(crate) public_jwk: Option<serde_json::Value>,
}

impl ClientSpec {
    /// A confidential client with this id and secret (any characters: the
    /// server decodes the RFC 6749 §2.3.1 form-urlencoding of HTTP Basic
    /// credentials).
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            scopes: Vec::new(),
            grants: vec!["client_credentials".to_owned()],
            can_introspect: false,
            public_jwk: None,
        }
    }

    setters! {
        /// A client that authenticates with `private_key_jwt` (RFC 7523), its
        /// assertions checked against this public JWK (for instance
        /// [`ClientKey::public_jwk`](crate::introspection::ClientKey::public_jwk)). The secret
        /// given to [`new`](Self::new) still works too.
        pub fn public_jwk(jwk: serde_json::Value) => public_jwk = Some(jwk);

        /// The scopes the client may request, space separated (replaces earlier ones).
        pub fn scopes(scopes: &str) => scopes = scopes.split_whitespace().map(str::to_owned).collect();

        /// The grant types the client may use at the token endpoint
        /// (`"password"`, `"client_credentials"`; replaces earlier ones).
        pub fn grants(grants: &[&str]) => grants = grants.iter().map(|g| (*g).to_owned()).collect();

        /// Whether the client may call the introspection endpoint with its
        /// credentials (HTTP Basic or `client_secret_post`).
        pub fn can_introspect(yes: bool) => can_introspect = yes;
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSpec")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("grants", &self.grants)
            .field("can_introspect", &self.can_introspect)
            .field("public_jwk", &self.public_jwk.is_some())
            .finish()
    }
}

/// A point in time relative to the moment a token is minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    At(i64),
    In(Duration),
    Ago(Duration),
}

impl When {
    pub(crate) fn resolve(self, now: i64) -> i64 {
        match self {
            When::At(t) => t,
            When::In(d) => now.saturating_add(secs(d)),
            When::Ago(d) => now.saturating_sub(secs(d)),
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// How the expiry of a minted token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ExpSpec {
    /// One hour after minting.
    #[default]
    Default,
    /// No `exp` at all.
    Never,
    /// This time.
    When(When),
}

/// What a token minted with [`TestAuthServer::mint`](super::TestAuthServer::mint) carries.
///
/// Every member is optional. Defaults: active, `exp` one hour after minting,
/// `iat` the minting time, `iss` the server's issuer at minting time,
/// `token_type` `"Bearer"`, a random `jti`; no scope, subject, username,
/// client id, audience, `nbf` or extra claims.
///
/// The server does not enforce `nbf`: it reports it, so a resource server's
/// own `nbf` check can be tested.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenSpec {
    pub(crate) value: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) aud: Vec<String>,
    pub(crate) iss: Option<String>,
    pub(crate) exp: ExpSpec,
    pub(crate) nbf: Option<When>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: Option<String>,
    pub(crate) token_type: Option<String>,
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
    pub(crate) omit: Vec<String>,
    pub(crate) raw_answer: Option<serde_json::Value>,
    pub(crate) active_even_if_expired: bool,
}

impl TokenSpec {
    /// A token with the defaults described on [`TokenSpec`].
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Use this exact string as the token instead of a random one (for
        /// tests of unusual token syntax). Minting it again replaces the earlier token.
        pub fn token_value(token: impl Into<String>) => value = Some(token.into());

        /// The `scope` member (space separated).
        pub fn scope(scope: impl Into<String>) => scope = Some(scope.into());

        /// The `sub` member.
        #[allow(clippy::should_implement_trait)] // named after the claim, not `std::ops::Sub`
        pub fn sub(sub: impl Into<String>) => sub = Some(sub.into());

        /// The `username` member.
        pub fn username(username: impl Into<String>) => username = Some(username.into());

        /// The `client_id` member.
        pub fn client_id(client_id: impl Into<String>) => client_id = Some(client_id.into());
    }

    /// Adds one audience (`aud`).
    pub fn aud(mut self, aud: impl Into<String>) -> Self {
        self.aud.push(aud.into());
        self
    }

    /// Sets the audiences (`aud`), replacing earlier ones.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.aud = audiences.into_iter().map(Into::into).collect();
        self
    }

    setters! {
        /// The `iss` member (default: the server's issuer when minting).
        pub fn iss(iss: impl Into<String>) => iss = Some(iss.into());

        /// Expires this long after minting.
        pub fn exp_in(d: Duration) => exp = ExpSpec::When(When::In(d));

        /// Expired this long before minting (the server answers inactive unless
        /// [`active_even_if_expired`](Self::active_even_if_expired)).
        pub fn exp_ago(d: Duration) => exp = ExpSpec::When(When::Ago(d));

        /// Expires at this time (Unix seconds).
        pub fn exp(unix_secs: i64) => exp = ExpSpec::When(When::At(unix_secs));
    }

    /// No `exp` member: the token never expires.
    pub fn no_exp(mut self) -> Self {
        self.exp = ExpSpec::Never;
        self
    }

    setters! {
        /// The `nbf` member (Unix seconds). Reported, not enforced by the server.
        pub fn nbf(unix_secs: i64) => nbf = Some(When::At(unix_secs));

        /// The `nbf` member, this long after minting. Reported, not enforced.
        pub fn nbf_in(d: Duration) => nbf = Some(When::In(d));

        /// The `iat` member (Unix seconds; default: the minting time).
        pub fn iat(unix_secs: i64) => iat = Some(unix_secs);

        /// The `jti` member (default: random).
        pub fn jti(jti: impl Into<String>) => jti = Some(jti.into());

        /// The `token_type` member (default `"Bearer"`).
        pub fn token_type(token_type: impl Into<String>) => token_type = Some(token_type.into());
    }

    /// An extra claim. In the `Full` shape it is merged at the top level
    /// last (so it can override a standard member); in the `Hydra` shape it
    /// goes under `ext`; the `Dot` shape leaves it out.
    pub fn claim(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.claims.insert(key.into(), value);
        self
    }

    /// Leaves this member out of the rendered answer, whatever the shape
    /// (for example `"iss"` or `"token_type"`). `"active"` cannot be omitted:
    /// use [`raw_answer`](Self::raw_answer) for that.
    pub fn omit(mut self, member: impl Into<String>) -> Self {
        self.omit.push(member.into());
        self
    }

    setters! {
        /// The introspection endpoint answers exactly this JSON for this token
        /// while it is active (not revoked, not expired), whatever the shape: for
        /// parser tests such as `"active":"true"`, `scope` as an array or `exp`
        /// as a string.
        pub fn raw_answer(answer: serde_json::Value) => raw_answer = Some(answer);
    }

    /// The server answers `active: true` even when `exp` has passed, so a
    /// resource server can prove it re-checks `exp` itself.
    pub fn active_even_if_expired(mut self) -> Self {
        self.active_even_if_expired = true;
        self
    }
}

/// How the introspection endpoint renders the answer for an active token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerShape {
    /// Every member the token has: `active`, `scope`, `client_id`,
    /// `username`, `sub`, `exp`, `iat`, `nbf`, `aud` (a string if one, an
    /// array if several), `iss`, `token_type`, `jti` and the extra claims.
    #[default]
    Full,
    /// Django OAuth Toolkit: exactly `active`, `scope` (`""` when the token
    /// has none), `exp`, `client_id`, `username` (each only when the token
    /// has it), plus `aud` as an array only when the token has audiences.
    Dot,
    /// Ory Hydra's admin introspection: `active`, `sub`, `client_id`,
    /// `scope`, `exp`, `iat`, `nbf`, `aud` (always an array, possibly empty),
    /// `iss`, `token_type`, `token_use: "access_token"` and `ext` (an object
    /// of the extra claims, left out when there are none, as Hydra does).
    Hydra,
}

/// A fault injected into the introspection endpoint
/// ([`TestAuthServer::set_fault`](super::TestAuthServer::set_fault)), the
/// token endpoint or the JWKS endpoint
/// ([`TestAuthServer::set_jwks_fault`](super::TestAuthServer::set_jwks_fault)).
///
/// Except `Delay`, a fault replaces the normal answer and is served without
/// authenticating the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Sleep this long, then answer normally.
    Delay(Duration),
    /// Answer with this status and a small JSON error body
    /// (`{"error":…,"error_description":…}`).
    Status(u16),
    /// `200` with a `text/html` body `<html>…</html>`.
    Html,
    /// `200` `application/json` with the body `{"active": tr`.
    TruncatedJson,
    /// `200` JSON (`{"active":false,"padding":"aaa…"}`) of at least this many
    /// bytes, with `Content-Length`.
    Oversized(usize),
    /// The same as `Oversized` but streamed in chunks without `Content-Length`.
    OversizedChunked(usize),
    /// The answer the token would get (or `{}` for an unknown token) with
    /// `"active":"true"`.
    ActiveAsString,
    /// The answer the token would get (or `{}` for an unknown token) with
    /// `"active":1`.
    ActiveAsNumber,
    /// `200` with the JSON body `[]`.
    JsonArray,
    /// `200` with the JSON body `null`.
    JsonNull,
    /// Send the headers and the start of a body, then abort the connection:
    /// the client sees an error (when sending or when reading the body).
    CloseConnection,
    /// `302` with `Location:` this URL.
    Redirect(String),
    /// Never answer (sleeps for an hour); the request counts as in flight
    /// until the client gives up.
    Hang,
}

/// How the introspection endpoint answers a caller whose credentials are
/// missing or wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthFailure {
    /// `401` with `WWW-Authenticate: Basic realm="test"` and
    /// `{"error":"invalid_client"}` (for a rejected bearer token:
    /// `WWW-Authenticate: Bearer realm="test", error="invalid_token"` or
    /// `error="insufficient_scope"`, and the same error in the body).
    #[default]
    Json401,
    /// Django OAuth Toolkit: `403`, `Content-Type: text/html`, empty body.
    DotHtml403,
}

/// What reached the introspection endpoint, as recorded by
/// [`TestAuthServer::last_introspection_request`](super::TestAuthServer::last_introspection_request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The `Authorization` header (test-only: it holds credentials).
    pub authorization: Option<String>,
    /// The body decoded as `application/x-www-form-urlencoded`, in order,
    /// whatever the content type.
    pub form: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of this form field.
    pub fn form_value(&self, key: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// How the server spoils its RFC 9701 signed introspection answers
/// ([`TestAuthServer::set_signed_answer_fault`](super::TestAuthServer::set_signed_answer_fault)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedAnswerFault {
    /// A plain JSON answer although a signed one was asked for.
    Unsigned,
    /// One bit of the signature flipped.
    BadSignature,
    /// `aud` names another client.
    WrongAudience,
    /// `iss` names another server.
    WrongIssuer,
    /// `typ` is `JWT`.
    WrongTyp,
    /// `iat` an hour ago.
    StaleIat,
}
