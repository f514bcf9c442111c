//! `RedisBroker`: how notices travel between replicas that share a `RedisStore`, over the deployment's `Link`.
//!
//! Appending: the store's append script publishes the notice itself (`link::notice::APPENDED_LUA`), in the same
//! atomic step as the append, so notification order is id order on every replica and no notice can announce a
//! message that is not stored. Presence changes and retention passes are published by this broker
//! (`link::notice::Notice`), after the change they announce.
//!
//! Receiving: one supervised task per process (`Receiver`) holds a pub/sub connection to `PREFIX:notices` and hands
//! each notice to the hub; the sender's replica hears its own notices back like every other (no local shortcut
//! that could reorder them). Pub/sub is at-most-once, so the task also heals: after every (re)subscribe, whenever
//! a notice skips ids, and every `heal-every`, it compares the log's head with the last id this process delivered
//! and replays what it missed from the stream, per group (each entry names its group). A killed or silently
//! stalled connection thus delays a notice by at most one heal period. When the log's epoch changes (Redis came
//! back empty, or lost acknowledged ids and the store ended the epoch: see `store::redis`), the settled pages of the
//! old epoch are dropped and every local group is notified so its tabs reload. Every id delivered is told to the
//! store (`RedisStore::saw`): that is how a head or an append notices a Redis that lost it. A presence notice is
//! handed to `Hub::presence_changed` (after a resubscribe every group re-reads once, as presence notices carry no id
//! to heal by); on a retention notice every process forgets its pages. A heal also compares the log's oldest id
//! with the last it saw, so a pass whose notice was lost costs at most one heal period of stale pages.
//!
//! The task never ends: a lost connection is retried with backoff, and a panic restarts it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Mutex;

use super::{Broker, BrokerError};
use crate::server::group::GroupId;
use crate::server::hub::Hub;
use crate::server::link::notice::Notice;
use crate::server::link::Link;
use crate::server::store::redis::{Head, RedisStore};
use crate::server::store::{Appended, Draft, FeedStore, StoreError};

/// Missed notices read per `XRANGE` while healing.
const HEAL_CHUNK: usize = 1_000;
/// Reconnection backoff: from the first to the last delay, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// Replicas on one Redis: appends through the store's script, announcements on the notice channel, and the
/// receiver that feeds this process's hub.
pub struct RedisBroker {
    store: Arc<RedisStore>,
    link: Link,
    hub: Arc<Hub>,
    /// Names this process in its retention notices.
    replica: String,
}

impl RedisBroker {
    /// The broker, its receiver started (see [`Receiver::start`]).
    pub async fn start(
        link: Link,
        store: Arc<RedisStore>,
        hub: Arc<Hub>,
        heal_every: Duration,
        replica: String,
    ) -> Arc<Self> {
        Receiver::start(link.clone(), store.clone(), hub.clone(), heal_every).await;
        Arc::new(Self { store, link, hub, replica })
    }

    async fn publish(&self, notices: &[Notice<'_>]) -> Result<(), BrokerError> {
        let payloads: Vec<String> = notices.iter().map(Notice::encode).collect();
        self.link.publish(&payloads).await.map_err(|err| BrokerError::Unavailable(err.to_string()))
    }
}

#[async_trait]
impl Broker for RedisBroker {
    /// One script appends and publishes (see the module doc); this replica's receiver delivers it here too.
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError> {
        self.store.append(draft).await
    }

    async fn presence_changed(&self, groups: &[GroupId]) -> Result<(), BrokerError> {
        if groups.is_empty() {
            return Ok(());
        }
        let notices: Vec<Notice<'_>> = groups.iter().map(|group| Notice::Presence { group: group.as_str() }).collect();
        self.publish(&notices).await
    }

    /// Lost, the other replicas would keep serving cached pages of deleted messages until their next heal (which
    /// compares the log's oldest id): pub/sub is at-most-once anyway, so a failure is said, not retried.
    async fn pruned(&self, count: u64) -> Result<(), BrokerError> {
        self.hub.pages().forget();
        self.publish(&[Notice::Pruned { count, replica: &self.replica }]).await
    }
}

/// How a session ended: whether it had subscribed, and why.
struct Ended {
    subscribed: bool,
    why: String,
}

impl Ended {
    fn before_subscribing(why: String) -> Self {
        Self { subscribed: false, why }
    }
}

/// Where this process stands: the log's epoch it knows and the newest id it delivered.
#[derive(Debug, Default)]
struct Cursor {
    epoch: Option<String>,
    delivered: u64,
    /// Sessions that got subscribed so far.
    sessions: u64,
    /// The last heal failed (said once per streak, not every heal period).
    failing: bool,
    /// The log's oldest id at the last heal (`None`: not known, or a `pruned` notice since): when it moves up,
    /// messages were deleted.
    oldest: Option<u64>,
}

/// The receive side: pub/sub notices and healing into the local hub.
struct Receiver {
    link: Link,
    store: Arc<RedisStore>,
    hub: Arc<Hub>,
    heal_every: Duration,
    /// Held by the one running session (a restarted one finds it where the last left it).
    cursor: Mutex<Cursor>,
}

impl Receiver {
    /// Starts the supervised task. The log's head is read first (when Redis answers) so that whatever is appended
    /// from now on reaches this hub, even before the first subscription.
    async fn start(link: Link, store: Arc<RedisStore>, hub: Arc<Hub>, heal_every: Duration) {
        let mut cursor = Cursor::default();
        match store.head().await {
            Ok(Head { epoch, seq }) => (cursor.epoch, cursor.delivered) = (Some(epoch), seq),
            Err(err) => tracing::warn!(error = %err, "notices: cannot read the log's head yet; retrying"),
        }
        let receiver = Arc::new(Receiver { link, store, hub, heal_every, cursor: Mutex::new(cursor) });
        tokio::spawn(receiver.supervise());
    }

    /// Runs sessions for ever: each ends only when its connection is lost (or it panicked).
    async fn supervise(self: Arc<Self>) {
        let mut delay = BACKOFF.0;
        loop {
            match tokio::spawn(self.clone().session()).await {
                // A session that got subscribed lost a working connection (e.g. `CLIENT KILL`): reconnect at once,
                // so the missed notices are healed within the first delay, not after a grown backoff.
                Ok(Ended { subscribed, why }) => {
                    tracing::warn!(reason = %why, "notices: subscription lost; reconnecting");
                    if subscribed {
                        delay = BACKOFF.0;
                    }
                }
                Err(err) if err.is_panic() => tracing::error!("notices: the subscriber panicked; restarting it"),
                Err(_) => return, // cancelled: the runtime is shutting down
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF.1);
        }
    }

    /// Subscribes, heals, then delivers notices and heals every `heal_every` until the connection is lost; answers
    /// why it ended.
    async fn session(self: Arc<Self>) -> Ended {
        let mut cursor = self.cursor.lock().await;
        let channel = self.link.notices();
        let pubsub = match self.link.subscriber(&channel).await {
            Ok(pubsub) => pubsub,
            Err(err) => return Ended::before_subscribing(format!("cannot subscribe to {channel}: {err}")),
        };
        tracing::debug!(%channel, "notices: subscribed");
        self.heal_logged(&mut cursor).await;
        // Presence notices carry no id to heal by: after a resubscribe, tabs re-read who is here once (rare).
        if cursor.sessions > 0 {
            self.hub.presence_changed_everywhere();
        }
        cursor.sessions += 1;
        let mut notices = pubsub.into_on_message();
        let mut tick = tokio::time::interval(self.heal_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            tokio::select! {
                notice = notices.next() => match notice {
                    Some(notice) => match notice.get_payload::<String>() {
                        Ok(payload) => self.on_notice(&mut cursor, &payload).await,
                        Err(err) => tracing::warn!(error = %err, "notices: unreadable notice ignored"),
                    },
                    None => return Ended { subscribed: true, why: "the pub/sub connection closed".into() },
                },
                _ = tick.tick() => self.heal_logged(&mut cursor).await,
            }
        }
    }

    /// An append's notice is delivered unless already delivered (missed ids before it are healed first); a
    /// presence notice tells the group; a retention notice makes every page go.
    async fn on_notice(&self, cursor: &mut Cursor, payload: &str) {
        let (epoch, id, group) = match Notice::parse(payload) {
            Some(Notice::Appended { epoch, id, group }) => (epoch, id, group),
            Some(Notice::Presence { group }) => return self.hub.presence_changed(&GroupId::new(group)),
            Some(Notice::Pruned { count, replica }) => {
                // Settled pages outlive appends, not deletions: a page of deleted messages must not be served again.
                tracing::debug!(count, replica, "notices: the log was pruned; cached pages forgotten");
                self.hub.pages().forget();
                // Forgotten already: the next heal takes the oldest id as it finds it, rather than forget again.
                cursor.oldest = None;
                return;
            }
            None => {
                tracing::warn!(payload, "notices: malformed notice ignored");
                return;
            }
        };
        if cursor.epoch.as_deref() != Some(epoch) {
            // Another epoch (or the first one this process sees): the head decides what to do.
            self.heal_logged(cursor).await;
            return;
        }
        if id <= cursor.delivered {
            return; // a heal delivered it already
        }
        if id > cursor.delivered + 1 {
            if let Err(err) = self.catch_up(cursor, id - 1).await {
                tracing::warn!(error = %err, "notices: cannot replay missed notices yet");
                self.hub.deliver(&GroupId::new(group), id);
                return; // the cursor stays: the next heal replays the gap
            }
        }
        self.hub.deliver(&GroupId::new(group), id);
        cursor.delivered = id;
        self.store.saw(epoch, id);
    }

    async fn heal_logged(&self, cursor: &mut Cursor) {
        match self.heal(cursor).await {
            Err(err) if !cursor.failing => {
                tracing::warn!(error = %err, "notices: cannot compare with the log's head; retrying every heal period");
                cursor.failing = true;
            }
            Err(err) => tracing::debug!(error = %err, "notices: still cannot compare with the log's head"),
            Ok(()) if cursor.failing => {
                tracing::info!("notices: compared with the log's head again");
                cursor.failing = false;
            }
            Ok(()) => {}
        }
    }

    /// Compares the log's head with what this process delivered, and delivers the difference.
    async fn heal(&self, cursor: &mut Cursor) -> Result<(), StoreError> {
        let head = self.store.head().await?;
        match cursor.epoch.as_deref() {
            None => (cursor.epoch, cursor.delivered) = (Some(head.epoch), head.seq),
            Some(known) if known != head.epoch => {
                tracing::warn!(
                    from = known,
                    to = %head.epoch,
                    "notices: the log has a new epoch (Redis lost data or is another server); every tab reloads"
                );
                (cursor.epoch, cursor.delivered) = (Some(head.epoch), head.seq);
                // Settled pages are kept for requests naming their epoch: the old epoch's must not outlive it.
                self.hub.pages().forget();
                self.hub.deliver_everywhere(head.seq);
            }
            Some(_) if head.seq > cursor.delivered => self.catch_up(cursor, head.seq).await?,
            Some(_) if head.seq < cursor.delivered => {
                tracing::error!(
                    delivered = cursor.delivered,
                    head = head.seq,
                    "notices: the log lost acknowledged ids in its epoch (Redis durability settings too weak?)"
                );
                cursor.delivered = head.seq;
            }
            Some(_) => {}
        }
        self.notice_deletions(cursor).await
    }

    /// Forgets the pages if the log's oldest id moved up since the last heal: a retention pass (or an append's
    /// trim) whose notice this process did not get. One `XRANGE … COUNT 1` per heal period.
    async fn notice_deletions(&self, cursor: &mut Cursor) -> Result<(), StoreError> {
        let oldest = self.store.sent_since(0, 1).await?.first().map(|sent| sent.id);
        if cursor.oldest.is_some_and(|known| oldest.is_none_or(|now| now > known)) {
            tracing::debug!(
                from = cursor.oldest,
                to = oldest,
                "notices: the log's oldest messages went; pages forgotten"
            );
            self.hub.pages().forget();
        }
        cursor.oldest = oldest;
        Ok(())
    }

    /// Delivers the ids after `cursor.delivered` up to `to`, each group once with its newest id (a notice means
    /// "up to this id"), in id order. Ids retention already took cannot name their group: every group hears then.
    async fn catch_up(&self, cursor: &mut Cursor, to: u64) -> Result<(), StoreError> {
        let mut newest: HashMap<String, u64> = HashMap::new();
        let (mut after, mut trimmed) = (cursor.delivered, false);
        while after < to {
            let page = self.store.sent_since(after, HEAL_CHUNK).await?;
            let Some(first) = page.first() else { break };
            trimmed |= first.id > after + 1;
            for sent in page.iter().filter(|sent| sent.id <= to) {
                newest.insert(sent.group.clone(), sent.id);
            }
            after = page.last().map_or(to, |sent| sent.id);
        }
        let mut groups: Vec<(u64, String)> = newest.into_iter().map(|(group, id)| (id, group)).collect();
        groups.sort_unstable();
        tracing::debug!(from = cursor.delivered, to, groups = groups.len(), "notices: healed");
        for (id, group) in groups {
            self.hub.deliver(&GroupId::new(group), id);
        }
        if trimmed {
            self.hub.deliver_everywhere(to);
        }
        cursor.delivered = to;
        Ok(())
    }
}
