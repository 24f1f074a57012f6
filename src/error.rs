//! Errors: why a request was rejected ([`AuthError`]) and why a configuration
//! was refused ([`ConfigError`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::challenge::{Challenge, ChallengeBase};

/// The realm used when none is configured.
pub const DEFAULT_REALM: &str = "api";

/// How long clients are asked to wait (`Retry-After`, seconds) when the
/// authorization server cannot answer.
pub(crate) const RETRY_AFTER_SECS: u32 = 5;

/// The class of an [`AuthError`]; each maps to one row of the RFC 6750 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No bearer token in the request (or another scheme): 401 with a bare
    /// `Bearer realm="…"` challenge and no error code (RFC 6750 §3.1).
    MissingToken,
    /// Malformed credentials or a token sent in more than one place:
    /// 400 `invalid_request`.
    InvalidRequest,
    /// Inactive, expired, revoked, unknown, or for another issuer or audience:
    /// 401 `invalid_token`.
    InvalidToken,
    /// A valid token that lacks a required scope: 403 `insufficient_scope`.
    InsufficientScope,
    /// A missing, malformed, replayed or mismatched DPoP proof (RFC 9449
    /// §7.1): 401 `invalid_dpop_proof`.
    InvalidDpopProof,
    /// A DPoP proof without the server's current nonce, where nonces are
    /// required (RFC 9449 §8, §9): 401 `use_dpop_nonce`, with the nonce to
    /// use in a `DPoP-Nonce` header.
    UseDpopNonce,
    /// The authorization server is unreachable, slow, failing or answered
    /// something unparsable, or, with DPoP, the proof replay cache (or the
    /// token's share of it) is full: 503 with `Retry-After`, never cached.
    /// The description says which.
    Unavailable,
    /// The authorization server rejected the resource server's own
    /// credentials, or the middleware is wired wrongly: 500.
    Misconfigured,
}

impl ErrorKind {
    /// The HTTP status this kind is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken | Self::InvalidDpopProof | Self::UseDpopNonce => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6750 `error` code, if this kind has one.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Self::MissingToken | Self::Unavailable | Self::Misconfigured => None,
            Self::InvalidRequest => Some("invalid_request"),
            Self::InvalidToken => Some("invalid_token"),
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::InvalidDpopProof => Some("invalid_dpop_proof"),
            Self::UseDpopNonce => Some("use_dpop_nonce"),
        }
    }

    /// The `error` member of the default JSON body.
    fn body_code(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Unavailable => "temporarily_unavailable",
            Self::Misconfigured => "server_error",
            other => other.error_code().unwrap_or("server_error"),
        }
    }
}

/// Why a request was rejected.
///
/// It never holds the token, a secret or the authorization server's answer.
/// The middleware attaches it to the rejection response's extensions, so
/// outer layers can see why a request failed; with the `axum` feature it is
/// also an `IntoResponse` rejection.
#[derive(Clone)]
pub struct AuthError {
    kind: ErrorKind,
    description: Cow<'static, str>,
    required_scope: Option<Arc<str>>,
    realm: Option<HeaderValue>,
    /// With DPoP configured: the challenges to send besides (or instead of)
    /// `Bearer`.
    #[cfg(feature = "jwt")]
    dpop: Option<DpopAnswer>,
}

/// The header that hands a client the server's DPoP nonce (RFC 9449 §8.1).
pub(crate) const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// How a layer with DPoP answers (RFC 9449 §7.1): the `DPoP` challenge with
/// its `algs`, beside a `Bearer` one when both schemes are accepted; the
/// `error` goes in the challenge of the scheme the request used.
#[cfg(feature = "jwt")]
#[derive(Debug, Clone)]
pub(crate) struct DpopAnswer {
    pub(crate) algs: Arc<str>,
    pub(crate) bearer: bool,
    pub(crate) via_dpop: bool,
    /// With server nonces: the current one, sent as `DPoP-Nonce` (RFC 9449
    /// §8.2, §9). Boxed to keep `AuthError` small: every `Result` carries it.
    pub(crate) nonce: Option<Box<HeaderValue>>,
}

impl AuthError {
    pub(crate) fn new(kind: ErrorKind, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            description: description.into(),
            required_scope: None,
            realm: None,
            #[cfg(feature = "jwt")]
            dpop: None,
        }
    }

    /// [`with_dpop`](Self::with_dpop), unless the error already has its answer.
    #[cfg(feature = "jwt")]
    pub(crate) fn or_dpop(self, answer: impl FnOnce() -> DpopAnswer) -> Self {
        if self.dpop.is_some() {
            return self;
        }
        self.with_dpop(answer())
    }

    /// Answers with the DPoP challenges (see [`DpopAnswer`]).
    #[cfg(feature = "jwt")]
    pub(crate) fn with_dpop(mut self, answer: DpopAnswer) -> Self {
        self.dpop = Some(answer);
        self
    }

    pub(crate) fn missing_token() -> Self {
        Self::new(ErrorKind::MissingToken, "a bearer token is required")
    }

    pub(crate) fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidToken, description)
    }

    pub(crate) fn insufficient_scope(required: Arc<str>) -> Self {
        let mut error = Self::new(
            ErrorKind::InsufficientScope,
            "the token lacks a scope this resource requires",
        );
        error.required_scope = Some(required);
        error
    }

    pub(crate) fn missing_layer() -> Self {
        Self::new(
            ErrorKind::Misconfigured,
            "no `Principal` in the request extensions: is the route covered by `IntrospectionLayer`?",
        )
    }

    pub(crate) fn with_realm(mut self, realm: Option<&HeaderValue>) -> Self {
        self.realm = realm.cloned();
        self
    }

    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// A short, human-readable reason, free of tokens and secrets.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The scopes the resource requires, space-separated, for
    /// [`ErrorKind::InsufficientScope`].
    pub fn required_scope(&self) -> Option<&str> {
        self.required_scope.as_deref()
    }

    /// The `WWW-Authenticate` challenge for this error, if its status takes one.
    ///
    /// With a layer that knows its protected-resource metadata, every
    /// challenge carries `resource_metadata` right after the realm (RFC 9728
    /// §5.1); with a layer that names the scopes of its 401s, those carry
    /// `scope`. Without either, the forms of RFC 6750 §3 alone.
    pub fn challenge(&self) -> Option<HeaderValue> {
        #[cfg(feature = "jwt")]
        if let Some(dpop) = self.dpop.as_ref().filter(|_| self.takes_dpop_challenge()) {
            return if dpop.via_dpop || !dpop.bearer {
                self.challenge_in("DPoP", true, Some(&dpop.algs))
            } else {
                self.challenge_in("Bearer", true, None)
            };
        }
        self.challenge_in("Bearer", true, None)
    }

    /// Whether the DPoP answer applies: to the 400s of malformed
    /// credentials, the 401s and the 403 of a scope check (RFC 9449 §7.1:
    /// the error goes in the challenge of the scheme the request used).
    #[cfg(feature = "jwt")]
    fn takes_dpop_challenge(&self) -> bool {
        matches!(
            self.status(),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    }

    /// The challenge of `scheme`, with this error's code and description
    /// when `with_error`, and `algs` when given (RFC 9449 §7.1).
    fn challenge_in(&self, scheme: &str, with_error: bool, algs: Option<&str>) -> Option<HeaderValue> {
        let base = match &self.realm {
            Some(value) => ChallengeBase::unpack(value),
            None => ChallengeBase {
                realm: DEFAULT_REALM,
                resource_metadata: None,
                scope: None,
            },
        };
        let mut challenge = Challenge::with_scheme(scheme, base.realm);
        if let Some(url) = base.resource_metadata {
            challenge = challenge.resource_metadata(url);
        }
        let unauthorized_scope = |challenge: Challenge| match base.scope {
            Some(scope) => challenge.scope(scope),
            None => challenge,
        };
        let with_algs = |challenge: Challenge| match algs {
            Some(algs) => challenge.algs(algs),
            None => challenge,
        };
        Some(match self.kind {
            ErrorKind::MissingToken => with_algs(unauthorized_scope(challenge)).into_header_value(),
            ErrorKind::InvalidToken | ErrorKind::InvalidDpopProof | ErrorKind::UseDpopNonce
                if !with_error =>
            {
                with_algs(unauthorized_scope(challenge)).into_header_value()
            }
            ErrorKind::InvalidToken | ErrorKind::InvalidDpopProof | ErrorKind::UseDpopNonce => {
                with_algs(unauthorized_scope(
                    challenge
                        .error(self.kind.error_code()?)
                        .description(&self.description),
                ))
                .into_header_value()
            }
            ErrorKind::InvalidRequest if !with_error => with_algs(challenge).into_header_value(),
            ErrorKind::InvalidRequest => with_algs(
                challenge
                    .error(self.kind.error_code()?)
                    .description(&self.description),
            )
            .into_header_value(),
            ErrorKind::InsufficientScope if !with_error => with_algs(challenge).into_header_value(),
            ErrorKind::InsufficientScope => {
                let challenge = challenge.error("insufficient_scope");
                with_algs(match &self.required_scope {
                    Some(scope) => challenge.scope(scope),
                    None => challenge,
                })
                .into_header_value()
            }
            ErrorKind::Unavailable | ErrorKind::Misconfigured => return None,
        })
    }

    /// Writes the status-defining headers: the challenge, or `Retry-After`.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        #[cfg(feature = "jwt")]
        if let Some(dpop) = self.dpop.as_ref().filter(|_| self.takes_dpop_challenge()) {
            // Both schemes accepted: one challenge each, the error in the
            // one the request used (RFC 9449 §7.1, RFC 9110 §11.6.1).
            if dpop.bearer {
                if let Some(bearer) = self.challenge_in("Bearer", !dpop.via_dpop, None) {
                    headers.append(header::WWW_AUTHENTICATE, bearer);
                }
            }
            let error_here = dpop.via_dpop || !dpop.bearer;
            if let Some(challenge) = self.challenge_in("DPoP", error_here, Some(&dpop.algs)) {
                headers.append(header::WWW_AUTHENTICATE, challenge);
            }
            if let Some(nonce) = &dpop.nonce {
                headers.insert(DPOP_NONCE, HeaderValue::clone(nonce));
            }
            return;
        }
        if let Some(challenge) = self.challenge() {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if self.kind == ErrorKind::Unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
    }

    /// The default JSON body: `{"error": "…", "error_description": "…"}`.
    pub fn json_body(&self) -> bytes::Bytes {
        let body = serde_json::json!({
            "error": self.kind.body_code(),
            "error_description": self.description,
        });
        bytes::Bytes::from(body.to_string())
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthError")
            .field("kind", &self.kind)
            .field("description", &self.description)
            .field("required_scope", &self.required_scope)
            .finish()
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::MissingToken => "missing bearer token",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::InvalidToken => "invalid token",
            ErrorKind::InsufficientScope => "insufficient scope",
            ErrorKind::InvalidDpopProof => "invalid DPoP proof",
            ErrorKind::UseDpopNonce => "DPoP nonce required",
            ErrorKind::Unavailable => "temporarily unavailable",
            ErrorKind::Misconfigured => "resource server misconfigured",
        };
        write!(f, "{what}: {}", self.description)
    }
}

impl std::error::Error for AuthError {}

/// A configuration the builders refuse, reported by `build()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint is not an absolute `http(s)` URL.
    #[error("invalid {what} URL: {reason}")]
    InvalidUrl {
        /// Which URL was refused.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An `http://` endpoint on a host that is not loopback (RFC 7662 §4).
    #[error("{what} URL uses plain http on a non-loopback host; use https or `allow_insecure_http(true)`")]
    InsecureUrl {
        /// Which URL was refused.
        what: &'static str,
    },
    /// No way to authenticate to the introspection endpoint (RFC 7662 §2.1).
    #[error("no client credentials for the introspection endpoint; set one client authentication method, or `unauthenticated()` for a network-protected endpoint")]
    MissingCredentials,
    /// More than one client authentication method (RFC 6749 §2.3).
    #[error("more than one client authentication method was configured; choose exactly one")]
    ConflictingCredentials,
    /// A credential that cannot be sent in an HTTP header.
    #[error("the {what} contains characters that cannot be sent in an HTTP header")]
    InvalidCredential {
        /// Which credential was refused.
        what: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A setting is out of its allowed range.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
    /// A duration or size setting is outside the range it can work in.
    #[error("`{setting}` is out of range: it must be {range}")]
    OutOfRange {
        /// The builder method whose value was refused.
        setting: &'static str,
        /// The accepted range, in words.
        range: &'static str,
    },
    /// A public key could not be read (PEM, DER or JWK).
    #[error("invalid public key: {0}")]
    InvalidKey(&'static str),
    /// The client's private key for `private_key_jwt` could not be read or
    /// cannot make the algorithm asked for. Never shows the key.
    #[error("invalid private key: {0}")]
    InvalidPrivateKey(&'static str),
    /// Discovery (RFC 8414 / OpenID Connect) failed.
    #[error("discovery failed: {0}")]
    Discovery(String),
}
