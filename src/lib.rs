//! Broadcasting: a realtime shared feed on Leptos and axum.
//!
//! - `shared/`: the domain types, the error type and the server functions: what client and server agree on.
//! - `client/`: the page (`shell`, `App`) and what runs in the tab (live updates, forms).
//! - `server/`: everything behind the HTTP contract (settings, store, fan-out, tickets, groups, routes).

pub mod client;
pub mod shared;

#[cfg(feature = "ssr")]
pub mod server;

/// The browser entry point: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(client::App);
}
