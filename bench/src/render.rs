//! `render`: server-rendered pages per second of `/`, C connections each requesting one page after another.

use anyhow::anyhow;
use std::time::{Duration, Instant};

use crate::stats::summary;

pub async fn run(url: String, connections: usize, seconds: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let first = http.get(&url).send().await?.text().await?;
    let rows = first.matches("data-key=").count();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut bytes = 0usize;
                while Instant::now() < until {
                    let at = Instant::now();
                    let response = http.get(&url).send().await?;
                    if !response.status().is_success() {
                        return Err(anyhow!("/ answered {}", response.status()));
                    }
                    bytes += response.bytes().await?.len();
                    latencies.push(at.elapsed());
                }
                Ok::<_, anyhow::Error>((latencies, bytes))
            })
        })
        .collect();
    let (mut latencies, mut bytes) = (Vec::new(), 0usize);
    for task in tasks {
        let (mine, b) = task.await??;
        latencies.extend(mine);
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let pages = latencies.len();
    println!(
        "render: {pages} pages in {elapsed:.1} s over {connections} connections = {:.0} pages/s; {} B a page \
         ({rows} messages on the first); latency ms {}",
        pages as f64 / elapsed,
        bytes / pages.max(1),
        summary(&mut latencies)
    );
    Ok(())
}
