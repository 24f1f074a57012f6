//! The `metrics` feature: counters and a histogram through the `metrics`
//! facade, named as documented.

#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[tokio::test]
async fn events_are_exported_with_documented_names() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Only this test in this binary installs a recorder.
    metrics::set_global_recorder(recorder).unwrap();

    let s = common::Setup::new().await;
    let token = s.auth.mint_token("read");
    assert_eq!(s.status("/ping", Some(&token)).await, 200); // miss, active
    assert_eq!(s.status("/ping", Some(&token)).await, 200); // hit
    assert_eq!(s.status("/ping", Some("unknown")).await, 401); // miss, inactive
    assert_eq!(s.status("/ping", Some("unknown")).await, 401); // negative hit
    assert_eq!(s.status("/admin", Some(&token)).await, 403);

    let mut counters: HashMap<String, u64> = HashMap::new();
    let mut histograms = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match (kind, value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                counters.insert(name, n);
            }
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => histograms += samples.len(),
            _ => {}
        }
    }
    let get = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(get("tower_introspection_cache_hits_total{}"), 2, "{counters:?}"); // /ping and /admin
    assert_eq!(get("tower_introspection_cache_misses_total{}"), 2);
    assert_eq!(get("tower_introspection_cache_negative_hits_total{}"), 1);
    assert_eq!(get("tower_introspection_introspections_total{outcome=active}"), 1);
    assert_eq!(
        get("tower_introspection_introspections_total{outcome=inactive}"),
        1
    );
    assert_eq!(get("tower_introspection_rejections_total{status=401}"), 2);
    assert_eq!(get("tower_introspection_rejections_total{status=403}"), 1);
    assert_eq!(histograms, 2, "one latency sample per introspection call");
}
