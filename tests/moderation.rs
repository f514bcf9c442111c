//! Moderation against the real server: a moderator (a sign-in token with `role = "moderator"`, or an API key with
//! `moderate = true`) lists a feed's messages with their senders and removes them; the removed text is gone from
//! every answer and from the SQLite files on disk, open streams are told, the settled page of before is not answered
//! again, and every refusal is its status with nothing changed.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use broadcasting::server::api_keys::make;
use common::{texts, Browser, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "the deployer's secret, thirty-two bytes or more";

fn token(claims: Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()).unwrap()).unwrap()
}

fn signed(sub: &str, role: Option<&str>) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let mut claims = json!({"sub": sub, "name": "Mo", "exp": exp});
    if let Some(role) = role {
        claims["role"] = json!(role);
    }
    token(claims)
}

/// A server that takes tokens, with two API keys: `mod` may moderate, `shop` may only post.
fn server() -> (Server, String, String, tempfile::TempDir) {
    let (moderating, moderating_entry) = make("mod");
    let (posting, posting_entry) = make("shop");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys.toml");
    std::fs::write(&keys, format!("{}\nmoderate = true\n\n{posting_entry}", moderating_entry.trim_end())).unwrap();
    let flags = ["--join", "both", "--token-secret", SECRET, "--api-keys-file", keys.to_str().unwrap()];
    (Server::start(&flags), moderating, posting, dir)
}

/// Status and JSON body of an admin request with `bearer` (if any).
async fn admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response.headers().get("cache-control").map_or(String::new(), |v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap_or(Value::Null), cache)
}

async fn page(browser: &Browser, query: &str) -> (String, Vec<Value>) {
    let response = browser.http.get(format!("{}/api/messages{query}", browser.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let epoch = response.headers()["broadcasting-epoch"].to_str().unwrap().to_owned();
    (epoch, response.json().await.unwrap())
}

#[tokio::test]
async fn a_moderator_removes_a_message_for_real_and_every_reader_sees_it_removed() {
    let (server, moderating, posting, _dir) = server();
    let ada = server.browser();
    let ticket = ada.join("Ada").await;
    let marker = "buy-cheap-pills-7f3a9c";
    for text in ["hello", marker, "bye"] {
        ada.send(&ticket, text).await;
    }
    let (old_epoch, before) = page(&ada, "?since=0&until=3").await;
    assert_eq!(texts(&before), ["hello", marker, "bye"]);
    let settled = format!("?since=0&until=3&epoch={old_epoch}");
    let mut stream = server.browser().events().await;

    // Refused, each its status, nothing changed.
    let moderator = signed("mod-1", Some("moderator"));
    let path = "/api/v1/admin/feeds/main/messages/2";
    for (bearer, status) in [
        (None, 401),
        (Some("garbage"), 401),
        (Some(signed("user-9", None).as_str()), 403),
        (Some(posting.as_str()), 403),
    ] {
        let (got, body, cache) = admin(&server, reqwest::Method::DELETE, path, bearer, None).await;
        assert_eq!((got, cache.as_str()), (status, "no-store"), "{bearer:?}: {body}");
    }
    let (status, body, _) =
        admin(&server, reqwest::Method::DELETE, "/api/v1/admin/feeds/main/messages/99", Some(&moderator), None).await;
    assert_eq!((status, body["kind"].as_str()), (404, Some("not_found")), "{body}");
    let (status, _, _) =
        admin(&server, reqwest::Method::DELETE, "/api/v1/admin/feeds/main/messages/x", Some(&moderator), None).await;
    assert_eq!(status, 400);
    assert_eq!(page(&ada, "?since=0").await.0, old_epoch, "nothing changed");

    // The moderator sees who sent what.
    let (status, listed, cache) =
        admin(&server, reqwest::Method::GET, "/api/v1/admin/feeds/main/messages", Some(&moderator), None).await;
    assert_eq!((status, cache.as_str()), (200, "no-store"), "{listed}");
    assert_eq!(listed[1]["text"], marker);
    assert_eq!(listed[1]["address"], "127.0.0.1");
    assert!(listed[1]["group"].as_str().is_some_and(|group| group.len() == 32), "{listed}");

    let (status, removed, _) = admin(&server, reqwest::Method::DELETE, path, Some(&moderator), None).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["removed"], json!([2]));
    let new_epoch = removed["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, old_epoch, "a removal makes a new epoch");

    // Told at once, and every answer shows it removed; the page of before is not answered again as it was.
    let notice =
        tokio::time::timeout(std::time::Duration::from_secs(1), stream.next()).await.expect("told within a second");
    assert_eq!(notice.id, "3");
    let (epoch, after) = page(&ada, "?since=0").await;
    assert_eq!(epoch, new_epoch);
    assert_eq!(after[1], json!({"id": 2, "user": "", "text": "", "at": before[1]["at"], "removed": true}));
    assert_eq!(texts(&after), ["hello", "", "bye"]);
    let (epoch, again) = page(&ada, &settled).await;
    assert_eq!(epoch, new_epoch, "the old epoch's URL answers the new log");
    assert!(!serde_json::to_string(&again).unwrap().contains(marker));
    let html = ada.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains(marker) && html.contains("message removed"), "the page renders it removed");
    let (_, listed, _) =
        admin(&server, reqwest::Method::GET, "/api/v1/admin/feeds/main/messages", Some(&moderating), None).await;
    assert_eq!((listed[1]["removed"].clone(), listed[1]["address"].clone()), (json!(true), json!("")));

    // Gone from the files on disk too (the database and its write-ahead log).
    for file in ["feed.db", "feed.db-wal"] {
        let bytes = std::fs::read(server.data_dir().join(file)).unwrap_or_default();
        assert!(!bytes.windows(marker.len()).any(|window| window == marker.as_bytes()), "{file} still holds it");
    }
    // Sends go on with the next id.
    assert_eq!(ada.send(&ticket, "after").await["id"], 4);
}

#[tokio::test]
async fn a_spam_wave_is_removed_by_sender_and_the_others_stay() {
    let (server, moderating, _, _dir) = server();
    let (ada, spammer) = (server.browser(), server.browser());
    let (good, bad) = (ada.join("Ada").await, spammer.join("Spam").await);
    ada.send(&good, "first").await;
    for n in 0..3 {
        spammer.send(&bad, &format!("spam {n}")).await;
    }
    ada.send(&good, "last").await;
    let (_, listed, _) =
        admin(&server, reqwest::Method::GET, "/api/v1/admin/feeds/main/messages?limit=10", Some(&moderating), None)
            .await;
    let group = listed[1]["group"].as_str().unwrap().to_owned();
    let removals = "/api/v1/admin/feeds/main/removals";
    for bad_body in
        [json!({"group": group}), json!({"group": group, "subject": "x", "minutes": 5}), json!({"minutes": 5})]
    {
        let (status, body, _) =
            admin(&server, reqwest::Method::POST, removals, Some(&moderating), Some(bad_body)).await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, removed, _) =
        admin(&server, reqwest::Method::POST, removals, Some(&moderating), Some(json!({"group": group, "minutes": 5})))
            .await;
    assert_eq!((status, &removed["removed"]), (200, &json!([2, 3, 4])), "{removed}");
    assert_eq!(texts(&ada.messages("?since=0").await), ["first", "", "", "", "last"]);
    // Nothing left of that sender: a second sweep removes nothing and changes nothing.
    let (status, again, _) =
        admin(&server, reqwest::Method::POST, removals, Some(&moderating), Some(json!({"group": group, "minutes": 5})))
            .await;
    assert_eq!((status, &again["removed"], &again["epoch"]), (200, &json!([]), &removed["epoch"]));
}
