//! The codecs against real samples: what the server writes (serde_json of the shared types) reads back the same,
//! and what the tab writes is byte for byte what it wrote before the codecs moved here.

use super::*;

fn m(id: u64, user: &str, text: &str) -> Message {
    Message { id, user: user.into(), text: text.into(), at: "2026-12-07T16:45:05.123Z".into() }
}

/// Strings that JSON must escape, and some it must not.
fn awkward() -> Vec<Message> {
    vec![
        m(1, "Ada", "plain"),
        m(2, "\"quoted\" \\ back", "tab\there\nnew line\r\u{8}\u{c}"),
        m(3, "ctl\u{1}\u{1f}\u{7f}", "é ünïcödé 🦀 \u{2028}\u{2029} </script>"),
        m(9_007_199_254_740_992, "", ""),
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
    let joined = Joined { name: "Ada".into(), ticket: "v1.abc.def".into() };
    assert_eq!(object::<Joined>(&serde_json::to_string(&joined).unwrap()), Some(joined));
    let limits = PageLimits { max_message_chars: 2000 };
    assert_eq!(object::<PageLimits>(&serde_json::to_string(&limits).unwrap()), Some(limits));
    let here = Here { names: vec!["Ada".into(), "Grace".into()] };
    assert_eq!(object::<Here>(&serde_json::to_string(&here).unwrap()), Some(here));
    assert_eq!(object::<Here>(r#"{"names":[]}"#), Some(Here { names: vec![] }));
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

#[test]
fn relayed_lines_keep_their_format_and_read_back() {
    let samples = [
        (Relay::Hello, "h".to_owned()),
        (Relay::Presence, "p".to_owned()),
        (Relay::Notice { id: 42 }, "n\n42".to_owned()),
        (Relay::Stream { open: true, problem: None, latest: Some(7) }, "s\n1\n7".to_owned()),
        (Relay::Stream { open: false, problem: None, latest: None }, "s\n0\n".to_owned()),
        (
            Relay::Stream { open: false, problem: Some("Too many streams.\nClose a tab.".into()), latest: None },
            "s\n0\n\nToo many streams.\nClose a tab.".to_owned(),
        ),
        (
            Relay::Page { since: 3, epoch: "9f3a".into(), messages: awkward() },
            format!("g\n3\n9f3a\n{}", serde_json::to_string(&awkward()).unwrap()),
        ),
    ];
    for (relay, line) in samples {
        assert_eq!(relay.encode(), line);
        assert_eq!(Relay::decode(&line), Some(relay));
    }
    for bad in ["", "x", "n", "n\nlots", "s", "g\n3\n9f3a", "g\nx\n9f3a\n[]", "g\n3\n9f3a\n[1]"] {
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
fn page_urls_name_their_ends_and_leave_out_an_epoch_that_is_not_hex() {
    assert_eq!(page_url(None, None), "/api/messages");
    assert_eq!(page_url(Some(5), Some(9)), "/api/messages?since=5");
    assert_eq!(page_url(None, Some(9)), "/api/messages?before=9");
    assert_eq!(catch_up_url(5, None, "9f3a"), "/api/messages?since=5");
    assert_eq!(catch_up_url(5, Some(8), "9f3a"), "/api/messages?since=5&until=8&epoch=9f3a");
    assert_eq!(catch_up_url(5, Some(8), ""), "/api/messages?since=5&until=8");
    assert_eq!(catch_up_url(5, Some(8), "9f&x=1"), "/api/messages?since=5&until=8");
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
