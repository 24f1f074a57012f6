//! `parse_answer` on arbitrary introspection response bodies.
//!
//! Beyond "no panic": whatever the body, an `Ok` answer means the body is a
//! JSON object whose `active` member is that JSON boolean (`serde_json` is the
//! oracle), and `{"active": false, …}` is always `Ok(false)`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_introspection::fuzzing::parse_answer;

fuzz_target!(|data: &[u8]| {
    let got = parse_answer(data);
    let active = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(map)) => map.get("active").cloned(),
        _ => None,
    };
    match (&got, active) {
        (Ok(active), Some(Value::Bool(expected))) => assert_eq!(*active, expected, "input {data:?}"),
        (Ok(_), other) => panic!("accepted an answer whose `active` is {other:?}: input {data:?}"),
        (Err(_), Some(Value::Bool(false))) => panic!("an inactive answer was an error: input {data:?}"),
        (Err(_), _) => {}
    }
});
