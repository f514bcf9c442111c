//! Every encoding and decoding the tab does, in one place: the JSON the API answers (a page of messages, the small
//! answer objects, the error body), the first page as the server writes it into the HTML, the lines tabs send each
//! other over the relay's channel, the form bodies and page URLs the tab asks with, and the stream's notice ids.
//!
//! The rules (which fields an answer must have, what a whole number is, how a relayed line is cut) are written once
//! here for both targets; only the JSON parser (and the form serializer) differs by target, chosen at the `mod` line
//! below: in the browser its own `JSON.parse` (serde_json's readers were the largest part of the wasm the page could
//! do without, BENCHMARKS.md), on the server and in the unit tests serde_json, which the server links anyway. JSON is
//! written by hand on both, with each target's string quoting, and gives serde_json's bytes (a test holds the two
//! together).
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(feature = "hydrate")]
use browser as json;
#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
use server as json;

use std::time::Duration;

use crate::shared::domain::{Beat, Here, Joined, LogPage, Message, PageLimits};
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

/// A type the API answers as one JSON object; `None` when the object lacks a field the type needs.
pub trait FromJson: Sized {
    fn from_json(object: &json::Value) -> Option<Self>;
}

/// `text` as a JSON object of type `T`, if it is one.
pub fn object<T: FromJson>(text: &str) -> Option<T> {
    json::parse(text).filter(json::Value::is_object).as_ref().and_then(T::from_json)
}

/// `text` as a JSON array of messages (a page of `GET /api/messages`, or a relayed page).
pub fn messages(text: &str) -> Option<Vec<Message>> {
    json::parse(text)?.items()?.map(|m| Message::from_json(&m)).collect()
}

/// Appends `messages` as a JSON array, as `messages` reads it and as the server writes it.
pub fn push_messages(out: &mut String, messages: &[Message]) {
    out.push('[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        out.push_str(&m.id.to_string());
        for (name, value) in [("user", &m.user), ("text", &m.text), ("at", &m.at)] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            json::push_string(out, value);
        }
        out.push('}');
    }
    out.push(']');
}

fn string(object: &json::Value, name: &str) -> Option<String> {
    object.field(name)?.string()
}

/// A whole number from 0 to 2^53 (exact in JSON's numbers, which are doubles in the browser).
fn whole(object: &json::Value, name: &str) -> Option<u64> {
    let n = object.field(name)?.number()?;
    ((0.0..=9_007_199_254_740_992.0).contains(&n) && n == (n as u64) as f64).then_some(n as u64)
}

impl FromJson for Message {
    fn from_json(o: &json::Value) -> Option<Self> {
        Some(Message { id: whole(o, "id")?, user: string(o, "user")?, text: string(o, "text")?, at: string(o, "at")? })
    }
}

/// The API's error body, `{"kind": ..., "message": ...}`.
impl FromJson for ApiError {
    fn from_json(o: &json::Value) -> Option<Self> {
        Some(ApiError::new(ErrorKind::from_code(&string(o, "kind")?)?, string(o, "message")?))
    }
}

impl FromJson for Joined {
    fn from_json(o: &json::Value) -> Option<Self> {
        Some(Joined { name: string(o, "name")?, ticket: string(o, "ticket")? })
    }
}

impl FromJson for PageLimits {
    fn from_json(o: &json::Value) -> Option<Self> {
        Some(PageLimits { max_message_chars: whole(o, "max_message_chars")? as usize })
    }
}

impl FromJson for Here {
    fn from_json(o: &json::Value) -> Option<Self> {
        let names = o.field("names")?.items()?.map(|name| name.string()).collect::<Option<_>>()?;
        Some(Here { names })
    }
}

impl FromJson for Beat {
    fn from_json(o: &json::Value) -> Option<Self> {
        Some(Beat { every_ms: whole(o, "every_ms")? })
    }
}

/// A form body (`application/x-www-form-urlencoded`) as the URL standard's serializer writes it (space as `+`, all
/// but `*-._` and ASCII letters and digits escaped): in the browser by its own `URLSearchParams` (form_urlencoded,
/// the same algorithm in Rust, cost 600 B of brotli wasm), elsewhere by form_urlencoded.
pub fn form(fields: &[(&str, &str)]) -> String {
    json::form(fields)
}

/// One page of the log: above `since`, or below `before`, or (neither) the latest.
pub fn page_url(since: Option<u64>, before: Option<u64>) -> String {
    let query = match (since, before) {
        (Some(since), _) => format!("?since={since}"),
        (None, Some(before)) => format!("?before={before}"),
        (None, None) => String::new(),
    };
    format!("{}{query}", wire::MESSAGES_PATH)
}

/// The messages after `since` up to `until` in the log of `epoch`, a URL whose answer never changes once `until` is
/// stored (so caches may serve it); without `until`, everything after `since`.
pub fn catch_up_url(since: u64, until: Option<u64>, epoch: &str) -> String {
    let mut url = format!("{}?since={since}", wire::MESSAGES_PATH);
    if let Some(until) = until {
        url.push_str(&format!("&until={until}"));
        // Epochs are hex; anything else is left out rather than spliced into the URL.
        if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
            url.push_str("&epoch=");
            url.push_str(epoch);
        }
    }
    url
}

/// The id a `NewMessage` event carries (its `data`).
pub fn notice_id(data: &str) -> Option<u64> {
    data.trim().parse().ok()
}

/// A `Retry-After` header in seconds (the only form the server sends).
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_secs)
}

/// The first page of the log, as the server renders it into the page for the tab to hydrate with
/// (`OnceResource::new_str_blocking`): the epoch, a line break and the messages' JSON; or `!`, the error's kind, a
/// line break and its message. The tab reads it as it reads `GET /api/messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstPage(pub Result<LogPage, ApiError>);

impl std::fmt::Display for FirstPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(page) => {
                let mut out = String::with_capacity(page.epoch.len() + 1 + 100 * page.messages.len());
                out.push_str(&page.epoch);
                out.push('\n');
                push_messages(&mut out, &page.messages);
                f.write_str(&out)
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
        let messages = self::messages(messages).ok_or(())?;
        Ok(Self(Ok(LogPage { epoch: epoch.to_owned(), messages })))
    }
}

/// What tabs tell each other over the relay's channel, sent as a few lines of text (`encode`): a kind letter, then
/// the fields, the last of which may hold anything (a problem in words, a page's JSON). A derived serde format cost
/// more wasm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// A tab started: the leader answers with `Stream`.
    Hello,
    /// The leader's stream, and the newest id it has announced.
    Stream { open: bool, problem: Option<String>, latest: Option<u64> },
    /// `NewMessage` from the stream.
    Notice { id: u64 },
    /// `PresenceChanged` from the stream.
    Presence,
    /// A page some tab fetched: the messages above `since`, in id order.
    Page { since: u64, epoch: String, messages: Vec<Message> },
}

impl Relay {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        match self {
            Relay::Hello => out.push('h'),
            Relay::Stream { open, problem, latest } => {
                out.push_str(if *open { "s\n1\n" } else { "s\n0\n" });
                if let Some(latest) = latest {
                    out.push_str(&latest.to_string());
                }
                if let Some(problem) = problem {
                    out.push('\n');
                    out.push_str(problem);
                }
            }
            Relay::Notice { id } => {
                out.push_str("n\n");
                out.push_str(&id.to_string());
            }
            Relay::Presence => out.push('p'),
            Relay::Page { since, epoch, messages } => {
                out.push_str("g\n");
                out.push_str(&since.to_string());
                out.push('\n');
                out.push_str(epoch);
                out.push('\n');
                push_messages(&mut out, messages);
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Relay> {
        let mut parts = text.splitn(4, '\n');
        let kind = parts.next()?;
        let mut field = || parts.next();
        let number = |field: Option<&str>| field.and_then(|n| n.parse::<u64>().ok());
        Some(match kind {
            "h" => Relay::Hello,
            "p" => Relay::Presence,
            "n" => Relay::Notice { id: number(field())? },
            "s" => {
                let open = field()? == "1";
                let latest = number(field());
                Relay::Stream { open, latest, problem: field().map(str::to_owned) }
            }
            "g" => {
                let since = number(field())?;
                let epoch = field()?.to_owned();
                Relay::Page { since, epoch, messages: messages(field()?)? }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests;
