//! One suite, every store: each test runs against `MemoryStore`, `SqliteStore` and `RedisStore` (on a
//! `redis-server` of its own, see `test_redis`). Most use feed `main` alone; the feed tests at the end use several,
//! and look into each backend to check that a feed never appended to holds nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::server::store::test_redis::TestRedis;
use crate::server::store::{MemoryStore, RedisStore, SqliteStore};

/// A store under test, the backend behind it (to look into), and what keeps it alive (the SQLite file's folder).
struct Subject {
    store: Arc<dyn FeedStore>,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

enum Backend {
    Memory(Arc<MemoryStore>),
    Sqlite(PathBuf),
    Redis(Arc<RedisStore>, TestRedis),
}

fn stores(cap: usize) -> Vec<(&'static str, Subject)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.db");
    let sqlite = Arc::new(SqliteStore::open(&path).unwrap());
    let (redis, server) = redis_store(cap, "test");
    let (memory, redis) = (Arc::new(MemoryStore::new(cap)), Arc::new(redis));
    vec![
        ("memory", Subject { store: memory.clone(), backend: Backend::Memory(memory), _dir: None }),
        ("sqlite", Subject { store: sqlite, backend: Backend::Sqlite(path), _dir: Some(dir) }),
        ("redis", Subject { store: redis.clone(), backend: Backend::Redis(redis, server), _dir: None }),
    ]
}

impl Subject {
    /// Everything the backend holds, one line per thing: memory's feeds and send keys; SQLite's rows of every
    /// table; Redis's keys and the feeds its store remembers a head of.
    fn holdings(&self) -> Vec<String> {
        let mut held = match &self.backend {
            Backend::Memory(memory) => {
                let (feeds, keys) = memory.held();
                let feeds = feeds.iter().map(|feed| format!("feed {feed}"));
                feeds.chain((0..keys).map(|n| format!("send key {n}"))).collect()
            }
            Backend::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut rows = Vec::new();
                for (table, columns) in [
                    ("feeds", "name"),
                    ("messages", "feed || ':' || id"),
                    ("send_keys", "feed || ':' || grp || ':' || key"),
                    ("meta", "name"),
                ] {
                    let mut stmt = conn.prepare(&format!("SELECT {columns} FROM {table}")).unwrap();
                    let found = stmt.query_map([], |row| row.get::<_, String>(0)).unwrap();
                    rows.extend(found.map(|row| format!("{table} {}", row.unwrap())));
                }
                rows
            }
            Backend::Redis(store, server) => {
                let test_redis::Reply::Array(keys) = server.command(&["KEYS", "*"]) else { panic!("KEYS") };
                let keys = keys.iter().map(|key| format!("key {}", key.text().unwrap()));
                keys.chain((0..store.seen_feeds()).map(|n| format!("seen head {n}"))).collect()
            }
        };
        held.sort();
        held
    }
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

/// Appends `text` as `author` in group "g" of feed `main`, with `key` if given.
async fn put(store: &dyn FeedStore, author: &str, text: &str, key: Option<&str>) -> Appended {
    append_as(store, &FeedName::main(), "g", author, text, key).await
}

/// Appends `text` as "ada" to `feed`, in `group`, with `key` if given.
async fn put_in(store: &dyn FeedStore, feed: &FeedName, group: &str, text: &str, key: Option<&str>) -> Appended {
    append_as(store, feed, group, "ada", text, key).await
}

async fn append_as(
    store: &dyn FeedStore,
    feed: &FeedName,
    group: &str,
    author: &str,
    text: &str,
    key: Option<&str>,
) -> Appended {
    let (author, text) = (Username::parse(author).unwrap(), MessageText::parse(text, 100).unwrap());
    let key = key.map(|key| SendKey::parse(key).unwrap().unwrap());
    store
        .append(Draft {
            feed,
            group,
            author: &author,
            text: &text,
            key: key.as_ref(),
            source: &Source::Anonymous,
            address: "",
        })
        .await
        .unwrap()
}

fn feed(name: &str) -> FeedName {
    FeedName::parse(name).unwrap()
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
        assert_eq!(again, Appended { message: first.message.clone(), epoch: String::new(), fresh: false }, "{name}");
        assert_eq!(first.epoch, store.epoch(&FeedName::main()).await.unwrap(), "{name}: appended in the feed's epoch");
        // Another key, no key, or the same key in another group: new messages.
        assert!(put(store, "ada", "hello", Some("k2")).await.fresh, "{name}");
        assert!(put(store, "ada", "hello", None).await.fresh, "{name}");
        let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("hello", 100).unwrap());
        let key = SendKey::parse("k1").unwrap();
        let other = store
            .append(Draft {
                feed: &FeedName::main(),
                group: "h",
                author: &author,
                text: &text,
                key: key.as_ref(),
                source: &Source::Anonymous,
                address: "",
            })
            .await
            .unwrap();
        assert!(other.fresh, "{name}");
        assert_eq!(ids(&store.since(&FeedName::main(), 0, 100).await.unwrap()), vec![1, 2, 3, 4], "{name}");
        assert_eq!(store.last_id(&FeedName::main()).await.unwrap(), 4, "{name}");
    }
}

/// Every store keeps a message's source as the draft gives it: anonymous, verified (the token's subject, which may
/// hold anything, a colon too) and service (an API key's name). Every read gives it back, and so does a repeated
/// key's answer.
#[tokio::test]
async fn every_source_is_kept_as_given_and_read_back() {
    let sources = [
        Source::Anonymous,
        Source::Verified("sub-123:tenant/ü".into()),
        Source::Service("billing".into()),
        Source::Verified(String::new()),
    ];
    for (name, s) in stores(100) {
        let store = &*s.store;
        let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
        for (i, source) in sources.iter().enumerate() {
            let key = SendKey::parse(&format!("k{i}")).unwrap();
            let draft = Draft {
                feed: &FeedName::main(),
                group: "g",
                author: &author,
                text: &text,
                key: key.as_ref(),
                source,
                address: "",
            };
            let first = store.append(draft).await.unwrap();
            assert_eq!((first.fresh, &first.message.source), (true, source), "{name}");
            let again = store.append(draft).await.unwrap();
            assert_eq!((again.fresh, &again.message.source), (false, source), "{name}: a repeated key");
        }
        let main = FeedName::main();
        for page in [
            store.since(&main, 0, 10).await.unwrap(),
            store.latest(&main, 10).await.unwrap(),
            store.before(&main, u64::MAX, 10).await.unwrap(),
        ] {
            let read: Vec<&Source> = page.iter().map(|m| &m.source).collect();
            assert_eq!(read, sources.iter().collect::<Vec<_>>(), "{name}");
        }
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

/// No epoch (`""`) until the first append makes it; then it is kept.
#[tokio::test]
async fn the_epoch_is_made_with_the_log_and_kept() {
    for (name, s) in stores(100) {
        assert_eq!(s.store.epoch(&FeedName::main()).await.unwrap(), "", "{name}: nothing stored, no epoch");
        fill(&*s.store, 1).await;
        let epoch = s.store.epoch(&FeedName::main()).await.unwrap();
        assert!(!epoch.is_empty(), "{name}");
        fill(&*s.store, 2).await;
        s.store.prune(&FeedName::main(), 0, None).await.unwrap();
        assert_eq!(s.store.epoch(&FeedName::main()).await.unwrap(), epoch, "{name}: kept, also when emptied");
    }
    // Two logs, two epochs.
    let (a, b) = (MemoryStore::new(1), MemoryStore::new(1));
    fill(&a, 1).await;
    fill(&b, 1).await;
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
    assert_eq!(wait_for(|| store.epoch(&main)).await, "", "an emptied Redis holds no feed");
    assert_eq!(put(&store, "ada", "again", None).await.message.id, 1);
    let fresh = store.epoch(&FeedName::main()).await.unwrap();
    assert!(!fresh.is_empty() && fresh != epoch, "a new epoch, made with the new log: {fresh}");
}

/// Redis down: every call is `Unavailable`, soon (no hang, no panic); back up, the store serves again.
#[tokio::test]
async fn redis_down_is_unavailable_and_recovers() {
    let (store, mut server) = redis_store(100, "p");
    fill(&store, 1).await;
    server.kill9();
    let started = std::time::Instant::now();
    let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("x", 100).unwrap());
    let draft = Draft {
        feed: &FeedName::main(),
        group: "g",
        author: &author,
        text: &text,
        key: None,
        source: &Source::Anonymous,
        address: "",
    };
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
    assert_eq!(server.command(&["DEL", "p:{main}:meta"]).int(), Some(1));
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
        server.command(&["HSET", "p:{main}:meta", "seq", seq]);
        server.command(&[&["XDEL", "p:{main}:log"][..], lost].concat());
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
    assert_eq!(server.command(&["HGET", "p:{main}:meta", "epoch"]).text(), Some(head.epoch.as_str()));
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

/// Feeds interleaved: each counts its ids from 1, has its own epoch, remembers its own send keys, and retention of
/// one touches no other.
#[tokio::test]
async fn feeds_keep_their_own_ids_epochs_keys_and_retention() {
    let (a, b, c) = (feed("a"), feed("b"), FeedName::main());
    for (name, s) in stores(100) {
        let store = &*s.store;
        for (feed, text, key) in
            [(&a, "a1", None), (&b, "b1", None), (&a, "a2", Some("k")), (&c, "c1", Some("k")), (&b, "b2", Some("k"))]
        {
            assert!(put_in(store, feed, "g", text, key).await.fresh, "{name}: {text}");
        }
        // The key used in a, b and c: a repeat in each answers that feed's own first message.
        for (feed, first) in [(&a, (2, "a2")), (&b, (2, "b2")), (&c, (1, "c1"))] {
            let again = put_in(store, feed, "g", "again", Some("k")).await;
            assert_eq!((again.fresh, again.message.id, again.message.text.as_str()), (false, first.0, first.1));
        }
        put_in(store, &a, "g", "a3", None).await;
        let texts_of = |page: Vec<Message>| page.into_iter().map(|m| (m.id, m.text)).collect::<Vec<_>>();
        let owned = |pairs: &[(u64, &str)]| pairs.iter().map(|(id, t)| (*id, t.to_string())).collect::<Vec<_>>();
        assert_eq!(texts_of(store.since(&a, 0, 10).await.unwrap()), owned(&[(1, "a1"), (2, "a2"), (3, "a3")]));
        assert_eq!(texts_of(store.since(&b, 0, 10).await.unwrap()), owned(&[(1, "b1"), (2, "b2")]), "{name}");
        assert_eq!(texts_of(store.latest(&c, 10).await.unwrap()), owned(&[(1, "c1")]), "{name}");
        assert_eq!(texts_of(store.before(&a, 3, 10).await.unwrap()), owned(&[(1, "a1"), (2, "a2")]), "{name}");
        let last =
            [store.last_id(&a).await.unwrap(), store.last_id(&b).await.unwrap(), store.last_id(&c).await.unwrap()];
        assert_eq!(last, [3, 2, 1], "{name}");
        let epochs = [store.epoch(&a).await.unwrap(), store.epoch(&b).await.unwrap(), store.epoch(&c).await.unwrap()];
        assert!(epochs.iter().all(|e| !e.is_empty()), "{name}: {epochs:?}");
        assert!(epochs[0] != epochs[1] && epochs[1] != epochs[2] && epochs[0] != epochs[2], "{name}: {epochs:?}");

        // Retention of a takes a's oldest only; of b by age, all of b; ids of both go on, c is untouched.
        assert_eq!(store.prune(&a, 1, None).await.unwrap(), 2, "{name}");
        assert_eq!(store.prune(&b, 100, Some(at("9999-01-01T00:00:00Z"))).await.unwrap(), 2, "{name}");
        assert_eq!(ids(&store.since(&a, 0, 10).await.unwrap()), vec![3], "{name}");
        assert!(store.since(&b, 0, 10).await.unwrap().is_empty(), "{name}");
        assert_eq!(ids(&store.since(&c, 0, 10).await.unwrap()), vec![1], "{name}");
        assert_eq!(put_in(store, &b, "g", "b3", None).await.message.id, 3, "{name}: b's ids are never reused");
        assert_eq!(put_in(store, &a, "g", "a4", None).await.message.id, 4, "{name}");
        assert_eq!(put_in(store, &c, "g", "c2", None).await.message.id, 2, "{name}");
        let now = [store.epoch(&a).await.unwrap(), store.epoch(&b).await.unwrap(), store.epoch(&c).await.unwrap()];
        assert_eq!(now, epochs, "{name}: retention keeps every epoch");
    }
}

/// A feed never appended to holds nothing, however it is read: no row, no key, no map entry, no remembered head.
#[tokio::test]
async fn a_feed_never_appended_to_stores_nothing() {
    let (ghost, real) = (feed("ghost"), feed("real"));
    let read_all = |store: Arc<dyn FeedStore>, feed: FeedName| async move {
        assert!(store.since(&feed, 0, 10).await.unwrap().is_empty());
        assert!(store.before(&feed, 10, 10).await.unwrap().is_empty());
        assert!(store.latest(&feed, 10).await.unwrap().is_empty());
        assert_eq!(store.epoch(&feed).await.unwrap(), "");
        assert_eq!(store.last_id(&feed).await.unwrap(), 0);
        assert_eq!(store.prune(&feed, 0, Some(at("9999-01-01T00:00:00Z"))).await.unwrap(), 0);
    };
    for (name, s) in stores(100) {
        for feed in [&ghost, &FeedName::main()] {
            read_all(s.store.clone(), feed.clone()).await;
        }
        assert!(s.store.feeds(None, 10).await.unwrap().is_empty(), "{name}");
        if let Backend::Redis(redis, _) = &s.backend {
            let head = redis.head(&ghost).await.unwrap();
            assert_eq!((head.epoch.as_str(), head.seq), ("", 0), "{name}");
            assert!(redis.sent_since(&ghost, 0, 10).await.unwrap().is_empty(), "{name}");
        }
        assert_eq!(s.holdings(), Vec::<String>::new(), "{name}: a fresh store read all over holds nothing");

        put_in(&*s.store, &real, "g", "hi", Some("k")).await;
        let after_append = s.holdings();
        assert!(!after_append.is_empty(), "{name}: the check sees what a feed holds");
        read_all(s.store.clone(), ghost.clone()).await;
        if let Backend::Redis(redis, _) = &s.backend {
            assert_eq!(redis.head(&ghost).await.unwrap().seq, 0, "{name}");
        }
        assert_eq!(s.holdings(), after_append, "{name}: reading another feed adds nothing");
        assert!(after_append.iter().all(|held| !held.contains("ghost")), "{name}: {after_append:?}");
        assert_eq!(s.store.feeds(None, 10).await.unwrap(), vec![real.clone()], "{name}");
    }
}

/// `feeds` lists the feeds appended to, each once, in name order, a page at a time.
#[tokio::test]
async fn feeds_page_in_name_order() {
    let names = ["m", "a-1", "b", "main", "a", "zz", "a0", "9", "b", "a"];
    let mut sorted: Vec<FeedName> = names.iter().map(|n| feed(n)).collect();
    sorted.sort();
    sorted.dedup();
    for (name, s) in stores(100) {
        let store = &*s.store;
        for n in names {
            put_in(store, &feed(n), "g", n, None).await;
        }
        assert_eq!(store.feeds(None, 100).await.unwrap(), sorted, "{name}");
        assert!(store.feeds(None, 0).await.unwrap().is_empty(), "{name}");
        let (mut paged, mut after) = (Vec::new(), None::<FeedName>);
        loop {
            let page = store.feeds(after.as_ref(), 3).await.unwrap();
            assert!(page.len() <= 3, "{name}");
            paged.extend(page.iter().cloned());
            if page.len() < 3 {
                break;
            }
            after = page.last().cloned();
        }
        assert_eq!(paged, sorted, "{name}");
        // After a name that is not a feed: the feeds above it.
        assert_eq!(store.feeds(Some(&feed("aa")), 2).await.unwrap(), vec![feed("b"), feed("m")], "{name}");
        assert!(store.feeds(Some(&feed("zz")), 10).await.unwrap().is_empty(), "{name}");
    }
}

/// A fresh store of each backend for one case of a property test: memory, SQLite in `dir`, and Redis on `server`
/// under a prefix of the case's own.
fn every_store(dir: &tempfile::TempDir, server: &TestRedis, case: usize) -> Vec<(&'static str, Arc<dyn FeedStore>)> {
    vec![
        ("memory", Arc::new(MemoryStore::new(1_000))),
        ("sqlite", Arc::new(SqliteStore::open(&dir.path().join("feed.db")).unwrap())),
        ("redis", Arc::new(redis_on(server, 1_000, &format!("case{case}")))),
    ]
}

/// Random appends (some with keys, some repeated) over random feeds, on every store: each feed holds ids 1..n of
/// its own fresh messages, in order, and never a message of another feed; a repeated key answers its feed's first.
#[test]
fn random_appends_over_random_feeds_keep_ids_per_feed() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const FEEDS: [&str; 4] = ["a", "b", "main", "z-9"];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server = TestRedis::start();
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    let ops = proptest::collection::vec((0..FEEDS.len(), proptest::option::of(0..3u8)), 1..40);
    runner
        .run(&ops, |ops| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                for (name, store) in every_store(&dir, &server, case) {
                    // The model: per feed, its texts in id order and the id each key got.
                    let mut texts: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
                    let mut keys: HashMap<(&str, u8), u64> = HashMap::new();
                    for (n, (f, key)) in ops.iter().enumerate() {
                        let feed_name = FEEDS[*f];
                        let text = format!("{feed_name}/{n}");
                        let key_text = key.map(|k| format!("k{k}"));
                        let answer = put_in(&*store, &feed(feed_name), "g", &text, key_text.as_deref()).await;
                        let log = texts.entry(feed_name).or_default();
                        match key.and_then(|k| keys.get(&(feed_name, k))) {
                            Some(first) => {
                                prop_assert!(!answer.fresh, "{}", name);
                                prop_assert_eq!(answer.message.id, *first, "{}", name);
                            }
                            None => {
                                log.push(text);
                                prop_assert!(answer.fresh, "{}", name);
                                prop_assert_eq!(answer.message.id, log.len() as u64, "{}", name);
                                if let Some(k) = key {
                                    keys.insert((feed_name, *k), answer.message.id);
                                }
                            }
                        }
                    }
                    for feed_name in FEEDS {
                        let stored = store.since(&feed(feed_name), 0, 1_000).await.unwrap();
                        let expected = texts.get(feed_name).cloned().unwrap_or_default();
                        prop_assert_eq!(ids(&stored), (1..=expected.len() as u64).collect::<Vec<_>>(), "{}", name);
                        prop_assert_eq!(texts_owned(&stored), expected.clone(), "{}", name);
                        prop_assert_eq!(store.last_id(&feed(feed_name)).await.unwrap(), expected.len() as u64);
                    }
                    let listed: Vec<FeedName> = texts.keys().map(|n| feed(n)).collect();
                    prop_assert_eq!(store.feeds(None, 10).await.unwrap(), listed, "{}", name);
                }
                Ok(())
            })
        })
        .unwrap();
}

fn texts_owned(page: &[Message]) -> Vec<String> {
    page.iter().map(|m| m.text.clone()).collect()
}

/// A deployment of before feeds kept one log at `PREFIX:log`/`PREFIX:meta`: the first use moves it to feed `main`
/// with its ids, epoch and sequence, and leaves `PREFIX:log` a string, so a replica of the version before fails its
/// appends and reads (WRONGTYPE, a 503) instead of writing a log nobody reads.
#[tokio::test]
async fn redis_moves_the_log_of_before_feeds_to_main_once() {
    let server = TestRedis::start();
    for id in ["1-0", "2-0", "3-0"] {
        let fields = ["user", "ada", "text", id, "at", "2026-01-01T00:00:00Z", "group", "g"];
        server.command(&[&["XADD", "p:log", id][..], &fields[..]].concat());
    }
    server.command(&["HSET", "p:meta", "epoch", "e-old", "seq", "4"]);
    let main = FeedName::main();
    let store = redis_on(&server, 100, "p");
    assert_eq!(ids(&store.since(&main, 0, 10).await.unwrap()), vec![1, 2, 3]);
    assert_eq!(texts(&store.latest(&main, 10).await.unwrap()), ["1-0", "2-0", "3-0"]);
    assert_eq!(store.epoch(&main).await.unwrap(), "e-old", "open tabs keep their epoch");
    assert_eq!(store.last_id(&main).await.unwrap(), 4);
    assert_eq!(store.feeds(None, 10).await.unwrap(), vec![main.clone()]);
    assert_eq!(put(&store, "bob", "after", None).await.message.id, 5, "ids go on above the old sequence");
    assert_eq!(store.epoch(&main).await.unwrap(), "e-old");

    assert_eq!(server.command(&["TYPE", "p:log"]), test_redis::Reply::Status("string".into()));
    assert_eq!(server.command(&["EXISTS", "p:meta"]).int(), Some(0));
    // What a replica of the version before does first, on append and on read: refused.
    let old_append = server.command(&["XADD", "p:log", "*", "user", "x", "text", "lost", "at", "t", "group", "g"]);
    let old_read = server.command(&["XREVRANGE", "p:log", "+", "-", "COUNT", "1"]);
    for refused in [old_append, old_read] {
        let test_redis::Reply::Error(why) = &refused else { panic!("{refused:?}") };
        assert!(why.starts_with("WRONGTYPE"), "{why}");
    }
    // Another new replica (a process of its own) finds it moved and moves nothing again.
    let other = redis_on(&server, 100, "p");
    assert_eq!(ids(&other.since(&main, 0, 10).await.unwrap()), vec![1, 2, 3, 5]);
    assert_eq!(put(&other, "bob", "again", None).await.message.id, 6);
}

/// Appends `text` to `feed` as `author`, in `group`, with `source` and `address` (no key).
async fn put_from(
    store: &dyn FeedStore,
    feed: &FeedName,
    (group, author, address): (&str, &str, &str),
    text: &str,
    source: &Source,
) -> Appended {
    let (author, text) = (Username::parse(author).unwrap(), MessageText::parse(text, 10_000).unwrap());
    let draft = Draft { feed, group, author: &author, text: &text, key: None, source, address };
    store.append(draft).await.unwrap()
}

/// `message` as a removal leaves it: its id and time, nothing of who sent it or what it said.
fn erased(message: &Message) -> Message {
    Message {
        id: message.id,
        user: String::new(),
        text: String::new(),
        at: message.at.clone(),
        source: Source::Anonymous,
        removed: true,
    }
}

/// A removal erases the kept ids asked (author, text, source, address), which read back as removed at the same id
/// and time in every page; the others are untouched; ids not kept (never appended, pruned, removed already) are
/// skipped, and a removal that erased nothing keeps the epoch; one that erased something makes a new one, and the
/// ids go on. A repeated send key of a removed message answers it removed.
#[tokio::test]
async fn a_removal_erases_the_message_and_keeps_its_place() {
    let main = FeedName::main();
    let verified = Source::Verified("sub-1".into());
    for (name, s) in stores(100) {
        let store = &*s.store;
        let nothing = store.remove(&main, &[1, 2]).await.unwrap();
        assert_eq!(nothing, Removal { removed: vec![], epoch: String::new() }, "{name}: a feed that holds nothing");
        assert_eq!(s.holdings(), Vec::<String>::new(), "{name}: removing from nothing stores nothing");
        let keyed = put(store, "ada", "keyed", Some("k1")).await.message;
        let mut sent = vec![keyed];
        for i in 2..=6 {
            sent.push(put_from(store, &main, ("g", "bob", "192.0.2.7"), &format!("t{i}"), &verified).await.message);
        }
        store.prune(&main, 5, None).await.unwrap(); // id 1 goes
        let before = store.epoch(&main).await.unwrap();

        let unknown = store.remove(&main, &[1, 0, 7, 99, u64::MAX]).await.unwrap();
        assert_eq!(unknown, Removal { removed: vec![], epoch: before.clone() }, "{name}: pruned or never appended");
        assert_eq!(store.latest(&main, 10).await.unwrap(), sent[1..].to_vec(), "{name}: nothing changed");

        let removal = store.remove(&main, &[4, 2, 4, 42]).await.unwrap();
        let mut removed = removal.removed.clone();
        removed.sort_unstable();
        assert_eq!(removed, vec![2, 4], "{name}");
        assert!(!removal.epoch.is_empty() && removal.epoch != before, "{name}: a new epoch");
        assert_eq!(store.epoch(&main).await.unwrap(), removal.epoch, "{name}");
        let expected: Vec<Message> =
            sent[1..].iter().map(|m| if m.id == 2 || m.id == 4 { erased(m) } else { m.clone() }).collect();
        assert_eq!(store.since(&main, 0, 10).await.unwrap(), expected, "{name}: since");
        assert_eq!(store.latest(&main, 10).await.unwrap(), expected, "{name}: latest");
        assert_eq!(store.before(&main, 6, 10).await.unwrap(), expected[..4].to_vec(), "{name}: before");
        assert_eq!(store.since(&main, 3, 1).await.unwrap(), vec![erased(&sent[3])], "{name}: at its id");

        let again = store.remove(&main, &[2, 4]).await.unwrap();
        assert_eq!(again, Removal { removed: vec![], epoch: removal.epoch.clone() }, "{name}: removed already");
        assert_eq!(store.last_id(&main).await.unwrap(), 6, "{name}");
        let next = put(store, "cy", "next", None).await;
        assert_eq!((next.message.id, next.epoch.as_str()), (7, removal.epoch.as_str()), "{name}: ids go on");

        // A send key whose message is removed: a repeat answers the removed message, never its old text.
        let keyed = put_in(store, &feed("k"), "g", "secret", Some("k")).await.message;
        store.remove(&feed("k"), &[keyed.id]).await.unwrap();
        let repeat = put_in(store, &feed("k"), "g", "secret", Some("k")).await;
        assert_eq!((repeat.fresh, repeat.message), (false, erased(&keyed)), "{name}: a repeated key");
    }
}

/// `recent` gives the newest messages with their senders' group and address (old first), removed ones too, their
/// address erased with them; a feed that holds nothing has none.
#[tokio::test]
async fn recent_gives_senders_and_erases_them_with_the_message() {
    let main = FeedName::main();
    for (name, s) in stores(100) {
        let store = &*s.store;
        assert!(store.recent(&main, 10).await.unwrap().is_empty(), "{name}");
        let a = put_from(store, &main, ("g1", "ada", "192.0.2.1"), "one", &Source::Anonymous).await.message;
        let b = put_from(store, &main, ("g2", "bob", "2001:db8::2"), "two", &Source::Service("x".into())).await.message;
        let c = put_from(store, &main, ("g1", "ada", ""), "three", &Source::Anonymous).await.message;
        let sent = |message: &Message, group: &str, address: &str| Sent {
            message: message.clone(),
            group: group.into(),
            address: address.into(),
        };
        assert_eq!(
            store.recent(&main, 10).await.unwrap(),
            vec![sent(&a, "g1", "192.0.2.1"), sent(&b, "g2", "2001:db8::2"), sent(&c, "g1", "")],
            "{name}"
        );
        assert_eq!(store.recent(&main, 1).await.unwrap(), vec![sent(&c, "g1", "")], "{name}: the newest");
        assert!(store.recent(&main, 0).await.unwrap().is_empty(), "{name}");
        store.remove(&main, &[b.id]).await.unwrap();
        assert_eq!(store.recent(&main, 2).await.unwrap(), vec![sent(&erased(&b), "g2", ""), sent(&c, "g1", "")]);
        assert!(store.recent(&feed("other"), 10).await.unwrap().is_empty(), "{name}");
    }
}

/// Random appends and removals interleaved over two feeds, on every store: every message not removed reads back
/// exactly as appended, every removed one as erased at its id; the epoch changes exactly when something was
/// removed; ids never repeat.
#[test]
fn random_appends_and_removals_lose_nothing_else() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    const FEEDS: [&str; 2] = ["a", "main"];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server = TestRedis::start();
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    // (feed, Some(ids to remove, as 1-based guesses up to a bit past the last id) or None: append)
    let op = (0..FEEDS.len(), proptest::option::weighted(0.3, proptest::collection::vec(0..12u64, 0..4)));
    runner
        .run(&proptest::collection::vec(op, 1..40), |ops| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                for (name, store) in every_store(&dir, &server, case) {
                    // The model: per feed, what each id must read back as.
                    let mut model: std::collections::BTreeMap<&str, Vec<Message>> = Default::default();
                    for (n, (f, removal)) in ops.iter().enumerate() {
                        let feed_name = FEEDS[*f];
                        let log = model.entry(feed_name).or_default();
                        match removal {
                            None => {
                                let who = ("g", "ada", "192.0.2.1");
                                let text = format!("{feed_name}/{n}");
                                let source = Source::Verified(format!("s{n}"));
                                let answer = put_from(&*store, &feed(feed_name), who, &text, &source).await;
                                prop_assert_eq!(answer.message.id, log.len() as u64 + 1, "{}", name);
                                log.push(answer.message);
                            }
                            Some(asked) => {
                                let before = store.epoch(&feed(feed_name)).await.unwrap();
                                let done = store.remove(&feed(feed_name), asked).await.unwrap();
                                let mut expected: Vec<u64> = asked
                                    .iter()
                                    .copied()
                                    .filter(|id| log.get((*id as usize).wrapping_sub(1)).is_some_and(|m| !m.removed))
                                    .collect();
                                expected.sort_unstable();
                                expected.dedup();
                                let mut got = done.removed.clone();
                                got.sort_unstable();
                                prop_assert_eq!(&got, &expected, "{}", name);
                                prop_assert_eq!(done.epoch != before, !expected.is_empty(), "{}", name);
                                for id in expected {
                                    let slot = &mut log[id as usize - 1];
                                    *slot = erased(slot);
                                }
                            }
                        }
                    }
                    for feed_name in FEEDS {
                        let stored = store.since(&feed(feed_name), 0, 1_000).await.unwrap();
                        let expected = model.get(feed_name).cloned().unwrap_or_default();
                        prop_assert_eq!(stored, expected, "{}", name);
                    }
                }
                Ok(())
            })
        })
        .unwrap();
}

/// Whether `marker` is anywhere in the files under `dir` (read as raw bytes).
fn found_in_files(dir: &std::path::Path, marker: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(marker.len()).any(|window| window == marker.as_bytes()) {
            found.push(entry);
        }
    }
    found
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// SQLite erases for real: after a removal neither the database file nor its write-ahead log holds the text, the
/// author or the address as bytes (they did before: the check can see them).
#[tokio::test]
async fn sqlite_removal_leaves_no_bytes_in_the_file_or_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("feed.db")).unwrap();
    let main = FeedName::main();
    fill(&store, 50).await;
    let who = ("g", "Zorblax", "198.51.100.77");
    let marked = put_from(&store, &main, who, "secret-marker-7f3a", &Source::Verified("subject-q9".into())).await;
    // A text longer than a page: SQLite keeps its tail in overflow pages, which a removal frees.
    let long = format!("{}long-marker-c2e1", "x".repeat(9_000));
    let overflowing = put_from(&store, &main, who, &long, &Source::Anonymous).await;
    fill(&store, 50).await;
    let markers = ["secret-marker-7f3a", "Zorblax", "198.51.100.77", "subject-q9", "long-marker-c2e1"];
    for marker in markers {
        assert!(!found_in_files(dir.path(), marker).is_empty(), "{marker} is stored before the removal");
    }
    let ids = [marked.message.id, overflowing.message.id];
    assert_eq!(store.remove(&main, &ids).await.unwrap().removed, ids.to_vec());
    for marker in markers {
        assert_eq!(found_in_files(dir.path(), marker), Vec::<PathBuf>::new(), "{marker} is gone");
    }
    assert_eq!(store.since(&main, 50, 1).await.unwrap(), vec![erased(&marked.message)]);
    assert_eq!(store.since(&main, 0, 200).await.unwrap().len(), 102, "the rest is kept");
}

/// Redis erases for real: after a removal no snapshot (`SAVE`), no `DUMP` of the log and no append-only file (it
/// is rewritten) holds the text, the author or the address; nor does it for an entry stored before addresses, with
/// the fields of then. `XDEL` alone would leave them all there (the check below sees them before).
#[tokio::test]
async fn redis_removal_leaves_no_bytes_in_a_dump_or_the_append_only_file() {
    let (store, server) = redis_store(1_000, "p");
    let main = FeedName::main();
    fill(&store, 150).await;
    let who = ("g", "Zorblax", "198.51.100.77");
    let marked = put_from(&store, &main, who, "secret-marker-7f3a", &Source::Verified("subject-q9".into())).await;
    // An entry as a version before addresses wrote it (no `address`, no `removed`).
    let old = ["user", "Quuxley", "text", "old-marker-51", "at", "2026-01-01T00:00:00Z", "group", "g"];
    server.command(&[&["XADD", "p:{main}:log", "152-0"][..], &old[..]].concat());
    server.command(&["HSET", "p:{main}:meta", "seq", "152"]);
    fill(&store, 20).await;
    assert_eq!(server.command(&["SAVE"]).text(), Some("OK"));
    let markers = ["secret-marker-7f3a", "Zorblax", "198.51.100.77", "subject-q9", "old-marker-51", "Quuxley"];
    for marker in markers {
        assert!(!found_in_files(server.dir(), marker).is_empty(), "{marker} is stored before the removal");
    }
    let removal = store.remove(&main, &[151, 152]).await.unwrap();
    assert_eq!(removal.removed, vec![151, 152]);
    // The store asks for the append-only file's rewrite in the background: it ends within seconds. (The snapshot
    // taken before is replaced by the `SAVE` below.)
    let started = std::time::Instant::now();
    let aof = server.dir().join("appendonlydir");
    while !found_in_files(&aof, markers[0]).is_empty() && started.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    wait_for_aof_rewrite(&server).await;
    println!("the append-only file held no removed text {:?} after the removal", started.elapsed());
    assert_eq!(server.command(&["SAVE"]).text(), Some("OK"));
    let dump = server.command(&["DUMP", "p:{main}:log"]);
    for marker in markers {
        assert_eq!(found_in_files(server.dir(), marker), Vec::<PathBuf>::new(), "{marker} is gone");
        assert!(!dump.text().unwrap().contains(marker), "{marker} is not in the log's DUMP");
    }
    let page = store.since(&main, 150, 2).await.unwrap();
    assert_eq!(page, vec![erased(&marked.message), erased(&Message { at: old[5].into(), ..page[1].clone() })]);
    assert_eq!(store.since(&main, 0, 200).await.unwrap().len(), 172, "the rest is kept");
    assert_eq!(put(&store, "ada", "next", None).await.message.id, 173);
}

/// Waits until Redis has no append-only file rewrite running or scheduled.
async fn wait_for_aof_rewrite(server: &TestRedis) {
    for _ in 0..200 {
        let info = server.command(&["INFO", "persistence"]);
        let info = info.text().unwrap_or_default();
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the append-only file rewrite did not end within 10 s");
}

/// What one removal costs with 10,000 messages in the feed (for BENCHMARKS; `--ignored --nocapture` prints it).
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn removal_cost_with_10000_messages() {
    let main = FeedName::main();
    for (name, s) in stores(20_000) {
        for i in 0..10_000 {
            put(&*s.store, "ada", &format!("m{i}"), None).await;
        }
        let mut took = Vec::new();
        for id in (1..=10_000).step_by(1_000) {
            let started = std::time::Instant::now();
            assert_eq!(s.store.remove(&main, &[id]).await.unwrap().removed, vec![id]);
            took.push(started.elapsed());
        }
        took.sort();
        println!("{name}: one removal in a feed of 10,000: median {:?}, max {:?}", took[took.len() / 2], took[9]);
    }
}

/// Redis entries written before addresses (no `address` field) read in `recent` with address `""` and their group;
/// new entries keep theirs; an entry from before is removed like any other.
#[tokio::test]
async fn redis_entries_of_before_addresses_read_without_one() {
    let (store, server) = redis_store(100, "p");
    let main = FeedName::main();
    let old = ["user", "ada", "text", "old", "at", "2026-01-01T00:00:00Z", "group", "g-old", "source", "service:x"];
    server.command(&[&["XADD", "p:{main}:log", "1-0"][..], &old[..]].concat());
    server.command(&["HSET", "p:{main}:meta", "epoch", "e1", "seq", "1"]);
    let new = put_from(&store, &main, ("g-new", "bob", "192.0.2.5"), "new", &Source::Anonymous).await.message;
    let first = Message {
        id: 1,
        user: "ada".into(),
        text: "old".into(),
        at: "2026-01-01T00:00:00Z".into(),
        source: Source::Service("x".into()),
        removed: false,
    };
    let recent = store.recent(&main, 10).await.unwrap();
    assert_eq!(
        recent,
        vec![
            Sent { message: first.clone(), group: "g-old".into(), address: String::new() },
            Sent { message: new.clone(), group: "g-new".into(), address: "192.0.2.5".into() },
        ]
    );
    assert_eq!(store.remove(&main, &[1]).await.unwrap().removed, vec![1]);
    assert_eq!(store.latest(&main, 10).await.unwrap(), vec![erased(&first), new]);
    assert_ne!(store.epoch(&main).await.unwrap(), "e1");
}
