//! The broker: how an append, a change of who is here, and a retention pass reach every process's hub. Shaped like
//! centrifuge's `Broker`: it appends and announces as one step, so no notice announces a message the store cannot
//! read and notices come in id order; it announces presence changes; and a cross-process broker owns the one
//! receive loop that feeds the local [`Hub`] (what `Hub::deliver`, `Hub::presence_changed` and the page cache
//! hear of comes from the broker and nowhere else).
//!
//! - [`LocalBroker`] (memory and SQLite, one process): commit, then deliver to the hub in-process.
//! - [`RedisBroker`] (replicas on one Redis): the store's one append script appends and publishes; a supervised
//!   receiver reads the notice channel (`link::notice`) into the hub, and heals what pub/sub lost.
//!
//! The read side of the log (pages: since, before, latest) stays the store's (`FeedStore`): reading announces
//! nothing, every backend reads the same way, and the store's contract suite proves them alike without a hub.

mod local;
pub mod redis;

pub use local::LocalBroker;
pub use redis::RedisBroker;

use async_trait::async_trait;

use crate::server::group::Audience;
use crate::server::store::{Appended, Draft, StoreError};
use crate::shared::domain::FeedName;

/// An announcement that could not be made (the message it would announce is stored either way).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("notices unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Appends `draft` to the log and announces it to the subscribers of its group in every process, as one step:
    /// the announcement follows the commit, in id order. A repeated send key appends and announces nothing.
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError>;
    /// Who is here changed for `audiences` (a group on a feed): their subscribers in every process hear of it.
    async fn presence_changed(&self, audiences: &[Audience]) -> Result<(), BrokerError>;
    /// This process deleted `count` messages from `feed`'s log (retention): every process forgets its cached pages
    /// of the feed, this one first.
    async fn pruned(&self, feed: &FeedName, count: u64) -> Result<(), BrokerError>;
    /// A moderator erased messages of `feed`, whose log now has the epoch `epoch` (ids go on, up to `last`): every
    /// process forgets its cached pages of the feed and tells every tab of it, which then reloads the log (the
    /// epoch it holds is old), now showing the removed messages as removed.
    async fn removed(&self, feed: &FeedName, epoch: &str, last: u64) -> Result<(), BrokerError>;
}

#[cfg(test)]
mod contract;
