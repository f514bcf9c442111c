//! `LocalBroker`: one process (a SQLite or memory store). The append commits, then its notice goes straight into
//! the hub; there is nothing to receive from elsewhere, so no receive loop.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Broker, BrokerError};
use crate::server::group::{Audience, GroupId};
use crate::server::hub::Hub;
use crate::server::observe;
use crate::server::store::{Appended, Draft, FeedStore, StoreError};
use crate::shared::domain::FeedName;

pub struct LocalBroker {
    store: Arc<dyn FeedStore>,
    hub: Arc<Hub>,
}

impl LocalBroker {
    pub fn new(store: Arc<dyn FeedStore>, hub: Arc<Hub>) -> Self {
        Self { store, hub }
    }
}

#[async_trait]
impl Broker for LocalBroker {
    /// The store takes and releases its own lock inside `append`, so delivery never runs under it. The page the
    /// notice makes every up-to-date tab ask for is made from the message before the notice goes out.
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError> {
        let appended = self.store.append(draft).await?;
        if appended.fresh {
            let started = std::time::Instant::now();
            let audience = Audience::new(draft.feed.clone(), GroupId::new(draft.group));
            self.hub.prepare(&audience, &appended.epoch, &appended.message);
            self.hub.deliver(&audience, appended.message.id);
            observe::fanned_out(started.elapsed());
        }
        Ok(appended)
    }

    async fn presence_changed(&self, audiences: &[Audience]) -> Result<(), BrokerError> {
        audiences.iter().for_each(|audience| self.hub.presence_changed(audience));
        Ok(())
    }

    async fn pruned(&self, feed: &FeedName, _count: u64) -> Result<(), BrokerError> {
        self.hub.pages().forget(feed);
        Ok(())
    }

    async fn removed(&self, feed: &FeedName, _epoch: &str, last: u64) -> Result<(), BrokerError> {
        self.hub.pages().forget(feed);
        self.hub.deliver_to_feed(feed, last);
        Ok(())
    }
}
