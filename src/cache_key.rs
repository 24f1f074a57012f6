//! The in-process cache key of a token.
//!
//! - Keys are `SipHash-1-3-128_k(domain ‖ len ‖ endpoint ‖ len ‖ client_id ‖ token)`
//!   under a secret key `k` drawn once per process from the operating
//!   system's random source. The length prefixes make the encoding
//!   injective (the token is the last field, so it needs none), and the
//!   endpoint and `client_id` keep answers given to one resource server from
//!   being used by another (RFC 7662 §2.2, I14). The hasher state after the
//!   prefix is kept, so a key costs one pass over the token. Raw tokens are
//!   never stored.
//! - Why a keyed hash suffices: the only harmful collision is a token the
//!   attacker makes that lands on the key of a token they do not know. SipHash
//!   is a pseudorandom function of its key; without `k` (which never leaves
//!   the process, and is never logged: log lines carry 4 bytes of a key, an
//!   output), each guess hits one of `n` cached keys with probability
//!   `n / 2^128`, whatever the attacker knows of the algorithm. It is 3×
//!   cheaper than SHA-256 on a 800-byte JWT, which keeps a cached JWT close to
//!   a cached opaque token.

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::OnceLock;

use siphasher::sip128::{Hasher128 as _, SipHasher13};

/// The cache key: a 128-bit keyed hash of the token (see the module docs).
pub(crate) type Key = [u8; 16];

/// The secret key of every cache key in this process: 128 bits from the
/// operating system's random source, drawn once.
fn process_key() -> (u64, u64) {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut bytes = [0u8; 16];
        if getrandom::getrandom(&mut bytes).is_err() {
            // No OS source (exotic targets): the standard library's hasher
            // seed, which std draws from whatever source it has.
            tracing::warn!(
                "no OS random source; the cache key secret comes from the standard library's hasher seed"
            );
            let draw = |label: &str| std::collections::hash_map::RandomState::new().hash_one(label);
            bytes[..8].copy_from_slice(&draw("tower-introspection k0").to_le_bytes());
            bytes[8..].copy_from_slice(&draw("tower-introspection k1").to_le_bytes());
        }
        let (k0, k1) = bytes.split_at(8);
        let word = |half: &[u8]| half.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        (word(k0), word(k1))
    })
}

const DOMAIN: &[u8] = b"tower-introspection/v1\0";

/// How the keys of one verifier are made: the hasher state after the
/// domain and the two scope strings (for introspection: the endpoint and
/// the `client_id`), under the process's secret key or the fleet's.
#[derive(Clone)]
pub(crate) struct KeyScheme {
    prefix: SipHasher13,
}

impl KeyScheme {
    /// Keys under this process's secret key.
    pub(crate) fn new(scope: &str, client_id: &str) -> Self {
        Self::under(process_key(), scope, client_id)
    }

    /// Keys under the SipHash key `k`: what a replica whose fleet secret
    /// derives `k` uses.
    pub(crate) fn under(k: (u64, u64), scope: &str, client_id: &str) -> Self {
        let mut prefix = SipHasher13::new_with_keys(k.0, k.1);
        prefix.write(DOMAIN);
        for part in [scope, client_id] {
            prefix.write(&(part.len() as u64).to_be_bytes());
            prefix.write(part.as_bytes());
        }
        Self { prefix }
    }

    /// The key of `token`: one pass over its bytes.
    #[inline]
    pub(crate) fn key(&self, token: &str) -> Key {
        let mut hasher = self.prefix;
        hasher.write(token.as_bytes());
        hasher.finish128().as_bytes()
    }
}

impl KeyScheme {
    /// The key of who a revocation names: a claim (`kind`) with `value`,
    /// at `issuer`. Apart from every token's key: it starts with a byte no
    /// UTF-8 text starts with.
    pub(crate) fn who(&self, kind: u8, issuer: &str, value: &str) -> Key {
        let mut hasher = self.prefix;
        hasher.write(&[0xff, kind]);
        for part in [issuer, value] {
            hasher.write(&(part.len() as u64).to_be_bytes());
            hasher.write(part.as_bytes());
        }
        hasher.finish128().as_bytes()
    }
}

/// The first bytes of a key in hex: enough to correlate log lines, useless
/// for recovering the token.
pub(crate) fn key_prefix(key: &Key) -> String {
    key[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scope: &str, client_id: &str, token: &str) -> Key {
        KeyScheme::new(scope, client_id).key(token)
    }

    #[test]
    fn keys_separate_endpoint_client_and_token() {
        let a = |token: &str| key("https://as/introspect", "rs", token);
        assert_eq!(a("t"), a("t"));
        assert_ne!(a("t"), a("u"));
        assert_ne!(a("t"), key("https://as/introspect", "rs2", "t"));
        assert_ne!(a("t"), key("https://as2/introspect", "rs", "t"));
        // Shifting bytes between the parts must not collide.
        assert_ne!(key("ab", "c", "t"), key("a", "bc", "t"));
        assert_ne!(key("a", "bc", "t"), key("a", "b", "ct"));
        assert_ne!(key("a", "b", "\0t"), key("a", "b", "t"));
    }

    #[test]
    fn keys_are_keyed_by_a_process_secret() {
        // Not SipHash under the zero key: the key is secret and random.
        let unkeyed = {
            let mut hasher = SipHasher13::new_with_keys(0, 0);
            hasher.write(DOMAIN);
            for part in ["e", "c"] {
                hasher.write(&(part.len() as u64).to_be_bytes());
                hasher.write(part.as_bytes());
            }
            hasher.write(b"t");
            hasher.finish128().as_bytes()
        };
        assert_ne!(key("e", "c", "t"), unkeyed);
        assert_eq!(KeyScheme::under((0, 0), "e", "c").key("t"), unkeyed);
        assert_ne!(process_key(), (0, 0));
        assert_eq!(process_key(), process_key(), "one key per process");
    }

    #[test]
    fn key_prefix_is_four_bytes_in_hex() {
        let mut key = [0xff; 16];
        key[..4].copy_from_slice(&[0x01, 0xab, 0x00, 0x7f]);
        assert_eq!(key_prefix(&key), "01ab007f");
    }
}
