//! RFC 6750 §2.2: the token in a form-encoded body, opt-in.
//!
//! Reading a body needs buffering, so this method has its own layer,
//! [`FormBodyTokenLayer`], placed *outside* (after, in axum's `.layer` order)
//! the [`IntrospectionLayer`](crate::IntrospectionLayer). It reads the
//! `access_token` parameter only when RFC 6750 §2.2 allows it:
//!
//! - `Content-Type: application/x-www-form-urlencoded`;
//! - a method with body semantics (never `GET` or `HEAD`);
//! - a body of at most `max_body` bytes (default 16 KiB), entirely ASCII.
//!
//! The body is handed on unchanged. The token then counts as one more
//! source for [`BearerExtractor`](crate::token::BearerExtractor): sent together with
//! an `Authorization` header, the request is answered 400 `invalid_request`.
//! A body without `Content-Length` that turns out larger than `max_body` is
//! answered 400 by this layer itself, with its own realm and rejection body
//! (set them like the introspection layer's).

mod layer;
mod service;

use bytes::Bytes;
use http::request::Parts;
use http::{header, Extensions, HeaderValue, Method, Request};

pub use self::layer::FormBodyTokenLayer;
pub use self::service::FormBodyToken;

use crate::buffered::{BodyGuard, Plan};
use crate::error::{AuthError, ErrorKind};
use crate::token::{FormToken, TokenError};

/// The default limit on a form body that is read for a token.
pub const DEFAULT_MAX_FORM_BODY: usize = 16 * 1024;

/// What the layer reads, and how it refuses.
#[derive(Clone, Debug)]
pub(crate) struct FormGuard {
    max_body: usize,
    realm: HeaderValue,
}

impl BodyGuard for FormGuard {
    fn plan<B>(&self, request: &Request<B>) -> Plan {
        if applies(request, self.max_body) {
            Plan::Read(self.max_body)
        } else {
            Plan::Pass
        }
    }

    /// Answered like every other rejection: the configured realm in the
    /// challenge, the configured body.
    fn unreadable(&self, _: &Extensions) -> AuthError {
        AuthError::new(ErrorKind::InvalidRequest, "the form body is too large or broken")
            .with_realm(Some(&self.realm))
    }

    fn inspect(&self, parts: &mut Parts, body: &Bytes) -> Result<(), AuthError> {
        if let Some(found) = access_token(body) {
            parts.extensions.insert(FormToken(found));
        }
        Ok(())
    }
}

/// RFC 6750 §2.2: a form-encoded body, on a method with body semantics,
/// not announced as larger than the limit (such a body is not read at all).
fn applies<B>(request: &Request<B>, max_body: usize) -> bool {
    let method = request.method();
    if method == Method::GET || method == Method::HEAD {
        return false;
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max_body as u64) {
        return false;
    }
    is_form(request.headers())
}

/// Whether the content type is `application/x-www-form-urlencoded`
/// (parameters such as `charset` allowed).
pub(crate) fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The `access_token` parameter: `None` when absent, or when the body is not
/// ASCII (then §2.2 does not apply); an error when repeated.
fn access_token(body: &[u8]) -> Option<Result<Box<str>, TokenError>> {
    if !body.is_ascii() {
        return None;
    }
    let mut found = None;
    for (name, value) in form_urlencoded::parse(body) {
        if name == "access_token" {
            if found.is_some() {
                return Some(Err(TokenError::Repeated));
            }
            found = Some(Ok(value.into_owned().into_boxed_str()));
        }
    }
    found
}
