//! The HTTP server: routes, a listener that keeps a handle on every accepted
//! connection, and a serving task whose stop also closes those connections
//! (so pooled keep-alive connections of a client cannot reach a stopped server).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::routing::{any, get, post};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::introspect::introspect;
use super::jwks::jwks;
use super::metadata::metadata;
use super::revoke::revoke;
use super::state::Shared;
use super::token::token;

/// Paths of the endpoints.
pub(crate) const TOKEN_PATH: &str = "/oauth2/token";
pub(crate) const INTROSPECTION_PATH: &str = "/oauth2/introspect";
pub(crate) const REVOCATION_PATH: &str = "/oauth2/revoke";
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub(crate) const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
pub(crate) const JWKS_PATH: &str = "/oauth2/jwks";

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        // Every method reaches the handler so that it is counted and
        // recorded; anything but POST gets 405.
        .route(INTROSPECTION_PATH, any(introspect))
        .route(REVOCATION_PATH, post(revoke))
        .route(METADATA_PATH, get(metadata))
        .route(OPENID_CONFIGURATION_PATH, get(metadata))
        .route(JWKS_PATH, get(jwks))
        .with_state(shared)
}

/// A running server: its task and its connections.
#[derive(Debug)]
pub(crate) struct Serving {
    task: JoinHandle<()>,
    conns: Arc<Connections>,
}

impl Serving {
    /// Serves `shared` on `listener` in a task on the current runtime.
    pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>) -> Self {
        let conns = Arc::new(Connections::default());
        let listener = Tracked {
            listener,
            conns: Arc::clone(&conns),
        };
        let task = tokio::spawn(async move {
            // `serve` only returns on a listener error it cannot retry.
            if let Err(err) = axum::serve(listener, router(shared)).await {
                tracing::debug!("test authorization server stopped: {err}");
            }
        });
        Self { task, conns }
    }

    /// Stops without waiting: the listener closes once the runtime has
    /// dropped the task.
    pub(crate) fn abort(self) {
        self.task.abort();
        self.conns.close_all();
    }

    /// Stops and waits until the listener is closed.
    pub(crate) async fn stop(self) {
        self.task.abort();
        // Resolves once the aborted task's future, and so the listener, is dropped.
        let _cancelled = self.task.await;
        self.conns.close_all();
    }
}

/// Duplicates of the accepted sockets, to shut them down from outside.
#[derive(Debug, Default)]
struct Connections {
    inner: Mutex<ConnectionsInner>,
}

#[derive(Debug, Default)]
struct ConnectionsInner {
    closed: bool,
    next_id: u64,
    sockets: HashMap<u64, std::net::TcpStream>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, ConnectionsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>, stream: TcpStream) -> io::Result<Conn> {
        let std_stream = stream.into_std()?;
        let duplicate = std_stream.try_clone()?;
        let stream = TcpStream::from_std(std_stream)?;
        let _ = stream.set_nodelay(true);
        let mut inner = self.lock();
        if inner.closed {
            let _ = duplicate.shutdown(std::net::Shutdown::Both);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.sockets.insert(id, duplicate);
        Ok(Conn {
            stream,
            id,
            conns: Arc::clone(self),
        })
    }

    /// Shuts down every connection: their readers see EOF and writes fail,
    /// so hyper ends them and drops any handler still running.
    fn close_all(&self) {
        let sockets = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.sockets)
        };
        for socket in sockets.into_values() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The listener handed to `axum::serve`.
struct Tracked {
    listener: TcpListener,
    conns: Arc<Connections>,
}

impl axum::serve::Listener for Tracked {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => match self.conns.register(stream) {
                    Ok(conn) => return (conn, addr),
                    Err(err) => {
                        tracing::debug!("test authorization server: dropping connection: {err}")
                    }
                },
                Err(err) => {
                    tracing::debug!("test authorization server: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// An accepted connection; forgets its duplicate socket when dropped.
struct Conn {
    stream: TcpStream,
    id: u64,
    conns: Arc<Connections>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.conns.lock().sockets.remove(&self.id);
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
