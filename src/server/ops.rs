//! Operations endpoints: `GET /healthz` (liveness: the process serves requests) and `GET /metrics` (Prometheus
//! text format, rendered by `observe`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::observe;
use crate::server::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/metrics", get(scrape))
}

async fn scrape(State(state): State<AppState>) -> Response {
    match observe::render(state.hub.subscribers()) {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics are not being recorded in this process\n").into_response(),
    }
}
