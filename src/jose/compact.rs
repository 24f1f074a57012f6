//! Reading a compact JWS (RFC 7515 §7.1): three base64url segments, a JSON
//! header and a JSON payload, both with unique members. Nothing here trusts
//! the token: the header only says which configured key to try. Header
//! members that name or carry a key (`jku`, `x5u`, `jwk`, `x5c`) are never
//! read, let alone fetched: the token does not choose its own key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::keys::Algorithm;
use crate::claims::UniqueMembers;

/// A token split and decoded, its signature not yet checked.
pub(crate) struct Compact<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
    pub(crate) claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    pub(crate) signing_input: &'a [u8],
    pub(crate) signature: Vec<u8>,
}

/// Why a token was refused before any key was tried.
pub(crate) type Refusal = &'static str;

impl<'a> Compact<'a> {
    pub(crate) fn parse(token: &'a str) -> Result<Self, Refusal> {
        let malformed = "the token is not a well-formed JWT";
        let mut parts = token.splitn(4, '.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed);
        };
        let header = decode_object(header).ok_or(malformed)?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.parse::<Algorithm>().map_err(|_| match alg.as_str() {
                "none" | "None" | "NONE" => "unsigned tokens (alg none) are refused",
                "HS256" | "HS384" | "HS512" => "HMAC-signed tokens are refused",
                _ => "the token's algorithm is not supported",
            })?,
            _ => return Err(malformed),
        };
        // RFC 7515 §4.1.11: extensions the recipient does not understand
        // must be refused, and this crate understands none.
        if header.contains_key("crit") {
            return Err("the token requires a header extension (crit) that is not supported");
        }
        let text = |name: &str| match header.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed),
        };
        let kid = text("kid")?;
        let typ = text("typ")?;
        let claims = decode_object(payload).ok_or(malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| malformed)?;
        let signing_input = &token.as_bytes()[..token.len() - signature_len(token)];
        Ok(Self {
            alg,
            kid,
            typ,
            claims,
            signing_input,
            signature,
        })
    }
}

/// The length of the last segment plus its dot.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

/// A base64url segment holding a JSON object with unique members.
fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice::<UniqueMembers>(&bytes)
        .ok()
        .map(|UniqueMembers(map)| map)
}

/// The unverified `iss` of a JWT-shaped token, for routing it to the
/// verifier of that issuer: `Some(None)` for a JWT without `iss`, `None` for
/// a token that is not a JWT at all (an opaque token).
pub(crate) fn peek_issuer(token: &str) -> Option<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        iss: Option<Value>,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    // An opaque token may contain two dots; a JWT's header is JSON.
    let header = URL_SAFE_NO_PAD.decode(header).ok()?;
    if header.first() != Some(&b'{') {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let peek: Peek = serde_json::from_slice(&payload).ok()?;
    Some(match peek.iss {
        Some(Value::String(iss)) => Some(iss),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            segment(header),
            segment(payload),
            URL_SAFE_NO_PAD.encode([1, 2, 3])
        )
    }

    #[test]
    fn parses_a_compact_jws() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"iss":"https://as","exp":1}"#,
        );
        let parsed = Compact::parse(&t).unwrap();
        assert_eq!(parsed.alg, Algorithm::Es256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.typ.as_deref(), Some("at+jwt"));
        assert_eq!(parsed.claims["iss"], "https://as");
        assert_eq!(parsed.signature, [1, 2, 3]);
        assert_eq!(parsed.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn refuses_none_hmac_crit_and_malformed() {
        let refused = |header: &str| Compact::parse(&token(header, "{}")).err().unwrap();
        assert!(refused(r#"{"alg":"none"}"#).contains("alg none"));
        assert!(refused(r#"{"alg":"HS256"}"#).contains("HMAC"));
        assert!(refused(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#).contains("crit"));
        assert!(
            refused(r#"{"alg":"RS256","alg":"none"}"#).contains("well-formed"),
            "duplicate members"
        );
        assert!(refused(r#"{"kid":"x"}"#).contains("well-formed"));
        assert!(refused(r#"{"alg":"RS256","kid":7}"#).contains("well-formed"));
        assert!(Compact::parse("a.b").is_err());
        assert!(Compact::parse("a.b.c.d").is_err());
        assert!(Compact::parse(&format!("{}.{}.=", segment(r#"{"alg":"RS256"}"#), segment("{}"))).is_err());
    }

    #[test]
    fn peeks_the_issuer_of_jwts_only() {
        assert_eq!(
            peek_issuer(&token(r#"{"alg":"RS256"}"#, r#"{"iss":"https://as"}"#)),
            Some(Some("https://as".into()))
        );
        assert_eq!(
            peek_issuer(&token(r#"{"alg":"RS256"}"#, r#"{"sub":"1"}"#)),
            Some(None)
        );
        assert_eq!(peek_issuer("opaque-token"), None);
        assert_eq!(peek_issuer("abc.def.ghi"), None, "dots alone do not make a JWT");
    }
}
