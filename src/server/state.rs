//! What every request handler shares: the store, the fan-out and its page cache, who is here, the budgets, the ticket
//! keys, how tabs sign in, the publish API's keys and the limits. A leaf: it imports the parts it holds and no handler, so any handler may import it.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::server::access::Rules;
use crate::server::api_keys::ApiKeys;
use crate::server::broker::Broker;
use crate::server::hub::Hub;
use crate::server::identity::SignIn;
use crate::server::peer::Peers;
use crate::server::presence::Presence;
use crate::server::replicas::stream_leases::StreamLeases;
use crate::server::store::FeedStore;
use crate::server::throttle::SendThrottle;
use crate::server::ticket::TicketKeys;
use crate::shared::domain::FeedName;

#[derive(Debug, Clone)]
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
    /// Which feeds may exist, how many, and which are known to.
    pub feeds: Arc<FeedGate>,
}

/// Which feeds may exist (`feeds = listed`: `main` and the named ones only), how many may hold messages, and a
/// bounded memory of those known to hold some, so a send to a known feed costs no store read.
#[derive(Debug)]
pub struct FeedGate {
    listed: Option<BTreeSet<FeedName>>,
    pub max: usize,
    known: Mutex<HashSet<FeedName>>,
    /// Who may read and post in which feed (`access`).
    pub access: Rules,
}

/// Feeds remembered as holding messages at most; when full, the memory starts again.
const KNOWN_FEEDS: usize = 10_000;

impl FeedGate {
    /// `listed`: `Some` for `feeds = listed`.
    pub fn new(listed: Option<BTreeSet<FeedName>>, max: usize) -> Self {
        Self { listed, max, known: Mutex::default(), access: Rules::default() }
    }

    /// The same gate, with these private feeds.
    pub fn with_access(self, access: Rules) -> Self {
        Self { access, ..self }
    }

    /// Any valid name may exist; at most `max` hold messages.
    pub fn open(max: usize) -> Self {
        Self::new(None, max)
    }

    pub fn may_exist(&self, feed: &FeedName) -> bool {
        feed.is_main() || self.listed.as_ref().is_none_or(|listed| listed.contains(feed))
    }

    pub fn known(&self, feed: &FeedName) -> bool {
        feed.is_main() || self.lock().contains(feed)
    }

    pub fn remember(&self, feed: &FeedName) {
        let mut known = self.lock();
        if known.len() >= KNOWN_FEEDS {
            known.clear();
        }
        known.insert(feed.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<FeedName>> {
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Most event streams open at once; 0: no cap.
#[derive(Debug, Clone, Copy)]
pub struct StreamCaps {
    pub total: usize,
    pub per_group: usize,
    /// Feeds one stream may follow.
    pub feeds: usize,
}

/// Cloned for each request (axum's `State`), so it is one `Arc`. Made from `Services`, every part named:
/// `AppState::from(Services { .. })`.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// Everything a request may use. The composition root (`startup::build_state`) fills in every field; tests start
/// from `services_for_tests` and change the fields they are about (`Services { lease, ..services_for_tests(..) }`).
/// No `Default`: a store, a ticket secret and limits have no value that is right for every server.
pub struct Services {
    pub store: Arc<dyn FeedStore>,
    /// This process's subscribers and their page cache (`hub.pages()`, forgotten on each delivery), fed by
    /// `broker`, which appends to `store` and announces to every process's hub.
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    /// Send rate limits; `None`: no limit.
    pub throttle: Option<Arc<SendThrottle>>,
    /// The per-browser stream cap kept across replicas (Redis); `None`: counted in this process's hub.
    pub stream_leases: Option<Arc<StreamLeases>>,
    pub tickets: TicketKeys,
    /// How tabs join: a typed name, a token of the deployer's backend (and the keys that verify it), or either.
    pub sign_in: SignIn,
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
    /// The publish API's keys (`api-keys-file`), read again on SIGHUP and when the file changes.
    pub api_keys: Arc<ApiKeys>,
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl From<Services> for AppState {
    fn from(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

/// The state the use-case tests drive: `store`, an in-process broker, a test secret, messages of at most 10
/// characters, pages of 3, no stream caps, the send budgets `throttle`, presence in memory with 30 s leases and no
/// heartbeat budgets.
#[cfg(test)]
pub fn services_for_tests(store: Arc<dyn FeedStore>, throttle: Option<SendThrottle>) -> Services {
    let hub = Arc::new(Hub::new(16, Arc::new(crate::server::pages::PageCache::new(64))));
    Services {
        broker: Arc::new(crate::server::broker::LocalBroker::new(store.clone(), hub.clone())),
        store,
        hub,
        throttle: throttle.map(Arc::new),
        stream_leases: None,
        tickets: TicketKeys::new(b"test secret, thirty-two bytes!!!".to_vec()),
        sign_in: SignIn::anonymous(),
        peers: Arc::new(Peers::default()),
        limits: Limits {
            max_message_chars: 10,
            page_size: 3,
            page_bytes: 262_144,
            max_request_bytes: 65_536,
            request_timeout: std::time::Duration::from_secs(10),
            streams: StreamCaps { total: 0, per_group: 0, feeds: crate::shared::wire::MAX_FEEDS_PER_STREAM },
            horizon: None,
            feeds: Arc::new(FeedGate::open(100_000)),
        },
        leptos: LeptosOptions::builder().output_name("broadcasting").build(),
        presence: Arc::new(crate::server::presence::MemoryPresence::default()),
        lease: std::time::Duration::from_secs(30),
        heartbeats: None,
        api_keys: Arc::new(ApiKeys::none()),
    }
}

/// `services_for_tests` as a state.
#[cfg(test)]
pub fn for_tests(store: Arc<dyn FeedStore>, throttle: Option<SendThrottle>) -> AppState {
    AppState::from(services_for_tests(store, throttle))
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
