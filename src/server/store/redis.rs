//! `RedisStore`: the logs in Redis, shared by every replica of one deployment. Keys live under `redis-prefix`, so two
//! deployments can share a Redis, and every key of a feed carries the feed as a Redis Cluster hash tag
//! (`Link::feed_key`), so a feed's keys (and its notice channel) share one slot and one script may use them all:
//!
//! - `PREFIX:{feed}:log`: a stream, one entry per message, entry id `<id>-0`, fields `user`, `text`, `at`, `group`,
//!   `source` when the message has one (`store::stored_source`; an entry without it, as every entry of before
//!   sources, is anonymous), `address` when the sender has one (entries of before have none: `""`), and `removed`
//!   (with `user` and `text` empty, no `source`, no `address`) once a moderator removed it (see below);
//! - `PREFIX:{feed}:meta`: a hash, `epoch` (made with the feed's log, at its first append) and `seq` (the newest id
//!   ever handed out in the feed);
//! - `PREFIX:{feed}:key:<group>:<key>`: a send key's first id, expiring after `KEY_MEMORY`;
//! - `PREFIX:{feed}:notices`: the pub/sub channel, where an append is announced (`link::notice`, read by
//!   `broker::redis`);
//! - `PREFIX:feeds`: a sorted set of the feed names appended to (all score 0, so `ZRANGEBYLEX` pages them in name
//!   order), for retention and `migrate`. It lives on another slot than the feeds, so an append adds its feed with
//!   its own `ZADD NX`, sent just before the append script (pipelined: no extra round trip). An append that fails
//!   after it leaves its name listed with no log: a feed that reads as empty and that retention finds nothing in,
//!   one entry per such name (names a client may send are bounded by the feed budgets before the store).
//!
//! A feed never appended to has no key at all: reading it, its epoch (`""`) or its head writes nothing.
//!
//! The connection and the key names are the deployment's [`Link`]. One append is one Lua script ([`APPEND`]) on the
//! feed's keys: answer a repeated send key, else make the epoch if the log has none, end it if Redis lost ids this
//! replica saw acknowledged in it ([`ROTATE`]), take the next id, `XADD`, remember the key, `PUBLISH` (the broker's
//! append). Redis runs a script alone, so id order is log order is notification order across replicas, and every check
//! comes before the first write, so a script never half-writes. A send is answered once the script has returned, which
//! with `appendfsync always` means it is on disk.
//!
//! A Redis that loses acknowledged writes (snapshots only, `everysec` after a crash, a failover to a replica that
//! lagged) comes back with an older `meta` of a feed: the same epoch and a lower `seq`. Redis cannot tell, since
//! whatever it kept to remember the lost ids went back with them; the replicas can: each remembers, per feed, the
//! newest id it saw acknowledged in the feed's epoch (its appends' answers, the notices its receiver delivered, the
//! heads it read), and hands it to every append and head script. A script that finds the epoch the replica names but
//! `seq` below what it saw starts a new epoch in the same step, with `seq` at what the replica saw, so the lost ids are
//! never handed out again (not even in the new epoch: no id names two messages, whatever a cache keyed it by). The
//! receivers then see the new epoch, drop their settled pages and tell every tab to reload, as after a Redis that came
//! back empty. A replica started after the loss saw nothing and detects nothing; with several replicas, any one that
//! saw the lost ids ends the epoch at its next append or heal. What a replica saw is kept for the [`SEEN_FEEDS`] feeds
//! it used last: a feed it forgot is one it detects nothing in, as if started after the loss.
//!
//! Deployments of before feeds kept one log at `PREFIX:log` and `PREFIX:meta`. The first use of the store moves them to
//! feed `main`'s keys, in one script ([`MOVE_LEGACY`]), and leaves a plain string at `PREFIX:log`: a replica of the
//! version before, still running, then fails every append and read with `WRONGTYPE` (a 503 its clients retry) instead
//! of acknowledging messages in a log nobody reads. Its send keys (`PREFIX:key:…`) are not moved: they expire within
//! `KEY_MEMORY`, and a retry across the upgrade may store its message twice.
//!
//! A removal ([`REMOVE`]) must erase, not hide: `XDEL` only flags an entry inside its stream node, and the node
//! keeps the bytes in memory, in `DUMP`, in snapshots and in the append-only file (the contract suite's dump test
//! shows it); a stream entry cannot be edited either. So one script rewrites the feed's log into a scratch key of
//! the same slot, every entry as it was but the removed ones, which keep their id, `at` and `group` and lose the
//! rest, and renames it over the log (the old stream is freed whole), sets a new epoch and publishes a `removed`
//! notice (`link::notice`), all in one atomic step. That costs one pass over the log (bounded by retention's cap:
//! see BENCHMARKS for 10,000 messages) while Redis serves nothing else, which suits a rare moderator's action, and
//! keeps every other path (appends, reads, retention, entries written before) as it was. The append-only file
//! still holds the original `XADD` until it is rewritten, and a snapshot on disk until the next one: after a
//! removal the store asks Redis for `BGREWRITEAOF` (when AOF is on) and `BGSAVE` (when it takes snapshots), in the
//! background, once more after any rewrite already running (which may have copied the text), coalescing removals
//! that come meanwhile ([`Compactor`]). Freed memory is not wiped by Redis (nor by SQLite's page cache): the
//! promise is about what the store holds and writes, not the heap's garbage.
//!
//! Any Redis failure is `StoreError::Unavailable` (503 with `Retry-After`); there is no local fallback, which would
//! fork the ids.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};

use hashlink::LruCache;
use tokio::sync::OnceCell;

use super::{
    new_epoch, now_rfc3339, source_of_stored, stored_source, Appended, Draft, FeedStore, Readiness, Removal,
    StoreError, KEY_MEMORY,
};
use crate::server::link::notice::{APPENDED_LUA, REMOVED_LUA};
use crate::server::link::Link;
use crate::shared::domain::{FeedName, Message};
/// Entries read per `XRANGE` while looking for the age cutoff or replaying missed notices.
const SCAN_CHUNK: usize = 1_000;

/// Makes the log's epoch if it has none (a new Redis, or one that came back empty), and answers it. The sequence
/// starts from the stream's newest entry, so a log whose `meta` alone was lost never reuses an id.
const ENSURE: &str = r#"
local function ensure(meta, log, fresh)
  local epoch = redis.call('HGET', meta, 'epoch')
  if epoch then return epoch end
  local seq = 0
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  if top then seq = tonumber(string.match(top[1], '^(%d+)')) end
  redis.call('HSET', meta, 'epoch', fresh, 'seq', seq)
  return fresh
end
"#;

/// The newest id a replica saw acknowledged in `seen_epoch` is `seen`: if the log is still in that epoch but its
/// `seq` is below (Redis lost acknowledged writes, see the module doc), a new epoch `fresh` starts with `seq` at
/// `seen`. Answers the epoch to append in and the `seq` Redis held when it ended one (-1: it did not).
const ROTATE: &str = r#"
local function rotate(meta, epoch, seen_epoch, seen, fresh)
  if epoch ~= seen_epoch then return epoch, -1 end
  local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
  if seq >= seen then return epoch, -1 end
  redis.call('HSET', meta, 'epoch', fresh, 'seq', seen)
  return fresh, seq
end
"#;

/// `KEYS`: meta, log[, send key]. `ARGV`: a fresh epoch, cap, user, text, at, group, key lifetime (s), channel, the
/// epoch and newest id this replica saw, the source (`""`: anonymous, no field), then the address (`""`: no field).
/// Answers `{1, id, epoch, lost}` for an append (`lost`: see `ROTATE`),
/// `{0, id, fields}` for a repeated key (fields empty if retention took it).
/// `#!lua` (Redis 7) makes Redis refuse the whole script up front when out of memory or read-only, never half-way.
const APPEND: &str = r#"
local meta, log, key = KEYS[1], KEYS[2], KEYS[3]
if key then
  local first = redis.call('GET', key)
  if first then
    local entry = redis.call('XRANGE', log, first .. '-0', first .. '-0')[1]
    return {0, first, entry and entry[2] or {}}
  end
end
local epoch, lost = rotate(meta, ensure(meta, log, ARGV[1]), ARGV[9], tonumber(ARGV[10]), ARGV[1])
local id = redis.call('HINCRBY', meta, 'seq', 1)
local fields = {'user', ARGV[3], 'text', ARGV[4], 'at', ARGV[5], 'group', ARGV[6]}
if ARGV[11] ~= '' then table.insert(fields, 'source'); table.insert(fields, ARGV[11]) end
if ARGV[12] ~= '' then table.insert(fields, 'address'); table.insert(fields, ARGV[12]) end
redis.call('XADD', log, 'MAXLEN', '~', ARGV[2], id .. '-0', unpack(fields))
if key then redis.call('SET', key, id, 'EX', ARGV[7]) end
redis.call('PUBLISH', ARGV[8], appended_notice(epoch, id, ARGV[6]))
return {1, id, epoch, lost}
"#;

/// `KEYS`: meta, log. `ARGV`: a fresh epoch, then the epoch and newest id this replica saw. Answers
/// `{epoch, seq, lost}`, making the epoch if the log has none and ending it if it lost ids (see `ROTATE`). A feed
/// with neither key holds nothing: `{"", 0, -1}`, and nothing is written.
const HEAD: &str = r#"
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then return {'', 0, -1} end
local epoch, lost = rotate(KEYS[1], ensure(KEYS[1], KEYS[2], ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[1])
return {epoch, redis.call('HGET', KEYS[1], 'seq') or '0', lost}
"#;

/// `KEYS`: meta, log. `ARGV`: the first id expected, then `id, user, text, at, source, removed` per message (source
/// `""`: anonymous, no field; removed `"1"` or `""`: no field). Appends messages with
/// their own ids to a log that has no epoch yet (a migration), refusing if anything else writes to it meanwhile.
const IMPORT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('the log has an epoch: replicas are running on it') end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
local expected = tonumber(ARGV[1])
if top and tonumber(string.match(top[1], '^(%d+)')) >= expected then
  return redis.error_reply('the log already holds id ' .. top[1] .. ': something else writes to it')
end
for i = 2, #ARGV, 6 do
  local fields = {'user', ARGV[i + 1], 'text', ARGV[i + 2], 'at', ARGV[i + 3], 'group', ''}
  if ARGV[i + 4] ~= '' then table.insert(fields, 'source'); table.insert(fields, ARGV[i + 4]) end
  if ARGV[i + 5] ~= '' then table.insert(fields, 'removed'); table.insert(fields, ARGV[i + 5]) end
  redis.call('XADD', KEYS[2], ARGV[i] .. '-0', unpack(fields))
end
return (#ARGV - 1) / 6
"#;

/// `KEYS`: meta, log, scratch (a key of the feed's slot that nothing else uses). `ARGV`: a fresh epoch, the channel,
/// then the ids to remove. Erases the entries of those ids that are kept and not removed yet by rewriting the log
/// (see the module doc), gives the feed the fresh epoch and publishes a `removed` notice; answers
/// `{epoch, seq, removed ids}` (the epoch unchanged and no id when nothing was erased; `{"", 0, {}}` for a feed
/// that holds nothing, and nothing is written).
const REMOVE: &str = r#"
local meta, log, scratch = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', log) == 0 then
  return {redis.call('HGET', meta, 'epoch') or '', redis.call('HGET', meta, 'seq') or '0', {}}
end
local function field(entry, name)
  for i = 1, #entry[2], 2 do
    if entry[2][i] == name then return entry[2][i + 1] end
  end
  return nil
end
local erase, removed = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local entry = redis.call('XRANGE', log, id .. '-0', id .. '-0')[1]
  if entry and not erase[id] and not field(entry, 'removed') then
    erase[id] = true
    table.insert(removed, id)
  end
end
-- A log whose `meta` alone was lost gets its epoch and sequence first, so the new epoch never restarts the ids.
local epoch = ensure(meta, log, ARGV[1])
if #removed == 0 then return {epoch, redis.call('HGET', meta, 'seq') or '0', removed} end
local info = redis.call('XINFO', 'STREAM', log)
local last
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
redis.call('DEL', scratch)
local start = '-'
while true do
  local chunk = redis.call('XRANGE', log, start, '+', 'COUNT', 1000)
  if #chunk == 0 then break end
  for _, entry in ipairs(chunk) do
    if erase[string.match(entry[1], '^(%d+)')] then
      redis.call('XADD', scratch, entry[1], 'user', '', 'text', '', 'at', field(entry, 'at') or '',
        'group', field(entry, 'group') or '', 'removed', '1')
    else
      redis.call('XADD', scratch, entry[1], unpack(entry[2]))
    end
  end
  start = '(' .. chunk[#chunk][1]
end
-- Appends check their ids against the newest ever added, which retention may have trimmed away: keep it.
redis.call('XSETID', scratch, last)
redis.call('RENAME', scratch, log)
redis.call('HSET', meta, 'epoch', ARGV[1])
local seq = redis.call('HGET', meta, 'seq') or '0'
redis.call('PUBLISH', ARGV[2], removed_notice(ARGV[1], seq))
return {ARGV[1], seq, removed}
"#;

/// `KEYS`: meta. `ARGV`: epoch, seq. Ends a migration: the log gets the epoch and sequence of the log it came from.
const SEAL: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('the log has an epoch: replicas are running on it') end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', ARGV[2])
return 1
"#;

/// `KEYS`: the old log, the old meta, feed `main`'s log and meta, the feed set. `ARGV`: `main`, what the old log
/// becomes. Moves a log of before feeds to feed `main` (see the module doc), once: answers `moved`, `done` (moved
/// before), `none` (nothing to move) or `both` (the old and the new keys both exist: nothing is touched).
const MOVE_LEGACY: &str = r#"
local old_log, old_meta, log, meta, feeds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local kind = redis.call('TYPE', old_log)['ok']
if kind == 'string' then return 'done' end
local had_meta = redis.call('EXISTS', old_meta) == 1
if kind == 'none' and not had_meta then return 'none' end
if redis.call('EXISTS', log, meta) > 0 then return 'both' end
if kind ~= 'none' then redis.call('RENAME', old_log, log) end
if had_meta then redis.call('RENAME', old_meta, meta) end
redis.call('ZADD', feeds, 'NX', 0, ARGV[1])
redis.call('SET', old_log, ARGV[2])
return 'moved'
"#;

/// The key names, under the link's prefix (a feed's with its hash tag: `Link::feed_key`).
mod keys {
    pub const LOG: &str = "log";
    pub const META: &str = "meta";
    /// Where a removal writes the feed's log anew before it takes the log's place (exists only within the script).
    pub const REWRITE: &str = "rewrite";
    /// The sorted set of feeds appended to (deployment-wide).
    pub const FEEDS: &str = "feeds";
    /// What the readiness probe writes (and lets expire).
    pub const READY: &str = "ready";

    pub fn send_key(group: &str, key: &str) -> String {
        format!("key:{group}:{key}")
    }
}

/// Most feeds whose last seen head a replica remembers (see the module doc): about 100 bytes each.
pub const SEEN_FEEDS: usize = 65_536;

/// What `PREFIX:log` holds once its log moved to feed `main` (see the module doc).
const MOVED: &str = "moved to the feed `main` (keys PREFIX:{main}:log and PREFIX:{main}:meta) by a newer version";

/// Where the log stands: its epoch and the newest id handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub epoch: String,
    pub seq: u64,
}

/// A message's id and the session group it was sent in: what a missed notice said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: u64,
    pub group: String,
}

pub struct RedisStore {
    link: Link,
    /// `XADD … MAXLEN ~ cap`: the stream never grows far past retention between two passes.
    cap: usize,
    append: Script,
    head: Script,
    remove: Script,
    /// Rewrites Redis's files after removals (see the module doc).
    compactor: Compactor,
    /// Per feed, the newest id this replica saw acknowledged, and its epoch (see the module doc); the feeds used
    /// last, at most [`SEEN_FEEDS`].
    seen: std::sync::Mutex<LruCache<FeedName, Head>>,
    /// Set once the log of before feeds is known to be moved (or absent): see [`MOVE_LEGACY`].
    legacy_moved: OnceCell<()>,
    /// `/readyz`'s last probe, reused for a moment.
    readiness: Readiness,
}

pub(crate) fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

impl RedisStore {
    /// A store that connects lazily: made while Redis is down, it answers 503 until Redis is reachable.
    pub fn new(link: Link, cap: usize) -> Self {
        Self {
            link,
            // Redis takes a MAXLEN up to i64::MAX (`migrate` asks for no bound at all).
            cap: cap.clamp(1, i64::MAX as usize),
            append: Script::new(&format!("#!lua\n{ENSURE}{ROTATE}{APPENDED_LUA}{APPEND}")),
            head: Script::new(&format!("#!lua\n{ENSURE}{ROTATE}{HEAD}")),
            remove: Script::new(&format!("#!lua\n{ENSURE}{REMOVED_LUA}{REMOVE}")),
            compactor: Compactor::default(),
            seen: std::sync::Mutex::new(LruCache::new(SEEN_FEEDS)),
            legacy_moved: OnceCell::new(),
            readiness: Readiness::default(),
        }
    }

    fn key(&self, name: &str) -> String {
        self.link.key(name)
    }

    fn feed_key(&self, feed: &FeedName, name: &str) -> String {
        self.link.feed_key(feed, name)
    }

    /// Before the first use of feed `main` (or of the feed set): the log of before feeds is moved to it, if there
    /// is one. One round trip per process when there is nothing to move; a Redis that does not answer is asked
    /// again at the next use.
    async fn legacy_moved(&self, feed: Option<&FeedName>) -> Result<(), StoreError> {
        if feed.is_some_and(|feed| !feed.is_main()) {
            return Ok(());
        }
        self.legacy_moved.get_or_try_init(|| self.move_legacy()).await.map(|_| ())
    }

    async fn move_legacy(&self) -> Result<(), StoreError> {
        let (old_log, old_meta) = (self.key(keys::LOG), self.key(keys::META));
        // Asked apart (the old keys are on two slots of a cluster, where no deployment of before ran), so a
        // deployment that never had them never runs the script.
        let (kind, had_meta): (String, bool) = {
            let (old_log, old_meta) = (old_log.clone(), old_meta.clone());
            self.run(|mut conn| async move {
                redis::pipe().cmd("TYPE").arg(old_log).cmd("EXISTS").arg(old_meta).query_async(&mut conn).await
            })
            .await?
        };
        if (kind == "none" || kind == "string") && !had_meta {
            return Ok(());
        }
        let main = FeedName::main();
        let script = Script::new(MOVE_LEGACY);
        let mut call = script.prepare_invoke();
        call.key(old_log)
            .key(old_meta)
            .key(self.feed_key(&main, keys::LOG))
            .key(self.feed_key(&main, keys::META))
            .key(self.key(keys::FEEDS))
            .arg(FeedName::MAIN)
            .arg(MOVED.replace("PREFIX", self.link.prefix()));
        let outcome: String = self.run(|mut conn| async move { call.invoke_async(&mut conn).await }).await?;
        match outcome.as_str() {
            "moved" => tracing::info!(prefix = %self.link.prefix(), "the log of before feeds is now feed `main`'s"),
            "both" => tracing::error!(
                prefix = %self.link.prefix(),
                "both the log of before feeds (PREFIX:log, PREFIX:meta) and feed `main`'s exist: nothing moved; a \
                 replica of the version before may still be writing to the old log (stop it, then move or delete \
                 the old keys by hand)"
            ),
            _ => {}
        }
        Ok(())
    }

    /// Ids up to `id` were acknowledged in `epoch`: remembered, so a Redis that loses them does not keep the
    /// epoch (see the module doc). Another epoch than the one remembered replaces it: answers arrive on several
    /// connections, so one may be older than the last, which at worst delays a rotation, never makes a wrong one
    /// (a script rotates only when Redis holds the very epoch named, below an id Redis itself handed out in it).
    /// A feed with no epoch (`""`: it holds nothing) is not remembered.
    pub fn saw(&self, feed: &FeedName, epoch: &str, id: u64) {
        if epoch.is_empty() {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match seen.get_mut(feed) {
            Some(head) if head.epoch == epoch => head.seq = head.seq.max(id),
            _ => {
                seen.insert(feed.clone(), Head { epoch: epoch.to_owned(), seq: id });
            }
        }
    }

    /// What this replica saw of `feed` (nothing: no epoch, id 0).
    /// The newest id this replica saw acknowledged in `feed`, and its epoch (`""` and 0: none).
    pub fn seen(&self, feed: &FeedName) -> Head {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.get(feed).cloned().unwrap_or(Head { epoch: String::new(), seq: 0 })
    }

    /// How many feeds this replica remembers a head of (tests: reading a feed that holds nothing adds none).
    #[cfg(test)]
    pub(crate) fn seen_feeds(&self) -> usize {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// A script ended the epoch (`lost` ≥ 0 is the `seq` Redis held): said once, loudly; it lost messages.
    fn report_rotation(&self, seen: &Head, lost: i64, epoch: &str) {
        if lost >= 0 && epoch != seen.epoch {
            tracing::error!(
                old_epoch = %seen.epoch,
                new_epoch = %epoch,
                acknowledged = seen.seq,
                redis_holds = lost,
                "the log lost acknowledged ids in its epoch (Redis rolled back: durability settings too weak, or a \
                 failover to a replica that lagged); the log goes on in a new epoch and every tab reloads"
            );
        }
    }

    /// Whether this deployment holds no feed at all (none listed, and no log of before feeds): where a migration
    /// may write. (A feed's own keys are checked again by each import.)
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        self.legacy_moved(None).await?;
        let feeds = self.key(keys::FEEDS);
        let found: u64 = self.run(|mut conn| async move { conn.exists(feeds).await }).await?;
        Ok(found == 0)
    }

    /// A migration's step: appends `batch` (in id order, above everything imported so far) to `feed` with its own
    /// ids, and lists the feed.
    pub async fn import(&self, feed: &FeedName, batch: &[Message]) -> Result<(), StoreError> {
        let Some(first) = batch.first() else { return Ok(()) };
        self.list_feed(feed).await?;
        let script = Script::new(IMPORT);
        let mut call = script.prepare_invoke();
        call.key(self.feed_key(feed, keys::META)).key(self.feed_key(feed, keys::LOG)).arg(first.id);
        for message in batch {
            let source = stored_source(&message.source).unwrap_or_default();
            let removed = if message.removed { "1" } else { "" };
            call.arg(message.id).arg(&message.user).arg(&message.text).arg(&message.at).arg(source).arg(removed);
        }
        self.run(|mut conn| async move { call.invoke_async::<u64>(&mut conn).await }).await?;
        Ok(())
    }

    /// Ends a feed's migration: from now on its log is the one of `epoch`, and its next id is `seq + 1`.
    pub async fn seal(&self, feed: &FeedName, epoch: &str, seq: u64) -> Result<(), StoreError> {
        self.list_feed(feed).await?;
        let script = Script::new(SEAL);
        let mut call = script.prepare_invoke();
        call.key(self.feed_key(feed, keys::META)).arg(epoch).arg(seq);
        self.run(|mut conn| async move { call.invoke_async::<u64>(&mut conn).await }).await?;
        Ok(())
    }

    /// `ZADD NX` of `feed` to the feed set.
    async fn list_feed(&self, feed: &FeedName) -> Result<(), StoreError> {
        let (feeds, name) = (self.key(keys::FEEDS), feed.as_str().to_owned());
        self.run(|mut conn| async move {
            redis::cmd("ZADD").arg(feeds).arg("NX").arg(0).arg(name).query_async::<()>(&mut conn).await
        })
        .await
    }

    /// Runs `query` on the link's connection, within its timeout.
    async fn run<T, F>(&self, query: impl FnOnce(ConnectionManager) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.link.run(query).await.map_err(|err| StoreError::Unavailable(err.to_string()))
    }

    /// PING: whether Redis answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await }).await?;
        Ok(())
    }

    /// `feed`'s epoch and newest id, in one step (the epoch is made if its log has entries but lost its `meta`; a
    /// feed that holds nothing answers `""` and 0, and nothing is written).
    /// Ends the epoch first if Redis lost ids this replica saw acknowledged in it (see the module doc).
    pub async fn head(&self, feed: &FeedName) -> Result<Head, StoreError> {
        self.legacy_moved(Some(feed)).await?;
        let seen = self.seen(feed);
        let seen_ref = &seen;
        let (epoch, seq, lost): (String, u64, i64) = self
            .run(|mut conn| async move {
                let mut call = self.head.prepare_invoke();
                call.key(self.feed_key(feed, keys::META))
                    .key(self.feed_key(feed, keys::LOG))
                    .arg(new_epoch())
                    .arg(&seen_ref.epoch)
                    .arg(seen_ref.seq);
                call.invoke_async(&mut conn).await
            })
            .await?;
        self.report_rotation(&seen, lost, &epoch);
        self.saw(feed, &epoch, seq);
        Ok(Head { epoch, seq })
    }

    /// Ids and groups of `feed`'s messages with id > `after`, oldest first, at most `limit` (missed notices).
    pub async fn sent_since(&self, feed: &FeedName, after: u64, limit: usize) -> Result<Vec<Sent>, StoreError> {
        let entries = self.range_after(feed, after, limit).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, mut fields)| Some(Sent { id: entry_id(&id)?, group: fields.remove("group")? }))
            .collect())
    }

    /// `feed`'s entries with id > `after` (an exclusive `(` bound), oldest first, at most `limit`.
    async fn range_after(&self, feed: &FeedName, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.legacy_moved(Some(feed)).await?;
        let start = match after {
            0 => "-".to_owned(),
            u64::MAX => return Ok(Vec::new()),
            after => format!("({after}-0"),
        };
        let log = self.feed_key(feed, keys::LOG);
        self.run(|mut conn| async move { conn.xrange_count(log, start, "+", limit).await }).await
    }

    /// Everything the age cutoff takes: the id of the first entry stored at or after `cutoff`, or one past the
    /// newest read when all are older.
    async fn first_at_or_after(
        &self,
        feed: &FeedName,
        cutoff: time::OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        let mut after = 0;
        loop {
            let chunk = self.range_after(feed, after, SCAN_CHUNK).await?;
            let Some(last) = chunk.last().and_then(|(id, _)| entry_id(id)) else {
                return Ok((after > 0).then_some(after + 1));
            };
            for (id, fields) in &chunk {
                let at = fields.get("at").and_then(|at| time::OffsetDateTime::parse(at, &RFC3339).ok());
                if at.is_some_and(|at| at >= cutoff) {
                    return Ok(entry_id(id));
                }
            }
            after = last;
        }
    }
}

const RFC3339: time::format_description::well_known::Rfc3339 = time::format_description::well_known::Rfc3339;

/// A stream entry as `XRANGE` answers it.
type Entry = (String, HashMap<String, String>);

/// `42-0` → 42.
fn entry_id(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

fn message(id: &str, mut fields: HashMap<String, String>) -> Option<Message> {
    Some(Message {
        id: entry_id(id)?,
        user: fields.remove("user")?,
        text: fields.remove("text")?,
        at: fields.remove("at")?,
        source: source_of_stored(fields.get("source").map(String::as_str)),
        removed: fields.contains_key("removed"),
    })
}

/// An entry with what moderation needs of its sender.
fn sent(id: &str, mut fields: HashMap<String, String>) -> Option<super::Sent> {
    let (group, address) = (fields.remove("group").unwrap_or_default(), fields.remove("address").unwrap_or_default());
    Some(super::Sent { message: message(id, fields)?, group, address })
}

fn messages(entries: Vec<Entry>) -> Vec<Message> {
    entries.into_iter().filter_map(|(id, fields)| message(&id, fields)).collect()
}

/// What the append script did besides the message: the epoch it appended in and the `seq` Redis held if it ended
/// the one before (see `ROTATE`); `None` for a repeated key (nothing appended).
type AppendedIn = Option<(String, i64)>;

/// The append script's answer: `{1, id, epoch, lost}` or `{0, id, fields}`.
fn parse_appended(reply: Value, draft: &Draft<'_>, at: String) -> Result<(Appended, AppendedIn), StoreError> {
    let bad = || unavailable(format!("unexpected answer from the append script: {reply:?}"));
    let Value::Array(items) = &reply else { return Err(bad()) };
    let fresh = items.first().and_then(|v| redis::from_redis_value_ref::<i64>(v).ok()).ok_or_else(bad)? == 1;
    let id = items.get(1).and_then(|v| redis::from_redis_value_ref::<u64>(v).ok()).ok_or_else(bad)?;
    let appended_in = if fresh {
        let epoch = items.get(2).and_then(|v| redis::from_redis_value_ref::<String>(v).ok()).ok_or_else(bad)?;
        let lost = items.get(3).and_then(|v| redis::from_redis_value_ref::<i64>(v).ok()).ok_or_else(bad)?;
        Some((epoch, lost))
    } else {
        None
    };
    let stored: HashMap<String, String> = match fresh {
        true => HashMap::new(),
        false => items.get(2).and_then(|v| redis::from_redis_value_ref(v).ok()).unwrap_or_default(),
    };
    // A repeated key whose message retention has deleted since: answer it as it was sent.
    let field = |name: &str, sent: &str| stored.get(name).cloned().unwrap_or_else(|| sent.to_owned());
    let message = Message {
        id,
        user: field("user", draft.author.as_str()),
        text: field("text", draft.text.as_str()),
        at: field("at", &at),
        // The first message's own source if it is still kept; else (retention took it) the draft's, as sent.
        source: if stored.is_empty() {
            draft.source.clone()
        } else {
            source_of_stored(stored.get("source").map(String::as_str))
        },
        removed: stored.contains_key("removed"),
    };
    let epoch = appended_in.as_ref().map(|(epoch, _)| epoch.clone()).unwrap_or_default();
    Ok((Appended { message, epoch, fresh }, appended_in))
}

#[async_trait]
impl FeedStore for RedisStore {
    async fn append(&self, draft: Draft<'_>) -> Result<Appended, StoreError> {
        self.legacy_moved(Some(draft.feed)).await?;
        let at = now_rfc3339();
        let stamp = at.as_str();
        let seen = self.seen(draft.feed);
        let seen_ref = &seen;
        let mut call = self.append.prepare_invoke();
        call.key(self.feed_key(draft.feed, keys::META)).key(self.feed_key(draft.feed, keys::LOG));
        if let Some(key) = draft.key {
            call.key(self.feed_key(draft.feed, &keys::send_key(draft.group, key.as_str())));
        }
        call.arg(new_epoch())
            .arg(self.cap)
            .arg(draft.author.as_str())
            .arg(draft.text.as_str())
            .arg(stamp)
            .arg(draft.group)
            .arg(KEY_MEMORY.as_secs())
            .arg(self.link.notices(draft.feed))
            .arg(&seen_ref.epoch)
            .arg(seen_ref.seq)
            .arg(stored_source(draft.source).unwrap_or_default())
            .arg(draft.address);
        let call = &call;
        let (feeds, name) = (self.key(keys::FEEDS), draft.feed.as_str());
        let reply: Value = self
            .run(|mut conn| async move {
                // The feed is listed first, in the same round trip (see the module doc).
                let mut pipe = redis::pipe();
                pipe.cmd("ZADD").arg(&feeds).arg("NX").arg(0).arg(name).ignore().invoke_script(call);
                match pipe.query_async::<(Value,)>(&mut conn).await {
                    Ok((reply,)) => Ok(reply),
                    // A Redis that does not hold the script yet (restarted, or new): loaded, then run again.
                    Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                        call.invoke_async(&mut conn).await
                    }
                    Err(err) => Err(err),
                }
            })
            .await?;
        let (appended, appended_in) = parse_appended(reply, &draft, at)?;
        if let Some((epoch, lost)) = appended_in {
            self.report_rotation(&seen, lost, &epoch);
            self.saw(draft.feed, &epoch, appended.message.id);
        }
        Ok(appended)
    }

    async fn since(&self, feed: &FeedName, after: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        Ok(messages(self.range_after(feed, after, limit).await?))
    }

    async fn before(&self, feed: &FeedName, before: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        if before <= 1 || limit == 0 {
            return Ok(Vec::new());
        }
        self.legacy_moved(Some(feed)).await?;
        let (log, end) = (self.feed_key(feed, keys::LOG), format!("({before}-0"));
        let mut page: Vec<Entry> =
            self.run(|mut conn| async move { conn.xrevrange_count(log, end, "-", limit).await }).await?;
        page.reverse();
        Ok(messages(page))
    }

    async fn latest(&self, feed: &FeedName, limit: usize) -> Result<Vec<Message>, StoreError> {
        self.legacy_moved(Some(feed)).await?;
        let log = self.feed_key(feed, keys::LOG);
        let mut page: Vec<Entry> =
            self.run(|mut conn| async move { conn.xrevrange_count(log, "+", "-", limit).await }).await?;
        page.reverse();
        Ok(messages(page))
    }

    async fn epoch(&self, feed: &FeedName) -> Result<String, StoreError> {
        self.legacy_moved(Some(feed)).await?;
        let meta = self.feed_key(feed, keys::META);
        let known: Option<String> = self.run(|mut conn| async move { conn.hget(meta, "epoch").await }).await?;
        match known {
            Some(epoch) => Ok(epoch),
            // No `meta`: a feed that holds nothing (`""`, nothing written), or a log whose `meta` was lost, which
            // the head gives a new epoch.
            None => Ok(self.head(feed).await?.epoch),
        }
    }

    async fn last_id(&self, feed: &FeedName) -> Result<u64, StoreError> {
        self.legacy_moved(Some(feed)).await?;
        let meta = self.feed_key(feed, keys::META);
        let seq: Option<u64> = self.run(|mut conn| async move { conn.hget(meta, "seq").await }).await?;
        Ok(seq.unwrap_or(0))
    }

    async fn feeds(&self, after: Option<&FeedName>, limit: usize) -> Result<Vec<FeedName>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.legacy_moved(None).await?;
        let feeds = self.key(keys::FEEDS);
        let min = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let names: Vec<String> = self
            .run(|mut conn| async move {
                redis::cmd("ZRANGEBYLEX")
                    .arg(feeds)
                    .arg(min)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        // Only appends list names, of parsed feeds: one that does not parse was written by hand; skip it.
        Ok(names.iter().filter_map(|name| FeedName::parse(name)).collect())
    }

    async fn prune(
        &self,
        feed: &FeedName,
        keep: usize,
        cutoff: Option<time::OffsetDateTime>,
    ) -> Result<u64, StoreError> {
        self.legacy_moved(Some(feed)).await?;
        let log = self.feed_key(feed, keys::LOG);
        let mut deleted: u64 = {
            let log = log.clone();
            self.run(|mut conn| async move {
                redis::cmd("XTRIM").arg(log).arg("MAXLEN").arg("=").arg(keep).query_async(&mut conn).await
            })
            .await?
        };
        let first_kept = match cutoff {
            Some(cutoff) => self.first_at_or_after(feed, cutoff).await?,
            None => None,
        };
        if let Some(first_kept) = first_kept {
            deleted += self
                .run(|mut conn| async move {
                    redis::cmd("XTRIM")
                        .arg(log)
                        .arg("MINID")
                        .arg(format!("{first_kept}-0"))
                        .query_async::<u64>(&mut conn)
                        .await
                })
                .await?;
        }
        Ok(deleted)
    }

    async fn remove(&self, feed: &FeedName, ids: &[u64]) -> Result<Removal, StoreError> {
        self.legacy_moved(Some(feed)).await?;
        let mut call = self.remove.prepare_invoke();
        call.key(self.feed_key(feed, keys::META))
            .key(self.feed_key(feed, keys::LOG))
            .key(self.feed_key(feed, keys::REWRITE))
            .arg(new_epoch())
            .arg(self.link.notices(feed));
        for id in ids {
            call.arg(id);
        }
        let call = &call;
        let (epoch, seq, removed): (String, u64, Vec<u64>) =
            self.run(|mut conn| async move { call.invoke_async(&mut conn).await }).await?;
        if !removed.is_empty() {
            // This replica knows the new epoch at once, so a Redis that loses ids in it is noticed as before.
            self.saw(feed, &epoch, seq);
            self.compactor.removed(&self.link);
        }
        Ok(Removal { removed, epoch })
    }

    async fn recent(&self, feed: &FeedName, limit: usize) -> Result<Vec<super::Sent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.legacy_moved(Some(feed)).await?;
        let log = self.feed_key(feed, keys::LOG);
        let mut page: Vec<Entry> =
            self.run(|mut conn| async move { conn.xrevrange_count(log, "+", "-", limit).await }).await?;
        page.reverse();
        Ok(page.into_iter().filter_map(|(id, fields)| sent(&id, fields)).collect())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.readiness.check(|| self.probe()).await
    }
}

/// After removals, has Redis rewrite its append-only file and take a snapshot, so neither keeps an erased text
/// (see the module doc). One background task per store, started by the first removal; removals that come while it
/// works are one more round, not one each.
#[derive(Default)]
struct Compactor {
    wanted: std::sync::Arc<tokio::sync::Notify>,
    started: std::sync::OnceLock<()>,
}

/// How long the compactor waits for a rewrite that Redis is running already before asking again.
const COMPACT_RETRY: Duration = Duration::from_secs(1);

impl Compactor {
    fn removed(&self, link: &Link) {
        self.started.get_or_init(|| {
            let (wanted, link) = (self.wanted.clone(), link.clone());
            tokio::spawn(async move {
                loop {
                    wanted.notified().await;
                    compact(&link).await;
                }
            });
        });
        self.wanted.notify_one();
    }
}

/// One round: `BGREWRITEAOF` if Redis keeps an append-only file, `BGSAVE` if it takes snapshots; each asked again
/// while Redis runs one already (it may have started before the removal), at most a minute. Failures are warnings:
/// the removal itself is done, and Redis's own next rewrite or snapshot drops the text too.
async fn compact(link: &Link) {
    let info: Result<String, _> =
        link.run(|mut conn| async move { redis::cmd("INFO").arg("persistence").query_async(&mut conn).await }).await;
    let info = match info {
        Ok(info) => info,
        Err(err) => {
            tracing::warn!(error = %err, "after a removal: cannot ask Redis how it persists; its files may keep the text until its next rewrite");
            return;
        }
    };
    let aof = info.lines().any(|line| line.trim() == "aof_enabled:1");
    // Snapshots on disk: Redis has save points. A managed Redis that refuses CONFIG takes its snapshots itself.
    let save: Result<Vec<String>, _> = link
        .run(|mut conn| async move { redis::cmd("CONFIG").arg("GET").arg("save").query_async(&mut conn).await })
        .await;
    let snapshots = matches!(save.as_deref(), Ok([_, points]) if !points.trim().is_empty());
    // `SCHEDULE`: a snapshot asked while the rewrite runs starts after it rather than being refused.
    for (wanted, command) in [(aof, &["BGREWRITEAOF"][..]), (snapshots, &["BGSAVE", "SCHEDULE"][..])] {
        if !wanted {
            continue;
        }
        let mut tries = 0;
        loop {
            let asked: Result<String, _> = link
                .run(|mut conn| async move { redis::cmd(command[0]).arg(&command[1..]).query_async(&mut conn).await })
                .await;
            match asked {
                Ok(_) => break,
                // Already running (it may copy the text): asked again once it is done.
                Err(err) if err.to_string().contains("in progress") && tries < 60 => {
                    tries += 1;
                    tokio::time::sleep(COMPACT_RETRY).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, command = command[0], "after a removal: Redis refused to rewrite its files; they keep the text until its next rewrite");
                    break;
                }
            }
        }
    }
}

/// How long the readiness probe's key lives.
const PROBE_LIVES_MS: u64 = 10_000;

impl RedisStore {
    /// What a send needs of Redis, cheaply: it answers, it is the primary (a replica refuses writes, and one that
    /// accepts them would fork the log), and it takes a small write (a full Redis under `noeviction` refuses them).
    /// One round trip: `ROLE` and a `SET` with a TTL, pipelined.
    async fn probe(&self) -> Result<(), StoreError> {
        let key = self.key(keys::READY);
        let (role,): (Vec<Value>,) = self
            .run(|mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("ROLE").cmd("SET").arg(key).arg(1).arg("PX").arg(PROBE_LIVES_MS).ignore();
                pipe.query_async(&mut conn).await
            })
            .await?;
        match role.first().and_then(|v| redis::from_redis_value_ref::<String>(v).ok()).as_deref() {
            Some("master") => Ok(()),
            other => {
                Err(unavailable(format!("Redis is not the primary (ROLE says {other:?}): sends would be refused")))
            }
        }
    }
}

/// Durability settings the promise "acknowledged means on disk" needs, and what a crash loses without each.
const DURABILITY: [(&str, &str, &str); 3] = [
    (
        "appendonly",
        "yes",
        "a Redis restart or crash loses every acknowledged message since the last snapshot (without snapshots: all)",
    ),
    (
        "appendfsync",
        "always",
        "a crash of the machine Redis runs on (power, kernel) loses the acknowledged messages not yet fsynced: up \
         to about a second with everysec, up to ~30 s with no",
    ),
    (
        "maxmemory-policy",
        "noeviction",
        "a full Redis may evict the log, its sequence or send keys instead of refusing sends (ids would start again \
         in a new epoch)",
    ),
];

impl RedisStore {
    /// Start-up, explicit: the server serves at once whether or not Redis answers (sends, pages and `/readyz`
    /// answer 503 until it does). This says so in the log, waits for Redis in the background, then checks its
    /// durability settings.
    pub async fn report_start(self: std::sync::Arc<Self>, url: String) {
        let mut said = false;
        while let Err(err) = self.ping().await {
            if !said {
                tracing::warn!(%url, error = %err, "Redis does not answer; serving 503 until it does");
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::info!(%url, prefix = %self.link.prefix(), "Redis answers");
        self.check_durability().await;
    }

    /// Logs a warning for each durability setting weaker than [`DURABILITY`] asks, or that it could not check.
    async fn check_durability(&self) {
        for (name, wanted, loss) in DURABILITY {
            let got: Result<Vec<String>, StoreError> = self
                .run(|mut conn| async move { redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut conn).await })
                .await;
            match got.as_deref() {
                Ok([_, value]) if value.eq_ignore_ascii_case(wanted) => {}
                Ok([_, value]) => tracing::warn!("Redis has `{name} {value}` (wanted `{wanted}`): {loss}"),
                Ok(_) | Err(_) => {
                    let why = got.err().map_or_else(|| "no such setting".to_owned(), |err| err.to_string());
                    tracing::warn!("cannot check Redis's `{name}` ({why}); it should be `{wanted}`, else {loss}");
                }
            }
        }
    }
}
