//! Retention belongs to the store: on its own clock (`prune-every`), never on a client's request, the log keeps
//! the newest `keep` messages and, with `max_age`, only those younger than it.
//!
//! Who prunes: the one process of a SQLite or memory store always does; replicas sharing a Redis log take a
//! [`Turn`] through a lease (`replicas::retention_lease`), so one of them prunes at a time and tells the others,
//! whose cached pages of the deleted messages are stale too.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::FeedStore;
use crate::server::observe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep: usize,
    pub max_age: Option<Duration>,
    pub every: Duration,
}

/// Whose turn it is to prune a log that several processes share.
#[async_trait]
pub trait Turn: Send + Sync + 'static {
    /// Whether this process prunes this round (asked once per round, just before it would).
    async fn mine(&self) -> bool;
    /// This process's pass deleted `count` messages: the other processes on the log learn it (their cached pages of
    /// those messages must go, as this process's do).
    async fn pruned(&self, count: u64);
}

/// Deletes what `policy` no longer keeps, every `policy.every`, for ever: at every tick if this process is alone on
/// the log (`shared` is `None`), else at the ticks that are its turn. `deleted` runs after a pass that deleted
/// something (this process's cached pages are stale then), and the turn tells the other processes.
pub async fn run(
    store: Arc<dyn FeedStore>,
    policy: Retention,
    shared: Option<Arc<dyn Turn>>,
    deleted: impl Fn() + Send + 'static,
) {
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
                deleted();
                observe::retention_deleted(count);
                if let Some(turn) = &shared {
                    turn.pruned(count).await;
                }
                tracing::info!(deleted = count, "retention");
            }
            Err(err) => tracing::warn!(error = %err, "retention failed; retrying at the next tick"),
        }
    }
}
