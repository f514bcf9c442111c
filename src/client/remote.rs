//! The tab's calls to the API. In the browser they are plain `fetch` requests against the server functions' public
//! contract (form-encoded POSTs, a GET with a numeric query, JSON answers), made with what the browser already has:
//! server_fn's own browser client and its query-string codec added 33 KB (brotli) to the wasm for these three
//! requests (BENCHMARKS.md). On the server (rendering the page) they are the server functions themselves.

use std::future::Future;

use crate::shared::domain::{Joined, LogPage, Message, PageLimits};
use crate::shared::error::{ApiError, ErrorKind};

/// One page of the log, with its epoch: above `since`, or below `before`, or (neither) the latest. `Send` so that a
/// resource can hold it on the server.
pub fn messages(
    since: Option<u64>,
    before: Option<u64>,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    #[cfg(feature = "hydrate")]
    {
        let query = match (since, before) {
            (Some(since), _) => format!("?since={since}"),
            (None, Some(before)) => format!("?before={before}"),
            (None, None) => String::new(),
        };
        browser::get_page(format!("{}{query}", crate::shared::api::LIST_MESSAGES_PATH))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        crate::shared::api::list_messages(since.map(|id| id.to_string()), before.map(|id| id.to_string()))
    }
}

/// The messages after `since` up to `until` (a notice's id) in the log of `epoch`: the URL names both ends and the
/// log, so its answer never changes once `until` is stored, and the browser's cache or any proxy may serve it
/// (`server::messages`). Without `until` (catching up to an unknown end): everything after `since`, as `messages`.
pub fn catch_up(
    since: u64,
    until: Option<u64>,
    epoch: &str,
) -> impl Future<Output = Result<LogPage, ApiError>> + Send + 'static {
    #[cfg(feature = "hydrate")]
    {
        let mut url = format!("{}?since={since}", crate::shared::api::LIST_MESSAGES_PATH);
        if let Some(until) = until {
            url.push_str(&format!("&until={until}"));
            // Epochs are hex; anything else is left out rather than spliced into the URL.
            if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
                url.push_str("&epoch=");
                url.push_str(epoch);
            }
        }
        browser::get_page(url)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (until, epoch);
        messages(Some(since), None)
    }
}

/// The first page of the log, as the server renders it into the page for the tab to hydrate with
/// (`OnceResource::new_str_blocking`): the epoch, a line break and the messages' JSON; or `!`, the error's kind, a
/// line break and its message. The tab reads it as it reads `GET /api/messages` (`json`), with no serde_json.
#[derive(Clone)]
pub struct FirstPage(pub Result<LogPage, ApiError>);

impl std::fmt::Display for FirstPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(page) => {
                f.write_str(&page.epoch)?;
                f.write_str("\n")?;
                #[cfg(feature = "hydrate")]
                let messages = {
                    let mut out = String::new();
                    crate::client::json::push_messages(&mut out, &page.messages);
                    out
                };
                #[cfg(not(feature = "hydrate"))]
                let messages = serde_json::to_string(&page.messages).map_err(|_| std::fmt::Error)?;
                f.write_str(&messages)
            }
            Err(err) => {
                f.write_str("!")?;
                f.write_str(err.kind.code())?;
                f.write_str("\n")?;
                f.write_str(&err.message)
            }
        }
    }
}

impl std::str::FromStr for FirstPage {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        if let Some(error) = text.strip_prefix('!') {
            let (kind, message) = error.split_once('\n').ok_or(())?;
            return Ok(Self(Err(ApiError::new(ErrorKind::from_code(kind).ok_or(())?, message))));
        }
        let (epoch, messages) = text.split_once('\n').ok_or(())?;
        #[cfg(feature = "hydrate")]
        let messages = crate::client::json::messages(messages).ok_or(())?;
        #[cfg(not(feature = "hydrate"))]
        let messages = serde_json::from_str(messages).map_err(|_| ())?;
        Ok(Self(Ok(LogPage { epoch: epoch.to_owned(), messages })))
    }
}

/// The server's limits, read once while the page renders on the server; the tab gets them with the page.
pub fn limits() -> impl Future<Output = Result<PageLimits, ApiError>> + Send + 'static {
    #[cfg(feature = "hydrate")]
    return send_wrapper::SendWrapper::new(async {
        let answer = browser::answer(crate::shared::wire::LIMITS_PATH, None).await?;
        answer.pick(|o| Some(PageLimits { max_message_chars: o.u64("max_message_chars")? as usize }))
    });
    #[cfg(not(feature = "hydrate"))]
    return crate::shared::api::limits();
}

pub async fn join(username: String) -> Result<Joined, ApiError> {
    #[cfg(feature = "hydrate")]
    {
        let answer = browser::answer(crate::shared::wire::JOIN_PATH, Some(&[("username", &username)])).await?;
        answer.pick(|o| Some(Joined { name: o.str("name")?, ticket: o.str("ticket")? }))
    }
    #[cfg(not(feature = "hydrate"))]
    return crate::shared::api::join(username).await;
}

/// A new idempotency key for one message (or id for one tab): 128 bits from the browser's cryptographic generator
/// (`crypto.getRandomValues`), as 32 hex digits. `Math.random` is not made for ids: its state can be recovered from
/// a few outputs, and some engines seed it alike. (The server binds keys and tab ids to the ticket as well, so an
/// id that leaks or repeats gives no hold on another tab's messages or lease.)
pub fn new_send_key() -> String {
    #[cfg(feature = "hydrate")]
    {
        let mut bytes = [0u8; 16];
        let filled =
            leptos::prelude::window().crypto().and_then(|crypto| crypto.get_random_values_with_u8_array(&mut bytes));
        if filled.is_err() {
            // Every browser that runs this page has it; were it missing, the time and a count still tell this
            // tab's keys apart (the server keeps keys per ticket).
            static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            bytes[..8].copy_from_slice(&(js_sys::Date::now() as u64).to_be_bytes());
            let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            bytes[8..].copy_from_slice(&made.to_be_bytes());
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    #[cfg(not(feature = "hydrate"))]
    String::new()
}

/// `key`: this message's idempotency key; sending again with it never stores the message twice.
pub async fn send_message(ticket: String, text: String, key: String) -> Result<Message, ApiError> {
    #[cfg(feature = "hydrate")]
    {
        let form: &[(&str, &str)] = &[("ticket", &ticket), ("text", &text), ("key", &key)];
        browser::answer(crate::shared::wire::SEND_PATH, Some(form)).await?.pick(|o| o.message())
    }
    #[cfg(not(feature = "hydrate"))]
    return crate::shared::api::send_message(ticket, text, key).await;
}

/// For other requests of the tab's (the relay's probe of a refused stream): one request that asks for JSON, and
/// the API error a refusal carries.
#[cfg(feature = "hydrate")]
pub use browser::{error_of, request};

/// Presence, from the browser only (the page renders no list on the server): who is here, this tab's heartbeat,
/// and its leaving.
#[cfg(feature = "hydrate")]
pub mod presence {
    use crate::shared::domain::{Beat, Here};
    use crate::shared::error::ApiError;
    use crate::shared::wire;

    pub async fn here() -> Result<Here, ApiError> {
        let answer = super::browser::answer(wire::PRESENCE_PATH, None).await?;
        answer.pick(|o| Some(Here { names: o.strings("names")? }))
    }

    pub async fn beat(ticket: String, tab: String) -> Result<Beat, ApiError> {
        let answer = super::browser::answer(wire::PRESENCE_PATH, Some(&[("ticket", &ticket), ("tab", &tab)])).await?;
        answer.pick(|o| Some(Beat { every_ms: o.u64("every_ms")? }))
    }

    /// Queued by the browser, which sends it even as the page goes away (`navigator.sendBeacon`, a form body).
    pub fn leave(ticket: &str, tab: &str) {
        let Ok(form) = web_sys::UrlSearchParams::new() else { return };
        form.append("ticket", ticket);
        form.append("tab", tab);
        let navigator = leptos::prelude::window().navigator();
        let _ = navigator.send_beacon_with_opt_url_search_params(wire::PRESENCE_LEAVE_PATH, Some(&form));
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::future::Future;

    use leptos::prelude::window;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{Headers, RequestInit, Response, UrlSearchParams};

    use crate::client::json;
    use crate::shared::domain::LogPage;
    use crate::shared::error::{ApiError, ErrorKind};

    /// A JSON object the API answered (`Joined`, `Message`, `PageLimits`, `Here`, `Beat`), read with the browser's
    /// `JSON.parse` (`json`); each call picks the fields its answer must have, and one without them is unreadable.
    pub struct Answer {
        object: json::Object,
        status: u16,
    }

    impl Answer {
        pub fn pick<T>(self, pick: impl FnOnce(&json::Object) -> Option<T>) -> Result<T, ApiError> {
            pick(&self.object).ok_or_else(|| unreadable(self.status))
        }
    }

    /// A page of the log: the JSON body, and the epoch from its header. `Send` (the tab has one thread) so that a
    /// resource can hold it.
    pub fn get_page(url: String) -> impl Future<Output = Result<LogPage, ApiError>> + Send {
        SendWrapper::new(async move {
            let (response, body) = exchange(&url, None).await?;
            let messages = json::messages(&body).ok_or_else(|| unreadable(response.status()))?;
            let epoch = response.headers().get(crate::shared::wire::EPOCH_HEADER).ok().flatten().unwrap_or_default();
            Ok(LogPage { epoch, messages })
        })
    }

    /// The JSON object `url` answers (to a form POST with `form`, or a GET without).
    pub async fn answer(url: &str, form: Option<&[(&str, &str)]>) -> Result<Answer, ApiError> {
        let (response, body) = exchange(url, form).await?;
        let status = response.status();
        Ok(Answer { object: json::object(&body).ok_or_else(|| unreadable(status))?, status })
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

    /// Sends `init` to `url`, asking for JSON (and saying the body's `content_type`, if any): the answer, whatever
    /// its status.
    pub async fn request(url: &str, init: RequestInit, content_type: Option<&str>) -> Result<Response, ApiError> {
        let headers = Headers::new().map_err(unreachable)?;
        headers.set("Accept", "application/json").map_err(unreachable)?;
        if let Some(content_type) = content_type {
            headers.set("Content-Type", content_type).map_err(unreachable)?;
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
            Ok(body) => json::object(&body).and_then(|o| o.error()).unwrap_or_else(|| unreadable(response.status())),
            Err(err) => err,
        }
    }

    /// One request (a form POST with `form`, or a GET without): the response and its body, or the API error a
    /// refusal carries.
    async fn exchange(url: &str, form: Option<&[(&str, &str)]>) -> Result<(Response, String), ApiError> {
        let init = RequestInit::new();
        let mut content_type = None;
        if let Some(form) = form {
            let params = UrlSearchParams::new().map_err(unreachable)?;
            for (name, value) in form {
                params.append(name, value);
            }
            init.set_method("POST");
            init.set_body(&JsValue::from(params.to_string()));
            content_type = Some("application/x-www-form-urlencoded");
        }
        let response = request(url, init, content_type).await?;
        if !response.ok() {
            return Err(error_of(&response).await);
        }
        let body = body(&response).await?;
        Ok((response, body))
    }
}
