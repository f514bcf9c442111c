//! Start-up, like a table of contents: settings → backend (`backend::open`) → state → routes (`routes::app`) →
//! listener, and the background passes: retention (`pruning`; on Redis, by the replica holding its lease), idle
//! budgets, presence leases.

use std::sync::Arc;

use leptos::config::LeptosOptions;

use crate::server::net::{listen, serve, Deadlines};
use crate::server::peer::Peers;
use crate::server::pruning::{self, Turn};
use crate::server::routes::{app, shortcut};
use crate::server::security::Framers;
use crate::server::settings::Settings;
use crate::server::state::{AppState, FeedGate, Limits, Services, StreamCaps};
use crate::server::throttle::{LocalThrottle, SendThrottle};
use crate::server::{backend, data_dir, group, observe, open_files, roster};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    #[error(transparent)]
    DataDir(#[from] data_dir::LockError),
    #[error(
        "setting `max-streams` is {given}, but the open-file limit ({limit}) leaves room for {fit} event streams; \
         lower max-streams or raise the limit (ulimit -n, LimitNOFILE=)"
    )]
    TooManyStreams { given: usize, fit: usize, limit: u64 },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

fn leptos_options(settings: &Settings) -> LeptosOptions {
    let env_or = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    LeptosOptions::builder()
        .output_name(env_or("LEPTOS_OUTPUT_NAME", "broadcasting"))
        .site_root(settings.server.site_root.to_string_lossy().into_owned())
        .site_pkg_dir(env_or("LEPTOS_SITE_PKG_DIR", "pkg"))
        .site_addr(settings.server.addr)
        .reload_port(env_or("LEPTOS_RELOAD_PORT", "3001").parse::<u32>().unwrap_or(3001))
        .build()
}

/// The state the routes share (its backend-specific parts from `backend::open`), and, when replicas share the
/// log, whose turn it is to prune it.
pub async fn build_state(settings: &Settings) -> Result<(AppState, Option<Arc<dyn Turn>>), StartupError> {
    // With scope `everyone` every visitor is one group: the per-browser stream cap and send budget do not apply.
    let per_browser = settings.feed.scope == group::Scope::Browser;
    let backend::Parts { store, hub, broker, presence, throttle, stream_leases, tickets, address_budgets, turn } =
        backend::open(settings).await?;
    // Heartbeats and leaves: enough for every tab an address may list to beat as often as it is asked to.
    let beats = settings.presence.max_tabs_per_address as f64
        / roster::beat_every(settings.presence.presence_lease).as_secs_f64();
    let mut peers = Peers::new(
        settings.connections.trusted_proxies.clone(),
        settings.limits.address_rate,
        settings.limits.address_burst,
    )
    .with_stream_cap(settings.limits.max_streams_per_address)
    .with_new_feeds(settings.limits.new_feeds_per_hour)
    .with_presence_rate(beats.ceil().min(f64::from(u32::MAX)) as u32);
    if let Some(budgets) = address_budgets {
        peers = peers.shared_through(budgets);
    }
    // Per process on every backend: a heartbeat only renews a bounded lease, so budgets split over replicas cost
    // little (sends and stream places are the ones shared).
    let heartbeats = LocalThrottle::new(settings.limits.send_rate, settings.limits.send_burst, per_browser)
        .map(|t| SendThrottle::Local(t.counting("heartbeats")));
    let state = AppState::from(Services {
        store,
        hub,
        broker,
        throttle: throttle.map(Arc::new),
        stream_leases,
        tickets: tickets.with_lifetime(settings.tickets.ticket_lifetime),
        peers: Arc::new(peers),
        limits: Limits {
            max_message_chars: settings.feed.max_message_chars,
            page_size: settings.feed.page_size,
            page_bytes: settings.feed.page_bytes,
            max_request_bytes: settings.connections.max_request_bytes,
            request_timeout: settings.connections.request_timeout,
            streams: StreamCaps {
                total: settings.limits.max_streams,
                per_group: if per_browser { settings.limits.max_streams_per_browser } else { 0 },
                feeds: settings.limits.max_feeds_per_stream,
            },
            horizon: settings.horizon(),
            feeds: Arc::new(FeedGate::new(settings.listed_feeds(), settings.feed.max_feeds)),
        },
        leptos: leptos_options(settings),
        presence,
        lease: settings.presence.presence_lease,
        heartbeats: heartbeats.map(Arc::new),
    });
    Ok((state, turn))
}

/// Serves until SIGINT or SIGTERM; then open event streams end (tabs reconnect elsewhere or later).
pub async fn run(mut settings: Settings) -> Result<(), StartupError> {
    settings.limits.max_streams = streams_under_the_file_limit(&settings)?;
    // One data directory, one server: held until the process exits.
    let _data_dir =
        if backend::keeps_files(&settings) { Some(data_dir::lock(&settings.store.data_dir)?) } else { None };
    let (state, turn) = build_state(&settings).await?;
    if let Err(err) = observe::install() {
        tracing::warn!(error = %err, "metrics are not recorded");
    }
    let hub = state.hub.clone();
    let listener = listen(settings.server.addr, settings.connections.send_buffer_bytes)
        .map_err(|source| StartupError::Bind { addr: settings.server.addr, source })?;
    let addr = listener.local_addr().map_err(StartupError::Serve)?;
    // Tests and scripts read this line to find the port.
    println!("broadcasting listening on http://{addr}");
    tracing::info!(%addr, scope = ?settings.feed.scope, "listening");
    let policy = pruning::Policy {
        default: settings.retention(),
        per_feed: settings.named_feeds.keys().map(|feed| (feed.clone(), settings.retention_of(feed))).collect(),
    };
    tokio::spawn(pruning::run(state.store.clone(), state.broker.clone(), policy, turn));
    let throttles = [state.throttle.clone(), state.heartbeats.clone()];
    tokio::spawn(forget_idle_budgets(throttles, state.peers.clone(), settings.feed.prune_every));
    tokio::spawn(roster::sweep(state.presence.clone(), state.broker.clone(), roster::SWEEP_EVERY));
    let shortcut = shortcut(state.clone());
    let router = app(state, settings.feed.scope, Framers::new(&settings.embed.embed_origins));
    let deadlines = Deadlines {
        header: settings.connections.header_timeout,
        idle: settings.connections.idle_timeout,
        write: settings.connections.write_timeout,
        shutdown_grace: settings.server.shutdown_grace,
    };
    let signal = async {
        wait_for_signal().await;
        tracing::info!("shutting down");
    };
    // Event streams end at once (tabs reconnect); other requests get the grace period to finish.
    serve(listener, router, shortcut, deadlines, signal, move || hub.close()).await;
    Ok(())
}

/// Raises the open-file limit and fits `max-streams` under it (see `open_files`).
fn streams_under_the_file_limit(settings: &Settings) -> Result<usize, StartupError> {
    let limit = match open_files::raise_limit() {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the open-file limit; max-streams left as set");
            return Ok(settings.limits.max_streams);
        }
    };
    let fit = open_files::fit_streams(settings.limits.max_streams, settings.limits.max_streams_given, limit);
    let chosen = fit.map_err(|fit| StartupError::TooManyStreams { given: settings.limits.max_streams, fit, limit })?;
    if chosen < settings.limits.max_streams || settings.limits.max_streams == 0 {
        tracing::warn!(
            open_file_limit = limit,
            max_streams = chosen,
            "event streams capped to fit the open-file limit"
        );
    } else {
        tracing::info!(open_file_limit = limit, max_streams = chosen, "event streams fit the open-file limit");
    }
    Ok(chosen)
}

/// Drops the send, heartbeat and address budgets of idle keys, on retention's clock.
async fn forget_idle_budgets(throttles: [Option<Arc<SendThrottle>>; 2], peers: Arc<Peers>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        throttles.iter().flatten().for_each(|throttle| throttle.forget_idle());
        peers.forget_idle();
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
