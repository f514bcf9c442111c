//! `GET /api/messages`: one page of the log, answered from the shared page bytes (`pages`). The query is parsed here,
//! at the edge, into a `PageKey`; the use case (`feed::list`) never sees the raw strings.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::pages::PageKey;
use crate::server::state::AppState;
use crate::server::{feed, observe};
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

pub fn routes() -> Router<AppState> {
    Router::new().route(wire::MESSAGES_PATH, get(list))
}

/// `since` and `before` as written; blank counts as absent (see `PageKey::parse`).
#[derive(serde::Deserialize)]
struct ListQuery {
    since: Option<String>,
    before: Option<String>,
}

async fn list(State(state): State<AppState>, query: Result<Query<ListQuery>, QueryRejection>) -> Response {
    observe::page_requested();
    let key = query
        .map_err(|rejection| ApiError::new(ErrorKind::BadRequest, format!("Malformed request: {rejection}")))
        .and_then(|Query(query)| PageKey::parse(query.since.as_deref(), query.before.as_deref()));
    let page = match key {
        Ok(key) => feed::list(&state, key).await,
        Err(err) => Err(err),
    };
    match page {
        Ok(page) => {
            let mut response = Response::new(Body::from(page.json.clone()));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Ok(epoch) = HeaderValue::from_str(&page.epoch) {
                response.headers_mut().insert(wire::EPOCH_HEADER, epoch);
            }
            response
        }
        Err(err) => err.into_response(),
    }
}
