//! `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): the resource
//! server proves who it is with a short-lived JWT signed by its own private
//! key, instead of a shared secret. One fresh assertion per call.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ConfigError;
use crate::fetch::AsFault;
use crate::jose::{Algorithm, Jwk};
use crate::macros::setters;
use crate::validate::unix_now;

/// `client_assertion_type` for a JWT assertion (RFC 7523 §2.2).
pub(crate) const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one call, short enough
/// that a captured one is soon useless.
const ASSERTION_LIFETIME_SECS: i64 = 60;

/// The resource server's private key for `private_key_jwt`: RSA (RS256 or
/// PS256), EC P-256 (ES256) or Ed25519 (EdDSA).
///
/// The key never appears in `Debug` output, logs or errors. Register
/// [`public_jwk`](Self::public_jwk) with the authorization server.
///
/// ```
/// use tower_introspection::{jwt::Algorithm, introspection::ClientKey};
///
/// let jwk = r#"{"kty":"OKP","crv":"Ed25519","kid":"rs-1",
///   "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
///   "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
/// let key = ClientKey::from_jwk(jwk)?;
/// assert_eq!(key.algorithm(), Algorithm::EdDsa);
/// assert!(!format!("{key:?}").contains("nWGxne"));
/// assert!(key.public_jwk().get("d").is_none());
/// # Ok::<(), tower_introspection::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ClientKey {
    alg: Algorithm,
    kid: Option<Box<str>>,
    material: Arc<Material>,
}

enum Material {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A private JWK: the public members, and the private ones RFC 7518 §6
/// adds.
#[derive(Deserialize)]
struct PrivateJwk {
    #[serde(flatten)]
    public: Jwk,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    dp: Option<String>,
    dq: Option<String>,
    qi: Option<String>,
}

fn invalid(reason: &'static str) -> ConfigError {
    ConfigError::InvalidPrivateKey(reason)
}

impl ClientKey {
    /// A key from a PKCS #8 PEM document (`-----BEGIN PRIVATE KEY-----`, as
    /// `openssl genpkey` writes it): RSA (signs RS256), EC P-256 (ES256) or
    /// Ed25519 (EdDSA).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, ConfigError> {
        let der = pkcs8_der(pem)?;
        let rng = SystemRandom::new();
        let (alg, material) = if let Ok(key) = RsaKeyPair::from_pkcs8(&der) {
            (Algorithm::Rs256, Material::Rsa(key))
        } else if let Ok(key) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng) {
            (Algorithm::Es256, Material::P256(key))
        } else if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            (Algorithm::EdDsa, Material::Ed25519(key))
        } else {
            return Err(invalid(
                "not an RSA (2048–8192 bits), EC P-256 or Ed25519 PKCS #8 private key",
            ));
        };
        Ok(Self {
            alg,
            kid: None,
            material: Arc::new(material),
        })
    }

    /// A key from a private JWK (RFC 7518 §6): `RSA` with all CRT members,
    /// `EC` on P-256, or `OKP` Ed25519. Its `kid` and `alg` are used.
    pub fn from_jwk(jwk: &str) -> Result<Self, ConfigError> {
        let jwk: PrivateJwk = serde_json::from_str(jwk).map_err(|_| invalid("not a JWK"))?;
        let member = |value: &Option<String>, missing: &'static str| {
            value
                .as_deref()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .filter(|v| !v.is_empty())
                .ok_or(invalid(missing))
        };
        let rng = SystemRandom::new();
        let (default_alg, material) = match (jwk.public.kty.as_str(), jwk.public.crv.as_deref()) {
            ("RSA", _) => {
                let components = ring::rsa::KeyPairComponents {
                    public_key: RsaPublicKeyComponents {
                        n: member(&jwk.public.n, "an RSA JWK without `n`")?,
                        e: member(&jwk.public.e, "an RSA JWK without `e`")?,
                    },
                    d: member(&jwk.d, "an RSA JWK without the private `d`")?,
                    p: member(&jwk.p, "an RSA JWK without `p`")?,
                    q: member(&jwk.q, "an RSA JWK without `q`")?,
                    dP: member(&jwk.dp, "an RSA JWK without `dp`")?,
                    dQ: member(&jwk.dq, "an RSA JWK without `dq`")?,
                    qInv: member(&jwk.qi, "an RSA JWK without `qi`")?,
                };
                let key = RsaKeyPair::from_components(&components)
                    .map_err(|_| invalid("an inconsistent RSA JWK, or not 2048–8192 bits"))?;
                (Algorithm::Rs256, Material::Rsa(key))
            }
            ("EC", Some("P-256")) => {
                let mut point = vec![4];
                point.extend(member(&jwk.public.x, "an EC JWK without `x`")?);
                point.extend(member(&jwk.public.y, "an EC JWK without `y`")?);
                let d = member(&jwk.d, "an EC JWK without the private `d`")?;
                let key = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &d,
                    &point,
                    &rng,
                )
                .map_err(|_| invalid("an inconsistent EC P-256 JWK"))?;
                (Algorithm::Es256, Material::P256(key))
            }
            ("OKP", Some("Ed25519")) => {
                let d = member(&jwk.d, "an OKP JWK without the private `d`")?;
                let x = member(&jwk.public.x, "an OKP JWK without `x`")?;
                let key = Ed25519KeyPair::from_seed_and_public_key(&d, &x)
                    .map_err(|_| invalid("an inconsistent Ed25519 JWK"))?;
                (Algorithm::EdDsa, Material::Ed25519(key))
            }
            _ => return Err(invalid("not an RSA, EC P-256 or Ed25519 JWK")),
        };
        let key = Self {
            alg: default_alg,
            kid: jwk.public.kid.map(String::into_boxed_str),
            material: Arc::new(material),
        };
        match jwk.public.alg.as_deref() {
            None => Ok(key),
            Some(alg) => {
                let alg = alg
                    .parse::<Algorithm>()
                    .map_err(|_| invalid("a JWK whose `alg` is not supported"))?;
                key.with_algorithm(alg)
            }
        }
    }

    /// Signs with this algorithm instead of the key's default: `PS256` for
    /// an RSA key. Refused if the key cannot make it.
    pub fn with_algorithm(mut self, alg: Algorithm) -> Result<Self, ConfigError> {
        let fits = matches!(
            (&*self.material, alg),
            (Material::Rsa(_), Algorithm::Rs256 | Algorithm::Ps256)
                | (Material::P256(_), Algorithm::Es256)
                | (Material::Ed25519(_), Algorithm::EdDsa)
        );
        if !fits {
            return Err(invalid(
                "the algorithm does not fit the key (RSA: RS256 or PS256; P-256: ES256; Ed25519: EdDSA)",
            ));
        }
        self.alg = alg;
        Ok(self)
    }

    setters! {
        /// The `kid` put in each assertion's header, so that the authorization
        /// server knows which of the client's keys to check.
        pub fn with_kid(kid: impl Into<String>) => kid = Some(kid.into().into_boxed_str());
    }

    /// The algorithm assertions are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public half as a JWK (with `kid`, `alg` and `use`), to register
    /// with the authorization server.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &*self.material {
            Material::Rsa(key) => {
                let public: RsaPublicKeyComponents<Vec<u8>> = key.public().into();
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)})
            }
            Material::P256(key) => {
                let point = key.public_key().as_ref();
                let coords = point.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            }
            Material::Ed25519(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref())})
            }
        };
        jwk["alg"] = json!(self.alg.as_str());
        jwk["use"] = json!("sig");
        if let Some(kid) = &self.kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// One signed assertion for `client_id` and `audience`, as the
    /// introspector sends it. For benchmarks.
    #[doc(hidden)]
    pub fn client_assertion(&self, client_id: &str, audience: &str) -> Option<String> {
        AssertionSigner::new(
            client_id.to_owned(),
            self.clone(),
            AssertionAudience::Issuer(audience.to_owned()),
        )
        .assertion(audience)
        .ok()
    }

    fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        let rng = SystemRandom::new();
        match &*self.material {
            Material::Rsa(key) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::Ps256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(padding, &rng, message, &mut out).ok()?;
                Some(out)
            }
            Material::P256(key) => Some(key.sign(&rng, message).ok()?.as_ref().to_vec()),
            Material::Ed25519(key) => Some(key.sign(message).as_ref().to_vec()),
        }
    }
}

/// The DER body of a `PRIVATE KEY` PEM block.
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, ConfigError> {
    if pem.contains("-----BEGIN RSA PRIVATE KEY-----") || pem.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Err(invalid(
            "a PKCS #1 / SEC 1 key; convert it with `openssl pkcs8 -topk8 -nocrypt`",
        ));
    }
    let body = pem
        .split_once("-----BEGIN PRIVATE KEY-----")
        .and_then(|(_, rest)| rest.split_once("-----END PRIVATE KEY-----"))
        .map(|(body, _)| body)
        .ok_or(invalid("no `BEGIN PRIVATE KEY` PEM block (PKCS #8) found"))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| invalid("a PEM block whose body is not base64"))
}

/// Which `aud` the assertion names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionAudience {
    /// The authorization server's issuer identifier (what RFC 7523 §3 and
    /// OpenID Connect recommend, and what recent drafts require).
    Issuer(String),
    /// The URL of the endpoint called (introspection or token endpoint),
    /// for servers that still expect it.
    Endpoint,
}

/// Everything needed to make an assertion.
#[derive(Debug, Clone)]
pub(crate) struct AssertionSigner {
    pub(crate) client_id: Box<str>,
    key: ClientKey,
    audience: AssertionAudience,
}

impl AssertionSigner {
    pub(crate) fn new(client_id: String, key: ClientKey, audience: AssertionAudience) -> Self {
        Self {
            client_id: client_id.into_boxed_str(),
            key,
            audience,
        }
    }

    /// A fresh signed assertion for a call to `endpoint`: new `jti`, `iat`
    /// now, `exp` a minute later.
    pub(crate) fn assertion(&self, endpoint: &str) -> Result<String, AsFault> {
        let failed = || AsFault::Misconfigured("could not sign the client assertion".into());
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti).map_err(|_| failed())?;
        let now = unix_now();
        let aud = match &self.audience {
            AssertionAudience::Issuer(issuer) => issuer.as_str(),
            AssertionAudience::Endpoint => endpoint,
        };
        let mut header = json!({"alg": self.key.alg.as_str(), "typ": "JWT"});
        if let Some(kid) = &self.key.kid {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": &*self.client_id,
            "sub": &*self.client_id,
            "aud": aud,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "iat": now,
            "exp": now.saturating_add(ASSERTION_LIFETIME_SECS),
        });
        let mut jws = URL_SAFE_NO_PAD.encode(header.to_string());
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.key.sign(jws.as_bytes()).ok_or_else(failed)?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Compact, PublicKey};

    const RSA_PEM: &str = include_str!("../test_util/keys/test-only-rsa-1.pkcs8.pem");

    fn check(key: ClientKey) {
        let public: crate::jose::Jwk = serde_json::from_value(key.public_jwk()).unwrap();
        let public = PublicKey::from_jwk(&public).unwrap().unwrap();
        let signer = AssertionSigner::new("rs".into(), key.clone(), AssertionAudience::Endpoint);
        let url = "https://as.example/introspect";
        let first = signer.assertion(url).unwrap();
        let jws = Compact::parse(&first).unwrap();
        assert_eq!(jws.alg, key.algorithm());
        assert!(public.verify(jws.alg, jws.signing_input, &jws.signature));
        assert_eq!(jws.claims["iss"], "rs");
        assert_eq!(jws.claims["sub"], "rs");
        assert_eq!(jws.claims["aud"], "https://as.example/introspect");
        let second = signer.assertion(url).unwrap();
        let again = Compact::parse(&second).unwrap();
        assert_ne!(jws.claims["jti"], again.claims["jti"], "a fresh jti per call");
    }

    #[test]
    fn signs_with_every_supported_kind() {
        let rsa = ClientKey::from_pkcs8_pem(RSA_PEM).unwrap();
        assert_eq!(rsa.algorithm(), Algorithm::Rs256);
        check(rsa.clone());
        check(rsa.clone().with_algorithm(Algorithm::Ps256).unwrap());
        assert!(rsa.with_algorithm(Algorithm::Es256).is_err());
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(p256.as_ref())
        );
        check(ClientKey::from_pkcs8_pem(&pem).unwrap());
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(ed.as_ref())
        );
        check(ClientKey::from_pkcs8_pem(&pem).unwrap().with_kid("k"));
    }

    #[test]
    fn refuses_unusable_keys_without_showing_them() {
        let err =
            ClientKey::from_pkcs8_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----")
                .unwrap_err();
        assert!(err.to_string().contains("pkcs8"), "{err}");
        assert!(ClientKey::from_pkcs8_pem("nothing").is_err());
        assert!(ClientKey::from_jwk(r#"{"kty":"oct","k":"c2VjcmV0"}"#).is_err());
        let public_only =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert!(ClientKey::from_jwk(public_only).is_err());
        let key = ClientKey::from_pkcs8_pem(RSA_PEM).unwrap();
        assert_eq!(format!("{key:?}"), r#"ClientKey { alg: Rs256, kid: None, .. }"#);
    }
}
