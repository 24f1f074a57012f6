//! An OpenID Connect Back-Channel Logout 1.0 receiver: the authorization
//! server POSTs a signed logout token when a session ends, and every cached
//! token of that session (or subject) is revoked.
//!
//! [`BackChannelLogout`] is a tower service to mount at the URL registered
//! as the client's `backchannel_logout_uri`. It validates the logout token
//! as §2.6 requires — signature with the issuer's keys (through a
//! [`JwtVerifier`]'s JWK Set), `iss`, `aud`, `iat` (and `exp` where
//! present), `jti` never seen before, the back-channel logout event, `sub`
//! and/or `sid`, no `nonce`, `typ` `logout+jwt` where present — then
//! [revokes](crate::Verifier::revoke) the session (`sid`) or, without one,
//! the subject. It answers 200, or 400 with a JSON error (§2.8), always with
//! `Cache-Control: no-store`.
//!
//! Revoking by session needs the authorization server to put `sid` in the
//! access tokens (or their introspection answers); where it does not, a
//! logout token with a `sid` evicts nothing: revoke by subject instead, or
//! have the AS send logout tokens without `sid`.
//!
//! With a fleet tier, the revocation reaches every replica (see
//! [`revocation`](crate::revocation)): the authorization server sends the
//! logout token to one of them.
//!
//! ```no_run
//! use axum::{routing::post_service, Router};
//! use tower_introspection::jwt::JwtVerifier;
//! use tower_introspection::logout::BackChannelLogout;
//! use tower_introspection::{IntrospectionLayer, Introspector, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = JwtVerifier::discover("https://as.example").await?.build()?;
//! let introspector = Introspector::builder("https://as.example/introspect")
//!     .client_secret_basic("api", "secret")
//!     .build()?;
//! let verifier = Verifier::from(introspector);
//! let logout = BackChannelLogout::builder(keys, verifier.clone())
//!     .audience("api")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/items", axum::routing::get(|| async { "items" }))
//!     .route_layer(IntrospectionLayer::new(verifier))
//!     // After the layer: the authorization server sends no access token.
//!     .route("/backchannel-logout", post_service(logout));
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
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tracing::Instrument as _;

use crate::error::ConfigError;
use crate::jwt::JwtVerifier;
use crate::receiver::{
    digest_prefix, read_body, respond, text, Envelope, EventCounters, Misfit, Refusal, Seen,
};
use crate::revocation::{EventStats, Revocation};
use crate::validate::unix_now;
use crate::verifier::Verifier;

/// The event a logout token carries (§2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old a logout token may be, by default (its `iat`): five minutes.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Receives back-channel logout tokens; see the [module docs](self).
/// Cloning is a pointer copy.
#[derive(Clone)]
pub struct BackChannelLogout {
    inner: Arc<Inner>,
}

struct Inner {
    keys: JwtVerifier,
    verifier: Verifier,
    /// The issuer, the client ids, the age.
    envelope: Envelope,
    /// `jti`s carried out, until they are too old to be accepted anyway.
    seen: Seen,
    counters: EventCounters,
}

/// Counters of a [`BackChannelLogout`].
pub type LogoutStats = EventStats;

/// Configures a [`BackChannelLogout`].
#[must_use]
pub struct BackChannelLogoutBuilder {
    keys: JwtVerifier,
    verifier: Verifier,
    audiences: Vec<Box<str>>,
    max_age: Duration,
    leeway: Duration,
}

impl BackChannelLogout {
    /// A receiver that checks logout tokens with `keys` (a verifier whose
    /// `expected_issuer` is the authorization server, and whose keys it
    /// signs with) and revokes in `verifier`.
    pub fn builder(keys: JwtVerifier, verifier: impl Into<Verifier>) -> BackChannelLogoutBuilder {
        BackChannelLogoutBuilder {
            keys,
            verifier: verifier.into(),
            audiences: Vec::new(),
            max_age: DEFAULT_MAX_AGE,
            leeway: Duration::from_secs(60),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LogoutStats {
        self.inner.counters.snapshot()
    }
}

impl BackChannelLogoutBuilder {
    /// A client id of this resource server at the authorization server: a
    /// logout token's `aud` must name one. Repeat for several.
    pub fn audience(mut self, client_id: impl Into<String>) -> Self {
        self.audiences.push(client_id.into().into_boxed_str());
        self
    }

    /// How old a logout token may be (its `iat`; default five minutes, at
    /// most a day): older ones are refused, and `jti`s are remembered this
    /// long against replay.
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
    /// [`ConfigError::InvalidSetting`] without an audience, or with a key
    /// verifier that has no `expected_issuer`; [`ConfigError::OutOfRange`]
    /// for a `max_age` over a day or a `leeway` over five minutes.
    pub fn build(self) -> Result<BackChannelLogout, ConfigError> {
        let envelope = Envelope::new(
            &self.keys,
            self.audiences,
            self.max_age,
            self.leeway,
            "the logout token verifier needs an expected_issuer: the authorization server's",
            "a back-channel logout receiver needs an audience: this client's id at the authorization server",
        )?;
        Ok(BackChannelLogout {
            inner: Arc::new(Inner {
                keys: self.keys,
                verifier: self.verifier,
                seen: Seen::new(envelope.replay_life),
                envelope,
                counters: EventCounters::new("backchannel_logout"),
            }),
        })
    }
}

/// Why a request was refused: the `error` and `error_description` of the
/// 400 (§2.8).
struct Refused {
    error: &'static str,
    description: &'static str,
}

impl Refused {
    fn into_refusal(self) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            code: self.error,
            description: self.description,
            body: serde_json::json!({
                "error": self.error,
                "error_description": self.description,
            }),
        }
    }
}

fn invalid(description: &'static str) -> Refused {
    Refused {
        error: "invalid_request",
        description,
    }
}

impl Inner {
    async fn handle<B>(&self, request: Request<B>) -> Result<u64, Refused>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.method() != Method::POST {
            return Err(invalid("a logout token is POSTed"));
        }
        if !crate::form::is_form(request.headers()) {
            return Err(invalid("the body must be application/x-www-form-urlencoded"));
        }
        let body = read_body(request.into_body())
            .await
            .ok_or_else(|| invalid("the body could not be read, or is too large"))?;
        let mut tokens = form_urlencoded::parse(&body).filter(|(name, _)| name == "logout_token");
        let (Some((_, token)), None) = (tokens.next(), tokens.next()) else {
            return Err(invalid("exactly one logout_token parameter is required"));
        };
        let (revocation, jti) = self.check(&token).await?;
        tracing::Span::current().record("event", digest_prefix(&jti));
        // Remembered once carried out: a logout cut short (the sender hung
        // up, the cut-offs were full) may be sent again.
        let revoked = match self.verifier.revoke(&revocation).await {
            Ok(revoked) => revoked.evicted,
            // Carried out here; too large for the fleet (or no random
            // source): sending it again would not help.
            Err(error @ crate::revocation::RevokeError::NotShared { .. }) => {
                tracing::warn!("a logout was carried out on this replica only: {error}");
                error.evicted()
            }
            Err(crate::revocation::RevokeError::Full { evicted, .. }) => {
                self.counters.evicted(evicted);
                return Err(Refused {
                    error: "temporarily_unavailable",
                    description: "the session's cached tokens were evicted, but its revocation could not be recorded; retry",
                });
            }
        };
        if revoked == 0 {
            tracing::debug!(
                "a logout token evicted nothing: does the AS put `sid` (or `sub`) in its access tokens?"
            );
        }
        self.seen.insert(jti).await;
        Ok(revoked)
    }

    /// §2.6: the logout token's validation, and what it revokes.
    async fn check(&self, token: &str) -> Result<(Revocation, [u8; 32]), Refused> {
        let (typ, claims) = self.keys.signed_claims(token).await.map_err(|why| match why {
            Some(why) => invalid(why),
            None => Refused {
                error: "temporarily_unavailable",
                description: "the authorization server's keys could not be fetched",
            },
        })?;
        if let Some(typ) = typ {
            let typ = typ.to_ascii_lowercase();
            if typ != "logout+jwt" && typ != "application/logout+jwt" {
                return Err(invalid("the token's typ is not logout+jwt"));
            }
        }
        let iat = self.envelope.check(&claims, unix_now()).map_err(|misfit| {
            invalid(match misfit {
                Misfit::Issuer => "the token's iss is not the expected issuer",
                Misfit::Audience => "the token's aud does not name this client",
                Misfit::NoIssuedAt => "the token has no iat",
                Misfit::IssuedAt => "the token's iat is too old or in the future",
                Misfit::Expired => "the token has expired",
            })
        })?;
        let is_logout_event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !is_logout_event {
            return Err(invalid("the token carries no back-channel logout event"));
        }
        if claims.contains_key("nonce") {
            return Err(invalid("a logout token must not carry a nonce"));
        }
        let Some(jti) = text(&claims, "jti") else {
            return Err(invalid("the token has no jti"));
        };
        let revocation = match (text(&claims, "sid"), text(&claims, "sub")) {
            (Some(sid), _) => Revocation::session(&*self.envelope.issuer, sid),
            (None, Some(sub)) => Revocation::subject(&*self.envelope.issuer, sub),
            (None, None) => return Err(invalid("the token names neither sub nor sid")),
        };
        // Cut off at the logout, not at its arrival: a late or repeated
        // logout token refuses nothing issued since (a new login).
        let revocation = revocation.at_unix(iat);
        // Its digest is remembered: bounded, whatever the jti.
        let digest = Seen::digest(jti);
        if self.seen.contains(&digest) {
            return Err(invalid("the token was already used (jti)"));
        }
        Ok((revocation, digest))
    }
}

impl<B> tower_service::Service<Request<B>> for BackChannelLogout
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
        // One span per event; its id is a digest prefix, never the token.
        let span = tracing::info_span!("backchannel_logout", event = tracing::field::Empty);
        Box::pin(
            async move {
                inner.counters.received();
                let outcome = inner.handle(request).await.map_err(Refused::into_refusal);
                Ok(respond(&inner.counters, outcome, StatusCode::OK))
            }
            .instrument(span),
        )
    }
}

impl fmt::Debug for BackChannelLogoutBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackChannelLogoutBuilder")
            .field("audiences", &self.audiences)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for BackChannelLogout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackChannelLogout")
            .field("issuer", &self.inner.envelope.issuer)
            .field("audiences", &self.inner.envelope.audiences)
            .finish_non_exhaustive()
    }
}
