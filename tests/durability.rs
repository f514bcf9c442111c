//! The durable log (SQLite, the default store), through the real binary: restarts, crashes, retention, paging back.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broadcasting::shared::wire::MESSAGES_PATH;
use common::{ids, Server};
use serde_json::Value;

#[tokio::test]
async fn messages_survive_a_restart_and_ids_go_on() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for text in ["one", "two", "three"] {
        browser.send(&ticket, text).await;
    }
    let before = browser.messages("").await;

    let server = server.restart();
    let browser = server.browser();
    assert_eq!(browser.messages("").await, before, "everything is still there, unchanged");
    let ticket = browser.join("ada").await;
    assert_eq!(browser.send(&ticket, "four").await["id"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_loses_no_acknowledged_message() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("crash").await;
    let acknowledged: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();

    // Four senders in a loop; each records what the server acknowledged.
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let (browser, ticket, acknowledged) = (browser.clone(), ticket.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let text = format!("sender {s} message {i}");
                    let sent = browser
                        .http
                        .post(format!("{}/api/send", browser.base))
                        .form(&[("ticket", &ticket), ("text", &text)])
                        .send()
                        .await;
                    let Ok(response) = sent else { return };
                    let Ok(body) = response.json::<Value>().await else { return };
                    let Some(id) = body["id"].as_u64() else { return };
                    acknowledged.lock().unwrap().insert(id, text);
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = server.crash_and_restart(); // mid-stream
    for sender in senders {
        sender.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    let browser = server.browser();
    let mut stored = BTreeMap::new();
    let mut since = 0;
    loop {
        let page = browser.messages(&format!("?since={since}")).await;
        let Some(last) = page.last() else { break };
        since = last["id"].as_u64().unwrap();
        for message in page {
            stored.insert(message["id"].as_u64().unwrap(), message["text"].as_str().unwrap().to_owned());
        }
    }
    assert!(acknowledged.len() >= 300);
    for (id, text) in &acknowledged {
        assert_eq!(stored.get(id), Some(text), "acknowledged message {id} is stored with its text");
    }
    // ids go on above everything handed out before the crash
    let ticket = browser.join("after").await;
    let next = browser.send(&ticket, "after the crash").await["id"].as_u64().unwrap();
    assert!(next > *stored.keys().last().unwrap());
}

#[tokio::test]
async fn retention_deletes_in_the_background_and_never_reuses_ids() {
    let server = Server::start(&["--max-messages", "5", "--prune-every", "100ms"]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for i in 1..=12 {
        browser.send(&ticket, &format!("m{i}")).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while browser.messages("?since=0").await.len() > 5 {
        assert!(tokio::time::Instant::now() < deadline, "retention did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ids(&browser.messages("").await), [8, 9, 10, 11, 12]);
    assert_eq!(browser.send(&ticket, "next").await["id"], 13);
}

#[tokio::test]
async fn max_age_deletes_old_messages() {
    let server = Server::start(&["--max-age", "1s", "--prune-every", "200ms"]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    browser.send(&ticket, "soon gone").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !browser.messages("").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the old message was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.send(&ticket, "fresh").await["id"], 2);
    assert_eq!(ids(&browser.messages("").await), [2]);
}

#[tokio::test]
async fn before_pages_back_through_the_log() {
    let server = Server::start(&["--page-size", "4"]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for i in 1..=10 {
        browser.send(&ticket, &format!("m{i}")).await;
    }
    assert_eq!(ids(&browser.messages("").await), [7, 8, 9, 10]);
    assert_eq!(ids(&browser.messages("?before=7").await), [3, 4, 5, 6]);
    assert_eq!(ids(&browser.messages("?before=3").await), [1, 2]);
    assert!(browser.messages("?before=1").await.is_empty());
    browser.get(&format!("{MESSAGES_PATH}?before=x")).await.refused(400, "bad_request");
    browser.get(&format!("{MESSAGES_PATH}?since=1&before=5")).await.refused(400, "bad_request");
}

#[tokio::test]
async fn the_memory_store_is_a_setting_and_forgets_on_restart() {
    let server = Server::start(&["--store", "memory"]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    browser.send(&ticket, "ephemeral").await;
    let server = server.restart();
    assert!(server.browser().messages("").await.is_empty());
}

#[test]
fn a_corrupt_database_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/feed.db"), vec![0x42; 16_384]).unwrap();
    std::fs::write(dir.path().join("settings.toml"), "").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_broadcasting"))
        .args(["--addr", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("settings.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the database") && stderr.contains("feed.db"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
}
