//! The page: `shell` is the HTML document the server renders, `App` the part that hydrates in the browser.
//! The tab's identity (name and ticket) lives only in this tab's memory: a reload asks again. The page shows one
//! feed, the one its path names (`place`): `/` is `main`, `/f/{name}` the feed `name`; `/f/{name}/embed` (and
//! `/embed`) is the same page laid out for an iframe on another site (`place::Layout`).
//!
//! One module per concern: the log's state (`log`) and its view (`feed`), with the mark of a name someone vouches
//! for (`mark`); the form (`compose`); who is here (`presence`); the stream as this tab sees it (`live`), the
//! catch-up it drives (`catch_up`) and the browser's one stream shared between tabs (`relay`); the API calls
//! (`remote`) and every encoding they and the relay use (`codec`); the session group a page holds where the browser
//! sends no cookie (`session`); the embed's height told to the page that frames it (`embed`); times in the reader's
//! zone (`clock`). Code for one target only sits in its own file, chosen on a `mod` line (`browser.rs` in the tab,
//! `server.rs` while the server renders).

mod catch_up;
mod clock;
mod codec;
mod compose;
mod embed;
mod feed;
mod live;
mod log;
mod mark;
mod place;
mod presence;
mod relay;
mod remote;
mod session;

use leptos::either::Either;
use leptos::prelude::*;

use crate::shared::wire;
use log::Feed;
use place::Layout;
pub use session::HandedGroup;

pub fn shell(options: LeptosOptions) -> impl IntoView {
    let css = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    let title = place::title(&place::feed());
    // Only the embed is handed its group: the one page a browser may show without sending its cookie.
    let handed = (place::layout() == Layout::Embed).then(use_context::<HandedGroup>).flatten();
    let private = place::private();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <meta name="description" content="A realtime shared feed: messages appear in every open tab at once."/>
                // As markup, not a text child: a text child gets a hydration marker (`<!>`), which inside `<title>` is
                // text the tab would show. Safe: a feed name is only a-z, 0-9 and '-'.
                <title inner_html=title></title>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" href=css/>
                {handed.map(|HandedGroup(group)| view! { <meta name=wire::GROUP_META content=group/> })}
                {private.then(|| view! { <meta name=wire::PRIVATE_META content="true"/> })}
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    let name = place::feed();
    let heading = place::heading(&name);
    session::start();
    let feed = Feed::new(name.clone(), place::private());
    let here = presence::Presence::new(name.clone());
    let live = live::connect(feed, here);
    // Set once the page is interactive; tests and styles key on it.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    match place::layout() {
        Layout::Full => Either::Left(full(heading, feed, here, live, hydrated)),
        Layout::Embed => Either::Right(embedded(heading, feed, here, live, hydrated)),
    }
}

/// The page of its own.
fn full(
    heading: String,
    feed: Feed,
    here: presence::Presence,
    live: live::Live,
    hydrated: RwSignal<bool>,
) -> impl IntoView {
    view! {
        <main class="page" data-hydrated=move || hydrated.get().then_some("true")>
            <header class="masthead">
                // As markup for the same reason, so `/` renders `<h1>Broadcasting</h1>` byte for byte as before feeds.
                <h1 inner_html=heading></h1>
                <live::StatusBadge live/>
            </header>
            <live::StreamProblem live/>
            <presence::WhoIsHere presence=here/>
            <p class="intro">
                "A shared, live message log. What anyone sends here shows up at once in every other open tab of "
                "this page, with no reload. Try it: open this page in a second tab, join there with another name, "
                "and send from either one."
            </p>
            <feed::FeedLog feed hydrated=hydrated.into()/>
            <compose::Composer feed here/>
        </main>
    }
}

/// The embed: the same log and form, with who is here and the stream's state in one line above them, and no page
/// around them (the heading is there for screen readers only); the page that frames it is told its height.
fn embedded(
    heading: String,
    feed: Feed,
    here: presence::Presence,
    live: live::Live,
    hydrated: RwSignal<bool>,
) -> impl IntoView {
    let main = NodeRef::new();
    embed::report_height(main, feed.name());
    view! {
        <main class="page embed" node_ref=main data-hydrated=move || hydrated.get().then_some("true")>
            <header class="masthead">
                <h1 class="sr-only" inner_html=heading></h1>
                <presence::WhoIsHere presence=here/>
                <live::StatusBadge live/>
            </header>
            <live::StreamProblem live/>
            <feed::FeedLog feed hydrated=hydrated.into()/>
            <compose::Composer feed here/>
        </main>
    }
}
