//! The server's promises over real sockets: read deadlines that cut a slow head but not a slow answer or a quiet
//! event stream, and detached streams written unframed, released when their client goes, waited for at shutdown.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::{stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{serve, Deadlines, Detach};

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
