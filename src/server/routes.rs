//! The whole router: each handler module exposes its routes (`messages`, `heartbeat`, `events`, `ops`; the page and the server
//! functions come from Leptos), and `app` assembles them under the layers every request passes, except the hot
//! read of the log (`messages`), which answers prepared bytes with its own headers. Tests and `main` serve the same
//! thing.

use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{middleware, Router};
use hyper::body::Incoming;
use leptos_axum::{AxumRouteListing, LeptosRoutes};
use leptos_router::{Method, SsrMode};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::client::shell;
use crate::server::state::AppState;
use crate::server::{events, group, heartbeat, messages, observe, ops, peer, refusal, security};

pub fn app(state: AppState, scope: group::Scope) -> Router {
    // One page. `Async` renders it whole once the log is read, so the first HTML holds the log as plain markup
    // (streamed out-of-order it could arrive as a template that needs JavaScript to show).
    let routes = vec![AxumRouteListing::new("/".into(), SsrMode::Async, [Method::Get], vec![])];
    // A release build is precompressed (`cargo leptos build --release --precompress`): serve the `.br`/`.gz` files
    // next to each asset when the browser takes them; otherwise the compression layer below compresses on the fly.
    let static_files = ServeDir::new(state.leptos.site_root.as_ref())
        .precompressed_br()
        .precompressed_gzip()
        .not_found_service(get(|| async { (StatusCode::NOT_FOUND, "Not found") }));
    // The event stream stays outside the per-request layers below: it is never compressed (SSE must not be
    // buffered), and a long-lived stream should carry as little per-connection state as it can.
    let events = events::routes().route_layer(middleware::from_fn_with_state(scope, group::assign));
    let router = Router::new()
        .leptos_routes(&state, routes, {
            let options = state.leptos.clone();
            // The page's Content-Security-Policy is set while the server renders it (it needs that response's nonce).
            move || {
                security::protect_page();
                shell(options.clone())
            }
        })
        .merge(heartbeat::routes())
        .fallback_service(static_files)
        .layer(middleware::from_fn_with_state(scope, group::assign))
        .layer(middleware::from_fn_with_state(state.limits.max_request_bytes, refusal::checked_forms))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.limits.request_timeout))
        .layer(RequestBodyLimitLayer::new(state.limits.max_request_bytes))
        .layer(middleware::from_fn_with_state(state.limits.max_request_bytes, refusal::as_api_errors))
        .layer(CompressionLayer::new())
        // A 503's cause is logged where it arises, once per outage (`observe`), not once per request here.
        .layer(TraceLayer::new_for_http().on_failure(observe::response_failed))
        .merge(events)
        .merge(ops::routes())
        .layer(middleware::from_fn_with_state(state.peers.clone(), peer::admit))
        .with_state(state.clone());
    // The refetch every tab makes after every notice passes none of the layers above: it needs no session group,
    // peer budget, body limit, compression or span, and sets its own headers (see `messages`).
    security::headers(router).merge(messages::routes().with_state(state))
}

/// What the listener answers before `app`'s router: a refetch whose page is made already (`messages::shortcut`).
pub fn shortcut(
    state: AppState,
) -> impl Fn(&Request<Incoming>) -> Option<Response> + Clone + Send + Sync + Unpin + 'static {
    move |request| messages::shortcut(&state, request)
}
