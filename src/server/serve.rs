//! The listener: HTTP/1.1 connections with a deadline for each request's headers (a client that opens a connection
//! and trickles bytes holds no slot for long), and a shutdown that stops accepting, lets in-flight requests finish,
//! and exits after a grace period whatever is still open.
//!
//! axum's own `serve` sets no header deadline and waits for every connection without limit, hence this loop
//! (hyper-util's connection builder and graceful-shutdown watcher, as axum's serve uses them).

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Time a client has to send a request's headers (also bounds an idle kept-alive connection's next request).
    pub header: Duration,
    /// After the shutdown signal: time in-flight requests have before the process exits anyway.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then `on_shutdown` runs (it should end long-lived
/// responses such as event streams) and open connections get `deadlines.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl FnOnce(),
) {
    // Route tables are finished once here, not per connection.
    let app = app.with_state(());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(deadlines.header);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().map_request(|request: Request<Incoming>| request.map(Body::new)));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    on_shutdown();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every connection finished"),
        () = tokio::time::sleep(deadlines.shutdown_grace) => {
            tracing::warn!(grace = ?deadlines.shutdown_grace, "connections still open after the grace period; exiting");
        }
    }
}
