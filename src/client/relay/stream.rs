//! The one `EventSource` on `/events` that the leading tab holds (`leader`), kept open for as long as the tab
//! lives. The browser reconnects by itself after a dropped stream (the server asks for one second) and sends
//! `Last-Event-ID`; it gives up when an answer is not an event stream (a refusal, a proxy's 502). Then this asks the
//! server why, reports it, and opens a new one later.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::set_timeout;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, EventSource, MessageEvent, RequestInit};

use crate::client::{codec, remote};
use crate::shared::wire;

/// Reopen a stream the browser gave up on after this long, or after the server's `Retry-After` if longer.
const RETRY: Duration = Duration::from_secs(1);

/// What the stream reports to.
pub trait Listener {
    /// The stream is open (again).
    fn opened(&self);
    /// The stream dropped and the browser is reconnecting by itself.
    fn reconnecting(&self);
    /// The browser gave up on the stream; `problem` is the server's reason, in words, when it gave one.
    fn refused(&self, problem: Option<String>);
    /// `NewMessage`: the log's newest id is `id`.
    fn notice(&self, id: u64);
    /// `PresenceChanged`.
    fn presence_changed(&self);
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

thread_local! {
    /// The tab's one stream, if open.
    static STREAM: RefCell<Option<Stream>> = const { RefCell::new(None) };
}

/// Opens the stream, reporting to `listener`; replaces (and so closes) one opened before.
pub fn open(listener: Rc<dyn Listener>) {
    let Ok(source) = EventSource::new(wire::EVENTS_PATH) else {
        return open_later(listener, RETRY);
    };
    let on_open = {
        let listener = listener.clone();
        Closure::<dyn Fn()>::new(move || listener.opened())
    };
    let on_message = {
        let listener = listener.clone();
        Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(id) = event.data().as_string().and_then(|data| codec::notice_id(&data)) {
                listener.notice(id);
            }
        })
    };
    let on_presence = {
        let listener = listener.clone();
        Closure::<dyn Fn()>::new(move || listener.presence_changed())
    };
    let on_error = {
        let source = source.clone();
        Closure::<dyn Fn()>::new(move || {
            if source.ready_state() == EventSource::CLOSED {
                let listener = listener.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let (problem, wait) = refusal().await.map_or((None, RETRY), |(why, wait)| (Some(why), wait));
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
    let stream =
        Stream { source, _on_open: on_open, _on_message: on_message, _on_presence: on_presence, _on_error: on_error };
    // Replacing the previous stream (if any) closes it.
    STREAM.with(|slot| *slot.borrow_mut() = Some(stream));
}

fn open_later(listener: Rc<dyn Listener>, wait: Duration) {
    set_timeout(move || open(listener), wait);
}

/// Why the server refused the stream, and when to ask again: `EventSource` shows no status and no body, so this
/// asks once more (`remote::request`). `None` when the server cannot be reached or accepts (then the probe's stream
/// is closed at once).
async fn refusal() -> Option<(String, Duration)> {
    let abort = AbortController::new().ok()?;
    let init = RequestInit::new();
    init.set_signal(Some(&abort.signal()));
    let response = remote::request(wire::EVENTS_PATH, init, None).await.ok()?;
    if response.ok() {
        abort.abort();
        return None;
    }
    let wait = response.headers().get("retry-after").ok().flatten().and_then(|seconds| codec::retry_after(&seconds));
    Some((remote::error_of(&response).await.message, wait.unwrap_or(RETRY)))
}
