//! The message log as the tab holds it, apart from how it is shown: rows in id order merged from pages without
//! duplicates, the catch-up watermark (`synced_to`), the epoch of the log the rows come from (a new epoch empties
//! the rows: ids start again in a new log), and which arrivals are announced to screen readers (messages from
//! others that arrive live; not the backlog, not this tab's own).
//!
//! `Log` is the state and its rules, plain data that the unit tests drive; `Feed` is the handle the page's parts
//! share, which holds a `Log` and tells the view when its rows change.

use leptos::prelude::*;

use crate::shared::domain::{FeedName, Message};

/// The log's state and its rules.
#[derive(Debug, Default)]
pub struct Log {
    rows: Vec<Message>,
    /// Every message up to this id has been fetched (the catch-up watermark). A message this tab sent itself is
    /// shown at once but does not move it, since messages from others may precede it.
    synced_to: u64,
    /// Set once the first page is in: later arrivals are announced.
    announcing: bool,
    /// The name this tab joined with: its own messages are not announced to it.
    me: Option<String>,
    /// The epoch of the log the rows come from (empty until the first page).
    epoch: String,
    /// How many times the log was made anew under this tab: part of each row's key, since an id of a new log may
    /// be the id of a row of the old one.
    generation: u32,
    /// After a new epoch, the rows read again up to what the tab had are not news: nothing up to this id is
    /// announced.
    quiet_through: u64,
}

impl Log {
    pub fn rows(&self) -> &[Message] {
        &self.rows
    }

    pub fn synced_to(&self) -> u64 {
        self.synced_to
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// A page came from the log of `epoch`. If the rows are of another epoch, that log is gone (ids start again
    /// from 1 in a new one): forget the rows and the watermark, so the tab reads the new log from its start instead
    /// of waiting for ids that will never come. Answers whether it did.
    pub fn renew_epoch(&mut self, epoch: &str) -> bool {
        if epoch.is_empty() || self.epoch == epoch {
            return false;
        }
        let first = self.epoch.is_empty();
        self.epoch = epoch.to_owned();
        if first {
            return false;
        }
        self.generation += 1;
        self.rows.clear();
        self.quiet_through = self.quiet_through.max(self.synced_to);
        self.synced_to = 0;
        true
    }

    /// Adds messages not shown yet (e.g. the one this tab just sent); answers whether any was new.
    pub fn merge(&mut self, page: Vec<Message>) -> bool {
        merge_into(&mut self.rows, page)
    }

    /// Adds a page fetched with `since = synced_to()`, and moves the watermark to its end. What it adds was sent by
    /// others (this tab's own messages are in already, from their send), and is announced once the first page is
    /// in: answers whether any row was new, and the announcement, if any.
    pub fn merge_synced(&mut self, page: Vec<Message>) -> (bool, Option<String>) {
        if let Some(last) = page.last() {
            self.synced_to = self.synced_to.max(last.id);
        }
        let fresh: Vec<(String, String)> = if self.announcing {
            page.iter()
                .filter(|m| self.rows.binary_search_by_key(&m.id, |r| r.id).is_err())
                .filter(|m| m.id > self.quiet_through && !m.removed)
                .filter(|m| self.me.as_deref() != Some(m.user.as_str()))
                .map(|m| (m.user.clone(), m.text.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let changed = self.merge(page);
        let announcement = fresh.last().map(|(user, text)| match fresh.len() {
            1 => format!("{user}: {text}"),
            n => format!("{n} new messages. The latest, from {user}: {text}"),
        });
        (changed, announcement)
    }

    /// The first page is in: what arrives from now on is announced.
    pub fn start_announcing(&mut self) {
        self.announcing = true;
    }

    /// This tab joined as `name`.
    pub fn joined_as(&mut self, name: &str) {
        self.me = Some(name.to_owned());
    }
}

/// Merges `page` into `rows` (both in id order) without duplicates; answers whether anything was added.
fn merge_into(rows: &mut Vec<Message>, page: Vec<Message>) -> bool {
    let before = rows.len();
    for message in page {
        match rows.last() {
            Some(last) if last.id >= message.id => {
                if let Err(at) = rows.binary_search_by_key(&message.id, |m| m.id) {
                    rows.insert(at, message);
                }
            }
            _ => rows.push(message),
        }
    }
    rows.len() != before
}

/// The log as the page's parts share it: the feed it is the log of, its state, a trigger the view tracks (notified
/// only when the rows change), and the latest announcement.
#[derive(Clone, Copy)]
pub struct Feed {
    name: StoredValue<FeedName>,
    log: StoredValue<Log>,
    rows_changed: Trigger,
    /// Announced to screen readers: the newest message that arrived live from another tab or person.
    announcement: RwSignal<String>,
    /// The feed is private and this tab may not read it yet: it has not joined with a token that grants it.
    locked: RwSignal<bool>,
    pass: StoredValue<Option<String>>,
}

impl Feed {
    /// `private`: reading the feed takes a sign-in (the page says so, `place::private`).
    pub fn new(name: FeedName, private: bool) -> Self {
        Self {
            name: StoredValue::new(name),
            log: StoredValue::new(Log::default()),
            rows_changed: Trigger::new(),
            announcement: RwSignal::new(String::new()),
            locked: RwSignal::new(private),
            pass: StoredValue::new(None),
        }
    }

    /// Whether the tab may not read the feed yet, tracked: the log shows why, and loads once it may.
    pub fn locked(&self) -> bool {
        self.locked.get()
    }

    pub fn locked_untracked(&self) -> bool {
        self.locked.get_untracked()
    }

    /// The tab joined with a token that grants the private feed, and holds its read pass (`remote::hold_pass`).
    pub fn unlock(&self, pass: String) {
        self.pass.set_value(Some(pass));
        if self.locked.get_untracked() {
            self.locked.set(false);
        }
    }

    /// The read pass the feed was opened with (`unlock`), if it is private.
    pub fn pass(&self) -> Option<String> {
        self.pass.get_value()
    }

    /// The feed this is the log of.
    pub fn name(&self) -> FeedName {
        self.name.get_value()
    }

    /// The rows, tracked: a view or effect that reads them runs again when they change.
    pub fn with_rows<T>(&self, f: impl FnOnce(&[Message]) -> T) -> T {
        self.rows_changed.track();
        self.log.with_value(|log| f(log.rows()))
    }

    /// Subscribes the running effect to changes of the rows.
    pub fn track_rows(&self) {
        self.rows_changed.track();
    }

    /// The rows, untracked (in an event handler).
    pub fn with_rows_untracked<T>(&self, f: impl FnOnce(&[Message]) -> T) -> T {
        self.log.with_value(|log| f(log.rows()))
    }

    /// The key of a row: the log's generation and the id.
    pub fn row_key(&self, id: u64) -> (u32, u64) {
        (self.log.with_value(Log::generation), id)
    }

    pub fn announcement(&self) -> String {
        self.announcement.get()
    }

    /// The epoch of the log the rows come from (empty until the first page).
    pub fn epoch(&self) -> String {
        self.log.with_value(|log| log.epoch().to_owned())
    }

    pub fn synced_to(&self) -> u64 {
        self.log.with_value(Log::synced_to)
    }

    /// See `Log::renew_epoch`.
    pub fn renew_epoch(&self, epoch: &str) -> bool {
        let renewed = self.log.try_update_value(|log| log.renew_epoch(epoch)).unwrap_or(false);
        if renewed {
            self.rows_changed.notify();
        }
        renewed
    }

    /// See `Log::merge`.
    pub fn merge(&self, page: Vec<Message>) {
        if self.log.try_update_value(|log| log.merge(page)) == Some(true) {
            self.rows_changed.notify();
        }
    }

    /// See `Log::merge_synced`.
    pub fn merge_synced(&self, page: Vec<Message>) {
        let (changed, announcement) = self.log.try_update_value(|log| log.merge_synced(page)).unwrap_or_default();
        if changed {
            self.rows_changed.notify();
        }
        if let Some(announcement) = announcement {
            self.announcement.set(announcement);
        }
    }

    pub fn start_announcing(&self) {
        self.log.update_value(Log::start_announcing);
    }

    /// This tab joined as `name`.
    pub fn joined_as(&self, name: &str) {
        self.log.update_value(|log| log.joined_as(name));
    }

    pub fn oldest_id(&self) -> Option<u64> {
        self.with_rows_untracked(|rows| rows.first().map(|m| m.id))
    }

    pub fn newest_id(&self) -> u64 {
        self.with_rows_untracked(|rows| rows.last().map_or(0, |m| m.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, user: &str) -> Message {
        Message {
            id,
            user: user.into(),
            text: format!("t{id}"),
            at: String::new(),
            source: Default::default(),
            removed: false,
        }
    }

    fn ids(log: &Log) -> Vec<u64> {
        log.rows().iter().map(|m| m.id).collect()
    }

    #[test]
    fn merging_appends_inserts_and_never_duplicates() {
        let mut rows = vec![];
        assert!(merge_into(&mut rows, vec![m(1, "u"), m(2, "u")]));
        assert!(!merge_into(&mut rows, vec![m(1, "u"), m(2, "u")]));
        assert!(merge_into(&mut rows, vec![m(5, "u")]));
        assert!(merge_into(&mut rows, vec![m(3, "u"), m(4, "u"), m(5, "u"), m(6, "u")]));
        assert_eq!(rows.iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
        assert!(!merge_into(&mut rows, vec![]));
    }

    #[test]
    fn a_synced_page_moves_the_watermark_and_a_sent_message_does_not() {
        let mut log = Log::default();
        assert_eq!(log.merge_synced(vec![m(1, "a"), m(2, "b")]), (true, None));
        assert_eq!(log.synced_to(), 2);
        assert!(log.merge(vec![m(5, "me")]));
        assert_eq!(log.synced_to(), 2, "others' messages may precede one this tab sent");
        assert!(log.merge_synced(vec![m(3, "a"), m(4, "a"), m(5, "me")]).0);
        assert_eq!((ids(&log), log.synced_to()), (vec![1, 2, 3, 4, 5], 5));
        assert_eq!(log.merge_synced(vec![]), (false, None));
        assert_eq!(log.synced_to(), 5);
    }

    #[test]
    fn a_new_epoch_empties_the_log_and_the_first_or_same_one_does_not() {
        let mut log = Log::default();
        assert!(!log.renew_epoch("a1"), "the first epoch is no renewal");
        log.merge_synced(vec![m(1, "a"), m(2, "a")]);
        assert!(!log.renew_epoch("a1"));
        assert!(!log.renew_epoch(""), "an answer without an epoch says nothing");
        assert_eq!((ids(&log), log.generation()), (vec![1, 2], 0));
        assert!(log.renew_epoch("b2"));
        assert_eq!((ids(&log), log.synced_to(), log.epoch(), log.generation()), (vec![], 0, "b2", 1));
    }

    #[test]
    fn only_live_arrivals_from_others_are_announced() {
        let mut log = Log::default();
        log.joined_as("me");
        assert_eq!(log.merge_synced(vec![m(1, "a")]).1, None, "the backlog is not announced");
        log.start_announcing();
        assert_eq!(log.merge_synced(vec![m(2, "me")]).1, None, "nor this tab's own");
        assert_eq!(log.merge_synced(vec![m(2, "me"), m(3, "Ada")]).1.as_deref(), Some("Ada: t3"));
        assert_eq!(log.merge_synced(vec![m(3, "Ada")]).1, None, "nor a row already shown");
        let (_, said) = log.merge_synced(vec![m(4, "Ada"), m(5, "me"), m(6, "Linus")]);
        assert_eq!(said.as_deref(), Some("2 new messages. The latest, from Linus: t6"));
    }

    #[test]
    fn a_log_read_again_after_a_removal_is_not_news_and_a_removed_row_never_is() {
        let mut log = Log::default();
        log.renew_epoch("a1");
        log.merge_synced(vec![m(1, "a"), m(2, "b")]);
        log.start_announcing();
        // A moderator removed 2: a new epoch, the log read again from its start, now with 2 removed.
        assert!(log.renew_epoch("b2"));
        let removed = Message { removed: true, user: String::new(), text: String::new(), ..m(2, "b") };
        assert_eq!(log.merge_synced(vec![m(1, "a"), removed.clone()]).1, None, "what the tab had is no news");
        assert!(log.rows()[1].removed);
        assert_eq!(log.merge_synced(vec![m(3, "Ada")]).1.as_deref(), Some("Ada: t3"), "what is new still is");
        let later_removed = Message { id: 4, ..removed };
        assert_eq!(log.merge_synced(vec![later_removed]).1, None, "a removed row says nothing");
    }
}
