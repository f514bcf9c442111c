//! The one backend factory: which store and which bus run, from one typed setting. The rest of the server holds
//! the parts behind their traits (`FeedStore`, `Bus`) and the concrete `Hub` every backend shares, and never asks
//! which backend it is. A backend behind an optional feature (a cross-process bus) is `#[cfg]`-gated here and
//! nowhere else.

use std::path::PathBuf;
use std::sync::Arc;

use crate::server::bus::{Bus, LocalBus};
use crate::server::hub::Hub;
use crate::server::pages::PageCache;
use crate::server::store::{FeedStore, MemoryStore, OpenError, SqliteStore};

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
}

/// What a backend provides.
pub struct Parts {
    pub store: Arc<dyn FeedStore>,
    /// This process's subscribers, fed by `bus`.
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
}

/// Opens the store and connects the bus to a fresh hub.
pub fn open(backend: &Backend) -> Result<Parts, OpenError> {
    let hub = Arc::new(Hub::new(FANOUT_CAPACITY, Arc::new(PageCache::new(SHARED_PAGES))));
    let store: Arc<dyn FeedStore> = match backend {
        Backend::Memory { max_messages } => Arc::new(MemoryStore::new(*max_messages)),
        Backend::Sqlite { path } => Arc::new(SqliteStore::open(path)?),
    };
    let bus = Arc::new(LocalBus::new(hub.clone()));
    Ok(Parts { store, hub, bus })
}
