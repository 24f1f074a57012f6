//! The load generator: hyper 1 HTTP/1.1 client connections over loopback.
//!
//! - [`hot_run`]: `connections` keep-alive connections, each sending the next
//!   request as soon as the previous answer's body is read (closed loop),
//!   for `warmup + duration`; only requests sent after the warm-up count.
//! - [`herd`]: `n` connections opened first, then one request each released
//!   at the same instant (the cold path: a token the server has not seen).
//!
//! Every target must be a loopback address: anything else is refused.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};

type BoxError = Box<dyn Error + Send + Sync>;

/// Upper bounds, whatever the command line says.
pub const MAX_CONNECTIONS: usize = 1024;
pub const MAX_HERD: usize = 5000;
pub const MAX_DURATION: Duration = Duration::from_secs(60);
pub const MAX_WARMUP: Duration = Duration::from_secs(30);

pub fn check_loopback(addr: SocketAddr) -> Result<(), BoxError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("refusing to send load to {addr}: only loopback targets are allowed").into())
    }
}

#[derive(Debug, Clone)]
pub struct RunResult {
    /// Requests sent after the warm-up and answered.
    pub requests: u64,
    /// Answers other than 200.
    pub non_200: u64,
    /// Transport errors (connect, send, body).
    pub errors: u64,
    pub rps: f64,
    /// Latencies of the counted requests, nanoseconds.
    pub latencies_ns: Vec<u64>,
    /// CPU time the server process used during the measured window.
    pub server_cpu: Option<Duration>,
    /// CPU time this process (load generator + test AS) used in the window.
    pub client_cpu: Option<Duration>,
    pub window: Duration,
}

struct ConnStats {
    requests: u64,
    non_200: u64,
    errors: u64,
    latencies_ns: Vec<u64>,
}

fn request(path: &str, bearer: Option<&str>) -> Request<Empty<Bytes>> {
    let mut b = Request::get(path).header(HOST, "127.0.0.1");
    if let Some(token) = bearer {
        b = b.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    b.body(Empty::new()).expect("static request parts are valid")
}

async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn conn_loop(
    addr: SocketAddr,
    path: Arc<str>,
    bearer: Option<Arc<str>>,
    count_from: Instant,
    end: Instant,
) -> ConnStats {
    let mut st = ConnStats {
        requests: 0,
        non_200: 0,
        errors: 0,
        latencies_ns: Vec::with_capacity(64 * 1024),
    };
    let mut sender = match connect(addr).await {
        Ok(s) => s,
        Err(_) => {
            st.errors += 1;
            return st;
        }
    };
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let counted = sent >= count_from;
        let outcome = async {
            sender.ready().await?;
            let res = sender.send_request(request(&path, bearer.as_deref())).await?;
            let status = res.status();
            res.into_body().collect().await?;
            Ok::<_, BoxError>(status)
        }
        .await;
        match outcome {
            Ok(status) => {
                if counted {
                    st.requests += 1;
                    st.latencies_ns.push(sent.elapsed().as_nanos() as u64);
                    if status != 200 {
                        st.non_200 += 1;
                    }
                }
            }
            Err(_) => {
                st.errors += 1;
                // Reconnect (bounded by the deadline) rather than spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
                match connect(addr).await {
                    Ok(s) => sender = s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    }
    st
}

/// One closed-loop run against `addr` + `path`.
pub async fn hot_run(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    server_pid: u32,
) -> Result<RunResult, BoxError> {
    check_loopback(addr)?;
    let connections = connections.clamp(1, MAX_CONNECTIONS);
    let warmup = warmup.min(MAX_WARMUP);
    let duration = duration.clamp(Duration::from_millis(100), MAX_DURATION);
    let path: Arc<str> = Arc::from(path);
    let bearer: Option<Arc<str>> = bearer.map(Arc::from);
    let start = Instant::now();
    let count_from = start + warmup;
    let end = count_from + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(conn_loop(
                addr,
                Arc::clone(&path),
                bearer.clone(),
                count_from,
                end,
            ))
        })
        .collect();
    tokio::time::sleep_until(count_from.into()).await;
    let (s0, c0) = (crate::proc_cpu(Some(server_pid)), crate::proc_cpu(None));
    let t0 = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let (s1, c1) = (crate::proc_cpu(Some(server_pid)), crate::proc_cpu(None));
    let window = t0.elapsed();
    let mut out = RunResult {
        requests: 0,
        non_200: 0,
        errors: 0,
        rps: 0.0,
        latencies_ns: Vec::new(),
        server_cpu: s0.zip(s1).map(|(a, b)| b.saturating_sub(a)),
        client_cpu: c0.zip(c1).map(|(a, b)| b.saturating_sub(a)),
        window,
    };
    for t in tasks {
        let st = t.await?;
        out.requests += st.requests;
        out.non_200 += st.non_200;
        out.errors += st.errors;
        out.latencies_ns.extend(st.latencies_ns);
    }
    out.rps = out.requests as f64 / duration.as_secs_f64();
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct HerdResult {
    pub n: usize,
    pub statuses: BTreeMap<u16, usize>,
    pub errors: usize,
    pub p50: Duration,
    pub max: Duration,
}

/// `n` requests with the same bearer token, released together on `n`
/// already-open connections.
pub async fn herd(addr: SocketAddr, path: &str, bearer: &str, n: usize) -> Result<HerdResult, BoxError> {
    check_loopback(addr)?;
    let n = n.clamp(1, MAX_HERD);
    let barrier = Arc::new(Barrier::new(n + 1));
    let connecting = Arc::new(Semaphore::new(64));
    let path: Arc<str> = Arc::from(path);
    let bearer: Arc<str> = Arc::from(bearer);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, connecting) = (Arc::clone(&barrier), Arc::clone(&connecting));
            let (path, bearer) = (Arc::clone(&path), Arc::clone(&bearer));
            tokio::spawn(async move {
                let sender = {
                    let _permit = connecting.acquire().await;
                    tokio::time::timeout(Duration::from_secs(10), connect(addr)).await
                };
                barrier.wait().await;
                let released = Instant::now();
                let mut sender = match sender {
                    Ok(Ok(s)) => s,
                    _ => return Err(()),
                };
                let outcome = tokio::time::timeout(Duration::from_secs(30), async {
                    sender.ready().await?;
                    let res = sender.send_request(request(&path, Some(&bearer))).await?;
                    let status = res.status().as_u16();
                    res.into_body().collect().await?;
                    Ok::<_, BoxError>(status)
                })
                .await;
                match outcome {
                    Ok(Ok(status)) => Ok((status, released.elapsed())),
                    _ => Err(()),
                }
            })
        })
        .collect();
    barrier.wait().await;
    let mut statuses = BTreeMap::new();
    let mut errors = 0;
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        match t.await? {
            Ok((status, d)) => {
                *statuses.entry(status).or_insert(0) += 1;
                lat.push(d);
            }
            Err(()) => errors += 1,
        }
    }
    lat.sort();
    let pick = |q: f64| {
        lat.get(
            ((lat.len() as f64 * q).ceil() as usize)
                .saturating_sub(1)
                .min(lat.len().saturating_sub(1)),
        )
        .copied()
        .unwrap_or_default()
    };
    Ok(HerdResult {
        n,
        statuses,
        errors,
        p50: pick(0.5),
        max: pick(1.0),
    })
}

/// The q-quantile (0..=1) of unsorted nanosecond samples (sorts in place).
pub fn quantile(samples: &mut [u64], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let i = ((samples.len() as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(samples.len() - 1);
    Some(Duration::from_nanos(samples[i]))
}

/// One request, for sanity checks: the status.
pub async fn probe(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Result<u16, BoxError> {
    check_loopback(addr)?;
    let mut sender = connect(addr).await?;
    sender.ready().await?;
    let res = sender.send_request(request(path, bearer)).await?;
    let status = res.status().as_u16();
    res.into_body().collect().await?;
    Ok(status)
}
