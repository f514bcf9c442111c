//! What replicas on one Redis share besides the log: the send budgets (`send_limit`), the per-browser stream cap
//! (`stream_leases`), the ticket secret (`secret`) and whose turn it is to prune the log (`retention_lease`). Each is a Lua script run on Redis's clock (`TIME`), so
//! replicas whose clocks disagree still enforce one rule, and each key lives under the deployment's `redis-prefix`.
//!
//! Every key here either expires by itself (budgets, leases) or is one per deployment (the secret, the retention
//! lease), so what Redis
//! holds for these limits stays bounded however many tickets, browsers or replicas come and go.
//!
//! A Redis failure is [`LinkError`], answered 503 `unavailable`: a limit that cannot be checked refuses, it never
//! lets a request through unchecked and never falls back to a per-process limit (which would multiply the budget by
//! the number of replicas).

pub mod retention_lease;
pub mod secret;
pub mod send_limit;
pub mod stream_leases;

/// The test Redis, one implementation (included once, by `store`).
#[cfg(test)]
pub(crate) use crate::server::store::test_redis;

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, ScriptInvocation};

use crate::server::observe;
use crate::server::store::redis::Keys;
use crate::shared::error::{ApiError, ErrorKind};

/// Longest a limit check may wait for Redis (a reconnect attempt included) before the request is answered 503.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// Redis did not answer, or answered something a script never returns.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct LinkError(String);

/// The one place a limit's Redis failure becomes an answer: the client gets 503; the cause goes to the log once
/// per outage, not per request (`observe::backend_failed`).
impl From<LinkError> for ApiError {
    fn from(err: LinkError) -> Self {
        observe::backend_failed("a limit shared by the replicas", &err);
        ApiError::new(ErrorKind::Unavailable, "The server cannot check its limits right now; try again shortly.")
    }
}

/// A managed connection to the deployment's Redis and its key prefix. Cheap to clone (the connection multiplexes).
#[derive(Clone)]
pub struct Link {
    conn: ConnectionManager,
    prefix: String,
}

impl Link {
    /// Connects lazily: made while Redis is down, every call fails (503) until Redis answers. Only a malformed
    /// URL fails here. Needs a Tokio runtime.
    pub fn open(url: &str, prefix: &str) -> Result<Self, String> {
        let conn = crate::server::store::redis::managed(crate::server::store::redis::client(url)?)?;
        Ok(Self { conn, prefix: prefix.to_owned() })
    }

    /// `PREFIX:name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The pub/sub channel every replica's receiver reads (`bus::redis`): the store's, by its own key naming.
    pub fn notices(&self) -> String {
        Keys::new(&self.prefix).notices()
    }

    /// Runs a prepared script (EVALSHA, loading it again after a Redis restart), within [`COMMAND_TIMEOUT`].
    pub async fn invoke<T: FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        within(call.invoke_async(&mut conn)).await
    }

    /// Publishes `payload` on `channel`, within [`COMMAND_TIMEOUT`]; answers how many connections heard it.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<u64, LinkError> {
        let mut conn = self.conn.clone();
        within(redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut conn)).await
    }
}

async fn within<T>(answer: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, LinkError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
        Ok(answer) => answer.map_err(|err| LinkError(err.to_string())),
        Err(_) => Err(LinkError(format!("no answer within {COMMAND_TIMEOUT:?}"))),
    }
}

/// A duration as a script's milliseconds: at least 1 (`PX 0` is an error), at most what fits.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// 64 random bits, hex: names this process among the replicas (in stream leases and the retention lease).
pub fn replica_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The `PREFIX` part a test uses: its own, so tests sharing a server could not see each other's keys.
#[cfg(test)]
pub(crate) fn test_link(redis: &test_redis::TestRedis) -> Link {
    Link::open(&redis.url(), "test").expect("a redis URL")
}
