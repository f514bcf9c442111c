//! The codecs against real samples: what the server writes (serde_json of the shared types) reads back the same,
//! and what the tab writes is byte for byte what it wrote before the codecs moved here.

use super::*;

fn m(id: u64, user: &str, text: &str) -> Message {
    Message {
        id,
        user: user.into(),
        text: text.into(),
        at: "2026-12-07T16:45:05.123Z".into(),
        source: Source::Anonymous,
        removed: false,
    }
}

/// Strings that JSON must escape, and some it must not.
fn awkward() -> Vec<Message> {
    vec![
        m(1, "Ada", "plain"),
        m(2, "\"quoted\" \\ back", "tab\there\nnew line\r\u{8}\u{c}"),
        m(3, "ctl\u{1}\u{1f}\u{7f}", "é ünïcödé 🦀 \u{2028}\u{2029} </script>"),
        m(9_007_199_254_740_992, "", ""),
        // A message a moderator removed: relayed between tabs with its flag, or another tab would show it as a
        // message from nobody.
        Message { removed: true, ..m(4, "", "") },
    ]
}

#[test]
fn messages_are_written_as_serde_json_writes_them_and_read_back() {
    let page = awkward();
    let mut written = String::new();
    push_messages(&mut written, &page);
    assert_eq!(written, serde_json::to_string(&page).unwrap());
    assert_eq!(messages(&written), Some(page));
    let mut empty = String::new();
    push_messages(&mut empty, &[]);
    assert_eq!(empty, "[]");
    assert_eq!(messages(&empty), Some(vec![]));
}

/// A source is written as serde writes it (left out when anonymous, so an anonymous page is byte for byte what it
/// was), read back, and anything unreadable in it is anonymous: never a mark by guess.
#[test]
fn sources_are_written_as_serde_writes_them_and_only_a_readable_one_is_not_anonymous() {
    let mut page = awkward();
    page[0].source = Source::Verified("sub \"1\" ü".into());
    page[1].source = Source::Service("billing".into());
    let mut written = String::new();
    push_messages(&mut written, &page);
    assert_eq!(written, serde_json::to_string(&page).unwrap());
    assert!(written.contains(r#""source":{"verified":"sub \"1\" ü"}"#), "{written}");
    assert_eq!(messages(&written), Some(page));
    let anonymous = m(1, "Ada", "hi");
    assert!(!serde_json::to_string(&anonymous).unwrap().contains("source"), "an anonymous message has no field");
    for odd in [
        r#""source":"anonymous""#,
        r#""source":null"#,
        r#""source":{"verified":5}"#,
        r#""source":{"admin":"root"}"#,
        r#""source":"verified""#,
        r#""source":["verified","x"]"#,
    ] {
        let text = format!(r#"[{{"id":1,"user":"Ada","text":"hi","at":"t",{odd}}}]"#);
        let read = messages(&text).unwrap_or_else(|| panic!("{odd}: the message is read"));
        assert_eq!(read[0].source, Source::Anonymous, "{odd}");
    }
}

#[test]
fn a_page_as_the_api_answers_it_is_read_and_a_malformed_one_is_not() {
    let answer = r#"[ {"id": 7, "user": "Ada", "text": "hi", "at": "2026-12-07T16:45:05Z", "extra": true},
                      {"at": "2026-12-07T16:45:06Z", "text": "yo", "user": "Linus", "id": 8.0} ]"#;
    let page = messages(answer).unwrap();
    assert_eq!(page.iter().map(|m| (m.id, m.user.as_str())).collect::<Vec<_>>(), vec![(7, "Ada"), (8, "Linus")]);
    for bad in [
        r#"{"id":1,"user":"a","text":"b","at":"c"}"#, // an object, not an array
        r#"[{"id":-1,"user":"a","text":"b","at":"c"}]"#,
        r#"[{"id":1.5,"user":"a","text":"b","at":"c"}]"#,
        r#"[{"id":9007199254740994,"user":"a","text":"b","at":"c"}]"#, // past 2^53: not exact in the browser
        r#"[{"id":"1","user":"a","text":"b","at":"c"}]"#,
        r#"[{"id":1,"user":"a","text":"b"}]"#,
        r#"[{"id":1,"user":2,"text":"b","at":"c"}]"#,
        r#"[1]"#,
        "[",
        "",
    ] {
        assert_eq!(messages(bad), None, "{bad}");
    }
}

#[test]
fn each_answer_the_server_writes_is_read_back() {
    let joined = Joined {
        name: "Ada".into(),
        ticket: "v1.abc.def".into(),
        source: Source::Anonymous,
        expires: None,
        pass: None,
    };
    assert_eq!(serde_json::to_string(&joined).unwrap(), r#"{"name":"Ada","ticket":"v1.abc.def"}"#, "as before tokens");
    assert_eq!(object::<Joined>(&serde_json::to_string(&joined).unwrap()), Some(joined));
    let signed_in = Joined {
        name: "Ada".into(),
        ticket: "v2.abc".into(),
        source: Source::Verified("sub-1".into()),
        expires: Some(1_767_225_600),
        pass: Some("p1.team.1767225600.tag".into()),
    };
    assert_eq!(
        serde_json::to_string(&signed_in).unwrap(),
        r#"{"name":"Ada","ticket":"v2.abc","source":{"verified":"sub-1"},"expires":1767225600,"pass":"p1.team.1767225600.tag"}"#
    );
    assert_eq!(object::<Joined>(&serde_json::to_string(&signed_in).unwrap()), Some(signed_in));
    assert_eq!(object::<Joined>(r#"{"name":"Ada","ticket":"t","expires":"soon"}"#), None, "a garbled expiry");
    assert_eq!(object::<Joined>(r#"{"name":"Ada","ticket":"t","pass":5}"#), None, "a garbled pass");
    let limits = PageLimits { max_message_chars: 2000, join: JoinMode::Anonymous, refresh_url: None };
    assert_eq!(serde_json::to_string(&limits).unwrap(), r#"{"max_message_chars":2000}"#, "as before tokens");
    assert_eq!(object::<PageLimits>(&serde_json::to_string(&limits).unwrap()), Some(limits.clone()));
    let signing = PageLimits { join: JoinMode::Token, refresh_url: Some("/auth/token".into()), ..limits.clone() };
    assert_eq!(object::<PageLimits>(&serde_json::to_string(&signing).unwrap()), Some(signing.clone()));
    let later = object::<PageLimits>(r#"{"max_message_chars":5,"join":"passkey"}"#).unwrap();
    assert_eq!(later.join, JoinMode::Both, "a mode this tab does not know: offer what it can, the server decides");
    for page in [limits, signing] {
        let written = FirstLimits(Ok(page.clone())).to_string();
        assert_eq!(written.parse::<FirstLimits>(), Ok(FirstLimits(Ok(page))), "{written:?}");
    }
    let refused = FirstLimits(Err(ApiError::new(ErrorKind::Unavailable, "later")));
    assert_eq!(refused.to_string().parse::<FirstLimits>(), Ok(refused));
    assert_eq!("2000\nbogus\n".parse::<FirstLimits>(), Err(()));
    let here = Here { names: vec!["Ada".into(), "Grace".into()], verified: vec![] };
    assert_eq!(object::<Here>(&serde_json::to_string(&here).unwrap()), Some(here));
    assert_eq!(object::<Here>(r#"{"names":[]}"#), Some(Here { names: vec![], verified: vec![] }));
    assert_eq!(
        object::<Here>(r#"{"names":["Grace","Grace"],"verified":["Grace"]}"#),
        Some(Here { names: vec!["Grace".into(), "Grace".into()], verified: vec!["Grace".into()] })
    );
    assert_eq!(object::<Here>(r#"{"names":["Ada"],"verified":"Ada"}"#), None, "verified must be a list");
    let beat = Beat { every_ms: 10_000 };
    assert_eq!(object::<Beat>(&serde_json::to_string(&beat).unwrap()), Some(beat));
    let message = m(42, "Ada", "hello");
    assert_eq!(object::<Message>(&serde_json::to_string(&message).unwrap()), Some(message));

    assert_eq!(object::<Joined>(r#"{"name":"Ada"}"#), None);
    assert_eq!(object::<Joined>(r#"[{"name":"Ada","ticket":"t"}]"#), None);
    assert_eq!(object::<Here>(r#"{"names":["Ada",1]}"#), None);
    assert_eq!(object::<Beat>(r#"{"every_ms":-5}"#), None);
    assert_eq!(object::<PageLimits>("not json"), None);
}

#[test]
fn every_error_body_the_server_writes_is_read_back_and_an_unknown_kind_is_not() {
    for kind in ErrorKind::ALL {
        let error = ApiError::new(kind, "Slow down; try again in a second.");
        let body = format!(r#"{{"kind":"{}","message":"{}"}}"#, kind.code(), error.message);
        assert_eq!(object::<ApiError>(&body), Some(error));
    }
    assert_eq!(object::<ApiError>(r#"{"kind":"teapot","message":"no"}"#), None);
    assert_eq!(object::<ApiError>(r#"{"kind":"rate_limited"}"#), None);
}

#[test]
fn the_first_page_is_written_as_before_and_read_back() {
    let page = LogPage { epoch: "9f3a".into(), messages: awkward() };
    let written = FirstPage(Ok(page.clone())).to_string();
    // What the server wrote into the page before the codecs moved: the epoch, a line break, serde_json's array.
    assert_eq!(written, format!("9f3a\n{}", serde_json::to_string(&page.messages).unwrap()));
    assert_eq!(written.parse::<FirstPage>(), Ok(FirstPage(Ok(page))));

    let error = ApiError::new(ErrorKind::Unavailable, "The log cannot be read now.\nTry again.");
    let written = FirstPage(Err(error.clone())).to_string();
    assert_eq!(written, "!unavailable\nThe log cannot be read now.\nTry again.");
    assert_eq!(written.parse::<FirstPage>(), Ok(FirstPage(Err(error))));

    let empty = "\n[]".parse::<FirstPage>().unwrap();
    assert_eq!(empty, FirstPage(Ok(LogPage { epoch: String::new(), messages: vec![] })));
    for bad in ["no line break", "!teapot\nno", "!unavailable", "e\n[{]"] {
        assert_eq!(bad.parse::<FirstPage>(), Err(()), "{bad}");
    }
}

fn feed(name: &str) -> FeedName {
    FeedName::parse(name).unwrap()
}

#[test]
fn relayed_lines_name_their_feed_and_read_back() {
    let samples = [
        (Relay::Hello, "h".to_owned()),
        (Relay::Roll, "r".to_owned()),
        (Relay::CatchUp { feed: feed("ops"), fetcher: "ab12".into() }, "c\nops\nab12".to_owned()),
        (Relay::CatchUp { feed: feed("ops"), fetcher: String::new() }, "c\nops\n".to_owned()),
        (Relay::Showing { tab: "ab12".into(), feed: feed("team-news"), pass: None }, "t\nab12\nteam-news".to_owned()),
        (
            Relay::Showing { tab: "ab12".into(), feed: feed("team"), pass: Some("p1.team.9.x".into()) },
            "t\nab12\nteam\np1.team.9.x".to_owned(),
        ),
        (Relay::Gone { tab: "ab12".into() }, "x\nab12".to_owned()),
        (Relay::Presence { feed: feed("ops") }, "p\nops".to_owned()),
        (Relay::Group { group: "0123abcdef".into() }, "i\n0123abcdef".to_owned()),
        (Relay::Notice { feed: feed("main"), id: 42, fetcher: "ab12".into() }, "n\nmain\n42\nab12".to_owned()),
        (Relay::Notice { feed: feed("ops"), id: 7, fetcher: String::new() }, "n\nops\n7\n".to_owned()),
        (Relay::Stream { open: true, problem: None }, "s\n1".to_owned()),
        (Relay::Stream { open: false, problem: None }, "s\n0".to_owned()),
        (
            Relay::Stream { open: false, problem: Some("Too many feeds.\nClose a tab.".into()) },
            "s\n0\nToo many feeds.\nClose a tab.".to_owned(),
        ),
        (
            Relay::Page { feed: feed("team"), since: 3, epoch: "9f3a".into(), messages: awkward() },
            format!("g\nteam\n3\n9f3a\n{}", serde_json::to_string(&awkward()).unwrap()),
        ),
    ];
    for (relay, line) in samples {
        assert_eq!(relay.encode(), line);
        assert_eq!(Relay::decode(&line), Some(relay));
    }
    for bad in [
        "",
        "q",
        "n",
        "n\nmain\nlots\n",
        "n\nmain\n42", // no fetcher field
        "n\nMain\n42\n",
        "p",
        "p\nbad_name",
        "t\nab12",
        "t\nab12\n-x",
        "x",
        "c\nops",
        "c\nBad\nab12",
        "s",
        "s\n2",
        "h\nextra",
        "g\nteam\n3\n9f3a",
        "g\nteam\nx\n9f3a\n[]",
        "g\nteam\n3\n9f3a\n[1]",
        "g\n3\n9f3a\n[]", // a page of no feed (the line before feeds)
        "i",
        "i\n",
        "i\nab\ncd",
        "i\nab&group=cd",
    ] {
        assert_eq!(Relay::decode(bad), None, "{bad:?}");
    }
}

#[test]
fn form_bodies_are_what_url_search_params_writes() {
    let body = form(&[("ticket", "v1.a+b/c=="), ("text", "héllo wörld & 100% *-._~!"), ("key", "")]);
    assert_eq!(body, "ticket=v1.a%2Bb%2Fc%3D%3D&text=h%C3%A9llo+w%C3%B6rld+%26+100%25+*-._%7E%21&key=");
    let read: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(read[1], ("text".to_owned(), "héllo wörld & 100% *-._~!".to_owned()));
    assert_eq!(read.len(), 3);
    assert_eq!(form(&[]), "");
}

#[test]
fn page_urls_name_their_feed_and_ends_and_leave_out_an_epoch_that_is_not_hex() {
    let main = FeedName::main();
    assert_eq!(page_url(&main, None, None), "/api/messages");
    assert_eq!(page_url(&main, Some(5), Some(9)), "/api/messages?since=5");
    assert_eq!(page_url(&main, None, Some(9)), "/api/messages?before=9");
    assert_eq!(catch_up_url(&main, 5, None, "9f3a"), "/api/messages?since=5");
    assert_eq!(catch_up_url(&main, 5, Some(8), "9f3a"), "/api/messages?since=5&until=8&epoch=9f3a");
    assert_eq!(catch_up_url(&main, 5, Some(8), ""), "/api/messages?since=5&until=8");
    assert_eq!(catch_up_url(&main, 5, Some(8), "9f&x=1"), "/api/messages?since=5&until=8");
    let team = feed("team-news");
    assert_eq!(page_url(&team, None, Some(9)), "/api/feeds/team-news/messages?before=9");
    assert_eq!(catch_up_url(&team, 5, Some(8), "9f3a"), "/api/feeds/team-news/messages?since=5&until=8&epoch=9f3a");
    assert_eq!(presence_path(&main, false), wire::PRESENCE_PATH);
    assert_eq!(presence_path(&main, true), wire::PRESENCE_LEAVE_PATH);
    assert_eq!(presence_path(&team, false), "/api/feeds/team-news/presence");
    assert_eq!(presence_path(&team, true), "/api/feeds/team-news/presence/leave");
}

#[test]
fn the_stream_names_each_feed_once_sorted_and_main_alone_is_the_plain_stream() {
    assert_eq!(events_url([&FeedName::main()], None, []), "/events");
    assert_eq!(events_url([], None, []), "/events");
    let feeds = [feed("zeta"), feed("main"), feed("alpha"), feed("zeta")];
    assert_eq!(events_url(&feeds, None, []), "/events?feed=alpha&feed=main&feed=zeta");
    assert_eq!(events_url([&feed("team")], None, []), "/events?feed=team");
}

#[test]
fn a_stream_for_a_group_the_page_holds_names_it_and_its_feeds_even_main_alone() {
    let group = Some("0123abcd");
    assert_eq!(events_url([&feed("b"), &feed("a")], group, []), "/events?feed=a&feed=b&group=0123abcd");
    // Named, so its notices say their feed as the tab reads a named stream's (`stream_notice(true, …)`).
    assert_eq!(events_url([&FeedName::main()], group, []), "/events?feed=main&group=0123abcd");
    assert_eq!(events_url([], group, []), "/events?feed=main&group=0123abcd");
}

#[test]
fn a_private_feeds_pass_goes_in_the_streams_query_each_once() {
    let passes = ["p1.team.99.tag", "p1.ops.99.tag", "p1.team.99.tag"];
    assert_eq!(
        events_url([&feed("team"), &feed("ops")], None, passes),
        "/events?feed=ops&feed=team&pass=p1.ops.99.tag&pass=p1.team.99.tag"
    );
    assert_eq!(events_url([&FeedName::main()], None, ["p1.main.9.t"]), "/events?feed=main&pass=p1.main.9.t");
}

#[test]
fn stream_events_read_as_the_stream_was_opened() {
    // Named: `<feed> <id>` and the feed's name, as wire writes them.
    assert_eq!(stream_notice(true, &wire::feed_notice_data("team", 42)), Some((feed("team"), 42)));
    assert_eq!(stream_presence(true, &wire::feed_presence_data("team")), Some(feed("team")));
    assert_eq!(stream_notice(true, "42"), None);
    assert_eq!(stream_notice(true, "Team 42"), None);
    assert_eq!(stream_presence(true, "bad_name"), None);
    // Plain: `<id>` of main, and `presence` means main's (not a feed named "presence").
    assert_eq!(stream_notice(false, "42"), Some((FeedName::main(), 42)));
    assert_eq!(stream_notice(false, "team 42"), None);
    assert_eq!(stream_presence(false, "presence"), Some(FeedName::main()));
}

#[test]
fn stream_fields_are_read_leniently_about_space_only() {
    assert_eq!(notice_id(" 42\n"), Some(42));
    assert_eq!(notice_id("42a"), None);
    assert_eq!(notice_id("-1"), None);
    assert_eq!(retry_after("5"), Some(Duration::from_secs(5)));
    assert_eq!(retry_after(" 1 "), Some(Duration::from_secs(1)));
    assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
}
