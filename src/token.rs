//! Pulling a bearer token out of a request (RFC 6750 §2).
//!
//! [`BearerExtractor`] reads `Authorization: Bearer <b64token>` (§2.1) and, when
//! enabled, the `access_token` query parameter (§2.3), a custom header, a
//! cookie, or the form body (§2.2, with
//! [`FormBodyTokenLayer`](crate::form::FormBodyTokenLayer)). Whatever the sources, a
//! request must carry the token in exactly one of them: two are answered 400
//! `invalid_request` (§3.1).
//!
//! Malformed credentials (a bad `b64token`, an empty token, two
//! `Authorization` headers) are answered 400 `invalid_request`; a token
//! longer than the configured maximum is answered 401 `invalid_token` without
//! asking the authorization server. Another scheme (`Basic …`) counts as no
//! bearer credentials at all: 401 with a bare challenge (§3.1).
//!
//! Before the inner service runs, the middleware marks the headers a token
//! can travel in sensitive ([`ExtractToken::mark_sensitive`]) and removes a
//! query token from the request URI, so inner layers that log requests do not
//! print it.

use std::fmt;

use http::header::Entry;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Uri};

use crate::error::{AuthError, ConfigError, ErrorKind};
use crate::macros::setters;

/// The default maximum token length, in bytes.
pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 4096;

/// The `access_token` parameter that [`FormBodyTokenLayer`](crate::form::FormBodyTokenLayer)
/// found in a form body (RFC 6750 §2.2), left in the request extensions for
/// the extractor; an error when the parameter was repeated.
#[derive(Clone)]
pub(crate) struct FormToken(pub(crate) Result<Box<str>, TokenError>);

impl fmt::Debug for FormToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FormToken([redacted])")
    }
}

/// A bearer token taken from a request. Its `Debug` never shows the token.
#[derive(Clone)]
pub struct BearerToken {
    repr: Repr,
    source: TokenSource,
}

#[derive(Clone)]
enum Repr {
    /// The `Authorization` header itself: cloning it shares the bytes the
    /// server already read, so the hot path copies no token.
    Header {
        value: HeaderValue,
        start: usize,
    },
    Owned(Box<str>),
}

impl BearerToken {
    /// Wraps a token found by a custom [`ExtractToken`] implementation.
    pub fn new(value: impl Into<String>, source: TokenSource) -> Self {
        Self {
            repr: Repr::Owned(value.into().into_boxed_str()),
            source,
        }
    }

    /// The raw token. Handle with care: never log it.
    pub fn secret(&self) -> &str {
        match &self.repr {
            // Checked against the b64token grammar (ASCII) when extracted.
            Repr::Header { value, start } => value
                .as_bytes()
                .get(*start..)
                .and_then(|token| std::str::from_utf8(token).ok())
                .unwrap_or_default(),
            Repr::Owned(token) => token,
        }
    }

    /// Where the token was found.
    pub fn source(&self) -> TokenSource {
        self.source
    }
}

impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.secret() == other.secret()
    }
}

impl Eq for BearerToken {}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("value", &"[redacted]")
            .field("source", &self.source)
            .finish()
    }
}

/// Where a token was found in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer …` (RFC 6750 §2.1).
    AuthorizationHeader,
    /// The `access_token` query parameter (RFC 6750 §2.3).
    Query,
    /// A custom header configured with [`BearerExtractor::header`].
    CustomHeader,
    /// A cookie configured with [`BearerExtractor::cookie`].
    Cookie,
    /// The `access_token` form parameter, read by
    /// [`FormBodyTokenLayer`](crate::form::FormBodyTokenLayer) (RFC 6750 §2.2).
    FormBody,
}

/// Finds the bearer token of a request.
///
/// Implement it to read tokens from somewhere [`BearerExtractor`] does not
/// look. With [`IntrospectionLayer::dpop`](crate::IntrospectionLayer::dpop),
/// `extract` is called on `DPoP` requests too, to find a token sent a
/// second way: it must answer `Ok(None)` for `Authorization: DPoP …`, as
/// for any scheme other than `Bearer`. Return `Ok(None)` when the request carries no token, and a
/// [`TokenError`] when it carries a malformed one (answered 400
/// `invalid_request`; [`TokenError::TooLong`] is answered 401
/// `invalid_token`).
pub trait ExtractToken: Clone + Send + Sync + 'static {
    /// Extracts the token, if any.
    fn extract<B>(&self, request: &Request<B>) -> Result<Option<BearerToken>, TokenError>;

    /// The longest token accepted, in bytes. The layer applies it to a
    /// token sent with the `DPoP` scheme too, which it reads itself. The
    /// default is [`DEFAULT_MAX_TOKEN_LENGTH`].
    fn max_length(&self) -> usize {
        DEFAULT_MAX_TOKEN_LENGTH
    }

    /// Marks the headers this extractor reads tokens from as sensitive
    /// ([`HeaderValue::set_sensitive`]), so that inner layers which print
    /// headers (`Debug`, tracing) redact them. The middleware calls it before
    /// the inner service sees the request.
    ///
    /// The default marks `Authorization`; override it when your extractor
    /// reads other headers.
    fn mark_sensitive(&self, headers: &mut HeaderMap) {
        mark_sensitive(headers, &header::AUTHORIZATION);
    }
}

/// Marks every value of the header `name` sensitive.
fn mark_sensitive(headers: &mut HeaderMap, name: &HeaderName) {
    let Some(first) = headers.get_mut(name) else {
        return;
    };
    first.set_sensitive(true);
    // The same header more than once is rare, and `entry` (the only way to
    // reach the other values mutably) reserves room first: a cost every
    // request would pay if it were the common path.
    if headers.get_all(name).iter().nth(1).is_some() {
        if let Entry::Occupied(mut values) = headers.entry(name) {
            for value in values.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

/// A request's credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The credentials do not follow the `b64token` grammar, or are empty.
    #[error("malformed bearer credentials")]
    Malformed,
    /// More than one `Authorization` header (or custom header, or cookie).
    #[error("more than one credential of the same kind")]
    Repeated,
    /// The token was sent in more than one place (RFC 6750 §2).
    #[error("the token was sent by more than one method")]
    MultipleMethods,
    /// The token is longer than the configured maximum.
    #[error("the token is longer than allowed")]
    TooLong,
}

impl From<TokenError> for AuthError {
    fn from(error: TokenError) -> Self {
        let kind = match error {
            TokenError::TooLong => ErrorKind::InvalidToken,
            _ => ErrorKind::InvalidRequest,
        };
        let description = match error {
            TokenError::Malformed => "malformed bearer credentials",
            TokenError::Repeated => "more than one credential of the same kind",
            TokenError::MultipleMethods => "the token was sent by more than one method",
            TokenError::TooLong => "the token is longer than allowed",
        };
        AuthError::new(kind, description)
    }
}

/// The default token extractor: `Authorization: Bearer`, plus opt-in sources.
///
/// ```
/// use http::HeaderName;
/// use tower_introspection::{token::BearerExtractor, ConfigError};
///
/// let extractor = BearerExtractor::new()
///     .max_length(2048)
///     .allow_query(false)
///     .cookie("access_token")
///     .header(HeaderName::from_static("x-api-token"))?;
/// # let _ = extractor;
/// # Ok::<(), ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BearerExtractor {
    max_length: usize,
    authorization_header: bool,
    query: bool,
    custom_header: Option<HeaderName>,
    cookie: Option<Box<str>>,
}

impl Default for BearerExtractor {
    fn default() -> Self {
        Self::new()
    }
}

impl BearerExtractor {
    /// Reads `Authorization: Bearer` only, with tokens up to
    /// [`DEFAULT_MAX_TOKEN_LENGTH`] bytes.
    pub fn new() -> Self {
        Self {
            max_length: DEFAULT_MAX_TOKEN_LENGTH,
            authorization_header: true,
            query: false,
            custom_header: None,
            cookie: None,
        }
    }

    setters! {
        /// Longest token accepted, in bytes; longer ones are answered 401
        /// `invalid_token` without an introspection call.
        pub fn max_length(max_length: usize) => max_length = max_length;

        /// Also accept the `access_token` query parameter (RFC 6750 §2.3; off by
        /// default, and the RFC advises against it). Successful responses to such
        /// requests get `Cache-Control: private`.
        ///
        /// The parameter is removed from the request URI before the inner
        /// service is called (the other parameters keep their order and
        /// encoding), so inner layers that log URIs never see the token. Layers
        /// outside this one, and axum's `OriginalUri` extension (recorded by the
        /// `Router` before its route layers run), still hold the full URI.
        pub fn allow_query(allow: bool) => query = allow;
    }

    /// Also accept the raw token (no scheme) in this header. Its values are
    /// marked sensitive for inner layers.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] for `Authorization`, which is read
    /// with the `Bearer` scheme already (RFC 6750 §2.1; reading it a second
    /// time as a raw token would refuse every request), and for `Cookie`
    /// (use [`cookie`](Self::cookie)).
    ///
    /// ```
    /// use http::header::{HeaderName, AUTHORIZATION};
    /// use tower_introspection::{token::BearerExtractor, ConfigError};
    ///
    /// let extractor = BearerExtractor::new().header(HeaderName::from_static("x-api-token"))?;
    /// # let _ = extractor;
    /// assert!(matches!(
    ///     BearerExtractor::new().header(AUTHORIZATION),
    ///     Err(ConfigError::InvalidSetting(_)),
    /// ));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn header(mut self, name: HeaderName) -> Result<Self, ConfigError> {
        if name == header::AUTHORIZATION {
            return Err(ConfigError::InvalidSetting(
                "`BearerExtractor::header` cannot be `Authorization`: it is read with the Bearer scheme already (RFC 6750 §2.1)",
            ));
        }
        if name == header::COOKIE {
            return Err(ConfigError::InvalidSetting(
                "`BearerExtractor::header` cannot be `Cookie`: use `BearerExtractor::cookie(name)`",
            ));
        }
        self.custom_header = Some(name);
        Ok(self)
    }

    setters! {
        /// Also accept the token in the cookie with this name. The `Cookie`
        /// headers are then marked sensitive for inner layers.
        pub fn cookie(name: impl Into<String>) => cookie = Some(name.into().into_boxed_str());
    }

    /// Stop reading the `Authorization` header (for APIs that take tokens only
    /// from a cookie or a custom header).
    pub fn without_authorization_header(mut self) -> Self {
        self.authorization_header = false;
        self
    }

    fn checked(&self, value: &str, source: TokenSource) -> Result<BearerToken, TokenError> {
        if value.len() > self.max_length {
            return Err(TokenError::TooLong);
        }
        if !is_b64token(value.as_bytes()) {
            return Err(TokenError::Malformed);
        }
        Ok(BearerToken::new(value, source))
    }

    fn read_authorization<B>(&self, request: &Request<B>) -> Result<Option<BearerToken>, TokenError> {
        let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(TokenError::Repeated);
        }
        match bearer_credentials(value.as_bytes())? {
            // Another scheme is not a bearer token: no credentials for us.
            None => Ok(None),
            Some(token) => {
                // `bearer_credentials` checked the grammar already.
                if token.len() > self.max_length {
                    return Err(TokenError::TooLong);
                }
                Ok(Some(BearerToken {
                    repr: Repr::Header {
                        value: value.clone(),
                        start: value.len() - token.len(),
                    },
                    source: TokenSource::AuthorizationHeader,
                }))
            }
        }
    }

    fn read_query<B>(&self, request: &Request<B>) -> Result<Option<BearerToken>, TokenError> {
        let Some(query) = request.uri().query() else {
            return Ok(None);
        };
        let mut found = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "access_token" {
                if found.is_some() {
                    return Err(TokenError::Repeated);
                }
                found = Some(self.checked(&value, TokenSource::Query)?);
            }
        }
        Ok(found)
    }

    fn read_custom_header<B>(
        &self,
        request: &Request<B>,
        name: &HeaderName,
    ) -> Result<Option<BearerToken>, TokenError> {
        let mut values = request.headers().get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(TokenError::Repeated);
        }
        let value = value.to_str().map_err(|_| TokenError::Malformed)?;
        self.checked(value, TokenSource::CustomHeader).map(Some)
    }

    fn read_cookie<B>(&self, request: &Request<B>, name: &str) -> Result<Option<BearerToken>, TokenError> {
        let mut found = None;
        for header in request.headers().get_all(header::COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            for pair in header.split(';') {
                let Some((key, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if key == name {
                    if found.is_some() {
                        return Err(TokenError::Repeated);
                    }
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(value);
                    found = Some(self.checked(value, TokenSource::Cookie)?);
                }
            }
        }
        Ok(found)
    }
}

impl BearerExtractor {
    /// The middleware's cache probe: the token [`extract`](ExtractToken::extract)
    /// would return, without the checks that depend on the token's bytes
    /// alone (its grammar), or `None` to use `extract`. Anything else
    /// `extract` refuses (no token, several, another scheme, too long)
    /// gives `None`. The middleware uses it only to look the token up among
    /// cached answers, which hold only tokens that passed those checks (see
    /// `TokenCache::admit`); on a miss it calls `extract`. Only the default
    /// configuration (the `Authorization` header alone, no form-body token)
    /// is probed: exactly one header, the `Bearer` scheme, not too long.
    #[inline]
    pub(crate) fn cache_probe<B>(&self, request: &Request<B>) -> Option<BearerToken> {
        if !self.authorization_header || self.query || self.custom_header.is_some() || self.cookie.is_some() {
            return None;
        }
        if request.extensions().get::<FormToken>().is_some() {
            return None;
        }
        let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let token = bearer_scheme(value.as_bytes()).ok().flatten()?;
        if token.is_empty() || token.len() > self.max_length {
            return None;
        }
        Some(BearerToken {
            repr: Repr::Header {
                value: value.clone(),
                start: value.len() - token.len(),
            },
            source: TokenSource::AuthorizationHeader,
        })
    }
}

impl ExtractToken for BearerExtractor {
    fn extract<B>(&self, request: &Request<B>) -> Result<Option<BearerToken>, TokenError> {
        let mut found: Option<BearerToken> = None;
        let mut take = |candidate: Option<BearerToken>| -> Result<(), TokenError> {
            if let Some(token) = candidate {
                if found.is_some() {
                    return Err(TokenError::MultipleMethods);
                }
                found = Some(token);
            }
            Ok(())
        };
        if self.authorization_header {
            take(self.read_authorization(request)?)?;
        }
        if self.query {
            take(self.read_query(request)?)?;
        }
        if let Some(name) = &self.custom_header {
            take(self.read_custom_header(request, name)?)?;
        }
        if let Some(name) = &self.cookie {
            take(self.read_cookie(request, name)?)?;
        }
        // Present only when the user added `FormBodyTokenLayer` (opt-in).
        if let Some(FormToken(form)) = request.extensions().get::<FormToken>() {
            let token = form.as_ref().map_err(Clone::clone)?;
            take(Some(self.checked(token, TokenSource::FormBody)?))?;
        }
        Ok(found)
    }

    fn max_length(&self) -> usize {
        self.max_length
    }

    fn mark_sensitive(&self, headers: &mut HeaderMap) {
        // Always, as the default does: even when not read for a token, it
        // holds credentials of some scheme.
        mark_sensitive(headers, &header::AUTHORIZATION);
        if let Some(name) = &self.custom_header {
            mark_sensitive(headers, name);
        }
        if self.cookie.is_some() {
            mark_sensitive(headers, &header::COOKIE);
        }
    }
}

/// `uri` without its `access_token` query parameters (RFC 6750 §2.3), the
/// others kept in their order and encoding; no `?` when nothing is left.
/// Names are decoded as [`BearerExtractor`] decodes them when reading the
/// token, so whatever was read is removed. `None` if the URI cannot be
/// rebuilt (not expected: the result is a part of a valid URI).
pub(crate) fn without_query_token(uri: &Uri) -> Option<Uri> {
    let Some(query) = uri.query() else {
        return Some(uri.clone());
    };
    let is_token = |pair: &&str| {
        form_urlencoded::parse(pair.as_bytes())
            .next()
            .is_some_and(|(name, _)| name == "access_token")
    };
    let kept: Vec<&str> = query.split('&').filter(|pair| !is_token(pair)).collect();
    let path_and_query = if kept.iter().all(|pair| pair.is_empty()) {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// Splits `Bearer <credentials>` (scheme matched case-insensitively) and checks
/// the credentials' grammar. `Ok(None)` means another scheme.
fn bearer_credentials(value: &[u8]) -> Result<Option<&[u8]>, TokenError> {
    match bearer_scheme(value)? {
        Some(token) if !is_b64token(token) => Err(TokenError::Malformed),
        other => Ok(other),
    }
}

/// Splits `Bearer <credentials>` (scheme matched case-insensitively), without
/// looking at the credentials. `Ok(None)` means another scheme.
fn bearer_scheme(value: &[u8]) -> Result<Option<&[u8]>, TokenError> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Ok(None);
    }
    let rest = &value[SCHEME.len()..];
    if rest.is_empty() {
        // `Bearer` alone: our scheme, but no token.
        return Err(TokenError::Malformed);
    }
    if rest[0] != b' ' {
        // `Bearerx …` is some other scheme.
        return Ok(None);
    }
    Ok(Some(trim_leading_spaces(rest)))
}

fn trim_leading_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
///
/// Checked 16 bytes at a time, without an early exit, so that each block is
/// a handful of vector instructions; the last, partial block is padded with
/// a valid character rather than checked byte by byte.
pub(crate) fn is_b64token(bytes: &[u8]) -> bool {
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &bytes[..bytes.len() - padding];
    let blocks = body.chunks_exact(BLOCK);
    let mut last = [b'a'; BLOCK];
    last[..blocks.remainder().len()].copy_from_slice(blocks.remainder());
    let whole = blocks.fold(true, |ok, block| {
        ok & block.iter().fold(true, |ok, &b| ok & is_token_char(b))
    });
    !body.is_empty() && whole & last.iter().fold(true, |ok, &b| ok & is_token_char(b))
}

const BLOCK: usize = 16;

/// One character of the `b64token` body, by comparisons only (no table, so
/// that it vectorizes).
#[inline(always)]
fn is_token_char(b: u8) -> bool {
    let lower = b | 0x20;
    (lower.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache probe takes what `extract` would, grammar aside, and
    /// declines everything else `extract` refuses or reads elsewhere.
    #[test]
    fn the_cache_probe_declines_what_extract_would_refuse() {
        let probe = |extractor: &BearerExtractor, req: &Request<()>| {
            extractor.cache_probe(req).map(|t| t.secret().to_owned())
        };
        let default = BearerExtractor::new();
        let one = request(&[("authorization", "Bearer  abc")], "/");
        assert_eq!(probe(&default, &one).as_deref(), Some("abc"));
        assert_eq!(default.extract(&one).unwrap().unwrap().secret(), "abc");
        // Grammar is not its business: the cache decides (see `admit`).
        let odd = request(&[("authorization", "Bearer a\"b")], "/");
        assert_eq!(probe(&default, &odd).as_deref(), Some("a\"b"));
        for headers in [
            &[][..],
            &[("authorization", "Bearer")],
            &[("authorization", "Bearer ")],
            &[("authorization", "Basic eDp5")],
            &[("authorization", "Bearerx abc")],
            &[("authorization", "Bearer abc"), ("authorization", "Bearer abc")],
        ] {
            assert_eq!(probe(&default, &request(headers, "/")), None, "{headers:?}");
        }
        let short = BearerExtractor::new().max_length(2);
        assert_eq!(probe(&short, &one), None);
        for other in [
            BearerExtractor::new().allow_query(true),
            BearerExtractor::new().cookie("at"),
            BearerExtractor::new()
                .header(HeaderName::from_static("x-token"))
                .unwrap(),
        ] {
            assert_eq!(probe(&other, &one), None);
        }
        let mut form = request(&[("authorization", "Bearer abc")], "/");
        form.extensions_mut().insert(FormToken(Ok("abc".into())));
        assert_eq!(probe(&default, &form), None);
    }

    /// Around the 16-byte blocks the check works in: a bad byte or a
    /// misplaced `=` is found at every position, in the last partial block
    /// as in whole ones.
    #[test]
    fn b64token_blocks_check_every_position() {
        for len in [1, 15, 16, 17, 31, 32, 33, 48] {
            let good = "a".repeat(len);
            assert!(is_b64token(good.as_bytes()), "{len}");
            assert!(is_b64token(format!("{good}==").as_bytes()), "{len} padded");
            for at in 0..len {
                for bad in [b' ', b'"', b'=', 0x80, b'\\', b',', 0] {
                    let mut token = good.clone().into_bytes();
                    token[at] = bad;
                    let trailing_padding = at > 0 && bad == b'=' && token[at..].iter().all(|&b| b == b'=');
                    assert_eq!(is_b64token(&token), trailing_padding, "{len} {at} {bad:#x}");
                }
            }
        }
        assert!(!is_b64token(b""));
        assert!(!is_b64token(b"=="));
    }

    fn request(headers: &[(&str, &str)], uri: &str) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn extract(extractor: &BearerExtractor, headers: &[(&str, &str)]) -> Result<Option<String>, TokenError> {
        extractor
            .extract(&request(headers, "/"))
            .map(|token| token.map(|t| t.secret().to_owned()))
    }

    #[test]
    fn b64token_grammar() {
        for ok in ["a", "abc-._~+/", "abc==", "A1", "x="] {
            assert!(is_b64token(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "=", "a b", "a=b", "tök", "a\"", "a,b", "a\t", "a==b"] {
            assert!(!is_b64token(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn b2_scheme_is_case_insensitive() {
        let e = BearerExtractor::new();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let value = format!("{scheme} abc");
            assert_eq!(extract(&e, &[("authorization", &value)]), Ok(Some("abc".into())));
        }
    }

    #[test]
    fn b3_malformed_credentials() {
        let e = BearerExtractor::new();
        for value in ["Bearer", "Bearer ", "Bearer a b", "Bearer a,b", "Bearer =abc"] {
            assert_eq!(
                extract(&e, &[("authorization", value)]),
                Err(TokenError::Malformed),
                "{value}"
            );
        }
        let mut req = request(&[], "/");
        req.headers_mut().insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_bytes("Bearer tök".as_bytes()).unwrap(),
        );
        assert_eq!(e.extract(&req).unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn other_schemes_are_no_credentials() {
        let e = BearerExtractor::new();
        for value in ["Basic dXNlcjpwYXNz", "Bearerx abc", "Token abc", "DPoP abc"] {
            assert_eq!(extract(&e, &[("authorization", value)]), Ok(None), "{value}");
        }
        assert_eq!(extract(&e, &[]), Ok(None));
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let e = BearerExtractor::new();
        let headers = [("authorization", "Bearer a"), ("authorization", "Bearer b")];
        assert_eq!(extract(&e, &headers), Err(TokenError::Repeated));
    }

    #[test]
    fn max_length_is_enforced() {
        let e = BearerExtractor::new().max_length(8);
        assert_eq!(
            extract(&e, &[("authorization", "Bearer 12345678")]),
            Ok(Some("12345678".into()))
        );
        assert_eq!(
            extract(&e, &[("authorization", "Bearer 123456789")]),
            Err(TokenError::TooLong)
        );
    }

    #[test]
    fn b5_query_is_opt_in() {
        let off = BearerExtractor::new();
        assert_eq!(off.extract(&request(&[], "/?access_token=abc")).unwrap(), None);
        let on = BearerExtractor::new().allow_query(true);
        let token = on.extract(&request(&[], "/?access_token=abc")).unwrap().unwrap();
        assert_eq!((token.secret(), token.source()), ("abc", TokenSource::Query));
    }

    #[test]
    fn b6_two_methods_are_refused() {
        let e = BearerExtractor::new().allow_query(true);
        let req = request(&[("authorization", "Bearer abc")], "/?access_token=abc");
        assert_eq!(e.extract(&req), Err(TokenError::MultipleMethods));
        let e = BearerExtractor::new().cookie("at");
        let req = request(&[("authorization", "Bearer abc"), ("cookie", "x=1; at=abc")], "/");
        assert_eq!(e.extract(&req), Err(TokenError::MultipleMethods));
    }

    #[test]
    fn cookie_and_custom_header() {
        let e = BearerExtractor::new().without_authorization_header().cookie("at");
        let req = request(&[("cookie", "x=1; at=abc.def")], "/");
        assert_eq!(e.extract(&req).unwrap().unwrap().secret(), "abc.def");
        let req = request(&[("cookie", "at=a"), ("cookie", "at=b")], "/");
        assert_eq!(e.extract(&req), Err(TokenError::Repeated));

        let e = BearerExtractor::new()
            .header(HeaderName::from_static("x-api-token"))
            .unwrap();
        let req = request(&[("x-api-token", "abc")], "/");
        assert_eq!(
            e.extract(&req).unwrap().unwrap().source(),
            TokenSource::CustomHeader
        );
    }

    #[test]
    fn authorization_or_cookie_as_custom_header_is_refused() {
        for name in [header::AUTHORIZATION, header::COOKIE] {
            let refused = BearerExtractor::new().header(name.clone());
            assert!(
                matches!(refused, Err(ConfigError::InvalidSetting(_))),
                "{name}: {refused:?}"
            );
        }
        assert!(BearerExtractor::new()
            .without_authorization_header()
            .header(header::AUTHORIZATION)
            .is_err());
        assert!(BearerExtractor::new()
            .header(HeaderName::from_static("x-api-token"))
            .is_ok());
    }

    #[test]
    fn query_token_is_removed_from_the_uri() {
        let strip = |uri: &str| without_query_token(&uri.parse().unwrap()).unwrap().to_string();
        assert_eq!(strip("/p?a=1&access_token=t&b=x%20y+z&c"), "/p?a=1&b=x%20y+z&c");
        assert_eq!(strip("/p?access_token=t"), "/p");
        assert_eq!(strip("/p?access_token=t&access_token=u"), "/p");
        assert_eq!(strip("/p?access%5Ftoken=t&a=1"), "/p?a=1", "names are decoded");
        assert_eq!(strip("/p?a=1&&access_token=t"), "/p?a=1&");
        assert_eq!(
            strip("/p?xaccess_token=1&access_tokens=2"),
            "/p?xaccess_token=1&access_tokens=2"
        );
        assert_eq!(strip("/p?a=access_token"), "/p?a=access_token");
        assert_eq!(strip("/p"), "/p");
        assert_eq!(
            strip("http://h.example:8080/p?access_token=t&a=1"),
            "http://h.example:8080/p?a=1"
        );
    }

    #[test]
    fn token_headers_are_marked_sensitive() {
        let extractor = BearerExtractor::new()
            .header(HeaderName::from_static("x-api-token"))
            .unwrap()
            .cookie("at");
        let mut req = request(
            &[
                ("authorization", "Basic eDp5"),
                ("x-api-token", "abc"),
                ("cookie", "x=1"),
                ("cookie", "at=abc"),
                ("accept", "*/*"),
            ],
            "/",
        );
        extractor.mark_sensitive(req.headers_mut());
        let headers = req.headers();
        for name in ["authorization", "x-api-token", "cookie"] {
            assert!(
                headers.get_all(name).iter().all(HeaderValue::is_sensitive),
                "{name}"
            );
        }
        assert!(!headers["accept"].is_sensitive());

        // Without a cookie source, cookies are not ours to mark.
        let mut req = request(&[("cookie", "x=1")], "/");
        BearerExtractor::new().mark_sensitive(req.headers_mut());
        assert!(!req.headers()["cookie"].is_sensitive());
    }

    #[test]
    fn debug_redacts() {
        let token = BearerToken::new("s3cr3t", TokenSource::AuthorizationHeader);
        let debug = format!("{token:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        // Redacted, not empty: the type and the source still show.
        assert_eq!(
            debug,
            r#"BearerToken { value: "[redacted]", source: AuthorizationHeader }"#
        );
    }

    #[test]
    fn tokens_are_equal_when_secret_and_source_are() {
        let e = BearerExtractor::new();
        let from_header = e
            .extract(&request(&[("authorization", "Bearer abc")], "/"))
            .unwrap()
            .unwrap();
        // A header-backed token equals an owned one with the same bytes.
        assert_eq!(
            from_header,
            BearerToken::new("abc", TokenSource::AuthorizationHeader)
        );
        assert_ne!(
            from_header,
            BearerToken::new("abd", TokenSource::AuthorizationHeader)
        );
        assert_ne!(from_header, BearerToken::new("abc", TokenSource::Query));
        assert_ne!(
            BearerToken::new("abc", TokenSource::Cookie),
            BearerToken::new("abd", TokenSource::Query)
        );
    }

    #[test]
    fn default_mark_sensitive_marks_authorization_only() {
        /// A custom extractor that keeps the trait's default `mark_sensitive`.
        #[derive(Clone)]
        struct Custom;

        impl ExtractToken for Custom {
            fn extract<B>(&self, _: &Request<B>) -> Result<Option<BearerToken>, TokenError> {
                Ok(None)
            }
        }

        let mut req = request(&[("authorization", "Bearer abc"), ("cookie", "at=abc")], "/");
        Custom.mark_sensitive(req.headers_mut());
        assert!(req.headers()["authorization"].is_sensitive());
        assert!(!req.headers()["cookie"].is_sensitive());
    }

    #[test]
    fn max_length_applies_to_every_source() {
        let e = BearerExtractor::new()
            .max_length(8)
            .without_authorization_header()
            .allow_query(true)
            .cookie("at")
            .header(HeaderName::from_static("x-api-token"))
            .unwrap();
        let (at_limit, over) = ("12345678", "123456789");
        for (token, expected) in [
            (at_limit, Ok(Some(at_limit.to_owned()))),
            (over, Err(TokenError::TooLong)),
        ] {
            let query = format!("/?access_token={token}");
            let cookie = format!("at={token}");
            for req in [
                request(&[], &query),
                request(&[("cookie", &cookie)], "/"),
                request(&[("x-api-token", token)], "/"),
            ] {
                let found = e.extract(&req).map(|t| t.map(|t| t.secret().to_owned()));
                assert_eq!(found, expected, "{req:?}");
            }
        }
    }

    #[test]
    fn without_authorization_header_ignores_it() {
        let e = BearerExtractor::new().without_authorization_header().cookie("at");
        assert_eq!(extract(&e, &[("authorization", "Bearer abc")]), Ok(None));
        // Not read, so not a second method either.
        let req = request(&[("authorization", "Bearer abc"), ("cookie", "at=def")], "/");
        let token = e.extract(&req).unwrap().unwrap();
        assert_eq!((token.secret(), token.source()), ("def", TokenSource::Cookie));
    }

    #[test]
    fn six_letter_and_short_schemes_are_not_bearer() {
        let e = BearerExtractor::new();
        // `Digest` has as many letters as `Bearer`: only the name decides.
        for value in ["Digest abc", "Digest  abc", "Neg", "B", "Bearex abc"] {
            assert_eq!(extract(&e, &[("authorization", value)]), Ok(None), "{value}");
        }
    }
}
