//! The API's calls from the tab: `fetch` requests with form bodies and JSON answers, read by `codec`. Each answer
//! that lacks what its type needs is unreadable, with the HTTP status in words; a refusal carries the API's own
//! error (`{"kind": ..., "message": ...}`).

use std::future::Future;

use leptos::prelude::window;
use send_wrapper::SendWrapper;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestInit, Response};

use crate::client::codec::{self, FromJson};
use crate::client::session;
use crate::shared::domain::{FeedName, Joined, LogPage, Message, PageLimits};
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

pub fn messages(
    feed: &FeedName,
    since: Option<u64>,
    before: Option<u64>,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    get_page(codec::page_url(feed, since, before))
}

pub fn catch_up(
    feed: &FeedName,
    since: u64,
    until: Option<u64>,
    epoch: &str,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    get_page(codec::catch_up_url(feed, since, until, epoch))
}

thread_local! {
    /// The private feed's read pass, once the tab joined (`super::hold_pass`).
    static PASS: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

pub fn hold_pass(pass: &str) {
    PASS.with(|held| *held.borrow_mut() = Some(pass.to_owned()));
}

pub fn limits() -> impl Future<Output = Result<PageLimits, ApiError>> + Send + 'static {
    SendWrapper::new(answer(wire::LIMITS_PATH, None))
}

pub async fn join(feed: FeedName, credential: super::Credential) -> Result<Joined, ApiError> {
    // The ticket is signed for the group this request names: the page keeps that group from now on.
    session::bind();
    let (field, value) = match &credential {
        super::Credential::Name(name) => ("username", name),
        super::Credential::Token(token) => (wire::TOKEN_FIELD, token),
    };
    answer(wire::JOIN_PATH, Some(&with_feed(&feed, vec![(field, value)]))).await
}

pub async fn renew_token(url: String) -> Result<String, ApiError> {
    let init = RequestInit::new();
    init.set_method("POST");
    // The site knows its user by its own cookies, also when it is another origin (which must allow this one).
    init.set_credentials(web_sys::RequestCredentials::Include);
    let response = request(&url, init, None).await?;
    let status = response.status();
    let answer = if response.ok() { codec::object::<codec::Renewed>(&body(&response).await?) } else { None };
    answer.map(|renewed| renewed.token).ok_or_else(|| unreadable(status))
}

pub async fn send_message(feed: FeedName, ticket: String, text: String, key: String) -> Result<Message, ApiError> {
    answer(wire::SEND_PATH, Some(&with_feed(&feed, vec![("ticket", &ticket), ("text", &text), ("key", &key)]))).await
}

/// The form's fields and, for a feed other than `main`, the feed's (left out for `main`, so `/` sends exactly what
/// it sent before feeds).
fn with_feed<'a>(feed: &'a FeedName, mut fields: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    if !feed.is_main() {
        fields.push((wire::FEED_FIELD, feed.as_str()));
    }
    fields
}

pub fn new_send_key() -> String {
    let mut bytes = [0u8; 16];
    let filled = window().crypto().and_then(|crypto| crypto.get_random_values_with_u8_array(&mut bytes));
    if filled.is_err() {
        // Every browser that runs this page has it; were it missing, the time and a count still tell this tab's
        // keys apart (the server keeps keys per ticket).
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        bytes[..8].copy_from_slice(&(js_sys::Date::now() as u64).to_be_bytes());
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[8..].copy_from_slice(&made.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Presence: who is here, this tab's heartbeat, and its leaving.
pub mod presence {
    use crate::client::codec;
    use crate::shared::domain::{Beat, FeedName, Here};
    use crate::shared::error::ApiError;

    pub async fn here(feed: &FeedName) -> Result<Here, ApiError> {
        super::answer(&codec::presence_path(feed, false), None).await
    }

    pub async fn beat(feed: &FeedName, ticket: String, tab: String) -> Result<Beat, ApiError> {
        super::answer(&codec::presence_path(feed, false), Some(&[("ticket", &ticket), ("tab", &tab)])).await
    }

    /// Queued by the browser, which sends it even as the page goes away (`navigator.sendBeacon`). Given as
    /// `URLSearchParams` (the body `codec::form` writes) so that the browser labels it a form, as the server expects.
    pub fn leave(feed: &FeedName, ticket: &str, tab: &str) {
        let Ok(form) = web_sys::UrlSearchParams::new_with_str(&codec::form(&[("ticket", ticket), ("tab", tab)])) else {
            return;
        };
        let navigator = leptos::prelude::window().navigator();
        // A beacon carries no header of the page's: its group, if it holds one, goes in the query.
        let url = crate::client::session::with_group(codec::presence_path(feed, true));
        let _ = navigator.send_beacon_with_opt_url_search_params(&url, Some(&form));
    }
}

/// A page of the log: the JSON body, and the epoch from its header. `Send` (the tab has one thread) so that a
/// resource can hold it.
fn get_page(url: String) -> impl Future<Output = Result<LogPage, ApiError>> + Send {
    SendWrapper::new(async move {
        let (response, body) = exchange(&url, None).await?;
        let messages = codec::messages(&body).ok_or_else(|| unreadable(response.status()))?;
        let epoch = response.headers().get(wire::EPOCH_HEADER).ok().flatten().unwrap_or_default();
        Ok(LogPage { epoch, messages })
    })
}

/// The JSON object `url` answers (to a form POST with `form`, or a GET without), as `T`.
async fn answer<T: FromJson>(url: &str, form: Option<&[(&str, &str)]>) -> Result<T, ApiError> {
    let (response, body) = exchange(url, form).await?;
    codec::object(&body).ok_or_else(|| unreadable(response.status()))
}

fn unreachable(_: JsValue) -> ApiError {
    ApiError::new(ErrorKind::Network, "Could not reach the server; check the connection and try again.")
}

fn unreadable(status: u16) -> ApiError {
    let mut message = "Unexpected answer from the server (HTTP ".to_owned();
    message.push_str(&status.to_string());
    message.push_str(").");
    ApiError::new(ErrorKind::Network, message)
}

/// Sends `init` to `url`, asking for JSON (and saying the body's `content_type`, if any), naming the page's session
/// group if it holds one (`session`): the answer, whatever its status. For other requests of the tab's too (the
/// relay's probe of a refused stream).
pub async fn request(url: &str, init: RequestInit, content_type: Option<&str>) -> Result<Response, ApiError> {
    let headers = Headers::new().map_err(unreachable)?;
    headers.set("Accept", "application/json").map_err(unreachable)?;
    if let Some(content_type) = content_type {
        headers.set("Content-Type", content_type).map_err(unreachable)?;
    }
    if let Some(group) = session::group() {
        headers.set(wire::GROUP_HEADER, &group).map_err(unreachable)?;
    }
    if let Some(pass) = PASS.with(|held| held.borrow().clone()) {
        headers.set("Authorization", &format!("Bearer {pass}")).map_err(unreachable)?;
    }
    init.set_headers(&headers);
    Ok(JsFuture::from(window().fetch_with_str_and_init(url, &init)).await.map_err(unreachable)?.unchecked_into())
}

async fn body(response: &Response) -> Result<String, ApiError> {
    let text = JsFuture::from(response.text().map_err(unreachable)?).await.map_err(unreachable)?;
    Ok(text.as_string().unwrap_or_default())
}

/// The API error a refusal (an answer that is not OK) carries, or a sentence saying it carries none.
pub async fn error_of(response: &Response) -> ApiError {
    match body(response).await {
        Ok(body) => codec::object(&body).unwrap_or_else(|| unreadable(response.status())),
        Err(err) => err,
    }
}

/// One request (a form POST with `form`, or a GET without): the response and its body, or the API error a refusal
/// carries.
async fn exchange(url: &str, form: Option<&[(&str, &str)]>) -> Result<(Response, String), ApiError> {
    let init = RequestInit::new();
    let mut content_type = None;
    if let Some(form) = form {
        init.set_method("POST");
        init.set_body(&JsValue::from(codec::form(form)));
        content_type = Some("application/x-www-form-urlencoded");
    }
    let response = request(url, init, content_type).await?;
    if !response.ok() {
        return Err(error_of(&response).await);
    }
    let body = body(&response).await?;
    Ok((response, body))
}
