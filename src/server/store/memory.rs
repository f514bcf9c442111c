//! `MemoryStore`: the newest `cap` messages in memory, lost on restart. Ids stay contiguous in the ring (retention
//! only ever drops the oldest), so `since` and `before` are index computations, not searches.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{now_rfc3339, FeedStore, StoreError};
use crate::shared::domain::{Message, MessageText, Username};

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
    /// Index in `messages` of the first message with id > `after`.
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
        // Each mutation is one push or pop, so a panic elsewhere cannot leave the log half-written: a poisoned
        // lock is still safe to use.
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

    async fn before(&self, before: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let log = self.log();
        let end = log.first_after(before.saturating_sub(1));
        Ok(log.messages.range(end.saturating_sub(limit)..end).cloned().collect())
    }

    async fn latest(&self, limit: usize) -> Result<Vec<Message>, StoreError> {
        let log = self.log();
        let start = log.messages.len().saturating_sub(limit);
        Ok(log.messages.range(start..).cloned().collect())
    }

    async fn last_id(&self) -> Result<u64, StoreError> {
        Ok(self.log().last_id)
    }

    async fn prune(&self, keep: usize, cutoff: Option<time::OffsetDateTime>) -> Result<u64, StoreError> {
        let older = |message: &Message| {
            let at = time::OffsetDateTime::parse(&message.at, &time::format_description::well_known::Rfc3339);
            cutoff.is_some_and(|cutoff| at.is_ok_and(|at| at < cutoff))
        };
        let mut log = self.log();
        let before = log.messages.len();
        while log.messages.len() > keep || log.messages.front().is_some_and(older) {
            log.messages.pop_front();
        }
        Ok((before - log.messages.len()) as u64)
    }
}
