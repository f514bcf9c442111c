//! The publish API for backends, v1: `POST /api/v1/feeds/{feed}/messages` posts as a named author with an API key
//! (`Authorization: Bearer <key>`, see `api_keys`), `GET` on the same path reads the same pages as
//! `/api/feeds/{feed}/messages` with one, and `/api/v1/openapi.json` describes both, generated from the handlers and
//! types below (utoipa), so the document cannot drift from the code. The handlers only extract, call the use case
//! (`feed::publish`, `messages::page`) and map the error; a refusal is the API's JSON error, and a 401 says
//! `WWW-Authenticate: Bearer`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::server::api_keys::ApiKey;
use crate::server::feed::{self, Publish};
use crate::server::peer::Peer;
use crate::server::state::AppState;
use crate::server::{messages, refusal, security};
use crate::shared::domain::{FeedName, Message, Source};
use crate::shared::error::{ApiError, ErrorKind};

/// The path of a feed's messages in the v1 API (axum's syntax).
pub const MESSAGES: &str = "/api/v1/feeds/{feed}/messages";
/// The OpenAPI document of the v1 API.
pub const OPENAPI: &str = "/api/v1/openapi.json";

pub fn routes() -> Router<AppState> {
    Router::new().route(MESSAGES, get(read).post(publish)).route(OPENAPI, get(openapi))
}

/// A message from a backend.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    /// The name shown as its author (1 to 32 characters, the rules of a typed name).
    author: String,
    /// The text (up to the server's `max-message-chars`).
    text: String,
    /// An idempotency key (up to 64 of A-Z, a-z, 0-9, '-', '_'): a repeat within 15 minutes answers the first
    /// message with 200 and stores nothing. Scoped to the API key.
    #[serde(default)]
    key: String,
}

/// The page's query: `since` (messages after this id, oldest first), or `before` (the newest ones before it);
/// neither: the newest page.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by `messages::page` from the raw query; named here for the document
struct PageQuery {
    since: Option<u64>,
    before: Option<u64>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Broadcasting API for backends and moderators", version = "1"),
    paths(publish, read),
    components(schemas(Publication, Message, Source, ApiError, ErrorKind)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct Document;

/// The bearer scheme every v1 path asks for.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The document, as JSON.
pub fn document() -> String {
    let mut document = Document::openapi();
    document.merge(crate::server::admin::Document::openapi());
    document.to_pretty_json().unwrap_or_default()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// Post a message to a feed as a named author.
#[utoipa::path(
    post,
    path = "/api/v1/feeds/{feed}/messages",
    params(("feed" = String, Path, description = "The feed's name")),
    request_body = Publication,
    responses(
        (status = 201, description = "Stored and announced", body = Message),
        (status = 200, description = "A repeated idempotency key: the first message, nothing stored", body = Message),
        (status = 400, description = "Malformed JSON", body = ApiError),
        (status = 401, description = "No API key, or not a valid one", body = ApiError),
        (status = 403, description = "The key does not cover this feed", body = ApiError),
        (status = 404, description = "No such feed here", body = ApiError),
        (status = 413, description = "Body over the server's limit", body = ApiError),
        (status = 422, description = "Author or text breaks a rule (empty, too long, …)", body = ApiError),
        (status = 429, description = "Over the key's budget; see Retry-After", body = ApiError),
    )
)]
async fn publish(
    State(state): State<AppState>,
    Path(raw_feed): Path<String>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let published = async {
        let (key, feed) = admit(&state, &raw_feed, &headers)?;
        let sent: Publication = serde_json::from_slice(&body)
            .map_err(|err| ApiError::new(ErrorKind::BadRequest, format!("Malformed JSON body: {err}")))?;
        let address = peer.map_or(std::net::Ipv4Addr::LOCALHOST.into(), |Extension(peer)| peer.address);
        let sent = Publish { author: &sent.author, text: &sent.text, key: &sent.key };
        feed::publish(&state, &feed, &key, address, sent).await
    };
    let mut response = match published.await {
        Ok((message, fresh)) => {
            let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(message)).into_response()
        }
        Err(err) => refusal::bearer_refused(err),
    };
    security::not_a_document(response.headers_mut());
    response
}

/// Read a page of a feed, as `/api/feeds/{feed}/messages` serves it (JSON array of messages, oldest first; the
/// epoch in the `Broadcasting-Epoch` header).
#[utoipa::path(
    get,
    path = "/api/v1/feeds/{feed}/messages",
    params(("feed" = String, Path, description = "The feed's name"), PageQuery),
    responses(
        (status = 200, description = "A page of the log", body = Vec<Message>),
        (status = 400, description = "A malformed query", body = ApiError),
        (status = 401, description = "No API key, or not a valid one", body = ApiError),
        (status = 403, description = "The key does not cover this feed", body = ApiError),
        (status = 404, description = "No such feed here", body = ApiError),
    )
)]
async fn read(State(state): State<AppState>, Path(raw_feed): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let mut response = match admit(&state, &raw_feed, &headers) {
        Ok((_, feed)) => {
            let mut page = messages::page(&state, feed.as_str(), &uri, &headers, messages::Reader::Service).await;
            // What a key read is the key holder's: no shared cache may keep it and hand it to a request without one.
            page.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
            page
        }
        Err(err) => refusal::bearer_refused(err),
    };
    security::not_a_document(response.headers_mut());
    response
}

/// The key of the request's `Authorization` (401), the feed its path names (404), covered by the key (403).
fn admit(
    state: &AppState,
    raw_feed: &str,
    headers: &HeaderMap,
) -> Result<(std::sync::Arc<ApiKey>, FeedName), ApiError> {
    let key = state.api_keys.authenticate(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))?;
    let feed = feed::named(state, raw_feed)?;
    key.may_use(&feed)?;
    Ok((key, feed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_both_routes_the_bearer_scheme_and_the_error_shape() {
        let document: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let path = &document["paths"]["/api/v1/feeds/{feed}/messages"];
        assert!(path["post"].is_object() && path["get"].is_object(), "{path}");
        assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let error = &document["components"]["schemas"]["ApiError"]["properties"];
        assert!(error["kind"].is_object() && error["message"].is_object(), "{error}");
        assert!(error.get("retry_after_secs").is_none(), "{error}");
    }
}
