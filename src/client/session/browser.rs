//! The group in the tab's memory: read from the page once, then held here (the page's one thread) for its lifetime.

use std::cell::{Cell, RefCell};

use crate::shared::wire;

thread_local! {
    static GROUP: RefCell<Option<String>> = const { RefCell::new(None) };
    /// A ticket was asked for under the group.
    static BOUND: Cell<bool> = const { Cell::new(false) };
}

pub fn start() {
    let document = leptos::prelude::document();
    let selector = format!("meta[name=\"{}\"]", wire::GROUP_META);
    let Ok(Some(meta)) = document.query_selector(&selector) else { return };
    let handed = meta.get_attribute("content").filter(|group| !group.is_empty());
    // Kept in memory from here on, not in the document.
    meta.remove();
    GROUP.with(|held| *held.borrow_mut() = handed);
}

pub fn group() -> Option<String> {
    GROUP.with(|held| held.borrow().clone())
}

pub fn adopt(group: &str) -> bool {
    if BOUND.with(Cell::get) {
        return false;
    }
    GROUP.with(|held| {
        let mut held = held.borrow_mut();
        match held.as_ref() {
            Some(own) if own != group => {
                *held = Some(group.to_owned());
                true
            }
            _ => false,
        }
    })
}

pub fn bind() {
    BOUND.with(|bound| bound.set(true));
}
