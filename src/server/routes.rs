//! The whole router: each handler module exposes its routes (`messages`, `heartbeat`, `events`, `ops`, `publish`; the page and the server
//! functions come from Leptos; the page is `/` and each feed's `/f/{name}`, whose name `feed_pages` checks before it
//! is rendered, and each has its embed, `/embed` and `/f/{name}/embed`: the same page in another layout), and `app`
//! assembles them under the layers every request passes, except the hot read of the log (`messages`), which answers
//! prepared bytes with its own headers. Tests and `main` serve the same thing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_SECURITY_POLICY, LOCATION};
use axum::http::{Request, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use hyper::body::Incoming;
use leptos_axum::{AxumRouteListing, LeptosRoutes};
use leptos_router::{Method, SsrMode};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::client::{shell, HandedGroup};
use crate::server::net::Shortcut;
use crate::server::security::Framers;
use crate::server::state::{AppState, FeedGate};
use crate::server::{
    admin, cookie, events, group, heartbeat, messages, observe, ops, peer, publish, refusal, security,
};
use crate::shared::domain::{FeedLookup, FeedName, FEED_NAME_RULE};
use crate::shared::wire;

/// The router; `framers` may frame the embed.
pub fn app(state: AppState, scope: group::Scope, framers: Framers) -> Router {
    // One page, for `main` at `/` and for each feed at `/f/{name}`, and each one's embed. `Async` renders it whole
    // once the log is read, so the first HTML holds the log as plain markup (streamed out-of-order it could arrive as
    // a template that needs JavaScript to show).
    let feed_page = format!("{}{{name}}", wire::FEED_PAGE_PREFIX);
    let embeds = [wire::EMBED_SUFFIX.to_owned(), format!("{feed_page}{}", wire::EMBED_SUFFIX)];
    let routes = ["/".to_owned(), feed_page]
        .into_iter()
        .chain(embeds)
        .map(|path| AxumRouteListing::new(path, SsrMode::Async, [Method::Get], vec![]))
        .collect();
    // A release build is precompressed (`cargo leptos build --release --precompress`): serve the `.br`/`.gz` files
    // next to each asset when the browser takes them; otherwise the compression layer below compresses on the fly.
    let static_files = ServeDir::new(state.leptos.site_root.as_ref())
        .precompressed_br()
        .precompressed_gzip()
        .not_found_service(get(|| async { (StatusCode::NOT_FOUND, "Not found") }));
    // The event stream stays outside the per-request layers below: it is never compressed (SSE must not be
    // buffered), and a long-lived stream should carry as little per-connection state as it can.
    let events = events::routes().route_layer(middleware::from_fn_with_state(scope, cookie::assign));
    let router = Router::new()
        .leptos_routes(&state, routes, {
            let (options, framers) = (state.leptos.clone(), framers.clone());
            let refresh_origin = state.sign_in.refresh_origin();
            // The page's Content-Security-Policy is set while the server renders it (it needs that response's nonce).
            move || {
                security::protect_page(&framers, refresh_origin.as_deref());
                hand_minted_group();
                shell(options.clone())
            }
        })
        .merge(heartbeat::routes())
        .merge(publish::routes())
        .merge(admin::routes())
        .fallback_service(static_files)
        .layer(middleware::from_fn_with_state(state.limits.feeds.clone(), feed_pages))
        .layer(middleware::from_fn_with_state(scope, cookie::assign))
        .layer(middleware::from_fn_with_state(state.limits.max_request_bytes, refusal::checked_forms))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.limits.request_timeout))
        .layer(RequestBodyLimitLayer::new(state.limits.max_request_bytes))
        .layer(middleware::from_fn_with_state(state.limits.max_request_bytes, refusal::as_api_errors))
        .layer(CompressionLayer::new())
        // A 503's cause is logged where it arises, once per outage (`observe`), not once per request here.
        .layer(TraceLayer::new_for_http().make_span_with(observe::request_span).on_failure(observe::response_failed))
        .merge(events)
        .merge(ops::routes())
        .layer(middleware::from_fn_with_state(state.peers.clone(), peer::admit))
        .with_state(state.clone());
    // The refetch every tab makes after every notice passes none of the layers above: it needs no session group,
    // peer budget, body limit, compression or span, and sets its own headers (see `messages`).
    security::headers(router, framers).merge(messages::routes().with_state(state))
}

/// The group `cookie` made for a page requested without one, for the page to hold (`client::HandedGroup`; the shell
/// writes it into the embed only, the one page a browser may show without its cookie).
fn hand_minted_group() {
    use leptos::prelude::{provide_context, use_context};
    let parts = use_context::<axum::http::request::Parts>();
    if let Some(cookie::Minted(group)) = parts.as_ref().and_then(|parts| parts.extensions.get::<cookie::Minted>()) {
        provide_context(HandedGroup(group.as_str().to_owned()));
    }
}

/// Paths under `/f/` before the page renders (a feed's page or its embed): a name with capitals is redirected (308,
/// the query kept) to its lowercase form, so a feed has one URL; anything else that is no feed name gets a 404 page
/// that says what a feed name may be (the name itself is not echoed: it is whatever the client wrote). Checked here
/// rather than while rendering, so a bad name costs no render and reads no log.
async fn feed_pages(State(gate): State<Arc<FeedGate>>, request: Request<Body>, next: Next) -> Response {
    let Some((Some(raw), embed)) = wire::page_of(request.uri().path()) else {
        return next.run(request).await;
    };
    match FeedName::lookup(raw) {
        FeedLookup::Name(feed) if gate.may_exist(&feed) => next.run(request).await,
        // `feeds = listed`, and this name is not listed: no such feed here.
        FeedLookup::Name(_) => no_such_feed_page(),
        FeedLookup::Lowercase(name) => {
            let suffix = if embed { wire::EMBED_SUFFIX } else { "" };
            let mut to = format!("{}{name}{suffix}", wire::FEED_PAGE_PREFIX);
            if let Some(query) = request.uri().query() {
                to.push('?');
                to.push_str(query);
            }
            (StatusCode::PERMANENT_REDIRECT, [(LOCATION, to)]).into_response()
        }
        FeedLookup::Invalid => no_such_feed_page(),
    }
}

/// The 404 page of a path under `/f/` that names no feed: the site's stylesheet and nothing else may load (the
/// policy the security layer leaves in place when an answer sets its own).
fn no_such_feed_page() -> Response {
    let css = format!("/pkg/{}.css", std::env::var("LEPTOS_OUTPUT_NAME").unwrap_or_else(|_| "broadcasting".into()));
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>No such feed · Broadcasting</title>\
         <link rel=\"stylesheet\" href=\"{css}\"></head><body><main class=\"page\">\
         <header class=\"masthead\"><h1>No such feed</h1></header><p class=\"intro\">{FEED_NAME_RULE}</p>\
         <p class=\"intro\"><a href=\"/\">Back to Broadcasting</a></p></main></body></html>\n"
    );
    let policy = "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    (StatusCode::NOT_FOUND, [(CONTENT_SECURITY_POLICY, policy)], Html(page)).into_response()
}

/// What the listener (`net`) answers before `app`'s router: a refetch whose page is made already
/// (`messages::shortcut`).
pub fn shortcut(state: AppState) -> impl Shortcut {
    move |request: &Request<Incoming>| messages::shortcut(&state, request)
}

#[cfg(test)]
mod tests {
    //! The shortcut against the whole app: two listeners on one state, one serving `app` alone and one asking
    //! `shortcut` first as `startup` serves it, must answer every request alike (status, every header but `Date`,
    //! the body's bytes on the wire).

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
    use leptos::config::LeptosOptions;
    use reqwest::Method;
    use tokio::net::TcpListener;

    use super::*;
    use crate::server::net::{serve, Deadlines};
    use crate::server::state::{services_for_tests, Limits, Services};
    use crate::server::store::MemoryStore;
    use crate::server::{feed, group::GroupId};
    use crate::shared::domain::FeedName;
    use crate::shared::wire;

    #[tokio::test]
    async fn a_feed_page_with_capitals_redirects_to_its_lowercase_name_and_a_bad_name_is_a_404_that_says_the_rule() {
        use tower::ServiceExt;
        let router = Router::new()
            .route("/f/{name}", get(|| async { "the page" }))
            .route("/f/{name}/embed", get(|| async { "the embed" }))
            .route("/", get(|| async { "the root" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "Not found") })
            .layer(middleware::from_fn_with_state(Arc::new(FeedGate::open(10)), feed_pages));
        let ask = |target: &'static str| {
            let router = router.clone();
            async move {
                let answer = router.oneshot(Request::get(target).body(Body::empty()).unwrap()).await.unwrap();
                let status = answer.status();
                let location = answer.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
                let body = http_body_util::BodyExt::collect(answer.into_body()).await.unwrap().to_bytes();
                (status, location, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        assert_eq!(ask("/f/team-news").await, (StatusCode::OK, None, "the page".into()));
        assert_eq!(ask("/").await, (StatusCode::OK, None, "the root".into()));
        assert_eq!(ask("/f/Team").await.0, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(ask("/f/Team").await.1.as_deref(), Some("/f/team"));
        assert_eq!(ask("/f/Team-News?x=1").await.1.as_deref(), Some("/f/team-news?x=1"));
        assert_eq!(ask("/f/team-news/embed").await, (StatusCode::OK, None, "the embed".into()));
        assert_eq!(ask("/f/Team/embed?x=1").await.1.as_deref(), Some("/f/team/embed?x=1"));
        assert_eq!(ask("/f/embed").await, (StatusCode::OK, None, "the page".into()), "a feed named embed");
        for bad in
            ["/f/bad_name", "/f/", "/f/-x", "/f/a/b", "/f/%41", "/f/%3Cscript%3E", "/f/bad_name/embed", "/f//embed"]
        {
            let (status, location, body) = ask(bad).await;
            assert_eq!((status, location), (StatusCode::NOT_FOUND, None), "{bad}");
            assert!(body.contains(FEED_NAME_RULE), "{bad}: {body}");
            assert!(!body.contains("script"), "{bad}: the name is not echoed");
        }
    }

    /// Serves `app(state)` on a free port, asking `shortcut` first; its address.
    async fn listen(state: &AppState, shortcut: impl Shortcut) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let long = Duration::from_secs(10);
        let deadlines = Deadlines { header: long, idle: long, write: long, shutdown_grace: Duration::ZERO };
        let router = app(state.clone(), group::Scope::Everyone, Framers::default());
        tokio::spawn(serve(listener, router, shortcut, deadlines, std::future::pending(), || {}));
        address
    }

    /// An answer as a client reads it: status, headers (`Date` aside: the two listeners need not answer in the same
    /// second), body bytes as sent (this client decodes no content coding).
    #[derive(PartialEq)]
    struct Answer {
        status: u16,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Vec<u8>,
    }

    /// The body as its length and start: a page is kilobytes, and compressed it is no text.
    impl std::fmt::Debug for Answer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let start = String::from_utf8_lossy(&self.body[..self.body.len().min(60)]).into_owned();
            f.debug_struct("Answer")
                .field("status", &self.status)
                .field("headers", &self.headers)
                .field("body", &format_args!("{} bytes, {start:?}…", self.body.len()))
                .finish()
        }
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.to_str().unwrap())
        }
    }

    async fn ask(client: &reqwest::Client, address: std::net::SocketAddr, request: &Asked) -> Answer {
        let mut asked = client.request(request.method.clone(), format!("http://{address}{}", request.target));
        for (name, value) in &request.headers {
            asked = asked.header(name, value);
        }
        let answer = asked.send().await.unwrap();
        let status = answer.status().as_u16();
        let mut headers: Vec<_> = answer
            .headers()
            .iter()
            .filter(|(name, _)| **name != header::DATE)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        headers.sort_by(|a, b| (a.0.as_str(), a.1.as_bytes()).cmp(&(b.0.as_str(), b.1.as_bytes())));
        Answer { status, headers, body: answer.bytes().await.unwrap().to_vec() }
    }

    struct Asked {
        method: Method,
        target: String,
        headers: HeaderMap,
    }

    fn request(method: Method, target: &str, accept: Option<&str>, held: Option<&str>) -> Asked {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        }
        if let Some(held) = held {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(held).unwrap());
        }
        Asked { method, target: target.into(), headers }
    }

    /// Every query shape the shortcut answers once its page is made (a settled range with its epoch, live pages
    /// read already, in every `Accept-Encoding` and with or without a matching `If-None-Match`) is answered as the
    /// app answers it; every request it leaves (a query that needs decoding or repeats a field, a page not yet
    /// read, a bad query, `HEAD`, `POST`, another path) reaches the app.
    #[tokio::test]
    async fn the_listener_with_the_shortcut_answers_as_the_whole_app() {
        let site = tempfile::tempdir().unwrap();
        let base = services_for_tests(Arc::new(MemoryStore::new(100)), None);
        // Pages of 10 messages of about 200 bytes: over `encoded::COMPRESS_FROM`, so the coding depends on the
        // request's `Accept-Encoding` and the answer says `Vary`.
        let state = AppState::from(Services {
            limits: Limits { max_message_chars: 300, page_size: 10, ..base.limits },
            leptos: LeptosOptions::builder()
                .output_name("broadcasting")
                .site_root(site.path().to_string_lossy())
                .build(),
            ..base
        });
        let group = GroupId::everyone();
        let ticket = feed::join(&state, &group, &crate::shared::domain::FeedName::main(), "ada").unwrap().ticket;
        for n in 1..=14 {
            let text = format!("message {n}: {}", "the same few words again and again, ".repeat(5));
            feed::send(&state, &FeedName::main(), &group, std::net::Ipv4Addr::LOCALHOST.into(), &ticket, &text, "")
                .await
                .unwrap();
        }
        let epoch = state.store.epoch(&FeedName::main()).await.unwrap();

        let plain = listen(&state, |_: &Request<Incoming>| None).await;
        let answered = Arc::new(AtomicUsize::new(0));
        let short = listen(&state, {
            let (hook, answered) = (shortcut(state.clone()), answered.clone());
            move |request: &Request<Incoming>| {
                let answer = hook(request);
                answered.fetch_add(usize::from(answer.is_some()), Ordering::Relaxed);
                answer
            }
        })
        .await;
        let client = reqwest::Client::new();
        // Asks the listener with the shortcut, then the app alone; whether the shortcut answered.
        let both = |request: Asked| {
            let (client, answered) = (&client, &answered);
            async move {
                let before = answered.load(Ordering::Relaxed);
                let through_shortcut = ask(client, short, &request).await;
                let by_shortcut = answered.load(Ordering::Relaxed) > before;
                let by_app = ask(client, plain, &request).await;
                let what = format!("{} {} {:?}", request.method, request.target, request.headers);
                assert_eq!(through_shortcut, by_app, "{what}: answered by the shortcut: {by_shortcut}");
                (by_app, by_shortcut)
            }
        };

        let accepted = [
            format!("/api/messages?since=2&until=9&epoch={epoch}"),
            format!("/api/messages?since=10&until=30&epoch={epoch}"),
            "/api/messages".into(),
            "/api/messages?since=2".into(),
            format!("/api/messages?since=3&epoch={epoch}"),
            "/api/messages?before=9".into(),
            "/api/messages?since=&before=12&other=x".into(),
        ];
        let mut seen = Vec::new();
        for target in &accepted {
            let (first, by_shortcut) = both(request(Method::GET, target, None, None)).await;
            assert!(!by_shortcut, "{target}: answered before its page was read");
            assert_eq!(first.status, 200, "{target}: {first:?}");
            let etag = first.header("etag").expect("an etag").to_owned();
            for accept in [None, Some("gzip"), Some("br"), Some("gzip, deflate, br, zstd"), Some("identity")] {
                for held in [None, Some(etag.clone()), Some(format!("\"other\", W/{etag}")), Some("\"other\"".into())] {
                    let (answer, by_shortcut) = both(request(Method::GET, target, accept, held.as_deref())).await;
                    assert!(by_shortcut, "{target} {accept:?} {held:?}: left to the app once its page was read");
                    for name in ["cache-control", "etag", wire::EPOCH_HEADER, "x-content-type-options"] {
                        assert!(answer.header(name).is_some(), "{target}: no {name}: {answer:?}");
                    }
                    for name in ["content-security-policy", "x-frame-options", "referrer-policy"] {
                        assert!(answer.header(name).is_some(), "{target}: no {name}: {answer:?}");
                    }
                    seen.push((
                        answer.status,
                        answer.header("content-encoding").map(str::to_owned),
                        answer.header("vary").is_some(),
                        answer.header("cache-control").unwrap().to_owned(),
                    ));
                }
            }
        }
        // The cases above reach every branch of the answer: both codings and none, `Vary`, `304`, and both kinds
        // of caching.
        for coding in [None, Some("gzip"), Some("br")] {
            assert!(seen.iter().any(|s| s.0 == 200 && s.1.as_deref() == coding), "no 200 in {coding:?}: {seen:?}");
        }
        assert!(seen.iter().any(|s| s.2), "no Vary: {seen:?}");
        assert!(seen.iter().any(|s| s.0 == 304), "no 304: {seen:?}");
        assert!(seen.iter().any(|s| s.3.contains("immutable")), "no settled page: {seen:?}");
        assert!(seen.iter().any(|s| s.3 == "no-cache"), "no live page: {seen:?}");

        let made = "/api/messages?since=2";
        let left = [
            (request(Method::GET, "/api/messages?since=%32", Some("br"), None), 200),
            (request(Method::GET, "/api/messages?since=2+", Some("br"), None), 200),
            (request(Method::GET, "/api/messages?since=2&since=3", None, None), 400),
            (request(Method::GET, "/api/messages?since=5", Some("gzip"), None), 200),
            (request(Method::GET, "/api/messages?since=x", None, None), 400),
            (request(Method::GET, "/api/messages?until=3", None, None), 400),
            (request(Method::HEAD, made, Some("gzip"), None), 200),
            (request(Method::POST, made, None, None), 405),
            (request(Method::GET, "/api/messages/?since=2", None, None), 404),
        ];
        for (request, status) in left {
            let what = format!("{} {}", request.method, request.target);
            let (answer, by_shortcut) = both(request).await;
            assert!(!by_shortcut, "{what}: the shortcut answered");
            assert_eq!(answer.status, status, "{what}: {answer:?}");
            assert!(answer.header("x-content-type-options").is_some(), "{what}: {answer:?}");
        }
    }
}
