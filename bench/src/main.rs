//! Load generator for Broadcasting. It speaks only the public HTTP contract, like a real client.
//!
//! `broadcasting-bench sends --url URL --senders N --count M`: N concurrent senders, M messages in all; reports
//! acknowledged sends per second (each acknowledged send is durable when the server runs the SQLite store) and the
//! latency of one send, p50/p99/max.
//!
//! `broadcasting-bench fanout --url URL --subscribers N --messages M --rate R [--pid P] [--also URL2 --pid P2]`: N
//! subscribers on `/events` in one session group, M messages at R per second, every subscriber refetching like the
//! page with a browser's headers; reports notification and full-loop latency, delivered/expected, the server's RSS
//! and CPU (with its pid) per message and per refetch it answered (its `/metrics`), refetches per message and the
//! bench's own CPU per fetch. With `--also`, the subscribers are split evenly over URL and the other replicas (sends
//! go through URL), and RSS and CPU are summed over every `--pid`. `--browsers`: each subscriber its own browser
//! (run the server with `--scope everyone` to keep them in one group).
//!
//! `broadcasting-bench feeds --url URL --streams N --feeds F --per-stream K --sending S --rate R --seconds T [--pid P]`:
//! N streams, each its own browser (run the server with `--scope everyone`), spread over F feeds and following K of
//! them each; S feeds get R messages per second each for T seconds, and every stream refetches each followed feed's
//! pages like the page; reports latencies, deliveries, the server's CPU per message, per delivery and per refetch,
//! and RSS per idle stream (T = 0: connect and report only that). `--visits V`: visit V feeds nobody writes to and
//! report what the server keeps of them.
//!
//! `broadcasting-bench publish --url URL --key KEY [--feed F --senders N --count C]`: messages published per second
//! through the API with one key, N publishers at a time.
//!
//! `broadcasting-bench floor --addr ADDR`: serves the bare axum + broadcast SSE floor to compare against: its notice
//! alone (`fanout --no-fetch` against it), or its notice and then a refetch answered from prepared bytes (`fanout`).
//!
//! `broadcasting-bench heal --url A --via B --redis-port P [--rounds 20]`: the time until replica A tells its
//! subscriber of a message sent through B right after A's Redis pub/sub connection was killed.
//!
//! `broadcasting-bench render --url URL`: server-rendered pages of `/` per second.
//!
//! `broadcasting-bench soak --url URL [--subscribers 1000 --flaky 0.1 --rate 100 --seconds 60 --pid P]`: tabs that
//! keep their own log while some drop and reopen their stream at random; every log must equal the server's.

mod fanout;
mod feeds;
mod floor;
mod heal;
mod refetch;
mod render;
mod soak;
mod stats;

// Shared with the app and its tests by path: the bench depends on nothing of the app (std-only files).
#[path = "../../tests/support/process.rs"]
mod process;
#[path = "../../tests/support/sse.rs"]
mod sse;
#[path = "../../src/shared/wire.rs"]
#[allow(dead_code)] // the bench speaks only part of the contract
mod wire;

use anyhow::anyhow;
use std::time::Instant;

use clap::{Parser, Subcommand};

use stats::summary;

#[derive(Parser)]
#[command(about = "Load generator for Broadcasting")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Many named feeds: streams spread over feeds, some feeds sending, every stream refetching its feeds' pages.
    Feeds(feeds::Options),
    /// Messages published per second through the API with N concurrent publishers (one key).
    Publish {
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// The API key (`broadcasting make-api-key`).
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "main")]
        feed: String,
        #[arg(long, default_value_t = 1)]
        senders: usize,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Acknowledged sends per second with N concurrent senders.
    Sends {
        /// Base URL of a running server.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Concurrent senders (each sends one message at a time, like a user).
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Messages in all.
        #[arg(long, default_value_t = 5_000)]
        count: usize,
    },
    /// Notification and full-loop latency with N subscribers in one session group.
    Fanout {
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Other replicas of the same deployment: subscribers are split evenly over `url` and these.
        #[arg(long)]
        also: Vec<String>,
        #[arg(long, default_value_t = 1_000)]
        subscribers: usize,
        #[arg(long, default_value_t = 30)]
        messages: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Only count notifications; no refetch (the floor's notice alone).
        #[arg(long)]
        no_fetch: bool,
        /// Each subscriber is its own browser: its stream opens without a cookie and its fetches send the cookie
        /// that answer set (none with the server's `--scope everyone`, which keeps them all in one group).
        #[arg(long)]
        browsers: bool,
        /// Fetch `?since=A` alone, not the cacheable `?since=A&until=B&epoch=E` (B the newest id announced).
        #[arg(long)]
        no_until: bool,
        /// Keep-alive connections (per origin) the subscribers share for their fetches.
        #[arg(long, default_value_t = 1_000)]
        fetch_connections: usize,
        /// Where to count the refetches the app answered (its `/metrics`), one per replica; without it `url` and
        /// `also`. Give the replicas themselves when `url` is a proxy that may answer from its cache.
        #[arg(long)]
        metrics: Vec<String>,
        /// Subscribers connecting at once.
        #[arg(long, default_value_t = 200)]
        connect_concurrency: usize,
        /// The server's process ids (one per replica), to report their RSS and CPU time, summed.
        #[arg(long)]
        pid: Vec<u32>,
        /// A name for this run in the report.
        #[arg(long, default_value = "broadcasting")]
        label: String,
        /// Join with this sign-in token (a JWT of the deployer's backend) rather than a name; on a private feed the
        /// join's read pass then goes with every subscriber's stream and fetches, as a member's tabs send it.
        #[arg(long)]
        token: Option<String>,
    },
    /// Serve the bare axum + tokio broadcast SSE floor (its `/api/messages` answered from prepared bytes).
    Floor {
        #[arg(long, default_value = "127.0.0.1:3078")]
        addr: std::net::SocketAddr,
    },
    /// Tabs keeping their own log while a share of them drop and reopen their stream; logs compared at the end.
    Soak {
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        #[arg(long, default_value_t = 1_000)]
        subscribers: usize,
        /// Share of the tabs that drop and reopen their stream at random.
        #[arg(long, default_value_t = 0.1)]
        flaky: f64,
        /// Sends per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The server's process id, to report its RSS.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Time to heal after a killed Redis pub/sub connection (two replicas on one Redis).
    Heal {
        /// The subscriber's replica.
        #[arg(long)]
        url: String,
        /// The replica messages are sent through.
        #[arg(long)]
        via: String,
        #[arg(long)]
        redis_port: u16,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Server-rendered pages of `/` per second.
    Render {
        #[arg(long, default_value = "http://127.0.0.1:3000/")]
        url: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

async fn sends(url: String, senders: usize, count: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let joined: serde_json::Value = http
        .post(format!("{url}{}", wire::JOIN_PATH))
        .form(&[("username", "bench")])
        .send()
        .await
        .map_err(|e| anyhow!("join: {e}"))?
        .json()
        .await
        .map_err(|e| anyhow!("join: {e}"))?;
    let ticket = joined["ticket"].as_str().ok_or_else(|| anyhow!("join answered {joined}"))?.to_owned();
    let send = move |s: usize, i: usize| {
        let text = format!("bench sender {s} message {i}");
        http.post(format!("{url}{}", wire::SEND_PATH)).form(&[("ticket", ticket.as_str()), ("text", text.as_str())])
    };
    timed("", senders, count, send).await
}

/// Messages published through the API (`POST /api/v1/feeds/{feed}/messages`, a bearer key), as `sends` does.
async fn publish(url: String, key: String, feed: String, senders: usize, count: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let publish = move |s: usize, i: usize| {
        let body = serde_json::json!({ "author": "bench", "text": format!("published by {s}, message {i}") });
        http.post(format!("{url}/api/v1/feeds/{feed}/messages")).bearer_auth(&key).json(&body)
    };
    timed("publish ", senders, count, publish).await
}

/// `count` requests made by `request(sender, i)`, `senders` at a time (each one after the other, like a user or a
/// backend's worker), each answered 2xx; prints the rate and the latencies, the line starting with `label`.
async fn timed<F>(label: &str, senders: usize, count: usize, request: F) -> anyhow::Result<()>
where
    F: Fn(usize, usize) -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let request = request.clone();
            let mine = count / senders + usize::from(s < count % senders);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(mine);
                for i in 0..mine {
                    let sent = Instant::now();
                    let response = request(s, i).send().await?;
                    if !response.status().is_success() {
                        return Err(anyhow!("answered {}", response.status()));
                    }
                    response.bytes().await?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    println!(
        "{label}senders={senders} sends={} seconds={:.2} sends_per_second={:.0} latency_ms {}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        summary(&mut latencies),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Sends { url, senders, count } => sends(url, senders.max(1), count).await,
        Command::Publish { url, key, feed, senders, count } => publish(url, key, feed, senders.max(1), count).await,
        Command::Fanout {
            url,
            also,
            subscribers,
            messages,
            rate,
            no_fetch,
            browsers,
            no_until,
            fetch_connections,
            metrics,
            connect_concurrency,
            pid,
            label,
            token,
        } => {
            let options = fanout::Options {
                url,
                also,
                subscribers,
                messages,
                rate,
                fetch: !no_fetch,
                browsers,
                until: !no_until,
                fetch_connections,
                metrics,
                connect_concurrency,
                pid,
                label,
                token,
            };
            fanout::run(options).await
        }
        Command::Feeds(options) => feeds::run(options).await,
        Command::Floor { addr } => floor::serve(addr).await,
        Command::Heal { url, via, redis_port, rounds } => {
            heal::run(heal::Options { url, via, redis_port, rounds }).await
        }
        Command::Render { url, connections, seconds } => render::run(url, connections, seconds).await,
        Command::Soak { url, subscribers, flaky, rate, seconds, pid } => {
            soak::run(soak::Options { url, subscribers, flaky, rate, seconds, pid }).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broadcasting-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
