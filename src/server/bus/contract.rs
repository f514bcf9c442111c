//! One suite, every bus: each test runs against every `Bus` with the hubs it feeds (`LocalBus` today; a
//! cross-process bus adds itself to `buses`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::*;
use crate::server::hub::Subscription;
use crate::server::pages::PageCache;
use crate::server::store::{Draft, FeedStore, MemoryStore};
use crate::shared::domain::{MessageText, Username};

/// A bus under test and the hub its receive side feeds.
struct Subject {
    bus: Arc<dyn Bus>,
    hub: Arc<Hub>,
}

fn buses(capacity: usize) -> Vec<(&'static str, Subject)> {
    let hub = Arc::new(Hub::new(capacity, Arc::new(PageCache::new(8))));
    vec![("local", Subject { bus: Arc::new(LocalBus::new(hub.clone())), hub })]
}

/// The next notice's id if one arrives soon; a bus that crosses processes gets the time it needs.
async fn next_soon(sub: &mut Subscription) -> Option<u64> {
    tokio::time::timeout(Duration::from_millis(200), sub.next()).await.ok().flatten().map(|notice| notice.id)
}

#[tokio::test]
async fn a_publish_reaches_the_subscribers_of_its_group_only() {
    for (name, s) in buses(8) {
        let (a, b) = (GroupId::new("a"), GroupId::new("b"));
        let (mut a1, mut a2, mut b1) = (s.hub.subscribe(&a), s.hub.subscribe(&a), s.hub.subscribe(&b));
        s.bus.publish(&a, 1).await.unwrap();
        assert_eq!(next_soon(&mut a1).await, Some(1), "{name}");
        assert_eq!(next_soon(&mut a2).await, Some(1), "{name}");
        assert_eq!(next_soon(&mut b1).await, None, "{name}");
        s.bus.publish(&b, 2).await.unwrap();
        assert_eq!(next_soon(&mut b1).await, Some(2), "{name}");
        assert_eq!(next_soon(&mut a1).await, None, "{name}");
    }
}

#[tokio::test]
async fn a_slow_subscriber_gets_the_latest_id_once() {
    for (name, s) in buses(4) {
        let group = GroupId::new("g");
        let mut slow = s.hub.subscribe(&group);
        for id in 1..=20 {
            s.bus.publish(&group, id).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(next_soon(&mut slow).await, Some(20), "{name}");
        assert_eq!(next_soon(&mut slow).await, None, "{name}");
        s.bus.publish(&group, 21).await.unwrap();
        assert_eq!(next_soon(&mut slow).await, Some(21), "{name}");
    }
}

#[tokio::test]
async fn notices_follow_appends_in_order_and_announce_readable_messages() {
    for (name, s) in buses(64) {
        let store = MemoryStore::new(100);
        let group = GroupId::new("g");
        let mut tab = s.hub.subscribe(&group);
        let user = Username::parse("ada").unwrap();
        let mut seen = 0;
        for i in 0..10 {
            let text = MessageText::parse(&format!("m{i}"), 100).unwrap();
            let draft = Draft { group: group.as_str(), author: &user, text: &text, key: None };
            let message = store.append(draft).await.unwrap().message;
            s.bus.publish(&group, message.id).await.unwrap();
            let id = next_soon(&mut tab).await.expect("a notice per append");
            assert!(id > seen, "{name}: {id} after {seen}");
            let page = store.since(id - 1, 10).await.unwrap();
            assert_eq!(page.first().map(|m| m.id), Some(id), "{name}: the announced message is readable");
            seen = id;
        }
        assert_eq!(seen, 10, "{name}");
    }
}

#[tokio::test]
async fn closing_the_hub_ends_subscriptions_and_later_publishes_are_harmless() {
    for (name, s) in buses(8) {
        let group = GroupId::new("g");
        let mut open = s.hub.subscribe(&group);
        s.hub.close();
        let ended = tokio::time::timeout(Duration::from_millis(200), open.next()).await;
        assert_eq!(ended.ok().map(|n| n.is_none()), Some(true), "{name}: an open subscription ends");
        assert!(s.bus.publish(&group, 1).await.is_ok(), "{name}");
        let mut late = s.hub.subscribe(&group);
        let ended = tokio::time::timeout(Duration::from_millis(200), late.next()).await;
        assert_eq!(ended.ok().map(|n| n.is_none()), Some(true), "{name}: a later subscription ends at once");
    }
}
