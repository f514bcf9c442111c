//! Live updates, as this tab sees them: what the browser's one event stream (`relay`: held by one tab, shared with
//! the others) reports goes to the log's catch-up (`catch_up`) and to who is here (`presence`), and the stream's
//! state is shown in the masthead (`StatusBadge`, `StreamProblem`).
//!
//! On the server the page is rendered once, with no stream: it shows "Connecting…".
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

use leptos::prelude::*;

use crate::client::catch_up::CatchUp;
use crate::client::log::Feed;
use crate::client::presence::Presence;
use crate::client::relay;
use crate::shared::domain::Message;

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
    /// The feed is private and the tab has not joined it: the stream carries nothing for it yet.
    pub locked: Signal<bool>,
}

/// Joins the browser's event stream and keeps `feed` and who is here (`presence`) caught up.
pub fn connect(feed: Feed, presence: Presence) -> Live {
    let link = Link {
        feed,
        catch_up: CatchUp::new(feed),
        presence,
        receiving: RwSignal::new(false),
        problem: RwSignal::new(None),
        leads: RwSignal::new(false),
    };
    relay::start(std::rc::Rc::new(link), feed.name(), feed.locked_untracked());
    let receiving = link.receiving;
    let status = Memo::new(move |previous: Option<&LiveStatus>| match (receiving.get(), previous) {
        (true, _) => LiveStatus::Live,
        (_, Some(LiveStatus::Live | LiveStatus::Reconnecting)) => LiveStatus::Reconnecting,
        _ => LiveStatus::Connecting,
    });
    let locked = Signal::derive(move || feed.locked());
    Live { status: status.into(), problem: link.problem.into(), leads: link.leads.into(), locked }
}

/// What the relay reports to, and what it changes.
#[derive(Clone, Copy)]
struct Link {
    /// Only to know whether the tab may read it yet (a private feed before its join): who is here is not asked
    /// until then.
    feed: Feed,
    catch_up: CatchUp,
    presence: Presence,
    receiving: RwSignal<bool>,
    problem: RwSignal<Option<String>>,
    leads: RwSignal<bool>,
}

impl Link {
    fn refresh_presence(&self) {
        if !self.feed.locked_untracked() {
            self.presence.refresh();
        }
    }
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
            self.refresh_presence();
        }
        self.receiving.set(receiving);
        self.problem.set(problem);
    }

    fn presence_changed(&self) {
        self.refresh_presence();
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
        self.refresh_presence();
    }
}

#[component]
pub fn StatusBadge(live: Live) -> impl IntoView {
    let (status, leads, locked) = (live.status, live.leads, live.locked);
    // A private feed the tab has not joined: nothing of it is live yet, whatever the browser's stream does.
    let key = move || if locked.get() { "members-only" } else { status.get().key() };
    let label = move || if locked.get() { "Members only" } else { status.get().label() };
    view! {
        <span class="status" data-status=key data-leads=move || leads.get().then_some("true") role="status">
            {label}
        </span>
    }
}

/// The server's reason for refusing the stream, shown under the masthead while it holds.
#[component]
pub fn StreamProblem(live: Live) -> impl IntoView {
    move || live.problem.get().map(|message| view! { <p class="error stream-problem" role="alert">{message}</p> })
}
