//! Whose turn it is to prune a log the replicas share: the one holding the lease `PREFIX:retention-lease`, a key
//! whose value names the holder (`replica_id`) and which expires on Redis's clock.
//!
//! Every replica asks at each of its retention ticks, with one script ([`HOLD`]): the holder renews its lease (the
//! value is compared first, so a replica whose lease ran out and was taken never renews another's), anyone takes a
//! lease that is free (`SET NX PX`), everyone else waits. Only the holder prunes; after a pass that deleted
//! something its broker publishes `pruned` on the notice channel (`Broker::pruned`), on which every replica forgets
//! its cached pages.
//!
//! The lease lasts [`ROUNDS`] retention periods. The holder renews at every tick, so one late or failed round
//! (a slow Redis: a command may take seconds) does not hand the turn over; a holder that died (or lost Redis) is
//! replaced within at most `ROUNDS + 1` periods, so retention runs late by a few of its own periods at worst, which
//! is the scale its timing matters at. A fixed lease would be either shorter than a long `prune-every` (the lease
//! would lapse between two ticks and the turn would pass from replica to replica, each pruning in turn) or need a
//! renewal clock of its own. Two replicas pruning at once (a pass outliving the lease) would only do the work twice:
//! a trim is idempotent. The key is one per deployment and expires with its holder.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::millis;
use crate::server::link::Link;
use crate::server::pruning::Turn;

/// How many retention periods a lease lasts.
pub const ROUNDS: u32 = 3;

/// `KEYS[1]`: the lease. `ARGV`: this replica, the lease (ms). Answers 1 when this replica holds the lease now
/// (renewed, or taken because it was free), 0 when another does.
const HOLD: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"#;

/// What this replica last knew of the lease (its changes are logged, not every round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Unknown,
    Holding,
    Waiting,
    Failing,
}

/// This replica's side of the lease.
pub struct RetentionLease {
    link: Link,
    key: String,
    replica: String,
    lease: Duration,
    hold: Script,
    known: Mutex<Known>,
}

impl RetentionLease {
    /// `replica` names this process; `every` is retention's period (see the module doc for the lease's length).
    pub fn new(link: Link, replica: String, every: Duration) -> Self {
        let key = link.key("retention-lease");
        Self {
            link,
            key,
            replica,
            lease: every.saturating_mul(ROUNDS),
            hold: Script::new(HOLD),
            known: Mutex::new(Known::Unknown),
        }
    }

    /// Records what this replica knows now; answers whether that changed (changes are logged, rounds are not).
    fn now(&self, known: Known) -> bool {
        let was = std::mem::replace(&mut *self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), known);
        was != known
    }
}

#[async_trait]
impl Turn for RetentionLease {
    async fn mine(&self) -> bool {
        let mut call = self.hold.prepare_invoke();
        call.key(&self.key).arg(&self.replica).arg(millis(self.lease));
        let replica = self.replica.as_str();
        match self.link.invoke::<i64>(&call).await {
            Ok(1) => {
                if self.now(Known::Holding) {
                    tracing::info!(replica, "retention: this replica holds the lease; it prunes");
                }
                true
            }
            Ok(_) => {
                if self.now(Known::Waiting) {
                    tracing::info!(replica, "retention: another replica holds the lease and prunes");
                }
                false
            }
            // The log is on the same Redis: no pass could run now anyway. Said once per outage.
            Err(err) => {
                if self.now(Known::Failing) {
                    tracing::warn!(error = %err, "retention: cannot reach the lease; no pass until Redis answers");
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::replicas::test_link;
    use crate::server::replicas::test_redis::TestRedis;

    fn replica(redis: &TestRedis, name: &str, every_ms: u64) -> RetentionLease {
        RetentionLease::new(test_link(redis), name.into(), Duration::from_millis(every_ms))
    }

    fn holder(redis: &TestRedis) -> Option<String> {
        redis.command(&["GET", "test:retention-lease"]).text().map(str::to_owned)
    }

    #[tokio::test]
    async fn one_replica_holds_the_lease_renews_it_and_another_takes_it_once_it_runs_out() {
        let redis = TestRedis::start();
        let (a, b) = (replica(&redis, "a", 200), replica(&redis, "b", 200));
        assert!(a.mine().await, "a free lease is taken");
        assert!(!b.mine().await, "held by a");
        // a renews for longer than one lease (600 ms): b never gets it.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(a.mine().await);
            assert!(!b.mine().await);
        }
        assert_eq!(holder(&redis).as_deref(), Some("a"));
        let ttl = redis.command(&["PTTL", "test:retention-lease"]).int().unwrap();
        assert!((1..=600).contains(&ttl), "expires on Redis's clock within a lease: {ttl}");
        // a stops renewing (it died): the lease runs out and b takes over; a then waits.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(b.mine().await, "the lease ran out");
        assert!(!a.mine().await, "a comes back to a lease held by b and does not renew it");
        assert_eq!(holder(&redis).as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn redis_unreachable_is_not_a_turn() {
        let mut redis = TestRedis::start();
        let a = replica(&redis, "a", 200);
        redis.kill9();
        assert!(!a.mine().await);
    }
}
