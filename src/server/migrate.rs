//! `broadcasting migrate --from sqlite:PATH --to redis://HOST:PORT [--prefix P]`: copies every feed of a SQLite store
//! into an empty Redis deployment, each with its ids, texts, times and epoch, and the sequence where it stood, so a
//! single-process deployment grows into replicas without losing history, and its open tabs (which hold ids and the
//! epoch of these very logs) go on without reloading. Feeds are read a page of names at a time, so a store with
//! many feeds is copied in bounded memory. Stop the single server first (its data directory must be free) and start the
//! replicas after; a Redis log that is not empty is refused, and so is anything writing to it meanwhile.

use std::path::{Path, PathBuf};

use crate::server::data_dir;
use crate::server::link::{Link, RedisTarget};
use crate::server::store::RedisStore;
use crate::server::store::{FeedStore, SqliteStore, StoreError};
use crate::shared::domain::FeedName;

/// Messages read and written per step.
const BATCH: usize = 500;
/// Feed names read per step.
const FEEDS_PER_PAGE: usize = 500;

/// The `migrate` command's arguments.
#[derive(Debug, clap::Parser)]
#[command(name = "broadcasting migrate", about = "Copy a SQLite log into an empty Redis deployment, keeping ids")]
pub struct MigrateCli {
    /// The SQLite log: `sqlite:PATH` (e.g. `sqlite:data/feed.db`).
    #[arg(long)]
    pub from: String,
    /// The Redis server: `redis://[:PASSWORD@]HOST:PORT[/DB]`.
    #[arg(long)]
    pub to: String,
    /// The deployment's key namespace in Redis (the replicas' `redis-prefix`).
    #[arg(long, default_value = "broadcasting")]
    pub prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--from must be `sqlite:PATH`, not {0:?}")]
    From(String),
    #[error("there is no SQLite log at {0}")]
    Missing(PathBuf),
    #[error(transparent)]
    InUse(#[from] data_dir::LockError),
    #[error(transparent)]
    Open(#[from] crate::server::store::OpenError),
    #[error("{0}")]
    Redis(String),
    #[error("the Redis log under prefix {0:?} is not empty: migrate into an empty one (or another --prefix)")]
    NotEmpty(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Messages copied, over all feeds.
    pub messages: usize,
    /// Every feed copied, in name order.
    pub feeds: Vec<Copied>,
}

/// One feed as it was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub feed: FeedName,
    pub messages: usize,
    pub epoch: String,
    /// The newest id ever handed out in the feed; its next send gets the one after it.
    pub seq: u64,
}

pub async fn run(cli: MigrateCli) -> Result<Report, MigrateError> {
    let path = cli.from.strip_prefix("sqlite:").ok_or_else(|| MigrateError::From(cli.from.clone()))?;
    let path = Path::new(path);
    if !path.is_file() {
        return Err(MigrateError::Missing(path.to_owned()));
    }
    // The single server must be stopped: it holds its data directory's lock while it runs.
    let _free = data_dir::lock(path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    let source = SqliteStore::open(path)?;
    let link =
        Link::open(&RedisTarget { url: cli.to.clone(), prefix: cli.prefix.clone() }).map_err(MigrateError::Redis)?;
    let target = RedisStore::new(link, usize::MAX);
    copy(&source, &target, &cli.prefix).await
}

/// Copies every feed of `source` into the empty `target`, each then given its epoch and sequence in `source`.
pub async fn copy(source: &dyn FeedStore, target: &RedisStore, prefix: &str) -> Result<Report, MigrateError> {
    copy_paged(source, target, prefix, FEEDS_PER_PAGE).await
}

async fn copy_paged(
    source: &dyn FeedStore,
    target: &RedisStore,
    prefix: &str,
    feeds_per_page: usize,
) -> Result<Report, MigrateError> {
    if !target.is_empty().await? {
        return Err(MigrateError::NotEmpty(prefix.to_owned()));
    }
    let mut report = Report { messages: 0, feeds: Vec::new() };
    let mut after_feed: Option<FeedName> = None;
    loop {
        let feeds = source.feeds(after_feed.as_ref(), feeds_per_page).await?;
        for feed in &feeds {
            let copied = copy_feed(source, target, feed).await?;
            report.messages += copied.messages;
            report.feeds.push(copied);
        }
        if feeds.len() < feeds_per_page {
            return Ok(report);
        }
        after_feed = feeds.last().cloned();
    }
}

/// One feed: its messages a batch at a time, then its epoch and sequence.
async fn copy_feed(source: &dyn FeedStore, target: &RedisStore, feed: &FeedName) -> Result<Copied, MigrateError> {
    let (epoch, seq) = (source.epoch(feed).await?, source.last_id(feed).await?);
    let (mut after, mut messages) = (0, 0);
    loop {
        let batch = source.since(feed, after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        target.import(feed, &batch).await?;
        messages += batch.len();
    }
    target.seal(feed, &epoch, seq).await?;
    Ok(Copied { feed: feed.clone(), messages, epoch, seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::test_redis::TestRedis;
    use crate::server::store::Draft;
    use crate::shared::domain::{MessageText, Source, Username};

    async fn put(store: &dyn FeedStore, feed: &FeedName, text: &str) -> u64 {
        put_from(store, feed, text, &Source::Anonymous).await
    }

    async fn put_from(store: &dyn FeedStore, feed: &FeedName, text: &str, source: &Source) -> u64 {
        let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse(text, 100).unwrap());
        let draft = Draft { feed, group: "g", author: &author, text: &text, key: None, source, address: "" };
        store.append(draft).await.unwrap().message.id
    }

    /// Every feed moves (read a page of names at a time, pages smaller than the feeds here), each with its kept
    /// messages (their sources and removals too), its epoch and its sequence, also a feed retention emptied; sends go
    /// on above each one's sequence.
    #[tokio::test]
    async fn every_feed_moves_with_its_ids_epoch_and_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let source = SqliteStore::open(&dir.path().join("feed.db")).unwrap();
        let (main, team, zeta) = (FeedName::main(), FeedName::parse("team").unwrap(), FeedName::parse("zeta").unwrap());
        for (feed, n) in [(&main, 3), (&team, 2), (&zeta, 1)] {
            for i in 0..n {
                let from = match i {
                    1 => Source::Verified(format!("sub-{feed}")),
                    2 => Source::Service("billing".into()),
                    _ => Source::Anonymous,
                };
                put_from(&source, feed, &format!("{feed} {i}"), &from).await;
            }
        }
        source.prune(&main, 2, None).await.unwrap();
        source.prune(&zeta, 0, None).await.unwrap();
        // A removed message moves removed (not as one with an empty text).
        assert_eq!(source.remove(&team, &[1]).await.unwrap().removed, vec![1]);

        let server = TestRedis::start();
        let target = RedisStore::new(crate::server::link::test_link(&server, "p"), usize::MAX);
        let report = copy_paged(&source, &target, "p", 2).await.unwrap();
        assert_eq!(report.messages, 4);
        let sources: Vec<Source> = target.since(&main, 0, 10).await.unwrap().into_iter().map(|m| m.source).collect();
        assert_eq!(sources, [Source::Verified("sub-main".into()), Source::Service("billing".into())]);
        let copied: Vec<(&str, usize, u64)> =
            report.feeds.iter().map(|c| (c.feed.as_str(), c.messages, c.seq)).collect();
        assert_eq!(copied, [("main", 2, 3), ("team", 2, 2), ("zeta", 0, 1)]);
        assert_eq!(target.feeds(None, 10).await.unwrap(), vec![main.clone(), team.clone(), zeta.clone()]);
        for (feed, next) in [(&main, 4), (&team, 3), (&zeta, 2)] {
            let epoch = source.epoch(feed).await.unwrap();
            assert!(!epoch.is_empty());
            assert_eq!(target.epoch(feed).await.unwrap(), epoch, "{feed}");
            assert_eq!(report.feeds.iter().find(|c| &c.feed == feed).unwrap().epoch, epoch);
            assert_eq!(target.last_id(feed).await.unwrap(), next - 1, "{feed}");
            assert_eq!(target.since(feed, 0, 10).await.unwrap(), source.since(feed, 0, 10).await.unwrap(), "{feed}");
            assert_eq!(put(&target, feed, "after").await, next, "{feed}");
        }
        let again = copy_paged(&source, &target, "p", 2).await;
        assert!(matches!(again, Err(MigrateError::NotEmpty(_))), "{again:?}");
    }
}
