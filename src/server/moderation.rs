//! Moderation's use cases: who moderates, a feed's recent messages with their senders, and removing messages for
//! real. A moderator is a sign-in token of the deployer's backend with `role = "moderator"` (for the feeds its
//! `feeds.write` grants) or an API key with `moderate = true` (for the feeds it covers). A removal erases the
//! messages in the store (`FeedStore::remove`: gone, not flagged), which gives the feed a new epoch, so no page made
//! before (in this process, another replica, nginx or a browser) is asked for again: every page URL names its epoch.
//! Then every tab of the feed is told (`Broker::removed`), fetches, finds the new epoch and reloads the log, where
//! the message now reads as removed. Plain functions over the state and domain values, as `feed`'s.

use std::net::IpAddr;

use crate::server::api_keys::KEY_PREFIX;
use crate::server::identity::{self, Grant};
use crate::server::state::AppState;
use crate::server::store::{Removal, Sent};
use crate::server::ticket::now_secs;
use crate::shared::domain::{FeedName, Source};
use crate::shared::error::{ApiError, ErrorKind};

/// Most ids one removal names.
pub const MAX_REMOVE: usize = 1_000;
/// Most recent messages one "remove what a sender wrote lately" looks through (and the admin view lists).
pub const MAX_RECENT: usize = 1_000;
/// The role a sign-in token must carry to moderate.
pub const MODERATOR_ROLE: &str = "moderator";

/// Who moderates, and where.
#[derive(Debug, Clone)]
pub struct Moderator {
    /// `key:NAME` or `subject:SUB`, as the log and the audit name them.
    pub who: String,
    scope: Grant,
}

impl Moderator {
    /// 403 for a feed outside the moderator's scope.
    pub fn may_moderate(&self, feed: &FeedName) -> Result<(), ApiError> {
        if self.scope.covers(feed) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorKind::Forbidden, format!("You may not moderate the feed {feed}.")))
        }
    }
}

/// The moderator a request's bearer credential names: an API key (`bk_…`) that may moderate, or a sign-in token
/// whose role is moderator. 401 without one or with one that is not valid; 403 for a valid one that may not
/// moderate. The credential itself is never logged.
pub fn moderator(state: &AppState, bearer: Option<&str>) -> Result<Moderator, ApiError> {
    let Some(bearer) = bearer.map(str::trim).filter(|bearer| !bearer.is_empty()) else {
        return Err(ApiError::new(
            ErrorKind::Unauthorized,
            "Moderation needs `Authorization: Bearer <a moderator's sign-in token, or an API key that may moderate>`.",
        ));
    };
    if bearer.starts_with(KEY_PREFIX) {
        let key = state.api_keys.find(bearer)?;
        if !key.moderate {
            return Err(ApiError::new(ErrorKind::Forbidden, "This API key may post, not moderate."));
        }
        return Ok(Moderator { who: format!("key:{}", key.name), scope: key.feeds.clone() });
    }
    let Some(keys) = &state.sign_in.keys else {
        return Err(ApiError::new(
            ErrorKind::Unauthorized,
            "This server checks no sign-in tokens; moderate with an API key that may moderate.",
        ));
    };
    let identity = identity::verify(keys, bearer, now_secs()).map_err(|err| {
        tracing::debug!(reason = %err, "moderator token refused");
        ApiError::from(err)
    })?;
    if identity.role.as_deref() != Some(MODERATOR_ROLE) {
        return Err(ApiError::new(ErrorKind::Forbidden, "Your sign-in is not a moderator's."));
    }
    Ok(Moderator { who: format!("subject:{}", identity.subject), scope: identity.grants.write })
}

/// The newest `limit` (at most [`MAX_RECENT`]) messages of `feed`, with their senders' group and address.
pub async fn recent(
    state: &AppState,
    moderator: &Moderator,
    feed: &FeedName,
    limit: usize,
) -> Result<Vec<Sent>, ApiError> {
    moderator.may_moderate(feed)?;
    Ok(state.store.recent(feed, limit.clamp(1, MAX_RECENT)).await?)
}

/// Removes the messages `ids` of `feed` (see the module doc). 400 for no id or more than [`MAX_REMOVE`]; 404 when
/// none of them is kept (never sent, or retention took it): nothing changes then.
pub async fn remove(
    state: &AppState,
    moderator: &Moderator,
    feed: &FeedName,
    ids: &[u64],
) -> Result<Removal, ApiError> {
    moderator.may_moderate(feed)?;
    if ids.is_empty() || ids.len() > MAX_REMOVE {
        return Err(ApiError::new(ErrorKind::BadRequest, format!("Name 1 to {MAX_REMOVE} message ids to remove.")));
    }
    let removal = state.store.remove(feed, ids).await?;
    if removal.removed.is_empty() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("The feed {feed} keeps no message of those ids: never sent, or no longer kept."),
        ));
    }
    announce(state, feed, &removal).await;
    tracing::info!(moderator = %moderator.who, %feed, removed = ?removal.removed, "messages removed");
    Ok(removal)
}

/// Whose messages a sweep removes: a signed-in sender's subject, a browser (its session group), or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    Subject(String),
    Group(String),
    Address(IpAddr),
}

impl Sender {
    fn wrote(&self, sent: &Sent) -> bool {
        match self {
            Sender::Subject(subject) => matches!(&sent.message.source, Source::Verified(s) if s == subject),
            Sender::Group(group) => sent.group == *group,
            Sender::Address(address) => sent.address.parse::<IpAddr>().is_ok_and(|sent| sent == *address),
        }
    }
}

/// Removes what `sender` wrote in `feed` within the last `within` (among its [`MAX_RECENT`] newest messages: a
/// spam wave). Nothing found is no error: nothing changes, and the answer names no id.
pub async fn remove_recent(
    state: &AppState,
    moderator: &Moderator,
    feed: &FeedName,
    sender: &Sender,
    within: std::time::Duration,
) -> Result<Removal, ApiError> {
    moderator.may_moderate(feed)?;
    let since = crate::server::store::rfc3339(time::OffsetDateTime::now_utc() - within);
    let recent = state.store.recent(feed, MAX_RECENT).await?;
    // `at` strings are RFC 3339 in UTC to the second, so they compare in time order.
    let ids: Vec<u64> = recent
        .iter()
        .filter(|sent| !sent.message.removed && sent.message.at >= since && sender.wrote(sent))
        .map(|sent| sent.message.id)
        .collect();
    if ids.is_empty() {
        return Ok(Removal { removed: Vec::new(), epoch: state.store.epoch(feed).await? });
    }
    remove(state, moderator, feed, &ids).await
}

/// Tells every process and every tab of `feed` (`Broker::removed`). The erasure stands either way: lost, a replica's
/// tabs reload at its next heal, which finds the new epoch.
async fn announce(state: &AppState, feed: &FeedName, removal: &Removal) {
    let last = match state.store.last_id(feed).await {
        Ok(last) => last,
        Err(err) => {
            tracing::warn!(error = %err, %feed, "removal not announced: the log's last id could not be read");
            return;
        }
    };
    if let Err(err) = state.broker.removed(feed, &removal.epoch, last).await {
        tracing::warn!(error = %err, %feed, "removal not announced to the other replicas; they reload at their next heal");
    }
}
