//! The page's path while the server renders it: the request leptos_axum put in the context (none outside a
//! request, e.g. in a unit test: then the feed is `main`). A fragment never reaches the server, so it hands over no
//! token here.

#[cfg(feature = "ssr")]
pub fn path() -> String {
    use leptos::prelude::use_context;
    use_context::<axum::http::request::Parts>().map(|parts| parts.uri.path().to_owned()).unwrap_or_default()
}

#[cfg(not(feature = "ssr"))]
pub fn path() -> String {
    String::new()
}

pub fn private(feed: &crate::shared::domain::FeedName) -> bool {
    crate::shared::api::private_feed(feed)
}

pub fn take_token() -> Option<String> {
    None
}
