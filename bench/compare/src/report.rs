//! RESULTS.md: the Markdown report.

use std::fmt::Write as _;
use std::time::Duration;

use crate::headline::{Headline, Spread};
use crate::loadgen::{quantile, RunResult};
use crate::machine::Machine;
use crate::servers::Kind;
use crate::{Options, ServerResults};

pub struct Context<'a> {
    pub opts: &'a Options,
    pub results: &'a [(Kind, ServerResults)],
    pub hot_as_calls_total: usize,
    pub discovery_calls: usize,
    pub jwks_calls: usize,
    pub load_before: &'a str,
    pub load_after: &'a str,
    /// Average CPUs used by other processes during the run.
    pub other_cpu: Option<f64>,
    pub run_time: Duration,
    pub machine: &'a Machine,
    /// Where RESULTS.svg is, relative to the Markdown file (None: no chart written).
    pub chart_link: Option<String>,
}

pub fn p99_us(r: &RunResult) -> f64 {
    let mut l = r.latencies_ns.clone();
    quantile(&mut l, 0.99).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

pub fn cpu_us_per_req(r: &RunResult) -> Option<f64> {
    let cpu = r.server_cpu?;
    (r.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / r.requests as f64)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn pooled_quantile_us(runs: &[RunResult], q: f64) -> f64 {
    let mut all: Vec<u64> = runs.iter().flat_map(|r| r.latencies_ns.iter().copied()).collect();
    quantile(&mut all, q).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn fmt_rps(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", x);
    // thousands separators
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_us(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 1000.0 {
        format!("{:.2} ms", x / 1000.0)
    } else {
        format!("{:.0} µs", x)
    }
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn server_busy(r: &RunResult) -> Option<f64> {
    Some(r.server_cpu?.as_secs_f64() / r.window.as_secs_f64())
}

pub fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn what_is_cached(kind: Kind) -> &'static str {
    match kind {
        Kind::Ti => "active answers in moka until min(exp, 60 s) (default `max_ttl`), keyed by a hash of the token; inactive answers 10 s; concurrent misses for one token share one AS call",
        Kind::Zitadel => "active answers with `exp` in moka (`InMemoryIntrospectionCache::new()`: 10,000 entries, 15 min TTL, checked against `exp`), keyed by the token string; no coalescing of concurrent misses; a new reqwest client per AS call",
        Kind::Jwt => "nothing per token: every request verifies the RS256 signature and `exp`; the JWKS is fetched once and kept (refresh on unknown `kid`)",
        Kind::TiJwt => "`JwtVerifier` (generic profile, no expected audience, keys from the same JWKS, fetched on first use and refreshed on unknown `kid`): a verified token's claims in moka until min(exp, 60 s) (default `max_ttl`), keyed by a hash of the token, checks (`exp`, `nbf`, token kind) re-run on every read, so one RS256 verification per token per minute; refused tokens 10 s; concurrent first sights of one token share one verification; the AS is never called",
    }
}

/// The command line that produced this run, as a reader would type it.
pub fn command() -> String {
    std::env::var("BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut cmd = "cargo run --release --manifest-path bench/compare/Cargo.toml".to_owned();
        if !args.is_empty() {
            cmd.push_str(" -- ");
            cmd.push_str(&args.join(" "));
        }
        cmd
    })
}

/// "5 rounds × (1 s warm-up + 3 s measured), 32 connections".
pub fn hot_setup(o: &crate::Options) -> String {
    format!(
        "{} rounds × ({} s warm-up + {} s measured) per route and server, {} keep-alive connections",
        o.rounds,
        o.warmup.as_secs(),
        o.duration.as_secs(),
        o.connections
    )
}

/// "0.912–0.951" (or "–" when no round has a value).
fn fmt_range(sp: &Spread, digits: usize, signed: bool) -> String {
    if !sp.is_known() {
        return "–".into();
    }
    if signed {
        format!("{:+.digits$} – {:+.digits$}", sp.min, sp.max)
    } else {
        format!("{:.digits$}–{:.digits$}", sp.min, sp.max)
    }
}

pub fn markdown(c: &Context<'_>) -> String {
    let o = c.opts;
    let m = c.machine;
    let mut s = String::new();
    let command = command();
    let _ = writeln!(s, "# tower-introspection vs zitadel vs jwt-authorizer: results\n");
    let _ = writeln!(
        s,
        "Generated by `bench/compare` (see README.md there for the method and caveats).\n"
    );
    let _ = writeln!(s, "- Command: `{command}` (from the repository root)");
    if o.quick {
        let _ = writeln!(s, "- **Quick run** (`--quick` / `BENCH_QUICK=1`): short rounds to try changes; the figures are noisier than a default run's, do not quote them.");
    }
    let _ = writeln!(
        s,
        "- CPU: {}{}{}; {}, {} (flags from {})",
        m.model,
        m.id.as_ref().map(|id| format!(" ({id})")).unwrap_or_default(),
        match m.virtualised {
            Some(true) => ", virtualised",
            _ => "",
        },
        m.sha_text(),
        m.avx2_text(),
        if m.flags_from_proc {
            "/proc/cpuinfo"
        } else {
            "runtime detection"
        }
    );
    let _ = writeln!(s, "- CPUs: {}", m.cpus_text());
    let _ = writeln!(s, "- Kernel: {}", m.kernel);
    let _ = writeln!(
        s,
        "- Load average before / after: `{}` / `{}`",
        c.load_before, c.load_after
    );
    if let Some(other) = c.other_cpu {
        let _ = writeln!(s, "- Other processes on the machine used {other:.2} of the {} CPUs on average during the run (from /proc/stat, minus this harness and its servers)", o.cpus);
    }
    if let Ok(build) = std::env::var("BENCH_BUILD_SECONDS") {
        let _ = writeln!(s, "- Build step of run.sh (release, `opt-level = 3`, `codegen-units = 1`, thin LTO) before this run: {build} s (a few seconds means it was already built)");
    }
    let _ = writeln!(
        s,
        "- Benchmark run time (after build): {:.0} s",
        c.run_time.as_secs_f64()
    );
    if o.pin {
        let _ = writeln!(
            s,
            "- Placement: each server is its own process pinned to CPU {} with {} tokio worker thread(s); the load generator ({} worker thread(s)) and the test AS share CPU(s) 0..{}. Load generator and server run on the same machine at the same time.",
            o.cpus - 1,
            o.server_threads,
            o.client_threads,
            o.cpus - 2
        );
    } else {
        let _ = writeln!(
            s,
            "- Placement: each server is its own process ({} tokio worker threads), not pinned; the load generator ({} worker threads) and the test AS (1 worker thread, idle on the hot path) run in the harness process; all float over the same {} CPUs at the same time.",
            o.server_threads, o.client_threads, o.cpus
        );
    }
    let _ = writeln!(
        s,
        "- Hot path: {} keep-alive HTTP/1.1 connections (hyper client, closed loop), {} rounds × ({} s warm-up + {} s measured) per route and server; rounds alternate which route goes first; servers interleaved within each round.",
        o.connections,
        o.rounds,
        o.warmup.as_secs(),
        o.duration.as_secs()
    );
    let _ = writeln!(s);

    // Headline: the chart and its figures.
    let headlines = Headline::all(c.results);
    let _ = writeln!(s, "## Headline\n");
    if let Some(link) = &c.chart_link {
        let _ = writeln!(s, "![Per server: protected/bare throughput, extra server CPU per request and in-process middleware cost, medians with min–max over rounds]({link})\n");
    }
    let _ = writeln!(s, "Median over the rounds (min–max over the rounds). Each round pairs one bare and one protected run of the same server; the ratio and the CPU difference are taken per round.\n");
    let _ = writeln!(
        s,
        "| server | protected/bare throughput | extra server CPU per request | middleware cost in process |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|");
    for h in &headlines {
        let in_process = h
            .in_process_ns
            .filter(Spread::is_known)
            .map_or("–".to_owned(), |sp| {
                format!("{:+.0} ns ({:.0}–{:.0})", sp.median, sp.min, sp.max)
            });
        let _ = writeln!(
            s,
            "| {} | {:.3} ({}) | {:+.2} µs ({}) | {} |",
            h.kind.label(),
            h.ratio.median,
            fmt_range(&h.ratio, 3, false),
            h.extra_cpu_us.median,
            fmt_range(&h.extra_cpu_us, 2, true),
            in_process
        );
    }
    let _ = writeln!(s);

    // Hot path table.
    let _ = writeln!(s, "## Hot path (token already validated / cached)\n");
    let _ = writeln!(s, "| server | axum | req/s bare | req/s protected | protected/bare (median of rounds) | protected/bare min–max | p99 bare | p99 protected | server CPU/req bare | server CPU/req protected | auth CPU cost/req (median of rounds) | auth CPU cost/req min–max | server CPU busy (bare / protected) | non-200 / errors |");
    let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (kind, r) in c.results {
        if let Some(why) = &r.skipped {
            let _ = writeln!(
                s,
                "| {} | {} | not run: {} | | | | | | | | | | | |",
                kind.label(),
                kind.axum(),
                why.replace('|', "/")
            );
            continue;
        }
        let rps_b = median(r.bare.iter().map(|x| x.rps).collect());
        let rps_p = median(r.protected.iter().map(|x| x.rps).collect());
        let Some(h) = headlines.iter().find(|h| h.kind == *kind) else {
            continue;
        };
        let cpu_b = median(r.bare.iter().filter_map(cpu_us_per_req).collect());
        let cpu_p = median(r.protected.iter().filter_map(cpu_us_per_req).collect());
        let busy_b = median(r.bare.iter().filter_map(server_busy).collect());
        let busy_p = median(r.protected.iter().filter_map(server_busy).collect());
        let bad: u64 = r.bare.iter().chain(&r.protected).map(|x| x.non_200).sum();
        let errs: u64 = r.bare.iter().chain(&r.protected).map(|x| x.errors).sum();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {} | {} | {} | {:.1} µs | {:.1} µs | {:+.2} µs | {} µs | {:.2} / {:.2} | {} / {} |",
            kind.label(),
            kind.axum(),
            fmt_rps(rps_b),
            fmt_rps(rps_p),
            h.ratio.median,
            fmt_range(&h.ratio, 3, false),
            fmt_us(pooled_quantile_us(&r.bare, 0.99)),
            fmt_us(pooled_quantile_us(&r.protected, 0.99)),
            cpu_b,
            cpu_p,
            h.extra_cpu_us.median,
            fmt_range(&h.extra_cpu_us, 2, true),
            busy_b,
            busy_p,
            bad,
            errs
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "req/s: median over the rounds. p99: over all measured requests of all rounds. Server CPU/req: the server process's user+system CPU time during the measured window (from /proc) divided by the requests answered, median over rounds; \"auth CPU cost\" is protected minus bare within each round (median and min–max over the rounds), the cost of the middleware per request, which does not depend on how the 2 CPUs are shared with the load generator.\n");
    let introspecting: Vec<String> = c
        .results
        .iter()
        .filter(|(k, _)| !k.is_jwt())
        .filter_map(|(k, r)| r.hot_as_calls.map(|n| format!("{}: {n}", k.arg())))
        .collect();
    if !introspecting.is_empty() {
        let _ = writeln!(s, "Introspection calls that reached the AS during the whole hot phase (warm-ups included): {} ({}).\n",
            c.hot_as_calls_total,
            introspecting.join(", "));
    }
    let jwt_hot: Vec<String> = c
        .results
        .iter()
        .filter(|(k, _)| k.is_jwt())
        .filter_map(|(k, r)| r.hot_jwks_calls.map(|n| format!("{}: {n}", k.arg())))
        .collect();
    if !jwt_hot.is_empty() {
        let _ = writeln!(
            s,
            "The JWT servers never call the AS; JWKS fetches during their hot runs: {}.\n",
            jwt_hot.join(", ")
        );
    }

    // In-process cost.
    if c.results.iter().any(|(_, r)| r.micro.is_some()) {
        let _ = writeln!(s, "## Middleware cost in process (no sockets)\n");
        let _ = writeln!(s, "The same routers called directly (`poll_ready` + `call`, body read) on a current-thread runtime in the harness process, {} repetitions × {} ms per route, alternating; thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) per request, median of the repetitions; the middleware cost is protected − bare within each repetition, median and min–max over them. Both routes get the same `Authorization` header, so protected − bare is the middleware alone (cache lookup or JWT verification, extractor, principal). Other load on the machine does not enter this CPU clock, but shares caches.\n", o.rounds, o.micro.as_millis());
        let _ = writeln!(
            s,
            "| server | bare | protected | middleware cost (median) | min–max cost over repetitions |"
        );
        let _ = writeln!(s, "|---|--:|--:|--:|--:|");
        for (kind, r) in c.results {
            match &r.micro {
                Some(Ok(m)) => {
                    // The cost is paired within each repetition, like
                    // the headline's and the chart's (same figure).
                    let cost = Spread::of(m.bare_ns.iter().zip(&m.protected_ns).map(|(b, p)| p - b));
                    let (b, p) = (median(m.bare_ns.clone()), median(m.protected_ns.clone()));
                    let _ = writeln!(
                        s,
                        "| {} | {:.0} ns | {:.0} ns | {:+.0} ns | {:.0}–{:.0} ns |",
                        kind.label(),
                        b,
                        p,
                        cost.median,
                        cost.min,
                        cost.max
                    );
                }
                Some(Err(e)) => {
                    let _ = writeln!(s, "| {} | failed: {} | | | |", kind.label(), e.replace('|', "/"));
                }
                None => {}
            }
        }
        let _ = writeln!(s);
    }

    // Per-round detail.
    let _ = writeln!(
        s,
        "<details><summary>Per-round req/s (bare / protected)</summary>\n"
    );
    let _ = write!(s, "| server |");
    for i in 0..o.rounds {
        let _ = write!(s, " round {} |", i + 1);
    }
    let _ = writeln!(s);
    let _ = write!(s, "|---|");
    for _ in 0..o.rounds {
        let _ = write!(s, "--:|");
    }
    let _ = writeln!(s);
    for (kind, r) in c.results {
        if r.skipped.is_some() {
            continue;
        }
        let _ = write!(s, "| {} |", kind.arg());
        for (b, p) in r.bare.iter().zip(&r.protected) {
            let _ = write!(s, " {} / {} |", fmt_rps(b.rps), fmt_rps(p.rps));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\n</details>\n");

    // Cold path.
    let _ = writeln!(
        s,
        "## Cold path (N concurrent requests, one token the server has never seen)\n"
    );
    let _ = writeln!(s, "N connections are opened first, then one request on each is released at the same instant. \"AS calls\" counts the requests that reached the test AS's introspection endpoint (`TestAuthServer::introspection_calls()`); the AS delay is injected with `Fault::Delay` to model a remote AS.\n");
    let _ = writeln!(
        s,
        "| server | N | AS delay | AS introspection calls | answers | time to last answer | p50 |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|---|--:|--:|");
    for (kind, r) in c.results {
        for cr in &r.cold {
            let answers = cr
                .herd
                .statuses
                .iter()
                .map(|(st, n)| format!("{n}×{st}"))
                .chain((cr.herd.errors > 0).then(|| format!("{} errors", cr.herd.errors)))
                .collect::<Vec<_>>()
                .join(", ");
            let calls = match cr.as_calls {
                Some(n) => n.to_string(),
                None => format!("0 (local check; JWKS fetches: {})", cr.jwks_calls),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} ms | {} | {} | {} | {} |",
                kind.label(),
                cr.herd.n,
                cr.delay_ms,
                calls,
                answers,
                fmt_ms(cr.herd.max),
                fmt_ms(cr.herd.p50)
            );
        }
    }
    let _ = writeln!(s);

    // What each caches / how each was set up.
    let _ = writeln!(s, "## What each server does per request\n");
    for (kind, r) in c.results {
        let _ = writeln!(
            s,
            "- **{}** (axum {}): {}. Sanity probe: {}.",
            kind.label(),
            kind.axum(),
            what_is_cached(*kind),
            if r.sanity.is_empty() { "–" } else { &r.sanity }
        );
    }
    let _ = writeln!(s, "\nDiscovery documents served to zitadel by the harness adapter (its server and its in-process router): {}; JWKS fetches (zitadel discovery + jwt-authorizer + tower-introspection's `JwtVerifier`, server and in-process): {}.\n", c.discovery_calls, c.jwks_calls);
    let _ = writeln!(s, "## Caveats\n");
    let _ = writeln!(s, "- {} CPUs: the load generator, the test AS and the server under test run on the same machine at the same time, so absolute req/s are bounded by the load generator as much as by the server, and protected/bare ratios understate the middleware's relative cost. The server CPU per request columns and the in-process table are the cleaner comparison.", o.cpus);
    let _ = writeln!(s, "- The machine may be shared with other work (see the load averages above); rounds are interleaved so drift hits all servers alike.");
    let _ = writeln!(s, "- jwt-authorizer runs on axum 0.7 (its dependency), the others on axum 0.8; each server's `/bare` uses the same axum as its `/protected`, so the ratio compares like with like.");
    let _ = writeln!(s, "- jwt-authorizer validates self-contained JWTs locally and never calls the AS: it is a reference point for \"no network, no cache\", not an equivalent (no revocation). tower-introspection's `JwtVerifier` (`ti-jwt`) verifies the same JWTs against the same JWKS, also without revocation, but caches each verified token's claims, so its hot path is a cache read and its first sight of a token is one RS256 verification.");
    s
}
