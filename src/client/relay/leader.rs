//! Which tab leads, and the channel between tabs. Every tab asks for the Web Lock `LOCK`; the browser grants it to
//! one tab at a time, which opens the stream (`stream`) and relays what it hears over the `BroadcastChannel`
//! `CHANNEL`; the others follow what the channel tells them. Where the browser lacks either, or refuses this page the
//! lock (Chrome does, to a frame on another site while third-party cookies are blocked: an embed), the tab leads
//! alone.
//!
//! Each tab shows one feed and says which (`Relay::Showing`, at start, every `roster::SHOW_EVERY_MS` and when a new
//! leader asks); the leader's stream carries the feeds of every tab it knows of (`roster`). When that set changes
//! the leader opens a stream for the new set and closes the old one only once the new one is open (`stream::open`:
//! make-before-break), and each feed is then caught up from its watermark by one tab, which shares the page
//! (`Relay::CatchUp`), so nothing sent meanwhile is missed and a reopen costs one fetch per feed per browser. A notice is relayed with its feed; each tab takes only its own feed's.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::{set_interval, window};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{BroadcastChannel, MessageEvent};

use super::roster::{Roster, SHOW_EVERY_MS};
use super::{stream, Tab};
use crate::client::codec::{self, Relay};
use crate::client::{remote, session};
use crate::shared::domain::{FeedName, Message};

// Named apart from the lines of pages before feeds (which named no feed): a tab of an older page still open in the
// browser keeps to its own leader instead of misreading these lines.
const CHANNEL: &str = "broadcasting-feeds";
const LOCK: &str = "broadcasting-feeds-events";

/// The tab's part in the browser's stream. One per tab: the page has one thread.
struct Shared {
    /// `None` where the tab leads alone.
    channel: RefCell<Option<BroadcastChannel>>,
    tab: Rc<dyn Tab>,
    /// This tab's id on the channel (random, per page load) and the feed it shows.
    me: String,
    feed: FeedName,
    /// The feed is private and this tab holds no read pass for it yet (`unlock`): the stream does not carry it for
    /// this tab, and what other tabs say of it is not this tab's.
    locked: Cell<bool>,
    /// The private feed's read pass, once joined (`unlock`).
    pass: RefCell<Option<String>>,
    leading: Cell<bool>,
    /// What the stream this tab holds (leader, or a tab on its own) last reported.
    open: Cell<bool>,
    problem: RefCell<Option<String>>,
    /// The tabs heard of, and the feeds they show (kept by every tab, so that the next leader knows them).
    roster: RefCell<Roster>,
    /// The feeds of the stream the leader opened last.
    carried: RefCell<BTreeSet<FeedName>>,
    /// The newest id announced per carried feed, told to a tab that starts.
    latest: RefCell<BTreeMap<FeedName, u64>>,
}

thread_local! {
    static SHARED: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
}

fn current() -> Option<Rc<Shared>> {
    SHARED.with(|shared| shared.borrow().clone())
}

/// Joins the browser's stream for `feed`: leads it when elected, follows it meanwhile; alone where the browser
/// cannot share.
pub fn start(tab: Rc<dyn Tab>, feed: FeedName, locked: bool) {
    let locks = lock_manager();
    let channel = locks.as_ref().and_then(|_| BroadcastChannel::new(CHANNEL).ok());
    let shared = Rc::new(Shared {
        channel: RefCell::new(channel),
        tab,
        me: remote::new_send_key(),
        feed,
        locked: Cell::new(locked),
        pass: RefCell::new(None),
        leading: Cell::new(false),
        open: Cell::new(false),
        problem: RefCell::new(None),
        roster: RefCell::new(Roster::default()),
        carried: RefCell::new(BTreeSet::new()),
        latest: RefCell::new(BTreeMap::new()),
    });
    SHARED.with(|slot| *slot.borrow_mut() = Some(shared.clone()));
    on_window_event("pageshow", |event| {
        if Reflect::get(&event, &"persisted".into()).ok().and_then(|p| p.as_bool()) == Some(true) {
            show();
            with_tab(|tab| tab.resumed());
        }
    });
    on_window_event("resume", |_| {
        show();
        with_tab(|tab| tab.resumed());
    });
    let channel = shared.channel.borrow().clone();
    match (locks, channel) {
        (Some((locks, request)), Some(channel)) => {
            listen(&channel);
            post(&Relay::Hello);
            show();
            // Said again now and then: a leader elected later learns the feed, and one that stops hearing it (the
            // tab crashed) lets it go. The leader forgets silent tabs on the same beat.
            set_interval(
                || {
                    show();
                    if let Some(shared) = current().filter(|s| s.leading.get()) {
                        shared.roster.borrow_mut().sweep(js_sys::Date::now());
                        carry(&shared);
                    }
                },
                Duration::from_millis(SHOW_EVERY_MS.into()),
            );
            // Leaving: the other tabs show the stream as down until the next leader has it open, and this tab's
            // feed leaves the stream unless another tab shows it.
            on_window_event("pagehide", |_| {
                let Some(shared) = current() else { return };
                if shared.leading.get() {
                    post(&Relay::Stream { open: false, problem: None });
                }
                post(&Relay::Gone { tab: shared.me.clone() });
            });
            request_lock(&locks, &request);
        }
        _ => lead(),
    }
}

/// Offers a page of this tab's feed that it fetched to the other tabs.
pub fn share(since: u64, epoch: &str, messages: &[Message]) {
    let Some(shared) = current() else { return };
    if !messages.is_empty() {
        post(&Relay::Page { feed: shared.feed.clone(), since, epoch: epoch.to_owned(), messages: messages.to_vec() });
    }
}

/// This tab holds the read pass of its private feed (a join with a token that grants it; again at each renewal):
/// the browser's stream carries the feed from now on, with the pass.
pub fn unlock(pass: String) {
    let Some(shared) = current() else { return };
    *shared.pass.borrow_mut() = Some(pass);
    let was_locked = shared.locked.replace(false);
    show();
    if shared.leading.get() && was_locked {
        carry(&shared);
    }
}

/// Tells the leader which feed this tab shows (not while it may not read it).
fn show() {
    if let Some(shared) = current().filter(|shared| !shared.locked.get()) {
        let pass = shared.pass.borrow().clone();
        post(&Relay::Showing { tab: shared.me.clone(), feed: shared.feed.clone(), pass });
    }
}

/// The leading tab's own feed, as the stream carries it: none while it may not read it.
fn own(shared: &Shared) -> Option<&FeedName> {
    (!shared.locked.get()).then_some(&shared.feed)
}

fn with_tab(f: impl FnOnce(&dyn Tab)) {
    if let Some(shared) = current() {
        f(shared.tab.as_ref());
    }
}

fn post(relay: &Relay) {
    let Some(shared) = current() else { return };
    let channel = shared.channel.borrow();
    if let Some(channel) = channel.as_ref() {
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
        // Rejected as the tab goes away (nothing to report then), or at once where the browser refuses this page
        // locks: it would wait for ever, so it holds a stream of its own.
        Ok(pending) => wasm_bindgen_futures::spawn_local(async move {
            if let Err(err) = JsFuture::from(Promise::from(pending)).await {
                let name = Reflect::get(&err, &"name".into()).ok().and_then(|name| name.as_string());
                if name.as_deref() == Some("SecurityError") {
                    alone();
                }
            }
        }),
        Err(_) => alone(),
    }
}

/// This tab leads alone, as where there are no locks: it leaves the channel (no other tab follows a stream it cannot
/// share, and it follows none) and forgets the feeds it heard of.
fn alone() {
    let Some(shared) = current() else { return };
    if let Some(channel) = shared.channel.borrow_mut().take() {
        channel.set_onmessage(None);
        channel.close();
    }
    *shared.roster.borrow_mut() = Roster::default();
    lead();
}

fn listen(channel: &BroadcastChannel) {
    let handler = Closure::<dyn Fn(MessageEvent)>::new(|event: MessageEvent| {
        let Some(relay) = event.data().as_string().and_then(|text| Relay::decode(&text)) else {
            return;
        };
        let Some(shared) = current() else { return };
        let tab = shared.tab.clone();
        let leading = shared.leading.get();
        let mine = |feed: &FeedName| *feed == shared.feed && !shared.locked.get();
        match relay {
            Relay::Hello if leading => report(&shared),
            Relay::Showing { tab, feed, pass } => {
                shared.roster.borrow_mut().heard(&tab, feed, pass, js_sys::Date::now());
                if leading {
                    carry(&shared);
                }
            }
            Relay::Gone { tab } => {
                shared.roster.borrow_mut().gone(&tab);
                if leading {
                    carry(&shared);
                }
            }
            Relay::Roll => show(),
            Relay::Stream { open, problem } if !leading => tab.stream_state(open, problem),
            Relay::CatchUp { feed, fetcher }
                if !leading && mine(&feed) && (fetcher.is_empty() || fetcher == shared.me) =>
            {
                tab.opened()
            }
            Relay::Notice { feed, id, fetcher } if !leading && mine(&feed) => tab.announced(id, fetcher == shared.me),
            Relay::Presence { feed } if !leading && mine(&feed) => tab.presence_changed(),
            // The stream's group is the leader's: who is here, read under the group this tab had, is read again.
            Relay::Group { group } if !leading && session::adopt(&group) => tab.presence_changed(),
            Relay::Page { feed, since, epoch, messages } if mine(&feed) => tab.page(since, epoch, messages),
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
    // The tabs this one heard of while it followed are known; the rest answer this at once.
    post(&Relay::Roll);
    carry(&shared);
}

/// Opens a stream for the feeds the tabs show now, if they are not those of the stream open (or opening): the new
/// stream replaces the old once open (`stream::open`).
fn carry(shared: &Shared) {
    let feeds = shared.roster.borrow().feeds(own(shared));
    if *shared.carried.borrow() == feeds {
        return;
    }
    shared.latest.borrow_mut().retain(|feed, _| feeds.contains(feed));
    *shared.carried.borrow_mut() = feeds;
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

/// The stream's group (where this tab holds one: `session`), its state, and the newest id of each feed heard so far
/// (a tab that starts fetches up to it if it is behind; no one is asked to fetch it at once). The group goes first: a
/// tab takes it before the stream's state makes it read who is here.
fn report(shared: &Shared) {
    if let Some(group) = session::group() {
        post(&Relay::Group { group });
    }
    post(&Relay::Stream { open: shared.open.get(), problem: shared.problem.borrow().clone() });
    for (feed, id) in shared.latest.borrow().iter() {
        post(&Relay::Notice { feed: feed.clone(), id: *id, fetcher: String::new() });
    }
}

/// What the leading tab does with what its stream reports: show it here and relay it to the other tabs.
struct Leader;

impl stream::Listener for Leader {
    fn url(&self) -> String {
        let group = session::group();
        current().map_or_else(
            || codec::events_url([], group.as_deref(), []),
            |shared| {
                let passes = shared.roster.borrow().passes(shared.pass.borrow().as_deref());
                codec::events_url(shared.carried.borrow().iter(), group.as_deref(), passes.iter().map(String::as_str))
            },
        )
    }

    fn opened(&self) {
        set_state(true, None);
        if let Some(shared) = current() {
            let roster = shared.roster.borrow();
            for feed in shared.carried.borrow().iter().filter(|feed| Some(*feed) != own(&shared)) {
                post(&Relay::CatchUp { feed: feed.clone(), fetcher: roster.fetcher(feed, &shared.me, own(&shared)) });
            }
        }
        // This tab's own feed: it fetches and shares the page, as it does for a notice.
        with_tab(|tab| tab.opened());
    }

    fn reconnecting(&self) {
        // A refusal shown before stays until the stream opens.
        set_state(false, current().and_then(|shared| shared.problem.borrow().clone()));
    }

    fn refused(&self, problem: Option<String>) {
        set_state(false, problem);
    }

    fn notice(&self, feed: FeedName, id: u64) {
        let Some(shared) = current() else { return };
        // Kept for the carried feeds only (a notice of the stream being replaced may name one no longer carried).
        if shared.carried.borrow().contains(&feed) {
            shared.latest.borrow_mut().entry(feed.clone()).and_modify(|latest| *latest = id.max(*latest)).or_insert(id);
        }
        let fetcher = shared.roster.borrow().fetcher(&feed, &shared.me, own(&shared));
        let own = Some(&feed) == own(&shared);
        post(&Relay::Notice { feed, id, fetcher });
        if own {
            with_tab(|tab| tab.announced(id, true));
        }
    }

    fn presence_changed(&self, feed: FeedName) {
        let Some(shared) = current() else { return };
        let own = Some(&feed) == own(&shared);
        post(&Relay::Presence { feed });
        if own {
            with_tab(|tab| tab.presence_changed());
        }
    }
}
