//! Certificate-bound access tokens (RFC 8705 §3): a token whose `cnf`
//! names `x5t#S256` is accepted only from a request that came with that
//! client certificate.
//!
//! Turn it on with [`IntrospectionLayer::mtls`](crate::IntrospectionLayer::mtls)
//! and an [`MtlsConfig`]. The certificate comes from either place:
//!
//! - **the TLS connection**: a server that authenticates clients puts the
//!   peer's leaf certificate into each request's extensions as a
//!   [`ClientCertificate`] (its DER);
//! - **a TLS-terminating proxy**, in a header ([`CertificateHeader`]: RFC
//!   9440 `Client-Cert`, Envoy's `x-forwarded-client-cert`, nginx's
//!   `$ssl_client_escaped_cert`), read **only** when the request's peer is
//!   a trusted proxy ([`MtlsConfig::trusted_proxies`], matched against
//!   axum's `ConnectInfo<SocketAddr>`). From anyone else the header is
//!   ignored and removed, so the inner service never sees it.
//!
//! Modes, like DPoP's: with [`MtlsConfig::allowed`], certificate-bound
//! tokens need their certificate and other tokens pass as before; with
//! [`MtlsConfig::required`], every token must be certificate-bound. Without
//! `mtls`, certificate-bound tokens are refused (they cannot be checked).
//! A token bound to a DPoP key and a certificate needs both proofs.
//!
//! Refusals: a missing or different certificate is 401 `invalid_token`
//! with a description that says which; a malformed forwarded header is 400
//! `invalid_request`. Certificates are never logged.
//!
//! ```
//! use tower_introspection::mtls::{CertificateHeader, MtlsConfig};
//!
//! // Behind nginx (`proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`)
//! // on the same host:
//! let mtls = MtlsConfig::allowed()
//!     .forwarded_by(CertificateHeader::Nginx)
//!     .trusted_proxies(["127.0.0.1/32", "::1/128"])?;
//! assert!(!mtls.is_required());
//! # Ok::<(), tower_introspection::mtls::InvalidNetwork>(())
//! ```

mod header;
mod network;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, Request};

pub use self::header::CertificateHeader;
pub use self::network::{InvalidNetwork, Network};
use crate::error::{AuthError, ErrorKind};

/// The DER of the client certificate a request's TLS connection presented
/// (the leaf), as a TLS server that authenticates clients puts it into the
/// request's extensions. Cloning is cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Bytes);

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("der_bytes", &self.0.len())
            .finish()
    }
}

/// How a layer checks certificate-bound tokens; see the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct MtlsConfig {
    required: bool,
    forwarded: Option<(CertificateHeader, HeaderName)>,
    proxies: Arc<[Network]>,
}

impl MtlsConfig {
    /// Certificate-bound tokens need their certificate; other tokens pass.
    pub fn allowed() -> Self {
        Self {
            required: false,
            forwarded: None,
            proxies: Arc::from([]),
        }
    }

    /// Every token must be bound to the certificate the request came with.
    pub fn required() -> Self {
        Self {
            required: true,
            ..Self::allowed()
        }
    }

    /// Whether every token must be certificate-bound.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// Reads the certificate a trusted proxy forwards, in `format`, from its
    /// usual header ([`CertificateHeader::default_name`]). Over the TLS
    /// connection's certificate, which behind a proxy is the proxy's own.
    ///
    /// The proxy must set the header itself, replacing any the client sent:
    /// nginx's `proxy_set_header` does; Envoy does with
    /// `forward_client_cert_details` `SANITIZE_SET` (or `APPEND_FORWARD`:
    /// the last element is then the one it added), not with the
    /// `FORWARD_ONLY` modes. Behind several Envoy hops, the last element is
    /// the last hop's client: put the proxy that terminates the client's
    /// TLS next to this server, or have the others sanitize.
    pub fn forwarded_by(self, format: CertificateHeader) -> Self {
        let name = HeaderName::from_static(format.default_name());
        Self {
            forwarded: Some((format, name)),
            ..self
        }
    }

    /// As [`forwarded_by`](Self::forwarded_by), from the header `name`.
    pub fn forwarded_in(self, format: CertificateHeader, name: HeaderName) -> Self {
        Self {
            forwarded: Some((format, name)),
            ..self
        }
    }

    /// The proxies trusted to forward the certificate: their networks in
    /// CIDR notation (`10.0.0.0/8`, `::1/128`, or an address). The peer
    /// address is axum's `ConnectInfo<SocketAddr>` (feature `axum`; serve
    /// with `into_make_service_with_connect_info::<SocketAddr>()`): without
    /// it, or without any network here, no header is trusted, and every
    /// forwarded header is removed.
    ///
    /// # Errors
    ///
    /// [`InvalidNetwork`] for a network that does not parse.
    pub fn trusted_proxies<I, T>(self, networks: I) -> Result<Self, InvalidNetwork>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let proxies = networks
            .into_iter()
            .map(|network| network.as_ref().parse())
            .collect::<Result<Vec<Network>, _>>()?;
        Ok(Self {
            proxies: proxies.into(),
            ..self
        })
    }

    /// The SHA-256 of the certificate `request` came with: its TLS
    /// connection's, else a trusted proxy's header. The header is removed
    /// from a request that is not from a trusted proxy.
    pub(crate) fn presented<B>(&self, request: &mut Request<B>) -> Result<Option<[u8; 32]>, AuthError> {
        let connection = |request: &Request<B>| {
            request
                .extensions()
                .get::<ClientCertificate>()
                .map(|ClientCertificate(der)| header::sha256(der))
        };
        let Some((format, name)) = &self.forwarded else {
            return Ok(connection(request));
        };
        if !request.headers().contains_key(name) {
            return Ok(connection(request));
        }
        if !self.trusted(request) {
            // Anyone can send the header: it must not reach the inner
            // service as though a proxy had vouched for it.
            request.headers_mut().remove(name);
            return Ok(connection(request));
        }
        // A trusted proxy's header names its client's certificate; the
        // connection's, if any, is the proxy's own.
        let mut values = request.headers().get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(AuthError::new(
                ErrorKind::InvalidRequest,
                "the forwarded client certificate header appears more than once",
            ));
        };
        header::certificate_hash(*format, value.as_bytes())
            .map_err(|why| AuthError::new(ErrorKind::InvalidRequest, why))
    }

    fn trusted<B>(&self, request: &Request<B>) -> bool {
        peer(request).is_some_and(|peer| self.proxies.iter().any(|network| network.contains(peer.ip())))
    }
}

/// The request's peer address, as axum's `serve` records it.
fn peer<B>(request: &Request<B>) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    {
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = request;
        None
    }
}

impl fmt::Debug for MtlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsConfig")
            .field("required", &self.required)
            .field("forwarded", &self.forwarded)
            .field("trusted_proxies", &self.proxies)
            .finish()
    }
}

#[cfg(test)]
#[cfg(feature = "axum")]
mod tests {
    use super::*;

    fn request(peer: &str, header: Option<&str>, connection: Option<&[u8]>) -> Request<()> {
        let mut request = Request::new(());
        let peer: SocketAddr = peer.parse().unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        if let Some(der) = connection {
            request
                .extensions_mut()
                .insert(ClientCertificate(Bytes::copy_from_slice(der)));
        }
        if let Some(value) = header {
            request
                .headers_mut()
                .insert("client-cert", http::HeaderValue::from_str(value).unwrap());
        }
        request
    }

    #[test]
    fn the_connection_the_trusted_header_and_the_untrusted_one() {
        use base64::Engine as _;
        let mtls = MtlsConfig::allowed()
            .forwarded_by(CertificateHeader::ClientCert)
            .trusted_proxies(["10.0.0.0/8"])
            .unwrap();
        let (own, forwarded) = (b"the proxy's own certificate", b"its client's certificate");
        let header = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(forwarded)
        );
        // Only the connection's: that one.
        let mut plain = request("192.0.2.1:1", None, Some(own));
        assert_eq!(mtls.presented(&mut plain).unwrap(), Some(header::sha256(own)));
        // A trusted proxy's header: its client's, not the proxy's own.
        let mut proxied = request("10.1.1.1:1", Some(&header), Some(own));
        assert_eq!(
            mtls.presented(&mut proxied).unwrap(),
            Some(header::sha256(forwarded))
        );
        assert!(
            proxied.headers().contains_key("client-cert"),
            "kept for the inner service"
        );
        // From anyone else: ignored and removed, the connection's stands.
        let mut forged = request("192.0.2.1:1", Some(&header), Some(own));
        assert_eq!(mtls.presented(&mut forged).unwrap(), Some(header::sha256(own)));
        assert!(!forged.headers().contains_key("client-cert"));
        let mut mapped = request("[::ffff:10.0.0.9]:1", Some(&header), None);
        assert_eq!(
            mtls.presented(&mut mapped).unwrap(),
            Some(header::sha256(forwarded)),
            "an IPv4-mapped peer"
        );
        let mut twice = request("10.1.1.1:1", Some(&header), None);
        twice
            .headers_mut()
            .append("client-cert", http::HeaderValue::from_str(&header).unwrap());
        assert!(mtls.presented(&mut twice).is_err(), "repeated: 400");
    }
}
