//! What the client and the server agree on: domain types, the API error, and the server functions.

pub mod api;
pub mod domain;
pub mod error;
pub mod wire;
