//! What the fleet secret derives: the names of shared entries, the sealing
//! keys, and the in-process cache key every replica shares.
//!
//! - Each secret gives, through HKDF-SHA-256 with a label per use, an HMAC
//!   key (entry names), an XChaCha20-Poly1305 key (values) and a SipHash key
//!   (the in-process cache key, so that an invalidation can name the entry
//!   to drop in every replica). No derived key can be computed from another.
//! - An entry's name is `HMAC-SHA-256(domain ‖ len ‖ endpoint ‖ len ‖ client_id ‖ token)`
//!   in hex: without the secret it reveals nothing of the token and cannot
//!   be computed for a token one knows.
//! - A once marker (a DPoP proof's `jti`, see [`FleetKeys::marker_names`])
//!   is named the same way under a key of its own: `HMAC-SHA-256(domain ‖
//!   kind ‖ endpoint ‖ client_id ‖ parts)`, each part length-prefixed, so it
//!   can never be a token's name and reveals none of its parts.
//! - The first secret writes; the others (a previous secret during a
//!   rotation) are read as well.

use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};

use crate::cache_key::{Key, KeyScheme};
use crate::error::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// The shortest fleet secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

const SALT: &[u8] = b"tower-introspection/fleet/v1";
const NAME_DOMAIN: &[u8] = b"tower-introspection/l2-name/v1\0";
#[cfg(feature = "jwt")]
const MARKER_DOMAIN: &[u8] = b"tower-introspection/once-marker/v1\0";

/// The keys derived from one fleet secret.
pub(crate) struct SecretKeys {
    /// The HMAC state after the domain, endpoint and client id.
    names: HmacSha256,
    pub(crate) aead: XChaCha20Poly1305,
    pub(crate) l1: (u64, u64),
    /// The HMAC key of the fleet's notices.
    notices: HmacSha256,
    /// The HMAC state of once markers, after the domain (the kind, endpoint
    /// and client id follow per marker).
    #[cfg(feature = "jwt")]
    markers: HmacSha256,
}

impl SecretKeys {
    pub(crate) fn derive(secret: &[u8], endpoint: &str, client_id: &str) -> Result<Self, ConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::InvalidSetting(
                "the shared cache secret must be at least 32 bytes",
            ));
        }
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), secret);
        let expand = |label: &[u8], out: &mut [u8]| {
            hkdf.expand(label, out)
                .map_err(|_| ConfigError::InvalidSetting("the shared cache keys could not be derived"))
        };
        let (mut mac_key, mut aead_key) = ([0u8; 32], [0u8; 32]);
        let (mut k0, mut k1) = ([0u8; 8], [0u8; 8]);
        let mut notice_key = [0u8; 32];
        expand(b"fleet notices (HMAC-SHA-256)", &mut notice_key)?;
        let notices = <HmacSha256 as hmac::Mac>::new_from_slice(&notice_key)
            .map_err(|_| ConfigError::InvalidSetting("the shared cache keys could not be derived"))?;
        expand(b"entry names (HMAC-SHA-256)", &mut mac_key)?;
        expand(b"entry values (XChaCha20-Poly1305)", &mut aead_key)?;
        let mut l1_key = [0u8; 16];
        expand(b"in-process cache keys (SipHash-1-3)", &mut l1_key)?;
        k0.copy_from_slice(&l1_key[..8]);
        k1.copy_from_slice(&l1_key[8..]);
        let mut names = <HmacSha256 as hmac::Mac>::new_from_slice(&mac_key)
            .map_err(|_| ConfigError::InvalidSetting("the shared cache keys could not be derived"))?;
        names.update(NAME_DOMAIN);
        for part in [endpoint, client_id] {
            names.update(&(part.len() as u64).to_be_bytes());
            names.update(part.as_bytes());
        }
        #[cfg(feature = "jwt")]
        let markers = {
            let mut marker_key = [0u8; 32];
            expand(b"once marker names (HMAC-SHA-256)", &mut marker_key)?;
            let mut markers = <HmacSha256 as hmac::Mac>::new_from_slice(&marker_key)
                .map_err(|_| ConfigError::InvalidSetting("the shared cache keys could not be derived"))?;
            markers.update(MARKER_DOMAIN);
            markers
        };
        let aead = XChaCha20Poly1305::new_from_slice(&aead_key)
            .map_err(|_| ConfigError::InvalidSetting("the shared cache keys could not be derived"))?;
        Ok(Self {
            names,
            aead,
            l1: (u64::from_be_bytes(k0), u64::from_be_bytes(k1)),
            notices,
            #[cfg(feature = "jwt")]
            markers,
        })
    }

    /// The entry name digest of `token`, in hex.
    fn name(&self, token: &str) -> String {
        let mut mac = self.names.clone();
        mac.update(token.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

/// Which of our secrets a notice's sender has, as its tags tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signer {
    /// The secret our in-process keys derive from: the notice names our
    /// entry.
    InProcessSecret,
    /// Only a previous secret (a replica not rotated yet, during step 1 of
    /// a rotation): the notice names the entry under secrets we do not key
    /// our in-process cache with.
    PreviousSecretOnly,
}

/// Every key and name of the tier, for one verifier.
pub(crate) struct FleetKeys {
    /// The first one writes; all are read.
    pub(crate) secrets: Vec<SecretKeys>,
    /// `{prefix}{tag}:`, where the tag tells verifiers sharing one Redis apart.
    namespace: String,
    endpoint: Box<str>,
    client_id: Box<str>,
}

/// The Redis names of one token's shared entry.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The value's name under each secret, the writing one first.
    pub(crate) values: Vec<String>,
    /// The fleet-wide single-flight lock (under the writing secret).
    pub(crate) lock: String,
    /// Marks a recent invalidation: a load in flight must not write back.
    /// Under each secret, so that replicas on either side of a rotation
    /// see it.
    pub(crate) tombstones: Vec<String>,
    /// The in-process cache key under each secret, for invalidation notices.
    pub(crate) l1: Vec<Key>,
}

impl Names {
    /// What identifies the entry in fill notices.
    pub(crate) fn id(&self) -> &str {
        self.values
            .first()
            .map_or("", |name| name.rsplit(':').next().unwrap_or(""))
    }
}

impl FleetKeys {
    pub(crate) fn new(
        secrets: &[&[u8]],
        prefix: &str,
        endpoint: &str,
        client_id: &str,
    ) -> Result<Self, ConfigError> {
        let secrets = secrets
            .iter()
            .map(|secret| SecretKeys::derive(secret, endpoint, client_id))
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(ConfigError::InvalidSetting("the shared cache needs a secret"));
        }
        // Not secret: the same across a rotation, so every replica meets on
        // the same channel and names.
        let mut tag = Sha256::new();
        tag.update(b"tower-introspection/verifier-tag/v1\0");
        for part in [endpoint, client_id] {
            tag.update((part.len() as u64).to_be_bytes());
            tag.update(part.as_bytes());
        }
        let tag = hex(&tag.finalize()[..8]);
        Ok(Self {
            secrets,
            namespace: format!("{prefix}{tag}:"),
            endpoint: endpoint.into(),
            client_id: client_id.into(),
        })
    }

    /// The SipHash key of the in-process cache (from the writing secret).
    pub(crate) fn l1_key(&self) -> (u64, u64) {
        self.secrets.first().map_or((0, 0), |keys| keys.l1)
    }

    pub(crate) fn names(&self, token: &str) -> Names {
        let digests: Vec<String> = self.secrets.iter().map(|keys| keys.name(token)).collect();
        let first = digests.first().cloned().unwrap_or_default();
        Names {
            values: digests
                .iter()
                .map(|d| format!("{}v:{d}", self.namespace))
                .collect(),
            lock: format!("{}lock:{first}", self.namespace),
            tombstones: digests
                .iter()
                .map(|d| format!("{}gone:{d}", self.namespace))
                .collect(),
            l1: self
                .secrets
                .iter()
                .map(|keys| KeyScheme::under(keys.l1, &self.endpoint, &self.client_id).key(token))
                .collect(),
        }
    }

    /// The names of the once marker of `kind` for `parts` (e.g. a DPoP
    /// proof's thumbprint and `jti`), one under each secret, the writing
    /// one first: `{prefix}{tag}:{kind}:{hex}`. Outside the value pattern,
    /// so `invalidate_all` leaves them alone.
    #[cfg(feature = "jwt")]
    pub(crate) fn marker_names(&self, kind: &str, parts: &[&[u8]]) -> Vec<String> {
        self.secrets
            .iter()
            .map(|keys| {
                let mut mac = keys.markers.clone();
                for part in [
                    kind.as_bytes(),
                    self.endpoint.as_bytes(),
                    self.client_id.as_bytes(),
                ]
                .into_iter()
                .chain(parts.iter().copied())
                {
                    mac.update(&(part.len() as u64).to_be_bytes());
                    mac.update(part);
                }
                format!("{}{kind}:{}", self.namespace, hex(&mac.finalize().into_bytes()))
            })
            .collect()
    }

    /// The channel of invalidation and fill notices.
    pub(crate) fn channel(&self) -> String {
        format!("{}events", self.namespace)
    }

    /// `body` with a tag under each secret appended (` m:<hex>` each), so
    /// that only a replica of the fleet can send notices, and replicas on
    /// either side of a rotation accept them.
    pub(crate) fn sign_notice(&self, body: &str) -> String {
        let mut notice = body.to_owned();
        for keys in &self.secrets {
            notice.push_str(" m:");
            notice.push_str(&self.notice_tag(keys, body));
        }
        notice
    }

    /// The body of a signed notice with a tag that verifies under one of
    /// our secrets, and which: a sender tags under every secret it has and
    /// names the entry under each, so a tag under our first secret (the
    /// one our in-process keys derive from) means the notice names our
    /// entry, and a tag under a previous secret only means it cannot.
    pub(crate) fn open_notice<'a>(&self, notice: &'a str) -> Option<(&'a str, Signer)> {
        let (body, tags) = notice.split_once(" m:")?;
        let context = self.notice_context(body);
        let tags: Vec<Vec<u8>> = tags
            .split(" m:")
            .take(MAX_NOTICE_TAGS)
            .filter_map(unhex)
            .filter(|tag| tag.len() == NOTICE_TAG_BYTES)
            .collect();
        let verifies = |keys: &SecretKeys| {
            tags.iter().any(|tag| {
                let mut mac = keys.notices.clone();
                mac.update(&context);
                mac.verify_truncated_left(tag).is_ok()
            })
        };
        let mut secrets = self.secrets.iter();
        if secrets.next().is_some_and(verifies) {
            Some((body, Signer::InProcessSecret))
        } else if secrets.any(verifies) {
            Some((body, Signer::PreviousSecretOnly))
        } else {
            None
        }
    }

    fn notice_tag(&self, keys: &SecretKeys, body: &str) -> String {
        let mut mac = keys.notices.clone();
        mac.update(&self.notice_context(body));
        hex(&mac.finalize().into_bytes()[..NOTICE_TAG_BYTES])
    }

    /// What a notice's tag covers: the channel (so a notice is not replayed
    /// on another verifier's) and the body.
    fn notice_context(&self, body: &str) -> Vec<u8> {
        let channel = self.channel();
        let mut context = Vec::with_capacity(8 + channel.len() + body.len());
        context.extend_from_slice(&(channel.len() as u64).to_be_bytes());
        context.extend_from_slice(channel.as_bytes());
        context.extend_from_slice(body.as_bytes());
        context
    }

    /// Marks an `invalidate_all`: no load in flight writes back meanwhile.
    pub(crate) fn flush_marker(&self) -> String {
        format!("{}flush", self.namespace)
    }

    /// The sorted set of this verifier's revocation cut-offs (see
    /// `cutoffs`); outside the value pattern, so `invalidate_all` leaves it.
    pub(crate) fn cutoff_set(&self) -> String {
        format!("{}cutoffs", self.namespace)
    }

    /// The pattern of every value name, for `invalidate_all`.
    pub(crate) fn value_pattern(&self) -> String {
        format!("{}v:*", self.namespace)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a notice's tag: 128 bits.
const NOTICE_TAG_BYTES: usize = 16;
/// Tags looked at in one notice (one per secret of the sender).
const MAX_NOTICE_TAGS: usize = 8;

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || text.len() > 64 {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn unhex16(text: &str) -> Option<Key> {
    if text.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &[u8] = b"0123456789abcdef0123456789abcdef";
    const S2: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn keys(secrets: &[&[u8]], endpoint: &str, client: &str) -> FleetKeys {
        FleetKeys::new(secrets, "p:", endpoint, client).unwrap()
    }

    #[test]
    fn names_hide_the_token_and_depend_on_secret_verifier_and_token() {
        let a = keys(&[S1], "https://as/i", "rs");
        let n = a.names("secret-token-value");
        assert!(!n.values[0].contains("secret-token-value"));
        assert_eq!(n.values[0].len(), "p:".len() + 16 + ":v:".len() + 64);
        assert_eq!(a.names("secret-token-value").values, n.values, "deterministic");
        assert_ne!(a.names("other").values, n.values);
        assert_ne!(
            keys(&[S2], "https://as/i", "rs")
                .names("secret-token-value")
                .values,
            n.values
        );
        assert_ne!(
            keys(&[S1], "https://as/j", "rs")
                .names("secret-token-value")
                .values[0],
            n.values[0]
        );
        assert_ne!(
            keys(&[S1], "https://as/i", "rs2")
                .names("secret-token-value")
                .values[0],
            n.values[0]
        );
        // Not a plain hash of the token.
        let plain = hex(&Sha256::digest(b"secret-token-value"));
        assert!(!n.values[0].ends_with(&plain));
    }

    /// The in-process key is a contract between replicas, of this version
    /// and the next: invalidation notices name entries by it.
    #[test]
    fn in_process_keys_are_the_secrets_sixteen_bytes_big_endian() {
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), S1);
        let mut bytes = [0u8; 16];
        hkdf.expand(b"in-process cache keys (SipHash-1-3)", &mut bytes)
            .unwrap();
        let (k0, k1) = bytes.split_at(8);
        let word = |half: &[u8]| half.iter().fold(0, |acc, b| acc * 256 + u64::from(*b));
        assert_eq!(keys(&[S1], "e", "c").l1_key(), (word(k0), word(k1)));
        assert_ne!(keys(&[S2], "e", "c").l1_key(), keys(&[S1], "e", "c").l1_key());
    }

    #[test]
    fn fill_ids_are_the_writing_secrets_digest() {
        let rotating = keys(&[S2, S1], "e", "c");
        let n = rotating.names("t");
        assert_eq!(n.id().len(), 64);
        assert!(n.values[0].ends_with(&format!(":v:{}", n.id())));
        assert_eq!(
            n.id(),
            keys(&[S2], "e", "c").names("t").id(),
            "the writing secret's"
        );
        assert_ne!(n.id(), rotating.names("u").id());
    }

    #[test]
    fn a_rotation_reads_under_both_secrets_and_writes_under_the_first() {
        let rotating = keys(&[S2, S1], "e", "c");
        let old = keys(&[S1], "e", "c");
        let new = keys(&[S2], "e", "c");
        let n = rotating.names("t");
        assert_eq!(
            n.values,
            vec![new.names("t").values[0].clone(), old.names("t").values[0].clone()]
        );
        assert_eq!(n.l1, vec![new.names("t").l1[0], old.names("t").l1[0]]);
        assert_eq!(
            n.tombstones,
            vec![
                new.names("t").tombstones[0].clone(),
                old.names("t").tombstones[0].clone()
            ],
            "a tombstone each side of the rotation sees"
        );
        assert_eq!(rotating.channel(), old.channel(), "one channel across a rotation");
        assert_eq!(rotating.l1_key(), new.l1_key());
    }

    #[test]
    fn notices_verify_under_any_secret_and_only_on_their_channel() {
        let rotating = keys(&[S2, S1], "e", "c");
        let old = keys(&[S1], "e", "c");
        let signed = old.sign_notice("i 00");
        assert_eq!(
            rotating.open_notice(&signed),
            Some(("i 00", Signer::PreviousSecretOnly)),
            "old secret still read, but it is not the in-process keys' secret"
        );
        assert_eq!(
            old.open_notice(&rotating.sign_notice("a 1")),
            Some(("a 1", Signer::InProcessSecret)),
            "a rotated replica also tags under the old secret"
        );
        let new = keys(&[S2], "e", "c");
        assert_eq!(
            new.open_notice(&rotating.sign_notice("a 1")),
            Some(("a 1", Signer::InProcessSecret))
        );
        assert_eq!(
            rotating.open_notice(&new.sign_notice("a 1")),
            Some(("a 1", Signer::InProcessSecret))
        );
        assert_eq!(
            rotating.open_notice(&rotating.sign_notice("a 1")),
            Some(("a 1", Signer::InProcessSecret))
        );
        assert_eq!(new.open_notice(&signed), None, "a secret it does not have");
        assert_eq!(old.open_notice("i 00"), None, "unsigned");
        assert_eq!(old.open_notice(&signed.replace("i 00", "i 01")), None, "altered");
        assert_eq!(old.open_notice("i 00 m:zz"), None, "not hex");
        assert_eq!(old.open_notice(&format!("{signed}0")), None);
        assert_eq!(
            keys(&[S1], "e2", "c").open_notice(&signed),
            None,
            "another channel"
        );
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn marker_names_hide_their_parts_and_differ_from_token_names() {
        let a = keys(&[S1], "https://as/i", "rs");
        let parts: [&[u8]; 2] = [b"thumbprint-value", b"jti-value"];
        let names = a.marker_names("dpop-jti", &parts);
        assert_eq!(names.len(), 1);
        let name = &names[0];
        assert!(name.starts_with("p:") && name.contains(":dpop-jti:"), "{name}");
        assert!(!name.contains("thumbprint") && !name.contains("jti-value"));
        assert_eq!(a.marker_names("dpop-jti", &parts), names, "deterministic");
        // Length prefixes: moving a byte between parts is another marker.
        assert_ne!(
            a.marker_names("dpop-jti", &[b"thumbprint-valuej", b"ti-value"]),
            names
        );
        assert_ne!(
            a.marker_names("other", &parts)[0].rsplit(':').next(),
            name.rsplit(':').next()
        );
        assert_ne!(
            keys(&[S2], "https://as/i", "rs").marker_names("dpop-jti", &parts),
            names
        );
        assert_ne!(
            keys(&[S1], "https://as/i", "rs2").marker_names("dpop-jti", &parts),
            names
        );
        // Not the name a token with the same bytes would get.
        let digest = name.rsplit(':').next().unwrap();
        assert!(!a.names("thumbprint-valuejti-value").values[0].ends_with(digest));
        // During a rotation: under both secrets, the writing one first.
        let rotating = keys(&[S2, S1], "https://as/i", "rs").marker_names("dpop-jti", &parts);
        assert_eq!(rotating[1], names[0]);
        assert_eq!(
            rotating[0],
            keys(&[S2], "https://as/i", "rs").marker_names("dpop-jti", &parts)[0]
        );
    }

    #[test]
    fn flush_markers_are_the_verifiers_own_and_no_value_name() {
        let (a, b) = (
            keys(&[S1], "https://as/i", "rs"),
            keys(&[S1], "https://as/j", "rs"),
        );
        assert_ne!(a.flush_marker(), b.flush_marker(), "verifiers sharing a Redis");
        assert!(a.flush_marker().starts_with(&a.namespace));
        let values = a.value_pattern();
        assert!(!a.flush_marker().starts_with(values.trim_end_matches('*')));
    }

    #[test]
    fn hex_is_read_up_to_thirty_two_bytes() {
        assert_eq!(unhex(&"ab".repeat(32)), Some(vec![0xab; 32]));
        assert_eq!(unhex(&"ab".repeat(33)), None);
        assert_eq!(unhex(&"ab".repeat(40)), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(FleetKeys::new(&[&S1[..31]], "p:", "e", "c").is_err());
        assert!(FleetKeys::new(&[], "p:", "e", "c").is_err());
    }

    #[test]
    fn hex_round_trips() {
        let key = [0xab; 16];
        assert_eq!(unhex16(&hex(&key)), Some(key));
        assert_eq!(unhex16("zz"), None);
        assert_eq!(unhex16(&"g".repeat(32)), None);
    }
}
