//! The embed (`/f/{feed}/embed`), spoken to the real server binary: only the origins of `embed-origins` may frame it
//! and every other answer still refuses to be framed; a malformed origin stops the start; and a frame that sends no
//! cookie (an embed on another site) keeps the session group it was handed, so its join, stream and send agree.

mod common;

use broadcasting::shared::wire::{GROUP_HEADER, JOIN_PATH, SEND_PATH};
use common::Server;

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// A client that follows no redirect (a 308 is an answer of its own here).
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The embed's policy ends with its framers; every other answer's says nobody, and `X-Frame-Options: DENY` with it.
#[tokio::test]
async fn only_the_embed_may_be_framed_and_only_by_the_embed_origins() {
    let server = Server::start(&["--embed-origins", "https://Blog.example:443/, http://localhost:8080"]);
    let http = client();
    for path in ["/f/team/embed", "/embed"] {
        let page = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let policy = header(&page, "content-security-policy").unwrap();
        assert!(policy.ends_with("; frame-ancestors https://blog.example http://localhost:8080"), "{path}: {policy}");
        assert!(policy.contains("script-src 'self' 'nonce-") && !policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(header(&page, "x-frame-options"), None, "{path}: the header cannot name origins");
        assert_eq!(header(&page, "cache-control").as_deref(), Some("no-store"), "{path}");
        assert_eq!(header(&page, "x-content-type-options").as_deref(), Some("nosniff"));
        let html = page.text().await.unwrap();
        assert!(html.contains("class=\"page embed\""), "{path}: the embed's layout");
        assert!(!html.contains("class=\"intro\""), "{path}: no page around the feed");
    }
    // The full pages (a feed may be named `embed`), the API, files, a redirect and a 404 on an embed's path.
    let others = ["/", "/f/team", "/f/embed", "/api/messages", "/favicon.svg", "/f/Team/embed", "/f/bad_name/embed"];
    for path in others {
        let answer = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(header(&answer, "x-frame-options").as_deref(), Some("DENY"), "{path}");
        let policy = header(&answer, "content-security-policy").unwrap();
        assert!(policy.ends_with("frame-ancestors 'none'"), "{path}: {policy}");
    }

    // Without `embed-origins` nobody may frame the embed either.
    let closed = Server::start(&[]);
    let page = http.get(closed.url("/f/team/embed")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-security-policy").unwrap().ends_with("frame-ancestors 'none'"));
    assert_eq!(header(&page, "x-frame-options").as_deref(), Some("DENY"));
}

#[test]
fn a_malformed_embed_origin_stops_the_start_naming_it() {
    for (origin, why) in [
        ("https://blog.example/comments", "has a path"),
        ("blog.example", "has no scheme"),
        ("https://blog.example;script-src", "has a character no host name has"),
    ] {
        let list = format!("https://ok.example, {origin}");
        let (status, stderr) = Server::fails_to_start(&["--embed-origins", &list], &[], |_| {});
        assert!(!status.success(), "{origin}");
        assert!(stderr.contains("--embed-origins") && stderr.contains(&format!("{origin:?} {why}")), "{stderr}");
    }
}

/// The group handed in an embed's page, if any.
fn handed_group(html: &str) -> Option<String> {
    let rest = html.split("<meta name=\"broadcasting-group\" content=\"").nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

/// A frame on another site sends no cookie: each of its requests would be a new session group, and the ticket of
/// one fits none of the next. The group it was handed, named in a header (or the stream's query), holds them
/// together; a page that has its cookie is handed nothing, and neither is a full page.
#[tokio::test]
async fn without_its_cookie_the_embed_keeps_the_group_it_was_handed() {
    let server = Server::start(&[]);
    // No cookie store: nothing it is sent is sent back.
    let frame = client();
    let page = frame.get(server.url("/f/team/embed")).send().await.unwrap();
    let cookie = header(&page, "set-cookie").expect("the cookie is still offered");
    let group = handed_group(&page.text().await.unwrap()).expect("the embed is handed its group");
    assert_eq!(group.len(), 32);
    assert!(cookie.starts_with(&format!("broadcasting_group={group};")), "the cookie names the same group: {cookie}");

    let post = |path: &str, form: &[(&str, &str)], group: Option<&str>| {
        let mut request = frame.post(server.url(path)).form(form);
        if let Some(group) = group {
            request = request.header(GROUP_HEADER, group);
        }
        async move {
            let answer = request.send().await.unwrap();
            (answer.status().as_u16(), answer.json::<serde_json::Value>().await.unwrap())
        }
    };
    // Naming no group, the join and the send are two groups.
    let (_, joined) = post(JOIN_PATH, &[("feed", "team"), ("username", "ada")], None).await;
    let ticket = joined["ticket"].as_str().unwrap();
    let (status, refused) = post(SEND_PATH, &[("feed", "team"), ("ticket", ticket), ("text", "lost")], None).await;
    assert_eq!((status, refused["kind"].as_str()), (403, Some("bad_ticket")), "{refused}");

    // Naming the handed one, the join, the stream and the send are one group.
    let (_, joined) = post(JOIN_PATH, &[("feed", "team"), ("username", "ada")], Some(&group)).await;
    let ticket = joined["ticket"].as_str().unwrap().to_owned();
    let browser = common::Browser { http: client(), base: server.base.clone() };
    let mut events = browser.events_at(&format!("/events?feed=team&group={group}"), &[]).await;
    let form = [("feed", "team"), ("ticket", ticket.as_str()), ("text", "hello from the frame")];
    let (status, sent) = post(SEND_PATH, &form, Some(&group)).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(events.next().await.data, format!("team {}", sent["id"]));
    // A stream of a group of its own hears nothing of it (notices go to the sender's group).
    let mut other = browser.events_at("/events?feed=team", &[]).await;
    let form = [("feed", "team"), ("ticket", ticket.as_str()), ("text", "again")];
    assert_eq!(post(SEND_PATH, &form, Some(&group)).await.0, 200);
    assert!(events.next().await.data.starts_with("team "));
    other.assert_quiet().await;

    // The name wins over a cookie (the ticket was signed for it); a name the server could not have made is none.
    let with_cookie = frame
        .post(server.url(SEND_PATH))
        .header("cookie", "broadcasting_group=0123456789abcdef0123456789abcdef")
        .header(GROUP_HEADER, &group)
        .form(&[("feed", "team"), ("ticket", ticket.as_str()), ("text", "still mine")])
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    let forged = [("feed", "team"), ("ticket", ticket.as_str()), ("text", "not a group")];
    assert_eq!(post(SEND_PATH, &forged, Some("not-a-group")).await.0, 403);

    // A page with its cookie, and a full page, are handed nothing.
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let kept = frame.get(server.url("/f/team/embed")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(handed_group(&kept.text().await.unwrap()), None);
    let full = frame.get(server.url("/f/team")).send().await.unwrap();
    assert_eq!(handed_group(&full.text().await.unwrap()), None);
}
