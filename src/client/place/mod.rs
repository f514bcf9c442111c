//! Which feed this page shows, and in which layout, from its path: `/f/{name}` is the feed `name`, anything else
//! (`/`) the feed `main`; `/f/{name}/embed` and `/embed` are the same feeds in the embed's layout (`Layout`). The app
//! has one page and no router, so the path is read where the page is: from the request while the server renders
//! (`server`: leptos_axum puts the request's `Parts` in the context), from `location` in the tab (`browser`). The
//! server has already redirected or refused a path whose name is not a feed name (`routes`).
//!
//! The address's fragment may hand the tab a token of the deployer's site (`/f/team#token=…`, `wire::TOKEN_FIELD`):
//! a fragment is never sent to any server, so the token reaches no log or `Referer`; the tab takes it out of the
//! address bar as it reads it (`take_token`).
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(feature = "hydrate")]
use browser as target;
#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
use server as target;

use crate::shared::domain::FeedName;
use crate::shared::wire;

/// How the page is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The page of its own: heading, introduction, who is here, the log and the form.
    Full,
    /// In an iframe on another site (`/f/{name}/embed`): the log and the form, who is here and the stream's state
    /// in one line, no page around them, its height told to the page that frames it (`embed`).
    Embed,
}

/// The feed of this page.
pub fn feed() -> FeedName {
    feed_of(&target::path())
}

/// The layout of this page.
pub fn layout() -> Layout {
    layout_of(&target::path())
}

/// Whether this page's feed is private (reading it takes a sign-in that grants it): as the server renders it, from
/// the settings; in the tab, from the mark the server wrote into the page.
pub fn private() -> bool {
    target::private(&feed())
}

/// The token the address's fragment hands over (`#token=…`), taken out of the address bar at once; only in the tab
/// (call it once hydrated: the server renders no fragment).
pub fn take_token() -> Option<String> {
    target::take_token()
}

/// The feed a page's path shows.
pub fn feed_of(path: &str) -> FeedName {
    wire::page_of(path).and_then(|(name, _)| FeedName::parse(name?)).unwrap_or_else(FeedName::main)
}

/// The layout a page's path asks for.
pub fn layout_of(path: &str) -> Layout {
    match wire::page_of(path) {
        Some((_, true)) => Layout::Embed,
        _ => Layout::Full,
    }
}

/// The page's heading: the product's name on the feed `main`, the feed's name on any other.
pub fn heading(feed: &FeedName) -> String {
    if feed.is_main() {
        "Broadcasting".to_owned()
    } else {
        feed.to_string()
    }
}

/// The document's title: the product's name alone on `main`, after the feed's name on any other.
pub fn title(feed: &FeedName) -> String {
    if feed.is_main() {
        "Broadcasting".to_owned()
    } else {
        format!("{feed} · Broadcasting")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_the_feed_and_the_root_is_main() {
        assert_eq!(feed_of("/"), FeedName::main());
        assert_eq!(feed_of("/f/team-news"), FeedName::parse("team-news").unwrap());
        for other in ["/f/", "/f/Team", "/f/a/b", "/elsewhere", ""] {
            assert_eq!(feed_of(other), FeedName::main(), "{other:?}");
        }
        let team = FeedName::parse("team-news").unwrap();
        assert_eq!((heading(&team), title(&team)), ("team-news".into(), "team-news · Broadcasting".into()));
        let main = FeedName::main();
        assert_eq!((heading(&main), title(&main)), ("Broadcasting".into(), "Broadcasting".into()));
    }

    #[test]
    fn an_embed_path_shows_its_feed_in_the_embed_layout() {
        assert_eq!((feed_of("/embed"), layout_of("/embed")), (FeedName::main(), Layout::Embed));
        let team = FeedName::parse("team-news").unwrap();
        assert_eq!((feed_of("/f/team-news/embed"), layout_of("/f/team-news/embed")), (team, Layout::Embed));
        let embed = FeedName::parse("embed").unwrap();
        assert_eq!((feed_of("/f/embed"), layout_of("/f/embed")), (embed.clone(), Layout::Full));
        assert_eq!((feed_of("/f/embed/embed"), layout_of("/f/embed/embed")), (embed, Layout::Embed));
        for full in ["/", "/f/team", "/elsewhere", ""] {
            assert_eq!(layout_of(full), Layout::Full, "{full:?}");
        }
    }
}
