//! The server's signing keys: one current key per [`Family`], their JWK Set
//! (RFC 7517) and the RSA key's SPKI encodings.
//!
//! `ring` cannot generate RSA keys, so the RSA keys are three committed
//! RSA-2048 test keys (`keys/`, public test material); the EC P-256, P-384
//! and Ed25519 keys are generated with the system RNG for each key set.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::error::Unspecified;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384,
    RSA_PKCS1_SHA512, RSA_PSS_SHA256, RSA_PSS_SHA384, RSA_PSS_SHA512,
};
use ring::{hmac, signature};
use serde_json::{json, Value};

use super::alg::{Family, JwtAlg};

/// The committed test keys, PKCS#8 PEM.
const RSA_PEMS: [&str; 3] = [
    include_str!("keys/test-only-rsa-1.pkcs8.pem"),
    include_str!("keys/test-only-rsa-2.pkcs8.pem"),
    include_str!("keys/test-only-rsa-3.pkcs8.pem"),
];

/// The RSA keys, parsed once per process (ring checks each key's
/// consistency, which takes milliseconds).
static RSA_KEYS: OnceLock<Result<Vec<Arc<RsaKeyPair>>, String>> = OnceLock::new();

/// Which RSA key the next server starts with, so that servers started in one
/// process sign with different keys (as long as there are at most three).
static NEXT_RSA: AtomicUsize = AtomicUsize::new(0);

fn rsa_keys() -> io::Result<&'static [Arc<RsaKeyPair>]> {
    let parsed = RSA_KEYS.get_or_init(|| {
        RSA_PEMS
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                let der = pem_der(pem, "PRIVATE KEY")?;
                RsaKeyPair::from_pkcs8(&der)
                    .map(Arc::new)
                    .map_err(|e| format!("test RSA key {}: {e}", i + 1))
            })
            .collect()
    });
    match parsed {
        Ok(keys) => Ok(keys),
        Err(e) => Err(io::Error::other(e.clone())),
    }
}

/// One of the committed RSA test keys as PKCS #8 PEM.
pub(crate) fn rsa_pem(index: usize) -> Option<&'static str> {
    RSA_PEMS.get(index).copied()
}

/// The DER bytes of a PEM document with this label.
pub(crate) fn pem_der(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("not a PEM `{label}`"))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(b64).map_err(|e| format!("PEM `{label}`: {e}"))
}

/// The current keys: immutable, replaced as a whole by a rotation.
pub(crate) struct KeySet {
    generation: u64,
    rsa_index: usize,
    rsa: Arc<RsaKeyPair>,
    rsa_kid: String,
    p256: EcdsaKeyPair,
    p256_kid: String,
    p384: EcdsaKeyPair,
    p384_kid: String,
    ed25519: Ed25519KeyPair,
    ed25519_kid: String,
    jwks: Value,
    rng: SystemRandom,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("rsa_kid", &self.rsa_kid)
            .field("p256_kid", &self.p256_kid)
            .field("p384_kid", &self.p384_kid)
            .field("ed25519_kid", &self.ed25519_kid)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// The first keys of a server: generation 1 (kids `rsa-1`, `p256-1`,
    /// `p384-1`, `ed25519-1`).
    pub(crate) fn first() -> io::Result<Self> {
        let index = NEXT_RSA.fetch_add(1, Ordering::Relaxed) % RSA_PEMS.len();
        Self::generate(1, index)
    }

    /// The next generation: new kids, the next committed RSA key (they
    /// cycle) and fresh EC and Ed25519 keys.
    pub(crate) fn rotated(&self) -> io::Result<Self> {
        Self::generate(self.generation + 1, (self.rsa_index + 1) % RSA_PEMS.len())
    }

    pub(crate) fn generate(generation: u64, rsa_index: usize) -> io::Result<Self> {
        let rng = SystemRandom::new();
        let rsa = rsa_keys()?
            .get(rsa_index)
            .cloned()
            .ok_or_else(|| io::Error::other("no such test RSA key"))?;
        let p256 = ecdsa(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        let p384 = ecdsa(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)?;
        let ed25519 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| io::Error::other("cannot generate an Ed25519 key"))
            .and_then(|doc| {
                Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| io::Error::other(e.to_string()))
            })?;
        let mut keys = Self {
            generation,
            rsa_index,
            rsa,
            rsa_kid: format!("rsa-{generation}"),
            p256,
            p256_kid: format!("p256-{generation}"),
            p384,
            p384_kid: format!("p384-{generation}"),
            ed25519,
            ed25519_kid: format!("ed25519-{generation}"),
            jwks: Value::Null,
            rng,
        };
        keys.jwks = keys.render_jwks();
        Ok(keys)
    }

    /// The kid of the current key of this algorithm's family.
    pub(crate) fn kid(&self, alg: &JwtAlg) -> Option<&str> {
        let kid = match alg.family()? {
            Family::Rsa => &self.rsa_kid,
            Family::P256 => &self.p256_kid,
            Family::P384 => &self.p384_kid,
            Family::Ed25519 => &self.ed25519_kid,
        };
        Some(kid)
    }

    /// The kid of the current RSA key.
    pub(crate) fn rsa_kid(&self) -> &str {
        &self.rsa_kid
    }

    /// The JWS signature of `msg` (RFC 7515 §5.1) with `alg` and the
    /// current key of its family; empty for `JwtAlg::None`.
    pub(crate) fn sign(&self, alg: &JwtAlg, msg: &[u8]) -> Result<Vec<u8>, Unspecified> {
        let rsa_padding: &'static dyn signature::RsaEncoding = match alg {
            JwtAlg::Rs256 => &RSA_PKCS1_SHA256,
            JwtAlg::Rs384 => &RSA_PKCS1_SHA384,
            JwtAlg::Rs512 => &RSA_PKCS1_SHA512,
            JwtAlg::Ps256 => &RSA_PSS_SHA256,
            JwtAlg::Ps384 => &RSA_PSS_SHA384,
            JwtAlg::Ps512 => &RSA_PSS_SHA512,
            JwtAlg::Es256 => return Ok(self.p256.sign(&self.rng, msg)?.as_ref().to_vec()),
            JwtAlg::Es384 => return Ok(self.p384.sign(&self.rng, msg)?.as_ref().to_vec()),
            JwtAlg::EdDsa => return Ok(self.ed25519.sign(msg).as_ref().to_vec()),
            JwtAlg::Hs256(secret) => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
                return Ok(hmac::sign(&key, msg).as_ref().to_vec());
            }
            JwtAlg::None => return Ok(Vec::new()),
        };
        let mut sig = vec![0; self.rsa.public().modulus_len()];
        self.rsa.sign(rsa_padding, &self.rng, msg, &mut sig)?;
        Ok(sig)
    }

    /// The JWK Set: every current public key.
    pub(crate) fn jwks(&self) -> &Value {
        &self.jwks
    }

    fn render_jwks(&self) -> Value {
        let rsa: RsaPublicKeyComponents<Vec<u8>> = self.rsa.public().into();
        let ec = |kid: &str, alg: &str, crv: &str, pair: &EcdsaKeyPair| {
            // Uncompressed SEC 1 point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            let (x, y) = point
                .get(1..)
                .unwrap_or_default()
                .split_at(point.len().saturating_sub(1) / 2);
            json!({
                "kty": "EC", "kid": kid, "use": "sig", "alg": alg, "crv": crv,
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
            })
        };
        json!({
            "keys": [
                {
                    "kty": "RSA", "kid": self.rsa_kid, "use": "sig", "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(&rsa.n), "e": URL_SAFE_NO_PAD.encode(&rsa.e),
                },
                ec(&self.p256_kid, "ES256", "P-256", &self.p256),
                ec(&self.p384_kid, "ES384", "P-384", &self.p384),
                {
                    "kty": "OKP", "kid": self.ed25519_kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(self.ed25519.public_key().as_ref()),
                },
            ]
        })
    }

    /// The current RSA public key as an X.509 `SubjectPublicKeyInfo` (DER).
    pub(crate) fn rsa_spki_der(&self) -> Vec<u8> {
        // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }.
        const RSA_ALGORITHM: &[u8] = &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ];
        // ring's public key is the PKCS#1 `RSAPublicKey`; the BIT STRING
        // wrapping it starts with 0 unused bits.
        let pkcs1 = self.rsa.public().as_ref();
        let mut bits = Vec::with_capacity(pkcs1.len() + 1);
        bits.push(0);
        bits.extend_from_slice(pkcs1);
        let mut content = RSA_ALGORITHM.to_vec();
        content.extend(der(0x03, &bits));
        der(0x30, &content)
    }

    /// [`rsa_spki_der`](Self::rsa_spki_der) as PEM (`BEGIN PUBLIC KEY`, 64
    /// characters a line, as `openssl pkey -pubout` writes it).
    pub(crate) fn rsa_spki_pem(&self) -> String {
        let b64 = STANDARD.encode(self.rsa_spki_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }
}

fn ecdsa(alg: &'static signature::EcdsaSigningAlgorithm, rng: &SystemRandom) -> io::Result<EcdsaKeyPair> {
    let doc =
        EcdsaKeyPair::generate_pkcs8(alg, rng).map_err(|_| io::Error::other("cannot generate an EC key"))?;
    EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), rng).map_err(|e| io::Error::other(e.to_string()))
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    match u8::try_from(len) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let bytes = len.to_be_bytes();
            let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
            let long = &bytes[first..];
            out.push(0x80 | long.len() as u8);
            out.extend_from_slice(long);
        }
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SPKI_PEMS: [&str; 3] = [
        include_str!("keys/test-only-rsa-1.spki.pem"),
        include_str!("keys/test-only-rsa-2.spki.pem"),
        include_str!("keys/test-only-rsa-3.spki.pem"),
    ];

    #[test]
    fn rsa_public_key_renders_as_openssl_does() {
        for (index, expected) in SPKI_PEMS.iter().enumerate() {
            let keys = KeySet::generate(1, index).unwrap();
            assert_eq!(keys.rsa_spki_pem(), *expected, "key {}", index + 1);
            assert_eq!(keys.rsa_spki_der(), pem_der(expected, "PUBLIC KEY").unwrap());
        }
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        assert_eq!(der(0x04, &[0; 0x7f])[..2], [0x04, 0x7f]);
        assert_eq!(der(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(der(0x04, &[0; 0x10f])[..4], [0x04, 0x82, 0x01, 0x0f]);
    }

    #[test]
    fn pem_errors_are_reported() {
        assert!(pem_der("nothing", "PUBLIC KEY").is_err());
        assert!(pem_der(
            "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----",
            "PUBLIC KEY"
        )
        .is_err());
    }

    #[test]
    fn rotation_changes_every_kid_and_the_rsa_key() {
        let first = KeySet::generate(1, 0).unwrap();
        let second = first.rotated().unwrap();
        assert_eq!(first.rsa_kid(), "rsa-1");
        assert_eq!(second.rsa_kid(), "rsa-2");
        assert_ne!(first.rsa_spki_der(), second.rsa_spki_der());
        for alg in [JwtAlg::Rs256, JwtAlg::Es256, JwtAlg::Es384, JwtAlg::EdDsa] {
            assert_ne!(first.kid(&alg), second.kid(&alg));
        }
        assert_ne!(first.jwks(), second.jwks());
        assert_eq!(first.kid(&JwtAlg::Hs256(b"k".to_vec())), None);
        assert_eq!(first.kid(&JwtAlg::None), None);
        // Three committed keys, used in turn.
        assert_eq!(
            second.rotated().unwrap().rotated().unwrap().rsa_spki_der(),
            first.rsa_spki_der()
        );
    }
}
