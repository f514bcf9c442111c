//! The feed's use cases, shared by the server functions: join, send, list. They take the state and the caller's
//! session group explicitly, so tests drive them without HTTP.

use std::sync::Arc;

use leptos::prelude::*;
use leptos_axum::ResponseOptions;

use crate::server::pages::{Page, PageKey};
use crate::server::{group::GroupId, AppState};
use crate::shared::domain::{Joined, Message, MessageText, Username};
use crate::shared::error::{ApiError, ErrorKind};

/// The application state the router provides to every server function.
pub fn app_state() -> Result<AppState, ApiError> {
    use_context::<AppState>().ok_or_else(|| ApiError::new(ErrorKind::Unavailable, "The server is not ready yet."))
}

/// The state and the caller's session group (set by the group middleware).
pub async fn request_context() -> Result<(AppState, GroupId), ApiError> {
    let state = app_state()?;
    let axum::Extension(group) = leptos_axum::extract::<axum::Extension<GroupId>>()
        .await
        .map_err(|_| ApiError::new(ErrorKind::Unavailable, "No session group for this request."))?;
    Ok((state, group))
}

/// Sets the HTTP status that goes with an error before the server function answers it.
pub fn respond<T>(result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(err) = &result {
        if let Some(options) = use_context::<ResponseOptions>() {
            let status =
                axum::http::StatusCode::from_u16(err.status()).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            options.set_status(status);
        }
    }
    result
}

pub fn join(state: &AppState, group: &GroupId, raw_name: &str) -> Result<Joined, ApiError> {
    let name = Username::parse(raw_name)?;
    let ticket = state.tickets.issue(group, &name);
    Ok(Joined { name: name.as_str().to_owned(), ticket })
}

/// Append, then publish: the store takes and releases its own lock inside `append`, so the fan-out never runs
/// under it, and nothing is published unless the append succeeded.
pub async fn send(state: &AppState, group: &GroupId, ticket: &str, raw_text: &str) -> Result<Message, ApiError> {
    let author =
        state.tickets.verify(group, ticket).map_err(|err| ApiError::new(ErrorKind::BadTicket, err.to_string()))?;
    let text = MessageText::parse(raw_text, state.limits.max_message_chars)?;
    let message = state.store.append(&author, &text).await.map_err(|err| {
        tracing::error!(error = %err, "append failed");
        ApiError::new(ErrorKind::Unavailable, "The message could not be stored; try again.")
    })?;
    state.pages.invalidate();
    state.fanout.publish(group, message.id).await;
    Ok(message)
}

/// One page of the log: after `since`, or before `before`, or (neither) the latest. Identical concurrent requests
/// share one store read (`PageCache`).
pub async fn list(state: &AppState, since: Option<&str>, before: Option<&str>) -> Result<Arc<Page>, ApiError> {
    let limit = state.limits.page_size;
    let key = match (message_id("since", since)?, message_id("before", before)?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(ErrorKind::BadRequest, "Give `since` or `before`, not both."));
        }
        (Some(after), None) => PageKey::Since(after),
        (None, Some(before)) => PageKey::Before(before),
        (None, None) => PageKey::Latest,
    };
    let store = &state.store;
    let result = state
        .pages
        .get(key, || async move {
            match key {
                PageKey::Since(after) => store.since(after, limit).await,
                PageKey::Before(before) => store.before(before, limit).await,
                PageKey::Latest => store.latest(limit).await,
            }
        })
        .await;
    result.map_err(|err| {
        tracing::error!(error = %err, "read failed");
        ApiError::new(ErrorKind::Unavailable, "The log could not be read; try again.")
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::fanout::LocalBroadcaster;
    use crate::server::startup::Limits;
    use crate::server::store::{FeedStore, MemoryStore, StoreError};
    use crate::server::ticket::TicketKeys;
    use futures::StreamExt;

    /// A store whose appends always fail, to prove that a failed send publishes nothing.
    struct BrokenStore;

    #[async_trait::async_trait]
    impl FeedStore for BrokenStore {
        async fn append(&self, _: &Username, _: &MessageText) -> Result<Message, StoreError> {
            Err(StoreError::Unavailable("disk on fire".into()))
        }
        async fn since(&self, _: u64, _: usize) -> Result<Vec<Message>, StoreError> {
            Ok(vec![])
        }
        async fn before(&self, _: u64, _: usize) -> Result<Vec<Message>, StoreError> {
            Ok(vec![])
        }
        async fn latest(&self, _: usize) -> Result<Vec<Message>, StoreError> {
            Ok(vec![])
        }
        async fn prune(&self, _: usize, _: Option<&str>) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn last_id(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn state(store: Arc<dyn FeedStore>) -> AppState {
        AppState::new(
            store,
            Arc::new(LocalBroadcaster::new(16)),
            TicketKeys::new(b"test secret, thirty-two bytes!!!".to_vec()),
            Limits { max_message_chars: 10, page_size: 3 },
            leptos::config::LeptosOptions::builder().output_name("broadcasting").build(),
        )
    }

    async fn next_now(sub: &mut crate::server::fanout::Subscription) -> Option<u64> {
        let notice = tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await.ok().flatten();
        notice.map(|notice| notice.id)
    }

    #[tokio::test]
    async fn send_stores_as_the_ticket_name_and_publishes_after() {
        let state = state(Arc::new(MemoryStore::new(100)));
        let group = GroupId::everyone();
        let mut sub = state.fanout.subscribe(&group);
        let joined = join(&state, &group, " ada ").unwrap();
        assert_eq!(joined.name, "ada");
        let msg = send(&state, &group, &joined.ticket, " hello ").await.unwrap();
        assert_eq!((msg.id, msg.user.as_str(), msg.text.as_str()), (1, "ada", "hello"));
        assert_eq!(next_now(&mut sub).await, Some(1));
    }

    #[tokio::test]
    async fn refused_and_failed_sends_store_and_publish_nothing() {
        let memory = Arc::new(MemoryStore::new(100));
        let ok_state = state(memory.clone());
        let group = GroupId::everyone();
        let mut sub = ok_state.fanout.subscribe(&group);
        let ticket = join(&ok_state, &group, "ada").unwrap().ticket;

        let too_long = send(&ok_state, &group, &ticket, "12345678901").await.unwrap_err();
        assert_eq!(too_long.kind, ErrorKind::InvalidInput);
        let blank = send(&ok_state, &group, &ticket, "   ").await.unwrap_err();
        assert_eq!(blank.kind, ErrorKind::InvalidInput);
        let forged = send(&ok_state, &group, "not-a-ticket", "hi").await.unwrap_err();
        assert_eq!(forged.kind, ErrorKind::BadTicket);
        assert_eq!(memory.last_id().await.unwrap(), 0);
        assert_eq!(next_now(&mut sub).await, None);

        let broken = state(Arc::new(BrokenStore));
        let mut broken_sub = broken.fanout.subscribe(&group);
        let ticket = join(&broken, &group, "ada").unwrap().ticket;
        let err = send(&broken, &group, &ticket, "hi").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(next_now(&mut broken_sub).await, None);
    }

    #[tokio::test]
    async fn list_pages_and_rejects_bad_since() {
        let state = state(Arc::new(MemoryStore::new(100)));
        let group = GroupId::everyone();
        let ticket = join(&state, &group, "ada").unwrap().ticket;
        for i in 0..5 {
            send(&state, &group, &ticket, &format!("m{i}")).await.unwrap();
        }
        let ids = |page: Arc<Page>| page.messages.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(list(&state, None, None).await.unwrap()), vec![3, 4, 5]);
        assert_eq!(ids(list(&state, Some("1"), None).await.unwrap()), vec![2, 3, 4]);
        assert_eq!(ids(list(&state, Some("5"), None).await.unwrap()), Vec::<u64>::new());
        assert_eq!(ids(list(&state, None, Some("3")).await.unwrap()), vec![1, 2]);
        assert_eq!(ids(list(&state, Some(" "), Some("")).await.unwrap()), vec![3, 4, 5]);
        assert_eq!(list(&state, Some("abc"), None).await.unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(list(&state, Some("-1"), None).await.unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(list(&state, None, Some("x")).await.unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(list(&state, Some("1"), Some("3")).await.unwrap_err().kind, ErrorKind::BadRequest);
    }
}
