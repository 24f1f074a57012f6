//! Rendering of introspection answers for active tokens in each
//! [`AnswerShape`].

use serde_json::{json, Map, Value};

use super::spec::AnswerShape;
use super::state::TokenRecord;

/// The answer for an active token: its raw answer if it has one, else the
/// shape's rendering.
pub(crate) fn answer(token: &TokenRecord, shape: AnswerShape) -> Value {
    match &token.raw_answer {
        Some(raw) => raw.clone(),
        None => Value::Object(render(token, shape)),
    }
}

/// The shape's rendering (ignores any raw answer), with the token's omitted
/// members removed.
pub(crate) fn render(token: &TokenRecord, shape: AnswerShape) -> Map<String, Value> {
    let mut m = match shape {
        AnswerShape::Full => full(token),
        AnswerShape::Dot => dot(token),
        AnswerShape::Hydra => hydra(token),
    };
    for member in &token.omit {
        if member != "active" {
            m.remove(member);
        }
    }
    m
}

fn put_str(m: &mut Map<String, Value>, key: &str, value: Option<&String>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), Value::String(v.clone()));
    }
}

fn put_int(m: &mut Map<String, Value>, key: &str, value: Option<i64>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), Value::from(v));
    }
}

fn full(t: &TokenRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("active".to_owned(), Value::Bool(true));
    put_str(&mut m, "scope", t.scope.as_ref());
    put_str(&mut m, "client_id", t.client_id.as_ref());
    put_str(&mut m, "username", t.username.as_ref());
    put_str(&mut m, "sub", t.sub.as_ref());
    put_int(&mut m, "exp", t.exp);
    put_int(&mut m, "iat", t.iat);
    put_int(&mut m, "nbf", t.nbf);
    match t.aud.as_slice() {
        [] => {}
        [one] => {
            m.insert("aud".to_owned(), Value::String(one.clone()));
        }
        several => {
            m.insert("aud".to_owned(), json!(several));
        }
    }
    put_str(&mut m, "iss", t.iss.as_ref());
    put_str(&mut m, "token_type", t.token_type.as_ref());
    put_str(&mut m, "jti", t.jti.as_ref());
    for (k, v) in &t.claims {
        m.insert(k.clone(), v.clone());
    }
    m
}

fn dot(t: &TokenRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("active".to_owned(), Value::Bool(true));
    m.insert(
        "scope".to_owned(),
        Value::String(t.scope.clone().unwrap_or_default()),
    );
    put_int(&mut m, "exp", t.exp);
    put_str(&mut m, "client_id", t.client_id.as_ref());
    put_str(&mut m, "username", t.username.as_ref());
    if !t.aud.is_empty() {
        m.insert("aud".to_owned(), json!(t.aud));
    }
    m
}

fn hydra(t: &TokenRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("active".to_owned(), Value::Bool(true));
    put_str(&mut m, "sub", t.sub.as_ref());
    put_str(&mut m, "client_id", t.client_id.as_ref());
    put_str(&mut m, "scope", t.scope.as_ref());
    put_int(&mut m, "exp", t.exp);
    put_int(&mut m, "iat", t.iat);
    put_int(&mut m, "nbf", t.nbf);
    m.insert("aud".to_owned(), json!(t.aud));
    put_str(&mut m, "iss", t.iss.as_ref());
    put_str(&mut m, "token_type", t.token_type.as_ref());
    m.insert("token_use".to_owned(), Value::from("access_token"));
    if !t.claims.is_empty() {
        m.insert("ext".to_owned(), Value::Object(t.claims.clone()));
    }
    m
}
