//! The message log on screen (`FeedLog`): the rows of `log::Feed` as a list that only grows by the new rows, kept
//! scrolled to the bottom unless the reader scrolled up; then a "N new messages" button counts what arrived below.
//! What `Feed` chooses to announce is read out by a polite live region; the list itself is not one. The first page
//! is rendered on the server and read back by the tab as it hydrates (`codec::FirstPage`).

use leptos::either::Either;
use leptos::html::Div;
use leptos::prelude::*;

use crate::client::codec::FirstPage;
use crate::client::log::Feed;
use crate::client::{clock, mark, remote};
use crate::shared::domain::Message;

/// Distance from the bottom, in pixels, within which the log counts as "at the bottom" and follows new rows.
const STICKY_SLACK_PX: i32 = 40;

/// The day a row starts, where it differs from the row before it (the reader's time zone).
fn day_starting_at(feed: Feed, id: u64) -> Option<String> {
    feed.with_rows(|rows| {
        let at = rows.binary_search_by_key(&id, |m| m.id).ok()?;
        let day = clock::local(&rows[at].at)?.day;
        let before = at.checked_sub(1).and_then(|prev| clock::local(&rows[prev].at)).map(|t| t.day);
        (before.as_ref() != Some(&day)).then_some(day)
    })
}

/// One of 8 name colours (style/main.css, readable in light and dark), the same for a name in every tab.
fn author_class(name: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    format!("author-{}", hash % 8)
}

#[component]
pub fn FeedLog(feed: Feed, hydrated: Signal<bool>) -> impl IntoView {
    // Rendered on the server into the first HTML; the browser reuses the serialized page.
    let first = remote::messages(&feed.name(), None, None);
    let first_page = OnceResource::new_str_blocking(async move { FirstPage(first.await) });
    let log = NodeRef::<Div>::new();
    let sticky = StoredValue::new(true);
    // Whether older messages may exist above the oldest shown (ids start at 1).
    let has_older = RwSignal::new(false);
    let loading_older = RwSignal::new(false);
    let older_error = RwSignal::new(None::<String>);
    // The newest id the reader has seen at the bottom of the log; rows above it are read.
    let seen = RwSignal::new(0_u64);
    let unread = Memo::new(move |_| {
        let seen = seen.get();
        feed.with_rows(|rows| rows.iter().rev().take_while(|m| m.id > seen).count())
    });
    let jump_to_unread = move |_| {
        let first = feed.with_rows_untracked(|rows| rows.iter().find(|m| m.id > seen.get_untracked()).map(|m| m.id));
        if let (Some(id), Some(el)) = (first, log.get_untracked()) {
            if let Ok(Some(row)) = el.query_selector(&format!("p[data-key=\"{id}\"]")) {
                row.scroll_into_view();
            }
        }
    };

    let load_older = move |_| {
        let Some(oldest) = feed.oldest_id() else { return };
        loading_older.set(true);
        leptos::task::spawn_local(async move {
            match remote::messages(&feed.name(), None, Some(oldest)).await {
                Ok(page) => {
                    older_error.set(None);
                    feed.renew_epoch(&page.epoch);
                    let page = page.messages;
                    has_older.set(page.first().is_some_and(|m| m.id > 1));
                    // Keep the reader's place: the same distance from the bottom once the rows are in.
                    let from_bottom = log.get_untracked().map(|el| el.scroll_height() - el.scroll_top());
                    feed.merge(page);
                    if let Some(from_bottom) = from_bottom {
                        request_animation_frame(move || {
                            if let Some(el) = log.get_untracked() {
                                el.set_scroll_top(el.scroll_height() - from_bottom);
                            }
                        });
                    }
                }
                Err(err) => older_error.set(Some(err.message)),
            }
            loading_older.set(false);
        });
    };

    // Why the first page could not be read, while that holds: a private feed says so until the tab joins with a
    // token that grants it; then its newest page loads, and only then does the browser's stream carry the feed
    // (whose opening catches up from there, not from the feed's first message).
    let first_error = RwSignal::new(None::<String>);
    Effect::new(move |was_locked: Option<bool>| {
        let locked = feed.locked();
        if was_locked == Some(true) && !locked {
            leptos::task::spawn_local(async move {
                match remote::messages(&feed.name(), None, None).await {
                    Ok(page) => {
                        first_error.set(None);
                        feed.renew_epoch(&page.epoch);
                        has_older.set(page.messages.first().is_some_and(|m| m.id > 1));
                        feed.merge_synced(page.messages);
                        feed.start_announcing();
                    }
                    Err(err) => first_error.set(Some(err.message)),
                }
                if let Some(pass) = feed.pass() {
                    crate::client::relay::unlock(pass);
                }
            });
        }
        locked
    });

    let on_scroll = move |_| {
        if let Some(el) = log.get_untracked() {
            let at_bottom = el.scroll_height() - el.scroll_top() - el.client_height() <= STICKY_SLACK_PX;
            sticky.set_value(at_bottom);
            if at_bottom {
                seen.set(feed.newest_id());
            }
        }
    };
    Effect::new(move |_| {
        feed.track_rows();
        if sticky.get_value() {
            // Now, and again once the frame is laid out: this effect may run before the list has put the new
            // rows in, and scrolling then would stop one row short of the bottom.
            let to_bottom = move || {
                if let Some(el) = log.get_untracked().filter(|_| sticky.get_value()) {
                    el.set_scroll_top(el.scroll_height());
                }
            };
            to_bottom();
            request_animation_frame(to_bottom);
            seen.set(feed.newest_id());
        }
    });

    view! {
        // The log itself is not a live region: the backlog and this tab's own messages are not read out; what
        // arrives from others is, through the announcer below.
        <div class="log-frame">
        <div class="log" node_ref=log on:scroll=on_scroll role="log" aria-live="off" aria-label="Message log" tabindex="0">
            <Suspense fallback=|| view! { <p class="hint">"Loading messages…"</p> }>
                {move || Suspend::new(async move {
                    match first_page.await.0 {
                        Ok(page) => {
                            feed.renew_epoch(&page.epoch);
                            has_older.set(page.messages.first().is_some_and(|m| m.id > 1));
                            feed.merge_synced(page.messages);
                            feed.start_announcing();
                        }
                        Err(err) => first_error.set(Some(err.message)),
                    };
                    view! {
                        {move || first_error.get().map(|message| {
                            // A private feed's refusal is no failure: the page is waiting for a sign-in.
                            if feed.locked() {
                                view! { <p class="members-only">{message}</p> }.into_any()
                            } else {
                                view! { <p class="error" role="alert">{message}</p> }.into_any()
                            }
                        })}
                        <Show when=move || has_older.get()>
                            <button class="older" type="button" on:click=load_older disabled=move || loading_older.get()>
                                {move || if loading_older.get() { "Loading…" } else { "Load older messages" }}
                            </button>
                        </Show>
                        {move || older_error.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
                        <Show when=move || !feed.locked() && feed.with_rows(<[Message]>::is_empty)>
                            <p class="empty">
                                <small><em>"No messages yet — send one to publish it to all subscribed peers."</em></small>
                            </p>
                        </Show>
                        <For
                            each=move || feed.with_rows(<[Message]>::to_vec)
                            key=move |message| feed.row_key(message.id)
                            children=move |message: Message| {
                                let id = message.id;
                                let at = message.at.clone();
                                let time = Memo::new(move |_| hydrated.get().then(|| clock::local(&at)).flatten());
                                let class = author_class(&message.user);
                                let mark = mark::mark(&message.source);
                                let day = move || hydrated.get().then(|| day_starting_at(feed, id)).flatten();
                                // Erased by a moderator: its place and time stay, nothing of what it said.
                                let removed = message.removed;
                                let class = if removed { "removed".to_owned() } else { class };
                                let said = if removed {
                                    Either::Left(view! { <em>"message removed"</em> })
                                } else {
                                    // Each part is its own bidi run: a right-to-left mark in one cannot reorder
                                    // the other. The mark is an element of its own, outside the name's run.
                                    Either::Right(view! {
                                        <strong><bdi class="user">{message.user}</bdi>{mark}":"</strong>" "
                                        <bdi class="text">{message.text}</bdi>
                                    })
                                };
                                view! {
                                    <p data-key=id class=class>
                                        {move || day().map(|day| view! { <span class="day">{day}</span> })}
                                        <time datetime=message.at.clone() title=move || time.get().map(|t| t.full)>
                                            {move || time.get().map(|t| t.short)}
                                        </time>
                                        {said}
                                    </p>
                                }
                            }
                        />
                    }
                })}
            </Suspense>
        </div>
        <Show when=move || { hydrated.get() && unread.get() > 0 }>
            <button class="unread" type="button" on:click=jump_to_unread>
                {move || match unread.get() {
                    1 => "1 new message ↓".to_owned(),
                    n => format!("{n} new messages ↓"),
                }}
            </button>
        </Show>
        <p class="sr-only" aria-live="polite" aria-atomic="true">{move || feed.announcement()}</p>
        </div>
    }
}
