//! Load generator for Broadcasting. It speaks only the public HTTP contract, like a real client.
//!
//! `broadcasting-bench sends --url URL --senders N --count M`: N concurrent senders, M messages in all; reports
//! acknowledged sends per second (each acknowledged send is durable when the server runs the SQLite store) and the
//! latency of one send, p50/p99/max.

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generator for Broadcasting")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn sends(url: String, senders: usize, count: usize) -> Result<(), String> {
    let http = reqwest::Client::builder().cookie_store(true).build().map_err(|e| e.to_string())?;
    let joined: serde_json::Value = http
        .post(format!("{url}/api/join"))
        .form(&[("username", "bench")])
        .send()
        .await
        .map_err(|e| format!("join: {e}"))?
        .json()
        .await
        .map_err(|e| format!("join: {e}"))?;
    let ticket = joined["ticket"].as_str().ok_or(format!("join answered {joined}"))?.to_owned();
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let (http, url, ticket) = (http.clone(), url.clone(), ticket.clone());
            let mine = count / senders + usize::from(s < count % senders);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(mine);
                for i in 0..mine {
                    let text = format!("bench sender {s} message {i}");
                    let sent = Instant::now();
                    let response = http
                        .post(format!("{url}/api/send"))
                        .form(&[("ticket", ticket.as_str()), ("text", text.as_str())])
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !response.status().is_success() {
                        return Err(format!("send answered {}", response.status()));
                    }
                    response.bytes().await.map_err(|e| e.to_string())?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "senders={senders} sends={} seconds={:.2} sends_per_second={:.0} latency_ms p50={:.2} p99={:.2} max={:.2}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Sends { url, senders, count } => sends(url, senders.max(1), count).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broadcasting-bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
