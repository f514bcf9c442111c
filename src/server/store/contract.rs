//! One suite, every store: each test runs against `MemoryStore`, `SqliteStore` and `RedisStore` (on a
//! `redis-server` of its own, see `test_redis`).

use std::sync::Arc;

use super::*;
use crate::server::store::test_redis::TestRedis;
use crate::server::store::{MemoryStore, RedisStore, SqliteStore};

/// A store under test and what keeps it alive (the SQLite file's folder, the Redis server).
struct Subject {
    store: Arc<dyn FeedStore>,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<TestRedis>,
}

fn stores(cap: usize) -> Vec<(&'static str, Subject)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("feed.db")).unwrap();
    let (redis, server) = redis_store(cap, "test");
    vec![
        ("memory", Subject { store: Arc::new(MemoryStore::new(cap)), _dir: None, _redis: None }),
        ("sqlite", Subject { store: Arc::new(sqlite), _dir: Some(dir), _redis: None }),
        ("redis", Subject { store: Arc::new(redis), _dir: None, _redis: Some(server) }),
    ]
}

/// A `RedisStore` under `prefix` on a fresh `redis-server`.
fn redis_store(cap: usize, prefix: &str) -> (RedisStore, TestRedis) {
    let server = TestRedis::start();
    (redis_on(&server, cap, prefix), server)
}

fn redis_on(server: &TestRedis, cap: usize, prefix: &str) -> RedisStore {
    RedisStore::new(crate::server::link::test_link(server, prefix), cap)
}

fn at(rfc3339: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
}

fn ids(page: &[Message]) -> Vec<u64> {
    page.iter().map(|m| m.id).collect()
}

/// Appends `text` as `author` in group "g", with `key` if given.
async fn put(store: &dyn FeedStore, author: &str, text: &str, key: Option<&str>) -> Appended {
    let (author, text) = (Username::parse(author).unwrap(), MessageText::parse(text, 100).unwrap());
    let key = key.map(|key| SendKey::parse(key).unwrap().unwrap());
    store
        .append(Draft { feed: &FeedName::main(), group: "g", author: &author, text: &text, key: key.as_ref() })
        .await
        .unwrap()
}

async fn fill(store: &dyn FeedStore, n: usize) {
    for i in 0..n {
        put(store, "ada", &format!("m{i}"), None).await;
    }
}

#[tokio::test]
async fn appends_get_increasing_ids_and_keep_text() {
    for (name, s) in stores(100) {
        fill(&*s.store, 3).await;
        let all = s.store.since(&FeedName::main(), 0, 100).await.unwrap();
        assert_eq!(ids(&all), vec![1, 2, 3], "{name}");
        assert_eq!((all[2].text.as_str(), all[2].user.as_str()), ("m2", "ada"), "{name}");
        assert!(time::OffsetDateTime::parse(&all[2].at, &Rfc3339).is_ok(), "{name}");
        assert_eq!(s.store.last_id(&FeedName::main()).await.unwrap(), 3, "{name}");
    }
}

#[tokio::test]
async fn since_before_and_latest_pages() {
    for (name, s) in stores(100) {
        let store = &*s.store;
        assert!(store.latest(&FeedName::main(), 5).await.unwrap().is_empty(), "{name}");
        fill(store, 6).await;
        assert_eq!(ids(&store.since(&FeedName::main(), 2, 2).await.unwrap()), vec![3, 4], "{name}");
        assert_eq!(ids(&store.since(&FeedName::main(), 6, 2).await.unwrap()), Vec::<u64>::new(), "{name}");
        assert_eq!(ids(&store.since(&FeedName::main(), 60, 2).await.unwrap()), Vec::<u64>::new(), "{name}");
        assert_eq!(ids(&store.latest(&FeedName::main(), 4).await.unwrap()), vec![3, 4, 5, 6], "{name}");
        assert_eq!(ids(&store.latest(&FeedName::main(), 40).await.unwrap()), vec![1, 2, 3, 4, 5, 6], "{name}");
        assert_eq!(ids(&store.before(&FeedName::main(), 5, 2).await.unwrap()), vec![3, 4], "{name}");
        assert_eq!(ids(&store.before(&FeedName::main(), 3, 10).await.unwrap()), vec![1, 2], "{name}");
        assert_eq!(ids(&store.before(&FeedName::main(), 1, 10).await.unwrap()), Vec::<u64>::new(), "{name}");
        assert_eq!(ids(&store.before(&FeedName::main(), 100, 2).await.unwrap()), vec![5, 6], "{name}");
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_and_ids_are_never_reused() {
    for (name, s) in stores(100) {
        let store = &*s.store;
        fill(store, 10).await;
        assert_eq!(store.prune(&FeedName::main(), 4, None).await.unwrap(), 6, "{name}");
        assert_eq!(ids(&store.latest(&FeedName::main(), 100).await.unwrap()), vec![7, 8, 9, 10], "{name}");
        assert_eq!(ids(&store.since(&FeedName::main(), 1, 100).await.unwrap()), vec![7, 8, 9, 10], "{name}");
        assert_eq!(store.prune(&FeedName::main(), 4, None).await.unwrap(), 0, "{name}");
        // an age cutoff in the future takes everything; the next id still counts on
        assert_eq!(store.prune(&FeedName::main(), 100, Some(at("9999-01-01T00:00:00Z"))).await.unwrap(), 4, "{name}");
        assert_eq!(store.last_id(&FeedName::main()).await.unwrap(), 10, "{name}");
        fill(store, 1).await;
        assert_eq!(ids(&store.latest(&FeedName::main(), 100).await.unwrap()), vec![11], "{name}");
        // a cutoff in the past takes nothing
        assert_eq!(store.prune(&FeedName::main(), 100, Some(at("2000-01-01T00:00:00Z"))).await.unwrap(), 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_gap_free() {
    for (name, s) in stores(10_000) {
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = s.store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for i in 0..200 {
                        mine.push(put(&*store, &format!("u{t}"), &format!("{t}-{i}"), None).await.message);
                    }
                    mine
                })
            })
            .collect();
        let mut acknowledged = Vec::new();
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        let all = s.store.since(&FeedName::main(), 0, 10_000).await.unwrap();
        assert_eq!(ids(&all), (1..=1600).collect::<Vec<_>>(), "{name}");
        for message in acknowledged {
            assert_eq!(all[message.id as usize - 1], message, "{name}: what was acknowledged is what is stored");
        }
    }
}

#[tokio::test]
async fn memory_cap_drops_oldest_and_ids_keep_counting() {
    let store = MemoryStore::new(3);
    fill(&store, 7).await;
    assert_eq!(ids(&store.latest(&FeedName::main(), 10).await.unwrap()), vec![5, 6, 7]);
    assert_eq!(ids(&store.since(&FeedName::main(), 1, 10).await.unwrap()), vec![5, 6, 7]);
    assert_eq!(store.last_id(&FeedName::main()).await.unwrap(), 7);
}

#[tokio::test]
async fn sqlite_survives_reopening_and_refuses_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        fill(&store, 3).await;
        store.prune(&FeedName::main(), 1, None).await.unwrap();
    }
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(ids(&reopened.latest(&FeedName::main(), 10).await.unwrap()), vec![3]);
    fill(&reopened, 1).await;
    assert_eq!(reopened.last_id(&FeedName::main()).await.unwrap(), 4);

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&junk).err().expect("a corrupt file is refused").to_string();
    assert!(err.contains("junk.db"), "{err}");
    let err = SqliteStore::open(&dir.path().join("feed.db").join("not-a-dir").join("x.db")).err().unwrap().to_string();
    assert!(err.contains("cannot open the database"), "{err}");
}

#[tokio::test]
async fn a_repeated_key_answers_the_first_message_and_appends_nothing() {
    for (name, s) in stores(100) {
        let store = &*s.store;
        let first = put(store, "ada", "hello", Some("k1")).await;
        assert!(first.fresh, "{name}");
        let again = put(store, "ada", "hello", Some("k1")).await;
        assert_eq!(again, Appended { message: first.message.clone(), fresh: false }, "{name}");
        // Another key, no key, or the same key in another group: new messages.
        assert!(put(store, "ada", "hello", Some("k2")).await.fresh, "{name}");
        assert!(put(store, "ada", "hello", None).await.fresh, "{name}");
        let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("hello", 100).unwrap());
        let key = SendKey::parse("k1").unwrap();
        let other = store
            .append(Draft { feed: &FeedName::main(), group: "h", author: &author, text: &text, key: key.as_ref() })
            .await
            .unwrap();
        assert!(other.fresh, "{name}");
        assert_eq!(ids(&store.since(&FeedName::main(), 0, 100).await.unwrap()), vec![1, 2, 3, 4], "{name}");
        assert_eq!(store.last_id(&FeedName::main()).await.unwrap(), 4, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_one_key_store_it_once() {
    for (name, s) in stores(100) {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = s.store.clone();
                tokio::spawn(async move { put(&*store, "ada", "once", Some("same")).await })
            })
            .collect();
        let answers: Vec<Appended> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers.iter().filter(|a| a.fresh).count(), 1, "{name}");
        assert!(answers.iter().all(|a| a.message.id == 1 && a.message.text == "once"), "{name}");
        assert_eq!(ids(&s.store.since(&FeedName::main(), 0, 100).await.unwrap()), vec![1], "{name}");
    }
}

#[tokio::test]
async fn the_epoch_is_made_with_the_log_and_kept() {
    for (name, s) in stores(100) {
        let epoch = s.store.epoch(&FeedName::main()).await.unwrap();
        assert!(!epoch.is_empty(), "{name}");
        fill(&*s.store, 2).await;
        assert_eq!(s.store.epoch(&FeedName::main()).await.unwrap(), epoch, "{name}");
    }
    // Two logs, two epochs.
    let (a, b) = (MemoryStore::new(1), MemoryStore::new(1));
    assert_ne!(a.epoch(&FeedName::main()).await.unwrap(), b.epoch(&FeedName::main()).await.unwrap());
}

/// Two deployments on one Redis: each prefix has its own ids, log and epoch.
#[tokio::test]
async fn redis_prefixes_keep_deployments_apart() {
    let (blue, server) = redis_store(100, "blue");
    let green = redis_on(&server, 100, "green");
    fill(&blue, 3).await;
    fill(&green, 1).await;
    assert_eq!(ids(&blue.since(&FeedName::main(), 0, 10).await.unwrap()), vec![1, 2, 3]);
    assert_eq!(ids(&green.since(&FeedName::main(), 0, 10).await.unwrap()), vec![1]);
    assert_ne!(blue.epoch(&FeedName::main()).await.unwrap(), green.epoch(&FeedName::main()).await.unwrap());
    let keys = server.command(&["KEYS", "*"]);
    let test_redis::Reply::Array(keys) = keys else { panic!("{keys:?}") };
    assert!(keys.iter().all(|k| k.text().is_some_and(|k| k.starts_with("blue:") || k.starts_with("green:"))));
}

/// A Redis killed with SIGKILL replays its append-only file: every acknowledged message, the same epoch, the next
/// id above them. One that comes back empty starts a new epoch at id 1.
#[tokio::test]
async fn redis_keeps_acknowledged_messages_across_a_kill_and_starts_a_new_epoch_when_emptied() {
    let (store, mut server) = redis_store(100, "p");
    fill(&store, 5).await;
    let epoch = store.epoch(&FeedName::main()).await.unwrap();
    server.restart();
    let main = FeedName::main();
    let after = wait_for(|| store.since(&main, 0, 100)).await;
    assert_eq!(texts(&after), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(store.epoch(&FeedName::main()).await.unwrap(), epoch);
    assert_eq!(put(&store, "ada", "next", None).await.message.id, 6);

    server.restart_empty();
    let fresh = wait_for(|| store.epoch(&main)).await;
    assert_ne!(fresh, epoch, "an emptied Redis is a new epoch");
    assert_eq!(put(&store, "ada", "again", None).await.message.id, 1);
    assert_eq!(store.epoch(&FeedName::main()).await.unwrap(), fresh);
}

/// Redis down: every call is `Unavailable`, soon (no hang, no panic); back up, the store serves again.
#[tokio::test]
async fn redis_down_is_unavailable_and_recovers() {
    let (store, mut server) = redis_store(100, "p");
    fill(&store, 1).await;
    server.kill9();
    let started = std::time::Instant::now();
    let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("x", 100).unwrap());
    let draft = Draft { feed: &FeedName::main(), group: "g", author: &author, text: &text, key: None };
    assert!(matches!(store.append(draft).await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.since(&FeedName::main(), 0, 10).await, Err(StoreError::Unavailable(_))));
    assert!(store.ready().await.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    server.restart();
    wait_for(|| store.ready()).await;
    assert_eq!(ids(&store.since(&FeedName::main(), 0, 10).await.unwrap()), vec![1]);
}

/// A log whose `meta` alone was lost (evicted) goes on above its newest entry, in a new epoch: no id is reused.
#[tokio::test]
async fn redis_lost_sequence_never_reuses_an_id() {
    let (store, server) = redis_store(100, "p");
    fill(&store, 3).await;
    let epoch = store.epoch(&FeedName::main()).await.unwrap();
    assert_eq!(server.command(&["DEL", "p:meta"]).int(), Some(1));
    assert_eq!(put(&store, "ada", "after", None).await.message.id, 4);
    assert_ne!(store.epoch(&FeedName::main()).await.unwrap(), epoch);
}

/// Redis lost acknowledged ids (it came back with an older `meta`: the same epoch, a lower `seq`): a store that saw
/// them ends the epoch at its next append, in the same script, and never hands them out again; a head does the
/// same; a store that never saw them cannot tell, and goes on in whatever epoch Redis holds.
#[tokio::test]
async fn redis_that_lost_acknowledged_ids_ends_the_epoch() {
    let (store, server) = redis_store(100, "p");
    fill(&store, 6).await;
    let old = store.epoch(&FeedName::main()).await.unwrap();
    let roll_back = |seq: &str, lost: &[&str]| {
        server.command(&["HSET", "p:meta", "seq", seq]);
        server.command(&[&["XDEL", "p:log"][..], lost].concat());
    };
    roll_back("3", &["4-0", "5-0", "6-0"]);
    let late = redis_on(&server, 100, "p");
    let head = late.head(&FeedName::main()).await.unwrap();
    assert_eq!((head.epoch.as_str(), head.seq), (old.as_str(), 3), "started after the loss: nothing to tell");

    let after = put(&store, "ada", "after", None).await;
    assert_eq!(after.message.id, 7, "above every id it saw acknowledged");
    let new = store.epoch(&FeedName::main()).await.unwrap();
    assert_ne!(new, old, "a new epoch, in the same step");
    assert_eq!(ids(&store.since(&FeedName::main(), 0, 10).await.unwrap()), vec![1, 2, 3, 7]);
    assert_eq!(put(&late, "bob", "late", None).await.message.id, 8, "the late store goes on in the new epoch");
    assert_eq!(
        store.epoch(&FeedName::main()).await.unwrap(),
        new,
        "and does not end it: it never saw it lose anything"
    );

    assert_eq!(store.head(&FeedName::main()).await.unwrap().seq, 8, "a head it reads is what it saw, too");
    roll_back("7", &["8-0"]);
    let head = store.head(&FeedName::main()).await.unwrap();
    assert_ne!(head.epoch, new, "a head ends the epoch too");
    assert_eq!(head.seq, 8);
    assert_eq!(server.command(&["HGET", "p:meta", "epoch"]).text(), Some(head.epoch.as_str()));
    let repeat = put(&store, "ada", "keyed", Some("k1")).await;
    assert_eq!((repeat.message.id, put(&store, "ada", "keyed", Some("k1")).await.fresh), (9, false));
}

fn texts(page: &[Message]) -> Vec<&str> {
    page.iter().map(|m| m.text.as_str()).collect()
}

/// Retries `call` until it succeeds (a restarting Redis), for up to 10 s.
async fn wait_for<T, F: std::future::Future<Output = Result<T, StoreError>>>(call: impl Fn() -> F) -> T {
    for _ in 0..100 {
        if let Ok(value) = call().await {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the store did not recover within 10 s");
}
