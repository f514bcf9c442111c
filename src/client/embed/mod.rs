//! The embed's side of its iframe: it tells the page that frames it how tall its content is, whenever that changes
//! (a `ResizeObserver` on the page's `<main>`), with `window.parent.postMessage({type: "broadcasting:height", feed,
//! height}, "*")`, so the host page can size the iframe to it (public/embed.js, or README's snippet, which check that
//! the message comes from Broadcasting's origin). The message carries the feed's name and a number, nothing else: any
//! page may frame the embed's URL (only `embed-origins` may show it) and read what it posts.
//!
//! In the browser only (`browser`); on the server there is no frame (`server`).
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]

#[cfg(feature = "hydrate")]
mod browser;
#[cfg(feature = "hydrate")]
use browser as target;
#[cfg(not(feature = "hydrate"))]
mod server;
#[cfg(not(feature = "hydrate"))]
use server as target;

use leptos::html::Main;
use leptos::prelude::NodeRef;

use crate::shared::domain::FeedName;

/// Tells the framing page the height of `main` once it is in the document, and again each time it changes.
pub fn report_height(main: NodeRef<Main>, feed: FeedName) {
    target::report_height(main, feed);
}
