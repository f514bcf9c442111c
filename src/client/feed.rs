//! The message log as the tab holds it: rows keyed by id, merged from pages without duplicates, rendered as a
//! list that only grows by the new rows, and kept scrolled to the bottom unless the reader scrolled up.

use leptos::html::Div;
use leptos::prelude::*;

use crate::client::remote;
use crate::shared::domain::Message;

/// Distance from the bottom, in pixels, within which the log counts as "at the bottom" and follows new rows.
const STICKY_SLACK_PX: i32 = 40;

#[derive(Clone, Copy)]
pub struct Feed {
    rows: RwSignal<Vec<Message>>,
    /// Every message up to this id has been fetched (the catch-up watermark). A message this tab sent itself is
    /// shown at once but does not move it, since messages from others may precede it.
    synced_to: StoredValue<u64>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    pub fn new() -> Self {
        Self { rows: RwSignal::new(Vec::new()), synced_to: StoredValue::new(0) }
    }

    /// Adds messages not shown yet (e.g. the one this tab just sent).
    pub fn merge(&self, page: Vec<Message>) {
        self.rows.maybe_update(|rows| merge_into(rows, page));
    }

    /// Adds a page fetched with `since = synced_to()`, and moves the watermark to its end.
    pub fn merge_synced(&self, page: Vec<Message>) {
        if let Some(last) = page.last() {
            let last = last.id;
            self.synced_to.update_value(|synced| *synced = (*synced).max(last));
        }
        self.merge(page);
    }

    pub fn synced_to(&self) -> u64 {
        self.synced_to.get_value()
    }

    fn oldest_id(&self) -> Option<u64> {
        self.rows.with_untracked(|rows| rows.first().map(|m| m.id))
    }
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
pub fn FeedLog(feed: Feed) -> impl IntoView {
    // Rendered on the server into the first HTML; the browser reuses the serialized page.
    let first_page = OnceResource::new_blocking(remote::messages(None, None));
    let log = NodeRef::<Div>::new();
    let sticky = StoredValue::new(true);
    // Whether older messages may exist above the oldest shown (ids start at 1).
    let has_older = RwSignal::new(false);
    let loading_older = RwSignal::new(false);
    let older_error = RwSignal::new(None::<String>);

    let load_older = move |_| {
        let Some(oldest) = feed.oldest_id() else { return };
        loading_older.set(true);
        leptos::task::spawn_local(async move {
            match remote::messages(None, Some(oldest)).await {
                Ok(page) => {
                    older_error.set(None);
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
            sticky.set_value(el.scroll_height() - el.scroll_top() - el.client_height() <= STICKY_SLACK_PX);
        }
    };
    Effect::new(move |_| {
        feed.rows.track();
        if sticky.get_value() {
            if let Some(el) = log.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
        }
    });

    view! {
        <div class="log" node_ref=log on:scroll=on_scroll role="log" aria-live="polite" aria-label="Message log">
            <Suspense fallback=|| view! { <p class="hint">"Loading messages…"</p> }>
                {move || Suspend::new(async move {
                    let error = match first_page.await {
                        Ok(page) => {
                            has_older.set(page.first().is_some_and(|m| m.id > 1));
                            feed.merge_synced(page);
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
                            key=|message| message.id
                            children=|message: Message| {
                                view! {
                                    // Each part is its own bidi run: a right-to-left mark in one cannot reorder the other.
                                    <p data-key=message.id title=message.at>
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
