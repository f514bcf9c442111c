//! Live updates: one EventSource per tab on `/events`, reopened if the browser gives up on it. On `NewMessage`, and
//! on every (re)connect, the tab catches up by fetching `/api/messages?since=<watermark>`, with at most one fetch
//! in flight: notifications that arrive during a fetch cause one more fetch after it, not one each.

use leptos::prelude::*;

use crate::client::{remote, Feed};

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
///
/// The browser's `EventSource` reconnects by itself after a dropped stream (the server asks for one second) and
/// sends `Last-Event-ID`. It gives up only when an answer is not an event stream (a proxy's 502, say); then this
/// opens a new one a second later, for as long as the tab lives.
#[cfg(feature = "hydrate")]
mod source {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use leptos::prelude::*;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{EventSource, MessageEvent};

    const RETRY: Duration = Duration::from_secs(1);

    /// The open source and the handlers it calls; dropping it closes the source.
    struct Stream {
        source: EventSource,
        _on_open: Closure<dyn Fn()>,
        _on_message: Closure<dyn Fn(MessageEvent)>,
        _on_error: Closure<dyn Fn()>,
    }

    impl Drop for Stream {
        fn drop(&mut self) {
            self.source.close();
        }
    }

    type Slot = Rc<RefCell<Option<Stream>>>;

    pub fn open() -> (Signal<Option<u64>>, Signal<bool>) {
        let (announced, set_announced) = signal(None::<u64>);
        let (open, set_open) = signal(false);
        connect(Slot::default(), set_announced, set_open);
        (announced.into(), open.into())
    }

    fn connect(slot: Slot, set_announced: WriteSignal<Option<u64>>, set_open: WriteSignal<bool>) {
        let Ok(source) = EventSource::new("/events") else {
            return connect_later(slot, set_announced, set_open);
        };
        let on_open = Closure::<dyn Fn()>::new(move || set_open.set(true));
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(id) = event.data().as_string().and_then(|data| data.trim().parse::<u64>().ok()) {
                set_announced.set(Some(id));
            }
        });
        let on_error = {
            let (slot, source) = (slot.clone(), source.clone());
            Closure::<dyn Fn()>::new(move || {
                set_open.set(false);
                if source.ready_state() == EventSource::CLOSED {
                    connect_later(slot.clone(), set_announced, set_open);
                }
            })
        };
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let _ = source.add_event_listener_with_callback("NewMessage", on_message.as_ref().unchecked_ref());
        // Replacing the previous stream (if any) closes it.
        *slot.borrow_mut() = Some(Stream { source, _on_open: on_open, _on_message: on_message, _on_error: on_error });
    }

    fn connect_later(slot: Slot, set_announced: WriteSignal<Option<u64>>, set_open: WriteSignal<bool>) {
        set_timeout(move || connect(slot, set_announced, set_open), RETRY);
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
            let progressed = match remote::messages(Some(self.feed.synced_to()), None).await {
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
