//! The client on the other end of a request: its address and whether it came over HTTPS, and the budgets kept per
//! address for joins, sends and event-stream openings (on top of those per ticket and per browser: dropping the
//! cookie makes a new browser, not a new address).
//!
//! The address is the TCP peer's. Only when the peer is a configured trusted proxy are its X-Forwarded-For and
//! X-Forwarded-Proto believed: X-Forwarded-For is read from the right, past every trusted proxy, to the first
//! address a trusted proxy saw connect. A header from anyone else is ignored, so it cannot buy a fresh budget.
//! IPv6 clients are budgeted per /64, the block one subscriber usually gets. Event streams open at once are capped
//! per address too (`max-streams-per-address`), so one address cannot take every stream the server holds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::Quota;
use ipnet::IpNet;

use crate::server::budget::{Budget, MAX_KEYS};
use crate::server::observe;
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

struct AddressBudgets {
    joins: Budget<IpAddr>,
    sends: Budget<IpAddr>,
    streams: Budget<IpAddr>,
    rate: u32,
    burst: u32,
}

/// What a budgeted request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Join,
    Send,
    OpenStream,
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

    /// `rate` of each action a second per address, `burst` at once; no budgets when `rate` is 0.
    pub fn new(trusted: Vec<IpNet>, rate: u32, burst: u32) -> Self {
        let budgets = NonZeroU32::new(rate).map(|rate_nz| {
            let burst_nz = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::per_second(rate_nz).allow_burst(burst_nz);
            AddressBudgets {
                joins: Budget::new(quota, MAX_KEYS),
                sends: Budget::new(quota, MAX_KEYS),
                streams: Budget::new(quota, MAX_KEYS),
                rate,
                burst: burst_nz.get(),
            }
        });
        Self { trusted, budgets, ..Self::default() }
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

    /// Takes one `action` from the address's budget.
    fn admit(&self, address: IpAddr, action: Action) -> Result<(), ApiError> {
        let Some(budgets) = &self.budgets else {
            return Ok(());
        };
        let (budget, what) = match action {
            Action::Join => (&budgets.joins, "joins"),
            Action::Send => (&budgets.sends, "messages"),
            Action::OpenStream => (&budgets.streams, "new live connections"),
        };
        if budget.take(&budget_key(address)) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorKind::RateLimited,
            format!(
                "Too many {what} from your network: at most {} a second ({} at once). Wait a moment and try again.",
                budgets.rate, budgets.burst
            ),
        ))
    }

    /// Drops the budgets of idle addresses.
    pub fn forget_idle(&self) {
        if let Some(budgets) = &self.budgets {
            for budget in [&budgets.joins, &budgets.sends, &budgets.streams] {
                budget.forget_idle();
            }
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

/// What one budget is kept for: the address, or for IPv6 its /64.
fn budget_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

fn action(request: &Request) -> Option<Action> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, wire::JOIN_PATH) => Some(Action::Join),
        (&Method::POST, wire::SEND_PATH) => Some(Action::Send),
        (&Method::GET, wire::EVENTS_PATH) => Some(Action::OpenStream),
        _ => None,
    }
}

/// Middleware around everything: puts the caller's [`Peer`] into the request, and refuses a join, send or stream
/// opening beyond its address's budget with 429 `rate_limited`.
pub async fn admit(State(peers): State<Arc<Peers>>, mut request: Request, next: Next) -> Response {
    let connected = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let peer = peers.identify(connected.unwrap_or(IpAddr::from([0, 0, 0, 0])), request.headers());
    if let Some(action) = action(&request) {
        if let Err(refusal) = peers.admit(peer.address, action) {
            tracing::debug!(address = %peer.address, ?action, "over the address budget");
            match action {
                Action::OpenStream => observe::stream_refused(refusal.kind.code()),
                Action::Send => observe::refused(refusal.kind.code()),
                Action::Join => {}
            }
            return refusal.into_response();
        }
    }
    request.extensions_mut().insert(peer);
    next.run(request).await
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

    #[test]
    fn each_action_has_its_own_budget_per_address_and_ipv6_counts_per_64() {
        let peers = Peers::new(vec![], 1, 2);
        let home = ip("192.0.2.1");
        for _ in 0..2 {
            peers.admit(home, Action::Send).unwrap();
        }
        let refused = peers.admit(home, Action::Send).unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::RateLimited, 429));
        assert!(refused.message.contains("at most 1 a second (2 at once)"), "{}", refused.message);
        peers.admit(home, Action::Join).unwrap();
        peers.admit(ip("192.0.2.2"), Action::Send).unwrap();
        peers.admit(ip("2001:db8::1"), Action::OpenStream).unwrap();
        peers.admit(ip("2001:db8::2"), Action::OpenStream).unwrap();
        assert!(peers.admit(ip("2001:db8::ffff:1"), Action::OpenStream).is_err(), "same /64");
        peers.admit(ip("2001:db8:0:1::1"), Action::OpenStream).unwrap();
        let unlimited = Peers::new(vec![], 0, 1);
        assert!((0..1_000).all(|_| unlimited.admit(home, Action::Send).is_ok()));
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
