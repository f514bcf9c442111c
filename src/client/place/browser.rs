//! The page's path in the tab.

pub fn path() -> String {
    leptos::prelude::window().location().pathname().unwrap_or_default()
}
