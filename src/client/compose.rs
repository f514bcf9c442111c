//! Joining and sending. The name and the ticket live in this component's memory only (never a cookie or
//! storage), so each tab is its own author and a reload asks again.

use leptos::ev::SubmitEvent;
use leptos::html::Input;
use leptos::prelude::*;

use crate::client::{remote, Feed};
use crate::shared::domain::{Joined, Message};
use crate::shared::error::ApiError;

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

/// The message of a failed action, if the last one failed.
fn error_of<T>(outcome: Option<Result<T, ApiError>>) -> Option<String> {
    outcome.and_then(Result::err).map(|err| err.message)
}

#[component]
pub fn Composer(feed: Feed) -> impl IntoView {
    let join: JoinAction = Action::new_local(|name: &String| remote::join(name.clone()));
    let joined = Memo::new(move |_| join.value().get().and_then(Result::ok));
    move || match joined.get() {
        Some(joined) => view! { <SendForm feed joined/> }.into_any(),
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
fn SendForm(feed: Feed, joined: Joined) -> impl IntoView {
    feed.joined_as(&joined.name);
    let ticket = joined.ticket;
    let send = Action::<String, Result<Message, ApiError>>::new_local(move |text: &String| {
        remote::send_message(ticket.clone(), text.clone())
    });
    let input = NodeRef::<Input>::new();
    let on_submit = submit_input(input, send);
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
            <form on:submit=on_submit>
                <fieldset role="group">
                    <input node_ref=input name="text" placeholder="Type a message…" aria-label="Message" required autocomplete="off"/>
                    // The input stays editable while a send is in flight; the button shows it is under way.
                    <button type="submit" aria-busy=move || send.pending().get().then_some("true")>
                        {move || if send.pending().get() { "Sending…" } else { "Send" }}
                    </button>
                </fieldset>
            </form>
            {move || error_of(send.value().get()).map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </section>
    }
}
