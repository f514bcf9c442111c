//! `MemoryStore`: each feed's newest `cap` messages in memory, lost on restart. A feed is an entry of one ordered
//! map, made by its first append (reads of a feed never written add nothing), so `feeds` pages in name order. Ids
//! stay contiguous in a feed's ring (retention only ever drops the oldest), so `since` and `before` are index
//! computations, not searches. Send keys are one table for every feed, with one bound, so many feeds cannot
//! multiply what they cost. A removal overwrites the message in place (its author, text, source and address are
//! dropped, its slot stays), so the ring stays contiguous.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use super::{new_epoch, now_rfc3339, Appended, Draft, FeedStore, Removal, Sent, StoreError, KEY_MEMORY};
use crate::shared::domain::{FeedName, Message, Source};

/// Most send keys remembered at once, over all feeds; past it the oldest are forgotten first.
const MAX_KEYS: usize = 100_000;

/// A send key's name: (feed, group, key).
type KeyName = (FeedName, String, String);

pub struct MemoryStore {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Only feeds that were appended to.
    feeds: BTreeMap<FeedName, Log>,
    /// (feed, group, key) → the message first stored with it.
    keys: HashMap<KeyName, Message>,
    /// The keys in the order they were made, with when, to forget them after `KEY_MEMORY`.
    key_order: VecDeque<(Instant, KeyName)>,
}

/// One feed's log.
struct Log {
    epoch: String,
    last_id: u64,
    messages: VecDeque<Sent>,
}

impl Inner {
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
            Some(first) if after >= first.message.id => {
                ((after - first.message.id + 1) as usize).min(self.messages.len())
            }
            _ => 0,
        }
    }

    /// The messages in `range` of the ring, as readers see them.
    fn read(&self, range: std::ops::Range<usize>) -> Vec<Message> {
        self.messages.range(range).map(|sent| sent.message.clone()).collect()
    }
}

impl MemoryStore {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), inner: Mutex::new(Inner::default()) }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each mutation is one push or pop, so a panic elsewhere cannot leave a log half-written: a poisoned
        // lock is still safe to use.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `read` of `feed`'s log, or `empty` if the feed holds nothing (nothing is made for it).
    fn read<T>(&self, feed: &FeedName, empty: T, read: impl FnOnce(&Log) -> T) -> T {
        self.inner().feeds.get(feed).map_or(empty, read)
    }

    /// What the store holds: its feeds, and how many send keys. Tests check that reading a feed adds nothing.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (Vec<FeedName>, usize) {
        let inner = self.inner();
        (inner.feeds.keys().cloned().collect(), inner.keys.len().max(inner.key_order.len()))
    }
}

#[async_trait]
impl FeedStore for MemoryStore {
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError> {
        let at = now_rfc3339();
        let now = Instant::now();
        let mut inner = self.inner();
        inner.forget_old_keys(now);
        let name = draft.key.map(|key| (draft.feed.clone(), draft.group.to_owned(), key.as_str().to_owned()));
        if let Some(first) = name.as_ref().and_then(|name| inner.keys.get(name)) {
            return Ok(Appended { message: first.clone(), epoch: String::new(), fresh: false });
        }
        let log = inner.feeds.entry(draft.feed.clone()).or_insert_with(|| Log {
            epoch: new_epoch(),
            last_id: 0,
            messages: VecDeque::new(),
        });
        log.last_id += 1;
        let message = Message {
            id: log.last_id,
            user: draft.author.as_str().to_owned(),
            text: draft.text.as_str().to_owned(),
            at,
            source: draft.source.clone(),
            removed: false,
        };
        if log.messages.len() == self.cap {
            log.messages.pop_front();
        }
        let (group, address) = (draft.group.to_owned(), draft.address.to_owned());
        log.messages.push_back(Sent { message: message.clone(), group, address });
        let epoch = log.epoch.clone();
        if let Some(name) = name {
            inner.keys.insert(name.clone(), message.clone());
            inner.key_order.push_back((now, name));
        }
        Ok(Appended { message, epoch, fresh: true })
    }

    async fn epoch(&self, feed: &FeedName) -> Result<String, StoreError> {
        Ok(self.read(feed, String::new(), |log| log.epoch.clone()))
    }

    async fn since(&self, feed: &FeedName, after: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        Ok(self.read(feed, Vec::new(), |log| {
            let from = log.first_after(after);
            log.read(from..log.messages.len().min(from.saturating_add(limit)))
        }))
    }

    async fn before(&self, feed: &FeedName, before: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        Ok(self.read(feed, Vec::new(), |log| {
            let end = log.first_after(before.saturating_sub(1));
            log.read(end.saturating_sub(limit)..end)
        }))
    }

    async fn latest(&self, feed: &FeedName, limit: usize) -> Result<Vec<Message>, StoreError> {
        Ok(self.read(feed, Vec::new(), |log| log.read(log.messages.len().saturating_sub(limit)..log.messages.len())))
    }

    async fn last_id(&self, feed: &FeedName) -> Result<u64, StoreError> {
        Ok(self.read(feed, 0, |log| log.last_id))
    }

    async fn feeds(&self, after: Option<&FeedName>, limit: usize) -> Result<Vec<FeedName>, StoreError> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self.inner().feeds.range((from, Bound::Unbounded)).take(limit).map(|(name, _)| name.clone()).collect())
    }

    async fn prune(
        &self,
        feed: &FeedName,
        keep: usize,
        cutoff: Option<time::OffsetDateTime>,
    ) -> Result<u64, StoreError> {
        let older = |message: &Message| {
            let at = time::OffsetDateTime::parse(&message.at, &time::format_description::well_known::Rfc3339);
            cutoff.is_some_and(|cutoff| at.is_ok_and(|at| at < cutoff))
        };
        let mut inner = self.inner();
        // A feed emptied by retention stays: its epoch and last id are what keep its ids from being handed out again.
        let Some(log) = inner.feeds.get_mut(feed) else { return Ok(0) };
        let before = log.messages.len();
        while log.messages.len() > keep || log.messages.front().is_some_and(|sent| older(&sent.message)) {
            log.messages.pop_front();
        }
        Ok((before - log.messages.len()) as u64)
    }

    async fn remove(&self, feed: &FeedName, ids: &[u64]) -> Result<Removal, StoreError> {
        let mut inner = self.inner();
        let Some(log) = inner.feeds.get_mut(feed) else {
            return Ok(Removal { removed: Vec::new(), epoch: String::new() });
        };
        let mut removed = Vec::new();
        for &id in ids {
            let Some(first) = log.messages.front().map(|sent| sent.message.id) else { break };
            let Some(sent) = id.checked_sub(first).and_then(|at| log.messages.get_mut(at as usize)) else { continue };
            if sent.message.removed {
                continue; // erased already: nothing changes, so no new epoch for it
            }
            let message = &mut sent.message;
            (message.user, message.text, message.source, message.removed) =
                (String::new(), String::new(), Source::Anonymous, true);
            sent.address = String::new();
            removed.push(id);
        }
        if !removed.is_empty() {
            log.epoch = new_epoch();
        }
        // Send keys hold a copy of their first message, to answer a repeat: that copy goes too.
        let erased: std::collections::HashSet<u64> = removed.iter().copied().collect();
        let epoch = log.epoch.clone();
        for ((key_feed, _, _), first) in inner.keys.iter_mut() {
            if key_feed == feed && erased.contains(&first.id) {
                (first.user, first.text, first.source, first.removed) =
                    (String::new(), String::new(), Source::Anonymous, true);
            }
        }
        Ok(Removal { removed, epoch })
    }

    async fn recent(&self, feed: &FeedName, limit: usize) -> Result<Vec<Sent>, StoreError> {
        Ok(self.read(feed, Vec::new(), |log| {
            log.messages.range(log.messages.len().saturating_sub(limit)..).cloned().collect()
        }))
    }
}
