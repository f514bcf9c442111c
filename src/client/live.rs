//! Live updates: one EventSource per tab on `/events` (leptos-use's `use_event_source`, which also reconnects
//! after the browser gives up). On `NewMessage`, and on every (re)connect, the tab catches up by fetching
//! `/api/messages?since=<watermark>`, with at most one fetch in flight: notifications that arrive during a fetch
//! cause one more fetch after it, not one each.

use leptos::prelude::*;

use crate::client::Feed;
use crate::shared::api::list_messages;

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

/// Opens the tab's event stream and keeps `feed` caught up; answers the connection status.
pub fn connect(feed: Feed) -> Signal<LiveStatus> {
    let (announced, open) = source::open();
    let catch_up = CatchUp::new(feed);
    Effect::new(move |_| {
        if let Some(id) = announced.get() {
            catch_up.request(id);
        }
    });
    Effect::new(move |_| {
        if open.get() {
            // Whatever was sent while we were away: fetch until an empty page.
            catch_up.request(u64::MAX);
        }
    });
    let status = Memo::new(move |previous: Option<&LiveStatus>| match (open.get(), previous) {
        (true, _) => LiveStatus::Live,
        (_, Some(LiveStatus::Live | LiveStatus::Reconnecting)) => LiveStatus::Reconnecting,
        _ => LiveStatus::Connecting,
    });
    status.into()
}

/// The event stream: the newest announced id, and whether the stream is open.
#[cfg(feature = "hydrate")]
mod source {
    use codee::string::FromToStringCodec;
    use leptos::prelude::*;
    use leptos_use::core::ConnectionReadyState;
    use leptos_use::{use_event_source_with_options, ReconnectLimit, UseEventSourceOptions, UseEventSourceReturn};

    pub fn open() -> (Signal<Option<u64>>, Signal<bool>) {
        let UseEventSourceReturn { data, ready_state, .. } = use_event_source_with_options::<u64, FromToStringCodec>(
            "/events",
            UseEventSourceOptions::default()
                .named_events(vec!["NewMessage".to_owned()])
                .reconnect_limit(ReconnectLimit::Infinite)
                .reconnect_interval(1000),
        );
        (data, Signal::derive(move || ready_state.get() == ConnectionReadyState::Open))
    }
}

/// On the server the page is rendered once, with no stream: it shows "Connecting…" until the tab hydrates.
#[cfg(not(feature = "hydrate"))]
mod source {
    use leptos::prelude::*;

    pub fn open() -> (Signal<Option<u64>>, Signal<bool>) {
        (Signal::stored(None), Signal::stored(false))
    }
}

#[component]
pub fn StatusBadge(status: Signal<LiveStatus>) -> impl IntoView {
    view! {
        <span class="status" data-status=move || status.get().key() role="status">
            {move || status.get().label()}
        </span>
    }
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

    fn request(self, target: u64) {
        if target <= self.feed.synced_to() {
            return; // already have it (e.g. the notification for this tab's own message after catching up)
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
            self.state.update_value(|state| state.again = false);
            let progressed = match list_messages(Some(self.feed.synced_to().to_string()), None).await {
                Ok(page) => {
                    let progressed = !page.is_empty();
                    self.feed.merge_synced(page);
                    progressed
                }
                Err(err) => {
                    // The next notification or reconnect retries.
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
