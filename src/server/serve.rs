//! The listener: HTTP/1.1 connections with a deadline for each request's headers (a client that opens a connection
//! and trickles bytes holds no slot for long), a deadline for writes (a client that stops reading, say an event
//! stream nobody drains, is dropped once its small buffer is full and stays full), and a shutdown that stops
//! accepting, lets in-flight requests finish, and exits after a grace period whatever is still open.
//!
//! axum's own `serve` sets no header deadline and waits for every connection without limit, hence this loop
//! (hyper-util's connection builder and graceful-shutdown watcher, as axum's serve uses them).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Bytes of response a connection buffers beyond the socket (also the largest request head accepted).
const WRITE_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Time a client has to send a request's headers (also bounds an idle kept-alive connection's next request).
    pub header: Duration,
    /// Time a client may take no bytes at all while the server has some to send; then the connection is dropped.
    pub write: Duration,
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
    // At most this much of a response waits in the connection's own buffer (beyond the kernel's socket buffer);
    // hyper's default, about 400 KiB, would let each stalled event stream hold that much.
    http.timer(TokioTimer::new()).header_read_timeout(deadlines.header).max_buf_size(WRITE_BUFFER);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
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
        // The peer's address goes with every request (axum's `ConnectInfo`): the per-address budgets read it.
        let service = TowerToHyperService::new(app.clone().map_request(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        }));
        let io = WriteDeadline { io: TokioIo::new(stream), limit: deadlines.write, stalled: None };
        let connection = graceful.watch(http.serve_connection(io, service));
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

/// A connection whose writes must make progress: when the peer has taken no bytes for `limit` while the server had
/// some to send, the write fails and the connection closes. The timer exists only while a write is blocked.
struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn progress<R>(&mut self, cx: &mut Context<'_>, attempt: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if attempt.is_ready() {
            self.stalled = None;
            return attempt;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for WriteDeadline<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(cx, attempt)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(cx, attempt)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(cx, attempt)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
