//! `GET /api/messages` (the feed `main`) and `GET /api/feeds/{name}/messages`: one page of a feed's log, answered from the shared page bytes (`pages`). The query is parsed here,
//! at the edge, into a `PageKey`; the use case (`feed::list`) never sees the raw strings.
//!
//! This is the hot path: every tab asks here after every notice, so the route sits outside the layers the rest of
//! the API passes (no session cookie, compression, tracing span or timeout per request) and answers prepared bytes:
//! compressed once per page (`encoded`), with an `ETag` (`304` on `If-None-Match`). A page that names both ends
//! (`since=A&until=B&epoch=E`) and is settled never changes, so it is marked cacheable by anyone for a year: a
//! browser's cache, nginx's `proxy_cache` or a CDN serve the identical requests of identical tabs.
//!
//! Nearly every refetch after a notice asks for a page that is made already: `shortcut` answers those before the
//! router (the listener asks it first), with a query read in place; anything else (a query that needs decoding, a
//! page still to read, an error) takes the route, `list`, which answers the same for the same page.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::pages::{Page, PageKey};
use crate::server::state::AppState;
use crate::server::{feed, observe, refusal, security};
use crate::shared::domain::FeedName;
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

/// A settled page: the same bytes for as long as the epoch lasts (which the URL names).
const SETTLED: &str = "public, max-age=31536000, immutable";
/// `SETTLED`'s `max-age`: a year.
const SETTLED_SECS: u64 = 31_536_000;
/// Any other page: a cache must ask again (with `If-None-Match`) before using what it holds.
const REVALIDATE: &str = "no-cache";
/// A private feed's page: no shared cache may keep it, and the browser keeps no copy either (another tab of the
/// same browser may be another person).
const PRIVATE: &str = "private, no-store";

pub fn routes() -> Router<AppState> {
    let feed_messages = format!("{}{{feed}}{}", wire::FEEDS_API_PREFIX, wire::FEED_MESSAGES);
    Router::new()
        .route(wire::MESSAGES_PATH, get(list).fallback(other_method))
        .route(&feed_messages, get(list).fallback(other_method))
}

/// The feed name a pages path gives: `main` for `MESSAGES_PATH`, `name` for `/api/feeds/{name}/messages`; `None`
/// for any other path. (The page answers capitals with a redirect; the API does not guess: `feed::named` is 404.)
fn feed_of(path: &str) -> Option<&str> {
    if path == wire::MESSAGES_PATH {
        return Some(FeedName::MAIN);
    }
    path.strip_prefix(wire::FEEDS_API_PREFIX)?.strip_suffix(wire::FEED_MESSAGES)
}

/// Any method but `GET` and `HEAD`: 405 in the API's JSON, as the layers this route skips would answer it.
async fn other_method() -> Response {
    let mut response = refusal::wrong_method().into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    security::not_a_document(response.headers_mut());
    response
}

/// `since`, `before` and `until` as written (blank counts as absent, see `PageKey::parse`), and the epoch the tab
/// holds: owned `String`s for the route, or `&str`s borrowed from a query that needs no decoding for the shortcut
/// (serde refuses to borrow a decoded value, so such a query, like a repeated field, goes to the route).
#[derive(serde::Deserialize)]
struct ListQuery<S> {
    since: Option<S>,
    before: Option<S>,
    until: Option<S>,
    epoch: Option<S>,
}

/// `GET /api/messages` answered before the router when its page is made already (`feed::ready`); `None` for
/// anything else, which the router then answers (`list`).
pub fn shortcut<B>(state: &AppState, request: &axum::http::Request<B>) -> Option<Response> {
    if request.method() != Method::GET {
        return None;
    }
    let feed = feed::named(state, feed_of(request.uri().path())?).ok()?;
    // A private feed's page is checked and answered by the route (`page`), never from here.
    if state.limits.feeds.access.of(&feed).private() {
        return None;
    }
    let query: ListQuery<&str> = serde_urlencoded::from_str(request.uri().query().unwrap_or_default()).ok()?;
    let key = PageKey::parse(query.since, query.before, query.until).ok()?;
    // `epoch=` empty names none (a tab that holds no epoch yet).
    let epoch = query.epoch.filter(|epoch| !epoch.is_empty());
    let page = feed::ready(state, &feed, key, epoch)?;
    observe::page_requested();
    let mut response = answer(&page, request.headers(), epoch);
    security::not_a_document(response.headers_mut());
    Some(response)
}

async fn list(State(state): State<AppState>, request: Request) -> Response {
    let (uri, headers) = (request.uri(), request.headers());
    page(&state, feed_of(uri.path()).unwrap_or(FeedName::MAIN), uri, headers, Reader::Tab(bearer(headers))).await
}

/// Who reads a page: a tab, with the read pass its `Authorization` carries if any (`feed::readable` checks it for
/// a private feed), or a backend whose API key the publish API checked already.
pub enum Reader<'a> {
    Tab(Option<&'a str>),
    Service,
}

/// The credential of an `Authorization: Bearer …` header, if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::server::api_keys::bearer_credential(headers.get(header::AUTHORIZATION)?.as_bytes())
}

/// One page of the feed named `raw_feed`, as the query of `uri` asks for it (with the request's `headers`): the
/// route's answer, which the publish API's read (`publish`) answers too, once it has checked the key. A private
/// feed's page is marked for no cache but the reader's own, and for none to keep (`private, no-store`).
pub async fn page(
    state: &AppState,
    raw_feed: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    reader: Reader<'_>,
) -> Response {
    observe::page_requested();
    let feed = feed::named(state, raw_feed).and_then(|feed| match reader {
        Reader::Tab(pass) => feed::readable(state, &feed, pass).map(|()| feed),
        Reader::Service => Ok(feed),
    });
    let private = feed.as_ref().is_ok_and(|feed| state.limits.feeds.access.of(feed).private());
    let mut response = match (feed, Query::<ListQuery<String>>::try_from_uri(uri)) {
        (Err(err), _) => err.into_response(),
        (Ok(feed), Ok(Query(query))) => {
            match PageKey::parse(query.since.as_deref(), query.before.as_deref(), query.until.as_deref()) {
                Ok(key) => {
                    match feed::list(state, &feed, key, query.epoch.as_deref().filter(|e| !e.is_empty())).await {
                        Ok(page) => answer(&page, headers, query.epoch.as_deref().filter(|e| !e.is_empty())),
                        Err(err) => err.into_response(),
                    }
                }
                Err(err) => err.into_response(),
            }
        }
        (Ok(_), Err(rejection)) => {
            ApiError::new(ErrorKind::BadRequest, format!("Malformed request: {rejection}")).into_response()
        }
    };
    if private {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(PRIVATE));
    }
    security::not_a_document(response.headers_mut());
    response
}

/// The page as this request takes it: `304` if the client holds these bytes, else the bytes in the best coding it
/// accepts.
fn answer(page: &Page, request: &HeaderMap, asked_epoch: Option<&str>) -> Response {
    let cache = cache_control(page, asked_epoch);
    let held = request.get(header::IF_NONE_MATCH).is_some_and(|tags| names(tags.as_bytes(), page.etag.as_bytes()));
    let mut response = if held {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let (bytes, coding) = page.body.for_accept(request.get(header::ACCEPT_ENCODING).map(HeaderValue::as_bytes));
        let mut response = Response::new(Body::from(bytes));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(coding) = coding.header() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, cache);
    if page.body.varies() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    headers.insert(header::ETAG, page.etag.clone());
    if let Some(epoch) = &page.epoch_header {
        headers.insert(wire::EPOCH_HEADER, epoch.clone());
    }
    response
}

/// How long anyone may cache the page. Cacheable by anyone only when it is settled and the URL names its epoch (then
/// no request of another log can match it), and never past the moment retention deletes its oldest message: a
/// message gone for privacy must not live on in nginx, a CDN or a browser.
fn cache_control(page: &Page, asked_epoch: Option<&str>) -> HeaderValue {
    if !page.settled || asked_epoch != Some(page.epoch.as_str()) {
        return HeaderValue::from_static(REVALIDATE);
    }
    let Some(expires) = page.expires else {
        return HeaderValue::from_static(SETTLED);
    };
    let left = expires.duration_since(std::time::SystemTime::now()).map_or(0, |left| left.as_secs());
    if left == 0 {
        return HeaderValue::from_static(REVALIDATE);
    }
    HeaderValue::from_str(&format!("public, max-age={}, immutable", left.min(SETTLED_SECS)))
        .unwrap_or(HeaderValue::from_static(REVALIDATE))
}

/// Whether an `If-None-Match` value names `etag` (weakly compared, as RFC 9110 asks for it), or is `*`.
fn names(tags: &[u8], etag: &[u8]) -> bool {
    tags.split(|byte| *byte == b',')
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::group::GroupId;
    use crate::server::store::MemoryStore;
    use std::sync::Arc;
    use tower::ServiceExt;

    fn get(uri: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(uri).header(header::ACCEPT_ENCODING, "gzip, br").body(Body::empty()).unwrap()
    }

    async fn parts(response: Response) -> (StatusCode, HeaderMap, axum::body::Bytes) {
        let (head, body) = response.into_parts();
        (head.status, head.headers, axum::body::to_bytes(body, usize::MAX).await.unwrap())
    }

    #[test]
    fn a_query_is_read_in_place_unless_it_needs_decoding_or_repeats_a_field() {
        let read = |query| serde_urlencoded::from_str::<ListQuery<&str>>(query).ok();
        let plain = read("since=4&until=7&epoch=ab12&other=x&&flag").unwrap();
        assert_eq!((plain.since, plain.until, plain.epoch, plain.before), (Some("4"), Some("7"), Some("ab12"), None));
        let blank = read("since=&before").unwrap();
        assert_eq!((blank.since, blank.before), (Some(""), Some("")));
        for left in ["since=%34", "since=4+", "since=1&since=2", "epoch=a&epoch=a"] {
            assert!(read(left).is_none(), "{left}");
        }
    }

    /// The shortcut answers a page that is made already exactly as the route does (status, every header, the
    /// bytes), and leaves everything else to the route. (Against the whole app as the listener serves it, with every
    /// coding and `If-None-Match`: `routes::tests`.)
    #[tokio::test]
    async fn the_shortcut_answers_a_made_page_as_the_route_does_and_leaves_the_rest() {
        let state = crate::server::state::for_tests(Arc::new(MemoryStore::new(100)), None);
        let group = GroupId::everyone();
        let ticket = feed::join(&state, &group, &crate::shared::domain::FeedName::main(), "ada").unwrap().ticket;
        for text in ["one", "two", "three"] {
            feed::send(&state, &FeedName::main(), &group, std::net::Ipv4Addr::LOCALHOST.into(), &ticket, text, "")
                .await
                .unwrap();
        }
        let epoch = state.store.epoch(&FeedName::main()).await.unwrap();
        let route = routes().with_state(state.clone());
        for uri in [format!("/api/messages?since=1&until=3&epoch={epoch}"), "/api/messages?since=1".into()] {
            assert!(shortcut(&state, &get(&uri)).is_none(), "{uri}: not read yet, so the route's");
            let (status, mut headers, body) = parts(route.clone().oneshot(get(&uri)).await.unwrap()).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body.len() > 2, "{uri}: {body:?}");
            // The router writes the length itself; hyper writes it from the body's exact size on the wire.
            let length = headers.remove(header::CONTENT_LENGTH).unwrap();
            let short = shortcut(&state, &get(&uri)).expect("made now");
            assert_eq!(
                hyper::body::Body::size_hint(short.body()).exact(),
                Some(length.to_str().unwrap().parse().unwrap())
            );
            assert_eq!(parts(short).await, (status, headers.clone(), body), "{uri}");

            let mut held = get(&uri);
            held.headers_mut().insert(header::IF_NONE_MATCH, headers[header::ETAG].clone());
            let (status, ..) = parts(shortcut(&state, &held).unwrap()).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{uri}");
        }
        let made = "/api/messages?since=1";
        let mut post = get(made);
        *post.method_mut() = Method::POST;
        let others =
            [post, get("/api/messagesx?since=1"), get("/api/messages?since=%31"), get("/api/messages?since=x")];
        for other in others {
            assert!(shortcut(&state, &other).is_none(), "{} {}", other.method(), other.uri());
        }
    }

    #[test]
    fn if_none_match_names_the_tag_in_a_list_weakly_or_as_a_star() {
        let etag = b"\"00ff\"";
        for held in ["\"00ff\"", "\"a\", \"00ff\"", "W/\"00ff\"", "*", " \"00ff\" "] {
            assert!(super::names(held.as_bytes(), etag), "{held}");
        }
        for other in ["\"00fe\"", "00ff", "", "\"00ff"] {
            assert!(!super::names(other.as_bytes(), etag), "{other}");
        }
    }
}
