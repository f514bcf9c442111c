//! The presence use cases: a joined tab's heartbeat, its leave, who is here, and the sweep that drops leases that
//! ran out. Plain functions over the domain (a `GroupId`, the ticket and tab id as the tab sent them, the caller's
//! address) that answer a domain result or an `ApiError`: the HTTP edge (`heartbeat`) extracts, calls and maps, and
//! the tests below call them without HTTP. Apart from `presence`, the table itself, because a use case also checks
//! the ticket and the budgets and tells the broker, which the table (a leaf under the state) must not import.
//!
//! A heartbeat or a leave must carry a ticket issued to this session group (else 403, and nothing changes) and a
//! well-formed tab id (else 400); heartbeats come out of their own per-ticket and per-group budgets, as sends do
//! (429 with `Retry-After`). The tab is the ticket's: a beat or leave names the tab `tab` of the ticket it carries,
//! so knowing another tab's id gives no hold on it. A new tab is counted against the ticket and the caller's
//! network (`presence::Caps`). Whenever who is here changes, the group's streams hear of it
//! (the table answers the groups whose names changed; `Broker::presence_changed` tells them in every process), and
//! each tab asks for the list again: the list itself never travels on the stream.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::server::broker::Broker;
use crate::server::group::Audience;
use crate::server::observe;
use crate::server::presence::{Holder, Listed, Network, Presence, PresenceError, TabId, TicketTag, MAX_TAB_ID_BYTES};
use crate::server::state::AppState;
use crate::server::ticket::Verified;
use crate::shared::domain::{Beat, Here, Source};
use crate::shared::error::{ApiError, ErrorKind};

/// How often the sweep looks for leases that ran out: a tab that stopped beating is gone at most this long after
/// its lease.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How often a tab beats: three times a lease, so one lost or late heartbeat does not drop it.
pub fn beat_every(lease: Duration) -> Duration {
    lease / 3
}

/// Renews (or starts) the lease of the ticket's tab `tab` under its name, counted against the network of `address`;
/// tells each group whose names changed (a full list may have pushed out a tab of another group). Answers how soon
/// to beat again.
pub async fn beat(
    state: &AppState,
    group: &Audience,
    ticket: &str,
    tab: &str,
    address: IpAddr,
) -> Result<Beat, ApiError> {
    let (tab, ticket) = admitted(state, group, ticket, tab).await?;
    let holder = Holder { ticket: TicketTag::of(&ticket.id), network: Network::of(address) };
    let listed = Listed::new(&ticket.author, matches!(ticket.source, Source::Verified(_)));
    let changed = state.presence.beat(group, &holder, &tab, &listed, state.lease).await.map_err(refusal)?;
    announce(state.broker.as_ref(), &changed).await;
    let every_ms = u64::try_from(beat_every(state.lease).as_millis()).unwrap_or(u64::MAX);
    Ok(Beat { every_ms })
}

/// Drops the ticket's tab `tab` at once; tells the group if a name went with it.
pub async fn leave(state: &AppState, group: &Audience, ticket: &str, tab: &str) -> Result<(), ApiError> {
    let (tab, ticket) = admitted(state, group, ticket, tab).await?;
    let changed = state.presence.leave(group, &TicketTag::of(&ticket.id), &tab).await.map_err(refusal)?;
    announce(state.broker.as_ref(), &changed).await;
    Ok(())
}

/// The names listed in `group`, in order, and which of them the site's sign-in vouches for (`Here::verified`; the
/// page marks those, and only those, as it marks their messages).
pub async fn here(state: &AppState, group: &Audience) -> Result<Here, ApiError> {
    let listed = state.presence.list(group).await.map_err(refusal)?;
    let (mut names, mut verified) = (Vec::with_capacity(listed.len()), Vec::new());
    for entry in &listed {
        let (name, vouched) = Listed::read(entry);
        names.push(name.to_owned());
        if vouched {
            verified.push(name.to_owned());
        }
    }
    Ok(Here { names, verified })
}

/// The tab and the ticket of a well-formed request whose ticket this group was issued, within its budget: the tab
/// is checked first, so a malformed one is a 400 whatever the ticket.
async fn admitted(state: &AppState, group: &Audience, ticket: &str, tab: &str) -> Result<(TabId, Verified), ApiError> {
    let tab = TabId::parse(tab).ok_or_else(|| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("The field \"tab\" must be 1 to {MAX_TAB_ID_BYTES} ASCII letters, digits, '-' or '_'."),
        )
    })?;
    let ticket = state
        .tickets
        .authenticate(&group.group, ticket)
        .map_err(|err| ApiError::new(ErrorKind::BadTicket, err.to_string()))?;
    // On a private feed only a ticket for it is listed (a join checked its token's grants for that feed).
    if state.limits.feeds.access.of(&group.feed).private() && ticket.feed.as_ref() != Some(&group.feed) {
        return Err(crate::server::access::members_only(&group.feed));
    }
    if let Some(throttle) = &state.heartbeats {
        throttle.check(&group.group, &ticket.id).await?;
    }
    Ok((tab, ticket))
}

/// Tells `groups` that who is here changed. The change is made either way: a lost announcement costs the tabs of
/// those groups a stale list until the next change (said in the log once per outage).
async fn announce(broker: &dyn Broker, groups: &[Audience]) {
    if let Err(err) = broker.presence_changed(groups).await {
        observe::backend_failed("presence notices", &err);
    }
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
pub async fn sweep(presence: Arc<dyn Presence>, broker: Arc<dyn Broker>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match presence.expire().await {
            Ok(groups) => announce(broker.as_ref(), &groups).await,
            Err(err) => observe::backend_failed("presence", &err),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::server::group::GroupId;
    use crate::server::presence::MemoryPresence;
    use crate::server::store::MemoryStore;
    use crate::server::throttle::{LocalThrottle, SendThrottle};
    use crate::server::ticket::TicketKeys;
    use futures::StreamExt;

    const LEASE: Duration = Duration::from_secs(30);

    /// The test state with `presence`, 30 s leases and the heartbeat budgets `heartbeats` (also `heartbeat`'s).
    pub(crate) fn state_with(presence: MemoryPresence, heartbeats: Option<SendThrottle>) -> AppState {
        use crate::server::state::{services_for_tests, Services};
        AppState::from(Services {
            presence: Arc::new(presence),
            lease: LEASE,
            heartbeats: heartbeats.map(Arc::new),
            ..services_for_tests(Arc::new(MemoryStore::new(10)), None)
        })
    }

    fn state(heartbeats: Option<SendThrottle>) -> AppState {
        state_with(MemoryPresence::default(), heartbeats)
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
        let mut stream = state.hub.subscribe(&Audience::main(group.clone()));
        let ada = ticket(&state, &group, "Ada");
        let answer = beat(&state, &Audience::main(group.clone()), &ada, "tab-1", HOME).await.unwrap();
        assert_eq!(answer.every_ms, 10_000, "a third of the lease");
        assert!(told(&mut stream).await);
        beat(&state, &Audience::main(group.clone()), &ada, "tab-1", HOME).await.unwrap();
        assert!(!told(&mut stream).await, "a renewal is not news");
        assert_eq!(here(&state, &Audience::main(group.clone())).await.unwrap().names, ["Ada"]);
        leave(&state, &Audience::main(group.clone()), &ada, "tab-1").await.unwrap();
        assert!(told(&mut stream).await);
        assert!(here(&state, &Audience::main(group.clone())).await.unwrap().names.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_forged_or_other_groups_ticket_is_refused_and_changes_nothing() {
        let state = state(None);
        let (ours, theirs) = (GroupId::new("ours"), GroupId::new("theirs"));
        let mut stream = state.hub.subscribe(&Audience::main(ours.clone()));
        let ada = ticket(&state, &ours, "Ada");
        beat(&state, &Audience::main(ours.clone()), &ada, "tab-1", HOME).await.unwrap();
        assert!(told(&mut stream).await);
        let eve = ticket(&state, &theirs, "Eve");
        let forged = ticket(&state, &ours, "Ada").replace("v1.", "v1.x");
        let foreign = TicketKeys::new(b"another server's secret, 32 b!!!".to_vec())
            .issue(&ours, &crate::shared::domain::Username::parse("Mallory").unwrap());
        for bad in [eve.as_str(), forged.as_str(), foreign.as_str(), "", "not-a-ticket"] {
            for tab in ["tab-1", "tab-2"] {
                let refused = beat(&state, &Audience::main(ours.clone()), bad, tab, HOME).await.unwrap_err();
                assert_eq!((refused.kind, refused.status()), (ErrorKind::BadTicket, 403), "{bad:?}");
                let refused = leave(&state, &Audience::main(ours.clone()), bad, tab).await.unwrap_err();
                assert_eq!(refused.kind, ErrorKind::BadTicket, "{bad:?}");
            }
        }
        assert_eq!(
            here(&state, &Audience::main(ours.clone())).await.unwrap().names,
            ["Ada"],
            "Ada is still here, and only Ada"
        );
        assert!(here(&state, &Audience::main(theirs.clone())).await.unwrap().names.is_empty());
        assert!(!told(&mut stream).await, "the group heard nothing");
    }

    #[tokio::test]
    async fn a_malformed_tab_is_a_bad_request_and_heartbeats_are_rate_limited_per_ticket() {
        let state = state(LocalThrottle::new(1, 2, true).map(|t| SendThrottle::Local(t.counting("heartbeats"))));
        let group = GroupId::new("g");
        let ada = ticket(&state, &group, "Ada");
        for tab in ["", "a b", "é", &"x".repeat(41)] {
            let refused = beat(&state, &Audience::main(group.clone()), &ada, tab, HOME).await.unwrap_err();
            assert_eq!((refused.kind, refused.status()), (ErrorKind::BadRequest, 400), "{tab:?}");
            assert!(refused.message.contains("\"tab\""), "{}", refused.message);
        }
        beat(&state, &Audience::main(group.clone()), &ada, "t", HOME).await.unwrap();
        beat(&state, &Audience::main(group.clone()), &ada, "t", HOME).await.unwrap();
        let refused = beat(&state, &Audience::main(group.clone()), &ada, "t", HOME).await.unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::RateLimited, 429));
        assert!(refused.message.contains("heartbeats a second"), "{}", refused.message);
        assert!(refused.retry_after().is_some(), "the edge answers it with Retry-After (`ApiError::into_response`)");
    }

    /// Bob knows Ada's tab id (scope `everyone`: one group): his leave of it leaves Ada listed, his beat of it lists
    /// Bob in a tab of his own, and Ada's name is never replaced.
    #[tokio::test(start_paused = true)]
    async fn another_ticket_can_neither_unlist_nor_rename_a_tab_whose_id_it_knows() {
        let state = state(None);
        let group = GroupId::everyone();
        let mut stream = state.hub.subscribe(&Audience::main(group.clone()));
        let (ada, bob) = (ticket(&state, &group, "Ada"), ticket(&state, &group, "Bob"));
        beat(&state, &Audience::main(group.clone()), &ada, "ada-tab", HOME).await.unwrap();
        assert!(told(&mut stream).await);
        leave(&state, &Audience::main(group.clone()), &bob, "ada-tab").await.unwrap();
        assert_eq!(here(&state, &Audience::main(group.clone())).await.unwrap().names, ["Ada"]);
        assert!(!told(&mut stream).await, "nothing changed");
        beat(&state, &Audience::main(group.clone()), &bob, "ada-tab", HOME).await.unwrap();
        assert_eq!(here(&state, &Audience::main(group.clone())).await.unwrap().names, ["Ada", "Bob"]);
        leave(&state, &Audience::main(group.clone()), &bob, "ada-tab").await.unwrap();
        assert_eq!(
            here(&state, &Audience::main(group.clone())).await.unwrap().names,
            ["Ada"],
            "Bob's leave took only Bob's tab"
        );
        leave(&state, &Audience::main(group.clone()), &ada, "ada-tab").await.unwrap();
        assert!(
            here(&state, &Audience::main(group.clone())).await.unwrap().names.is_empty(),
            "the owner's leave still works"
        );
    }

    /// One address beating fresh tab ids from many tickets holds the per-network cap and no more, and a visitor
    /// from elsewhere is still listed, with a 2xx.
    #[tokio::test(start_paused = true)]
    async fn one_network_holds_its_share_and_a_visitor_from_elsewhere_is_listed() {
        let caps = crate::server::presence::Caps { per_network: 10, ..Default::default() };
        let state = state_with(MemoryPresence::new(caps), None);
        let group = GroupId::everyone();
        for i in 0..50 {
            let eve = ticket(&state, &group, &format!("Eve{i}"));
            for t in 0..10 {
                // a /64 is one network, whatever address in it
                let from = std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, i, t));
                beat(&state, &Audience::main(group.clone()), &eve, &format!("t{t}"), from).await.unwrap();
            }
        }
        assert!(here(&state, &Audience::main(group.clone())).await.unwrap().names.len() <= 10);
        beat(&state, &Audience::main(group.clone()), &ticket(&state, &group, "Ada"), "mine", HOME).await.unwrap();
        assert!(here(&state, &Audience::main(group.clone())).await.unwrap().names.contains(&"Ada".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_tells_the_group_whose_lease_ran_out() {
        let state = state(None);
        let group = GroupId::new("g");
        let mut stream = state.hub.subscribe(&Audience::main(group.clone()));
        beat(&state, &Audience::main(group.clone()), &ticket(&state, &group, "Ada"), "t", HOME).await.unwrap();
        assert!(told(&mut stream).await);
        tokio::spawn(sweep(state.presence.clone(), state.broker.clone(), SWEEP_EVERY));
        tokio::time::sleep(LEASE - SWEEP_EVERY * 3).await;
        assert!(!told(&mut stream).await);
        assert!(tokio::time::timeout(SWEEP_EVERY * 4, stream.next()).await.unwrap().unwrap().presence);
        assert!(here(&state, &Audience::main(group.clone())).await.unwrap().names.is_empty());
    }

    #[test]
    fn a_tab_beats_three_times_a_lease() {
        assert_eq!(beat_every(LEASE), Duration::from_secs(10));
    }
}
