//! The send rate limit shared by every replica: the same rule as `throttle::LocalThrottle` (per ticket, and per
//! session group unless scope is `everyone`), kept in Redis so a burst split over replicas is limited as one.
//!
//! GCRA, as go-redis/redis_rate does it: each budget is one key holding its "theoretical arrival time" (TAT, in
//! microseconds of Redis's clock). A send is allowed when `TAT + interval - burst × interval <= now`; it moves the
//! TAT one interval on. [`TAKE`] checks every budget first and writes only when all allow, so a send refused by
//! the group's budget costs the ticket's nothing, and the clock is Redis's (`TIME`), never a replica's.
//!
//! Keys: `PREFIX:sends:ticket:<hash of the ticket's MAC>` and `PREFIX:sends:group:<group>`. Each expires when its
//! budget is full again (`PX` = TAT − now), so an idle ticket or browser leaves nothing behind: what Redis holds
//! is bounded by the sends of the last `burst / rate` seconds. The ticket is keyed by a hash of its MAC, not the
//! MAC itself, so reading Redis does not hand out tickets.
//!
//! [`RedisBudget`] is the script on its own, for any keyed budget the replicas share: it is the `SharedBudgets` the
//! per-address budgets of `peer` are kept in on Redis (`PREFIX:address:<action>:<address>`).

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use sha2::{Digest, Sha256};

use crate::server::budget::SharedBudgets;
use crate::server::group::GroupId;
use crate::server::link::{Link, LinkError};
use crate::server::ticket::TicketId;
use crate::shared::error::ApiError;

/// `KEYS`: the budgets one send takes from. `ARGV`: interval (µs between sends at the steady rate), burst.
/// Answers `{1, 0}` when every budget allows (one send taken from each), else `{0, µs until all would allow}` and
/// takes nothing. Microseconds since 1970 (~1.8e15) are exact in Lua's doubles; `%d` writes them in full.
const TAKE: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst_offset = interval * tonumber(ARGV[2])
local next_tats = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now) or now
  if tat < now then tat = now end
  local allow_at = tat + interval - burst_offset
  if allow_at - now > wait then wait = allow_at - now end
  next_tats[i] = tat + interval
end
if wait > 0 then return {0, wait} end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', next_tats[i]), 'PX', math.ceil((next_tats[i] - now) / 1000))
end
return {1, 0}
"#;

/// Keyed GCRA budgets in Redis, on Redis's clock ([`TAKE`]).
#[derive(Clone)]
pub struct RedisBudget {
    link: Link,
    take: Script,
}

impl RedisBudget {
    pub fn new(link: Link) -> Self {
        Self { link, take: Script::new(TAKE) }
    }

    /// `PREFIX:name`: where a budget named `name` is kept.
    pub fn key(&self, name: &str) -> String {
        self.link.key(name)
    }

    /// Takes one from each budget of `keys` (full names, see [`Self::key`]) that allows one every `interval_us`
    /// microseconds and `burst` at once: `None` when taken from all, else how long until all would allow (nothing
    /// taken).
    pub async fn take(&self, keys: &[String], interval_us: u64, burst: u32) -> Result<Option<Duration>, LinkError> {
        let mut call = self.take.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        call.arg(interval_us.max(1)).arg(burst.max(1));
        let (allowed, wait_us): (i64, i64) = self.link.invoke(&call).await?;
        Ok((allowed != 1).then(|| Duration::from_micros(wait_us.max(1) as u64)))
    }
}

#[async_trait]
impl SharedBudgets for RedisBudget {
    async fn take(&self, name: &str, every: Duration, burst: u32) -> Result<Option<Duration>, ApiError> {
        let interval_us = u64::try_from(every.as_micros()).unwrap_or(u64::MAX).max(1);
        Ok(RedisBudget::take(self, &[self.key(name)], interval_us, burst).await?)
    }
}

/// Microseconds between two takes at `rate` a second.
pub fn interval_us(rate: u32) -> u64 {
    (1_000_000 / u64::from(rate.max(1))).max(1)
}

/// Send budgets shared by the replicas on one Redis.
pub struct RedisThrottle {
    budget: RedisBudget,
    /// Microseconds between two sends at the steady rate.
    interval_us: u64,
    rate: u32,
    burst: u32,
    per_group: bool,
}

impl RedisThrottle {
    /// `rate` sends a second, up to `burst` at once; `None` when `rate` is 0 (no limit), as the local throttle.
    pub fn new(link: Link, rate: u32, burst: u32, per_group: bool) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        Some(Self {
            budget: RedisBudget::new(link),
            interval_us: interval_us(rate),
            rate,
            burst: burst.max(1),
            per_group,
        })
    }

    /// Sends a second, and at once, as configured (for the refusal's sentence).
    pub fn quota(&self) -> (u32, u32) {
        (self.rate, self.burst)
    }

    /// Takes one send from the ticket's and (unless scope is `everyone`) the group's budgets: `None` when taken,
    /// else how long until it would be (nothing taken).
    pub async fn take(&self, group: &GroupId, ticket: &TicketId) -> Result<Option<Duration>, LinkError> {
        let mut keys = vec![self.budget.key(&format!("sends:ticket:{}", ticket_key(ticket)))];
        if self.per_group {
            keys.push(self.budget.key(&format!("sends:group:{}", group.as_str())));
        }
        self.budget.take(&keys, self.interval_us, self.burst).await
    }
}

/// A ticket's budget name: the first 128 bits of SHA-256 of its MAC, hex.
fn ticket_key(ticket: &TicketId) -> String {
    Sha256::digest(ticket.as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::replicas::test_link;
    use crate::server::replicas::test_redis::{Reply, TestRedis};

    fn ticket(n: u8) -> TicketId {
        TicketId::from_mac([n; 32])
    }

    #[tokio::test]
    async fn a_burst_then_refusal_and_the_group_holds_a_fresh_ticket() {
        let redis = TestRedis::start();
        let throttle = RedisThrottle::new(test_link(&redis), 1, 3, true).unwrap();
        let (ada, bob) = (GroupId::new("a"), GroupId::new("b"));
        for _ in 0..3 {
            assert_eq!(throttle.take(&ada, &ticket(1)).await.unwrap(), None);
        }
        let wait = throttle.take(&ada, &ticket(1)).await.unwrap().expect("the fourth is refused");
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1), "{wait:?}");
        // a fresh ticket in the same group is held by the group's budget; another group is untouched
        assert!(throttle.take(&ada, &ticket(2)).await.unwrap().is_some());
        assert_eq!(throttle.take(&bob, &ticket(3)).await.unwrap(), None);
        // a refusal by the group took nothing from the fresh ticket: in another group it still has its burst
        for _ in 0..3 {
            assert_eq!(throttle.take(&GroupId::new("c"), &ticket(2)).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn a_budget_refills_with_time_and_the_wait_says_when() {
        let redis = TestRedis::start();
        let mut slow = RedisThrottle::new(test_link(&redis), 1, 1, false).unwrap();
        slow.interval_us = 2_500_000;
        let everyone = GroupId::everyone();
        assert_eq!(slow.take(&everyone, &ticket(1)).await.unwrap(), None);
        let wait = slow.take(&everyone, &ticket(1)).await.unwrap().unwrap();
        assert!(wait > Duration::from_secs(2) && wait <= Duration::from_millis(2_500), "{wait:?}");
        // 20 sends a second: a refusal, then one interval refills one send
        let fast = RedisThrottle::new(test_link(&redis), 20, 2, false).unwrap();
        assert_eq!(fast.take(&everyone, &ticket(9)).await.unwrap(), None);
        assert_eq!(fast.take(&everyone, &ticket(9)).await.unwrap(), None);
        let wait = fast.take(&everyone, &ticket(9)).await.unwrap().unwrap();
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        tokio::time::sleep(wait + Duration::from_millis(10)).await;
        assert_eq!(fast.take(&everyone, &ticket(9)).await.unwrap(), None);
        assert!(fast.take(&everyone, &ticket(9)).await.unwrap().is_some(), "one interval refilled one send");
    }

    #[tokio::test]
    async fn two_replicas_share_one_budget_and_idle_keys_expire() {
        let redis = TestRedis::start();
        let a = RedisThrottle::new(test_link(&redis), 1, 4, true).unwrap();
        let b = RedisThrottle::new(test_link(&redis), 1, 4, true).unwrap();
        let group = GroupId::new("g");
        let mut allowed = 0;
        for i in 0..10 {
            let replica = if i % 2 == 0 { &a } else { &b };
            allowed += usize::from(replica.take(&group, &ticket(1)).await.unwrap().is_none());
        }
        assert!((4..=5).contains(&allowed), "a burst of 4 (+1 refilled at most), split over two: {allowed}");
        let Reply::Array(keys) = redis.command(&["KEYS", "test:sends:*"]) else { panic!("KEYS answers an array") };
        assert_eq!(keys.len(), 2, "one key per ticket and per group: {keys:?}");
        let ttl = redis.command(&["PTTL", "test:sends:group:g"]).int().unwrap();
        assert!((1..=4_000).contains(&ttl), "the key lives until the budget is full again: {ttl} ms");

        redis.command(&["FLUSHALL"]);
        let fast = RedisThrottle::new(test_link(&redis), 20, 2, true).unwrap();
        assert_eq!(fast.take(&group, &ticket(2)).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(redis.command(&["DBSIZE"]).int(), Some(0), "idle budgets leave nothing behind");
    }

    /// As the `SharedBudgets` of the per-address budgets: one budget per name for every replica, each key gone
    /// once its budget is full again, and 503 when Redis does not answer.
    #[tokio::test]
    async fn named_budgets_are_shared_expire_and_refuse_with_503_when_redis_is_down() {
        let mut redis = TestRedis::start();
        let (a, b) = (RedisBudget::new(test_link(&redis)), RedisBudget::new(test_link(&redis)));
        let shared: [&dyn SharedBudgets; 2] = [&a, &b];
        let name = "address:sends:192.0.2.1";
        let allowed =
            futures::future::join_all((0..6).map(|i| shared[i % 2].take(name, Duration::from_millis(500), 3))).await;
        let allowed = allowed.into_iter().filter(|taken| taken.as_ref().unwrap().is_none()).count();
        assert_eq!(allowed, 3, "a burst of 3 over both");
        let wait = shared[0].take(name, Duration::from_millis(500), 3).await.unwrap().expect("refused");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        let ttl = redis.command(&["PTTL", "test:address:sends:192.0.2.1"]).int().unwrap();
        assert!((1..=1_500).contains(&ttl), "gone once full again (3 at 2 a second): {ttl} ms");
        redis.kill9();
        let down = shared[1].take(name, Duration::from_millis(500), 3).await.unwrap_err();
        assert_eq!((down.kind, down.status()), (crate::shared::error::ErrorKind::Unavailable, 503));
    }

    #[tokio::test]
    async fn redis_unreachable_is_an_error_never_a_pass() {
        let mut redis = TestRedis::start();
        let throttle = RedisThrottle::new(test_link(&redis), 1, 1, true).unwrap();
        redis.kill9();
        assert!(throttle.take(&GroupId::new("g"), &ticket(1)).await.is_err());
    }
}
