//! What a token source supplies to the engine: [`LoadToken`], asked on a
//! cache miss, and [`LoadError`], why it refused.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;

use crate::error::{AuthError, ErrorKind};
use crate::principal::Principal;

/// A source of answers about tokens: an introspection call, a signature
/// check, a lookup in your own session store.
///
/// The engine asks it only when nothing usable is cached for the token, and
/// one request at a time per token (concurrent requests for the same token
/// wait for that one answer). What it answers is cached and checked the
/// way [`Introspector`](crate::introspection::Introspector) answers are:
/// active answers until `min(exp, max_ttl)`, refusals made with
/// [`LoadError::invalid`] in the negative cache, faults never; `exp`, `nbf`,
/// issuer, audience and token kind are checked on every read. Wrap a source
/// in a [`CachedSource`](crate::source::CachedSource) to use it.
///
/// The token is a secret: do not log it, and do not put it into an error.
///
/// ```
/// use tower_introspection::source::{LoadError, LoadToken};
/// use tower_introspection::Principal;
///
/// /// Opaque session tokens, looked up in a table of your own.
/// struct Sessions;
///
/// impl LoadToken for Sessions {
///     async fn load(&self, token: &str) -> Result<Principal, LoadError> {
///         match token {
///             "session-of-alice" => Principal::from_json(
///                 br#"{"active":true,"sub":"alice","scope":"read","exp":4102444800}"#,
///             )
///             .map_err(|_| LoadError::unusable("the session store answered something unreadable")),
///             _ => Err(LoadError::invalid("the session is unknown")),
///         }
///     }
/// }
/// ```
pub trait LoadToken: Send + Sync + 'static {
    /// What `token` stands for: the principal, or why it is refused.
    fn load(&self, token: &str) -> impl Future<Output = Result<Principal, LoadError>> + Send;
}

/// Why a [`LoadToken`] source gave no principal; what the layer answers and
/// what the cache remembers follow from the constructor used.
///
/// The description is sent to the client in `error_description`: say what
/// is wrong with the token or the service, never anything secret.
#[derive(Clone, PartialEq, Eq)]
pub struct LoadError {
    kind: LoadErrorKind,
    description: Cow<'static, str>,
}

/// The kinds of [`LoadError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The token is not valid and never will be: 401 `invalid_token`,
    /// remembered in the negative cache (and the fleet's).
    Invalid,
    /// Not valid now, and maybe later (a key not published yet): 401
    /// `invalid_token`, not remembered.
    Refused,
    /// The source is unavailable for now (a timeout, a 5xx): 503, and
    /// with `stale_if_error` a stale answer may be served instead.
    Unavailable,
    /// The source answered, but unusably, or is overloaded: 503, never
    /// papered over with a stale answer.
    Unusable,
    /// The resource server's own configuration is wrong (its credentials
    /// were refused): 500.
    Misconfigured,
}

impl LoadError {
    fn new(kind: LoadErrorKind, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            description: description.into(),
        }
    }

    /// The token is not valid and never will be (unknown, revoked,
    /// expired, forged): 401, remembered for `negative_ttl`.
    pub fn invalid(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(LoadErrorKind::Invalid, description)
    }

    /// The token is refused for now, but may be accepted later: 401, not
    /// remembered.
    pub fn refused(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(LoadErrorKind::Refused, description)
    }

    /// The source is unavailable for now: 503; a stale answer may be served
    /// within `stale_if_error`.
    pub fn unavailable(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(LoadErrorKind::Unavailable, description)
    }

    /// The source answered unusably, or is overloaded: 503, never a stale
    /// answer.
    pub fn unusable(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(LoadErrorKind::Unusable, description)
    }

    /// The resource server is misconfigured: 500.
    pub fn misconfigured(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(LoadErrorKind::Misconfigured, description)
    }

    /// What kind of refusal this is.
    pub fn kind(&self) -> LoadErrorKind {
        self.kind
    }

    /// The description sent to the client.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the negative cache remembers it.
    pub(crate) fn is_lasting(&self) -> bool {
        self.kind == LoadErrorKind::Invalid
    }

    /// The answer to the request.
    pub(crate) fn to_auth_error(&self) -> AuthError {
        let kind = match self.kind {
            LoadErrorKind::Invalid | LoadErrorKind::Refused => ErrorKind::InvalidToken,
            LoadErrorKind::Unavailable | LoadErrorKind::Unusable => ErrorKind::Unavailable,
            LoadErrorKind::Misconfigured => ErrorKind::Misconfigured,
        };
        AuthError::new(kind, self.description.clone())
    }
}

impl fmt::Debug for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadError")
            .field("kind", &self.kind)
            .field("description", &self.description)
            .finish()
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for LoadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_answers_its_status_and_only_invalid_is_remembered() {
        for (error, status, lasting) in [
            (LoadError::invalid("a"), 401, true),
            (LoadError::refused("b"), 401, false),
            (LoadError::unavailable("c"), 503, false),
            (LoadError::unusable("d"), 503, false),
            (LoadError::misconfigured("e"), 500, false),
        ] {
            let answer = error.to_auth_error();
            assert_eq!(answer.status(), status, "{error:?}");
            assert_eq!(answer.description(), error.description());
            assert_eq!(error.is_lasting(), lasting, "{error:?}");
        }
    }
}
