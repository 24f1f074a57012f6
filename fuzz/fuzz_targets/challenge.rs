//! `challenges(realm, description, scope)` on arbitrary texts.
//!
//! The input is split at `0xFF` bytes (never part of UTF-8) into up to three
//! parts, each read as lossy UTF-8. Every emitted `WWW-Authenticate` value
//! must be `Bearer ` then `name="value"` pairs separated by `, `, with
//! (RFC 6750 §3):
//! - only the parameters realm, scope, error, error_description, error_uri,
//!   each at most once, and `realm` always present (never a bare `Bearer`);
//! - realm, error, error_description within `%x20-21 / %x23-5B / %x5D-7E`;
//! - scope within `%x21 / %x23-5B / %x5D-7E` and space.

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use tower_introspection::fuzzing::challenges;

fn is_error_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

fn is_scope_char(c: char) -> bool {
    matches!(c, ' ' | '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E')
}

/// Splits a challenge into its parameters; `Err` says what is malformed.
fn parse(header: &str) -> Result<Vec<(&str, &str)>, &'static str> {
    let mut rest = header.strip_prefix("Bearer ").ok_or("no `Bearer ` prefix")?;
    let mut params = Vec::new();
    loop {
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        if name_len == 0 {
            return Err("expected a parameter name");
        }
        let (name, after) = rest.split_at(name_len);
        let after = after.strip_prefix("=\"").ok_or("expected `=\"` after the name")?;
        let close = after.find('"').ok_or("unterminated quoted value")?;
        params.push((name, &after[..close]));
        rest = &after[close + 1..];
        if rest.is_empty() {
            return Ok(params);
        }
        rest = rest
            .strip_prefix(", ")
            .ok_or("expected `, ` between parameters")?;
    }
}

fn check(header: &str) -> Result<(), String> {
    let params = parse(header).map_err(str::to_owned)?;
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in params {
        let allowed: fn(char) -> bool = match name {
            "scope" => is_scope_char,
            "realm" | "error" | "error_description" | "error_uri" => is_error_char,
            _ => return Err(format!("unknown parameter {name}")),
        };
        if seen.contains(&name) {
            return Err(format!("parameter {name} repeated"));
        }
        seen.push(name);
        if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
            return Err(format!("{bad:?} not allowed in {name}"));
        }
    }
    if !seen.contains(&"realm") {
        return Err("no realm".to_owned());
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0xFF).map(String::from_utf8_lossy);
    let realm = parts.next().unwrap_or(Cow::Borrowed(""));
    let description = parts.next().unwrap_or(Cow::Borrowed(""));
    let scope = parts.next().unwrap_or(Cow::Borrowed(""));
    let values = challenges(&realm, &description, &scope);
    assert_eq!(values.len(), 3, "expected three challenges, got {values:?}");
    for value in &values {
        let Ok(text) = value.to_str() else {
            panic!("challenge is not visible ASCII: {value:?} (realm {realm:?}, description {description:?}, scope {scope:?})");
        };
        if let Err(why) = check(text) {
            panic!("{why} in {text:?} (realm {realm:?}, description {description:?}, scope {scope:?})");
        }
    }
});
