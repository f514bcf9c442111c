//! The retention pass: every `prune-every`, the store deletes what its `Retention` no longer keeps, and the
//! broker tells every process, whose cached pages of the deleted messages are stale now.
//!
//! Who prunes: the one process of a SQLite or memory store always does; replicas sharing a Redis log take a
//! [`Turn`] through a lease (`replicas::retention_lease`), so one of them prunes at a time.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::server::broker::Broker;
use crate::server::observe;
use crate::server::store::retention::Retention;
use crate::server::store::FeedStore;
use crate::shared::domain::FeedName;

/// What each feed keeps: the default, or the feed's own (the settings file's named feeds).
#[derive(Debug, Clone)]
pub struct Policy {
    pub default: Retention,
    pub per_feed: HashMap<FeedName, Retention>,
}

impl Policy {
    pub fn of(&self, feed: &FeedName) -> Retention {
        self.per_feed.get(feed).copied().unwrap_or(self.default)
    }
}

/// Whose turn it is to prune a log that several processes share.
#[async_trait]
pub trait Turn: Send + Sync + 'static {
    /// Whether this process prunes this round (asked once per round, just before it would).
    async fn mine(&self) -> bool;
}

/// Deletes what `policy` no longer keeps in every feed, every `policy.every`, for ever: at every tick if this process
/// is alone on the store (`shared` is `None`), else at the ticks that are its turn. After a feed's pass deleted
/// something, the broker tells every process (this one first) to forget the feed's pages.
pub async fn run(store: Arc<dyn FeedStore>, broker: Arc<dyn Broker>, policy: Policy, shared: Option<Arc<dyn Turn>>) {
    let mut tick = tokio::time::interval(policy.default.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(turn) = &shared {
            if !turn.mine().await {
                continue;
            }
        }
        if let Err(err) = prune_every_feed(store.as_ref(), broker.as_ref(), &policy).await {
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
    policy: &Policy,
) -> Result<(), crate::server::store::StoreError> {
    let now = time::OffsetDateTime::now_utc();
    let mut after: Option<FeedName> = None;
    loop {
        let feeds = store.feeds(after.as_ref(), FEEDS_PER_CALL).await?;
        for feed in &feeds {
            let retention = policy.of(feed);
            let cutoff = retention.max_age.map(|age| now - age);
            let count = store.prune(feed, retention.keep, cutoff).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::broker::LocalBroker;
    use crate::server::hub::Hub;
    use crate::server::pages::PageCache;
    use crate::server::store::{Draft, MemoryStore};
    use crate::shared::domain::{MessageText, Source, Username};
    use std::time::Duration;

    /// One pass keeps each feed to its own retention: the feed the settings name to its own count, every other feed
    /// to the default.
    #[tokio::test]
    async fn a_pass_keeps_each_feed_to_its_own_retention() {
        let store: Arc<dyn FeedStore> = Arc::new(MemoryStore::new(100));
        let hub = Arc::new(Hub::new(8, Arc::new(PageCache::new(8))));
        let broker: Arc<dyn Broker> = Arc::new(LocalBroker::new(store.clone(), hub));
        let (short, other) = (FeedName::parse("short").unwrap(), FeedName::parse("other").unwrap());
        let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 10).unwrap());
        for feed in [&short, &other] {
            for _ in 0..5 {
                store
                    .append(Draft {
                        feed,
                        group: "g",
                        author: &author,
                        text: &text,
                        key: None,
                        source: &Source::Anonymous,
                        address: "",
                    })
                    .await
                    .unwrap();
            }
        }
        let default = Retention { keep: 3, max_age: None, every: Duration::from_secs(60) };
        let policy = Policy { default, per_feed: [(short.clone(), Retention { keep: 1, ..default })].into() };
        prune_every_feed(store.as_ref(), broker.as_ref(), &policy).await.unwrap();
        let ids = |feed: FeedName| {
            let store = store.clone();
            async move { store.since(&feed, 0, 10).await.unwrap().iter().map(|m| m.id).collect::<Vec<_>>() }
        };
        assert_eq!(ids(short).await, [5], "its own: the newest one");
        assert_eq!(ids(other).await, [3, 4, 5], "the default: the newest three");
    }
}
