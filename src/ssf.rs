//! A Shared Signals receiver: Security Event Tokens (RFC 8417) pushed over
//! HTTP (RFC 8935) by a transmitter (an authorization server, an identity
//! provider), turned into [revocations](crate::revocation).
//!
//! [`SharedSignals`] is a tower service to mount at the push endpoint of a
//! stream. For each POST of `application/secevent+jwt` it checks the SET —
//! signature with the transmitter's keys (through a [`JwtVerifier`]'s JWK
//! Set), `typ` `secevent+jwt` where present, `iss`, `aud`, `iat` not older
//! than [`max_age`](SharedSignalsBuilder::max_age), `exp` where present,
//! `jti` never seen before, an `events` object — then acts on each event it
//! knows and acknowledges the others:
//!
//! | event | revokes |
//! |---|---|
//! | CAEP `session-revoked` | the session when the subject names one, else the user |
//! | CAEP `credential-change`, `token-claims-change` | the user |
//! | RISC `account-disabled`, `account-purged`, `sessions-revoked` | the user |
//!
//! Subjects are RFC 9493 identifiers, in the SET's `sub_id` or the event's
//! `subject`: `iss_sub` (subject at that issuer), `opaque` (subject, or a
//! session within a complex subject), `email` (tokens whose `email` claim
//! it is), `aliases` (each), and complex subjects with `user` and `session`.
//! Other formats are acknowledged without effect. Identifiers without an
//! issuer are taken as the [`token_issuer`](SharedSignalsBuilder::token_issuer)'s
//! (by default the transmitter's own).
//!
//! Answers: 202 Accepted, or RFC 8935 §2.3's JSON error with 400
//! (`invalid_request`, `invalid_key`, `invalid_issuer`, `invalid_audience`),
//! 401 (`authentication_failed`, with
//! [`bearer_token`](SharedSignalsBuilder::bearer_token)), or 503 while the
//! transmitter's keys cannot be fetched; always `Cache-Control: no-store`.
//!
//! How the transmitter authenticates its pushes is the router's business:
//! a bearer token the stream was configured with
//! ([`bearer_token`](SharedSignalsBuilder::bearer_token), as below), mutual
//! TLS at the server, or any middleware layered on the route.
//!
//! ```no_run
//! use axum::{routing::post_service, Router};
//! use tower_introspection::jwt::JwtVerifier;
//! use tower_introspection::ssf::SharedSignals;
//! use tower_introspection::{IntrospectionLayer, Introspector, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transmitter = JwtVerifier::builder()
//!     .expected_issuer("https://ssf.example")
//!     .jwks_url("https://ssf.example/jwks")
//!     .build()?;
//! let verifier = Verifier::from(
//!     Introspector::builder("https://as.example/introspect")
//!         .client_secret_basic("api", "secret")
//!         .build()?,
//! );
//! let signals = SharedSignals::builder(transmitter, verifier.clone())
//!     .audience("https://api.example")
//!     .token_issuer("https://as.example")
//!     .bearer_token(std::env::var("SSF_PUSH_TOKEN")?)
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/items", axum::routing::get(|| async { "items" }))
//!     .route_layer(IntrospectionLayer::new(verifier))
//!     // After the layer: the transmitter sends no access token.
//!     .route("/ssf/events", post_service(signals));
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tracing::Instrument as _;

use crate::claims::numeric_date;
use crate::error::ConfigError;
use crate::jwt::JwtVerifier;
use crate::receiver::{
    digest_prefix, read_body, respond, text, Envelope, EventCounters, Misfit, Refusal, Seen,
};
use crate::revocation::{EventStats, Revocation, RevokeError};
use crate::validate::unix_now;
use crate::verifier::Verifier;

/// CAEP: a session ended.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP: a credential was changed (a password reset, a key revoked).
pub const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// CAEP: claims in the subject's tokens changed.
pub const TOKEN_CLAIMS_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change";
/// RISC: the account was disabled.
pub const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC: the account was deleted.
pub const ACCOUNT_PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// RISC: every session of the account was ended.
pub const SESSIONS_REVOKED: &str = "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked";

/// How old a SET may be, by default (its `iat`): one hour, as transmitters
/// retry a push for a while.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Events looked at in one SET, at most.
const MAX_EVENTS: usize = 16;
/// Revocations one SET may cause, at most.
const MAX_REVOCATIONS: usize = 32;

/// Receives pushed Security Event Tokens; see the [module docs](self).
/// Cloning is a pointer copy.
#[derive(Clone)]
pub struct SharedSignals {
    inner: Arc<Inner>,
}

struct Inner {
    keys: JwtVerifier,
    /// The transmitter, the audiences, the age.
    envelope: Envelope,
    token_issuer: Box<str>,
    verifier: Verifier,
    /// The SHA-256 of the push bearer token, when one is required.
    bearer: Option<[u8; 32]>,
    seen: Seen,
    counters: EventCounters,
}

/// Configures a [`SharedSignals`] receiver.
#[must_use]
pub struct SharedSignalsBuilder {
    keys: JwtVerifier,
    verifier: Verifier,
    audiences: Vec<Box<str>>,
    token_issuer: Option<Box<str>>,
    bearer: Option<String>,
    max_age: Duration,
    leeway: Duration,
}

impl SharedSignals {
    /// A receiver that checks SETs with `keys` (a verifier whose
    /// `expected_issuer` is the transmitter, and whose keys it signs with)
    /// and revokes in `verifier`.
    pub fn builder(keys: JwtVerifier, verifier: impl Into<Verifier>) -> SharedSignalsBuilder {
        SharedSignalsBuilder {
            keys,
            verifier: verifier.into(),
            audiences: Vec::new(),
            token_issuer: None,
            bearer: None,
            max_age: DEFAULT_MAX_AGE,
            leeway: Duration::from_secs(60),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EventStats {
        self.inner.counters.snapshot()
    }
}

impl SharedSignalsBuilder {
    /// This receiver's audience in the stream (a SET's `aud` must name
    /// one). Repeat for several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into().into_boxed_str());
        self
    }

    /// The issuer of the access tokens the events are about, for subject
    /// identifiers that name none (`opaque`, `email`); default: the
    /// transmitter's issuer.
    pub fn token_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.token_issuer = Some(issuer.into().into_boxed_str());
        self
    }

    /// Requires `Authorization: Bearer <token>` on every push (the
    /// authorization header the stream was configured with); otherwise 401
    /// `authentication_failed`. The token is kept as a digest only.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// How old a SET may be (its `iat`; default one hour, at most a day):
    /// older ones are refused, and `jti`s are remembered this long against
    /// replay.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Clock skew tolerated on `iat` and `exp` (default 60 s, at most five
    /// minutes).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Builds the receiver.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] without an audience, with an empty
    /// bearer token, or with a key verifier that has no `expected_issuer`;
    /// [`ConfigError::OutOfRange`] for a `max_age` over a day or a `leeway`
    /// over five minutes.
    pub fn build(self) -> Result<SharedSignals, ConfigError> {
        if self.bearer.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::InvalidSetting("the push bearer token is empty"));
        }
        let envelope = Envelope::new(
            &self.keys,
            self.audiences,
            self.max_age,
            self.leeway,
            "the SET verifier needs an expected_issuer: the transmitter's",
            "a Shared Signals receiver needs an audience: its own in the stream",
        )?;
        Ok(SharedSignals {
            inner: Arc::new(Inner {
                keys: self.keys,
                token_issuer: self.token_issuer.unwrap_or_else(|| envelope.issuer.clone()),
                verifier: self.verifier,
                bearer: self.bearer.map(|token| Seen::digest(&token)),
                seen: Seen::new(envelope.replay_life),
                envelope,
                counters: EventCounters::new("shared_signals"),
            }),
        })
    }
}

/// Why a push was refused: the status, `err` and `description` (RFC 8935
/// §2.3).
struct Refused {
    status: StatusCode,
    err: &'static str,
    description: &'static str,
}

fn refused(err: &'static str, description: &'static str) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        err,
        description,
    }
}

fn invalid(description: &'static str) -> Refused {
    refused("invalid_request", description)
}

impl Refused {
    fn into_refusal(self) -> Refusal {
        Refusal {
            status: self.status,
            code: self.err,
            description: self.description,
            body: serde_json::json!({"err": self.err, "description": self.description}),
        }
    }
}

impl Inner {
    async fn handle<B>(&self, request: Request<B>) -> Result<u64, Refused>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(expected) = &self.bearer {
            // The scheme in any case (RFC 7235); the credential compared as a
            // digest, so its bytes are not compared one by one.
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, credential)| Seen::digest(credential.trim()));
            if presented.as_ref() != Some(expected) {
                return Err(Refused {
                    status: StatusCode::UNAUTHORIZED,
                    err: "authentication_failed",
                    description: "the push did not carry the expected authorization",
                });
            }
        }
        if request.method() != Method::POST {
            return Err(invalid("a SET is POSTed"));
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        if content_type.as_deref() != Some("application/secevent+jwt") {
            return Err(invalid("the body must be application/secevent+jwt"));
        }
        let body = read_body(request.into_body())
            .await
            .ok_or_else(|| invalid("the body could not be read, or is too large"))?;
        let set = std::str::from_utf8(&body)
            .map_err(|_| invalid("the body is not a SET"))?
            .trim();
        let (revocations, jti) = self.check(set).await?;
        tracing::Span::current().record("event", digest_prefix(&jti));
        let mut evicted = 0;
        for revocation in &revocations {
            match self.verifier.revoke(revocation).await {
                Ok(revoked) => evicted += revoked.evicted,
                // Carried out here; too large for the fleet (or no random
                // source): sending it again would not help.
                Err(error @ RevokeError::NotShared { .. }) => {
                    tracing::warn!("a security event was carried out on this replica only: {error}");
                    evicted += error.evicted();
                }
                Err(RevokeError::Full { evicted: some, .. }) => {
                    self.counters.evicted(evicted + some);
                    return Err(Refused {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        err: "temporarily_unavailable",
                        description: "the subject's cached tokens were evicted, but the revocation could not be recorded; retry",
                    });
                }
            }
        }
        // Remembered once carried out: a push cut short may come again.
        self.seen.insert(jti).await;
        Ok(evicted)
    }

    /// RFC 8417 and RFC 8935: the SET's validation, and what it revokes.
    async fn check(&self, set: &str) -> Result<(Vec<Revocation>, [u8; 32]), Refused> {
        if !is_compact_jws(set) {
            return Err(invalid("the body is not a signed JWT"));
        }
        let (typ, claims) = self.keys.signed_claims(set).await.map_err(|why| match why {
            Some(why) => refused("invalid_key", why),
            None => Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                err: "temporarily_unavailable",
                description: "the transmitter's keys could not be fetched",
            },
        })?;
        if let Some(typ) = typ {
            let typ = typ.to_ascii_lowercase();
            if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
                return Err(invalid("the token's typ is not secevent+jwt"));
            }
        }
        let iat = self
            .envelope
            .check(&claims, unix_now())
            .map_err(|misfit| match misfit {
                Misfit::Issuer => refused("invalid_issuer", "the SET's iss is not the transmitter"),
                Misfit::Audience => refused("invalid_audience", "the SET's aud does not name this receiver"),
                Misfit::NoIssuedAt => invalid("the SET has no iat"),
                Misfit::IssuedAt => invalid("the SET's iat is too old or in the future"),
                Misfit::Expired => invalid("the SET has expired"),
            })?;
        let Some(jti) = text(&claims, "jti") else {
            return Err(invalid("the SET has no jti"));
        };
        let Some(events) = claims.get("events").and_then(Value::as_object) else {
            return Err(invalid("the SET has no events object"));
        };
        if events.is_empty() || events.len() > MAX_EVENTS || !events.values().all(Value::is_object) {
            return Err(invalid("the SET's events are not objects, or too many"));
        }
        let mut revocations: Vec<Revocation> = Vec::new();
        for (event, payload) in events {
            let Some(action) = Action::of(event) else {
                tracing::debug!(event = %event, "an event this receiver does not act on: acknowledged");
                continue;
            };
            let Some(subject) = claims.get("sub_id").or_else(|| payload.get("subject")) else {
                return Err(invalid("the event names no subject (sub_id)"));
            };
            let subject = Subject::read(subject, &self.token_issuer).map_err(invalid)?;
            // The event's time where it says (CAEP), else the SET's: a late
            // or repeated push cuts off nothing issued since.
            let at = numeric_date(payload.get("event_timestamp"))
                .ok()
                .flatten()
                .unwrap_or(iat);
            let named = subject.revocations(action);
            if named.is_empty() {
                tracing::debug!(event = %event, "the event's subject names nothing this receiver can revoke: acknowledged");
            }
            for revocation in named {
                let revocation = revocation.at_unix(at);
                let known = revocations.iter_mut().find(|held| same_target(held, &revocation));
                match known {
                    // The same subject under several events: once, at the
                    // latest of their times.
                    Some(held) => {
                        if held.at < revocation.at {
                            *held = revocation;
                        }
                    }
                    None => revocations.push(revocation),
                }
            }
            if revocations.len() > MAX_REVOCATIONS {
                return Err(invalid("the SET names too many subjects"));
            }
        }
        let digest = Seen::digest(jti);
        if self.seen.contains(&digest) {
            return Err(invalid("the SET was already received (jti)"));
        }
        Ok((revocations, digest))
    }
}

/// Three base64url segments: a JWS, not anything else (an encrypted SET
/// has five).
fn is_compact_jws(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// What an event revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The session when the subject names one, else the user.
    Session,
    /// The user.
    User,
}

impl Action {
    fn of(event: &str) -> Option<Self> {
        match event {
            SESSION_REVOKED => Some(Self::Session),
            CREDENTIAL_CHANGE | TOKEN_CLAIMS_CHANGE | ACCOUNT_DISABLED | ACCOUNT_PURGED
            | SESSIONS_REVOKED => Some(Self::User),
            _ => None,
        }
    }
}

/// Whether two revocations name the same tokens (whatever their times).
fn same_target(a: &Revocation, b: &Revocation) -> bool {
    a.kind == b.kind && a.issuer == b.issuer && a.value == b.value
}

/// An RFC 9493 subject, as far as revocation goes: the user's identifiers
/// and a session.
#[derive(Debug, Default, PartialEq, Eq)]
struct Subject {
    users: Vec<Revocation>,
    session: Option<Revocation>,
}

impl Subject {
    /// The subject `value` names; `Err` when it is not one.
    fn read(value: &Value, token_issuer: &str) -> Result<Self, &'static str> {
        let Some(object) = value.as_object() else {
            return Err("the event's subject is not an object");
        };
        let mut subject = Self::default();
        let format = match object.get("format") {
            None => None,
            Some(Value::String(format)) => Some(format.as_str()),
            Some(_) => return Err("the event's subject identifier is malformed"),
        };
        match format {
            // A complex subject (SSF 1.0: `"format": "complex"`, or older
            // drafts: no format): its members are identifiers by role.
            None | Some("complex") => {
                if let Some(user) = object.get("user") {
                    subject.users = identifier(user, token_issuer, 0)?;
                }
                if let Some(session) = object.get("session") {
                    let issuer = subject
                        .users
                        .first()
                        .map_or(token_issuer, Revocation::issuer)
                        .to_owned();
                    subject.session = session_identifier(session, issuer)?;
                }
            }
            Some(_) => subject.users = identifier(value, token_issuer, 0)?,
        }
        Ok(subject)
    }

    /// What `action` revokes of this subject.
    fn revocations(self, action: Action) -> Vec<Revocation> {
        match (action, self.session) {
            (Action::Session, Some(session)) => vec![session],
            (_, session) if self.users.is_empty() => session.into_iter().collect(),
            _ => self.users,
        }
    }
}

/// The revocations a simple identifier names: `iss_sub`, `opaque`, `email`,
/// and `aliases` (each of its identifiers, one level deep); none for other
/// formats (`phone_number`, `account`, `did`, `uri`…).
fn identifier(value: &Value, token_issuer: &str, depth: u8) -> Result<Vec<Revocation>, &'static str> {
    let malformed = "the event's subject identifier is malformed";
    let object = value.as_object().ok_or(malformed)?;
    Ok(match text(object, "format").ok_or(malformed)? {
        "iss_sub" => match (text(object, "iss"), text(object, "sub")) {
            (Some(iss), Some(sub)) => vec![Revocation::subject(iss, sub)],
            _ => return Err(malformed),
        },
        "opaque" => vec![Revocation::subject(
            token_issuer,
            text(object, "id").ok_or(malformed)?,
        )],
        "email" => vec![Revocation::email(
            token_issuer,
            text(object, "email").ok_or(malformed)?,
        )],
        "aliases" if depth == 0 => {
            let aliases = object
                .get("identifiers")
                .and_then(Value::as_array)
                .ok_or(malformed)?;
            if aliases.len() > MAX_REVOCATIONS {
                return Err("the SET names too many subjects");
            }
            let mut all = Vec::new();
            for alias in aliases {
                all.extend(identifier(alias, token_issuer, depth + 1)?);
            }
            all
        }
        "aliases" => return Err(malformed),
        _ => Vec::new(),
    })
}

/// A session identifier within a complex subject: `opaque` (at the user's
/// issuer) or `iss_sub`.
fn session_identifier(value: &Value, user_issuer: String) -> Result<Option<Revocation>, &'static str> {
    let malformed = "the event's session identifier is malformed";
    let object = value.as_object().ok_or(malformed)?;
    Ok(match text(object, "format").ok_or(malformed)? {
        "opaque" => Some(Revocation::session(
            user_issuer,
            text(object, "id").ok_or(malformed)?,
        )),
        "iss_sub" => match (text(object, "iss"), text(object, "sub")) {
            (Some(iss), Some(sid)) => Some(Revocation::session(iss, sid)),
            _ => return Err(malformed),
        },
        _ => None,
    })
}

impl<B> tower_service::Service<Request<B>> for SharedSignals
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        // One span per SET; its id is a digest prefix, never the SET.
        let span = tracing::info_span!("shared_signals", event = tracing::field::Empty);
        Box::pin(
            async move {
                inner.counters.received();
                let outcome = inner.handle(request).await.map_err(Refused::into_refusal);
                Ok(respond(&inner.counters, outcome, StatusCode::ACCEPTED))
            }
            .instrument(span),
        )
    }
}

impl fmt::Debug for SharedSignalsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSignalsBuilder")
            .field("audiences", &self.audiences)
            .field("token_issuer", &self.token_issuer)
            .field("bearer_token", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SharedSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSignals")
            .field("issuer", &self.inner.envelope.issuer)
            .field("audiences", &self.inner.envelope.audiences)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn revoked(action: Action, subject: Value) -> Vec<Revocation> {
        Subject::read(&subject, "https://as").unwrap().revocations(action)
    }

    fn refused(subject: Value) -> &'static str {
        Subject::read(&subject, "https://as").unwrap_err()
    }

    #[test]
    fn simple_identifiers_name_a_subject_or_an_email() {
        assert_eq!(
            revoked(
                Action::User,
                json!({"format": "iss_sub", "iss": "https://idp", "sub": "u1"})
            ),
            [Revocation::subject("https://idp", "u1")]
        );
        assert_eq!(
            revoked(Action::User, json!({"format": "opaque", "id": "u2"})),
            [Revocation::subject("https://as", "u2")]
        );
        assert_eq!(
            revoked(
                Action::Session,
                json!({"format": "email", "email": "A@Example.com"})
            ),
            [Revocation::email("https://as", "a@example.com")],
            "addresses in lower case"
        );
        assert!(revoked(
            Action::User,
            json!({"format": "phone_number", "phone_number": "+1"})
        )
        .is_empty());
    }

    #[test]
    fn malformed_subjects_are_refused_not_acknowledged() {
        for subject in [
            json!("not an object"),
            json!({"format": "iss_sub", "sub": "no issuer"}),
            json!({"format": "opaque"}),
            json!({"format": "aliases"}),
            json!({"format": "complex", "user": "u1"}),
            json!({"format": "complex", "session": {"id": "no format"}}),
        ] {
            assert!(!refused(subject.clone()).is_empty(), "{subject}");
        }
        let many: Vec<Value> = (0..=MAX_REVOCATIONS)
            .map(|i| json!({"format": "opaque", "id": format!("u{i}")}))
            .collect();
        assert_eq!(
            refused(json!({"format": "aliases", "identifiers": many})),
            "the SET names too many subjects"
        );
    }

    #[test]
    fn aliases_name_each_identifier_once_deep() {
        let aliases = json!({"format": "aliases", "identifiers": [
            {"format": "phone_number", "phone_number": "+1"},
            {"format": "opaque", "id": "u1"},
            {"format": "email", "email": "u1@example.com"},
        ]});
        assert_eq!(
            revoked(Action::User, aliases),
            [
                Revocation::subject("https://as", "u1"),
                Revocation::email("https://as", "u1@example.com")
            ]
        );
        let nested = json!({"format": "aliases", "identifiers": [
            {"format": "aliases", "identifiers": [{"format": "opaque", "id": "nested"}]},
        ]});
        assert!(!refused(nested).is_empty());
    }

    #[test]
    fn a_complex_subject_revokes_its_session_for_session_events_only() {
        // SSF 1.0 says `"format": "complex"`; older drafts say nothing.
        for format in [json!("complex"), Value::Null] {
            let mut complex = json!({
                "user": {"format": "iss_sub", "iss": "https://idp", "sub": "u1"},
                "session": {"format": "opaque", "id": "s1"},
            });
            if !format.is_null() {
                complex["format"] = format;
            }
            assert_eq!(
                revoked(Action::Session, complex.clone()),
                [Revocation::session("https://idp", "s1")],
                "the session, at the user's issuer"
            );
            assert_eq!(
                revoked(Action::User, complex),
                [Revocation::subject("https://idp", "u1")]
            );
        }
        assert_eq!(
            revoked(Action::User, json!({"session": {"format": "opaque", "id": "s2"}})),
            [Revocation::session("https://as", "s2")],
            "only a session: that session"
        );
        assert_eq!(
            revoked(Action::Session, json!({"user": {"format": "opaque", "id": "u3"}})),
            [Revocation::subject("https://as", "u3")],
            "no session: the user"
        );
    }

    #[test]
    fn only_compact_signed_tokens_are_read() {
        assert!(is_compact_jws("a.b.c"));
        assert!(!is_compact_jws("a.b.c.d.e"), "encrypted");
        assert!(!is_compact_jws("a.b"));
        assert!(!is_compact_jws("a.b.c d"));
    }

    #[test]
    fn events_map_to_actions() {
        assert_eq!(Action::of(SESSION_REVOKED), Some(Action::Session));
        for user in [
            CREDENTIAL_CHANGE,
            TOKEN_CLAIMS_CHANGE,
            ACCOUNT_DISABLED,
            ACCOUNT_PURGED,
            SESSIONS_REVOKED,
        ] {
            assert_eq!(Action::of(user), Some(Action::User), "{user}");
        }
        assert_eq!(
            Action::of("https://schemas.openid.net/secevent/caep/event-type/assurance-level-change"),
            None
        );
    }
}
