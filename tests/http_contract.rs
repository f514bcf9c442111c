//! The public HTTP contract, spoken to the real server binary: join, send, messages, events, session groups.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use broadcasting::shared::wire::{JOIN_PATH, MESSAGES_PATH, NEW_MESSAGE, SEND_PATH};
use common::{ids, texts, Server};
use serde_json::Value;

#[tokio::test]
async fn join_send_and_read_back() {
    let server = Server::start(&[]);
    let browser = server.browser();

    let joined: Value = browser.post(JOIN_PATH, &[("username", "  Ada Lovelace  ")]).await.ok();
    assert_eq!(joined["name"], "Ada Lovelace");
    let ticket = joined["ticket"].as_str().unwrap();

    let stored = browser.send(ticket, "  first!  ").await;
    assert_eq!(
        (stored["id"].as_u64(), stored["user"].as_str(), stored["text"].as_str()),
        (Some(1), Some("Ada Lovelace"), Some("first!"))
    );
    assert!(stored["at"].as_str().unwrap().ends_with('Z'), "RFC 3339 UTC: {}", stored["at"]);
    browser.send(ticket, "second").await;

    let all = browser.messages("").await;
    assert_eq!(texts(&all), ["first!", "second"]);
    assert_eq!(all[0], stored);
    let after_first = browser.messages("?since=1").await;
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0]["id"], 2);
    assert!(browser.messages("?since=2").await.is_empty());
}

#[tokio::test]
async fn pages_are_capped_and_latest_without_since() {
    let server = Server::start(&["--page-size", "3"]);
    let browser = server.browser();
    let ticket = browser.join("pager").await;
    for i in 1..=7 {
        browser.send(&ticket, &format!("m{i}")).await;
    }
    assert_eq!(ids(&browser.messages("").await), [5, 6, 7]);
    assert_eq!(ids(&browser.messages("?since=0").await), [1, 2, 3]);
    assert_eq!(ids(&browser.messages("?since=3").await), [4, 5, 6]);
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let server = Server::start(&["--max-message-chars", "10"]);
    let browser = server.browser();
    let mut events = browser.events().await;
    let ticket = browser.join("ada").await;

    let long_name = "n".repeat(33);
    for name in ["", "   ", long_name.as_str(), "bell\u{7}"] {
        browser.post(JOIN_PATH, &[("username", name)]).await.refused(422, "invalid_input");
    }
    assert!(browser.post(JOIN_PATH, &[]).await.refused(422, "invalid_input").contains("name"));

    let message =
        browser.post(SEND_PATH, &[("ticket", &ticket), ("text", "12345678901")]).await.refused(422, "invalid_input");
    assert!(message.contains("10"), "{message}");
    browser.post(SEND_PATH, &[("ticket", &ticket), ("text", " \t ")]).await.refused(422, "invalid_input");
    browser.post(SEND_PATH, &[("ticket", &ticket)]).await.refused(422, "invalid_input");
    browser.post(SEND_PATH, &[("ticket", "v1.YWRh.1.AAAA"), ("text", "hi")]).await.refused(403, "bad_ticket");
    browser.post(SEND_PATH, &[("text", "hi")]).await.refused(403, "bad_ticket");
    let altered = ticket.replacen("v1.", "v1.Z", 1);
    browser.post(SEND_PATH, &[("ticket", &altered), ("text", "hi")]).await.refused(403, "bad_ticket");
    // a ticket carried into another browser (another session group) is refused there
    server.browser().post(SEND_PATH, &[("ticket", &ticket), ("text", "hi")]).await.refused(403, "bad_ticket");
    browser.get(&format!("{MESSAGES_PATH}?since=abc")).await.refused(400, "bad_request");

    assert!(browser.messages("").await.is_empty(), "nothing was stored");
    events.assert_quiet().await; // and nothing was published

    browser.send(&ticket, "ok now").await;
    assert_eq!(events.next().await.id, "1", "the first id after the refusals is 1: no id was used up");
}

#[tokio::test]
async fn events_announce_each_append_to_the_senders_group_only() {
    let server = Server::start(&[]);
    let (alice, bob) = (server.browser(), server.browser());
    // the first answer sets each browser's group cookie
    let alice_ticket = alice.join("alice").await;
    let bob_ticket = bob.join("bob").await;
    let mut alice_tab1 = alice.events().await;
    let mut alice_tab2 = alice.events().await;
    let mut bob_tab = bob.events().await;

    let sent = alice.send(&alice_ticket, "hi").await;
    for tab in [&mut alice_tab1, &mut alice_tab2] {
        let event = tab.next().await;
        assert_eq!((event.event.as_str(), event.id.as_str(), event.data.as_str()), (NEW_MESSAGE, "1", "1"));
    }
    bob_tab.assert_quiet().await;
    assert_eq!(sent["id"], 1);

    bob.send(&bob_ticket, "yo").await;
    assert_eq!(bob_tab.next().await.id, "2");
    alice_tab1.assert_quiet().await;
    // the log itself is shared: alice's browser reads bob's message
    assert_eq!(alice.messages("?since=1").await[0]["user"], "bob");
}

#[tokio::test]
async fn a_reconnect_behind_the_latest_id_is_told_at_once() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for text in ["a", "b", "c"] {
        browser.send(&ticket, text).await;
    }
    let mut behind = browser.events_with(&[("Last-Event-ID", "1")]).await;
    let event = behind.next().await;
    assert_eq!((event.event.as_str(), event.id.as_str()), (NEW_MESSAGE, "3"));
    behind.assert_quiet().await;

    let mut current = browser.events_with(&[("Last-Event-ID", "3")]).await;
    current.assert_quiet().await;
    let mut fresh = browser.events().await;
    fresh.assert_quiet().await;
}

#[tokio::test]
async fn the_group_cookie_is_anonymous_http_only_and_long_lived() {
    let server = Server::start(&[]);
    let response = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers().get("set-cookie").expect("a group cookie").to_str().unwrap().to_owned();
    let (pair, attributes) = cookie.split_once(';').unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, "broadcasting_group");
    assert_eq!(value.len(), 32);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=31536000"] {
        assert!(attributes.contains(attribute), "{attribute} missing in {cookie}");
    }
    // a browser that has the cookie keeps it: no new one
    let browser = server.browser();
    browser.join("ada").await;
    let again = browser.http.get(server.url("/")).send().await.unwrap();
    assert!(again.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn scope_everyone_puts_every_visitor_in_one_group() {
    let server = Server::start(&["--scope", "everyone"]);
    let (alice, bob) = (server.browser(), server.browser());
    let mut bob_tab = bob.events().await;
    let ticket = alice.join("alice").await;
    alice.send(&ticket, "to everyone").await;
    assert_eq!(bob_tab.next().await.id, "1");
    // one group: a ticket is good from any browser
    bob.send(&ticket, "same group").await;
    let response = reqwest::get(server.url("/")).await.unwrap();
    assert!(response.headers().get("set-cookie").is_none(), "no cookie is needed in scope everyone");
}

#[tokio::test]
async fn the_first_html_holds_the_log_escaped() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let ticket = browser.join("mallory").await;
    browser.send(&ticket, "<img src=x onerror=\"window.__xss=1\">").await;
    let html = browser.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("data-key=\"1\""), "{html}");
    assert!(html.contains("&lt;img src=x onerror=\"window.__xss=1\"&gt;"), "{html}");
    assert!(!html.contains("<img src=x"), "markup must be escaped");
    // plain markup in the page itself, not a streamed fragment that needs JavaScript to be shown
    let main = &html[html.find("<main").unwrap()..html.find("</main>").unwrap()];
    assert!(main.contains("data-key=\"1\""), "the row is inside <main>: {html}");
    assert!(!html.contains("<template"), "{html}");
    assert!(html.contains("Pick a name…"));
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let server = Server::start(&[]);
    let response = reqwest::get(server.url("/no/such/page")).await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_get_unique_gap_free_ids_and_every_subscriber_catches_up() {
    const SENDERS: usize = 8;
    const EACH: usize = 500;
    const SUBSCRIBERS: usize = 4;
    let server = Server::start(&[]);
    let browser = server.browser();
    browser.join("warm-up").await; // sets the group cookie shared by all below

    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let events = browser.events().await;
        let reader = browser.clone();
        // Each subscriber behaves like a tab: on NewMessage, fetch since its last id until it has that id.
        subscribers.push(tokio::spawn(async move {
            let mut events = events;
            let (mut last, mut seen) = (0u64, Vec::new());
            while last < (SENDERS * EACH) as u64 {
                let announced: u64 = events.next().await.id.parse().unwrap();
                while last < announced {
                    let page = reader.messages(&format!("?since={last}")).await;
                    assert!(!page.is_empty(), "announced {announced} but nothing after {last}");
                    for message in page {
                        let id = message["id"].as_u64().unwrap();
                        assert!(id > last);
                        last = id;
                        seen.push(id);
                    }
                }
            }
            seen
        }));
    }

    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let browser = browser.clone();
            tokio::spawn(async move {
                let ticket = browser.join(&format!("sender{s}")).await;
                let mut ids = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    ids.push(browser.send(&ticket, &format!("{s}:{i}")).await["id"].as_u64().unwrap());
                }
                ids
            })
        })
        .collect();
    let mut acknowledged = BTreeSet::new();
    for sender in senders {
        for id in sender.await.unwrap() {
            assert!(acknowledged.insert(id), "id {id} given twice");
        }
    }
    let expected: Vec<u64> = (1..=(SENDERS * EACH) as u64).collect();
    assert_eq!(acknowledged.iter().copied().collect::<Vec<_>>(), expected, "ids are gap-free");
    for subscriber in subscribers {
        assert_eq!(subscriber.await.unwrap(), expected, "every subscriber ends at the last id, in order");
    }
}

#[tokio::test]
async fn assets_go_out_precompressed_when_built_so_and_pages_compressed_on_the_fly() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir(site.path().join("pkg")).unwrap();
    let plain = "console.log('plain');".repeat(100);
    std::fs::write(site.path().join("pkg/app.js"), &plain).unwrap();
    std::fs::write(site.path().join("pkg/app.js.br"), "made at build time").unwrap();
    let server = Server::start(&["--site-root", site.path().to_str().unwrap()]);
    let http = reqwest::Client::new();
    let get = |path: &str, encoding: &str| http.get(server.url(path)).header("accept-encoding", encoding).send();

    let br = get("/pkg/app.js", "br").await.unwrap();
    assert_eq!(br.headers()["content-encoding"], "br");
    assert_eq!(br.text().await.unwrap(), "made at build time", "the .br file as built, not a new compression");
    let gzip = get("/pkg/app.js", "gzip").await.unwrap();
    assert_eq!(gzip.headers()["content-encoding"], "gzip", "no .gz built: compressed on the fly");
    assert!(gzip.bytes().await.unwrap().len() < plain.len());
    let identity = get("/pkg/app.js", "identity").await.unwrap();
    assert!(identity.headers().get("content-encoding").is_none());
    assert_eq!(identity.text().await.unwrap(), plain);

    let page = get("/", "br").await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-encoding"], "br");
}

#[tokio::test]
async fn a_send_repeated_with_its_key_is_stored_once_and_answered_the_same() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let mut events = browser.events().await;
    let ticket = browser.join("ada").await;
    let send = |text: &'static str, key: &'static str| {
        let (browser, ticket) = (browser.clone(), ticket.clone());
        async move { browser.post(SEND_PATH, &[("ticket", &ticket), ("text", text), ("key", key)]).await }
    };
    let first: Value = send("once", "k-1").await.ok();
    assert_eq!(events.next().await.id, first["id"].to_string());
    let again: Value = send("once", "k-1").await.ok();
    assert_eq!(again, first, "the repeat answers the message stored the first time");
    events.assert_quiet().await; // and announces nothing
    assert_eq!(texts(&browser.messages("").await), ["once"]);

    // Another browser (session group) may use the same key for its own message.
    let other = server.browser();
    let other_ticket = other.join("bob").await;
    let theirs: Value =
        other.post(SEND_PATH, &[("ticket", &other_ticket), ("text", "mine"), ("key", "k-1")]).await.ok();
    assert_ne!(theirs["id"], first["id"]);

    // A malformed key is refused and stores nothing.
    let long = "k".repeat(65);
    for key in [long.as_str(), "with space", "ключ"] {
        let refusal = browser.post(SEND_PATH, &[("ticket", &ticket), ("text", "bad key"), ("key", key)]).await;
        refusal.refused(422, "invalid_input");
    }
    assert_eq!(texts(&browser.messages("").await), ["once", "mine"]);
}

#[tokio::test]
async fn pages_name_the_epoch_of_the_log_which_a_new_log_changes() {
    let server = Server::start(&[]);
    let browser = server.browser();
    // Nothing is stored for a feed until its first message, its epoch included: none yet (the tab takes the first
    // one it sees as its log's, with no reload).
    assert_eq!(browser.epoch().await, "");
    let ticket = browser.join("ada").await;
    browser.send(&ticket, "hi").await;
    let epoch = browser.epoch().await;
    assert!(!epoch.is_empty(), "the first message makes the log, and its epoch");
    browser.send(&ticket, "again").await;
    assert_eq!(browser.epoch().await, epoch);
    // The durable log keeps its epoch across a restart.
    let server = server.restart();
    let browser = server.browser();
    assert_eq!(browser.epoch().await, epoch);
    // A memory log is new at each start: a new epoch.
    let memory = Server::start(&["--store", "memory"]);
    let (tab, ticket) = {
        let tab = memory.browser();
        let ticket = tab.join("ada").await;
        (tab, ticket)
    };
    tab.send(&ticket, "hi").await;
    let first = tab.epoch().await;
    let memory = memory.restart();
    let tab = memory.browser();
    assert_eq!(tab.epoch().await, "", "the log went with the process");
    let ticket = tab.join("ada").await;
    tab.send(&ticket, "hi").await;
    let second = tab.epoch().await;
    assert!(!second.is_empty() && second != first, "{first} then {second}");
}

/// The refetch a tab makes after a notice: `since=A&until=B&epoch=E` answers the same bytes forever once B is stored,
/// so it is cacheable by anyone; every other page must be revalidated (`ETag`, `304`). No cookie is set on it, a
/// one-message page goes uncompressed, a large one compressed (made once per page), and a bad range is a 400.
#[tokio::test]
async fn a_page_that_names_both_ends_is_immutable_and_every_page_has_an_etag() {
    const CHROMIUM: &str = "gzip, deflate, br, zstd";
    let server = Server::start(&["--page-size", "50"]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for i in 1..=3 {
        browser.send(&ticket, &format!("m{i}")).await;
    }
    let epoch = browser.epoch().await;
    let http = reqwest::Client::new(); // no cookie, as a proxy or a first visit
    let get = |query: String, headers: &[(&str, &str)]| {
        let mut request = http.get(server.url(&format!("{MESSAGES_PATH}{query}"))).header("accept-encoding", CHROMIUM);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).map(|value| value.to_str().unwrap().to_owned())
    };

    let settled = get(format!("?since=1&until=2&epoch={epoch}"), &[]).await.unwrap();
    assert_eq!(settled.status(), 200);
    assert_eq!(header(&settled, "cache-control").as_deref(), Some("public, max-age=31536000, immutable"));
    assert_eq!(header(&settled, "content-encoding"), None, "one message goes as it is");
    assert_eq!(header(&settled, "set-cookie"), None, "the same bytes for everyone: no cookie");
    assert_eq!(header(&settled, "broadcasting-epoch").as_deref(), Some(epoch.as_str()));
    assert_eq!(header(&settled, "x-content-type-options").as_deref(), Some("nosniff"));
    let etag = header(&settled, "etag").unwrap();
    assert_eq!(ids(&settled.json::<Vec<Value>>().await.unwrap()), [2]);
    let held = get(format!("?since=1&until=2&epoch={epoch}"), &[("if-none-match", &etag)]).await.unwrap();
    assert_eq!((held.status().as_u16(), header(&held, "etag")), (304, Some(etag.clone())));
    assert!(held.bytes().await.unwrap().is_empty());

    // Not settled: past the end of the log, without the epoch, or of another epoch; the answer is still right.
    for query in
        [format!("?since=1&until=9&epoch={epoch}"), "?since=1&until=3".into(), "?since=1&until=3&epoch=0".into()]
    {
        let page = get(query.clone(), &[]).await.unwrap();
        assert_eq!(header(&page, "cache-control").as_deref(), Some("no-cache"), "{query}");
        assert!(header(&page, "etag").is_some());
        assert_eq!(ids(&page.json::<Vec<Value>>().await.unwrap()), [2, 3], "{query}");
    }
    let latest = get(String::new(), &[]).await.unwrap();
    let latest_tag = header(&latest, "etag").unwrap();
    assert_eq!(get(String::new(), &[("if-none-match", &latest_tag)]).await.unwrap().status(), 304);
    browser.send(&ticket, "m4").await;
    let changed = get(String::new(), &[("if-none-match", &latest_tag)]).await.unwrap();
    assert_eq!(changed.status(), 200, "a new message: new bytes, new tag");
    assert_ne!(header(&changed, "etag").unwrap(), latest_tag);

    // A page of many messages is compressed for a client that takes it.
    for i in 5..=40 {
        browser.send(&ticket, &format!("a longer message, number {i}, to make the page worth compressing")).await;
    }
    let large = get(format!("?since=0&until=40&epoch={epoch}"), &[]).await.unwrap();
    assert_eq!(header(&large, "content-encoding").as_deref(), Some("br"));
    assert_eq!(header(&large, "vary").as_deref(), Some("accept-encoding"));
    let plain = http.get(server.url(&format!("{MESSAGES_PATH}?since=0&until=40&epoch={epoch}"))).send().await.unwrap();
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(ids(&plain.json::<Vec<Value>>().await.unwrap()), (1..=40).collect::<Vec<u64>>());

    for query in ["?since=5&until=4", "?until=4", "?before=9&until=10", "?since=1&until=x"] {
        browser.get(&format!("{MESSAGES_PATH}{query}")).await.refused(400, "bad_request");
    }
}

/// A page is immutable only while its URL can answer nothing else: it must hold its whole range (from `since`'s
/// successor, which retention has not deleted, up to `until`), and with retention's `max-age` set no cache may keep it
/// past the deletion of its oldest message. A full page short of `until`, or one whose start retention took, is
/// revalidated, so the same URL after retention is never an `immutable` answer of other messages.
#[tokio::test]
async fn immutable_pages_hold_their_whole_range_and_never_outlive_retention() {
    let server = Server::start(&["--page-size", "2", "--max-messages", "3", "--prune-every", "200ms"]);
    let browser = server.browser();
    let ticket = browser.join("ada").await;
    for i in 1..=3 {
        browser.send(&ticket, &format!("m{i}")).await;
    }
    let epoch = browser.epoch().await;
    let http = reqwest::Client::new();
    let get = |query: String| http.get(server.url(&format!("{MESSAGES_PATH}?{query}&epoch={epoch}"))).send();
    let cache = |response: &reqwest::Response| {
        response.headers().get("cache-control").map(|value| value.to_str().unwrap().to_owned()).unwrap_or_default()
    };
    let whole = get("since=0&until=2".into()).await.unwrap();
    assert_eq!(cache(&whole), "public, max-age=31536000, immutable");
    assert_eq!(ids(&whole.json::<Vec<Value>>().await.unwrap()), [1, 2]);
    // Full (page-size 2) and far short of `until`: its answer grows as messages come, so it must be revalidated.
    let full = get("since=0&until=1000".into()).await.unwrap();
    assert_eq!(cache(&full), "no-cache", "a full page that does not reach `until`");
    let before = full.json::<Vec<Value>>().await.unwrap();
    assert_eq!(ids(&before), [1, 2]);

    // Retention keeps the newest 3: sending 3 more deletes 1 to 3.
    for i in 4..=6 {
        browser.send(&ticket, &format!("m{i}")).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ids(&browser.messages("?since=0").await).first() != Some(&4) {
        assert!(std::time::Instant::now() < deadline, "retention did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for query in ["since=0&until=1000", "since=0&until=2", "since=2&until=5"] {
        let after = get(query.into()).await.unwrap();
        assert_eq!(cache(&after), "no-cache", "{query}: its start was deleted");
    }
    let kept = get("since=3&until=5".into()).await.unwrap();
    assert_eq!(cache(&kept), "public, max-age=31536000, immutable", "a whole range of what is kept");
    assert_eq!(ids(&kept.json::<Vec<Value>>().await.unwrap()), [4, 5]);

    // With retention by age, an immutable page lives in caches no longer than its oldest message in the log.
    let aging = Server::start(&["--max-age", "1h"]);
    let browser = aging.browser();
    let ticket = browser.join("ada").await;
    browser.send(&ticket, "m1").await;
    let epoch = browser.epoch().await;
    let page = http.get(aging.url(&format!("{MESSAGES_PATH}?since=0&until=1&epoch={epoch}"))).send().await.unwrap();
    let header = cache(&page);
    let max_age: u64 = header
        .strip_prefix("public, max-age=")
        .and_then(|rest| rest.strip_suffix(", immutable"))
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("{header}"));
    assert!((3_590..=3_600).contains(&max_age), "bounded by the hour max-age keeps it: {header}");
}

/// The join form cannot be sent before the page is interactive (its one button is disabled until the tab hydrates,
/// which also stops Enter), and it posts: a name never lands in the page's URL.
#[tokio::test]
async fn the_join_form_waits_for_the_page_and_posts() {
    let server = Server::start(&[]);
    let html = reqwest::get(server.url("/f/team")).await.unwrap().text().await.unwrap();
    assert!(html.contains(&format!("method=\"post\" action=\"{JOIN_PATH}\"")), "{html}");
    assert!(html.contains("type=\"hidden\" name=\"feed\" value=\"team\""), "{html}");
    assert!(html.contains("<button type=\"submit\" disabled>Join</button>"), "{html}");
}
