//! Settings: defaults, then the `[broadcasting]` table of the settings file (Leptos.toml), then environment
//! variables, then command-line flags; the later wins. `broadcasting --help` explains each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::server::group::Scope;
use crate::server::link::RedisTarget;
use crate::server::store::retention::Retention;

const DEFAULT_CONFIG: &str = "Leptos.toml";

#[derive(Debug, Parser)]
#[command(name = "broadcasting", version, about = "Broadcasting: a realtime shared feed over Server-Sent Events.")]
pub struct Cli {
    /// Settings file whose [broadcasting] table is read at start-up; a missing default file is fine.
    /// [default: Leptos.toml]
    #[arg(long, env = "BROADCASTING_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: Overrides,
}

/// Every setting once: its doc comment is its `--help`, ending in its default (`[default: X]`, the only place a
/// default is written: `resolve` parses it from there), its attributes its flag and environment variable; the file
/// key is the field name in kebab case. The macro makes `Overrides` (every setting
/// optional: what is not given falls through to the file, then to the default) and the layering `or`.
macro_rules! overrides {
    ($( $(#[$meta:meta])* $field:ident : $ty:ty, )*) => {
        /// Every setting is optional here: what is not given falls through to the file, then to the default.
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Overrides {
            $( $(#[$meta])* pub $field: Option<$ty>, )*
        }

        impl Overrides {
            /// Fills what `self` lacks from `lower`.
            fn or(self, lower: Overrides) -> Overrides {
                Overrides { $( $field: self.$field.or(lower.$field), )* }
            }
        }
    };
}

overrides! {
    /// Address to listen on; port 0 picks a free one. [default: 127.0.0.1:3000]
    #[arg(long, env = "BROADCASTING_ADDR")]
    addr: SocketAddr,
    /// Who shares notifications: `browser` (one group per browser, by cookie) or `everyone`. [default: browser]
    #[arg(long, env = "BROADCASTING_SCOPE", value_enum)]
    scope: Scope,
    /// Longest message accepted, in characters. [default: 2000]
    #[arg(long, env = "BROADCASTING_MAX_MESSAGE_CHARS")]
    max_message_chars: usize,
    /// Most messages one `GET /api/messages` answers. [default: 200]
    #[arg(long, env = "BROADCASTING_PAGE_SIZE")]
    page_size: usize,
    /// Most bytes of JSON one `GET /api/messages` answers; a page ends early rather than exceed it (it always
    /// holds at least one message). [default: 262144]
    #[arg(long, env = "BROADCASTING_PAGE_BYTES")]
    page_bytes: usize,
    /// Where the log lives: `sqlite` (durable, in the data directory), `memory` (lost on restart) or `redis`
    /// (shared by every replica using the same `redis-url` and `redis-prefix`). [default: sqlite]
    #[arg(long, env = "BROADCASTING_STORE", value_enum)]
    store: StoreKind,
    /// Store `redis`: the Redis server (`redis://[:PASSWORD@]HOST:PORT[/DB]`). [default: redis://127.0.0.1:6379]
    #[arg(long, env = "BROADCASTING_REDIS_URL")]
    redis_url: String,
    /// Store `redis`: the key namespace (every key and the notice channel start with `PREFIX:`), so several
    /// deployments can share one Redis. [default: broadcasting]
    #[arg(long, env = "BROADCASTING_REDIS_PREFIX")]
    redis_prefix: String,
    /// Store `redis`: how often a replica compares the log with the notices it delivered and delivers what pub/sub
    /// lost (e.g. `2s`, `500ms`). [default: 2s]
    #[arg(long, env = "BROADCASTING_HEAL_EVERY")]
    heal_every: String,
    /// Retention: messages kept; older ones are deleted in the background. [default: 10000]
    #[arg(long, env = "BROADCASTING_MAX_MESSAGES")]
    max_messages: usize,
    /// Retention: delete messages older than this (e.g. `30d`, `12h`); `off` keeps them regardless of age. [default: off]
    #[arg(long, env = "BROADCASTING_MAX_AGE")]
    max_age: String,
    /// How often retention runs (e.g. `1m`, `500ms`). [default: 1m]
    #[arg(long, env = "BROADCASTING_PRUNE_EVERY")]
    prune_every: String,
    /// Sends a second allowed per ticket and per session group (per ticket only with scope `everyone`);
    /// 0: no limit. [default: 5]
    #[arg(long, env = "BROADCASTING_SEND_RATE")]
    send_rate: u32,
    /// Sends allowed at once before the rate applies. [default: 10]
    #[arg(long, env = "BROADCASTING_SEND_BURST")]
    send_burst: u32,
    /// Joins, sends, event-stream openings and heartbeats (with leaves) a second per client address, each its own
    /// budget (heartbeats: at least enough for max-streams-per-address tabs; shared by replicas on Redis); 0: no
    /// address budgets. [default: 10]
    #[arg(long, env = "BROADCASTING_ADDRESS_RATE")]
    address_rate: u32,
    /// Joins, sends, event-stream openings and heartbeats allowed at once per client address before
    /// `address-rate` applies. [default: 200]
    #[arg(long, env = "BROADCASTING_ADDRESS_BURST")]
    address_burst: u32,
    /// Most event streams open at once per client address; beyond it 429; 0: no cap. [default: 1000]
    #[arg(long, env = "BROADCASTING_MAX_STREAMS_PER_ADDRESS")]
    max_streams_per_address: usize,
    /// Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: IPs or CIDRs, comma-separated
    /// (e.g. `127.0.0.1, 10.0.0.0/8`). [default: none]
    #[arg(long, env = "BROADCASTING_TRUSTED_PROXIES")]
    trusted_proxies: String,
    /// Most event streams (live tabs) open at once in this process; beyond it 503; 0: as many as the open-file
    /// limit allows. [default: 15000, lowered to fit the open-file limit]
    #[arg(long, env = "BROADCASTING_MAX_STREAMS")]
    max_streams: usize,
    /// Most event streams open at once per browser (scope `browser` only); beyond it 429; 0: no cap. [default: 50]
    #[arg(long, env = "BROADCASTING_MAX_STREAMS_PER_BROWSER")]
    max_streams_per_browser: usize,
    /// Time a client has to send a request's headers (e.g. `10s`). [default: 10s]
    #[arg(long, env = "BROADCASTING_HEADER_TIMEOUT")]
    header_timeout: String,
    /// Time a kept-alive connection may wait for its next request after an answer (e.g. `60s`); then it is
    /// closed. [default: 60s]
    #[arg(long, env = "BROADCASTING_IDLE_TIMEOUT")]
    idle_timeout: String,
    /// Time a request (its body included) has to be answered; event streams are exempt. [default: 10s]
    #[arg(long, env = "BROADCASTING_REQUEST_TIMEOUT")]
    request_timeout: String,
    /// Largest request body accepted, in bytes; larger ones are refused with 413. [default: 65536]
    #[arg(long, env = "BROADCASTING_MAX_REQUEST_BYTES")]
    max_request_bytes: usize,
    /// Time a client may take none of what the server sends (an event stream nobody reads) before it is
    /// dropped. [default: 30s]
    #[arg(long, env = "BROADCASTING_WRITE_TIMEOUT")]
    write_timeout: String,
    /// Kernel send buffer of each connection, in bytes; bounds what a client that stopped reading holds, and the
    /// throughput of one response (buffer / round-trip time). [default: 262144]
    #[arg(long, env = "BROADCASTING_SEND_BUFFER_BYTES")]
    send_buffer_bytes: u32,
    /// On SIGTERM/SIGINT: time in-flight requests have before the process exits anyway. [default: 1s]
    #[arg(long, env = "BROADCASTING_SHUTDOWN_GRACE")]
    shutdown_grace: String,
    /// How long a ticket (what a tab gets by joining) is accepted; `off`: for ever. [default: 24h]
    #[arg(long, env = "BROADCASTING_TICKET_LIFETIME")]
    ticket_lifetime: String,
    /// How long a joined tab stays listed as here after its last heartbeat (it beats every third of it); a tab
    /// that crashed or lost the network drops out when it runs out. [default: 30s]
    #[arg(long, env = "BROADCASTING_PRESENCE_LEASE")]
    presence_lease: String,
    /// Most tabs listed as here per ticket (one page load holds one ticket); a new one beyond it pushes out the
    /// ticket's oldest. [default: 3]
    #[arg(long, env = "BROADCASTING_MAX_TABS_PER_TICKET")]
    max_tabs_per_ticket: usize,
    /// Most tabs listed as here per client address (IPv6: per /64), over all groups; a new one beyond it pushes
    /// out the oldest tab of the address's ticket with the most. [default: 1000]
    #[arg(long, env = "BROADCASTING_MAX_TABS_PER_ADDRESS")]
    max_tabs_per_address: usize,
    /// Most tabs listed as here in all; a new one beyond it pushes out the oldest tab of the address with the
    /// most. [default: 100000]
    #[arg(long, env = "BROADCASTING_MAX_TABS")]
    max_tabs: usize,
    /// Secret that signs tickets; without it one is made and kept in the data directory.
    #[arg(long, env = "BROADCASTING_SECRET", hide_env_values = true)]
    secret: String,
    /// Directory for the server's own files (the database `feed.db`, the ticket secret). [default: data]
    #[arg(long, env = "BROADCASTING_DATA_DIR")]
    data_dir: PathBuf,
    /// Log filter, as in RUST_LOG (e.g. `info`, `broadcasting=debug,tower_http=debug`). [default: info]
    #[arg(long, env = "BROADCASTING_LOG")]
    log_level: String,
    /// Where the built site (pkg/, favicon) is served from; cargo-leptos sets LEPTOS_SITE_ROOT. [default: target/site]
    #[arg(long, env = "LEPTOS_SITE_ROOT")]
    site_root: PathBuf,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub scope: Scope,
    pub max_message_chars: usize,
    pub page_size: usize,
    pub page_bytes: usize,
    pub store: StoreKind,
    pub redis_url: String,
    pub redis_prefix: String,
    pub heal_every: Duration,
    pub max_messages: usize,
    /// None: no age limit.
    pub max_age: Option<Duration>,
    pub prune_every: Duration,
    pub send_rate: u32,
    pub send_burst: u32,
    pub address_rate: u32,
    pub address_burst: u32,
    pub max_streams_per_address: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_streams: usize,
    /// `max-streams` was given (not the default): start-up fails rather than lower it to fit the file limit.
    pub max_streams_given: bool,
    pub max_streams_per_browser: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_request_bytes: usize,
    pub write_timeout: Duration,
    pub send_buffer_bytes: u32,
    pub shutdown_grace: Duration,
    /// None: tickets do not expire.
    pub ticket_lifetime: Option<Duration>,
    pub presence_lease: Duration,
    pub max_tabs_per_ticket: usize,
    pub max_tabs_per_address: usize,
    pub max_tabs: usize,
    pub secret: Option<String>,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub site_root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("settings file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("setting `{name}` must be {rule}; got {got}")]
    OutOfRange { name: &'static str, rule: &'static str, got: usize },
    #[error("setting `trusted-proxies` must list IP addresses or CIDR blocks (e.g. 10.0.0.0/8), comma-separated; got {got:?}")]
    Proxy { got: String },
    #[error("setting `secret` must be at least 16 characters")]
    WeakSecret,
    #[error("setting `redis-prefix` must be 1 to 64 characters without spaces or control characters; got {got:?}")]
    RedisPrefix { got: String },
    #[error("setting `{name}` must be a duration such as 30d, 12h or 500ms{off}; got {got:?}")]
    Duration { name: &'static str, off: &'static str, got: String },
}

impl Settings {
    /// The backend the `store` setting names (`sqlite`: `DATA_DIR/feed.db`).
    pub fn backend(&self) -> Backend {
        match self.store {
            StoreKind::Sqlite => Backend::Sqlite { path: self.data_dir.join("feed.db") },
            StoreKind::Memory => Backend::Memory { max_messages: self.max_messages },
            StoreKind::Redis => Backend::Redis {
                target: RedisTarget { url: self.redis_url.clone(), prefix: self.redis_prefix.clone() },
                max_messages: self.max_messages,
                heal_every: self.heal_every,
            },
        }
    }

    /// What the store keeps, and how often it deletes the rest.
    pub fn retention(&self) -> Retention {
        Retention { keep: self.max_messages, max_age: self.max_age, every: self.prune_every }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// SQLite in the data directory: survives restarts.
    Sqlite,
    /// In memory: lost on restart.
    Memory,
    /// In Redis: shared by replicas.
    Redis,
}

/// A setting's value once the stated defaults are in: every setting but `secret` and `trusted-proxies` states one
/// (`every_setting_but_two_states_its_default` holds them to it).
fn stated<T>(value: Option<T>, name: &str) -> T {
    value.unwrap_or_else(|| panic!("`--help` states no default for {name}"))
}

/// The default a setting's help states: `X` of `[default: X]`, up to a comma (what follows explains it).
fn stated_default(help: &str) -> Option<&str> {
    let said = help.split("[default: ").nth(1)?;
    said.split([']', ',']).next().map(str::trim)
}

impl Overrides {
    /// Every setting at the default its `--help` states (`[default: X]`, up to a comma), parsed as that flag would
    /// be: the doc comment above each setting is the one place its default is written.
    fn stated_defaults() -> Overrides {
        use clap::{CommandFactory, Parser};
        let mut argv = vec!["broadcasting".to_owned()];
        for arg in Cli::command().get_arguments() {
            let (Some(long), Some(help)) = (arg.get_long(), arg.get_help().map(ToString::to_string)) else { continue };
            let Some(default) = stated_default(&help) else { continue };
            if long != "config" && default != "none" {
                argv.extend([format!("--{long}"), default.to_owned()]);
            }
        }
        let mut defaults = Cli::try_parse_from(&argv).expect("the defaults `--help` states parse").overrides;
        // Stated as none, or not at all: whatever the environment holds must not pass for a default.
        (defaults.secret, defaults.trusted_proxies) = (None, None);
        defaults
    }
}

fn duration(name: &'static str, raw: &str, off: &'static str) -> Result<Duration, SettingsError> {
    humantime::parse_duration(raw.trim()).ok().filter(|d| !d.is_zero()).ok_or_else(|| SettingsError::Duration {
        name,
        off,
        got: raw.to_owned(),
    })
}

/// A key namespace: no spaces (they would split a notice), nothing invisible.
fn redis_prefix(raw: String) -> Result<String, SettingsError> {
    let fine = (1..=64).contains(&raw.chars().count()) && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if fine {
        Ok(raw)
    } else {
        Err(SettingsError::RedisPrefix { got: raw })
    }
}

/// `10.0.0.1, 10.1.0.0/16, ::1`: addresses are blocks of one.
fn proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, SettingsError> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let net = entry.parse::<ipnet::IpNet>().ok();
            net.or_else(|| entry.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
                .ok_or_else(|| SettingsError::Proxy { got: entry.to_owned() })
        })
        .collect()
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    broadcasting: Overrides,
}

fn read_file(path: &Path, must_exist: bool) -> Result<Overrides, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if !must_exist && err.kind() == std::io::ErrorKind::NotFound => return Ok(Overrides::default()),
        Err(source) => return Err(SettingsError::Read { path: path.into(), source }),
    };
    // Other tables (cargo-leptos' own) may share the file: only [broadcasting] is ours.
    let table: toml::Table =
        toml::from_str(&text).map_err(|err| SettingsError::Parse { path: path.into(), message: err.to_string() })?;
    let ours = toml::Table::from_iter(table.get("broadcasting").map(|t| ("broadcasting".to_owned(), t.clone())));
    let file: File = ours
        .try_into()
        .map_err(|err: toml::de::Error| SettingsError::Parse { path: path.into(), message: err.to_string() })?;
    Ok(file.broadcasting)
}

fn in_range(
    name: &'static str,
    got: usize,
    min: usize,
    max: usize,
    rule: &'static str,
) -> Result<usize, SettingsError> {
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(SettingsError::OutOfRange { name, rule, got })
    }
}

impl Settings {
    pub fn from_cli(cli: Cli) -> Result<Self, SettingsError> {
        let file = match &cli.config {
            Some(path) => read_file(path, true)?,
            None => read_file(Path::new(DEFAULT_CONFIG), false)?,
        };
        Self::resolve(cli.overrides.or(file))
    }

    /// The settings in force: `given`, then for what it lacks the default that `--help` states.
    pub fn resolve(given: Overrides) -> Result<Self, SettingsError> {
        if given.secret.as_deref().is_some_and(|s| s.chars().count() < 16) {
            return Err(SettingsError::WeakSecret);
        }
        let max_streams_given = given.max_streams.is_some();
        let given = given.or(Overrides::stated_defaults());
        Ok(Settings {
            addr: stated(given.addr, "addr"),
            scope: stated(given.scope, "scope"),
            max_message_chars: in_range(
                "max-message-chars",
                stated(given.max_message_chars, "max_message_chars"),
                1,
                1_000_000,
                "1 to 1000000",
            )?,
            page_size: in_range("page-size", stated(given.page_size, "page_size"), 1, 10_000, "1 to 10000")?,
            page_bytes: in_range(
                "page-bytes",
                stated(given.page_bytes, "page_bytes"),
                1_024,
                64 * 1_048_576,
                "1024 to 67108864",
            )?,
            store: stated(given.store, "store"),
            redis_url: stated(given.redis_url, "redis_url"),
            redis_prefix: redis_prefix(stated(given.redis_prefix, "redis_prefix"))?,
            heal_every: duration("heal-every", stated(given.heal_every.as_deref(), "heal_every"), "")?,
            max_messages: in_range(
                "max-messages",
                stated(given.max_messages, "max_messages"),
                1,
                1_000_000_000,
                "1 to 1000000000",
            )?,
            max_age: match given.max_age.as_deref().map(str::trim) {
                None | Some("off") => None,
                Some(raw) => Some(duration("max-age", raw, " or off")?),
            },
            prune_every: duration("prune-every", stated(given.prune_every.as_deref(), "prune_every"), "")?,
            send_rate: stated(given.send_rate, "send_rate"),
            send_burst: in_range(
                "send-burst",
                stated(given.send_burst, "send_burst") as usize,
                1,
                u32::MAX as usize,
                "at least 1",
            )? as u32,
            address_rate: stated(given.address_rate, "address_rate"),
            address_burst: in_range(
                "address-burst",
                stated(given.address_burst, "address_burst") as usize,
                1,
                u32::MAX as usize,
                "at least 1",
            )? as u32,
            max_streams_per_address: stated(given.max_streams_per_address, "max_streams_per_address"),
            trusted_proxies: proxies(given.trusted_proxies.as_deref().unwrap_or(""))?,
            max_streams: stated(given.max_streams, "max_streams"),
            max_streams_given,
            max_streams_per_browser: stated(given.max_streams_per_browser, "max_streams_per_browser"),
            header_timeout: duration("header-timeout", stated(given.header_timeout.as_deref(), "header_timeout"), "")?,
            idle_timeout: duration("idle-timeout", stated(given.idle_timeout.as_deref(), "idle_timeout"), "")?,
            request_timeout: duration(
                "request-timeout",
                stated(given.request_timeout.as_deref(), "request_timeout"),
                "",
            )?,
            max_request_bytes: in_range(
                "max-request-bytes",
                stated(given.max_request_bytes, "max_request_bytes"),
                1_024,
                64 * 1_048_576,
                "1024 to 67108864",
            )?,
            write_timeout: duration("write-timeout", stated(given.write_timeout.as_deref(), "write_timeout"), "")?,
            send_buffer_bytes: in_range(
                "send-buffer-bytes",
                stated(given.send_buffer_bytes, "send_buffer_bytes") as usize,
                4_096,
                16_777_216,
                "4096 to 16777216",
            )? as u32,
            shutdown_grace: duration("shutdown-grace", stated(given.shutdown_grace.as_deref(), "shutdown_grace"), "")?,
            ticket_lifetime: match given.ticket_lifetime.as_deref().map(str::trim) {
                Some("off") => None,
                raw => Some(duration("ticket-lifetime", stated(raw, "ticket_lifetime"), " or off")?),
            },
            presence_lease: duration("presence-lease", stated(given.presence_lease.as_deref(), "presence_lease"), "")?,
            max_tabs_per_ticket: in_range(
                "max-tabs-per-ticket",
                stated(given.max_tabs_per_ticket, "max_tabs_per_ticket"),
                1,
                1_000,
                "1 to 1000",
            )?,
            max_tabs_per_address: in_range(
                "max-tabs-per-address",
                stated(given.max_tabs_per_address, "max_tabs_per_address"),
                1,
                10_000_000,
                "1 to 10000000",
            )?,
            max_tabs: in_range("max-tabs", stated(given.max_tabs, "max_tabs"), 1, 10_000_000, "1 to 10000000")?,
            secret: given.secret,
            data_dir: stated(given.data_dir, "data_dir"),
            log_level: stated(given.log_level, "log_level"),
            site_root: stated(given.site_root, "site_root"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's settings table, row by row: (flag, environment variable, default when it is one literal value).
    fn readme_settings() -> Vec<(String, String, Option<String>)> {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
        let table = readme.split("\n## Settings\n").nth(1).expect("a Settings section");
        let literal = |cell: &str| {
            let cell = cell.trim();
            let inner = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`'))?;
            (!inner.contains('`')).then(|| inner.to_owned())
        };
        table
            .lines()
            .skip_while(|line| !line.starts_with("| setting"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let flag = cells[1].rsplit('`').nth(1).expect("a `--flag`").to_owned();
                (flag, literal(cells[2]).expect("an environment variable"), literal(cells[3]))
            })
            .collect()
    }

    /// `resolve` takes every default from `--help`; it panics on a setting whose help states none.
    #[test]
    fn every_setting_but_two_states_its_default() {
        let settings = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!(settings.addr, SocketAddr::from(([127, 0, 0, 1], 3000)));
        assert_eq!((settings.max_age, settings.ticket_lifetime), (None, Some(Duration::from_secs(24 * 3600))));
        assert_eq!(
            (settings.max_streams, settings.max_streams_given, settings.trusted_proxies.len()),
            (15_000, false, 0)
        );
        assert_eq!((settings.prune_every, settings.send_buffer_bytes), (Duration::from_secs(60), 262_144));
        assert_eq!((settings.site_root, settings.data_dir), (PathBuf::from("target/site"), PathBuf::from("data")));
        assert_eq!(settings.secret, None);
        assert_eq!(settings.presence_lease, Duration::from_secs(30));
        assert_eq!(
            (settings.max_tabs_per_ticket, settings.max_tabs_per_address, settings.max_tabs),
            (3, 1000, 100_000)
        );
    }

    #[test]
    fn the_readme_settings_table_matches_help() {
        use clap::CommandFactory;
        let command = Cli::command();
        let help: Vec<(String, String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let flag = format!("--{}", arg.get_long()?);
                let env = arg.get_env()?.to_string_lossy().into_owned();
                Some((flag, env, arg.get_help().map(ToString::to_string).unwrap_or_default()))
            })
            .collect();
        let readme = readme_settings();
        assert!(readme.len() >= 28, "every row read: {readme:?}");
        let flags = |rows: Vec<&String>| rows.into_iter().cloned().collect::<std::collections::BTreeSet<_>>();
        assert_eq!(
            flags(readme.iter().map(|row| &row.0).collect()),
            flags(help.iter().map(|row| &row.0).collect()),
            "README and --help list the same flags"
        );
        for (flag, env, default) in readme {
            let (_, help_env, text) = help.iter().find(|row| row.0 == flag).unwrap();
            assert_eq!(&env, help_env, "{flag}: environment variable");
            if let Some(default) = default {
                assert_eq!(
                    stated_default(text),
                    Some(default.as_str()),
                    "{flag}: README default, --help says {text:?}"
                );
            }
        }
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Leptos.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let defaults = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!((defaults.page_size, defaults.max_message_chars, defaults.scope), (200, 2000, Scope::Browser));
        assert_eq!((defaults.store, defaults.max_messages, defaults.max_age), (StoreKind::Sqlite, 10_000, None));

        let (_dir, path) = write(
            "[package.metadata.leptos]\noutput-name = \"x\"\n[broadcasting]\npage-size = 50\nscope = \"everyone\"\n",
        );
        let cli =
            Cli::try_parse_from(["broadcasting", "--config", path.to_str().unwrap(), "--page-size", "7"]).unwrap();
        let settings = Settings::from_cli(cli).unwrap();
        assert_eq!(settings.page_size, 7);
        assert_eq!(settings.scope, Scope::Everyone);
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let (_dir, path) = write("[broadcasting]\npage-sise = 5\n");
        let err = read_file(&path, true).unwrap_err().to_string();
        assert!(err.contains("page-sise"), "{err}");
        let err = Settings::resolve(Overrides { page_size: Some(0), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("page-size"), "{err}");
        assert!(Settings::resolve(Overrides { secret: Some("short".into()), ..Default::default() }).is_err());
        assert!(read_file(Path::new("/nonexistent/Leptos.toml"), true).is_err());
        assert!(read_file(Path::new("/nonexistent/Leptos.toml"), false).is_ok());
        let age = |raw: &str| Settings::resolve(Overrides { max_age: Some(raw.into()), ..Default::default() });
        assert_eq!(age("30d").unwrap().max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(age("off").unwrap().max_age, None);
        assert!(age("soon").unwrap_err().to_string().contains("max-age"));
        assert!(Settings::resolve(Overrides { prune_every: Some("0s".into()), ..Default::default() }).is_err());
    }

    #[test]
    fn the_redis_backend_takes_url_prefix_and_heal_period() {
        let defaults = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!((defaults.redis_prefix.as_str(), defaults.heal_every), ("broadcasting", Duration::from_secs(2)));
        let given = Overrides {
            store: Some(StoreKind::Redis),
            redis_url: Some("redis://10.0.0.5:6380/2".into()),
            redis_prefix: Some("blue".into()),
            heal_every: Some("500ms".into()),
            max_messages: Some(50),
            ..Default::default()
        };
        let target = RedisTarget { url: "redis://10.0.0.5:6380/2".into(), prefix: "blue".into() };
        let backend = Backend::Redis { target, max_messages: 50, heal_every: Duration::from_millis(500) };
        assert_eq!(Settings::resolve(given).unwrap().backend(), backend);
        let prefix = |raw: &str| Settings::resolve(Overrides { redis_prefix: Some(raw.into()), ..Default::default() });
        assert!(prefix("a b").unwrap_err().to_string().contains("redis-prefix"));
        assert!(prefix("").is_err());
        assert!(Settings::resolve(Overrides { heal_every: Some("0s".into()), ..Default::default() }).is_err());
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks() {
        let trusted =
            |raw: &str| Settings::resolve(Overrides { trusted_proxies: Some(raw.into()), ..Default::default() });
        assert!(Settings::resolve(Overrides::default()).unwrap().trusted_proxies.is_empty());
        let nets = trusted("127.0.0.1, 10.0.0.0/8,::1").unwrap().trusted_proxies;
        let strings: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(strings, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let err = trusted("10.0.0.0/8, proxy.example").unwrap_err().to_string();
        assert!(err.contains("proxy.example") && err.contains("trusted-proxies"), "{err}");
    }
}
