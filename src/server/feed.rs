//! The feed's use cases: join (with a typed name, or with a token of the deployer's backend), send, read a page
//! (`list`, or `ready` when it is made already), and the limits the page checks. Plain functions over the state and domain values (the caller's `GroupId`, the ticket, text and keys
//! as the tab sent them, a `PageKey`), answering a domain value or an `ApiError`: no axum or leptos type comes in or
//! goes out. Every edge calls them (the server functions in `shared::api`, the route and the shortcut in
//! `messages`), and the tests below call them without HTTP. They import the store, the broker and the page cache,
//! never a handler.

use std::net::IpAddr;
use std::sync::Arc;

use crate::server::access::{members_only, Audience};
use crate::server::api_keys::ApiKey;
use crate::server::identity::{self, Grant};
use crate::server::pages::{expires, Fresh, Page, PageKey};
use crate::server::state::AppState;
use crate::server::store::Draft;
use crate::server::ticket::{now_secs, SignedIn, TicketError, TicketId};
use crate::server::{group::GroupId, observe};
use crate::shared::domain::{FeedName, FEED_NAME_RULE};
use crate::shared::domain::{Joined, Message, MessageText, PageLimits, SendKey, Source, Username};
use crate::shared::error::{ApiError, ErrorKind};

/// Accepts `raw_name` (trimmed and checked, `Username::parse`) and signs a ticket for it in `group`. Where tabs
/// join with tokens only (`join = token`), a typed name is no sign-in: 401.
/// A feed that takes signed-in tabs only (`access`: `read` or `write` is `token`) refuses a typed name too (403).
pub fn join(state: &AppState, group: &GroupId, feed: &FeedName, raw_name: &str) -> Result<Joined, ApiError> {
    if !state.sign_in.mode.takes_names() {
        return Err(ApiError::new(
            ErrorKind::Unauthorized,
            "This server takes no typed names: sign in through the site, which hands this page a token.",
        ));
    }
    if state.limits.feeds.access.of(feed).signed_in_only() {
        return Err(members_only(feed));
    }
    let name = Username::parse(raw_name)?;
    let ticket = state.tickets.issue(group, &name);
    Ok(Joined { name: name.as_str().to_owned(), ticket, source: Source::Anonymous, expires: None, pass: None })
}

/// Whether this reader may read `feed` (its pages, who is here, its notices): anyone may read a feed that is not
/// private; a private one takes the read pass a join with a token that grants it handed out (`pass`). 403 without
/// one or with one for another feed, 401 once it has expired (the tab signs in again). The refusal says no more
/// than that the feed is private, which its name in the settings already says: nothing of what it holds.
pub fn readable(state: &AppState, feed: &FeedName, pass: Option<&str>) -> Result<(), ApiError> {
    if !state.limits.feeds.access.of(feed).private() {
        return Ok(());
    }
    let Some(pass) = pass else { return Err(members_only(feed)) };
    match state.tickets.check_pass(feed, pass, now_secs()) {
        Ok(()) => Ok(()),
        Err(TicketError::Expired) => Err(ApiError::new(
            ErrorKind::Unauthorized,
            format!("Your sign-in for the feed {feed} has expired; open it again from the site that signs you in."),
        )),
        Err(_) => Err(members_only(feed)),
    }
}

/// Joins `feed`'s page with `raw_token`, a token of the deployer's backend (`identity::verify`: 401 for any token it
/// refuses). The name is the token's; the ticket (v2) carries its subject, so what it sends is
/// `Source::Verified`, and expires with the token, never later. A token whose write grant is a list must cover
/// `feed` (403), and its ticket may post there only. With `join = anonymous` a token is a 400: this server takes
/// none. Nothing is stored either way.
pub fn join_with_token(
    state: &AppState,
    group: &GroupId,
    feed: &FeedName,
    raw_token: &str,
) -> Result<Joined, ApiError> {
    let keys = match &state.sign_in.keys {
        Some(keys) if state.sign_in.mode.takes_tokens() => keys,
        _ => {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "This server takes no sign-in tokens (join = anonymous); join with a name.",
            ))
        }
    };
    let identity = identity::verify(keys, raw_token, now_secs()).map_err(|err| {
        // The reason, never the token: a client's fault, so not above debug.
        tracing::debug!(reason = %err, "sign-in token refused");
        ApiError::from(err)
    })?;
    let access = state.limits.feeds.access.of(feed);
    if access.private() && !identity.grants.read.covers(feed) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("Your sign-in does not let you read the feed {feed}."),
        ));
    }
    let only = match &identity.grants.write {
        // A ticket for a private feed is for that feed only: its grants were checked against this one.
        Grant::Any if !access.private() => None,
        grant if grant.covers(feed) => Some(feed),
        _ => {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                format!("Your sign-in does not let you post in the feed {feed}."),
            ))
        }
    };
    let signed = SignedIn { subject: &identity.subject, feed: only, expires: identity.expires };
    let (ticket, expires) = state.tickets.issue_signed(group, &identity.name, &signed);
    let pass = access.private().then(|| state.tickets.issue_pass(feed, expires));
    Ok(Joined {
        name: identity.name.as_str().to_owned(),
        ticket,
        source: Source::Verified(identity.subject),
        expires: Some(expires),
        pass,
    })
}

/// What the page needs of the settings: the longest message, so it can count characters and refuse early; how tabs
/// join, and where a sign-in is renewed.
pub fn limits(state: &AppState) -> PageLimits {
    let sign_in = &state.sign_in;
    let refresh_url = sign_in.refresh_url.clone().filter(|_| sign_in.mode.takes_tokens());
    PageLimits { max_message_chars: state.limits.max_message_chars, join: sign_in.mode, refresh_url }
}

/// Appends and announces, as one step of the broker's: nothing is announced unless the append succeeded, and the
/// hub forgets the cached pages when the notice is delivered, before any tab hears of it.
///
/// `raw_key` is the tab's idempotency key (blank: none): a repeat by the same ticket answers the first message and
/// publishes nothing; the same key from another ticket is another message (`bound_to`).
///
/// A send to a feed that holds nothing yet creates it: only a feed that may exist (`feeds = listed`), while fewer
/// than `max-feeds` hold messages, within the caller's address's budget of new feeds (`address`).
pub async fn send(
    state: &AppState,
    feed: &FeedName,
    group: &GroupId,
    address: IpAddr,
    ticket: &str,
    raw_text: &str,
    raw_key: &str,
) -> Result<Message, ApiError> {
    counted(append(state, feed, group, address, ticket, raw_text, raw_key).await)
}

/// Counts a send's outcome in the metrics (appended, or refused by its error's code) and passes it on: a tab's send
/// and a backend's publish are counted alike.
fn counted<T>(outcome: Result<T, ApiError>) -> Result<T, ApiError> {
    match &outcome {
        Ok(_) => observe::appended(),
        Err(err) => observe::refused(err.kind.code()),
    }
    outcome
}

async fn append(
    state: &AppState,
    feed: &FeedName,
    group: &GroupId,
    address: IpAddr,
    ticket: &str,
    raw_text: &str,
    raw_key: &str,
) -> Result<Message, ApiError> {
    let ticket = state
        .tickets
        .authenticate(group, ticket)
        .map_err(|err| ApiError::new(ErrorKind::BadTicket, err.to_string()))?;
    if let Some(only) = ticket.feed.as_ref().filter(|only| *only != feed) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("Your sign-in lets you post in the feed {only} only, not in {feed}."),
        ));
    }
    // A private feed takes only a ticket for it (a join checked the token's grants for it); one that takes posts
    // from signed-in tabs only, any signed-in ticket that may post there.
    let access = state.limits.feeds.access.of(feed);
    let verified = matches!(ticket.source, Source::Verified(_));
    if (access.private() && ticket.feed.as_ref() != Some(feed)) || (access.write == Audience::Token && !verified) {
        return Err(members_only(feed));
    }
    let text = MessageText::parse(raw_text, state.limits.max_message_chars)?;
    let key = SendKey::parse(raw_key)?;
    if let Some(throttle) = &state.throttle {
        throttle.check(group, &ticket.id).await?;
    }
    admit_feed(state, feed, address).await?;
    let key = key.map(|key| bound_to(&ticket.id, &key));
    let address = address.to_string();
    let draft = Draft {
        feed,
        group: group.as_str(),
        author: &ticket.author,
        text: &text,
        key: key.as_ref(),
        source: &ticket.source,
        address: &address,
    };
    let message = state.broker.append(draft).await?.message;
    state.limits.feeds.remember(feed);
    Ok(message)
}

/// What a backend sent through the publish API, as it wrote it: the author to show, the text, and its idempotency
/// key (blank: none).
pub struct Publish<'a> {
    pub author: &'a str,
    pub text: &'a str,
    pub key: &'a str,
}

/// A backend's send with an API key (`api_keys`): the same path as a tab's (the text's rules, the feed's admission,
/// an append through the broker, so every tab is told), stored as `Source::Service(the key's name)`. The key must
/// cover `feed` (403) and have budget left (429); `author` follows the name rules. A repeated idempotency key
/// answers the first message, with `false` (nothing appended); keys are bound to the API key, so two API keys never
/// collide. Checked in that order, and nothing is stored unless all pass.
pub async fn publish(
    state: &AppState,
    feed: &FeedName,
    api_key: &ApiKey,
    address: IpAddr,
    sent: Publish<'_>,
) -> Result<(Message, bool), ApiError> {
    counted(publish_checked(state, feed, api_key, address, sent).await)
}

async fn publish_checked(
    state: &AppState,
    feed: &FeedName,
    api_key: &ApiKey,
    address: IpAddr,
    sent: Publish<'_>,
) -> Result<(Message, bool), ApiError> {
    api_key.may_use(feed)?;
    let author = Username::parse(sent.author)?;
    let text = MessageText::parse(sent.text, state.limits.max_message_chars)?;
    let key = SendKey::parse(sent.key)?;
    state.api_keys.take(api_key).await?;
    admit_feed(state, feed, address).await?;
    let key = key.map(|key| bound_to_api_key(&api_key.name, &key));
    let source = Source::Service(api_key.name.clone());
    // Announced to every tab of the feed, whatever the scope (a backend speaks to everyone who reads the feed); a
    // send key is remembered per group, and is bound to the API key above.
    let group = GroupId::every_follower();
    let draft = Draft {
        feed,
        group: group.as_str(),
        author: &author,
        text: &text,
        key: key.as_ref(),
        source: &source,
        address: "",
    };
    let appended = state.broker.append(draft).await?;
    state.limits.feeds.remember(feed);
    Ok((appended.message, appended.fresh))
}

/// An API send's idempotency key as the store remembers it: bound to the API key's name (as `bound_to` binds a
/// tab's to its ticket), so one API key's keys never answer another's messages.
fn bound_to_api_key(name: &str, key: &SendKey) -> SendKey {
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::new().chain_update(b"api-key\0").chain_update(name).chain_update(b"\0").chain_update(key.as_str());
    SendKey::from_digest(digest.finalize().into())
}

/// A feed that may take this send: one known to hold messages, or one that may exist and, if it holds nothing yet
/// (this send creates it), while fewer than `max-feeds` hold messages and within the address's new-feed budget.
async fn admit_feed(state: &AppState, feed: &FeedName, address: IpAddr) -> Result<(), ApiError> {
    let gate = &state.limits.feeds;
    if gate.known(feed) {
        return Ok(());
    }
    if !gate.may_exist(feed) {
        return Err(no_such_feed(feed));
    }
    if state.store.last_id(feed).await? > 0 {
        gate.remember(feed);
        return Ok(());
    }
    if feeds_holding_messages(state, gate.max).await? >= gate.max {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            format!("This server holds as many feeds as it may ({}); post in an existing one.", gate.max),
        ));
    }
    state.peers.take_new_feed(address).await
}

/// 404: this deployment has no such feed (`feeds = listed`).
pub fn no_such_feed(feed: &FeedName) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("There is no feed named {feed} here."))
}

/// The feed a request's path names, if it may exist here: 404 for a name no feed may have (saying what one may be)
/// and for one `feeds = listed` does not list.
pub fn named(state: &AppState, raw: &str) -> Result<FeedName, ApiError> {
    let feed = FeedName::parse(raw).ok_or_else(|| ApiError::new(ErrorKind::NotFound, FEED_NAME_RULE))?;
    if state.limits.feeds.may_exist(&feed) {
        Ok(feed)
    } else {
        Err(no_such_feed(&feed))
    }
}

/// How many feeds hold messages, counted up to `most` (a page of names at a time).
async fn feeds_holding_messages(state: &AppState, most: usize) -> Result<usize, ApiError> {
    const PAGE: usize = 1_000;
    let (mut count, mut after) = (0, None::<FeedName>);
    while count < most {
        let page = state.store.feeds(after.as_ref(), PAGE).await?;
        count += page.len();
        if page.len() < PAGE {
            break;
        }
        after = page.last().cloned();
    }
    Ok(count)
}

/// `key` as the store remembers it: bound to the ticket that sent it (SHA-256 over the ticket's MAC, which only the
/// server can make, and the key). The store keeps a key per group; without this, whoever learned a key (Bob, or
/// another ticket of the same browser) could send with it and be answered the first message while his own text is
/// dropped. The digest is one-way, so the stored key reveals neither the ticket nor the tab's key.
fn bound_to(ticket: &TicketId, key: &SendKey) -> SendKey {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(b"send-key\0").chain_update(ticket.as_bytes()).chain_update(key.as_str());
    SendKey::from_digest(digest.finalize().into())
}

/// One page of the log (`key`), of the log's current epoch. Identical concurrent requests share one store read
/// (`PageCache`); a settled page is shared with every later request that names `epoch` too.
pub async fn list(state: &AppState, feed: &FeedName, key: PageKey, epoch: Option<&str>) -> Result<Arc<Page>, ApiError> {
    let (store, limit, max_bytes) = (&state.store, state.limits.page_size, state.limits.page_bytes);
    let horizon = state.limits.horizon;
    let result = state
        .hub
        .pages()
        .get(feed, key, epoch, || async move {
            // The epoch first: a page is never labelled with an epoch older than its messages.
            let epoch = store.epoch(feed).await?;
            // A page read forward keeps its oldest messages (the tab asks again from its last id); one read backward
            // keeps its newest, next to what the tab shows (it asks for older ones from its first id).
            let (messages, settled) = match key {
                PageKey::Since(after) => {
                    (within_bytes(store.since(feed, after, limit).await?, max_bytes, false), false)
                }
                PageKey::Range { since, until } => {
                    range(store.since(feed, since, limit).await?, since, until, max_bytes)
                }
                PageKey::Before(before) => {
                    (within_bytes(store.before(feed, before, limit).await?, max_bytes, true), false)
                }
                PageKey::Latest => (within_bytes(store.latest(feed, limit).await?, max_bytes, true), false),
            };
            let expires = settled.then(|| expires(&messages, horizon)).flatten();
            Ok(Fresh { epoch, messages, settled, expires })
        })
        .await;
    Ok(result?)
}

/// The page `list` would answer, if it is made already (nearly every refetch after a notice but the first): no read,
/// no wait. `None`: ask `list`.
pub fn ready(state: &AppState, feed: &FeedName, key: PageKey, epoch: Option<&str>) -> Option<Arc<Page>> {
    state.hub.pages().ready(feed, key, epoch)
}

/// The part of `read` (the messages after `since`, in id order) up to `until`, and whether that page is settled:
/// the same URL can never answer other bytes. Ids are given in order and a notice comes only once its message is
/// stored, so every id below a stored one is final. A page is settled only when it holds the whole range: it starts
/// at `since`'s successor (so retention, which deletes the oldest first, has taken nothing of it) and reaches
/// `until` (something at or past `until` is stored, and no bound cut the page short). A page cut short by the count
/// or the bytes, or one whose start retention deleted, may answer otherwise later, so it is not settled.
fn range(read: Vec<Message>, since: u64, until: u64, max_bytes: usize) -> (Vec<Message>, bool) {
    let reached = read.last().is_some_and(|last| last.id >= until);
    let whole = read.first().is_some_and(|first| Some(first.id) == since.checked_add(1));
    let upto: Vec<Message> = read.into_iter().take_while(|message| message.id <= until).collect();
    let count = upto.len();
    let page = within_bytes(upto, max_bytes, false);
    let cut = page.len() < count;
    (page, reached && whole && !cut)
}

/// The longest run of `page` (in id order) from its oldest end, or its newest when `newest`, whose JSON array fits
/// in `max_bytes`; at least one message, so the tab always makes progress.
fn within_bytes(mut page: Vec<Message>, max_bytes: usize, newest: bool) -> Vec<Message> {
    let mut used: usize = 2; // the brackets
    let size = |message: &Message| serde_json::to_vec(message).map_or(usize::MAX, |json| json.len() + 1);
    let mut fits = |message: &Message| {
        used = used.saturating_add(size(message));
        used <= max_bytes
    };
    let kept = if newest {
        page.iter().rev().take_while(|m| fits(m)).count()
    } else {
        page.iter().take_while(|m| fits(m)).count()
    };
    let kept = kept.max(1).min(page.len());
    if newest {
        page.split_off(page.len() - kept)
    } else {
        page.truncate(kept);
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    use crate::server::group::Audience;
    use crate::server::store::{Appended, FeedStore, MemoryStore, StoreError};
    use futures::StreamExt;

    /// A store whose appends always fail, to prove that a failed send publishes nothing.
    struct BrokenStore;

    #[async_trait::async_trait]
    impl FeedStore for BrokenStore {
        async fn append(&self, _: Draft<'_>) -> Result<Appended, StoreError> {
            Err(StoreError::Unavailable("disk on fire".into()))
        }
        async fn epoch(&self, _: &FeedName) -> Result<String, StoreError> {
            Ok("e".into())
        }
        async fn since(&self, _: &FeedName, _: u64, _: usize) -> Result<Vec<Message>, StoreError> {
            Ok(vec![])
        }
        async fn before(&self, _: &FeedName, _: u64, _: usize) -> Result<Vec<Message>, StoreError> {
            Ok(vec![])
        }
        async fn latest(&self, _: &FeedName, _: usize) -> Result<Vec<Message>, StoreError> {
            Ok(vec![])
        }
        async fn prune(&self, _: &FeedName, _: usize, _: Option<time::OffsetDateTime>) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn last_id(&self, _: &FeedName) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn feeds(&self, _: Option<&FeedName>, _: usize) -> Result<Vec<FeedName>, StoreError> {
            Ok(vec![])
        }
        async fn remove(&self, _: &FeedName, _: &[u64]) -> Result<crate::server::store::Removal, StoreError> {
            Err(StoreError::Unavailable("disk on fire".into()))
        }
        async fn recent(&self, _: &FeedName, _: usize) -> Result<Vec<crate::server::store::Sent>, StoreError> {
            Ok(vec![])
        }
    }

    fn state(store: Arc<dyn FeedStore>) -> AppState {
        state_with(store, None)
    }

    fn state_with(store: Arc<dyn FeedStore>, throttle: Option<crate::server::throttle::SendThrottle>) -> AppState {
        crate::server::state::for_tests(store, throttle)
    }

    /// A page named as a request's query names it.
    async fn list_raw(state: &AppState, since: Option<&str>, before: Option<&str>) -> Result<Arc<Page>, ApiError> {
        list(state, &FeedName::main(), PageKey::parse(since, before, None)?, None).await
    }

    async fn next_now(sub: &mut crate::server::hub::Subscription) -> Option<u64> {
        let notice = tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await.ok().flatten();
        notice.map(|notice| notice.id)
    }

    #[tokio::test]
    async fn send_stores_as_the_ticket_name_and_publishes_after() {
        let state = state(Arc::new(MemoryStore::new(100)));
        let group = GroupId::everyone();
        let mut sub = state.hub.subscribe(&Audience::main(group.clone()));
        let joined = join(&state, &group, &FeedName::main(), " ada ").unwrap();
        assert_eq!(joined.name, "ada");
        let msg = send(&state, &FeedName::main(), &group, HOME, &joined.ticket, " hello ", "").await.unwrap();
        assert_eq!((msg.id, msg.user.as_str(), msg.text.as_str()), (1, "ada", "hello"));
        assert_eq!(next_now(&mut sub).await, Some(1));
    }

    #[tokio::test]
    async fn refused_and_failed_sends_store_and_publish_nothing() {
        let memory = Arc::new(MemoryStore::new(100));
        let ok_state = state(memory.clone());
        let group = GroupId::everyone();
        let mut sub = ok_state.hub.subscribe(&Audience::main(group.clone()));
        let ticket = join(&ok_state, &group, &FeedName::main(), "ada").unwrap().ticket;

        let too_long = send(&ok_state, &FeedName::main(), &group, HOME, &ticket, "12345678901", "").await.unwrap_err();
        assert_eq!(too_long.kind, ErrorKind::InvalidInput);
        let blank = send(&ok_state, &FeedName::main(), &group, HOME, &ticket, "   ", "").await.unwrap_err();
        assert_eq!(blank.kind, ErrorKind::InvalidInput);
        let forged = send(&ok_state, &FeedName::main(), &group, HOME, "not-a-ticket", "hi", "").await.unwrap_err();
        assert_eq!(forged.kind, ErrorKind::BadTicket);
        assert_eq!(memory.last_id(&FeedName::main()).await.unwrap(), 0);
        assert_eq!(next_now(&mut sub).await, None);

        let broken = state(Arc::new(BrokenStore));
        let mut broken_sub = broken.hub.subscribe(&Audience::main(group.clone()));
        let ticket = join(&broken, &group, &FeedName::main(), "ada").unwrap().ticket;
        let err = send(&broken, &FeedName::main(), &group, HOME, &ticket, "hi", "").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(next_now(&mut broken_sub).await, None);
    }

    /// Bob learned Ada's key (scope `everyone`), or Ada's browser holds a second ticket: a send with that key is
    /// its own message, stored and announced, while Ada's repeat still answers her first message only.
    #[tokio::test]
    async fn a_send_key_is_its_tickets_and_another_ticket_with_it_sends_its_own_message() {
        let memory = Arc::new(MemoryStore::new(100));
        let state = state(memory.clone());
        let group = GroupId::everyone();
        let mut sub = state.hub.subscribe(&Audience::main(group.clone()));
        let ada = join(&state, &group, &FeedName::main(), "ada").unwrap().ticket;
        let bob = join(&state, &group, &FeedName::main(), "bob").unwrap().ticket;
        let first = send(&state, &FeedName::main(), &group, HOME, &ada, "hello", "k-1").await.unwrap();
        assert_eq!(next_now(&mut sub).await, Some(first.id));
        let bobs = send(&state, &FeedName::main(), &group, HOME, &bob, "mine", "k-1").await.unwrap();
        assert_eq!((bobs.id, bobs.user.as_str(), bobs.text.as_str()), (2, "bob", "mine"));
        assert_eq!(next_now(&mut sub).await, Some(2), "Bob's message is announced");
        let again = send(&state, &FeedName::main(), &group, HOME, &ada, "hello", "k-1").await.unwrap();
        assert_eq!(again, first, "Ada's retry is still answered her first message");
        let texts: Vec<String> =
            memory.since(&FeedName::main(), 0, 10).await.unwrap().into_iter().map(|m| m.text).collect();
        assert_eq!(texts, ["hello", "mine"]);
        // a bound key is a well-formed key of its own, the same for the same ticket and key
        let id = state.tickets.authenticate(&group, &ada).unwrap().id;
        let key = SendKey::parse("k-1").unwrap().unwrap();
        assert_eq!(bound_to(&id, &key), bound_to(&id, &key));
        assert_eq!(SendKey::parse(bound_to(&id, &key).as_str()).unwrap(), Some(bound_to(&id, &key)));
        assert_ne!(bound_to(&id, &key), bound_to(&id, &SendKey::parse("k-2").unwrap().unwrap()));
    }

    /// Two replicas (two states, one Redis): a burst split over them is limited as one, with the same refusal.
    #[tokio::test]
    async fn a_burst_split_over_two_replicas_is_limited_as_one() {
        use crate::server::link::{test_redis::TestRedis, Link, RedisTarget};
        use crate::server::throttle::{RedisThrottle, SendThrottle};
        let mut redis = TestRedis::start();
        let url = redis.url();
        let replica = || {
            let link = Link::open(&RedisTarget { url: url.clone(), prefix: "test".into() }).unwrap();
            state_with(Arc::new(MemoryStore::new(100)), RedisThrottle::new(link, 1, 3, true).map(SendThrottle::Redis))
        };
        let (a, b) = (replica(), replica());
        let group = GroupId::new("g");
        let ticket = join(&a, &group, &FeedName::main(), "ada").unwrap().ticket;
        for (i, replica) in [&a, &b, &a].into_iter().enumerate() {
            send(replica, &FeedName::main(), &group, HOME, &ticket, &format!("m{i}"), "").await.unwrap();
        }
        let refused = send(&b, &FeedName::main(), &group, HOME, &ticket, "too many", "").await.unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::RateLimited, 429));
        assert!(refused.message.contains("at most 1 messages a second (3 at once)"), "{}", refused.message);
        assert_eq!(refused.retry_after().unwrap(), "1");
        assert_eq!(b.store.last_id(&FeedName::main()).await.unwrap(), 1, "the refused send stored nothing");
        redis.kill9();
        let down = send(&a, &FeedName::main(), &group, HOME, &ticket, "down", "").await.unwrap_err();
        assert_eq!((down.kind, down.status()), (ErrorKind::Unavailable, 503), "never a pass, never a 500");
        assert_eq!(a.store.last_id(&FeedName::main()).await.unwrap(), 2, "nothing stored without the check");
    }

    #[tokio::test]
    async fn list_pages_and_rejects_bad_since() {
        let state = state(Arc::new(MemoryStore::new(100)));
        let group = GroupId::everyone();
        let ticket = join(&state, &group, &FeedName::main(), "ada").unwrap().ticket;
        for i in 0..5 {
            send(&state, &FeedName::main(), &group, HOME, &ticket, &format!("m{i}"), "").await.unwrap();
        }
        let ids = |page: Arc<Page>| page.messages.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(list_raw(&state, None, None).await.unwrap()), vec![3, 4, 5]);
        assert_eq!(ids(list_raw(&state, Some("1"), None).await.unwrap()), vec![2, 3, 4]);
        assert_eq!(ids(list_raw(&state, Some("5"), None).await.unwrap()), Vec::<u64>::new());
        assert_eq!(ids(list_raw(&state, None, Some("3")).await.unwrap()), vec![1, 2]);
        assert_eq!(ids(list_raw(&state, Some(" "), Some("")).await.unwrap()), vec![3, 4, 5]);
        assert_eq!(list_raw(&state, Some("abc"), None).await.unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(list_raw(&state, Some("-1"), None).await.unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(list_raw(&state, None, Some("x")).await.unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(list_raw(&state, Some("1"), Some("3")).await.unwrap_err().kind, ErrorKind::BadRequest);
    }

    #[tokio::test]
    async fn pages_end_early_rather_than_exceed_their_bytes_and_hold_at_least_one_message() {
        let state = state(Arc::new(MemoryStore::new(100)));
        let group = GroupId::everyone();
        let ticket = join(&state, &group, &FeedName::main(), "ada").unwrap().ticket;
        for text in ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"] {
            send(&state, &FeedName::main(), &group, HOME, &ticket, text, "").await.unwrap();
        }
        let all = state.store.since(&FeedName::main(), 0, 10).await.unwrap();
        let one = serde_json::to_vec(&all[0]).unwrap().len();
        let texts = |page: Vec<Message>| page.into_iter().map(|m| m.text).collect::<Vec<_>>();
        // room for two and a half messages: two, from the end the tab reads on from
        let budget = 2 + (one + 1) * 5 / 2;
        assert_eq!(texts(within_bytes(all.clone(), budget, false)), ["aaaaaaaaaa", "bbbbbbbbbb"]);
        assert_eq!(texts(within_bytes(all.clone(), budget, true)), ["cccccccccc", "dddddddddd"]);
        assert_eq!(texts(within_bytes(all.clone(), 1, true)), ["dddddddddd"], "at least one");
        assert_eq!(within_bytes(all.clone(), 1 << 20, false), all);
        assert!(within_bytes(Vec::new(), 1, false).is_empty());
        let json = serde_json::to_vec(&within_bytes(all.clone(), budget, false)).unwrap();
        assert!(json.len() <= budget, "{} > {budget}", json.len());
    }

    /// A range page is settled only when it holds its whole range: from `since`'s successor (retention took
    /// nothing of it) up to `until` (something at or past it is stored and no bound cut the page short).
    #[test]
    fn a_range_is_settled_only_when_it_holds_the_whole_range() {
        let message = |id: u64| Message {
            id,
            user: "ada".into(),
            text: "x".into(),
            at: "2026-12-07T00:00:00Z".into(),
            source: Default::default(),
            removed: false,
        };
        let read = |ids: std::ops::RangeInclusive<u64>| ids.map(message).collect::<Vec<_>>();
        let ids = |page: &[Message]| page.iter().map(|m| m.id).collect::<Vec<_>>();
        let (page, settled) = range(read(4..=9), 3, 6, 1 << 20);
        assert_eq!((ids(&page), settled), (vec![4, 5, 6], true), "whole, and 9 is stored past the end");
        assert!(range(read(4..=6), 3, 6, 1 << 20).1, "reaches `until` exactly");
        assert!(!range(Vec::new(), 3, 3, 1 << 20).1, "nothing stored past it: may still grow");
        let (page, settled) = range(read(4..=5), 3, 1000, 1 << 20);
        assert_eq!((ids(&page), settled), (vec![4, 5], false), "full (or at the top) short of `until`");
        let (page, settled) = range(read(6..=9), 3, 7, 1 << 20);
        assert_eq!((ids(&page), settled), (vec![6, 7], false), "4 and 5 were deleted: not the whole range");
        let (page, settled) = range(read(4..=9), 3, 6, 2 + 2 * (serde_json::to_vec(&message(4)).unwrap().len() + 1));
        assert_eq!((ids(&page), settled), (vec![4, 5], false), "cut short by its bytes");
        // A page lives in caches no longer than retention's `max-age` keeps its oldest message.
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_601_600); // 2026-12-07T00:00:00Z
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(expires(&read(4..=5), Some(hour)), Some(at + hour));
        assert_eq!(expires(&read(4..=5), None), None);
        assert_eq!(expires(&[], Some(hour)), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn runtime() -> tokio::runtime::Runtime {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
        }

        /// Any text, with the characters that make trouble over-represented.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ \t\n\u{0}\u{7}\u{7f}\u{85}\u{200b}\u{202e}\u{301}a-zé<>&\"'.]{0,40}",
                "[a-z]{1,3}".prop_map(|s| s.repeat(700)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Whatever the inputs, join and send answer Ok or a 4xx; a refusal stores and publishes nothing, an
            /// acceptance stores exactly the normalized text under the next id.
            #[test]
            fn join_and_send_never_panic_never_5xx_and_refusals_write_nothing(
                name in text(),
                raw_ticket in text(),
                body in text(),
                use_real_ticket in any::<bool>(),
            ) {
                runtime().block_on(async {
                    let memory = Arc::new(MemoryStore::new(100));
                    let state = state(memory.clone());
                    let group = GroupId::new("g");
                    let mut sub = state.hub.subscribe(&Audience::main(group.clone()));
                    let ticket = match join(&state, &group, &FeedName::main(), &name) {
                        Ok(joined) => {
                            prop_assert!((1..=32).contains(&joined.name.chars().count()));
                            prop_assert!(!joined.name.chars().any(char::is_control));
                            if use_real_ticket { joined.ticket } else { raw_ticket.clone() }
                        }
                        Err(err) => {
                            prop_assert_eq!(err.kind, ErrorKind::InvalidInput);
                            raw_ticket.clone()
                        }
                    };
                    match send(&state, &FeedName::main(), &group, HOME, &ticket, &body, "").await {
                        Ok(message) => {
                            prop_assert_eq!(message.id, 1);
                            let expected: String = unicode_normalization::UnicodeNormalization::nfc(body.trim()).collect();
                            prop_assert_eq!(&message.text, &expected);
                            prop_assert_eq!(next_now(&mut sub).await, Some(1));
                        }
                        Err(err) => {
                            prop_assert!(err.status() < 500, "{:?}", err);
                            prop_assert_eq!(memory.last_id(&FeedName::main()).await.unwrap(), 0);
                            prop_assert_eq!(next_now(&mut sub).await, None);
                        }
                    }
                    Ok(())
                })?;
            }

            #[test]
            fn reading_pages_never_panics_or_fails_with_5xx(since in proptest::option::of(text()), before in proptest::option::of(text())) {
                runtime().block_on(async {
                    let state = state(Arc::new(MemoryStore::new(100)));
                    if let Err(err) = list_raw(&state, since.as_deref(), before.as_deref()).await {
                        prop_assert_eq!(err.kind, ErrorKind::BadRequest);
                    }
                    Ok(())
                })?;
            }

            /// Changing any one character of a ticket never yields another author.
            #[test]
            fn an_altered_ticket_never_speaks_for_someone_else(at in any::<prop::sample::Index>(), with in any::<char>()) {
                let state = state(Arc::new(MemoryStore::new(100)));
                let group = GroupId::new("g");
                let ticket = join(&state, &group, &FeedName::main(), "ada").unwrap().ticket;
                let mut chars: Vec<char> = ticket.chars().collect();
                let i = at.index(chars.len());
                chars[i] = with;
                let altered: String = chars.into_iter().collect();
                if let Ok(name) = state.tickets.verify(&group, &altered) {
                    prop_assert_eq!(name.as_str(), "ada");
                }
            }
        }
    }

    /// A state whose feeds follow `gate` and whose addresses may start `new_feeds` feeds an hour.
    fn gated(gate: crate::server::state::FeedGate, new_feeds: u32) -> AppState {
        use crate::server::state::{services_for_tests, Limits, Services};
        let base = services_for_tests(Arc::new(MemoryStore::new(100)), None);
        AppState::from(Services {
            limits: Limits { feeds: Arc::new(gate), ..base.limits.clone() },
            peers: Arc::new(crate::server::peer::Peers::default().with_new_feeds(new_feeds)),
            ..base
        })
    }

    fn named(name: &str) -> FeedName {
        FeedName::parse(name).unwrap()
    }

    #[tokio::test]
    async fn a_listed_deployment_takes_sends_to_its_feeds_only() {
        let listed = [named("team")].into_iter().collect();
        let state = gated(crate::server::state::FeedGate::new(Some(listed), 100), 100);
        let group = GroupId::everyone();
        let ticket = join(&state, &group, &FeedName::main(), "ada").unwrap().ticket;
        send(&state, &FeedName::main(), &group, HOME, &ticket, "to main", "").await.unwrap();
        send(&state, &named("team"), &group, HOME, &ticket, "to team", "").await.unwrap();
        let refused = send(&state, &named("other"), &group, HOME, &ticket, "to other", "").await.unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::NotFound, 404));
        assert!(refused.message.contains("other"), "{}", refused.message);
        assert_eq!(state.store.last_id(&named("other")).await.unwrap(), 0, "nothing stored");
    }

    #[tokio::test]
    async fn new_feeds_are_bounded_in_all_and_per_address_and_known_ones_are_free() {
        let state = gated(crate::server::state::FeedGate::open(4), 2);
        let group = GroupId::everyone();
        let ticket = join(&state, &group, &FeedName::main(), "ada").unwrap().ticket;
        let there: IpAddr = "192.0.2.7".parse().unwrap();
        send(&state, &FeedName::main(), &group, HOME, &ticket, "main", "").await.unwrap();
        send(&state, &named("a"), &group, HOME, &ticket, "a", "").await.unwrap();
        send(&state, &named("b"), &group, HOME, &ticket, "b", "").await.unwrap();
        let budget = send(&state, &named("c"), &group, HOME, &ticket, "c", "").await.unwrap_err();
        assert_eq!((budget.kind, budget.status()), (ErrorKind::RateLimited, 429), "{}", budget.message);
        assert!(budget.message.contains("2 new feeds"), "{}", budget.message);
        assert_eq!(budget.retry_after().unwrap(), "1800", "a new feed's place comes back in half an hour");
        send(&state, &named("a"), &group, HOME, &ticket, "a again", "").await.expect("a known feed costs nothing");
        send(&state, &named("c"), &group, there, &ticket, "c", "").await.expect("another address has its own budget");
        let full = send(&state, &named("d"), &group, there, &ticket, "d", "").await.unwrap_err();
        assert_eq!((full.kind, full.status()), (ErrorKind::Unavailable, 503), "main, a, b and c: max-feeds is 4");
        assert!(full.message.contains("as many feeds"), "{}", full.message);
        assert_eq!(state.store.last_id(&named("d")).await.unwrap(), 0, "nothing stored for d");
        let (a_ids, b_ids) = (
            state.store.since(&named("a"), 0, 10).await.unwrap(),
            state.store.since(&named("b"), 0, 10).await.unwrap(),
        );
        assert_eq!((a_ids.iter().map(|m| m.id).collect::<Vec<_>>(), b_ids.len()), (vec![1, 2], 1), "ids per feed");
    }

    /// A state whose tabs join with a name or an HS256 token of `SIGNING`.
    fn signing_in(mode: crate::shared::domain::JoinMode) -> AppState {
        use crate::server::identity::{Keys, SignIn};
        use crate::server::state::{services_for_tests, Services};
        let keys = Keys::hs256(SIGNING).unwrap();
        let sign_in = SignIn { mode, keys: Some(keys), refresh_url: None };
        AppState::from(Services { sign_in, ..services_for_tests(Arc::new(MemoryStore::new(100)), None) })
    }

    const SIGNING: &[u8] = b"the deployer's secret, thirty-two bytes or more";

    fn token(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(SIGNING).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    /// A token's join sends as the token's subject; a refused token, a typed name where only tokens are taken, a
    /// token where none are, and a send outside the token's write grant each store and publish nothing.
    #[tokio::test]
    async fn a_token_join_sends_verified_and_every_refusal_stores_nothing() {
        use crate::shared::domain::JoinMode;
        let exp = now_secs() + 600;
        let state = signing_in(JoinMode::Token);
        let group = GroupId::everyone();
        let mut sub = state.hub.subscribe(&Audience::main(group.clone()));
        let claims = serde_json::json!({"sub": "user-42", "name": "Ada", "exp": exp});
        let joined = join_with_token(&state, &group, &FeedName::main(), &token(claims)).unwrap();
        assert_eq!(
            (joined.name.as_str(), &joined.source, joined.expires),
            ("Ada", &Source::Verified("user-42".into()), Some(exp))
        );
        let sent = send(&state, &FeedName::main(), &group, HOME, &joined.ticket, "hi", "").await.unwrap();
        assert_eq!(sent.source, Source::Verified("user-42".into()));
        assert_eq!(state.store.since(&FeedName::main(), 0, 10).await.unwrap()[0].source, sent.source);
        assert_eq!(next_now(&mut sub).await, Some(1));

        let typed = join(&state, &group, &FeedName::main(), "Ada").unwrap_err();
        assert_eq!((typed.kind, typed.status()), (ErrorKind::Unauthorized, 401));
        let expired = serde_json::json!({"sub": "user-42", "name": "Ada", "exp": 1});
        let refused = join_with_token(&state, &group, &FeedName::main(), &token(expired)).unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::Unauthorized, 401));
        let anonymous = signing_in(JoinMode::Anonymous);
        let claims = serde_json::json!({"sub": "user-42", "name": "Ada", "exp": exp});
        let unwanted = join_with_token(&anonymous, &group, &FeedName::main(), &token(claims)).unwrap_err();
        assert_eq!((unwanted.kind, unwanted.status()), (ErrorKind::BadRequest, 400));

        let team = named("team");
        let limited = serde_json::json!({"sub": "u", "name": "Bo", "exp": exp, "feeds": {"write": ["team"]}});
        let outside = join_with_token(&state, &group, &FeedName::main(), &token(limited.clone())).unwrap_err();
        assert_eq!((outside.kind, outside.status()), (ErrorKind::Forbidden, 403));
        let bound = join_with_token(&state, &group, &team, &token(limited)).unwrap().ticket;
        let elsewhere = send(&state, &FeedName::main(), &group, HOME, &bound, "x", "").await.unwrap_err();
        assert_eq!((elsewhere.kind, elsewhere.status()), (ErrorKind::Forbidden, 403));
        assert_eq!(state.store.last_id(&FeedName::main()).await.unwrap(), 1, "nothing more stored");
        assert_eq!(next_now(&mut sub).await, None, "nor announced");
        send(&state, &team, &group, HOME, &bound, "in team", "").await.expect("the feed it was joined for");
    }

    /// A backend's message takes a tab's path: stored with the key's name as its source and announced; a repeat of
    /// its key answers the first message, not fresh, announcing nothing; another API key's same key is its own
    /// message; a feed outside the key's scope, a bad author or text, and an exhausted budget store and announce
    /// nothing.
    #[tokio::test]
    async fn publish_stores_as_the_service_announces_and_refuses_what_the_key_does_not_allow() {
        use crate::server::identity::FeedPattern;
        let memory = Arc::new(MemoryStore::new(100));
        let state = state(memory.clone());
        let orders = FeedName::parse("orders").unwrap();
        let mut sub = state.hub.subscribe(&Audience::new(orders.clone(), GroupId::everyone()));
        let per_minute = std::num::NonZeroU32::new(3).unwrap();
        let scope = || Grant::Only(vec![FeedPattern::parse("orders").unwrap()]);
        let (key, other) = (ApiKey::new("shop", scope(), per_minute), ApiKey::new("billing", scope(), per_minute));
        let sent = |text| Publish { author: "Order bot", text, key: "k-1" };

        let (first, fresh) = publish(&state, &orders, &key, HOME, sent("shipped")).await.unwrap();
        assert!(fresh);
        assert_eq!((first.user.as_str(), &first.source), ("Order bot", &Source::Service("shop".into())));
        assert_eq!(next_now(&mut sub).await, Some(first.id));
        assert_eq!(publish(&state, &orders, &key, HOME, sent("shipped")).await.unwrap(), (first.clone(), false));
        assert_eq!(next_now(&mut sub).await, None, "a repeat announces nothing");
        let (others, fresh) = publish(&state, &orders, &other, HOME, sent("shipped")).await.unwrap();
        assert!(fresh && others.id > first.id && others.source == Source::Service("billing".into()));
        assert_eq!(next_now(&mut sub).await, Some(others.id));

        let refusals = [
            (FeedName::main(), Publish { author: "bot", text: "hi", key: "" }, ErrorKind::Forbidden),
            (orders.clone(), Publish { author: " ", text: "hi", key: "" }, ErrorKind::InvalidInput),
            (orders.clone(), Publish { author: "bot", text: "far too long", key: "" }, ErrorKind::InvalidInput),
            (orders.clone(), Publish { author: "bot", text: "hi", key: "bad key" }, ErrorKind::InvalidInput),
        ];
        for (feed, sent, kind) in refusals {
            assert_eq!(publish(&state, &feed, &key, HOME, sent).await.unwrap_err().kind, kind);
        }
        // Three a minute: the first and its repeat took two, one more, then refused.
        publish(&state, &orders, &key, HOME, Publish { author: "bot", text: "third", key: "" }).await.unwrap();
        assert_eq!(next_now(&mut sub).await, Some(3));
        let over = publish(&state, &orders, &key, HOME, Publish { author: "bot", text: "fourth", key: "" }).await;
        assert_eq!(over.unwrap_err().kind, ErrorKind::RateLimited);
        assert_eq!(memory.last_id(&orders).await.unwrap(), 3, "refusals store nothing");
        assert_eq!(memory.last_id(&FeedName::main()).await.unwrap(), 0);
        assert_eq!(next_now(&mut sub).await, None, "nor announce anything");
    }
}
