//! The session group, where the browser sends no cookie for it. A page is in its browser's group by the group
//! cookie (`server::cookie`); in an iframe on another site (the embed) the browser neither sends nor keeps that
//! cookie, so the server hands the page the group it made for its request (`HandedGroup`, written into the embed as
//! `<meta name="broadcasting-group">`). The page keeps it in memory only and names it in every request it makes
//! (`remote` sends the `Broadcasting-Group` header; the stream and the leave beacon, which cannot carry a header of
//! the page's, the `group` query parameter: `with_group`).
//!
//! Frames of one browser that share a stream share this group too, as tabs share the cookie's: the frames of one
//! page (and of every page of the same site) share Web Locks and a `BroadcastChannel`, so one leads and holds the
//! stream (`relay`), and its notices are for its group. So the leading frame tells the others its group and a frame
//! that has not joined yet takes it (`adopt`); one that joined keeps its own, which its ticket was signed for.
//!
//! A page with its cookie (every full page, and an embed the browser sends the cookie to) is handed nothing, holds
//! no group and names none.
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(feature = "hydrate")]
use browser as target;
#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
use server as target;

use crate::shared::wire;

/// The group the server made for this page's request, which came without one (the server provides it while it
/// renders the page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedGroup(pub String);

/// Reads the group the page was handed, if any, into memory (and off the page).
pub fn start() {
    target::start();
}

/// The group this page names in its requests: `None` while it has its cookie.
pub fn group() -> Option<String> {
    target::group()
}

/// Takes `group` (the leading frame's) as this page's, unless the page has none (it has its cookie), already holds
/// it, or joined under its own. Whether it changed.
pub fn adopt(group: &str) -> bool {
    target::adopt(group)
}

/// The page asks for a ticket under its group: from now on the group is the ticket's and stays.
pub fn bind() {
    target::bind();
}

/// `url` naming this page's group in its query, for a request the browser makes without the page's headers.
pub fn with_group(url: String) -> String {
    match group() {
        Some(group) => named(url, &group),
        None => url,
    }
}

fn named(mut url: String, group: &str) -> String {
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(wire::GROUP_PARAM);
    url.push('=');
    // A group is hex; anything else is left out rather than spliced into the URL.
    url.extend(group.chars().filter(char::is_ascii_alphanumeric));
    url
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_names_the_group_in_its_query() {
        assert_eq!(super::named("/api/presence/leave".into(), "ab12"), "/api/presence/leave?group=ab12");
        assert_eq!(super::named("/events?feed=a".into(), "ab12"), "/events?feed=a&group=ab12");
        assert_eq!(super::named("/x".into(), "a&b=c"), "/x?group=abc");
        assert_eq!(super::with_group("/x".into()), "/x", "no group held while the server renders");
    }
}
