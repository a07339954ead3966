//! The accept loop: every TCP connection the service takes, from `accept`
//! to its last byte. It owns what axum's own `serve` does not offer and a
//! hostile client needs:
//!
//! - a **header timeout**: a connection must deliver a request head within
//!   `EVENTUALL_HEADER_TIMEOUT` of opening (or of its previous response), so
//!   a slowloris client that dribbles a request line is closed instead of
//!   holding a socket forever;
//! - a **connection cap** (`EVENTUALL_MAX_CONNECTIONS`): a permit travels
//!   with the socket itself, through a WebSocket upgrade, so 10,000 idle
//!   sockets count as 10,000; past the cap a connection is closed at once;
//! - `TCP_NODELAY` on every socket;
//! - a **graceful drain**: on shutdown, stop accepting, let every HTTP
//!   connection finish its request in flight, then return. Upgraded
//!   WebSockets are not waited for (they belong to their rooms, which end
//!   them).
//!
//! It knows nothing of routes: it serves any axum `Router` over HTTP/1.1
//! (what the service has always spoken; no client here needs HTTP/2).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the accept loop treats its connections (configuration).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// The time a connection has to deliver a request head.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// The pause after an accept error that is not the peer's (EMFILE, ENOBUFS):
/// the condition lasts until some socket closes, so retrying at once would
/// spin a core; 100 ms keeps a freed descriptor from idling long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) if is_the_peers(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Dropping the socket closes it: the client sees the connection
            // end before any byte, and retries or gives up on its own.
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED).increment(1);
            tracing::debug!(max = limits.max_connections, "connection refused: at the connection cap");
            continue;
        };
        // TCP_NODELAY: a small frame (a streamed chunk, a snapshot) that
        // follows another must not wait for the peer's delayed ACK; without
        // it the first chunk of a reply arrived ~40 ms late (docs/BENCHMARKS.md,
        // "Interview rooms").
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let io = TokioIo::new(Counted { socket, _permit: permit });
        connections.spawn(serve_connection(io, app.clone(), limits.header_timeout, draining.clone()));
    }
    drop(listener);
    draining.cancel();
    connections.close();
    connections.wait().await;
}

/// Serves one connection, WebSocket upgrades included, until it ends or,
/// once `draining`, until its request in flight is answered.
async fn serve_connection(io: TokioIo<Counted>, app: Router, header_timeout: Duration, draining: CancellationToken) {
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = draining.cancelled() => {
            // Ends the connection after the response in flight (or at
            // once when idle); keep polling so that response gets written.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // A header timeout, a reset, a malformed request: the peer's doing,
        // and hyper has already answered what it could.
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Accept errors that concern one connection only (it was reset before we
/// took it): the next accept is unaffected.
fn is_the_peers(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// A socket that holds one of the cap's permits for as long as it lives.
/// hyper hands the socket itself to an upgraded WebSocket, so the permit
/// goes with it and is given back only when the WebSocket closes.
struct Counted {
    socket: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }
}
