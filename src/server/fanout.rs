//! Fan-out of "NewMessage" notifications to the subscribers of one session group. `Broadcaster` is the seam a
//! cross-process implementation (Redis) plugs into; `LocalBroadcaster` runs in-process on `tokio::sync::broadcast`.
//!
//! A notification carries only the newest message id: a subscriber that falls behind gets one notification for
//! the latest id instead of a backlog, and never a broken stream. Its SSE frame is encoded once, when it is
//! published, and every subscriber writes the same bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use futures::stream::{self, BoxStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::server::group::GroupId;

/// The SSE event name of an append.
pub const EVENT_NAME: &str = crate::shared::wire::NEW_MESSAGE;

/// "Messages up to `id` exist", with its Server-Sent Events frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: u64,
    pub frame: Bytes,
}

impl Notice {
    pub fn new(id: u64) -> Self {
        Self { id, frame: Bytes::from(format!("event: {EVENT_NAME}\nid: {id}\ndata: {id}\n\n")) }
    }
}

/// A subscription: yields the newest notice each time the group is notified; ends when the broadcaster closes.
pub type Subscription = BoxStream<'static, Notice>;

#[async_trait]
pub trait Broadcaster: Send + Sync + 'static {
    /// Notifies every subscriber of `group` that messages up to `id` exist.
    async fn publish(&self, group: &GroupId, id: u64);
    /// Subscribes to `group`; dropping the stream unsubscribes.
    fn subscribe(&self, group: &GroupId) -> Subscription;
    /// Ends every subscription, and every later one at once (shutdown: the streams close, tabs reconnect).
    fn close(&self);
    /// Subscriptions open now, over all groups.
    fn subscribers(&self) -> usize;
    /// Subscriptions open now in `group`.
    fn group_subscribers(&self, group: &GroupId) -> usize;
}

type Channels = Arc<Mutex<HashMap<GroupId, broadcast::Sender<Notice>>>>;

/// One broadcast channel per group with live subscribers; a group's channel goes when its last subscriber does.
pub struct LocalBroadcaster {
    capacity: usize,
    channels: Channels,
    closed: AtomicBool,
}

impl LocalBroadcaster {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), channels: Arc::default(), closed: AtomicBool::new(false) }
    }

    /// Groups that have a channel now (for tests and metrics).
    pub fn group_count(&self) -> usize {
        lock(&self.channels).len()
    }
}

fn lock(channels: &Channels) -> std::sync::MutexGuard<'_, HashMap<GroupId, broadcast::Sender<Notice>>> {
    channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Broadcaster for LocalBroadcaster {
    async fn publish(&self, group: &GroupId, id: u64) {
        // Clone the sender and release the registry lock before sending.
        let sender = lock(&self.channels).get(group).cloned();
        if let Some(sender) = sender {
            let _ = sender.send(Notice::new(id)); // Err means no subscribers: nothing to do.
        }
    }

    fn subscribe(&self, group: &GroupId) -> Subscription {
        if self.closed.load(Ordering::SeqCst) {
            return Box::pin(stream::empty());
        }
        let receiver = lock(&self.channels)
            .entry(group.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        let member = Member { receiver: Some(receiver), group: group.clone(), channels: self.channels.clone() };
        Box::pin(stream::unfold(member, |mut member| async move {
            let notice = member.next_latest().await?;
            Some((notice, member))
        }))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock(&self.channels).clear(); // dropping the senders ends every receiver
    }

    fn subscribers(&self) -> usize {
        lock(&self.channels).values().map(broadcast::Sender::receiver_count).sum()
    }

    fn group_subscribers(&self, group: &GroupId) -> usize {
        lock(&self.channels).get(group).map_or(0, broadcast::Sender::receiver_count)
    }
}

/// One subscriber's receiver; on drop it removes its group's channel if it was the last one.
struct Member {
    receiver: Option<broadcast::Receiver<Notice>>,
    group: GroupId,
    channels: Channels,
}

impl Member {
    /// Waits for a notification, then drains whatever else is queued and answers the newest.
    async fn next_latest(&mut self) -> Option<Notice> {
        let receiver = self.receiver.as_mut()?;
        let mut latest = loop {
            match receiver.recv().await {
                Ok(notice) => break notice,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        };
        loop {
            match receiver.try_recv() {
                Ok(notice) if notice.id > latest.id => latest = notice,
                Ok(_) => {}
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return Some(latest),
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut channels = lock(&self.channels);
        if channels.get(&self.group).is_some_and(|sender| sender.receiver_count() == 0) {
            channels.remove(&self.group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    async fn next_now(sub: &mut Subscription) -> Option<u64> {
        let notice = tokio::time::timeout(Duration::from_millis(50), sub.next()).await.ok().flatten()?;
        assert_eq!(notice, Notice::new(notice.id), "the frame announces the notice's id");
        Some(notice.id)
    }

    #[tokio::test]
    async fn subscribers_of_a_group_get_its_notifications_only() {
        let fanout = LocalBroadcaster::new(8);
        let (a, b) = (GroupId::new("a"), GroupId::new("b"));
        let mut a1 = fanout.subscribe(&a);
        let mut a2 = fanout.subscribe(&a);
        let mut b1 = fanout.subscribe(&b);
        fanout.publish(&a, 1).await;
        assert_eq!(next_now(&mut a1).await, Some(1));
        assert_eq!(next_now(&mut a2).await, Some(1));
        assert_eq!(next_now(&mut b1).await, None);
        fanout.publish(&b, 2).await;
        assert_eq!(next_now(&mut b1).await, Some(2));
        assert_eq!(next_now(&mut a1).await, None);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_the_latest_id_once() {
        let fanout = LocalBroadcaster::new(4);
        let group = GroupId::new("g");
        let mut slow = fanout.subscribe(&group);
        for id in 1..=20 {
            fanout.publish(&group, id).await; // overflows the 4-slot channel
        }
        assert_eq!(next_now(&mut slow).await, Some(20));
        assert_eq!(next_now(&mut slow).await, None);
        fanout.publish(&group, 21).await;
        assert_eq!(next_now(&mut slow).await, Some(21));
    }

    #[tokio::test]
    async fn publishing_to_a_group_without_subscribers_is_a_no_op_and_channels_are_pruned() {
        let fanout = LocalBroadcaster::new(4);
        let group = GroupId::new("g");
        fanout.publish(&group, 1).await;
        assert_eq!(fanout.group_count(), 0);
        let one = fanout.subscribe(&group);
        let two = fanout.subscribe(&group);
        assert_eq!(fanout.group_count(), 1);
        drop(one);
        assert_eq!(fanout.group_count(), 1);
        drop(two);
        assert_eq!(fanout.group_count(), 0);
    }

    #[tokio::test]
    async fn close_ends_every_subscription_now_and_later() {
        let fanout = LocalBroadcaster::new(4);
        let group = GroupId::new("g");
        let mut open = fanout.subscribe(&group);
        fanout.close();
        let ended = tokio::time::timeout(Duration::from_millis(50), open.next()).await;
        assert_eq!(ended.ok().map(|n| n.is_none()), Some(true), "an open subscription ends");
        let mut late = fanout.subscribe(&group);
        let ended = tokio::time::timeout(Duration::from_millis(50), late.next()).await;
        assert_eq!(ended.ok().map(|n| n.is_none()), Some(true), "a later subscription ends at once");
    }

    #[test]
    fn a_notice_is_one_server_sent_event() {
        assert_eq!(Notice::new(42).frame, Bytes::from_static(b"event: NewMessage\nid: 42\ndata: 42\n\n"));
    }
}
