//! Side-by-side benchmark of bearer-token middleware for axum:
//! tower-introspection (introspection, and JWT) vs zitadel (introspection)
//! vs jwt-authorizer (JWT).
//!
//! `compare [OPTIONS]` runs everything (see `--help`); `compare serve ...` is
//! the child-process mode the orchestrator starts for each server.

mod adapter;
mod chart;
mod headline;
mod loadgen;
mod machine;
mod micro;
mod report;
mod servers;

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tower_introspection::test_util::{Fault, TestAuthServer, TokenSpec};

use crate::loadgen::{HerdResult, RunResult};
use crate::servers::Kind;

type BoxError = Box<dyn Error + Send + Sync>;

const PRIVATE_KEY_PEM: &str = include_str!("../keys/private.pem");
const KID: &str = "bench-rs256";

const HELP: &str = "\
compare: tower-introspection vs zitadel vs jwt-authorizer over loopback

USAGE: compare [OPTIONS]

  --connections N     keep-alive connections per hot run (default 32, max 1024)
  --duration SECS     measured seconds per hot run (default 3, max 60)
  --warmup SECS       warm-up seconds before each hot run (default 1, max 30)
  --rounds N          bare/protected rounds per server (default 5, max 20)
  --cold N[,N...]     cold-path herd sizes (default 50,1000; each max 5000)
  --cold-delay MS[,MS...]  AS latency injected during the cold path (default 0,20)
  --servers LIST      any of ti,zitadel,jwt,ti-jwt (default all four)
  --pin on|off        pin each server to the last CPU and the load generator
                      + test AS to the others (default off: on a machine
                      shared with other work, pinned processes wait behind it)
  --server-threads N  tokio workers per server (default 1 when pinned, else #CPUs)
  --client-threads N  tokio workers of the load generator (default #CPUs - 1
                      when pinned, else #CPUs)
  --micro-ms MS       in-process middleware cost: ms per repetition (default
                      500; --rounds repetitions; 0 skips it)
  --zitadel-direct    point zitadel at the test AS's own discovery document
                      instead of the harness adapter (shows why the adapter
                      is needed)
  --out PATH          Markdown output (default: RESULTS.md beside Cargo.toml;
                      '-' prints only)
  --svg PATH          the headline chart (default: the --out path with .svg,
                      i.e. RESULTS.svg beside RESULTS.md; '-' writes none;
                      none either when --out is '-' and --svg is not given)
  --quick             a short run to try changes: 2 rounds x (1 s warm-up +
                      1 s), 100 ms in-process repetitions, one cold herd of 50
                      with no AS delay; options given as well override it.
                      Same as BENCH_QUICK=1. Its figures are noisier: do not
                      quote them.
";

#[derive(Debug, Clone)]
pub struct Options {
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    pub cold: Vec<usize>,
    pub cold_delay_ms: Vec<u64>,
    pub servers: Vec<Kind>,
    pub pin: bool,
    pub server_threads: usize,
    pub client_threads: usize,
    pub micro: Duration,
    pub zitadel_direct: bool,
    pub out: Option<String>,
    /// Where the chart goes (None: no chart).
    pub svg: Option<String>,
    pub quick: bool,
    pub cpus: usize,
    /// `nproc` before the harness pinned itself.
    pub nproc: String,
}

fn parse_options(args: &[String]) -> Result<Options, BoxError> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut o = Options {
        connections: 32,
        duration: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        rounds: 5,
        cold: vec![50, 1000],
        cold_delay_ms: vec![0, 20],
        servers: Kind::ALL.to_vec(),
        pin: false,
        server_threads: 0,
        client_threads: 0,
        micro: Duration::from_millis(500),
        zitadel_direct: false,
        out: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md").to_owned()),
        svg: None,
        quick: false,
        cpus,
        nproc: report::sh("nproc", &[]),
    };
    // The quick preset first, so that options given with it override it
    // wherever they stand on the command line.
    let quick_env = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    if quick_env || args.iter().any(|a| a == "--quick") {
        o.quick = true;
        o.rounds = 2;
        o.duration = Duration::from_secs(1);
        o.warmup = Duration::from_secs(1);
        o.micro = Duration::from_millis(100);
        o.cold = vec![50];
        o.cold_delay_ms = vec![0];
    }
    let mut svg: Option<String> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            std::process::exit(0);
        }
        if flag == "--zitadel-direct" {
            o.zitadel_direct = true;
            continue;
        }
        if flag == "--quick" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        let list = |v: &str| -> Result<Vec<u64>, BoxError> {
            v.split(',').map(|x| num(x.trim()).map_err(Into::into)).collect()
        };
        match flag.as_str() {
            "--connections" => o.connections = num(value)? as usize,
            "--duration" => o.duration = Duration::from_secs(num(value)?),
            "--warmup" => o.warmup = Duration::from_secs(num(value)?),
            "--rounds" => o.rounds = num(value)? as usize,
            "--cold" => o.cold = list(value)?.into_iter().map(|n| n as usize).collect(),
            "--cold-delay" => o.cold_delay_ms = list(value)?,
            "--servers" => {
                o.servers = value
                    .split(',')
                    .map(|s| Kind::parse(s.trim()).ok_or_else(|| format!("unknown server {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--pin" => o.pin = value == "on",
            "--server-threads" => o.server_threads = num(value)? as usize,
            "--client-threads" => o.client_threads = num(value)? as usize,
            "--micro-ms" => o.micro = Duration::from_millis(num(value)?.min(10_000)),
            "--out" => o.out = (value != "-").then(|| value.clone()),
            "--svg" => svg = Some(value.clone()),
            _ => return Err(format!("unknown option {flag} (see --help)").into()),
        }
    }
    // Bounds: every run stops by itself within a known time.
    if o.connections == 0 || o.connections > loadgen::MAX_CONNECTIONS {
        return Err(format!("--connections must be 1..={}", loadgen::MAX_CONNECTIONS).into());
    }
    if o.duration.is_zero() || o.duration > loadgen::MAX_DURATION {
        return Err("--duration must be 1..=60".into());
    }
    if o.warmup > loadgen::MAX_WARMUP {
        return Err("--warmup must be 0..=30".into());
    }
    if o.rounds == 0 || o.rounds > 20 {
        return Err("--rounds must be 1..=20".into());
    }
    if o.cold.iter().any(|&n| n == 0 || n > loadgen::MAX_HERD) {
        return Err(format!("--cold sizes must be 1..={}", loadgen::MAX_HERD).into());
    }
    if o.cold_delay_ms.iter().any(|&d| d > 5000) {
        return Err("--cold-delay must be 0..=5000 ms".into());
    }
    o.svg = match svg {
        Some(p) if p == "-" => None,
        Some(p) => Some(p),
        None => o.out.as_deref().map(|md| {
            std::path::Path::new(md)
                .with_extension("svg")
                .to_string_lossy()
                .into_owned()
        }),
    };
    o.pin &= cpus >= 2;
    if o.server_threads == 0 {
        o.server_threads = if o.pin { 1 } else { cpus };
    }
    if o.client_threads == 0 {
        o.client_threads = if o.pin { cpus - 1 } else { cpus };
    }
    Ok(o)
}

/// Pins the calling thread, and the threads it starts afterwards, to these CPUs.
#[allow(unsafe_code)]
pub fn pin_to_cpus(cpus: &[usize]) -> Result<(), BoxError> {
    // SAFETY: cpu_set_t is plain data, zeroed is its empty value; CPU_SET
    // and sched_setaffinity only read/write that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    Ok(())
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// (busy, total) CPU ticks of the whole machine since boot, from /proc/stat.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// CPU time of this process plus its reaped children (the servers).
pub fn self_and_children_cpu() -> Option<Duration> {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(clock_ticks);
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // utime, stime, cutime, cstime are fields 14..=17 (11..=14 after the name and state).
    let sum: u64 = f.get(10..14)?.iter().sum();
    Some(Duration::from_nanos(sum * 1_000_000_000 / ticks))
}

/// utime + stime of a process (`None`: this one), from /proc.
pub fn proc_cpu(pid: Option<u32>) -> Option<Duration> {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(clock_ticks);
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / ticks))
}

/// A server child process; dropping it closes its stdin (it exits) and
/// reaps it.
struct ServerProc {
    kind: Kind,
    addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ServerProc {
    fn spawn(kind: Kind, url: &str, threads: usize, cpu: Option<usize>) -> Result<ServerProc, BoxError> {
        let exe = std::env::current_exe()?;
        let cpu_arg = cpu.map_or("-".to_owned(), |c| c.to_string());
        let mut child = Command::new(exe)
            .args(["serve", kind.arg(), url, &threads.to_string(), &cpu_arg])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut proc = ServerProc {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            stdin,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| format!("{} server did not start within 30 s", kind.arg()))?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("{} server failed to start (see its stderr above)", kind.arg()))?;
        proc.addr = addr.parse()?;
        loadgen::check_loopback(proc.addr)?;
        Ok(proc)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Results of one server.
#[derive(Debug, Default)]
pub struct ServerResults {
    pub bare: Vec<RunResult>,
    pub protected: Vec<RunResult>,
    pub hot_as_calls: Option<usize>,
    /// JWKS fetches at the harness adapter during this server's hot runs.
    pub hot_jwks_calls: Option<usize>,
    pub cold: Vec<ColdResult>,
    pub sanity: String,
    pub micro: Option<Result<micro::MicroResult, String>>,
    pub skipped: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ColdResult {
    pub delay_ms: u64,
    pub herd: HerdResult,
    /// Introspection calls that reached the test AS (None: not applicable).
    pub as_calls: Option<usize>,
    pub jwks_calls: usize,
}

/// The chart's path as the Markdown file should link it: its file name when
/// both sit in one directory, else the path as given.
fn link_from(md: Option<&str>, svg: &str) -> String {
    use std::path::Path;
    let svg_path = Path::new(svg);
    let same_dir = md.is_some_and(|md| {
        let dir = |p: &Path| {
            p.parent()
                .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
        };
        dir(Path::new(md)) == dir(svg_path)
    });
    match svg_path.file_name() {
        Some(name) if same_dir => name.to_string_lossy().into_owned(),
        _ => svg.to_owned(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh RS256 JWT with the same claims as the introspection answer.
fn sign_jwt(as_base: &str, n: u64) -> Result<String, BoxError> {
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": as_base,
        "sub": "alice",
        "username": "alice",
        "client_id": "test-client",
        "scope": "read",
        "iat": now,
        "exp": now + 3600,
        "jti": format!("bench-{now}-{n}"),
        "token_type": "Bearer",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.to_owned());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY_PEM.as_bytes())?;
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

fn mint(auth: &TestAuthServer) -> String {
    auth.mint(
        TokenSpec::new()
            .scope("read")
            .sub("alice")
            .username("alice")
            .client_id("test-client")
            .exp_in(Duration::from_secs(3600)),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("serve") {
        servers::serve_main(&args[1..])
    } else {
        run(&args)
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), BoxError> {
    let opts = parse_options(args)?;
    let started = Instant::now();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let machine0 = machine_ticks();
    let ours0 = self_and_children_cpu();
    let server_cpu = opts.pin.then_some(opts.cpus - 1);
    if opts.pin {
        let rest: Vec<usize> = (0..opts.cpus - 1).collect();
        pin_to_cpus(&rest)?;
    }
    eprintln!(
        "compare: {} CPUs, pin={}, server threads={}, client threads={}, {} connections, {}x({}s warm-up + {}s)",
        opts.cpus,
        opts.pin,
        opts.server_threads,
        opts.client_threads,
        opts.connections,
        opts.rounds,
        opts.warmup.as_secs(),
        opts.duration.as_secs()
    );

    // The test AS and the harness's discovery/JWKS endpoints, on their own runtime.
    let as_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("test-as")
        .enable_all()
        .build()?;
    let (auth, adapter) = as_rt.block_on(async {
        let auth = TestAuthServer::start().await?;
        let adapter = adapter::start(auth.base_url()).await?;
        Ok::<_, std::io::Error>((auth, adapter))
    })?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads.max(1))
        .thread_name("loadgen")
        .enable_all()
        .build()?;

    // Start the servers (they stay up for the whole run, idle when not measured).
    let mut procs: Vec<ServerProc> = Vec::new();
    let mut results: Vec<(Kind, ServerResults)> = Vec::new();
    for &kind in &opts.servers {
        let url = match kind {
            Kind::Ti => auth.introspection_url(),
            Kind::Zitadel if opts.zitadel_direct => auth.base_url(),
            Kind::Zitadel => adapter.base_url.clone(),
            Kind::Jwt | Kind::TiJwt => adapter.jwks_url(),
        };
        let mut res = ServerResults::default();
        match ServerProc::spawn(kind, &url, opts.server_threads, server_cpu) {
            Ok(p) => procs.push(p),
            Err(e) => {
                eprintln!("{}: not benchmarked: {e}", kind.label());
                res.skipped = Some(e.to_string());
            }
        }
        results.push((kind, res));
    }

    // One long-lived token (JWT) per server for the hot path.
    let hot_token = |kind: Kind| -> Result<String, BoxError> {
        Ok(match kind {
            Kind::Ti | Kind::Zitadel => mint(&auth),
            Kind::Jwt | Kind::TiJwt => sign_jwt(&auth.base_url(), 0)?,
        })
    };
    let mut tokens = Vec::new();
    for p in &procs {
        let token = hot_token(p.kind)?;
        // Sanity: bare 200, protected 200 with the token, rejected without.
        let (bare, with, without, bogus) = client_rt.block_on(async {
            Ok::<_, BoxError>((
                loadgen::probe(p.addr, "/bare", None).await?,
                loadgen::probe(p.addr, "/protected", Some(&token)).await?,
                loadgen::probe(p.addr, "/protected", None).await?,
                loadgen::probe(p.addr, "/protected", Some("not-a-valid-token")).await?,
            ))
        })?;
        let sanity = format!(
            "bare {bare}, protected with token {with}, without token {without}, unknown token {bogus}"
        );
        eprintln!("{}: {sanity}", p.kind.label());
        if bare != 200 || with != 200 || without == 200 || bogus == 200 {
            return Err(format!("{}: sanity check failed: {sanity}", p.kind.label()).into());
        }
        results
            .iter_mut()
            .find(|(k, _)| *k == p.kind)
            .expect("every started server has a result slot")
            .1
            .sanity = sanity;
        tokens.push(token);
    }

    // In-process middleware cost (no sockets), each router built in this process.
    if !opts.micro.is_zero() {
        for (p, token) in procs.iter().zip(&tokens) {
            let url = match p.kind {
                Kind::Ti => auth.introspection_url(),
                Kind::Zitadel if opts.zitadel_direct => auth.base_url(),
                Kind::Zitadel => adapter.base_url.clone(),
                Kind::Jwt | Kind::TiJwt => adapter.jwks_url(),
            };
            let r = micro::run(p.kind, &url, token, opts.rounds, opts.micro).map_err(|e| e.to_string());
            match &r {
                Ok(m) => eprintln!(
                    "in-process {:<36} bare {:>7.0} ns/req, protected {:>7.0} ns/req (thread CPU, median of {})",
                    p.kind.label(),
                    report::median(m.bare_ns.clone()),
                    report::median(m.protected_ns.clone()),
                    m.bare_ns.len()
                ),
                Err(e) => eprintln!("in-process {}: failed: {e}", p.kind.label()),
            }
            results
                .iter_mut()
                .find(|(k, _)| *k == p.kind)
                .expect("slot")
                .1
                .micro = Some(r);
        }
    }

    // Hot path: rounds; within each, every server; bare and protected
    // alternate which goes first.
    let calls_before_hot = auth.introspection_calls();
    for round in 0..opts.rounds {
        for (p, token) in procs.iter().zip(&tokens) {
            let order: [bool; 2] = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for protected in order {
                // Both routes get the same Authorization header: only the
                // middleware differs.
                let (path, bearer) = if protected {
                    ("/protected", Some(token.as_str()))
                } else {
                    ("/bare", Some(token.as_str()))
                };
                let calls0 = auth.introspection_calls();
                let jwks0 = adapter.counters.jwks.load(std::sync::atomic::Ordering::SeqCst);
                let r = client_rt.block_on(loadgen::hot_run(
                    p.addr,
                    path,
                    bearer,
                    opts.connections,
                    opts.warmup,
                    opts.duration,
                    p.pid(),
                ))?;
                eprintln!(
                    "round {}/{} {:<36} {:<10} {:>7.0} req/s  p99 {:>6.0} µs  CPU/req server {:>5.1} µs, loadgen+AS {:>5.1} µs  server busy {:.2} CPU  non-200 {} errors {}  AS calls {}",
                    round + 1,
                    opts.rounds,
                    p.kind.label(),
                    path,
                    r.rps,
                    report::p99_us(&r),
                    report::cpu_us_per_req(&r).unwrap_or(f64::NAN),
                    r.client_cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e6 / r.requests.max(1) as f64),
                    report::server_busy(&r).unwrap_or(f64::NAN),
                    r.non_200,
                    r.errors,
                    auth.introspection_calls() - calls0,
                );
                let slot = &mut results.iter_mut().find(|(k, _)| *k == p.kind).expect("slot").1;
                *slot.hot_as_calls.get_or_insert(0) += auth.introspection_calls() - calls0;
                *slot.hot_jwks_calls.get_or_insert(0) +=
                    adapter.counters.jwks.load(std::sync::atomic::Ordering::SeqCst) - jwks0;
                if protected {
                    slot.protected.push(r);
                } else {
                    slot.bare.push(r);
                }
            }
        }
    }
    let hot_calls = auth.introspection_calls() - calls_before_hot;
    eprintln!("hot path: {hot_calls} introspection calls reached the AS in total");

    // Cold path: n requests at once with a token the server has never seen.
    let mut seq = 1;
    for p in &procs {
        for &delay in &opts.cold_delay_ms {
            if delay == 0 {
                auth.clear_fault();
            } else {
                auth.set_fault(Fault::Delay(Duration::from_millis(delay)));
            }
            for &n in &opts.cold {
                seq += 1;
                let token = match p.kind {
                    Kind::Ti | Kind::Zitadel => mint(&auth),
                    Kind::Jwt | Kind::TiJwt => sign_jwt(&auth.base_url(), seq)?,
                };
                let calls0 = auth.introspection_calls();
                let jwks0 = adapter.counters.jwks.load(std::sync::atomic::Ordering::SeqCst);
                let herd = client_rt.block_on(loadgen::herd(p.addr, "/protected", &token, n))?;
                // Let stragglers (if any) land before reading the counter.
                std::thread::sleep(Duration::from_millis(100));
                let calls = auth.introspection_calls() - calls0;
                let jwks = adapter.counters.jwks.load(std::sync::atomic::Ordering::SeqCst) - jwks0;
                eprintln!(
                    "cold {:<36} n={:<5} AS delay {:>3} ms: AS calls {:>5}, statuses {:?}, errors {}, last answer {:.1} ms",
                    p.kind.label(),
                    n,
                    delay,
                    calls,
                    herd.statuses,
                    herd.errors,
                    herd.max.as_secs_f64() * 1e3
                );
                let as_calls = (!p.kind.is_jwt()).then_some(calls);
                let slot = &mut results.iter_mut().find(|(k, _)| *k == p.kind).expect("slot").1;
                slot.cold.push(ColdResult {
                    delay_ms: delay,
                    herd,
                    as_calls,
                    jwks_calls: jwks,
                });
            }
        }
    }
    auth.clear_fault();
    drop(procs);

    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // CPU used by other processes on the machine while we ran.
    let others = (|| {
        let ((b0, _), (b1, _)) = (machine0?, machine_ticks()?);
        let ours = self_and_children_cpu()?.checked_sub(ours0?)?;
        let busy = Duration::from_nanos((b1 - b0) * 1_000_000_000 / clock_ticks());
        Some(busy.saturating_sub(ours).as_secs_f64() / started.elapsed().as_secs_f64())
    })();
    // The chart first, so the Markdown links it only if it was written; a
    // chart that fails costs the link, never the results.
    let machine = machine::Machine::detect(&opts.nproc);
    let command = report::command();
    let mut chart_link = None;
    if let Some(svg_path) = &opts.svg {
        let run_info = chart::RunInfo {
            machine: &machine,
            rounds: opts.rounds,
            hot_setup: report::hot_setup(&opts),
            command: &command,
            other_cpu: others,
            cpus: opts.cpus,
        };
        match chart::svg(&headline::Headline::all(&results), &run_info)
            .and_then(|doc| std::fs::write(svg_path, doc).map_err(Into::into))
        {
            Ok(()) => {
                eprintln!("wrote {svg_path}");
                chart_link = Some(link_from(opts.out.as_deref(), svg_path));
            }
            Err(e) => eprintln!("chart not written ({svg_path}): {e}"),
        }
    }
    let md = report::markdown(&report::Context {
        opts: &opts,
        results: &results,
        hot_as_calls_total: hot_calls,
        discovery_calls: adapter
            .counters
            .discovery
            .load(std::sync::atomic::Ordering::SeqCst),
        jwks_calls: adapter.counters.jwks.load(std::sync::atomic::Ordering::SeqCst),
        load_before: load_before.trim(),
        load_after: load_after.trim(),
        other_cpu: others,
        run_time: started.elapsed(),
        machine: &machine,
        chart_link,
    });
    println!("{md}");
    if let Some(path) = &opts.out {
        std::fs::write(path, &md)?;
        eprintln!("wrote {path}");
    }
    drop(client_rt);
    as_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
