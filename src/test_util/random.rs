//! Token randomness without a `rand` dependency: SHA-256 over a process-wide
//! counter, the clock and the keys of a fresh `std` `RandomState`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 32 fresh random-looking bytes.
fn random_bytes() -> [u8; 32] {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.write_u128(nanos);
    let keyed = hasher.finish();
    let mut sha = Sha256::new();
    sha.update(n.to_le_bytes());
    sha.update(nanos.to_le_bytes());
    sha.update(keyed.to_le_bytes());
    sha.finalize().into()
}

/// A fresh token: 32 random bytes, base64url without padding (43 characters).
pub(crate) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// A shorter random identifier (for `jti`): 16 bytes, base64url, 22 characters.
pub(crate) fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(&random_bytes()[..16])
}

/// `n` random bytes as lowercase hex (`2n` characters), as PHP's
/// `bin2hex(random_bytes(n))`.
pub(crate) fn random_hex(n: usize) -> String {
    let mut hex = String::with_capacity(2 * n);
    while hex.len() < 2 * n {
        for byte in random_bytes() {
            hex.push_str(&format!("{byte:02x}"));
        }
    }
    hex.truncate(2 * n);
    hex
}
