//! In-process cost of each middleware, without sockets: the same routers as
//! the servers, called directly (`poll_ready` + `call`, then the body is
//! read) on a current-thread runtime, timed with the thread's own CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`) so that other load on the machine does not
//! count. Bare and protected requests carry the same `Authorization` header;
//! the difference is the middleware's cost per request.

use std::error::Error;
use std::fmt::Debug;
use std::future::poll_fn;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::AUTHORIZATION;
use hyper::Request;
use tower_service::Service;

use crate::servers::{self, Kind};

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Debug, Clone, Default)]
pub struct MicroResult {
    /// Thread CPU nanoseconds per request, one value per repetition.
    pub bare_ns: Vec<f64>,
    pub protected_ns: Vec<f64>,
}

#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the local timespec only.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn request(path: &str, token: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .expect("static request parts are valid")
}

async fn one<S, B>(svc: &mut S, path: &str, token: &str) -> Result<u16, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = http::Response<B>>,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    poll_fn(|cx| svc.poll_ready(cx))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let res = svc
        .call(request(path, token))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    res.into_body().collect().await.map_err(|e| format!("{e:?}"))?;
    Ok(status)
}

/// ns of thread CPU per request over a run of about `per_run` wall time.
async fn timed<S, B>(svc: &mut S, path: &str, token: &str, per_run: Duration) -> Result<f64, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = http::Response<B>>,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    let (wall0, cpu0) = (Instant::now(), thread_cpu());
    let mut n: u64 = 0;
    while wall0.elapsed() < per_run {
        for _ in 0..64 {
            let status = one(svc, path, token).await?;
            if status != 200 {
                return Err(format!("{path}: status {status}").into());
            }
        }
        n += 64;
    }
    Ok((thread_cpu() - cpu0).as_nanos() as f64 / n as f64)
}

async fn bench<S, B>(mut svc: S, token: &str, reps: usize, per_run: Duration) -> Result<MicroResult, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = http::Response<B>>,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    // Warm the cache (and the JWKS) and the allocator.
    timed(&mut svc, "/protected", token, per_run / 4).await?;
    timed(&mut svc, "/bare", token, per_run / 4).await?;
    let mut out = MicroResult::default();
    for rep in 0..reps {
        let order = if rep % 2 == 0 {
            ["/bare", "/protected"]
        } else {
            ["/protected", "/bare"]
        };
        for path in order {
            let ns = timed(&mut svc, path, token, per_run).await?;
            if path == "/bare" {
                out.bare_ns.push(ns);
            } else {
                out.protected_ns.push(ns);
            }
        }
    }
    Ok(out)
}

/// Builds `kind`'s router in this process and measures it.
pub fn run(
    kind: Kind,
    url: &str,
    token: &str,
    reps: usize,
    per_run: Duration,
) -> Result<MicroResult, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match kind {
            Kind::Ti => bench(servers::ti_app(url)?, token, reps, per_run).await,
            Kind::Zitadel => bench(servers::zitadel_app(url).await?, token, reps, per_run).await,
            Kind::Jwt => bench(servers::jwt_app(url).await?, token, reps, per_run).await,
            Kind::TiJwt => bench(servers::ti_jwt_app(url)?, token, reps, per_run).await,
        }
    })
}
