//! The deployment's Redis, for every part that keeps something there (the log, the notices, presence, the limits
//! replicas share): one client, one managed connection, the scripts' calls with one timeout, and the key names,
//! every one under the deployment's `redis-prefix` so that several deployments can share a Redis. The notice
//! channel's wire format is [`notice`].
//!
//! The connection is made lazily: a `Link` made while Redis is down fails every call (503 to the client) until
//! Redis answers, and only a malformed URL fails at start-up.

pub mod notice;
#[cfg(test)]
#[path = "../../../tests/support/redis.rs"]
pub(crate) mod test_redis;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ScriptInvocation};

use crate::server::observe;
use crate::shared::domain::FeedName;
use crate::shared::error::{ApiError, ErrorKind};

/// Longest a command may wait for Redis (a reconnect attempt included) before the request is answered 503.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a deployment's data lives in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Key namespace: every key and the channel start with `PREFIX:`.
    pub prefix: String,
}

/// Redis did not answer, or answered something a script never returns.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct LinkError(pub String);

/// A limit's Redis failure as an answer (the store and presence make their own): the client gets 503; the cause
/// goes to the log once per outage, not per request (`observe::backend_failed`).
impl From<LinkError> for ApiError {
    fn from(err: LinkError) -> Self {
        observe::backend_failed("a limit shared by the replicas", &err);
        ApiError::new(ErrorKind::Unavailable, "The server cannot check its limits right now; try again shortly.")
    }
}

/// A managed connection to the deployment's Redis and its key prefix. Cheap to clone (the connection multiplexes).
#[derive(Clone)]
pub struct Link {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl Link {
    /// Connects lazily (see the module doc). Needs a Tokio runtime.
    pub fn open(target: &RedisTarget) -> Result<Self, String> {
        let client = redis::Client::open(target.url.as_str())
            .map_err(|err| format!("setting `redis-url` ({}): {err}", target.url))?;
        // Gives up on a command quickly, so a request waits at most a few seconds before it is answered 503.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|err| err.to_string())?;
        Ok(Self { client, conn, prefix: target.prefix.clone() })
    }

    /// `PREFIX:name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `PREFIX:{feed}:name`: a key of one feed. The feed is a Redis Cluster hash tag, so every key of a feed (and
    /// its notice channel) lives on one slot, and a cluster spreads feeds over its shards.
    pub fn feed_key(&self, feed: &FeedName, name: &str) -> String {
        format!("{}:{{{feed}}}:{name}", self.prefix)
    }

    /// The pub/sub channel of `feed`'s notices, which a replica reads while it has subscribers of the feed.
    pub fn notices(&self, feed: &FeedName) -> String {
        self.feed_key(feed, notice::CHANNEL)
    }

    /// The feed whose notice channel `channel` is (what `notices` made), or `None`.
    pub fn feed_of(&self, channel: &str) -> Option<FeedName> {
        let inner = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        FeedName::parse(inner.strip_suffix(&format!("}}:{}", notice::CHANNEL))?)
    }

    /// A pub/sub connection of its own, subscribed to nothing yet, within [`COMMAND_TIMEOUT`].
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, LinkError> {
        within(self.client.get_async_pubsub()).await
    }

    /// Runs `query` on the managed connection, within [`COMMAND_TIMEOUT`].
    pub async fn run<T, F>(&self, query: impl FnOnce(ConnectionManager) -> F) -> Result<T, LinkError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        within(query(self.conn.clone())).await
    }

    /// Runs a prepared script (EVALSHA, loading it again after a Redis restart), within [`COMMAND_TIMEOUT`].
    pub async fn invoke<T: FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        within(call.invoke_async(&mut conn)).await
    }

    /// Publishes each payload on its feed's notice channel, in order, in one round trip, within
    /// [`COMMAND_TIMEOUT`].
    pub async fn publish(&self, payloads: &[(FeedName, String)]) -> Result<(), LinkError> {
        let mut pipe = redis::pipe();
        for (feed, payload) in payloads {
            pipe.cmd("PUBLISH").arg(self.notices(feed)).arg(payload).ignore();
        }
        let mut conn = self.conn.clone();
        within(pipe.query_async::<()>(&mut conn)).await
    }
}

async fn within<T>(answer: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, LinkError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
        Ok(answer) => answer.map_err(|err| LinkError(err.to_string())),
        Err(_) => Err(LinkError(format!("no answer within {COMMAND_TIMEOUT:?}"))),
    }
}

/// A link to a test server under `prefix` (its own, so tests sharing a server could not see each other's keys).
#[cfg(test)]
pub(crate) fn test_link(redis: &test_redis::TestRedis, prefix: &str) -> Link {
    Link::open(&RedisTarget { url: redis.url(), prefix: prefix.to_owned() }).expect("a redis URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_feed_reads_back_from_its_channel() {
        let link = Link::open(&RedisTarget { url: "redis://127.0.0.1:1".into(), prefix: "blue".into() });
        let Ok(link) = link else { panic!("a valid URL") };
        let feed = FeedName::parse("team-news").unwrap();
        assert_eq!(link.notices(&feed), "blue:{team-news}:notices");
        assert_eq!(link.feed_of(&link.notices(&feed)), Some(feed));
        for other in ["blue:{Team}:notices", "green:{a}:notices", "blue:{a}:log", "blue:notices"] {
            assert_eq!(link.feed_of(other), None, "{other}");
        }
    }
}
