//! `MemoryStore`: the newest `cap` messages in memory, lost on restart. Ids stay contiguous in the ring (retention
//! only ever drops the oldest), so `since` and `before` are index computations, not searches.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use super::{new_epoch, now_rfc3339, Appended, Draft, FeedStore, StoreError, KEY_MEMORY};
use crate::shared::domain::{FeedName, Message};

/// Most send keys remembered at once; past it the oldest are forgotten first.
const MAX_KEYS: usize = 100_000;

pub struct MemoryStore {
    cap: usize,
    epoch: String,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    last_id: u64,
    messages: VecDeque<Message>,
    /// (group, key) → the message first stored with it.
    keys: HashMap<(String, String), Message>,
    /// The keys in the order they were made, with when, to forget them after `KEY_MEMORY`.
    key_order: VecDeque<(Instant, (String, String))>,
}

impl Log {
    fn forget_old_keys(&mut self, now: Instant) {
        while let Some((made, _)) = self.key_order.front() {
            if now.duration_since(*made) < KEY_MEMORY && self.key_order.len() < MAX_KEYS {
                break;
            }
            if let Some((_, name)) = self.key_order.pop_front() {
                self.keys.remove(&name);
            }
        }
    }
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
        Self { cap: cap.max(1), epoch: new_epoch(), log: Mutex::new(Log::default()) }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        // Each mutation is one push or pop, so a panic elsewhere cannot leave the log half-written: a poisoned
        // lock is still safe to use.
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl FeedStore for MemoryStore {
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError> {
        let at = now_rfc3339();
        let now = Instant::now();
        let mut log = self.log();
        log.forget_old_keys(now);
        let name = draft.key.map(|key| (draft.group.to_owned(), key.as_str().to_owned()));
        if let Some(first) = name.as_ref().and_then(|name| log.keys.get(name)) {
            return Ok(Appended { message: first.clone(), fresh: false });
        }
        log.last_id += 1;
        let message = Message {
            id: log.last_id,
            user: draft.author.as_str().to_owned(),
            text: draft.text.as_str().to_owned(),
            at,
        };
        if log.messages.len() == self.cap {
            log.messages.pop_front();
        }
        log.messages.push_back(message.clone());
        if let Some(name) = name {
            log.keys.insert(name.clone(), message.clone());
            log.key_order.push_back((now, name));
        }
        Ok(Appended { message, fresh: true })
    }

    async fn epoch(&self, _feed: &FeedName) -> Result<String, StoreError> {
        Ok(self.epoch.clone())
    }

    async fn since(&self, _feed: &FeedName, after: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let log = self.log();
        let start = log.first_after(after);
        Ok(log.messages.range(start..).take(limit).cloned().collect())
    }

    async fn before(&self, _feed: &FeedName, before: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let log = self.log();
        let end = log.first_after(before.saturating_sub(1));
        Ok(log.messages.range(end.saturating_sub(limit)..end).cloned().collect())
    }

    async fn latest(&self, _feed: &FeedName, limit: usize) -> Result<Vec<Message>, StoreError> {
        let log = self.log();
        let start = log.messages.len().saturating_sub(limit);
        Ok(log.messages.range(start..).cloned().collect())
    }

    async fn last_id(&self, _feed: &FeedName) -> Result<u64, StoreError> {
        Ok(self.log().last_id)
    }

    async fn feeds(&self, after: Option<&FeedName>, limit: usize) -> Result<Vec<FeedName>, StoreError> {
        let main = FeedName::main();
        let appended = self.last_id(&main).await? > 0;
        Ok((appended && limit > 0 && after.is_none_or(|after| *after < main)).then_some(main).into_iter().collect())
    }

    async fn prune(
        &self,
        _feed: &FeedName,
        keep: usize,
        cutoff: Option<time::OffsetDateTime>,
    ) -> Result<u64, StoreError> {
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
