//! Revocations across the fleet (see [`crate::revocation`]): each one is
//! sealed under the fleet secrets, announced in an `r` notice so that every
//! replica carries it out at once, and kept in one sorted set, scored by
//! when it is forgotten, so that a replica that starts or reconnects later
//! reads and carries out every one still in force.
//!
//! A sealed revocation is a shared value (see `seal`) named after the set,
//! whose times are its cut-off and the end of its retention (Unix ms) and
//! whose body is `kind (1 byte) ‖ issuer length (u32 BE) ‖ issuer ‖ value`.
//! Redis sees neither the subject, session or client nor the issuer; a value
//! moved from another verifier's set does not open (the name is associated
//! data), and one past its retention is refused as expired.
//!
//! Each replica computes its own index keys from the revocation it opens,
//! so a notice reaches replicas on either side of a secret rotation (it is
//! sealed under every secret the sender has).

use std::sync::atomic::{AtomicU64, Ordering};

use super::keys::FleetKeys;
use super::seal;
use crate::revocation::{Kind, Revocation};

/// Members read per command when a replica reads the stored cut-offs, so
/// that a full set never makes one reply the command timeout cannot bound.
pub(crate) const PAGE: u64 = 1000;

/// Whether this replica has read the stored cut-offs since it last could
/// have missed a revocation notice (it started, subscribed, lost its
/// subscription, or dropped notices). An epoch, raised by each such event:
/// a read counts only if no event came while it ran. The subscription
/// raises it too, so a revocation published between a read and the
/// subscription is never lost.
#[derive(Debug)]
pub(crate) struct ReadState {
    epoch: AtomicU64,
    read_epoch: AtomicU64,
}

impl Default for ReadState {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(1),
            read_epoch: AtomicU64::new(0),
        }
    }
}

impl ReadState {
    /// Whether the last read is still current.
    pub(crate) fn is_current(&self) -> bool {
        // Both only grow and `read_epoch` never passes `epoch`: equal now
        // means no event since the read began.
        let read = self.read_epoch.load(Ordering::Acquire);
        read == self.epoch.load(Ordering::Acquire)
    }

    /// Notices may have been missed: the next load reads again.
    pub(crate) fn unread(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The subscription is up (notices flow from now on); reads made
    /// before it may have missed one.
    pub(crate) fn subscribed(&self) {
        self.unread();
    }

    /// A read begins: the epoch it counts for.
    pub(crate) fn begin(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The read that began at `epoch` is done.
    pub(crate) fn done(&self, epoch: u64) {
        self.read_epoch.fetch_max(epoch, Ordering::AcqRel);
    }
}

/// The largest sealed revocation read or written: an issuer and a subject,
/// session or client id are far smaller.
pub(crate) const MAX_SEALED_BYTES: usize = 16 * 1024;

/// `revocation`, cut off at `at` (Unix s) and forgotten at `forget_at_ms`,
/// sealed under each fleet secret (the writing one first). Empty without a
/// random source, or when larger than [`MAX_SEALED_BYTES`].
pub(crate) fn seal_revocation(
    keys: &FleetKeys,
    revocation: &Revocation,
    at: i64,
    forget_at_ms: u64,
) -> Vec<Vec<u8>> {
    let (issuer, value) = (revocation.issuer.as_bytes(), revocation.value.as_bytes());
    let Ok(issuer_len) = u32::try_from(issuer.len()) else {
        return Vec::new();
    };
    let mut body = Vec::with_capacity(5 + issuer.len() + value.len());
    body.push(revocation.kind as u8);
    body.extend_from_slice(&issuer_len.to_be_bytes());
    body.extend_from_slice(issuer);
    body.extend_from_slice(value);
    let at_ms = u64::try_from(at).unwrap_or(0).saturating_mul(1000);
    let name = keys.cutoff_set();
    keys.secrets
        .iter()
        .map(|secret| seal::seal(&secret.aead, &name, at_ms, forget_at_ms, &body))
        .collect::<Option<Vec<_>>>()
        .filter(|sealed| sealed.iter().all(|one| one.len() <= MAX_SEALED_BYTES))
        .unwrap_or_default()
}

/// The revocation in `sealed` and its cut-off (Unix s), if it opens under
/// one of our secrets and is still retained at `now_ms`.
pub(crate) fn open_revocation(keys: &FleetKeys, sealed: &[u8], now_ms: u64) -> Option<(Revocation, i64)> {
    if sealed.len() > MAX_SEALED_BYTES {
        return None;
    }
    let name = keys.cutoff_set();
    let (at_ms, _, body) = keys
        .secrets
        .iter()
        .find_map(|secret| seal::open_bytes(&secret.aead, &name, sealed, now_ms).ok())?;
    let (&kind, rest) = body.split_first()?;
    let kind = Kind::ALL.into_iter().find(|known| *known as u8 == kind)?;
    let (length, rest) = rest.split_at_checked(4)?;
    let issuer_len = usize::try_from(u32::from_be_bytes(length.try_into().ok()?)).ok()?;
    let (issuer, value) = rest.split_at_checked(issuer_len)?;
    let revocation = Revocation::new(
        kind,
        String::from_utf8(issuer.to_vec()).ok()?,
        String::from_utf8(value.to_vec()).ok()?,
    );
    Some((revocation, i64::try_from(at_ms / 1000).ok()?))
}

/// The notice announcing a revocation: `r` and each sealed copy in hex.
pub(crate) fn revocation_notice(sealed: &[Vec<u8>]) -> String {
    let mut notice = String::from("r");
    for one in sealed {
        notice.push(' ');
        notice.push_str(&super::keys::hex(one));
    }
    notice
}

/// The sealed copies a notice's words carry (at most a few: one per
/// secret of the sender).
pub(crate) fn notice_copies<'a>(words: impl Iterator<Item = &'a str>) -> impl Iterator<Item = Vec<u8>> {
    words.take(8).filter_map(unhex)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.len() > 2 * MAX_SEALED_BYTES {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_counts_only_when_nothing_came_meanwhile() {
        let state = ReadState::default();
        assert!(!state.is_current(), "never read");
        state.done(state.begin());
        assert!(state.is_current());
        let during = state.begin();
        state.unread();
        state.done(during);
        assert!(!state.is_current(), "an event while reading: read again");
        let before = state.begin();
        state.subscribed();
        state.done(before);
        assert!(!state.is_current(), "a read from before the subscription");
        state.done(state.begin());
        assert!(state.is_current());
    }

    const S1: &[u8] = b"0123456789abcdef0123456789abcdef";
    const S2: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn keys(secrets: &[&[u8]], endpoint: &str) -> FleetKeys {
        FleetKeys::new(secrets, "p:", endpoint, "rs").unwrap()
    }

    #[test]
    fn a_sealed_revocation_opens_to_itself_and_hides_what_it_names() {
        let fleet = keys(&[S1], "https://as/i");
        let revocation = Revocation::session("https://as", "sid-42");
        let sealed = seal_revocation(&fleet, &revocation, 1_700_000_000, u64::MAX);
        assert_eq!(sealed.len(), 1, "one copy per secret");
        let text = String::from_utf8_lossy(&sealed[0]);
        assert!(!text.contains("sid-42") && !text.contains("https://as"));
        let (opened, at) = open_revocation(&fleet, &sealed[0], 0).unwrap();
        assert_eq!((opened, at), (revocation, 1_700_000_000));
    }

    #[test]
    fn another_verifier_or_secret_cannot_open_it_and_its_retention_ends() {
        let fleet = keys(&[S1], "https://as/i");
        let sealed = seal_revocation(&fleet, &Revocation::subject("i", "alice"), 1, 5_000);
        assert!(open_revocation(&keys(&[S1], "https://other/i"), &sealed[0], 0).is_none());
        assert!(open_revocation(&keys(&[S2], "https://as/i"), &sealed[0], 0).is_none());
        assert!(open_revocation(&fleet, &sealed[0], 4_999).is_some());
        assert!(open_revocation(&fleet, &sealed[0], 5_000).is_none(), "forgotten");
        let mut flipped = sealed[0].clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(open_revocation(&fleet, &flipped, 0).is_none(), "forged");
    }

    #[test]
    fn in_a_rotation_each_side_opens_one_copy() {
        let sender = keys(&[S2, S1], "https://as/i");
        let sealed = seal_revocation(&sender, &Revocation::client("i", "c"), 7, u64::MAX);
        assert_eq!(sealed.len(), 2);
        let notice = revocation_notice(&sealed);
        let copies: Vec<Vec<u8>> = notice_copies(notice.split(' ').skip(1)).collect();
        assert_eq!(copies, sealed);
        for receiver in [keys(&[S1], "https://as/i"), keys(&[S2], "https://as/i")] {
            let opened = copies.iter().find_map(|copy| open_revocation(&receiver, copy, 0));
            assert_eq!(opened, Some((Revocation::client("i", "c"), 7)));
        }
    }

    #[test]
    fn oversized_revocations_are_not_sealed() {
        let fleet = keys(&[S1], "https://as/i");
        let huge = "x".repeat(MAX_SEALED_BYTES);
        assert!(seal_revocation(&fleet, &Revocation::subject("i", huge), 1, u64::MAX).is_empty());
    }
}
