//! `GET /api/messages`: one page of the log, answered from the shared page bytes (`pages`). The query is parsed here,
//! at the edge, into a `PageKey`; the use case (`feed::list`) never sees the raw strings.
//!
//! This is the hot path: every tab asks here after every notice, so the route sits outside the layers the rest of
//! the API passes (no session cookie, compression, tracing span or timeout per request) and answers prepared bytes:
//! compressed once per page (`encoded`), with an `ETag` (`304` on `If-None-Match`). A page that names both ends
//! (`since=A&until=B&epoch=E`) and is settled never changes, so it is marked cacheable by anyone for a year: a
//! browser's cache, nginx's `proxy_cache` or a CDN serve the identical requests of identical tabs.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::pages::{Page, PageKey};
use crate::server::state::AppState;
use crate::server::{feed, observe, refusal, security};
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

/// A settled page: the same bytes for as long as the epoch lasts (which the URL names).
const SETTLED: &str = "public, max-age=31536000, immutable";
/// Any other page: a cache must ask again (with `If-None-Match`) before using what it holds.
const REVALIDATE: &str = "no-cache";

pub fn routes() -> Router<AppState> {
    Router::new().route(wire::MESSAGES_PATH, get(list).fallback(other_method))
}

/// Any method but `GET` and `HEAD`: 405 in the API's JSON, as the layers this route skips would answer it.
async fn other_method() -> Response {
    let mut response = refusal::wrong_method().into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    security::not_a_document(response.headers_mut());
    response
}

/// `since`, `before` and `until` as written (blank counts as absent, see `PageKey::parse`), and the epoch the tab
/// holds.
#[derive(serde::Deserialize)]
struct ListQuery {
    since: Option<String>,
    before: Option<String>,
    until: Option<String>,
    epoch: Option<String>,
}

async fn list(State(state): State<AppState>, request: Request) -> Response {
    observe::page_requested();
    let mut response = match Query::<ListQuery>::try_from_uri(request.uri()) {
        Ok(Query(query)) => {
            match PageKey::parse(query.since.as_deref(), query.before.as_deref(), query.until.as_deref()) {
                Ok(key) => match feed::list(&state, key, query.epoch.as_deref()).await {
                    Ok(page) => answer(&page, request.headers(), query.epoch.as_deref()),
                    Err(err) => err.into_response(),
                },
                Err(err) => err.into_response(),
            }
        }
        Err(rejection) => {
            ApiError::new(ErrorKind::BadRequest, format!("Malformed request: {rejection}")).into_response()
        }
    };
    security::not_a_document(response.headers_mut());
    response
}

/// The page as this request takes it: `304` if the client holds these bytes, else the bytes in the best coding it
/// accepts.
fn answer(page: &Page, request: &HeaderMap, asked_epoch: Option<&str>) -> Response {
    // Cacheable by anyone only when the URL names the page's epoch: then no request of another log can match it.
    let cache = if page.settled && asked_epoch == Some(page.epoch.as_str()) { SETTLED } else { REVALIDATE };
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
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if page.body.varies() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    headers.insert(header::ETAG, page.etag.clone());
    if let Some(epoch) = &page.epoch_header {
        headers.insert(wire::EPOCH_HEADER, epoch.clone());
    }
    response
}

/// Whether an `If-None-Match` value names `etag` (weakly compared, as RFC 9110 asks for it), or is `*`.
fn names(tags: &[u8], etag: &[u8]) -> bool {
    tags.split(|byte| *byte == b',')
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
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
