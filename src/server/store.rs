//! The message store: one shared, ordered log for the whole server. `FeedStore` is the seam later stores
//! (durable, shared) plug into; `MemoryStore` keeps the newest `cap` messages in memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;

use crate::shared::domain::{Message, MessageText, Username};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait FeedStore: Send + Sync + 'static {
    /// Appends and returns the stored message; its id is one more than the previous one's.
    async fn append(&self, user: &Username, text: &MessageText) -> Result<Message, StoreError>;
    /// Messages with id > `after`, oldest first, at most `limit`.
    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The newest `limit` messages, oldest first.
    async fn latest(&self, limit: usize) -> Result<Vec<Message>, StoreError>;
    /// The id of the newest message ever appended (0 for none).
    async fn last_id(&self) -> Result<u64, StoreError>;
}

/// The store's clock for `Message::at`, to the second.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).unwrap_or_default()
}

/// In-memory log capped at `cap` messages; the oldest are dropped. Ids stay contiguous in the ring, so
/// `since` is an index computation, not a search.
pub struct MemoryStore {
    cap: usize,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    last_id: u64,
    messages: VecDeque<Message>,
}

impl Log {
    /// Index in `messages` of the first message with id > `after`. Caller holds the lock (it has `&self`).
    fn first_after(&self, after: u64) -> usize {
        match self.messages.front() {
            Some(first) if after >= first.id => ((after - first.id + 1) as usize).min(self.messages.len()),
            _ => 0,
        }
    }
}

impl MemoryStore {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), log: Mutex::new(Log::default()) }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written (each mutation is one push/pop),
        // so a poisoned lock is still safe to use.
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl FeedStore for MemoryStore {
    async fn append(&self, user: &Username, text: &MessageText) -> Result<Message, StoreError> {
        let at = now_rfc3339();
        let mut log = self.log();
        log.last_id += 1;
        let message = Message { id: log.last_id, user: user.as_str().to_owned(), text: text.as_str().to_owned(), at };
        if log.messages.len() == self.cap {
            log.messages.pop_front();
        }
        log.messages.push_back(message.clone());
        Ok(message)
    }

    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let log = self.log();
        let start = log.first_after(after);
        Ok(log.messages.range(start..).take(limit).cloned().collect())
    }

    async fn latest(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        let log = self.log();
        let start = log.messages.len().saturating_sub(limit);
        Ok(log.messages.range(start..).cloned().collect())
    }

    async fn last_id(&self) -> Result<u64, StoreError> {
        Ok(self.log().last_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ids(page: &[Message]) -> Vec<u64> {
        page.iter().map(|m| m.id).collect()
    }

    async fn filled(cap: usize, n: usize) -> MemoryStore {
        let store = MemoryStore::new(cap);
        let user = Username::parse("ada").unwrap();
        for i in 0..n {
            store.append(&user, &MessageText::parse(&format!("m{i}"), 100).unwrap()).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn appends_get_increasing_ids_and_keep_text() {
        let store = filled(10, 3).await;
        let all = store.since(0, 100).await.unwrap();
        assert_eq!(ids(&all), vec![1, 2, 3]);
        assert_eq!(all[2].text, "m2");
        assert_eq!(all[2].user, "ada");
        assert!(time::OffsetDateTime::parse(&all[2].at, &Rfc3339).is_ok());
        assert_eq!(store.last_id().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn since_and_latest_page() {
        let store = filled(10, 6).await;
        assert_eq!(ids(&store.since(2, 2).await.unwrap()), vec![3, 4]);
        assert_eq!(ids(&store.since(6, 2).await.unwrap()), Vec::<u64>::new());
        assert_eq!(ids(&store.since(60, 2).await.unwrap()), Vec::<u64>::new());
        assert_eq!(ids(&store.latest(4).await.unwrap()), vec![3, 4, 5, 6]);
        assert_eq!(ids(&store.latest(40).await.unwrap()), vec![1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn cap_drops_oldest_and_ids_keep_counting() {
        let store = filled(3, 7).await;
        assert_eq!(ids(&store.latest(10).await.unwrap()), vec![5, 6, 7]);
        // asking from before the oldest kept message starts at the oldest kept
        assert_eq!(ids(&store.since(1, 10).await.unwrap()), vec![5, 6, 7]);
        assert_eq!(ids(&store.since(5, 10).await.unwrap()), vec![6, 7]);
        assert_eq!(store.last_id().await.unwrap(), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_gap_free() {
        let store = Arc::new(MemoryStore::new(10_000));
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let user = Username::parse(&format!("u{t}")).unwrap();
                    for i in 0..200 {
                        store.append(&user, &MessageText::parse(&format!("{t}-{i}"), 100).unwrap()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let all = store.since(0, 10_000).await.unwrap();
        assert_eq!(ids(&all), (1..=1600).collect::<Vec<_>>());
    }
}
