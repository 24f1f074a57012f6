//! Client certificates forwarded by a TLS-terminating proxy, in the three
//! header formats in use, read into the SHA-256 of the certificate's DER
//! (what `cnf.x5t#S256` names, RFC 8705 §3.1):
//!
//! - RFC 9440 `Client-Cert`: a structured-field byte sequence,
//!   `:<base64 DER>:`;
//! - Envoy's `x-forwarded-client-cert`: elements separated by `,`, each
//!   `key=value` pairs separated by `;`, values optionally quoted; `Hash=`
//!   is the hex SHA-256 of the DER, `Cert=` the URL-encoded PEM. The last
//!   element is the one the proxy in front of this server added;
//! - nginx's `$ssl_client_escaped_cert`: the URL-encoded PEM (empty when the
//!   client sent none).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Base64 as RFC 8941 asks byte sequences to be read: padding optional,
/// non-zero trailing bits accepted.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A proxy's header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateHeader {
    /// RFC 9440 `Client-Cert` (a byte sequence of the DER).
    ClientCert,
    /// Envoy's `x-forwarded-client-cert` (`Hash=` and/or `Cert=`).
    Xfcc,
    /// nginx's `$ssl_client_escaped_cert` (URL-encoded PEM), as
    /// `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`.
    Nginx,
}

impl CertificateHeader {
    /// The header this format travels in unless renamed: `client-cert`,
    /// `x-forwarded-client-cert`, `x-ssl-client-cert`.
    pub fn default_name(self) -> &'static str {
        match self {
            Self::ClientCert => "client-cert",
            Self::Xfcc => "x-forwarded-client-cert",
            Self::Nginx => "x-ssl-client-cert",
        }
    }
}

/// The largest header value read: a certificate chain in PEM, URL-encoded,
/// is a few kilobytes.
const MAX_VALUE: usize = 64 * 1024;

/// The SHA-256 of the certificate `value` carries in `format`; `None` when
/// it says the client sent none; `Err` when it is malformed.
pub(crate) fn certificate_hash(
    format: CertificateHeader,
    value: &[u8],
) -> Result<Option<[u8; 32]>, &'static str> {
    if value.len() > MAX_VALUE {
        return Err("the forwarded client certificate is too large");
    }
    let value = std::str::from_utf8(value).map_err(|_| "the forwarded client certificate is not text")?;
    let value = value.trim_matches([' ', '\t']);
    match format {
        CertificateHeader::ClientCert => client_cert(value).map(Some),
        CertificateHeader::Xfcc => xfcc(value),
        CertificateHeader::Nginx if value.is_empty() || value == "-" => Ok(None),
        CertificateHeader::Nginx => escaped_pem(value).map(|der| Some(sha256(&der))),
    }
}

/// RFC 9440 §2.2: `:<base64>:`, a DER certificate; parameters after it are
/// ignored, and padding and trailing bits are read leniently (RFC 8941
/// §4.2.7).
fn client_cert(value: &str) -> Result<[u8; 32], &'static str> {
    let malformed = "the Client-Cert header is not a byte sequence (RFC 9440)";
    let (encoded, _parameters) = value
        .strip_prefix(':')
        .and_then(|rest| rest.split_once(':'))
        .ok_or(malformed)?;
    let der = LENIENT.decode(encoded).map_err(|_| malformed)?;
    if der.is_empty() {
        return Err(malformed);
    }
    Ok(sha256(&der))
}

/// Envoy's `x-forwarded-client-cert`: the last element's `Cert` (hashed),
/// else its `Hash`; `None` when it has neither.
fn xfcc(value: &str) -> Result<Option<[u8; 32]>, &'static str> {
    let malformed = "the x-forwarded-client-cert header is malformed";
    let elements = split_outside_quotes(value, ',').ok_or(malformed)?;
    let Some(last) = elements.last() else {
        return Err(malformed);
    };
    let (mut cert, mut hash) = (None, None);
    for pair in split_outside_quotes(last, ';').ok_or(malformed)? {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (key, raw) = pair.split_once('=').ok_or(malformed)?;
        let value = unquote(raw.trim()).ok_or(malformed)?;
        match key.trim().to_ascii_lowercase().as_str() {
            "cert" => cert = Some(value),
            "hash" => hash = Some(value),
            _ => {}
        }
    }
    if let Some(cert) = cert {
        return escaped_pem(&cert).map(|der| Some(sha256(&der)));
    }
    match hash {
        Some(hash) => {
            let bytes = unhex(&hash).ok_or(malformed)?;
            let hash: [u8; 32] = bytes.try_into().map_err(|_| malformed)?;
            Ok(Some(hash))
        }
        None => Ok(None),
    }
}

/// `text` split at each `separator` outside double quotes (a backslash
/// escapes inside them); `None` with an unclosed quote.
fn split_outside_quotes(text: &str, separator: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..index]);
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

/// A value, its quotes and escapes removed.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

/// A URL-encoded PEM certificate (the first, if a chain) as DER.
fn escaped_pem(value: &str) -> Result<Vec<u8>, &'static str> {
    let malformed = "the forwarded client certificate is not a URL-encoded PEM certificate";
    let pem = percent_decode(value).ok_or(malformed)?;
    let pem = std::str::from_utf8(&pem).map_err(|_| malformed)?;
    let body = pem
        .split_once("-----BEGIN CERTIFICATE-----")
        .and_then(|(_, rest)| rest.split_once("-----END CERTIFICATE-----"))
        .map(|(body, _)| body)
        .ok_or(malformed)?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(base64).map_err(|_| malformed)?;
    if der.is_empty() {
        return Err(malformed);
    }
    Ok(der)
}

/// `%XX` decoded (and `+` kept: PEM's base64 has it literally).
fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    Some(out)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The SHA-256 of `der`.
pub(crate) fn sha256(der: &[u8]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a certificate's DER: the parsers do not parse X.509.
    const DER: &[u8] = b"0\x82\x01\x0a not really a certificate, but bytes";

    fn pem() -> String {
        let body = STANDARD.encode(DER);
        format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
    }

    fn escaped(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn read(format: CertificateHeader, value: &str) -> Result<Option<[u8; 32]>, &'static str> {
        certificate_hash(format, value.as_bytes())
    }

    #[test]
    fn each_format_reads_the_certificate_it_carries() {
        let expected = Some(sha256(DER));
        let sf = format!(":{}:", STANDARD.encode(DER));
        assert_eq!(read(CertificateHeader::ClientCert, &sf), Ok(expected));
        let unpadded = format!(":{}:;by=proxy", STANDARD.encode(DER).trim_end_matches('='));
        assert_eq!(
            read(CertificateHeader::ClientCert, &unpadded),
            Ok(expected),
            "RFC 8941 leniency"
        );
        assert_eq!(read(CertificateHeader::Nginx, &escaped(&pem())), Ok(expected));
        let hash: String = sha256(DER).iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            read(CertificateHeader::Xfcc, &format!("Hash=+{}", &hash[1..])).is_err(),
            "hex digits only"
        );
        let xfcc = format!(
            r#"By=spiffe://a;Hash=00;Subject="CN=old, O=x",By=spiffe://b;Hash={hash};Subject="CN=a;b, O=\"q\"""#
        );
        assert_eq!(
            read(CertificateHeader::Xfcc, &xfcc),
            Ok(expected),
            "the last element's Hash"
        );
        let with_cert = format!(r#"Hash=00;Cert="{}""#, escaped(&pem()));
        assert_eq!(
            read(CertificateHeader::Xfcc, &with_cert),
            Ok(expected),
            "Cert over Hash"
        );
    }

    #[test]
    fn absence_is_none_and_malformed_values_are_refused() {
        assert_eq!(read(CertificateHeader::Nginx, ""), Ok(None));
        assert_eq!(read(CertificateHeader::Xfcc, "By=spiffe://a"), Ok(None));
        assert_eq!(read(CertificateHeader::Xfcc, ""), Ok(None));
        for (format, value) in [
            (CertificateHeader::ClientCert, "not a byte sequence"),
            (CertificateHeader::ClientCert, "::"),
            (CertificateHeader::ClientCert, ":!!:"),
            (CertificateHeader::Nginx, "-----BEGIN%20CERTIFICATE-----"),
            (CertificateHeader::Nginx, "%ZZ"),
            (CertificateHeader::Nginx, "%4"),
            (CertificateHeader::Nginx, "%+4"),
            (CertificateHeader::Xfcc, "Hash=abc"),
            (CertificateHeader::Xfcc, "Hash=00"),
            (CertificateHeader::Xfcc, r#"Cert="unclosed"#),
            (CertificateHeader::Xfcc, "Hash"),
            (CertificateHeader::Xfcc, r#"Cert="%ZZ""#),
        ] {
            assert!(read(format, value).is_err(), "{format:?} {value:?}");
        }
        assert!(certificate_hash(CertificateHeader::Nginx, &[0xff, 0xfe]).is_err());
        let huge = "a".repeat(MAX_VALUE + 1);
        assert!(read(CertificateHeader::Nginx, &huge).is_err());
    }

    #[test]
    fn quoting_is_read_as_envoy_writes_it() {
        assert_eq!(
            split_outside_quotes(r#"a="x,y",b"#, ','),
            Some(vec![r#"a="x,y""#, "b"])
        );
        assert_eq!(
            split_outside_quotes(r#"a="x\",y",b"#, ','),
            Some(vec![r#"a="x\",y""#, "b"])
        );
        assert_eq!(unquote(r#""a\"b""#).as_deref(), Some(r#"a"b"#));
        assert_eq!(unquote("plain").as_deref(), Some("plain"));
        assert_eq!(unquote(r#""open"#), None);
    }
}
