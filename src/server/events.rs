//! `GET /events`: the Server-Sent Events stream of the caller's session group, the HTTP edge of `follow` (which
//! admits the stream and answers its notices). A browser holds one stream for every feed its tabs show:
//! `/events?feed=a&feed=b` announces each append as `event: NewMessage` with `data: <feed> <id>`, and a change of who
//! is here as `event: PresenceChanged` with `data: <feed>`. `/events` alone is the stream of the version before
//! feeds: main's, with `id:` and `data:` the newest id (and `Last-Event-ID` honoured). The tab then fetches what it
//! has not seen.
//!
//! The body is plain bytes: the frames come pre-encoded from the fan-out (one encoding per message, shared by every
//! subscriber), and an idle stream gets a comment every 15 s so proxies keep it open. The stream ends when the
//! fan-out closes at shutdown.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{stream, Stream, StreamExt};

use crate::server::follow;
use crate::server::group::GroupId;
use crate::server::net::Detach;
use crate::server::peer::{self, Peer};
use crate::server::state::AppState;
use crate::server::ticket::TicketKeys;
use crate::shared::domain::{FeedName, FEED_NAME_RULE};
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
    uri: Uri,
) -> Response {
    let address = peer::address_of(peer);
    let named = match feeds_asked(uri.query(), state.limits.streams.feeds) {
        Ok(named) => named,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(absent) = named.iter().flatten().find(|feed| !state.limits.feeds.may_exist(feed)) {
        return crate::server::feed::no_such_feed(absent).into_response();
    }
    // A private feed's notices take its read pass (`pass=…`, one per private feed: `EventSource` sends no header).
    let passes = passes_given(uri.query());
    let main = [FeedName::main()];
    for feed in named.as_deref().unwrap_or(&main) {
        let pass = passes.iter().map(String::as_str).find(|pass| TicketKeys::pass_names(pass, feed));
        if let Err(refusal) = crate::server::feed::readable(&state, feed, pass) {
            return refusal.into_response();
        }
    }
    // A stream that names its feeds catches each up itself when it opens; one that does not is main's, as before.
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .filter(|_| named.is_none());
    let feeds = named.clone().unwrap_or_else(|| vec![FeedName::main()]);
    let notices = match follow::follow(&state, &group, &feeds, address, last_seen).await {
        Ok(notices) => notices,
        Err(refusal) => return refusal.into_response(),
    };
    let named = named.is_some();
    let frames = stream::once(async { Bytes::from_static(RETRY) }).chain(notices.map(move |notice| {
        if named {
            notice.named
        } else {
            notice.frame
        }
    }));
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

/// The feeds a stream's query names (`feed=a&feed=b`, each once, in order), `None` when it names none (a tab of the
/// version before feeds: main's stream); a malformed name, or more than `most`, is a 400.
fn feeds_asked(query: Option<&str>, most: usize) -> Result<Option<Vec<FeedName>>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|err| ApiError::new(ErrorKind::BadRequest, format!("Malformed request: {err}")))?;
    let mut feeds: Vec<FeedName> = Vec::new();
    for (_, raw) in pairs.iter().filter(|(name, _)| name == wire::FEED_FIELD) {
        let feed = FeedName::parse(raw).ok_or_else(|| {
            ApiError::new(ErrorKind::BadRequest, format!("Not a feed name: {raw:?}. {FEED_NAME_RULE}"))
        })?;
        if !feeds.contains(&feed) {
            feeds.push(feed);
        }
        if feeds.len() > most {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                format!("One stream carries at most {most} feeds; this one asks for more."),
            ));
        }
    }
    Ok((!feeds.is_empty()).then_some(feeds))
}

/// The read passes a stream's query gives (`pass=…`), at most a few dozen: one per private feed it follows.
fn passes_given(query: Option<&str>) -> Vec<String> {
    const MOST: usize = 64;
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == wire::PASS_FIELD)
        .map(|(_, pass)| pass.into_owned())
        .take(MOST)
        .collect()
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

    #[test]
    fn a_stream_names_its_feeds_once_each_within_the_cap() {
        let names = |feeds: Option<Vec<FeedName>>| feeds.map(|f| f.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(names(feeds_asked(None, 3).unwrap()), None, "no feed: main's stream, as before feeds");
        assert_eq!(names(feeds_asked(Some("x=1"), 3).unwrap()), None);
        let asked = feeds_asked(Some("feed=b&feed=a&feed=b"), 3).unwrap();
        assert_eq!(names(asked), Some(vec!["b".to_owned(), "a".to_owned()]));
        let bad = feeds_asked(Some("feed=Team"), 3).unwrap_err();
        assert_eq!(bad.kind, ErrorKind::BadRequest);
        assert!(bad.message.contains("Team") && bad.message.contains("a-z"), "{}", bad.message);
        let many = feeds_asked(Some("feed=a&feed=b&feed=c&feed=d"), 3).unwrap_err();
        assert!(many.message.contains("at most 3 feeds"), "{}", many.message);
        assert!(feeds_asked(Some("feed=a&feed=a&feed=a&feed=a"), 1).is_ok(), "repeats count once");
    }

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
