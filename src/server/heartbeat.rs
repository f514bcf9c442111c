//! The HTTP edge of presence (`server::presence`): `POST /api/presence` (a joined tab's heartbeat), `POST
//! /api/presence/leave` (the page going away, sent with `navigator.sendBeacon`), `GET /api/presence` (who is here),
//! and the sweep that drops leases that ran out. Whenever who is here changes, the group's event streams carry a
//! `PresenceChanged` (`Hub::presence_changed`) and each tab asks `GET /api/presence` again: the list itself never
//! travels on the stream, so a notice is a few bytes whatever the group's size.
//!
//! A heartbeat or a leave must carry a ticket issued to this session group (else 403, and nothing changes) and a
//! well-formed tab id (else 400); heartbeats come out of their own per-ticket and per-group budgets, as sends do
//! (429 with `Retry-After`). The tab is the ticket's: a beat or leave names the tab `tab` of the ticket it carries,
//! so knowing another tab's id gives no hold on it. A new tab is counted against the ticket and the caller's
//! network (`presence::Caps`). In memory the hub is told here; on Redis the script publishes the change to every
//! replica's hub, and the hub paces the notices (`Hub::presence_changed`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use crate::server::group::GroupId;
use crate::server::hub::Hub;
use crate::server::observe;
use crate::server::peer::Peer;
use crate::server::presence::{Holder, Network, Presence, PresenceError, TabId, TicketTag, MAX_TAB_ID_BYTES};
use crate::server::state::AppState;
use crate::shared::domain::{Beat, Here};
use crate::shared::error::{ApiError, ErrorKind};
use crate::shared::wire;

/// How often the sweep looks for leases that ran out: a tab that stopped beating is gone at most this long after
/// its lease.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub fn routes() -> Router<AppState> {
    Router::new().route(wire::PRESENCE_PATH, get(here).post(beat)).route(wire::PRESENCE_LEAVE_PATH, post(leave))
}

/// The form of a heartbeat or a leave; a missing field counts as blank, and is refused as such.
#[derive(serde::Deserialize)]
struct TabForm {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    tab: String,
}

/// How often a tab beats: three times a lease, so one lost or late heartbeat does not drop it.
pub fn beat_every(lease: Duration) -> Duration {
    lease / 3
}

/// The caller's address, as `peer::admit` put it in the request (which it does for every request; without it,
/// the unspecified address stands in, so such callers share one network's caps).
fn address(peer: Option<Extension<Peer>>) -> std::net::IpAddr {
    peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(peer)| peer.address)
}

async fn beat(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    peer: Option<Extension<Peer>>,
    form: Result<Form<TabForm>, FormRejection>,
) -> Response {
    match heartbeat(&state, &group, address(peer), form).await {
        Ok(()) => {
            let every_ms = u64::try_from(beat_every(state.lease).as_millis()).unwrap_or(u64::MAX);
            Json(Beat { every_ms }).into_response()
        }
        Err(err) => err.into_response(),
    }
}

async fn leave(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    form: Result<Form<TabForm>, FormRejection>,
) -> Response {
    match depart(&state, &group, form).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => err.into_response(),
    }
}

async fn here(State(state): State<AppState>, Extension(group): Extension<GroupId>) -> Response {
    match state.presence.list(&group).await {
        Ok(names) => {
            let mut response = Json(Here { names }).into_response();
            // This group's list: no cache may hand it to another.
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => refusal(err).into_response(),
    }
}

/// Renews (or starts) the lease of the ticket's tab under its name, counted against the network of `address`;
/// tells each group whose names changed (a full list may have pushed out a tab of another group).
async fn heartbeat(
    state: &AppState,
    group: &GroupId,
    address: std::net::IpAddr,
    form: Result<Form<TabForm>, FormRejection>,
) -> Result<(), ApiError> {
    let (tab, ticket) = admitted(state, group, form).await?;
    let holder = Holder { ticket: TicketTag::of(&ticket.id), network: Network::of(address) };
    let changed = state.presence.beat(group, &holder, &tab, &ticket.author, state.lease).await.map_err(refusal)?;
    announce(&state.hub, &changed);
    Ok(())
}

/// Drops the ticket's tab at once; tells the group if a name went with it.
async fn depart(state: &AppState, group: &GroupId, form: Result<Form<TabForm>, FormRejection>) -> Result<(), ApiError> {
    let (tab, ticket) = admitted(state, group, form).await?;
    let changed = state.presence.leave(group, &TicketTag::of(&ticket.id), &tab).await.map_err(refusal)?;
    announce(&state.hub, &changed);
    Ok(())
}

/// The tab and the ticket of a well-formed request whose ticket this group was issued, within its budget.
async fn admitted(
    state: &AppState,
    group: &GroupId,
    form: Result<Form<TabForm>, FormRejection>,
) -> Result<(TabId, crate::server::ticket::Verified), ApiError> {
    let Form(form) =
        form.map_err(|rejection| ApiError::new(ErrorKind::BadRequest, format!("Malformed request: {rejection}")))?;
    let tab = TabId::parse(&form.tab).ok_or_else(|| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("The field \"tab\" must be 1 to {MAX_TAB_ID_BYTES} ASCII letters, digits, '-' or '_'."),
        )
    })?;
    let ticket = state
        .tickets
        .authenticate(group, &form.ticket)
        .map_err(|err| ApiError::new(ErrorKind::BadTicket, err.to_string()))?;
    if let Some(throttle) = &state.heartbeats {
        throttle.check(group, &ticket.id).await?;
    }
    Ok((tab, ticket))
}

fn announce(hub: &Hub, groups: &[GroupId]) {
    groups.iter().for_each(|group| hub.presence_changed(group));
}

fn refusal(err: PresenceError) -> ApiError {
    match err {
        // Clients can fill the table, so it is theirs to wait for: a 429 (no ERROR line), tried again next beat.
        PresenceError::Full => {
            tracing::debug!("presence table full: a new tab is left off");
            ApiError::new(ErrorKind::RateLimited, err.to_string())
        }
        PresenceError::Unavailable(_) => {
            observe::backend_failed("presence", &err);
            ApiError::new(ErrorKind::Unavailable, "Who is here cannot be told right now; try again shortly.")
        }
    }
}

/// Drops the leases that ran out, every `every`, and tells each group whose names changed. Runs for the process's
/// lifetime.
pub async fn sweep(presence: Arc<dyn Presence>, hub: Arc<Hub>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match presence.expire().await {
            Ok(groups) => groups.iter().for_each(|group| hub.presence_changed(group)),
            Err(err) => observe::backend_failed("presence", &err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::presence::MemoryPresence;
    use crate::server::state::{services_for_tests, Services};
    use crate::server::store::MemoryStore;
    use crate::server::throttle::{LocalThrottle, SendThrottle};
    use crate::server::ticket::TicketKeys;
    use futures::StreamExt;

    const LEASE: Duration = Duration::from_secs(30);

    fn state(heartbeats: Option<SendThrottle>) -> AppState {
        AppState::from(Services {
            presence: Arc::new(MemoryPresence::default()),
            lease: LEASE,
            heartbeats: heartbeats.map(Arc::new),
            ..services_for_tests(Arc::new(MemoryStore::new(10)), None)
        })
    }

    fn form(ticket: &str, tab: &str) -> Result<Form<TabForm>, FormRejection> {
        Ok(Form(TabForm { ticket: ticket.to_owned(), tab: tab.to_owned() }))
    }

    fn ticket(state: &AppState, group: &GroupId, name: &str) -> String {
        state.tickets.issue(group, &crate::shared::domain::Username::parse(name).unwrap())
    }

    /// A client at 192.0.2.1.
    const HOME: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// Whether the stream hears of a presence change within the hub's pace (time is paused: waiting is free).
    async fn told(sub: &mut crate::server::hub::Subscription) -> bool {
        let wait = crate::server::hub::PRESENCE_EVERY + Duration::from_millis(100);
        let notice = tokio::time::timeout(wait, sub.next()).await.ok().flatten();
        notice.is_some_and(|notice| notice.presence)
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_lists_the_tickets_name_and_tells_the_group_once() {
        let state = state(None);
        let group = GroupId::new("g");
        let mut stream = state.hub.subscribe(&group);
        let ada = ticket(&state, &group, "Ada");
        heartbeat(&state, &group, HOME, form(&ada, "tab-1")).await.unwrap();
        assert!(told(&mut stream).await);
        heartbeat(&state, &group, HOME, form(&ada, "tab-1")).await.unwrap();
        assert!(!told(&mut stream).await, "a renewal is not news");
        assert_eq!(state.presence.list(&group).await.unwrap(), ["Ada"]);
        depart(&state, &group, form(&ada, "tab-1")).await.unwrap();
        assert!(told(&mut stream).await);
        assert!(state.presence.list(&group).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_forged_or_other_groups_ticket_is_refused_and_changes_nothing() {
        let state = state(None);
        let (ours, theirs) = (GroupId::new("ours"), GroupId::new("theirs"));
        let mut stream = state.hub.subscribe(&ours);
        let ada = ticket(&state, &ours, "Ada");
        heartbeat(&state, &ours, HOME, form(&ada, "tab-1")).await.unwrap();
        assert!(told(&mut stream).await);
        let eve = ticket(&state, &theirs, "Eve");
        let forged = ticket(&state, &ours, "Ada").replace("v1.", "v1.x");
        let foreign = TicketKeys::new(b"another server's secret, 32 b!!!".to_vec())
            .issue(&ours, &crate::shared::domain::Username::parse("Mallory").unwrap());
        for bad in [eve.as_str(), forged.as_str(), foreign.as_str(), "", "not-a-ticket"] {
            for tab in ["tab-1", "tab-2"] {
                let refused = heartbeat(&state, &ours, HOME, form(bad, tab)).await.unwrap_err();
                assert_eq!((refused.kind, refused.status()), (ErrorKind::BadTicket, 403), "{bad:?}");
                let refused = depart(&state, &ours, form(bad, tab)).await.unwrap_err();
                assert_eq!(refused.kind, ErrorKind::BadTicket, "{bad:?}");
            }
        }
        assert_eq!(state.presence.list(&ours).await.unwrap(), ["Ada"], "Ada is still here, and only Ada");
        assert!(state.presence.list(&theirs).await.unwrap().is_empty());
        assert!(!told(&mut stream).await, "the group heard nothing");
    }

    #[tokio::test]
    async fn a_malformed_tab_is_a_bad_request_and_heartbeats_are_rate_limited_per_ticket() {
        let state = state(LocalThrottle::new(1, 2, true).map(|t| SendThrottle::Local(t.counting("heartbeats"))));
        let group = GroupId::new("g");
        let ada = ticket(&state, &group, "Ada");
        for tab in ["", "a b", "é", &"x".repeat(41)] {
            let refused = heartbeat(&state, &group, HOME, form(&ada, tab)).await.unwrap_err();
            assert_eq!((refused.kind, refused.status()), (ErrorKind::BadRequest, 400), "{tab:?}");
            assert!(refused.message.contains("\"tab\""), "{}", refused.message);
        }
        heartbeat(&state, &group, HOME, form(&ada, "t")).await.unwrap();
        heartbeat(&state, &group, HOME, form(&ada, "t")).await.unwrap();
        let refused = heartbeat(&state, &group, HOME, form(&ada, "t")).await.unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::RateLimited, 429));
        assert!(refused.message.contains("heartbeats a second"), "{}", refused.message);
        assert!(refused.into_response().headers().contains_key(header::RETRY_AFTER));
    }

    /// Bob knows Ada's tab id (scope `everyone`: one group): his leave of it leaves Ada listed, his beat of it lists
    /// Bob in a tab of his own, and Ada's name is never replaced.
    #[tokio::test(start_paused = true)]
    async fn another_ticket_can_neither_unlist_nor_rename_a_tab_whose_id_it_knows() {
        let state = state(None);
        let group = GroupId::everyone();
        let mut stream = state.hub.subscribe(&group);
        let (ada, bob) = (ticket(&state, &group, "Ada"), ticket(&state, &group, "Bob"));
        heartbeat(&state, &group, HOME, form(&ada, "ada-tab")).await.unwrap();
        assert!(told(&mut stream).await);
        depart(&state, &group, form(&bob, "ada-tab")).await.unwrap();
        assert_eq!(state.presence.list(&group).await.unwrap(), ["Ada"]);
        assert!(!told(&mut stream).await, "nothing changed");
        heartbeat(&state, &group, HOME, form(&bob, "ada-tab")).await.unwrap();
        assert_eq!(state.presence.list(&group).await.unwrap(), ["Ada", "Bob"]);
        depart(&state, &group, form(&bob, "ada-tab")).await.unwrap();
        assert_eq!(state.presence.list(&group).await.unwrap(), ["Ada"], "Bob's leave took only Bob's tab");
        depart(&state, &group, form(&ada, "ada-tab")).await.unwrap();
        assert!(state.presence.list(&group).await.unwrap().is_empty(), "the owner's leave still works");
    }

    /// One address beating fresh tab ids from many tickets holds the per-network cap and no more, and a visitor
    /// from elsewhere is still listed, with a 2xx.
    #[tokio::test(start_paused = true)]
    async fn one_network_holds_its_share_and_a_visitor_from_elsewhere_is_listed() {
        let caps = crate::server::presence::Caps { per_network: 10, ..Default::default() };
        let state = AppState::from(Services {
            presence: Arc::new(MemoryPresence::new(caps)),
            lease: LEASE,
            ..services_for_tests(Arc::new(MemoryStore::new(10)), None)
        });
        let group = GroupId::everyone();
        for i in 0..50 {
            let eve = ticket(&state, &group, &format!("Eve{i}"));
            for t in 0..10 {
                // a /64 is one network, whatever address in it
                let from = std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, i, t));
                heartbeat(&state, &group, from, form(&eve, &format!("t{t}"))).await.unwrap();
            }
        }
        assert!(state.presence.list(&group).await.unwrap().len() <= 10);
        heartbeat(&state, &group, HOME, form(&ticket(&state, &group, "Ada"), "mine")).await.unwrap();
        assert!(state.presence.list(&group).await.unwrap().contains(&"Ada".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_tells_the_group_whose_lease_ran_out() {
        let state = state(None);
        let group = GroupId::new("g");
        let mut stream = state.hub.subscribe(&group);
        heartbeat(&state, &group, HOME, form(&ticket(&state, &group, "Ada"), "t")).await.unwrap();
        assert!(told(&mut stream).await);
        tokio::spawn(sweep(state.presence.clone(), state.hub.clone(), SWEEP_EVERY));
        tokio::time::sleep(LEASE - SWEEP_EVERY * 3).await;
        assert!(!told(&mut stream).await);
        assert!(tokio::time::timeout(SWEEP_EVERY * 4, stream.next()).await.unwrap().unwrap().presence);
        assert!(state.presence.list(&group).await.unwrap().is_empty());
    }

    #[test]
    fn a_tab_beats_three_times_a_lease() {
        assert_eq!(beat_every(LEASE), Duration::from_secs(10));
    }
}
