//! The JWS algorithms the server signs with, and the key family each uses.

/// A JWS algorithm (RFC 7518 §3, RFC 8037) the
/// [`TestAuthServer`](super::TestAuthServer) signs a JWT with
/// ([`JwtSpec::alg`](super::JwtSpec::alg)).
///
/// The RSA algorithms share the server's current RSA key; `Es256`, `Es384`
/// and `EdDsa` each have a key of their own. `Hs256` signs with the bytes it
/// carries (for algorithm-confusion tests, such as HMAC keyed with
/// [`rsa_public_key_der`](super::TestAuthServer::rsa_public_key_der) or
/// [`rsa_public_key_pem`](super::TestAuthServer::rsa_public_key_pem)), and
/// `None` makes an unsecured JWT (`"alg":"none"`, empty signature, RFC 7519 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256 (MGF1 with SHA-256, 32-byte salt).
    Ps256,
    /// RSASSA-PSS with SHA-384 (MGF1 with SHA-384, 48-byte salt).
    Ps384,
    /// RSASSA-PSS with SHA-512 (MGF1 with SHA-512, 64-byte salt).
    Ps512,
    /// ECDSA on P-256 with SHA-256, signature `r || s` (64 bytes).
    Es256,
    /// ECDSA on P-384 with SHA-384, signature `r || s` (96 bytes).
    Es384,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDsa,
    /// HMAC-SHA-256 keyed with these bytes.
    Hs256(Vec<u8>),
    /// No signature: `"alg":"none"` and an empty third part.
    None,
}

impl JwtAlg {
    /// The `alg` header value: `"RS256"`, `"PS384"`, `"ES256"`, `"EdDSA"`,
    /// `"HS256"`, `"none"`…
    pub fn name(&self) -> &'static str {
        match self {
            JwtAlg::Rs256 => "RS256",
            JwtAlg::Rs384 => "RS384",
            JwtAlg::Rs512 => "RS512",
            JwtAlg::Ps256 => "PS256",
            JwtAlg::Ps384 => "PS384",
            JwtAlg::Ps512 => "PS512",
            JwtAlg::Es256 => "ES256",
            JwtAlg::Es384 => "ES384",
            JwtAlg::EdDsa => "EdDSA",
            JwtAlg::Hs256(_) => "HS256",
            JwtAlg::None => "none",
        }
    }

    /// The family of server keys this algorithm signs with (`None` for
    /// `Hs256` and `None`, which use no server key).
    pub(crate) fn family(&self) -> Option<Family> {
        match self {
            JwtAlg::Rs256 | JwtAlg::Rs384 | JwtAlg::Rs512 | JwtAlg::Ps256 | JwtAlg::Ps384 | JwtAlg::Ps512 => {
                Some(Family::Rsa)
            }
            JwtAlg::Es256 => Some(Family::P256),
            JwtAlg::Es384 => Some(Family::P384),
            JwtAlg::EdDsa => Some(Family::Ed25519),
            JwtAlg::Hs256(_) | JwtAlg::None => None,
        }
    }
}

/// A kind of server key: one current key of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}
