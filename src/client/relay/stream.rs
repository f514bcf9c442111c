//! The `EventSource` the leading tab holds (`leader`), on the URL its listener names (`codec::events_url`: the
//! feeds the browser's tabs show), kept open for as long as the tab lives. The browser reconnects by itself after a
//! dropped stream (the server asks for one second); it gives up when an answer is not an event stream (a refusal,
//! a proxy's 502). Then this asks the server why, reports it, and opens a new one later.
//!
//! A new `open` while a stream is open is make-before-break: the new stream is opened beside the old one, which
//! keeps delivering until the new one is open and only then is closed, so at most two are open for a moment and a
//! notice sent meanwhile comes on one of them (and each tab refetches from its watermark once the new one opens).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::set_timeout;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, EventSource, MessageEvent, RequestInit};

use crate::client::{codec, remote};
use crate::shared::domain::FeedName;
use crate::shared::wire;

/// Reopen a stream the browser gave up on after this long, or after the server's `Retry-After` if longer.
const RETRY: Duration = Duration::from_secs(1);

/// What the stream reports to.
pub trait Listener {
    /// Where to open the stream (asked at each open, so a retry opens the feeds the tabs show by then).
    fn url(&self) -> String;
    /// The stream is open (again).
    fn opened(&self);
    /// The stream dropped and the browser is reconnecting by itself.
    fn reconnecting(&self);
    /// The browser gave up on the stream; `problem` is the server's reason, in words, when it gave one.
    fn refused(&self, problem: Option<String>);
    /// `NewMessage`: `feed`'s newest id is `id`.
    fn notice(&self, feed: FeedName, id: u64);
    /// `PresenceChanged` of `feed`.
    fn presence_changed(&self, feed: FeedName);
}

/// An open source and the handlers it calls; dropping it closes the source.
struct Stream {
    serial: u64,
    source: EventSource,
    _on_open: Closure<dyn Fn()>,
    _on_message: Closure<dyn Fn(MessageEvent)>,
    _on_presence: Closure<dyn Fn(MessageEvent)>,
    _on_error: Closure<dyn Fn()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.source.close();
    }
}

/// The stream in use, and the one opened to replace it (until it opens).
#[derive(Default)]
struct Streams {
    serial: u64,
    current: Option<Stream>,
    pending: Option<Stream>,
}

/// Which of the tab's streams an event comes from.
#[derive(PartialEq)]
enum Role {
    Current,
    /// The one replacing the current one.
    Pending,
    /// The current one while another replaces it.
    Replaced,
    /// Closed already.
    Stale,
}

thread_local! {
    static STREAMS: RefCell<Streams> = RefCell::new(Streams::default());
}

fn role(serial: u64) -> Role {
    STREAMS.with(|streams| {
        let streams = streams.borrow();
        let is = |stream: &Option<Stream>| stream.as_ref().is_some_and(|s| s.serial == serial);
        match (is(&streams.current), is(&streams.pending), streams.pending.is_some()) {
            (true, _, true) => Role::Replaced,
            (true, _, false) => Role::Current,
            (_, true, _) => Role::Pending,
            _ => Role::Stale,
        }
    })
}

/// The stream `serial` opened: if it replaces one, that one closes now.
fn promote(serial: u64) {
    let replaced = STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        if streams.pending.as_ref().is_some_and(|s| s.serial == serial) {
            let pending = streams.pending.take();
            std::mem::replace(&mut streams.current, pending)
        } else {
            None
        }
    });
    drop(replaced);
}

/// Opens a stream on `listener.url()`, reporting to `listener`; one open before is closed once this one is open.
pub fn open(listener: Rc<dyn Listener>) {
    let url = listener.url();
    // A plain stream (no feed named: `main` alone) carries `main`'s notices as before feeds.
    let named = url != wire::EVENTS_PATH;
    let Ok(source) = EventSource::new(&url) else {
        return open_later(listener, RETRY);
    };
    let serial = STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        streams.serial += 1;
        streams.serial
    });
    let on_open = {
        let listener = listener.clone();
        Closure::<dyn Fn()>::new(move || {
            if role(serial) == Role::Stale {
                return;
            }
            promote(serial);
            listener.opened();
        })
    };
    let on_message = {
        let listener = listener.clone();
        Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data().as_string().unwrap_or_default();
            if let Some((feed, id)) = codec::stream_notice(named, &data) {
                listener.notice(feed, id);
            }
        })
    };
    let on_presence = {
        let listener = listener.clone();
        Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data().as_string().unwrap_or_default();
            if let Some(feed) = codec::stream_presence(named, &data) {
                listener.presence_changed(feed);
            }
        })
    };
    let on_error = {
        let source = source.clone();
        Closure::<dyn Fn()>::new(move || {
            match role(serial) {
                // The stream replacing it takes over (or, refused, reopens everything).
                Role::Stale | Role::Replaced => return,
                Role::Pending if source.ready_state() != EventSource::CLOSED => return,
                _ => {}
            }
            if source.ready_state() == EventSource::CLOSED {
                let (listener, url) = (listener.clone(), url.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    // Closed here, not in this handler: dropping a stream drops the handler running.
                    let closed = STREAMS.with(|streams| {
                        let mut streams = streams.borrow_mut();
                        (streams.current.take(), streams.pending.take())
                    });
                    drop(closed);
                    let (problem, wait) = refusal(&url).await.map_or((None, RETRY), |(why, wait)| (Some(why), wait));
                    listener.refused(problem);
                    open_later(listener, wait.max(RETRY));
                });
            } else {
                listener.reconnecting();
            }
        })
    };
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let _ = source.add_event_listener_with_callback(wire::NEW_MESSAGE, on_message.as_ref().unchecked_ref());
    let _ = source.add_event_listener_with_callback(wire::PRESENCE_CHANGED, on_presence.as_ref().unchecked_ref());
    let stream = Stream {
        serial,
        source,
        _on_open: on_open,
        _on_message: on_message,
        _on_presence: on_presence,
        _on_error: on_error,
    };
    let superseded = STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        if streams.current.is_none() {
            streams.current = Some(stream);
            None
        } else {
            // A replacement not open yet is itself replaced: the old stream stays until this one opens.
            streams.pending.replace(stream)
        }
    });
    drop(superseded);
}

fn open_later(listener: Rc<dyn Listener>, wait: Duration) {
    set_timeout(move || open(listener), wait);
}

/// Why the server refused the stream at `url`, and when to ask again: `EventSource` shows no status and no body, so
/// this asks once more (`remote::request`). `None` when the server cannot be reached or accepts (then the probe's
/// stream is closed at once).
async fn refusal(url: &str) -> Option<(String, Duration)> {
    let abort = AbortController::new().ok()?;
    let init = RequestInit::new();
    init.set_signal(Some(&abort.signal()));
    let response = remote::request(url, init, None).await.ok()?;
    if response.ok() {
        abort.abort();
        return None;
    }
    let wait = response.headers().get("retry-after").ok().flatten().and_then(|seconds| codec::retry_after(&seconds));
    Some((remote::error_of(&response).await.message, wait.unwrap_or(RETRY)))
}
