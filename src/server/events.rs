//! `GET /events`: the Server-Sent Events stream of the caller's session group. Each append is announced as
//! `event: NewMessage` with `id:` and `data:` the newest message id; the tab then fetches what it has not seen.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Extension;
use futures::{stream, StreamExt};

use crate::server::{group::GroupId, AppState};

pub const EVENT_NAME: &str = "NewMessage";
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Asks the browser to reconnect one second after a drop (its default is about three).
const RETRY: Duration = Duration::from_secs(1);

fn new_message(id: u64) -> Event {
    Event::default().event(EVENT_NAME).id(id.to_string()).data(id.to_string())
}

pub async fn stream(
    State(state): State<AppState>,
    Extension(group): Extension<GroupId>,
    headers: HeaderMap,
) -> impl IntoResponse {
    // Subscribe before reading the latest id, so an append in between is announced rather than missed.
    let subscription = state.fanout.subscribe(&group);
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let catch_up = match last_seen {
        Some(seen) => match state.store.last_id().await {
            Ok(latest) if latest > seen => Some(latest),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the latest id for a reconnect");
                None
            }
        },
        None => None,
    };
    let shutdown = state.shutdown.clone();
    let events = stream::once(async { Event::default().retry(RETRY) })
        .chain(stream::iter(catch_up.map(new_message)))
        .chain(subscription.map(new_message))
        .take_until(async move { shutdown.wait().await })
        .map(Ok::<_, Infallible>);
    (
        [(header::CACHE_CONTROL, "no-cache"), (header::HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    )
}
