//! The HTTP edge of presence (`server::presence`): `POST /api/presence` (a joined tab's heartbeat), `POST
//! /api/presence/leave` (the page going away, sent with `navigator.sendBeacon`), `GET /api/presence` (who is here),
//! and the sweep that drops leases that ran out. Whenever who is here changes, the group's event streams carry a
//! `PresenceChanged` (`Hub::presence_changed`) and each tab asks `GET /api/presence` again: the list itself never
//! travels on the stream, so a notice is a few bytes whatever the group's size.
//!
//! A heartbeat or a leave must carry a ticket issued to this session group (else 403, and nothing changes) and a
//! well-formed tab id (else 400); heartbeats come out of their own per-ticket and per-group budgets, as sends do
//! (429 with `Retry-After`). One process: the hub is told directly; with several replicas, presence changes would
//! travel on the bus as message notices do.

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
use crate::server::presence::{Presence, PresenceError, TabId, MAX_TAB_ID_BYTES};
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

async fn beat(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    form: Result<Form<TabForm>, FormRejection>,
) -> Response {
    match heartbeat(&state, &group, form).await {
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

/// Renews (or starts) the lease of the form's tab under its ticket's name; tells the group if its names changed.
async fn heartbeat(
    state: &AppState,
    group: &GroupId,
    form: Result<Form<TabForm>, FormRejection>,
) -> Result<(), ApiError> {
    let (tab, ticket) = admitted(state, group, form).await?;
    let changed = state.presence.beat(group, &tab, &ticket.author, state.lease).await.map_err(refusal)?;
    announce_if(&state.hub, group, changed);
    Ok(())
}

/// Drops the form's tab at once; tells the group if a name went with it.
async fn depart(state: &AppState, group: &GroupId, form: Result<Form<TabForm>, FormRejection>) -> Result<(), ApiError> {
    let (tab, _) = admitted(state, group, form).await?;
    let changed = state.presence.leave(group, &tab).await.map_err(refusal)?;
    announce_if(&state.hub, group, changed);
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

fn announce_if(hub: &Hub, group: &GroupId, changed: bool) {
    if changed {
        hub.presence_changed(group);
    }
}

fn refusal(err: PresenceError) -> ApiError {
    match err {
        PresenceError::GroupFull(_) => ApiError::new(ErrorKind::RateLimited, err.to_string()),
        PresenceError::Full => ApiError::new(ErrorKind::Unavailable, err.to_string()),
        PresenceError::Unavailable(_) => {
            tracing::warn!(error = %err, "presence could not be read or written");
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
            Err(err) => tracing::warn!(error = %err, "presence leases could not be swept"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::presence::MemoryPresence;
    use crate::server::store::MemoryStore;
    use crate::server::throttle::{LocalThrottle, SendThrottle};
    use crate::server::ticket::TicketKeys;
    use futures::StreamExt;

    const LEASE: Duration = Duration::from_secs(30);

    fn state(heartbeats: Option<SendThrottle>) -> AppState {
        crate::server::state::for_tests(Arc::new(MemoryStore::new(10)), None).with_presence(
            Arc::new(MemoryPresence::default()),
            LEASE,
            heartbeats,
        )
    }

    fn form(ticket: &str, tab: &str) -> Result<Form<TabForm>, FormRejection> {
        Ok(Form(TabForm { ticket: ticket.to_owned(), tab: tab.to_owned() }))
    }

    fn ticket(state: &AppState, group: &GroupId, name: &str) -> String {
        state.tickets.issue(group, &crate::shared::domain::Username::parse(name).unwrap())
    }

    async fn told(sub: &mut crate::server::hub::Subscription) -> bool {
        let notice = tokio::time::timeout(Duration::from_millis(50), sub.next()).await.ok().flatten();
        notice.is_some_and(|notice| notice.presence)
    }

    #[tokio::test]
    async fn a_heartbeat_lists_the_tickets_name_and_tells_the_group_once() {
        let state = state(None);
        let group = GroupId::new("g");
        let mut stream = state.hub.subscribe(&group);
        let ada = ticket(&state, &group, "Ada");
        heartbeat(&state, &group, form(&ada, "tab-1")).await.unwrap();
        assert!(told(&mut stream).await);
        heartbeat(&state, &group, form(&ada, "tab-1")).await.unwrap();
        assert!(!told(&mut stream).await, "a renewal is not news");
        assert_eq!(state.presence.list(&group).await.unwrap(), ["Ada"]);
        depart(&state, &group, form(&ada, "tab-1")).await.unwrap();
        assert!(told(&mut stream).await);
        assert!(state.presence.list(&group).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_forged_or_other_groups_ticket_is_refused_and_changes_nothing() {
        let state = state(None);
        let (ours, theirs) = (GroupId::new("ours"), GroupId::new("theirs"));
        let mut stream = state.hub.subscribe(&ours);
        let ada = ticket(&state, &ours, "Ada");
        heartbeat(&state, &ours, form(&ada, "tab-1")).await.unwrap();
        assert!(told(&mut stream).await);
        let eve = ticket(&state, &theirs, "Eve");
        let forged = ticket(&state, &ours, "Ada").replace("v1.", "v1.x");
        let foreign = TicketKeys::new(b"another server's secret, 32 b!!!".to_vec())
            .issue(&ours, &crate::shared::domain::Username::parse("Mallory").unwrap());
        for bad in [eve.as_str(), forged.as_str(), foreign.as_str(), "", "not-a-ticket"] {
            for tab in ["tab-1", "tab-2"] {
                let refused = heartbeat(&state, &ours, form(bad, tab)).await.unwrap_err();
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
            let refused = heartbeat(&state, &group, form(&ada, tab)).await.unwrap_err();
            assert_eq!((refused.kind, refused.status()), (ErrorKind::BadRequest, 400), "{tab:?}");
            assert!(refused.message.contains("\"tab\""), "{}", refused.message);
        }
        heartbeat(&state, &group, form(&ada, "t")).await.unwrap();
        heartbeat(&state, &group, form(&ada, "t")).await.unwrap();
        let refused = heartbeat(&state, &group, form(&ada, "t")).await.unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::RateLimited, 429));
        assert!(refused.message.contains("heartbeats a second"), "{}", refused.message);
        assert!(refused.into_response().headers().contains_key(header::RETRY_AFTER));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_tells_the_group_whose_lease_ran_out() {
        let state = state(None);
        let group = GroupId::new("g");
        let mut stream = state.hub.subscribe(&group);
        heartbeat(&state, &group, form(&ticket(&state, &group, "Ada"), "t")).await.unwrap();
        assert!(told(&mut stream).await);
        tokio::spawn(sweep(state.presence.clone(), state.hub.clone(), SWEEP_EVERY));
        tokio::time::sleep(LEASE - SWEEP_EVERY).await;
        assert!(!told(&mut stream).await);
        assert!(tokio::time::timeout(SWEEP_EVERY * 3, stream.next()).await.unwrap().unwrap().presence);
        assert!(state.presence.list(&group).await.unwrap().is_empty());
    }

    #[test]
    fn a_tab_beats_three_times_a_lease() {
        assert_eq!(beat_every(LEASE), Duration::from_secs(10));
    }
}
