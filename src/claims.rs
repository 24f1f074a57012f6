//! Reading an introspection answer (RFC 7662 §2.2) leniently, the way real
//! servers send it, while failing closed on anything that could be misread.
//!
//! - `active` must be a JSON boolean; anything else is an AS fault (I4).
//! - `scope`: a space-delimited string, a JSON array of strings, empty, or absent (I6).
//! - `exp`, `iat`, `nbf`: integers; numeric strings and integral floats are tolerated (I7).
//! - `aud`: a string or an array of strings.
//! - `sub` may be a number (some servers use numeric user ids).
//! - An inactive answer is read as inactive whatever else it carries (I5).

use serde_json::{Map, Value};

use crate::principal::{Binding, Claims, OtherKind, Principal, Scopes, Timestamp};

/// A parsed answer.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Active(Principal),
    Inactive,
}

/// The answer does not follow RFC 7662; the token's state is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable introspection answer: {reason}")]
pub struct AnswerError {
    reason: &'static str,
}

impl AnswerError {
    fn new(reason: &'static str) -> Self {
        Self { reason }
    }

    fn inactive() -> Self {
        Self::new("the token is not active")
    }

    /// What was wrong with the answer.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Read here, with the answer parser, so that `principal` (the type) does not
/// depend on `introspect` (which builds principals).
impl Principal {
    /// Parses an active RFC 7662 introspection answer.
    ///
    /// Meant for tests and custom integrations; the middleware does this for
    /// you. An inactive answer or one that does not follow RFC 7662 is an
    /// error.
    pub fn from_json(json: &[u8]) -> Result<Self, AnswerError> {
        match parse_answer(json)? {
            Answer::Active(principal) => Ok(principal),
            Answer::Inactive => Err(AnswerError::inactive()),
        }
    }
}

pub(crate) fn parse_answer(body: &[u8]) -> Result<Answer, AnswerError> {
    let value: UniqueMembers = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) {
            AnswerError::new("a member appears twice")
        } else if e.is_data() {
            AnswerError::new("not a JSON object")
        } else {
            AnswerError::new("not JSON")
        }
    })?;
    let UniqueMembers(mut map) = value;
    match map.remove("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Answer::Inactive),
        Some(_) => return Err(AnswerError::new("`active` is not a boolean")),
        None => return Err(AnswerError::new("`active` is missing")),
    }
    let token_type = string(map.remove("token_type"), "`token_type` is not a string")?;
    let other_kind = OtherKind::declared(map.get("token_use"), map.get("typ"), token_type.as_deref());
    let binding = Binding::of(&map);
    let claims = Claims {
        other_kind,
        binding,
        scopes: scopes(map.remove("scope"))?,
        subject: string_or_number(map.remove("sub"), "`sub` is not a string")?,
        username: string(map.remove("username"), "`username` is not a string")?,
        client_id: string(map.remove("client_id"), "`client_id` is not a string")?,
        token_type,
        issuer: string(map.remove("iss"), "`iss` is not a string")?,
        jwt_id: string(map.remove("jti"), "`jti` is not a string")?,
        audiences: audiences(map.remove("aud"))?,
        expires_at: Timestamp::new(timestamp(map.remove("exp"), "`exp` is not a timestamp")?),
        issued_at: Timestamp::new(timestamp(map.remove("iat"), "`iat` is not a timestamp")?),
        not_before: Timestamp::new(timestamp(map.remove("nbf"), "`nbf` is not a timestamp")?),
        extra: extra(map),
        received_at_ms: 0,
        shared_until_ms: 0,
    };
    Ok(Answer::Active(Principal::from_claims(claims)))
}

/// A top-level JSON object whose members are unique: with a repeated
/// `active`, which one counts would depend on the parser, so such an answer
/// fails closed.
pub(crate) struct UniqueMembers(pub(crate) Map<String, Value>);

const DUPLICATE: &str = "duplicate member";

impl<'de> serde::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueMembers;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<UniqueMembers, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = access.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(DUPLICATE));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueMembers(map))
            }
        }

        deserializer.deserialize_map(Visitor)
    }
}

pub(crate) fn scopes(value: Option<Value>) -> Result<Scopes, AnswerError> {
    match value {
        None | Some(Value::Null) => Ok(Scopes::default()),
        Some(Value::String(s)) => Ok(Scopes::from_iter_unsorted(s.split_ascii_whitespace())),
        Some(Value::Array(items)) => {
            let mut scopes = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.contains(' ') => scopes.push(s),
                    _ => return Err(AnswerError::new("`scope` array holds a non-scope")),
                }
            }
            Ok(Scopes::from_iter_unsorted(scopes))
        }
        Some(_) => Err(AnswerError::new("`scope` is neither a string nor an array")),
    }
}

pub(crate) fn string(value: Option<Value>, reason: &'static str) -> Result<Option<Box<str>>, AnswerError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.into_boxed_str())),
        Some(_) => Err(AnswerError::new(reason)),
    }
}

pub(crate) fn string_or_number(
    value: Option<Value>,
    reason: &'static str,
) -> Result<Option<Box<str>>, AnswerError> {
    match value {
        Some(Value::Number(n)) => Ok(Some(n.to_string().into_boxed_str())),
        other => string(other, reason),
    }
}

fn timestamp(value: Option<Value>, reason: &'static str) -> Result<Option<i64>, AnswerError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
                _ => Err(AnswerError::new(reason)),
            }
        }
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| AnswerError::new(reason)),
        Some(_) => Err(AnswerError::new(reason)),
    }
}

pub(crate) fn audiences(value: Option<Value>) -> Result<Box<[Box<str>]>, AnswerError> {
    match value {
        None | Some(Value::Null) => Ok(Box::default()),
        Some(Value::String(s)) => Ok(vec![s.into_boxed_str()].into_boxed_slice()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.into_boxed_str()),
                _ => Err(AnswerError::new("`aud` array holds a non-string")),
            })
            .collect(),
        Some(_) => Err(AnswerError::new("`aud` is neither a string nor an array")),
    }
}

pub(crate) fn extra(map: Map<String, Value>) -> Option<Box<Map<String, Value>>> {
    (!map.is_empty()).then(|| Box::new(map))
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, which may have a
/// fraction; rounded down to whole seconds.
pub(crate) fn numeric_date(value: Option<&Value>) -> Result<Option<i64>, &'static str> {
    let invalid = "the token has a time claim that is not a NumericDate";
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => match n.as_f64().map(f64::floor) {
                // Beyond ±2^53 a float is no longer a whole second anyway.
                Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(invalid),
            },
        },
        Some(_) => Err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(json: &str) -> Principal {
        match parse_answer(json.as_bytes()) {
            Ok(Answer::Active(p)) => p,
            other => panic!("expected active, got {other:?}"),
        }
    }

    fn fault(json: &str) -> AnswerError {
        match parse_answer(json.as_bytes()) {
            Err(e) => e,
            other => panic!("expected an error for {json}, got {other:?}"),
        }
    }

    #[test]
    fn dot_shape() {
        let p = active(
            r#"{"active": true, "scope": "read write", "exp": 1795350521, "client_id": "pw-client", "username": "alice"}"#,
        );
        assert_eq!(p.username(), Some("alice"));
        assert_eq!(p.client_id(), Some("pw-client"));
        assert_eq!(p.expires_at(), Some(1795350521));
        assert!(p.scopes().contains_all(["read", "write"]));
        assert_eq!(p.audiences().len(), 0);
        let p = active(r#"{"active": true, "scope": "read", "aud": ["https://api.example"]}"#);
        assert_eq!(p.audiences().collect::<Vec<_>>(), ["https://api.example"]);
    }

    #[test]
    fn hydra_shape() {
        let p = active(
            r#"{"active":true,"sub":"user-1","client_id":"c","scope":"openid offline",
                "exp":1795350521,"iat":1795346921,"nbf":1795346921,"aud":["a","b"],
                "iss":"https://hydra.example/","token_type":"Bearer","token_use":"access_token",
                "ext":{"tenant":"acme"}}"#,
        );
        assert_eq!(p.subject(), Some("user-1"));
        assert_eq!(p.issuer(), Some("https://hydra.example/"));
        assert_eq!(p.token_type(), Some("Bearer"));
        assert_eq!(p.issued_at(), Some(1795346921));
        assert_eq!(p.not_before(), Some(1795346921));
        assert_eq!(p.audiences().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.claim::<String>("token_use").unwrap().unwrap(), "access_token");
        let ext: serde_json::Value = p.claim("ext").unwrap().unwrap();
        assert_eq!(ext["tenant"], "acme");
    }

    #[test]
    fn i5_inactive_ignores_other_members() {
        assert!(matches!(
            parse_answer(br#"{"active":false}"#),
            Ok(Answer::Inactive)
        ));
        assert!(matches!(
            parse_answer(br#"{"active":false,"scope":"admin"}"#),
            Ok(Answer::Inactive)
        ));
    }

    #[test]
    fn i4_active_must_be_boolean() {
        for json in [
            r#"{}"#,
            r#"{"active":"true"}"#,
            r#"{"active":1}"#,
            r#"{"active":null}"#,
        ] {
            fault(json);
        }
        for json in ["[]", "null", "true", "<html></html>", r#"{"active": tr"#, ""] {
            fault(json);
        }
    }

    #[test]
    fn i6_scope_forms() {
        assert!(active(r#"{"active":true,"scope":["a","b"]}"#)
            .scopes()
            .contains_all(["a", "b"]));
        assert!(active(r#"{"active":true,"scope":""}"#).scopes().is_empty());
        assert!(active(r#"{"active":true}"#).scopes().is_empty());
        assert_eq!(
            active(r#"{"active":true,"scope":"  a   b a "}"#).scopes().len(),
            2
        );
        fault(r#"{"active":true,"scope":5}"#);
        fault(r#"{"active":true,"scope":["a b"]}"#);
        fault(r#"{"active":true,"scope":[1]}"#);
    }

    #[test]
    fn i7_timestamps_and_audiences() {
        assert_eq!(
            active(r#"{"active":true,"exp":"1795350521"}"#).expires_at(),
            Some(1795350521)
        );
        assert_eq!(
            active(r#"{"active":true,"exp":1795350521.0}"#).expires_at(),
            Some(1795350521)
        );
        fault(r#"{"active":true,"exp":1795350521.5}"#);
        fault(r#"{"active":true,"exp":"soon"}"#);
        fault(r#"{"active":true,"exp":true}"#);
        fault(r#"{"active":true,"nbf":[1]}"#);
        assert_eq!(
            active(r#"{"active":true,"aud":"x"}"#)
                .audiences()
                .collect::<Vec<_>>(),
            ["x"]
        );
        fault(r#"{"active":true,"aud":5}"#);
        fault(r#"{"active":true,"aud":[5]}"#);
    }

    #[test]
    fn float_timestamps_stop_below_1e15() {
        // Integral floats are read while they are exact integers well within
        // i64; from 1e15 on they are refused.
        assert_eq!(
            active(r#"{"active":true,"exp":999999999999999.0}"#).expires_at(),
            Some(999_999_999_999_999)
        );
        assert_eq!(active(r#"{"active":true,"nbf":-5.0}"#).not_before(), Some(-5));
        for exp in ["1e15", "1.0e15", "-1e15", "1e300"] {
            let error = fault(&format!(r#"{{"active":true,"exp":{exp}}}"#));
            assert_eq!(error.reason(), "`exp` is not a timestamp", "{exp}");
        }
    }

    #[test]
    fn repeated_members_fail_closed() {
        for json in [
            r#"{"active":false,"active":true}"#,
            r#"{"active":true,"active":false}"#,
        ] {
            assert_eq!(fault(json).reason(), "a member appears twice");
        }
        fault(r#"{"active":true,"scope":"a","scope":"admin"}"#);
        // Nested objects may repeat keys as they like: they are kept as data.
        active(r#"{"active":true,"ext":{"a":1}}"#);
    }

    #[test]
    fn numeric_subject_is_kept() {
        assert_eq!(active(r#"{"active":true,"sub":42}"#).subject(), Some("42"));
        fault(r#"{"active":true,"client_id":42}"#);
    }
}
