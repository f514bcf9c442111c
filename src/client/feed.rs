//! The message log as the tab holds it: rows keyed by id, merged from pages without duplicates, rendered as a
//! list that only grows by the new rows, and kept scrolled to the bottom unless the reader scrolled up; then a
//! "N new messages" button counts what arrived below. Messages from others that arrive live are announced to screen
//! readers (not the backlog, not this tab's own).

use leptos::html::Div;
use leptos::prelude::*;

use crate::client::{clock, remote};
use crate::shared::domain::Message;

/// Distance from the bottom, in pixels, within which the log counts as "at the bottom" and follows new rows.
const STICKY_SLACK_PX: i32 = 40;

#[derive(Clone, Copy)]
pub struct Feed {
    rows: RwSignal<Vec<Message>>,
    /// Every message up to this id has been fetched (the catch-up watermark). A message this tab sent itself is
    /// shown at once but does not move it, since messages from others may precede it.
    synced_to: StoredValue<u64>,
    /// Announced to screen readers: the newest message that arrived live from another tab or person.
    announcement: RwSignal<String>,
    /// Set once the first page is in: later arrivals are announced.
    announcing: StoredValue<bool>,
    /// The name this tab joined with: its own messages are not announced to it.
    me: StoredValue<Option<String>>,
    /// The epoch of the log the rows come from (empty until the first page).
    epoch: StoredValue<String>,
    /// How many times the log was made anew under this tab: part of each row's key, since an id of a new log may
    /// be the id of a row of the old one.
    generation: StoredValue<u32>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    pub fn new() -> Self {
        Self {
            rows: RwSignal::new(Vec::new()),
            synced_to: StoredValue::new(0),
            announcement: RwSignal::new(String::new()),
            announcing: StoredValue::new(false),
            me: StoredValue::new(None),
            epoch: StoredValue::new(String::new()),
            generation: StoredValue::new(0),
        }
    }

    /// The epoch of the log the rows come from (empty until the first page).
    pub fn epoch(&self) -> String {
        self.epoch.get_value()
    }

    /// A page came from the log of `epoch`. If the tab's rows are of another epoch, that log is gone (ids start
    /// again from 1 in a new one): forget the rows and the watermark, so the tab reads the new log from its start
    /// instead of waiting for ids that will never come. Answers whether it did.
    pub fn renew_epoch(&self, epoch: &str) -> bool {
        let known = self.epoch.with_value(|known| known.clone());
        if epoch.is_empty() || known == epoch {
            return false;
        }
        self.epoch.set_value(epoch.to_owned());
        if known.is_empty() {
            return false;
        }
        self.generation.update_value(|generation| *generation += 1);
        self.rows.set(Vec::new());
        self.synced_to.set_value(0);
        true
    }

    /// Adds messages not shown yet (e.g. the one this tab just sent).
    pub fn merge(&self, page: Vec<Message>) {
        self.rows.maybe_update(|rows| merge_into(rows, page));
    }

    /// Adds a page fetched with `since = synced_to()`, and moves the watermark to its end. What it adds was sent by
    /// others (this tab's own messages are in already, from their send), and is announced once the first page is in.
    pub fn merge_synced(&self, page: Vec<Message>) {
        if let Some(last) = page.last() {
            let last = last.id;
            self.synced_to.update_value(|synced| *synced = (*synced).max(last));
        }
        let fresh: Vec<(String, String)> = if self.announcing.get_value() {
            self.rows.with_untracked(|rows| {
                page.iter()
                    .filter(|m| rows.binary_search_by_key(&m.id, |r| r.id).is_err())
                    .filter(|m| self.me.with_value(|me| me.as_deref() != Some(m.user.as_str())))
                    .map(|m| (m.user.clone(), m.text.clone()))
                    .collect()
            })
        } else {
            Vec::new()
        };
        self.merge(page);
        if let Some((user, text)) = fresh.last() {
            self.announcement.set(match fresh.len() {
                1 => format!("{user}: {text}"),
                n => format!("{n} new messages. The latest, from {user}: {text}"),
            });
        }
    }

    /// This tab joined as `name`.
    pub fn joined_as(&self, name: &str) {
        self.me.set_value(Some(name.to_owned()));
    }

    pub fn synced_to(&self) -> u64 {
        self.synced_to.get_value()
    }

    fn oldest_id(&self) -> Option<u64> {
        self.rows.with_untracked(|rows| rows.first().map(|m| m.id))
    }

    fn newest_id(&self) -> u64 {
        self.rows.with_untracked(|rows| rows.last().map_or(0, |m| m.id))
    }

    /// The day a row starts, where it differs from the row before it (the reader's time zone).
    fn day_starting_at(&self, id: u64) -> Option<String> {
        self.rows.with(|rows| {
            let at = rows.binary_search_by_key(&id, |m| m.id).ok()?;
            let day = clock::local(&rows[at].at)?.day;
            let before = at.checked_sub(1).and_then(|prev| clock::local(&rows[prev].at)).map(|t| t.day);
            (before.as_ref() != Some(&day)).then_some(day)
        })
    }
}

/// One of 8 name colours (style/main.css, readable in light and dark), the same for a name in every tab.
fn author_class(name: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    format!("author-{}", hash % 8)
}

/// Merges `page` into `rows` (both in id order) without duplicates; answers whether anything was added.
pub fn merge_into(rows: &mut Vec<Message>, page: Vec<Message>) -> bool {
    let before = rows.len();
    for message in page {
        match rows.last() {
            Some(last) if last.id >= message.id => {
                if let Err(at) = rows.binary_search_by_key(&message.id, |m| m.id) {
                    rows.insert(at, message);
                }
            }
            _ => rows.push(message),
        }
    }
    rows.len() != before
}

#[component]
pub fn FeedLog(feed: Feed, hydrated: Signal<bool>) -> impl IntoView {
    // Rendered on the server into the first HTML; the browser reuses the serialized page.
    let first_page = OnceResource::new_str_blocking(async { remote::FirstPage(remote::messages(None, None).await) });
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
        feed.rows.with(|rows| rows.iter().rev().take_while(|m| m.id > seen).count())
    });
    let jump_to_unread = move |_| {
        let first = feed.rows.with_untracked(|rows| rows.iter().find(|m| m.id > seen.get_untracked()).map(|m| m.id));
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
            match remote::messages(None, Some(oldest)).await {
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
        feed.rows.track();
        if sticky.get_value() {
            if let Some(el) = log.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
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
                    let error = match first_page.await.0 {
                        Ok(page) => {
                            feed.renew_epoch(&page.epoch);
                            has_older.set(page.messages.first().is_some_and(|m| m.id > 1));
                            feed.merge_synced(page.messages);
                            feed.announcing.set_value(true);
                            None
                        }
                        Err(err) => Some(err.message),
                    };
                    view! {
                        {error.map(|message| view! { <p class="error" role="alert">{message}</p> })}
                        <Show when=move || has_older.get()>
                            <button class="older" type="button" on:click=load_older disabled=move || loading_older.get()>
                                {move || if loading_older.get() { "Loading…" } else { "Load older messages" }}
                            </button>
                        </Show>
                        {move || older_error.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
                        <Show when=move || feed.rows.with(Vec::is_empty)>
                            <p class="empty">
                                <small><em>"No messages yet — send one to publish it to all subscribed peers."</em></small>
                            </p>
                        </Show>
                        <For
                            each=move || feed.rows.get()
                            key=move |message| (feed.generation.get_value(), message.id)
                            children=move |message: Message| {
                                let id = message.id;
                                let at = message.at.clone();
                                let time = Memo::new(move |_| hydrated.get().then(|| clock::local(&at)).flatten());
                                let class = author_class(&message.user);
                                let day = move || hydrated.get().then(|| feed.day_starting_at(id)).flatten();
                                view! {
                                    // Each part is its own bidi run: a right-to-left mark in one cannot reorder the other.
                                    <p data-key=id class=class>
                                        {move || day().map(|day| view! { <span class="day">{day}</span> })}
                                        <time datetime=message.at.clone() title=move || time.get().map(|t| t.full)>
                                            {move || time.get().map(|t| t.short)}
                                        </time>
                                        <strong><bdi class="user">{message.user}</bdi>":"</strong>" "
                                        <bdi class="text">{message.text}</bdi>
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
        <p class="sr-only" aria-live="polite" aria-atomic="true">{move || feed.announcement.get()}</p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64) -> Message {
        Message { id, user: "u".into(), text: format!("t{id}"), at: String::new() }
    }

    fn ids(rows: &[Message]) -> Vec<u64> {
        rows.iter().map(|m| m.id).collect()
    }

    #[test]
    fn merging_appends_inserts_and_never_duplicates() {
        let mut rows = vec![];
        assert!(merge_into(&mut rows, vec![m(1), m(2)]));
        assert!(!merge_into(&mut rows, vec![m(1), m(2)]));
        assert!(merge_into(&mut rows, vec![m(5)]));
        assert!(merge_into(&mut rows, vec![m(3), m(4), m(5), m(6)]));
        assert_eq!(ids(&rows), vec![1, 2, 3, 4, 5, 6]);
        assert!(!merge_into(&mut rows, vec![]));
    }
}
