//! Feeds over HTTP, against the real binary: each feed its own log, ids, pages, presence and notices; one stream
//! carries several feeds, each notice naming its own; `/api/messages`, `/api/presence` and `/events` alone stay
//! the feed `main`'s, as before feeds.

mod common;

use std::time::Duration;

use broadcasting::shared::wire::{self, EPOCH_HEADER, JOIN_PATH, SEND_PATH};
use common::{ids, texts, Server};
use serde_json::Value;

fn messages_of(feed: &str) -> String {
    wire::feed_api(feed, wire::FEED_MESSAGES)
}

#[tokio::test]
async fn each_feed_keeps_its_own_log_ids_and_pages_and_main_stays_as_it_was() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for (feed, text) in [("main", "m1"), ("team", "t1"), ("team", "t2"), ("news", "n1"), ("main", "m2")] {
        let sent: Value = browser.post(SEND_PATH, &[("ticket", &ticket), ("text", text), ("feed", feed)]).await.ok();
        assert_eq!(sent["text"], text);
    }
    // Without a feed field, a send is main's, as before feeds.
    browser.send(&ticket, "m3").await;
    let main = browser.messages("").await;
    assert_eq!((ids(&main), texts(&main)), (vec![1, 2, 3], vec!["m1".into(), "m2".into(), "m3".into()]));
    let team: Vec<Value> = browser.get(&messages_of("team")).await.ok();
    assert_eq!((ids(&team), texts(&team)), (vec![1, 2], vec!["t1".to_owned(), "t2".to_owned()]), "ids per feed");
    let news: Vec<Value> = browser.get(&format!("{}?since=0&until=1", messages_of("news"))).await.ok();
    assert_eq!(texts(&news), ["n1"]);
    let main_again: Vec<Value> = browser.get(&messages_of("main")).await.ok();
    assert_eq!(texts(&main_again), texts(&main), "main is main under either path");

    // Each feed has its own epoch; a feed nobody wrote to has none yet, and reads as empty.
    let epoch = |feed: &'static str| {
        let http = browser.http.clone();
        let url = server.url(&messages_of(feed));
        async move {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.headers().get(EPOCH_HEADER).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
        }
    };
    let (team_epoch, news_epoch, quiet_epoch) = (epoch("team").await, epoch("news").await, epoch("quiet").await);
    assert!(!team_epoch.is_empty() && team_epoch != news_epoch, "{team_epoch} / {news_epoch}");
    assert_eq!(quiet_epoch, "", "a feed nobody wrote to has no epoch yet");
    let quiet: Vec<Value> = browser.get(&messages_of("quiet")).await.ok();
    assert!(quiet.is_empty());
}

#[tokio::test]
async fn a_bad_feed_name_is_a_clear_4xx_and_changes_nothing() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for path in [messages_of("Team"), messages_of("-x"), messages_of("a_b"), wire::feed_api("x.y", wire::FEED_PRESENCE)]
    {
        let message = browser.get(&path).await.refused(404, "not_found");
        assert!(message.contains("a-z"), "{path}: {message}");
    }
    for bad in ["Team", "-x", "a b", &"x".repeat(65)] {
        let refused = browser.post(SEND_PATH, &[("ticket", &ticket), ("text", "hi"), ("feed", bad)]).await;
        let message = refused.refused(400, "bad_request");
        assert!(message.contains("feed"), "{bad:?}: {message}");
    }
    assert!(browser.messages("").await.is_empty(), "nothing was stored");
    let join = browser.post(JOIN_PATH, &[("username", "bob"), ("feed", "Bad Name")]).await;
    join.refused(400, "bad_request");
}

#[tokio::test]
async fn one_stream_carries_every_feed_it_names_and_only_those() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    let mut both = browser.events_at(&format!("{}?feed=team&feed=news", wire::EVENTS_PATH), &[]).await;
    let mut old = browser.events().await;
    let metrics = browser.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let gauge = |name: &str| metrics.lines().find_map(|line| line.strip_prefix(&format!("{name} "))).map(str::to_owned);
    assert_eq!(gauge("broadcasting_open_streams").as_deref(), Some("2"), "two streams, however many feeds:\n{metrics}");
    assert_eq!(gauge("broadcasting_feeds_followed").as_deref(), Some("3"), "team, news and main:\n{metrics}");
    let send = |feed: &'static str, text: &'static str| {
        let (browser, ticket) = (&browser, ticket.clone());
        async move {
            let sent: Value =
                browser.post(SEND_PATH, &[("ticket", &ticket), ("text", text), ("feed", feed)]).await.ok();
            sent["id"].as_u64().unwrap()
        }
    };
    assert_eq!(send("team", "t1").await, 1);
    let event = both.next().await;
    assert_eq!((event.data.as_str(), event.id.as_str()), ("team 1", ""), "the notice names its feed, and has no id");
    assert_eq!(send("news", "n1").await, 1);
    assert_eq!(both.next().await.data, "news 1");
    assert_eq!(send("other", "o1").await, 1);
    assert_eq!(send("main", "m1").await, 1);
    let main_event = old.next().await;
    assert_eq!(
        (main_event.data.as_str(), main_event.id.as_str()),
        ("1", "1"),
        "a stream naming no feed: main's, as before"
    );
    both.assert_quiet().await; // neither other's nor main's notices reach a stream that did not name them
    old.assert_quiet().await;

    // Past the cap, or with a bad name: a clear 400 before any stream opens.
    let many: String = (0..65).map(|n| format!("feed=f{n}&")).collect();
    let refused = browser.get(&format!("{}?{many}", wire::EVENTS_PATH)).await;
    assert!(refused.refused(400, "bad_request").contains("at most 64 feeds"));
    let refused = browser.get(&format!("{}?feed=Bad", wire::EVENTS_PATH)).await;
    refused.refused(400, "bad_request");
}

#[tokio::test]
async fn presence_is_per_feed() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    let presence_of = |feed: &str| wire::feed_api(feed, wire::FEED_PRESENCE);
    let mut stream = browser.events_at(&format!("{}?feed=team", wire::EVENTS_PATH), &[]).await;
    let beat: Value = browser.post(&presence_of("team"), &[("ticket", &ticket), ("tab", "t1")]).await.ok();
    assert!(beat["every_ms"].as_u64().unwrap() > 0);
    let told = stream.next_any_within(Duration::from_secs(3)).await.expect("a presence notice");
    assert_eq!((told.event.as_str(), told.data.as_str()), (wire::PRESENCE_CHANGED, "team"));
    let here: Value = browser.get(&presence_of("team")).await.ok();
    assert_eq!(here["names"], serde_json::json!(["ada"]));
    let main: Value = browser.get(wire::PRESENCE_PATH).await.ok();
    assert_eq!(main["names"], serde_json::json!([]), "main's list does not show team's tab");
    let elsewhere: Value = browser.get(&presence_of("news")).await.ok();
    assert_eq!(elsewhere["names"], serde_json::json!([]));
}

/// One address starts at most `new-feeds-per-hour` feeds; a feed that holds messages costs nothing more, and with
/// `feeds = listed` a name the settings file does not list is no feed at all.
#[tokio::test]
async fn new_feeds_are_budgeted_per_address_and_a_listed_deployment_has_only_its_feeds() {
    let server = Server::start(&["--new-feeds-per-hour", "2"]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    let send = |feed: &'static str| {
        let (browser, ticket) = (&browser, ticket.clone());
        async move { browser.post(SEND_PATH, &[("ticket", &ticket), ("text", "hi"), ("feed", feed)]).await }
    };
    send("a").await.ok::<Value>();
    send("b").await.ok::<Value>();
    let refused = send("c").await.refused(429, "rate_limited");
    assert!(refused.contains("new feeds"), "{refused}");
    send("a").await.ok::<Value>();
    send("main").await.ok::<Value>();
    let c: Vec<Value> = browser.get(&messages_of("c")).await.ok();
    assert!(c.is_empty(), "nothing stored for the refused feed");

    // The settings file the harness gives the server sits beside its data directory.
    let listed = Server::try_start_prepared(&[], &[], |data| {
        let settings = "[broadcasting]\nfeeds = \"listed\"\n[broadcasting.named-feeds.team]\n";
        std::fs::write(data.parent().unwrap().join("settings.toml"), settings).unwrap();
    })
    .unwrap_or_else(|(status, stderr)| panic!("the server did not start ({status}):\n{stderr}"));
    let browser = listed.browser();
    let ticket = browser.join("ada").await;
    let sent: Value = browser.post(SEND_PATH, &[("ticket", &ticket), ("text", "hi"), ("feed", "team")]).await.ok();
    assert_eq!(sent["id"], 1);
    let refused = browser.post(SEND_PATH, &[("ticket", &ticket), ("text", "hi"), ("feed", "other")]).await;
    assert!(refused.refused(404, "not_found").contains("other"));
    browser.get(&messages_of("other")).await.refused(404, "not_found");
    let page = listed.browser().http.get(listed.url("/f/other")).send().await.unwrap();
    assert_eq!(page.status(), 404, "the page of an unlisted feed");
    let page = listed.browser().http.get(listed.url("/f/team")).send().await.unwrap();
    assert_eq!(page.status(), 200);
}
