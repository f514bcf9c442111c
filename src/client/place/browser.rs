//! The page's address in the tab: its path, and a token handed over in its fragment.

use leptos::prelude::window;
use wasm_bindgen::JsValue;

pub fn path() -> String {
    window().location().pathname().unwrap_or_default()
}

pub fn private(_feed: &crate::shared::domain::FeedName) -> bool {
    let selector = format!("meta[name=\"{}\"]", crate::shared::wire::PRIVATE_META);
    leptos::prelude::document().query_selector(&selector).ok().flatten().is_some()
}

pub fn take_token() -> Option<String> {
    let location = window().location();
    let fragment = location.hash().ok()?;
    let fields = web_sys::UrlSearchParams::new_with_str(fragment.strip_prefix('#')?).ok()?;
    let token = fields.get(crate::shared::wire::TOKEN_FIELD)?;
    // Out of the address bar (and this history entry) before anything else: a token left there would be kept in
    // the history, copied with the address, and shown to whoever looks at the screen.
    let (path, query) = (location.pathname().unwrap_or_default(), location.search().unwrap_or_default());
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&format!("{path}{query}")));
    }
    Some(token).filter(|token| !token.is_empty())
}
