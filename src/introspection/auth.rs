//! How the resource server authenticates to the introspection endpoint
//! (RFC 7662 §2.1, RFC 6749 §2.3): exactly one method per request.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use http::HeaderValue;
use serde::Deserialize;

#[cfg(feature = "jwt")]
use super::assertion::{AssertionSigner, JWT_BEARER_ASSERTION};
use crate::fetch::{read_capped, AsFault, HttpSettings};

/// A secret whose `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Secret(Box<str>);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The configured client authentication.
#[derive(Debug)]
pub(crate) enum ClientAuth {
    /// `client_secret_basic`: a precomputed, sensitive `Authorization` header.
    Basic {
        client_id: Box<str>,
        header: HeaderValue,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post { client_id: Box<str>, secret: Secret },
    /// A static bearer token.
    StaticBearer(HeaderValue),
    /// A bearer token obtained with the client credentials grant.
    ClientCredentials(Box<TokenFetcher>),
    /// `private_key_jwt`: a fresh signed assertion in the form body.
    #[cfg(feature = "jwt")]
    PrivateKeyJwt(AssertionSigner),
    /// No credentials: the endpoint is protected by the network.
    Unauthenticated,
}

impl ClientAuth {
    /// The resource server's `client_id`, part of every cache key (I14).
    pub(crate) fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } => client_id,
            Self::ClientCredentials(fetcher) => fetcher.client_id(),
            #[cfg(feature = "jwt")]
            Self::PrivateKeyJwt(signer) => &signer.client_id,
            Self::StaticBearer(_) | Self::Unauthenticated => "",
        }
    }

    pub(crate) fn method_name(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::StaticBearer(_) => "bearer (static)",
            Self::ClientCredentials(_) => "bearer (client credentials)",
            #[cfg(feature = "jwt")]
            Self::PrivateKeyJwt(_) => "private_key_jwt",
            Self::Unauthenticated => "none",
        }
    }
}

/// `Authorization: Basic` with the id and secret form-urlencoded first
/// (RFC 6749 §2.3.1 and Appendix B, checklist C1).
pub(crate) fn basic_header(client_id: &str, secret: &str) -> Option<HeaderValue> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
    let mut header = HeaderValue::try_from(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

pub(crate) fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// Fetches and caches the resource server's own bearer token from the
/// authorization server's token endpoint (client credentials grant, C5).
///
/// Concurrent callers share one fetch and its result, success or failure
/// (single flight). A failed fetch is not retried before a backoff has
/// passed; meanwhile, and whenever an early refresh fails, the current token
/// is used for as long as it is still valid.
pub(crate) struct TokenFetcher {
    request: Arc<TokenRequest>,
    state: Mutex<FetcherState>,
}

/// What one fetch sends: shared with the fetch future, which must be
/// `'static` to be shared between callers.
struct TokenRequest {
    token_url: url::Url,
    client_id: Box<str>,
    auth: TokenAuth,
    scope: Option<Box<str>>,
}

/// How the resource server authenticates at the token endpoint.
pub(crate) enum TokenAuth {
    /// `client_secret_basic`: a precomputed, sensitive header.
    Basic(HeaderValue),
    /// `private_key_jwt`: a fresh assertion per fetch.
    #[cfg(feature = "jwt")]
    PrivateKeyJwt(AssertionSigner),
}

impl TokenAuth {
    pub(crate) fn basic(client_id: &str, secret: &str) -> Option<Self> {
        basic_header(client_id, secret).map(Self::Basic)
    }
}

type SharedFetch = Shared<BoxFuture<'static, Result<CachedToken, AsFault>>>;

#[derive(Default)]
struct FetcherState {
    current: Option<CachedToken>,
    /// The fetch every caller waits for, while one runs.
    in_flight: Option<SharedFetch>,
    /// After a failed fetch: no new fetch before this instant; callers get
    /// the current token while it is valid, else this fault.
    backoff: Option<(Instant, AsFault)>,
    consecutive_failures: u32,
    /// When a refused token last forced a new fetch: at most one forced
    /// fetch per [`FORCED_REFRESH_INTERVAL`], so credentials that keep being
    /// refused do not triple the traffic of every call.
    last_forced: Option<Instant>,
}

/// The shortest time between two fetches forced by a 401/403.
const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The longest a fetched token is reused, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The shortest time between two scheduled fetches, whatever `expires_in`
/// says (`expires_in: 0` must not mean one fetch per introspection).
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The wait after a first failed fetch; it doubles with each further
/// failure, up to [`MAX_FAILURE_BACKOFF`].
const FIRST_FAILURE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct CachedToken {
    header: HeaderValue,
    /// From here on, a caller fetches a new token (a little before expiry).
    refresh_at: Instant,
    /// Until here, the token may still be used if a refresh fails.
    valid_until: Instant,
}

impl CachedToken {
    fn usable(&self, now: Instant) -> Option<HeaderValue> {
        (now < self.valid_until).then(|| self.header.clone())
    }
}

impl fmt::Debug for TokenFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFetcher")
            .field("token_url", &self.request.token_url.as_str())
            .field("client_id", &self.request.client_id)
            .field("scope", &self.request.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Used when the token endpoint does not say how long its token lives.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl TokenFetcher {
    pub(crate) fn new(token_url: url::Url, client_id: &str, auth: TokenAuth, scope: Option<String>) -> Self {
        Self {
            request: Arc::new(TokenRequest {
                token_url,
                client_id: client_id.into(),
                auth,
                scope: scope.map(String::into_boxed_str),
            }),
            state: Mutex::new(FetcherState::default()),
        }
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.request.client_id
    }

    fn lock(&self) -> MutexGuard<'_, FetcherState> {
        // The state stays consistent at every step; a panic elsewhere while
        // it was held cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current `Authorization: Bearer` header, fetching a new token when
    /// there is none or it is about to expire. Waits at most `http.timeout`.
    pub(crate) async fn header(&self, http: &HttpSettings) -> Result<HeaderValue, AsFault> {
        let (fetch, fallback) = {
            let mut state = self.lock();
            let now = Instant::now();
            let fallback = state.current.as_ref().and_then(|token| token.usable(now));
            if let Some(token) = &state.current {
                if now < token.refresh_at {
                    return Ok(token.header.clone());
                }
            }
            if let Some((until, fault)) = &state.backoff {
                if now < *until {
                    return fallback.ok_or_else(|| fault.clone());
                }
            }
            let fetch = match &state.in_flight {
                Some(fetch) => fetch.clone(),
                None => {
                    let fetch = fetch(Arc::clone(&self.request), http.clone()).boxed().shared();
                    state.in_flight = Some(fetch.clone());
                    fetch
                }
            };
            (fetch, fallback)
        };
        let result = match tokio::time::timeout(http.timeout, fetch.clone()).await {
            Ok(result) => {
                self.settle(&fetch, &result);
                result
            }
            Err(_) => Err(AsFault::Unavailable(
                "the call to the token endpoint timed out".into(),
            )),
        };
        match (result, fallback) {
            (Ok(token), _) => Ok(token.header),
            (Err(fault), Some(header)) => {
                tracing::warn!(reason = %fault.reason(), "could not refresh the resource server's bearer token; using the current one until it expires");
                Ok(header)
            }
            (Err(fault), None) => Err(fault),
        }
    }

    /// Records the outcome of `fetch`, once: the first caller to see it
    /// finished clears it.
    fn settle(&self, fetch: &SharedFetch, result: &Result<CachedToken, AsFault>) {
        let mut state = self.lock();
        if !state.in_flight.as_ref().is_some_and(|f| f.ptr_eq(fetch)) {
            return;
        }
        state.in_flight = None;
        match result {
            Ok(token) => {
                state.current = Some(token.clone());
                state.backoff = None;
                state.consecutive_failures = 0;
            }
            Err(fault) => {
                let backoff = failure_backoff(state.consecutive_failures);
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                state.backoff = Some((Instant::now() + backoff, fault.clone()));
            }
        }
    }

    /// Forgets `used` after the introspection endpoint refused it, unless
    /// another caller already replaced it. Returns whether the caller should
    /// fetch a new token and try again: not when a refusal already forced a
    /// fetch within the last few seconds.
    pub(crate) fn invalidate(&self, used: &HeaderValue) -> bool {
        let mut state = self.lock();
        if state.current.as_ref().is_some_and(|token| token.header != *used) {
            return true; // someone else already fetched a newer token
        }
        let now = Instant::now();
        if state
            .last_forced
            .is_some_and(|at| now.duration_since(at) < FORCED_REFRESH_INTERVAL)
        {
            return false;
        }
        state.last_forced = Some(now);
        // Refused: due for a refresh, and no fallback should that fail.
        if let Some(token) = &mut state.current {
            token.refresh_at = now;
            token.valid_until = now;
        }
        true
    }
}

/// One token request, bounded by `http.timeout` (set on every request).
async fn fetch(request: Arc<TokenRequest>, http: HttpSettings) -> Result<CachedToken, AsFault> {
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &request.scope {
            form.append_pair("scope", scope);
        }
        #[cfg(feature = "jwt")]
        if let TokenAuth::PrivateKeyJwt(signer) = &request.auth {
            form.append_pair("client_assertion_type", JWT_BEARER_ASSERTION);
            form.append_pair("client_assertion", &signer.assertion(request.token_url.as_str())?);
        }
        form.finish()
    };
    let mut post = http.post(request.token_url.clone());
    match &request.auth {
        TokenAuth::Basic(header) => post = post.header(http::header::AUTHORIZATION, header.clone()),
        #[cfg(feature = "jwt")]
        TokenAuth::PrivateKeyJwt(_) => {}
    }
    let response = post
        .body(body)
        .send()
        .await
        .map_err(|e| AsFault::transport("token endpoint", &e))?;
    if response.url() != &request.token_url {
        return Err(AsFault::Unusable(
            "the token endpoint's answer came from another URL (redirect)".into(),
        ));
    }
    let status = response.status();
    if matches!(status.as_u16(), 400 | 401 | 403) {
        return Err(AsFault::Misconfigured(format!(
            "the token endpoint refused the client credentials grant (HTTP {})",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(AsFault::from_status("token endpoint", status));
    }
    let body = read_capped(response, http.max_body).await?;
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| AsFault::Unusable("the token endpoint answered an unusable body".into()))?;
    let header = bearer_header(&parsed.access_token)
        .filter(|_| crate::token::is_b64token(parsed.access_token.as_bytes()))
        .ok_or_else(|| AsFault::Unusable("the token endpoint issued a malformed token".into()))?;
    let lifetime = parsed
        .expires_in
        .as_ref()
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
        .min(MAX_TOKEN_LIFETIME);
    let now = Instant::now();
    let refresh_at = now + refresh_after(lifetime).max(MIN_REFRESH_INTERVAL);
    Ok(CachedToken {
        header,
        refresh_at,
        valid_until: (now + lifetime).max(refresh_at),
    })
}

/// Refresh a little before the token expires: a tenth of its life early, at
/// most 30 s.
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub((lifetime / 10).min(Duration::from_secs(30)))
}

/// How long to wait after the `(failures + 1)`-th failed fetch in a row.
fn failure_backoff(failures: u32) -> Duration {
    FIRST_FAILURE_BACKOFF
        .saturating_mul(1 << failures.min(16))
        .min(MAX_FAILURE_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c1_basic_urlencodes_before_base64() {
        let header = basic_header("my client", "a+b/c%:é").unwrap();
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "my+client:a%2Bb%2Fc%25%3A%C3%A9"
        );
        assert!(header.is_sensitive());
    }

    #[test]
    fn refresh_margin() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3570)
        );
        assert_eq!(refresh_after(Duration::from_secs(60)), Duration::from_secs(54));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn failure_backoff_doubles_up_to_a_cap() {
        assert_eq!(failure_backoff(0), Duration::from_secs(1));
        assert_eq!(failure_backoff(1), Duration::from_secs(2));
        assert_eq!(failure_backoff(4), Duration::from_secs(16));
        assert_eq!(failure_backoff(5), MAX_FAILURE_BACKOFF);
        assert_eq!(failure_backoff(u32::MAX), MAX_FAILURE_BACKOFF);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
    }
}
