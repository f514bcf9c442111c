//! The local hub: the subscribers of this process, per session group, and what reaches them. Every backend shares
//! it (as centrifuge's Hub, or Socket.IO's local rooms); only how a notice travels between processes differs, and
//! that is the `Broker`'s job. Whatever broker runs, it (or its receive loop) calls `Hub::deliver`.
//!
//! A notice carries only the newest message id: a subscriber that falls behind gets one notice for the latest id
//! instead of a backlog, and never a broken stream. A presence notice (`PresenceChanged`: who is here changed, the
//! tab asks `GET /api/presence`) carries nothing, so any number of them queued are one, and it travels beside the
//! message notices: coalescing never lets one kind stand in for the other. Presence notices are also paced per
//! group: the first change goes out at once, later ones within [`PRESENCE_EVERY`] fold into one at the end of that
//! window, so tabs that join and leave as fast as they can cost every stream of the group (and every tab's re-read
//! of the list) at most about one notice a second, and the last change is always told. Its SSE frame is encoded
//! once, when it is delivered, and every subscriber writes the same bytes. `deliver` forgets the shared pages of the log before it notifies anyone, so no
//! tab is told of a message and then served a page cached before it, whichever process appended it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use futures::stream::{self, BoxStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::server::group::{Audience, GroupId};
use crate::server::pages::PageCache;
use crate::shared::domain::{FeedName, Message};
use crate::shared::wire;

/// At most one presence notice per group this often (the first of a quiet spell at once).
pub const PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// The SSE event name of an append.
pub const EVENT_NAME: &str = crate::shared::wire::NEW_MESSAGE;

/// A presence change's frame. No `id:` line (the stream's last event id stays the newest message id, which a
/// reconnect sends back); a `data:` line because a browser drops an event without data.
const PRESENCE_FRAME: &[u8] = b"event: PresenceChanged\ndata: presence\n\n";

/// "Messages up to `id` exist" (or, `presence`, "who is here changed") in a feed, with its Server-Sent Events
/// frames, each encoded once for every subscriber: `frame` for a stream that names no feed (`main` only, as before
/// feeds), `named` for one that names its feeds (the data says which: `wire::feed_notice_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The newest message id; 0 for a presence notice.
    pub id: u64,
    pub frame: Bytes,
    pub named: Bytes,
    pub presence: bool,
}

impl Notice {
    pub fn new(feed: &FeedName, id: u64) -> Self {
        let frame = Bytes::from(format!("event: {EVENT_NAME}\nid: {id}\ndata: {id}\n\n"));
        let named =
            Bytes::from(format!("event: {EVENT_NAME}\ndata: {}\n\n", wire::feed_notice_data(feed.as_str(), id)));
        Self { id, frame, named, presence: false }
    }

    /// "Who is here in this group changed" in `feed`.
    pub fn presence(feed: &FeedName) -> Self {
        let named = Bytes::from(format!(
            "event: {}\ndata: {}\n\n",
            wire::PRESENCE_CHANGED,
            wire::feed_presence_data(feed.as_str())
        ));
        Self { id: 0, frame: Bytes::from_static(PRESENCE_FRAME), named, presence: true }
    }
}

/// A subscription: yields the newest notice each time the group is notified; ends when the hub closes.
pub type Subscription = BoxStream<'static, Notice>;

type Channels = Arc<Mutex<HashMap<Audience, Channel>>>;

/// A group's broadcast channel, and the pace of its presence notices.
struct Channel {
    feed: FeedName,
    sender: broadcast::Sender<Notice>,
    /// When the last presence notice went out.
    presence_told: Option<Instant>,
    /// A change came since, within the window: a notice is due at its end, this instant (a timer waits for it).
    presence_due: Option<Instant>,
}

impl Channel {
    fn new(capacity: usize, feed: FeedName) -> Self {
        Self { feed, sender: broadcast::channel(capacity).0, presence_told: None, presence_due: None }
    }

    /// Tells now; a notice that was due is told by this one (its timer then finds nothing due).
    fn tell_presence(&mut self) {
        self.presence_told = Some(Instant::now());
        self.presence_due = None;
        let _ = self.sender.send(Notice::presence(&self.feed)); // Err means no subscribers: nothing to do.
    }
}

/// One broadcast channel per group with live subscribers; a group's channel goes when its last subscriber does.
pub struct Hub {
    capacity: usize,
    /// At most one presence notice per group per this long.
    presence_every: Duration,
    channels: Channels,
    closed: AtomicBool,
    /// The shared pages of the log, forgotten on each delivery.
    pages: Arc<PageCache>,
    /// Presence changes so far, in any group: a subscriber that lagged (and may have lost a presence notice with
    /// the message notices) is told again only if this moved since it last heard.
    presence_changes: Arc<AtomicU64>,
    /// Woken when an audience gets its first subscriber here or loses its last, or a feed its first cached page
    /// or its last (the page cache's own, shared): `feeds` may answer otherwise, which a cross-process broker
    /// follows.
    feeds_changed: Arc<Notify>,
    /// Event streams open now, per session group (one stream may follow several feeds, each an audience).
    streams: Arc<Mutex<HashMap<GroupId, usize>>>,
}

/// One open event stream, counted against its group until dropped.
pub struct StreamCount {
    streams: Arc<Mutex<HashMap<GroupId, usize>>>,
    group: GroupId,
}

impl Drop for StreamCount {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = streams.get_mut(&self.group) {
            *count -= 1;
            if *count == 0 {
                streams.remove(&self.group);
            }
        }
    }
}

impl Hub {
    /// `capacity`: notices queued per subscriber; one further behind is coalesced to the latest id.
    pub fn new(capacity: usize, pages: Arc<PageCache>) -> Self {
        Self {
            capacity: capacity.max(1),
            presence_every: PRESENCE_EVERY,
            channels: Arc::default(),
            closed: AtomicBool::new(false),
            presence_changes: Arc::default(),
            feeds_changed: pages.feeds_changed(),
            pages,
            streams: Arc::default(),
        }
    }

    /// Counts an event stream of `group` until the answer is dropped (the stream caps count streams, not the
    /// audiences each follows).
    pub fn open_stream(&self, group: &GroupId) -> StreamCount {
        *self.lock_streams().entry(group.clone()).or_default() += 1;
        StreamCount { streams: self.streams.clone(), group: group.clone() }
    }

    /// Feeds with at least one subscriber here now (`broadcasting_feeds_followed`).
    pub fn feeds_followed(&self) -> usize {
        let channels = lock(&self.channels);
        let feeds: std::collections::HashSet<&FeedName> = channels.keys().map(|audience| &audience.feed).collect();
        feeds.len()
    }

    /// Event streams open now, in all (`broadcasting_open_streams`): a stream that follows several feeds is one.
    pub fn streams_open(&self) -> usize {
        self.lock_streams().values().sum()
    }

    /// Event streams open now: of `group`, and in all.
    pub fn streams(&self, group: &GroupId) -> (usize, usize) {
        let streams = self.lock_streams();
        (streams.get(group).copied().unwrap_or(0), streams.values().sum())
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, usize>> {
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notified (one stored wake-up, however many changes) when `feeds` may answer otherwise.
    pub fn feeds_changed(&self) -> Arc<Notify> {
        self.feeds_changed.clone()
    }

    /// The same hub, with presence notices at most once per `every` per group (tests).
    pub fn with_presence_every(self, every: Duration) -> Self {
        Self { presence_every: every, ..self }
    }

    /// The page cache this hub invalidates.
    pub fn pages(&self) -> &Arc<PageCache> {
        &self.pages
    }

    /// Groups that have a channel now (for tests and metrics).
    pub fn group_count(&self) -> usize {
        lock(&self.channels).len()
    }

    /// Messages up to `id` exist in `group`'s feed (appended here or in another process): forgets the feed's shared
    /// pages, then notifies every local subscriber of `group`.
    /// A notice for every follower (`GroupId::every_follower`: a backend's publish) goes to every group of the feed.
    pub fn deliver(&self, group: &Audience, id: u64) {
        if group.group.is_every_follower() {
            return self.deliver_to_feed(&group.feed, id);
        }
        self.pages.invalidate(&group.feed);
        // Clone the sender and release the registry lock before sending.
        let sender = lock(&self.channels).get(group).map(|channel| channel.sender.clone());
        if let Some(sender) = sender {
            let _ = sender.send(Notice::new(&group.feed, id)); // Err means no subscribers: nothing to do.
        }
    }

    /// `message` was just appended for `group` in `epoch`: if tabs here are subscribed to it, prepare the page each
    /// will ask for on the notice (`PageCache::prepare`), so that no refetch of it reads the store. Call before the
    /// notice goes out. A group nobody here follows gets nothing: its pages would only take room.
    pub fn prepare(&self, group: &Audience, epoch: &str, message: &Message) {
        let followed = if group.group.is_every_follower() {
            lock(&self.channels)
                .iter()
                .any(|(audience, channel)| audience.feed == group.feed && channel.sender.receiver_count() > 0)
        } else {
            lock(&self.channels).get(group).is_some_and(|channel| channel.sender.receiver_count() > 0)
        };
        if followed && !epoch.is_empty() {
            self.pages.prepare(&group.feed, epoch, message);
        }
    }

    /// Who is here in `group` changed (a tab joined, left or its lease ran out): notifies its local subscribers,
    /// at once if the group heard of no change within the last `presence_every`, else once at the end of it
    /// (however many changes come meanwhile). The page cache is untouched: the log did not change.
    pub fn presence_changed(&self, group: &Audience) {
        self.presence_changes.fetch_add(1, Ordering::SeqCst);
        let mut channels = lock(&self.channels);
        let Some(channel) = channels.get_mut(group) else { return };
        let next = channel.presence_told.map(|told| told + self.presence_every);
        match next.filter(|next| *next > Instant::now()) {
            None => channel.tell_presence(),
            Some(_) if channel.presence_due.is_some() => {} // folded into the notice already due
            Some(at) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    channel.presence_due = Some(at);
                    runtime.spawn(tell_presence_at(self.channels.clone(), group.clone(), at));
                }
                Err(_) => channel.tell_presence(), // no timer to wait with: told now rather than never
            },
        }
    }

    /// Who is here may have changed in any group (a broker that may have lost presence notices reconnected).
    pub fn presence_changed_everywhere(&self) {
        let groups: Vec<Audience> = lock(&self.channels).keys().cloned().collect();
        groups.iter().for_each(|group| self.presence_changed(group));
    }

    /// Subscribes to `group`; dropping the stream unsubscribes.
    pub fn subscribe(&self, group: &Audience) -> Subscription {
        if self.closed.load(Ordering::SeqCst) {
            return Box::pin(stream::empty());
        }
        let receiver = {
            let mut channels = lock(&self.channels);
            let channel = channels.entry(group.clone()).or_insert_with(|| {
                self.feeds_changed.notify_one();
                Channel::new(self.capacity, group.feed.clone())
            });
            channel.sender.subscribe()
        };
        let member = Member {
            receiver: Some(receiver),
            group: group.clone(),
            channels: self.channels.clone(),
            presence_due: false,
            presence_changes: self.presence_changes.clone(),
            presence_heard: self.presence_changes.load(Ordering::SeqCst),
            feeds_changed: self.feeds_changed.clone(),
        };
        Box::pin(stream::unfold(member, |mut member| async move {
            let notice = member.next_latest().await?;
            Some((notice, member))
        }))
    }

    /// Ends every subscription, and every later one at once (shutdown: the streams close, tabs reconnect).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock(&self.channels).clear(); // dropping the senders ends every receiver
    }

    /// Messages up to `id` exist in `feed` for every group (its log was made anew, or notices were lost with their
    /// groups): every local subscriber of the feed is notified, so every tab of it refetches.
    pub fn deliver_to_feed(&self, feed: &FeedName, id: u64) {
        self.pages.invalidate(feed);
        let audiences: Vec<Audience> =
            lock(&self.channels).keys().filter(|audience| audience.feed == *feed).cloned().collect();
        for audience in audiences {
            self.deliver(&audience, id);
        }
    }

    /// The feeds this process has subscribers or cached pages of now, each once: what a cross-process broker must
    /// hear of (to notify the subscribers, and to forget the pages when the feed changes).
    pub fn feeds(&self) -> Vec<FeedName> {
        let mut feeds: Vec<FeedName> = lock(&self.channels).keys().map(|audience| audience.feed.clone()).collect();
        feeds.extend(self.pages.feeds());
        feeds.sort_unstable();
        feeds.dedup();
        feeds
    }
}

fn lock(channels: &Channels) -> std::sync::MutexGuard<'_, HashMap<Audience, Channel>> {
    channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tells `group` of the presence changes folded since its last notice, at `at`, if that notice is still the one
/// due: not if a change told at once meanwhile (that notice carried them, and a later timer may wait for newer
/// ones), nor if the channel went (a new one's subscribers read the list when their streams open).
async fn tell_presence_at(channels: Channels, group: Audience, at: Instant) {
    tokio::time::sleep_until(at).await;
    if let Some(channel) = lock(&channels).get_mut(&group).filter(|channel| channel.presence_due == Some(at)) {
        channel.tell_presence();
    }
}

/// One subscriber's receiver; on drop it removes its group's channel if it was the last one.
struct Member {
    receiver: Option<broadcast::Receiver<Notice>>,
    group: Audience,
    channels: Channels,
    /// A presence notice drained along with a message notice, answered next.
    presence_due: bool,
    /// The hub's count of presence changes, and its value when this subscriber last heard of one.
    presence_changes: Arc<AtomicU64>,
    presence_heard: u64,
    feeds_changed: Arc<Notify>,
}

impl Member {
    /// Waits for a notification, then drains whatever else is queued: answers the newest message notice, and a
    /// presence notice if one was among them (then the message first, the presence one on the next call). A
    /// subscriber that lagged may have lost a presence notice with the rest: it gets one if any group's presence
    /// changed since it last heard (at worst one needless `GET /api/presence`).
    async fn next_latest(&mut self) -> Option<Notice> {
        if std::mem::take(&mut self.presence_due) {
            return Some(self.heard_presence());
        }
        let moved = (self.presence_changes.clone(), self.presence_heard);
        let presence_moved = move || moved.0.load(Ordering::SeqCst) != moved.1;
        let receiver = self.receiver.as_mut()?;
        let mut drained = Drained::default();
        loop {
            match receiver.recv().await {
                Ok(notice) => break drained.take(notice),
                Err(RecvError::Lagged(_)) => drained.presence |= presence_moved(),
                Err(RecvError::Closed) => return None,
            }
        }
        loop {
            match receiver.try_recv() {
                Ok(notice) => drained.take(notice),
                Err(TryRecvError::Lagged(_)) => drained.presence |= presence_moved(),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        let Drained { latest, presence } = drained;
        match latest {
            Some(message) => {
                self.presence_due = presence;
                Some(message)
            }
            None => presence.then(|| self.heard_presence()),
        }
    }

    fn heard_presence(&mut self) -> Notice {
        self.presence_heard = self.presence_changes.load(Ordering::SeqCst);
        Notice::presence(&self.group.feed)
    }
}

/// What a subscriber drained from its queue: the newest message notice, and whether who is here changed.
#[derive(Default)]
struct Drained {
    latest: Option<Notice>,
    presence: bool,
}

impl Drained {
    fn take(&mut self, notice: Notice) {
        if notice.presence {
            self.presence = true;
        } else if self.latest.as_ref().is_none_or(|seen| notice.id > seen.id) {
            self.latest = Some(notice);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut channels = lock(&self.channels);
        if channels.get(&self.group).is_some_and(|channel| channel.sender.receiver_count() == 0) {
            channels.remove(&self.group);
            self.feeds_changed.notify_one();
        }
    }
}

/// Delivery to the right group, coalescing and close are proven through every broker in `broker::contract`.
#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    fn hub(capacity: usize) -> Hub {
        Hub::new(capacity, Arc::new(PageCache::new(8)))
    }

    async fn next_now(sub: &mut Subscription) -> Option<u64> {
        let notice = tokio::time::timeout(Duration::from_millis(50), sub.next()).await.ok().flatten()?;
        assert_eq!(notice, Notice::new(&FeedName::main(), notice.id), "the frame announces the notice's id");
        Some(notice.id)
    }

    #[tokio::test]
    async fn delivering_to_a_group_without_subscribers_is_a_no_op_and_channels_are_pruned() {
        let hub = hub(4);
        let group = Audience::main(GroupId::new("g"));
        hub.deliver(&group, 1);
        assert_eq!(hub.group_count(), 0);
        let one = hub.subscribe(&group);
        let two = hub.subscribe(&group);
        assert_eq!(hub.group_count(), 1);
        drop(one);
        assert_eq!(hub.group_count(), 1);
        drop(two);
        assert_eq!(hub.group_count(), 0);
    }

    /// A notice from another process (the broker's receive loop calls `deliver`; no append happened here) still
    /// forgets the cached pages, before the subscriber hears of it: the page it then asks for holds the message.
    #[tokio::test]
    async fn a_delivery_from_the_bus_forgets_the_cached_pages_before_any_subscriber_hears_of_it() {
        use crate::server::pages::PageKey;
        use crate::shared::domain::Message;
        let message = |id: u64| Message {
            id,
            user: "ada".into(),
            text: format!("m{id}"),
            at: "2026-11-24T00:00:00Z".into(),
            source: Default::default(),
            removed: false,
        };
        let pages = Arc::new(PageCache::new(8));
        let hub = Hub::new(8, pages.clone());
        let group = Audience::main(GroupId::new("g"));
        let mut tab = hub.subscribe(&group);
        // the tab has read the page after 4 while the log ended at 4
        let stale = pages
            .get(&FeedName::main(), PageKey::Since(4), None, || async { Ok(("e".to_owned(), vec![])) })
            .await
            .unwrap();
        assert!(stale.messages.is_empty());
        assert_eq!(pages.len(), 1);
        hub.deliver(&group, 5);
        assert_eq!(next_now(&mut tab).await, Some(5));
        let after = pages
            .get(&FeedName::main(), PageKey::Since(4), None, || async { Ok(("e".to_owned(), vec![message(5)])) })
            .await
            .unwrap();
        assert_eq!(after.messages, vec![message(5)], "the page after 4 is read again, not served from before");
    }

    /// Presence notices coalesce among themselves only: a burst of message notices with presence notices among
    /// them answers the newest message and then one presence notice, whichever came first.
    #[tokio::test(start_paused = true)]
    async fn presence_notices_neither_swallow_nor_are_swallowed_by_message_notices() {
        let hub = hub(16);
        let group = Audience::main(GroupId::new("g"));
        let mut tab = hub.subscribe(&group);
        hub.presence_changed(&group);
        hub.deliver(&group, 3);
        hub.presence_changed(&group);
        hub.deliver(&group, 4);
        assert_eq!(tab.next().await, Some(Notice::new(&FeedName::main(), 4)));
        assert_eq!(tab.next().await, Some(Notice::presence(&FeedName::main())));
        assert_eq!(next_now(&mut tab).await, None, "one presence notice for the two (the second is paced)");
        hub.presence_changed(&group);
        assert_eq!(
            tab.next().await,
            Some(Notice::presence(&FeedName::main())),
            "the paced notice, for both later changes"
        );
        hub.deliver(&group, 5);
        assert_eq!(next_now(&mut tab).await, Some(5));
        // another group hears of neither
        let mut other = hub.subscribe(&Audience::main(GroupId::new("h")));
        hub.presence_changed(&group);
        assert_eq!(next_now(&mut other).await, None);
    }

    /// However fast who is here changes (300 changes in 3 s), a group hears at most one presence notice a second:
    /// the first at once, the rest folded into one at the end of each second; the last change is always told, and
    /// after a quiet spell the next change goes out at once again.
    #[tokio::test(start_paused = true)]
    async fn presence_notices_are_paced_per_group_and_the_last_change_is_told() {
        let hub = hub(16);
        let (group, other) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
        let mut tab = hub.subscribe(&group);
        let mut elsewhere = hub.subscribe(&other);
        let started = tokio::time::Instant::now();
        let churn = async {
            for _ in 0..300 {
                hub.presence_changed(&group);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let listen = async {
            let mut heard = Vec::new();
            let until = started + Duration::from_secs(5);
            while let Ok(Some(notice)) = tokio::time::timeout_at(until, tab.next()).await {
                assert!(notice.presence);
                heard.push(started.elapsed());
            }
            heard
        };
        let ((), heard) = tokio::join!(churn, listen);
        assert!((3..=5).contains(&heard.len()), "about one a second: {heard:?}");
        assert_eq!(heard[0], Duration::ZERO, "the first change at once");
        assert!(heard.windows(2).all(|pair| pair[1] - pair[0] >= PRESENCE_EVERY), "{heard:?}");
        assert!(*heard.last().unwrap() >= Duration::from_millis(2_990), "the last change is told: {heard:?}");
        assert_eq!(next_now(&mut elsewhere).await, None, "another group hears nothing");
        tokio::time::sleep(PRESENCE_EVERY).await;
        hub.presence_changed(&group);
        let prompt = tokio::time::timeout(Duration::from_millis(1), tab.next()).await;
        assert_eq!(prompt.ok().flatten(), Some(Notice::presence(&FeedName::main())), "after a quiet spell, at once");
    }

    /// A subscriber that fell behind may have lost a presence notice with the message notices: it is told again.
    #[tokio::test]
    async fn a_lagging_subscriber_is_told_presence_may_have_changed() {
        let hub = hub(2);
        let group = Audience::main(GroupId::new("g"));
        let mut tab = hub.subscribe(&group);
        hub.presence_changed(&group);
        for id in 1..=5 {
            hub.deliver(&group, id);
        }
        assert_eq!(tab.next().await, Some(Notice::new(&FeedName::main(), 5)));
        assert_eq!(tab.next().await, Some(Notice::presence(&FeedName::main())));
    }

    #[test]
    fn a_notice_is_one_server_sent_event() {
        let presence = format!("event: {}\ndata: presence\n\n", crate::shared::wire::PRESENCE_CHANGED);
        assert_eq!(Notice::presence(&FeedName::main()).frame, Bytes::from(presence));
        assert_eq!(
            Notice::new(&FeedName::main(), 42).frame,
            Bytes::from_static(b"event: NewMessage\nid: 42\ndata: 42\n\n")
        );
    }
}
