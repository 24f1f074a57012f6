//! Server-provided DPoP nonces (RFC 9449 §8, §9), stateless and rotating.
//!
//! Time is cut into periods of `rotation` whole seconds; the nonce of period
//! `n = ⌊unix seconds / rotation⌋` is the first 16 bytes of
//! HMAC-SHA-256(secret, `"dpop-nonce\0"` ‖ rotation ‖ n), both numbers as
//! 8 big-endian bytes, in base64url without padding (22 characters). Nothing
//! is stored: a proof's nonce is recomputed, not looked up, and replicas with
//! the same secret and rotation hand out and accept the same nonces.
//!
//! The current period's nonce and the previous one's are accepted, so a
//! nonce handed out just before a rotation still works: each lives between
//! one and two periods. Nonces are public (anyone may ask for one), so
//! comparing them in constant time would protect nothing; the secret is what
//! keeps a future period's nonce unknown, so that a proof cannot be made
//! ahead of time.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderValue;
use ring::hmac;

/// The shortest secret [`Nonces::shared`] takes: the output size of SHA-256.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// The longest rotation: a nonce older than two days is no nonce.
const MAX_ROTATION_SECS: u64 = 24 * 3600;

/// How many bytes of the HMAC a nonce keeps.
const NONCE_BYTES: usize = 16;

/// Domain separation: the secret may be shared with other uses.
const LABEL: &[u8] = b"dpop-nonce\0";

/// The nonce generator of one [`DpopConfig`](super::DpopConfig); its clones
/// share the secret.
#[derive(Clone)]
pub(crate) struct Nonces {
    key: hmac::Key,
    /// Whole seconds, at least 1.
    rotation: u64,
}

/// How a proof's nonce fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The current period's nonce.
    Current,
    /// The previous period's: accepted, and the client should be handed the
    /// current one.
    Previous,
    /// None, or not one of the two.
    Refused,
}

impl Nonces {
    /// Nonces under a secret drawn from the operating system's random
    /// source: this process alone hands them out.
    pub(crate) fn random(rotation: Duration) -> Self {
        let mut secret = [0u8; MIN_SECRET_BYTES];
        if getrandom::getrandom(&mut secret).is_err() {
            // No OS source (exotic targets): the standard library's hasher
            // seeds, as for the cache key secret.
            tracing::warn!(
                "no OS random source; the DPoP nonce secret comes from the standard library's hasher seed"
            );
            for (i, chunk) in secret.chunks_mut(8).enumerate() {
                let draw = std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    ("tower-introspection dpop-nonce", i),
                );
                chunk.copy_from_slice(&draw.to_le_bytes());
            }
        }
        Self::with_secret(rotation, &secret)
    }

    /// Nonces under `secret`, shared by every replica given the same secret
    /// and rotation; `None` for a secret shorter than [`MIN_SECRET_BYTES`].
    pub(crate) fn shared(rotation: Duration, secret: &[u8]) -> Option<Self> {
        (secret.len() >= MIN_SECRET_BYTES).then(|| Self::with_secret(rotation, secret))
    }

    fn with_secret(rotation: Duration, secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            rotation: rotation.as_secs().clamp(1, MAX_ROTATION_SECS),
        }
    }

    /// The rotation period in use (whole seconds, clamped).
    pub(crate) fn rotation(&self) -> Duration {
        Duration::from_secs(self.rotation)
    }

    /// The period `now` (Unix seconds) falls in; before 1970, the first.
    fn period(&self, now: i64) -> u64 {
        u64::try_from(now).unwrap_or(0) / self.rotation
    }

    /// The nonce of `period`.
    fn nonce(&self, period: u64) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(LABEL);
        context.update(&self.rotation.to_be_bytes());
        context.update(&period.to_be_bytes());
        let tag = context.sign();
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..NONCE_BYTES])
    }

    /// The nonce to hand out at `now`, as a `DPoP-Nonce` value.
    pub(crate) fn current(&self, now: i64) -> Option<HeaderValue> {
        HeaderValue::try_from(self.nonce(self.period(now))).ok()
    }

    /// Whether `nonce`, a proof's `nonce` claim, is good at `now`.
    pub(crate) fn admit(&self, nonce: Option<&str>, now: i64) -> Admission {
        let Some(nonce) = nonce else {
            return Admission::Refused;
        };
        let period = self.period(now);
        if nonce == self.nonce(period) {
            Admission::Current
        } else if period > 0 && nonce == self.nonce(period - 1) {
            Admission::Previous
        } else {
            Admission::Refused
        }
    }
}

impl fmt::Debug for Nonces {
    /// The rotation only: the secret is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("rotation", &self.rotation())
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SECRET: &[u8; 32] = b"a shared nonce secret, 32 bytes!";

    fn shared(rotation: u64) -> Nonces {
        Nonces::shared(Duration::from_secs(rotation), SECRET).unwrap()
    }

    /// The derivation is the contract between replicas: pinned here.
    #[test]
    fn nonce_is_the_truncated_hmac_of_label_rotation_and_period() {
        let nonces = shared(60);
        let mut input = b"dpop-nonce\0".to_vec();
        input.extend_from_slice(&60u64.to_be_bytes());
        input.extend_from_slice(&2u64.to_be_bytes());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), &input);
        let expected = URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]);
        assert_eq!(expected.len(), 22);
        assert_eq!(nonces.current(120).unwrap(), expected.as_str());
        assert_eq!(nonces.current(179).unwrap(), expected.as_str());
        assert_ne!(nonces.current(180).unwrap(), expected.as_str());
    }

    #[test]
    fn current_and_previous_period_are_accepted_older_and_others_not() {
        let nonces = shared(10);
        let at_100 = nonces.current(100).unwrap();
        let n = at_100.to_str().unwrap();
        assert_eq!(nonces.admit(Some(n), 100), Admission::Current);
        assert_eq!(nonces.admit(Some(n), 109), Admission::Current);
        assert_eq!(nonces.admit(Some(n), 110), Admission::Previous);
        assert_eq!(nonces.admit(Some(n), 119), Admission::Previous);
        assert_eq!(nonces.admit(Some(n), 120), Admission::Refused);
        // A nonce of the future is not accepted either.
        assert_eq!(nonces.admit(Some(n), 99), Admission::Refused);
        assert_eq!(nonces.admit(None, 100), Admission::Refused);
        assert_eq!(nonces.admit(Some(""), 100), Admission::Refused);
        assert_eq!(nonces.admit(Some(&n[..21]), 100), Admission::Refused);
    }

    /// A clock in the first period (before 1970 plus one rotation, or
    /// stepped back that far) has no previous period: refused, no panic.
    #[test]
    fn the_first_period_has_no_previous_one() {
        let nonces = shared(10);
        let first = nonces.current(5).unwrap();
        assert_eq!(nonces.admit(Some(first.to_str().unwrap()), 0), Admission::Current);
        assert_eq!(nonces.admit(Some("an-unknown-nonce"), 0), Admission::Refused);
        assert_eq!(nonces.admit(Some("an-unknown-nonce"), -5), Admission::Refused);
    }

    #[test]
    fn secret_and_rotation_both_decide_the_nonce() {
        let other = Nonces::shared(Duration::from_secs(10), b"another nonce secret of 32 bytes").unwrap();
        assert_ne!(shared(10).current(100), other.current(100));
        // Period 1 under a rotation of 10 and of 100 alike: still different.
        assert_ne!(shared(10).current(10), shared(100).current(100));
        // Two random generators do not agree.
        let (a, b) = (
            Nonces::random(Duration::from_secs(10)),
            Nonces::random(Duration::from_secs(10)),
        );
        assert_ne!(a.current(100), b.current(100));
        // Clones share the secret.
        assert_eq!(a.clone().current(100), a.current(100));
    }

    #[test]
    fn settings_are_clamped_never_panic() {
        assert_eq!(Nonces::random(Duration::ZERO).rotation(), Duration::from_secs(1));
        assert_eq!(
            Nonces::random(Duration::from_millis(1500)).rotation(),
            Duration::from_secs(1)
        );
        let longest = Nonces::random(Duration::MAX);
        assert_eq!(longest.rotation(), Duration::from_secs(24 * 3600));
        // Before 1970 and at the end of time: a nonce all the same.
        assert!(longest.current(i64::MIN).is_some());
        assert!(longest.current(i64::MAX).is_some());
        let first = shared(1);
        let n = first.current(-5).unwrap();
        assert_eq!(first.admit(n.to_str().ok(), 0), Admission::Current);
        assert!(Nonces::shared(Duration::from_secs(1), &SECRET[..31]).is_none());
    }

    #[test]
    fn debug_hides_the_secret() {
        let debug = format!("{:?}", shared(30));
        assert_eq!(debug, "Nonces { rotation: 30s, secret: \"[redacted]\" }");
    }
}
