//! Joining and sending. The name and the ticket live in this component's memory only (never a cookie or
//! storage), so each tab is its own author and a reload asks again.

use leptos::ev::SubmitEvent;
use leptos::html::Input;
use leptos::prelude::*;

use crate::client::log::Feed;
use crate::client::mark;
use crate::client::presence::Presence;
use crate::client::remote;
use crate::shared::domain::{Joined, Message};
use crate::shared::error::{ApiError, ErrorKind};

type JoinAction = Action<String, Result<Joined, ApiError>>;

/// A form's submit handler: no page load, the input's value dispatched to `action`.
fn submit_input<O: 'static>(input: NodeRef<Input>, action: Action<String, O>) -> impl Fn(SubmitEvent) + Copy {
    move |ev: SubmitEvent| {
        ev.prevent_default();
        if let Some(el) = input.get_untracked() {
            action.dispatch_local(el.value());
        }
    }
}

/// Characters as the server counts them, near enough: trimmed, in code points (the server also composes accents
/// first, so it may count fewer; its refusal is shown if it differs).
fn chars_of(text: &str) -> usize {
    text.trim().chars().count()
}

/// The message of a failed action, if the last one failed.
fn error_of<T>(outcome: Option<Result<T, ApiError>>) -> Option<String> {
    outcome.and_then(Result::err).map(|err| err.message)
}

#[component]
pub fn Composer(feed: Feed, here: Presence) -> impl IntoView {
    let join: JoinAction = Action::new_local(move |name: &String| remote::join(feed.name(), name.clone()));
    let joined = Memo::new(move |_| join.value().get().and_then(Result::ok));
    move || match joined.get() {
        Some(joined) => view! { <SendForm feed here joined/> }.into_any(),
        None => view! { <JoinForm join/> }.into_any(),
    }
}

#[component]
fn JoinForm(join: JoinAction) -> impl IntoView {
    let input = NodeRef::<Input>::new();
    let on_submit = submit_input(input, join);
    view! {
        <section class="composer">
            <form on:submit=on_submit>
                <fieldset role="group">
                    <input node_ref=input name="username" placeholder="Pick a name…" aria-label="Username" required autocomplete="nickname"/>
                    <button type="submit">"Join"</button>
                </fieldset>
            </form>
            {move || error_of(join.value().get()).map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </section>
    }
}

#[component]
fn SendForm(feed: Feed, here: Presence, joined: Joined) -> impl IntoView {
    feed.joined_as(&joined.name);
    here.joined(joined.ticket.clone());
    let ticket = joined.ticket;
    // The server's limit, asked once the form appears; until it is known, the server alone decides.
    let limit = RwSignal::new(None::<usize>);
    leptos::task::spawn_local(async move {
        if let Ok(limits) = remote::limits().await {
            limit.set(Some(limits.max_message_chars));
        }
    });
    // The text sent last and not acknowledged yet, with its key: sending the same text again (a retry after a
    // network failure or a 503) reuses the key, so the server stores it once however often it arrived.
    let unacknowledged = StoredValue::new(None::<(String, String)>);
    let send = Action::<String, Result<Message, ApiError>>::new_local(move |text: &String| {
        let key = unacknowledged
            .with_value(|sent| sent.as_ref().filter(|(sent, _)| sent == text).map(|(_, key)| key.clone()))
            .unwrap_or_else(remote::new_send_key);
        unacknowledged.set_value(Some((text.clone(), key.clone())));
        // Over the limit: refused here, in the server's words, and nothing is sent.
        let got = chars_of(text);
        let too_long = limit.get_untracked().filter(|max| got > *max).map(|max| {
            ApiError::new(
                ErrorKind::InvalidInput,
                format!("Messages are at most {max} characters; this one has {got}."),
            )
        });
        let (ticket, text) = (ticket.clone(), text.clone());
        async move {
            match too_long {
                Some(refusal) => Err(refusal),
                None => remote::send_message(feed.name(), ticket, text, key).await,
            }
        }
    });
    let input = NodeRef::<Input>::new();
    let on_submit = submit_input(input, send);
    let typed = RwSignal::new(0_usize);
    // Shown from 90 % of the limit on.
    let counter = move || {
        let (got, max) = (typed.get(), limit.get()?);
        (got * 10 >= max * 9).then_some((got, max))
    };
    Effect::new(move |_| {
        if let Some(Ok(message)) = send.value().get() {
            unacknowledged.set_value(None);
            feed.merge(vec![message.clone()]);
            if let Some(el) = input.get_untracked() {
                // Keep what was typed after pressing Send; clear only what was sent.
                if el.value().trim() == message.text {
                    el.set_value("");
                    typed.set(0);
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
            <p class="posting-as"><small>"Posting as "<strong>{joined.name}</strong>{mark::mark(&joined.source)}</small></p>
            <form on:submit=on_submit>
                <fieldset role="group">
                    <input
                        node_ref=input
                        name="text"
                        placeholder="Type a message…"
                        aria-label="Message"
                        aria-describedby="message-counter"
                        required
                        autocomplete="off"
                        on:input=move |_| typed.set(input.get_untracked().map_or(0, |el| chars_of(&el.value())))
                    />
                    // The input stays editable while a send is in flight; the button shows it is under way.
                    <button type="submit" aria-busy=move || send.pending().get().then_some("true")>
                        {move || if send.pending().get() { "Sending…" } else { "Send" }}
                    </button>
                </fieldset>
            </form>
            <p id="message-counter" class="counter" class:over=move || counter().is_some_and(|(got, max)| got > max)>
                {move || counter().map(|(got, max)| format!("{got} / {max} characters"))}
            </p>
            {move || error_of(send.value().get()).map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </section>
    }
}
