//! Which tab leads, and the channel between tabs. Every tab asks for the Web Lock `LOCK`; the browser grants it to
//! one tab at a time, which opens the stream (`stream`) and relays what it hears over the `BroadcastChannel`
//! `CHANNEL`; the others follow what the channel tells them. Where the browser lacks either, the tab leads alone.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::window;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{BroadcastChannel, MessageEvent};

use super::{stream, Tab};
use crate::client::codec::Relay;
use crate::shared::domain::Message;

const CHANNEL: &str = "broadcasting";
const LOCK: &str = "broadcasting-events";

/// The tab's part in the browser's stream. One per tab: the page has one thread.
#[derive(Default)]
struct Shared {
    channel: Option<BroadcastChannel>,
    tab: Option<Rc<dyn Tab>>,
    leading: Cell<bool>,
    /// What the stream this tab holds (leader, or a tab on its own) last reported.
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

/// `navigator.locks` and its `request`, where the browser has them (not in every browser, nor on plain http in
/// some).
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
    stream::open(Rc::new(Leader));
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

/// What the leading tab does with what its stream reports: show it here and relay it to the other tabs.
struct Leader;

impl stream::Listener for Leader {
    fn opened(&self) {
        set_state(true, None);
        with_tab(|tab| tab.opened());
    }

    fn reconnecting(&self) {
        // A refusal shown before stays until the stream opens.
        set_state(false, current().and_then(|shared| shared.problem.borrow().clone()));
    }

    fn refused(&self, problem: Option<String>) {
        set_state(false, problem);
    }

    fn notice(&self, id: u64) {
        if let Some(shared) = current() {
            shared.latest.set(Some(shared.latest.get().map_or(id, |latest| latest.max(id))));
        }
        post(&Relay::Notice { id });
        with_tab(|tab| tab.announced(id, true));
    }

    fn presence_changed(&self) {
        post(&Relay::Presence);
        with_tab(|tab| tab.presence_changed());
    }
}
