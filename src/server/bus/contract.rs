//! One suite, every bus: each test runs against every `Bus` with the hubs it feeds: `LocalBus`, and the Redis bus
//! (its receiver on a `redis-server` of its own). A notice is announced the way `feed::send` does it: append to
//! the subject's store, then `publish` (for Redis the append script publishes; `publish` does nothing).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::*;
use crate::server::hub::Subscription;
use crate::server::pages::PageCache;
use crate::server::store::redis::{client, RedisStore};
use crate::server::store::test_redis::TestRedis;
use crate::server::store::{Draft, FeedStore, MemoryStore};
use crate::shared::domain::{MessageText, Username};

/// Heal period of the Redis buses under test.
const HEAL_EVERY: Duration = Duration::from_millis(300);

/// A bus under test, the hub its receive side feeds and the store appends go to.
struct Subject {
    bus: Arc<dyn Bus>,
    hub: Arc<Hub>,
    store: Arc<dyn FeedStore>,
    _redis: Option<TestRedis>,
}

fn hub(capacity: usize) -> Arc<Hub> {
    Arc::new(Hub::new(capacity, Arc::new(PageCache::new(8))))
}

async fn buses(capacity: usize) -> Vec<(&'static str, Subject)> {
    let local = hub(capacity);
    let server = TestRedis::start();
    let (store, remote) = redis_replica(&server, capacity).await;
    vec![
        (
            "local",
            Subject {
                bus: Arc::new(LocalBus::new(local.clone())),
                hub: local,
                store: Arc::new(MemoryStore::new(10_000)),
                _redis: None,
            },
        ),
        ("redis", Subject { bus: Arc::new(redis::RedisBus), hub: remote, store, _redis: Some(server) }),
    ]
}

/// One "replica" on `server`: its store and the hub its receiver feeds.
async fn redis_replica(server: &TestRedis, capacity: usize) -> (Arc<dyn FeedStore>, Arc<Hub>) {
    let client = client(&server.url()).unwrap();
    let store = Arc::new(RedisStore::new(client.clone(), "bus", 10_000).unwrap());
    let hub = hub(capacity);
    redis::Receiver::start(client, store.clone(), hub.clone(), HEAL_EVERY).await;
    (store, hub)
}

/// Appends a message in `group` and publishes it, as `feed::send` does: its id.
async fn announce(s: &Subject, group: &GroupId) -> u64 {
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    let draft = Draft { group: group.as_str(), author: &user, text: &text, key: None };
    let id = s.store.append(draft).await.unwrap().message.id;
    s.bus.publish(group, id).await.unwrap();
    id
}

/// The next notice's id if one arrives soon; a bus that crosses processes gets the time it needs.
/// The next message notice within 300 ms.
async fn next_soon(sub: &mut Subscription) -> Option<u64> {
    next_within(sub, Duration::from_millis(300)).await
}

/// The next message notice within `wait` (presence notices, which a bus may also carry, are not this suite's).
async fn next_within(sub: &mut Subscription, wait: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notice = tokio::time::timeout_at(deadline, sub.next()).await.ok().flatten()?;
        if !notice.presence {
            return Some(notice.id);
        }
    }
}

#[tokio::test]
async fn a_publish_reaches_the_subscribers_of_its_group_only() {
    for (name, s) in buses(8).await {
        let (a, b) = (GroupId::new("a"), GroupId::new("b"));
        let (mut a1, mut a2, mut b1) = (s.hub.subscribe(&a), s.hub.subscribe(&a), s.hub.subscribe(&b));
        assert_eq!(announce(&s, &a).await, 1, "{name}");
        assert_eq!(next_soon(&mut a1).await, Some(1), "{name}");
        assert_eq!(next_soon(&mut a2).await, Some(1), "{name}");
        assert_eq!(next_soon(&mut b1).await, None, "{name}");
        assert_eq!(announce(&s, &b).await, 2, "{name}");
        assert_eq!(next_soon(&mut b1).await, Some(2), "{name}");
        assert_eq!(next_soon(&mut a1).await, None, "{name}");
    }
}

#[tokio::test]
async fn a_slow_subscriber_gets_the_latest_id_once() {
    for (name, s) in buses(4).await {
        let group = GroupId::new("g");
        let mut slow = s.hub.subscribe(&group);
        for _ in 1..=20 {
            announce(&s, &group).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(next_soon(&mut slow).await, Some(20), "{name}");
        assert_eq!(next_soon(&mut slow).await, None, "{name}");
        assert_eq!(announce(&s, &group).await, 21, "{name}");
        assert_eq!(next_soon(&mut slow).await, Some(21), "{name}");
    }
}

#[tokio::test]
async fn notices_follow_appends_in_order_and_announce_readable_messages() {
    for (name, s) in buses(64).await {
        let store = &s.store;
        let group = GroupId::new("g");
        let mut tab = s.hub.subscribe(&group);
        let mut seen = 0;
        for _ in 0..10 {
            announce(&s, &group).await;
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
    for (name, s) in buses(8).await {
        let group = GroupId::new("g");
        let mut open = s.hub.subscribe(&group);
        s.hub.close();
        let ended = tokio::time::timeout(Duration::from_millis(200), open.next()).await;
        assert_eq!(ended.ok().map(|n| n.is_none()), Some(true), "{name}: an open subscription ends");
        assert_eq!(announce(&s, &group).await, 1, "{name}: later appends are harmless");
        let mut late = s.hub.subscribe(&group);
        let ended = tokio::time::timeout(Duration::from_millis(200), late.next()).await;
        assert_eq!(ended.ok().map(|n| n.is_none()), Some(true), "{name}: a later subscription ends at once");
    }
}

/// Two replicas on one Redis: an append through either reaches the subscribers of both, each in id order (the
/// sender's own replica hears it back through Redis like the other).
#[tokio::test]
async fn redis_notices_reach_every_replica_in_id_order() {
    let server = TestRedis::start();
    let (store_a, hub_a) = redis_replica(&server, 64).await;
    let (store_b, hub_b) = redis_replica(&server, 64).await;
    let group = GroupId::new("g");
    let (mut on_a, mut on_b) = (hub_a.subscribe(&group), hub_b.subscribe(&group));
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    for (i, store) in [&store_a, &store_b, &store_a].into_iter().enumerate() {
        let draft = Draft { group: "g", author: &user, text: &text, key: None };
        assert_eq!(store.append(draft).await.unwrap().message.id, i as u64 + 1);
        assert_eq!(next_soon(&mut on_a).await, Some(i as u64 + 1));
        assert_eq!(next_soon(&mut on_b).await, Some(i as u64 + 1));
    }
}

/// What pub/sub loses arrives anyway: an entry appended without its notice (as if the notice were lost on a
/// stalled connection) is delivered to its group by the next heal; a killed pub/sub connection loses nothing.
#[tokio::test]
async fn redis_heals_lost_notices_within_the_heal_period() {
    let server = TestRedis::start();
    let (store, hub) = redis_replica(&server, 64).await;
    let (g, h) = (GroupId::new("g"), GroupId::new("h"));
    let (mut on_g, mut on_h) = (hub.subscribe(&g), hub.subscribe(&h));
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    store.append(Draft { group: "g", author: &user, text: &text, key: None }).await.unwrap();
    assert_eq!(next_soon(&mut on_g).await, Some(1));
    // Appended behind pub/sub's back: no PUBLISH.
    for (id, group) in [(2, "h"), (3, "g"), (4, "h")] {
        assert_eq!(server.command(&["HINCRBY", "bus:meta", "seq", "1"]).int(), Some(id));
        let entry = format!("{id}-0");
        let fields = ["user", "ada", "text", "quiet", "at", "2026-01-01T00:00:00Z", "group", group];
        server.command(&[&["XADD", "bus:log", &entry][..], &fields[..]].concat());
    }
    let started = tokio::time::Instant::now();
    let healed = tokio::time::timeout(HEAL_EVERY * 3, async {
        (next_within(&mut on_g, HEAL_EVERY * 3).await, next_within(&mut on_h, HEAL_EVERY * 3).await)
    });
    assert_eq!(healed.await.ok(), Some((Some(3), Some(4))), "each group hears of its newest missed id");
    assert!(started.elapsed() <= HEAL_EVERY * 2, "healed after {:?}", started.elapsed());

    for round in 0..5u64 {
        assert!(server.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).int().unwrap_or(0) >= 1, "round {round}");
        store.append(Draft { group: "g", author: &user, text: &text, key: None }).await.unwrap();
        let id = next_within(&mut on_g, HEAL_EVERY * 3).await;
        assert_eq!(id, Some(5 + round), "round {round}");
    }
}

/// Redis came back empty: every local group is told, so its tabs reload; later notices are the new epoch's.
#[tokio::test]
async fn redis_new_epoch_notifies_every_group() {
    let mut server = TestRedis::start();
    let (store, hub) = redis_replica(&server, 64).await;
    let (g, h) = (GroupId::new("g"), GroupId::new("h"));
    let (mut on_g, mut on_h) = (hub.subscribe(&g), hub.subscribe(&h));
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    for _ in 0..3 {
        store.append(Draft { group: "g", author: &user, text: &text, key: None }).await.unwrap();
    }
    // Notices 1 and 2 may come on their own or folded into 3, as they reach the subscriber; 3 comes, in order.
    let mut heard = Vec::new();
    while heard.last() != Some(&3) {
        heard.push(next_soon(&mut on_g).await.unwrap_or_else(|| panic!("no notice of 3 after {heard:?}")));
    }
    assert!(heard.windows(2).all(|pair| pair[0] < pair[1]), "in id order: {heard:?}");
    server.restart_empty();
    let wait = Duration::from_secs(5);
    let told =
        tokio::time::timeout(wait, async { (next_within(&mut on_g, wait).await, next_within(&mut on_h, wait).await) });
    assert_eq!(told.await.ok(), Some((Some(0), Some(0))), "both groups hear of the new (empty) log");
    let appended = loop {
        match store.append(Draft { group: "h", author: &user, text: &text, key: None }).await {
            Ok(appended) => break appended,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(appended.message.id, 1);
    assert_eq!(next_within(&mut on_h, Duration::from_secs(2)).await, Some(1));
}

/// A page of ids 1-3 the cache keeps across appends (settled), as a tab's request after a notice leaves it.
async fn settled_page(hub: &Hub) {
    use crate::server::pages::{Fresh, PageKey};
    let key = PageKey::Range { since: 0, until: 3 };
    let fresh = || async { Ok(Fresh { epoch: "e".into(), messages: Vec::new(), settled: true, expires: None }) };
    hub.pages().get(key, Some("e"), fresh).await.unwrap();
    assert_eq!(hub.pages().len(), 1);
}

/// Whether the page cache is emptied within `wait`.
async fn forgotten_within(hub: &Hub, wait: Duration) -> bool {
    let until = tokio::time::Instant::now() + wait;
    while !hub.pages().is_empty() {
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The replica whose turn it was to prune says so on the channel: every receiver forgets its pages at once, and one
/// that missed the notice (or a pass of a replica that sent none) forgets them at its next heal.
#[tokio::test]
async fn redis_receivers_forget_pages_on_a_pruned_notice_or_at_the_heal_after_a_silent_prune() {
    let server = TestRedis::start();
    let (store, hub) = redis_replica(&server, 64).await;
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    for _ in 0..3 {
        store.append(Draft { group: "g", author: &user, text: &text, key: None }).await.unwrap();
    }
    // Let a heal see the log's oldest id (1).
    tokio::time::sleep(HEAL_EVERY * 2).await;
    settled_page(&hub).await;
    let notice = redis::pruned_notice(1, "elsewhere");
    assert!(server.command(&["PUBLISH", "bus:notices", &notice]).int().unwrap() >= 1);
    // Only the notice can do it: no heal forgets pages while the oldest id stays.
    assert!(forgotten_within(&hub, HEAL_EVERY).await, "forgotten on the notice");
    // A prune that said nothing: the next heal finds the oldest id moved.
    tokio::time::sleep(HEAL_EVERY * 2).await;
    settled_page(&hub).await;
    assert_eq!(server.command(&["XTRIM", "bus:log", "MAXLEN", "=", "1"]).int(), Some(2));
    assert!(forgotten_within(&hub, HEAL_EVERY * 3).await, "forgotten by the heal");
    // Nothing deleted since: the pages are kept.
    settled_page(&hub).await;
    tokio::time::sleep(HEAL_EVERY * 3).await;
    assert_eq!(hub.pages().len(), 1, "kept while the log's oldest id stays");
}
