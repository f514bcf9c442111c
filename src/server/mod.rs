//! Everything behind the HTTP contract. `startup` reads like a table of contents: settings, state, router.

pub mod events;
pub mod fanout;
pub mod feed;
pub mod group;
pub mod pages;
pub mod settings;
pub mod startup;
pub mod store;
pub mod ticket;

pub use startup::AppState;
