//! Which feeds the browser's stream must carry: every tab says which feed it shows (`Relay::Showing`, repeated),
//! and the leading tab's stream carries the set of them. Plain data with the time passed in, so the rules run in the
//! unit tests; the leader (`leader`) feeds it what the channel says.
//!
//! A tab that closes says so (`Relay::Gone`); one that cannot (crashed, frozen, discarded) drops out once it has not
//! been heard for `FORGET_AFTER_MS`. That is longer than a background tab's timers may be held back (Chrome runs a
//! hidden tab's timers as seldom as once a minute), so a hidden tab's feed does not flap in and out of the stream.
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};

use crate::shared::domain::FeedName;

/// How often a tab says what it shows, in milliseconds.
pub const SHOW_EVERY_MS: u32 = 20_000;
/// A tab not heard of for this long is gone.
pub const FORGET_AFTER_MS: f64 = 150_000.0;
/// Most tabs kept: only this origin's own tabs talk on the channel, but a table keyed by what they say is bounded
/// all the same (the one heard of longest ago goes first).
pub const MAX_TABS: usize = 256;
/// Longest tab id kept (ids are 32 hex digits).
const MAX_TAB_ID: usize = 64;

#[derive(Debug, Default)]
pub struct Roster {
    /// Tab id -> the feed it shows, its read pass if the feed is private, and when it last said so (`Date.now()`).
    tabs: BTreeMap<String, (FeedName, Option<String>, f64)>,
}

impl Roster {
    /// Tab `tab` shows `feed` (said at `now`), with the read pass of a private feed.
    pub fn heard(&mut self, tab: &str, feed: FeedName, pass: Option<String>, now: f64) {
        if tab.is_empty() || tab.len() > MAX_TAB_ID {
            return;
        }
        if !self.tabs.contains_key(tab) && self.tabs.len() >= MAX_TABS {
            let oldest = self.tabs.iter().min_by(|a, b| a.1 .2.total_cmp(&b.1 .2)).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.tabs.remove(&oldest);
            }
        }
        self.tabs.insert(tab.to_owned(), (feed, pass, now));
    }

    /// Tab `tab` went away.
    pub fn gone(&mut self, tab: &str) {
        self.tabs.remove(tab);
    }

    /// Forgets the tabs not heard of since `FORGET_AFTER_MS` before `now`.
    pub fn sweep(&mut self, now: f64) {
        self.tabs.retain(|_, (_, _, heard)| now - *heard <= FORGET_AFTER_MS);
    }

    /// The feeds the stream carries: `own` (the leading tab's, unless it shows a private feed it holds no pass
    /// for yet) and every known tab's, sorted, each once.
    pub fn feeds(&self, own: Option<&FeedName>) -> BTreeSet<FeedName> {
        self.tabs.values().map(|(feed, _, _)| feed.clone()).chain(own.cloned()).collect()
    }

    /// The read passes the stream's URL gives: `own` (the leading tab's) and every known tab's, each once.
    pub fn passes(&self, own: Option<&str>) -> BTreeSet<String> {
        self.tabs.values().filter_map(|(_, pass, _)| pass.clone()).chain(own.map(str::to_owned)).collect()
    }

    /// The tab that fetches `feed`'s announced messages and shares them: the leader (`me`) if it shows `feed`,
    /// otherwise the known tab with the lowest id that does; empty if none is known (then every tab of the feed
    /// waits a moment for a shared page and fetches by itself).
    pub fn fetcher(&self, feed: &FeedName, me: &str, own: Option<&FeedName>) -> String {
        if Some(feed) == own {
            return me.to_owned();
        }
        self.tabs.iter().find(|(_, (shown, _, _))| shown == feed).map(|(id, _)| id.clone()).unwrap_or_default()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tabs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> FeedName {
        FeedName::parse(name).unwrap()
    }

    #[test]
    fn the_stream_carries_each_shown_feed_once_sorted_with_the_leaders_own() {
        let mut roster = Roster::default();
        assert_eq!(roster.feeds(Some(&f("main"))), [f("main")].into());
        roster.heard("b", f("team"), None, 0.0);
        roster.heard("c", f("team"), None, 0.0);
        roster.heard("d", f("alpha"), None, 0.0);
        assert_eq!(
            roster.feeds(Some(&f("main"))).into_iter().collect::<Vec<_>>(),
            vec![f("alpha"), f("main"), f("team")]
        );
        // A tab that moves to another feed no longer holds its old one in the set.
        roster.heard("d", f("team"), None, 1.0);
        assert_eq!(roster.feeds(Some(&f("main"))), [f("main"), f("team")].into());
    }

    #[test]
    fn a_feed_leaves_when_its_last_tab_goes_or_falls_silent() {
        let mut roster = Roster::default();
        roster.heard("b", f("team"), None, 0.0);
        roster.heard("c", f("team"), None, 0.0);
        roster.heard("d", f("ops"), None, 0.0);
        roster.gone("b");
        assert!(roster.feeds(Some(&f("main"))).contains(&f("team")), "another tab still shows it");
        roster.gone("c");
        assert!(!roster.feeds(Some(&f("main"))).contains(&f("team")));
        // Heard again within the time a hidden tab may be held back: kept; silent past it: forgotten.
        roster.heard("e", f("news"), None, FORGET_AFTER_MS);
        roster.sweep(FORGET_AFTER_MS);
        assert!(roster.feeds(Some(&f("main"))).contains(&f("ops")));
        roster.sweep(FORGET_AFTER_MS + 1.0);
        assert_eq!(roster.feeds(Some(&f("main"))), [f("main"), f("news")].into());
    }

    #[test]
    fn a_private_feed_is_carried_with_its_pass_and_a_locked_leaders_own_feed_is_not() {
        let mut roster = Roster::default();
        roster.heard("b", f("team"), Some("p1.team.9.x".into()), 0.0);
        roster.heard("c", f("main"), None, 0.0);
        assert_eq!(roster.feeds(None), [f("main"), f("team")].into());
        assert_eq!(roster.passes(None), ["p1.team.9.x".to_owned()].into());
        assert_eq!(roster.passes(Some("p1.ops.9.y")).len(), 2);
        roster.gone("b");
        assert!(roster.passes(None).is_empty() && roster.feeds(None) == [f("main")].into());
        // A leader that holds no pass for its own feed does not fetch it: the tab that shows it does.
        roster.heard("d", f("team"), Some("p1.team.9.x".into()), 0.0);
        assert_eq!(roster.fetcher(&f("team"), "me", None), "d");
    }

    #[test]
    fn one_tab_per_feed_fetches_the_leader_first() {
        let mut roster = Roster::default();
        roster.heard("b2", f("team"), None, 0.0);
        roster.heard("b1", f("team"), None, 0.0);
        roster.heard("c", f("main"), None, 0.0);
        assert_eq!(roster.fetcher(&f("main"), "me", Some(&f("main"))), "me");
        assert_eq!(roster.fetcher(&f("team"), "me", Some(&f("main"))), "b1");
        assert_eq!(roster.fetcher(&f("gone"), "me", Some(&f("main"))), "");
    }

    #[test]
    fn the_table_is_bounded_and_ignores_odd_ids() {
        let mut roster = Roster::default();
        for n in 0..MAX_TABS + 10 {
            roster.heard(&format!("tab{n}"), f("team"), None, n as f64);
        }
        assert_eq!(roster.len(), MAX_TABS);
        // The ones heard of longest ago went first.
        assert_eq!(roster.fetcher(&f("team"), "me", Some(&f("main"))), "tab10");
        roster.heard("", f("x"), None, 0.0);
        roster.heard(&"a".repeat(MAX_TAB_ID + 1), f("x"), None, 0.0);
        assert!(!roster.feeds(Some(&f("main"))).contains(&f("x")));
    }
}
