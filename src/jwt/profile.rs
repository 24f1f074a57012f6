//! Profiles: what a JWT access token must look like, and how its claims
//! become a [`Principal`](crate::Principal).

use serde_json::{Map, Value};

use crate::claims::numeric_date;
use crate::claims::{audiences, extra, scopes, string, string_or_number};
use crate::principal::{Binding, Claims, OtherKind, Scopes, Timestamp};
use crate::validate::NO_AUDIENCE;

/// The shape of the JWT access tokens a [`JwtVerifier`](super::JwtVerifier)
/// accepts.
///
/// | profile | `typ` header | required claims | scopes from |
/// |---|---|---|---|
/// | [`Rfc9068`](Self::Rfc9068) (default) | `at+jwt` or `application/at+jwt` | `iss`, `exp`, `aud`, `sub`, `client_id`, `iat`, `jti` | `scope` (space-delimited) |
/// | [`Passport`](Self::Passport) | absent or `JWT` | `exp`, `aud` | `scopes` (JSON array) |
/// | [`Generic`](Self::Generic) | absent, `JWT` or `at+jwt`; or the one set with `required_typ` | `exp` | the first present of `scope`, `scp` (string or array; names configurable) |
///
/// **RFC 9068**, as node-oidc-provider, Keycloak (with the RFC 9068 option)
/// or Auth0 issue them:
///
/// ```text
/// header  {"alg":"RS256","typ":"at+jwt","kid":"k1"}
/// payload {"iss":"https://as.example","sub":"alice","aud":"https://api.example",
///          "client_id":"app","iat":1767225600,"exp":1767229200,"jti":"5f1…","scope":"read write"}
/// ```
///
/// **Laravel Passport** (league/oauth2-server, lcobucci/jwt): RS256, usually
/// no `kid`, no `iss`; `aud` is the OAuth client's id, `sub` the user's id,
/// and the scopes a JSON array. Time claims are numbers, possibly with a
/// fraction (NumericDate allows it). The client id is read from `aud`:
///
/// ```text
/// header  {"typ":"JWT","alg":"RS256"}
/// payload {"aud":"3","jti":"9c4…","iat":1767225600.123456,"nbf":1767225600.123456,
///          "exp":1798761600.123456,"sub":"42","scopes":["read","admin"]}
/// ```
///
/// Passport tokens cannot be revoked from the resource server's side: there
/// is no introspection endpoint. Keep their lifetime short
/// (`Passport::tokensExpireIn`), or, where revocation matters, put an
/// introspection endpoint in front and combine both sources in a
/// [`Verifier`](crate::Verifier) with `introspect_jwts_too`.
///
/// **Generic**: Okta and Microsoft Entra put scopes in `scp` (Entra as a
/// space-delimited string, Okta as an array); other servers in `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JwtProfile {
    /// RFC 9068, JWT profile for OAuth 2.0 access tokens.
    #[default]
    Rfc9068,
    /// Laravel Passport / league/oauth2-server.
    Passport,
    /// Any JWT access token: only `exp` is required.
    Generic,
}

/// How a profile reads a token, with the settings that refine it.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) profile: JwtProfile,
    /// For the generic profile: the `typ` to require.
    pub(crate) required_typ: Option<Box<str>>,
    /// For the generic profile: where scopes are read, first present wins.
    pub(crate) scope_claims: Box<[Box<str>]>,
}

impl Shape {
    /// Checks the `typ` header against the profile.
    pub(crate) fn check_typ(&self, typ: Option<&str>) -> Result<(), &'static str> {
        // Media types are case-insensitive, and "application/" may be left out
        // (RFC 7515 §4.1.9).
        let typ = typ.map(|t| {
            let lower = t.to_ascii_lowercase();
            lower
                .strip_prefix("application/")
                .map(str::to_owned)
                .unwrap_or(lower)
        });
        let ok = match self.profile {
            JwtProfile::Rfc9068 => typ.as_deref() == Some("at+jwt"),
            JwtProfile::Passport => typ.is_none() || typ.as_deref() == Some("jwt"),
            JwtProfile::Generic => match &self.required_typ {
                // Other explicit types are other JWTs signed with the same key:
                // logout tokens, security events, signed introspection answers.
                None => matches!(typ.as_deref(), None | Some("jwt" | "at+jwt")),
                Some(required) => {
                    let required = required.to_ascii_lowercase();
                    let required = required.strip_prefix("application/").unwrap_or(&required);
                    typ.as_deref() == Some(required)
                }
            },
        };
        if ok {
            Ok(())
        } else if self.profile == JwtProfile::Rfc9068 {
            Err("the token is not typed as an access token (typ at+jwt)")
        } else {
            Err("the token has another type (typ)")
        }
    }

    /// The claims as cached, or why the token does not fit the profile.
    pub(crate) fn claims(&self, mut map: Map<String, Value>) -> Result<Claims, &'static str> {
        let required: &[&str] = match self.profile {
            JwtProfile::Rfc9068 => &["iss", "exp", "aud", "sub", "client_id", "iat", "jti"],
            JwtProfile::Passport => &["exp", "aud"],
            JwtProfile::Generic => &["exp"],
        };
        if let Some(missing) = required.iter().find(|name| !map.contains_key(**name)) {
            return Err(match *missing {
                "iss" => "the token has no issuer (iss)",
                "exp" => "the token has no expiry (exp)",
                "aud" => NO_AUDIENCE,
                "sub" => "the token has no subject (sub)",
                "client_id" => "the token has no client_id",
                "iat" => "the token has no issue time (iat)",
                _ => "the token has no identifier (jti)",
            });
        }
        let scopes = match self.profile {
            JwtProfile::Rfc9068 => match map.remove("scope") {
                None | Some(Value::Null) => Scopes::default(),
                Some(Value::String(s)) => s.parse().unwrap_or_default(),
                Some(_) => return Err("the token's scope is not a string"),
            },
            JwtProfile::Passport => {
                scopes(map.remove("scopes")).map_err(|_| "the token's scopes are not strings")?
            }
            JwtProfile::Generic => {
                let name = self.scope_claims.iter().find(|name| map.contains_key(&***name));
                match name {
                    Some(name) => {
                        scopes(map.remove(&**name)).map_err(|_| "the token's scopes are not strings")?
                    }
                    None => Scopes::default(),
                }
            }
        };
        let reason = |e: crate::claims::AnswerError| e.reason();
        let audiences = audiences(map.remove("aud")).map_err(reason)?;
        let mut client_id =
            string(map.remove("client_id"), "the token's client_id is not a string").map_err(reason)?;
        if self.profile == JwtProfile::Passport && client_id.is_none() {
            // Passport's `aud` is the client the token was issued to.
            client_id = audiences.first().cloned();
        }
        let other_kind = OtherKind::declared(map.get("token_use"), map.get("typ"), None);
        let binding = Binding::of(&map);
        Ok(Claims {
            binding,
            scopes,
            subject: string_or_number(map.remove("sub"), "the token's sub is not a string")
                .map_err(reason)?,
            username: string(map.remove("username"), "the token's username is not a string")
                .map_err(reason)?,
            client_id,
            token_type: None,
            issuer: string(map.remove("iss"), "the token's iss is not a string").map_err(reason)?,
            jwt_id: string(map.remove("jti"), "the token's jti is not a string").map_err(reason)?,
            audiences,
            // Whole seconds, rounded down: `exp` then ends up to a second
            // early, and `nbf` (Passport sets it to the issue time, with
            // microseconds) is not refused for the rest of its first second.
            expires_at: Timestamp::new(numeric_date(map.remove("exp").as_ref())?),
            issued_at: Timestamp::new(numeric_date(map.remove("iat").as_ref())?),
            not_before: Timestamp::new(numeric_date(map.remove("nbf").as_ref())?),
            other_kind,
            extra: extra(map),
            received_at_ms: 0,
            shared_until_ms: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(profile: JwtProfile) -> Shape {
        Shape {
            profile,
            required_typ: None,
            scope_claims: vec!["scope".into(), "scp".into()].into(),
        }
    }

    fn map(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn typ_per_profile() {
        let rfc = shape(JwtProfile::Rfc9068);
        assert!(rfc.check_typ(Some("at+jwt")).is_ok());
        assert!(rfc.check_typ(Some("application/AT+JWT")).is_ok());
        assert!(rfc.check_typ(Some("JWT")).is_err());
        assert!(rfc.check_typ(None).is_err());
        let passport = shape(JwtProfile::Passport);
        assert!(passport.check_typ(None).is_ok());
        assert!(passport.check_typ(Some("JWT")).is_ok());
        assert!(passport.check_typ(Some("at+jwt")).is_err());
        let mut generic = shape(JwtProfile::Generic);
        assert!(generic.check_typ(None).is_ok());
        assert!(generic.check_typ(Some("JWT")).is_ok());
        assert!(generic.check_typ(Some("at+jwt")).is_ok());
        assert!(generic.check_typ(Some("logout+jwt")).is_err());
        assert!(generic.check_typ(Some("token-introspection+jwt")).is_err());
        generic.required_typ = Some("at+jwt".into());
        assert!(generic.check_typ(Some("application/at+jwt")).is_ok());
        assert!(generic.check_typ(None).is_err());
    }

    #[test]
    fn rfc9068_requires_its_claims() {
        let full =
            r#"{"iss":"i","exp":2,"aud":"a","sub":"s","client_id":"c","iat":1,"jti":"j","scope":"b a"}"#;
        let claims = shape(JwtProfile::Rfc9068).claims(map(full)).unwrap();
        assert_eq!(claims.scopes.as_str(), "a b");
        assert_eq!(claims.client_id.as_deref(), Some("c"));
        for member in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
            let mut partial = map(full);
            partial.remove(member);
            let error = shape(JwtProfile::Rfc9068).claims(partial).err().unwrap();
            assert!(error.contains(member), "{member}: {error}");
        }
    }

    #[test]
    fn passport_reads_scopes_array_and_client_from_aud() {
        let token = r#"{"aud":"3","jti":"j","iat":1767225600.123456,"nbf":1767225600.5,"exp":1798761600.999,"sub":"42","scopes":["read","admin"]}"#;
        let claims = shape(JwtProfile::Passport).claims(map(token)).unwrap();
        assert_eq!(claims.scopes.as_str(), "admin read");
        assert_eq!(claims.client_id.as_deref(), Some("3"));
        assert_eq!(claims.subject.as_deref(), Some("42"));
        assert_eq!(claims.expires_at.get(), Some(1_798_761_600), "exp rounded down");
        assert_eq!(claims.not_before.get(), Some(1_767_225_600), "nbf rounded down");
    }

    #[test]
    fn generic_reads_scp_as_string_or_array() {
        let generic = shape(JwtProfile::Generic);
        let entra = generic
            .claims(map(r#"{"exp":2,"scp":"User.Read Files.Read"}"#))
            .unwrap();
        assert_eq!(entra.scopes.as_str(), "Files.Read User.Read");
        let okta = generic.claims(map(r#"{"exp":2,"scp":["a","b"]}"#)).unwrap();
        assert_eq!(okta.scopes.as_str(), "a b");
        assert!(
            generic.claims(map(r#"{"scope":"a"}"#)).is_err(),
            "exp is required"
        );
        // Only Passport takes the client from `aud`, and only without
        // `client_id`.
        let no_client = generic.claims(map(r#"{"exp":2,"aud":"x"}"#)).unwrap();
        assert_eq!(no_client.client_id, None);
        let passport = shape(JwtProfile::Passport)
            .claims(map(r#"{"exp":2,"aud":"3","client_id":"7"}"#))
            .unwrap();
        assert_eq!(passport.client_id.as_deref(), Some("7"));
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(Some(&Value::from(5))), Ok(Some(5)));
        assert_eq!(numeric_date(Some(&Value::from(5.5))), Ok(Some(5)));
        assert_eq!(numeric_date(Some(&Value::from(-0.5))), Ok(Some(-1)));
        assert!(numeric_date(Some(&Value::from("5"))).is_err());
        assert!(numeric_date(Some(&Value::from(1e300))).is_err());
    }
}
