//! The API's calls while the server renders the page: the server functions themselves, called in process. Only the
//! first page and the limits are asked for then; the rest is here so that the page's code is the same on both
//! targets.

use std::future::Future;

use crate::shared::api;
use crate::shared::domain::{FeedName, Joined, LogPage, Message, PageLimits};
use crate::shared::error::ApiError;

pub fn messages(
    feed: &FeedName,
    since: Option<u64>,
    before: Option<u64>,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    api::list_messages(feed.clone(), since.map(|id| id.to_string()), before.map(|id| id.to_string()))
}

/// Caching is the browser's concern: on the server this is a plain page after `since`.
pub fn catch_up(
    feed: &FeedName,
    since: u64,
    _until: Option<u64>,
    _epoch: &str,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    messages(feed, Some(since), None)
}

/// The server renders the page for no one in particular: it holds no pass.
pub fn hold_pass(_pass: &str) {}

pub fn limits() -> impl Future<Output = Result<PageLimits, ApiError>> + Send + 'static {
    api::limits()
}

pub async fn join(feed: FeedName, credential: super::Credential) -> Result<Joined, ApiError> {
    match credential {
        super::Credential::Name(name) => api::join(feed_field(&feed), name, String::new()).await,
        super::Credential::Token(token) => api::join(feed_field(&feed), String::new(), token).await,
    }
}

/// The deployer's site is asked from the tab only.
pub async fn renew_token(_url: String) -> Result<String, ApiError> {
    Err(ApiError::new(crate::shared::error::ErrorKind::Network, "A sign-in is renewed in the browser only."))
}

pub async fn send_message(feed: FeedName, ticket: String, text: String, key: String) -> Result<Message, ApiError> {
    api::send_message(feed_field(&feed), ticket, text, key).await
}

/// The `feed` field as the browser sends it: left out (empty) for `main`.
fn feed_field(feed: &FeedName) -> String {
    if feed.is_main() {
        String::new()
    } else {
        feed.to_string()
    }
}

pub fn new_send_key() -> String {
    String::new()
}
