//! One suite, every broker: each test runs against every `Broker` with the hub it feeds: `LocalBroker`, and
//! `RedisBroker` (its receiver on a `redis-server` of its own). A message is announced the way `feed::send` does
//! it: `Broker::append`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::*;
use crate::server::group::{Audience, GroupId};
use crate::server::hub::Hub;
use crate::server::hub::Subscription;
use crate::server::link::notice::Notice;
use crate::server::link::test_link;
use crate::server::link::test_redis::{Reply, TestRedis};
use crate::server::pages::{PageCache, PageKey};
use crate::server::store::{Draft, FeedStore, MemoryStore, RedisStore};
use crate::shared::domain::FeedName;
use crate::shared::domain::{MessageText, Source, Username};

/// Heal period of the Redis brokers under test.
const HEAL_EVERY: Duration = Duration::from_millis(300);

/// A broker under test, the hub its receive side feeds and the store it appends to.
struct Subject {
    broker: Arc<dyn Broker>,
    hub: Arc<Hub>,
    store: Arc<dyn FeedStore>,
    redis: Option<TestRedis>,
}

impl Subject {
    /// Returns once the broker hears of the main feed (a Redis receiver subscribes when its hub gets the first
    /// subscriber of a feed); a local broker always does.
    async fn listening(&self) {
        if let Some(server) = &self.redis {
            wait_listening(server, 1).await;
        }
    }
}

/// Returns once `replicas` receivers listen to the main feed's notice channel.
async fn wait_listening(server: &TestRedis, replicas: i64) {
    wait_listening_to(server, "main", replicas).await;
}

/// How many receivers listen to `feed`'s notice channel now.
fn listening_to(server: &TestRedis, feed: &str) -> Option<i64> {
    let channel = format!("bus:{{{feed}}}:notices");
    match server.command(&["PUBSUB", "NUMSUB", &channel]) {
        Reply::Array(reply) => match reply.get(1) {
            Some(Reply::Int(count)) => Some(*count),
            _ => None,
        },
        _ => None,
    }
}

/// Returns once `replicas` receivers listen to `feed`'s notice channel.
async fn wait_listening_to(server: &TestRedis, feed: &str, replicas: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while listening_to(server, feed) != Some(replicas) {
        assert!(tokio::time::Instant::now() < deadline, "receivers subscribed: {:?}", listening_to(server, feed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hub(capacity: usize) -> Arc<Hub> {
    Arc::new(Hub::new(capacity, Arc::new(PageCache::new(8))))
}

async fn brokers(capacity: usize) -> Vec<(&'static str, Subject)> {
    let local = hub(capacity);
    let memory: Arc<dyn FeedStore> = Arc::new(MemoryStore::new(10_000));
    let server = TestRedis::start();
    let (store, broker, remote) = redis_replica(&server, capacity, "a").await;
    vec![
        (
            "local",
            Subject {
                broker: Arc::new(LocalBroker::new(memory.clone(), local.clone())),
                hub: local,
                store: memory,
                redis: None,
            },
        ),
        ("redis", Subject { broker, hub: remote, store, redis: Some(server) }),
    ]
}

/// One "replica" on `server`: its store, its broker and the hub its receiver feeds.
async fn redis_replica(
    server: &TestRedis,
    capacity: usize,
    name: &str,
) -> (Arc<dyn FeedStore>, Arc<dyn Broker>, Arc<Hub>) {
    let link = test_link(server, "bus");
    let store = Arc::new(RedisStore::new(link.clone(), 10_000));
    let hub = hub(capacity);
    let broker = RedisBroker::start(link, store.clone(), hub.clone(), HEAL_EVERY, name.into()).await;
    (store, broker, hub)
}

/// Appends a message in `group` as `feed::send` does: its id.
async fn announce(s: &Subject, group: &Audience) -> u64 {
    append(s.broker.as_ref(), &group.feed, group.group.as_str()).await
}

/// Ada's "hi" in `group` of `feed`, through `broker`: its id.
async fn append(broker: &dyn Broker, feed: &FeedName, group: &str) -> u64 {
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    broker
        .append(Draft { feed, group, author: &user, text: &text, key: None, source: &Source::Anonymous, address: "" })
        .await
        .unwrap()
        .message
        .id
}

/// Ada's "hi" in `group` of the main feed.
async fn say(broker: &dyn Broker, group: &str) {
    append(broker, &FeedName::main(), group).await;
}

/// The next message notice within 300 ms (a broker that crosses processes gets the time it needs).
async fn next_soon(sub: &mut Subscription) -> Option<u64> {
    next_within(sub, Duration::from_millis(300)).await
}

/// The next message notice within `wait` (presence notices are skipped: `presence_changed_reaches_…` reads them).
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
    for (name, s) in brokers(8).await {
        let (a, b) = (Audience::main(GroupId::new("a")), Audience::main(GroupId::new("b")));
        let (mut a1, mut a2, mut b1) = (s.hub.subscribe(&a), s.hub.subscribe(&a), s.hub.subscribe(&b));
        s.listening().await;
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
    for (name, s) in brokers(4).await {
        let group = Audience::main(GroupId::new("g"));
        let mut slow = s.hub.subscribe(&group);
        s.listening().await;
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
    for (name, s) in brokers(64).await {
        let store = &s.store;
        let group = Audience::main(GroupId::new("g"));
        let mut tab = s.hub.subscribe(&group);
        s.listening().await;
        let mut seen = 0;
        for _ in 0..10 {
            announce(&s, &group).await;
            let id = next_soon(&mut tab).await.expect("a notice per append");
            assert!(id > seen, "{name}: {id} after {seen}");
            let page = store.since(&FeedName::main(), id - 1, 10).await.unwrap();
            assert_eq!(page.first().map(|m| m.id), Some(id), "{name}: the announced message is readable");
            seen = id;
        }
        assert_eq!(seen, 10, "{name}");
    }
}

#[tokio::test]
async fn closing_the_hub_ends_subscriptions_and_later_publishes_are_harmless() {
    for (name, s) in brokers(8).await {
        let group = Audience::main(GroupId::new("g"));
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
    let (_, broker_a, hub_a) = redis_replica(&server, 64, "a").await;
    let (_, broker_b, hub_b) = redis_replica(&server, 64, "b").await;
    let group = Audience::main(GroupId::new("g"));
    let (mut on_a, mut on_b) = (hub_a.subscribe(&group), hub_b.subscribe(&group));
    wait_listening(&server, 2).await;
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    for (i, broker) in [&broker_a, &broker_b, &broker_a].into_iter().enumerate() {
        let draft = Draft {
            feed: &FeedName::main(),
            group: "g",
            author: &user,
            text: &text,
            key: None,
            source: &Source::Anonymous,
            address: "",
        };
        assert_eq!(broker.append(draft).await.unwrap().message.id, i as u64 + 1);
        assert_eq!(next_soon(&mut on_a).await, Some(i as u64 + 1));
        assert_eq!(next_soon(&mut on_b).await, Some(i as u64 + 1));
    }
}

/// What pub/sub loses arrives anyway: an entry appended without its notice (as if the notice were lost on a
/// stalled connection) is delivered to its group by the next heal; a killed pub/sub connection loses nothing.
#[tokio::test]
async fn redis_heals_lost_notices_within_the_heal_period() {
    let server = TestRedis::start();
    let (_, store, hub) = redis_replica(&server, 64, "a").await;
    let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
    let (mut on_g, mut on_h) = (hub.subscribe(&g), hub.subscribe(&h));
    wait_listening(&server, 1).await;
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    store
        .append(Draft {
            feed: &FeedName::main(),
            group: "g",
            author: &user,
            text: &text,
            key: None,
            source: &Source::Anonymous,
            address: "",
        })
        .await
        .unwrap();
    assert_eq!(next_soon(&mut on_g).await, Some(1));
    // Appended behind pub/sub's back: no PUBLISH.
    for (id, group) in [(2, "h"), (3, "g"), (4, "h")] {
        assert_eq!(server.command(&["HINCRBY", "bus:{main}:meta", "seq", "1"]).int(), Some(id));
        let entry = format!("{id}-0");
        let fields = ["user", "ada", "text", "quiet", "at", "2026-01-01T00:00:00Z", "group", group];
        server.command(&[&["XADD", "bus:{main}:log", &entry][..], &fields[..]].concat());
    }
    let started = tokio::time::Instant::now();
    let healed = tokio::time::timeout(HEAL_EVERY * 3, async {
        (next_within(&mut on_g, HEAL_EVERY * 3).await, next_within(&mut on_h, HEAL_EVERY * 3).await)
    });
    assert_eq!(healed.await.ok(), Some((Some(3), Some(4))), "each group hears of its newest missed id");
    assert!(started.elapsed() <= HEAL_EVERY * 2, "healed after {:?}", started.elapsed());

    for round in 0..5u64 {
        assert!(server.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).int().unwrap_or(0) >= 1, "round {round}");
        say(store.as_ref(), "g").await;
        let id = next_within(&mut on_g, HEAL_EVERY * 3).await;
        assert_eq!(id, Some(5 + round), "round {round}");
    }
}

/// Redis came back empty: every local group is told, so its tabs reload; later notices are the new epoch's.
#[tokio::test]
async fn redis_new_epoch_notifies_every_group() {
    let mut server = TestRedis::start();
    let (_, store, hub) = redis_replica(&server, 64, "a").await;
    let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
    let (mut on_g, mut on_h) = (hub.subscribe(&g), hub.subscribe(&h));
    wait_listening(&server, 1).await;
    let (user, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
    for _ in 0..3 {
        say(store.as_ref(), "g").await;
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
        match store
            .append(Draft {
                feed: &FeedName::main(),
                group: "h",
                author: &user,
                text: &text,
                key: None,
                source: &Source::Anonymous,
                address: "",
            })
            .await
        {
            Ok(appended) => break appended,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(appended.message.id, 1);
    assert_eq!(next_within(&mut on_h, Duration::from_secs(2)).await, Some(1));
}

/// A removal through one replica (the store's script publishes its notice): every group of every replica is told
/// at once, long before a heal, with the log's newest id (so each tab refetches and reloads into the new epoch), and
/// every replica forgets its pages; appends after it are notified in the new epoch as before.
#[tokio::test]
async fn redis_removal_tells_every_group_of_every_replica_at_once() {
    let server = TestRedis::start();
    let heal_never = Duration::from_secs(600);
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let link = test_link(&server, "bus");
        let store = Arc::new(RedisStore::new(link.clone(), 10_000));
        let hub = hub(64);
        let broker = RedisBroker::start(link, store.clone(), hub.clone(), heal_never, name.into()).await;
        replicas.push((store, hub, broker));
    }
    let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
    let mut tabs: Vec<Subscription> =
        replicas.iter().flat_map(|(_, hub, _)| [hub.subscribe(&g), hub.subscribe(&h)]).collect();
    wait_listening(&server, 2).await;
    let writer: &dyn Broker = replicas[0].2.as_ref();
    for _ in 0..3 {
        say(writer, "g").await;
    }
    for tab in &mut tabs[..1] {
        while next_soon(tab).await != Some(3) {}
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for tab in &mut tabs {
        while next_within(tab, Duration::from_millis(50)).await.is_some() {}
    }
    for (_, hub, _) in &replicas {
        settled_page(hub).await;
    }
    let removal = replicas[1].0.remove(&FeedName::main(), &[2]).await.unwrap();
    assert_eq!(removal.removed, vec![2]);
    for (n, tab) in tabs.iter_mut().enumerate() {
        assert_eq!(next_within(tab, Duration::from_secs(1)).await, Some(3), "tab {n} is told within a second");
    }
    for (_, hub, _) in &replicas {
        assert!(forgotten_within(hub, Duration::from_secs(1)).await, "the old epoch's pages go");
    }
    say(writer, "h").await;
    assert_eq!(next_within(&mut tabs[3], Duration::from_secs(1)).await, Some(4), "appends go on in the new epoch");
}

/// A page of ids 1-3 the cache keeps across appends (settled), as a tab's request after a notice leaves it.
async fn settled_page(hub: &Hub) {
    use crate::server::pages::{Fresh, PageKey};
    let key = PageKey::Range { since: 0, until: 3 };
    let fresh = || async { Ok(Fresh { epoch: "e".into(), messages: Vec::new(), settled: true, expires: None }) };
    hub.pages().get(&FeedName::main(), key, Some("e"), fresh).await.unwrap();
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
    let (_, store, hub) = redis_replica(&server, 64, "a").await;
    let _tab = hub.subscribe(&Audience::main(GroupId::new("g")));
    wait_listening(&server, 1).await;
    for _ in 0..3 {
        say(store.as_ref(), "g").await;
    }
    // Let a heal see the log's oldest id (1).
    tokio::time::sleep(HEAL_EVERY * 2).await;
    settled_page(&hub).await;
    let notice = Notice::Pruned { count: 1, replica: "elsewhere" }.encode();
    assert!(server.command(&["PUBLISH", "bus:{main}:notices", &notice]).int().unwrap() >= 1);
    // Only the notice can do it: no heal forgets pages while the oldest id stays.
    assert!(forgotten_within(&hub, HEAL_EVERY).await, "forgotten on the notice");
    // A prune that said nothing: the next heal finds the oldest id moved.
    tokio::time::sleep(HEAL_EVERY * 2).await;
    settled_page(&hub).await;
    assert_eq!(server.command(&["XTRIM", "bus:{main}:log", "MAXLEN", "=", "1"]).int(), Some(2));
    assert!(forgotten_within(&hub, HEAL_EVERY * 3).await, "forgotten by the heal");
    // Nothing deleted since: the pages are kept.
    settled_page(&hub).await;
    tokio::time::sleep(HEAL_EVERY * 3).await;
    assert_eq!(hub.pages().len(), 1, "kept while the log's oldest id stays");
}

/// A broker, and the hub of every process it announces to: the local one's, and two replicas' on `server`.
type Everywhere = (&'static str, Arc<dyn Broker>, Vec<Arc<Hub>>);

async fn with_every_process(server: &TestRedis) -> [Everywhere; 2] {
    let (_, broker_a, hub_a) = redis_replica(server, 8, "a").await;
    let (_, _, hub_b) = redis_replica(server, 8, "b").await;
    let local = hub(8);
    let memory: Arc<dyn FeedStore> = Arc::new(MemoryStore::new(10));
    [("local", Arc::new(LocalBroker::new(memory, local.clone())), vec![local]), ("redis", broker_a, vec![hub_a, hub_b])]
}

/// Who is here changed: the subscribers of that group hear `PresenceChanged` in every process (on Redis, through
/// the channel: the replica that made the change too), and no other group does.
#[tokio::test]
async fn presence_changed_reaches_the_groups_subscribers_in_every_process() {
    let server = TestRedis::start();
    for (name, broker, hubs) in with_every_process(&server).await {
        let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
        let mut on_g: Vec<Subscription> = hubs.iter().map(|hub| hub.subscribe(&g)).collect();
        let mut on_h: Vec<Subscription> = hubs.iter().map(|hub| hub.subscribe(&h)).collect();
        if name == "redis" {
            wait_listening(&server, 2).await;
        }
        broker.presence_changed(std::slice::from_ref(&g)).await.unwrap();
        for sub in &mut on_g {
            let notice = tokio::time::timeout(Duration::from_secs(1), sub.next()).await.ok().flatten();
            assert_eq!(notice.map(|n| n.presence), Some(true), "{name}: told");
        }
        for sub in &mut on_h {
            let notice = tokio::time::timeout(Duration::from_millis(200), sub.next()).await.ok().flatten();
            assert!(notice.is_none(), "{name}: another group is not told: {notice:?}");
        }
        broker.presence_changed(&[]).await.unwrap();
    }
}

/// A retention pass: every process forgets its cached pages, the one that pruned at once.
#[tokio::test]
async fn pruned_makes_every_process_forget_its_pages() {
    let server = TestRedis::start();
    for (name, broker, hubs) in with_every_process(&server).await {
        // A log that holds something: a replica that starts listening to a feed then forgets only its live pages.
        say(broker.as_ref(), "g").await;
        for hub in &hubs {
            settled_page(hub).await;
        }
        if name == "redis" {
            wait_listening(&server, 2).await; // the pages alone make each replica listen to the feed
            tokio::time::sleep(HEAL_EVERY).await;
        }
        assert!(hubs.iter().all(|hub| hub.pages().len() == 1), "{name}: settled pages outlive listening");
        broker.pruned(&FeedName::main(), 2).await.unwrap();
        assert!(hubs[0].pages().is_empty(), "{name}: the pruning process forgets at once");
        for hub in &hubs {
            assert!(forgotten_within(hub, Duration::from_secs(1)).await, "{name}: every process forgets");
        }
    }
}

/// Feeds apart, on every broker: a notice reaches the audiences of its own feed only, ids are per feed, and a
/// Redis receiver listens to a feed only while it has subscribers of it (and leaves it after its heal tick).
#[tokio::test]
async fn each_feed_notifies_its_own_audiences_only() {
    for (name, s) in brokers(8).await {
        let (team, news) = (FeedName::parse("team").unwrap(), FeedName::parse("news").unwrap());
        let group = GroupId::new("g");
        let (on_team, on_news) = (Audience::new(team, group.clone()), Audience::new(news, group));
        let (mut t, mut n) = (s.hub.subscribe(&on_team), s.hub.subscribe(&on_news));
        if let Some(server) = &s.redis {
            wait_listening_to(server, "team", 1).await;
            wait_listening_to(server, "news", 1).await;
            wait_listening_to(server, "main", 0).await;
        }
        assert_eq!(announce(&s, &on_team).await, 1, "{name}");
        assert_eq!(announce(&s, &on_team).await, 2, "{name}");
        assert_eq!(announce(&s, &on_news).await, 1, "{name}: ids are per feed");
        let mut heard = Vec::new();
        while heard.last() != Some(&2) {
            heard.push(next_soon(&mut t).await.unwrap_or_else(|| panic!("{name}: team's 2 after {heard:?}")));
        }
        assert_eq!(next_soon(&mut t).await, None, "{name}: nothing of news reaches team");
        assert_eq!(next_soon(&mut n).await, Some(1), "{name}");
        assert_eq!(next_soon(&mut n).await, None, "{name}");
        if let Some(server) = &s.redis {
            // It leaves once nothing here needs the feed: no subscriber, and no page (the append prepared one for
            // the tab, which a retention pass or a new epoch must still reach).
            drop(n);
            let news = FeedName::parse("news").unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(listening_to(server, "news"), Some(1), "{name}: its page keeps it");
            s.hub.pages().forget(&news);
            wait_listening_to(server, "news", 0).await;
            wait_listening_to(server, "team", 1).await;
        }
    }
}

/// The page a notice makes every up-to-date tab ask for (`since` the id before, `until` its id) is prepared from the
/// appended message, the same bytes a read of the store makes, so no refetch of it reads the store; a group nobody
/// follows in this process gets no page (it would only take room).
#[tokio::test]
async fn an_append_prepares_the_page_its_notice_asks_for_where_it_is_followed() {
    for (name, s) in brokers(8).await {
        let (watched, alone) = (Audience::main(GroupId::new("w")), Audience::main(GroupId::new("nobody")));
        let mut tab = s.hub.subscribe(&watched);
        s.listening().await;
        let feed = FeedName::main();
        let id = announce(&s, &watched).await;
        assert_eq!(next_soon(&mut tab).await, Some(id), "{name}");
        let epoch = s.store.epoch(&feed).await.unwrap();
        let key = PageKey::Range { since: id - 1, until: id };
        let page = s.hub.pages().ready(&feed, key, Some(&epoch)).unwrap_or_else(|| panic!("{name}: prepared"));
        assert!(page.settled, "{name}");
        assert_eq!(page.messages, s.store.since(&feed, id - 1, 10).await.unwrap(), "{name}: as the store reads it");
        let before = s.hub.pages().len();
        let other = announce(&s, &alone).await;
        let key = PageKey::Range { since: other - 1, until: other };
        assert!(s.hub.pages().ready(&feed, key, Some(&epoch)).is_none(), "{name}: nobody follows that group here");
        assert_eq!(s.hub.pages().len(), before, "{name}");
    }
}

/// A moderator's removal on one process (the local broker): the feed's cached pages go and every group that follows
/// the feed is told (each tab then reloads the log, whose epoch is new); a group following another feed hears
/// nothing. (On Redis the removal script publishes the notice itself: `redis_removal_tells_every_group_…`.)
#[tokio::test]
async fn a_removal_reaches_every_group_of_the_feed_in_every_process_and_its_pages_go() {
    let server = TestRedis::start();
    for (name, broker, hubs) in with_every_process(&server).await.into_iter().filter(|(name, _, _)| *name == "local") {
        let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
        let other = Audience::new(FeedName::parse("other").unwrap(), GroupId::new("g"));
        let mut told: Vec<Subscription> = hubs.iter().flat_map(|hub| [hub.subscribe(&g), hub.subscribe(&h)]).collect();
        let mut elsewhere: Vec<Subscription> = hubs.iter().map(|hub| hub.subscribe(&other)).collect();
        if name == "redis" {
            wait_listening(&server, 2).await;
            wait_listening_to(&server, "other", 2).await;
        }
        for hub in &hubs {
            settled_page(hub).await;
        }
        broker.removed(&FeedName::main(), "e2", 7).await.unwrap();
        for sub in &mut told {
            let notice = tokio::time::timeout(Duration::from_secs(1), sub.next()).await.ok().flatten();
            assert_eq!(notice.map(|n| (n.id, n.presence)), Some((7, false)), "{name}: every group of the feed is told");
        }
        for sub in &mut elsewhere {
            let notice = tokio::time::timeout(Duration::from_millis(200), sub.next()).await.ok().flatten();
            assert!(notice.is_none(), "{name}: another feed is not told: {notice:?}");
        }
        for hub in &hubs {
            assert!(forgotten_within(hub, Duration::from_secs(1)).await, "{name}: the feed's pages are forgotten");
        }
    }
}
