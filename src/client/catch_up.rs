//! Catching the log up with what the stream announces: the tab fetches `/api/messages?since=<watermark>`, with at
//! most one fetch in flight: notifications that arrive during a fetch cause one more fetch after it, not one each.
//! Pages that other tabs fetched are merged without a fetch of this tab's own, so one notification costs one fetch
//! per browser; a tab that does not hold the stream fetches only if the shared page does not come.
//!
//! On the server the page is rendered once, with no stream: this only ever runs in the browser.
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

use std::time::Duration;

use leptos::prelude::*;

use crate::client::log::Feed;
use crate::client::{relay, remote};
use crate::shared::domain::Message;

/// How long a tab that does not hold the stream waits for the page the leading tab shares before it fetches the
/// announced messages itself (the leader's fetch failed, or the leader went away mid-fetch).
const SHARE_GRACE: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct CatchState {
    running: bool,
    /// Fetch again after the current fetch: a notification came in meanwhile.
    again: bool,
    /// The highest id announced so far.
    target: u64,
}

/// The tab's catch-up of `feed`: whether a fetch runs, whether another is due after it, and up to which id.
#[derive(Clone, Copy)]
pub struct CatchUp {
    feed: Feed,
    state: StoredValue<CatchState>,
}

impl CatchUp {
    pub fn new(feed: Feed) -> Self {
        Self { feed, state: StoredValue::new(CatchState::default()) }
    }

    /// Another tab fetches what `target` announces and shares it: fetch only if it has not arrived in a moment.
    pub fn expect(self, target: u64) {
        if target > self.feed.synced_to() {
            set_timeout(
                move || {
                    if target > self.feed.synced_to() {
                        self.request(target);
                    }
                },
                SHARE_GRACE,
            );
        }
    }

    /// A page another tab fetched. It continues this tab's log if it starts at or below the watermark (of the same
    /// epoch); a page that starts above it shows that this tab missed something, which it fetches itself.
    pub fn offer(self, since: u64, epoch: &str, page: Vec<Message>) {
        self.feed.renew_epoch(epoch);
        if since <= self.feed.synced_to() {
            self.feed.merge_synced(page);
        } else if let Some(last) = page.last() {
            self.request(last.id);
        }
    }

    /// Fetches until `target` is in. A notice at or below the watermark is fetched once too: in the same log it is
    /// a repeat (rare), but it may come from a log made anew (Redis came back empty, ids start again), which only
    /// the page's epoch tells.
    pub fn request(self, target: u64) {
        // A private feed this tab may not read yet: nothing to fetch (its join loads it, `feed::FeedLog`).
        if self.feed.locked_untracked() {
            return;
        }
        let start = self.state.try_update_value(|state| {
            state.target = state.target.max(target);
            if state.running {
                state.again = true;
                false
            } else {
                state.running = true;
                true
            }
        });
        if start == Some(true) {
            leptos::task::spawn_local(self.run());
        }
    }

    async fn run(self) {
        loop {
            let target = self.state.try_update_value(|state| {
                state.again = false;
                state.target
            });
            let since = self.feed.synced_to();
            // Up to the announced id, so every tab at the same place asks the same cacheable URL; not past the end
            // of a log just made anew (target u64::MAX), nor for a notice at or below the watermark (see above).
            let until = target.filter(|target| *target != u64::MAX && *target > since);
            let progressed = match remote::catch_up(&self.feed.name(), since, until, &self.feed.epoch()).await {
                Ok(page) if self.feed.renew_epoch(&page.epoch) => {
                    // A new log: read it from its start, to its end.
                    self.state.update_value(|state| state.target = u64::MAX);
                    true
                }
                Ok(page) => {
                    let progressed = !page.messages.is_empty();
                    relay::share(since, &page.epoch, &page.messages);
                    self.feed.merge_synced(page.messages);
                    progressed
                }
                Err(err) => {
                    // The next notification, reconnect or shared page retries.
                    leptos::logging::warn!("catch-up failed: {err}");
                    self.state.update_value(|state| *state = CatchState::default());
                    return;
                }
            };
            let synced = self.feed.synced_to();
            let done = self
                .state
                .try_update_value(|state| {
                    let more = state.again || (progressed && synced < state.target);
                    if !more {
                        *state = CatchState::default();
                    }
                    !more
                })
                .unwrap_or(true);
            if done {
                return;
            }
        }
    }
}
