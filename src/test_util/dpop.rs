//! [`DpopKey`]: a client's DPoP key (ES256), to build the proofs a test
//! sends (RFC 9449 §4.2) and to mint tokens bound to it.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::random::random_token;
use super::state::unix_now;

/// A fresh P-256 key pair that signs DPoP proofs.
///
/// ```
/// use tower_introspection::test_util::DpopKey;
///
/// let key = DpopKey::generate();
/// let proof = key.proof("GET", "https://api.example/items", "the-access-token");
/// assert_eq!(proof.split('.').count(), 3);
/// assert_eq!(key.jkt().len(), 43);
/// ```
pub struct DpopKey {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl DpopKey {
    /// Generates a new key.
    ///
    /// # Panics
    ///
    /// When the system's random source fails (test code only).
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("random source");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a key ring just generated");
        // Uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self { pair, jwk }
    }

    /// The public key as a JWK, as a proof's header carries it.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 thumbprint, for the token's `cnf.jkt`.
    pub fn jkt(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            self.jwk["x"], self.jwk["y"]
        );
        URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()))
    }

    /// `{"cnf": {"jkt": …}}`'s value, for `TokenSpec::claim("cnf", …)`.
    pub fn cnf(&self) -> Value {
        json!({ "jkt": self.jkt() })
    }

    /// A fresh proof for `method` and `url` with `ath` for `access_token`.
    pub fn proof(&self, method: &str, url: &str, access_token: &str) -> String {
        self.sign(&Self::header(self), &Self::claims(method, url, access_token))
    }

    /// A fresh proof like [`proof`](Self::proof), carrying the server's
    /// `nonce` (RFC 9449 §8: the value of a `DPoP-Nonce` header).
    pub fn proof_with_nonce(&self, method: &str, url: &str, access_token: &str, nonce: &str) -> String {
        let mut claims = Self::claims(method, url, access_token);
        claims["nonce"] = Value::String(nonce.to_owned());
        self.sign(&self.header(), &claims)
    }

    /// The header of a proof by this key: `typ`, `alg` `ES256`, `jwk`.
    pub fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk })
    }

    /// The claims of a fresh proof: `jti` (random), `htm`, `htu`, `iat`
    /// (now) and `ath`; change them before [`sign`](Self::sign) to build a
    /// wrong proof.
    pub fn claims(method: &str, url: &str, access_token: &str) -> Value {
        json!({
            "jti": random_token(),
            "htm": method,
            "htu": url,
            "iat": unix_now(),
            "ath": URL_SAFE_NO_PAD.encode(digest(&SHA256, access_token.as_bytes())),
        })
    }

    /// Signs `header` and `claims` as they are, with ES256.
    ///
    /// # Panics
    ///
    /// When the system's random source fails (test code only).
    #[allow(clippy::expect_used)]
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("random source");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.jkt())
            .finish_non_exhaustive()
    }
}
