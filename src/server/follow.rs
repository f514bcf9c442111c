//! The stream use case: a tab follows its session group's notices. `follow` admits the stream under the caps (this
//! process's total; per browser, in this process's hub or across replicas by leases; per client address), subscribes
//! it to the hub and answers its notices, a catch-up first when the tab reconnects behind the latest id.
//! A plain function over a `GroupId`, the caller's address and the last id it saw; the HTTP edge (`events`) reads
//! those from the request and writes their frames into a Server-Sent Events body.

use std::net::IpAddr;

use futures::{stream, Stream, StreamExt};

use crate::server::group::{Audience, GroupId};
use crate::server::hub::{Notice, StreamCount, Subscription};
use crate::server::observe;
use crate::server::peer::StreamPlace;
use crate::server::replicas::stream_leases::StreamLease;
use crate::server::state::AppState;
use crate::shared::domain::FeedName;
use crate::shared::error::{ApiError, ErrorKind};

/// The notices of `group` on each of `feeds` from now on, merged into one stream (each names its feed), preceded,
/// when `last_seen` is behind the latest id of the first feed, by one for that id (a reconnecting stream of one
/// feed: `Last-Event-ID`); or the refusal of a stream beyond a cap. The stream holds its place in the caps until it
/// is dropped.
pub async fn follow(
    state: &AppState,
    group: &GroupId,
    feeds: &[FeedName],
    address: IpAddr,
    last_seen: Option<u64>,
) -> Result<impl Stream<Item = Notice> + Send + 'static, ApiError> {
    let held = admit(state, group, address).await?;
    // Subscribe before reading the latest id, so an append in between is announced rather than missed.
    let mut subscriptions: Vec<Subscription> =
        feeds.iter().map(|feed| state.hub.subscribe(&Audience::new(feed.clone(), group.clone()))).collect();
    let catch_up = match (last_seen, feeds.first()) {
        (Some(seen), Some(feed)) => match state.store.last_id(feed).await {
            Ok(latest) if latest > seen => Some(Notice::new(feed, latest)),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the latest id for a reconnect");
                None
            }
        },
        _ => None,
    };
    // One feed (every stream of a tab of before feeds, and most others): its subscription as it is, without the
    // merging machinery, which an idle stream would carry for nothing.
    let merged: Subscription = match subscriptions.len() {
        1 => subscriptions.pop().expect("one"),
        _ => Box::pin(stream::select_all(subscriptions)),
    };
    let notices = stream::iter(catch_up).chain(merged);
    Ok(notices.map(move |notice| {
        let _held = &held;
        notice
    }))
}

/// What an admitted stream holds until it ends: its count in the hub, its address's place and, across replicas, its
/// browser's lease.
struct Held {
    _count: StreamCount,
    _place: Option<StreamPlace>,
    _lease: Option<StreamLease>,
}

/// Refuses a stream beyond the caps: in total (503, the server is full), per session group and per client address
/// (429); answers what the stream holds. The total cap is this process's; the group cap is counted in this
/// process's hub, or across replicas by leases in Redis (503 when Redis cannot be asked). The total and the local
/// group counts are read, then the stream subscribes, so concurrent openings may pass those caps by a few.
async fn admit(state: &AppState, group: &GroupId, address: IpAddr) -> Result<Held, ApiError> {
    let admitted = admit_counted(state, group, address).await;
    if let Err(refusal) = &admitted {
        observe::stream_refused(refusal.kind.code());
    }
    admitted
}

async fn admit_counted(state: &AppState, group: &GroupId, address: IpAddr) -> Result<Held, ApiError> {
    let caps = state.limits.streams;
    let (of_group, in_all) = state.hub.streams(group);
    if caps.total > 0 && in_all >= caps.total {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "This server holds as many live streams as it can; retrying shortly.",
        ));
    }
    let lease = match &state.stream_leases {
        Some(leases) => Some(leases.admit(group).await?.ok_or_else(|| browser_full(leases.cap()))?),
        None if caps.per_group > 0 && of_group >= caps.per_group => {
            return Err(browser_full(caps.per_group));
        }
        None => None,
    };
    // A refusal here drops the lease just taken, which removes it.
    let place = state.peers.open_stream(address)?;
    Ok(Held { _count: state.hub.open_stream(group), _place: place, _lease: lease })
}

/// 429 `too_many_streams`: the browser's cap, wherever it is counted.
fn browser_full(cap: usize) -> ApiError {
    ApiError::new(
        ErrorKind::TooManyStreams,
        format!("This browser already has {cap} live streams here; close a tab to go live in this one."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::group::GroupId;
    use crate::server::store::MemoryStore;
    use std::sync::Arc;
    use std::time::Duration;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    async fn next_now(notices: &mut (impl Stream<Item = Notice> + Unpin)) -> Option<u64> {
        tokio::time::timeout(Duration::from_millis(50), notices.next()).await.ok().flatten().map(|notice| notice.id)
    }

    /// A reconnect behind the latest id hears of it at once, then every append; one that is not behind hears only
    /// what comes; the stream holds its subscription until it is dropped.
    /// `text` sent to the main feed by `ticket`'s tab.
    async fn say(state: &AppState, group: &GroupId, ticket: &str, text: &str) {
        crate::server::feed::send(state, &FeedName::main(), group, HOME, ticket, text, "").await.unwrap();
    }

    #[tokio::test]
    async fn a_follower_catches_up_then_hears_each_append_and_lets_go_when_dropped() {
        let state = crate::server::state::for_tests(Arc::new(MemoryStore::new(100)), None);
        let group = GroupId::new("g");
        let ticket =
            crate::server::feed::join(&state, &group, &crate::shared::domain::FeedName::main(), "ada").unwrap().ticket;
        for text in ["one", "two"] {
            say(&state, &group, &ticket, text).await;
        }
        let mut behind = Box::pin(follow(&state, &group, &[FeedName::main()], HOME, Some(1)).await.unwrap());
        let mut current = Box::pin(follow(&state, &group, &[FeedName::main()], HOME, Some(2)).await.unwrap());
        let mut fresh = Box::pin(follow(&state, &group, &[FeedName::main()], HOME, None).await.unwrap());
        assert_eq!(next_now(&mut behind).await, Some(2));
        assert_eq!(next_now(&mut current).await, None);
        assert_eq!(next_now(&mut fresh).await, None);
        assert_eq!(state.hub.streams(&group).0, 3);
        say(&state, &group, &ticket, "three").await;
        for notices in [&mut behind, &mut current, &mut fresh] {
            assert_eq!(next_now(notices).await, Some(3));
        }
        drop((behind, current, fresh));
        assert_eq!(state.hub.streams(&group).0, 0);
    }
}
