//! Who is here: the names of the joined tabs of this session group, shown above the log ("3 here: Ada, Linus,
//! Grace"; a longer list folds into a `<details>` that opens on the whole list).
//!
//! Once joined, the tab beats for itself (`POST /api/presence`, as often as the server answers, a third of the
//! lease) with a plain request: no connection of its own, and the browser's one event stream stays shared
//! (`relay`). It says it leaves with a beacon on `pagehide`; a tab that cannot (crashed, frozen, offline) drops out
//! when its lease runs out. It beats again at once when the stream reopens (the server may have restarted with an
//! empty list) and when it wakes from being frozen or cached.
//!
//! Presence is per feed (`main`'s at `/api/presence`, another's under `/api/feeds/`). The list is read (`GET /api/presence`) when the stream opens and on each `PresenceChanged` the stream carries,
//! one read at a time and at most one per [`READ_GAP`]: notices that come faster (the server paces them per group
//! to about one a second; a stream that reconnects adds its own) fold into the next read, so a crowd of tabs
//! joining and leaving never makes every tab re-read the list as fast as it changes. The server renders no list (it knows no one's lease until the tabs beat), so the page shows
//! it once hydrated and live.
//!
//! The calls themselves run in the browser only (`browser`); on the server, which renders the page once with no list,
//! they do nothing (`server`).
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(feature = "hydrate")]
use browser as target;
#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
use server as target;

use leptos::either::Either;
use leptos::prelude::*;

use crate::client::mark::mark;
use crate::shared::domain::{FeedName, Here, Source};

/// Names shown inline; a longer list shows the first `INLINE - 1` and "and N others".
const INLINE: usize = 3;

/// The shortest time between two reads of the list, in milliseconds.
const READ_GAP: f64 = 1_000.0;

#[derive(Clone, Copy)]
pub struct Presence {
    /// The feed whose presence this is.
    feed: StoredValue<FeedName>,
    /// `None` until first read.
    names: RwSignal<Option<Vec<Entry>>>,
    /// A read is under way, and whether another is due after it.
    reading: StoredValue<(bool, bool)>,
    /// When the last read started (`Date.now()`), to space the next one.
    last_read: StoredValue<f64>,
    /// This tab's ticket and id once joined; the ticket never leaves the tab.
    me: StoredValue<Option<(String, String)>>,
    /// Bumped by each heartbeat: a timer set for an earlier one does nothing.
    round: StoredValue<u32>,
}

impl Presence {
    pub fn new(feed: FeedName) -> Self {
        Self {
            feed: StoredValue::new(feed),
            names: RwSignal::new(None),
            reading: StoredValue::new((false, false)),
            last_read: StoredValue::new(f64::NEG_INFINITY),
            me: StoredValue::new(None),
            round: StoredValue::new(0),
        }
    }

    /// Who is here may have changed: read it again (after the read under way, if any).
    pub fn refresh(self) {
        target::refresh(self);
    }

    /// This tab joined with `ticket`: it is here from now on, until it goes.
    pub fn joined(self, ticket: String) {
        target::joined(self, ticket);
    }

    /// This tab's sign-in was renewed: it goes on being here, as the same tab, with `ticket`.
    pub fn renewed(self, ticket: String) {
        target::renewed(self, ticket);
    }

    /// This tab's sign-in ended: it beats no more, and drops off the list when its lease runs out.
    pub fn left(self) {
        self.me.set_value(None);
    }

    /// Renews this tab's lease now (if joined), and from then on at the server's pace.
    pub fn beat(self) {
        target::beat(self);
    }
}

/// One name listed, and whether the site's sign-in vouches for it (then it shows the mark its messages show).
type Entry = (String, bool);

/// The list as the server answers it, each name with its mark: `verified` names each mark one listing of that name
/// (a name signed in and also typed by someone else is listed twice, and only one of the two is marked).
fn entries(here: Here) -> Vec<Entry> {
    let mut vouched = here.verified;
    here.names
        .into_iter()
        .map(|name| match vouched.iter().position(|v| *v == name) {
            Some(at) => {
                vouched.swap_remove(at);
                (name, true)
            }
            None => (name, false),
        })
        .collect()
}

/// "3 here: " or "14 here: " before the names, and " and 12 others" after the first two of a long list.
fn counts(listed: usize) -> (String, Option<String>) {
    match listed {
        0 => ("No one has joined yet.".to_owned(), None),
        n if n <= INLINE => (format!("{n} here: "), None),
        n => (format!("{n} here: "), Some(format!(" and {} others", n - (INLINE - 1)))),
    }
}

/// A name as plain text (whatever it holds), then the mark if it is vouched for.
fn named((name, verified): Entry) -> impl IntoView {
    view! { <bdi>{name}</bdi>{verified.then(|| mark(&Source::Verified(String::new())))} }
}

#[component]
pub fn WhoIsHere(presence: Presence) -> impl IntoView {
    let list = move || {
        presence.names.get().map(|names| {
            let (head, tail) = counts(names.len());
            let shown = if tail.is_some() { INLINE - 1 } else { INLINE };
            let inline = names
                .iter()
                .take(shown)
                .enumerate()
                .map(|(i, entry)| view! { {(i > 0).then_some(", ")}{named(entry.clone())} })
                .collect_view();
            let line = view! { {head}{inline}{tail.clone()} };
            if tail.is_none() {
                Either::Left(view! { <p>{line}</p> })
            } else {
                let items = names.into_iter().map(|entry| view! { <li>{named(entry)}</li> }).collect_view();
                Either::Right(view! { <details><summary>{line}</summary><ul>{items}</ul></details> })
            }
        })
    };
    view! { <section class="presence" aria-label="Who is here">{list}</section> }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here(names: &[&str], verified: &[&str]) -> Here {
        Here {
            names: names.iter().map(|n| n.to_string()).collect(),
            verified: verified.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn a_name_is_marked_only_as_often_as_the_server_vouches_for_it() {
        let marked = |h: Here| entries(h).into_iter().map(|(name, v)| format!("{name}{}", if v { "+" } else { "" }));
        assert_eq!(marked(here(&["Ada", "Grace"], &[])).collect::<Vec<_>>(), ["Ada", "Grace"]);
        assert_eq!(marked(here(&["Ada", "Grace"], &["Grace"])).collect::<Vec<_>>(), ["Ada", "Grace+"]);
        assert_eq!(
            marked(here(&["Grace", "Grace", "✓ Grace"], &["Grace"])).collect::<Vec<_>>(),
            ["Grace+", "Grace", "✓ Grace"],
            "a typed look-alike, or a second listing of the name, gets no mark"
        );
        assert_eq!(marked(here(&["Ada"], &["Eve"])).collect::<Vec<_>>(), ["Ada"], "a name not listed marks nothing");
    }

    #[test]
    fn the_line_counts_the_names_and_folds_a_long_list() {
        assert_eq!(counts(0), ("No one has joined yet.".to_owned(), None));
        assert_eq!(counts(2), ("2 here: ".to_owned(), None));
        assert_eq!(counts(14), ("14 here: ".to_owned(), Some(" and 12 others".to_owned())));
    }
}
