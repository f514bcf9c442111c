//! One event stream per browser, shared by its tabs.
//!
//! A browser allows six connections to one origin over HTTP/1.1; with one `EventSource` per tab, six tabs hold all
//! of them and the seventh cannot even load the page. So one tab leads: it holds the Web Lock `LOCK`, opens the only
//! `EventSource` on `/events`, and relays what arrives to the other tabs of this origin over the `BroadcastChannel`
//! `CHANNEL`. Every tab that fetches a page of the log shares it there too, so one notification costs the server one
//! `GET /api/messages` per browser, not one per tab.
//!
//! The browser releases the lock when the leading tab closes, crashes or is discarded, and hands it to the next tab
//! waiting for it, which opens the stream and catches up from its own watermark (what `Last-Event-ID` would do for
//! a new `EventSource`, which cannot send one). Where the browser lacks Web Locks or `BroadcastChannel`, every tab
//! opens its own stream, as before.
//!
//! `PresenceChanged` is relayed the same way; each tab then reads who is here itself, and beats for itself
//! (`presence`): presence is per tab, not per stream.
//!
//! Only stream state, announced ids, presence notices and pages of the public log travel between tabs; a tab's name
//! and ticket never do.

use crate::shared::domain::Message;

/// What the page does with what the stream and the other tabs report.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub trait Tab {
    /// This tab holds the browser's stream from now on (it was elected, or it has no one to share with).
    fn leads(&self);
    /// The browser's stream is open and this tab hears from it (or not); `problem` is the server's reason for
    /// refusing it, in words, when it did.
    fn stream_state(&self, receiving: bool, problem: Option<String>);
    /// The newest id announced. `fetch`: this tab holds the stream and should fetch now; otherwise the tab that
    /// holds it will share the page.
    fn announced(&self, id: u64, fetch: bool);
    /// This tab's own stream (re)opened: fetch whatever was sent meanwhile.
    fn opened(&self);
    /// A page another tab fetched: the messages above `since`, from the log of `epoch`.
    fn page(&self, since: u64, epoch: String, messages: Vec<Message>);
    /// `PresenceChanged` from the stream: who is here changed.
    fn presence_changed(&self);
    /// The tab was frozen or in the back-forward cache and runs again: it may have missed anything.
    fn resumed(&self);
}

#[cfg(feature = "hydrate")]
pub use browser::{share, start};

/// On the server the page is rendered once, with no stream: it shows "Connecting…" until the tab hydrates.
#[cfg(not(feature = "hydrate"))]
pub fn start(_tab: std::rc::Rc<dyn Tab>) {}

#[cfg(not(feature = "hydrate"))]
#[allow(dead_code)]
pub fn share(_since: u64, _epoch: &str, _messages: &[Message]) {}

#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Duration;

    use js_sys::{Function, Promise, Reflect};
    use leptos::prelude::{set_timeout, window};
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{AbortController, BroadcastChannel, EventSource, MessageEvent, RequestInit};

    use super::Tab;
    use crate::client::{json, remote};
    use crate::shared::domain::Message;
    use crate::shared::wire;

    const CHANNEL: &str = "broadcasting";
    const LOCK: &str = "broadcasting-events";
    /// Reopen a stream the browser gave up on after this long, or after the server's `Retry-After` if longer.
    const RETRY: Duration = Duration::from_secs(1);

    /// What tabs tell each other, sent as a few lines of text (`encode`): a kind letter, then the fields, the last
    /// of which may hold anything (a problem in words, a page's JSON). A derived serde format cost more wasm.
    enum Relay {
        /// A tab started: the leader answers with `Stream`.
        Hello,
        /// The leader's stream, and the newest id it has announced.
        Stream { open: bool, problem: Option<String>, latest: Option<u64> },
        /// `NewMessage` from the stream.
        Notice { id: u64 },
        /// `PresenceChanged` from the stream.
        Presence,
        /// A page some tab fetched: the messages above `since`, in id order.
        Page { since: u64, epoch: String, messages: Vec<Message> },
    }

    impl Relay {
        fn encode(&self) -> String {
            let mut out = String::new();
            match self {
                Relay::Hello => out.push('h'),
                Relay::Stream { open, problem, latest } => {
                    out.push_str(if *open { "s\n1\n" } else { "s\n0\n" });
                    if let Some(latest) = latest {
                        out.push_str(&latest.to_string());
                    }
                    if let Some(problem) = problem {
                        out.push('\n');
                        out.push_str(problem);
                    }
                }
                Relay::Notice { id } => {
                    out.push_str("n\n");
                    out.push_str(&id.to_string());
                }
                Relay::Presence => out.push('p'),
                Relay::Page { since, epoch, messages } => {
                    out.push_str("g\n");
                    out.push_str(&since.to_string());
                    out.push('\n');
                    out.push_str(epoch);
                    out.push('\n');
                    json::push_messages(&mut out, messages);
                }
            }
            out
        }

        fn decode(text: &str) -> Option<Relay> {
            let mut parts = text.splitn(4, '\n');
            let kind = parts.next()?;
            let mut field = || parts.next();
            let number = |field: Option<&str>| field.and_then(|n| n.parse::<u64>().ok());
            Some(match kind {
                "h" => Relay::Hello,
                "p" => Relay::Presence,
                "n" => Relay::Notice { id: number(field())? },
                "s" => {
                    let open = field()? == "1";
                    let latest = number(field());
                    Relay::Stream { open, latest, problem: field().map(str::to_owned) }
                }
                "g" => {
                    let since = number(field())?;
                    let epoch = field()?.to_owned();
                    Relay::Page { since, epoch, messages: json::messages(field()?)? }
                }
                _ => return None,
            })
        }
    }

    /// The tab's part in the browser's stream. One per tab: the page has one thread.
    #[derive(Default)]
    struct Shared {
        channel: Option<BroadcastChannel>,
        tab: Option<Rc<dyn Tab>>,
        leading: Cell<bool>,
        /// The stream this tab holds (leader, or a tab on its own), and what it last reported.
        stream: RefCell<Option<Stream>>,
        open: Cell<bool>,
        problem: RefCell<Option<String>>,
        latest: Cell<Option<u64>>,
    }

    thread_local! {
        static SHARED: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
    }

    fn current() -> Option<Rc<Shared>> {
        SHARED.with(|shared| shared.borrow().clone())
    }

    /// Joins the browser's stream: leads it when elected, follows it meanwhile; alone where the browser cannot share.
    pub fn start(tab: Rc<dyn Tab>) {
        let locks = lock_manager();
        let channel = locks.as_ref().and_then(|_| BroadcastChannel::new(CHANNEL).ok());
        let shared = Rc::new(Shared { channel, tab: Some(tab), ..Shared::default() });
        SHARED.with(|slot| *slot.borrow_mut() = Some(shared.clone()));
        on_window_event("pageshow", |event| {
            if Reflect::get(&event, &"persisted".into()).ok().and_then(|p| p.as_bool()) == Some(true) {
                with_tab(|tab| tab.resumed());
            }
        });
        on_window_event("resume", |_| with_tab(|tab| tab.resumed()));
        match (locks, &shared.channel) {
            (Some((locks, request)), Some(channel)) => {
                listen(channel);
                post(&Relay::Hello);
                // Leaving: the other tabs show the stream as down until the next leader has it open.
                on_window_event("pagehide", |_| {
                    if let Some(shared) = current().filter(|s| s.leading.get()) {
                        post(&Relay::Stream { open: false, problem: None, latest: shared.latest.get() });
                    }
                });
                request_lock(&locks, &request);
            }
            _ => lead(),
        }
    }

    /// Offers a page this tab fetched to the other tabs.
    pub fn share(since: u64, epoch: &str, messages: &[Message]) {
        if !messages.is_empty() {
            post(&Relay::Page { since, epoch: epoch.to_owned(), messages: messages.to_vec() });
        }
    }

    fn with_tab(f: impl FnOnce(&dyn Tab)) {
        if let Some(tab) = current().and_then(|shared| shared.tab.clone()) {
            f(tab.as_ref());
        }
    }

    fn post(relay: &Relay) {
        let Some(shared) = current() else { return };
        if let Some(channel) = &shared.channel {
            let _ = channel.post_message(&JsValue::from_str(&relay.encode()));
        }
    }

    fn on_window_event(name: &str, f: impl Fn(JsValue) + 'static) {
        let handler = Closure::<dyn Fn(JsValue)>::new(f);
        let _ = window().add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
        handler.forget(); // for the tab's lifetime
    }

    /// `navigator.locks` and its `request`, where the browser has them (not in every browser, nor on plain http
    /// in some).
    fn lock_manager() -> Option<(JsValue, Function)> {
        let locks = Reflect::get(&window().navigator(), &"locks".into()).ok().filter(|l| l.is_object())?;
        let request = Reflect::get(&locks, &"request".into()).ok()?.dyn_into::<Function>().ok()?;
        Some((locks, request))
    }

    /// Waits for the lock; the browser calls back when this tab is elected and keeps the lock until the tab is gone
    /// (the callback's promise never settles).
    fn request_lock(locks: &JsValue, request: &Function) {
        let elected = Closure::once_into_js(|_lock: JsValue| -> JsValue {
            lead();
            Promise::new(&mut |_, _| {}).into()
        });
        match request.call2(locks, &JsValue::from_str(LOCK), &elected) {
            // The request is rejected only as the tab goes away; nothing to report then.
            Ok(pending) => wasm_bindgen_futures::spawn_local(async move {
                let _ = JsFuture::from(Promise::from(pending)).await;
            }),
            Err(_) => lead(),
        }
    }

    fn listen(channel: &BroadcastChannel) {
        let handler = Closure::<dyn Fn(MessageEvent)>::new(|event: MessageEvent| {
            let Some(relay) = event.data().as_string().and_then(|text| Relay::decode(&text)) else {
                return;
            };
            let Some(shared) = current() else { return };
            let Some(tab) = shared.tab.clone() else { return };
            let leading = shared.leading.get();
            match relay {
                Relay::Hello if leading => report(&shared),
                Relay::Stream { open, problem, latest } if !leading => {
                    tab.stream_state(open, problem);
                    if let Some(id) = latest {
                        tab.announced(id, false);
                    }
                }
                Relay::Notice { id } if !leading => tab.announced(id, false),
                Relay::Presence if !leading => tab.presence_changed(),
                Relay::Page { since, epoch, messages } => tab.page(since, epoch, messages),
                _ => {}
            }
        });
        channel.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        handler.forget(); // for the tab's lifetime
    }

    /// This tab holds the browser's stream from now on.
    fn lead() {
        let Some(shared) = current() else { return };
        shared.leading.set(true);
        with_tab(|tab| tab.leads());
        set_state(false, None);
        connect();
    }

    /// Records the stream's state, shows it in this tab and tells the others.
    fn set_state(open: bool, problem: Option<String>) {
        let Some(shared) = current() else { return };
        shared.open.set(open);
        *shared.problem.borrow_mut() = problem.clone();
        with_tab(|tab| tab.stream_state(open, problem));
        report(&shared);
    }

    fn report(shared: &Shared) {
        post(&Relay::Stream {
            open: shared.open.get(),
            problem: shared.problem.borrow().clone(),
            latest: shared.latest.get(),
        });
    }

    /// The open source and the handlers it calls; dropping it closes the source.
    struct Stream {
        source: EventSource,
        _on_open: Closure<dyn Fn()>,
        _on_message: Closure<dyn Fn(MessageEvent)>,
        _on_presence: Closure<dyn Fn()>,
        _on_error: Closure<dyn Fn()>,
    }

    impl Drop for Stream {
        fn drop(&mut self) {
            self.source.close();
        }
    }

    /// Opens the stream. The browser's `EventSource` reconnects by itself after a dropped stream (the server asks
    /// for one second) and sends `Last-Event-ID`; it gives up when an answer is not an event stream (a refusal, a
    /// proxy's 502). Then this asks the server why, shows it, and opens a new one later, for as long as the tab lives.
    fn connect() {
        let Some(shared) = current() else { return };
        let Ok(source) = EventSource::new(wire::EVENTS_PATH) else {
            return connect_later(RETRY);
        };
        let on_open = Closure::<dyn Fn()>::new(|| {
            set_state(true, None);
            with_tab(|tab| tab.opened());
        });
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(|event: MessageEvent| {
            let Some(id) = event.data().as_string().and_then(|data| data.trim().parse::<u64>().ok()) else { return };
            if let Some(shared) = current() {
                shared.latest.set(Some(shared.latest.get().map_or(id, |latest| latest.max(id))));
            }
            post(&Relay::Notice { id });
            with_tab(|tab| tab.announced(id, true));
        });
        let on_presence = Closure::<dyn Fn()>::new(|| {
            post(&Relay::Presence);
            with_tab(|tab| tab.presence_changed());
        });
        let on_error = {
            let source = source.clone();
            Closure::<dyn Fn()>::new(move || {
                if source.ready_state() == EventSource::CLOSED {
                    wasm_bindgen_futures::spawn_local(async {
                        let (problem, wait) = refusal().await.map_or((None, RETRY), |(why, wait)| (Some(why), wait));
                        set_state(false, problem);
                        connect_later(wait.max(RETRY));
                    });
                } else {
                    // Reconnecting by itself: a refusal shown before stays until the stream opens.
                    set_state(false, current().and_then(|shared| shared.problem.borrow().clone()));
                }
            })
        };
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let _ = source.add_event_listener_with_callback(wire::NEW_MESSAGE, on_message.as_ref().unchecked_ref());
        let _ = source.add_event_listener_with_callback(wire::PRESENCE_CHANGED, on_presence.as_ref().unchecked_ref());
        // Replacing the previous stream (if any) closes it.
        *shared.stream.borrow_mut() = Some(Stream {
            source,
            _on_open: on_open,
            _on_message: on_message,
            _on_presence: on_presence,
            _on_error: on_error,
        });
    }

    fn connect_later(wait: Duration) {
        set_timeout(connect, wait);
    }

    /// Why the server refused the stream, and when to ask again: `EventSource` shows no status and no body, so this
    /// asks once more (`remote::request`). `None` when the server cannot be reached or accepts (then the probe's
    /// stream is closed at once).
    async fn refusal() -> Option<(String, Duration)> {
        let abort = AbortController::new().ok()?;
        let init = RequestInit::new();
        init.set_signal(Some(&abort.signal()));
        let response = remote::request(wire::EVENTS_PATH, init, None).await.ok()?;
        if response.ok() {
            abort.abort();
            return None;
        }
        let wait = response
            .headers()
            .get("retry-after")
            .ok()
            .flatten()
            .and_then(|seconds| seconds.trim().parse::<u64>().ok())
            .map_or(RETRY, Duration::from_secs);
        Some((remote::error_of(&response).await.message, wait))
    }
}
