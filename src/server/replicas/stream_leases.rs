//! The per-browser stream cap across replicas: each open event stream holds a lease in its session group's sorted
//! set `PREFIX:streams:<group>` (member `<replica>:<stream>`, score the lease's expiry in Redis's milliseconds).
//!
//! - Admitting a stream is one script ([`ADMIT`]): drop the expired leases, count, refuse at the cap, else add one.
//! - This replica's [`Keeper`] renews the leases of its open streams every `renew_every` (a third of the lease, so
//!   one late or failed round costs nothing), in batches of [`RENEW_BATCH`] per script.
//! - A stream that ends drops its [`StreamLease`] (held by the stream body, like `StreamPlace`), which hands the
//!   member to the keeper to remove at once.
//!
//! A replica that crashes renews nothing: its leases expire within one lease and the next admission drops them, so
//! they leave no trace. Each write sets the set's own TTL to the lease, so a group whose streams are all gone
//! vanishes too: what Redis holds is bounded by the streams open in the last lease. The total stream cap is not
//! here: it stays per process (it protects this process's file descriptors).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use tokio::sync::mpsc;

use super::millis;
use crate::server::group::GroupId;
use crate::server::link::{Link, LinkError};

/// How long a lease lasts unless renewed.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a replica renews its leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Leases renewed or removed per script, so one call never holds Redis for long.
const RENEW_BATCH: usize = 500;

/// `KEYS[1]`: the group's lease set. `ARGV`: cap, member, lease (ms). Answers 1 (admitted) or 0 (at the cap).
const ADMIT: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"#;

/// `KEYS`: lease sets. `ARGV[1]`: lease (ms); `ARGV[i + 1]`: this replica's member in `KEYS[i]`. A lease that
/// vanished (Redis lost it) is put back: the stream is open, so it counts.
const RENEW: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease)
end
return #KEYS
"#;

/// `KEYS`: lease sets; `ARGV[i]`: the member to remove from `KEYS[i]` (an emptied set is deleted by Redis).
const RELEASE: &str = r#"
for i, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[i]) end
return #KEYS
"#;

/// One lease: its set and its member.
type Held = (String, String);

/// This replica's leases: what it admits, and the streams it holds open.
pub struct StreamLeases {
    link: Link,
    replica: String,
    cap: usize,
    lease: Duration,
    admit: Script,
    next_stream: AtomicU64,
    /// Open streams of this replica, by stream number: what the keeper renews.
    open: Mutex<HashMap<u64, Held>>,
    released: mpsc::UnboundedSender<Held>,
}

/// Renews this replica's leases and removes the released ones; run it as a task for as long as the server runs.
pub struct Keeper {
    leases: Arc<StreamLeases>,
    released: mpsc::UnboundedReceiver<Held>,
    renew_every: Duration,
    renew: Script,
    release: Script,
}

/// One admitted stream's lease; dropping it (the stream ended) removes the lease.
pub struct StreamLease {
    leases: Arc<StreamLeases>,
    stream: u64,
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        if let Some(held) = self.leases.lock_open().remove(&self.stream) {
            // The keeper is gone only at shutdown; the lease then expires by itself.
            let _ = self.leases.released.send(held);
        }
    }
}

impl StreamLeases {
    /// At most `cap` streams per group across the replicas, leases of `lease`, renewed every `renew_every` by the
    /// returned keeper.
    pub fn new(link: Link, replica: String, cap: usize, lease: Duration, renew_every: Duration) -> (Arc<Self>, Keeper) {
        let (released, receiver) = mpsc::unbounded_channel();
        let leases = Arc::new(Self {
            link,
            replica,
            cap,
            lease,
            admit: Script::new(ADMIT),
            next_stream: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            released,
        });
        let keeper = Keeper {
            leases: leases.clone(),
            released: receiver,
            renew_every,
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        };
        (leases, keeper)
    }

    /// Most streams per group.
    pub fn cap(&self) -> usize {
        self.cap
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A lease for one more stream of `group`, or `None` when the group holds `cap` live leases on all replicas.
    pub async fn admit(self: &Arc<Self>, group: &GroupId) -> Result<Option<StreamLease>, LinkError> {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let held = (self.link.key(&format!("streams:{}", group.as_str())), format!("{}:{stream}", self.replica));
        let mut call = self.admit.prepare_invoke();
        call.key(&held.0).arg(self.cap).arg(&held.1).arg(millis(self.lease));
        let admitted: i64 = self.link.invoke(&call).await?;
        if admitted != 1 {
            return Ok(None);
        }
        self.lock_open().insert(stream, held);
        Ok(Some(StreamLease { leases: self.clone(), stream }))
    }
}

impl Keeper {
    /// Renews every `renew_every`; removes released leases as they come. Never ends while the server runs (a Redis
    /// failure is logged and the next round tries again).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.renew_all().await,
                released = self.released.recv() => match released {
                    Some(first) => self.release_pending(first).await,
                    None => return,
                },
            }
        }
    }

    /// One round of renewals for every open stream of this replica.
    pub async fn renew_all(&self) {
        let open: Vec<Held> = self.leases.lock_open().values().cloned().collect();
        for batch in open.chunks(RENEW_BATCH) {
            let mut call = self.renew.prepare_invoke();
            call.arg(millis(self.leases.lease));
            for (key, member) in batch {
                call.key(key).arg(member);
            }
            if let Err(err) = self.leases.link.invoke::<i64>(&call).await {
                tracing::warn!(error = %err, "stream leases not renewed this round");
            }
        }
    }

    /// Removes `first` and every other lease released meanwhile, in batches.
    async fn release_pending(&mut self, first: Held) {
        let mut pending = vec![first];
        while pending.len() < RENEW_BATCH {
            match self.released.try_recv() {
                Ok(held) => pending.push(held),
                Err(_) => break,
            }
        }
        let mut call = self.release.prepare_invoke();
        for (key, member) in &pending {
            call.key(key).arg(member);
        }
        if let Err(err) = self.leases.link.invoke::<i64>(&call).await {
            tracing::warn!(error = %err, leases = pending.len(), "released stream leases left to expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::replicas::test_link;
    use crate::server::replicas::test_redis::TestRedis;

    fn replica(redis: &TestRedis, name: &str, cap: usize, lease_ms: u64) -> (Arc<StreamLeases>, Keeper) {
        let lease = Duration::from_millis(lease_ms);
        StreamLeases::new(test_link(redis), name.into(), cap, lease, lease / 3)
    }

    fn count(redis: &TestRedis, group: &str) -> i64 {
        redis.command(&["ZCARD", &format!("test:streams:{group}")]).int().unwrap()
    }

    #[tokio::test]
    async fn the_cap_holds_across_two_replicas_and_a_dropped_lease_frees_its_place() {
        let redis = TestRedis::start();
        let (a, keeper_a) = replica(&redis, "a", 3, 30_000);
        let (b, keeper_b) = replica(&redis, "b", 3, 30_000);
        tokio::spawn(keeper_a.run());
        tokio::spawn(keeper_b.run());
        let group = GroupId::new("g");
        let first = a.admit(&group).await.unwrap().unwrap();
        let _second = b.admit(&group).await.unwrap().unwrap();
        let _third = a.admit(&group).await.unwrap().unwrap();
        assert!(b.admit(&group).await.unwrap().is_none(), "three leases over two replicas: full");
        assert!(a.admit(&GroupId::new("other")).await.unwrap().is_some(), "another group has its own");
        drop(first);
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while count(&redis, "g") != 2 {
            assert!(tokio::time::Instant::now() < until, "the released lease was removed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(b.admit(&group).await.unwrap().is_some(), "its place is free on the other replica");
    }

    #[tokio::test]
    async fn a_crashed_replicas_leases_expire_and_a_live_ones_are_renewed() {
        let redis = TestRedis::start();
        let (crashed, _never_run) = replica(&redis, "crashed", 2, 600);
        let (live, keeper) = replica(&redis, "live", 2, 600);
        tokio::spawn(keeper.run());
        let group = GroupId::new("g");
        let lost = crashed.admit(&group).await.unwrap().unwrap();
        let kept = live.admit(&group).await.unwrap().unwrap();
        // the crashed replica renews nothing and never removes its lease
        std::mem::forget(lost);
        assert!(live.admit(&group).await.unwrap().is_none(), "full while the crashed lease lasts");
        tokio::time::sleep(Duration::from_millis(900)).await;
        let third = live.admit(&group).await.unwrap();
        assert!(third.is_some(), "the crashed replica's lease expired; the live one's was renewed");
        assert_eq!(count(&redis, "g"), 2);
        let members = redis.command(&["ZRANGE", "test:streams:g", "0", "-1"]);
        assert!(format!("{members:?}").contains("live:") && !format!("{members:?}").contains("crashed:"));
        drop((kept, third));
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while redis.command(&["EXISTS", "test:streams:g"]).int() != Some(0) {
            assert!(tokio::time::Instant::now() < until, "an emptied set is gone");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn redis_unreachable_at_admission_is_an_error() {
        let mut redis = TestRedis::start();
        let (leases, _keeper) = replica(&redis, "a", 2, 30_000);
        redis.kill9();
        assert!(leases.admit(&GroupId::new("g")).await.is_err());
        assert!(leases.lock_open().is_empty(), "nothing held for a refused stream");
    }
}
