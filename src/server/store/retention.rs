//! Retention belongs to the store: on its own clock (`prune-every`), never on a client's request, the log keeps
//! the newest `keep` messages and, with `max_age`, only those younger than it.

use std::sync::Arc;
use std::time::Duration;

use super::FeedStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep: usize,
    pub max_age: Option<Duration>,
    pub every: Duration,
}

/// Deletes what `policy` no longer keeps, every `policy.every`, for ever; `deleted` runs after a pass that deleted
/// something (the cached pages are stale then).
pub async fn run(store: Arc<dyn FeedStore>, policy: Retention, deleted: impl Fn() + Send + 'static) {
    let mut tick = tokio::time::interval(policy.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cutoff = policy.max_age.map(|age| time::OffsetDateTime::now_utc() - age);
        match store.prune(policy.keep, cutoff).await {
            Ok(0) => {}
            Ok(count) => {
                deleted();
                tracing::info!(deleted = count, "retention");
            }
            Err(err) => tracing::warn!(error = %err, "retention failed; retrying at the next tick"),
        }
    }
}
