//! The message store: one shared, ordered log for the whole server. `FeedStore` is the seam the UI and the
//! server functions use; `SqliteStore` (durable, the default) and `MemoryStore` (tests, throwaway runs) sit behind it.
//! Ids are assigned by the store, strictly increasing, and never reused, even after retention deletes messages.

mod memory;
pub mod retention;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::{OpenError, SqliteStore};

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;

use crate::shared::domain::{Message, MessageText, Username};
use crate::shared::error::{ApiError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The one place a store failure becomes an answer: the cause goes to the log, once; the client gets a sentence
/// (503 `unavailable`, with `Retry-After`).
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store failed");
        ApiError::new(ErrorKind::Unavailable, "The message log is unavailable right now; try again.")
    }
}

#[async_trait]
pub trait FeedStore: Send + Sync + 'static {
    /// Appends and returns the stored message, once it is durable (for stores that are); its id is above every
    /// id handed out before.
    async fn append(&self, user: &Username, text: &MessageText) -> Result<Message, StoreError>;
    /// Messages with id > `after`, oldest first, at most `limit`.
    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The newest `limit` messages with id < `before`, oldest first.
    async fn before(&self, before: u64, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The newest `limit` messages, oldest first.
    async fn latest(&self, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The id of the newest message ever appended (0 for none), whether or not it is still kept.
    async fn last_id(&self) -> Result<u64, StoreError>;
    /// Retention: deletes all but the newest `keep` messages, and those stored before `cutoff`. Answers how many
    /// were deleted.
    async fn prune(&self, keep: usize, cutoff: Option<time::OffsetDateTime>) -> Result<u64, StoreError>;
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
