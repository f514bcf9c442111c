//! Settings: each defined once, in `concerns.rs`, as a field of a clap `Args` struct per concern (its flag,
//! environment variable, default, parser and `--help`). Layering is clap's: flags, then environment variables,
//! then the `[broadcasting]` table of the settings file (Leptos.toml, or `--config`), then the stated default;
//! the earlier wins. The file's values reach clap as defaults (`file.rs`), so one parser reads every layer.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use crate::server::access::{Access, Rules};
use crate::server::link::RedisTarget;
use crate::server::store::retention::Retention;
use crate::shared::domain::FeedName;

mod concerns;
mod file;
mod values;

pub use concerns::{Connections, Embed, Feed, Identity, Limits, Presence, Server, Store, Tickets};

/// The settings in force, by concern.
// `group(skip)`: the concerns are the command's only groups, so each group is one table of the file.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(name = "broadcasting", version, about = "Broadcasting: a realtime shared feed over Server-Sent Events.")]
#[group(skip)]
pub struct Settings {
    /// Settings file whose [broadcasting] table (and its tables by concern: [broadcasting.server], …) is read at
    /// start-up; the default file may be missing.
    #[arg(long, env = "BROADCASTING_CONFIG", default_value = "Leptos.toml")]
    pub config: PathBuf,
    #[command(flatten)]
    pub server: Server,
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub feed: Feed,
    #[command(flatten)]
    pub store: Store,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub presence: Presence,
    #[command(flatten)]
    pub tickets: Tickets,
    #[command(flatten)]
    pub embed: Embed,
    #[command(flatten)]
    pub identity: Identity,
    /// The feeds the settings file names, each with its retention (the file's `[broadcasting.named-feeds.NAME]`
    /// tables; no flag or variable: a list of feeds belongs in a file).
    #[arg(skip)]
    pub named_feeds: BTreeMap<FeedName, NamedFeed>,
    /// Who may read and post in which feeds (`read`/`write` of a named feed's table, and the file's
    /// `[broadcasting.feed-access."pattern"]` tables).
    #[arg(skip)]
    pub access: Rules,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A flag or an environment variable clap refused, or `--help`/`--version` (`clap::Error::exit` prints
    /// either as clap means it: help on standard output, an error with the usage on standard error).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read settings file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("settings file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("setting `secret` must be at least 16 characters")]
    WeakSecret,
}

impl Settings {
    /// The settings from this process's arguments, environment and settings file.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(std::env::args_os())
    }

    /// The settings from `args` (the program name first), the environment and the settings file.
    pub fn load_from<I, T>(args: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        // First without the file: it answers --help and --version (before a broken file could stop them), refuses
        // a bad flag or variable, and says which file to read.
        let bare = Self::command().try_get_matches_from(&args)?;
        let path = bare.get_one::<PathBuf>("config").expect("config has a default").clone();
        let named = bare.value_source("config") != Some(ValueSource::DefaultValue);

        let mut command = Self::command();
        let file::Read { given, named_feeds, access } = file::read(&path, named, &command)?;
        for file::Given { id, value } in &given {
            command = command.mut_arg(id, |arg| arg.default_value(value.clone()));
        }
        let matches = command.try_get_matches_from(&args)?;
        let mut settings = Self::from_arg_matches(&matches)?;
        settings.named_feeds = named_feeds;
        settings.access = access;

        // Given by flag or environment (not a default), or by the file (a default only to clap).
        let streams = "max_streams";
        settings.limits.max_streams_given = matches.value_source(streams) != Some(ValueSource::DefaultValue)
            || given.iter().any(|given| given.id == streams);
        if settings.tickets.secret.as_deref().is_some_and(|secret| secret.chars().count() < 16) {
            return Err(SettingsError::WeakSecret);
        }
        Ok(settings)
    }

    /// The backend the `store` setting names (`sqlite`: `DATA_DIR/feed.db`). A store that caps each feed's log on
    /// append (memory, Redis) caps it at the most any feed keeps; retention keeps each to its own.
    pub fn backend(&self) -> Backend {
        let store = &self.store;
        let most =
            self.named_feeds.keys().map(|feed| self.retention_of(feed).keep).fold(self.feed.max_messages, usize::max);
        match store.kind {
            StoreKind::Sqlite => Backend::Sqlite { path: store.data_dir.join("feed.db") },
            StoreKind::Memory => Backend::Memory { max_messages: most },
            StoreKind::Redis => Backend::Redis {
                target: RedisTarget { url: store.redis_url.clone(), prefix: store.redis_prefix.clone() },
                max_messages: most,
                heal_every: store.heal_every,
            },
        }
    }

    /// What the store keeps, and how often it deletes the rest.
    pub fn retention(&self) -> Retention {
        Retention { keep: self.feed.max_messages, max_age: self.feed.max_age, every: self.feed.prune_every }
    }

    /// What the store keeps of `feed`: its own retention where the settings file gives one, else the default.
    pub fn retention_of(&self, feed: &FeedName) -> Retention {
        let default = self.retention();
        match self.named_feeds.get(feed) {
            Some(named) => Retention {
                keep: named.max_messages.unwrap_or(default.keep),
                max_age: named.max_age.unwrap_or(default.max_age),
                every: default.every,
            },
            None => default,
        }
    }

    /// The shortest `max-age` any feed keeps messages for, if any: no cached page may outlive it.
    pub fn horizon(&self) -> Option<std::time::Duration> {
        self.named_feeds.keys().fold(self.feed.max_age, |horizon, feed| {
            match (horizon, self.retention_of(feed).max_age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
    }

    /// The only feeds besides `main` that may exist: the named ones with `feeds = listed`; `None` with `open`.
    pub fn listed_feeds(&self) -> Option<std::collections::BTreeSet<FeedName>> {
        (self.feed.feeds == FeedsMode::Listed).then(|| self.named_feeds.keys().cloned().collect())
    }
}

/// Where the log lives and how appends are announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In memory, one process: lost on restart; keeps at most `max_messages`.
    Memory { max_messages: usize },
    /// A durable SQLite file, one process.
    Sqlite { path: PathBuf },
    /// Redis, shared by every replica that names the same server and prefix; the stream is capped near
    /// `max_messages` on each append, and notices lost on pub/sub are healed every `heal_every`.
    Redis { target: RedisTarget, max_messages: usize, heal_every: Duration },
}

/// Which feeds exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeedsMode {
    /// Any valid name, from its first message.
    Open,
    /// Only `main` and the names the settings file lists.
    Listed,
}

/// A feed the settings file names (`[broadcasting.named-feeds.NAME]`), with its own retention where given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedFeed {
    /// Messages kept, instead of `max-messages`.
    pub max_messages: Option<usize>,
    /// Age limit, instead of `max-age` (`Some(None)`: `off`).
    pub max_age: Option<Option<Duration>>,
    /// Who may read and post in it (`read`, `write`).
    pub access: Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// SQLite in the data directory: survives restarts.
    Sqlite,
    /// In memory: lost on restart.
    Memory,
    /// In Redis: shared by replicas.
    Redis,
}

#[cfg(test)]
mod tests;
