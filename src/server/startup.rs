//! Start-up, like a table of contents: settings → backend (`backend::open`), sign-in keys (`sign_in`) and API keys → state →
//! routes (`routes::app`) → listener, and the background passes: retention (`pruning`; on Redis, by the replica holding its lease), idle
//! budgets, presence leases, the API keys file read again (SIGHUP, or a change).

use std::sync::Arc;

use leptos::config::LeptosOptions;

use crate::server::api_keys::{self, ApiKeys, KeysError};
use crate::server::identity::{KeyError, Keys, SignIn, TokenAlgorithm};
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
    #[error("sign-in tokens: {0}")]
    Keys(#[from] KeyError),
    #[error(transparent)]
    ApiKeys(#[from] KeysError),
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

/// How tabs join, with the key that verifies tokens, read from the settings or their files. The settings must fit
/// together: one key, of the kind the algorithm verifies with, and one whenever tabs may join with a token. A
/// secret file's surrounding whitespace is not part of the secret.
pub fn sign_in(settings: &Settings) -> Result<SignIn, KeyError> {
    let identity = &settings.identity;
    let secret = identity.token_secret.is_some() || identity.token_secret_file.is_some();
    let public = identity.token_public_key_file.is_some();
    let misfit = if identity.token_secret.is_some() && identity.token_secret_file.is_some() {
        Some("set one of `token-secret` and `token-secret-file`, not both")
    } else if secret && public {
        Some("set a token secret (HS256) or a token public key file (RS256, EdDSA), not both")
    } else if public && identity.token_algorithm == TokenAlgorithm::Hs256 {
        Some("`token-public-key-file` needs `token-algorithm` RS256 or EdDSA (HS256 verifies with a secret)")
    } else if secret && identity.token_algorithm != TokenAlgorithm::Hs256 {
        Some("`token-algorithm` RS256 and EdDSA verify with `token-public-key-file`, not a secret")
    } else if identity.join.takes_tokens() && !secret && !public {
        Some("`join` takes tokens: set `token-secret`, `token-secret-file` or `token-public-key-file`")
    } else {
        None
    };
    if let Some(misfit) = misfit {
        return Err(KeyError::Settings(misfit));
    }
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|err| KeyError::Unreadable { path: path.display().to_string(), reason: err.to_string() })
    };
    let keys = if let Some(secret) = &identity.token_secret {
        Some(Keys::hs256(secret.as_bytes())?)
    } else if let Some(path) = &identity.token_secret_file {
        let secret = read(path)?;
        Some(Keys::hs256(secret.trim_ascii())?)
    } else if let Some(path) = &identity.token_public_key_file {
        Some(Keys::public_pem(identity.token_algorithm, &read(path)?, path)?)
    } else {
        None
    };
    let keys = keys.map(|keys| {
        keys.with_audience(identity.token_audience.as_deref())
            .with_issuer(identity.token_issuer.as_deref())
            .with_leeway(identity.token_leeway)
    });
    Ok(SignIn { mode: identity.join, keys, refresh_url: identity.token_refresh_url.clone() })
}

/// The state the routes share (its backend-specific parts from `backend::open`), and, when replicas share the
/// log, whose turn it is to prune it.
pub async fn build_state(settings: &Settings) -> Result<(AppState, Option<Arc<dyn Turn>>), StartupError> {
    // Before the backend: a key that cannot be read stops the start before anything is opened.
    let sign_in = sign_in(settings)?;
    let api_keys = match &settings.identity.api_keys_file {
        Some(path) => ApiKeys::load(path)?,
        None => ApiKeys::none(),
    };
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
    // The API keys' budgets are kept where the address budgets are: shared by every replica on Redis.
    let api_keys = api_keys.shared_through(address_budgets.clone());
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
        sign_in,
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
            feeds: Arc::new(
                FeedGate::new(settings.listed_feeds(), settings.feed.max_feeds).with_access(settings.access.clone()),
            ),
        },
        leptos: leptos_options(settings),
        presence,
        lease: settings.presence.presence_lease,
        heartbeats: heartbeats.map(Arc::new),
        api_keys: Arc::new(api_keys),
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
    if settings.identity.api_keys_file.is_some() {
        tokio::spawn(reload_api_keys(state.api_keys.clone()));
    }
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

/// Reads the API keys file again on SIGHUP, and whenever it changes (looked at every `api_keys::WATCH_EVERY`),
/// so a key removed from the file stops working without a restart.
async fn reload_api_keys(keys: Arc<ApiKeys>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|err| tracing::warn!(error = %err, "no SIGHUP handler: API keys are read again on change only"))
        .ok();
    let mut tick = tokio::time::interval(api_keys::WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hung_up = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hung_up = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = hung_up => keys.reload_logged("SIGHUP"),
            _ = tick.tick() => keys.reload_if_changed(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        Settings::load_from(["broadcasting", "--config", "/dev/null"].iter().chain(args)).unwrap()
    }

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/identity/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// The identity settings must fit together, and each misfit stops the start with a sentence that names the
    /// settings (never a secret's value).
    #[test]
    fn sign_in_settings_that_do_not_fit_stop_the_start() {
        let secret = "a-token-secret-of-thirty-two-bytes!";
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("token-secret");
        std::fs::write(&secret_file, format!("  {secret}\n")).unwrap();
        let secret_file = secret_file.to_str().unwrap();
        let rsa = fixture("rsa-public.pem");
        for (args, says) in [
            (&["--join", "token"][..], "`join` takes tokens"),
            (&["--join", "both", "--token-secret", secret, "--token-secret-file", secret_file], "not both"),
            (&["--token-secret", secret, "--token-public-key-file", &rsa, "--token-algorithm", "RS256"], "not both"),
            (&["--token-public-key-file", &rsa], "needs `token-algorithm` RS256 or EdDSA"),
            (&["--token-secret", secret, "--token-algorithm", "EdDSA"], "not a secret"),
            (&["--join", "token", "--token-secret", "short but sixteen+"], "at least 32 bytes"),
            (&["--token-public-key-file", "/nonexistent.pem", "--token-algorithm", "RS256"], "/nonexistent.pem"),
            (&["--token-public-key-file", &rsa, "--token-algorithm", "EdDSA"], "not a EdDSA public key"),
        ] {
            let err = sign_in(&settings(args)).unwrap_err().to_string();
            assert!(err.contains(says), "{args:?}: {err}");
            assert!(!err.contains(secret) && !err.contains("short but"), "{err}");
        }
        // What fits: a secret (or its file, trimmed), a public key of its algorithm; none while anonymous.
        assert!(sign_in(&settings(&[])).unwrap().keys.is_none());
        let file = sign_in(&settings(&["--join", "token", "--token-secret-file", secret_file])).unwrap();
        let by_value = sign_in(&settings(&["--join", "token", "--token-secret", secret])).unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "s", "name": "Ada", "exp": u64::MAX / 2}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap();
        for sign_in in [file, by_value] {
            let keys = sign_in.keys.unwrap();
            assert_eq!(crate::server::identity::verify(&keys, &token, 0).unwrap().subject, "s");
        }
        let ed = sign_in(&settings(&[
            "--join",
            "both",
            "--token-public-key-file",
            &fixture("ed25519-public.pem"),
            "--token-algorithm",
            "eddsa",
        ]));
        assert_eq!(ed.unwrap().keys.unwrap().algorithm(), TokenAlgorithm::EdDsa);
    }
}
