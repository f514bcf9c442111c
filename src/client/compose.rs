//! Joining and sending. The name and the ticket live in this component's memory only (never a cookie or
//! storage), so each tab is its own author and a reload asks again.
//!
//! How a tab joins is the server's `join` setting, which the page is rendered with (`codec::FirstLimits`, so the
//! server renders the same form the tab hydrates): a name typed in the form, a token of the deployer's site, or
//! either. The site hands a token over in the address's fragment (`/f/team#token=…`), which no request carries: once
//! hydrated, the tab takes it out of the address bar (`place::take_token`), joins with it, and shows "Posting as
//! NAME" with the name's mark. Where only tokens are taken and none came, the form says so instead of asking for a
//! name.
//!
//! A token's ticket expires with the token (`Joined::expires`). Shortly before, the tab asks the site's refresh URL
//! for a new token and joins again without a word (the form and what is typed stay); with no refresh URL, or if
//! that fails, it says the sign-in expired and shows the join form again.

use std::time::Duration;

use leptos::ev::SubmitEvent;
use leptos::html::Input;
use leptos::prelude::*;

use crate::client::codec::FirstLimits;
use crate::client::log::Feed;
use crate::client::presence::Presence;
use crate::client::remote::{self, Credential};
use crate::client::{clock, mark, place};
use crate::shared::domain::{Joined, Message, PageLimits};
use crate::shared::error::{ApiError, ErrorKind};

type JoinAction = Action<Credential, Result<Joined, ApiError>>;

/// How long before a sign-in expires the tab asks for a new token: a minute, or a fifth of a shorter sign-in.
const RENEW_AHEAD_SECS: f64 = 60.0;

/// What the join form says when a sign-in ran out and could not be renewed.
const EXPIRED: &str = "Your sign-in expired; rejoin.";

/// A form's submit handler: no page load, the input's value dispatched to `action` (as `wrap` makes it its input).
fn submit_input<I: Send + Sync + 'static, O: 'static>(
    input: NodeRef<Input>,
    action: Action<I, O>,
    wrap: fn(String) -> I,
) -> impl Fn(SubmitEvent) + Copy {
    move |ev: SubmitEvent| {
        ev.prevent_default();
        if let Some(el) = input.get_untracked() {
            action.dispatch_local(wrap(el.value()));
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

/// Seconds from `now` until the tab should renew a sign-in that expires at `expires`, and until it expires.
fn renewal_times(expires: u64, now: f64) -> (f64, f64) {
    let left = (expires as f64 - now).max(0.0);
    let ahead = RENEW_AHEAD_SECS.min(left / 5.0);
    (left - ahead, left)
}

#[component]
pub fn Composer(feed: Feed, here: Presence) -> impl IntoView {
    // Rendered with the page, so the server renders the join form the tab hydrates.
    let first = remote::limits();
    let limits = OnceResource::new_str_blocking(async move { FirstLimits(first.await) });
    let join: JoinAction =
        Action::new_local(move |credential: &Credential| remote::join(feed.name(), credential.clone()));
    // The tab's sign-in: set by every join that succeeds (the first, and each renewal), cleared when it runs out.
    let session = RwSignal::new(None::<Joined>);
    let expired = RwSignal::new(None::<&'static str>);
    Effect::new(move |_| {
        if let Some(Ok(joined)) = join.value().get() {
            expired.set(None);
            // A private feed's read pass: every read of the feed carries it from now on. The first opens the feed
            // (the log loads, then the browser's stream carries it: `feed::FeedLog`); a renewal's replaces it.
            if let Some(pass) = &joined.pass {
                remote::hold_pass(pass);
                // Who is here could not be read without the pass: it can now.
                here.refresh();
                if feed.locked_untracked() {
                    feed.unlock(pass.clone());
                } else {
                    crate::client::relay::unlock(pass.clone());
                }
            }
            session.set(Some(joined));
        }
    });
    // Once hydrated: a token the site handed over in the address's fragment.
    Effect::new(move |_| {
        if let Some(token) = place::take_token() {
            join.dispatch_local(Credential::Token(token));
        }
    });
    let signed_in = Memo::new(move |_| session.with(Option::is_some));
    view! {
        <Suspense fallback=|| view! { <section class="composer"></section> }>
            {move || Suspend::new(async move {
                let limits = limits.await.0.ok();
                move || {
                    let limits = limits.clone();
                    if signed_in.get() {
                        view! { <SendForm feed here session limits join expired/> }.into_any()
                    } else {
                        view! { <JoinForm join limits expired/> }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[component]
fn JoinForm(join: JoinAction, limits: Option<PageLimits>, expired: RwSignal<Option<&'static str>>) -> impl IntoView {
    let input = NodeRef::<Input>::new();
    let on_submit = submit_input(input, join, Credential::Name);
    let takes_names = limits.as_ref().is_none_or(|limits| limits.join.takes_names());
    let form = if takes_names {
        // Before the page is interactive the form cannot be sent (its one button is disabled, which also stops Enter):
        // sent then, it would leave the page for the join's JSON. It posts, so even then no name lands in a URL.
        let ready = RwSignal::new(false);
        Effect::new(move |_| ready.set(true));
        let feed = place::feed();
        let feed_field = (!feed.is_main()).then(|| feed.to_string());
        view! {
            <form on:submit=on_submit method="post" action=crate::shared::wire::JOIN_PATH>
                {feed_field.map(|feed| view! { <input type="hidden" name=crate::shared::wire::FEED_FIELD value=feed/> })}
                <fieldset role="group">
                    <input node_ref=input name="username" placeholder="Pick a name…" aria-label="Username" required autocomplete="nickname"/>
                    <button type="submit" disabled=move || !ready.get()>"Join"</button>
                </fieldset>
            </form>
        }
        .into_any()
    } else {
        view! {
            <p class="sign-in-needed">
                "This feed needs the site's sign-in. Open it from the site you signed in to, which lets this page know who you are."
            </p>
        }
        .into_any()
    };
    // While a token from the address is being checked, the page says so.
    let checking = move || {
        let token = join.pending().get() && matches!(join.input().get(), Some(Credential::Token(_)));
        token.then(|| view! { <p class="hint" aria-live="polite">"Signing in…"</p> })
    };
    view! {
        <section class="composer">
            {move || expired.get().map(|notice| view! { <p class="error" role="alert">{notice}</p> })}
            {form}
            {checking}
            {move || error_of(join.value().get()).map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </section>
    }
}

/// Renews the sign-in shortly before it runs out (through the site's refresh URL, when there is one), and ends it
/// when it does; a later sign-in (a renewal) makes the timers of the one before do nothing.
fn keep_signed_in(
    session: RwSignal<Option<Joined>>,
    join: JoinAction,
    refresh_url: Option<String>,
    expired: RwSignal<Option<&'static str>>,
    here: Presence,
) {
    let round = StoredValue::new(0_u32);
    Effect::new(move |_| {
        let Some(expires) = session.with(|joined| joined.as_ref().and_then(|joined| joined.expires)) else { return };
        let this = round.try_update_value(|round| {
            *round = round.wrapping_add(1);
            *round
        });
        // A timer outliving the form (signed out meanwhile) finds its round gone, and does nothing.
        let current = move || this.is_some() && round.try_get_value() == this;
        let (renew_in, expires_in) = renewal_times(expires, clock::now_secs());
        if let Some(url) = refresh_url.clone() {
            set_timeout(
                move || {
                    if current() {
                        leptos::task::spawn_local(async move {
                            match remote::renew_token(url).await {
                                Ok(token) => {
                                    join.dispatch_local(Credential::Token(token));
                                }
                                Err(err) => leptos::logging::warn!("the sign-in could not be renewed: {err}"),
                            }
                        });
                    }
                },
                Duration::from_secs_f64(renew_in),
            );
        }
        set_timeout(
            move || {
                if current() {
                    here.left();
                    expired.set(Some(EXPIRED));
                    session.set(None);
                }
            },
            Duration::from_secs_f64(expires_in),
        );
    });
}

#[component]
fn SendForm(
    feed: Feed,
    here: Presence,
    session: RwSignal<Option<Joined>>,
    limits: Option<PageLimits>,
    join: JoinAction,
    expired: RwSignal<Option<&'static str>>,
) -> impl IntoView {
    let ticket = move || session.with_untracked(|joined| joined.as_ref().map(|joined| joined.ticket.clone()));
    if let Some(joined) = session.get_untracked() {
        feed.joined_as(&joined.name);
        here.joined(joined.ticket);
    }
    // A renewal: the same tab, with the new ticket.
    Effect::new(move |first: Option<()>| {
        let renewed = session.with(|joined| joined.as_ref().map(|joined| joined.ticket.clone()));
        if let (Some(()), Some(ticket)) = (first, renewed) {
            here.renewed(ticket);
        }
    });
    keep_signed_in(session, join, limits.as_ref().and_then(|limits| limits.refresh_url.clone()), expired, here);
    // The server's limit, rendered with the page; without it, the server alone decides.
    let limit = limits.as_ref().map(|limits| limits.max_message_chars);
    // The text sent last and not acknowledged yet, with its key: sending the same text again (a retry after a
    // network failure or a 503) reuses the key, so the server stores it once however often it arrived.
    let unacknowledged = StoredValue::new(None::<(String, String)>);
    let send = Action::<String, Result<Message, ApiError>>::new_local(move |text: &String| {
        let text = text.clone();
        let key = unacknowledged
            .with_value(|sent| sent.as_ref().filter(|(sent, _)| *sent == text).map(|(_, key)| key.clone()))
            .unwrap_or_else(remote::new_send_key);
        unacknowledged.set_value(Some((text.clone(), key.clone())));
        // Over the limit: refused here, in the server's words, and nothing is sent.
        let got = chars_of(&text);
        let too_long = limit.filter(|max| got > *max).map(|max| {
            ApiError::new(
                ErrorKind::InvalidInput,
                format!("Messages are at most {max} characters; this one has {got}."),
            )
        });
        let ticket = ticket().unwrap_or_default();
        async move {
            match too_long {
                Some(refusal) => Err(refusal),
                None => remote::send_message(feed.name(), ticket, text, key).await,
            }
        }
    });
    let input = NodeRef::<Input>::new();
    let on_submit = submit_input(input, send, std::convert::identity);
    let typed = RwSignal::new(0_usize);
    // Shown from 90 % of the limit on.
    let counter = move || {
        let (got, max) = (typed.get(), limit?);
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
    let name = move || session.with(|joined| joined.as_ref().map(|joined| joined.name.clone()));
    let badge = move || session.with(|joined| joined.as_ref().and_then(|joined| mark::mark(&joined.source)));
    view! {
        <section class="composer">
            <p class="posting-as"><small>"Posting as "<strong>{name}</strong>{badge}</small></p>
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_is_renewed_a_minute_before_it_ends_or_a_fifth_of_a_short_one() {
        assert_eq!(renewal_times(1_000 + 3_600, 1_000.0), (3_540.0, 3_600.0));
        assert_eq!(renewal_times(1_000 + 100, 1_000.0), (80.0, 100.0));
        assert_eq!(renewal_times(1_000, 1_500.0), (0.0, 0.0), "already over: at once");
    }
}
