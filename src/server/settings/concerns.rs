//! Every setting, once, grouped by concern: a field's doc comment is its `--help`, its attributes its flag,
//! environment variable, default and parser, its type what the server uses. Each struct is one heading of
//! `--help` and one table of the settings file (`[broadcasting.feed]` holds `Feed`'s settings: the table is the
//! struct's name in lower case, the key the flag without `--`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;

use super::values::{
    duration, duration_or_off, join_mode, origins, proxies, redis_prefix, refresh_url, token_algorithm,
};
use super::{FeedsMode, StoreKind};
use crate::server::group::Scope;
use crate::server::identity::TokenAlgorithm;
use crate::shared::domain::JoinMode;

/// The process: where it listens, what it serves, what it logs, how it stops.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Server")]
pub struct Server {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "BROADCASTING_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Where the built site (pkg/, favicon) is served from; cargo-leptos sets LEPTOS_SITE_ROOT.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// Log filter, as in RUST_LOG (e.g. `info`, `broadcasting=debug,tower_http=debug`).
    #[arg(long, env = "BROADCASTING_LOG", default_value = "info")]
    pub log_level: String,
    /// On SIGTERM/SIGINT: time in-flight requests have before the process exits anyway.
    #[arg(long, env = "BROADCASTING_SHUTDOWN_GRACE", default_value = "1s", value_parser = duration)]
    pub shutdown_grace: Duration,
}

/// Each connection and request: deadlines, sizes, and whose forwarded addresses are believed.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Connections")]
pub struct Connections {
    /// Time a client has to send a request's headers (e.g. `10s`).
    #[arg(long, env = "BROADCASTING_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request after an answer (e.g. `60s`); then it is
    /// closed.
    #[arg(long, env = "BROADCASTING_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Time a request (its body included) has to be answered; event streams are exempt.
    #[arg(long, env = "BROADCASTING_REQUEST_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Time a client may take none of what the server sends (an event stream nobody reads) before it is
    /// dropped.
    #[arg(long, env = "BROADCASTING_WRITE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub write_timeout: Duration,
    /// Largest request body accepted, in bytes; larger ones are refused with 413.
    #[arg(long, env = "BROADCASTING_MAX_REQUEST_BYTES", default_value = "65536",
        value_parser = RangedU64ValueParser::<usize>::new().range(1_024..=64 * 1_048_576))]
    pub max_request_bytes: usize,
    /// Kernel send buffer of each connection, in bytes; bounds what a client that stopped reading holds, and the
    /// throughput of one response (buffer / round-trip time).
    #[arg(long, env = "BROADCASTING_SEND_BUFFER_BYTES", default_value = "262144",
        value_parser = RangedU64ValueParser::<u32>::new().range(4_096..=16_777_216))]
    pub send_buffer_bytes: u32,
    /// Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: IPs or CIDRs, comma-separated
    /// (e.g. `127.0.0.1, 10.0.0.0/8`); none by default.
    // The whole list is one value (`::std::vec::Vec` keeps clap from reading it as a repeated flag), so the
    // flag, the environment and the file all take the same comma-separated text, and an empty one means none.
    #[arg(long, env = "BROADCASTING_TRUSTED_PROXIES", default_value = "", hide_default_value = true,
        value_parser = proxies)]
    pub trusted_proxies: ::std::vec::Vec<ipnet::IpNet>,
}

/// What the feed accepts, answers and keeps, and who shares it.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Feed")]
pub struct Feed {
    /// Who shares notifications: `browser` (one group per browser, by cookie) or `everyone`.
    #[arg(long, env = "BROADCASTING_SCOPE", value_enum, default_value = "browser")]
    pub scope: Scope,
    /// Longest message accepted, in characters.
    #[arg(long, env = "BROADCASTING_MAX_MESSAGE_CHARS", default_value = "2000",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_message_chars: usize,
    /// Most messages one `GET /api/messages` answers.
    #[arg(long, env = "BROADCASTING_PAGE_SIZE", default_value = "200",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub page_size: usize,
    /// Most bytes of JSON one `GET /api/messages` answers; a page ends early rather than exceed it (it always
    /// holds at least one message).
    #[arg(long, env = "BROADCASTING_PAGE_BYTES", default_value = "262144",
        value_parser = RangedU64ValueParser::<usize>::new().range(1_024..=64 * 1_048_576))]
    pub page_bytes: usize,
    /// Retention: messages kept; older ones are deleted in the background.
    #[arg(long, env = "BROADCASTING_MAX_MESSAGES", default_value = "10000",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000_000))]
    pub max_messages: usize,
    /// Retention: delete messages older than this (e.g. `30d`, `12h`); `off` keeps them regardless of age.
    // `::std::option::Option`: `off` is a value (None), not an absent flag.
    #[arg(long, env = "BROADCASTING_MAX_AGE", default_value = "off", value_parser = duration_or_off)]
    pub max_age: ::std::option::Option<Duration>,
    /// How often retention runs (e.g. `1m`, `500ms`).
    #[arg(long, env = "BROADCASTING_PRUNE_EVERY", default_value = "1m", value_parser = duration)]
    pub prune_every: Duration,
    /// Which feeds exist: `open` (any valid name, from its first message) or `listed` (only `main` and the names
    /// of the settings file's `[broadcasting.named-feeds.NAME]` tables; others are 404).
    #[arg(long, env = "BROADCASTING_FEEDS", value_enum, default_value = "open")]
    pub feeds: FeedsMode,
    /// Most feeds holding messages; past it a send to a new feed is refused (503, as a full server).
    #[arg(long, env = "BROADCASTING_MAX_FEEDS", default_value = "100000",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    pub max_feeds: usize,
}

/// Where the log lives, and the server's own files.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Store")]
pub struct Store {
    /// Where the log lives: `sqlite` (durable, in the data directory), `memory` (lost on restart) or `redis`
    /// (shared by every replica using the same `redis-url` and `redis-prefix`).
    #[arg(
        id = "store",
        long = "store",
        value_name = "STORE",
        env = "BROADCASTING_STORE",
        value_enum,
        default_value = "sqlite"
    )]
    pub kind: StoreKind,
    /// Directory for the server's own files (the database `feed.db`, the ticket secret).
    #[arg(long, env = "BROADCASTING_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Store `redis`: the Redis server (`redis://[:PASSWORD@]HOST:PORT[/DB]`).
    #[arg(long, env = "BROADCASTING_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Store `redis`: the key namespace (every key and the notice channel start with `PREFIX:`), so several
    /// deployments can share one Redis.
    #[arg(long, env = "BROADCASTING_REDIS_PREFIX", default_value = "broadcasting", value_parser = redis_prefix)]
    pub redis_prefix: String,
    /// Store `redis`: how often a replica compares the log with the notices it delivered and delivers what pub/sub
    /// lost (e.g. `2s`, `500ms`).
    #[arg(long, env = "BROADCASTING_HEAL_EVERY", default_value = "2s", value_parser = duration)]
    pub heal_every: Duration,
}

/// What one sender, one address, one browser and the whole process may use.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Sends a second allowed per ticket and per session group (per ticket only with scope `everyone`);
    /// 0: no limit.
    #[arg(long, env = "BROADCASTING_SEND_RATE", default_value = "5")]
    pub send_rate: u32,
    /// Sends allowed at once before the rate applies.
    #[arg(long, env = "BROADCASTING_SEND_BURST", default_value = "10",
        value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    pub send_burst: u32,
    /// Joins, sends, event-stream openings and heartbeats (with leaves) a second per client address, each its own
    /// budget (heartbeats: at least enough for max-streams-per-address tabs; shared by replicas on Redis); 0: no
    /// address budgets.
    #[arg(long, env = "BROADCASTING_ADDRESS_RATE", default_value = "10")]
    pub address_rate: u32,
    /// Joins, sends, event-stream openings and heartbeats allowed at once per client address before
    /// `address-rate` applies.
    #[arg(long, env = "BROADCASTING_ADDRESS_BURST", default_value = "200",
        value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    pub address_burst: u32,
    /// Most event streams (live tabs) open at once in this process; beyond it 503; 0: as many as the open-file
    /// limit allows. The default is lowered to fit the open-file limit; a value given that does not fit stops
    /// the start.
    #[arg(long, env = "BROADCASTING_MAX_STREAMS", default_value = "15000")]
    pub max_streams: usize,
    /// `max-streams` was given (by flag, environment or file), not defaulted: start-up fails rather than lower it
    /// to fit the open-file limit. Set by `Settings::load_from` from where clap found the value.
    #[arg(skip)]
    pub max_streams_given: bool,
    /// Most event streams open at once per client address; beyond it 429; 0: no cap.
    #[arg(long, env = "BROADCASTING_MAX_STREAMS_PER_ADDRESS", default_value = "1000")]
    pub max_streams_per_address: usize,
    /// Most event streams open at once per browser (scope `browser` only); beyond it 429; 0: no cap.
    #[arg(long, env = "BROADCASTING_MAX_STREAMS_PER_BROWSER", default_value = "50")]
    pub max_streams_per_browser: usize,
    /// Most feeds one event stream carries (`/events?feed=a&feed=b…`: a browser's one stream serves every feed its
    /// tabs show); beyond it 400.
    #[arg(long, env = "BROADCASTING_MAX_FEEDS_PER_STREAM", default_value = "64",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub max_feeds_per_stream: usize,
    /// New feeds (a first message to a name that held none) per client address per hour (IPv6: per /64; shared by
    /// replicas on Redis); 0: no budget.
    #[arg(long, env = "BROADCASTING_NEW_FEEDS_PER_HOUR", default_value = "10")]
    pub new_feeds_per_hour: u32,
}

/// Who is listed as here, for how long, and how many.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Presence")]
pub struct Presence {
    /// How long a joined tab stays listed as here after its last heartbeat (it beats every third of it); a tab
    /// that crashed or lost the network drops out when it runs out.
    #[arg(long, env = "BROADCASTING_PRESENCE_LEASE", default_value = "30s", value_parser = duration)]
    pub presence_lease: Duration,
    /// Most tabs listed as here per ticket (one page load holds one ticket); a new one beyond it pushes out the
    /// ticket's oldest.
    #[arg(long, env = "BROADCASTING_MAX_TABS_PER_TICKET", default_value = "3",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000))]
    pub max_tabs_per_ticket: usize,
    /// Most tabs listed as here per client address (IPv6: per /64), over all groups; a new one beyond it pushes
    /// out the oldest tab of the address's ticket with the most.
    #[arg(long, env = "BROADCASTING_MAX_TABS_PER_ADDRESS", default_value = "1000",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub max_tabs_per_address: usize,
    /// Most tabs listed as here in all; a new one beyond it pushes out the oldest tab of the address with the
    /// most.
    #[arg(long, env = "BROADCASTING_MAX_TABS", default_value = "100000",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub max_tabs: usize,
}

/// The tickets a tab gets by joining: what signs them and how long they hold.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Tickets")]
pub struct Tickets {
    /// Secret that signs tickets (at least 16 characters); without it one is made and kept in the data directory.
    // Its length is checked after parsing (`Settings::load_from`), not by a value parser: clap's error for a
    // refused value quotes the value, and a secret must not reach the terminal or a log.
    #[arg(long, env = "BROADCASTING_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// How long a ticket (what a tab gets by joining) is accepted; `off`: for ever.
    #[arg(long, env = "BROADCASTING_TICKET_LIFETIME", default_value = "24h", value_parser = duration_or_off)]
    pub ticket_lifetime: ::std::option::Option<Duration>,
}

/// Who may show the feed in their own pages (`/f/{feed}/embed` in an iframe).
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Embed")]
pub struct Embed {
    /// Origins whose pages may frame the embed (`/f/{feed}/embed`, `/embed`), comma-separated, e.g.
    /// `https://blog.example, https://*.example.com`; none by default: nobody may. Every other page refuses to be
    /// framed whatever this says.
    // One value, as `trusted-proxies`: the flag, the environment and the file take the same list.
    #[arg(long, env = "BROADCASTING_EMBED_ORIGINS", default_value = "", hide_default_value = true,
        value_parser = origins)]
    pub embed_origins: ::std::vec::Vec<String>,
}

/// Who may join, and how the tokens of the deployer's backend are verified (`server::identity`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Identity")]
pub struct Identity {
    /// How tabs join: `anonymous` (a name typed in the form), `token` (only with a token signed by the deployer's
    /// backend) or `both`.
    #[arg(long, env = "BROADCASTING_JOIN", default_value = "anonymous", value_parser = join_mode)]
    pub join: JoinMode,
    /// HS256: the secret the deployer's backend signs tokens with (at least 32 bytes).
    // Checked after parsing, like `secret`: a refused value must not reach the terminal or a log.
    #[arg(long, env = "BROADCASTING_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// HS256: a file holding that secret (surrounding whitespace ignored), instead of `token-secret`.
    #[arg(long, env = "BROADCASTING_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,
    /// RS256 or EdDSA: the deployer's public key, a PEM file (`-----BEGIN PUBLIC KEY-----`).
    #[arg(long, env = "BROADCASTING_TOKEN_PUBLIC_KEY_FILE")]
    pub token_public_key_file: Option<PathBuf>,
    /// The one algorithm tokens are signed with: `HS256` (with a secret), `RS256` or `EdDSA` (with a public key);
    /// a token signed otherwise is refused.
    #[arg(long, env = "BROADCASTING_TOKEN_ALGORITHM", default_value = "HS256", value_parser = token_algorithm)]
    pub token_algorithm: TokenAlgorithm,
    /// A token must name this audience in its `aud`; unset: a token that names any audience is refused.
    #[arg(long, env = "BROADCASTING_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// A token must name this issuer as its `iss`; unset: any issuer.
    #[arg(long, env = "BROADCASTING_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,
    /// Clock skew allowed between the deployer's backend and this server when checking a token's `exp` and `nbf`.
    #[arg(long, env = "BROADCASTING_TOKEN_LEEWAY", default_value = "30s", value_parser = duration)]
    pub token_leeway: Duration,
    /// Where the page asks for a new token shortly before a sign-in expires (a path here, or an http(s) URL, asked
    /// with the browser's cookies, answering `{"token": "..."}`); unset: the page says the sign-in expired.
    #[arg(long, env = "BROADCASTING_TOKEN_REFRESH_URL", value_parser = refresh_url)]
    pub token_refresh_url: Option<String>,
    /// The publish API's keys: a TOML file of `[[key]]` entries (name, SHA-256 hash, feeds, per-minute budget),
    /// read again on SIGHUP and when it changes; unset: the API takes no key (401).
    #[arg(long, env = "BROADCASTING_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
}
