//! `SqliteStore`: the durable log in one SQLite file (WAL mode, synchronous=FULL). One writer thread owns the write
//! connection and commits whatever appends are waiting as one transaction, so concurrent sends share a commit; a
//! send is answered only after its transaction committed. Reads use their own connection, off the async runtime.
//!
//! Each feed is a row of `feeds` (name, epoch, `seq`: the newest id it handed out), made by the feed's first append
//! in the append's own transaction, and its messages are the rows of `messages` keyed `(feed, id)`. An append takes
//! `seq + 1`; `seq` is never lowered, so ids stay strictly increasing and are never reused, even after retention
//! deletes the newest rows. Reading a feed that has no row writes nothing.
//!
//! The schema has a version (`PRAGMA user_version`) and one step per version; a database of a newer version than
//! this server knows is refused. Version 3 made the log per feed: a database of version 2 keeps its messages, ids
//! and epoch as feed `main`'s, so an upgrade does not make open tabs reload. Version 4 added each message's source
//! (`store::stored_source`); the rows of before are anonymous, as they were. Version 5 added each message's group,
//! address (moderation: `recent`) and `removed` mark; the rows of before read group and address `""`.
//!
//! A removal erases for real (`remove`): the row keeps its id and time, its author, text, source and address are
//! overwritten, and the old bytes are gone from the file too. SQLite leaves a changed row's old bytes in free space
//! of its page and the old page images in the write-ahead log, so the writer runs with `secure_delete` (freed space
//! is zeroed, also after retention) and a removal ends with a `TRUNCATE` checkpoint, which copies the log into the
//! file and empties it. A checkpoint that readers hold up is tried again after each later commit until it
//! completes (said in the log meanwhile).
//!
//! Readiness (`/readyz`) asks the writer thread itself: it answers only if it runs and is not stuck, and it says
//! not ready while its last commit failed (a full disk, a read-only file), until a small write commits again.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use super::{
    new_epoch, now_rfc3339, source_of_stored, stored_source, Appended, Draft, FeedStore, Removal, Sent, StoreError,
    KEY_MEMORY,
};
use crate::shared::domain::{FeedName, Message};

/// Most appends committed in one transaction.
const MAX_BATCH: usize = 512;
/// Most rows one retention pass deletes per transaction, so a large cleanup never holds the writer for long.
const PRUNE_CHUNK: i64 = 2_000;

const SCHEMA_VERSION: i64 = 5;

/// Most expired send keys one commit forgets (so forgetting never holds the writer for long).
const FORGET_KEYS_CHUNK: i64 = 256;

/// One append waiting for the writer.
struct Pending {
    feed: FeedName,
    user: String,
    text: String,
    /// `store::stored_source`: NULL for anonymous.
    source: Option<String>,
    group: String,
    address: String,
    /// (group, key), when the send has a key.
    key: Option<(String, String)>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

enum Job {
    Append(Pending),
    Prune {
        feed: FeedName,
        keep: usize,
        cutoff: Option<time::OffsetDateTime>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Remove {
        feed: FeedName,
        ids: Vec<u64>,
        reply: oneshot::Sender<Result<Removal, StoreError>>,
    },
    /// Readiness: whether the writer can commit (see the module doc).
    Probe(oneshot::Sender<Result<(), StoreError>>),
    /// Runs SQL on the write connection (tests: a full disk is `PRAGMA max_page_count`).
    #[cfg(test)]
    Exec(String, oneshot::Sender<Result<(), StoreError>>),
}

/// Longest the writer may take to answer a readiness probe (it may be committing a batch first).
const PROBE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
    readiness: super::Readiness,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the database {path}: {reason}")]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

impl SqliteStore {
    /// Opens (creating or migrating) the database at `path`. A corrupt or unwritable file is an error, never a
    /// silent fallback.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let fail = |reason: String| OpenError { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let writer = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        prepare(&writer).map_err(|e| fail(e.to_string()))?;
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| fail(e.to_string()))?;
        reader.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| fail(e.to_string()))?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, queue))
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self { jobs, reader: Arc::new(Mutex::new(reader)), readiness: super::Readiness::default() })
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            query(&conn).map_err(unavailable)
        })
        .await
        .map_err(unavailable)?
    }

    /// Hands a job to the writer thread and waits for its answer.
    async fn ask<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("the database writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A start-up refusal with SQLite's error `code` and our explanation.
fn refuse(code: std::ffi::c_int, why: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(why))
}

/// Pragmas, an integrity check and the schema.
fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(refuse(rusqlite::ffi::SQLITE_CORRUPT, format!("integrity check failed: {check}")));
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(refuse(rusqlite::ffi::SQLITE_CANTOPEN, format!("could not switch to WAL mode (got {mode})")));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A removal must not leave the erased text in the page's free space (see the module doc).
    conn.pragma_update(None, "secure_delete", "ON")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(refuse(
            rusqlite::ffi::SQLITE_MISMATCH,
            format!("schema version {version} is newer than this server knows ({SCHEMA_VERSION})"),
        ));
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS messages (
                 id   INTEGER PRIMARY KEY AUTOINCREMENT,
                 user TEXT NOT NULL,
                 text TEXT NOT NULL,
                 at   TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS messages_at ON messages(at);
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 {
        // Send keys (idempotent sends) and the log's epoch, made once with the log.
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS send_keys (
                 grp  TEXT NOT NULL,
                 key  TEXT NOT NULL,
                 id   INTEGER NOT NULL,
                 made INTEGER NOT NULL,
                 PRIMARY KEY (grp, key)
             );
             CREATE INDEX IF NOT EXISTS send_keys_made ON send_keys(made);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        tx.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('epoch', ?1)", [new_epoch()])?;
        tx.execute_batch("PRAGMA user_version = 2;")?;
        tx.commit()?;
    }
    if version < 3 {
        per_feed_schema(conn)?;
    }
    if version < 4 {
        // A nullable column: adding it rewrites no row, and every row of before reads NULL, anonymous.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE messages ADD COLUMN source TEXT;
             PRAGMA user_version = 4;
             COMMIT;",
        )?;
    }
    if version < 5 {
        // Columns with a constant default: adding them rewrites no row; the rows of before read "" and 0.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE messages ADD COLUMN grp TEXT NOT NULL DEFAULT '';
             ALTER TABLE messages ADD COLUMN address TEXT NOT NULL DEFAULT '';
             ALTER TABLE messages ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 5;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// Version 3: one log per feed. The single log of version 2 becomes feed `main` with its messages, its ids, its
/// send keys, its sequence (`sqlite_sequence`, which may be above every kept id) and its epoch. A log never appended
/// to becomes no feed at all (a feed that holds nothing has no row); the tabs that showed it showed nothing, so the
/// new epoch of its first message empties nothing.
fn per_feed_schema(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "CREATE TABLE feeds (
             name  TEXT PRIMARY KEY,
             epoch TEXT NOT NULL,
             seq   INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE feed_messages (
             feed TEXT NOT NULL,
             id   INTEGER NOT NULL,
             user TEXT NOT NULL,
             text TEXT NOT NULL,
             at   TEXT NOT NULL,
             PRIMARY KEY (feed, id)
         );
         CREATE TABLE feed_send_keys (
             feed TEXT NOT NULL,
             grp  TEXT NOT NULL,
             key  TEXT NOT NULL,
             id   INTEGER NOT NULL,
             made INTEGER NOT NULL,
             PRIMARY KEY (feed, grp, key)
         );",
    )?;
    tx.execute(
        "INSERT INTO feeds (name, epoch, seq)
         SELECT ?1, COALESCE((SELECT value FROM meta WHERE name = 'epoch'), ?2), seq
         FROM sqlite_sequence WHERE name = 'messages' AND seq > 0",
        params![FeedName::MAIN, new_epoch()],
    )?;
    tx.execute("INSERT INTO feed_messages SELECT ?1, id, user, text, at FROM messages", [FeedName::MAIN])?;
    tx.execute("INSERT INTO feed_send_keys SELECT ?1, grp, key, id, made FROM send_keys", [FeedName::MAIN])?;
    tx.execute_batch(
        "DROP TABLE messages;
         ALTER TABLE feed_messages RENAME TO messages;
         DROP TABLE send_keys;
         ALTER TABLE feed_send_keys RENAME TO send_keys;
         CREATE INDEX send_keys_made ON send_keys(made);
         DELETE FROM meta WHERE name = 'epoch';
         PRAGMA user_version = 3;",
    )?;
    tx.commit()
}

fn write_loop(mut conn: Connection, queue: mpsc::Receiver<Job>) {
    // Whether the last commit failed: readiness stays off until one succeeds again.
    let mut failing = false;
    // A removal whose checkpoint did not complete: the write-ahead log may still hold erased bytes.
    let mut unflushed = false;
    while let Ok(first) = queue.recv() {
        let mut appends = Vec::new();
        let mut pending = Some(first);
        while let Some(job) = pending.take() {
            match job {
                Job::Append(pending) => appends.push(pending),
                Job::Prune { feed, keep, cutoff, reply } => {
                    // Commit what queued before it first, so retention sees those rows.
                    commit_appends(&mut conn, std::mem::take(&mut appends), &mut failing);
                    let pruned = prune(&mut conn, &feed, keep, cutoff).map_err(unavailable);
                    failing = pruned.is_err();
                    let _ = reply.send(pruned);
                }
                Job::Remove { feed, ids, reply } => {
                    commit_appends(&mut conn, std::mem::take(&mut appends), &mut failing);
                    let removed = remove(&mut conn, &feed, &ids).map_err(unavailable);
                    failing = removed.is_err();
                    if removed.as_ref().is_ok_and(|removal| !removal.removed.is_empty()) {
                        unflushed = !checkpoint(&conn);
                    }
                    let _ = reply.send(removed);
                }
                Job::Probe(reply) => {
                    commit_appends(&mut conn, std::mem::take(&mut appends), &mut failing);
                    let _ = reply.send(probe(&conn, &mut failing));
                }
                #[cfg(test)]
                Job::Exec(sql, reply) => {
                    let _ = reply.send(conn.execute_batch(&sql).map_err(unavailable));
                }
            }
            if appends.len() < MAX_BATCH {
                pending = queue.try_recv().ok();
            }
        }
        commit_appends(&mut conn, appends, &mut failing);
        if unflushed {
            unflushed = !checkpoint(&conn);
        }
    }
}

/// Copies the write-ahead log into the file and empties it, so no page image of before a removal survives; answers
/// whether it completed (readers in the middle of a read hold it up: it is tried again after the next commit).
fn checkpoint(conn: &Connection) -> bool {
    let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0));
    match done {
        Ok(0) => true,
        Ok(_) => {
            tracing::warn!("the write-ahead log still holds removed messages: readers held the checkpoint up");
            false
        }
        Err(err) => {
            tracing::warn!(error = %err, "the write-ahead log still holds removed messages: the checkpoint failed");
            false
        }
    }
}

/// Erases the kept, not yet removed messages among `ids` of `feed` in one transaction, and gives the feed a new
/// epoch if any was (see the module doc; the write loop checkpoints before it answers).
fn remove(conn: &mut Connection, feed: &FeedName, ids: &[u64]) -> rusqlite::Result<Removal> {
    let feed = feed.as_str();
    let tx = conn.transaction()?;
    let mut removed = Vec::new();
    {
        let mut erase = tx.prepare_cached(
            "UPDATE messages SET user = '', text = '', source = NULL, address = '', removed = 1
             WHERE feed = ?1 AND id = ?2 AND removed = 0",
        )?;
        for &id in ids {
            // An id past what SQLite can hold was never handed out.
            let Ok(stored) = i64::try_from(id) else { continue };
            if erase.execute(params![feed, stored])? == 1 {
                removed.push(id);
            }
        }
    }
    if !removed.is_empty() {
        tx.execute("UPDATE feeds SET epoch = ?2 WHERE name = ?1", params![feed, new_epoch()])?;
    }
    let epoch: Option<String> =
        tx.query_row("SELECT epoch FROM feeds WHERE name = ?1", [feed], |row| row.get(0)).optional()?;
    tx.commit()?;
    Ok(Removal { removed, epoch: epoch.unwrap_or_default() })
}

/// Readiness, on the writer: ready unless the last commit failed; then a small write must commit first (it costs
/// one sync, and only while failing).
fn probe(conn: &Connection, failing: &mut bool) -> Result<(), StoreError> {
    if *failing {
        let now = unix_now().to_string();
        let written = conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('probed', ?1)", [now]);
        *failing = written.is_err();
        written.map_err(|err| unavailable(format!("the database takes no writes: {err}")))?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Commits every waiting append as one transaction. A send whose key was used in its feed and group within
/// `KEY_MEMORY` (earlier, or earlier in this batch) is answered the first message and appends nothing. A feed's first
/// append makes its row (and epoch) in the same transaction, so a feed has a row exactly when it has an id.
fn commit_appends(conn: &mut Connection, appends: Vec<Pending>, failing: &mut bool) {
    if appends.is_empty() {
        return;
    }
    let at = now_rfc3339();
    let now = unix_now();
    let remembered_since = now - KEY_MEMORY.as_secs() as i64;
    let stored = (|| {
        let tx = conn.transaction()?;
        let mut answers = Vec::with_capacity(appends.len());
        {
            let mut next_id = tx.prepare_cached(
                "INSERT INTO feeds (name, epoch, seq) VALUES (?1, ?2, 1)
                 ON CONFLICT (name) DO UPDATE SET seq = seq + 1 RETURNING seq, epoch",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (feed, id, user, text, at, source, grp, address)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut find_key = tx.prepare_cached(
                "SELECT k.id, m.user, m.text, m.at, m.source, m.removed FROM send_keys k
                 LEFT JOIN messages m ON m.feed = k.feed AND m.id = k.id
                 WHERE k.feed = ?1 AND k.grp = ?2 AND k.key = ?3 AND k.made >= ?4",
            )?;
            let mut remember = tx.prepare_cached(
                "INSERT OR REPLACE INTO send_keys (feed, grp, key, id, made) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for pending in &appends {
                let feed = pending.feed.as_str();
                if let Some((group, key)) = &pending.key {
                    let first = find_key
                        .query_row(params![feed, group, key, remembered_since], |row| {
                            let id = row.get::<_, i64>(0)? as u64;
                            // Retention may have deleted the first message since: answer it as it was sent.
                            let user = row.get::<_, Option<String>>(1)?;
                            let source = match user {
                                Some(_) => row.get::<_, Option<String>>(4)?,
                                None => pending.source.clone(),
                            };
                            Ok(Message {
                                id,
                                user: user.unwrap_or_else(|| pending.user.clone()),
                                text: row.get::<_, Option<String>>(2)?.unwrap_or_else(|| pending.text.clone()),
                                at: row.get::<_, Option<String>>(3)?.unwrap_or_else(|| at.clone()),
                                source: source_of_stored(source.as_deref()),
                                removed: row.get::<_, Option<bool>>(5)?.unwrap_or(false),
                            })
                        })
                        .optional()?;
                    if let Some(message) = first {
                        answers.push(Appended { message, epoch: String::new(), fresh: false });
                        continue;
                    }
                }
                let (id, epoch) = next_id.query_row(params![feed, new_epoch()], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?;
                insert.execute(params![
                    feed,
                    id,
                    pending.user,
                    pending.text,
                    at,
                    pending.source,
                    pending.group,
                    pending.address
                ])?;
                if let Some((group, key)) = &pending.key {
                    remember.execute(params![feed, group, key, id, now])?;
                }
                let message = Message {
                    id: id as u64,
                    user: pending.user.clone(),
                    text: pending.text.clone(),
                    at: at.clone(),
                    source: source_of_stored(pending.source.as_deref()),
                    removed: false,
                };
                answers.push(Appended { message, epoch, fresh: true });
            }
            tx.execute(
                "DELETE FROM send_keys WHERE rowid IN (SELECT rowid FROM send_keys WHERE made < ?1 LIMIT ?2)",
                params![remembered_since, FORGET_KEYS_CHUNK],
            )?;
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(answers)
    })();
    *failing = stored.is_err();
    match stored {
        Ok(answers) => {
            for (pending, answer) in appends.into_iter().zip(answers) {
                let _ = pending.reply.send(Ok(answer));
            }
        }
        Err(err) => {
            tracing::error!(error = %err, count = appends.len(), "commit failed; nothing of this batch was stored");
            for pending in appends {
                let _ = pending.reply.send(Err(unavailable(&err)));
            }
        }
    }
}

/// Retention of one feed; its `seq` stays, so the deleted ids are never handed out again.
fn prune(
    conn: &mut Connection,
    feed: &FeedName,
    keep: usize,
    cutoff: Option<time::OffsetDateTime>,
) -> rusqlite::Result<u64> {
    let feed = feed.as_str();
    let newest: Option<i64> =
        conn.query_row("SELECT MAX(id) FROM messages WHERE feed = ?1", [feed], |row| row.get(0))?;
    let Some(newest) = newest else { return Ok(0) };
    // Everything at or below `floor` goes: the count limit, then the age limit.
    let mut floor: i64 = conn
        .query_row(
            "SELECT id FROM messages WHERE feed = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
            params![feed, keep as i64],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0);
    if let Some(cutoff) = cutoff {
        // Compared as times (seconds since the epoch), whatever offset a stored `at` was written with.
        let aged: Option<i64> = conn.query_row(
            "SELECT MAX(id) FROM messages WHERE feed = ?1 AND unixepoch(at) < ?2",
            params![feed, cutoff.unix_timestamp()],
            |row| row.get(0),
        )?;
        floor = floor.max(aged.unwrap_or(0));
    }
    floor = floor.min(newest);
    let mut deleted = 0u64;
    loop {
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM messages WHERE rowid IN
             (SELECT rowid FROM messages WHERE feed = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)",
            params![feed, floor, PRUNE_CHUNK],
        )?;
        tx.commit()?;
        deleted += n as u64;
        if (n as i64) < PRUNE_CHUNK {
            return Ok(deleted);
        }
    }
}

/// A row read as `id, user, text, at, source, removed` (the first columns of every query of messages).
fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get::<_, i64>(0)? as u64,
        user: row.get(1)?,
        text: row.get(2)?,
        at: row.get(3)?,
        source: source_of_stored(row.get::<_, Option<String>>(4)?.as_deref()),
        removed: row.get(5)?,
    })
}

fn collect(conn: &Connection, sql: &str, feed: &str, a: i64, limit: usize) -> rusqlite::Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![feed, a, limit as i64], row_to_message)?;
    rows.collect()
}

fn clamp(id: u64) -> i64 {
    id.min(i64::MAX as u64) as i64
}

#[async_trait]
impl FeedStore for SqliteStore {
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError> {
        let (user, text) = (draft.author.as_str().to_owned(), draft.text.as_str().to_owned());
        let key = draft.key.map(|key| (draft.group.to_owned(), key.as_str().to_owned()));
        let (feed, source) = (draft.feed.clone(), stored_source(draft.source));
        let (group, address) = (draft.group.to_owned(), draft.address.to_owned());
        self.ask(|reply| Job::Append(Pending { feed, user, text, source, group, address, key, reply })).await
    }

    async fn epoch(&self, feed: &FeedName) -> Result<String, StoreError> {
        let feed = feed.clone();
        self.read(move |conn| {
            let epoch = conn
                .prepare_cached("SELECT epoch FROM feeds WHERE name = ?1")?
                .query_row([feed.as_str()], |row| row.get(0))
                .optional()?;
            Ok(epoch.unwrap_or_default())
        })
        .await
    }

    async fn since(&self, feed: &FeedName, after: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let (feed, after) = (feed.clone(), clamp(after));
        self.read(move |conn| {
            collect(
                conn,
                "SELECT id, user, text, at, source, removed FROM messages WHERE feed = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                feed.as_str(),
                after,
                limit,
            )
        })
        .await
    }

    async fn before(&self, feed: &FeedName, before: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let (feed, before) = (feed.clone(), clamp(before));
        self.read(move |conn| {
            let mut page = collect(
                conn,
                "SELECT id, user, text, at, source, removed FROM messages WHERE feed = ?1 AND id < ?2
                 ORDER BY id DESC LIMIT ?3",
                feed.as_str(),
                before,
                limit,
            )?;
            page.reverse();
            Ok(page)
        })
        .await
    }

    async fn latest(&self, feed: &FeedName, limit: usize) -> Result<Vec<Message>, StoreError> {
        self.before(feed, u64::MAX, limit).await
    }

    async fn last_id(&self, feed: &FeedName) -> Result<u64, StoreError> {
        let feed = feed.clone();
        self.read(move |conn| {
            let seq: Option<i64> = conn
                .prepare_cached("SELECT seq FROM feeds WHERE name = ?1")?
                .query_row([feed.as_str()], |row| row.get(0))
                .optional()?;
            Ok(seq.unwrap_or(0) as u64)
        })
        .await
    }

    async fn feeds(&self, after: Option<&FeedName>, limit: usize) -> Result<Vec<FeedName>, StoreError> {
        // Every name sorts after "", so no `after` is a page from the first.
        let after = after.map(|after| after.as_str().to_owned()).unwrap_or_default();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT name FROM feeds WHERE name > ?1 ORDER BY name LIMIT ?2")?;
            let names = stmt.query_map(params![after, limit], |row| row.get::<_, String>(0))?;
            // Only the writer makes rows, of parsed names: a name that does not parse was written by hand; skip it.
            names.filter_map(|name| name.map(|name| FeedName::parse(&name)).transpose()).collect()
        })
        .await
    }

    async fn prune(
        &self,
        feed: &FeedName,
        keep: usize,
        cutoff: Option<time::OffsetDateTime>,
    ) -> Result<u64, StoreError> {
        let feed = feed.clone();
        self.ask(|reply| Job::Prune { feed, keep, cutoff, reply }).await
    }

    async fn remove(&self, feed: &FeedName, ids: &[u64]) -> Result<Removal, StoreError> {
        let (feed, ids) = (feed.clone(), ids.to_vec());
        self.ask(|reply| Job::Remove { feed, ids, reply }).await
    }

    async fn recent(&self, feed: &FeedName, limit: usize) -> Result<Vec<Sent>, StoreError> {
        let (feed, limit) = (feed.clone(), limit.min(i64::MAX as usize) as i64);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, user, text, at, source, removed, grp, address FROM messages WHERE feed = ?1
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![feed.as_str(), limit], |row| {
                Ok(Sent { message: row_to_message(row)?, group: row.get(6)?, address: row.get(7)? })
            })?;
            let mut recent = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            recent.reverse();
            Ok(recent)
        })
        .await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.readiness
            .check(|| async {
                match tokio::time::timeout(PROBE_WITHIN, self.ask(Job::Probe)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(unavailable(format!("the database writer did not answer within {PROBE_WITHIN:?}"))),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::Sent;
    use crate::shared::domain::{MessageText, Source, Username};

    /// A database that stops taking writes (a file system remounted read-only after errors, played by
    /// `query_only`): sends fail, `ready` says so; writable again, the probe's own write brings it back without
    /// waiting for a send.
    #[tokio::test]
    async fn readiness_follows_whether_commits_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("feed.db")).unwrap();
        store.ready().await.unwrap();
        let exec = |sql: &'static str| store.ask(|reply| Job::Exec(sql.to_owned(), reply));
        exec("PRAGMA query_only = 1").await.unwrap();
        let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("hi", 100).unwrap());
        let source = Source::Anonymous;
        let draft = Draft {
            feed: &FeedName::main(),
            group: "g",
            author: &author,
            text: &text,
            key: None,
            source: &source,
            address: "",
        };
        assert!(store.append(draft).await.is_err(), "the database takes no writes");
        tokio::time::sleep(crate::server::store::READY_FOR).await;
        let not_ready = store.ready().await.unwrap_err().to_string();
        assert!(not_ready.contains("takes no writes"), "{not_ready}");
        exec("PRAGMA query_only = 0").await.unwrap();
        tokio::time::sleep(crate::server::store::READY_FOR).await;
        store.ready().await.unwrap();
        assert_eq!(store.append(draft).await.unwrap().message.id, 1);
    }

    /// A database written by the schema of before feeds (version 2, its DDL as it was): `messages` with
    /// `AUTOINCREMENT` ids, `send_keys` by group, the epoch in `meta`.
    fn version_2_database(path: &Path, appended: &[&str], deleted_newest: usize) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (
                 id   INTEGER PRIMARY KEY AUTOINCREMENT,
                 user TEXT NOT NULL,
                 text TEXT NOT NULL,
                 at   TEXT NOT NULL
             );
             CREATE INDEX messages_at ON messages(at);
             CREATE TABLE send_keys (
                 grp  TEXT NOT NULL,
                 key  TEXT NOT NULL,
                 id   INTEGER NOT NULL,
                 made INTEGER NOT NULL,
                 PRIMARY KEY (grp, key)
             );
             CREATE INDEX send_keys_made ON send_keys(made);
             CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta (name, value) VALUES ('epoch', 'e-old');
             PRAGMA user_version = 2;",
        )
        .unwrap();
        for text in appended {
            conn.execute("INSERT INTO messages (user, text, at) VALUES ('ada', ?1, '2026-01-01T00:00:00Z')", [text])
                .unwrap();
        }
        conn.execute("INSERT INTO send_keys (grp, key, id, made) VALUES ('g', 'k1', 2, ?1)", [unix_now()]).unwrap();
        // Retention took the newest rows: the sequence stays above every kept id.
        conn.execute("DELETE FROM messages WHERE id > ?1", [(appended.len() - deleted_newest) as i64]).unwrap();
    }

    fn draft_in<'a>(feed: &'a FeedName, author: &'a Username, text: &'a MessageText) -> Draft<'a> {
        Draft { feed, group: "g", author, text, key: None, source: &Source::Anonymous, address: "" }
    }

    /// An upgrade keeps the log: every row of a version-2 database is feed `main`'s with its id, the epoch is
    /// main's (open tabs do not reload), ids go on above the old sequence, send keys still answer.
    #[tokio::test]
    async fn a_version_2_database_becomes_feed_main_with_its_ids_and_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.db");
        version_2_database(&path, &["one", "two", "three", "four"], 1);
        let store = SqliteStore::open(&path).unwrap();
        let main = FeedName::main();
        let page = store.since(&main, 0, 10).await.unwrap();
        let kept: Vec<(u64, &str)> = page.iter().map(|m| (m.id, m.text.as_str())).collect();
        assert_eq!(kept, [(1, "one"), (2, "two"), (3, "three")]);
        assert_eq!(store.epoch(&main).await.unwrap(), "e-old");
        assert_eq!(store.last_id(&main).await.unwrap(), 4);
        assert_eq!(store.feeds(None, 10).await.unwrap(), vec![main.clone()]);
        let (author, text) = (Username::parse("bob").unwrap(), MessageText::parse("again", 100).unwrap());
        let key = crate::shared::domain::SendKey::parse("k1").unwrap();
        let repeat = store.append(Draft { key: key.as_ref(), ..draft_in(&main, &author, &text) }).await.unwrap();
        assert_eq!((repeat.fresh, repeat.message.id, repeat.message.text.as_str()), (false, 2, "two"));
        assert_eq!(store.append(draft_in(&main, &author, &text)).await.unwrap().message.id, 5);
        let other = FeedName::parse("other").unwrap();
        assert_eq!(store.append(draft_in(&other, &author, &text)).await.unwrap().message.id, 1);
        assert_eq!(store.epoch(&main).await.unwrap(), "e-old");
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let epochs: i64 = conn.query_row("SELECT COUNT(*) FROM meta WHERE name = 'epoch'", [], |r| r.get(0)).unwrap();
        assert_eq!(epochs, 0, "the epoch lives with its feed now");
    }

    /// A database of version 3 (per-feed logs, before sources; its DDL as it was) keeps every row, each read as
    /// anonymous, and takes sources from then on.
    #[tokio::test]
    async fn a_version_3_database_keeps_its_messages_as_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE feeds (name TEXT PRIMARY KEY, epoch TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE messages (feed TEXT NOT NULL, id INTEGER NOT NULL, user TEXT NOT NULL, text TEXT NOT NULL,
                 at TEXT NOT NULL, PRIMARY KEY (feed, id));
             CREATE TABLE send_keys (feed TEXT NOT NULL, grp TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL,
                 made INTEGER NOT NULL, PRIMARY KEY (feed, grp, key));
             CREATE INDEX send_keys_made ON send_keys(made);
             CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO feeds VALUES ('main', 'e3', 2);
             INSERT INTO messages VALUES ('main', 1, 'ada', 'one', '2026-01-01T00:00:00Z');
             INSERT INTO messages VALUES ('main', 2, 'bob', 'two', '2026-01-01T00:00:01Z');
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let main = FeedName::main();
        let old = store.since(&main, 0, 10).await.unwrap();
        let read: Vec<(u64, &str, &Source)> = old.iter().map(|m| (m.id, m.text.as_str(), &m.source)).collect();
        assert_eq!(read, [(1, "one", &Source::Anonymous), (2, "two", &Source::Anonymous)]);
        assert_eq!(store.epoch(&main).await.unwrap(), "e3", "open tabs keep their log");
        let (author, text) = (Username::parse("ada").unwrap(), MessageText::parse("three", 100).unwrap());
        let verified = Source::Verified("sub-1".into());
        let draft = Draft { source: &verified, ..draft_in(&main, &author, &text) };
        assert_eq!(store.append(draft).await.unwrap().message.source, verified);
        assert_eq!(store.since(&main, 2, 10).await.unwrap()[0].source, verified);
        drop(store);
        let version: i64 =
            Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A version-2 log never appended to becomes no feed at all: nothing is stored for it.
    #[tokio::test]
    async fn a_version_2_database_never_appended_to_becomes_no_feed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, text TEXT NOT NULL,
                 at TEXT NOT NULL);
             CREATE TABLE send_keys (grp TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL,
                 made INTEGER NOT NULL, PRIMARY KEY (grp, key));
             CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta (name, value) VALUES ('epoch', 'e-old');
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.epoch(&FeedName::main()).await.unwrap(), "");
        assert!(store.feeds(None, 10).await.unwrap().is_empty());
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let rows: i64 = conn
            .query_row("SELECT (SELECT COUNT(*) FROM feeds) + (SELECT COUNT(*) FROM meta)", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }

    /// A database of version 4 (sources, before groups, addresses and removals; its DDL as it was) keeps every row,
    /// read as before and with group and address `""` for moderation; its rows can be removed, and new ones keep
    /// their group and address.
    #[tokio::test]
    async fn a_version_4_database_keeps_its_messages_without_senders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE feeds (name TEXT PRIMARY KEY, epoch TEXT NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE messages (feed TEXT NOT NULL, id INTEGER NOT NULL, user TEXT NOT NULL, text TEXT NOT NULL,
                 at TEXT NOT NULL, source TEXT, PRIMARY KEY (feed, id));
             CREATE TABLE send_keys (feed TEXT NOT NULL, grp TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL,
                 made INTEGER NOT NULL, PRIMARY KEY (feed, grp, key));
             CREATE INDEX send_keys_made ON send_keys(made);
             CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO feeds VALUES ('main', 'e4', 2);
             INSERT INTO messages VALUES ('main', 1, 'ada', 'one', '2026-01-01T00:00:00Z', 'verified:s1');
             INSERT INTO messages VALUES ('main', 2, 'bob', 'two', '2026-01-01T00:00:01Z', NULL);
             PRAGMA user_version = 4;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let main = FeedName::main();
        let old = store.since(&main, 0, 10).await.unwrap();
        let one = Message {
            id: 1,
            user: "ada".into(),
            text: "one".into(),
            at: "2026-01-01T00:00:00Z".into(),
            source: Source::Verified("s1".into()),
            removed: false,
        };
        let two =
            Message { id: 2, user: "bob".into(), text: "two".into(), at: "2026-01-01T00:00:01Z".into(), ..one.clone() };
        let two = Message { source: Source::Anonymous, ..two };
        assert_eq!(old, vec![one.clone(), two.clone()]);
        assert_eq!(store.epoch(&main).await.unwrap(), "e4", "open tabs keep their log");
        let unsent =
            |message: &Message| Sent { message: message.clone(), group: String::new(), address: String::new() };
        assert_eq!(store.recent(&main, 10).await.unwrap(), vec![unsent(&one), unsent(&two)]);
        let (author, text) = (Username::parse("cy").unwrap(), MessageText::parse("three", 100).unwrap());
        let draft = Draft { group: "g7", address: "203.0.113.9", ..draft_in(&main, &author, &text) };
        let three = store.append(draft).await.unwrap().message;
        assert_eq!(three.id, 3);
        let sent = Sent { message: three, group: "g7".into(), address: "203.0.113.9".into() };
        assert_eq!(store.recent(&main, 1).await.unwrap(), vec![sent]);
        assert_eq!(store.remove(&main, &[1]).await.unwrap().removed, vec![1]);
        assert!(store.since(&main, 0, 1).await.unwrap()[0].removed);
        drop(store);
        let version: i64 =
            Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, 5);
    }
}
