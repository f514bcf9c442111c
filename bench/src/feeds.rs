//! `feeds`: many named feeds in one deployment. N streams (each its own browser, with `--scope everyone` one group)
//! spread over F feeds, each stream following K of them as a browser's one stream follows every feed its tabs show;
//! S of the feeds get R messages per second each, sent concurrently, and every stream refetches each followed feed's
//! page (`/api/feeds/{feed}/messages?since&until&epoch`) on its notices exactly as the page does: one fetch in flight
//! per feed, a notice during it causes one more after it. With no seconds of sending it only connects and reports
//! what an idle stream costs. `--visits V` instead visits V feeds nobody writes to (their page, pages, presence and a
//! stream opened and closed) and reports what they left behind.
//!
//! The same mode with one feed is the comparison: `--feeds 1 --sending 1` at the same total deliveries (streams ×
//! rate) runs through the same code, so what differs between the two runs is only how the load is spread.

use anyhow::anyhow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use reqwest::header::ACCEPT;
use tokio::sync::{watch, Semaphore};

use crate::fanout::{all_connected, answer, cookie_set, joined, mib, page_requests, percent_encoded, with_cookie};
use crate::refetch::Origin;
use crate::sse::SseFrames;
use crate::stats::{summary, Process};
use crate::wire;

/// `broadcasting-bench feeds`'s flags.
#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    #[arg(long, default_value_t = 1_000)]
    pub feeds: usize,
    /// Feeds each stream follows: its own (`i % feeds`) and `per_stream - 1` others spread evenly over the rest.
    #[arg(long, default_value_t = 1)]
    pub per_stream: usize,
    /// The first `sending` feeds get messages.
    #[arg(long, default_value_t = 100)]
    pub sending: usize,
    /// Messages per second in each sending feed.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds of sending; 0: connect, report what the idle streams cost, and stop.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 1_000)]
    pub fetch_connections: usize,
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Seconds to measure the connected streams' CPU with nothing sent, before the sends.
    #[arg(long, default_value_t = 5.0)]
    pub idle_seconds: f64,
    /// Server CPU per append in milliseconds (a run with `--streams 0`), taken off the net per-delivery figure.
    #[arg(long, default_value_t = 0.0)]
    pub append_ms: f64,
    /// Instead: visit this many feeds nobody writes to and report what the server keeps of them.
    #[arg(long, default_value_t = 0)]
    pub visits: usize,
    #[arg(long)]
    pub pid: Option<u32>,
    #[arg(long, default_value = "feeds")]
    pub label: String,
}

/// The name of the bench's feed `index`.
fn feed_name(index: usize) -> String {
    format!("bench-{index}")
}

/// Which feed a name of `feed_name`'s is.
fn feed_index(name: &str) -> Option<usize> {
    name.strip_prefix("bench-")?.parse().ok()
}

/// The feeds stream `i` follows: its own and the others at even steps from it, without repeats.
fn followed(i: usize, feeds: usize, per_stream: usize) -> Vec<usize> {
    let own = i % feeds;
    let step = (feeds / per_stream.max(1)).max(1);
    let mut follows: Vec<usize> = (0..per_stream.min(feeds)).map(|m| (own + m * step) % feeds).collect();
    follows.dedup();
    follows
}

/// What one stream saw, per feed index: when each id was announced, and when it arrived by fetch.
#[derive(Default)]
struct Seen {
    notified: Vec<(usize, u64, Instant)>,
    fetched: Vec<(usize, u64, Instant)>,
}

struct Shared {
    url: String,
    origin: Origin,
    /// Each feed's pages path.
    paths: Vec<String>,
    /// Each feed's epoch, percent-encoded (sending feeds only: the others hold nothing).
    epochs: Vec<Option<String>>,
    /// Each feed's newest id before the run: what a freshly rendered page already shows.
    starts: Vec<u64>,
    streams: reqwest::Client,
    connected: AtomicUsize,
    fetches: AtomicUsize,
    /// Messages of the run fetched, summed over streams and feeds.
    delivered: AtomicUsize,
    stop: watch::Receiver<bool>,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    if opts.visits > 0 {
        return visit(&opts).await;
    }
    if opts.feeds == 0 || opts.sending > opts.feeds {
        return Err(anyhow!(
            "--sending ({}) must be at most --feeds ({}), which is at least 1",
            opts.sending,
            opts.feeds
        ));
    }
    let server = opts.pid.map(Process);
    let bench = Process(std::process::id());
    let http = reqwest::Client::new();
    let first = http.post(format!("{}{}", opts.url, wire::JOIN_PATH)).form(&[("username", "bench")]).send().await;
    let (cookie, ticket) = joined(first.map_err(|e| anyhow!("join: {e}"))?).await?;
    let cookie = cookie.as_deref();

    // Each sending feed gets one message first, as a feed in use holds some: it then has an epoch, which every
    // page the tabs fetch names.
    let mut epochs = vec![None; opts.feeds];
    let mut starts = vec![0; opts.feeds];
    for feed in 0..opts.sending {
        send(&http, &opts.url, cookie, &ticket, feed, "seed").await?;
        let path = wire::feed_api(&feed_name(feed), wire::FEED_MESSAGES);
        let response = answer(with_cookie(http.get(format!("{}{path}", opts.url)), cookie), "latest").await?;
        let epoch = response.headers().get(wire::EPOCH_HEADER).and_then(|v| v.to_str().ok()).map(percent_encoded);
        let page: Vec<serde_json::Value> = response.json().await.map_err(|e| anyhow!("latest: {e}"))?;
        epochs[feed] = epoch;
        starts[feed] = page.iter().filter_map(|m| m["id"].as_u64()).max().unwrap_or(0);
    }
    let origin = Origin::new(&opts.url, opts.fetch_connections)?;
    let sending = opts.seconds > 0.0;
    if sending {
        origin.warm(opts.fetch_connections).await?;
    }
    let rss_before = server.map(|p| p.rss()).transpose()?;
    let cpu_before = server.map(|p| p.cpu_seconds()).transpose()?;
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        url: opts.url.clone(),
        origin,
        paths: (0..opts.feeds).map(|feed| wire::feed_api(&feed_name(feed), wire::FEED_MESSAGES)).collect(),
        epochs,
        starts,
        streams: reqwest::Client::builder().pool_max_idle_per_host(0).build()?,
        connected: AtomicUsize::new(0),
        fetches: AtomicUsize::new(0),
        delivered: AtomicUsize::new(0),
        stop,
    });

    // Connect every stream, a bounded number of handshakes at a time.
    let connecting = Instant::now();
    let handshakes = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let mut subscribers = vec![0usize; opts.feeds];
    let mut tasks = Vec::with_capacity(opts.streams);
    for i in 0..opts.streams {
        let follows = followed(i, opts.feeds, opts.per_stream);
        for feed in &follows {
            subscribers[*feed] += 1;
        }
        let permit = handshakes.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(stream(shared.clone(), follows, permit)));
    }
    all_connected(&shared.connected, opts.streams, &mut tasks, &stop_tx).await?;
    let connect_seconds = connecting.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = server.map(|p| p.rss()).transpose()?;
    let cpu_connected = server.map(|p| p.cpu_seconds()).transpose()?;
    // What the connected streams cost with nothing sent (keep-alives, timers), per second: the part of the CPU during
    // the sends that is not theirs.
    let idle_for = Duration::from_secs_f64(opts.idle_seconds);
    tokio::time::sleep(idle_for).await;
    let cpu_idle = server.map(|p| p.cpu_seconds()).transpose()?;
    let idle_rate = cpu_connected.zip(cpu_idle).map(|(from, to)| (to - from) / idle_for.as_secs_f64().max(1e-9));
    let run = format!(
        "{} streams={} feeds={} per-stream={} sending={} rate={}/s",
        opts.label, opts.streams, opts.feeds, opts.per_stream, opts.sending, opts.rate
    );
    println!("== {run}: each stream its own browser, {} feed(s) followed per stream", opts.per_stream.min(opts.feeds));
    let connect_cpu = cpu_before
        .zip(cpu_connected)
        .map_or_else(String::new, |(before, connected)| format!(", server CPU {:.2} s", connected - before));
    println!("{run}: connect {connect_seconds:.1} s for {} streams{connect_cpu}", opts.streams);
    if let (Some(before), Some(connected)) = (rss_before, rss_connected) {
        println!(
            "{run}: server RSS {:.1} MiB before, {:.1} MiB connected; {:.2} KiB per idle stream",
            mib(before),
            mib(connected),
            connected.saturating_sub(before) as f64 / opts.streams.max(1) as f64 / 1024.0
        );
    }
    if !sending {
        let _ = stop_tx.send(true);
        for task in tasks {
            task.await??;
        }
        return Ok(());
    }

    let metrics = [opts.url.clone()];
    let answered_before = page_requests(&http, &metrics).await;
    let (bench_before, fetches_before, started) =
        (bench.cpu_seconds()?, shared.fetches.load(Ordering::SeqCst), Instant::now());
    // Every sending feed at its rate, its first tick offset so that the sends spread evenly over each second.
    let per_feed = (opts.seconds * opts.rate).round().max(1.0) as usize;
    let acked: Arc<Mutex<HashMap<(usize, u64), Instant>>> = Arc::default();
    let senders: Vec<_> = (0..opts.sending)
        .map(|feed| {
            let (http, url, cookie, ticket, acked) =
                (http.clone(), opts.url.clone(), cookie.map(str::to_owned), ticket.clone(), acked.clone());
            let (rate, sending, label) = (opts.rate, opts.sending, opts.label.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(feed as f64 / sending as f64 / rate)).await;
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for i in 0..per_feed {
                    tick.tick().await;
                    let text = format!("{label} feeds message {i}");
                    let id = send(&http, &url, cookie.as_deref(), &ticket, feed, &text).await?;
                    acked.lock().expect("poisoned").insert((feed, id), Instant::now());
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    let acked = std::mem::take(&mut *acked.lock().expect("poisoned"));
    let expected: usize = acked.keys().map(|(feed, _)| subscribers[*feed]).sum();

    // Wait until every stream has fetched every message of its feeds (or give up after 30 s and report what did).
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.delivered.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = server.map(|p| p.cpu_seconds()).transpose()?;
    let (bench_after, fetches, sent_for) =
        (bench.cpu_seconds()?, shared.fetches.load(Ordering::SeqCst) - fetches_before, started.elapsed());
    let answered = page_requests(&http, &metrics).await.zip(answered_before).map(|(after, before)| after - before);
    let _ = stop_tx.send(true);

    let (mut notification, mut full_loop) = (Vec::new(), Vec::new());
    let (mut notified, mut fetched) = (0usize, 0usize);
    for task in tasks {
        let seen = task.await??;
        for (feed, id, at) in seen.notified {
            if let Some(ack) = acked.get(&(feed, id)) {
                notified += 1;
                notification.push(at.saturating_duration_since(*ack));
            }
        }
        for (feed, id, at) in seen.fetched {
            if let Some(ack) = acked.get(&(feed, id)) {
                fetched += 1;
                full_loop.push(at.saturating_duration_since(*ack));
            }
        }
    }
    let messages = acked.len().max(1) as f64;
    println!("{run}: {} messages over {:.1} s, {expected} deliveries expected", acked.len(), sent_for.as_secs_f64());
    println!("{run}: notified {notified}/{expected}; notification latency ms {}", summary(&mut notification));
    println!("{run}: fetched {fetched}/{expected}; full-loop latency ms {}", summary(&mut full_loop));
    let refetches = answered.unwrap_or(fetches as u64);
    if let (Some(from), Some(after), Some(idle_rate)) = (cpu_idle, cpu_after, idle_rate) {
        let cpu = after - from;
        println!(
            "{run}: server CPU {cpu:.2} s during sends, {:.3} ms per message, {:.1} µs per delivery, {:.1} µs per \
             refetch ({refetches} refetches answered, {:.1} per message)",
            cpu / messages * 1e3,
            cpu / fetched.max(1) as f64 * 1e6,
            cpu / refetches.max(1) as f64 * 1e6,
            refetches as f64 / messages,
        );
        // Net: without what the same streams cost idle for as long, and without the appends themselves (the same
        // run's sends-alone floor, `--append-ms`), what is left is the fan-out: notices and refetches.
        let idle = idle_rate * sent_for.as_secs_f64();
        let appends = opts.append_ms / 1e3 * acked.len() as f64;
        println!(
            "{run}: fan-out CPU {:.2} s (idle {idle:.2} s at {:.3} s/s and appends {appends:.2} s at {:.3} ms each \
             taken off): {:.1} µs net per delivery",
            cpu - idle - appends,
            idle_rate,
            opts.append_ms,
            (cpu - idle - appends) / fetched.max(1) as f64 * 1e6,
        );
    }
    println!(
        "{run}: bench CPU {:.2} s during {:.1} s of sends ({:.0} % of a core)",
        bench_after - bench_before,
        sent_for.as_secs_f64(),
        (bench_after - bench_before) / sent_for.as_secs_f64() * 100.0,
    );
    if fetched == expected {
        Ok(())
    } else {
        Err(anyhow!("not every message reached every stream of its feed ({run})"))
    }
}

/// Sends `text` to feed `feed`; answers its id.
async fn send(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    ticket: &str,
    feed: usize,
    text: &str,
) -> anyhow::Result<u64> {
    let name = feed_name(feed);
    let form = [(wire::FEED_FIELD, name.as_str()), ("ticket", ticket), ("text", text)];
    let response = with_cookie(http.post(format!("{url}{}", wire::SEND_PATH)), cookie)
        .form(&form)
        .send()
        .await
        .map_err(|e| anyhow!("send: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| anyhow!("send: {e}"))?;
    body["id"].as_u64().ok_or_else(|| anyhow!("send to {name} answered {status} {body}"))
}

/// One feed a stream follows, as the page keeps it.
struct Following {
    feed: usize,
    announced: u64,
    have: u64,
    busy: bool,
}

async fn stream(
    shared: Arc<Shared>,
    follows: Vec<usize>,
    handshake: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<Seen> {
    let mut stop = shared.stop.clone();
    let query: String = follows.iter().map(|feed| format!("{}={}&", wire::FEED_FIELD, feed_name(*feed))).collect();
    let request = shared
        .streams
        .get(format!("{}{}?{}", shared.url, wire::EVENTS_PATH, query.trim_end_matches('&')))
        .header(ACCEPT, "text/event-stream");
    let events = answer(request, "events").await?;
    let tail = shared.origin.tail(cookie_set(events.headers()).as_deref());
    let mut body = events.bytes_stream();
    let mut handshake = Some(handshake);
    let mut frames = SseFrames::default();
    let mut seen = Seen::default();
    let mut feeds: Vec<Following> = follows
        .iter()
        .map(|feed| Following { feed: *feed, announced: shared.starts[*feed], have: shared.starts[*feed], busy: false })
        .collect();
    let mut in_flight: FuturesUnordered<BoxFuture<'static, (usize, anyhow::Result<Vec<u64>>)>> =
        FuturesUnordered::new();
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
                        continue; // retry:, a keep-alive comment or a presence change
                    }
                    let (name, id) = wire::parse_feed_notice(frame.data.trim())
                        .ok_or_else(|| anyhow!("malformed frame {frame:?}"))?;
                    let slot = feed_index(name)
                        .and_then(|feed| feeds.iter().position(|f| f.feed == feed))
                        .ok_or_else(|| anyhow!("a notice for {name}, which this stream does not follow"))?;
                    seen.notified.push((feeds[slot].feed, id, now));
                    feeds[slot].announced = feeds[slot].announced.max(id);
                }
            }
            Some((slot, page)) = in_flight.next(), if !in_flight.is_empty() => {
                let now = Instant::now();
                let page = page?;
                let following = &mut feeds[slot];
                following.busy = false;
                let start = shared.starts[following.feed];
                let new = page.iter().filter(|id| **id > following.have.max(start)).count();
                shared.delivered.fetch_add(new, Ordering::SeqCst);
                seen.fetched.extend(page.iter().map(|id| (following.feed, *id, now)));
                if page.is_empty() {
                    following.have = following.have.max(following.announced);
                }
                following.have = following.have.max(page.iter().copied().max().unwrap_or(0));
            }
            _ = stop.changed() => return Ok(seen),
        }
        for (slot, following) in feeds.iter_mut().enumerate() {
            if !following.busy && following.announced > following.have {
                following.busy = true;
                let (shared, tail) = (shared.clone(), tail.clone());
                let (feed, since, until) = (following.feed, following.have, following.announced);
                in_flight.push(async move { (slot, shared.fetch(feed, &tail, since, until).await) }.boxed());
            }
        }
    }
}

impl Shared {
    /// The ids of feed `feed`'s page after `since` up to `until`; they must follow `since` in order.
    async fn fetch(&self, feed: usize, tail: &[u8], since: u64, until: u64) -> anyhow::Result<Vec<u64>> {
        let query = match &self.epochs[feed] {
            Some(epoch) => format!("since={since}&until={until}&epoch={epoch}"),
            None => format!("since={since}&until={until}"),
        };
        let ids = self.origin.page_at(&self.paths[feed], &query, tail).await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if ids.first().is_some_and(|first| *first <= since) || ids.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(anyhow!("{}?{query} answered ids out of order: {ids:?}", self.paths[feed]));
        }
        Ok(ids)
    }
}

/// Visits `opts.visits` feeds nobody writes to (named `<label>-<i>`: a label per run, new names each run), the way a crawler or a curious user would (the page, its pages, its
/// presence, a stream opened and closed), then reports what the server holds for them afterwards: its RSS growth and
/// the feeds it still follows. A feed with no open stream and no messages should cost nothing.
async fn visit(opts: &Options) -> anyhow::Result<()> {
    let server = opts.pid.map(Process);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let (url, label) = (opts.url.as_str(), opts.label.as_str());
    let rss_before = server.map(|p| p.rss()).transpose()?;
    let followed_before = metric(&http, url, "broadcasting_feeds_followed").await;
    let started = Instant::now();
    let visits = futures::stream::iter(0..opts.visits)
        .map(|i| {
            let http = http.clone();
            async move {
                let name = format!("{label}-{i}");
                for path in [
                    format!("{}{name}", wire::FEED_PAGE_PREFIX),
                    wire::feed_api(&name, wire::FEED_MESSAGES),
                    wire::feed_api(&name, wire::FEED_PRESENCE),
                ] {
                    answer(http.get(format!("{url}{path}")), &path).await?.bytes().await?;
                }
                let events = format!("{url}{}?{}={name}", wire::EVENTS_PATH, wire::FEED_FIELD);
                let mut stream =
                    answer(http.get(events).header(ACCEPT, "text/event-stream"), "events").await?.bytes_stream();
                stream.next().await; // the stream is open: its first frame came; dropping it closes it
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(opts.connect_concurrency.max(1));
    let failed = visits.filter_map(|r| async move { r.err() }).collect::<Vec<_>>().await;
    if let Some(err) = failed.into_iter().next() {
        return Err(err);
    }
    let took = started.elapsed();
    // The server notices closed streams as it writes to them; give it a few keep-alives' time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut open = metric(&http, url, "broadcasting_open_streams").await;
    while open.is_some_and(|open| open > 0.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        open = metric(&http, url, "broadcasting_open_streams").await;
    }
    let followed_after = metric(&http, url, "broadcasting_feeds_followed").await;
    let rss_after = server.map(|p| p.rss()).transpose()?;
    let run = format!("{} visits={}", opts.label, opts.visits);
    println!(
        "== {run}: each feed's page, pages and presence read and a stream opened and closed, in {:.1} s",
        took.as_secs_f64()
    );
    println!(
        "{run}: open streams afterwards {}; feeds followed {} before, {} after",
        shown(open),
        shown(followed_before),
        shown(followed_after)
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "{run}: server RSS {:.1} MiB before, {:.1} MiB after: {:.3} KiB per visited feed (the allocator keeps \
             some of what it freed)",
            mib(before),
            mib(after),
            after.saturating_sub(before) as f64 / opts.visits as f64 / 1024.0
        );
    }
    if followed_after.is_some_and(|after| after > followed_before.unwrap_or(0.0)) {
        return Err(anyhow!("the server still follows feeds nobody has open ({run})"));
    }
    Ok(())
}

/// A gauge or counter from the server's `/metrics`.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = http.get(format!("{url}/metrics")).send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn shown(value: Option<f64>) -> String {
    value.map_or_else(|| "?".into(), |value| format!("{value}"))
}
