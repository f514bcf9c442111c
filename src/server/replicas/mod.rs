//! What replicas on one Redis share besides the log: the send budgets (`send_limit`), the per-browser stream cap
//! (`stream_leases`), the ticket secret (`secret`) and whose turn it is to prune the log (`retention_lease`). Each is a Lua script run on Redis's clock (`TIME`), so
//! replicas whose clocks disagree still enforce one rule, and each key lives under the deployment's `redis-prefix`.
//!
//! Every key here either expires by itself (budgets, leases) or is one per deployment (the secret, the retention
//! lease), so what Redis
//! holds for these limits stays bounded however many tickets, browsers or replicas come and go.
//!
//! Each talks to Redis through the deployment's `link::Link`. A Redis failure is `LinkError`, answered 503 `unavailable`: a limit that cannot be checked refuses, it never
//! lets a request through unchecked and never falls back to a per-process limit (which would multiply the budget by
//! the number of replicas).

pub mod retention_lease;
pub mod secret;
pub mod send_limit;
pub mod stream_leases;

#[cfg(test)]
pub(crate) use crate::server::link::test_redis;

use std::time::Duration;

#[cfg(test)]
use crate::server::link::Link;

/// A duration as a script's milliseconds: at least 1 (`PX 0` is an error), at most what fits.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// 64 random bits, hex: names this process among the replicas (in stream leases and the retention lease).
pub fn replica_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The link these tests use: prefix `test`.
#[cfg(test)]
pub(crate) fn test_link(redis: &test_redis::TestRedis) -> Link {
    crate::server::link::test_link(redis, "test")
}
