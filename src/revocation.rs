//! Revocation: forgetting every cached token of a subject, a session or a
//! client at once, and refusing the tokens issued to them before the event,
//! cached or not.
//!
//! An authorization server says when a session ends or an account is
//! disabled (OpenID Connect Back-Channel Logout, Shared Signals). Each such
//! event is a [`Revocation`]: hand it to
//! [`Verifier::revoke`](crate::Verifier::revoke) (or the same method of
//! an [`Introspector`](crate::Introspector),
//! a [`JwtVerifier`](crate::jwt::JwtVerifier) or a
//! [`CachedSource`](crate::source::CachedSource)). It does two things:
//!
//! - **evicts** every cached answer that names the subject, session or
//!   client (found through an index of the cache by who and what, kept on
//!   the miss path: a hit pays nothing for it);
//! - records a **cut-off**: a token of that subject, session or client
//!   issued at or before the event (its `auth_time` where present, else its
//!   `iat`; a token with neither) is refused with 401 `invalid_token`, even
//!   one never seen before, such as a JWT verified locally.
//!
//! A cut-off is forgotten [`cutoff_retention`] after its event (default
//! [`DEFAULT_CUTOFF_RETENTION`], 24 hours): set it to at least the longest
//! lifetime of the tokens your authorization server issues, so that every
//! token issued before the event has expired by then. At most
//! [`max_cutoffs`] are held (default [`DEFAULT_MAX_CUTOFFS`]); when they are
//! all taken by events younger than the retention, a revocation still evicts
//! but answers [`RevokeError::Full`], so that whoever sent the event can
//! retry.
//!
//! A verifier without exactly one `expected_issuer` gives each revocation
//! two cut-off slots (its issuer's, and no issuer's: see below).
//!
//! An answer without `iss` is filed under the verifier's
//! `expected_issuer` when it has exactly one; otherwise under no issuer,
//! and then a revocation from any issuer that names its subject, session
//! or client reaches it: its answers are evicted, and its tokens without
//! `iss` issued before the event are refused for the retention (fail
//! closed). Configure `expected_issuer` so that other issuers' events leave
//! this verifier's tokens alone.
//!
//! With a fleet tier ([`IntrospectorBuilder::shared_cache`], or
//! [`JwtVerifierBuilder::shared_cache`] for JWT replicas, which share
//! revocations but not answers), a revocation made on one replica reaches
//! every replica: it is sealed under the fleet secret (the store never sees
//! the subject, session or client in clear), announced on the fleet's
//! channel, and kept in the store until its retention ends, so that a
//! replica that starts or reconnects later reads it before its first load
//! (while the store does not answer, it goes on without, and reads it once
//! the store answers).
//! When the store is unreachable, the replica that made it refuses at once
//! and sends it again when the store answers.
//!
//! Cut-offs are taken at the event (`Revocation::at`, never later than
//! this server's clock; now by default) plus the verifier's `leeway`,
//! so tokens whose `iat` an authorization server's clock puts slightly
//! ahead are cut off too.
//!
//! ```
//! use tower_introspection::revocation::Revocation;
//!
//! let logout = Revocation::session("https://as.example", "a-session-id");
//! // The value is never printed: logs may hold a revocation's Debug.
//! assert_eq!(
//!     format!("{logout:?}"),
//!     r#"Revocation { kind: "session", issuer: "https://as.example", .. }"#
//! );
//! ```
//!
//! [`cutoff_retention`]: crate::introspection::IntrospectorBuilder::cutoff_retention
//! [`IntrospectorBuilder::shared_cache`]: crate::introspection::IntrospectorBuilder::shared_cache
//! [`JwtVerifierBuilder::shared_cache`]: crate::jwt::JwtVerifierBuilder::shared_cache
//! [`max_cutoffs`]: crate::introspection::IntrospectorBuilder::max_cutoffs

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How long a cut-off is kept after its event, by default: 24 hours.
pub const DEFAULT_CUTOFF_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How many cut-offs a verifier holds at most, by default.
pub const DEFAULT_MAX_CUTOFFS: u64 = 100_000;

/// The most `max_cutoffs` accepts: ten million (about 480 MB here).
pub const MAX_CUTOFFS: u64 = 10_000_000;

/// What a revocation names: every token of a subject, of a session or of a
/// client, at one issuer. See the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct Revocation {
    pub(crate) kind: Kind,
    pub(crate) issuer: Box<str>,
    pub(crate) value: Box<str>,
    /// When the event happened (Unix seconds), if known.
    pub(crate) at: Option<i64>,
}

/// Which claim a revocation matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `sub`.
    Subject = 1,
    /// `sid` (OpenID Connect sessions).
    Session = 2,
    /// `client_id`.
    Client = 3,
    /// `email` (Shared Signals subjects of the `email` format).
    Email = 4,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Subject, Kind::Session, Kind::Client, Kind::Email];

    fn name(self) -> &'static str {
        match self {
            Kind::Subject => "subject",
            Kind::Session => "session",
            Kind::Client => "client",
            Kind::Email => "email",
        }
    }
}

impl Revocation {
    /// Every token whose `sub` is `subject`, from `issuer` (a user logged
    /// out of everything, an account disabled or deleted).
    pub fn subject(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self::new(Kind::Subject, issuer.into(), subject.into())
    }

    /// Every token whose `sid` is `session`, from `issuer` (one login
    /// session ended: OpenID Connect Back-Channel Logout's `sid`).
    pub fn session(issuer: impl Into<String>, session: impl Into<String>) -> Self {
        Self::new(Kind::Session, issuer.into(), session.into())
    }

    /// Every token whose `client_id` is `client`, from `issuer` (a client
    /// deleted or its credentials compromised).
    pub fn client(issuer: impl Into<String>, client: impl Into<String>) -> Self {
        Self::new(Kind::Client, issuer.into(), client.into())
    }

    /// Every token whose `email` claim is `email`, from `issuer`: Shared
    /// Signals events name subjects by email. Compared in ASCII lower case
    /// (RFC 9493 asks recipients to canonicalize addresses); only tokens
    /// (or introspection answers) that carry an `email` claim are found.
    pub fn email(issuer: impl Into<String>, email: impl Into<String>) -> Self {
        Self::new(Kind::Email, issuer.into(), email.into())
    }

    pub(crate) fn new(kind: Kind, issuer: String, mut value: String) -> Self {
        if kind == Kind::Email {
            value.make_ascii_lowercase();
        }
        Self {
            kind,
            issuer: issuer.into_boxed_str(),
            value: value.into_boxed_str(),
            at: None,
        }
    }

    /// When the event happened (default: when the revocation is carried
    /// out). The cut-off is taken then, not later: a logout or a security
    /// event that arrives late, or is sent again, does not refuse the
    /// tokens issued since (after a new login, or a new password). A time
    /// ahead of this server's clock counts as now.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_introspection::revocation::Revocation;
    ///
    /// let event = SystemTime::now() - Duration::from_secs(30);
    /// let logout = Revocation::session("https://as.example", "sid-1").at(event);
    /// assert_ne!(logout, Revocation::session("https://as.example", "sid-1"));
    /// ```
    #[must_use]
    pub fn at(mut self, when: std::time::SystemTime) -> Self {
        let secs = match when.duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        };
        self.at = Some(secs);
        self
    }

    /// As [`at`](Self::at), in Unix seconds (the receivers' events).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn at_unix(mut self, secs: i64) -> Self {
        self.at = Some(secs.max(0));
        self
    }

    /// The issuer the revocation comes from.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocation")
            .field("kind", &self.kind.name())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// What a revocation did here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Revoked {
    /// Cached answers evicted.
    pub evicted: u64,
}

/// Why a revocation was not wholly carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// Every cut-off slot holds an event younger than the retention, here
    /// or (with a fleet) in the shared store: the matching cached answers
    /// were evicted, but tokens never seen before are not refused here (in
    /// the first case), or by replicas that start later (in the second).
    /// Ask the sender to retry later, or raise `max_cutoffs`.
    #[error("the revocation cut-offs are full ({capacity}); cached answers were evicted, but tokens not seen yet are not refused")]
    Full {
        /// The configured maximum.
        capacity: u64,
        /// Cached answers evicted all the same.
        evicted: u64,
    },
    /// Carried out here, but not sent to the fleet: the revocation is too
    /// large to seal (its issuer and value over 16 KiB), or no random source
    /// was available. Other replicas do not know of it.
    #[error("the revocation was carried out here but could not be sent to the fleet")]
    NotShared {
        /// Cached answers evicted here.
        evicted: u64,
    },
}

impl RevokeError {
    /// Cached answers evicted all the same.
    pub fn evicted(&self) -> u64 {
        match self {
            Self::Full { evicted, .. } | Self::NotShared { evicted } => *evicted,
        }
    }

    /// The same error, counting `evicted` answers.
    pub(crate) fn with_evicted(self, evicted: u64) -> Self {
        match self {
            Self::Full { capacity, .. } => Self::Full { capacity, evicted },
            Self::NotShared { .. } => Self::NotShared { evicted },
        }
    }
}

/// Counters of a revocation event receiver (feature `jwt`:
/// `logout::BackChannelLogout`, `ssf::SharedSignals`). With the `metrics`
/// feature they are also exported:
/// `tower_introspection_revocation_events_total` (labels `receiver`, and
/// `outcome`: `received`, `accepted` or the refusal's error code) and
/// `tower_introspection_revocation_evictions_total` (label `receiver`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Requests received.
    pub received: u64,
    /// Events accepted (and carried out).
    pub accepted: u64,
    /// Requests refused.
    pub refused: u64,
    /// Refusals by the error code answered (`invalid_request`,
    /// `invalid_key`, ...).
    pub refused_by: BTreeMap<&'static str, u64>,
    /// Cached answers evicted.
    pub evicted: u64,
}

impl EventStats {
    /// Refusals answered with `error`.
    pub fn refused_with(&self, error: &str) -> u64 {
        self.refused_by.get(error).copied().unwrap_or(0)
    }
}
