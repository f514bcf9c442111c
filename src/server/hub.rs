//! The local hub: the subscribers of this process, per session group, and what reaches them. Every backend shares
//! it (as centrifuge's Hub, or Socket.IO's local rooms); only how a notice travels between processes differs, and
//! that is the `Bus`'s job. Whatever bus runs, its receive side calls `Hub::deliver`.
//!
//! A notice carries only the newest message id: a subscriber that falls behind gets one notice for the latest id
//! instead of a backlog, and never a broken stream. Its SSE frame is encoded once, when it is delivered, and every
//! subscriber writes the same bytes. `deliver` forgets the shared pages of the log before it notifies anyone, so no
//! tab is told of a message and then served a page cached before it, whichever process appended it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use futures::stream::{self, BoxStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::server::group::GroupId;
use crate::server::pages::PageCache;

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

/// A subscription: yields the newest notice each time the group is notified; ends when the hub closes.
pub type Subscription = BoxStream<'static, Notice>;

type Channels = Arc<Mutex<HashMap<GroupId, broadcast::Sender<Notice>>>>;

/// One broadcast channel per group with live subscribers; a group's channel goes when its last subscriber does.
pub struct Hub {
    capacity: usize,
    channels: Channels,
    closed: AtomicBool,
    /// The shared pages of the log, forgotten on each delivery.
    pages: Arc<PageCache>,
}

impl Hub {
    /// `capacity`: notices queued per subscriber; one further behind is coalesced to the latest id.
    pub fn new(capacity: usize, pages: Arc<PageCache>) -> Self {
        Self { capacity: capacity.max(1), channels: Arc::default(), closed: AtomicBool::new(false), pages }
    }

    /// The page cache this hub invalidates.
    pub fn pages(&self) -> &Arc<PageCache> {
        &self.pages
    }

    /// Groups that have a channel now (for tests and metrics).
    pub fn group_count(&self) -> usize {
        lock(&self.channels).len()
    }

    /// Messages up to `id` exist in `group` (appended here or in another process): forgets the shared pages, then
    /// notifies every local subscriber of `group`.
    pub fn deliver(&self, group: &GroupId, id: u64) {
        self.pages.invalidate();
        // Clone the sender and release the registry lock before sending.
        let sender = lock(&self.channels).get(group).cloned();
        if let Some(sender) = sender {
            let _ = sender.send(Notice::new(id)); // Err means no subscribers: nothing to do.
        }
    }

    /// Subscribes to `group`; dropping the stream unsubscribes.
    pub fn subscribe(&self, group: &GroupId) -> Subscription {
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

    /// Ends every subscription, and every later one at once (shutdown: the streams close, tabs reconnect).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock(&self.channels).clear(); // dropping the senders ends every receiver
    }

    /// Subscriptions open now, over all groups (stream caps, metrics).
    pub fn subscribers(&self) -> usize {
        lock(&self.channels).values().map(broadcast::Sender::receiver_count).sum()
    }

    /// Subscriptions open now in `group`.
    pub fn group_subscribers(&self, group: &GroupId) -> usize {
        lock(&self.channels).get(group).map_or(0, broadcast::Sender::receiver_count)
    }

    /// Messages up to `id` exist in every group (the log was made anew, or notices were lost with their groups):
    /// every local subscriber is notified, so every tab refetches.
    pub fn deliver_everywhere(&self, id: u64) {
        self.pages.invalidate();
        let groups: Vec<GroupId> = lock(&self.channels).keys().cloned().collect();
        for group in groups {
            self.deliver(&group, id);
        }
    }
}

fn lock(channels: &Channels) -> std::sync::MutexGuard<'_, HashMap<GroupId, broadcast::Sender<Notice>>> {
    channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// Delivery to the right group, coalescing and close are proven through every bus in `bus::contract`.
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
        assert_eq!(notice, Notice::new(notice.id), "the frame announces the notice's id");
        Some(notice.id)
    }

    #[tokio::test]
    async fn delivering_to_a_group_without_subscribers_is_a_no_op_and_channels_are_pruned() {
        let hub = hub(4);
        let group = GroupId::new("g");
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

    /// A notice from another process (the bus's receive side calls `deliver`; no append happened here) still
    /// forgets the cached pages, before the subscriber hears of it: the page it then asks for holds the message.
    #[tokio::test]
    async fn a_delivery_from_the_bus_forgets_the_cached_pages_before_any_subscriber_hears_of_it() {
        use crate::server::pages::PageKey;
        use crate::shared::domain::Message;
        let message =
            |id: u64| Message { id, user: "ada".into(), text: format!("m{id}"), at: "2026-11-24T00:00:00Z".into() };
        let pages = Arc::new(PageCache::new(8));
        let hub = Hub::new(8, pages.clone());
        let group = GroupId::new("g");
        let mut tab = hub.subscribe(&group);
        // the tab has read the page after 4 while the log ended at 4
        let stale = pages.get(PageKey::Since(4), || async { Ok(("e".to_owned(), vec![])) }).await.unwrap();
        assert!(stale.messages.is_empty());
        assert_eq!(pages.len(), 1);
        hub.deliver(&group, 5);
        assert_eq!(next_now(&mut tab).await, Some(5));
        let after = pages.get(PageKey::Since(4), || async { Ok(("e".to_owned(), vec![message(5)])) }).await.unwrap();
        assert_eq!(after.messages, vec![message(5)], "the page after 4 is read again, not served from before");
    }

    #[test]
    fn a_notice_is_one_server_sent_event() {
        assert_eq!(Notice::new(42).frame, Bytes::from_static(b"event: NewMessage\nid: 42\ndata: 42\n\n"));
    }
}
