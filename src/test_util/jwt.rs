//! JWT access tokens minted by the server: what they carry ([`JwtSpec`]) and
//! their compact JWS serialization (RFC 7515 §7.1).
//!
//! Header and claims are ordered lists rendered member by member, so a token's
//! JSON keeps the order its spec was built in (the crate's `serde_json` has no
//! `preserve_order`, and a Passport token's bytes depend on that order).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::error::Unspecified;
use serde_json::{Number, Value};

use super::alg::JwtAlg;
use super::keys::KeySet;
use super::random::{random_hex, random_id};
use super::{TEST_CLIENT_ID, TEST_USERNAME};
use crate::macros::setters;

/// Whose conventions a spec follows where the builder methods differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// [`JwtSpec::new`]: integer dates, `scope` string, `client_id` claim.
    Bare,
    /// [`JwtSpec::rfc9068`]: as `Bare`.
    Rfc9068,
    /// [`JwtSpec::passport`]: lcobucci/jwt dates (microsecond floats),
    /// `scopes` array, the client id in `aud`, a 40-byte hex `jti` and PHP's
    /// escaping of U+2028/U+2029.
    Passport,
}

/// A header member or claim, some resolved only when the token is minted.
#[derive(Debug, Clone, PartialEq)]
enum Member {
    /// This JSON value.
    Json(Value),
    /// The signing algorithm's name.
    Alg,
    /// The kid of the current key of the signing algorithm's family (the
    /// member is left out for `HS256` and `none`).
    Kid,
    /// The server's issuer.
    Issuer,
    /// A NumericDate, the minting time plus or minus this.
    Time(Offset),
    /// A fresh random identifier.
    Jti,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offset {
    In(Duration),
    Ago(Duration),
}

const NOW: Member = Member::Time(Offset::In(Duration::ZERO));
const IN_AN_HOUR: Member = Member::Time(Offset::In(Duration::from_secs(3600)));

/// What a JWT minted with
/// [`TestAuthServer::mint_jwt`](super::TestAuthServer::mint_jwt) carries:
/// its signing algorithm, its header members and its claims, each kept in
/// the order the spec was built in (a method that sets a member already
/// there replaces its value in place; a new member goes last).
///
/// Start from [`rfc9068`](Self::rfc9068), [`passport`](Self::passport) or
/// [`new`](Self::new). Until told otherwise, the header's `alg` names the
/// algorithm chosen with [`alg`](Self::alg) (default `RS256`), and its `kid`
/// names the server's current key of that algorithm's family at minting time
/// (none for `HS256` and `none`). `iss` is the server's issuer at minting
/// time, `iat` the minting time, `exp` an hour later, `jti` random.
///
/// # Example
///
/// ```rust
/// use std::time::Duration;
/// use serde_json::json;
/// use tower_introspection::test_util::{JwtAlg, JwtSpec, TestAuthServer};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TestAuthServer::start().await?;
/// let jwt = server.mint_jwt(
///     JwtSpec::rfc9068()
///         .alg(JwtAlg::Es256)
///         .aud("https://api.example")
///         .scope("read write")
///         .claim("exp", json!(4_102_444_800.5)),
/// );
/// let jwks: serde_json::Value = reqwest::get(server.jwks_url()).await?.json().await?;
/// let kid = server.current_kid(&JwtAlg::Es256).ok_or("no EC key")?;
/// assert!(jwks["keys"].as_array().ok_or("no keys")?.iter().any(|k| k["kid"] == kid.as_str()));
/// assert_eq!(jwt.split('.').count(), 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JwtSpec {
    profile: Profile,
    alg: JwtAlg,
    header: Vec<(String, Member)>,
    claims: Vec<(String, Member)>,
    tamper: bool,
}

impl Default for JwtSpec {
    /// [`JwtSpec::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl JwtSpec {
    fn with(profile: Profile, header: &[(&str, Member)], claims: &[(&str, Member)]) -> Self {
        let owned = |members: &[(&str, Member)]| {
            members
                .iter()
                .map(|(name, member)| ((*name).to_owned(), member.clone()))
                .collect()
        };
        Self {
            profile,
            alg: JwtAlg::Rs256,
            header: owned(header),
            claims: owned(claims),
            tamper: false,
        }
    }

    /// A bare token: header `{"alg":"RS256","kid":<current RSA kid>}`,
    /// claims `iss` (the server's issuer), `iat` (now) and `exp` (in an
    /// hour), integer NumericDates.
    pub fn new() -> Self {
        Self::with(
            Profile::Bare,
            &[("alg", Member::Alg), ("kid", Member::Kid)],
            &[("iss", Member::Issuer), ("iat", NOW), ("exp", IN_AN_HOUR)],
        )
    }

    /// An RFC 9068 JWT access token: header
    /// `{"typ":"at+jwt","alg":"RS256","kid":<current RSA kid>}`; claims `iss`
    /// (the server's issuer), `sub` `"alice"`, `client_id` `"test-client"`,
    /// `iat` (now), `exp` (in an hour), `jti` (random), in that order, with
    /// integer NumericDates. No `aud` and no `scope` unless set
    /// ([`aud`](Self::aud), [`scope`](Self::scope)), although RFC 9068
    /// requires `aud`: a test of that refusal needs nothing more.
    pub fn rfc9068() -> Self {
        Self::with(
            Profile::Rfc9068,
            &[
                ("typ", Member::Json(Value::from("at+jwt"))),
                ("alg", Member::Alg),
                ("kid", Member::Kid),
            ],
            &[
                ("iss", Member::Issuer),
                ("sub", Member::Json(Value::from(TEST_USERNAME))),
                ("client_id", Member::Json(Value::from(TEST_CLIENT_ID))),
                ("iat", NOW),
                ("exp", IN_AN_HOUR),
                ("jti", Member::Jti),
            ],
        )
    }

    /// A Laravel Passport access token, byte for byte as
    /// league/oauth2-server (8.x, 9.x) writes it through lcobucci/jwt 4.x/5.x.
    ///
    /// `AccessTokenTrait::convertToJWT` calls the default `Builder` with
    /// `permittedFor(client id)`, `identifiedBy(token id)`,
    /// `issuedAt(new DateTimeImmutable())`,
    /// `canOnlyBeUsedAfter(new DateTimeImmutable())`,
    /// `expiresAt(expiry)`, `relatedTo(user id)` and
    /// `withClaim('scopes', scopes)`, and signs with RS256. So:
    ///
    /// - the header is `{"typ":"JWT","alg":"RS256"}`, in that order (the
    ///   builder starts from `['typ' => 'JWT', 'alg' => null]` and sets `alg`
    ///   when signing): no `kid`, and not `typ` `at+jwt`;
    /// - the claims are `aud`, `jti`, `iat`, `nbf`, `exp`, `sub`, `scopes`,
    ///   in the order they were set, and nothing else (no `iss`, no
    ///   `client_id`);
    /// - `aud` is the client id as a single string (`UnifyAudience` unwraps
    ///   a one-element audience list);
    /// - the dates go through `MicrosecondBasedDateConversion` (the default
    ///   `ChainedFormatter`): a `DateTimeImmutable` made by PHP carries
    ///   microseconds, rendered as the float `(float) format('U.u')`, which
    ///   PHP's `json_encode` prints shortest (`1700000000.123456`,
    ///   `1700000000.1`), and as an integer only when the microseconds are
    ///   exactly zero;
    /// - `jti` is `bin2hex(random_bytes(40))`: 80 lowercase hex digits;
    /// - `sub` is the user id as a string (`"1"` for Laravel's first user);
    /// - `scopes` is a JSON array of scope names, `[]` when there are none;
    /// - `JoseEncoder` encodes with `JSON_UNESCAPED_SLASHES |
    ///   JSON_UNESCAPED_UNICODE`: `/` and non-ASCII stay as they are.
    ///
    /// Defaults here: `aud` `"test-client"`, `sub` `"1"`, no scopes, `iat`
    /// and `nbf` the minting time, `exp` an hour later (Passport's own
    /// default lifetime is a year; league sets `iat` and `nbf` from two
    /// `new DateTimeImmutable()` calls, usually the same microsecond or a
    /// few apart). [`client_id`](Self::client_id) sets `aud`,
    /// [`scope`](Self::scope) sets the `scopes` array, and the date methods
    /// keep the microseconds. A header and payload, with
    /// `.scope("read write")` minted at `1700000000.123456`:
    ///
    /// ```text
    /// {"typ":"JWT","alg":"RS256"}
    /// {"aud":"test-client","jti":"5f0c…(80 hex digits)…","iat":1700000000.123456,"nbf":1700000000.123456,"exp":1700003600.123456,"sub":"1","scopes":["read","write"]}
    /// ```
    ///
    /// ```rust
    /// use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    /// use tower_introspection::test_util::{JwtSpec, TestAuthServer};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = TestAuthServer::start().await?;
    /// let jwt = server.mint_jwt(JwtSpec::passport().scope("read write"));
    /// let mut parts = jwt.split('.');
    /// let header = URL_SAFE_NO_PAD.decode(parts.next().ok_or("no header")?)?;
    /// assert_eq!(header, br#"{"typ":"JWT","alg":"RS256"}"#);
    /// let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next().ok_or("no payload")?)?)?;
    /// assert!(payload.starts_with(r#"{"aud":"test-client","jti":""#));
    /// assert!(payload.ends_with(r#","sub":"1","scopes":["read","write"]}"#));
    /// // Verify with the PEM key, as a Passport resource server does with
    /// // storage/oauth-public.key.
    /// assert!(server.rsa_public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn passport() -> Self {
        Self::with(
            Profile::Passport,
            &[("typ", Member::Json(Value::from("JWT"))), ("alg", Member::Alg)],
            &[
                ("aud", Member::Json(Value::from(TEST_CLIENT_ID))),
                ("jti", Member::Jti),
                ("iat", NOW),
                ("nbf", NOW),
                ("exp", IN_AN_HOUR),
                ("sub", Member::Json(Value::from("1"))),
                ("scopes", Member::Json(Value::Array(Vec::new()))),
            ],
        )
    }

    setters! {
        /// Signs with this algorithm (default `RS256`) and the server's current
        /// key of its family; the header's `alg` and automatic `kid` follow
        /// (unless replaced with [`header`](Self::header) or [`kid`](Self::kid)).
        #[must_use]
        pub fn alg(alg: JwtAlg) => alg = alg;
    }

    /// The header's `kid` is this string (an unknown or a rotated-out kid,
    /// for instance) instead of the current key's; added last if the header
    /// had none.
    #[must_use]
    pub fn kid(self, kid: impl Into<String>) -> Self {
        self.header("kid", Value::String(kid.into()))
    }

    /// No `kid` in the header.
    #[must_use]
    pub fn no_kid(mut self) -> Self {
        remove(&mut self.header, "kid");
        self
    }

    /// The header's `typ` (`"at+jwt"`, `"application/at+jwt"`, `"JWT"`…).
    #[must_use]
    pub fn typ(self, typ: impl Into<String>) -> Self {
        self.header("typ", Value::String(typ.into()))
    }

    /// No `typ` in the header.
    #[must_use]
    pub fn no_typ(mut self) -> Self {
        remove(&mut self.header, "typ");
        self
    }

    /// Sets a header member to this value: `jku`, `x5u`, `jwk`, `x5c`,
    /// `crit`… `"alg"` replaces the algorithm's name in the header without
    /// changing how the token is signed (`"RS256"` over an HMAC signature).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: Value) -> Self {
        put(&mut self.header, name.into(), Member::Json(value));
        self
    }

    /// Sets a claim to this value (replacing a standard one: `exp` as a
    /// float or a string, `aud` as an array…).
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: Value) -> Self {
        put(&mut self.claims, name.into(), Member::Json(value));
        self
    }

    /// Removes a claim (`"exp"`, `"iss"`, `"sub"`…).
    #[must_use]
    pub fn without(mut self, name: impl Into<String>) -> Self {
        remove(&mut self.claims, &name.into());
        self
    }

    /// The `iss` claim (default for [`new`](Self::new) and
    /// [`rfc9068`](Self::rfc9068): the server's issuer at minting time).
    #[must_use]
    pub fn iss(self, iss: impl Into<String>) -> Self {
        self.claim("iss", Value::String(iss.into()))
    }

    /// The `sub` claim.
    #[must_use]
    #[allow(clippy::should_implement_trait)] // named after the claim, not `std::ops::Sub`
    pub fn sub(self, sub: impl Into<String>) -> Self {
        self.claim("sub", Value::String(sub.into()))
    }

    /// The `aud` claim as one string (for an array:
    /// `.claim("aud", json!(["a", "b"]))`).
    #[must_use]
    pub fn aud(self, aud: impl Into<String>) -> Self {
        self.claim("aud", Value::String(aud.into()))
    }

    /// The client id: the `client_id` claim, or for
    /// [`passport`](Self::passport) the `aud` claim, where Passport puts it.
    #[must_use]
    pub fn client_id(self, id: impl Into<String>) -> Self {
        let name = match self.profile {
            Profile::Passport => "aud",
            Profile::Bare | Profile::Rfc9068 => "client_id",
        };
        self.claim(name, Value::String(id.into()))
    }

    /// The scopes, space separated: the `scope` string, or for
    /// [`passport`](Self::passport) the `scopes` array (split on whitespace).
    #[must_use]
    pub fn scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        match self.profile {
            Profile::Passport => {
                let scopes = scope.split_whitespace().map(Value::from).collect();
                self.claim("scopes", Value::Array(scopes))
            }
            Profile::Bare | Profile::Rfc9068 => self.claim("scope", Value::String(scope)),
        }
    }

    /// `exp` this long after minting.
    #[must_use]
    pub fn exp_in(mut self, d: Duration) -> Self {
        put(&mut self.claims, "exp".to_owned(), Member::Time(Offset::In(d)));
        self
    }

    /// `exp` this long before minting (an expired token).
    #[must_use]
    pub fn exp_ago(mut self, d: Duration) -> Self {
        put(&mut self.claims, "exp".to_owned(), Member::Time(Offset::Ago(d)));
        self
    }

    /// `nbf` this long after minting (a token not valid yet).
    #[must_use]
    pub fn nbf_in(mut self, d: Duration) -> Self {
        put(&mut self.claims, "nbf".to_owned(), Member::Time(Offset::In(d)));
        self
    }

    /// Flips a bit in the middle of the signature after signing, so the
    /// signature no longer verifies (the header and payload are unchanged).
    /// No effect with [`JwtAlg::None`], which has no signature.
    #[must_use]
    pub fn tamper(mut self) -> Self {
        self.tamper = true;
        self
    }

    /// The compact JWS, signed with `keys`, `issuer` as the issuer and
    /// `now_micros` (Unix time in microseconds) as the minting time.
    pub(crate) fn mint(&self, keys: &KeySet, issuer: &str, now_micros: i64) -> Result<String, Unspecified> {
        let header = self.render(&self.header, keys, issuer, now_micros);
        let claims = self.render(&self.claims, keys, issuer, now_micros);
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(object_text(&header, self.profile)),
            URL_SAFE_NO_PAD.encode(object_text(&claims, self.profile)),
        );
        let mut signature = keys.sign(&self.alg, signing_input.as_bytes())?;
        if self.tamper {
            let middle = signature.len() / 2;
            if let Some(byte) = signature.get_mut(middle) {
                *byte ^= 0x01;
            }
        }
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    fn render(
        &self,
        members: &[(String, Member)],
        keys: &KeySet,
        issuer: &str,
        now: i64,
    ) -> Vec<(String, Value)> {
        members
            .iter()
            .filter_map(|(name, member)| {
                let value = match member {
                    Member::Json(value) => value.clone(),
                    Member::Alg => Value::from(self.alg.name()),
                    Member::Kid => Value::from(keys.kid(&self.alg)?),
                    Member::Issuer => Value::from(issuer),
                    Member::Time(offset) => self.date(offset.apply(now)),
                    Member::Jti => match self.profile {
                        Profile::Passport => Value::from(random_hex(40)),
                        Profile::Bare | Profile::Rfc9068 => Value::from(random_id()),
                    },
                };
                Some((name.clone(), value))
            })
            .collect()
    }

    /// A NumericDate: whole seconds, or for Passport what lcobucci/jwt's
    /// `MicrosecondBasedDateConversion` makes of a PHP date with microseconds.
    fn date(&self, micros: i64) -> Value {
        let secs = micros.div_euclid(1_000_000);
        let fraction = micros.rem_euclid(1_000_000);
        if self.profile != Profile::Passport || fraction == 0 {
            return Value::from(secs);
        }
        // `(float) $date->format('U.u')`: the double nearest to that decimal,
        // which both PHP's `json_encode` and serde_json print shortest.
        format!("{secs}.{fraction:06}")
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::from(secs), Value::Number)
    }
}

impl Offset {
    fn apply(self, now: i64) -> i64 {
        match self {
            Offset::In(d) => now.saturating_add(micros(d)),
            Offset::Ago(d) => now.saturating_sub(micros(d)),
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Sets a member in place, or appends it.
fn put(members: &mut Vec<(String, Member)>, name: String, member: Member) {
    match members.iter_mut().find(|(n, _)| *n == name) {
        Some((_, slot)) => *slot = member,
        None => members.push((name, member)),
    }
}

fn remove(members: &mut Vec<(String, Member)>, name: &str) {
    members.retain(|(n, _)| n != name);
}

/// A JSON object with the members in this order. Passport tokens also get
/// PHP's escaping of U+2028 and U+2029, which `json_encode` applies even
/// with `JSON_UNESCAPED_UNICODE`.
fn object_text(members: &[(String, Value)], profile: Profile) -> String {
    let text = |value: &Value| {
        let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        match profile {
            Profile::Passport => json.replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029"),
            Profile::Bare | Profile::Rfc9068 => json,
        }
    };
    let mut out = String::from("{");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&text(&Value::String(name.clone())));
        out.push(':');
        out.push_str(&text(value));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "http://127.0.0.1:1";
    /// 2023-11-14T22:13:20.123456Z.
    const NOW: i64 = 1_700_000_000_123_456;

    fn keys() -> KeySet {
        KeySet::first().unwrap()
    }

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// The header and payload JSON texts, and the signature bytes.
    fn split(jwt: &str) -> (String, String, Vec<u8>) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        (
            String::from_utf8(b64(parts[0])).unwrap(),
            String::from_utf8(b64(parts[1])).unwrap(),
            b64(parts[2]),
        )
    }

    /// Verifies `jwt` with the public key the JWK Set lists under its `kid`,
    /// as a resource server would: `Ok` if the signature holds.
    fn verify_with_jwks(jwt: &str, jwks: &Value) -> Result<(), String> {
        let (header, _, sig) = split(jwt);
        let header: Value = serde_json::from_str(&header).unwrap();
        let kid = header["kid"].as_str().ok_or("no kid")?;
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .ok_or_else(|| format!("kid {kid} not in the JWK Set"))?;
        assert_eq!(jwk["use"], "sig");
        let signing_input = jwt.rsplit_once('.').unwrap().0.as_bytes();
        let field = |name: &str| b64(jwk[name].as_str().unwrap());
        let ec_point = || [vec![0x04], field("x"), field("y")].concat();
        let alg = header["alg"].as_str().unwrap();
        let ok = match alg {
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
                assert_eq!(jwk["kty"], "RSA");
                let params: &signature::RsaParameters = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                let key = RsaPublicKeyComponents {
                    n: field("n"),
                    e: field("e"),
                };
                key.verify(params, signing_input, &sig).is_ok()
            }
            "ES256" | "ES384" | "EdDSA" => {
                let (kty, crv, verifier, point): (_, _, &dyn VerificationAlgorithm, _) = match alg {
                    "ES256" => ("EC", "P-256", &signature::ECDSA_P256_SHA256_FIXED, ec_point()),
                    "ES384" => ("EC", "P-384", &signature::ECDSA_P384_SHA384_FIXED, ec_point()),
                    _ => ("OKP", "Ed25519", &signature::ED25519, field("x")),
                };
                assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some(kty), Some(crv)));
                UnparsedPublicKey::new(verifier, point)
                    .verify(signing_input, &sig)
                    .is_ok()
            }
            other => return Err(format!("unexpected alg {other}")),
        };
        ok.then_some(()).ok_or_else(|| "bad signature".to_owned())
    }

    const SERVER_ALGS: [JwtAlg; 9] = [
        JwtAlg::Rs256,
        JwtAlg::Rs384,
        JwtAlg::Rs512,
        JwtAlg::Ps256,
        JwtAlg::Ps384,
        JwtAlg::Ps512,
        JwtAlg::Es256,
        JwtAlg::Es384,
        JwtAlg::EdDsa,
    ];

    #[test]
    fn every_algorithm_verifies_against_the_published_keys_and_tamper_breaks_it() {
        let keys = keys();
        for alg in SERVER_ALGS {
            let spec = JwtSpec::rfc9068().alg(alg.clone());
            let jwt = spec.mint(&keys, ISSUER, NOW).unwrap();
            let (header, _, sig) = split(&jwt);
            let expected = format!(
                r#"{{"typ":"at+jwt","alg":"{}","kid":"{}"}}"#,
                alg.name(),
                keys.kid(&alg).unwrap()
            );
            assert_eq!(header, expected);
            let sig_len = match alg {
                JwtAlg::Es256 => 64,
                JwtAlg::Es384 => 96,
                JwtAlg::EdDsa => 64,
                _ => 256,
            };
            assert_eq!(sig.len(), sig_len, "{alg:?}");
            assert_eq!(verify_with_jwks(&jwt, keys.jwks()), Ok(()), "{alg:?}");

            let tampered = spec.tamper().mint(&keys, ISSUER, NOW).unwrap();
            let (_, _, bad_sig) = split(&tampered);
            assert_eq!(bad_sig.len(), sig_len);
            assert_eq!(
                verify_with_jwks(&tampered, keys.jwks()),
                Err("bad signature".to_owned()),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn rotated_keys_do_not_verify_old_tokens() {
        let old = keys();
        let new = old.rotated().unwrap();
        let jwt = JwtSpec::new().mint(&old, ISSUER, NOW).unwrap();
        assert!(verify_with_jwks(&jwt, new.jwks())
            .unwrap_err()
            .contains("not in the JWK Set"));
        // The same kid pointed at the new key set: the new RSA key refuses it.
        let relabelled = JwtSpec::new().kid(new.rsa_kid()).mint(&old, ISSUER, NOW).unwrap();
        assert_eq!(
            verify_with_jwks(&relabelled, new.jwks()),
            Err("bad signature".to_owned())
        );
    }

    #[test]
    fn hs256_and_none() {
        let keys = keys();
        let secret = keys.rsa_spki_der();
        let jwt = JwtSpec::new()
            .alg(JwtAlg::Hs256(secret.clone()))
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        let (header, _, sig) = split(&jwt);
        assert_eq!(header, r#"{"alg":"HS256"}"#, "no server key, so no kid");
        let signing_input = jwt.rsplit_once('.').unwrap().0.as_bytes();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        ring::hmac::verify(&key, signing_input, &sig).unwrap();

        // Algorithm confusion as an attacker writes it: RS256 and the RSA kid
        // in the header, an HMAC keyed with the public key as the signature.
        let confused = JwtSpec::new()
            .alg(JwtAlg::Hs256(secret.clone()))
            .header("alg", json!("RS256"))
            .kid(keys.rsa_kid())
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        let (header, _, sig) = split(&confused);
        assert_eq!(header, r#"{"alg":"RS256","kid":"rsa-1"}"#);
        let signing_input = confused.rsplit_once('.').unwrap().0.as_bytes();
        ring::hmac::verify(&key, signing_input, &sig).unwrap();
        assert_eq!(
            verify_with_jwks(&confused, keys.jwks()),
            Err("bad signature".to_owned())
        );

        let unsigned = JwtSpec::rfc9068()
            .alg(JwtAlg::None)
            .tamper()
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        assert!(unsigned.ends_with('.'), "{unsigned}");
        let (header, _, sig) = split(&unsigned);
        assert_eq!(header, r#"{"typ":"at+jwt","alg":"none"}"#);
        assert!(sig.is_empty());
    }

    #[test]
    fn rfc9068_and_bare_shapes() {
        let keys = keys();
        let jwt = JwtSpec::rfc9068().mint(&keys, ISSUER, NOW).unwrap();
        let (_, payload, _) = split(&jwt);
        let jti = serde_json::from_str::<Value>(&payload).unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(jti.len(), 22);
        assert_eq!(
            payload,
            format!(
                r#"{{"iss":"{ISSUER}","sub":"alice","client_id":"test-client","iat":1700000000,"exp":1700003600,"jti":"{jti}"}}"#
            )
        );

        let jwt = JwtSpec::rfc9068()
            .aud("https://api.example")
            .scope("read write")
            .client_id("other")
            .iss("https://issuer.example/")
            .sub("bob")
            .typ("application/at+jwt")
            .without("jti")
            .exp_ago(Duration::from_secs(60))
            .nbf_in(Duration::from_secs(30))
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        let (header, payload, _) = split(&jwt);
        assert_eq!(
            header,
            r#"{"typ":"application/at+jwt","alg":"RS256","kid":"rsa-1"}"#
        );
        assert_eq!(
            payload,
            r#"{"iss":"https://issuer.example/","sub":"bob","client_id":"other","iat":1700000000,"exp":1699999940,"aud":"https://api.example","scope":"read write","nbf":1700000030}"#
        );

        let jwt = JwtSpec::new()
            .no_kid()
            .typ("JWT")
            .header("crit", json!(["exp"]))
            .header("jku", json!("https://evil.example/jwks"))
            .claim("exp", json!(1_700_000_000.5))
            .claim("aud", json!(["a", "b"]))
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        let (header, payload, _) = split(&jwt);
        assert_eq!(
            header,
            r#"{"alg":"RS256","typ":"JWT","crit":["exp"],"jku":"https://evil.example/jwks"}"#
        );
        assert_eq!(
            payload,
            format!(r#"{{"iss":"{ISSUER}","iat":1700000000,"exp":1700000000.5,"aud":["a","b"]}}"#)
        );
        assert_eq!(verify_with_jwks(&jwt, keys.jwks()), Err("no kid".to_owned()));
    }

    #[test]
    fn an_explicit_kid_survives_a_change_of_algorithm() {
        let keys = keys();
        let jwt = JwtSpec::new()
            .kid("unknown")
            .alg(JwtAlg::Es256)
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        assert_eq!(split(&jwt).0, r#"{"alg":"ES256","kid":"unknown"}"#);
        let jwt = JwtSpec::new()
            .alg(JwtAlg::EdDsa)
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        assert_eq!(split(&jwt).0, r#"{"alg":"EdDSA","kid":"ed25519-1"}"#);
    }

    /// The bytes league/oauth2-server's `AccessTokenTrait::convertToJWT`
    /// makes through lcobucci/jwt's default builder and formatters.
    #[test]
    fn passport_bytes() {
        let keys = keys();
        let jwt = JwtSpec::passport()
            .scope("read write")
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        let (header, payload, _) = split(&jwt);
        assert_eq!(header, r#"{"typ":"JWT","alg":"RS256"}"#);
        let jti = serde_json::from_str::<Value>(&payload).unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(jti.len(), 80);
        assert!(
            jti.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{jti}"
        );
        assert_eq!(
            payload,
            format!(
                r#"{{"aud":"test-client","jti":"{jti}","iat":1700000000.123456,"nbf":1700000000.123456,"exp":1700003600.123456,"sub":"1","scopes":["read","write"]}}"#
            )
        );
        // No kid: a Passport resource server verifies with its one PEM key.
        let signing_input = jwt.rsplit_once('.').unwrap().0.as_bytes();
        let jwk = &keys.jwks()["keys"][0];
        let key = RsaPublicKeyComponents {
            n: b64(jwk["n"].as_str().unwrap()),
            e: b64(jwk["e"].as_str().unwrap()),
        };
        key.verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signing_input,
            &split(&jwt).2,
        )
        .unwrap();
    }

    #[test]
    fn passport_dates_scopes_and_escapes() {
        let keys = keys();
        let payload = |spec: JwtSpec, now: i64| split(&spec.mint(&keys, ISSUER, now).unwrap()).1;

        // Whole second: integers, as `MicrosecondBasedDateConversion` does
        // when `format('u') === '000000'`; no scopes: `[]`.
        let text = payload(JwtSpec::passport().without("jti"), 1_700_000_000_000_000);
        assert_eq!(
            text,
            r#"{"aud":"test-client","iat":1700000000,"nbf":1700000000,"exp":1700003600,"sub":"1","scopes":[]}"#
        );
        // `(float) "1700000000.100000"` prints shortest: 1700000000.1.
        let text = payload(
            JwtSpec::passport()
                .without("jti")
                .client_id("3")
                .sub("42")
                .exp_in(Duration::from_micros(1))
                .nbf_in(Duration::from_secs(5)),
            1_700_000_000_100_000,
        );
        assert_eq!(
            text,
            r#"{"aud":"3","iat":1700000000.1,"nbf":1700000005.1,"exp":1700000000.100001,"sub":"42","scopes":[]}"#
        );
        // `JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE`, but PHP still
        // escapes the line and paragraph separators.
        let text = payload(
            JwtSpec::passport()
                .without("jti")
                .without("iat")
                .without("nbf")
                .without("exp")
                .sub("https://ex.example/ü\u{2028}\u{2029}\"\n"),
            NOW,
        );
        assert_eq!(
            text,
            r#"{"aud":"test-client","sub":"https://ex.example/ü\u2028\u2029\"\n","scopes":[]}"#
        );
    }

    /// What PHP 8.2 printed, running lcobucci/jwt 5.4.0's
    /// `Configuration::forAsymmetricSigner(new Sha256(), …)->builder()` with
    /// the calls of league/oauth2-server's `AccessTokenTrait::convertToJWT`,
    /// the first committed RSA key, the date `1700000000.123456`, an expiry an
    /// hour later, the token id `abc`, the user `1` and the scopes `read`,
    /// `write`. RSASSA-PKCS1-v1_5 is deterministic, so the whole token,
    /// signature included, must be the same.
    const PHP_PASSPORT_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ0ZXN0LWNsaWVudCIsImp0aSI6ImFiYyIsImlhdCI6MTcwMDAwMDAwMC4xMjM0NTYsIm5iZiI6MTcwMDAwMDAwMC4xMjM0NTYsImV4cCI6MTcwMDAwMzYwMC4xMjM0NTYsInN1YiI6IjEiLCJzY29wZXMiOlsicmVhZCIsIndyaXRlIl19.ZwCrZKUuDgnKtEl2pvpz7_KuErylj8yR0Xb3v1ZoOIYrDkoSsCo4BhZEFSRd-nVm1rq66E7lYJ-Wlr7MKXdxELfIYs_MpHB4GfNNz7ICQKGUbTu62bKd8xwJi0uG3jgtDuj4h6-2e8pzH2N92GuJif-SvTrPsGa1vxy3P-BApM9ufYYBWZEUWFOO2bG8SBl0RJiMfV9MZmm5RpuCSDzTnZMBWcNv7YsVlNXiaT4nz3U625JkERoncgnQPE6Q4umlzD-CYcXAZrwRoG9G5n1nJ7qHKpsocr78cvuD_XOaxxQrIfJbgVmS0JH5oOIwr-frCl286hDKp1zubmX5dCZXwg";

    #[test]
    fn passport_token_is_byte_identical_to_lcobucci_jwt() {
        let keys = KeySet::generate(1, 0).unwrap();
        let jwt = JwtSpec::passport()
            .scope("read write")
            .claim("jti", json!("abc"))
            .mint(&keys, ISSUER, NOW)
            .unwrap();
        assert_eq!(jwt, PHP_PASSPORT_TOKEN);
    }

    /// Microsecond dates as `MicrosecondBasedDateConversion` and
    /// `JoseEncoder::jsonEncode` render them under PHP 8.2
    /// (`serialize_precision = -1`); 20,000 random ones matched too.
    #[test]
    fn passport_dates_match_php() {
        let spec = JwtSpec::passport();
        for (micros, php) in [
            (1727741612000000, "1727741612"),
            (1749725688000001, "1749725688.000001"),
            (1782953265000010, "1782953265.00001"),
            (1707259256100000, "1707259256.1"),
            (1722904748999999, "1722904748.999999"),
            (1733316620500000, "1733316620.5"),
            (1772560214123456, "1772560214.123456"),
            (1701189912000100, "1701189912.0001"),
            (1768334472999990, "1768334472.99999"),
            (1766732496000005, "1766732496.000005"),
            (1731473803032895, "1731473803.032895"),
            (1720943737129708, "1720943737.129708"),
        ] {
            assert_eq!(
                serde_json::to_string(&spec.date(micros)).unwrap(),
                php,
                "{micros}"
            );
        }
    }
}
