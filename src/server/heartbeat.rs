//! The HTTP edge of presence (the use cases are `roster`'s): `POST /api/presence` (a joined tab's heartbeat), `POST
//! /api/presence/leave` (the page going away, sent with `navigator.sendBeacon`), `GET /api/presence` (who is here).
//! Each handler extracts the form, the session group and the caller's address, calls the use case, and maps its
//! answer or `ApiError` to a response; a form that cannot be read is a 400 here, before any use case runs.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use crate::server::group::GroupId;
use crate::server::peer::Peer;
use crate::server::roster;
use crate::server::state::AppState;
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

pub fn routes() -> Router<AppState> {
    Router::new().route(wire::PRESENCE_PATH, get(here).post(beat)).route(wire::PRESENCE_LEAVE_PATH, post(leave))
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

/// The caller's address, as `peer::admit` put it in the request (which it does for every request; without it,
/// the unspecified address stands in, so such callers share one network's caps).
fn address(peer: Option<Extension<Peer>>) -> std::net::IpAddr {
    peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(peer)| peer.address)
}

async fn beat(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    peer: Option<Extension<Peer>>,
    form: Result<Form<TabForm>, FormRejection>,
) -> Response {
    let answer = match read(form) {
        Ok(form) => roster::beat(&state, &group, &form.ticket, &form.tab, address(peer)).await,
        Err(err) => Err(err),
    };
    match answer {
        Ok(beat) => Json(beat).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn leave(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    form: Result<Form<TabForm>, FormRejection>,
) -> Response {
    let answer = match read(form) {
        Ok(form) => roster::leave(&state, &group, &form.ticket, &form.tab).await,
        Err(err) => Err(err),
    };
    match answer {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => err.into_response(),
    }
}

async fn here(State(state): State<AppState>, Extension(group): Extension<GroupId>) -> Response {
    match roster::here(&state, &group).await {
        Ok(here) => {
            let mut response = Json(here).into_response();
            // This group's list: no cache may hand it to another.
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => err.into_response(),
    }
}
