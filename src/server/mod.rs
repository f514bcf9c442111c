//! Everything behind the HTTP contract. `startup` reads like a table of contents: settings, state, router.

pub mod budget;
pub mod data_dir;
pub mod events;
pub mod fanout;
pub mod feed;
pub mod group;
pub mod observe;
pub mod open_files;
pub mod pages;
pub mod peer;
pub mod refusal;
pub mod security;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod store;
pub mod throttle;
pub mod ticket;

pub use startup::AppState;
