//! Shared reads of the log. When a message is announced, every tab of the group asks for the same page (`since=` the
//! id before it) at the same moment. The first of those requests reads the store and serializes the page once; the
//! others wait for it and share the same bytes. Every page is forgotten when the log changes (an append or a
//! retention pass), before the change is announced, so a page is never served staler than the request.
//!
//! `messages` serves `GET /api/messages` from these bytes; the page rendered on the server reads the same pages.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use tokio::sync::OnceCell;

use crate::server::store::StoreError;
use crate::shared::domain::Message;
use crate::shared::error::{ApiError, ErrorKind};

/// Which page of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKey {
    Latest,
    Since(u64),
    Before(u64),
}

impl PageKey {
    /// The page a request names by its `since` and `before` (message ids; blank counts as absent): after `since`,
    /// before `before`, or (neither) the latest. Both, or either not a whole number: 400.
    pub fn parse(since: Option<&str>, before: Option<&str>) -> Result<Self, ApiError> {
        match (message_id("since", since)?, message_id("before", before)?) {
            (Some(_), Some(_)) => Err(ApiError::new(ErrorKind::BadRequest, "Give `since` or `before`, not both.")),
            (Some(after), None) => Ok(Self::Since(after)),
            (None, Some(before)) => Ok(Self::Before(before)),
            (None, None) => Ok(Self::Latest),
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

/// One page, with its JSON as served and the epoch of the log it was read from.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<Message>,
    pub json: Bytes,
    pub epoch: String,
}

impl Page {
    fn new((epoch, messages): (String, Vec<Message>)) -> Self {
        let json = serde_json::to_vec(&messages).map(Bytes::from).unwrap_or_default();
        Self { messages, json, epoch }
    }
}

type Slot = Arc<OnceCell<Arc<Page>>>;

pub struct PageCache {
    pages: Mutex<HashMap<PageKey, Slot>>,
    /// Distinct pages kept between two changes of the log; requests beyond it read the store themselves.
    capacity: usize,
}

impl PageCache {
    pub fn new(capacity: usize) -> Self {
        Self { pages: Mutex::default(), capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PageKey, Slot>> {
        self.pages.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The log changed: forget every page. Call after the change and before announcing it.
    pub fn invalidate(&self) {
        self.lock().clear();
    }

    /// Number of pages held now (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The page for `key`: read once by `read` and shared by every request for it until the log changes. A failed
    /// read is not kept; the next request tries again.
    pub async fn get<F, Fut>(&self, key: PageKey, read: F) -> Result<Arc<Page>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Vec<Message>), StoreError>>,
    {
        let slot = {
            let mut pages = self.lock();
            match pages.get(&key) {
                Some(slot) => Some(slot.clone()),
                None if pages.len() < self.capacity => Some(pages.entry(key).or_default().clone()),
                None => None,
            }
        };
        match slot {
            Some(slot) => slot.get_or_try_init(|| async { Ok(Arc::new(Page::new(read().await?))) }).await.cloned(),
            None => Ok(Arc::new(Page::new(read().await?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn message(id: u64) -> Message {
        Message { id, user: "ada".into(), text: format!("m{id}"), at: "2026-11-24T00:00:00Z".into() }
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
        let pages =
            futures::future::join_all((0..50).map(|_| cache.get(PageKey::Since(4), || read(reads.clone(), 5)))).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        for page in &pages {
            let page = page.as_ref().unwrap();
            assert_eq!(page.messages, vec![message(5)]);
            assert_eq!(page.json, Bytes::from(serde_json::to_vec(&vec![message(5)]).unwrap()));
        }
        cache.invalidate();
        assert!(cache.is_empty());
        let fresh = cache.get(PageKey::Since(4), || read(reads.clone(), 6)).await.unwrap();
        assert_eq!((reads.load(Ordering::SeqCst), fresh.messages[0].id), (2, 6));
    }

    #[tokio::test]
    async fn failed_reads_are_not_kept_and_the_cache_is_bounded() {
        let cache = PageCache::new(2);
        let failed = cache.get(PageKey::Latest, || async { Err(StoreError::Unavailable("down".into())) }).await;
        assert!(failed.is_err());
        let ok = cache.get(PageKey::Latest, || async { Ok(("e".to_owned(), vec![message(1)])) }).await.unwrap();
        assert_eq!(ok.messages, vec![message(1)]);
        for before in 10..20 {
            let page = cache
                .get(PageKey::Before(before), || async move { Ok(("e".to_owned(), vec![message(before - 1)])) })
                .await;
            assert_eq!(page.unwrap().messages, vec![message(before - 1)]);
        }
        assert_eq!(cache.len(), 2);
    }
}
