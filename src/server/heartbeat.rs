//! The HTTP edge of presence (the use cases are `roster`'s): `POST /api/presence` (a joined tab's heartbeat), `POST
//! /api/presence/leave` (the page going away, sent with `navigator.sendBeacon`), `GET /api/presence` (who is here).
//! Each handler extracts the form, the session group and the caller's address, calls the use case, and maps its
//! answer or `ApiError` to a response; a form that cannot be read is a 400 here, before any use case runs.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use crate::server::group::Audience;
use crate::server::group::GroupId;
use crate::server::peer::{self, Peer};
use crate::server::state::AppState;
use crate::server::{messages, roster};
use crate::shared::domain::FeedName;
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

pub fn routes() -> Router<AppState> {
    let feed = |rest: &str| format!("{}{{feed}}{rest}", wire::FEEDS_API_PREFIX);
    Router::new()
        .route(wire::PRESENCE_PATH, get(here).post(beat))
        .route(wire::PRESENCE_LEAVE_PATH, post(leave))
        .route(&feed(wire::FEED_PRESENCE), get(here).post(beat))
        .route(&feed(wire::FEED_PRESENCE_LEAVE), post(leave))
}

/// The feed a presence path names: `{feed}` of `/api/feeds/{feed}/…` if it may exist here (else 404), or `main` for
/// the paths without one.
fn feed_of(state: &AppState, path: Option<Path<String>>) -> Result<FeedName, ApiError> {
    match path {
        None => Ok(FeedName::main()),
        Some(Path(name)) => crate::server::feed::named(state, &name),
    }
}

/// The form of a heartbeat or a leave; a missing field counts as blank, and is refused as such.
#[derive(serde::Deserialize)]
struct TabForm {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    tab: String,
}

/// The form, or the 400 that a malformed body gets.
fn read(form: Result<Form<TabForm>, FormRejection>) -> Result<TabForm, ApiError> {
    form.map(|Form(form)| form)
        .map_err(|rejection| ApiError::new(ErrorKind::BadRequest, format!("Malformed request: {rejection}")))
}

async fn beat(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    peer: Option<Extension<Peer>>,
    path: Option<Path<String>>,
    form: Result<Form<TabForm>, FormRejection>,
) -> Response {
    let answer = match (feed_of(&state, path), read(form)) {
        (Ok(feed), Ok(form)) => {
            let audience = Audience::new(feed, group);
            roster::beat(&state, &audience, &form.ticket, &form.tab, peer::address_of(peer)).await
        }
        (Err(err), _) | (_, Err(err)) => Err(err),
    };
    match answer {
        Ok(beat) => Json(beat).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn leave(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    path: Option<Path<String>>,
    form: Result<Form<TabForm>, FormRejection>,
) -> Response {
    let answer = match (feed_of(&state, path), read(form)) {
        (Ok(feed), Ok(form)) => roster::leave(&state, &Audience::new(feed, group), &form.ticket, &form.tab).await,
        (Err(err), _) | (_, Err(err)) => Err(err),
    };
    match answer {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => err.into_response(),
    }
}

async fn here(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    path: Option<Path<String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    // A private feed's list takes the tab's read pass, as its pages do.
    let feed = feed_of(&state, path)
        .and_then(|feed| crate::server::feed::readable(&state, &feed, messages::bearer(&headers)).map(|()| feed));
    let here = match feed {
        Ok(feed) => roster::here(&state, &Audience::new(feed, group)).await,
        Err(err) => Err(err),
    };
    match here {
        Ok(here) => {
            let mut response = Json(here).into_response();
            // This group's list: no cache may hand it to another.
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    //! The edge only: that each route reads its form, calls its use case and answers its result or refusal in the
    //! API's JSON (the rules themselves are `roster`'s tests).

    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{HeaderMap, Method, Request};
    use tower::ServiceExt;

    use super::*;
    use crate::server::store::MemoryStore;
    use crate::server::throttle::{LocalThrottle, SendThrottle};
    use crate::shared::domain::Username;

    /// Asks the presence routes, as the session group `everyone`: status, headers, JSON body (`null` if none).
    async fn ask(
        state: &AppState,
        method: Method,
        path: &str,
        form: Option<&str>,
    ) -> (u16, HeaderMap, serde_json::Value) {
        let router = routes().layer(Extension(GroupId::everyone())).with_state(state.clone());
        let mut request = Request::builder().method(method).uri(path);
        if form.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request.body(Body::from(form.unwrap_or_default().to_owned())).unwrap();
        let (head, body) = router.oneshot(request).await.unwrap().into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let json = if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (head.status.as_u16(), head.headers, json)
    }

    #[tokio::test]
    async fn each_route_answers_its_use_case_and_maps_refusals_to_the_apis_json() {
        let heartbeats = LocalThrottle::new(1, 2, true).map(|t| SendThrottle::Local(t.counting("heartbeats")));
        let state = roster::tests::state_with(Default::default(), heartbeats);
        let ada = state.tickets.issue(&GroupId::everyone(), &Username::parse("Ada").unwrap());
        let beat = format!("ticket={ada}&tab=t1");

        let (status, _, body) = ask(&state, Method::POST, wire::PRESENCE_PATH, Some(&beat)).await;
        assert_eq!((status, body), (200, serde_json::json!({ "every_ms": 10_000 })));
        let (status, headers, body) = ask(&state, Method::GET, wire::PRESENCE_PATH, None).await;
        assert_eq!((status, body), (200, serde_json::json!({ "names": ["Ada"] })));
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");

        // A body that is no form, a forged ticket, a bad tab: the API's 4xx, and nobody else is listed.
        let (status, _, body) = ask(&state, Method::POST, wire::PRESENCE_PATH, None).await;
        assert_eq!((status, &body["kind"]), (400, &serde_json::json!("bad_request")), "{body}");
        assert!(body["message"].as_str().unwrap().starts_with("Malformed request"), "{body}");
        let (status, _, body) = ask(&state, Method::POST, wire::PRESENCE_LEAVE_PATH, Some("ticket=x&tab=t1")).await;
        assert_eq!((status, &body["kind"]), (403, &serde_json::json!("bad_ticket")), "{body}");
        let (status, _, body) = ask(&state, Method::POST, wire::PRESENCE_PATH, Some(&format!("ticket={ada}"))).await;
        assert_eq!((status, &body["kind"]), (400, &serde_json::json!("bad_request")), "a missing tab is blank: {body}");
        let (_, _, body) = ask(&state, Method::GET, wire::PRESENCE_PATH, None).await;
        assert_eq!(body, serde_json::json!({ "names": ["Ada"] }));

        // The second beat spent the burst of two; the third is a 429 with `Retry-After`.
        assert_eq!(ask(&state, Method::POST, wire::PRESENCE_PATH, Some(&beat)).await.0, 200);
        let (status, headers, body) = ask(&state, Method::POST, wire::PRESENCE_PATH, Some(&beat)).await;
        assert_eq!((status, &body["kind"]), (429, &serde_json::json!("rate_limited")), "{body}");
        assert!(headers.contains_key(header::RETRY_AFTER));

        let fresh = crate::server::state::for_tests(Arc::new(MemoryStore::new(10)), None);
        let ada = fresh.tickets.issue(&GroupId::everyone(), &Username::parse("Ada").unwrap());
        let beat = format!("ticket={ada}&tab=t1");
        assert_eq!(ask(&fresh, Method::POST, wire::PRESENCE_PATH, Some(&beat)).await.0, 200);
        let (status, _, body) = ask(&fresh, Method::POST, wire::PRESENCE_LEAVE_PATH, Some(&beat)).await;
        assert_eq!((status, body), (204, serde_json::Value::Null));
        assert_eq!(ask(&fresh, Method::GET, wire::PRESENCE_PATH, None).await.2, serde_json::json!({ "names": [] }));
    }
}
