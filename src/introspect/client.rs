//! The HTTP client side: one introspection POST per call (RFC 7662 §2.1),
//! with bounded time and a bounded answer, and what every call to the
//! authorization server shares (token endpoint, metadata, JWK Set): the
//! settings, the capped read and [`AsFault`]. (Named `client`, not `http`,
//! so that it does not hide the `http` crate.)

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, StatusCode};

use super::answer::{parse_answer, Answer};
use super::auth::ClientAuth;
use super::signed::{SignedAnswers, SIGNED_ANSWER_TYPE};

/// The default limit on the size of an authorization server's answer.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The default connect timeout toward the authorization server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default total timeout of one call to the authorization server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no answer from the authorization server could be used (its fault, or
/// the way to it). No variant is ever cached. Not to be confused with
/// `test_util::Fault`, the faults the test server can be told to inject.
#[derive(Debug, Clone)]
pub(crate) enum AsFault {
    /// Transient: unreachable, timed out, broke off, 5xx or 429. Answered
    /// 503; with stale-if-error, a stale answer may be served instead.
    Unavailable(String),
    /// The authorization server answered, but not with something usable:
    /// a redirect, another 4xx, an unparsable or oversized body. Answered
    /// 503, and never papered over with a stale answer: an AS that answers a
    /// revoked token with a 4xx must not keep it alive.
    Unusable(String),
    /// The authorization server refused our own credentials: 500.
    Misconfigured(String),
}

impl AsFault {
    /// A non-success status that is not about our credentials: 5xx and 429
    /// are transient, anything else is not.
    pub(crate) fn from_status(what: &str, status: StatusCode) -> Self {
        let reason = if status.is_redirection() {
            format!(
                "the {what} redirected (HTTP {}); redirects are not followed",
                status.as_u16()
            )
        } else {
            format!("the {what} answered HTTP {}", status.as_u16())
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Self::Unavailable(reason)
        } else {
            Self::Unusable(reason)
        }
    }

    /// Why, for logs.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Self::Unavailable(reason) | Self::Unusable(reason) | Self::Misconfigured(reason) => reason,
        }
    }

    pub(crate) fn transport(what: &str, error: &reqwest::Error) -> Self {
        let why = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "could not connect"
        } else if error.is_body() || error.is_decode() {
            "broke off its answer"
        } else {
            "failed"
        };
        Self::Unavailable(format!("the call to the {what} {why}"))
    }
}

/// The client and the limits every call uses.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub(crate) client: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
}

impl HttpSettings {
    /// The user's client, or one that follows no redirects, with these
    /// timeouts.
    pub(crate) fn new(
        client: Option<reqwest::Client>,
        connect_timeout: Duration,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, crate::error::ConfigError> {
        let client = match client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(connect_timeout)
                .timeout(timeout)
                .build()
                .map_err(crate::error::ConfigError::HttpClient)?,
        };
        Ok(Self {
            client,
            timeout,
            max_body,
        })
    }
}

impl HttpSettings {
    /// A form POST with `Accept: application/json` and the total timeout.
    pub(crate) fn post(&self, url: url::Url) -> reqwest::RequestBuilder {
        self.post_accepting(url, "application/json")
    }

    /// A form POST that asks for this media type.
    pub(crate) fn post_accepting(&self, url: url::Url, accept: &'static str) -> reqwest::RequestBuilder {
        self.client
            .post(url)
            .timeout(self.timeout)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, accept)
    }
}

#[cfg(feature = "jwt")]
impl HttpSettings {
    /// A GET with `Accept: application/json` and the total timeout.
    pub(crate) fn get(&self, url: url::Url) -> reqwest::RequestBuilder {
        self.client
            .get(url)
            .timeout(self.timeout)
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
    }
}

/// Reads at most `max` bytes of the body, whatever `Content-Length` says.
pub(crate) async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Bytes, AsFault> {
    let too_large = || AsFault::Unusable(format!("the answer is larger than {max} bytes"));
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| AsFault::transport("introspection endpoint", &e))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// One introspection call with the given client authentication. `bearer` is
/// the credential obtained beforehand in the client-credentials mode.
pub(crate) async fn introspect(
    http: &HttpSettings,
    endpoint: &url::Url,
    auth: &ClientAuth,
    bearer: Option<HeaderValue>,
    token_type_hint: bool,
    token: &str,
    signed: Option<&SignedAnswers>,
) -> Result<Answer, AsFault> {
    let signed_asked = signed.is_some();
    let response = send(
        http,
        endpoint,
        auth,
        bearer.clone(),
        token_type_hint,
        token,
        signed_asked,
    )
    .await?;
    let response = match (response.status(), auth, bearer) {
        // Our token may have been revoked or expired early: fetch a new one,
        // once (and not again within a few seconds if it keeps happening).
        (
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN,
            ClientAuth::ClientCredentials(fetcher),
            Some(used),
        ) if fetcher.invalidate(&used) => {
            let fresh = fetcher.header(http).await?;
            send(
                http,
                endpoint,
                auth,
                Some(fresh),
                token_type_hint,
                token,
                signed_asked,
            )
            .await?
        }
        _ => response,
    };
    if response.url() != endpoint {
        return Err(AsFault::Unusable(
            "the answer came from another URL (redirect)".into(),
        ));
    }
    match response.status() {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(AsFault::Misconfigured(format!(
                "the introspection endpoint refused the resource server's credentials (HTTP {})",
                response.status().as_u16()
            )))
        }
        // Some servers (node-oidc-provider for JWT access tokens) refuse to
        // introspect a kind of token they issue no answers for. The token is
        // then not one they vouch for: inactive, not an outage.
        StatusCode::BAD_REQUEST => {
            let body = read_capped(response, http.max_body).await?;
            if is_unsupported_token_type(&body) {
                return Ok(Answer::Inactive);
            }
            return Err(AsFault::from_status(
                "introspection endpoint",
                StatusCode::BAD_REQUEST,
            ));
        }
        status => return Err(AsFault::from_status("introspection endpoint", status)),
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_capped(response, http.max_body).await?;
    match signed {
        Some(signed) => signed.read(content_type.as_deref(), &body).await,
        None => parse_answer(&body).map_err(|e| AsFault::Unusable(e.to_string())),
    }
}

/// Whether a 400 answer is the OAuth error `unsupported_token_type`
/// (RFC 7009 §2.2.1, which servers also use for introspection).
fn is_unsupported_token_type(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct OAuthError {
        error: String,
    }
    serde_json::from_slice::<OAuthError>(body).is_ok_and(|e| e.error == "unsupported_token_type")
}

async fn send(
    http: &HttpSettings,
    endpoint: &url::Url,
    auth: &ClientAuth,
    bearer: Option<HeaderValue>,
    token_type_hint: bool,
    token: &str,
    signed: bool,
) -> Result<reqwest::Response, AsFault> {
    let mut request = if signed {
        http.post_accepting(endpoint.clone(), SIGNED_ANSWER_TYPE)
    } else {
        http.post(endpoint.clone())
    };
    // The serializer is not `Send`: finish the body before awaiting.
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::with_capacity(token.len() + 64));
        form.append_pair("token", token);
        if token_type_hint {
            form.append_pair("token_type_hint", "access_token");
        }
        match auth {
            ClientAuth::Basic { header, .. } | ClientAuth::StaticBearer(header) => {
                request = request.header(header::AUTHORIZATION, header.clone());
            }
            ClientAuth::Post { client_id, secret } => {
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", secret.expose());
            }
            ClientAuth::ClientCredentials(_) => {
                if let Some(header) = bearer {
                    request = request.header(header::AUTHORIZATION, header);
                }
            }
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwt(signer) => {
                form.append_pair("client_assertion_type", super::assertion::JWT_BEARER_ASSERTION);
                form.append_pair("client_assertion", &signer.assertion(endpoint.as_str())?);
            }
            ClientAuth::Unauthenticated => {}
        }
        form.finish()
    };
    request
        .body(body)
        .send()
        .await
        .map_err(|e| AsFault::transport("introspection endpoint", &e))
}
