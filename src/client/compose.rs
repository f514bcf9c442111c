//! Joining and sending. The name and the ticket live in this component's memory only (never a cookie or
//! storage), so each tab is its own author and a reload asks again.

use leptos::html::Input;
use leptos::prelude::*;

use crate::client::Feed;
use crate::shared::api::{Join, SendMessage};
use crate::shared::domain::Joined;
use crate::shared::error::ApiError;

/// The message of a failed action, if the last one failed.
fn error_of<T>(outcome: Option<Result<T, ApiError>>) -> Option<String> {
    outcome.and_then(Result::err).map(|err| err.message)
}

#[component]
pub fn Composer(feed: Feed) -> impl IntoView {
    let join = ServerAction::<Join>::new();
    let joined = Memo::new(move |_| join.value().get().and_then(Result::ok));
    move || match joined.get() {
        Some(joined) => view! { <SendForm feed joined/> }.into_any(),
        None => view! { <JoinForm join/> }.into_any(),
    }
}

#[component]
fn JoinForm(join: ServerAction<Join>) -> impl IntoView {
    view! {
        <section class="composer">
            <ActionForm action=join>
                <fieldset role="group">
                    <input name="username" placeholder="Pick a name…" aria-label="Username" required autocomplete="nickname"/>
                    <button type="submit">"Join"</button>
                </fieldset>
            </ActionForm>
            {move || error_of(join.value().get()).map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </section>
    }
}

#[component]
fn SendForm(feed: Feed, joined: Joined) -> impl IntoView {
    let send = ServerAction::<SendMessage>::new();
    let input = NodeRef::<Input>::new();
    Effect::new(move |_| {
        if let Some(Ok(message)) = send.value().get() {
            feed.merge(vec![message.clone()]);
            if let Some(el) = input.get_untracked() {
                // Keep what was typed after pressing Send; clear only what was sent.
                if el.value().trim() == message.text {
                    el.set_value("");
                }
                let _ = el.focus();
            }
        }
    });
    // Focus the message box as soon as the form appears.
    Effect::new(move |_| {
        if let Some(el) = input.get() {
            let _ = el.focus();
        }
    });
    view! {
        <section class="composer">
            <p class="posting-as"><small>"Posting as "<strong>{joined.name}</strong></small></p>
            <ActionForm action=send>
                <fieldset role="group">
                    <input type="hidden" name="ticket" value=joined.ticket/>
                    <input node_ref=input name="text" placeholder="Type a message…" aria-label="Message" required autocomplete="off"/>
                    <button type="submit">"Send"</button>
                </fieldset>
            </ActionForm>
            {move || error_of(send.value().get()).map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </section>
    }
}
