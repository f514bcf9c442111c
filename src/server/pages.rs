//! Shared reads of the log. When a message is announced, every tab of the group asks for the same page (`since=` the
//! id before it, `until=` the announced id) at the same moment. The first of those requests reads the store and
//! serializes the page once; the others wait for it and share the same bytes, and the same compressed bytes
//! (`encoded`), made once per page rather than once per request.
//!
//! Pages are per feed, and the bound is over every feed together. A page that can still change (the latest,
//! everything after an id) is forgotten whenever its feed's log changes (an append or a retention pass), before the change is announced, so it is never served staler than the request. A page
//! that names both ends (`since=A&until=B`) is *settled* once it holds every message from A's successor to B: its
//! bytes can never change, so it is kept across appends (up to a bound) and its HTTP answer may be cached by anyone
//! (`messages`) until retention's `max-age`, when one is set, deletes its oldest message.
//!
//! `messages` serves `GET /api/messages` from these bytes; the page rendered on the server reads the same pages.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::HeaderValue;
use tokio::sync::{Notify, OnceCell};

use crate::server::encoded::Encoded;
use crate::server::store::StoreError;
use crate::shared::domain::{FeedName, Message};
use crate::shared::error::{ApiError, ErrorKind};

/// Which page of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PageKey {
    Latest,
    Since(u64),
    Before(u64),
    /// After `since`, up to and including `until` (the id a notice announced).
    Range {
        since: u64,
        until: u64,
    },
}

impl PageKey {
    /// The page a request names by its `since`, `before` and `until` (message ids; blank counts as absent): after
    /// `since` (up to `until` if given), before `before`, or (none) the latest. `since` with `before`, `until` without
    /// `since` or below it, or any of them not a whole number: 400.
    pub fn parse(since: Option<&str>, before: Option<&str>, until: Option<&str>) -> Result<Self, ApiError> {
        let bad = |message: &str| Err(ApiError::new(ErrorKind::BadRequest, message));
        match (message_id("since", since)?, message_id("before", before)?, message_id("until", until)?) {
            (Some(_), Some(_), _) => bad("Give `since` or `before`, not both."),
            (None, _, Some(_)) => bad("`until` goes with `since`."),
            (Some(since), None, Some(until)) if until < since => bad("`until` must not be below `since`."),
            (Some(since), None, Some(until)) => Ok(Self::Range { since, until }),
            (Some(after), None, None) => Ok(Self::Since(after)),
            (None, Some(before), None) => Ok(Self::Before(before)),
            (None, None, None) => Ok(Self::Latest),
        }
    }
}

/// An optional message id from the query string; blank counts as absent.
fn message_id(field: &str, raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| {
            ApiError::new(
                ErrorKind::BadRequest,
                format!("`{field}` must be a message id (a whole number), not {raw:?}."),
            )
        }),
    }
}

/// What a read of the store found for a page.
pub struct Fresh {
    pub epoch: String,
    pub messages: Vec<Message>,
    /// Whether the page can never change (see `Page::settled`).
    pub settled: bool,
    /// When retention deletes the page's oldest message (`max-age`): no cache may keep the page past it.
    pub expires: Option<SystemTime>,
}

impl From<(String, Vec<Message>)> for Fresh {
    fn from((epoch, messages): (String, Vec<Message>)) -> Self {
        Self { epoch, messages, settled: false, expires: None }
    }
}

/// One page, with its JSON as served (and its compressed forms) and the epoch of the log it was read from.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<Message>,
    pub epoch: String,
    /// The page names both its ends and holds every message between them: the same request answers the same bytes
    /// for as long as this epoch lasts, or until `expires`.
    pub settled: bool,
    /// When retention's `max-age` deletes the oldest message here, if it is set.
    pub expires: Option<SystemTime>,
    /// The JSON as sent: identity, or compressed once for every request that accepts it.
    pub body: Encoded,
    /// Names these bytes of this epoch (a strong `ETag`, quoted), as sent.
    pub etag: HeaderValue,
    /// `epoch` as the `Broadcasting-Epoch` header sends it (none if it could not be one), made once.
    pub epoch_header: Option<HeaderValue>,
}

impl Page {
    fn new(fresh: Fresh) -> Self {
        let Fresh { epoch, messages, settled, expires } = fresh;
        let json = serde_json::to_vec(&messages).map(Bytes::from).unwrap_or_default();
        let tag = fnv1a(&[epoch.as_bytes(), b"\n", &json]);
        let etag = HeaderValue::from_maybe_shared(Bytes::from(format!("\"{tag:016x}\""))).expect("quoted hex");
        let epoch_header = HeaderValue::from_str(&epoch).ok();
        Self { body: Encoded::new(json), messages, epoch, settled, expires, etag, epoch_header }
    }
}

/// When retention's `max-age` (`horizon`) deletes the oldest of `messages`: a cached copy must be gone by then.
pub fn expires(messages: &[Message], horizon: Option<Duration>) -> Option<SystemTime> {
    let horizon = horizon?;
    let oldest = messages.first()?;
    let at = time::OffsetDateTime::parse(&oldest.at, &time::format_description::well_known::Rfc3339)
        // An unreadable time: as if the message were about to go, so no cache keeps the page.
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Some(SystemTime::from(at) + horizon)
}

/// FNV-1a, 64 bits: a cheap, stable name for a page's bytes (not a defence against anyone).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|part| part.iter())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

type Slot = Arc<OnceCell<Arc<Page>>>;

/// One feed's pages.
#[derive(Default)]
struct Pages {
    /// Pages that may change, shared between two changes of the feed's log.
    live: HashMap<PageKey, Slot>,
    /// Settled pages by (until, since), so the oldest go first when the bound is reached; all of one epoch.
    settled: BTreeMap<(u64, u64), Arc<Page>>,
}

impl Pages {
    fn len(&self) -> usize {
        self.live.len() + self.settled.len()
    }
}

/// Every feed's pages, bounded in all: at most `capacity` pages over every feed together, so many feeds cost no
/// more than one busy one. A feed holding no page holds no entry.
#[derive(Default)]
struct Feeds {
    by_feed: HashMap<FeedName, Pages>,
    /// Pages held over every feed.
    count: usize,
}

impl Feeds {
    /// Answers whether the feed went from the map (its last page went).
    fn clear(&mut self, feed: &FeedName, settled_too: bool) -> bool {
        let Some(pages) = self.by_feed.get_mut(feed) else { return false };
        let before = pages.len();
        pages.live.clear();
        if settled_too {
            pages.settled.clear();
        }
        self.count -= before - pages.len();
        let empty = pages.len() == 0;
        if empty {
            self.by_feed.remove(feed);
        }
        empty
    }
}

pub struct PageCache {
    feeds: Mutex<Feeds>,
    /// Woken when a feed gets its first cached page or loses its last (see `Hub::feeds`).
    feeds_changed: Arc<Notify>,
    /// Distinct pages kept between two changes of a log, and settled pages kept at most, over every feed; requests
    /// beyond it read the store themselves.
    capacity: usize,
    /// Retention's shortest `max-age`, if any: when a prepared page's message is deleted (`expires`).
    horizon: Option<Duration>,
}

impl PageCache {
    pub fn new(capacity: usize) -> Self {
        Self { feeds: Mutex::default(), feeds_changed: Arc::default(), capacity, horizon: None }
    }

    /// Pages this cache prepares itself (`prepare`) expire when retention's `max-age` (`horizon`) deletes their
    /// message, as the pages read from the store do (`feed::list`).
    pub fn expiring(mut self, horizon: Option<Duration>) -> Self {
        self.horizon = horizon;
        self
    }

    /// `message` was just appended to `feed` in `epoch`: keep the page every up-to-date tab will ask for on its
    /// notice (`since` the id before, `until` its id), made from the message itself, before the notice goes out.
    /// That page holds the whole range (its one message is `since`'s successor and reaches `until`), so it is
    /// settled as a read of the store would make it, byte for byte; the refetches it answers read nothing, the first
    /// one included. A bound already full of other feeds' pages keeps it out (as for any settled page).
    pub fn prepare(&self, feed: &FeedName, epoch: &str, message: &Message) {
        let Some(since) = message.id.checked_sub(1) else { return };
        let messages = vec![message.clone()];
        let expires = expires(&messages, self.horizon);
        let page = Arc::new(Page::new(Fresh { epoch: epoch.to_owned(), messages, settled: true, expires }));
        self.keep_settled(feed, PageKey::Range { since, until: message.id }, &page);
    }

    /// Notified when `feeds` may answer otherwise.
    pub fn feeds_changed(&self) -> Arc<Notify> {
        self.feeds_changed.clone()
    }

    /// The feeds that have pages here now: a cross-process broker must hear of their changes to forget them.
    pub fn feeds(&self) -> Vec<FeedName> {
        self.lock().by_feed.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Feeds> {
        self.feeds.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Messages were added to `feed`: forget every page of it that may change. Call after the change and before
    /// announcing it.
    pub fn invalidate(&self, feed: &FeedName) {
        if self.lock().clear(feed, false) {
            self.feeds_changed.notify_one();
        }
    }

    /// Messages were removed from `feed` (a retention pass), or its log was made anew: forget every page of it.
    pub fn forget(&self, feed: &FeedName) {
        if self.lock().clear(feed, true) {
            self.feeds_changed.notify_one();
        }
    }

    /// Forget every page of every feed (a broker that cannot tell which feeds changed).
    pub fn forget_all(&self) {
        *self.lock() = Feeds::default();
        self.feeds_changed.notify_one();
    }

    /// Number of pages held now, over every feed (for tests).
    pub fn len(&self) -> usize {
        self.lock().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The page `key` of `feed`: read once by `read` and shared by every request for it until the feed's log
    /// changes (or, once settled, for as long as it is among the newest settled pages of `epoch`, the epoch the
    /// request names). A failed read is not kept; the next request tries again.
    pub async fn get<F, Fut, R>(
        &self,
        feed: &FeedName,
        key: PageKey,
        epoch: Option<&str>,
        read: F,
    ) -> Result<Arc<Page>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, StoreError>>,
        R: Into<Fresh>,
    {
        if let Some(page) = self.ready(feed, key, epoch) {
            return Ok(page);
        }
        let slot = {
            let mut feeds = self.lock();
            let known = feeds.by_feed.get(feed).and_then(|pages| pages.live.get(&key)).cloned();
            match known {
                Some(slot) => Some(slot),
                None if feeds.count < self.capacity => {
                    feeds.count += 1;
                    if !feeds.by_feed.contains_key(feed) {
                        self.feeds_changed.notify_one();
                    }
                    Some(feeds.by_feed.entry(feed.clone()).or_default().live.entry(key).or_default().clone())
                }
                None => None,
            }
        };
        let page = match slot {
            Some(slot) => {
                slot.get_or_try_init(|| async { Ok(Arc::new(Page::new(read().await?.into()))) }).await.cloned()?
            }
            None => Arc::new(Page::new(read().await?.into())),
        };
        if page.settled {
            self.keep_settled(feed, key, &page);
        }
        Ok(page)
    }

    /// The page `key` of `feed` if it is made already (settled, or live and read): answered without waiting.
    pub fn ready(&self, feed: &FeedName, key: PageKey, epoch: Option<&str>) -> Option<Arc<Page>> {
        let feeds = self.lock();
        let pages = feeds.by_feed.get(feed)?;
        // A request that names no epoch (a tab that has none yet: the feed's first message) is answered the settled
        // page too: the settled pages are all of the log's current epoch (a new epoch forgets them), and the answer
        // names it (`Broadcasting-Epoch`); only a request naming it may cache the answer (`messages`).
        if let PageKey::Range { since, until } = key {
            let named = |page: &&Arc<Page>| epoch.is_none_or(|epoch| page.epoch == epoch);
            if let Some(page) = pages.settled.get(&(until, since)).filter(named) {
                return Some(page.clone());
            }
        }
        pages.live.get(&key).and_then(|slot| slot.get().cloned())
    }

    /// Moves a settled page from the live ones to the settled; a page of another epoch than those kept means the
    /// feed's log was made anew: they go.
    fn keep_settled(&self, feed: &FeedName, key: PageKey, page: &Arc<Page>) {
        let PageKey::Range { since, until } = key else { return };
        let at = (until, since);
        let mut feeds = self.lock();
        let Feeds { by_feed, count } = &mut *feeds;
        if !by_feed.contains_key(feed) {
            self.feeds_changed.notify_one();
        }
        let pages = by_feed.entry(feed.clone()).or_default();
        if pages.live.remove(&key).is_some() {
            *count -= 1;
        }
        if pages.settled.values().next().is_some_and(|kept| kept.epoch != page.epoch) {
            *count -= pages.settled.len();
            pages.settled.clear();
        }
        if !pages.settled.contains_key(&at) && self.capacity > 0 {
            // Full: this feed's oldest settled page makes room; a feed with none waits for the others' to change.
            while *count >= self.capacity && pages.settled.pop_first().is_some() {
                *count -= 1;
            }
            if *count < self.capacity {
                pages.settled.insert(at, page.clone());
                *count += 1;
            }
        }
        if pages.len() == 0 {
            by_feed.remove(feed);
            self.feeds_changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main() -> FeedName {
        FeedName::main()
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn message(id: u64) -> Message {
        Message {
            id,
            user: "ada".into(),
            text: format!("m{id}"),
            at: "2026-11-24T00:00:00Z".into(),
            source: Default::default(),
            removed: false,
        }
    }

    fn settled(epoch: &str, ids: &[u64]) -> Fresh {
        Fresh {
            epoch: epoch.into(),
            messages: ids.iter().copied().map(message).collect(),
            settled: true,
            expires: None,
        }
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_page_share_one_read_until_the_log_changes() {
        let cache = Arc::new(PageCache::new(8));
        let reads = Arc::new(AtomicUsize::new(0));
        let read = |reads: Arc<AtomicUsize>, id: u64| async move {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(("e".to_owned(), vec![message(id)]))
        };
        let feed = main();
        let pages = futures::future::join_all(
            (0..50).map(|_| cache.get(&feed, PageKey::Since(4), None, || read(reads.clone(), 5))),
        )
        .await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        for page in &pages {
            let page = page.as_ref().unwrap();
            assert_eq!(page.messages, vec![message(5)]);
            assert_eq!(page.body.for_accept(None).0, Bytes::from(serde_json::to_vec(&vec![message(5)]).unwrap()));
            assert!(!page.settled);
        }
        cache.invalidate(&main());
        assert!(cache.is_empty());
        let fresh = cache.get(&main(), PageKey::Since(4), None, || read(reads.clone(), 6)).await.unwrap();
        assert_eq!((reads.load(Ordering::SeqCst), fresh.messages[0].id), (2, 6));
        assert_ne!(fresh.etag, pages[0].as_ref().unwrap().etag, "other bytes, another ETag");
    }

    #[tokio::test]
    async fn failed_reads_are_not_kept_and_the_cache_is_bounded() {
        let cache = PageCache::new(2);
        let failed = cache
            .get(&main(), PageKey::Latest, None, || async { Err::<Fresh, _>(StoreError::Unavailable("down".into())) })
            .await;
        assert!(failed.is_err());
        let ok = cache
            .get(&main(), PageKey::Latest, None, || async { Ok(("e".to_owned(), vec![message(1)])) })
            .await
            .unwrap();
        assert_eq!(ok.messages, vec![message(1)]);
        for before in 10..20 {
            let page = cache
                .get(&main(), PageKey::Before(before), None, || async move {
                    Ok(("e".to_owned(), vec![message(before - 1)]))
                })
                .await;
            assert_eq!(page.unwrap().messages, vec![message(before - 1)]);
        }
        assert_eq!(cache.len(), 2);
    }

    /// A prepared page is the page a read of the store would make for `since=id-1&until=id`, byte for byte, settled
    /// and ready without a read; it expires with retention's `max-age` like a read one, and the first message (id 1)
    /// prepares `since=0`.
    #[tokio::test]
    async fn a_prepared_page_is_the_read_page_and_needs_no_read() {
        let hour = Duration::from_secs(3600);
        let cache = PageCache::new(8).expiring(Some(hour));
        let feed = main();
        cache.prepare(&feed, "e", &message(5));
        let key = PageKey::Range { since: 4, until: 5 };
        let prepared = cache.ready(&feed, key, Some("e")).expect("ready without a read");
        assert!(cache.ready(&feed, key, Some("other")).is_none(), "only for its epoch");
        let read = Page::new(Fresh { expires: expires(&[message(5)], Some(hour)), ..settled("e", &[5]) });
        assert_eq!((prepared.body.for_accept(None).0, &prepared.etag), (read.body.for_accept(None).0, &read.etag));
        assert!(prepared.settled);
        assert_eq!(prepared.expires, read.expires);
        assert!(prepared.expires.is_some());
        let got = cache.get(&feed, key, Some("e"), || async { Err::<Fresh, _>(StoreError::Unavailable("x".into())) });
        assert_eq!(got.await.unwrap().etag, prepared.etag, "served without reading");
        cache.invalidate(&feed);
        assert!(cache.ready(&feed, key, Some("e")).is_some(), "an append keeps it: it cannot change");
        cache.prepare(&feed, "e", &message(1));
        assert!(cache.ready(&feed, PageKey::Range { since: 0, until: 1 }, None).is_some());
        cache.prepare(&feed, "e", &message(0));
        assert_eq!(cache.len(), 2, "no page for an id 0");
    }

    /// A settled page outlives appends (its bytes cannot change) but only for requests of its epoch; the newest
    /// are kept within the bound; another epoch's page, or a retention pass, forgets them.
    #[tokio::test]
    async fn settled_pages_outlive_appends_within_their_epoch_and_bound() {
        let cache = PageCache::new(2);
        let reads = AtomicUsize::new(0);
        let read = |epoch: &'static str, ids: &'static [u64]| {
            reads.fetch_add(1, Ordering::SeqCst);
            async move { Ok(settled(epoch, ids)) }
        };
        let range = PageKey::Range { since: 4, until: 5 };
        let first = cache.get(&main(), range, Some("e"), || read("e", &[5])).await.unwrap();
        cache.invalidate(&main());
        let again = cache.get(&main(), range, Some("e"), || read("e", &[5])).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "served from the settled pages after an append");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // A request naming another epoch never gets it.
        let other = cache.get(&main(), range, Some("f"), || read("e", &[5])).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // Newer ranges push the oldest out.
        cache.invalidate(&main());
        for until in 6..8 {
            cache
                .get(&main(), PageKey::Range { since: until - 1, until }, Some("e"), || read("e", &[6]))
                .await
                .unwrap();
        }
        cache.invalidate(&main());
        cache.get(&main(), range, Some("e"), || read("e", &[5])).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 5, "the oldest range was read again");
        // A page of a new epoch clears the old epoch's.
        cache.invalidate(&main());
        cache.get(&main(), PageKey::Range { since: 0, until: 1 }, Some("g"), || read("g", &[1])).await.unwrap();
        assert_eq!(cache.len(), 1);
        cache.forget(&main());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_range_needs_since_and_may_not_end_below_it() {
        assert_eq!(PageKey::parse(Some("4"), None, Some("9")).unwrap(), PageKey::Range { since: 4, until: 9 });
        assert_eq!(PageKey::parse(Some("4"), None, Some("4")).unwrap(), PageKey::Range { since: 4, until: 4 });
        assert_eq!(PageKey::parse(Some("4"), None, Some(" ")).unwrap(), PageKey::Since(4));
        for (since, before, until) in
            [(None, None, Some("3")), (Some("4"), None, Some("3")), (None, Some("4"), Some("9"))]
        {
            let err = PageKey::parse(since, before, until).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRequest, "{since:?} {before:?} {until:?}");
        }
        assert!(PageKey::parse(Some("1"), None, Some("x")).unwrap_err().message.contains("`until`"));
    }

    /// Feeds keep their pages apart: an append to one forgets none of another's, a retention pass of one only its
    /// own, and the bound holds over every feed together.
    #[tokio::test]
    async fn each_feed_has_its_pages_and_the_bound_is_over_all_of_them() {
        let cache = PageCache::new(3);
        let (a, b, c) = (main(), FeedName::parse("b").unwrap(), FeedName::parse("c").unwrap());
        let page = |epoch: &'static str, id: u64| async move { Ok((epoch.to_owned(), vec![message(id)])) };
        cache.get(&a, PageKey::Latest, None, || page("ea", 1)).await.unwrap();
        cache.get(&b, PageKey::Latest, None, || page("eb", 2)).await.unwrap();
        assert_eq!(cache.ready(&a, PageKey::Latest, None).unwrap().epoch, "ea");
        assert_eq!(cache.ready(&b, PageKey::Latest, None).unwrap().epoch, "eb");
        cache.invalidate(&a);
        assert!(cache.ready(&a, PageKey::Latest, None).is_none(), "a's append forgets a's page");
        assert!(cache.ready(&b, PageKey::Latest, None).is_some(), "and not b's");
        let range = PageKey::Range { since: 1, until: 2 };
        let settled =
            || async { Ok(Fresh { epoch: "eb".into(), messages: vec![message(2)], settled: true, expires: None }) };
        cache.get(&b, range, Some("eb"), settled).await.unwrap();
        cache.get(&c, PageKey::Latest, None, || page("ec", 3)).await.unwrap();
        assert_eq!(cache.len(), 3, "b's latest and settled page, c's latest");
        let read_through = cache.get(&a, PageKey::Latest, None, || page("ea", 4)).await.unwrap();
        assert_eq!((read_through.epoch.as_str(), cache.len()), ("ea", 3), "full: read, answered, not kept");
        cache.forget(&b);
        assert_eq!(cache.len(), 1, "b's retention pass forgets b's pages only");
        assert!(cache.ready(&c, PageKey::Latest, None).is_some());
        cache.forget_all();
        assert!(cache.is_empty());
    }

    /// A tab that holds no epoch yet (a feed's first message) is answered the settled page without a read: the
    /// settled pages are of the log's current epoch. A request naming another epoch is not (it reads, and learns).
    #[tokio::test]
    async fn a_request_that_names_no_epoch_gets_the_settled_page() {
        let cache = PageCache::new(4);
        let range = PageKey::Range { since: 0, until: 1 };
        let settled =
            || async { Ok(Fresh { epoch: "e".into(), messages: vec![message(1)], settled: true, expires: None }) };
        cache.get(&main(), range, Some("e"), settled).await.unwrap();
        assert_eq!(cache.ready(&main(), range, None).map(|page| page.messages.clone()), Some(vec![message(1)]));
        assert!(cache.ready(&main(), range, Some("e")).is_some());
        assert!(cache.ready(&main(), range, Some("other")).is_none());
    }
}
