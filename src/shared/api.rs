//! The server functions: the public write API (`POST /api/join`, `POST /api/send`), the page's limits
//! (`GET /api/limits`), and the log reader the page renders with (`GET /api/messages` is its HTTP edge,
//! `server::messages`). Their bodies only run on the server: each takes the state and the session group from the
//! request (`ssr`), calls its use case in `server::feed`, and sets the status that goes with an error.
//!
//! Arguments arrive as strings with `#[server(default)]` so a missing or malformed field is answered by our own
//! parser with a clear 4xx, never by a deserialization failure. Join and send name their feed in the `feed` field
//! (`wire::FEED_FIELD`): missing (or empty) is `main`, anything that is no feed name a 400 that says what one is.

use leptos::prelude::*;

use crate::shared::domain::{FeedName, Joined, LogPage, Message, PageLimits, FEED_NAME_RULE};
use crate::shared::error::{ApiError, ErrorKind};

/// The feed a `feed` field names: none (or empty) is `main`.
pub fn feed_of_field(field: &str) -> Result<FeedName, ApiError> {
    if field.is_empty() {
        return Ok(FeedName::main());
    }
    FeedName::parse(field).ok_or_else(|| ApiError::new(ErrorKind::BadRequest, FEED_NAME_RULE))
}

/// Join with a name, or with `token` (a token of the deployer's backend, `server::identity`: the name is then the
/// token's and `username` is not read); answers the accepted name and a ticket signed for this session group. A
/// ticket is per tab and group, not per feed, so the feed is only checked (a bad one is refused like any bad field),
/// unless the token limits where it may post. A token only ever travels in the body: one in the URL's query is
/// refused (400), since URLs are written to access logs.
#[server(prefix = "/api", endpoint = "join")]
pub async fn join(
    #[server(default)] feed: String,
    #[server(default)] username: String,
    #[server(default)] token: String,
) -> Result<Joined, ApiError> {
    let feed = match feed_of_field(&feed) {
        Ok(feed) => feed,
        Err(err) => return ssr::respond(Err(err)),
    };
    if ssr::query_names(crate::shared::wire::TOKEN_FIELD).await {
        return ssr::respond(Err(ApiError::new(
            ErrorKind::BadRequest,
            "Send the token in the request body, never in the URL: URLs are written to logs.",
        )));
    }
    let (state, group) = ssr::request_context().await?;
    let joined = if token.is_empty() {
        crate::server::feed::join(&state, &group, &feed, &username)
    } else {
        crate::server::feed::join_with_token(&state, &group, &feed, &token)
    };
    ssr::respond(joined)
}

/// Append a message to the shared log as the ticket's name, then notify the session group. `key` (optional, one per
/// message the tab sends): a repeat with a key already used in this session group answers the first message.
#[server(prefix = "/api", endpoint = "send")]
pub async fn send_message(
    #[server(default)] feed: String,
    #[server(default)] ticket: String,
    #[server(default)] text: String,
    #[server(default)] key: String,
) -> Result<Message, ApiError> {
    let feed = match feed_of_field(&feed) {
        Ok(feed) => feed,
        Err(err) => return ssr::respond(Err(err)),
    };
    let (state, group) = ssr::request_context().await?;
    let address = ssr::caller_address().await;
    ssr::respond(crate::server::feed::send(&state, &feed, &group, address, &ticket, &text, &key).await)
}

/// The limits the page checks before sending, so it can count characters and refuse early.
#[server(prefix = "/api", endpoint = "limits", input = leptos::server_fn::codec::GetUrl)]
pub async fn limits() -> Result<PageLimits, ApiError> {
    Ok(crate::server::feed::limits(&ssr::app_state()?))
}

/// Where the log is read (`GET`, `server::messages`); the tab fetches it there.
pub const LIST_MESSAGES_PATH: &str = crate::shared::wire::MESSAGES_PATH;

/// At most one page of `feed`'s messages in id order: those above `since`, or the newest below `before`, or
/// (neither) the latest. The page rendered on the server reads it here, through the use case, not over HTTP.
pub async fn list_messages(feed: FeedName, since: Option<String>, before: Option<String>) -> Result<LogPage, ApiError> {
    #[cfg(feature = "ssr")]
    {
        use crate::server::{feed, pages::PageKey};
        // The page renders with no sign-in (a tab's pass comes after it joins): a private feed shows none of its
        // messages until then. The page itself is no refusal (its tab may be about to join): its status stays 200.
        let state = ssr::app_state()?;
        feed::readable(&state, &feed, None)?;
        let read = async {
            let key = PageKey::parse(since.as_deref(), before.as_deref(), None)?;
            feed::list(&state, &feed, key, None)
                .await
                .map(|page| LogPage { epoch: page.epoch.clone(), messages: page.messages.clone() })
        };
        ssr::respond(read.await)
    }
    #[cfg(not(feature = "ssr"))]
    {
        let _ = (feed, since, before);
        Err(ApiError::new(ErrorKind::Unavailable, "The log is read over HTTP in the browser."))
    }
}

/// Whether reading `feed` takes a sign-in (`server::access`), as the page is rendered: the shell marks the page
/// so, and the tab waits for its join's read pass before it reads anything of it.
pub fn private_feed(feed: &FeedName) -> bool {
    #[cfg(feature = "ssr")]
    {
        ssr::app_state().is_ok_and(|state| state.limits.feeds.access.of(feed).private())
    }
    #[cfg(not(feature = "ssr"))]
    {
        let _ = feed;
        false
    }
}

/// What the server functions take from the request and give to its response; the use cases never see it.
#[cfg(feature = "ssr")]
mod ssr {
    use leptos::prelude::*;
    use leptos_axum::ResponseOptions;

    use crate::server::group::GroupId;
    use crate::server::state::AppState;
    use crate::shared::error::{ApiError, ErrorKind};

    /// The application state the router provides to every server function.
    pub fn app_state() -> Result<AppState, ApiError> {
        use_context::<AppState>().ok_or_else(|| ApiError::new(ErrorKind::Unavailable, "The server is not ready yet."))
    }

    /// The state and the caller's session group (set by the cookie middleware, `server::cookie`).
    pub async fn request_context() -> Result<(AppState, GroupId), ApiError> {
        let state = app_state()?;
        let axum::Extension(group) = leptos_axum::extract::<axum::Extension<GroupId>>()
            .await
            .map_err(|_| ApiError::new(ErrorKind::Unavailable, "No session group for this request."))?;
        Ok((state, group))
    }

    /// The caller's address, as the peer layer found it (`server::peer`: behind a trusted proxy, the client's).
    pub async fn caller_address() -> std::net::IpAddr {
        let peer = leptos_axum::extract::<Option<axum::Extension<crate::server::peer::Peer>>>().await.ok().flatten();
        crate::server::peer::address_of(peer)
    }

    /// Whether the request's URL query has a field `name`, by its decoded name (`tok%65n` is `token`).
    pub async fn query_names(name: &str) -> bool {
        let Ok(uri) = leptos_axum::extract::<axum::http::Uri>().await else { return false };
        let query = uri.query().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes()).any(|(field, _)| field == name)
    }

    /// Sets the HTTP status that goes with an error before the server function answers it.
    pub fn respond<T>(result: Result<T, ApiError>) -> Result<T, ApiError> {
        if let Err(err) = &result {
            if let Some(options) = use_context::<ResponseOptions>() {
                options.set_status(err.http_status());
                if let Some(retry_after) = err.retry_after() {
                    options.insert_header(axum::http::header::RETRY_AFTER, retry_after);
                }
            }
        }
        result
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    #[test]
    fn the_wire_paths_are_the_server_functions_and_the_reader() {
        use crate::shared::wire;
        use leptos::server_fn::ServerFn;
        assert_eq!(<super::Join as ServerFn>::PATH, wire::JOIN_PATH);
        assert_eq!(<super::SendMessage as ServerFn>::PATH, wire::SEND_PATH);
        assert_eq!(<super::Limits as ServerFn>::PATH, wire::LIMITS_PATH);
        assert_eq!(super::LIST_MESSAGES_PATH, wire::MESSAGES_PATH);
    }

    #[test]
    fn the_feed_field_names_main_when_left_out_and_a_bad_name_is_a_400_that_says_what_a_name_is() {
        use crate::shared::domain::{FeedName, FEED_NAME_RULE};
        use crate::shared::error::ErrorKind;
        assert_eq!(super::feed_of_field("").unwrap(), FeedName::main());
        assert_eq!(super::feed_of_field("team-news").unwrap(), FeedName::parse("team-news").unwrap());
        for bad in ["Team", "-x", "a b", "bad_name", &"a".repeat(65)] {
            let err = super::feed_of_field(bad).unwrap_err();
            assert_eq!(
                (err.kind, err.http_status().as_u16(), err.message.as_str()),
                (ErrorKind::BadRequest, 400, FEED_NAME_RULE)
            );
        }
    }
}
