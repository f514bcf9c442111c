//! The publish API's keys (`api-keys-file`): who may post from a backend, in which feeds, how fast. The file is
//! TOML, one `[[key]]` entry per key:
//!
//! ```toml
//! [[key]]
//! name = "orders"                 # shown on its messages (`source.service`); a-z, 0-9, '-', '_'
//! hash = "sha256:<64 hex digits>" # SHA-256 of the key itself: the key is never stored
//! feeds = ["orders", "team-*"]    # exact names and `prefix-*` patterns (`identity::FeedPattern`); ["*"]: all
//! per-minute = 600                # its send budget (GCRA), shared across replicas on Redis
//! moderate = true                 # optional: it may also moderate its feeds (the admin API); default false
//! ```
//!
//! Keys are stored hashed only. A plain SHA-256 is enough: a key is 256 random bits (`make`), not a password, so
//! no dictionary or brute force can reach it and a slow hash would buy nothing. A presented key is hashed and then
//! looked up by its hash (hash-then-compare): whatever a lookup's timing tells is about the digest, which says
//! nothing of the key that would help forge another.
//!
//! The table is read at start-up (a file that cannot be read or parsed stops the start), then again on SIGHUP and
//! whenever the file's modification time or length changes (`watch`): a removed key stops working at the next
//! read. A file that is malformed on a reload keeps the old keys, with a WARN. At most [`MAX_KEYS`] keys.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::server::budget::{seconds_up, SharedBudgets};
use crate::server::identity::{FeedPattern, Grant};
use crate::shared::domain::FeedName;
use crate::shared::error::{ApiError, ErrorKind};

/// Most keys one file may hold: the table is kept whole in memory, with a budget each.
pub const MAX_KEYS: usize = 10_000;
/// Longest key name, in bytes.
const MAX_NAME: usize = 64;
/// How often the file's modification time is looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);
/// What a key looks like before its random part, so a leaked one is easy to spot in a repository or a log.
pub const KEY_PREFIX: &str = "bk_";

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the API keys file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("API keys file {path}: {message}")]
    Malformed { path: String, message: String },
}

/// One key: its name, the feeds it may post in and read, and its budget.
#[derive(Debug)]
pub struct ApiKey {
    pub name: String,
    pub feeds: Grant,
    pub per_minute: u32,
    /// It may moderate the feeds it covers (`moderation`), not only post in them.
    pub moderate: bool,
    /// Its budget in this process (a single server; replicas share theirs through `ApiKeys::shared`).
    local: Arc<DefaultDirectRateLimiter>,
}

impl ApiKey {
    /// A key named `name` for `feeds`, with a fresh budget of `per_minute` in this process.
    pub fn new(name: &str, feeds: Grant, per_minute: NonZeroU32) -> Self {
        let local = Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)));
        Self { name: name.to_owned(), feeds, per_minute: per_minute.get(), moderate: false, local }
    }

    /// The same key, allowed to moderate its feeds.
    pub fn moderating(self) -> Self {
        Self { moderate: true, ..self }
    }

    /// 403 unless this key's scope covers `feed`.
    pub fn may_use(&self, feed: &FeedName) -> Result<(), ApiError> {
        if self.feeds.covers(feed) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorKind::Forbidden, format!("This API key does not cover the feed {feed}.")))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    key: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    name: String,
    hash: String,
    feeds: Vec<String>,
    per_minute: u32,
    #[serde(default)]
    moderate: bool,
}

/// Keys by the hex SHA-256 of the key.
type Table = HashMap<String, Arc<ApiKey>>;

/// The keys in force, and where they are read from.
pub struct ApiKeys {
    path: Option<PathBuf>,
    table: RwLock<Arc<Table>>,
    /// The file's modification time and length when last read: a change makes `watch` read it again.
    seen: Mutex<Option<(SystemTime, u64)>>,
    /// Where replicas keep the budgets they share (Redis); `None`: each key's own limiter in this process.
    shared: Option<Arc<dyn SharedBudgets>>,
}

impl ApiKeys {
    /// No file: no key is valid.
    pub fn none() -> Self {
        Self { path: None, table: RwLock::default(), seen: Mutex::default(), shared: None }
    }

    /// The keys of the file at `path`, or why they cannot be read (which stops the start).
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let keys = Self { path: Some(path.to_owned()), ..Self::none() };
        keys.reload()?;
        Ok(keys)
    }

    /// Budgets kept where every replica counts (`backend::Parts::address_budgets`).
    pub fn shared_through(self, shared: Option<Arc<dyn SharedBudgets>>) -> Self {
        Self { shared, ..self }
    }

    /// Reads the file again; the old keys stay when it cannot be read or parsed. Answers how many keys are in force.
    pub fn reload(&self) -> Result<usize, KeysError> {
        let Some(path) = &self.path else { return Ok(0) };
        let shown = || path.display().to_string();
        let stamp = stamp(path);
        let text = std::fs::read_to_string(path)
            .map_err(|err| KeysError::Unreadable { path: shown(), reason: err.to_string() })?;
        let old = self.table.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let table = parse(&text, &old).map_err(|message| KeysError::Malformed { path: shown(), message })?;
        let count = table.len();
        *self.table.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(table);
        *self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = stamp;
        Ok(count)
    }

    /// Reads the file again if it changed since it was last read; a failure is logged and the old keys stay.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.path else { return };
        let now = stamp(path);
        if now.is_some() && now != *self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            self.reload_logged("changed");
        }
    }

    /// `reload`, with the outcome in the log: the operator asked for it, or changed the file.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(count) => tracing::info!(keys = count, why, "API keys read again"),
            Err(err) => tracing::warn!(error = %err, why, "API keys file not read again: the old keys stay"),
        }
    }

    /// The key an `Authorization` header value names (`Bearer <key>`): 401 for a missing, malformed or unknown
    /// one (the handler adds `WWW-Authenticate`).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Arc<ApiKey>, ApiError> {
        let Some(presented) = authorization.and_then(bearer_credential) else {
            return Err(unauthorized("This API needs `Authorization: Bearer <API key>`."));
        };
        self.find(presented)
    }

    /// The key `presented` (the key itself, as a bearer credential carries it): 401 for an unknown one.
    pub fn find(&self, presented: &str) -> Result<Arc<ApiKey>, ApiError> {
        let table = self.table.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        table.get(&digest(presented)).cloned().ok_or_else(|| unauthorized("That API key is not valid here."))
    }

    /// Takes one send from `key`'s budget, or 429 with how long to wait.
    pub async fn take(&self, key: &ApiKey) -> Result<(), ApiError> {
        let refused = || {
            ApiError::new(
                ErrorKind::RateLimited,
                format!("Slow down: this API key may post {} messages a minute.", key.per_minute),
            )
        };
        match &self.shared {
            Some(shared) => {
                let every = Duration::from_secs(60) / key.per_minute.max(1);
                match shared.take(&format!("api-key:{}", key.name), every, key.per_minute.max(1)).await? {
                    None => Ok(()),
                    Some(wait) => Err(refused().with_retry_after(seconds_up(wait))),
                }
            }
            None => key.local.check().map_err(|not_until| {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                refused().with_retry_after(seconds_up(wait))
            }),
        }
    }
}

/// The credential of an `Authorization: Bearer …` value (the scheme in any case; blanks around it trimmed), if it
/// is one and not empty: an API key, a private feed's read pass or a moderator's token.
pub fn bearer_credential(value: &[u8]) -> Option<&str> {
    let (scheme, credential) = std::str::from_utf8(value).ok()?.split_once(' ')?;
    Some(credential.trim()).filter(|credential| scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unauthorized, message)
}

/// The file's modification time and length, if it can be read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The lowercase hex SHA-256 of `key`.
fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The table a file's text holds, every entry checked; `old` is the table in force.
fn parse(text: &str, old: &Table) -> Result<Table, String> {
    // The line and what is wrong there, on one line of the log (toml's own text quotes the file, over several).
    let file: File = toml::from_str(text).map_err(|err| match err.span() {
        Some(span) => format!("line {}: {}", text[..span.start].matches('\n').count() + 1, err.message()),
        None => err.message().to_owned(),
    })?;
    if file.key.len() > MAX_KEYS {
        return Err(format!("{} keys; at most {MAX_KEYS}", file.key.len()));
    }
    let mut table = Table::with_capacity(file.key.len());
    let mut names = std::collections::HashSet::new();
    for entry in file.key {
        let name = entry.name;
        let valid_name = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(format!("key name {name:?}: 1 to {MAX_NAME} of a-z, 0-9, '-', '_'"));
        }
        if !names.insert(name.clone()) {
            return Err(format!("key name {name:?} is given twice"));
        }
        let hash = entry
            .hash
            .strip_prefix("sha256:")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .ok_or_else(|| format!("key {name:?}: hash must be \"sha256:\" and 64 lowercase hex digits"))?;
        let patterns = entry
            .feeds
            .iter()
            .map(|raw| FeedPattern::parse(raw).ok_or_else(|| format!("key {name:?}: {raw:?} is no feed or pattern")))
            .collect::<Result<Vec<_>, _>>()?;
        let per_minute =
            NonZeroU32::new(entry.per_minute).ok_or_else(|| format!("key {name:?}: per-minute must be at least 1"))?;
        // A key that was in force with the same name and budget keeps its budget's state, so a reload gives
        // nobody a fresh burst.
        let local = match old.get(hash).filter(|old| old.name == name && old.per_minute == per_minute.get()) {
            Some(old) => old.local.clone(),
            None => Arc::new(RateLimiter::direct(Quota::per_minute(per_minute))),
        };
        let feeds = Grant::Only(patterns);
        let key = Arc::new(ApiKey { name, feeds, per_minute: per_minute.get(), moderate: entry.moderate, local });
        if table.insert(hash.to_owned(), key).is_some() {
            return Err("two keys have the same hash".into());
        }
    }
    Ok(table)
}

/// A new key for `name`: the key (shown once, never stored) and the `[[key]]` entry that admits it to every feed at
/// 600 messages a minute (narrow `feeds` and the budget as needed).
pub fn make(name: &str) -> (String, String) {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let entry =
        format!("[[key]]\nname = \"{name}\"\nhash = \"sha256:{}\"\nfeeds = [\"*\"]\nper-minute = 600\n", digest(&key));
    (key, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn bearer(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[test]
    fn a_made_key_is_admitted_by_its_entry_and_nothing_else_is() {
        let (key, entry) = make("orders");
        assert!(key.starts_with(KEY_PREFIX) && key.len() > 40, "{key}");
        assert!(!entry.contains(&key), "the entry holds the hash only");
        let dir = tempfile::tempdir().unwrap();
        let keys = ApiKeys::load(&write(&dir, &entry)).unwrap();
        let found = keys.authenticate(Some(&bearer(&key))).unwrap();
        assert_eq!((found.name.as_str(), found.per_minute), ("orders", 600));
        assert!(found.may_use(&FeedName::parse("anything").unwrap()).is_ok());
        for bad in [
            None,
            Some(b"".to_vec()),
            Some(b"Bearer ".to_vec()),
            Some(key.clone().into_bytes()),
            Some(bearer(&format!("{key}x"))),
            Some(format!("Basic {key}").into_bytes()),
            Some(vec![0xff, 0xfe]),
        ] {
            let err = keys.authenticate(bad.as_deref()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unauthorized, "{bad:?}");
        }
    }

    #[test]
    fn a_scope_covers_its_names_and_patterns_only() {
        let (key, _) = make("x");
        let entry = format!(
            "[[key]]\nname = \"ci\"\nhash = \"sha256:{}\"\nfeeds = [\"orders\", \"team-*\"]\nper-minute = 5\n",
            digest(&key)
        );
        let dir = tempfile::tempdir().unwrap();
        let found = ApiKeys::load(&write(&dir, &entry)).unwrap().authenticate(Some(&bearer(&key))).unwrap();
        for (feed, ok) in [("orders", true), ("team-ops", true), ("main", false), ("orders-2", false), ("team", false)]
        {
            let answer = found.may_use(&FeedName::parse(feed).unwrap());
            assert_eq!(answer.is_ok(), ok, "{feed}");
            if let Err(err) = answer {
                assert_eq!(err.kind, ErrorKind::Forbidden);
            }
        }
    }

    /// A removed key is refused after a reload; a malformed file keeps the keys in force; each malformed entry is
    /// refused at load with a sentence that names what is wrong.
    #[test]
    fn a_reload_drops_removed_keys_and_a_malformed_file_keeps_the_old_ones() {
        let (a, entry_a) = make("a");
        let (b, entry_b) = make("b");
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, &format!("{entry_a}\n{entry_b}"));
        let keys = ApiKeys::load(&path).unwrap();
        assert!(keys.authenticate(Some(&bearer(&b))).is_ok());
        write(&dir, "[[key]]\nname = 'broken'\n");
        assert!(matches!(keys.reload(), Err(KeysError::Malformed { .. })));
        assert!(keys.authenticate(Some(&bearer(&a))).is_ok() && keys.authenticate(Some(&bearer(&b))).is_ok());
        write(&dir, &entry_a);
        assert_eq!(keys.reload().unwrap(), 1);
        assert!(keys.authenticate(Some(&bearer(&a))).is_ok());
        assert_eq!(keys.authenticate(Some(&bearer(&b))).unwrap_err().kind, ErrorKind::Unauthorized);

        let hash = format!("sha256:{}", digest(&a));
        let cases = [
            (format!("[[key]]\nname = \"A\"\nhash = \"{hash}\"\nfeeds = []\nper-minute = 1\n"), "key name"),
            ("[[key]]\nname = \"a\"\nhash = \"md5:00\"\nfeeds = []\nper-minute = 1\n".to_owned(), "hash must"),
            (format!("[[key]]\nname = \"a\"\nhash = \"{hash}\"\nfeeds = [\"Bad_\"]\nper-minute = 1\n"), "no feed"),
            (format!("[[key]]\nname = \"a\"\nhash = \"{hash}\"\nfeeds = []\nper-minute = 0\n"), "at least 1"),
            (format!("{entry_a}\n{entry_a}"), "twice"),
            ("[[key]]\nname = \"a\"\n".to_owned(), "missing field"),
            ("[[key]]\nnme = \"a\"\n".to_owned(), "line 2: unknown field"),
        ];
        for (text, says) in cases {
            let err = ApiKeys::load(&write(&dir, &text)).err().expect(says).to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
        assert!(matches!(ApiKeys::load(&dir.path().join("missing")), Err(KeysError::Unreadable { .. })));
    }

    #[test]
    fn too_many_keys_are_refused() {
        let (key, _) = make("x");
        let one =
            format!("[[key]]\nname = \"k{{}}\"\nhash = \"sha256:{}\"\nfeeds = []\nper-minute = 1\n", digest(&key));
        let text: String = (0..=MAX_KEYS).map(|n| one.replace("{}", &n.to_string())).collect();
        let err = parse(&text, &Table::new()).unwrap_err();
        assert!(err.contains("at most 10000"), "{err}");
    }

    #[tokio::test]
    async fn a_key_over_its_budget_is_refused_with_when_to_come_back_and_a_reload_keeps_its_budget() {
        let (key, entry) = make("busy");
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, &entry.replace("per-minute = 600", "per-minute = 2"));
        let keys = ApiKeys::load(&path).unwrap();
        let found = keys.authenticate(Some(&bearer(&key))).unwrap();
        keys.take(&found).await.unwrap();
        keys.take(&found).await.unwrap();
        let refused = keys.take(&found).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::RateLimited);
        keys.reload().unwrap();
        let again = keys.authenticate(Some(&bearer(&key))).unwrap();
        assert_eq!(keys.take(&again).await.unwrap_err().kind, ErrorKind::RateLimited, "no fresh burst on reload");
    }
}
