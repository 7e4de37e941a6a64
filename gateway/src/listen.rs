//! The accept loop: one hyper connection per accepted socket, HTTP/1.1 with upgrades and
//! HTTP/2, drained gracefully when shutdown starts.
//!
//! It exists instead of `axum::serve` for one setting axum does not expose: a deadline for
//! the request head. Without it a client that opens connections and sends nothing (or a few
//! bytes a minute) holds them forever, and a few thousand such sockets exhaust the gateway's
//! file descriptors. The deadline covers the head of every request, the first and each later
//! one on a kept-alive connection; an upgraded WebSocket is no longer HTTP and is not
//! affected, so hibernating client sockets may stay idle for hours.

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::quickack::QuickAckListener;

/// Serves `app` on `listener` until `shutdown` fires, then lets open connections finish
/// their requests and returns once they have closed.
pub async fn serve(
    mut listener: QuickAckListener,
    app: Router,
    shutdown: CancellationToken,
    head_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    // HTTP/2 WebSockets need the CONNECT protocol.
    builder.http2().enable_connect_protocol();
    loop {
        let (io, _addr) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            _ = shutdown.cancelled() => break,
        };
        let service = app
            .clone()
            .map_request(|req: hyper::Request<Incoming>| req.map(Body::new));
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper's head deadline starts with the first byte (it reads the first bytes to
            // tell HTTP/1 from HTTP/2 without one): a socket that sends nothing at all is
            // dropped here.
            if !matches!(
                tokio::time::timeout(head_timeout, io.first_bytes()).await,
                Ok(Ok(()))
            ) {
                return;
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            if let Err(err) = watcher.watch(conn).await {
                tracing::trace!(error = %err, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
