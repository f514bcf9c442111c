//! Send rate limits (and, in their own tables, heartbeat rate limits): one budget per ticket, so one author cannot flood, and one per session group, so joining
//! again for a fresh ticket does not lift it. With scope `everyone` all visitors are one group, so only the
//! per-ticket budget applies. A ticket is keyed by its MAC, checked before it gets here: a client cannot make new
//! keys by spelling one ticket differently, and every table is bounded (`budget`).
//!
//! One process keeps the budgets itself ([`LocalThrottle`]); replicas on one Redis share them
//! ([`RedisThrottle`], one GCRA script on Redis's clock), so a burst split over replicas is limited as one. Both
//! answer the same refusal; the send path calls [`SendThrottle::check`] and never asks which one runs.

use std::num::NonZeroU32;

use governor::Quota;

use crate::server::budget::{seconds_up, Budget, MAX_KEYS};
use crate::server::group::GroupId;
pub use crate::server::replicas::send_limit::RedisThrottle;
use crate::server::ticket::TicketId;
use crate::shared::error::{ApiError, ErrorKind};

/// The send budgets of this server: its own, or the ones all replicas share.
pub enum SendThrottle {
    Local(LocalThrottle),
    Redis(RedisThrottle),
}

impl SendThrottle {
    /// Takes one send from the ticket's and the group's budgets, or says how long to wait (429 `rate_limited`);
    /// 503 `unavailable` when shared budgets cannot be checked.
    pub async fn check(&self, group: &GroupId, ticket: &TicketId) -> Result<(), ApiError> {
        match self {
            Self::Local(local) => local.check(group, ticket),
            Self::Redis(shared) => match shared.take(group, ticket).await? {
                None => Ok(()),
                Some(wait) => {
                    let (rate, burst) = shared.quota();
                    Err(refusal(rate, burst, "messages").with_retry_after(seconds_up(wait)))
                }
            },
        }
    }

    /// Drops the budgets of idle keys; Redis's own budgets expire by themselves.
    pub fn forget_idle(&self) {
        if let Self::Local(local) = self {
            local.forget_idle();
        }
    }
}

/// The refusal both throttles answer: the same sentence, wherever the budget is kept; `what` is counted
/// ("messages", "heartbeats").
pub fn refusal(rate: u32, burst: u32, what: &str) -> ApiError {
    ApiError::new(
        ErrorKind::RateLimited,
        format!("Slow down: at most {rate} {what} a second ({burst} at once). Wait a moment and try again."),
    )
}

/// Budgets kept in this process (governor), for a single server.
pub struct LocalThrottle {
    per_ticket: Budget<TicketId>,
    per_group: Option<Budget<GroupId>>,
    rate: u32,
    burst: u32,
    /// What is counted, as the refusal names it ("messages").
    what: &'static str,
}

impl LocalThrottle {
    /// `rate` sends a second, up to `burst` at once; `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32, per_group: bool) -> Option<Self> {
        let rate_nz = NonZeroU32::new(rate)?;
        let burst_nz = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate_nz).allow_burst(burst_nz);
        Some(Self {
            per_ticket: Budget::new(quota, MAX_KEYS),
            per_group: per_group.then(|| Budget::new(quota, MAX_KEYS)),
            rate,
            burst: burst_nz.get(),
            what: "messages",
        })
    }

    /// The same budgets counting something else (e.g. "heartbeats"), named so in the refusal.
    pub fn counting(self, what: &'static str) -> Self {
        Self { what, ..self }
    }

    /// Takes one send from the ticket's and the group's budgets, or says how long to wait.
    pub fn check(&self, group: &GroupId, ticket: &TicketId) -> Result<(), ApiError> {
        let ticket_ok = self.per_ticket.take(ticket);
        let group_ok = ticket_ok && self.per_group.as_ref().is_none_or(|budget| budget.take(group));
        if group_ok {
            Ok(())
        } else {
            Err(refusal(self.rate, self.burst, self.what))
        }
    }

    /// Drops the budgets of tickets and groups that are full again (idle), so the tables stay small.
    pub fn forget_idle(&self) {
        self.per_ticket.forget_idle();
        if let Some(budget) = &self.per_group {
            budget.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(n: u8) -> TicketId {
        TicketId::from_mac([n; 32])
    }

    #[test]
    fn a_burst_then_refusal_per_ticket_and_per_group() {
        let throttle = LocalThrottle::new(2, 3, true).unwrap();
        let (ada, bob) = (GroupId::new("a"), GroupId::new("b"));
        for _ in 0..3 {
            throttle.check(&ada, &ticket(1)).unwrap();
        }
        let refused = throttle.check(&ada, &ticket(1)).unwrap_err();
        assert_eq!((refused.kind, refused.status()), (ErrorKind::RateLimited, 429));
        assert!(refused.message.contains("at most 2 messages a second (3 at once)"), "{}", refused.message);
        // a fresh ticket in the same group is still held by the group's budget
        assert_eq!(throttle.check(&ada, &ticket(2)).unwrap_err().kind, ErrorKind::RateLimited);
        // another group is untouched
        throttle.check(&bob, &ticket(3)).unwrap();
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let up = |micros| seconds_up(std::time::Duration::from_micros(micros));
        assert_eq!((up(0), up(1), up(1_000_000), up(1_000_001), up(2_500_000)), (1, 1, 1, 2, 3));
    }

    #[test]
    fn without_group_budget_only_tickets_count_and_zero_means_no_limit() {
        let throttle = LocalThrottle::new(1, 1, false).unwrap();
        let everyone = GroupId::everyone();
        throttle.check(&everyone, &ticket(1)).unwrap();
        assert!(throttle.check(&everyone, &ticket(1)).is_err());
        throttle.check(&everyone, &ticket(2)).unwrap();
        assert!(LocalThrottle::new(0, 10, true).is_none());
    }
}
