//! The message store: one ordered log per feed, shared by the whole server. `FeedStore` is the seam the UI and the
//! server functions use; `SqliteStore` (durable, the default), `MemoryStore` (tests, throwaway runs) and `RedisStore`
//! (several replicas sharing the logs) sit behind it.
//! Ids are assigned by the store per feed, from 1, strictly increasing, and never reused, even after retention
//! deletes messages. A feed is made by its first append: until then it holds nothing, in any backend, however often
//! it is read, so visiting names costs no storage.

mod memory;
pub mod redis;
pub mod retention;
mod sqlite;
#[cfg(test)]
pub(crate) use crate::server::link::test_redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::{OpenError, SqliteStore};

use std::time::Duration;

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;

use crate::server::observe;
use crate::shared::domain::{FeedName, Message, MessageText, SendKey, Source, Username};
use crate::shared::error::{ApiError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The one place a store failure becomes an answer: the client gets a sentence (503 `unavailable`, with
/// `Retry-After`); the cause goes to the log as a warning, once per outage rather than once per request
/// (`observe::backend_failed`), since while the log is down or refuses writes every send fails the same way.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        observe::backend_failed("the message log", &err);
        ApiError::new(ErrorKind::Unavailable, "The message log is unavailable right now; try again.")
    }
}

/// How long a readiness answer is reused: load balancers may ask often, and a probe writes.
pub const READY_FOR: Duration = Duration::from_secs(1);

/// `/readyz`'s probe of a store: run by one request at a time, its answer reused for [`READY_FOR`]. The turns are
/// logged (a warning when the store stops taking writes, a note when it takes them again), not every probe.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Result<(), String>)>>,
}

impl Readiness {
    /// The last answer if it is recent, else `probe`'s.
    pub async fn check<Fut>(&self, probe: impl FnOnce() -> Fut) -> Result<(), StoreError>
    where
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let mut last = self.last.lock().await;
        if let Some((_, answer)) = last.as_ref().filter(|(at, _)| at.elapsed() < READY_FOR) {
            return answer.clone().map_err(StoreError::Unavailable);
        }
        let answer = probe().await.map_err(|StoreError::Unavailable(why)| why);
        let was_ready = last.as_ref().map(|(_, answer)| answer.is_ok());
        match (&answer, was_ready) {
            (Err(why), None | Some(true)) => {
                tracing::warn!(reason = %why, "not ready: the message log takes no writes")
            }
            (Ok(()), Some(false)) => tracing::info!("ready again: the message log takes writes"),
            _ => {}
        }
        *last = Some((tokio::time::Instant::now(), answer.clone()));
        answer.map_err(StoreError::Unavailable)
    }
}

/// How long a send key is remembered: a repeat within it answers the first message (at least 10 minutes).
pub const KEY_MEMORY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// One send, validated, as the store records it.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub feed: &'a FeedName,
    /// The session group it was sent in: a `key` is remembered within it (and a store that announces its own
    /// appends announces to it).
    pub group: &'a str,
    pub author: &'a Username,
    pub text: &'a MessageText,
    pub key: Option<&'a SendKey>,
    /// Who vouches for `author`; every store keeps it with the message, as given.
    pub source: &'a Source,
    /// The sender's address as text (`IpAddr`'s display; empty for a backend's publish): kept with the message for
    /// moderation (`recent`, bans by address), erased with it (`remove`), never served to readers.
    pub address: &'a str,
}

/// What a removal did: the ids it erased (those of the asked that were kept), and the feed's epoch now (a new one
/// if anything was erased, so no page made before is served again and every tab reloads; else unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub removed: Vec<u64>,
    pub epoch: String,
}

/// A message with what moderation needs to know of its sender (never served to readers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message: Message,
    /// The session group it was sent in (`Draft::group`).
    pub group: String,
    /// `Draft::address`; empty for a message stored before addresses were, or erased.
    pub address: String,
}

/// A source as the SQLite column and the Redis field hold it: `verified:SUBJECT` or `service:NAME`, and nothing
/// (NULL, no field) for an anonymous one, which is what every message stored before sources has.
pub fn stored_source(source: &Source) -> Option<String> {
    match source {
        Source::Anonymous => None,
        Source::Verified(subject) => Some(format!("verified:{subject}")),
        Source::Service(name) => Some(format!("service:{name}")),
    }
}

/// The source a stored value names. Anything else reads as anonymous: a value this server cannot read must never
/// earn a mark.
pub fn source_of_stored(stored: Option<&str>) -> Source {
    match stored.and_then(|stored| stored.split_once(':')) {
        Some(("verified", subject)) => Source::Verified(subject.to_owned()),
        Some(("service", name)) => Source::Service(name.to_owned()),
        _ => Source::Anonymous,
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub message: Message,
    /// The feed's epoch the message was appended in (a fresh append; `""` for a repeated key, which appended
    /// nothing): what the broker labels the message's prepared page with.
    pub epoch: String,
    /// `false`: the key was used in this group within [`KEY_MEMORY`]; `message` is the one stored then and nothing
    /// was appended (so nothing is announced).
    pub fresh: bool,
}

/// Every log is one feed's (`FeedName`): ids, epochs, send keys and retention are per feed, and a call about one
/// feed never reads or changes another. A feed that was never appended to holds nothing: it reads as empty, with
/// no epoch (`""`) and last id 0, and reading it stores nothing.
#[async_trait]
pub trait FeedStore: Send + Sync + 'static {
    /// Appends to the draft's feed and returns the stored message, once it is durable (for stores that are); its id
    /// is above every id the feed handed out before. With a key already used in the draft's feed and group, answers
    /// the first message instead.
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError>;
    /// Messages of `feed` with id > `after`, oldest first, at most `limit`.
    async fn since(&self, feed: &FeedName, after: u64, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The newest `limit` messages of `feed` with id < `before`, oldest first.
    async fn before(&self, feed: &FeedName, before: u64, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The newest `limit` messages of `feed`, oldest first.
    async fn latest(&self, feed: &FeedName, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The feed's epoch: made with its log (at its first append), and new whenever its ids start again from 1 (a
    /// log lost and made anew), so a tab that holds ids of another epoch knows to reload instead of waiting for
    /// them. `""` for a feed that holds nothing yet.
    async fn epoch(&self, feed: &FeedName) -> Result<String, StoreError>;
    /// The id of the newest message ever appended to `feed` (0 for none), whether or not it is still kept.
    async fn last_id(&self, feed: &FeedName) -> Result<u64, StoreError>;
    /// Retention of `feed`: deletes all but its newest `keep` messages, and those stored before `cutoff`. Answers
    /// how many were deleted.
    async fn prune(
        &self,
        feed: &FeedName,
        keep: usize,
        cutoff: Option<time::OffsetDateTime>,
    ) -> Result<u64, StoreError>;
    /// The feeds that were appended to, in name order, the first `limit` after `after` (a page of them: there may
    /// be many).
    async fn feeds(&self, after: Option<&FeedName>, limit: usize) -> Result<Vec<FeedName>, StoreError>;
    /// Erases the messages `ids` of `feed` that are kept (others are skipped): author, text, source and address are
    /// gone from the store for real, not flagged (a dump of the store afterwards holds none of them), and each reads
    /// back at its id as `Message { removed: true, user: "", text: "", source: Anonymous, at }` from then on. If any
    /// was erased, the feed gets a new epoch (ids go on: the next append takes the next id). An id removed already is
    /// not erased again: it is not in `removed`, and alone it changes no epoch.
    async fn remove(&self, feed: &FeedName, ids: &[u64]) -> Result<Removal, StoreError>;
    /// The newest `limit` messages of `feed` with their senders' group and address, oldest first (removed ones too).
    async fn recent(&self, feed: &FeedName, limit: usize) -> Result<Vec<Sent>, StoreError>;
    /// Whether this store can take a send now (`/readyz`): it answers and it takes writes (a Redis that became a
    /// replica or is full refuses them while still answering reads). Cheap enough to be asked often: a store
    /// that probes reuses its answer for [`READY_FOR`].
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A fresh epoch: 64 random bits, hex.
pub fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The store's clock for `Message::at`, to the second (so `at` strings compare in time order).
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

pub fn rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(0).unwrap_or(at).format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod contract;
