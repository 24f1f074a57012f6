//! Client authentication: HTTP Basic with the RFC 6749 §2.3.1
//! form-urlencoding, `client_secret_post`, and bearer tokens.

use axum::http::{header, HeaderMap};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use axum::response::Response;

use super::form::Form;
use super::reply;

/// Standard base64 that accepts both padded and unpadded input.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// Nothing.
    None,
    /// An `Authorization` header that could not be understood.
    Malformed,
    /// Client credentials, by HTTP Basic or in the form.
    Client { id: String, secret: Option<String> },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// A `private_key_jwt` client assertion (RFC 7523 §2.2), not yet checked.
    Assertion(String),
}

/// The credentials of a request, or the `invalid_request` description when
/// it uses more than one method.
pub(crate) fn credentials(headers: &HeaderMap, form: &Form) -> Result<Credentials, &'static str> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let first = auth.next();
    if auth.next().is_some() {
        return Err("more than one Authorization header");
    }
    let in_form = form.get("client_id").is_some() || form.get("client_secret").is_some();
    if let Some(assertion) = form.get("client_assertion") {
        if first.is_some() || form.get("client_secret").is_some() {
            return Err("more than one client authentication method");
        }
        if form.get("client_assertion_type") != Some(super::assertion::JWT_BEARER) {
            return Ok(Credentials::Malformed);
        }
        return Ok(Credentials::Assertion(assertion.to_owned()));
    }
    match first {
        Some(_) if in_form => Err("more than one client authentication method"),
        Some(value) => Ok(value
            .to_str()
            .ok()
            .and_then(parse_authorization)
            .unwrap_or(Credentials::Malformed)),
        None => Ok(match form.get("client_id") {
            Some(id) => Credentials::Client {
                id: id.to_owned(),
                secret: form.get("client_secret").map(str::to_owned),
            },
            None if in_form => Credentials::Malformed,
            None => Credentials::None,
        }),
    }
}

/// The credentials of a request whose form holds each parameter once, or
/// the 400 `invalid_request` that refuses it (RFC 6749 §3.1: a parameter
/// must not be repeated).
pub(crate) fn form_credentials(headers: &HeaderMap, form: &Form) -> Result<Credentials, Box<Response>> {
    if let Some(key) = form.duplicate() {
        let description = format!("parameter `{key}` included more than once");
        return Err(Box::new(reply::invalid_request(&description)));
    }
    credentials(headers, form).map_err(|description| Box::new(reply::invalid_request(description)))
}

fn parse_authorization(value: &str) -> Option<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = LENIENT.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some(Credentials::Client {
            id: form_decode(id)?,
            secret: Some(form_decode(secret)?),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(Credentials::Bearer(rest.to_owned()))
    } else {
        None
    }
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a
/// byte); a `%` not followed by two hex digits stays as it is.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    out.push(hex(h) << 4 | hex(l));
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.wrapping_sub(b'A').wrapping_add(10),
    }
}

/// The `Authorization` header value for HTTP Basic client authentication as
/// RFC 6749 §2.3.1 requires it: `Basic base64(urlencode(id):urlencode(secret))`.
pub fn client_secret_basic(client_id: &str, client_secret: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    let secret: String = form_urlencoded::byte_serialize(client_secret.as_bytes()).collect();
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(
            form_decode("a%2Bb+c%3A%2F%C3%A9%zz%4").as_deref(),
            Some("a+b c:/é%zz%4")
        );
        assert_eq!(form_decode("%FF"), None);
    }

    #[test]
    fn basic_round_trip() {
        let header = client_secret_basic("weird id", "s+%:/é");
        let value = header.parse().unwrap_or_else(|_| panic!("header value"));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        assert_eq!(
            credentials(&headers, &Form::default()),
            Ok(Credentials::Client {
                id: "weird id".into(),
                secret: Some("s+%:/é".into())
            })
        );
    }
}
