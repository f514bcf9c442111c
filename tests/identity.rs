//! Sign-in tokens over HTTP, against the real binary: a tab joins with a token of the deployer's backend (the name
//! is the token's, the ticket carries its subject), what it sends is marked verified in every page, a typed name
//! never is, every refused token is its 401/403 and stores nothing, and no token reaches the server's log.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broadcasting::shared::wire::{self, JOIN_PATH, LIMITS_PATH, SEND_PATH};
use common::{texts, Browser, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "the deployer's secret, thirty-two bytes or more";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A token as the deployer's backend signs it: HS256 with `SECRET`.
fn token(claims: Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()).unwrap()).unwrap()
}

fn ada(extra: Value) -> Value {
    let mut claims = json!({"sub": "user-42", "name": "Ada", "exp": now() + 600});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    claims
}

/// A server that takes names and tokens (`join = both`), logging everything.
fn both(extra: &[&str]) -> Server {
    let flags = [&["--join", "both", "--token-secret", SECRET, "--log-level", "debug"][..], extra].concat();
    Server::start(&flags)
}

async fn join_with(browser: &Browser, token: &str, feed: &str) -> common::Answer {
    browser.post(JOIN_PATH, &[("token", token), ("feed", feed), ("username", "Mallory")]).await
}

async fn sent_in(browser: &Browser, feed: &str) -> Vec<Value> {
    browser.get(&wire::feed_api(feed, wire::FEED_MESSAGES)).await.ok()
}

#[tokio::test]
async fn a_token_join_posts_as_the_tokens_name_marked_verified_and_a_typed_name_never_is() {
    let server = both(&[]);
    let signed_in = server.browser();
    let joined: Value = join_with(&signed_in, &token(ada(json!({}))), "").await.ok();
    assert_eq!(joined["name"], "Ada", "the token's name, not the form's");
    assert_eq!(joined["source"], json!({"verified": "user-42"}));
    let expires = joined["expires"].as_u64().expect("a token's ticket says when it expires");
    assert!(expires <= now() + 600 && expires > now() + 500, "{expires}");
    let ticket = joined["ticket"].as_str().unwrap();
    assert!(ticket.starts_with("v2."));

    let sent = signed_in.send(ticket, "hello from the app").await;
    assert_eq!((sent["user"].as_str(), &sent["source"]), (Some("Ada"), &json!({"verified": "user-42"})));

    let anonymous = server.browser();
    for name in ["✓ Ada", "Ada (verified)"] {
        let ticket = anonymous.join(name).await;
        let sent = anonymous.send(&ticket, "me too").await;
        assert_eq!(sent.get("source"), None, "{name}: no source field at all");
    }
    let page = anonymous.messages("").await;
    assert_eq!(page[0]["source"], json!({"verified": "user-42"}));
    assert_eq!((page[1].get("source"), page[2].get("source")), (None, None));
    assert_eq!(page[1]["user"], "✓ Ada");

    // Who is here says which listed name the sign-in vouches for (each browser is its own group here): the
    // signed-in Ada, and not an "Ada" typed in another browser.
    let typed_ada = anonymous.join("Ada").await;
    for (browser, ticket, tab) in [(&signed_in, ticket, "signed-in"), (&anonymous, typed_ada.as_str(), "typed")] {
        browser.post(wire::PRESENCE_PATH, &[("ticket", ticket), ("tab", tab)]).await.ok::<Value>();
    }
    let here: Value = signed_in.get(wire::PRESENCE_PATH).await.ok();
    assert_eq!((&here["names"], &here["verified"]), (&json!(["Ada"]), &json!(["Ada"])), "{here}");
    let here: Value = anonymous.get(wire::PRESENCE_PATH).await.ok();
    assert_eq!((&here["names"], here.get("verified")), (&json!(["Ada"]), None), "typed, not vouched for: {here}");

    // The page marks the verified name with its badge, and only that one.
    let html = anonymous.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert_eq!(html.matches("class=\"mark verified\"").count(), 1, "{html}");
}

/// Every refused token is a 401 (a valid one that may not post here a 403), says why, and stores nothing.
#[tokio::test]
async fn each_refused_token_is_its_status_and_json_error_and_stores_nothing() {
    let server = both(&["--token-leeway", "1s"]);
    let browser = server.browser();
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &ada(json!({})),
        &EncodingKey::from_secret(b"not the deployer's secret at all, no").unwrap(),
    )
    .unwrap();
    let unsigned = {
        use base64::Engine;
        let part = |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
        format!("{}.{}.", part(json!({"alg": "none", "typ": "JWT"})), part(ada(json!({}))))
    };
    let garbage = "x".repeat(20 * 1024);
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad signature", other_key, "signature"),
        ("alg none", unsigned, "none"),
        ("expired", token(ada(json!({"exp": now() - 60}))), "expired"),
        ("not yet valid", token(ada(json!({"nbf": now() + 600}))), "not valid yet"),
        ("name of the wrong type", token(ada(json!({"name": 5}))), "`name`"),
        ("exp of the wrong type", token(ada(json!({"exp": "x"}))), "`exp`"),
        ("feeds of the wrong type", token(ada(json!({"feeds": "x"}))), "`feeds`"),
        ("no subject", token(json!({"name": "Ada", "exp": now() + 600})), "`sub`"),
        ("a hostile name", token(ada(json!({"name": "Ad\u{202E}a"}))), "Names cannot contain invisible"),
        ("an audience not set here", token(ada(json!({"aud": "elsewhere"}))), "audience"),
        ("garbage", "not a token".into(), "not a token"),
        ("20 KiB of garbage", garbage.clone(), "longer than 8192 bytes"),
    ];
    for (case, token, says) in &cases {
        let message = join_with(&browser, token, "").await.refused(401, "unauthorized");
        assert!(message.contains(says), "{case}: {message}");
    }
    // Valid, but its write grant does not cover the feed: 403.
    let team_only = token(ada(json!({"feeds": {"write": ["team-*"]}})));
    let message = join_with(&browser, &team_only, "main").await.refused(403, "forbidden");
    assert!(message.contains("main"), "{message}");
    // Its ticket, joined where the grant covers, posts there only.
    let joined: Value = join_with(&browser, &team_only, "team-news").await.ok();
    let ticket = joined["ticket"].as_str().unwrap();
    let elsewhere = [("ticket", ticket), ("text", "x"), ("feed", "team-ops")];
    let message = browser.post(SEND_PATH, &elsewhere).await.refused(403, "forbidden");
    assert!(message.contains("team-news only"), "{message}");
    assert!(browser.messages("").await.is_empty() && sent_in(&browser, "team-ops").await.is_empty(), "nothing stored");
    let here = [("ticket", ticket), ("text", "in the feed it was joined for"), ("feed", "team-news")];
    let sent: Value = browser.post(SEND_PATH, &here).await.ok();
    assert_eq!(sent["source"], json!({"verified": "user-42"}));

    // A token in the URL is refused whatever the body holds: URLs are written to logs (not this server's: it
    // logs paths without their query).
    let in_url = token(ada(json!({"sub": "in-the-url"})));
    let url = format!("{JOIN_PATH}?token={in_url}");
    let message = browser.post(&url, &[("username", "ada")]).await.refused(400, "bad_request");
    assert!(message.contains("never in the URL"), "{message}");

    // Nothing of any token (nor the secret) reached the log, at debug level.
    let log = server.log();
    for (_, token, _) in cases.iter().filter(|(_, token, _)| token.contains('.')) {
        let signature = token.rsplit('.').next().unwrap();
        let claims = token.split('.').nth(1).unwrap();
        assert!(
            !log.contains(claims) && (signature.is_empty() || !log.contains(signature)),
            "a token in the log:\n{log}"
        );
    }
    for token in [&team_only, &in_url] {
        assert!(!log.contains(&token[token.len() - 20..]), "a token in the log:\n{log}");
    }
    assert!(log.contains("/api/join"), "the log does show the requests: {log}");
    assert!(!log.contains(SECRET), "{log}");
    assert!(!log.contains("ERROR"), "a client's fault is no error:\n{log}");
}

/// A ticket never outlives its token: once the token's `exp` passes, sends are refused (403 `bad_ticket`), and
/// nothing is stored.
#[tokio::test]
async fn a_ticket_expires_with_its_token() {
    let server = both(&["--token-leeway", "1s"]);
    let browser = server.browser();
    let joined: Value = join_with(&browser, &token(ada(json!({"exp": now() + 2}))), "").await.ok();
    let ticket = joined["ticket"].as_str().unwrap();
    browser.send(ticket, "in time").await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let message = browser.post(SEND_PATH, &[("ticket", ticket), ("text", "too late")]).await.refused(403, "bad_ticket");
    assert!(message.contains("expired"), "{message}");
    assert_eq!(texts(&browser.messages("").await), ["in time"]);
}

#[tokio::test]
async fn join_token_refuses_typed_names_and_the_page_asks_for_the_sites_sign_in() {
    let server = Server::start(&[
        "--join",
        "token",
        "--token-secret",
        SECRET,
        "--token-refresh-url",
        "https://app.example.com/auth/token",
    ]);
    let browser = server.browser();
    let message = browser.post(JOIN_PATH, &[("username", "Ada")]).await.refused(401, "unauthorized");
    assert!(message.contains("sign in"), "{message}");
    let joined: Value = join_with(&browser, &token(ada(json!({}))), "").await.ok();
    assert_eq!(joined["name"], "Ada");
    let limits: Value = browser.get(LIMITS_PATH).await.ok();
    assert_eq!(
        (&limits["join"], &limits["refresh_url"]),
        (&json!("token"), &json!("https://app.example.com/auth/token"))
    );

    let response = browser.http.get(server.url("/f/team")).send().await.unwrap();
    let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        policy.contains("connect-src 'self' https://app.example.com;"),
        "the page may ask the refresh URL: {policy}"
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("This feed needs the site") && !html.contains("name=\"username\""), "{html}");
}

#[tokio::test]
async fn the_default_takes_no_tokens_and_says_so() {
    let server = Server::start(&[]);
    let browser = server.browser();
    let message = join_with(&browser, &token(ada(json!({}))), "").await.refused(400, "bad_request");
    assert!(message.contains("no sign-in tokens"), "{message}");
    let limits: Value = browser.get(LIMITS_PATH).await.ok();
    assert_eq!(limits, json!({"max_message_chars": 2000}), "the limits read as before tokens");
    let joined: Value = browser.post(JOIN_PATH, &[("username", "Ada")]).await.ok();
    assert_eq!(joined.as_object().unwrap().keys().collect::<Vec<_>>(), ["name", "ticket"], "a join reads as before");
    // A server that takes tokens needs a key to verify them with: it does not start without one.
    let (status, stderr) = Server::fails_to_start(&["--join", "token"], &[], |_| {});
    assert!(!status.success() && stderr.contains("`join` takes tokens"), "{stderr}");
}

/// A server with private feeds (settings file): `team-*` is read and written by signed-in members only, `board` is
/// read by anyone and written by members, everything else is open.
fn with_private_feeds() -> Server {
    let settings = "[broadcasting.named-feeds.board]\nwrite = \"token\"\n\
                    [broadcasting.feed-access.\"team-*\"]\nread = \"token\"\nwrite = \"token\"\n";
    Server::try_start_prepared(&["--join", "both", "--token-secret", SECRET], &[], |data| {
        std::fs::write(data.parent().unwrap().join("settings.toml"), settings).unwrap();
    })
    .unwrap_or_else(|(status, stderr)| panic!("the server did not start ({status}):\n{stderr}"))
}

/// A GET with `Authorization: Bearer pass` (none if empty): status, `Cache-Control`, body.
async fn read_with(browser: &Browser, path: &str, pass: &str) -> (u16, String, String) {
    let mut request = browser.http.get(format!("{}{path}", browser.base));
    if !pass.is_empty() {
        request = request.bearer_auth(pass);
    }
    let response = request.send().await.unwrap();
    let cache = response.headers().get("cache-control").map_or(String::new(), |v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), cache, response.text().await.unwrap())
}

/// A private feed: a member's join hands out a read pass; without it (or with one for another feed) its pages, who
/// is here and its notices are a 403 that says nothing of what it holds, a typed name may not join it, a ticket of
/// another feed may not post in it, and its pages are never marked for a shared cache.
#[tokio::test]
async fn a_private_feed_is_read_with_the_members_pass_only_and_leaks_nothing() {
    let server = with_private_feeds();
    let member = server.browser();
    let grants = json!({"feeds": {"read": ["team-*"], "write": ["team-*", "board"]}});
    let joined: Value = join_with(&member, &token(ada(grants)), "team-ops").await.ok();
    let pass = joined["pass"].as_str().expect("a private feed's join hands out its read pass").to_owned();
    assert!(pass.starts_with("p1.team-ops."), "{pass}");
    let ticket = joined["ticket"].as_str().unwrap().to_owned();
    let secret = "the launch is on friday";
    let sent: Value = member.post(SEND_PATH, &[("ticket", &ticket), ("text", secret), ("feed", "team-ops")]).await.ok();
    assert_eq!(sent["id"], 1);

    let pages = wire::feed_api("team-ops", wire::FEED_MESSAGES);
    let here = wire::feed_api("team-ops", wire::FEED_PRESENCE);
    let (status, cache, body) = read_with(&member, &format!("{pages}?since=0&until=1"), &pass).await;
    assert_eq!((status, cache.as_str()), (200, "private, no-store"));
    assert!(body.contains(secret));
    let (status, cache, _) = read_with(&member, &here, &pass).await;
    assert_eq!((status, cache.as_str()), (200, "no-store"));
    member.events_at(&format!("/events?feed=team-ops&pass={pass}"), &[]).await;

    let stranger = server.browser();
    let other_pass = {
        let other: Value = join_with(&stranger, &token(ada(json!({}))), "team-x").await.ok();
        other["pass"].as_str().unwrap().to_owned()
    };
    for (path, with) in [
        (format!("{pages}?since=0&until=1"), ""),
        (pages.clone(), ""),
        (format!("{pages}?since=0&until=1"), other_pass.as_str()),
        (format!("{pages}?since=0&until=1"), "p1.team-ops.99999999999.forged"),
        (here.clone(), ""),
    ] {
        let (status, _, body) = read_with(&stranger, &path, with).await;
        assert_eq!(status, 403, "{path} with {with:?}: {body}");
        assert!(!body.contains(secret) && body.contains("signed-in members"), "{body}");
    }
    for path in [
        "/events?feed=team-ops".to_owned(),
        "/events?feed=main&feed=team-ops".to_owned(),
        format!("/events?feed=team-ops&pass={other_pass}"),
    ] {
        let response = stranger.http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let page = stranger.http.get(server.url("/f/team-ops")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the page itself is no refusal: its tab may be about to join");
    let html = page.text().await.unwrap();
    assert!(!html.contains(secret) && html.contains("signed-in members"), "the page renders none of it");
    assert!(html.contains(&format!("name=\"{}\"", wire::PRIVATE_META)), "and marks itself private");
    let main_page = stranger.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!main_page.contains(secret) && !main_page.contains(wire::PRIVATE_META));

    // A typed name may not join it, an open feed's ticket (even a signed-in one) may not post in it, and a token
    // that does not grant it is refused: nothing is stored.
    stranger.post(JOIN_PATH, &[("username", "Mallory"), ("feed", "team-ops")]).await.refused(403, "forbidden");
    let typed = stranger.join("Mallory").await;
    let signed_elsewhere: Value = join_with(&stranger, &token(ada(json!({}))), "").await.ok();
    assert_eq!(signed_elsewhere.get("pass"), None, "an open feed hands out no pass");
    for ticket in [typed.as_str(), signed_elsewhere["ticket"].as_str().unwrap()] {
        let answer = stranger.post(SEND_PATH, &[("ticket", ticket), ("text", "hi"), ("feed", "team-ops")]).await;
        answer.refused(403, "forbidden");
    }
    let no_grant = token(ada(json!({"feeds": {"read": ["other"]}})));
    join_with(&stranger, &no_grant, "team-ops").await.refused(403, "forbidden");
    let (_, _, body) = read_with(&member, &format!("{pages}?since=0"), &pass).await;
    assert_eq!(texts(&serde_json::from_str::<Vec<Value>>(&body).unwrap()), [secret]);

    // `board`: anyone reads it, only members post in it.
    let (status, cache, _) = read_with(&stranger, &wire::feed_api("board", wire::FEED_MESSAGES), "").await;
    assert_eq!((status, cache.as_str()), (200, "no-cache"));
    let answer = stranger.post(SEND_PATH, &[("ticket", &typed), ("text", "hi"), ("feed", "board")]).await;
    answer.refused(403, "forbidden");
    let member_anywhere: Value = join_with(&member, &token(ada(json!({}))), "board").await.ok();
    let ticket = member_anywhere["ticket"].as_str().unwrap();
    member.post(SEND_PATH, &[("ticket", ticket), ("text", "posted"), ("feed", "board")]).await.ok::<Value>();
    assert_eq!(texts(&sent_in(&stranger, "board").await), ["posted"]);

    // Metrics name no feed, and no refusal above was logged as an error.
    let metrics = stranger.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("team-ops"), "{metrics}");
    assert!(!server.log().contains("ERROR"), "{}", server.log());
}
