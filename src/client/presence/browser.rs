//! Presence in the browser: reading who is here (one read at a time, spaced by `READ_GAP`), this tab's heartbeat
//! at the server's pace, and its leaving beacon.

use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use super::Presence;
use crate::client::remote::{self, presence as api};
use crate::shared::error::ErrorKind;

/// How long to wait before the next heartbeat when the last one failed (the server's pace is unknown).
const RETRY: Duration = Duration::from_secs(5);

pub fn refresh(presence: Presence) {
    let start = presence.reading.try_update_value(|(running, again)| {
        *again = *running;
        !std::mem::replace(running, true)
    });
    if start == Some(true) {
        leptos::task::spawn_local(read(presence));
    }
}

async fn read(presence: Presence) {
    loop {
        // Within the gap since the last read: wait out the rest of it; whatever is told meanwhile is this read.
        let wait = presence.last_read.get_value() + super::READ_GAP - js_sys::Date::now();
        if wait > 0.0 {
            sleep(wait).await;
        }
        presence.last_read.set_value(js_sys::Date::now());
        match api::here(&presence.feed.get_value()).await {
            Ok(here) => presence.names.set(Some(super::entries(here))),
            Err(err) => leptos::logging::warn!("who is here could not be read: {err}"),
        }
        let done = presence.reading.try_update_value(|(running, again)| {
            *running = std::mem::take(again);
            !*running
        });
        if done != Some(false) {
            return;
        }
    }
}

/// Resolves after `ms` milliseconds (a `setTimeout` the read awaits).
async fn sleep(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms.ceil() as i32);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

pub fn joined(presence: Presence, ticket: String) {
    // A random id for this page load (a send key's shape, 32 hex digits, fits the server's rule for tab ids).
    presence.me.set_value(Some((ticket, remote::new_send_key())));
    let on_hide = Closure::<dyn Fn()>::new(move || {
        if let Some((ticket, tab)) = presence.me.get_value() {
            api::leave(&presence.feed.get_value(), &ticket, &tab);
        }
    });
    let _ = window().add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
    on_hide.forget(); // for the tab's lifetime
    beat(presence);
}

pub fn renewed(presence: Presence, ticket: String) {
    // The same tab id: the list shows one tab, not a new one beside the old.
    presence.me.update_value(|me| {
        let tab = me.take().map_or_else(remote::new_send_key, |(_, tab)| tab);
        *me = Some((ticket, tab));
    });
    beat(presence);
}

pub fn beat(presence: Presence) {
    let Some((ticket, tab)) = presence.me.get_value() else { return };
    let round = presence.round.try_update_value(|round| {
        *round = round.wrapping_add(1);
        *round
    });
    leptos::task::spawn_local(async move {
        let wait = match api::beat(&presence.feed.get_value(), ticket, tab).await {
            Ok(beat) => Duration::from_millis(beat.every_ms.max(250)),
            // Expired or no longer valid here: this tab is not listed again until it joins again.
            Err(err) if err.kind == ErrorKind::BadTicket => return presence.me.set_value(None),
            Err(_) => RETRY,
        };
        set_timeout(
            move || {
                if presence.round.get_value() == round.unwrap_or_default() {
                    beat(presence);
                }
            },
            wait,
        );
    });
}
