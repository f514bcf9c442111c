//! The floor: a bare axum + `tokio::sync::broadcast` SSE server with the same routes and frames as Broadcasting,
//! but no store, no session groups, no refetch. What Broadcasting's fan-out is compared against.

use anyhow::anyhow;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, StreamExt};
use tokio::sync::broadcast;

use crate::wire;

#[derive(Clone)]
struct Floor {
    next_id: Arc<AtomicU64>,
    notify: broadcast::Sender<u64>,
}

pub async fn serve(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let floor = Floor { next_id: Arc::default(), notify: broadcast::channel(64).0 };
    let app = Router::new()
        .route(wire::EVENTS_PATH, get(events))
        .route(wire::JOIN_PATH, post(|| async { Json(serde_json::json!({ "name": "bench", "ticket": "floor" })) }))
        .route(wire::SEND_PATH, post(send))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow!("bind {addr}: {e}"))?;
    println!("floor listening on http://{}", listener.local_addr()?);
    Ok(axum::serve(listener, app).await?)
}

async fn send(State(floor): State<Floor>) -> Json<serde_json::Value> {
    let id = floor.next_id.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = floor.notify.send(id);
    Json(serde_json::json!({ "id": id }))
}

async fn events(State(floor): State<Floor>) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let receiver = floor.notify.subscribe();
    let ids = stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(id) => return Some((id, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let frames = stream::once(async { Event::default().retry(std::time::Duration::from_secs(1)) })
        .chain(ids.map(|id| Event::default().event(wire::NEW_MESSAGE).id(id.to_string()).data(id.to_string())))
        .map(Ok);
    Sse::new(frames).keep_alive(KeepAlive::default())
}
