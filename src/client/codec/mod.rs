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

use crate::shared::domain::{Beat, FeedName, Here, JoinMode, Joined, LogPage, Message, PageLimits, Source};
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
        push_source(out, &m.source);
        if m.removed {
            out.push_str(",\"removed\":true");
        }
        out.push('}');
    }
    out.push(']');
}

/// `,"source":{"verified":"…"}` (or `service`), as serde writes a source; nothing for an anonymous one.
fn push_source(out: &mut String, source: &Source) {
    let (kind, id) = match source {
        Source::Anonymous => return,
        Source::Verified(subject) => ("verified", subject),
        Source::Service(name) => ("service", name),
    };
    out.push_str(",\"source\":{\"");
    out.push_str(kind);
    out.push_str("\":");
    json::push_string(out, id);
    out.push('}');
}

/// An object's `source`: `{"verified": "…"}` or `{"service": "…"}`. Missing, or anything this tab cannot read (a
/// kind of a later version), is anonymous: only a source read as one earns a mark, never a guess.
fn source(object: &json::Value) -> Source {
    let Some(source) = object.field("source") else { return Source::Anonymous };
    if let Some(subject) = source.field("verified").and_then(|s| s.string()) {
        Source::Verified(subject)
    } else if let Some(name) = source.field("service").and_then(|s| s.string()) {
        Source::Service(name)
    } else {
        Source::Anonymous
    }
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
        Some(Message {
            id: whole(o, "id")?,
            user: string(o, "user")?,
            text: string(o, "text")?,
            at: string(o, "at")?,
            source: source(o),
            // Only `true` marks a removed message; a missing or garbled field is an ordinary one.
            removed: o.field("removed").and_then(|removed| removed.boolean()) == Some(true),
        })
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
        // `expires` is optional, but one that is there must be a time: a tab must not hold on past a garbled one.
        let expires = match o.field("expires") {
            Some(_) => Some(whole(o, "expires")?),
            None => None,
        };
        let pass = match o.field("pass") {
            Some(_) => Some(string(o, "pass")?),
            None => None,
        };
        Some(Joined { name: string(o, "name")?, ticket: string(o, "ticket")?, source: source(o), expires, pass })
    }
}

impl FromJson for PageLimits {
    fn from_json(o: &json::Value) -> Option<Self> {
        // How tabs join: left out is anonymous; a mode this tab does not know is read as `both`, so the form offers
        // what it can and the server's answer decides.
        let join = o.field("join").map_or(Some(JoinMode::Anonymous), |join| {
            join.string().map(|join| JoinMode::parse(&join).unwrap_or(JoinMode::Both))
        })?;
        let refresh_url = match o.field("refresh_url") {
            Some(url) => Some(url.string()?),
            None => None,
        };
        Some(PageLimits { max_message_chars: whole(o, "max_message_chars")? as usize, join, refresh_url })
    }
}

/// The answer of the deployer's token refresh URL: `{"token": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    pub token: String,
}

impl FromJson for Renewed {
    fn from_json(o: &json::Value) -> Option<Self> {
        Some(Renewed { token: string(o, "token")? }).filter(|renewed| !renewed.token.is_empty())
    }
}

impl FromJson for Here {
    fn from_json(o: &json::Value) -> Option<Self> {
        let strings = |list: json::Value| list.items()?.map(|name| name.string()).collect::<Option<Vec<String>>>();
        let names = strings(o.field("names")?)?;
        // Left out: nobody listed is signed in; one that is there must be a list of names.
        let verified = match o.field("verified") {
            Some(list) => strings(list)?,
            None => Vec::new(),
        };
        Some(Here { names, verified })
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

/// Where a feed's pages are read: `main`'s at `MESSAGES_PATH`, as before feeds (so `/` asks exactly what it asked),
/// any other's under `FEEDS_API_PREFIX`.
pub fn messages_path(feed: &FeedName) -> String {
    if feed.is_main() {
        wire::MESSAGES_PATH.to_owned()
    } else {
        wire::feed_api(feed.as_str(), wire::FEED_MESSAGES)
    }
}

/// Where a feed's presence is read and beaten (`leave`: where a tab says it goes), `main`'s as before feeds.
pub fn presence_path(feed: &FeedName, leave: bool) -> String {
    match (feed.is_main(), leave) {
        (true, false) => wire::PRESENCE_PATH.to_owned(),
        (true, true) => wire::PRESENCE_LEAVE_PATH.to_owned(),
        (false, false) => wire::feed_api(feed.as_str(), wire::FEED_PRESENCE),
        (false, true) => wire::feed_api(feed.as_str(), wire::FEED_PRESENCE_LEAVE),
    }
}

/// One page of `feed`'s log: above `since`, or below `before`, or (neither) the latest.
pub fn page_url(feed: &FeedName, since: Option<u64>, before: Option<u64>) -> String {
    let query = match (since, before) {
        (Some(since), _) => format!("?since={since}"),
        (None, Some(before)) => format!("?before={before}"),
        (None, None) => String::new(),
    };
    format!("{}{query}", messages_path(feed))
}

/// The messages after `since` up to `until` in the log of `epoch`, a URL whose answer never changes once `until` is
/// stored (so caches may serve it); without `until`, everything after `since`.
pub fn catch_up_url(feed: &FeedName, since: u64, until: Option<u64>, epoch: &str) -> String {
    let mut url = format!("{}?since={since}", messages_path(feed));
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

/// The browser's one stream for the feeds its tabs show: sorted and without repeats, so every leader asks the same
/// URL for the same set. `main` alone is today's plain `EVENTS_PATH`: a browser on `/` only opens exactly what it
/// opened before feeds, and its notices read as they did (`stream_notice`). A page that holds its session group
/// (`session`: an embed without its cookie) names it, and then names its feeds even if only `main`, so its notices
/// say their feed as on every named stream.
pub fn events_url<'a>(
    feeds: impl IntoIterator<Item = &'a FeedName>,
    group: Option<&str>,
    passes: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut feeds: std::collections::BTreeSet<&str> = feeds.into_iter().map(FeedName::as_str).collect();
    let passes: std::collections::BTreeSet<&str> = passes.into_iter().collect();
    let main_only = feeds.is_empty() || (feeds.len() == 1 && feeds.contains(FeedName::MAIN));
    if main_only && group.is_none() && passes.is_empty() {
        return wire::EVENTS_PATH.to_owned();
    }
    if feeds.is_empty() {
        feeds.insert(FeedName::MAIN);
    }
    let mut fields: Vec<(&str, &str)> = feeds.into_iter().map(|feed| (wire::FEED_FIELD, feed)).collect();
    fields.extend(passes.into_iter().map(|pass| (wire::PASS_FIELD, pass)));
    fields.extend(group.map(|group| (wire::GROUP_PARAM, group)));
    format!("{}?{}", wire::EVENTS_PATH, form(&fields))
}

/// The feed and id of a `NewMessage` event's `data`: on a stream opened with feed parameters (`named`) it is
/// `<feed> <id>`; on a plain one, `<id>` of `main`.
pub fn stream_notice(named: bool, data: &str) -> Option<(FeedName, u64)> {
    if named {
        let (feed, id) = wire::parse_feed_notice(data.trim())?;
        Some((FeedName::parse(feed)?, id))
    } else {
        Some((FeedName::main(), notice_id(data)?))
    }
}

/// The feed a `PresenceChanged` event's `data` names: on a plain stream always `main` (its data says `presence`,
/// which is also a valid feed name, so only how the stream was opened tells them apart).
pub fn stream_presence(named: bool, data: &str) -> Option<FeedName> {
    if named {
        FeedName::parse(data.trim())
    } else {
        Some(FeedName::main())
    }
}

/// The id a `NewMessage` event carries (its `data`) on a plain stream.
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

/// The page's limits as the server renders them into the page for the tab to hydrate with (the join form needs the
/// join mode before anything is fetched): the longest message, the join mode and the refresh URL (empty: none), a
/// line each; or `!`, the error's kind, a line break and its message, as `FirstPage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstLimits(pub Result<PageLimits, ApiError>);

impl std::fmt::Display for FirstLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            // A refresh URL is one line: the settings take it only as printable ASCII (`values::refresh_url`).
            Ok(limits) => write!(
                f,
                "{}\n{}\n{}",
                limits.max_message_chars,
                limits.join.as_str(),
                limits.refresh_url.as_deref().unwrap_or_default()
            ),
            Err(err) => write!(f, "!{}\n{}", err.kind.code(), err.message),
        }
    }
}

impl std::str::FromStr for FirstLimits {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        if let Some(error) = text.strip_prefix('!') {
            let (kind, message) = error.split_once('\n').ok_or(())?;
            return Ok(Self(Err(ApiError::new(ErrorKind::from_code(kind).ok_or(())?, message))));
        }
        let mut lines = text.splitn(3, '\n');
        let (Some(max), Some(join), Some(refresh_url)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(());
        };
        Ok(Self(Ok(PageLimits {
            max_message_chars: max.parse().map_err(|_| ())?,
            join: JoinMode::parse(join).ok_or(())?,
            refresh_url: Some(refresh_url.to_owned()).filter(|url| !url.is_empty()),
        })))
    }
}

/// What tabs tell each other over the relay's channel, sent as a few lines of text (`encode`): a kind letter, then
/// the fields, the last of which may hold anything (a problem in words, a page's JSON). A derived serde format cost
/// more wasm. Every line about a log names its feed: each tab takes only its own feed's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// A tab started: the leader answers with `Stream` (and the newest ids it has heard, as `Notice`s).
    Hello,
    /// Tab `tab` shows `feed`; said as it starts, again every little while, and when asked (`Roll`), so that the
    /// leader (or the next one) knows the feeds its stream must carry. A private feed's tab says so only once it
    /// holds the feed's read pass, which it gives along (`pass`) for the stream's URL.
    Showing { tab: String, feed: FeedName, pass: Option<String> },
    /// Tab `tab` goes away: its feed leaves the stream unless another tab shows it.
    Gone { tab: String },
    /// A new leader asks every tab to say what it shows.
    Roll,
    /// The leader's stream.
    Stream { open: bool, problem: Option<String> },
    /// The leader's stream (re)opened: `feed` may have had messages meanwhile that no notice announced (the stream
    /// was down, or did not carry the feed yet). `fetcher` catches it up from its watermark and shares the page, as
    /// for a notice; the feed's other tabs take that page (empty: no tab is known to show it, so each fetches).
    CatchUp { feed: FeedName, fetcher: String },
    /// `NewMessage` of `feed` from the stream; `fetcher` is the tab that fetches it now and shares the page (one
    /// fetch per browser), the others wait for that page (empty: everyone waits, then fetches if nothing came).
    Notice { feed: FeedName, id: u64, fetcher: String },
    /// `PresenceChanged` of `feed` from the stream.
    Presence { feed: FeedName },
    /// A page of `feed` some tab fetched: the messages above `since`, in id order.
    Page { feed: FeedName, since: u64, epoch: String, messages: Vec<Message> },
    /// The session group the leader's stream is for, where the leader holds one (an embed without its cookie,
    /// `session`): a frame that has not joined takes it, so the stream's notices are its own.
    Group { group: String },
}

impl Relay {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let mut line = |kind: &str, fields: &[&str]| {
            out.push_str(kind);
            for field in fields {
                out.push('\n');
                out.push_str(field);
            }
        };
        match self {
            Relay::Hello => line("h", &[]),
            Relay::Roll => line("r", &[]),
            Relay::CatchUp { feed, fetcher } => line("c", &[feed.as_str(), fetcher]),
            Relay::Showing { tab, feed, pass: None } => line("t", &[tab, feed.as_str()]),
            Relay::Showing { tab, feed, pass: Some(pass) } => line("t", &[tab, feed.as_str(), pass]),
            Relay::Gone { tab } => line("x", &[tab]),
            Relay::Stream { open, problem } => {
                let open = if *open { "1" } else { "0" };
                match problem {
                    Some(problem) => line("s", &[open, problem]),
                    None => line("s", &[open]),
                }
            }
            Relay::Notice { feed, id, fetcher } => line("n", &[feed.as_str(), &id.to_string(), fetcher]),
            Relay::Presence { feed } => line("p", &[feed.as_str()]),
            Relay::Group { group } => line("i", &[group]),
            Relay::Page { feed, since, epoch, messages } => {
                let mut json = String::new();
                push_messages(&mut json, messages);
                line("g", &[feed.as_str(), &since.to_string(), epoch, &json]);
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Relay> {
        let (kind, rest) = text.split_once('\n').unwrap_or((text, ""));
        // The fields before the last one never hold a line break; the last one may.
        let fields = |n: usize| {
            let fields: Vec<&str> = rest.splitn(n, '\n').collect();
            (fields.len() == n).then_some(fields)
        };
        let feed = |name: &str| FeedName::parse(name);
        let number = |n: &str| n.parse::<u64>().ok();
        Some(match kind {
            "h" if rest.is_empty() => Relay::Hello,
            "r" if rest.is_empty() => Relay::Roll,
            "c" => match fields(2)?[..] {
                [name, fetcher] => Relay::CatchUp { feed: feed(name)?, fetcher: fetcher.to_owned() },
                _ => return None,
            },
            "t" => match rest.split('\n').collect::<Vec<_>>()[..] {
                [tab, name] => Relay::Showing { tab: tab.to_owned(), feed: feed(name)?, pass: None },
                [tab, name, pass] if !pass.is_empty() => {
                    Relay::Showing { tab: tab.to_owned(), feed: feed(name)?, pass: Some(pass.to_owned()) }
                }
                _ => return None,
            },
            "x" if !rest.is_empty() => Relay::Gone { tab: rest.to_owned() },
            "s" => {
                let (open, problem) = rest.split_once('\n').map_or((rest, None), |(o, p)| (o, Some(p.to_owned())));
                let open = match open {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                };
                Relay::Stream { open, problem }
            }
            "n" => match fields(3)?[..] {
                [name, id, fetcher] => {
                    Relay::Notice { feed: feed(name)?, id: number(id)?, fetcher: fetcher.to_owned() }
                }
                _ => return None,
            },
            "p" => Relay::Presence { feed: feed(rest)? },
            "i" if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Relay::Group { group: rest.to_owned() }
            }
            "g" => match fields(4)?[..] {
                [name, since, epoch, json] => Relay::Page {
                    feed: feed(name)?,
                    since: number(since)?,
                    epoch: epoch.to_owned(),
                    messages: messages(json)?,
                },
                _ => return None,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests;
