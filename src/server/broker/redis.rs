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
//! to heal by); on a retention notice every process forgets its pages. A removal notice (published by the store's
//! removal script, in its step) names the new epoch the log goes on in, ids unchanged: the pages of the old one go
//! and every tab of the feed is told, so it reloads and shows the message removed; a lost one is healed like any
//! new epoch. A heal also compares the log's oldest id
//! with the last it saw, so a pass whose notice was lost costs at most one heal period of stale pages.
//!
//! The task never ends: a lost connection is retried with backoff, and a panic restarts it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Mutex;

use super::{Broker, BrokerError};
use crate::server::group::{Audience, GroupId};
use crate::server::hub::Hub;
use crate::server::link::notice::Notice;
use crate::server::link::{Link, COMMAND_TIMEOUT};
use crate::server::store::redis::{Head, RedisStore};
use crate::server::store::{Appended, Draft, FeedStore, StoreError};
use crate::shared::domain::FeedName;

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

    async fn publish(&self, notices: &[(FeedName, Notice<'_>)]) -> Result<(), BrokerError> {
        let payloads: Vec<(FeedName, String)> =
            notices.iter().map(|(feed, notice)| (feed.clone(), notice.encode())).collect();
        self.link.publish(&payloads).await.map_err(|err| BrokerError::Unavailable(err.to_string()))
    }
}

#[async_trait]
impl Broker for RedisBroker {
    /// One script appends and publishes (see the module doc); this replica's receiver delivers it here too.
    /// The script appends and publishes in one step, so the notice may reach this replica's tabs before the
    /// answer: the page they will ask for is prepared as soon as the answer comes (`Hub::prepare`), and a refetch
    /// that came sooner reads the store as on every other replica.
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError> {
        let appended = self.store.append(draft).await?;
        if appended.fresh {
            let audience = Audience::new(draft.feed.clone(), GroupId::new(draft.group));
            self.hub.prepare(&audience, &appended.epoch, &appended.message);
        }
        Ok(appended)
    }

    async fn presence_changed(&self, groups: &[Audience]) -> Result<(), BrokerError> {
        if groups.is_empty() {
            return Ok(());
        }
        let notices: Vec<(FeedName, Notice<'_>)> = groups
            .iter()
            .map(|audience| (audience.feed.clone(), Notice::Presence { group: audience.group.as_str() }))
            .collect();
        self.publish(&notices).await
    }

    /// Lost, the other replicas would keep serving cached pages of deleted messages until their next heal (which
    /// compares the log's oldest id): pub/sub is at-most-once anyway, so a failure is said, not retried.
    async fn pruned(&self, feed: &FeedName, count: u64) -> Result<(), BrokerError> {
        self.hub.pages().forget(feed);
        self.publish(&[(feed.clone(), Notice::Pruned { count, replica: &self.replica })]).await
    }

    /// The store's removal script published the notice itself, in the step that removed (`REMOVED_LUA`), so it
    /// comes before any append of the new epoch; every replica's receiver, this one's too, tells its tabs. Lost, a
    /// replica's tabs reload at its next heal (which finds the new epoch). Here only this process's pages go at once.
    async fn removed(&self, feed: &FeedName, _epoch: &str, _last: u64) -> Result<(), BrokerError> {
        self.hub.pages().forget(feed);
        Ok(())
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

/// Where this process stands on one feed: the log's epoch it knows and the newest id it delivered.
#[derive(Debug, Default)]
struct Cursor {
    epoch: Option<String>,
    delivered: u64,
    /// The last heal failed (said once per streak, not every heal period).
    failing: bool,
    /// The log's oldest id at the last heal (`None`: not known, or a `pruned` notice since): when it moves up,
    /// messages were deleted.
    oldest: Option<u64>,
}

/// What the receiver keeps across sessions: a cursor per feed it listens to.
#[derive(Default)]
struct Listening {
    cursors: HashMap<FeedName, Cursor>,
    /// Sessions that got subscribed so far.
    sessions: u64,
}

/// The receive side: pub/sub notices and healing into the local hub, for the feeds this process has subscribers
/// of (`Hub::feeds`): a feed's channel is subscribed when its first local subscriber comes and left after the last
/// goes, so a replica hears only of the feeds its tabs show.
struct Receiver {
    link: Link,
    store: Arc<RedisStore>,
    hub: Arc<Hub>,
    heal_every: Duration,
    /// Held by the one running session (a restarted one finds it where the last left it).
    listening: Mutex<Listening>,
}

impl Receiver {
    /// Starts the supervised task.
    async fn start(link: Link, store: Arc<RedisStore>, hub: Arc<Hub>, heal_every: Duration) {
        let receiver = Arc::new(Receiver { link, store, hub, heal_every, listening: Mutex::default() });
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

    /// Connects, subscribes to the feeds the hub has subscribers of (healing each), then delivers notices, follows
    /// the hub's feeds as they change, and heals every `heal_every`, until the connection is lost; answers why it
    /// ended.
    async fn session(self: Arc<Self>) -> Ended {
        let mut listening = self.listening.lock().await;
        let (mut sink, mut notices) = match self.link.pubsub().await {
            Ok(pubsub) => pubsub.split(),
            Err(err) => return Ended::before_subscribing(format!("cannot open a pub/sub connection: {err}")),
        };
        let mut subscribed: HashSet<FeedName> = HashSet::new();
        let feeds_changed = self.hub.feeds_changed();
        if let Err(why) = self.follow_feeds(&mut listening, &mut sink, &mut subscribed, true).await {
            return Ended::before_subscribing(why);
        }
        tracing::debug!(feeds = subscribed.len(), "notices: subscribed");
        // Presence notices carry no id to heal by: after a resubscribe, tabs re-read who is here once (rare).
        if listening.sessions > 0 {
            self.hub.presence_changed_everywhere();
        }
        listening.sessions += 1;
        let mut tick = tokio::time::interval(self.heal_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            tokio::select! {
                notice = notices.next() => match notice {
                    Some(notice) => {
                        let feed = self.link.feed_of(notice.get_channel_name());
                        match (feed, notice.get_payload::<String>()) {
                            (Some(feed), Ok(payload)) => self.on_notice(&mut listening, &feed, &payload).await,
                            _ => tracing::warn!(channel = notice.get_channel_name(), "notices: unreadable notice ignored"),
                        }
                    }
                    None => return Ended { subscribed: true, why: "the pub/sub connection closed".into() },
                },
                _ = feeds_changed.notified() => {
                    if let Err(why) = self.follow_feeds(&mut listening, &mut sink, &mut subscribed, false).await {
                        return Ended { subscribed: true, why };
                    }
                }
                _ = tick.tick() => {
                    if let Err(why) = self.follow_feeds(&mut listening, &mut sink, &mut subscribed, true).await {
                        return Ended { subscribed: true, why };
                    }
                    for feed in &subscribed {
                        let cursor = listening.cursors.entry(feed.clone()).or_default();
                        self.heal_logged(feed, cursor).await;
                    }
                }
            }
        }
    }

    /// Subscribes to the channel of every feed the hub has subscribers or pages of and is not listened to yet, and,
    /// with `leave`, leaves those it has neither of now. Leaving waits for the heal tick, so a feed whose last page
    /// went and whose next is read a moment later (a refetch after each notice) is not left and joined again.
    async fn follow_feeds(
        &self,
        listening: &mut Listening,
        sink: &mut redis::aio::PubSubSink,
        subscribed: &mut HashSet<FeedName>,
        leave: bool,
    ) -> Result<(), String> {
        let wanted: HashSet<FeedName> = self.hub.feeds().into_iter().collect();
        for feed in wanted.difference(subscribed).cloned().collect::<Vec<_>>() {
            let channel = self.link.notices(&feed);
            match tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(format!("cannot subscribe to {channel}: {err}")),
                Err(_) => return Err(format!("cannot subscribe to {channel} in {COMMAND_TIMEOUT:?}")),
            }
            subscribed.insert(feed.clone());
            let cursor = listening.cursors.entry(feed.clone()).or_default();
            if cursor.epoch.is_none() {
                // A feed this replica appended to or heard of before: it starts from there, so the heal below tells
                // its tabs of whatever came since, a new log (Redis came back empty) included.
                let seen = self.store.seen(&feed);
                if !seen.epoch.is_empty() {
                    (cursor.epoch, cursor.delivered) = (Some(seen.epoch), seen.seq);
                }
            }
            if cursor.epoch.is_some() {
                // Listened to before this session, or seen: what it missed meanwhile is healed from where it was.
                self.heal_logged(&feed, cursor).await;
                continue;
            }
            // Newly wanted: whatever was appended before the subscription took effect is at most the head, read
            // now; its id goes to the feed's subscribers here (a tab that has it already refetches nothing), and the
            // feed's pages, which may be older, go. Everything after comes on the channel.
            match self.store.head(&feed).await {
                Ok(Head { epoch, seq }) => {
                    (cursor.epoch, cursor.delivered) = (Some(epoch), seq);
                    match seq {
                        0 => self.hub.pages().forget(&feed),
                        seq => self.hub.deliver_to_feed(&feed, seq),
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, %feed, "notices: cannot read the feed's head yet; the next heal will");
                    self.hub.pages().forget(&feed);
                }
            }
        }
        let gone: Vec<FeedName> = if leave { subscribed.difference(&wanted).cloned().collect() } else { Vec::new() };
        for feed in gone {
            let channel = self.link.notices(&feed);
            match tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(&channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(format!("cannot unsubscribe from {channel}: {err}")),
                Err(_) => return Err(format!("cannot unsubscribe from {channel} in {COMMAND_TIMEOUT:?}")),
            }
            subscribed.remove(&feed);
            listening.cursors.remove(&feed);
        }
        Ok(())
    }

    /// An append's notice is delivered unless already delivered (missed ids before it are healed first); a
    /// presence notice tells the group; a retention notice makes the feed's pages go.
    async fn on_notice(&self, listening: &mut Listening, feed: &FeedName, payload: &str) {
        // A notice of a feed just left (it was published before the unsubscribe took effect): nobody here wants it.
        let Some(cursor) = listening.cursors.get_mut(feed) else { return };
        let (epoch, id, group) = match Notice::parse(payload) {
            Some(Notice::Appended { epoch, id, group }) => (epoch, id, group),
            Some(Notice::Presence { group }) => {
                return self.hub.presence_changed(&Audience::new(feed.clone(), GroupId::new(group)))
            }
            Some(Notice::Pruned { count, replica }) => {
                // Settled pages outlive appends, not deletions: a page of deleted messages must not be served again.
                tracing::debug!(count, replica, %feed, "notices: the log was pruned; cached pages forgotten");
                self.hub.pages().forget(feed);
                // Forgotten already: the next heal takes the oldest id as it finds it, rather than forget again.
                cursor.oldest = None;
                return;
            }
            Some(Notice::Removed { id, epoch }) => {
                if cursor.epoch.as_deref() != Some(epoch) {
                    tracing::debug!(%feed, epoch, "notices: messages were removed; every tab of the feed reloads");
                    (cursor.epoch, cursor.delivered) = (Some(epoch.to_owned()), id);
                    self.hub.pages().forget(feed);
                    self.hub.deliver_to_feed(feed, id);
                    self.store.saw(feed, epoch, id);
                }
                return;
            }
            None => {
                tracing::warn!(payload, "notices: malformed notice ignored");
                return;
            }
        };
        let audience = Audience::new(feed.clone(), GroupId::new(group));
        if cursor.epoch.as_deref() != Some(epoch) {
            // Another epoch (or the first one this process sees): the head decides what to do.
            self.heal_logged(feed, cursor).await;
            return;
        }
        if id <= cursor.delivered {
            return; // a heal delivered it already
        }
        if id > cursor.delivered + 1 {
            if let Err(err) = self.catch_up(feed, cursor, id - 1).await {
                tracing::warn!(error = %err, "notices: cannot replay missed notices yet");
                self.hub.deliver(&audience, id);
                return; // the cursor stays: the next heal replays the gap
            }
        }
        self.hub.deliver(&audience, id);
        cursor.delivered = id;
        self.store.saw(feed, epoch, id);
    }

    async fn heal_logged(&self, feed: &FeedName, cursor: &mut Cursor) {
        match self.heal(feed, cursor).await {
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
    async fn heal(&self, feed: &FeedName, cursor: &mut Cursor) -> Result<(), StoreError> {
        let head = self.store.head(feed).await?;
        match cursor.epoch.as_deref() {
            None => (cursor.epoch, cursor.delivered) = (Some(head.epoch), head.seq),
            // The feed held nothing (no epoch yet): its first epoch is no new log; its ids are caught up as missed ones.
            Some("") => {
                cursor.epoch = Some(head.epoch);
                self.catch_up(feed, cursor, head.seq).await?;
            }
            Some(known) if known != head.epoch => {
                if head.seq >= cursor.delivered {
                    // Ids go on: most likely a removal whose notice this process did not get.
                    tracing::debug!(from = known, to = %head.epoch, "notices: the log has a new epoch; every tab reloads");
                } else {
                    tracing::warn!(
                        from = known,
                        to = %head.epoch,
                        "notices: the log has a new epoch (Redis lost data or is another server); every tab reloads"
                    );
                }
                (cursor.epoch, cursor.delivered) = (Some(head.epoch), head.seq);
                // Settled pages are kept for requests naming their epoch: the old epoch's must not outlive it.
                self.hub.pages().forget(feed);
                self.hub.deliver_to_feed(feed, head.seq);
            }
            Some(_) if head.seq > cursor.delivered => self.catch_up(feed, cursor, head.seq).await?,
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
        self.notice_deletions(feed, cursor).await
    }

    /// Forgets the pages if the log's oldest id moved up since the last heal: a retention pass (or an append's
    /// trim) whose notice this process did not get. One `XRANGE … COUNT 1` per heal period.
    async fn notice_deletions(&self, feed: &FeedName, cursor: &mut Cursor) -> Result<(), StoreError> {
        let oldest = self.store.sent_since(feed, 0, 1).await?.first().map(|sent| sent.id);
        if cursor.oldest.is_some_and(|known| oldest.is_none_or(|now| now > known)) {
            tracing::debug!(
                from = cursor.oldest,
                to = oldest,
                "notices: the log's oldest messages went; pages forgotten"
            );
            self.hub.pages().forget(feed);
        }
        cursor.oldest = oldest;
        Ok(())
    }

    /// Delivers the ids after `cursor.delivered` up to `to`, each group once with its newest id (a notice means
    /// "up to this id"), in id order. Ids retention already took cannot name their group: every group hears then.
    async fn catch_up(&self, feed: &FeedName, cursor: &mut Cursor, to: u64) -> Result<(), StoreError> {
        let mut newest: HashMap<String, u64> = HashMap::new();
        let (mut after, mut trimmed) = (cursor.delivered, false);
        while after < to {
            let page = self.store.sent_since(feed, after, HEAL_CHUNK).await?;
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
            self.hub.deliver(&Audience::new(feed.clone(), GroupId::new(group)), id);
        }
        if trimmed {
            self.hub.deliver_to_feed(feed, to);
        }
        cursor.delivered = to;
        Ok(())
    }
}
