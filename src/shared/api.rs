//! The server functions: the public write API (`POST /api/join`, `POST /api/send`), the page's limits
//! (`GET /api/limits`), and the log reader the page renders with (`GET /api/messages` is its HTTP edge,
//! `server::messages`). Their bodies only run on the server and hand over to `server::feed`.
//!
//! Arguments arrive as strings with `#[server(default)]` so a missing or malformed field is answered by our own
//! parser with a clear 4xx, never by a deserialization failure.

use leptos::prelude::*;

use crate::shared::domain::{Joined, LogPage, Message, PageLimits};
use crate::shared::error::ApiError;

/// Join with a name; answers the accepted name and a ticket signed for this session group.
#[server(prefix = "/api", endpoint = "join")]
pub async fn join(#[server(default)] username: String) -> Result<Joined, ApiError> {
    use crate::server::feed;
    let (state, group) = feed::request_context().await?;
    feed::respond(feed::join(&state, &group, &username))
}

/// Append a message to the shared log as the ticket's name, then notify the session group. `key` (optional, one per
/// message the tab sends): a repeat with a key already used in this session group answers the first message.
#[server(prefix = "/api", endpoint = "send")]
pub async fn send_message(
    #[server(default)] ticket: String,
    #[server(default)] text: String,
    #[server(default)] key: String,
) -> Result<Message, ApiError> {
    use crate::server::feed;
    let (state, group) = feed::request_context().await?;
    feed::respond(feed::send(&state, &group, &ticket, &text, &key).await)
}

/// The limits the page checks before sending, so it can count characters and refuse early.
#[server(prefix = "/api", endpoint = "limits", input = leptos::server_fn::codec::GetUrl)]
pub async fn limits() -> Result<PageLimits, ApiError> {
    let state = crate::server::feed::app_state()?;
    Ok(PageLimits { max_message_chars: state.limits.max_message_chars })
}

/// Where the log is read (`GET`, `server::messages`); the tab fetches it there.
pub const LIST_MESSAGES_PATH: &str = crate::shared::wire::MESSAGES_PATH;

/// At most one page of messages in id order: those above `since`, or the newest below `before`, or (neither) the
/// latest. The page rendered on the server reads it here, through the use case, not over HTTP.
pub async fn list_messages(since: Option<String>, before: Option<String>) -> Result<LogPage, ApiError> {
    #[cfg(feature = "ssr")]
    {
        use crate::server::{feed, pages::PageKey};
        let read = async {
            let state = feed::app_state()?;
            let key = PageKey::parse(since.as_deref(), before.as_deref(), None)?;
            feed::list(&state, key, None)
                .await
                .map(|page| LogPage { epoch: page.epoch.clone(), messages: page.messages.clone() })
        };
        feed::respond(read.await)
    }
    #[cfg(not(feature = "ssr"))]
    {
        let _ = (since, before);
        Err(ApiError::new(crate::shared::error::ErrorKind::Unavailable, "The log is read over HTTP in the browser."))
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
}
