//! The publish API against the real server: a keys file written in the test's directory (`--api-keys-file`), keys
//! made as an operator makes them (`api_keys::make`), spoken to over HTTP like a backend would. Publishing and
//! reading, idempotency, every refusal (status, JSON error, nothing stored), a key removed on SIGHUP, the budget,
//! the OpenAPI document, and the README's curl lines run as written.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use broadcasting::server::api_keys::make;
use common::{texts, Server};
use serde_json::{json, Value};

const PUBLISH: &str = "/api/v1/feeds/orders/messages";

/// A key and its entry with `feeds` and `per-minute` as given.
fn key(name: &str, feeds: &str, per_minute: u32) -> (String, String) {
    let (key, entry) = make(name);
    let entry = entry
        .replace("feeds = [\"*\"]", &format!("feeds = {feeds}"))
        .replace("per-minute = 600", &format!("per-minute = {per_minute}"));
    (key, entry)
}

/// Writes `entries` as the keys file in a directory of its own.
fn keys_file(entries: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-keys.toml");
    std::fs::write(&path, entries.join("\n")).unwrap();
    (dir, path)
}

fn start(path: &Path, flags: &[&str]) -> Server {
    let mut all = vec!["--api-keys-file", path.to_str().unwrap()];
    all.extend_from_slice(flags);
    Server::start(&all)
}

/// Status, headers and JSON body of a request with `key` as its bearer (if any) and `body` (if any, as sent).
async fn ask(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

async fn publish(server: &Server, key: Option<&str>, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    ask(server, reqwest::Method::POST, PUBLISH, key, Some(body.to_string())).await
}

/// The feed's page as a tab reads it.
async fn page(server: &Server, feed: &str) -> Vec<Value> {
    server.browser().get(&format!("/api/feeds/{feed}/messages")).await.ok()
}

#[tokio::test]
async fn a_published_message_is_stored_as_the_service_announced_and_repeats_answer_the_first() {
    let (orders, orders_entry) = key("orders", "[\"orders\"]", 600);
    let (other, other_entry) = key("billing", "[\"orders\"]", 600);
    let (_dir, path) = keys_file(&[&orders_entry, &other_entry]);
    // The default scope, each browser its own group: every browser reading the feed is told.
    let server = start(&path, &[]);
    let tab = server.browser();
    let mut events = tab.events_at("/events?feed=orders", &[]).await;
    let mut other_browser = server.browser().events_at("/events?feed=orders", &[]).await;

    let body = json!({"author": "Order bot", "text": "order 17 shipped", "key": "order-17"});
    let (status, headers, first) = publish(&server, Some(&orders), body.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert!(headers.get("set-cookie").is_none(), "a backend's answer sets no browser's cookie");
    assert_eq!((first["user"].as_str(), first["text"].as_str()), (Some("Order bot"), Some("order 17 shipped")));
    assert_eq!(first["source"], json!({"service": "orders"}));
    let id = first["id"].as_u64().unwrap();
    let notice = events.next().await;
    assert!(notice.data.contains(&id.to_string()), "the tab is told: {notice:?}");
    assert_eq!(other_browser.next().await.data, notice.data, "and another browser's tab too");

    let (status, _, again) = publish(&server, Some(&orders), body.clone()).await;
    assert_eq!((status, &again), (200, &first), "a repeated key answers the first message");
    let (status, _, others) = publish(&server, Some(&other), body).await;
    assert_eq!(status, 201, "another API key's same key is its own message: {others}");
    assert_eq!(others["source"], json!({"service": "billing"}));

    let stored = page(&server, "orders").await;
    assert_eq!(texts(&stored), ["order 17 shipped", "order 17 shipped"]);
    assert_eq!(stored[0]["source"], json!({"service": "orders"}));
    assert_eq!(stored[0]["id"].as_u64(), Some(id));
}

#[tokio::test]
async fn every_refusal_is_its_status_and_json_error_and_stores_nothing() {
    let (orders, entry) = key("orders", "[\"orders\", \"team-*\"]", 600);
    let (_dir, path) = keys_file(&[&entry]);
    let server = start(&path, &["--max-message-chars", "20", "--max-request-bytes", "2048"]);
    let good = json!({"author": "bot", "text": "hello"});

    for bearer in [None, Some("not-a-key"), Some(&format!("{orders}x")[..])] {
        let (status, headers, body) = publish(&server, bearer, good.clone()).await;
        assert_eq!((status, body["kind"].as_str()), (401, Some("unauthorized")), "{bearer:?}: {body}");
        assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
    }
    let basic = reqwest::Client::new()
        .post(server.url(PUBLISH))
        .header("authorization", format!("Basic {orders}"))
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    let path = "/api/v1/feeds/main/messages";
    let (status, _, body) = ask(&server, reqwest::Method::POST, path, Some(&orders), Some(good.to_string())).await;
    assert_eq!((status, body["kind"].as_str()), (403, Some("forbidden")), "{body}");

    let refusals: [(String, u16, &str); 7] = [
        ("{not json".into(), 400, "bad_request"),
        (json!({"author": "bot"}).to_string(), 400, "bad_request"),
        (json!({"author": "bot", "text": "hi", "extra": 1}).to_string(), 400, "bad_request"),
        (json!({"author": "bot", "text": "x".repeat(21)}).to_string(), 422, "invalid_input"),
        (json!({"author": "", "text": "hi"}).to_string(), 422, "invalid_input"),
        (json!({"author": "bot", "text": "hi", "key": "no spaces please"}).to_string(), 422, "invalid_input"),
        (json!({"author": "bot", "text": "x".repeat(4000)}).to_string(), 413, "too_large"),
    ];
    for (body, status, kind) in refusals {
        let (got, _, answer) = ask(&server, reqwest::Method::POST, PUBLISH, Some(&orders), Some(body.clone())).await;
        assert_eq!((got, answer["kind"].as_str()), (status, Some(kind)), "{body:.60}: {answer}");
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    assert!(page(&server, "orders").await.is_empty(), "nothing stored");
    assert!(page(&server, "main").await.is_empty(), "nothing stored");
    assert!(!server.log().contains("ERROR"), "a client's fault is no error: {}", server.log());

    // `feeds = listed`: a feed the settings do not list is a 404, even one the key's pattern covers.
    let (_dir, path) = keys_file(&[&entry]);
    let flags = ["--api-keys-file", path.to_str().unwrap()];
    // The settings file the harness gives the server sits beside its data directory.
    let listed = Server::try_start_prepared(&flags, &[], |data| {
        let settings = "[broadcasting]\nfeeds = \"listed\"\n[broadcasting.named-feeds.team-news]\n";
        std::fs::write(data.parent().unwrap().join("settings.toml"), settings).unwrap();
    })
    .unwrap_or_else(|(status, stderr)| panic!("the server did not start ({status}):\n{stderr}"));
    let unlisted = "/api/v1/feeds/team-ops/messages";
    let (status, _, body) = ask(&listed, reqwest::Method::POST, unlisted, Some(&orders), Some(good.to_string())).await;
    assert_eq!((status, body["kind"].as_str()), (404, Some("not_found")), "{body}");
    let (status, _, _) = ask(&listed, reqwest::Method::GET, unlisted, Some(&orders), None).await;
    assert_eq!(status, 404);
    let listed_feed = "/api/v1/feeds/team-news/messages";
    let (status, _, _) = ask(&listed, reqwest::Method::POST, listed_feed, Some(&orders), Some(good.to_string())).await;
    assert_eq!(status, 201, "the listed feed takes it");
}

#[tokio::test]
async fn a_key_over_its_budget_is_refused_with_retry_after() {
    let (busy, entry) = key("busy", "[\"*\"]", 2);
    let (_dir, path) = keys_file(&[&entry]);
    let server = start(&path, &[]);
    for n in 0..2 {
        let (status, _, body) = publish(&server, Some(&busy), json!({"author": "bot", "text": format!("n{n}")})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, headers, body) = publish(&server, Some(&busy), json!({"author": "bot", "text": "n2"})).await;
    assert_eq!((status, body["kind"].as_str()), (429, Some("rate_limited")), "{body}");
    let wait: u64 = headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "two a minute: the next in at most 30 s, said {wait}");
    assert_eq!(texts(&page(&server, "orders").await), ["n0", "n1"]);
}

#[tokio::test]
async fn a_key_removed_from_the_file_is_refused_after_sighup_and_a_malformed_file_keeps_the_old_keys() {
    let (kept, kept_entry) = key("kept", "[\"*\"]", 600);
    let (removed, removed_entry) = key("removed", "[\"*\"]", 600);
    let (_dir, path) = keys_file(&[&kept_entry, &removed_entry]);
    let server = start(&path, &["--log-level", "info"]);
    let hello = || json!({"author": "bot", "text": "hello"});
    assert_eq!(publish(&server, Some(&removed), hello()).await.0, 201);

    // Malformed: the old keys stay, and the log says why (a WARN, never an ERROR).
    std::fs::write(&path, "[[key]]\nname = \"half\n").unwrap();
    hangup(&server);
    assert!(server.logs_within("the old keys stay"), "{}", server.log());
    assert_eq!(publish(&server, Some(&removed), hello()).await.0, 201, "the old keys still work");

    std::fs::write(&path, &kept_entry).unwrap();
    hangup(&server);
    let mut refused = false;
    for _ in 0..50 {
        if publish(&server, Some(&removed), hello()).await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the removed key still works: {}", server.log());
    assert!(server.logs_within("SIGHUP"), "the signal was heard: {}", server.log());
    assert_eq!(publish(&server, Some(&kept), hello()).await.0, 201, "the kept key still works");
    assert!(!server.log().contains("ERROR"), "{}", server.log());
}

fn hangup(server: &Server) {
    let status = std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_malformed_keys_file_stops_the_start_with_a_clear_error() {
    let (_dir, path) = keys_file(&["[[key]]\nname = \"Bad Name\"\nhash = \"sha256:00\"\nfeeds = []\nper-minute = 1\n"]);
    let flags = ["--api-keys-file", path.to_str().unwrap()];
    let (status, stderr) = Server::fails_to_start(&flags, &[], |_| {});
    assert!(!status.success());
    assert!(stderr.contains("API keys file") && stderr.contains("key name"), "{stderr}");
}

#[tokio::test]
async fn reading_pages_needs_a_key_that_covers_the_feed() {
    let (orders, entry) = key("orders", "[\"orders\"]", 600);
    let (_dir, path) = keys_file(&[&entry]);
    let server = start(&path, &[]);
    for n in 0..2 {
        publish(&server, Some(&orders), json!({"author": "bot", "text": format!("m{n}")})).await;
    }
    let (status, headers, body) = ask(&server, reqwest::Method::GET, PUBLISH, Some(&orders), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(texts(body.as_array().unwrap()), ["m0", "m1"]);
    assert!(headers.contains_key("broadcasting-epoch"));
    assert_eq!(headers.get("cache-control").unwrap(), "private, no-cache", "no shared cache keeps a keyed read");
    let since = format!("{PUBLISH}?since=1");
    let (_, _, body) = ask(&server, reqwest::Method::GET, &since, Some(&orders), None).await;
    assert_eq!(texts(body.as_array().unwrap()), ["m1"]);

    let (status, headers, body) = ask(&server, reqwest::Method::GET, PUBLISH, None, None).await;
    assert_eq!((status, body["kind"].as_str()), (401, Some("unauthorized")), "{body}");
    assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
    let main = "/api/v1/feeds/main/messages";
    let (status, _, body) = ask(&server, reqwest::Method::GET, main, Some(&orders), None).await;
    assert_eq!((status, body["kind"].as_str()), (403, Some("forbidden")), "{body}");
    let bad = format!("{PUBLISH}?since=x");
    let (status, _, body) = ask(&server, reqwest::Method::GET, &bad, Some(&orders), None).await;
    assert_eq!((status, body["kind"].as_str()), (400, Some("bad_request")), "{body}");
}

#[tokio::test]
async fn the_openapi_document_lists_both_routes_and_the_bearer_scheme() {
    let server = Server::start(&[]);
    let (status, _, document) = ask(&server, reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let path = &document["paths"]["/api/v1/feeds/{feed}/messages"];
    assert!(path["post"]["responses"]["201"].is_object(), "{path}");
    assert!(path["get"]["responses"]["200"].is_object(), "{path}");
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["type"], "http");
    assert_eq!(document["security"], json!([{"bearer": []}]));
    assert!(document["components"]["schemas"]["ApiError"].is_object());
}

/// The README's "Publish API" example, run as written (`bash -e`) with `URL` and `KEY` pointing at a test server: the
/// documented lines can never drift from what the server does.
#[tokio::test]
async fn the_readmes_curl_lines_run_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Publish API").nth(1).expect("a Publish API section");
    let script = section.split("```sh\n").nth(1).and_then(|rest| rest.split("\n```").next()).expect("a sh block");
    let script = script.to_owned();
    assert!(script.contains("curl"), "{script}");

    let (key, entry) = key("orders", "[\"orders\", \"team-*\"]", 600);
    let (_dir, path) = keys_file(&[&entry]);
    let server = start(&path, &[]);
    let server_url = server.base.clone();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &script])
            .env("URL", server_url)
            .env("KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the README's lines failed:\n{stdout}\n{stderr}");
    assert!(!texts(&page(&server, "orders").await).is_empty(), "the example published: {stdout}");
}

/// `broadcasting make-api-key NAME` prints a key and the entry that admits it, as the README shows: the entry, put
/// in a keys file as printed, lets a backend publish with the key. A name a key may not have is refused (exit 2).
#[tokio::test]
async fn make_api_key_prints_a_key_and_the_entry_that_admits_it() {
    let binary = env!("CARGO_BIN_EXE_broadcasting");
    let made = std::process::Command::new(binary).args(["make-api-key", "orders"]).output().unwrap();
    assert!(made.status.success());
    let printed = String::from_utf8(made.stdout).unwrap();
    let key = printed.lines().find(|line| line.starts_with("bk_")).expect("the key on a line of its own");
    let entry = printed.split_once("# Add this").expect("the entry, after its comment").1;
    let (_dir, path) = keys_file(&[&format!("# Add this{entry}")]);
    let server = start(&path, &[]);
    let (status, _, body) = publish(&server, Some(key), json!({"author": "bot", "text": "hi"})).await;
    assert_eq!((status, &body["source"]), (201, &json!({"service": "orders"})), "{body}");
    assert_eq!(printed.matches(key).count(), 1, "the key is printed once, the entry holds its hash only");

    let refused = std::process::Command::new(binary).args(["make-api-key", "Bad Name"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("usage"));
}
