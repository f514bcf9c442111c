//! The listener: HTTP/1.1 connections with a deadline for each request's headers (a client that opens a connection
//! and trickles bytes holds no slot for long), a deadline for writes (a client that stops reading, say an event
//! stream nobody drains, is dropped once its small buffer is full and stays full), and a shutdown that stops
//! accepting, lets in-flight requests finish, and exits after a grace period whatever is still open.
//!
//! axum's own `serve` sets no header deadline and waits for every connection without limit, hence this loop
//! (hyper's connection builder, and a graceful-shutdown watch as hyper-util's). An event stream leaves hyper once
//! its head is written ([`Detach`]): a connection that will never serve another request does not keep hyper's
//! buffers and parser for hours.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use axum::Router;
use futures::future::{self, Either};
use futures::{stream, StreamExt, TryFutureExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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

/// Marks a `200` answer to a `GET` whose body is endless and the last thing its connection carries (an event
/// stream). Once hyper has written the head, the connection lets go of its HTTP state (hyper's 8 KiB read and write
/// buffers, the parser, the router) and a small task writes the body straight to the socket: an idle stream is held
/// in under 2 KiB instead of about 14. The head says `HTTP/1.0` and `Connection: close`, so the body needs no chunked
/// framing and ends with the connection. Served any other way (a test's `oneshot`), the mark does nothing.
#[derive(Debug, Clone, Copy)]
pub struct Detach;

/// A detached body, from the service that sees the response to the task that owns the socket.
type Detached = Arc<Mutex<Option<Body>>>;

type Io = WriteDeadline<TcpStream>;

/// Serves `app` on `listener` until `shutdown` resolves; then `on_shutdown` runs (it should end long-lived
/// responses such as event streams) and open connections get `deadlines.shutdown_grace` to finish. Each request is
/// offered to `shortcut` first (a hot read answered from memory, without the router's per-request work); what it
/// leaves (`None`) goes to `app`.
pub async fn serve<Q>(
    listener: TcpListener,
    app: Router,
    shortcut: Q,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl FnOnce(),
) where
    Q: Fn(&hyper::Request<Incoming>) -> Option<Response> + Clone + Send + Sync + Unpin + 'static,
{
    // Route tables are finished once here, not per connection.
    let app = app.with_state(());
    let mut http = http1::Builder::new();
    // At most this much of a response waits in the connection's own buffer (beyond the kernel's socket buffer);
    // hyper's default, about 400 KiB, would let each stalled response hold that much.
    http.timer(TokioTimer::new()).header_read_timeout(deadlines.header).max_buf_size(WRITE_BUFFER);
    // Every connection holds a receiver: shutdown sends, then waits until none is left.
    let (draining, _) = watch::channel(());
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
        let detached = Detached::default();
        // The peer's address goes with every request (axum's `ConnectInfo`): the per-address budgets read it.
        let service = hyper::service::service_fn({
            let (app, detached, shortcut) = (app.clone(), detached.clone(), shortcut.clone());
            move |request: hyper::Request<Incoming>| {
                if let Some(response) = shortcut(&request) {
                    return Either::Left(future::ready(Ok(response)));
                }
                let mut request: Request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                let get = request.method() == Method::GET;
                let detached = detached.clone();
                Either::Right(app.clone().oneshot(request).map_ok(move |response| {
                    if get {
                        detach(response, &detached)
                    } else {
                        response
                    }
                }))
            }
        });
        let io = WriteDeadline { io: stream, limit: deadlines.write, stalled: None };
        let connection = http.serve_connection(TokioIo::new(io), service);
        tokio::spawn(run(connection, detached, draining.subscribe()));
    }
    drop(listener);
    on_shutdown();
    let _ = draining.send(());
    tokio::select! {
        () = draining.closed() => tracing::info!("every connection finished"),
        () = tokio::time::sleep(deadlines.shutdown_grace) => {
            tracing::warn!(grace = ?deadlines.shutdown_grace, "connections still open after the grace period; exiting");
        }
    }
}

/// A `Detach`ed response with its body set aside in `detached`, and an empty one of unknown length in its place
/// (hyper writes no `Content-Length: 0` for it, and nothing after the head).
fn detach(response: Response, detached: &Detached) -> Response {
    if response.status() != StatusCode::OK || response.extensions().get::<Detach>().is_none() {
        return response;
    }
    let (mut head, body) = response.into_parts();
    *detached.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(body);
    head.version = Version::HTTP_10;
    head.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    Response::from_parts(head, Body::from_stream(stream::empty::<Result<Bytes, Infallible>>()))
}

/// Serves one connection until hyper is done with it (or, after the shutdown signal, with its request in flight);
/// then hands a detached body to a task of its own, or closes the connection.
async fn run<S>(
    mut connection: http1::Connection<TokioIo<Io>, S>,
    detached: Detached,
    mut draining: watch::Receiver<()>,
) where
    S: HttpService<Incoming, ResBody = Body> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let served = tokio::select! {
        served = poll_fn(|cx| connection.poll_without_shutdown(cx)) => served,
        _ = draining.changed() => {
            Pin::new(&mut connection).graceful_shutdown();
            poll_fn(|cx| connection.poll_without_shutdown(cx)).await
        }
    };
    if let Err(err) = served {
        tracing::debug!(error = %err, "connection ended with an error");
        return;
    }
    let body = detached.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    // Bytes the client sent after its request stay unanswered, as they would behind an endless response.
    let mut io = connection.into_parts().io.into_inner();
    match body {
        // A task of its own: this one's memory was sized for hyper's connection.
        Some(body) => {
            tokio::spawn(write_alone(io, body, draining));
        }
        None => {
            let _ = io.shutdown().await;
        }
    }
}

/// Writes a detached body to the socket until it ends, a write misses the deadline, or the client closes its side
/// or sends anything (it has nothing more to ask on this connection); then closes the connection. Holding
/// `_draining` keeps shutdown waiting for it, as for any connection.
async fn write_alone(mut io: Io, body: Body, _draining: watch::Receiver<()>) {
    let mut frames = body.into_data_stream();
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            frame = frames.next() => {
                let Some(Ok(frame)) = frame else { break };
                if io.write_all(&frame).await.is_err() {
                    break;
                }
            }
            _ = io.read(&mut probe) => break,
        }
    }
    let _ = io.shutdown().await;
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

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// Sends on its channel when dropped, as a stream's subscription and places are released.
    struct Released(Option<tokio::sync::oneshot::Sender<()>>);

    impl Drop for Released {
        fn drop(&mut self) {
            let _ = self.0.take().map(|tell| tell.send(()));
        }
    }

    /// A response body that yields `frame` and then nothing, ever, holding `held`.
    fn endless(frame: &'static str, held: Released) -> Body {
        let frames = stream::once(async move { Ok::<_, Infallible>(Bytes::from_static(frame.as_bytes())) })
            .chain(stream::pending())
            .map(move |frame| {
                let _held = &held;
                frame
            });
        Body::from_stream(frames)
    }

    async fn head_and_first_frame(client: &mut TcpStream, frame: &str) -> String {
        let mut read = Vec::new();
        while !String::from_utf8_lossy(&read).ends_with(frame) {
            let mut chunk = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&read));
            read.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(read).unwrap()
    }

    /// A detached stream is written unframed behind an HTTP/1.0 head, released as soon as its client goes, and
    /// still waited for (up to the grace period) at shutdown.
    #[tokio::test]
    async fn a_detached_stream_is_unframed_released_when_its_client_goes_and_waited_for_at_shutdown() {
        let (released_tx, released_rx) = std::sync::mpsc::channel();
        let app = Router::new().route(
            "/stream",
            get(move || {
                let (tell, told) = tokio::sync::oneshot::channel();
                released_tx.send(told).unwrap();
                async move {
                    let mut response = Response::new(endless("data: 1\n\n", Released(Some(tell))));
                    response.extensions_mut().insert(Detach);
                    response
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let grace = Duration::from_millis(300);
        let deadlines =
            Deadlines { header: Duration::from_secs(5), write: Duration::from_secs(5), shutdown_grace: grace };
        let server = tokio::spawn(serve(listener, app, |_: &_| None, deadlines, async { drop(stopped.await) }, || {}));
        let request = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";

        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        let answer = head_and_first_frame(&mut client, "data: 1\n\n").await;
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\ndata: 1\n\n"), "no chunk framing: {answer}");
        let released = released_rx.recv().unwrap();
        drop(client);
        tokio::time::timeout(Duration::from_secs(2), released).await.expect("released when the client went").unwrap();

        let mut open = TcpStream::connect(address).await.unwrap();
        open.write_all(request).await.unwrap();
        head_and_first_frame(&mut open, "data: 1\n\n").await;
        let started = tokio::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        assert!(started.elapsed() >= grace, "shutdown did not wait for the open stream");
    }
}
