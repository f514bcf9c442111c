//! Start-up, like a table of contents: settings → state → routes (`routes::app`) → listener, and the background
//! passes: retention (on Redis, by the replica holding its lease), idle budgets, presence leases.

use std::sync::Arc;

use leptos::config::LeptosOptions;

use crate::server::net::{listen, serve, Deadlines};
use crate::server::peer::Peers;
use crate::server::presence::redis::RedisPresence;
use crate::server::presence::{Caps, MemoryPresence, Presence};
use crate::server::replicas::retention_lease::RetentionLease;
use crate::server::replicas::send_limit::{RedisBudget, RedisThrottle};
use crate::server::replicas::stream_leases::{StreamLeases, LEASE, RENEW_EVERY};
use crate::server::replicas::{replica_id, secret, Link};
use crate::server::routes::{app, shortcut};
use crate::server::settings::{Settings, StoreKind};
use crate::server::state::{AppState, Limits, Services, StreamCaps};
use crate::server::store::retention::{self, Turn};
use crate::server::throttle::{LocalThrottle, SendThrottle};
use crate::server::ticket::TicketKeys;
use crate::server::{backend, data_dir, group, observe, open_files, roster};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    #[error(transparent)]
    DataDir(#[from] data_dir::LockError),
    #[error("cannot load or create the ticket secret in {dir}: {source}")]
    Secret { dir: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    SharedSecret(#[from] secret::SecretError),
    #[error("cannot use Redis: {0}")]
    Redis(String),
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

/// The state the routes share, and, when replicas share the log, whose turn it is to prune it.
pub async fn build_state(settings: &Settings) -> Result<(AppState, Option<Arc<dyn Turn>>), StartupError> {
    // With scope `everyone` every visitor is one group: the per-browser stream cap and send budget do not apply.
    let per_browser = settings.feed.scope == group::Scope::Browser;
    // Heartbeats and leaves: enough for every tab an address may list to beat as often as it is asked to.
    let beats = settings.presence.max_tabs_per_address as f64
        / roster::beat_every(settings.presence.presence_lease).as_secs_f64();
    let peers = Peers::new(
        settings.connections.trusted_proxies.clone(),
        settings.limits.address_rate,
        settings.limits.address_burst,
    )
    .with_stream_cap(settings.limits.max_streams_per_address)
    .with_presence_rate(beats.ceil().min(f64::from(u32::MAX)) as u32);
    let (tickets, throttle, stream_leases, presence, peers, turn) = if settings.store.kind == StoreKind::Redis {
        let shared = shared_through_redis(settings, per_browser).await?;
        let peers = peers.shared_through(Arc::new(RedisBudget::new(shared.link)));
        let turn: Option<Arc<dyn Turn>> = Some(shared.retention);
        (TicketKeys::new(shared.secret), shared.throttle, shared.stream_leases, shared.presence, peers, turn)
    } else {
        let tickets = TicketKeys::load(settings.tickets.secret.as_deref(), &settings.store.data_dir)
            .map_err(|source| StartupError::Secret { dir: settings.store.data_dir.clone(), source })?;
        let throttle = LocalThrottle::new(settings.limits.send_rate, settings.limits.send_burst, per_browser);
        let presence: Arc<dyn Presence> = Arc::new(MemoryPresence::new(presence_caps(settings)));
        (tickets, throttle.map(SendThrottle::Local), None, presence, peers, None)
    };
    let backend::Parts { store, hub, bus } = backend::open(&settings.backend()).await?;
    // Per process, also on Redis: a heartbeat only renews a bounded lease, so budgets split over replicas cost little
    // (sends and stream places are the ones shared).
    let heartbeats = LocalThrottle::new(settings.limits.send_rate, settings.limits.send_burst, per_browser)
        .map(|t| SendThrottle::Local(t.counting("heartbeats")));
    let state = AppState::from(Services {
        store,
        hub,
        bus,
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
            },
            horizon: settings.feed.max_age,
        },
        leptos: leptos_options(settings),
        presence,
        lease: settings.presence.presence_lease,
        heartbeats: heartbeats.map(Arc::new),
    });
    Ok((state, turn))
}

/// How many tabs presence lists per ticket, per address, per group and in all.
fn presence_caps(settings: &Settings) -> Caps {
    Caps {
        per_ticket: settings.presence.max_tabs_per_ticket,
        per_network: settings.presence.max_tabs_per_address,
        total: settings.presence.max_tabs,
        ..Caps::default()
    }
}

/// What replicas on one Redis share besides the log (see `replicas`), and who is here.
struct SharedLimits {
    /// Where the per-address budgets are kept too.
    link: Link,
    secret: Vec<u8>,
    throttle: Option<SendThrottle>,
    stream_leases: Option<Arc<StreamLeases>>,
    presence: Arc<dyn Presence>,
    /// One replica at a time prunes the shared log.
    retention: Arc<RetentionLease>,
}

/// Agrees on the ticket secret with the other replicas (or refuses to start), and makes the send budgets and the
/// per-browser stream leases that all replicas share, and the retention lease; starts the tasks that keep the secret
/// and the stream leases.
async fn shared_through_redis(settings: &Settings, per_browser: bool) -> Result<SharedLimits, StartupError> {
    let link = Link::open(&settings.store.redis_url, &settings.store.redis_prefix).map_err(StartupError::Redis)?;
    let agreed =
        secret::agree(link.clone(), settings.tickets.secret.as_deref(), secret::OFFER_EVERY, secret::REACH_WITHIN)
            .await?;
    tokio::spawn(agreed.guard.run());
    let throttle = RedisThrottle::new(link.clone(), settings.limits.send_rate, settings.limits.send_burst, per_browser);
    let presence: Arc<dyn Presence> = Arc::new(RedisPresence::new(link.clone(), presence_caps(settings)));
    let cap = if per_browser { settings.limits.max_streams_per_browser } else { 0 };
    // One name for this process in every lease it holds.
    let replica = replica_id();
    let retention = Arc::new(RetentionLease::new(link.clone(), replica.clone(), settings.feed.prune_every));
    let stream_leases = (cap > 0).then(|| {
        let (leases, keeper) = StreamLeases::new(link.clone(), replica, cap, LEASE, RENEW_EVERY);
        tokio::spawn(keeper.run());
        leases
    });
    let throttle = throttle.map(SendThrottle::Redis);
    Ok(SharedLimits { link, secret: agreed.secret, throttle, stream_leases, presence, retention })
}

/// Serves until SIGINT or SIGTERM; then open event streams end (tabs reconnect elsewhere or later).
pub async fn run(mut settings: Settings) -> Result<(), StartupError> {
    settings.limits.max_streams = streams_under_the_file_limit(&settings)?;
    // One data directory, one server: held until the process exits. On Redis the secret is no file (`replicas`).
    let keeps_files = settings.store.kind == StoreKind::Sqlite
        || (settings.tickets.secret.is_none() && settings.store.kind != StoreKind::Redis);
    let _data_dir = if keeps_files { Some(data_dir::lock(&settings.store.data_dir)?) } else { None };
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
    let pages = state.hub.pages().clone();
    tokio::spawn(retention::run(state.store.clone(), settings.retention(), turn, move || pages.forget()));
    let throttles = [state.throttle.clone(), state.heartbeats.clone()];
    tokio::spawn(forget_idle_budgets(throttles, state.peers.clone(), settings.feed.prune_every));
    tokio::spawn(roster::sweep(state.presence.clone(), state.hub.clone(), roster::SWEEP_EVERY));
    let shortcut = shortcut(state.clone());
    let router = app(state, settings.feed.scope);
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
