//! Hostile clients, spoken to the real server binary: what a client can vary for free buys it nothing, every
//! refusal is a documented 4xx, and no table or buffer grows with what a client sends.

mod common;

use std::time::{Duration, Instant};

use common::Server;

/// The same ticket spelled differently: leading zeros in the issue time, `n` of them.
fn respelled(ticket: &str, zeros: usize) -> String {
    let parts: Vec<&str> = ticket.split('.').collect();
    format!("v1.{}.{}{}.{}", parts[1], "0".repeat(zeros), parts[2], parts[3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_kilobyte_ticket_spellings_are_refused_and_allocate_nothing() {
    const FOR: Duration = Duration::from_secs(20);
    const SENDERS: usize = 8;
    // The send budgets are on: before, each spelling was a new key in them.
    let server = Server::start(&["--send-rate", "5", "--send-burst", "10"]);
    let browser = server.browser();
    let ticket = browser.join("mallory").await;
    // warm-up: the allocator's arenas and the connection pool reach their working size first
    for zeros in 0..50 {
        let spelling = respelled(&ticket, 60_000 + zeros);
        browser.post("/api/send", &[("ticket", &spelling), ("text", "x")]).await.refused(403, "bad_ticket");
    }
    let rss_before = server.rss_bytes();
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (browser, ticket) = (browser.clone(), ticket.clone());
            tokio::spawn(async move {
                let mut sent = 0usize;
                while started.elapsed() < FOR {
                    let spelling = respelled(&ticket, 59_000 + sent * SENDERS + sender);
                    let answer = browser.post("/api/send", &[("ticket", &spelling), ("text", "x")]).await;
                    answer.refused(403, "bad_ticket");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut total = 0;
    for sender in senders {
        total += sender.await.unwrap();
    }
    let grown = server.rss_bytes().saturating_sub(rss_before);
    eprintln!("{total} spellings of 60 KB refused; RSS grew by {} KiB", grown / 1024);
    assert!(total > 1_000, "only {total} requests in {FOR:?}");
    assert!(grown < 20 * 1024 * 1024, "memory grew by {grown} bytes over {total} spellings");
    assert!(browser.messages("").await.is_empty(), "no spelling was taken for the ticket");
    // the ticket as issued still works
    browser.send(&ticket, "as issued").await;
}
