//! The one backend factory: everything that differs between backends is made here, from the settings, and nowhere
//! else: the store, the broker and the hub it feeds, presence, the send budgets, the per-browser stream leases, the
//! ticket secret, whose turn it is to prune, and where the per-address budgets are kept. The rest of the server
//! holds these behind their traits (`FeedStore`, `Broker`, `Presence`, `SharedBudgets`, `pruning::Turn`) or as
//! plain values, and never asks which backend runs.
//!
//! - Memory and SQLite: one process. The broker delivers in-process; presence and budgets are tables in memory;
//!   the ticket secret is a file in the data directory (unless one is configured).
//! - Redis: replicas on one Redis (`link::Link`). The append script announces; presence, send budgets, stream
//!   leases, address budgets and the retention lease are Redis scripts; the replicas agree on one ticket secret.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::server::broker::{Broker, LocalBroker, RedisBroker};
use crate::server::budget::SharedBudgets;
use crate::server::hub::Hub;
use crate::server::link::{Link, RedisTarget};
use crate::server::pages::PageCache;
use crate::server::presence::redis::RedisPresence;
use crate::server::presence::{Caps, MemoryPresence, Presence};
use crate::server::pruning::Turn;
use crate::server::replicas::retention_lease::RetentionLease;
use crate::server::replicas::send_limit::{RedisBudget, RedisThrottle};
use crate::server::replicas::stream_leases::{StreamLeases, LEASE, RENEW_EVERY};
use crate::server::replicas::{replica_id, secret};
use crate::server::settings::{Backend, Settings};
use crate::server::store::{FeedStore, MemoryStore, OpenError, RedisStore, SqliteStore};
use crate::server::throttle::{LocalThrottle, SendThrottle};
use crate::server::ticket::TicketKeys;

/// Per-subscriber notification buffer; a subscriber further behind is coalesced to the latest id.
const FANOUT_CAPACITY: usize = 64;
/// Distinct pages of the log shared between two changes of it (see `pages`).
const SHARED_PAGES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Sqlite(#[from] OpenError),
    #[error("cannot use Redis: {0}")]
    Redis(String),
    #[error("cannot load or create the ticket secret in {dir}: {source}")]
    Secret { dir: PathBuf, source: std::io::Error },
    #[error(transparent)]
    SharedSecret(#[from] secret::SecretError),
}

/// Everything backend-specific the server runs on.
pub struct Parts {
    pub store: Arc<dyn FeedStore>,
    /// This process's subscribers, fed by `broker`.
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn Presence>,
    /// Send budgets per ticket and per group; `None`: no limit.
    pub throttle: Option<SendThrottle>,
    /// The per-browser stream cap kept across replicas; `None`: counted in this process's hub.
    pub stream_leases: Option<Arc<StreamLeases>>,
    pub tickets: TicketKeys,
    /// Where the per-address budgets are kept when not in this process.
    pub address_budgets: Option<Arc<dyn SharedBudgets>>,
    /// Whose turn it is to prune; `None`: this process is alone on the log.
    pub turn: Option<Arc<dyn Turn>>,
}

/// Whether this server keeps files in the data directory (a SQLite log, or a ticket secret of its own), which one
/// server at a time may hold. Replicas on Redis agree on their secret through Redis.
pub fn keeps_files(settings: &Settings) -> bool {
    match settings.backend() {
        Backend::Sqlite { .. } => true,
        Backend::Memory { .. } => settings.tickets.secret.is_none(),
        Backend::Redis { .. } => false,
    }
}

/// Opens the backend the settings name. Redis need not be up: its parts connect lazily (503 until it answers) and
/// the broker's receiver keeps trying; only a malformed URL, or replicas that disagree on the secret, fail here.
pub async fn open(settings: &Settings) -> Result<Parts, BackendError> {
    let pages = PageCache::new(SHARED_PAGES).expiring(settings.horizon());
    let hub = Arc::new(Hub::new(FANOUT_CAPACITY, Arc::new(pages)));
    // With scope `everyone` every visitor is one group: the per-browser budgets and stream cap do not apply.
    let per_browser = settings.feed.scope == crate::server::group::Scope::Browser;
    let caps = presence_caps(settings);
    let store: Arc<dyn FeedStore> = match settings.backend() {
        Backend::Memory { max_messages } => Arc::new(MemoryStore::new(max_messages)),
        Backend::Sqlite { path } => Arc::new(SqliteStore::open(&path)?),
        Backend::Redis { target, max_messages, heal_every } => {
            return open_redis(settings, hub, &target, max_messages, heal_every, per_browser, caps).await
        }
    };
    let tickets = TicketKeys::load(settings.tickets.secret.as_deref(), &settings.store.data_dir)
        .map_err(|source| BackendError::Secret { dir: settings.store.data_dir.clone(), source })?;
    Ok(Parts {
        broker: Arc::new(LocalBroker::new(store.clone(), hub.clone())),
        store,
        hub,
        presence: Arc::new(MemoryPresence::new(caps)),
        throttle: LocalThrottle::new(settings.limits.send_rate, settings.limits.send_burst, per_browser)
            .map(SendThrottle::Local),
        stream_leases: None,
        tickets,
        address_budgets: None,
        turn: None,
    })
}

/// Replicas on one Redis: agrees on the ticket secret with the other replicas (or refuses to start), and starts the
/// tasks that keep the secret, the stream leases and the broker's receiver.
async fn open_redis(
    settings: &Settings,
    hub: Arc<Hub>,
    target: &RedisTarget,
    max_messages: usize,
    heal_every: Duration,
    per_browser: bool,
    caps: Caps,
) -> Result<Parts, BackendError> {
    let link = Link::open(target).map_err(BackendError::Redis)?;
    let store = Arc::new(RedisStore::new(link.clone(), max_messages));
    tokio::spawn(store.clone().report_start(target.url.clone()));
    // One name for this process in every lease it holds and every notice it signs.
    let replica = replica_id();
    let broker = RedisBroker::start(link.clone(), store.clone(), hub.clone(), heal_every, replica.clone()).await;
    let agreed =
        secret::agree(link.clone(), settings.tickets.secret.as_deref(), secret::OFFER_EVERY, secret::REACH_WITHIN)
            .await?;
    tokio::spawn(agreed.guard.run());
    let cap = if per_browser { settings.limits.max_streams_per_browser } else { 0 };
    let stream_leases = (cap > 0).then(|| {
        let (leases, keeper) = StreamLeases::new(link.clone(), replica.clone(), cap, LEASE, RENEW_EVERY);
        tokio::spawn(keeper.run());
        leases
    });
    let throttle = RedisThrottle::new(link.clone(), settings.limits.send_rate, settings.limits.send_burst, per_browser);
    Ok(Parts {
        store,
        hub,
        broker,
        presence: Arc::new(RedisPresence::new(link.clone(), caps)),
        throttle: throttle.map(SendThrottle::Redis),
        stream_leases,
        tickets: TicketKeys::new(agreed.secret),
        address_budgets: Some(Arc::new(RedisBudget::new(link.clone()))),
        turn: Some(Arc::new(RetentionLease::new(link, replica, settings.feed.prune_every))),
    })
}

/// How many tabs presence lists per ticket, per address, per group and in all.
fn presence_caps(settings: &Settings) -> Caps {
    Caps {
        per_ticket: settings.presence.max_tabs_per_ticket,
        per_network: settings.presence.max_tabs_per_address,
        total: settings.presence.max_tabs,
        ..Caps::default()
    }
}
