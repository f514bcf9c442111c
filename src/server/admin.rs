//! The admin API, v1, for moderators (`moderation`): a feed's recent messages with their senders, and removals.
//! Every path takes `Authorization: Bearer` with a moderator's sign-in token or an API key that may moderate;
//! every answer is `Cache-Control: no-store` (sender details are for the moderator alone). The handlers only
//! extract, call the use case and map the error; the paths are in the v1 OpenAPI document (`publish::document`).
//!
//! - `GET /api/v1/admin/feeds/{feed}/messages?limit=N`: the newest N (default 100) with group and address;
//! - `DELETE /api/v1/admin/feeds/{feed}/messages/{id}`: removes one message;
//! - `POST /api/v1/admin/feeds/{feed}/removals`: removes several by id (`{"ids": [...]}`), or what one sender wrote
//!   in the last minutes (`{"subject" | "group" | "address": …, "minutes": N}`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::server::moderation::{self, Moderator, Sender};
use crate::server::state::AppState;
use crate::server::store::Removal;
use crate::server::{feed, messages, refusal, security};
use crate::shared::domain::{FeedName, Message};
use crate::shared::error::{ApiError, ErrorKind};

pub const ADMIN_MESSAGES: &str = "/api/v1/admin/feeds/{feed}/messages";
pub const ADMIN_MESSAGE: &str = "/api/v1/admin/feeds/{feed}/messages/{id}";
pub const ADMIN_REMOVALS: &str = "/api/v1/admin/feeds/{feed}/removals";
/// Longest look back of a sender sweep, in minutes (a week).
const MAX_MINUTES: u64 = 7 * 24 * 60;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(ADMIN_MESSAGES, get(recent))
        .route(ADMIN_MESSAGE, delete(remove_one))
        .route(ADMIN_REMOVALS, post(removals))
}

/// A message as a moderator sees it: the message, and who sent it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Sent {
    #[serde(flatten)]
    pub message: Message,
    /// The session group (browser) it was sent from; `*` for a backend's publish.
    pub group: String,
    /// The sender's address; empty for a backend's publish, a message stored before addresses were, or a removed one.
    pub address: String,
}

/// What a removal did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Removed {
    /// The ids erased.
    pub removed: Vec<u64>,
    /// The feed's epoch now: a new one when anything was erased (every tab reloads).
    pub epoch: String,
}

impl From<Removal> for Removed {
    fn from(removal: Removal) -> Self {
        Self { removed: removal.removed, epoch: removal.epoch }
    }
}

/// `?limit=N`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// How many of the newest messages (1 to 1,000; default 100).
    limit: Option<usize>,
}

/// A removal of several messages: by id, or what one sender wrote in the last `minutes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Removals {
    /// Ids to remove (1 to 1,000).
    #[serde(default)]
    ids: Vec<u64>,
    /// A signed-in sender's subject (the token's `sub`).
    subject: Option<String>,
    /// A browser's session group (as `GET …/messages` shows it).
    group: Option<String>,
    /// An address (IPv4 or IPv6).
    address: Option<String>,
    /// With a sender: how far back, in minutes (1 to a week).
    minutes: Option<u64>,
}

/// The moderator of the request (401/403) and the feed its path names (404).
fn admit(state: &AppState, raw_feed: &str, headers: &HeaderMap) -> Result<(Moderator, FeedName), ApiError> {
    let moderator = moderation::moderator(state, messages::bearer(headers))?;
    let feed = feed::named(state, raw_feed)?;
    moderator.may_moderate(&feed)?;
    Ok((moderator, feed))
}

/// An answer or refusal as the admin API gives it: never stored by any cache; a 401 names the scheme.
fn answer<T: Serialize>(outcome: Result<T, ApiError>) -> Response {
    let mut response = match outcome {
        Ok(body) => Json(body).into_response(),
        Err(err) => refusal::bearer_refused(err),
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security::not_a_document(response.headers_mut());
    response
}

/// A feed's newest messages, with their senders.
#[utoipa::path(
    get,
    path = "/api/v1/admin/feeds/{feed}/messages",
    params(("feed" = String, Path, description = "The feed's name"), RecentQuery),
    responses(
        (status = 200, description = "The newest messages, oldest first, with their senders", body = Vec<Sent>),
        (status = 401, description = "No moderator credential, or not a valid one", body = ApiError),
        (status = 403, description = "Not a moderator, or not of this feed", body = ApiError),
        (status = 404, description = "No such feed here", body = ApiError),
    )
)]
async fn recent(
    State(state): State<AppState>,
    Path(raw_feed): Path<String>,
    query: Result<Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let listed = async {
        let (moderator, feed) = admit(&state, &raw_feed, &headers)?;
        let Query(query) =
            query.map_err(|err| ApiError::new(ErrorKind::BadRequest, format!("Malformed query: {err}")))?;
        let sent = moderation::recent(&state, &moderator, &feed, query.limit.unwrap_or(100)).await?;
        Ok::<_, ApiError>(
            sent.into_iter()
                .map(|sent| Sent { message: sent.message, group: sent.group, address: sent.address })
                .collect::<Vec<_>>(),
        )
    };
    answer(listed.await)
}

/// Remove one message: erased from the store, and shown as removed in every tab.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/feeds/{feed}/messages/{id}",
    params(("feed" = String, Path, description = "The feed's name"), ("id" = u64, Path, description = "The message's id")),
    responses(
        (status = 200, description = "Erased; every tab of the feed reloads it", body = Removed),
        (status = 400, description = "An id that is no number", body = ApiError),
        (status = 401, description = "No moderator credential, or not a valid one", body = ApiError),
        (status = 403, description = "Not a moderator, or not of this feed", body = ApiError),
        (status = 404, description = "No such feed, or no such message kept", body = ApiError),
    )
)]
async fn remove_one(
    State(state): State<AppState>,
    Path((raw_feed, raw_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let removed = async {
        let (moderator, feed) = admit(&state, &raw_feed, &headers)?;
        let id = raw_id
            .parse::<u64>()
            .map_err(|_| ApiError::new(ErrorKind::BadRequest, "A message id is a whole number, as pages show it."))?;
        moderation::remove(&state, &moderator, &feed, &[id]).await.map(Removed::from)
    };
    answer(removed.await)
}

/// Remove several messages by id, or what one sender wrote lately.
#[utoipa::path(
    post,
    path = "/api/v1/admin/feeds/{feed}/removals",
    params(("feed" = String, Path, description = "The feed's name")),
    request_body = Removals,
    responses(
        (status = 200, description = "Erased (none, when the sender wrote nothing in that time)", body = Removed),
        (status = 400, description = "Malformed JSON, or neither ids nor one sender with minutes", body = ApiError),
        (status = 401, description = "No moderator credential, or not a valid one", body = ApiError),
        (status = 403, description = "Not a moderator, or not of this feed", body = ApiError),
        (status = 404, description = "No such feed, or none of the ids kept", body = ApiError),
    )
)]
async fn removals(
    State(state): State<AppState>,
    Path(raw_feed): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let removed = async {
        let (moderator, feed) = admit(&state, &raw_feed, &headers)?;
        let asked: Removals = serde_json::from_slice(&body)
            .map_err(|err| ApiError::new(ErrorKind::BadRequest, format!("Malformed JSON body: {err}")))?;
        match sweep_of(&asked)? {
            None => moderation::remove(&state, &moderator, &feed, &asked.ids).await,
            Some((sender, within)) => moderation::remove_recent(&state, &moderator, &feed, &sender, within).await,
        }
        .map(Removed::from)
    };
    answer(removed.await)
}

/// The sender and time a body names, if it names a sender; 400 for a body that names both ids and a sender, more
/// than one sender, a sender without `minutes`, or a malformed one.
fn sweep_of(asked: &Removals) -> Result<Option<(Sender, Duration)>, ApiError> {
    let bad = |message: &str| ApiError::new(ErrorKind::BadRequest, message.to_owned());
    let senders = [asked.subject.is_some(), asked.group.is_some(), asked.address.is_some()];
    match (senders.iter().filter(|named| **named).count(), asked.ids.is_empty()) {
        (0, _) if asked.minutes.is_some() => {
            return Err(bad("`minutes` goes with a sender: subject, group or address."))
        }
        (0, _) => return Ok(None),
        (1, true) => {}
        (1, false) => return Err(bad("Name ids, or a sender with minutes, not both.")),
        _ => return Err(bad("Name one sender: subject, group or address.")),
    }
    let minutes = asked
        .minutes
        .filter(|minutes| (1..=MAX_MINUTES).contains(minutes))
        .ok_or_else(|| bad(&format!("With a sender, `minutes` is 1 to {MAX_MINUTES}.")))?;
    let sender = if let Some(subject) = &asked.subject {
        Sender::Subject(subject.clone())
    } else if let Some(group) = &asked.group {
        Sender::Group(group.clone())
    } else {
        let raw = asked.address.as_deref().unwrap_or_default();
        Sender::Address(raw.parse().map_err(|_| bad("`address` is an IPv4 or IPv6 address."))?)
    };
    Ok(Some((sender, Duration::from_secs(minutes * 60))))
}

/// The admin paths and types, for the v1 document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(recent, remove_one, removals), components(schemas(Sent, Removed, Removals)))]
pub struct Document;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Removals {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_body_names_ids_or_one_sender_with_minutes() {
        assert_eq!(sweep_of(&body(r#"{"ids": [3, 4]}"#)).unwrap(), None);
        let (sender, within) = sweep_of(&body(r#"{"subject": "user-7", "minutes": 10}"#)).unwrap().unwrap();
        assert_eq!((sender, within), (Sender::Subject("user-7".into()), Duration::from_secs(600)));
        let (sender, _) = sweep_of(&body(r#"{"address": "2001:db8::1", "minutes": 1}"#)).unwrap().unwrap();
        assert_eq!(sender, Sender::Address("2001:db8::1".parse().unwrap()));
        for bad in [
            r#"{"minutes": 5}"#,
            r#"{"ids": [1], "group": "g", "minutes": 5}"#,
            r#"{"group": "g", "subject": "s", "minutes": 5}"#,
            r#"{"group": "g"}"#,
            r#"{"group": "g", "minutes": 0}"#,
            r#"{"group": "g", "minutes": 100000}"#,
            r#"{"address": "not-an-address", "minutes": 5}"#,
        ] {
            let err = sweep_of(&body(bad)).unwrap_err();
            assert_eq!((err.kind, err.http_status().as_u16()), (ErrorKind::BadRequest, 400), "{bad}");
        }
        assert!(serde_json::from_str::<Removals>(r#"{"idz": [1]}"#).is_err(), "an unknown field is refused");
    }
}
