//! One event stream per browser, shared by its tabs.
//!
//! A browser allows six connections to one origin over HTTP/1.1; with one `EventSource` per tab, six tabs hold all
//! of them and the seventh cannot even load the page. So one tab leads: it holds the Web Lock `LOCK`, opens the only
//! `EventSource` on `/events`, and relays what arrives to the other tabs of this origin over the `BroadcastChannel`
//! `CHANNEL`. Every tab that fetches a page of the log shares it there too, so one notification costs the server one
//! `GET /api/messages` per browser, not one per tab.
//!
//! The browser releases the lock when the leading tab closes, crashes or is discarded, and hands it to the next tab
//! waiting for it, which opens the stream and catches up from its own watermark (what `Last-Event-ID` would do for
//! a new `EventSource`, which cannot send one). Where the browser lacks Web Locks or `BroadcastChannel`, every tab
//! opens its own stream, as before.
//!
//! `PresenceChanged` is relayed the same way; each tab then reads who is here itself, and beats for itself
//! (`presence`): presence is per tab, not per stream.
//!
//! Only stream state, announced ids, presence notices and pages of the public log travel between tabs, and, from a
//! leader that holds its session group in memory (an embed the browser sends no cookie to: `session`), that group,
//! which the stream is for; a tab's name and ticket never do.
//!
//! Embeds: a browser partitions an iframe's Web Locks and `BroadcastChannel` by the site of the page that frames it,
//! so the embeds on one article page (and on every page of that site) elect one leader and share one stream, and an
//! embed never shares one with the full pages or with embeds on other sites. Chrome refuses the lock to a frame on
//! another site while third-party cookies are blocked (incognito, or by the reader's choice): there each embed holds
//! its own stream, as in a browser without locks.
//!
//! Feeds: the stream carries every feed a tab of the browser shows (`/events?feed=a&feed=b`), each notice naming
//! its feed; each tab takes its own feed's notices, presence and pages only. Which feeds that is, `roster` keeps.
//!
//! `leader` holds the election and the channel between tabs, `stream` the one `EventSource` the leading tab opens
//! (two for a moment while the feeds change); the lines on the channel are `codec::Relay`. On the server the page is rendered once, with no stream (`server`).

use crate::shared::domain::Message;

/// What the page does with what the stream and the other tabs report.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub trait Tab {
    /// This tab holds the browser's stream from now on (it was elected, or it has no one to share with).
    fn leads(&self);
    /// The browser's stream is open and this tab hears from it (or not); `problem` is the server's reason for
    /// refusing it, in words, when it did.
    fn stream_state(&self, receiving: bool, problem: Option<String>);
    /// The newest id announced. `fetch`: this tab holds the stream and should fetch now; otherwise the tab that
    /// holds it will share the page.
    fn announced(&self, id: u64, fetch: bool);
    /// This tab's own stream (re)opened: fetch whatever was sent meanwhile.
    fn opened(&self);
    /// A page another tab fetched: the messages above `since`, from the log of `epoch`.
    fn page(&self, since: u64, epoch: String, messages: Vec<Message>);
    /// `PresenceChanged` from the stream: who is here changed.
    fn presence_changed(&self);
    /// The tab was frozen or in the back-forward cache and runs again: it may have missed anything.
    fn resumed(&self);
}

#[cfg(feature = "hydrate")]
mod leader;
mod roster;
#[cfg(feature = "hydrate")]
mod stream;
#[cfg(feature = "hydrate")]
pub use leader::{share, start, unlock};
#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
pub use server::{share, start, unlock};
