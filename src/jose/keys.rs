//! Verification keys: JWS algorithms, public keys from a JWK (RFC 7517 /
//! RFC 7518 §6) or from PEM / DER (SubjectPublicKeyInfo, or PKCS #1 for
//! RSA), and signature checks through `ring`.
//!
//! Only asymmetric algorithms exist here: there is no way to build an HMAC
//! key, so a token signed with `HS256` and a public key's bytes as the secret
//! (algorithm confusion) has no key to be checked against.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// A JWS signature algorithm this crate verifies (RFC 7518 §3, RFC 8037).
///
/// `none` and the HMAC algorithms are deliberately absent: a resource
/// server verifying with public keys must never accept them.
///
/// ```
/// use tower_introspection::jwt::Algorithm;
///
/// let alg: Algorithm = "ES256".parse().unwrap();
/// assert_eq!(alg, Algorithm::Es256);
/// assert_eq!(alg.as_str(), "ES256");
/// assert!("HS256".parse::<Algorithm>().is_err());
/// assert!("none".parse::<Algorithm>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDsa,
}

impl Algorithm {
    /// Every algorithm, in the order of RFC 7518.
    pub const ALL: [Algorithm; 9] = [
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    fn family(self) -> Family {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => Family::Rsa,
            Self::Es256 => Family::P256,
            Self::Es384 => Family::P384,
            Self::EdDsa => Family::Ed25519,
        }
    }
}

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    /// Parses an `alg` value exactly (JWS algorithm names are case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or(UnsupportedAlgorithm)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `alg` value this crate does not verify (`none`, HMAC, or unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JWS algorithm")]
pub struct UnsupportedAlgorithm;

/// The kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One public key, ready to verify.
#[derive(Clone)]
pub(crate) struct PublicKey {
    kid: Option<Box<str>>,
    /// The algorithm the key declares (JWK `alg`), if any.
    declared: Option<Algorithm>,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC1 point (`04 ‖ x ‖ y`).
    Ec {
        family: Family,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.material {
            Material::Rsa { n, .. } => format!("RSA-{}", n.len() * 8),
            Material::Ec { family, .. } => format!("EC {family:?}"),
            Material::Ed25519(_) => "Ed25519".to_owned(),
        };
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.declared)
            .field("kind", &kind)
            .finish()
    }
}

/// Why a key could not be read.
pub(crate) type KeyError = &'static str;

impl PublicKey {
    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub(crate) fn with_kid(mut self, kid: Option<String>) -> Self {
        self.kid = kid.map(String::into_boxed_str);
        self
    }

    /// The algorithms this key may be used with: the one it declares, or,
    /// without a declaration, the usual one for its kind (RS256 for RSA).
    pub(crate) fn default_algorithm(&self) -> Algorithm {
        self.declared.unwrap_or(match &self.material {
            Material::Rsa { .. } => Algorithm::Rs256,
            Material::Ec {
                family: Family::P384, ..
            } => Algorithm::Es384,
            Material::Ec { .. } => Algorithm::Es256,
            Material::Ed25519(_) => Algorithm::EdDsa,
        })
    }

    /// Whether this key can check a signature made with `alg`: the right
    /// kind of key, and not declared for another algorithm.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        let family = match &self.material {
            Material::Rsa { .. } => Family::Rsa,
            Material::Ec { family, .. } => *family,
            Material::Ed25519(_) => Family::Ed25519,
        };
        family == alg.family() && self.declared.is_none_or(|declared| declared == alg)
    }

    /// Checks `signature` over `message`.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match &self.material {
            Material::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            Material::Ec { point, .. } => {
                let params = match alg {
                    Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(params, point)
                    .verify(message, signature)
                    .is_ok()
            }
            Material::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, signature)
                .is_ok(),
        }
    }

    /// A key from a JWK. `None` for a key this crate does not use (symmetric,
    /// encryption-only, another curve), so that a JWK Set mixing them still
    /// works; an error for a signing key it should use but cannot read.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Option<Self>, KeyError> {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let declared = match jwk.alg.as_deref() {
            None => None,
            Some(alg) => match alg.parse::<Algorithm>() {
                Ok(alg) => Some(alg),
                // Declared for something this crate never verifies.
                Err(_) => return Ok(None),
            },
        };
        let decode = |field: &Option<String>, name: KeyError| {
            field
                .as_deref()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .filter(|v| !v.is_empty())
                .ok_or(name)
        };
        let material = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let n = strip_zeros(decode(&jwk.n, "an RSA JWK without a usable `n`")?);
                check_rsa_size(&n)?;
                Material::Rsa {
                    n,
                    e: strip_zeros(decode(&jwk.e, "an RSA JWK without a usable `e`")?),
                }
            }
            ("EC", Some(curve @ ("P-256" | "P-384"))) => {
                let (family, len) = if curve == "P-256" {
                    (Family::P256, 32)
                } else {
                    (Family::P384, 48)
                };
                let x = decode(&jwk.x, "an EC JWK without a usable `x`")?;
                let y = decode(&jwk.y, "an EC JWK without a usable `y`")?;
                if x.len() != len || y.len() != len {
                    return Err("an EC JWK whose coordinates have the wrong length");
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Material::Ec { family, point }
            }
            ("OKP", Some("Ed25519")) => {
                let x = decode(&jwk.x, "an OKP JWK without a usable `x`")?;
                if x.len() != 32 {
                    return Err("an Ed25519 JWK whose key is not 32 bytes");
                }
                Material::Ed25519(x)
            }
            _ => return Ok(None),
        };
        let key = Self {
            kid: jwk.kid.clone().map(String::into_boxed_str),
            declared,
            material,
        };
        if let Some(alg) = declared {
            if !key.fits(alg) {
                return Err("a JWK whose `alg` does not fit its key type");
            }
        }
        Ok(Some(key))
    }

    /// A key from PEM text: `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, P-256,
    /// P-384 or Ed25519) or `RSA PUBLIC KEY` (PKCS #1).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_body(pem)?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&der),
            "RSA PUBLIC KEY" => Self::from_pkcs1_der(&der),
            _ => Err("a PEM block that is not a public key (expected BEGIN PUBLIC KEY)"),
        }
    }

    /// A key from DER: SubjectPublicKeyInfo, or an RSA PKCS #1 public key.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::from_spki_der(der).or_else(|_| Self::from_pkcs1_der(der))
    }

    fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let mut outer = Der::new(der);
        let mut seq = Der::new(outer.expect(SEQUENCE)?);
        let n = strip_zeros(seq.expect(INTEGER)?.to_vec());
        let e = strip_zeros(seq.expect(INTEGER)?.to_vec());
        if n.is_empty() || e.is_empty() || !outer.is_empty() || !seq.is_empty() {
            return Err("a malformed RSA public key");
        }
        check_rsa_size(&n)?;
        Ok(Self {
            kid: None,
            declared: None,
            material: Material::Rsa { n, e },
        })
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
        let malformed = "a malformed SubjectPublicKeyInfo";
        let mut outer = Der::new(der);
        let mut spki = Der::new(outer.expect(SEQUENCE)?);
        let mut algorithm = Der::new(spki.expect(SEQUENCE)?);
        let oid = algorithm.expect(OID)?;
        let bits = spki.expect(BIT_STRING)?;
        if !outer.is_empty() || !spki.is_empty() {
            return Err(malformed);
        }
        // No unused bits: keys are whole bytes.
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err(malformed),
        };
        let material = match oid {
            RSA => return Self::from_pkcs1_der(key),
            EC => {
                let family = match algorithm.expect(OID)? {
                    P256 => Family::P256,
                    P384 => Family::P384,
                    _ => return Err("an EC key on a curve other than P-256 or P-384"),
                };
                let len = if family == Family::P256 { 65 } else { 97 };
                if key.len() != len || key[0] != 4 {
                    return Err("an EC key that is not an uncompressed point");
                }
                Material::Ec {
                    family,
                    point: key.to_vec(),
                }
            }
            ED25519 if key.len() == 32 => Material::Ed25519(key.to_vec()),
            _ => return Err("a public key of a type other than RSA, EC (P-256, P-384) or Ed25519"),
        };
        Ok(Self {
            kid: None,
            declared: None,
            material,
        })
    }
}

/// A JSON Web Key, with the members this crate reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Jwk {
    pub(crate) kty: String,
    pub(crate) kid: Option<String>,
    #[serde(rename = "use")]
    pub(crate) use_: Option<String>,
    pub(crate) alg: Option<String>,
    pub(crate) crv: Option<String>,
    pub(crate) n: Option<String>,
    pub(crate) e: Option<String>,
    pub(crate) x: Option<String>,
    pub(crate) y: Option<String>,
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Deserialize)]
pub(crate) struct JwkSet {
    pub(crate) keys: Vec<serde_json::Value>,
}

impl JwkSet {
    /// The signing keys this crate can use. A member that is not a JWK at
    /// all is skipped, like a key of another kind; a signing key that cannot
    /// be read is skipped with a warning (one bad key added at a rotation
    /// must not take the others down). No usable key at all is an error.
    pub(crate) fn public_keys(&self) -> Result<Vec<PublicKey>, KeyError> {
        let mut keys = Vec::new();
        for value in &self.keys {
            let Ok(jwk) = Jwk::deserialize(value) else {
                continue;
            };
            match PublicKey::from_jwk(&jwk) {
                Ok(Some(key)) => keys.push(key),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(kid = jwk.kid.as_deref().unwrap_or(""), reason, "skipping a JWK")
                }
            }
        }
        if keys.is_empty() {
            return Err("no signing key this crate can use");
        }
        Ok(keys)
    }
}

/// ring verifies RSA keys of 2048 to 8192 bits: a key outside that range
/// would fail every token, so it is refused when it is read.
fn check_rsa_size(n: &[u8]) -> Result<(), KeyError> {
    if (256..=1024).contains(&n.len()) {
        Ok(())
    } else {
        Err("an RSA key outside 2048–8192 bits")
    }
}

/// Big-endian integers may carry leading zero bytes; ring wants none.
fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The label and decoded body of the first PEM block.
fn pem_body(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let missing = "no PEM block (-----BEGIN …-----) found";
    let start = pem.find("-----BEGIN ").ok_or(missing)?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or(missing)?;
    let label = rest[..label_end].to_owned();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body.find(&end_marker).ok_or("a PEM block without its END line")?;
    let base64: String = body[..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(base64)
        .map_err(|_| "a PEM block whose body is not base64")?;
    Ok((label, der))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// A minimal DER reader: definite lengths, the few tags keys use.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The contents of the next element, which must have tag `tag`.
    fn expect(&mut self, tag: u8) -> Result<&'a [u8], KeyError> {
        let malformed = "malformed DER in a public key";
        let (&found, rest) = self.rest.split_first().ok_or(malformed)?;
        let (&first, mut rest) = rest.split_first().ok_or(malformed)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(malformed);
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if found != tag || rest.len() < len {
            return Err(malformed);
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Ok(contents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_round_trip_and_refuse_none_and_hmac() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str(), "Display is the `alg` value");
        }
        for refused in ["none", "None", "HS256", "HS384", "HS512", "rs256", "ES512", ""] {
            assert!(refused.parse::<Algorithm>().is_err(), "{refused}");
        }
    }

    #[test]
    fn jwk_kinds_and_declarations() {
        let n = URL_SAFE_NO_PAD.encode([0xC5; 256]);
        let rsa: Jwk = serde_json::from_str(&format!(
            r#"{{"kty":"RSA","kid":"r","n":"{n}","e":"AQAB","alg":"PS256"}}"#
        ))
        .unwrap();
        let key = PublicKey::from_jwk(&rsa).unwrap().unwrap();
        // Debug names the key, never its material.
        assert_eq!(
            format!("{key:?}"),
            r#"PublicKey { kid: Some("r"), alg: Some(Ps256), kind: "RSA-2048" }"#
        );
        assert!(key.fits(Algorithm::Ps256));
        assert!(!key.fits(Algorithm::Rs256), "declared for PS256 only");
        assert!(!key.fits(Algorithm::Es256));
        let oct: Jwk = serde_json::from_str(r#"{"kty":"oct","k":"c2VjcmV0"}"#).unwrap();
        assert!(
            PublicKey::from_jwk(&oct).unwrap().is_none(),
            "symmetric keys are never used"
        );
        let enc: Jwk = serde_json::from_str(r#"{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}"#).unwrap();
        assert!(PublicKey::from_jwk(&enc).unwrap().is_none());
        let hs: Jwk = serde_json::from_str(r#"{"kty":"RSA","alg":"HS256","n":"AQAB","e":"AQAB"}"#).unwrap();
        assert!(PublicKey::from_jwk(&hs).unwrap().is_none());
        let mismatched: Jwk =
            serde_json::from_str(&format!(r#"{{"kty":"RSA","alg":"ES256","n":"{n}","e":"AQAB"}}"#)).unwrap();
        assert!(PublicKey::from_jwk(&mismatched).is_err());
        let small: Jwk = serde_json::from_str(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#).unwrap();
        assert!(PublicKey::from_jwk(&small).is_err(), "RSA under 2048 bits");
        let set = JwkSet {
            keys: vec![
                serde_json::to_value(serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB"})).unwrap(),
                serde_json::json!({"kty":"RSA","kid":"good","n": n, "e":"AQAB"}),
            ],
        };
        let usable = set.public_keys().unwrap();
        assert_eq!(usable.len(), 1, "the unreadable key is skipped, the other kept");
        assert!(JwkSet { keys: vec![] }.public_keys().is_err());
        let short: Jwk = serde_json::from_str(r#"{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}"#).unwrap();
        assert!(PublicKey::from_jwk(&short).is_err());
    }

    /// A DER element: `tag`, the length (short or long form), `content`.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            len @ 0..=127 => out.push(len as u8),
            len @ 128..=255 => out.extend([0x81, len as u8]),
            len => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A PKCS #1 RSA public key: `SEQUENCE { n, e }`, plus `inside` after
    /// `e`.
    fn pkcs1(n: &[u8], e: &[u8], inside: &[u8]) -> Vec<u8> {
        let mut fields = der(INTEGER, n);
        fields.extend(der(INTEGER, e));
        fields.extend_from_slice(inside);
        der(SEQUENCE, &fields)
    }

    /// A 2048-bit modulus, as DER writes it (a leading zero: positive).
    fn modulus() -> Vec<u8> {
        let mut n = vec![0x00];
        n.extend([0xC5; 256]);
        n
    }

    #[test]
    fn pkcs1_keys_are_read_from_pem_and_der_and_malformed_ones_refused() {
        let good = pkcs1(&modulus(), &[0x01, 0x00, 0x01], &[]);
        let key = PublicKey::from_der(&good).unwrap();
        assert_eq!(
            format!("{key:?}"),
            r#"PublicKey { kid: None, alg: None, kind: "RSA-2048" }"#
        );
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&good)
        );
        assert!(PublicKey::from_pem(&pem).is_ok(), "the PKCS #1 PEM label");
        // Each defect alone is refused.
        let zero_n = pkcs1(&[0x00], &[0x01, 0x00, 0x01], &[]);
        let zero_e = pkcs1(&modulus(), &[0x00], &[]);
        let extra_field = pkcs1(&modulus(), &[0x01, 0x00, 0x01], &der(INTEGER, &[1]));
        let mut trailing = good.clone();
        trailing.push(0);
        for (what, der) in [
            ("an empty modulus", zero_n),
            ("an empty exponent", zero_e),
            ("a third field", extra_field),
            ("bytes after the key", trailing),
        ] {
            assert!(PublicKey::from_pkcs1_der(&der).is_err(), "{what}");
        }
    }

    #[test]
    fn spki_with_anything_more_is_refused() {
        const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        let spki = |after_bits: &[u8]| {
            let mut algorithm = der(OID, RSA);
            algorithm.extend(der(0x05, &[]));
            let mut bits = vec![0];
            bits.extend(pkcs1(&modulus(), &[0x01, 0x00, 0x01], &[]));
            let mut fields = der(SEQUENCE, &algorithm);
            fields.extend(der(BIT_STRING, &bits));
            fields.extend_from_slice(after_bits);
            der(SEQUENCE, &fields)
        };
        assert!(PublicKey::from_spki_der(&spki(&[])).is_ok());
        assert!(
            PublicKey::from_spki_der(&spki(&der(INTEGER, &[1]))).is_err(),
            "a field after the key"
        );
        let mut trailing = spki(&[]);
        trailing.push(0);
        assert!(
            PublicKey::from_spki_der(&trailing).is_err(),
            "bytes after the SPKI"
        );
    }

    /// An SPKI for the algorithm identifier `oids` and the key bytes `key`.
    fn spki_of(oids: &[&[u8]], key: &[u8]) -> Vec<u8> {
        let algorithm: Vec<u8> = oids.iter().flat_map(|oid| der(OID, oid)).collect();
        let mut bits = vec![0];
        bits.extend_from_slice(key);
        let mut fields = der(SEQUENCE, &algorithm);
        fields.extend(der(BIT_STRING, &bits));
        der(SEQUENCE, &fields)
    }

    #[test]
    fn ec_and_ed25519_spki_keys_are_read_by_curve_and_length() {
        const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
        let point = |len: usize| {
            let mut point = vec![4];
            point.resize(len, 9);
            point
        };
        let kind = |der: &[u8]| PublicKey::from_spki_der(der).map(|key| format!("{key:?}"));
        assert!(kind(&spki_of(&[EC, P256], &point(65)))
            .unwrap()
            .contains(r#"kind: "EC P256""#));
        assert!(kind(&spki_of(&[EC, P384], &point(97)))
            .unwrap()
            .contains(r#"kind: "EC P384""#));
        assert!(
            kind(&spki_of(&[EC, P256], &point(97))).is_err(),
            "a P-384 point for P-256"
        );
        let mut compressed = point(65);
        compressed[0] = 3;
        assert!(
            kind(&spki_of(&[EC, P256], &compressed)).is_err(),
            "not uncompressed"
        );
        assert!(kind(&spki_of(&[ED25519], &[5; 32]))
            .unwrap()
            .contains(r#"kind: "Ed25519""#));
        assert!(kind(&spki_of(&[ED25519], &[5; 31])).is_err(), "not 32 bytes");
    }

    #[test]
    fn ec_jwks_need_both_coordinates_of_the_curves_length() {
        let b64 = |len: usize| URL_SAFE_NO_PAD.encode(vec![7u8; len]);
        let jwk = |x: usize, y: usize| -> Jwk {
            serde_json::from_str(&format!(
                r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
                b64(x),
                b64(y)
            ))
            .unwrap()
        };
        assert!(PublicKey::from_jwk(&jwk(32, 32)).unwrap().is_some());
        assert!(PublicKey::from_jwk(&jwk(31, 32)).is_err(), "x short");
        assert!(PublicKey::from_jwk(&jwk(32, 33)).is_err(), "y long");
    }

    #[test]
    fn der_reader_reads_long_lengths_and_refuses_bad_ones() {
        let read = |bytes: &[u8]| Der::new(bytes).expect(INTEGER).map(<[u8]>::to_vec);
        assert_eq!(read(&[0x02, 0x01, 0x07]), Ok(vec![7]));
        // Long form, one to four length bytes, a zero length included.
        assert_eq!(read(&[0x02, 0x81, 0x00]), Ok(vec![]));
        assert_eq!(read(&[0x02, 0x84, 0, 0, 0, 1, 0x07]), Ok(vec![7]));
        // Five length bytes, or none (BER's indefinite length): refused,
        // even with the content a misreading would find.
        assert!(read(&[0x02, 0x85, 0, 0, 0, 0, 1, 0x07]).is_err());
        let mut indefinite = vec![0x02, 0x80];
        indefinite.extend([0; 128]);
        assert!(read(&indefinite).is_err());
        assert!(read(&[0x02, 0x82, 0x01]).is_err(), "length bytes cut short");
        assert!(read(&[0x04, 0x01, 0x07]).is_err(), "another tag");
    }

    #[test]
    fn der_reader_refuses_truncation() {
        assert!(PublicKey::from_der(&[]).is_err());
        assert!(PublicKey::from_der(&[0x30, 0x05, 0x02]).is_err());
        assert!(PublicKey::from_der(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(PublicKey::from_pem("not pem").is_err());
        assert!(PublicKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
    }
}
