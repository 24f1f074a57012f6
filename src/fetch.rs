//! The rules of every call to an authorization server (introspection,
//! token endpoint, metadata, JWK Sets, signed answers): one client that
//! follows no redirects, bounded time, bounded answers read with
//! [`read_capped`], and [`AsFault`], what a failed call means. (Named
//! `fetch`, not `http`, so that it does not hide the `http` crate.)

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, StatusCode};

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
