//! Shared values: an introspection answer sealed with XChaCha20-Poly1305,
//! its entry name as associated data.
//!
//! Layout: `0x01 ‖ nonce (24 random bytes) ‖ ciphertext`, where the
//! plaintext is `answered_ms (u64 BE) ‖ until_ms (u64 BE) ‖ answer JSON`.
//! The name as associated data stops a value being moved to another token's
//! name; `until_ms` inside the seal stops an old value being replayed (or
//! its Redis TTL stretched) past the life it was written with. A random
//! 192-bit nonce cannot repeat in practice, however many replicas write.

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};

use crate::claims::{parse_answer, Answer};
use crate::principal::Claims;

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const HEADER_BYTES: usize = 16;

/// An opened value.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) answer: Answer,
    /// When the authorization server gave the answer (Unix ms).
    pub(crate) answered_ms: u64,
    /// When the shared entry ends (Unix ms).
    pub(crate) until_ms: u64,
}

/// Why a value was not used. Either way it is a miss, never a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It does not open under this name: forged, moved, or another secret.
    Forged,
    /// It opens, but its life has ended (a replay, or a stretched TTL).
    Expired,
    /// It opens, but was answered at or before the token's invalidation.
    Invalidated,
}

/// Seals `answer_json` (or any bytes: a revocation, see `cutoffs`) for the
/// entry `name`; `None` without a random source.
pub(crate) fn seal(
    aead: &XChaCha20Poly1305,
    name: &str,
    answered_ms: u64,
    until_ms: u64,
    answer_json: &[u8],
) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::getrandom(&mut nonce).ok()?;
    let mut plaintext = Vec::with_capacity(HEADER_BYTES + answer_json.len());
    plaintext.extend_from_slice(&answered_ms.to_be_bytes());
    plaintext.extend_from_slice(&until_ms.to_be_bytes());
    plaintext.extend_from_slice(answer_json);
    let sealed = aead
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: name.as_bytes(),
            },
        )
        .ok()?;
    let mut value = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
    value.push(VERSION);
    value.extend_from_slice(&nonce);
    value.extend_from_slice(&sealed);
    Some(value)
}

/// Opens a value read under `name`, at `now_ms` (Unix ms).
pub(crate) fn open(
    aead: &XChaCha20Poly1305,
    name: &str,
    value: &[u8],
    now_ms: u64,
) -> Result<Opened, Refused> {
    let (answered_ms, until_ms, json) = open_bytes(aead, name, value, now_ms)?;
    // Sealed by a replica of this fleet, so it parses; if it does not, it
    // is not used.
    let answer = parse_answer(&json).map_err(|_| Refused::Forged)?;
    Ok(Opened {
        answer,
        answered_ms,
        until_ms,
    })
}

/// Opens any sealed bytes read under `name` at `now_ms`: `(answered_ms,
/// until_ms, body)`, refused once `until_ms` has passed.
pub(crate) fn open_bytes(
    aead: &XChaCha20Poly1305,
    name: &str,
    value: &[u8],
    now_ms: u64,
) -> Result<(u64, u64, Vec<u8>), Refused> {
    let (&version, rest) = value.split_first().ok_or(Refused::Forged)?;
    if version != VERSION || rest.len() < NONCE_BYTES {
        return Err(Refused::Forged);
    }
    let (nonce, sealed) = rest.split_at(NONCE_BYTES);
    let mut plaintext = aead
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| Refused::Forged)?;
    if plaintext.len() < HEADER_BYTES {
        return Err(Refused::Forged);
    }
    let (mut answered, mut until) = ([0u8; 8], [0u8; 8]);
    answered.copy_from_slice(&plaintext[..8]);
    until.copy_from_slice(&plaintext[8..HEADER_BYTES]);
    let (answered_ms, until_ms) = (u64::from_be_bytes(answered), u64::from_be_bytes(until));
    if until_ms <= now_ms {
        return Err(Refused::Expired);
    }
    plaintext.drain(..HEADER_BYTES);
    Ok((answered_ms, until_ms, plaintext))
}

/// An active answer as RFC 7662 JSON, which `parse_answer` reads back into
/// the same claims.
pub(crate) fn active_json(claims: &Claims) -> Vec<u8> {
    let mut map: Map<String, Value> = claims.extra.as_deref().cloned().unwrap_or_default();
    map.insert("active".into(), Value::Bool(true));
    if !claims.scopes.is_empty() {
        map.insert("scope".into(), claims.scopes.as_str().into());
    }
    for (member, text) in [
        ("sub", &claims.subject),
        ("username", &claims.username),
        ("client_id", &claims.client_id),
        ("token_type", &claims.token_type),
        ("iss", &claims.issuer),
        ("jti", &claims.jwt_id),
    ] {
        if let Some(text) = text {
            map.insert(member.into(), Value::String(text.to_string()));
        }
    }
    if !claims.audiences.is_empty() {
        let audiences = claims
            .audiences
            .iter()
            .map(|a| Value::String(a.to_string()))
            .collect();
        map.insert("aud".into(), Value::Array(audiences));
    }
    for (member, time) in [
        ("exp", claims.expires_at),
        ("iat", claims.issued_at),
        ("nbf", claims.not_before),
    ] {
        if let Some(secs) = time.get() {
            map.insert(member.into(), secs.into());
        }
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}

/// An inactive answer.
pub(crate) const INACTIVE_JSON: &[u8] = br#"{"active":false}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Principal;
    use chacha20poly1305::KeyInit as _;

    fn aead(byte: u8) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&[byte; 32]).unwrap()
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn claims_survive_the_round_trip() {
        let json = br#"{"active":true,"scope":"write read","sub":42,"username":"alice","client_id":"c",
            "token_type":"Bearer","iss":"https://as","jti":"j1","aud":"api","exp":1900000000,
            "iat":1800000000,"nbf":1800000000,"tenant":{"id":7},"token_use":"refresh"}"#;
        let original = Principal::from_json(json).unwrap();
        let value = seal(
            &aead(1),
            "n",
            NOW - 5,
            NOW + 1000,
            &active_json(&original.clone().into_shared()),
        )
        .unwrap();
        let opened = open(&aead(1), "n", &value, NOW).unwrap();
        assert_eq!((opened.answered_ms, opened.until_ms), (NOW - 5, NOW + 1000));
        let Answer::Active(back) = opened.answer else {
            panic!("inactive")
        };
        assert_eq!(back.subject(), Some("42"));
        assert_eq!(back.username(), Some("alice"));
        assert_eq!(back.scopes().as_str(), "read write");
        assert_eq!(back.audiences().collect::<Vec<_>>(), ["api"]);
        assert_eq!(back.expires_at(), Some(1_900_000_000));
        assert_eq!(
            (back.issued_at(), back.not_before()),
            (Some(1_800_000_000), Some(1_800_000_000))
        );
        assert_eq!(
            (back.issuer(), back.jwt_id(), back.client_id()),
            (Some("https://as"), Some("j1"), Some("c"))
        );
        assert_eq!(back.token_type(), Some("Bearer"));
        assert_eq!(back.claim_value("tenant"), original.claim_value("tenant"));
        assert_eq!(
            back.other_kind(),
            original.other_kind(),
            "a refresh token stays one"
        );
    }

    #[test]
    fn the_claims_are_not_readable_in_the_value() {
        let principal = Principal::from_json(br#"{"active":true,"username":"alice-the-user"}"#).unwrap();
        let value = seal(
            &aead(1),
            "n",
            NOW,
            NOW + 1,
            &active_json(&principal.into_shared()),
        )
        .unwrap();
        assert!(!value.windows(14).any(|w| w == b"alice-the-user"));
        assert!(!value.windows(6).any(|w| w == b"active"));
    }

    #[test]
    fn forged_moved_or_rekeyed_values_are_refused() {
        let value = seal(&aead(1), "n", NOW, NOW + 1000, INACTIVE_JSON).unwrap();
        assert!(open(&aead(1), "n", &value, NOW).is_ok());
        assert_eq!(
            open(&aead(2), "n", &value, NOW).unwrap_err(),
            Refused::Forged,
            "other secret"
        );
        assert_eq!(
            open(&aead(1), "m", &value, NOW).unwrap_err(),
            Refused::Forged,
            "other name"
        );
        for i in 0..value.len() {
            let mut flipped = value.clone();
            flipped[i] ^= 1;
            assert!(open(&aead(1), "n", &flipped, NOW).is_err(), "byte {i}");
        }
        for forged in [
            &b""[..],
            b"\x01",
            br#"{"active":true}"#,
            &value[..value.len() - 1],
        ] {
            assert_eq!(open(&aead(1), "n", forged, NOW).unwrap_err(), Refused::Forged);
        }
    }

    /// Sealed under the fleet's key, but shorter than the header (no
    /// replica writes that): refused, never read past its end.
    #[test]
    fn a_sealed_value_too_short_for_its_header_is_refused() {
        for length in [0, 3, HEADER_BYTES - 1] {
            let nonce = [7u8; NONCE_BYTES];
            let sealed = aead(1)
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &vec![0xff; length],
                        aad: b"n",
                    },
                )
                .unwrap();
            let value = [&[VERSION][..], &nonce, &sealed].concat();
            assert_eq!(
                open(&aead(1), "n", &value, NOW).unwrap_err(),
                Refused::Forged,
                "{length}"
            );
        }
    }

    #[test]
    fn a_value_past_its_life_is_refused() {
        let value = seal(&aead(1), "n", NOW, NOW + 1000, INACTIVE_JSON).unwrap();
        assert!(open(&aead(1), "n", &value, NOW + 999).is_ok());
        assert_eq!(
            open(&aead(1), "n", &value, NOW + 1000).unwrap_err(),
            Refused::Expired
        );
    }
}
