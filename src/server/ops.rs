//! Operations endpoints: `GET /healthz` (liveness: the process serves requests), `GET /readyz` (readiness: this
//! replica can serve the feed now, its store answering) and `GET /metrics` (Prometheus text format, rendered by
//! `observe`).

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

/// 200 when the store answers (always, for a store in this process); 503 with a sentence otherwise, so a load
/// balancer sends this replica no traffic while its Redis is unreachable.
async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(err) => {
            tracing::debug!(error = %err, "not ready");
            let sentence = "not ready: the message log is unreachable from this replica; try again\n";
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], sentence).into_response()
        }
    }
}

async fn scrape(State(state): State<AppState>) -> Response {
    match observe::render(state.hub.subscribers()) {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are not being recorded in this process\n").into_response(),
    }
}
