//! Accepting and serving connections, with the limits a server on the open internet needs.
//!
//! `axum::serve` keeps every connection as long as the peer likes, so this module runs hyper
//! itself (what `axum::serve` does inside), configured with:
//! * a **header-read timeout** ([`Limits::header_read_timeout`]): a request head must arrive
//!   whole within it, and an idle keep-alive connection waits at most that long for its next
//!   request (hyper's own timer);
//! * a **write timeout** ([`Limits::write_timeout`], `tokio-io-timeout`): a peer that accepts no
//!   byte for that long is dropped; this is what ends a live subscriber that stopped reading,
//!   and with it the events the broadcast channel kept for it;
//! * a **connection cap** ([`Limits::max_connections`], a semaphore): past it, new connections
//!   wait in the listen queue until one ends, so descriptors cannot run out and `/health`
//!   keeps answering;
//! * graceful shutdown (`hyper-util`'s watcher): in-flight requests finish, idle connections
//!   close, live streams end through [`crate::AppState::shutdown`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

/// Connection limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown`, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let tcp = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // rather than spin.
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A response is written as head then body; with Nagle's algorithm the body of a small
        // download waited for the client's delayed ACK (~40 ms per request).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%e, "cannot set TCP_NODELAY");
        }
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(limits.write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
