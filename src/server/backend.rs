//! The one backend factory: which store and which bus run, from one typed setting. The rest of the server holds
//! the parts behind their traits (`FeedStore`, `Bus`) and the concrete `Hub` every backend shares, and never asks
//! which backend it is. A backend behind an optional feature (a cross-process bus) is `#[cfg]`-gated here and
//! nowhere else.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::server::bus::redis::{Receiver, RedisBus};
use crate::server::bus::{Bus, LocalBus};
use crate::server::hub::Hub;
use crate::server::pages::PageCache;
use crate::server::store::redis::{self as redis_store, RedisTarget};
use crate::server::store::{FeedStore, MemoryStore, OpenError, RedisStore, SqliteStore};

/// Per-subscriber notification buffer; a subscriber further behind is coalesced to the latest id.
const FANOUT_CAPACITY: usize = 64;
/// Distinct pages of the log shared between two changes of it (see `pages`).
const SHARED_PAGES: usize = 64;

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

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Sqlite(#[from] OpenError),
    #[error("cannot use Redis: {0}")]
    Redis(String),
}

/// What a backend provides.
pub struct Parts {
    pub store: Arc<dyn FeedStore>,
    /// This process's subscribers, fed by `bus`.
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
}

/// Opens the store and connects the bus to a fresh hub. Redis need not be up: the store connects lazily (503
/// until it answers) and the bus's receiver keeps trying; only a malformed URL fails here.
pub async fn open(backend: &Backend) -> Result<Parts, BackendError> {
    let hub = Arc::new(Hub::new(FANOUT_CAPACITY, Arc::new(PageCache::new(SHARED_PAGES))));
    let (store, bus): (Arc<dyn FeedStore>, Arc<dyn Bus>) = match backend {
        Backend::Memory { max_messages } => {
            (Arc::new(MemoryStore::new(*max_messages)), Arc::new(LocalBus::new(hub.clone())))
        }
        Backend::Sqlite { path } => (Arc::new(SqliteStore::open(path)?), Arc::new(LocalBus::new(hub.clone()))),
        Backend::Redis { target, max_messages, heal_every } => {
            let client = redis_store::client(&target.url).map_err(BackendError::Redis)?;
            let store =
                Arc::new(RedisStore::new(client.clone(), &target.prefix, *max_messages).map_err(BackendError::Redis)?);
            tokio::spawn(store.clone().report_start(target.url.clone()));
            Receiver::start(client, store.clone(), hub.clone(), *heal_every).await;
            (store, Arc::new(RedisBus))
        }
    };
    Ok(Parts { store, hub, bus })
}
