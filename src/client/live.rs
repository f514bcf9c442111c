//! Live updates, as this tab sees them. The browser's one event stream (`relay`: held by one tab, shared with the
//! others) announces new ids; the tab catches up by fetching `/api/messages?since=<watermark>`, with at most one
//! fetch in flight: notifications that arrive during a fetch cause one more fetch after it, not one each. Pages that
//! other tabs fetched are merged without a fetch of this tab's own, so one notification costs one fetch per browser.
//!
//! On the server the page is rendered once, with no stream: the catch-up below only ever runs in the browser.
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

use std::time::Duration;

use leptos::prelude::*;

use crate::client::presence::Presence;
use crate::client::{relay, remote, Feed};
use crate::shared::domain::Message;

/// How long a tab that does not hold the stream waits for the page the leading tab shares before it fetches the
/// announced messages itself (the leader's fetch failed, or the leader went away mid-fetch).
const SHARE_GRACE: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStatus {
    Connecting,
    Live,
    Reconnecting,
}

impl LiveStatus {
    fn label(self) -> &'static str {
        match self {
            Self::Connecting => "Connecting…",
            Self::Live => "Live",
            Self::Reconnecting => "Reconnecting…",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting => "reconnecting",
        }
    }
}

/// The tab's view of the browser's stream.
#[derive(Clone, Copy)]
pub struct Live {
    pub status: Signal<LiveStatus>,
    /// Why the server refuses the stream, in words, while it does.
    pub problem: Signal<Option<String>>,
    /// Whether this tab holds the browser's stream (shown as `data-leads` on the badge, for tests and debugging).
    pub leads: Signal<bool>,
}

/// Joins the browser's event stream and keeps `feed` and who is here (`presence`) caught up.
pub fn connect(feed: Feed, presence: Presence) -> Live {
    let link = Link {
        catch_up: CatchUp::new(feed),
        presence,
        receiving: RwSignal::new(false),
        problem: RwSignal::new(None),
        leads: RwSignal::new(false),
    };
    relay::start(std::rc::Rc::new(link));
    let receiving = link.receiving;
    let status = Memo::new(move |previous: Option<&LiveStatus>| match (receiving.get(), previous) {
        (true, _) => LiveStatus::Live,
        (_, Some(LiveStatus::Live | LiveStatus::Reconnecting)) => LiveStatus::Reconnecting,
        _ => LiveStatus::Connecting,
    });
    Live { status: status.into(), problem: link.problem.into(), leads: link.leads.into() }
}

/// What the relay reports to, and what it changes.
#[derive(Clone, Copy)]
struct Link {
    catch_up: CatchUp,
    presence: Presence,
    receiving: RwSignal<bool>,
    problem: RwSignal<Option<String>>,
    leads: RwSignal<bool>,
}

impl relay::Tab for Link {
    fn leads(&self) {
        self.leads.set(true);
    }

    fn stream_state(&self, receiving: bool, problem: Option<String>) {
        if receiving && !self.receiving.get_untracked() {
            // The stream (re)opened, maybe on a restarted server that lists no one yet: be here again, and read
            // who else is.
            self.presence.beat();
            self.presence.refresh();
        }
        self.receiving.set(receiving);
        self.problem.set(problem);
    }

    fn presence_changed(&self) {
        self.presence.refresh();
    }

    fn announced(&self, id: u64, fetch: bool) {
        if fetch {
            self.catch_up.request(id);
        } else {
            self.catch_up.expect(id);
        }
    }

    fn opened(&self) {
        // Whatever was sent while the stream was down (or before this tab held it): fetch until an empty page.
        self.catch_up.request(u64::MAX);
    }

    fn page(&self, since: u64, epoch: String, messages: Vec<Message>) {
        self.catch_up.offer(since, &epoch, messages);
    }

    fn resumed(&self) {
        self.catch_up.request(u64::MAX);
        self.presence.beat();
        self.presence.refresh();
    }
}

#[component]
pub fn StatusBadge(live: Live) -> impl IntoView {
    let (status, leads) = (live.status, live.leads);
    view! {
        <span class="status" data-status=move || status.get().key() data-leads=move || leads.get().then_some("true") role="status">
            {move || status.get().label()}
        </span>
    }
}

/// The server's reason for refusing the stream, shown under the masthead while it holds.
#[component]
pub fn StreamProblem(live: Live) -> impl IntoView {
    move || live.problem.get().map(|message| view! { <p class="error stream-problem" role="alert">{message}</p> })
}

#[derive(Default)]
struct CatchState {
    running: bool,
    /// Fetch again after the current fetch: a notification came in meanwhile.
    again: bool,
    /// The highest id announced so far.
    target: u64,
}

#[derive(Clone, Copy)]
struct CatchUp {
    feed: Feed,
    state: StoredValue<CatchState>,
}

impl CatchUp {
    fn new(feed: Feed) -> Self {
        Self { feed, state: StoredValue::new(CatchState::default()) }
    }

    /// Another tab fetches what `target` announces and shares it: fetch only if it has not arrived in a moment.
    fn expect(self, target: u64) {
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
    fn offer(self, since: u64, epoch: &str, page: Vec<Message>) {
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
    fn request(self, target: u64) {
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
            let progressed = match remote::catch_up(since, until, &self.feed.epoch()).await {
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
