//! Property tests for the crate's input parsers and its challenge builder,
//! through the hidden `tower_introspection::fuzzing` hooks (the same entry
//! points the `fuzz/` targets use):
//!
//! 1. no input panics `parse_authorization`, `parse_answer` or `challenges`;
//! 2. the `Authorization` parser accepts exactly RFC 6750's `b64token`
//!    grammar, checked against an independent reference written here;
//! 3. every emitted `WWW-Authenticate` challenge parses back into unique,
//!    well-formed RFC 6750 §3 parameters, `realm` always among them;
//! 4. an introspection answer whose `active` is not a JSON boolean is an
//!    error, and `"active": false` is inactive whatever else the answer holds.
//!
//! The case count is bounded so the file runs in seconds in debug builds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeSet;

use http::HeaderValue;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{FileFailurePersistence, TestRunner};
use serde_json::{Map, Number, Value};
use tower_introspection::fuzzing::{challenges, is_b64token, parse_answer, parse_authorization};
use tower_introspection::token::TokenError;

const CASES: u32 = 512;

/// 512 cases a property; failures are saved next to this file
/// (`tests/properties.proptest-regressions`) and replayed first.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Reference implementations, written independently of the crate.
// ---------------------------------------------------------------------------

/// The 66 characters of a `b64token` body.
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";

/// Bytes that tend to matter around a token: separators, quotes, controls,
/// padding in the wrong place, obs-text.
const AWKWARD_BYTES: &[u8] = b" \t\"\\,;:=@()<>[]{}?'%!#$&*^`|\r\n\x00\x7f\x80\xc3\xa9\xff";

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`,
/// read from the end: strip the `=` padding, then the rest must be a
/// non-empty run of token characters.
fn reference_b64token(t: &[u8]) -> bool {
    let padding = t.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &t[..t.len() - padding];
    !body.is_empty()
        && body.iter().all(|&b| {
            matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// What `parse_authorization` must answer for `Bearer <t>` (one space, then
/// `t`; further leading spaces of `t` belong to the separator).
fn expected_for_bearer(t: &[u8]) -> Result<Option<String>, TokenError> {
    let value = [b"Bearer ".as_slice(), t].concat();
    if HeaderValue::from_bytes(&value).is_err() {
        return Ok(None);
    }
    let credentials = &t[t.iter().take_while(|&&b| b == b' ').count()..];
    if !reference_b64token(credentials) {
        return Err(TokenError::Malformed);
    }
    if credentials.len() > tower_introspection::token::DEFAULT_MAX_TOKEN_LENGTH {
        return Err(TokenError::TooLong);
    }
    Ok(Some(String::from_utf8(credentials.to_vec()).unwrap()))
}

/// RFC 6750 §3 `error`, `error_description` (and, here, `realm`):
/// `%x20-21 / %x23-5B / %x5D-7E`.
fn is_error_char(c: char) -> bool {
    c == ' ' || c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c)
}

/// RFC 6750 §3 `scope`: `%x21 / %x23-5B / %x5D-7E` and the separating space
/// (which makes it the same set as [`is_error_char`], spelled out anyway).
fn is_scope_char(c: char) -> bool {
    c == ' ' || c == '\x21' || ('\x23'..='\x5B').contains(&c) || ('\x5D'..='\x7E').contains(&c)
}

fn allowed_in(name: &str) -> fn(char) -> bool {
    match name {
        "scope" => is_scope_char,
        _ => is_error_char,
    }
}

/// A strict parser for the challenges the crate emits: `Bearer `, then
/// `name="value"` pairs separated by exactly `, `. Names are lowercase
/// identifiers; values run to the next `"` (no escapes are ever needed,
/// since `"` and `\` may not appear in them).
fn parse_challenge(header: &str) -> Result<Vec<(String, String)>, String> {
    let mut rest = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| format!("no `Bearer ` prefix (or bare scheme): {header:?}"))?;
    let mut params = Vec::new();
    loop {
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        if name_len == 0 {
            return Err(format!("expected a parameter name at {rest:?} in {header:?}"));
        }
        let (name, after) = rest.split_at(name_len);
        let after = after
            .strip_prefix("=\"")
            .ok_or_else(|| format!("expected `=\"` after {name} in {header:?}"))?;
        let close = after
            .find('"')
            .ok_or_else(|| format!("unterminated value of {name} in {header:?}"))?;
        params.push((name.to_owned(), after[..close].to_owned()));
        rest = &after[close + 1..];
        if rest.is_empty() {
            return Ok(params);
        }
        rest = rest
            .strip_prefix(", ")
            .ok_or_else(|| format!("expected `, ` at {rest:?} in {header:?}"))?;
    }
}

/// Checks the RFC 6750 §3 invariants of one challenge and returns its
/// parameters.
fn check_challenge(value: &HeaderValue) -> Result<Vec<(String, String)>, String> {
    let text = value
        .to_str()
        .map_err(|_| format!("challenge is not visible ASCII: {value:?}"))?;
    let params = parse_challenge(text)?;
    let mut seen = BTreeSet::new();
    for (name, value) in &params {
        if !matches!(
            name.as_str(),
            "realm" | "scope" | "error" | "error_description" | "error_uri"
        ) {
            return Err(format!("unknown parameter {name} in {text:?}"));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("parameter {name} repeated in {text:?}"));
        }
        if let Some(bad) = value.chars().find(|&c| !allowed_in(name)(c)) {
            return Err(format!("{bad:?} not allowed in {name} in {text:?}"));
        }
    }
    if !seen.contains("realm") {
        return Err(format!("no realm in {text:?}"));
    }
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

fn token_char() -> impl Strategy<Value = u8> {
    select(TOKEN_CHARS)
}

/// Like [`awkward_byte`], but never one that makes a header value invalid.
fn header_safe_byte() -> impl Strategy<Value = u8> {
    awkward_byte().prop_filter("valid in a header value", |&b| {
        b == b'\t' || (b >= 0x20 && b != 0x7f)
    })
}

fn awkward_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => token_char(),
        2 => Just(b'='),
        2 => Just(b' '),
        3 => select(AWKWARD_BYTES),
        1 => 0x80u8..=0xff,
        1 => any::<u8>(),
    ]
}

/// A well-formed `b64token`: a body and up to three `=`.
fn valid_token() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec(token_char(), 1..=190), 0usize..=3).prop_map(|(mut body, padding)| {
        body.extend(std::iter::repeat_n(b'=', padding));
        body
    })
}

/// Candidate credentials of 1..=200 bytes, biased so that both valid and
/// invalid ones come up often: valid tokens, valid tokens with one awkward
/// byte put in, leading spaces, and noise over the interesting alphabet.
fn credentials() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => valid_token(),
        3 => (valid_token(), any::<prop::sample::Index>(), awkward_byte()).prop_map(|(mut t, at, b)| {
            let at = at.index(t.len());
            t[at] = b;
            t
        }),
        1 => (valid_token(), any::<prop::sample::Index>(), awkward_byte()).prop_map(|(mut t, at, b)| {
            let at = at.index(t.len() + 1);
            t.insert(at, b);
            t.truncate(200);
            t
        }),
        1 => (1usize..=5, valid_token()).prop_map(|(spaces, t)| {
            let mut v = vec![b' '; spaces];
            v.extend(t);
            v.truncate(200);
            v
        }),
        1 => proptest::collection::vec(header_safe_byte(), 1..=200),
        1 => proptest::collection::vec(awkward_byte(), 1..=200),
    ]
}

/// Any casing of `bearer`.
fn bearer_scheme() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), 6).prop_map(|upper| {
        "bearer"
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// Strings over characters that matter to a quoted-string, plus anything.
fn challenge_text() -> impl Strategy<Value = String> {
    let interesting = prop_oneof![
        4 => (0x20u8..0x7f).prop_map(char::from),
        2 => select(vec!['"', '\\', ',', '=', ' ', '\t', '\r', '\n', '\0', '\x7f']),
        1 => select(vec!['é', 'ß', '€', '\u{85}', '\u{2028}', '\u{feff}', '😀']),
        1 => any::<char>(),
    ];
    prop_oneof![
        3 => proptest::collection::vec(interesting, 0..48).prop_map(String::from_iter),
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(vec![0i64, 1, -1]).prop_map(Value::from),
    ]
}

fn json_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec!["true", "false", "", "1", "0", "yes", "active"]).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "scope",
            "sub",
            "username",
            "client_id",
            "token_type",
            "iss",
            "jti",
            "aud",
            "exp",
            "iat",
            "nbf",
            "Active",
            "ACTIVE",
            "active ",
            "",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,10}".prop_filter("not `active`", |k| k != "active"),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((json_key(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Anything but a JSON boolean, each kind of JSON value represented.
fn non_boolean() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        json_number(),
        json_string(),
        json_value().prop_map(|v| Value::Array(vec![v])),
        Just(Value::Array(vec![Value::Bool(true)])),
        Just(Value::Array(Vec::new())),
        json_value().prop_map(|v| Value::Object(Map::from_iter([("active".to_owned(), v)]))),
        Just(Value::Object(Map::new())),
    ]
}

/// Members besides `active`.
fn other_members() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((json_key(), json_value()), 0..6)
        .prop_map(|members| members.into_iter().collect())
}

fn answer_with(active: Option<Value>, mut members: Map<String, Value>) -> Vec<u8> {
    if let Some(active) = active {
        members.insert("active".to_owned(), active);
    }
    serde_json::to_vec(&Value::Object(members)).unwrap()
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    // 1. No panics.

    #[test]
    fn authorization_never_panics(value in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (bearer_scheme(), proptest::collection::vec(awkward_byte(), 0..100))
            .prop_map(|(s, rest)| [s.into_bytes(), rest].concat()),
    ]) {
        let _ = parse_authorization(&value);
    }

    #[test]
    fn answer_never_panics(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (other_members(), json_value()).prop_map(|(m, a)| answer_with(Some(a), m)),
        (other_members(), Just(Value::Bool(true))).prop_map(|(m, a)| answer_with(Some(a), m)),
    ]) {
        let _ = parse_answer(&body);
    }

    #[test]
    fn challenges_never_panic(realm in any::<String>(), description in any::<String>(), scope in any::<String>()) {
        let _ = challenges(&realm, &description, &scope);
    }

    // 2. The header parser accepts exactly the b64token grammar.

    #[test]
    fn bearer_credentials_follow_the_grammar(t in credentials()) {
        let value = [b"Bearer ".as_slice(), &t].concat();
        prop_assert_eq!(parse_authorization(&value), expected_for_bearer(&t), "input {:?}", String::from_utf8_lossy(&value));
    }

    #[test]
    fn reference_grammar_agrees_with_the_crate(t in credentials()) {
        prop_assert_eq!(is_b64token(&t), reference_b64token(&t), "{:?}", String::from_utf8_lossy(&t));
    }

    #[test]
    fn any_casing_of_the_scheme(scheme in bearer_scheme(), spaces in 1usize..4, t in valid_token()) {
        let value = format!("{scheme}{}{}", " ".repeat(spaces), String::from_utf8(t.clone()).unwrap());
        prop_assert_eq!(parse_authorization(value.as_bytes()), Ok(Some(String::from_utf8(t).unwrap())));
    }

    #[test]
    fn other_schemes_are_no_credentials(
        scheme in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
        rest in proptest::collection::vec(awkward_byte(), 0..40),
    ) {
        prop_assume!(!scheme.eq_ignore_ascii_case("bearer"));
        let value = [scheme.as_bytes(), b" ", &rest].concat();
        prop_assert_eq!(parse_authorization(&value), Ok(None), "{:?}", String::from_utf8_lossy(&value));
    }

    #[test]
    fn bearer_prefixed_schemes_are_no_credentials(
        scheme in bearer_scheme(),
        suffix in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,6}",
        t in valid_token(),
    ) {
        let value = [scheme.as_bytes(), suffix.as_bytes(), b" ", &t].concat();
        prop_assert_eq!(parse_authorization(&value), Ok(None));
    }

    // 3. Challenges are well formed.

    #[test]
    fn challenges_are_well_formed(
        realm in challenge_text(),
        description in challenge_text(),
        scope in challenge_text(),
    ) {
        let values = challenges(&realm, &description, &scope);
        prop_assert_eq!(values.len(), 3, "{:?}", values);
        let mut parsed = Vec::new();
        for value in &values {
            match check_challenge(value) {
                Ok(params) => parsed.push(params),
                Err(why) => return Err(TestCaseError::fail(why)),
            }
        }

        // Values are the inputs with only the forbidden characters removed.
        // A realm that is no usable header value may be replaced by the default one.
        let sanitized = |text: &str, allowed: fn(char) -> bool| text.chars().filter(|&c| allowed(c)).collect::<String>();
        let realm_out = sanitized(&realm, is_error_char);
        for params in &parsed {
            let got = param(params, "realm");
            prop_assert!(
                got == Some(realm_out.as_str()) || got == Some(tower_introspection::middleware::DEFAULT_REALM),
                "realm {:?} from {:?}", got, realm
            );
        }

        let [invalid, insufficient, missing] = &parsed[..] else { unreachable!() };
        prop_assert_eq!(param(invalid, "error"), Some("invalid_token"));
        // An empty description (after sanitizing) is left out.
        let expected = sanitized(&description, is_error_char);
        let expected = (!expected.is_empty()).then_some(expected.as_str());
        prop_assert_eq!(param(invalid, "error_description"), expected);
        prop_assert_eq!(param(insufficient, "error"), Some("insufficient_scope"));
        // `scope-token *( SP scope-token )`: single spaces, none at the ends;
        // left out when no token is left.
        let cleaned = sanitized(&scope, is_scope_char);
        let expected = cleaned.split(' ').filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
        let expected = (!expected.is_empty()).then_some(expected.as_str());
        prop_assert_eq!(param(insufficient, "scope"), expected);
        prop_assert_eq!(missing.len(), 1, "missing token: realm only, got {:?}", missing);
    }

    // 4. `active` must be a JSON boolean; `false` wins over everything else.

    #[test]
    fn non_boolean_active_is_an_error(active in prop::option::of(non_boolean()), members in other_members()) {
        let body = answer_with(active, members);
        prop_assert!(parse_answer(&body).is_err(), "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn inactive_whatever_else(members in other_members()) {
        let body = answer_with(Some(Value::Bool(false)), members);
        prop_assert_eq!(parse_answer(&body), Ok(false), "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn unknown_members_do_not_matter(members in proptest::collection::vec(("x_[a-z_]{1,8}", json_value()), 0..6)) {
        let body = answer_with(Some(Value::Bool(true)), members.into_iter().collect());
        prop_assert_eq!(parse_answer(&body), Ok(true), "{}", String::from_utf8_lossy(&body));
    }
}

/// The `credentials()` strategy exercises both branches of property 2, and
/// the reference grammar and header validity in all their outcomes.
#[test]
fn credentials_strategy_covers_both_branches() {
    let strategy = credentials();
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut malformed, mut not_header, mut leading_spaces) = (0, 0, 0, 0);
    for _ in 0..1000 {
        let t = strategy.new_tree(&mut runner).unwrap().current();
        assert!((1..=200).contains(&t.len()), "{}", t.len());
        if t[0] == b' ' {
            leading_spaces += 1;
        }
        match expected_for_bearer(&t) {
            Ok(Some(_)) => accepted += 1,
            Err(TokenError::Malformed) => malformed += 1,
            Ok(None) => not_header += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("{accepted} accepted, {malformed} malformed, {not_header} not a header value, {leading_spaces} with leading spaces");
    for (what, count) in [
        ("accepted", accepted),
        ("malformed", malformed),
        ("not a header value", not_header),
        ("leading spaces", leading_spaces),
    ] {
        assert!(count >= 50, "only {count} of 1000 cases {what}");
    }
    assert!(
        accepted >= 250 && malformed >= 250,
        "{accepted} accepted, {malformed} malformed"
    );
}

// ---------------------------------------------------------------------------
// Regression cases.
// ---------------------------------------------------------------------------

#[test]
fn reference_grammar_examples() {
    for ok in ["a", "abc-._~+/", "abc==", "A1", "x=", "/", "~==="] {
        assert!(reference_b64token(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "", "=", "==", "a b", "a=b", "tök", "a\"", "a,b", "a\t", "a==b", " a", "a ",
    ] {
        assert!(!reference_b64token(bad.as_bytes()), "{bad}");
    }
}

/// What `parse_authorization` answers, with a borrowed token.
type Outcome = Result<Option<&'static str>, TokenError>;

#[test]
fn authorization_edge_cases() {
    let cases: &[(&[u8], Outcome)] = &[
        (b"", Ok(None)),
        (b"Bear", Ok(None)),
        (b"Bearer", Err(TokenError::Malformed)),
        (b"bEARER", Err(TokenError::Malformed)),
        (b"Bearer ", Err(TokenError::Malformed)),
        (b"Bearer    ", Err(TokenError::Malformed)),
        (b"Bearer abc", Ok(Some("abc"))),
        (b"Bearer    abc==", Ok(Some("abc=="))),
        (b"Bearer abc ", Err(TokenError::Malformed)),
        (b"Bearer ==", Err(TokenError::Malformed)),
        (b"Bearer a=b", Err(TokenError::Malformed)),
        (b"Bearer a b", Err(TokenError::Malformed)),
        (b"Bearer \"abc\"", Err(TokenError::Malformed)),
        (b"Bearer abc, Bearer def", Err(TokenError::Malformed)),
        (b"Bearer t\xc3\xb6k", Err(TokenError::Malformed)),
        (b"Bearer \xff\xfe", Err(TokenError::Malformed)),
        (b"Bearer abc\r\n", Ok(None)),
        (b"Bearer abc\0", Ok(None)),
        (b"Bearerx abc", Ok(None)),
        (b"Bearer-abc", Ok(None)),
        (b"Basic dXNlcjpwYXNz", Ok(None)),
        (b"DPoP abc", Ok(None)),
    ];
    for (value, expected) in cases {
        let expected = expected.clone().map(|t| t.map(str::to_owned));
        assert_eq!(
            parse_authorization(value),
            expected,
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn token_length_limit() {
    let max = tower_introspection::token::DEFAULT_MAX_TOKEN_LENGTH;
    let at_limit = "a".repeat(max);
    assert_eq!(
        parse_authorization(format!("Bearer {at_limit}").as_bytes()),
        Ok(Some(at_limit.clone()))
    );
    // Separator spaces do not count against the limit.
    assert_eq!(
        parse_authorization(format!("Bearer      {at_limit}").as_bytes()),
        Ok(Some(at_limit.clone()))
    );
    let over = "a".repeat(max + 1);
    assert_eq!(
        parse_authorization(format!("Bearer {over}").as_bytes()),
        Err(TokenError::TooLong)
    );
    // Padding is part of the token.
    assert_eq!(
        parse_authorization(format!("Bearer {}=", "a".repeat(max)).as_bytes()),
        Err(TokenError::TooLong)
    );
    // Too long and malformed: rejected either way.
    assert!(parse_authorization(format!("Bearer {over} x").as_bytes()).is_err());
}

#[test]
fn challenge_injection_attempts() {
    let values = challenges(
        "api\", error=\"forged",
        "bad \"token\"\\, error=\"x\r\n",
        "read\" admin, error=\"y",
    );
    assert_eq!(values.len(), 3);
    let parsed: Vec<_> = values.iter().map(|v| check_challenge(v).unwrap()).collect();
    // `realm` had `"`, which makes it a valid header value still: sanitized, not replaced.
    assert_eq!(param(&parsed[0], "realm"), Some("api, error=forged"));
    // The description had CR LF: it is sanitized, not dropped.
    assert_eq!(param(&parsed[0], "error_description"), Some("bad token, error=x"));
    assert_eq!(param(&parsed[1], "scope"), Some("read admin, error=y"));
    assert_eq!(parsed[2].len(), 1);
}

#[test]
fn challenge_with_unusable_realm_keeps_a_realm() {
    for realm in ["", "\"\"\\", "é", "a\r\nb", "\0"] {
        for value in challenges(realm, "", "") {
            let params = check_challenge(&value).unwrap();
            assert!(param(&params, "realm").is_some(), "{realm:?}: {value:?}");
        }
    }
}

#[test]
fn answer_edge_cases() {
    for body in [
        &br#"{"active":false}"#[..],
        br#"{"active":false,"exp":"soon","scope":5,"aud":[1]}"#,
        br#"  {"active" : false}  "#,
    ] {
        assert_eq!(parse_answer(body), Ok(false), "{}", String::from_utf8_lossy(body));
    }
    assert_eq!(
        parse_answer(br#"{"active":true,"sub":42,"x":{"y":[null]}}"#),
        Ok(true)
    );
    for body in [
        &b""[..],
        b"null",
        b"true",
        b"[]",
        b"[{\"active\":true}]",
        br#"{"active":"false"}"#,
        br#"{"active":0}"#,
        br#"{"active":[]}"#,
        br#"{"Active":true}"#,
        br#"{"active":true"#,
        br#"{"active":true} x"#,
        b"\xef\xbb\xbf{\"active\":true}",
    ] {
        assert!(parse_answer(body).is_err(), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn deeply_nested_answer_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(parse_answer(nested.as_bytes()).is_err());
    let member = format!(
        r#"{{"active":true,"x":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(parse_answer(member.as_bytes()).is_err());
}

// ---------------------------------------------------------------------------
// DPoP proofs (RFC 9449 §4.3) and compact JWS: `check_dpop_proof`,
// `parse_jwt`, `peek_issuer`.
// ---------------------------------------------------------------------------

mod dpop_proof {
    use std::sync::OnceLock;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use proptest::prelude::*;
    use proptest::sample::{select, Index};
    use serde_json::{json, Value};
    use tower_introspection::fuzzing::{
        check_dpop_proof, parse_jwt, peek_issuer, DPOP_ACCESS_TOKEN, DPOP_METHOD, DPOP_NOW, DPOP_URL,
    };
    use tower_introspection::test_util::DpopKey;

    use super::json_value;

    /// The random, mutated and re-signed cases below run this many times
    /// each: every case fails early, or costs one ES256 check.
    const CASES: u32 = 4096;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: CASES,
            ..super::config()
        }
    }

    fn key() -> &'static DpopKey {
        static KEY: OnceLock<DpopKey> = OnceLock::new();
        KEY.get_or_init(DpopKey::generate)
    }

    fn ath() -> String {
        URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            DPOP_ACCESS_TOKEN.as_bytes(),
        ))
    }

    /// The claims of a proof the fixed request accepts.
    fn claims() -> Value {
        json!({ "jti": "j-1", "htm": DPOP_METHOD, "htu": DPOP_URL, "iat": DPOP_NOW - 1, "ath": ath() })
    }

    fn valid_proof() -> &'static str {
        static PROOF: OnceLock<String> = OnceLock::new();
        PROOF.get_or_init(|| key().sign(&key().header(), &claims()))
    }

    /// A valid proof with up to eight byte edits: replace, insert, remove,
    /// truncate.
    fn mutated_proof() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec((any::<Index>(), 0u8..4, any::<u8>()), 1..8).prop_map(|edits| {
            let mut bytes = valid_proof().as_bytes().to_vec();
            for (at, op, byte) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    2 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
    }

    /// Members a proof's header or claims hold, or could.
    fn member() -> impl Strategy<Value = (bool, &'static str)> {
        (
            any::<bool>(),
            select(
                &[
                    "typ", "alg", "jwk", "crit", "kid", "jti", "htm", "htu", "iat", "ath", "nonce",
                ][..],
            ),
        )
    }

    /// What may replace a member: any JSON, or a value near the right one.
    fn replacement() -> impl Strategy<Value = Option<Value>> {
        prop::option::of(prop_oneof![
            json_value(),
            (-100i64..100).prop_map(|d| json!(DPOP_NOW + d)),
            (-100.0f64..100.0).prop_map(|d| json!(DPOP_NOW as f64 + d)),
            Just(json!(1e308)),
            Just(json!(-1e308)),
            Just(json!(u64::MAX)),
            Just(json!("dpop+JWT")),
            Just(json!("ES384")),
            Just(json!("EdDSA")),
            Just(json!("none")),
            Just(json!("x".repeat(257))),
            Just(json!("https://api.example:443/items?q#f")),
            Just(json!({"kty": "oct", "k": "AAAA"})),
            Just(json!({"kty": "EC", "crv": "P-256", "x": "", "y": ""})),
            Just(json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
            Just(json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})),
        ])
    }

    /// A proof signed by the key after up to three members of its header or
    /// claims were replaced (`Some`) or removed (`None`), with what was done.
    fn resigned_proof() -> impl Strategy<Value = (String, Value, Value)> {
        proptest::collection::vec((member(), replacement()), 0..4).prop_map(|edits| {
            let mut header = key().header();
            let mut claims = claims();
            for ((in_header, name), value) in edits {
                let target = if in_header { &mut header } else { &mut claims };
                let object = target.as_object_mut().expect("an object");
                match value {
                    Some(Value::Null) if name == "jwk" => {
                        // A private member beside the public key.
                        if let Some(jwk) = object.get_mut("jwk").and_then(Value::as_object_mut) {
                            jwk.insert("d".to_owned(), json!("AAAA"));
                        }
                    }
                    Some(value) => {
                        object.insert(name.to_owned(), value);
                    }
                    None => {
                        object.remove(name);
                    }
                }
            }
            (key().sign(&header, &claims), header, claims)
        })
    }

    /// What the checker must have verified if it accepted `header` and
    /// `claims` (signed by the right key): RFC 9449 §4.3, read here.
    fn acceptable(header: &Value, claims: &Value) -> Result<(), String> {
        let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
        if !text(header, "typ").is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
            return Err(format!("typ {:?}", header.get("typ")));
        }
        if text(header, "alg").as_deref() != Some("ES256") {
            return Err(format!("alg {:?} with a P-256 key", header.get("alg")));
        }
        if header.get("jwk") != Some(key().jwk()) {
            return Err(format!("jwk {:?}", header.get("jwk")));
        }
        if header.get("crit").is_some() {
            return Err("crit".to_owned());
        }
        if header.get("kid").is_some_and(|kid| !kid.is_string()) {
            return Err(format!("kid {:?}", header.get("kid")));
        }
        if text(claims, "htm").as_deref() != Some(DPOP_METHOD) {
            return Err(format!("htm {:?}", claims.get("htm")));
        }
        let iat = claims.get("iat").and_then(Value::as_f64).map(f64::floor);
        if !iat.is_some_and(|iat| iat >= (DPOP_NOW - 65) as f64 && iat <= (DPOP_NOW + 5) as f64) {
            return Err(format!("iat {:?}", claims.get("iat")));
        }
        if !text(claims, "jti").is_some_and(|j| !j.is_empty() && j.len() <= 256) {
            return Err(format!("jti {:?}", claims.get("jti")));
        }
        if text(claims, "ath") != Some(ath()) {
            return Err(format!("ath {:?}", claims.get("ath")));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn dpop_proof_never_panics(proof in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..400),
            mutated_proof(),
        ]) {
            let _ = check_dpop_proof(&proof);
            let _ = parse_jwt(&proof);
            let _ = peek_issuer(&proof);
        }

        /// Accepted exactly when the edited header and claims still follow
        /// the rules (a member changed to an equivalent `htu` may pass).
        #[test]
        fn dpop_proof_accepted_only_when_valid((proof, header, claims) in resigned_proof()) {
            let got = check_dpop_proof(proof.as_bytes());
            let htu_ok = claims.get("htu").and_then(Value::as_str).is_some_and(|htu| {
                url::Url::parse(htu).is_ok_and(|u| {
                    u.scheme() == "https" && u.host_str() == Some("api.example")
                        && u.port_or_known_default() == Some(443) && u.path() == "/items"
                })
            });
            let want = acceptable(&header, &claims).and_then(|()| htu_ok.then_some(()).ok_or_else(|| "htu".to_owned()));
            match (&got, &want) {
                (Ok((jkt, jti)), Ok(())) => {
                    prop_assert_eq!(jkt, &key().jkt());
                    prop_assert_eq!(Some(jti.as_str()), claims["jti"].as_str());
                }
                (Err(_), Err(_)) => {}
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "got {got:?}, expected {want:?}: header {header}, claims {claims}"
                    )))
                }
            }
        }
    }

    /// The committed fuzz seeds: `valid_*` are accepted, the rest refused.
    /// The valid ones were signed by Python's `cryptography`, not by this
    /// crate, so they also check the verifier against another signer.
    #[test]
    fn fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/dpop_proof");
        let mut valid = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/dpop_proof") {
            let path = entry.expect("a seed").path();
            let name = path.file_name().expect("a name").to_string_lossy().into_owned();
            let got = check_dpop_proof(&std::fs::read(&path).expect("readable"));
            if name.starts_with("valid_") {
                assert!(got.is_ok(), "{name}: {got:?}");
                valid += 1;
            } else {
                assert!(got.is_err(), "{name} accepted");
            }
        }
        assert!(valid >= 4, "ES256, EdDSA, RS256 and PS256 seeds");
    }

    #[test]
    fn a_fresh_proof_is_accepted_once_resigned_unchanged() {
        assert_eq!(
            check_dpop_proof(valid_proof().as_bytes()),
            Ok((key().jkt(), "j-1".to_owned()))
        );
        let parsed = parse_jwt(valid_proof().as_bytes()).expect("a JWS");
        assert_eq!((parsed.alg, parsed.typ.as_deref()), ("ES256", Some("dpop+jwt")));
        assert_eq!(peek_issuer(valid_proof().as_bytes()), Some(None));
    }
}
