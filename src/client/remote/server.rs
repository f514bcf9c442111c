//! The API's calls while the server renders the page: the server functions themselves, called in process. Only the
//! first page and the limits are asked for then; the rest is here so that the page's code is the same on both
//! targets.

use std::future::Future;

use crate::shared::api;
use crate::shared::domain::{Joined, LogPage, Message, PageLimits};
use crate::shared::error::ApiError;

pub fn messages(
    since: Option<u64>,
    before: Option<u64>,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    api::list_messages(since.map(|id| id.to_string()), before.map(|id| id.to_string()))
}

/// Caching is the browser's concern: on the server this is a plain page after `since`.
pub fn catch_up(
    since: u64,
    _until: Option<u64>,
    _epoch: &str,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    messages(Some(since), None)
}

pub fn limits() -> impl Future<Output = Result<PageLimits, ApiError>> + Send + 'static {
    api::limits()
}

pub async fn join(username: String) -> Result<Joined, ApiError> {
    api::join(username).await
}

pub async fn send_message(ticket: String, text: String, key: String) -> Result<Message, ApiError> {
    api::send_message(ticket, text, key).await
}

pub fn new_send_key() -> String {
    String::new()
}
