//! `fanout`: N subscribers on `/events` in one session group, one sender at a fixed rate, and (unless `--no-fetch`)
//! every subscriber fetching `/api/messages?since=A&until=B&epoch=E` on each notification exactly as the page does:
//! one fetch in flight, a notification during it causes one more fetch after it. The subscribers are tabs of one
//! browser (the join's cookie), or with `--browsers` each its own browser (the cookie its `/events` answer sets).

use anyhow::anyhow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use reqwest::header::{ACCEPT, COOKIE, SET_COOKIE};
use tokio::sync::{watch, Semaphore};

use crate::refetch::Origin;
use crate::sse::SseFrames;
use crate::stats::{per_message, summary, Process};
use crate::wire;

pub struct Options {
    pub url: String,
    /// Other replicas: subscriber `i` uses `[url, also...][i % (1 + also.len())]` for its stream and its fetches.
    pub also: Vec<String>,
    pub subscribers: usize,
    pub messages: usize,
    pub rate: f64,
    pub fetch: bool,
    /// Each subscriber its own browser, with its own group cookie, rather than a tab of the joining browser.
    pub browsers: bool,
    /// Fetch `since=A&until=B&epoch=E` (the cacheable page), not `since=A` alone.
    pub until: bool,
    /// Keep-alive connections per origin that the subscribers' fetches share.
    pub fetch_connections: usize,
    /// Where to read `broadcasting_page_requests_total` (each replica itself, not a proxy in front of several);
    /// none: `url` and `also`.
    pub metrics: Vec<String>,
    pub connect_concurrency: usize,
    pub pid: Vec<u32>,
    pub label: String,
    /// Join with this sign-in token; a private feed's read pass from that join goes with every request.
    pub token: Option<String>,
}

/// What one subscriber saw: when each id was announced, and when each message arrived by fetch.
#[derive(Default)]
struct Seen {
    notified: Vec<(u64, Instant)>,
    fetched: Vec<(u64, Instant)>,
}

struct Shared {
    urls: Vec<String>,
    origins: Vec<Origin>,
    /// The join's group cookie, which the tabs of one browser share.
    cookie: Option<String>,
    browsers: bool,
    /// The log's epoch, percent-encoded for the query; none: fetch `since=` alone.
    epoch: Option<String>,
    streams: reqwest::Client,
    connected: AtomicUsize,
    fetches: AtomicUsize,
    stop: watch::Receiver<bool>,
    /// The newest id before the run: what a freshly rendered page already shows.
    start: u64,
    /// A private feed's read pass (the token's join answered one): on the stream's URL and every fetch.
    pass: Option<String>,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let server = (!opts.pid.is_empty()).then(|| Processes(opts.pid.iter().copied().map(Process).collect()));
    let server = server.as_ref();
    let bench = Process(std::process::id());
    let streams = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let http = reqwest::Client::new();
    let urls: Vec<String> = std::iter::once(opts.url.clone()).chain(opts.also.iter().cloned()).collect();
    let metrics = if opts.metrics.is_empty() { urls.clone() } else { opts.metrics.clone() };

    // The sender's session group: take the cookie the server hands out on a first request and send it with every
    // send and, unless each subscriber is its own browser, every tab's request (the floor hands out none).
    let credential = match &opts.token {
        Some(token) => ("token", token.as_str()),
        None => ("username", "bench"),
    };
    let first = http.post(format!("{}{}", opts.url, wire::JOIN_PATH)).form(&[credential]).send().await;
    let first = first.map_err(|e| anyhow!("join: {e}"))?;
    let cookie = cookie_set(first.headers());
    let answer: serde_json::Value = first.json().await.map_err(|e| anyhow!("join: {e}"))?;
    let ticket = answer["ticket"].as_str().ok_or_else(|| anyhow!("join answered {answer}"))?.to_owned();
    let pass = answer["pass"].as_str().map(str::to_owned);

    let (start, epoch) =
        if opts.fetch { latest(&http, &opts.url, cookie.as_deref(), pass.as_deref()).await? } else { (0, None) };
    let origins =
        urls.iter().map(|url| Origin::new(url, opts.fetch_connections)).collect::<anyhow::Result<Vec<_>>>()?;
    if opts.fetch {
        for origin in &origins {
            origin.warm(opts.fetch_connections).await?;
        }
    }
    let rss_before = server.map(|p| p.rss()).transpose()?;
    let cpu_before = server.map(|p| p.cpu_seconds()).transpose()?;
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        urls,
        origins,
        cookie,
        browsers: opts.browsers,
        epoch: epoch.filter(|_| opts.until).map(|epoch| percent_encoded(&epoch)),
        streams,
        connected: AtomicUsize::new(0),
        fetches: AtomicUsize::new(0),
        stop,
        start,
        pass,
    });

    // Connect everyone, a bounded number of handshakes at a time.
    let connecting = Instant::now();
    let handshakes = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let progress: Vec<Arc<AtomicU64>> = (0..opts.subscribers).map(|_| Arc::default()).collect();
    let mut tasks = Vec::with_capacity(opts.subscribers);
    for (i, mine) in progress.iter().enumerate() {
        let permit = handshakes.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(subscriber(shared.clone(), i % shared.urls.len(), mine.clone(), opts.fetch, permit)));
    }
    all_connected(&shared.connected, opts.subscribers, &mut tasks, &stop_tx).await?;
    let connect_seconds = connecting.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = server.map(|p| p.rss()).transpose()?;
    let cpu_connected = server.map(|p| p.cpu_seconds()).transpose()?;
    let answered_before = page_requests(&http, &metrics).await;
    let (bench_before, fetches_before, sending) =
        (bench.cpu_seconds()?, shared.fetches.load(Ordering::SeqCst), Instant::now());

    // Send at the given rate; note when each send was acknowledged.
    let mut acked: HashMap<u64, Instant> = HashMap::with_capacity(opts.messages);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..opts.messages {
        tick.tick().await;
        let response = with_cookie(http.post(format!("{}{}", opts.url, wire::SEND_PATH)), shared.cookie.as_deref())
            .form(&[("ticket", ticket.as_str()), ("text", &format!("{} fan-out message {i}", opts.label))])
            .send()
            .await
            .map_err(|e| anyhow!("send: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| anyhow!("send: {e}"))?;
        let id = body["id"].as_u64().ok_or_else(|| anyhow!("send answered {status} {body}"))?;
        acked.insert(id, Instant::now());
    }
    let last = acked.keys().copied().max().unwrap_or(0);

    // Wait until every subscriber has the last message (or give up after 30 s and report what arrived).
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.iter().any(|p| p.load(Ordering::SeqCst) < last) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = server.map(|p| p.cpu_seconds()).transpose()?;
    let (bench_after, fetches, sent_for) =
        (bench.cpu_seconds()?, shared.fetches.load(Ordering::SeqCst) - fetches_before, sending.elapsed());
    let answered = page_requests(&http, &metrics).await.zip(answered_before).map(|(after, before)| after - before);
    let rss_after = server.map(|p| p.rss()).transpose()?;
    let _ = stop_tx.send(true);

    let mut notification = Vec::new();
    let mut full_loop = Vec::new();
    // The same latencies by message id, to tell a slow message from a slow subscriber.
    let mut notification_by_id: HashMap<u64, Vec<Duration>> = HashMap::with_capacity(acked.len());
    let mut full_loop_by_id: HashMap<u64, Vec<Duration>> = HashMap::with_capacity(acked.len());
    let (mut notified, mut fetched) = (0usize, 0usize);
    for task in tasks {
        let seen = task.await??;
        for (id, at) in seen.notified {
            if let Some(ack) = acked.get(&id) {
                notified += 1;
                let latency = at.saturating_duration_since(*ack);
                notification.push(latency);
                notification_by_id.entry(id).or_default().push(latency);
            }
        }
        for (id, at) in seen.fetched {
            if let Some(ack) = acked.get(&id) {
                fetched += 1;
                let latency = at.saturating_duration_since(*ack);
                full_loop.push(latency);
                full_loop_by_id.entry(id).or_default().push(latency);
            }
        }
    }
    let expected = opts.subscribers * acked.len();
    let messages = acked.len().max(1) as f64;
    // Every line names its run, so lines from several runs can be told apart (and grepped) in one log.
    let run = format!("{} N={} rate={}/s", opts.label, opts.subscribers, opts.rate);
    let who = if opts.browsers { "each its own browser" } else { "tabs of one browser" };
    let shape = if shared.epoch.is_some() { "since&until&epoch" } else { "since" };
    println!(
        "== {run}: {} server(s), {} messages, subscribers {who}{}",
        shared.urls.len(),
        acked.len(),
        if opts.fetch {
            format!(", fetching ?{shape} over {} connections", opts.fetch_connections)
        } else {
            String::new()
        }
    );
    println!("{run}: connect {connect_seconds:.1} s for {} subscribers", opts.subscribers);
    println!("{run}: notified {notified}/{expected}; notification latency ms {}", summary(&mut notification));
    if opts.fetch {
        println!("{run}: fetched {fetched}/{expected}; full-loop latency ms {}", summary(&mut full_loop));
    }
    println!("{run}: per-message notification p99 ms: {}", per_message(&mut notification_by_id));
    if opts.fetch {
        println!("{run}: per-message full-loop p99 ms: {}", per_message(&mut full_loop_by_id));
    }
    if let (Some(before), Some(connected), Some(after)) = (rss_before, rss_connected, rss_after) {
        let per = (connected.saturating_sub(before)) as f64 / opts.subscribers as f64;
        println!(
            "{run}: server RSS {:.1} MiB before, {:.1} MiB connected, {:.1} MiB after sends; {:.1} KiB per subscriber",
            mib(before),
            mib(connected),
            mib(after),
            per / 1024.0
        );
    }
    // A proxy's cache answers some refetches itself: the origin's own count is what its CPU is divided by.
    let (refetches, counted_by) = match answered {
        Some(answered) => (answered, "the origin's /metrics"),
        None => (fetches as u64, "the bench's fetches: no /metrics"),
    };
    if let (Some(before), Some(connected), Some(after)) = (cpu_before, cpu_connected, cpu_after) {
        let sends = after - connected;
        let per_refetch = if opts.fetch && refetches > 0 {
            format!(", {:.1} µs per refetch", sends / refetches as f64 * 1e6)
        } else {
            String::new()
        };
        println!(
            "{run}: server CPU {:.2} s connecting, {sends:.2} s during sends, {:.2} ms per message{per_refetch}",
            connected - before,
            sends / messages * 1e3,
        );
    }
    if opts.fetch {
        println!(
            "{run}: refetches {fetches} made, {:.1} per message; coalescing saved {} of {}; origin answered {refetches} \
             ({counted_by}), {:.1} per message",
            fetches as f64 / messages,
            expected.saturating_sub(fetches),
            expected,
            refetches as f64 / messages,
        );
        let opened: usize = shared.origins.iter().map(Origin::opened).sum();
        println!(
            "{run}: bench CPU {:.2} s during {:.1} s of sends ({:.0} % of a core), {:.1} µs per fetch (reading the \
             streams included); {opened} fetch connections opened",
            bench_after - bench_before,
            sent_for.as_secs_f64(),
            (bench_after - bench_before) / sent_for.as_secs_f64() * 100.0,
            (bench_after - bench_before) / fetches.max(1) as f64 * 1e6,
        );
    }
    // A subscriber that falls behind is told once for the newest id (the hub coalesces, by design): with fetches,
    // what counts is that every subscriber fetched every message.
    if opts.fetch && notified < expected {
        println!(
            "{run}: coalesced {} notices folded into later ones (every message still fetched)",
            expected - notified
        );
    }
    let all = if opts.fetch { fetched == expected } else { notified == expected };
    if all {
        Ok(())
    } else {
        Err(anyhow!("not every message reached every subscriber ({run})"))
    }
}

/// Waits until `connected` reaches `total` (each task counts itself once its stream is open), or fails with what
/// went wrong: a task that ended (its error) or two minutes gone. On failure every task is told to stop.
pub(crate) async fn all_connected<T>(
    connected: &AtomicUsize,
    total: usize,
    tasks: &mut Vec<tokio::task::JoinHandle<anyhow::Result<T>>>,
    stop: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::SeqCst) < total {
        if Instant::now() > deadline || tasks.iter().any(|t| t.is_finished()) {
            let _ = stop.send(true);
            let failed = futures::future::join_all(tasks.drain(..)).await.into_iter().find_map(|r| match r {
                Ok(Err(e)) => Some(e),
                Err(e) => Some(e.into()),
                Ok(Ok(_)) => None,
            });
            return Err(anyhow!(
                "only {} of {total} connected: {}",
                connected.load(Ordering::SeqCst),
                failed.unwrap_or_else(|| anyhow!("timed out"))
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The newest id in the log and the log's epoch, as a freshly rendered page knows them.
async fn latest(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    pass: Option<&str>,
) -> anyhow::Result<(u64, Option<String>)> {
    let mut request = with_cookie(http.get(format!("{url}{}", wire::MESSAGES_PATH)), cookie);
    if let Some(pass) = pass {
        request = request.bearer_auth(pass);
    }
    let response = answer(request, "latest").await?;
    let epoch = response.headers().get(wire::EPOCH_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let page: Vec<serde_json::Value> = response.json().await.map_err(|e| anyhow!("latest: {e}"))?;
    Ok((page.iter().filter_map(|m| m["id"].as_u64()).max().unwrap_or(0), epoch))
}

/// `GET /api/messages` requests the servers at `urls` have answered, summed; none if one has no such counter.
pub(crate) async fn page_requests(http: &reqwest::Client, urls: &[String]) -> Option<u64> {
    let mut total = 0.0;
    for url in urls {
        let text = http.get(format!("{url}/metrics")).send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
        let value = text.lines().find_map(|line| line.strip_prefix("broadcasting_page_requests_total "))?;
        total += value.trim().parse::<f64>().ok()?;
    }
    Some(total as u64)
}

/// `value` as it may stand in a query string.
pub(crate) fn percent_encoded(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The session group's cookie on a request (none for the floor).
pub(crate) fn with_cookie(request: reqwest::RequestBuilder, cookie: Option<&str>) -> reqwest::RequestBuilder {
    match cookie {
        Some(cookie) => request.header(COOKIE, cookie),
        None => request,
    }
}

/// A join's answer: the session group's cookie as a `Cookie` header sends it back (if the server set one) and the
/// ticket.
pub(crate) async fn joined(response: reqwest::Response) -> anyhow::Result<(Option<String>, String)> {
    let cookie = cookie_set(response.headers());
    let joined: serde_json::Value = response.json().await.map_err(|e| anyhow!("join: {e}"))?;
    let ticket = joined["ticket"].as_str().ok_or_else(|| anyhow!("join answered {joined}"))?.to_owned();
    Ok((cookie, ticket))
}

/// The cookie an answer sets, as a `Cookie` header sends it back.
pub(crate) fn cookie_set(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).map(str::to_owned)
}

/// Sends `request` and insists on a 2xx answer; errors name `what` was asked.
pub(crate) async fn answer(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<reqwest::Response> {
    let response = request.send().await.map_err(|e| anyhow!("{what}: {e}"))?;
    if !response.status().is_success() {
        return Err(anyhow!("{what} answered {}", response.status()));
    }
    Ok(response)
}

/// The message ids of a `GET /api/messages` page.
pub(crate) async fn page_ids(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Vec<u64>> {
    let page: Vec<serde_json::Value> = answer(request, what).await?.json().await.map_err(|e| anyhow!("{what}: {e}"))?;
    Ok(page.iter().filter_map(|m| m["id"].as_u64()).collect())
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The server's processes (one per replica): figures summed over them.
struct Processes(Vec<Process>);

impl Processes {
    fn rss(&self) -> anyhow::Result<u64> {
        self.0.iter().map(|p| p.rss()).sum()
    }

    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        self.0.iter().map(|p| p.cpu_seconds()).sum()
    }
}

impl Shared {
    /// The ids of one page after `since` (up to `until` when fetching the cacheable page) from origin `origin`; they
    /// must follow `since` in order, as the page would show them.
    async fn fetch(
        self: Arc<Self>,
        origin: usize,
        tail: Arc<[u8]>,
        since: u64,
        until: u64,
    ) -> anyhow::Result<Vec<u64>> {
        let query = match &self.epoch {
            Some(epoch) => format!("since={since}&until={until}&epoch={epoch}"),
            None => format!("since={since}"),
        };
        let ids = self.origins[origin].page(&query, &tail).await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if ids.first().is_some_and(|first| *first <= since) || ids.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(anyhow!("?{query} answered ids out of order: {ids:?}"));
        }
        Ok(ids)
    }
}

async fn subscriber(
    shared: Arc<Shared>,
    origin: usize,
    progress: Arc<AtomicU64>,
    fetch: bool,
    handshake: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<Seen> {
    let mut stop = shared.stop.clone();
    let pass = shared.pass.as_deref().map(|pass| format!("?pass={}", percent_encoded(pass))).unwrap_or_default();
    let request = shared
        .streams
        .get(format!("{}{}{pass}", shared.urls[origin], wire::EVENTS_PATH))
        .header(ACCEPT, "text/event-stream");
    // A browser of its own opens its stream with no cookie and keeps the one the answer sets (if the scope sets any).
    let events = if shared.browsers {
        answer(request, "events").await?
    } else {
        answer(with_cookie(request, shared.cookie.as_deref()), "events").await?
    };
    let cookie = if shared.browsers { cookie_set(events.headers()) } else { shared.cookie.clone() };
    let tail = shared.origins[origin].tail_with(cookie.as_deref(), shared.pass.as_deref());
    let mut body = events.bytes_stream();
    let mut handshake = Some(handshake);
    let mut frames = SseFrames::default();
    let mut seen = Seen::default();
    let (mut announced, mut have) = (shared.start, shared.start);
    let mut in_flight: Option<BoxFuture<'static, anyhow::Result<Vec<u64>>>> = None;
    loop {
        tokio::select! {
            chunk = body.next() => {
                let Some(chunk) = chunk else { return Err(anyhow!("the event stream ended")) };
                frames.push(&chunk.map_err(|e| anyhow!("events: {e}"))?);
                let now = Instant::now();
                while let Some(frame) = frames.next_frame() {
                    if handshake.take().is_some() {
                        shared.connected.fetch_add(1, Ordering::SeqCst);
                    }
                    if frame.event != wire::NEW_MESSAGE {
                        continue; // retry: or a keep-alive comment
                    }
                    let id = frame.data.trim().parse::<u64>().map_err(|_| anyhow!("malformed frame {frame:?}"))?;
                    seen.notified.push((id, now));
                    announced = announced.max(id);
                    if !fetch {
                        progress.store(announced, Ordering::SeqCst);
                    }
                }
            }
            page = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                let now = Instant::now();
                let page = page?;
                seen.fetched.extend(page.iter().map(|id| (*id, now)));
                if page.is_empty() {
                    have = have.max(announced); // nothing more to read than was announced; wait for the next one
                }
                // A page that ends before what was announced (a full page) is followed by one more from its last id.
                have = have.max(page.iter().copied().max().unwrap_or(0));
                progress.store(have, Ordering::SeqCst);
            }
            _ = stop.changed() => return Ok(seen),
        }
        if fetch && in_flight.is_none() && announced > have {
            in_flight = Some(shared.clone().fetch(origin, tail.clone(), have, announced).boxed());
        }
    }
}
