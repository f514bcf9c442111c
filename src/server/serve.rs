//! The listener: HTTP/1.1 connections with a deadline for each request's headers (a client that opens a connection
//! and trickles bytes holds no slot for long), a longer one for a kept-alive connection's next request (a tab whose
//! chat is quiet for a while still refetches on a warm connection), a deadline for writes (a client that stops
//! reading, say an event stream nobody drains, is dropped once its small buffer is full and stays full), and a
//! shutdown that stops accepting, lets in-flight requests finish, and exits after a grace period whatever is still
//! open.
//!
//! axum's own `serve` sets no header deadline and waits for every connection without limit, hence this loop
//! (hyper's connection builder, and a graceful-shutdown watch as hyper-util's). The read deadlines are the socket's
//! ([`Guarded`]), not hyper's header timeout: that one also closes an idle connection at the header deadline, and
//! makes a timer for every request. An event stream leaves hyper once its head is written ([`Detach`]): a connection
//! that will never serve another request does not keep hyper's buffers and parser for hours.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Bytes of response a connection buffers beyond the socket (also the largest request head accepted).
const WRITE_BUFFER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Time a client has to send a request's headers, from the connection's start or the request's first byte.
    pub header: Duration,
    /// Time a kept-alive connection may wait for its next request after an answer; then it is closed.
    pub idle: Duration,
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

type Io = Guarded<TcpStream>;

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
    http.timer(TokioTimer::new()).max_buf_size(WRITE_BUFFER);
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
        let io = Guarded::new(stream, deadlines);
        // The peer's address goes with every request (axum's `ConnectInfo`): the per-address budgets read it.
        let service = hyper::service::service_fn({
            let (app, detached, shortcut) = (app.clone(), detached.clone(), shortcut.clone());
            let answering = io.answering.clone();
            move |request: hyper::Request<Incoming>| {
                // The head is in: no read deadline until the answer (a body is the request timeout's to bound).
                answering.store(true, Ordering::Relaxed);
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
            io.unguard_reads();
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

/// A connection with deadlines. Writes must make progress: when the peer has taken no bytes for `write` while the
/// server had some to send, the write fails. Reads must bring a request in time: its head within `header` of the
/// connection's start or of the request's first byte, and after an answer the next request's first byte within
/// `idle`; a read that waits longer fails. While a request is being answered (the service marks `answering`) reads
/// have no deadline. A failed read or write closes the connection.
///
/// One read timer per connection, made at its first wait and moved only when a deadline comes earlier than the one
/// it is set for (a request's head arriving in parts) or when it fires early (the idle deadline moved on since it
/// was set): steady traffic sets it about once per `idle`, not once per request.
pub struct Guarded<T> {
    io: T,
    deadlines: Deadlines,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Set by the service when hyper hands it a request; taken back when the answer's first bytes are written.
    answering: Arc<AtomicBool>,
    waiting: Waiting,
    read_timer: Option<Pin<Box<Sleep>>>,
    /// False once the connection carries a detached stream: a client that says nothing is what it should do.
    reads_guarded: bool,
}

/// What a connection's reads wait for.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// A request's head, begun at `since` (or the connection's start).
    Head { since: Instant },
    /// The next request after an answer, waited for since the first read that found nothing.
    Next { since: Option<Instant> },
}

impl<T> Guarded<T> {
    fn new(io: T, deadlines: Deadlines) -> Self {
        Self {
            io,
            deadlines,
            stalled: None,
            answering: Arc::default(),
            waiting: Waiting::Head { since: Instant::now() },
            read_timer: None,
            reads_guarded: true,
        }
    }

    /// Reads wait as long as they like from now on (a detached stream only watches for the client going).
    fn unguard_reads(&mut self) {
        self.reads_guarded = false;
        self.read_timer = None;
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, attempt: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if attempt.is_ready() {
            self.stalled = None;
            return attempt;
        }
        let limit = self.deadlines.write;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// An answer's bytes went out: what the connection reads next is a next request (the rest of a long answer may
    /// still be written meanwhile; the idle deadline is the longer one).
    fn answered(&mut self, attempt: &Poll<io::Result<usize>>) {
        if matches!(attempt, Poll::Ready(Ok(written)) if *written > 0) && self.answering.swap(false, Ordering::Relaxed)
        {
            self.waiting = Waiting::Next { since: None };
        }
    }

    /// A read found nothing: pending until its deadline, then an error.
    fn wait_for_request(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.reads_guarded || self.answering.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let deadline = match &mut self.waiting {
            Waiting::Head { since } => *since + self.deadlines.header,
            Waiting::Next { since } => *since.get_or_insert_with(Instant::now) + self.deadlines.idle,
        };
        loop {
            let timer = match &mut self.read_timer {
                Some(timer) => timer,
                None => self.read_timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if deadline < timer.deadline() {
                timer.as_mut().reset(deadline);
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => {
                    let what = match self.waiting {
                        Waiting::Head { .. } => "the request's headers took too long",
                        Waiting::Next { .. } => "the kept-alive connection was idle too long",
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                // Set for an earlier deadline than today's: wait for today's.
                Poll::Ready(()) => timer.as_mut().reset(deadline),
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.wait_for_request(cx),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                // The first bytes of a next request: its head has `header` from now.
                if let Waiting::Next { .. } = this.waiting {
                    this.waiting = Waiting::Head { since: Instant::now() };
                }
                Poll::Ready(Ok(()))
            }
            done => done,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_write(cx, buf);
        this.answered(&attempt);
        this.progress(cx, attempt)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.answered(&attempt);
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

    const HEADER: Duration = Duration::from_millis(300);
    const IDLE: Duration = Duration::from_millis(1500);

    /// A server with the short deadlines above: `/fast` answers at once, `/slow` after 800 ms (longer than the
    /// header deadline), `/stream` is a detached stream that sends one frame.
    async fn guarded_server() -> std::net::SocketAddr {
        let app = Router::new()
            .route("/fast", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    "ok"
                }),
            )
            .route(
                "/stream",
                get(|| async {
                    let mut response = Response::new(endless("data: 1\n\n", Released(None)));
                    response.extensions_mut().insert(Detach);
                    response
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let deadlines =
            Deadlines { header: HEADER, idle: IDLE, write: Duration::from_secs(5), shutdown_grace: Duration::ZERO };
        tokio::spawn(serve(listener, app, |_: &_| None, deadlines, std::future::pending(), || {}));
        address
    }

    async fn ask(client: &mut TcpStream, path: &str) {
        client.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let answer = head_and_first_frame(client, "\r\n\r\nok").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }

    /// How long until the server closes `client` (at most 5 s).
    async fn closed_after(client: &mut TcpStream) -> Duration {
        let started = tokio::time::Instant::now();
        let mut rest = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), client.read(&mut rest)).await {
                Ok(Ok(0) | Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => continue,
                Err(_) => panic!("still open after 5 s"),
            }
        }
    }

    /// After an answer, a kept-alive connection waits `idle` for its next request, not the header deadline; then it
    /// is closed.
    #[tokio::test]
    async fn a_kept_alive_connection_waits_the_idle_deadline_for_its_next_request() {
        let address = guarded_server().await;
        let mut client = TcpStream::connect(address).await.unwrap();
        ask(&mut client, "/fast").await;
        tokio::time::sleep(HEADER + Duration::from_millis(500)).await;
        ask(&mut client, "/fast").await;
        let closed = closed_after(&mut client).await;
        assert!(closed >= IDLE - Duration::from_millis(100), "closed after {closed:?}, before the idle deadline");
    }

    /// A head that does not come whole within the header deadline, from the connection's start or from its first
    /// byte after an answer, closes the connection; an answer that takes longer than that does not.
    #[tokio::test]
    async fn a_slow_head_is_cut_at_the_header_deadline_and_a_slow_answer_is_not() {
        let address = guarded_server().await;
        let early = HEADER - Duration::from_millis(50);

        let mut silent = TcpStream::connect(address).await.unwrap();
        let closed = closed_after(&mut silent).await;
        assert!(closed >= early && closed < IDLE - Duration::from_millis(200), "silent: closed after {closed:?}");

        let mut trickle = TcpStream::connect(address).await.unwrap();
        ask(&mut trickle, "/fast").await;
        trickle.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let closed = closed_after(&mut trickle).await;
        assert!(closed >= early && closed < IDLE - Duration::from_millis(200), "half a head: closed after {closed:?}");

        let mut patient = TcpStream::connect(address).await.unwrap();
        ask(&mut patient, "/slow").await;
        ask(&mut patient, "/fast").await;
    }

    /// A detached stream's client sends nothing for as long as it listens: no read deadline cuts it.
    #[tokio::test]
    async fn a_detached_stream_outlives_the_read_deadlines() {
        let address = guarded_server().await;
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        head_and_first_frame(&mut client, "data: 1\n\n").await;
        let mut more = [0u8; 16];
        let read = tokio::time::timeout(IDLE + HEADER * 2, client.read(&mut more)).await;
        assert!(read.is_err(), "the stream ended or sent more: {read:?}");
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
        let deadlines = Deadlines {
            header: Duration::from_secs(5),
            idle: Duration::from_secs(5),
            write: Duration::from_secs(5),
            shutdown_grace: grace,
        };
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
