//! The client on the other end of a request: its address and whether it came over HTTPS, and the budgets kept per
//! address for joins, sends, event-stream openings and presence updates (heartbeats and leaves), each its own, on
//! top of those per ticket and per browser: dropping the cookie makes a new browser, not a new address.
//!
//! One process keeps the budgets itself (governor, bounded tables: `budget`). Replicas on one Redis keep them in
//! Redis (`budget::SharedBudgets`, the send budgets' GCRA script), so an address whose requests a proxy spreads
//! over n replicas gets one budget, not n; each key expires once its budget is full again. A budget that cannot be
//! checked refuses with 503 `unavailable`, never lets the request through unchecked.
//!
//! The address is the TCP peer's. Only when the peer is a configured trusted proxy are its X-Forwarded-For and
//! X-Forwarded-Proto believed: X-Forwarded-For is read from the right, past every trusted proxy, to the first
//! address a trusted proxy saw connect. A header from anyone else is ignored, so it cannot buy a fresh budget.
//! IPv6 clients are budgeted per /64, the block one subscriber usually gets. Event streams open at once are capped
//! per address too (`max-streams-per-address`, counted in this process), so one address cannot take every stream
//! the server holds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::Quota;
use ipnet::IpNet;

use crate::server::budget::{every_at, seconds_up, Budget, SharedBudgets, MAX_KEYS};
use crate::server::observe;
use crate::server::presence::Network;
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

/// Who sent a request, as far as the server can tell; in the request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub address: IpAddr,
    /// The request reached a trusted proxy over HTTPS (this server itself speaks plain HTTP).
    pub https: bool,
}

/// The trusted proxies and, unless lifted, the per-address budgets and stream cap.
#[derive(Default)]
pub struct Peers {
    trusted: Vec<IpNet>,
    budgets: Option<AddressBudgets>,
    /// Most event streams open at once per address; 0: no cap.
    max_streams: usize,
    /// Event streams open now, per address that has any (so at most one entry per open stream).
    streams: Mutex<HashMap<IpAddr, usize>>,
    /// New feeds per address per hour (`None`: no budget).
    new_feeds: Option<NewFeeds>,
}

/// The budget of new feeds: `per_hour` per address, all at once if it likes; kept here or where every replica
/// counts.
struct NewFeeds {
    per_hour: u32,
    here: Budget<IpAddr>,
    shared: Option<Arc<dyn SharedBudgets>>,
}

/// One event stream counted against its address while it is open; dropping it (the stream ended) frees the place.
pub struct StreamPlace {
    peers: Arc<Peers>,
    key: IpAddr,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut streams = self.peers.lock_streams();
        if let Some(open) = streams.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                streams.remove(&self.key);
            }
        }
    }
}

/// One budget per action and address: `rates[action]` a second, `burst` at once.
struct AddressBudgets {
    rates: [u32; Action::ALL.len()],
    burst: u32,
    kept: Kept,
}

/// Where the budgets are kept.
enum Kept {
    /// In this process, one table per action (boxed: the tables are large, the other variant small).
    Here(Box<[Budget<IpAddr>; Action::ALL.len()]>),
    /// Where every replica counts (Redis).
    Shared(Arc<dyn SharedBudgets>),
}

/// What a budgeted request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Join,
    Send,
    OpenStream,
    /// A heartbeat or a leave.
    Presence,
}

impl Action {
    const ALL: [Action; 4] = [Action::Join, Action::Send, Action::OpenStream, Action::Presence];

    fn index(self) -> usize {
        self as usize
    }

    /// What the refusal says is counted.
    fn counted(self) -> &'static str {
        match self {
            Action::Join => "joins",
            Action::Send => "messages",
            Action::OpenStream => "new live connections",
            Action::Presence => "heartbeats",
        }
    }

    /// The budget's name in Redis.
    fn key(self) -> &'static str {
        match self {
            Action::Join => "joins",
            Action::Send => "sends",
            Action::OpenStream => "streams",
            Action::Presence => "presence",
        }
    }
}

fn local_budgets(rates: [u32; Action::ALL.len()], burst: NonZeroU32) -> Box<[Budget<IpAddr>; Action::ALL.len()]> {
    Box::new(rates.map(|rate| {
        let quota = Quota::per_second(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN)).allow_burst(burst);
        Budget::new(quota, MAX_KEYS)
    }))
}

impl Peers {
    /// At most `max_streams` event streams open at once per address (0: no cap).
    pub fn with_stream_cap(self, max_streams: usize) -> Self {
        Self { max_streams, ..self }
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for one more event stream from `address`, or 429 `too_many_streams` when it has as many as allowed.
    pub fn open_stream(self: &Arc<Self>, address: IpAddr) -> Result<Option<StreamPlace>, ApiError> {
        if self.max_streams == 0 {
            return Ok(None);
        }
        let key = budget_key(address);
        let mut streams = self.lock_streams();
        let open = streams.entry(key).or_default();
        if *open >= self.max_streams {
            let max = self.max_streams;
            if *open == 0 {
                streams.remove(&key);
            }
            return Err(ApiError::new(
                ErrorKind::TooManyStreams,
                format!("Your network already has {max} live streams here; close a tab to go live in this one."),
            ));
        }
        *open += 1;
        Ok(Some(StreamPlace { peers: self.clone(), key }))
    }

    /// `rate` of each action a second per address, `burst` at once; no budgets when `rate` is 0. Kept in this
    /// process until [`Self::shared_through`] says otherwise.
    pub fn new(trusted: Vec<IpNet>, rate: u32, burst: u32) -> Self {
        let budgets = (rate > 0).then(|| {
            let burst_nz = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            let rates = [rate; Action::ALL.len()];
            AddressBudgets { rates, burst: burst_nz.get(), kept: Kept::Here(local_budgets(rates, burst_nz)) }
        });
        Self { trusted, budgets, ..Self::default() }
    }

    /// Heartbeats and leaves at `rate` a second per address (at least the other actions' rate: a proxy in front
    /// of many tabs beats for all of them).
    pub fn with_presence_rate(mut self, rate: u32) -> Self {
        if let Some(budgets) = &mut self.budgets {
            let presence = &mut budgets.rates[Action::Presence.index()];
            *presence = rate.max(*presence);
            if let Kept::Here(_) = budgets.kept {
                let burst = NonZeroU32::new(budgets.burst).unwrap_or(NonZeroU32::MIN);
                budgets.kept = Kept::Here(local_budgets(budgets.rates, burst));
            }
        }
        self
    }

    /// The budgets kept in `shared`, one per address for all the replicas that share it.
    pub fn shared_through(mut self, shared: Arc<dyn SharedBudgets>) -> Self {
        if let Some(new_feeds) = &mut self.new_feeds {
            new_feeds.shared = Some(shared.clone());
        }
        if let Some(budgets) = &mut self.budgets {
            budgets.kept = Kept::Shared(shared);
        }
        self
    }

    /// At most `per_hour` new feeds per address an hour (0: no budget). Before `shared_through`.
    pub fn with_new_feeds(mut self, per_hour: u32) -> Self {
        self.new_feeds = NonZeroU32::new(per_hour).map(|n| NewFeeds {
            per_hour,
            here: Budget::new(Quota::with_period(new_feed_every(per_hour)).expect("a period").allow_burst(n), MAX_KEYS),
            shared: None,
        });
        self
    }

    /// Takes one new feed from the address's budget: 429 `rate_limited` (with `Retry-After`) when it is empty, 503
    /// when it is kept in Redis and Redis cannot be asked.
    pub async fn take_new_feed(&self, address: IpAddr) -> Result<(), ApiError> {
        let Some(NewFeeds { per_hour, here, shared }) = &self.new_feeds else { return Ok(()) };
        let key = budget_key(address);
        let wait = match shared {
            // At most this long until a place comes back (governor's table does not say how long exactly).
            None => (!here.take(&key)).then_some(Some(new_feed_every(*per_hour))),
            Some(shared) => {
                let name = format!("address:new-feeds:{key}");
                shared.take(&name, new_feed_every(*per_hour), *per_hour).await?.map(Some)
            }
        };
        let Some(wait) = wait else { return Ok(()) };
        let refusal = ApiError::new(
            ErrorKind::RateLimited,
            format!("Your network started {per_hour} new feeds within the hour, as many as allowed; post in one of them, or wait."),
        );
        Err(match wait {
            Some(wait) => refusal.with_retry_after(seconds_up(wait)),
            None => refusal,
        })
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.trusted.iter().any(|net| net.contains(&address))
    }

    /// The client behind a connection from `peer` that sent `headers`.
    pub fn identify(&self, peer: IpAddr, headers: &HeaderMap) -> Peer {
        if !self.trusts(peer) {
            return Peer { address: canonical(peer), https: false };
        }
        // Rightmost first: each trusted proxy appended the address it saw connect.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("").split(',').map(str::trim).collect::<Vec<_>>())
            .collect::<Vec<_>>();
        let mut address = canonical(peer);
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(hop) => {
                    address = canonical(hop);
                    if !self.trusts(hop) {
                        break;
                    }
                }
                // Garbage: the last trusted hop is as far as the server can tell.
                Err(_) => break,
            }
        }
        let proto = headers.get_all("x-forwarded-proto").iter().next_back().and_then(|value| value.to_str().ok());
        let https = proto.and_then(|value| value.rsplit(',').next()).is_some_and(|p| p.trim() == "https");
        Peer { address, https }
    }

    /// Takes one `action` from the address's budget: 429 `rate_limited` when it is empty, 503 `unavailable` when
    /// the budget is kept in Redis and Redis cannot be asked.
    async fn admit(&self, address: IpAddr, action: Action) -> Result<(), ApiError> {
        let Some(budgets) = &self.budgets else {
            return Ok(());
        };
        let (rate, key) = (budgets.rates[action.index()], budget_key(address));
        // `None`: taken; `Some(wait)`: refused, with how long until it would be taken when the budget says.
        let wait = match &budgets.kept {
            Kept::Here(tables) => (!tables[action.index()].take(&key)).then_some(None),
            Kept::Shared(shared) => {
                let name = format!("address:{}:{key}", action.key());
                shared.take(&name, every_at(rate), budgets.burst).await?.map(Some)
            }
        };
        let Some(wait) = wait else { return Ok(()) };
        let refusal = ApiError::new(
            ErrorKind::RateLimited,
            format!(
                "Too many {} from your network: at most {rate} a second ({} at once). Wait a moment and try again.",
                action.counted(),
                budgets.burst
            ),
        );
        Err(match wait {
            Some(wait) => refusal.with_retry_after(seconds_up(wait)),
            None => refusal,
        })
    }

    /// Drops the budgets of idle addresses kept here (Redis's expire by themselves).
    pub fn forget_idle(&self) {
        if let Some(new_feeds) = &self.new_feeds {
            new_feeds.here.forget_idle();
        }
        if let Some(AddressBudgets { kept: Kept::Here(tables), .. }) = &self.budgets {
            tables.iter().for_each(Budget::forget_idle);
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:1.2.3.4`, a dual-stack listener) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The caller's address, as [`admit`] put it in the request (it does for every request); without one, the
/// unspecified address stands in, so such callers share one address's budgets and caps.
pub fn address_of(peer: Option<axum::Extension<Peer>>) -> IpAddr {
    peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |axum::Extension(peer)| peer.address)
}

/// What one budget is kept for: the address, or for IPv6 its /64.
fn budget_key(address: IpAddr) -> IpAddr {
    Network::of(address).into()
}

fn action(request: &Request) -> Option<Action> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, wire::JOIN_PATH) => Some(Action::Join),
        (&Method::POST, wire::SEND_PATH) => Some(Action::Send),
        (&Method::GET, wire::EVENTS_PATH) => Some(Action::OpenStream),
        (&Method::POST, wire::PRESENCE_PATH | wire::PRESENCE_LEAVE_PATH) => Some(Action::Presence),
        _ => None,
    }
}

/// Middleware around everything: puts the caller's [`Peer`] into the request, and refuses a join, send, stream
/// opening, heartbeat or leave beyond its address's budget with 429 `rate_limited` (503 `unavailable` when the
/// budget is in Redis and Redis does not answer).
pub async fn admit(State(peers): State<Arc<Peers>>, mut request: Request, next: Next) -> Response {
    let connected = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let peer = peers.identify(connected.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), request.headers());
    if let Some(action) = action(&request) {
        if let Err(refusal) = peers.admit(peer.address, action).await {
            tracing::debug!(address = %peer.address, ?action, kind = refusal.kind.code(), "over the address budget");
            match action {
                Action::OpenStream => observe::stream_refused(refusal.kind.code()),
                Action::Send => observe::refused(refusal.kind.code()),
                Action::Join | Action::Presence => {}
            }
            return refusal.into_response();
        }
    }
    request.extensions_mut().insert(peer);
    next.run(request).await
}

/// The time in which one new feed's place comes back: an hour over the budget.
fn new_feed_every(per_hour: u32) -> std::time::Duration {
    std::time::Duration::from_secs(3600) / per_hour.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let peers = Peers::new(vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()], 0, 1);
        let forged = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")]);
        assert_eq!(peers.identify(ip("8.8.8.8"), &forged), Peer { address: ip("8.8.8.8"), https: false });
        assert_eq!(peers.identify(ip("127.0.0.1"), &forged), Peer { address: ip("1.2.3.4"), https: true });
        // the client's own claim on the left is skipped: the first untrusted hop from the right is the client
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 10.1.1.1"), ("x-forwarded-for", "10.2.2.2")]);
        assert_eq!(peers.identify(ip("10.0.0.1"), &chain).address, ip("5.5.5.5"));
        // every hop trusted: the leftmost; garbage: the last trusted hop
        assert_eq!(
            peers.identify(ip("10.0.0.1"), &headers(&[("x-forwarded-for", "10.9.9.9")])).address,
            ip("10.9.9.9")
        );
        let garbage = headers(&[("x-forwarded-for", "6.6.6.6, bogus, 10.3.3.3")]);
        assert_eq!(peers.identify(ip("10.0.0.1"), &garbage).address, ip("10.3.3.3"));
        assert_eq!(peers.identify(ip("10.0.0.1"), &HeaderMap::new()).address, ip("10.0.0.1"));
        assert_eq!(peers.identify(ip("::ffff:127.0.0.1"), &forged).address, ip("1.2.3.4"));
    }

    /// Every budget of `peers`, kept here or in Redis, behaves the same.
    async fn each_action_has_its_own_budget_per_address_and_ipv6_counts_per_64(peers: Peers) {
        let home = ip("192.0.2.1");
        for _ in 0..2 {
            peers.admit(home, Action::Send).await.unwrap();
        }
        let refused = peers.admit(home, Action::Send).await.unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::RateLimited, 429));
        assert!(refused.message.contains("at most 1 a second (2 at once)"), "{}", refused.message);
        peers.admit(home, Action::Join).await.unwrap();
        peers.admit(home, Action::Presence).await.unwrap();
        peers.admit(ip("192.0.2.2"), Action::Send).await.unwrap();
        peers.admit(ip("2001:db8::1"), Action::OpenStream).await.unwrap();
        peers.admit(ip("2001:db8::2"), Action::OpenStream).await.unwrap();
        assert!(peers.admit(ip("2001:db8::ffff:1"), Action::OpenStream).await.is_err(), "same /64");
        peers.admit(ip("2001:db8:0:1::1"), Action::OpenStream).await.unwrap();
    }

    #[tokio::test]
    async fn each_action_has_its_own_budget_here_and_none_when_lifted() {
        each_action_has_its_own_budget_per_address_and_ipv6_counts_per_64(Peers::new(vec![], 1, 2)).await;
        let unlimited = Peers::new(vec![], 0, 1);
        for _ in 0..1_000 {
            unlimited.admit(ip("192.0.2.1"), Action::Send).await.unwrap();
        }
    }

    /// Budgets every replica counts, as a shared keeper holds them (names and bursts; no refill, no clock), or
    /// one that cannot be asked.
    #[derive(Default)]
    struct Keeper {
        taken: Mutex<HashMap<String, u32>>,
        down: bool,
    }

    #[async_trait::async_trait]
    impl SharedBudgets for Keeper {
        async fn take(
            &self,
            name: &str,
            _every: std::time::Duration,
            burst: u32,
        ) -> Result<Option<std::time::Duration>, ApiError> {
            if self.down {
                return Err(ApiError::new(ErrorKind::Unavailable, "down"));
            }
            let mut taken = self.taken.lock().unwrap();
            let used = taken.entry(name.to_owned()).or_default();
            *used += 1;
            Ok((*used > burst).then_some(std::time::Duration::from_millis(1_500)))
        }
    }

    /// Kept elsewhere: the same rules, under one name per action and address (IPv6 per /64), so replicas sharing
    /// the keeper share the budget; a refusal says when to retry; a keeper that cannot be asked refuses with 503.
    #[tokio::test]
    async fn shared_budgets_are_one_per_action_and_address_for_every_replica() {
        let keeper = Arc::new(Keeper::default());
        let replica = || Peers::new(vec![], 1, 2).shared_through(keeper.clone());
        each_action_has_its_own_budget_per_address_and_ipv6_counts_per_64(replica()).await;
        let (a, b) = (replica(), replica());
        let office = ip("198.51.100.7");
        a.admit(office, Action::Join).await.unwrap();
        b.admit(office, Action::Join).await.unwrap();
        let refused = a.admit(office, Action::Join).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::RateLimited, "the burst of 2 is spent over both");
        assert_eq!(refused.retry_after().unwrap(), "2", "the keeper's wait, rounded up");
        let names: Vec<String> = keeper.taken.lock().unwrap().keys().cloned().collect();
        for name in ["address:joins:198.51.100.7", "address:presence:192.0.2.1", "address:streams:2001:db8::"] {
            assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
        }
        let down = Peers::new(vec![], 1, 2).shared_through(Arc::new(Keeper { down: true, ..Keeper::default() }));
        let refused = down.admit(office, Action::Send).await.unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::Unavailable, 503));
    }

    /// The middleware's mapping: heartbeats and leaves come out of the address's presence budget (429 past it),
    /// which the sends do not touch; reads are not budgeted.
    #[tokio::test]
    async fn heartbeats_and_leaves_past_the_address_budget_get_429() {
        use axum::body::Body;
        use tower::ServiceExt;
        let peers = Arc::new(Peers::new(vec![], 1, 3));
        let app = axum::Router::new()
            .route(wire::PRESENCE_PATH, axum::routing::get(|| async { "here" }).post(|| async { "beat" }))
            .route(wire::PRESENCE_LEAVE_PATH, axum::routing::post(|| async { "left" }))
            .route(wire::SEND_PATH, axum::routing::post(|| async { "sent" }))
            .layer(axum::middleware::from_fn_with_state(peers, admit));
        let status = |method: Method, path: &'static str| {
            let app = app.clone();
            async move {
                let request = axum::http::Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
                app.oneshot(request).await.unwrap().status().as_u16()
            }
        };
        let mut beats = Vec::new();
        for path in [wire::PRESENCE_PATH, wire::PRESENCE_LEAVE_PATH, wire::PRESENCE_PATH, wire::PRESENCE_LEAVE_PATH] {
            beats.push(status(Method::POST, path).await);
        }
        assert_eq!(beats, [200, 200, 200, 429], "a burst of 3, heartbeats and leaves together");
        assert_eq!(status(Method::POST, wire::SEND_PATH).await, 200, "sends have their own budget");
        assert_eq!(status(Method::GET, wire::PRESENCE_PATH).await, 200, "reading who is here is not budgeted");
    }

    #[tokio::test]
    async fn the_presence_rate_is_never_below_the_others() {
        let peers = Peers::new(vec![], 1, 1).with_presence_rate(1_000);
        let rates = peers.budgets.as_ref().unwrap().rates;
        assert_eq!(rates, [1, 1, 1, 1_000]);
        let slower = Peers::new(vec![], 5, 1).with_presence_rate(2);
        assert_eq!(slower.budgets.as_ref().unwrap().rates[Action::Presence.index()], 5);
        assert!(Peers::new(vec![], 0, 1).with_presence_rate(9).budgets.is_none(), "lifted stays lifted");
    }

    #[test]
    fn streams_are_capped_per_address_and_a_closed_one_frees_its_place() {
        let peers = Arc::new(Peers::new(vec![], 0, 1).with_stream_cap(2));
        let home = ip("192.0.2.1");
        let first = peers.open_stream(home).unwrap();
        let _second = peers.open_stream(home).unwrap();
        let refused = peers.open_stream(home).err().unwrap();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::TooManyStreams, 429));
        assert!(refused.message.contains("2 live streams"), "{}", refused.message);
        assert!(peers.open_stream(ip("192.0.2.2")).unwrap().is_some(), "another address has its own");
        drop(first);
        let _third = peers.open_stream(home).unwrap();
        drop(_third);
        drop(_second);
        assert!(peers.lock_streams().is_empty(), "no entry outlives its streams");
        assert!(Arc::new(Peers::default()).open_stream(home).unwrap().is_none(), "no cap: nothing counted");
    }
}
