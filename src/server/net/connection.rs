//! One connection: HTTP/1.1 through hyper's connection, each request offered to the shortcut first and then to the
//! router, with the peer's address attached (axum's `ConnectInfo`: the per-address budgets read it).
//!
//! An event stream leaves hyper once its head is written ([`Detach`]): a connection that will never serve another
//! request does not keep hyper's buffers and parser for hours. At shutdown a connection finishes the request in
//! flight and closes; a detached stream is still waited for, as any connection is.

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use super::deadline::{Deadlines, Guarded};
use super::Shortcut;

/// Bytes of response a connection buffers beyond the socket (also the largest request head accepted).
const WRITE_BUFFER: usize = 16 * 1024;

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

/// hyper's HTTP/1.1 settings, made once for every connection.
pub(super) fn http() -> http1::Builder {
    let mut http = http1::Builder::new();
    // At most this much of a response waits in the connection's own buffer (beyond the kernel's socket buffer);
    // hyper's default, about 400 KiB, would let each stalled response hold that much.
    http.timer(TokioTimer::new()).max_buf_size(WRITE_BUFFER);
    http
}

/// Serves `stream` on a task of its own: each request goes to `shortcut`, and what it leaves (`None`) to `app`.
/// Holding `draining` keeps shutdown waiting for the connection; its change asks the connection to finish.
pub(super) fn spawn<Q: Shortcut>(
    http: &http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: &Router,
    shortcut: &Q,
    deadlines: Deadlines,
    draining: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let detached = Detached::default();
    let io = Guarded::new(stream, deadlines);
    let service =
        hyper::service::service_fn({
            let (app, detached, shortcut) = (app.clone(), detached.clone(), shortcut.clone());
            let answering = io.answering();
            move |request: hyper::Request<Incoming>| {
                answering.begin();
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
    tokio::spawn(run(connection, detached, draining));
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
            std::pin::Pin::new(&mut connection).graceful_shutdown();
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
