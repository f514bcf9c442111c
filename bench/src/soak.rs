//! `soak`: N tabs in one session group, a share of them dropping and reopening their event stream at random, while
//! senders keep a steady rate for a while. Each tab keeps its own log the way the page does (catch up from its last
//! id on every notification and on every (re)connect, `Last-Event-ID` on reconnect). At the end every tab's log must
//! equal the server's, in order, without duplicates.

use anyhow::anyhow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{ACCEPT, COOKIE};
use tokio::sync::watch;

use crate::fanout::{answer, joined, page_ids};
use crate::sse::SseFrames;
use crate::stats::{summary, Process};
use crate::wire;

pub struct Options {
    pub url: String,
    pub subscribers: usize,
    /// Share of tabs that drop and reopen their stream at random (0.1 = 10 %).
    pub flaky: f64,
    pub rate: f64,
    pub seconds: u64,
    pub pid: Option<u32>,
}

struct Tab {
    url: String,
    cookie: String,
    http: reqwest::Client,
    /// Every id this tab holds, in the order it added them.
    log: Vec<u64>,
}

impl Tab {
    fn new(url: &str, cookie: &str, http: &reqwest::Client) -> Self {
        Self { url: url.to_owned(), cookie: cookie.to_owned(), http: http.clone(), log: Vec::new() }
    }

    fn last(&self) -> u64 {
        self.log.last().copied().unwrap_or(0)
    }

    /// Fetches pages after the last id until one comes back empty (what the page does on (re)connect).
    async fn catch_up(&mut self) -> anyhow::Result<()> {
        loop {
            let request = self.http.get(format!("{}{}?since={}", self.url, wire::MESSAGES_PATH, self.last()));
            let page = page_ids(request.header(COOKIE, &self.cookie), "catch-up").await?;
            if page.is_empty() {
                return Ok(());
            }
            self.log.extend(page);
        }
    }
}

/// A tiny xorshift generator: random enough to spread the drops, and no dependency.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let server = opts.pid.map(Process);
    let http = reqwest::Client::builder().pool_max_idle_per_host(200).build()?;
    let first =
        answer(http.post(format!("{}{}", opts.url, wire::JOIN_PATH)).form(&[("username", "soak")]), "join").await?;
    let (cookie, ticket) = joined(first).await?;
    let cookie = cookie.ok_or_else(|| anyhow!("the server set no group cookie"))?;

    let rss_before = server.map(|p| p.rss()).transpose()?;
    let (stop_tx, stop) = watch::channel(false);
    let reconnects = Arc::new(AtomicUsize::new(0));
    let target = Arc::new(AtomicU64::new(0));
    let flaky = (opts.subscribers as f64 * opts.flaky).round() as usize;
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    let mut tabs = Vec::with_capacity(opts.subscribers);
    for i in 0..opts.subscribers {
        let tab = Tab::new(&opts.url, &cookie, &http);
        let dice = (i < flaky).then(|| Dice(seed.wrapping_mul(i as u64 + 1) | 1));
        tabs.push(tokio::spawn(live_tab(tab, dice, stop.clone(), reconnects.clone(), target.clone())));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Steady sends for the duration, each on its own (a slow answer does not hold up the next tick).
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate));
    let mut sends = Vec::new();
    while started.elapsed() < Duration::from_secs(opts.seconds) {
        tick.tick().await;
        let (http, url, cookie, ticket, target) =
            (http.clone(), opts.url.clone(), cookie.clone(), ticket.clone(), target.clone());
        let text = format!("soak {}", sends.len());
        sends.push(tokio::spawn(async move {
            let at = Instant::now();
            let request = http.post(format!("{url}{}", wire::SEND_PATH)).header(COOKIE, &cookie);
            let response =
                answer(request.form(&[("ticket", ticket.as_str()), ("text", text.as_str())]), "send").await?;
            let body: serde_json::Value = response.json().await.map_err(|e| anyhow!("send: {e}"))?;
            target.fetch_max(body["id"].as_u64().ok_or_else(|| anyhow!("send answered {body}"))?, Ordering::SeqCst);
            Ok::<_, anyhow::Error>(at.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(sends.len());
    for send in sends {
        latencies.push(send.await??);
    }
    let sent = latencies.len() as u64;
    let send_seconds = started.elapsed().as_secs_f64();
    // Let every tab reach the last id (flaky ones stop dropping now), then compare.
    let _ = stop_tx.send(true);
    let mut logs = Vec::with_capacity(tabs.len());
    for tab in tabs {
        let log =
            tokio::time::timeout(Duration::from_secs(60), tab).await.map_err(|_| anyhow!("a tab never caught up"))?;
        logs.push(log??);
    }
    let rss_after = server.map(|p| p.rss()).transpose()?;

    // The server's whole log, read the way a tab catches up from nothing.
    let mut reader = Tab::new(&opts.url, &cookie, &http);
    reader.catch_up().await?;
    let server_log = reader.log;
    let differing = logs.iter().filter(|log| **log != server_log).count();
    println!(
        "== soak: {} tabs ({flaky} dropping and reopening at random), {sent} sends in {send_seconds:.1} s ({:.0}/s), {} \
         reconnects",
        opts.subscribers,
        sent as f64 / send_seconds,
        reconnects.load(Ordering::SeqCst)
    );
    println!("send latency ms {}", summary(&mut latencies));
    println!("server log {} messages; tabs whose log differs from it: {differing} of {}", server_log.len(), logs.len());
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!("server RSS: {:.1} MiB before, {:.1} MiB after", before as f64 / 1048576.0, after as f64 / 1048576.0);
    }
    if differing == 0 && server_log.len() as u64 == sent {
        Ok(())
    } else {
        Err(anyhow!("{differing} tabs differ from the server's log of {} ({sent} sent)", server_log.len()))
    }
}

/// One tab: stream open, catch up on open and on every notification; a flaky tab drops its stream after 1–5 s and
/// reopens it 0–1 s later (with `Last-Event-ID`), until told to stop. Answers its log once it has the last id.
async fn live_tab(
    mut tab: Tab,
    mut dice: Option<Dice>,
    mut stop: watch::Receiver<bool>,
    reconnects: Arc<AtomicUsize>,
    target: Arc<AtomicU64>,
) -> anyhow::Result<Vec<u64>> {
    let mut last_event: Option<String> = None;
    loop {
        let mut request = tab.http.get(format!("{}{}", tab.url, wire::EVENTS_PATH)).header(ACCEPT, "text/event-stream");
        request = request.header(COOKIE, &tab.cookie);
        if let Some(id) = &last_event {
            request = request.header("last-event-id", id);
        }
        let mut body = answer(request, "events").await?.bytes_stream();
        tab.catch_up().await?;
        let stopping = *stop.borrow();
        let drop_after = match (&mut dice, stopping) {
            (Some(dice), false) => Duration::from_millis(1_000 + dice.below(4_000)),
            _ => Duration::from_secs(3_600),
        };
        let drop_at = tokio::time::sleep(drop_after);
        tokio::pin!(drop_at);
        let mut buffer = SseFrames::default();
        loop {
            if *stop.borrow() && tab.last() >= target.load(Ordering::SeqCst) {
                return Ok(tab.log);
            }
            tokio::select! {
                chunk = body.next() => {
                    let Some(chunk) = chunk else { break };
                    buffer.push(&chunk.map_err(|e| anyhow!("events: {e}"))?);
                    let mut announced = 0;
                    while let Some(frame) = buffer.next_frame() {
                        if !frame.id.is_empty() {
                            last_event = Some(frame.id.trim().to_owned());
                            announced = announced.max(frame.id.trim().parse::<u64>().unwrap_or(0));
                        }
                    }
                    if announced > tab.last() {
                        tab.catch_up().await?;
                    }
                }
                () = &mut drop_at => break,
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        if let Some(dice) = &mut dice {
            reconnects.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(dice.below(1_000))).await;
        }
    }
}
