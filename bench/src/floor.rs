//! The floor: a bare axum + `tokio::sync::broadcast` SSE server with the same routes and frames as Broadcasting,
//! but no store, no session groups, no page cache. What Broadcasting's fan-out is compared against.
//!
//! It also answers `GET /api/messages` from prepared bytes, the cheapest refetch axum can answer: each message's JSON
//! is written once, when it is sent, as the page `[{...}]` that holds it alone, and the page a tab asks for after a
//! notice (`since=A&until=A+1`) is those bytes as they are. `fanout --no-fetch` against it is the notice alone;
//! `fanout` with fetching is the design's floor: a notice, then a static page.
//!
//! Feeds the same way (`feeds` against it): a send's `feed` field names one, `/events?feed=a&feed=b` follows several
//! with `<feed> <id>` frames, and `/api/feeds/{feed}/messages` answers a feed's prepared pages. Each feed is its
//! own log and channel, made by its first use.

use anyhow::anyhow;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Request, State};
use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use futures::stream::{self, StreamExt};
use tokio::sync::broadcast;

use crate::wire;

/// Messages kept for refetching: far more than a tab is ever behind in a bench run (it is told of every id).
const KEPT: usize = 256;
/// Who every message is from: the name the floor's join answers.
const USER: &str = "bench";
/// The floor's `Broadcasting-Epoch`: its log is never made anew.
const EPOCH: &str = "floor";

#[derive(Clone)]
struct Floor {
    recent: Arc<Mutex<Recent>>,
    notify: broadcast::Sender<u64>,
    /// Named feeds, each its own log and channel.
    feeds: Arc<Mutex<HashMap<String, Log>>>,
}

/// One named feed's log and channel.
#[derive(Clone)]
struct Log {
    recent: Arc<Mutex<Recent>>,
    notify: broadcast::Sender<u64>,
}

impl Floor {
    /// Feed `name`'s log, made if it is new.
    fn feed(&self, name: &str) -> Log {
        let mut feeds = self.feeds.lock().expect("poisoned");
        feeds
            .entry(name.to_owned())
            .or_insert_with(|| Log { recent: Arc::default(), notify: broadcast::channel(64).0 })
            .clone()
    }
}

pub async fn serve(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let floor = Floor { recent: Arc::default(), notify: broadcast::channel(64).0, feeds: Arc::default() };
    let app = Router::new()
        .route(wire::EVENTS_PATH, get(events))
        .route(wire::JOIN_PATH, post(|| async { Json(serde_json::json!({ "name": USER, "ticket": "floor" })) }))
        .route(wire::SEND_PATH, post(send))
        .route(wire::MESSAGES_PATH, get(messages))
        .route(&wire::feed_api("{feed}", wire::FEED_MESSAGES), get(feed_messages))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow!("bind {addr}: {e}"))?;
    println!("floor listening on http://{}", listener.local_addr()?);
    Ok(axum::serve(listener, app).await?)
}

/// What the floor reads of a send: the text and the feed (the ticket is not checked).
#[derive(serde::Deserialize)]
struct Sent {
    #[serde(default)]
    text: String,
    #[serde(default)]
    feed: String,
}

/// Records the message (its page prepared before anyone is told of it, so the refetch a notice causes finds it),
/// then announces its id. A body that is not a form is still a send, as it always was on the floor.
async fn send(State(floor): State<Floor>, sent: Result<Form<Sent>, FormRejection>) -> Json<serde_json::Value> {
    let (text, feed) = sent.map(|Form(sent)| (sent.text, sent.feed)).unwrap_or_default();
    let at = rfc3339(SystemTime::now());
    let (recent, notify) = if feed.is_empty() {
        (floor.recent.clone(), floor.notify.clone())
    } else {
        let log = floor.feed(&feed);
        (log.recent, log.notify)
    };
    let id = recent.lock().expect("poisoned").push(&text, &at);
    let _ = notify.send(id);
    Json(serde_json::json!({ "id": id }))
}

/// `GET /api/messages`: prepared bytes, with no work for the query beyond reading two numbers. Without `since`, the
/// newest message and the epoch header (what `fanout` reads before it starts); with it, the messages after `since`
/// up to `until` (or the newest).
async fn messages(State(floor): State<Floor>, request: Request) -> Response {
    page(&floor.recent, request)
}

/// A feed's `GET /api/feeds/{feed}/messages`, as `messages` answers the default log's.
async fn feed_messages(State(floor): State<Floor>, Path(feed): Path<String>, request: Request) -> Response {
    page(&floor.feed(&feed).recent, request)
}

fn page(recent: &Mutex<Recent>, request: Request) -> Response {
    let Ok((since, until)) = bounds(request.uri().query().unwrap_or_default()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(since) = since else {
        let body = recent.lock().expect("poisoned").newest();
        let mut response = json(body);
        response.headers_mut().insert(HeaderName::from_static(wire::EPOCH_HEADER), HeaderValue::from_static(EPOCH));
        return response;
    };
    let body = recent.lock().expect("poisoned").page(since, until);
    json(body)
}

/// `body` as a JSON answer; hyper adds only its length and date.
fn json(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `since` and `until` of a query string (blank counts as absent); anything else in it (the epoch) is not read.
fn bounds(query: &str) -> Result<(Option<u64>, Option<u64>), std::num::ParseIntError> {
    let (mut since, mut until) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("since", value)) if !value.is_empty() => since = Some(value.parse()?),
            Some(("until", value)) if !value.is_empty() => until = Some(value.parse()?),
            _ => {}
        }
    }
    Ok((since, until))
}

/// The newest [`KEPT`] messages, each as the prepared page `[{...}]` that holds it alone. Its JSON object, for a
/// page of several, is the same bytes without the brackets: nothing is written twice.
#[derive(Default)]
struct Recent {
    /// Ids `newest - pages.len() + 1 ..= newest`, oldest first (ids count from 1 with no gaps).
    pages: VecDeque<Bytes>,
    newest: u64,
}

impl Recent {
    /// Takes the next id for a message of `text` sent `at`, prepares its page, and forgets the oldest beyond
    /// [`KEPT`].
    fn push(&mut self, text: &str, at: &str) -> u64 {
        let id = self.newest + 1;
        if self.pages.len() == KEPT {
            self.pages.pop_front();
        }
        self.pages.push_back(prepared(id, text, at));
        self.newest = id;
        id
    }

    /// The first id still kept.
    fn oldest(&self) -> u64 {
        self.newest + 1 - self.pages.len() as u64
    }

    /// The page of the newest message, or `[]` before the first.
    fn newest(&self) -> Bytes {
        self.pages.back().cloned().unwrap_or_else(|| Bytes::from_static(b"[]"))
    }

    /// The messages after `since` up to `until` (the newest without it or beyond it; from the oldest kept if
    /// `since` was forgotten), in id order. One message is its prepared page as is; several are joined.
    fn page(&self, since: u64, until: Option<u64>) -> Bytes {
        let first = since.saturating_add(1).max(self.oldest());
        let last = until.map_or(self.newest, |until| until.min(self.newest));
        if first > last {
            return Bytes::from_static(b"[]");
        }
        let at = |id: u64| (id - self.oldest()) as usize;
        if first == last {
            return self.pages[at(first)].clone();
        }
        joined(self.pages.range(at(first)..=at(last)))
    }
}

/// One message as the app serves it (`shared::domain::Message`: its fields, in its order).
#[derive(serde::Serialize)]
struct Message<'a> {
    id: u64,
    user: &'a str,
    text: &'a str,
    /// RFC 3339 in UTC, to the second.
    at: &'a str,
}

/// The page `[{...}]` holding this message alone.
fn prepared(id: u64, text: &str, at: &str) -> Bytes {
    let mut page = Vec::with_capacity(64 + text.len());
    page.push(b'[');
    serde_json::to_writer(&mut page, &Message { id, user: USER, text, at }).expect("a message is always JSON");
    page.push(b']');
    Bytes::from(page)
}

/// One page of several one-message pages: their objects, unbracketed, between one pair of brackets.
fn joined<'a>(pages: impl ExactSizeIterator<Item = &'a Bytes> + Clone) -> Bytes {
    let objects = pages.clone().map(|page| &page[1..page.len() - 1]);
    let mut body = Vec::with_capacity(2 + pages.len() + objects.clone().map(<[u8]>::len).sum::<usize>());
    body.push(b'[');
    for (i, object) in objects.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(object);
    }
    body.push(b']');
    Bytes::from(body)
}

/// `at` as the app's `Message::at` spells it (`2025-01-31T12:00:00Z`), without a date crate: Howard Hinnant's
/// `civil_from_days`, for days since 1970.
fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March is 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", time / 3_600, time % 3_600 / 60, time % 60)
}

/// `/events`: the default log's ids as `<id>`, or with `feed` parameters each named feed's as `<feed> <id>`.
async fn events(State(floor): State<Floor>, request: Request) -> impl IntoResponse {
    let feeds: Vec<String> = form_urlencoded_pairs(request.uri().query().unwrap_or_default())
        .filter(|(key, _)| key == wire::FEED_FIELD)
        .map(|(_, value)| value)
        .collect();
    let notices: stream::BoxStream<'static, Event> = if feeds.is_empty() {
        ids(floor.notify.subscribe())
            .map(|id| Event::default().event(wire::NEW_MESSAGE).id(id.to_string()).data(id.to_string()))
            .boxed()
    } else {
        stream::select_all(feeds.into_iter().map(|feed| {
            ids(floor.feed(&feed).notify.subscribe())
                .map(move |id| Event::default().event(wire::NEW_MESSAGE).data(wire::feed_notice_data(&feed, id)))
                .boxed()
        }))
        .boxed()
    };
    let frames = stream::once(async { Event::default().retry(std::time::Duration::from_secs(1)) })
        .chain(notices)
        .map(Ok::<_, Infallible>);
    Sse::new(frames).keep_alive(KeepAlive::default())
}

/// The ids a channel announces, skipping what a slow reader missed.
fn ids(receiver: broadcast::Receiver<u64>) -> impl futures::Stream<Item = u64> + Send + 'static {
    stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(id) => return Some((id, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// A query string's `key=value` pairs (the bench's feed names need no decoding).
fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| pair.split_once('=')).map(|(key, value)| (key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recent(count: u64) -> Recent {
        let mut recent = Recent::default();
        for i in 0..count {
            recent.push(&format!("floor-pages fan-out message {i}"), "2025-01-31T12:00:00Z");
        }
        recent
    }

    /// The ids of a page, checking each message has the app's fields.
    fn ids(page: &Bytes) -> Vec<u64> {
        let page: Vec<serde_json::Value> = serde_json::from_slice(page).expect("a page is JSON");
        page.iter()
            .map(|m| {
                assert!(m["user"].is_string() && m["text"].is_string() && m["at"].is_string(), "{m}");
                m["id"].as_u64().expect("an id")
            })
            .collect()
    }

    #[test]
    fn a_range_is_the_ids_after_since_up_to_until_in_order() {
        let recent = recent(5);
        assert_eq!(ids(&recent.page(1, Some(4))), [2, 3, 4]);
        assert_eq!(ids(&recent.page(3, None)), [4, 5]);
        assert_eq!(ids(&recent.page(0, Some(9))), [1, 2, 3, 4, 5], "until beyond the newest");
        assert!(ids(&recent.page(5, Some(6))).is_empty(), "nothing sent yet");
        assert!(ids(&recent.page(4, Some(2))).is_empty());
        assert_eq!(ids(&recent.newest()), [5]);
        assert!(ids(&Recent::default().newest()).is_empty());
    }

    #[test]
    fn a_one_message_page_is_the_prepared_bytes() {
        let recent = recent(3);
        let page = recent.page(1, Some(2));
        assert_eq!(page.as_ptr(), recent.pages[1].as_ptr(), "not a copy");
        assert_eq!(
            &page[..],
            br#"[{"id":2,"user":"bench","text":"floor-pages fan-out message 1","at":"2025-01-31T12:00:00Z"}]"#
        );
        assert_eq!(recent.page(2, None).as_ptr(), recent.pages[2].as_ptr(), "since alone, one message");
    }

    #[test]
    fn only_the_newest_are_kept_and_a_forgotten_since_starts_at_the_oldest() {
        let recent = recent(300);
        assert_eq!(recent.pages.len(), KEPT);
        let all = ids(&recent.page(0, None));
        assert_eq!(all, (300 - KEPT as u64 + 1..=300).collect::<Vec<_>>());
    }

    #[test]
    fn the_query_gives_since_and_until_and_blank_is_absent() {
        assert_eq!(bounds("since=4&until=5&epoch=floor"), Ok((Some(4), Some(5))));
        assert_eq!(bounds("epoch=floor&until=9&since=7"), Ok((Some(7), Some(9))));
        assert_eq!(bounds(""), Ok((None, None)));
        assert_eq!(bounds("since=&until=3"), Ok((None, Some(3))));
        assert!(bounds("since=x").is_err());
    }

    #[test]
    fn times_are_spelled_as_the_app_spells_them() {
        let at = |seconds: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
