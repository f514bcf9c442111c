//! Hardening, spoken to the real server binary: security headers, limits, operations endpoints.

mod common;

use broadcasting::shared::wire::{EVENTS_PATH, MESSAGES_PATH, PRESENCE_PATH, SEND_PATH};
use common::{texts, Server};

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The `'nonce-…'` value of a policy.
fn nonce_of(policy: &str) -> String {
    let rest = policy.split("'nonce-").nth(1).unwrap_or_else(|| panic!("no nonce in {policy:?}"));
    rest.split('\'').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_page_runs_only_scripts_carrying_its_own_nonce() {
    let server = Server::start(&[]);
    let page = reqwest::get(server.url("/")).await.unwrap();
    let policy = header(&page, "content-security-policy");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(!policy.contains(" 'unsafe-eval'"), "only 'wasm-unsafe-eval': {policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let nonce = nonce_of(&policy);
    assert!(nonce.len() >= 16, "{nonce}");
    let html = page.text().await.unwrap();
    let scripts: Vec<&str> = html.split("<script").skip(1).map(|rest| &rest[..rest.find('>').unwrap()]).collect();
    assert!(!scripts.is_empty(), "{html}");
    for script in scripts {
        assert!(script.contains(&format!("nonce=\"{nonce}\"")), "<script{script}> lacks the nonce {nonce}");
    }
    let again = reqwest::get(server.url("/")).await.unwrap();
    assert_ne!(nonce_of(&header(&again, "content-security-policy")), nonce, "a new nonce for every page");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let server = Server::start(&[]);
    let browser = server.browser();
    browser.join("headers").await;
    for path in ["/", MESSAGES_PATH, format!("{MESSAGES_PATH}?since=abc").as_str(), "/favicon.svg", "/no/such/page"] {
        let response = browser.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(header(&response, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
        let policy = header(&response, "content-security-policy");
        assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy}");
        if path != "/" {
            assert!(policy.starts_with("default-src 'none'"), "{path} is not a document: {policy}");
        }
    }
    let events = browser.http.get(server.url(EVENTS_PATH)).send().await.unwrap();
    assert_eq!(header(&events, "x-content-type-options"), "nosniff");
    assert!(header(&events, "content-security-policy").starts_with("default-src 'none'"));
}

/// The value of an unlabelled (or exactly labelled) sample in Prometheus text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `broadcasting_open_streams` once it reads `want` (the server notices a closed stream when its client closes it), or
/// what it reads after 5 s.
async fn open_streams_settling_at(server: &Server, want: f64) -> f64 {
    let mut open = f64::NAN;
    for _ in 0..50 {
        let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
        open = sample(&metrics, "broadcasting_open_streams").unwrap();
        if open == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    open
}

/// A browser whose session group is known by its cookie (`name=value`), for requests made by hand in that group.
async fn browser_in_known_group(server: &Server) -> (common::Browser, String) {
    // Any request but the refetch of the log (which sets no cookie, so that its answer is the same for everyone).
    let first = reqwest::get(server.url(PRESENCE_PATH)).await.unwrap();
    let cookie = common::group_cookie(first.headers());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", cookie.parse().unwrap());
    let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
    (common::Browser { http, base: server.base.clone() }, cookie)
}

#[tokio::test]
async fn health_and_metrics_report_streams_appends_refusals_and_fanout_time() {
    let server = Server::start(&[]);
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap().trim(), "ok");

    let browser = server.browser();
    let ticket = browser.join("metered").await;
    let mut first = browser.events().await;
    let _second = server.browser().events().await;
    browser.send(&ticket, "one").await;
    // Heard before the next send: a stream is told the newest id, so two sends in a row may come as one notice.
    assert_eq!(first.next().await.id, "1");
    browser.send(&ticket, "two").await;
    browser.post(SEND_PATH, &[("ticket", &ticket), ("text", " ")]).await.refused(422, "invalid_input");
    browser.post(SEND_PATH, &[("ticket", "forged"), ("text", "x")]).await.refused(403, "bad_ticket");
    assert_eq!(browser.messages("?since=0").await.len(), 2);
    browser.get(&format!("{MESSAGES_PATH}?since=abc")).await.refused(400, "bad_request");

    let scrape = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(header(&scrape, "content-type").starts_with("text/plain"), "{}", header(&scrape, "content-type"));
    let metrics = scrape.text().await.unwrap();
    assert_eq!(sample(&metrics, "broadcasting_open_streams"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "broadcasting_messages_appended_total"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "broadcasting_sends_refused_total{reason=\"invalid_input\"}"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "broadcasting_sends_refused_total{reason=\"bad_ticket\"}"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "broadcasting_page_requests_total"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "broadcasting_fanout_seconds_count"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "broadcasting_fanout_seconds_bucket{le=\"+Inf\"}"), Some(2.0), "{metrics}");

    drop(first);
    assert_eq!(open_streams_settling_at(&server, 1.0).await, 1.0, "the closed stream is no longer counted");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&["--header-timeout", "1s"]);
    let mut slow = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still connected after 10 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "closed before the deadline");
    // the server still serves everyone else
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
}

/// One `GET /healthz` on `kept`, read to its end; when it was answered.
async fn healthz_on(kept: &mut tokio::net::TcpStream) -> std::time::Instant {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\nok\n") {
        let mut chunk = [0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), kept.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    std::time::Instant::now()
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout_until_the_idle_timeout() {
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    let server = Server::start(&["--header-timeout", "1s", "--idle-timeout", "3s"]);
    let mut kept = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    healthz_on(&mut kept).await;
    tokio::time::sleep(Duration::from_millis(1_800)).await; // past the header timeout
    let last = healthz_on(&mut kept).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), kept.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open 10 s after its last answer");
    assert!(last.elapsed() >= Duration::from_millis(2_800), "closed {:?} after its last answer", last.elapsed());
}

#[tokio::test]
async fn an_oversized_body_is_refused_and_stores_nothing() {
    let server = Server::start(&["--max-request-bytes", "4096"]);
    let browser = server.browser();
    let ticket = browser.join("big").await;
    let text = "x".repeat(5_000);
    let message = browser.post(SEND_PATH, &[("ticket", &ticket), ("text", &text)]).await.refused(413, "too_large");
    assert!(message.contains("4096 bytes"), "{message}");
    assert!(browser.messages("").await.is_empty());
    browser.send(&ticket, &"y".repeat(1_000)).await; // under the limit: accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_thousand_open_streams_exits_within_two_seconds() {
    const STREAMS: usize = 1_000;
    let server = Server::start(&[]);
    let browser = server.browser();
    browser.join("warm-up").await;
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        // One connection each, as 1,000 tabs would have.
        let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let response = http.get(server.url(EVENTS_PATH)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, "broadcasting_open_streams"), Some(STREAMS as f64));
    let readers: Vec<_> = streams
        .into_iter()
        .map(|response| {
            tokio::spawn(async move {
                let mut body = response.bytes_stream();
                use futures::StreamExt;
                while let Some(Ok(_)) = body.next().await {}
            })
        })
        .collect();

    let base = server.base.clone();
    let (exit, took) = tokio::task::spawn_blocking(move || server.terminate()).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(took < std::time::Duration::from_secs(2), "exit took {took:?}");
    for reader in readers {
        tokio::time::timeout(std::time::Duration::from_secs(2), reader).await.expect("every stream ended").unwrap();
    }
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn sends_beyond_the_rate_are_refused_with_429_and_store_nothing() {
    let server = Server::start(&["--send-rate", "2", "--send-burst", "3"]);
    let browser = server.browser();
    let ticket = browser.join("hasty").await;
    for i in 0..3 {
        browser.send(&ticket, &format!("burst {i}")).await;
    }
    let refused = browser.http.post(server.url(SEND_PATH)).form(&[("ticket", &ticket), ("text", &"over".to_owned())]);
    let refused = refused.send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["kind"], "rate_limited");
    assert!(body["message"].as_str().unwrap().contains("at most 2 messages a second"), "{body}");

    // joining again in the same browser does not lift the group's budget; another browser has its own
    let second_ticket = browser.join("hasty again").await;
    browser.post(SEND_PATH, &[("ticket", &second_ticket), ("text", "x")]).await.refused(429, "rate_limited");
    let other = server.browser();
    let other_ticket = other.join("calm").await;
    other.send(&other_ticket, "from elsewhere").await;

    let texts = texts(&browser.messages("").await);
    assert_eq!(texts, ["burst 0", "burst 1", "burst 2", "from elsewhere"], "refusals stored nothing");
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, "broadcasting_sends_refused_total{reason=\"rate_limited\"}"), Some(2.0), "{metrics}");

    // the budget refills at the rate: half a second later one more goes through
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    browser.send(&ticket, "after a pause").await;
}

#[tokio::test]
async fn an_expired_ticket_is_refused_with_a_clear_message_and_stores_nothing() {
    let server = Server::start(&["--ticket-lifetime", "1s"]);
    let browser = server.browser();
    let ticket = browser.join("fleeting").await;
    browser.send(&ticket, "in time").await;
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let message =
        browser.post(SEND_PATH, &[("ticket", &ticket), ("text", "too late")]).await.refused(403, "bad_ticket");
    assert!(message.contains("expired"), "{message}");
    let fresh = browser.join("fleeting").await;
    browser.send(&fresh, "joined again").await;
    let texts = texts(&browser.messages("").await);
    assert_eq!(texts, ["in time", "joined again"]);
}

#[tokio::test]
async fn event_streams_beyond_the_caps_are_refused_per_browser_and_in_total() {
    let server = Server::start(&["--max-streams", "3", "--max-streams-per-browser", "2"]);
    let (ada, bob, cy) = (server.browser(), server.browser(), server.browser());
    ada.join("ada").await; // the group cookie
    let ada_first = ada.events().await;
    let _ada_second = ada.events().await;
    let third = ada.get(EVENTS_PATH).await;
    let message = third.refused(429, "too_many_streams");
    assert!(message.contains("2 live streams"), "{message}");
    let _bob = bob.events().await; // another browser: its own budget, and the third stream in all
    cy.join("cy").await;
    let full = cy.get(EVENTS_PATH).await.refused(503, "unavailable");
    assert!(full.contains("as many live streams"), "{full}");

    // a closed stream frees its place
    drop(ada_first);
    let mut admitted = false;
    for _ in 0..50 {
        let response = cy.http.get(server.url(EVENTS_PATH)).send().await.unwrap();
        if response.status() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(admitted, "a place freed by a closed stream is given to the next");
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, "broadcasting_streams_refused_total{reason=\"too_many_streams\"}"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nobody_reads_is_dropped_and_delays_no_one() {
    use tokio::io::AsyncWriteExt;
    const LIVE: usize = 100;
    const MESSAGES: u64 = 3_000;
    let server =
        Server::start(&["--write-timeout", "1s", "--send-buffer-bytes", "4096", "--max-streams-per-browser", "0"]);
    // Everyone below is in one session group, the raw reader too (it sends the cookie by hand).
    let (browser, cookie) = browser_in_known_group(&server).await;
    let ticket = browser.join("flood").await;

    // One reader that sends its request and never reads a byte, with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stalled = socket.connect(server.address().parse().unwrap()).await.unwrap();
    stalled.write_all(format!("GET /events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n").as_bytes()).await.unwrap();
    // A hundred that read as they should, each until it is told of the last message.
    let mut live = Vec::new();
    for _ in 0..LIVE {
        let mut events = browser.events().await;
        live.push(tokio::spawn(async move {
            let mut last = 0;
            while last < MESSAGES {
                last = events
                    .next_within(std::time::Duration::from_secs(30))
                    .await
                    .expect("stream ended")
                    .id
                    .parse()
                    .unwrap();
            }
            (tokio::time::Instant::now(), events) // the stream stays open
        }));
    }
    let rss_before = server.rss_bytes();

    // Far more than fits the stalled stream's buffers: 3,000 notifications of about 40 bytes.
    for i in 0..MESSAGES {
        browser.send(&ticket, &format!("m{i}")).await;
    }
    let last_sent = tokio::time::Instant::now();
    let mut still_open = Vec::new();
    for reader in live {
        let told =
            tokio::time::timeout(std::time::Duration::from_secs(5), reader).await.expect("a live reader was held up");
        let (at, events) = told.unwrap();
        assert!(at.saturating_duration_since(last_sent) < std::time::Duration::from_secs(2));
        still_open.push(events);
    }
    // And the stalled one is dropped after the write timeout.
    let open = open_streams_settling_at(&server, LIVE as f64).await;
    assert_eq!(open, LIVE as f64, "the stream nobody reads is closed");
    let grown = server.rss_bytes().saturating_sub(rss_before);
    assert!(grown < 32 * 1024 * 1024, "memory grew by {grown} bytes");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_concurrent_load_no_group_ever_hears_of_another_groups_messages() {
    const GROUPS: usize = 20;
    const TABS: usize = 5;
    const EACH: usize = 50;
    let server = Server::start(&[]);
    let mut groups = Vec::new();
    for g in 0..GROUPS {
        let browser = server.browser();
        let ticket = browser.join(&format!("group{g}")).await;
        let mut tabs = Vec::new();
        for _ in 0..TABS {
            tabs.push(browser.events().await);
        }
        groups.push((browser, ticket, tabs));
    }
    // Every group sends at once; each tab records every id it is told of until its group's last message.
    let mut work = Vec::new();
    for (browser, ticket, tabs) in groups {
        work.push(tokio::spawn(async move {
            let listeners: Vec<_> = tabs
                .into_iter()
                .map(|mut events| {
                    tokio::spawn(async move {
                        let mut heard = Vec::new();
                        while let Some(event) = events.next_within(std::time::Duration::from_secs(3)).await {
                            heard.push(event.id.parse::<u64>().unwrap());
                        }
                        heard
                    })
                })
                .collect();
            let mut sent = std::collections::BTreeSet::new();
            for i in 0..EACH {
                sent.insert(browser.send(&ticket, &format!("m{i}")).await["id"].as_u64().unwrap());
            }
            let mut heard = Vec::new();
            for listener in listeners {
                heard.push(listener.await.unwrap());
            }
            (sent, heard)
        }));
    }
    for (g, group) in work.into_iter().enumerate() {
        let (sent, heard) = group.await.unwrap();
        for ids in heard {
            assert!(ids.iter().all(|id| sent.contains(id)), "group {g} was told of another group's message: {ids:?}");
            assert_eq!(ids.last(), sent.last(), "group {g}: every tab ends told of its group's last message");
        }
    }
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_gets_408_with_a_sentence() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&["--request-timeout", "1s"]);
    let mut slow = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    let head = "POST /api/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                Content-Length: 100\r\n\r\nusername=sl";
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer[..read.expect("no answer within 10 s").unwrap()]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"kind\":\"timed_out\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_flight_at_sigterm_is_finished_and_acknowledged() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&["--shutdown-grace", "3s"]);
    let (browser, cookie) = browser_in_known_group(&server).await;
    let body = format!("ticket={}&text=in+flight", browser.join("late").await);
    let (head, tail) = body.split_at(body.len() - 5);

    // The request is on its way when the signal comes: headers and most of the body sent, the rest after.
    let mut sender = tokio::net::TcpStream::connect(server.address()).await.unwrap();
    let request = format!(
        "POST /api/send HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nAccept: application/json\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    );
    sender.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopping = tokio::task::spawn_blocking(move || server.terminate());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sender.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sender.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"text\":\"in flight\""), "{answer}");
    let (exit, took) = stopping.await.unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
}
