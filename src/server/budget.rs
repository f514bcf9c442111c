//! Keyed budgets: governor's GCRA limiter (one token bucket per key) with a bounded table. Every limiter of the
//! server (per ticket, per session group, per client address) is one of these, so no client can grow a table
//! without bound by inventing keys.
//!
//! The table holds at most `cap` keys. When it is full, the keys whose bucket is full again (idle) are dropped
//! (governor's `retain_recent`, at most once a second); if it is still full, new keys share one overflow bucket
//! until room is made, so memory stays bounded and a flood of fresh keys buys one budget, not many.
//!
//! Replicas share budgets through [`SharedBudgets`], kept where every replica counts (Redis:
//! `replicas::send_limit::RedisBudget`); a user of it (`peer`) never knows where.

use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::shared::error::ApiError;

/// Named budgets kept outside this process, one for every replica, on the keeper's clock. Each budget lasts only
/// until it is full again, so the keeper holds no more than the budgets in use.
#[async_trait]
pub trait SharedBudgets: Send + Sync + 'static {
    /// Takes one from the budget `name` that allows one every `every` and `burst` at once: `None` when taken,
    /// else how long until it would be (nothing taken). `Err` (503 `unavailable`) when the keeper cannot be asked:
    /// a budget that cannot be checked refuses.
    async fn take(&self, name: &str, every: Duration, burst: u32) -> Result<Option<Duration>, ApiError>;
}

/// The time between two takes at `rate` a second.
pub fn every_at(rate: u32) -> Duration {
    Duration::from_secs(1) / rate.max(1)
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` has no fractions).
pub fn seconds_up(wait: Duration) -> u32 {
    u32::try_from(wait.as_micros().div_ceil(1_000_000)).unwrap_or(u32::MAX).max(1)
}

/// Most keys one budget table holds (about 100 bytes each).
pub const MAX_KEYS: usize = 100_000;
/// Sweeps of a full table are at least this far apart: a sweep walks the whole table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Budget<K: Hash + Eq + Clone> {
    /// `None` is the overflow bucket shared by new keys while the table is full.
    limiter: DefaultKeyedRateLimiter<Option<K>>,
    cap: usize,
    last_sweep: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    pub fn new(quota: Quota, cap: usize) -> Self {
        Self { limiter: RateLimiter::keyed(quota), cap: cap.max(1), last_sweep: Mutex::new(Instant::now()) }
    }

    /// Takes one token from `key`'s bucket; false when it is empty.
    pub fn take(&self, key: &K) -> bool {
        if self.limiter.len() >= self.cap {
            self.sweep_if_due();
            if self.limiter.len() >= self.cap {
                return self.limiter.check_key(&None).is_ok();
            }
        }
        self.limiter.check_key(&Some(key.clone())).is_ok()
    }

    fn sweep_if_due(&self) {
        let mut last = self.last_sweep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.elapsed() >= SWEEP_EVERY {
            *last = Instant::now();
            self.forget_idle();
        }
    }

    /// Drops the buckets that are full again (their keys were idle), so the table stays small.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn a_full_table_stays_at_its_cap_and_new_keys_share_one_bucket() {
        let quota = Quota::per_hour(NonZeroU32::MIN).allow_burst(NonZeroU32::new(2).unwrap());
        let budget = Budget::new(quota, 3);
        for key in 0..3 {
            assert!(budget.take(&key));
        }
        assert_eq!(budget.len(), 3);
        // keys 3.. share the overflow bucket: two tokens between them, and the table does not grow past cap + 1
        let granted = (3..1_000).filter(|key| budget.take(key)).count();
        assert_eq!(granted, 2);
        assert!(budget.len() <= 4, "{}", budget.len());
        // a key already held keeps its own bucket only while the table has room; here it is full
        assert!(!budget.take(&0));
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let quota = Quota::per_second(NonZeroU32::new(1_000).unwrap());
        let budget = Budget::new(quota, 10);
        for key in 0..10 {
            assert!(budget.take(&key));
        }
        std::thread::sleep(Duration::from_millis(20));
        budget.forget_idle();
        assert!(budget.is_empty());
    }
}
