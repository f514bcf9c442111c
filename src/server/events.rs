//! `GET /events`: the Server-Sent Events stream of the caller's session group, the HTTP edge of `follow` (which
//! admits the stream and answers its notices). Each append is announced as `event: NewMessage` with `id:` and
//! `data:` the newest message id; the tab then fetches what it has not seen.
//!
//! The body is plain bytes: the frames come pre-encoded from the fan-out (one encoding per message, shared by every
//! subscriber), and an idle stream gets a comment every 15 s so proxies keep it open. The stream ends when the
//! fan-out closes at shutdown.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{stream, Stream, StreamExt};

use crate::server::follow;
use crate::server::group::Audience;
use crate::server::group::GroupId;
use crate::server::net::Detach;
use crate::server::peer::{self, Peer};
use crate::server::state::AppState;
use crate::shared::wire;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Asks the browser to reconnect one second after a drop (its default is about three).
const RETRY: &[u8] = b"retry: 1000\n\n";
const COMMENT: &[u8] = b":\n\n";

pub fn routes() -> Router<AppState> {
    Router::new().route(wire::EVENTS_PATH, get(stream))
}

async fn stream(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    let address = peer::address_of(peer);
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let notices = match follow::follow(&state, &Audience::main(group), address, last_seen).await {
        Ok(notices) => notices,
        Err(refusal) => return refusal.into_response(),
    };
    let frames = stream::once(async { Bytes::from_static(RETRY) }).chain(notices.map(|notice| notice.frame));
    let body = keep_alive(frames, KEEP_ALIVE).map(Ok::<_, Infallible>);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    // Nothing follows the stream on its connection: the connection can drop its HTTP state (`serve`).
    response.extensions_mut().insert(Detach);
    response
}

/// `frames`, with a comment whenever nothing was sent for `every`. A frame only notes the time: the timer is moved
/// when it fires (at most once per `every`), not on every frame, which would take the runtime's timer lock for each
/// subscriber of each message.
fn keep_alive(frames: impl Stream<Item = Bytes> + Send + 'static, every: Duration) -> impl Stream<Item = Bytes> {
    let idle = Box::pin(tokio::time::sleep(every));
    let sent = tokio::time::Instant::now();
    stream::unfold((Box::pin(frames), idle, sent), move |(mut frames, mut idle, mut sent)| async move {
        let (next, comment) = loop {
            tokio::select! {
                biased;
                frame = frames.next() => break (frame?, false),
                () = idle.as_mut() => {
                    let due = sent + every;
                    if tokio::time::Instant::now() >= due {
                        break (Bytes::from_static(COMMENT), true);
                    }
                    idle.as_mut().reset(due);
                }
            }
        };
        sent = tokio::time::Instant::now();
        if comment {
            idle.as_mut().reset(sent + every);
        }
        Some((next, (frames, idle, sent)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_a_comment_each_interval_and_frames_pass_through() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let frames = futures::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) });
        let mut out = Box::pin(keep_alive(frames, Duration::from_secs(15)));
        tx.send(Bytes::from_static(b"a")).unwrap();
        assert_eq!(out.next().await.unwrap(), Bytes::from_static(b"a"));
        let started = tokio::time::Instant::now();
        assert_eq!(out.next().await.unwrap(), Bytes::from_static(COMMENT));
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        tx.send(Bytes::from_static(b"b")).unwrap();
        assert_eq!(out.next().await.unwrap(), Bytes::from_static(b"b"));
        // A frame sent between two comments moves the next one: 15 s after that frame, not after the comment.
        tokio::time::sleep(Duration::from_secs(10)).await;
        tx.send(Bytes::from_static(b"c")).unwrap();
        assert_eq!(out.next().await.unwrap(), Bytes::from_static(b"c"));
        let c_sent = tokio::time::Instant::now();
        assert_eq!(out.next().await.unwrap(), Bytes::from_static(COMMENT));
        assert_eq!(c_sent.elapsed(), Duration::from_secs(15));
        assert_eq!(out.next().await.unwrap(), Bytes::from_static(COMMENT));
        assert_eq!(c_sent.elapsed(), Duration::from_secs(30), "then every 15 s while idle");
        drop(tx);
        assert_eq!(out.next().await, None, "the stream ends with its frames");
    }
}
