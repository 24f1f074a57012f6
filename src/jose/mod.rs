//! JOSE, as every part of the crate that reads or writes signed JSON uses
//! it: compact JWS parsing ([`Compact`]), public keys and algorithms
//! ([`Algorithm`], JWKs), and JWK Sets fetched and refreshed from a URL
//! ([`Jwks`]). The JWT verifier, signed introspection answers,
//! `private_key_jwt` and DPoP proofs all build on it.

mod compact;
mod jwks;
mod keys;

pub(crate) use self::compact::{peek_issuer, Compact};
pub(crate) use self::jwks::{Jwks, Refresh};
pub use self::jwks::{DEFAULT_JWKS_MAX_AGE, DEFAULT_JWKS_REFRESH_INTERVAL};
pub use self::keys::{Algorithm, UnsupportedAlgorithm};
pub(crate) use self::keys::{Jwk, PublicKey};
