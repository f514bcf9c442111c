//! `GET /events`: the Server-Sent Events stream of the caller's session group. Each append is announced as
//! `event: NewMessage` with `id:` and `data:` the newest message id; the tab then fetches what it has not seen.
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

use std::net::IpAddr;

use crate::server::hub::Notice;
use crate::server::net::Detach;
use crate::server::peer::{Peer, StreamPlace};
use crate::server::replicas::stream_leases::StreamLease;
use crate::server::state::AppState;
use crate::server::{group::GroupId, observe};
use crate::shared::error::{ApiError, ErrorKind};
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
    let address = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(peer)| peer.address);
    let place = match admit(&state, &group, address).await {
        Ok(place) => place,
        Err(refusal) => return refusal.into_response(),
    };
    // Subscribe before reading the latest id, so an append in between is announced rather than missed.
    let subscription = state.hub.subscribe(&group);
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let catch_up = match last_seen {
        Some(seen) => match state.store.last_id().await {
            Ok(latest) if latest > seen => Some(Notice::new(latest).frame),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the latest id for a reconnect");
                None
            }
        },
        None => None,
    };
    let frames = stream::once(async { Bytes::from_static(RETRY) })
        .chain(stream::iter(catch_up))
        .chain(subscription.map(|notice| notice.frame));
    // The stream holds its address's place and its browser's lease until it ends.
    let body = keep_alive(frames, KEEP_ALIVE).map(move |frame| {
        let _held = &place;
        Ok::<_, Infallible>(frame)
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    // Nothing follows the stream on its connection: the connection can drop its HTTP state (`serve`).
    response.extensions_mut().insert(Detach);
    response
}

/// What an admitted stream holds until it ends: its address's place and, across replicas, its browser's lease.
struct Held {
    _place: Option<StreamPlace>,
    _lease: Option<StreamLease>,
}

/// Refuses a stream beyond the caps: in total (503, the server is full), per session group and per client address
/// (429); answers what the stream holds. The total cap is this process's; the group cap is counted in this
/// process's hub, or across replicas by leases in Redis (503 when Redis cannot be asked). The total and the local
/// group counts are read, then the stream subscribes, so concurrent openings may pass those caps by a few.
async fn admit(state: &AppState, group: &GroupId, address: IpAddr) -> Result<Held, ApiError> {
    let admitted = admit_counted(state, group, address).await;
    if let Err(refusal) = &admitted {
        observe::stream_refused(refusal.kind.code());
    }
    admitted
}

async fn admit_counted(state: &AppState, group: &GroupId, address: IpAddr) -> Result<Held, ApiError> {
    let caps = state.limits.streams;
    if caps.total > 0 && state.hub.subscribers() >= caps.total {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "This server holds as many live streams as it can; retrying shortly.",
        ));
    }
    let lease = match &state.stream_leases {
        Some(leases) => Some(leases.admit(group).await?.ok_or_else(|| browser_full(leases.cap()))?),
        None if caps.per_group > 0 && state.hub.group_subscribers(group) >= caps.per_group => {
            return Err(browser_full(caps.per_group));
        }
        None => None,
    };
    // A refusal here drops the lease just taken, which removes it.
    let place = state.peers.open_stream(address)?;
    Ok(Held { _place: place, _lease: lease })
}

/// 429 `too_many_streams`: the browser's cap, wherever it is counted.
fn browser_full(cap: usize) -> ApiError {
    ApiError::new(
        ErrorKind::TooManyStreams,
        format!("This browser already has {cap} live streams here; close a tab to go live in this one."),
    )
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
