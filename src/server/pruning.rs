//! The retention pass: every `prune-every`, the store deletes what its `Retention` no longer keeps, and the
//! broker tells every process, whose cached pages of the deleted messages are stale now.
//!
//! Who prunes: the one process of a SQLite or memory store always does; replicas sharing a Redis log take a
//! [`Turn`] through a lease (`replicas::retention_lease`), so one of them prunes at a time.

use std::sync::Arc;

use async_trait::async_trait;

use crate::server::broker::Broker;
use crate::server::observe;
use crate::server::store::retention::Retention;
use crate::server::store::FeedStore;
use crate::shared::domain::FeedName;

/// Whose turn it is to prune a log that several processes share.
#[async_trait]
pub trait Turn: Send + Sync + 'static {
    /// Whether this process prunes this round (asked once per round, just before it would).
    async fn mine(&self) -> bool;
}

/// Deletes what `policy` no longer keeps in every feed, every `policy.every`, for ever: at every tick if this process
/// is alone on the store (`shared` is `None`), else at the ticks that are its turn. After a feed's pass deleted
/// something, the broker tells every process (this one first) to forget the feed's pages.
pub async fn run(store: Arc<dyn FeedStore>, broker: Arc<dyn Broker>, policy: Retention, shared: Option<Arc<dyn Turn>>) {
    let mut tick = tokio::time::interval(policy.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(turn) = &shared {
            if !turn.mine().await {
                continue;
            }
        }
        let cutoff = policy.max_age.map(|age| time::OffsetDateTime::now_utc() - age);
        if let Err(err) = prune_every_feed(store.as_ref(), broker.as_ref(), policy.keep, cutoff).await {
            tracing::warn!(error = %err, "retention failed; retrying at the next tick");
        }
    }
}

/// Feeds asked for per store call while walking them.
const FEEDS_PER_CALL: usize = 500;

/// One pass over every feed that holds messages, a page of feed names at a time.
async fn prune_every_feed(
    store: &dyn FeedStore,
    broker: &dyn Broker,
    keep: usize,
    cutoff: Option<time::OffsetDateTime>,
) -> Result<(), crate::server::store::StoreError> {
    let mut after: Option<FeedName> = None;
    loop {
        let feeds = store.feeds(after.as_ref(), FEEDS_PER_CALL).await?;
        for feed in &feeds {
            let count = store.prune(feed, keep, cutoff).await?;
            if count > 0 {
                observe::retention_deleted(count);
                if let Err(err) = broker.pruned(feed, count).await {
                    tracing::warn!(error = %err, %feed, "retention: the other processes were not told of this pass");
                }
                tracing::info!(deleted = count, %feed, "retention");
            }
        }
        if feeds.len() < FEEDS_PER_CALL {
            return Ok(());
        }
        after = feeds.last().cloned();
    }
}
