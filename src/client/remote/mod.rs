//! The tab's calls to the API, one signature each, documented here. Which code answers is chosen once, at the
//! `mod` line below: in the browser (`browser`) plain `fetch` requests against the server functions' public contract
//! (form-encoded POSTs, a GET with a numeric query, JSON answers), made with what the browser already has: server_fn's
//! own browser client and its query-string codec added 33 KB (brotli) to the wasm for these requests (BENCHMARKS.md).
//! On the server, rendering the page (`server`), the server functions themselves.
//!
//! Presence and the relay's probe of a refused stream are made in the browser only (the server renders no list and
//! opens no stream), so only `browser` has them.

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(feature = "hydrate")]
use browser as target;
#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
use server as target;

#[cfg(feature = "hydrate")]
pub use browser::{error_of, presence, request};

use std::future::Future;

use crate::shared::domain::{FeedName, Joined, LogPage, Message, PageLimits};
use crate::shared::error::ApiError;

/// One page of `feed`'s log, with its epoch: above `since`, or below `before`, or (neither) the latest. `Send` so
/// that a resource can hold it on the server.
pub fn messages(
    feed: &FeedName,
    since: Option<u64>,
    before: Option<u64>,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    target::messages(feed, since, before)
}

/// The messages after `since` up to `until` (a notice's id) in the log of `epoch`: the URL names both ends and the
/// log, so its answer never changes once `until` is stored, and the browser's cache or any proxy may serve it
/// (`server::messages`). Without `until` (catching up to an unknown end): everything after `since`, as `messages`.
pub fn catch_up(
    feed: &FeedName,
    since: u64,
    until: Option<u64>,
    epoch: &str,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    target::catch_up(feed, since, until, epoch)
}

/// A private feed's read pass (`Joined::pass`), held in this tab's memory and sent with each of its requests from
/// now on (`Authorization: Bearer`); the stream carries it in its URL (`relay`).
pub fn hold_pass(pass: &str) {
    target::hold_pass(pass);
}

/// The server's limits, read once while the page renders on the server; the tab gets them with the page.
pub fn limits() -> impl Future<Output = Result<PageLimits, ApiError>> + Send + 'static {
    target::limits()
}

/// What a tab joins with: a name typed in the form, or a token of the deployer's site (`POST /api/join`'s `token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Name(String),
    Token(String),
}

/// Joins `feed`'s page with `credential`: the accepted name and the ticket this tab sends with (and, for a token,
/// whose it is and until when).
pub async fn join(feed: FeedName, credential: Credential) -> Result<Joined, ApiError> {
    target::join(feed, credential).await
}

/// A new token from the deployer's site: `POST url` with the browser's cookies for that site, answered
/// `{"token": "..."}`. Only the tab asks (the server renders no sign-in).
pub async fn renew_token(url: String) -> Result<String, ApiError> {
    target::renew_token(url).await
}

/// Sends to `feed`. `key`: this message's idempotency key; sending again with it never stores the message twice.
pub async fn send_message(feed: FeedName, ticket: String, text: String, key: String) -> Result<Message, ApiError> {
    target::send_message(feed, ticket, text, key).await
}

/// A new idempotency key for one message (or id for one tab): 128 bits from the browser's cryptographic generator
/// (`crypto.getRandomValues`), as 32 hex digits. `Math.random` is not made for ids: its state can be recovered from
/// a few outputs, and some engines seed it alike. (The server binds keys and tab ids to the ticket as well, so an
/// id that leaks or repeats gives no hold on another tab's messages or lease.) The server renders no form that
/// sends, so it makes none.
pub fn new_send_key() -> String {
    target::new_send_key()
}
