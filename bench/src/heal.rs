//! `heal`: how long a replica whose Redis pub/sub connection was killed takes to tell its subscribers of a message
//! sent through another replica. One subscriber on replica A; each round kills every pub/sub connection in Redis
//! (`CLIENT KILL TYPE pubsub`, with the machine's `redis-cli`), sends one message through replica B at once, and
//! times the send's acknowledgement to A's `NewMessage` for it: what a tab on A waits. A's notice comes either from
//! its new subscription (when A resubscribed before the publish) or from its healing (comparing the log's head with
//! what it delivered, after each resubscribe and periodically); the slow rounds are the healed ones.

use anyhow::anyhow;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{ACCEPT, COOKIE};

use crate::fanout::{answer, joined};
use crate::sse::SseFrames;
use crate::stats::summary;
use crate::wire;

pub struct Options {
    /// Replica A: the subscriber's.
    pub url: String,
    /// Replica B: where the messages are sent.
    pub via: String,
    pub redis_port: u16,
    pub rounds: usize,
}

fn kill_pubsub(port: u16) -> anyhow::Result<u64> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "CLIENT", "KILL", "TYPE", "pubsub"])
        .output()
        .map_err(|e| anyhow!("redis-cli: {e}"))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    said.parse().map_err(|_| anyhow!("CLIENT KILL answered {said:?}"))
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let first =
        answer(http.post(format!("{}{}", opts.via, wire::JOIN_PATH)).form(&[("username", "heal")]), "join").await?;
    let (cookie, ticket) = joined(first).await?;
    let cookie = cookie.ok_or_else(|| anyhow!("the server set no group cookie"))?;

    let request = http.get(format!("{}{}", opts.url, wire::EVENTS_PATH)).header(ACCEPT, "text/event-stream");
    let mut body = answer(request.header(COOKIE, &cookie), "events").await?.bytes_stream();
    let mut frames = SseFrames::default();
    let mut heals = Vec::with_capacity(opts.rounds);
    let mut killed = 0;
    for round in 0..opts.rounds {
        killed += kill_pubsub(opts.redis_port)?;
        let send = http
            .post(format!("{}{}", opts.via, wire::SEND_PATH))
            .header(COOKIE, &cookie)
            .form(&[("ticket", ticket.as_str()), ("text", &format!("heal round {round}"))]);
        let stored: serde_json::Value = answer(send, "send").await?.json().await?;
        let acked = Instant::now();
        let id = stored["id"].as_u64().ok_or_else(|| anyhow!("send answered {stored}"))?;
        // Wait for A's notice of this id (or a later one).
        let deadline = acked + Duration::from_secs(30);
        'wait: loop {
            let chunk = tokio::time::timeout_at(deadline.into(), body.next())
                .await
                .map_err(|_| anyhow!("round {round}: no notice of {id} within 30 s"))?
                .ok_or_else(|| anyhow!("the event stream ended"))??;
            frames.push(&chunk);
            while let Some(frame) = frames.next_frame() {
                if frame.event == wire::NEW_MESSAGE && frame.data.trim().parse::<u64>().is_ok_and(|seen| seen >= id) {
                    break 'wait;
                }
            }
        }
        heals.push(acked.elapsed());
        // Let the replica settle on its new connection before the next kill.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "heal: {} rounds, {killed} pub/sub connections killed; notice after the send's acknowledgement ms {}",
        opts.rounds,
        summary(&mut heals)
    );
    Ok(())
}
