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

/// Whose turn it is to prune a log that several processes share.
#[async_trait]
pub trait Turn: Send + Sync + 'static {
    /// Whether this process prunes this round (asked once per round, just before it would).
    async fn mine(&self) -> bool;
}

/// Deletes what `policy` no longer keeps, every `policy.every`, for ever: at every tick if this process is alone on
/// the log (`shared` is `None`), else at the ticks that are its turn. After a pass that deleted something, the
/// broker tells every process (this one first) to forget its pages.
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
        match store.prune(policy.keep, cutoff).await {
            Ok(0) => {}
            Ok(count) => {
                observe::retention_deleted(count);
                if let Err(err) = broker.pruned(count).await {
                    tracing::warn!(error = %err, "retention: the other processes were not told of this pass");
                }
                tracing::info!(deleted = count, "retention");
            }
            Err(err) => tracing::warn!(error = %err, "retention failed; retrying at the next tick"),
        }
    }
}
