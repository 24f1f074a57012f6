//! A bounded load test over loopback: a protected axum app in front of the
//! in-process test authorization server, driven by N keep-alive connections
//! for T seconds with a mix of valid, invalid (revoked) and random tokens.
//!
//! ```text
//! cargo run --release --example load -- --connections 32 --seconds 30 --valid 50 --invalid 0 --random 50
//! ```
//!
//! Reports requests/s, p50/p99 latency, AS calls, rejections by status,
//! cache entries and peak RSS. `--target http://127.0.0.1:PORT/ping` drives
//! an app you run yourself instead (loopback only; no AS counts then). It
//! stops by itself; `--seconds` is capped at 300.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tower_introspection::test_util::TestAuthServer;
use tower_introspection::{IntrospectionLayer, Introspector};

#[derive(Debug, Clone)]
struct Options {
    connections: usize,
    seconds: u64,
    valid: u32,
    invalid: u32,
    random: u32,
    tokens: usize,
    max_ttl: u64,
    max_entries: u64,
    negative_entries: u64,
    target: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        connections: 32,
        seconds: 10,
        valid: 50,
        invalid: 0,
        random: 50,
        tokens: 100,
        max_ttl: 60,
        max_entries: 10_000,
        negative_entries: 10_000,
        target: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{} needs a value", pair[0]));
        };
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--connections" => o.connections = number()?.clamp(1, 1024) as usize,
            "--seconds" => o.seconds = number()?.clamp(1, 300),
            "--valid" => o.valid = number()? as u32,
            "--invalid" => o.invalid = number()? as u32,
            "--random" => o.random = number()? as u32,
            "--tokens" => o.tokens = number()?.clamp(1, 1_000_000) as usize,
            "--max-ttl" => o.max_ttl = number()?,
            "--max-entries" => o.max_entries = number()?,
            "--negative-entries" => o.negative_entries = number()?,
            "--target" => o.target = Some(value.clone()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.valid + o.invalid + o.random == 0 {
        return Err("the token mix is empty".into());
    }
    Ok(o)
}

/// Only loopback targets: a load test never leaves the machine.
fn loopback(target: &str) -> Result<(), String> {
    let url = url::Url::parse(target).map_err(|e| format!("--target: {e}"))?;
    let ok = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("--target {target} is not a loopback address; refusing"))
    }
}

/// xorshift64*: enough randomness to pick token kinds and make random tokens.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options().map_err(|e| format!("load: {e}"))?;

    let (auth, introspector, url) = match &o.target {
        Some(target) => {
            loopback(target)?;
            (None, None, target.clone())
        }
        None => {
            let auth = TestAuthServer::start().await?;
            let introspector = Introspector::builder(auth.introspection_url())
                .client_secret_basic("rs-client", "rs-secret")
                .max_ttl(Duration::from_secs(o.max_ttl))
                .max_entries(o.max_entries)
                .negative_entries(o.negative_entries)
                .build()?;
            let app = Router::new()
                .route("/ping", get(|| async { "ok" }))
                .route_layer(IntrospectionLayer::new(introspector.clone()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}/ping", listener.local_addr()?);
            tokio::spawn(async move { axum::serve(listener, app).await });
            (Some(auth), Some(introspector), url)
        }
    };

    let valid: Arc<Vec<String>> = Arc::new(match &auth {
        Some(auth) => (0..o.tokens).map(|_| auth.mint_token("read")).collect(),
        None => Vec::new(),
    });
    let invalid: Arc<Vec<String>> = Arc::new(match &auth {
        Some(auth) => (0..o.tokens)
            .map(|_| {
                let token = auth.mint_token("read");
                auth.revoke(&token);
                token
            })
            .collect(),
        None => Vec::new(),
    });

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.connections)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<(&'static str, u16), u64>::new()));
    let random_sent = Arc::new(AtomicU64::new(0));
    let calls_before = auth.as_ref().map_or(0, |a| a.introspection_calls());
    let started = Instant::now();

    let mut workers = Vec::new();
    for worker in 0..o.connections {
        let (http, url, valid, invalid) = (http.clone(), url.clone(), valid.clone(), invalid.clone());
        let (latencies, statuses, random_sent) = (latencies.clone(), statuses.clone(), random_sent.clone());
        let o = o.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
            let mut local_latencies = Vec::new();
            let mut local_statuses = BTreeMap::new();
            let total = u64::from(o.valid + o.invalid + o.random);
            while Instant::now() < deadline {
                let pick = rng.next() % total;
                let (kind, token) = if pick < u64::from(o.valid) && !valid.is_empty() {
                    ("valid", valid[(rng.next() % valid.len() as u64) as usize].clone())
                } else if pick < u64::from(o.valid + o.invalid) && !invalid.is_empty() {
                    (
                        "invalid",
                        invalid[(rng.next() % invalid.len() as u64) as usize].clone(),
                    )
                } else {
                    random_sent.fetch_add(1, Ordering::Relaxed);
                    ("random", format!("random-{worker}-{:016x}", rng.next()))
                };
                let sent = Instant::now();
                let status = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                local_latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                *local_statuses.entry((kind, status)).or_insert(0u64) += 1;
            }
            latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(local_latencies);
            let mut all = statuses.lock().unwrap_or_else(|e| e.into_inner());
            for (key, count) in local_statuses {
                *all.entry(key).or_insert(0) += count;
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let mut latencies = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
    };
    let requests = latencies.len();
    println!(
        "load: {} connections, {:.1} s, mix valid/invalid/random = {}/{}/{}",
        o.connections, elapsed, o.valid, o.invalid, o.random
    );
    println!(
        "requests: {requests} ({:.0} requests/s)",
        requests as f64 / elapsed
    );
    println!(
        "latency: p50 {} µs, p99 {} µs",
        percentile(0.50).copied().unwrap_or(0),
        percentile(0.99).copied().unwrap_or(0)
    );
    println!("answers by token kind and status:");
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for ((kind, status), count) in &statuses {
        println!("  {kind:<8} {status:>3}: {count}");
    }
    let valid_failures: u64 = statuses
        .iter()
        .filter(|((k, s), _)| *k == "valid" && *s != 200)
        .map(|(_, c)| c)
        .sum();
    println!("valid requests not answered 200: {valid_failures}");
    if let (Some(auth), Some(introspector)) = (&auth, &introspector) {
        introspector.run_pending_tasks().await;
        let calls = auth.introspection_calls() - calls_before;
        let random = random_sent.load(Ordering::Relaxed);
        let ttl_periods = o.seconds.div_ceil(o.max_ttl.max(1));
        let bound = random + (2 * o.tokens as u64) * ttl_periods;
        let stats = introspector.stats();
        println!(
            "AS calls: {calls} (random tokens sent: {random}; bound = random + distinct valid/invalid tokens x TTL periods = {bound})"
        );
        println!(
            "cache: {} active entries (cap {}), {} inactive entries (cap {}); hits {}, negative hits {}, coalesced waits {}",
            stats.entries, o.max_entries, stats.negative_entries, o.negative_entries, stats.hits, stats.negative_hits, stats.coalesced_waits
        );
        println!("peak AS concurrency: {}", auth.peak_concurrent_introspections());
    }
    if let Some(rss) = peak_rss_kib() {
        println!("peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    }
    Ok(())
}
