//! One suite, every store: each test runs against `MemoryStore` and `SqliteStore`.

use std::sync::Arc;

use super::*;
use crate::server::store::{MemoryStore, SqliteStore};

/// A store under test and what keeps it alive (the SQLite file's folder).
struct Subject {
    store: Arc<dyn FeedStore>,
    _dir: Option<tempfile::TempDir>,
}

fn stores(cap: usize) -> Vec<(&'static str, Subject)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("feed.db")).unwrap();
    vec![
        ("memory", Subject { store: Arc::new(MemoryStore::new(cap)), _dir: None }),
        ("sqlite", Subject { store: Arc::new(sqlite), _dir: Some(dir) }),
    ]
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
    store.append(Draft { group: "g", author: &author, text: &text, key: key.as_ref() }).await.unwrap()
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
        let all = s.store.since(0, 100).await.unwrap();
        assert_eq!(ids(&all), vec![1, 2, 3], "{name}");
        assert_eq!((all[2].text.as_str(), all[2].user.as_str()), ("m2", "ada"), "{name}");
        assert!(time::OffsetDateTime::parse(&all[2].at, &Rfc3339).is_ok(), "{name}");
        assert_eq!(s.store.last_id().await.unwrap(), 3, "{name}");
    }
}

#[tokio::test]
async fn since_before_and_latest_pages() {
    for (name, s) in stores(100) {
        let store = &*s.store;
        assert!(store.latest(5).await.unwrap().is_empty(), "{name}");
        fill(store, 6).await;
        assert_eq!(ids(&store.since(2, 2).await.unwrap()), vec![3, 4], "{name}");
        assert_eq!(ids(&store.since(6, 2).await.unwrap()), Vec::<u64>::new(), "{name}");
        assert_eq!(ids(&store.since(60, 2).await.unwrap()), Vec::<u64>::new(), "{name}");
        assert_eq!(ids(&store.latest(4).await.unwrap()), vec![3, 4, 5, 6], "{name}");
        assert_eq!(ids(&store.latest(40).await.unwrap()), vec![1, 2, 3, 4, 5, 6], "{name}");
        assert_eq!(ids(&store.before(5, 2).await.unwrap()), vec![3, 4], "{name}");
        assert_eq!(ids(&store.before(3, 10).await.unwrap()), vec![1, 2], "{name}");
        assert_eq!(ids(&store.before(1, 10).await.unwrap()), Vec::<u64>::new(), "{name}");
        assert_eq!(ids(&store.before(100, 2).await.unwrap()), vec![5, 6], "{name}");
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_and_ids_are_never_reused() {
    for (name, s) in stores(100) {
        let store = &*s.store;
        fill(store, 10).await;
        assert_eq!(store.prune(4, None).await.unwrap(), 6, "{name}");
        assert_eq!(ids(&store.latest(100).await.unwrap()), vec![7, 8, 9, 10], "{name}");
        assert_eq!(ids(&store.since(1, 100).await.unwrap()), vec![7, 8, 9, 10], "{name}");
        assert_eq!(store.prune(4, None).await.unwrap(), 0, "{name}");
        // an age cutoff in the future takes everything; the next id still counts on
        assert_eq!(store.prune(100, Some(at("9999-01-01T00:00:00Z"))).await.unwrap(), 4, "{name}");
        assert_eq!(store.last_id().await.unwrap(), 10, "{name}");
        fill(store, 1).await;
        assert_eq!(ids(&store.latest(100).await.unwrap()), vec![11], "{name}");
        // a cutoff in the past takes nothing
        assert_eq!(store.prune(100, Some(at("2000-01-01T00:00:00Z"))).await.unwrap(), 0, "{name}");
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
        let all = s.store.since(0, 10_000).await.unwrap();
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
    assert_eq!(ids(&store.latest(10).await.unwrap()), vec![5, 6, 7]);
    assert_eq!(ids(&store.since(1, 10).await.unwrap()), vec![5, 6, 7]);
    assert_eq!(store.last_id().await.unwrap(), 7);
}

#[tokio::test]
async fn sqlite_survives_reopening_and_refuses_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        fill(&store, 3).await;
        store.prune(1, None).await.unwrap();
    }
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(ids(&reopened.latest(10).await.unwrap()), vec![3]);
    fill(&reopened, 1).await;
    assert_eq!(reopened.last_id().await.unwrap(), 4);

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
        let other = store.append(Draft { group: "h", author: &author, text: &text, key: key.as_ref() }).await.unwrap();
        assert!(other.fresh, "{name}");
        assert_eq!(ids(&store.since(0, 100).await.unwrap()), vec![1, 2, 3, 4], "{name}");
        assert_eq!(store.last_id().await.unwrap(), 4, "{name}");
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
        assert_eq!(ids(&s.store.since(0, 100).await.unwrap()), vec![1], "{name}");
    }
}

#[tokio::test]
async fn the_epoch_is_made_with_the_log_and_kept() {
    for (name, s) in stores(100) {
        let epoch = s.store.epoch().await.unwrap();
        assert!(!epoch.is_empty(), "{name}");
        fill(&*s.store, 2).await;
        assert_eq!(s.store.epoch().await.unwrap(), epoch, "{name}");
    }
    // Two logs, two epochs.
    let (a, b) = (MemoryStore::new(1), MemoryStore::new(1));
    assert_ne!(a.epoch().await.unwrap(), b.epoch().await.unwrap());
}
