//! What every request handler shares: the store, the fan-out, the page cache, who is here, the budgets, the ticket
//! keys and the limits. A leaf: it imports the parts it holds and no handler, so any handler may import it.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::server::bus::Bus;
use crate::server::hub::Hub;
use crate::server::pages::PageCache;
use crate::server::peer::Peers;
use crate::server::presence::{MemoryPresence, Presence};
use crate::server::replicas::stream_leases::StreamLeases;
use crate::server::store::FeedStore;
use crate::server::throttle::SendThrottle;
use crate::server::ticket::TicketKeys;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_chars: usize,
    pub page_size: usize,
    /// Most bytes of JSON in one page of messages.
    pub page_bytes: usize,
    pub max_request_bytes: usize,
    pub request_timeout: std::time::Duration,
    pub streams: StreamCaps,
    /// Retention's `max-age`, if set: a cached page must not outlive the deletion of its oldest message.
    pub horizon: Option<std::time::Duration>,
}

/// Most event streams open at once; 0: no cap.
#[derive(Debug, Clone, Copy)]
pub struct StreamCaps {
    pub total: usize,
    pub per_group: usize,
}

/// The send budgets and, across replicas, the per-browser stream leases (see `throttle`, `replicas`).
#[derive(Default)]
pub struct Limiters {
    /// `None`: no send limit.
    pub throttle: Option<SendThrottle>,
    /// `None`: the per-browser stream cap is counted in this process's hub.
    pub stream_leases: Option<Arc<StreamLeases>>,
}

/// Cloned for each request (axum's `State`), so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn FeedStore>,
    /// This process's subscribers; `bus` publishes into every process's hub.
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    /// The hub's page cache (forgotten on each delivery).
    pub pages: Arc<PageCache>,
    /// Send rate limits; `None`: no limit.
    pub throttle: Option<Arc<SendThrottle>>,
    /// The per-browser stream cap kept across replicas (Redis); `None`: counted in this process's hub.
    pub stream_leases: Option<Arc<StreamLeases>>,
    pub tickets: TicketKeys,
    /// Trusted proxies and the per-address budgets.
    pub peers: Arc<Peers>,
    pub limits: Limits,
    pub leptos: LeptosOptions,
    /// Who is here, per group (`presence`).
    pub presence: Arc<dyn Presence>,
    /// How long a tab stays listed after its last heartbeat.
    pub lease: std::time::Duration,
    /// Heartbeat rate limits, kept apart from the send budgets; `None`: no limit.
    pub heartbeats: Option<Arc<SendThrottle>>,
}

/// Presence as `AppState::new` sets it up until `with_presence` says otherwise: in memory, 30 s leases, no budgets.
const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn FeedStore>,
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        tickets: TicketKeys,
        limits: Limits,
        limiters: Limiters,
        peers: Peers,
        leptos: LeptosOptions,
    ) -> Self {
        let pages = hub.pages().clone();
        let Limiters { throttle, stream_leases } = limiters;
        let throttle = throttle.map(Arc::new);
        let peers = Arc::new(peers);
        let presence: Arc<dyn Presence> = Arc::new(MemoryPresence::default());
        Self(Arc::new(Services {
            store,
            hub,
            bus,
            pages,
            throttle,
            stream_leases,
            tickets,
            peers,
            limits,
            leptos,
            presence,
            lease: DEFAULT_LEASE,
            heartbeats: None,
        }))
    }

    /// The same state with this presence table, lease and heartbeat budgets.
    pub fn with_presence(
        self,
        presence: Arc<dyn Presence>,
        lease: std::time::Duration,
        heartbeats: Option<SendThrottle>,
    ) -> Self {
        let mut services = Services::clone(&self.0);
        (services.presence, services.lease, services.heartbeats) = (presence, lease, heartbeats.map(Arc::new));
        Self(Arc::new(services))
    }
}

/// The state the use-case tests drive: `store`, an in-process bus, a test secret, messages of at most 10
/// characters, pages of 3, no stream caps, and the send budgets `throttle`.
#[cfg(test)]
pub fn for_tests(store: Arc<dyn FeedStore>, throttle: Option<SendThrottle>) -> AppState {
    let hub = Arc::new(Hub::new(16, Arc::new(PageCache::new(64))));
    AppState::new(
        store,
        hub.clone(),
        Arc::new(crate::server::bus::LocalBus::new(hub)),
        TicketKeys::new(b"test secret, thirty-two bytes!!!".to_vec()),
        Limits {
            max_message_chars: 10,
            page_size: 3,
            page_bytes: 262_144,
            max_request_bytes: 65_536,
            request_timeout: std::time::Duration::from_secs(10),
            streams: StreamCaps { total: 0, per_group: 0 },
            horizon: None,
        },
        Limiters { throttle, stream_leases: None },
        Peers::default(),
        LeptosOptions::builder().output_name("broadcasting").build(),
    )
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
