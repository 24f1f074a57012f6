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
//!
//! Fleet mode (feature `redis`): `--replicas N --redis redis://127.0.0.1:PORT/`
//! runs N replicas in this process, each with its own introspector, cache
//! and Redis connection, sharing only Redis (a fresh fleet secret and key
//! prefix per run); connections are spread over them. It reports AS calls
//! per distinct token across the fleet (goal: 1.0 within a `max_ttl`).
//! `--redis-outage FROM,FOR` stops the harness's redis-server
//! (`tests/interop/redis.sh stop-server`) FROM seconds in, for FOR seconds,
//! and reports how many valid requests were answered 200 meanwhile.
//!
//! ```text
//! eval "$(tests/interop/redis.sh start)"
//! cargo run --release --features redis --example load -- --replicas 3 --redis "$REDIS_URL" --random 0 --seconds 10
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tower_introspection::test_util::TestAuthServer;
use tower_introspection::{introspection::IntrospectorBuilder, IntrospectionLayer, Introspector};

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
    replicas: usize,
    redis: Option<String>,
    outage: Option<(u64, u64)>,
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
        replicas: 1,
        redis: None,
        outage: None,
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
            "--replicas" => o.replicas = number()?.clamp(1, 64) as usize,
            "--redis" => o.redis = Some(value.clone()),
            "--redis-outage" => {
                let (from, span) = value
                    .split_once(',')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    .ok_or_else(|| format!("--redis-outage: FROM,FOR in seconds, got {value}"))?;
                o.outage = Some((from, span));
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.valid + o.invalid + o.random == 0 {
        return Err("the token mix is empty".into());
    }
    if (o.replicas > 1 || o.outage.is_some()) && o.redis.is_none() {
        return Err("--replicas and --redis-outage need --redis URL".into());
    }
    if o.redis.is_some() && !cfg!(feature = "redis") {
        return Err("--redis needs the `redis` feature: cargo run --features redis --example load".into());
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

    let (auth, introspectors, urls) = match &o.target {
        Some(target) => {
            loopback(target)?;
            (None, Vec::new(), vec![target.clone()])
        }
        None => {
            let auth = TestAuthServer::start().await?;
            let shared = fleet_secret_and_prefix();
            let (mut introspectors, mut urls) = (Vec::new(), Vec::new());
            for _ in 0..o.replicas {
                let builder = Introspector::builder(auth.introspection_url())
                    .client_secret_basic("rs-client", "rs-secret")
                    .max_ttl(Duration::from_secs(o.max_ttl))
                    .max_entries(o.max_entries)
                    .negative_entries(o.negative_entries);
                let introspector = with_shared_cache(builder, &o, &shared)?.build()?;
                let app = Router::new()
                    .route("/ping", get(|| async { "ok" }))
                    .route_layer(IntrospectionLayer::new(introspector.clone()));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                urls.push(format!("http://{}/ping", listener.local_addr()?));
                tokio::spawn(async move { axum::serve(listener, app).await });
                introspectors.push(introspector);
            }
            (Some(auth), introspectors, urls)
        }
    };
    let outage_window = o
        .outage
        .map(|(from, span)| (Duration::from_secs(from), Duration::from_secs(from + span)));

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
    let seen: Arc<Vec<AtomicBool>> = Arc::new((0..2 * o.tokens).map(|_| AtomicBool::new(false)).collect());
    let during_outage = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let calls_before = auth.as_ref().map_or(0, |a| a.introspection_calls());
    let started = Instant::now();
    if let Some((from, span)) = o.outage {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(from)).await;
            redis_harness("stop-server");
            tokio::time::sleep(Duration::from_secs(span)).await;
            redis_harness("start-server");
        });
    }

    let mut workers = Vec::new();
    for worker in 0..o.connections {
        let url = urls[worker % urls.len()].clone();
        let (http, valid, invalid) = (http.clone(), valid.clone(), invalid.clone());
        let (latencies, statuses, random_sent) = (latencies.clone(), statuses.clone(), random_sent.clone());
        let (seen, during_outage) = (seen.clone(), during_outage.clone());
        let o = o.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
            let mut local_latencies = Vec::new();
            let mut local_statuses = BTreeMap::new();
            let total = u64::from(o.valid + o.invalid + o.random);
            while Instant::now() < deadline {
                let pick = rng.next() % total;
                let (kind, token) = if pick < u64::from(o.valid) && !valid.is_empty() {
                    let i = (rng.next() % valid.len() as u64) as usize;
                    seen[i].store(true, Ordering::Relaxed);
                    ("valid", valid[i].clone())
                } else if pick < u64::from(o.valid + o.invalid) && !invalid.is_empty() {
                    let i = (rng.next() % invalid.len() as u64) as usize;
                    seen[o.tokens + i].store(true, Ordering::Relaxed);
                    ("invalid", invalid[i].clone())
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
                let at = sent.duration_since(started);
                if kind == "valid" && outage_window.is_some_and(|(from, to)| at >= from && at < to) {
                    during_outage[0].fetch_add(1, Ordering::Relaxed);
                    if status == 200 {
                        during_outage[1].fetch_add(1, Ordering::Relaxed);
                    }
                }
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
    if let (Some(auth), Some(introspector)) = (&auth, introspectors.first()) {
        for introspector in &introspectors {
            introspector.run_pending_tasks().await;
        }
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
        if o.redis.is_some() {
            let distinct = seen.iter().filter(|s| s.load(Ordering::Relaxed)).count() as u64 + random;
            println!(
                "fleet: {} replicas sharing Redis; {calls} AS calls for {distinct} distinct tokens = {:.3} AS calls per distinct token",
                introspectors.len(),
                calls as f64 / distinct.max(1) as f64
            );
            for (i, introspector) in introspectors.iter().enumerate() {
                let shared = introspector.stats().shared;
                println!(
                    "  replica {i}: L1 hits {}, L2 hits {}, L2 misses {}, fleet waits {}, Redis errors {}, skipped (breaker) {}, breaker trips {}",
                    introspector.stats().hits, shared.hits, shared.misses, shared.fleet_waits, shared.errors, shared.skipped, shared.breaker_trips
                );
            }
            if o.outage.is_some() {
                println!(
                    "while Redis was stopped: {} of {} valid requests answered 200",
                    during_outage[1].load(Ordering::Relaxed),
                    during_outage[0].load(Ordering::Relaxed)
                );
            }
        }
    }
    if let Some(rss) = peak_rss_kib() {
        println!("peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    }
    Ok(())
}

/// A fresh fleet secret and key prefix for this run (never printed).
fn fleet_secret_and_prefix() -> (String, String) {
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1);
    let secret = (0..4).map(|_| format!("{:016x}", rng.next())).collect();
    let prefix = format!("load-{:08x}:", rng.next() as u32);
    (secret, prefix)
}

#[cfg(feature = "redis")]
fn with_shared_cache(
    builder: IntrospectorBuilder,
    o: &Options,
    (secret, prefix): &(String, String),
) -> Result<IntrospectorBuilder, Box<dyn std::error::Error>> {
    Ok(match &o.redis {
        Some(url) => builder.shared_cache(
            tower_introspection::fleet::SharedCache::builder(url.clone(), secret)
                .key_prefix(prefix.clone())
                .build()?,
        ),
        None => builder,
    })
}

#[cfg(not(feature = "redis"))]
fn with_shared_cache(
    builder: IntrospectorBuilder,
    _: &Options,
    _: &(String, String),
) -> Result<IntrospectorBuilder, Box<dyn std::error::Error>> {
    Ok(builder)
}

/// Stops or starts the harness's redis-server (tests/interop/redis.sh).
fn redis_harness(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/redis.sh");
    match std::process::Command::new("bash")
        .arg(script)
        .arg(command)
        .status()
    {
        Ok(status) if status.success() => {}
        other => eprintln!("load: redis.sh {command} failed: {other:?}"),
    }
}
