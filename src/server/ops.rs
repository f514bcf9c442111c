//! Operations endpoints: `GET /healthz` (liveness: the process serves requests), `GET /readyz` (readiness: this
//! replica can serve the feed now: its store answers and takes writes, as a send needs) and `GET /metrics`
//! (Prometheus text format, rendered by `observe`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::observe;
use crate::server::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(scrape))
}

/// 200 when the store takes a send now (`FeedStore::ready`: probed at most about once a second); 503 with a sentence
/// otherwise, so a load balancer sends this replica no traffic while its Redis is unreachable, a replica, or full.
/// The store logs the turns; each refused probe is only a debug line.
async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(err) => {
            tracing::debug!(error = %err, "not ready");
            let sentence = "not ready: the message log cannot take writes from this replica now; try again\n";
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], sentence).into_response()
        }
    }
}

async fn scrape(State(state): State<AppState>) -> Response {
    match observe::render(state.hub.streams_open(), state.hub.feeds_followed()) {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are not being recorded in this process\n").into_response(),
    }
}
