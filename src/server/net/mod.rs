//! The HTTP server: a listener that accepts HTTP/1.1 connections (`listener`), each served by hyper with the
//! shortcut asked before the router and event streams let go of hyper once their head is written (`connection`),
//! over a socket with read and write deadlines (`deadline`). It knows the router as a whole and the [`Shortcut`]
//! hook, never a handler: `routes` assembles both, `startup` hands them here.
//!
//! What it promises every client: a request's headers within `header-timeout`, a kept-alive connection's next request
//! within `idle-timeout`, progress on every write within `write-timeout`, and at shutdown the grace period for what
//! is in flight.

mod connection;
mod deadline;
mod listener;

pub use connection::Detach;
pub use deadline::Deadlines;
pub use listener::{listen, serve};

use axum::response::Response;
use hyper::body::Incoming;

/// What the listener asks before the router: an answer to a request it can give from memory (a hot read), or `None`
/// to leave the request to the router. It sees the request's head only; the body stays for the router.
pub trait Shortcut: Fn(&hyper::Request<Incoming>) -> Option<Response> + Clone + Send + Sync + Unpin + 'static {}

impl<Q> Shortcut for Q where Q: Fn(&hyper::Request<Incoming>) -> Option<Response> + Clone + Send + Sync + Unpin + 'static
{}

#[cfg(test)]
mod tests;
