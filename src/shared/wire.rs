//! Names on the wire that the page, the server, the tests and the bench must spell the same way.

/// The session group's Server-Sent Events stream.
pub const EVENTS_PATH: &str = "/events";
/// The SSE event that announces the newest message id.
pub const NEW_MESSAGE: &str = "NewMessage";
/// Join with a name (a server function).
pub const JOIN_PATH: &str = "/api/join";
/// Send a message (a server function).
pub const SEND_PATH: &str = "/api/send";
/// The limits the page checks before sending (a server function).
pub const LIMITS_PATH: &str = "/api/limits";
/// Read a page of the log.
pub const MESSAGES_PATH: &str = "/api/messages";
/// The response header of `GET /api/messages` that names the log's epoch: ids restart from 1 in a new epoch (the
/// log was lost and made anew), so a tab holding ids of another epoch reloads its log.
pub const EPOCH_HEADER: &str = "broadcasting-epoch";
/// The SSE event that says who is here in the group changed: the tab asks `PRESENCE_PATH` again.
pub const PRESENCE_CHANGED: &str = "PresenceChanged";
/// Who is here (`GET`), and a joined tab's heartbeat (`POST`).
pub const PRESENCE_PATH: &str = "/api/presence";
/// A tab leaving at once (`POST`, sent with `navigator.sendBeacon` as the page goes away).
pub const PRESENCE_LEAVE_PATH: &str = "/api/presence/leave";

/// Feeds (`FeedName`): the page of feed `name` is `FEED_PAGE_PREFIX` + name; `/` is the feed `main`.
pub const FEED_PAGE_PREFIX: &str = "/f/";
/// The API of one feed is `FEEDS_API_PREFIX` + name + one of: `FEED_MESSAGES` (pages, as `MESSAGES_PATH` answers
/// them), `FEED_PRESENCE` (who is here and the heartbeat, as `PRESENCE_PATH`), `FEED_PRESENCE_LEAVE`. The paths
/// `MESSAGES_PATH`, `PRESENCE_PATH` and `PRESENCE_LEAVE_PATH` stay the feed `main`'s.
pub const FEEDS_API_PREFIX: &str = "/api/feeds/";
pub const FEED_MESSAGES: &str = "/messages";
pub const FEED_PRESENCE: &str = "/presence";
pub const FEED_PRESENCE_LEAVE: &str = "/presence/leave";
/// The form field (join, send) and the `EVENTS_PATH` query parameter (repeated, one per feed) that name a feed; a
/// request without it is about `main`.
pub const FEED_FIELD: &str = "feed";
/// The join's form field that carries a token of the deployer's backend (`POST /api/join` body only), and the key
/// of the page address's fragment that hands one to the tab (`/f/team#token=…`: a fragment never reaches a server).
pub const TOKEN_FIELD: &str = "token";
/// The event stream's query field that carries a private feed's read pass (`Joined::pass`), one per private feed;
/// page and presence requests carry it as `Authorization: Bearer`.
pub const PASS_FIELD: &str = "pass";
/// Most feeds one event stream carries by default (the `max-feeds-per-stream` setting).
pub const MAX_FEEDS_PER_STREAM: usize = 64;

/// `FEEDS_API_PREFIX` + feed + `rest` (`rest` is one of the `FEED_*` suffixes).
pub fn feed_api(feed: &str, rest: &str) -> String {
    format!("{FEEDS_API_PREFIX}{feed}{rest}")
}

/// The data of a `NEW_MESSAGE` event on a stream opened with `feed` parameters: `<feed> <id>`. A stream opened
/// without any (an old tab) gets `<id>` alone, and only `main`'s notices, as before.
pub fn feed_notice_data(feed: &str, id: u64) -> String {
    format!("{feed} {id}")
}

/// The data of a `PRESENCE_CHANGED` event on a stream opened with `feed` parameters: the feed's name (without them:
/// `presence`, as before).
pub fn feed_presence_data(feed: &str) -> String {
    feed.to_owned()
}

/// What `feed_notice_data` wrote: the feed and the id.
pub fn parse_feed_notice(data: &str) -> Option<(&str, u64)> {
    let (feed, id) = data.split_once(' ')?;
    Some((feed, id.parse().ok()?))
}

/// The embed of a page (an iframe on a deployer's site): the page's path and this, `/f/{name}/embed`, or `/embed`
/// for `main`.
pub const EMBED_SUFFIX: &str = "/embed";
/// The session group of a page the browser sends no group cookie for (an embed on another site, where the cookie
/// does not travel): handed to the page in this `<meta name>`, kept in its memory, and sent back in the header
/// `GROUP_HEADER` (or, where the browser sends no headers of the page's, the `GROUP_PARAM` query parameter: the
/// event stream and the leave beacon).
pub const GROUP_META: &str = "broadcasting-group";
/// Written into a private feed's page (`<meta name="broadcasting-private">`): the tab reads nothing of the feed until
/// it joins with a token that grants it, and the browser's stream carries the feed only then.
pub const PRIVATE_META: &str = "broadcasting-private";
pub const GROUP_HEADER: &str = "broadcasting-group";
pub const GROUP_PARAM: &str = "group";
/// The `type` of the message an embed posts to the page that frames it: `{type, feed, height}`, its content's height
/// in CSS pixels (public/embed.js and README's snippet listen for it).
pub const HEIGHT_MESSAGE: &str = "broadcasting:height";

/// What a page's path shows: the feed's name as the path writes it (`None`: `main`, at `/`) and whether it is the
/// embed. `None` for a path that is no page. The name is not checked here (the server refuses a bad one before the
/// page renders): `/f/embed` is the page of a feed named `embed`, `/f/embed/embed` its embed.
pub fn page_of(path: &str) -> Option<(Option<&str>, bool)> {
    match path {
        "/" => Some((None, false)),
        _ if path == EMBED_SUFFIX => Some((None, true)),
        _ => {
            let rest = path.strip_prefix(FEED_PAGE_PREFIX)?;
            Some(match rest.strip_suffix(EMBED_SUFFIX) {
                Some(name) => (Some(name), true),
                None => (Some(rest), false),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_page_path_names_its_feed_and_whether_it_is_the_embed() {
        use super::page_of;
        assert_eq!(page_of("/"), Some((None, false)));
        assert_eq!(page_of("/embed"), Some((None, true)));
        assert_eq!(page_of("/f/team"), Some((Some("team"), false)));
        assert_eq!(page_of("/f/team/embed"), Some((Some("team"), true)));
        assert_eq!(page_of("/f/embed"), Some((Some("embed"), false)), "a feed may be named embed");
        assert_eq!(page_of("/f/embed/embed"), Some((Some("embed"), true)));
        assert_eq!(page_of("/f//embed"), Some((Some(""), true)), "left to the name's check");
        for other in ["/api/messages", "/embed/", "/embedded", "", "/f"] {
            assert_eq!(page_of(other), None, "{other:?}");
        }
    }
}
