//! What the server measures: the metric names, one recording function per event, and the Prometheus text
//! (`metrics` facade and `metrics-exporter-prometheus`, installed once at start-up). `ops` serves it.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::classify::ServerErrorsFailureClass;

/// Event streams open now (read from the fan-out when scraped).
pub const OPEN_STREAMS: &str = "broadcasting_open_streams";
/// Feeds this process has subscribers of now (no per-feed label: feeds are unbounded, so only their count).
pub const FEEDS_FOLLOWED: &str = "broadcasting_feeds_followed";
/// Messages appended to the log since start.
pub const MESSAGES_APPENDED: &str = "broadcasting_messages_appended_total";
/// `GET /api/messages` requests received (each tab's catch-up and "Load older"; one per browser per notification).
pub const PAGE_REQUESTS: &str = "broadcasting_page_requests_total";
/// Sends refused, by `reason` (the error kind: invalid_input, bad_ticket, rate_limited, unavailable, …).
pub const SENDS_REFUSED: &str = "broadcasting_sends_refused_total";
/// Event streams refused, by `reason` (unavailable: the server is full; too_many_streams: the group is).
pub const STREAMS_REFUSED: &str = "broadcasting_streams_refused_total";
/// Seconds from an acknowledged append to its notification handed to every subscriber's queue.
pub const FANOUT_SECONDS: &str = "broadcasting_fanout_seconds";
/// Requests answered 503 because the message log or a limit shared through Redis failed, by `backend`.
pub const BACKEND_FAILURES: &str = "broadcasting_backend_failures_total";
/// Messages this process's retention passes deleted (on Redis only the replica holding the retention lease prunes).
pub const RETENTION_DELETED: &str = "broadcasting_retention_deleted_total";

/// While a backend fails, every request that needs it fails alike: the log says so at most this often.
const OUTAGE_NOTE_EVERY: Duration = Duration::from_secs(10);
static OUTAGE_NOTED: Mutex<Option<Instant>> = Mutex::new(None);

const FANOUT_BUCKETS: &[f64] = &[0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Starts recording (once per process; later calls do nothing).
pub fn install() -> Result<(), String> {
    if RECORDER.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(FANOUT_SECONDS.to_owned()), FANOUT_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|err| err.to_string())?;
    metrics::describe_gauge!(OPEN_STREAMS, "Event streams open now.");
    metrics::describe_gauge!(FEEDS_FOLLOWED, "Feeds with at least one subscriber in this process now.");
    metrics::describe_counter!(MESSAGES_APPENDED, "Messages appended to the log since start.");
    metrics::describe_counter!(PAGE_REQUESTS, "GET /api/messages requests received.");
    metrics::describe_counter!(SENDS_REFUSED, "Sends refused, by reason.");
    metrics::describe_counter!(STREAMS_REFUSED, "Event streams refused, by reason.");
    metrics::describe_histogram!(FANOUT_SECONDS, metrics::Unit::Seconds, "Append acknowledged to notification queued.");
    metrics::describe_counter!(BACKEND_FAILURES, "Requests answered 503 because a backend failed, by backend.");
    metrics::describe_counter!(RETENTION_DELETED, "Messages deleted by this process's retention passes.");
    let _ = RECORDER.set(handle);
    Ok(())
}

pub fn appended() {
    metrics::counter!(MESSAGES_APPENDED).increment(1);
}

pub fn page_requested() {
    metrics::counter!(PAGE_REQUESTS).increment(1);
}

pub fn refused(reason: &'static str) {
    metrics::counter!(SENDS_REFUSED, "reason" => reason).increment(1);
}

pub fn stream_refused(reason: &'static str) {
    metrics::counter!(STREAMS_REFUSED, "reason" => reason).increment(1);
}

pub fn retention_deleted(count: u64) {
    metrics::counter!(RETENTION_DELETED).increment(count);
}

/// A request failed because `backend` did (unreachable, read-only, full): counted, and logged as a warning at
/// most every [`OUTAGE_NOTE_EVERY`] (the rest at debug), never as an error per request. `/readyz` tells the load
/// balancer; the log needs the cause once, not a line per send.
pub fn backend_failed(backend: &'static str, err: &dyn std::fmt::Display) {
    metrics::counter!(BACKEND_FAILURES, "backend" => backend).increment(1);
    let due = {
        let mut noted = OUTAGE_NOTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = noted.is_none_or(|at| at.elapsed() >= OUTAGE_NOTE_EVERY);
        if due {
            *noted = Some(Instant::now());
        }
        due
    };
    if due {
        tracing::warn!(error = %err, "{backend} failed; requests that need it answer 503 (noted at most every 10 s)");
    } else {
        tracing::debug!(error = %err, "{backend} failed");
    }
}

/// The trace layer's span of a request: its method and path, never its query, where a client may have put what
/// must stay out of logs (a sign-in token in `?token=`, which the join refuses; `server::identity`).
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path(), version = ?request.version())
}

/// The trace layer's log of a server error answer. A 503 is a refusal whose cause was logged where it arose (once per
/// outage: [`backend_failed`], readiness), so a line per request would only repeat it: debug. Any other server error
/// stays an error.
pub fn response_failed(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "answered 503: unavailable")
        }
        other => tracing::error!(classification = %other, latency_ms, "response failed"),
    }
}

pub fn fanned_out(took: Duration) {
    metrics::histogram!(FANOUT_SECONDS).record(took.as_secs_f64());
}

/// The Prometheus text of everything recorded, with the open streams and the feeds they follow as gauges; `None`
/// when nothing is being recorded in this process.
pub fn render(open_streams: usize, feeds_followed: usize) -> Option<String> {
    let recorder = RECORDER.get()?;
    metrics::gauge!(OPEN_STREAMS).set(open_streams as f64);
    metrics::gauge!(FEEDS_FOLLOWED).set(feeds_followed as f64);
    recorder.run_upkeep();
    Some(recorder.render())
}
