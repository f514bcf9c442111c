//! Send rate limits (and, in their own tables, heartbeat rate limits): one budget per ticket, so one author cannot flood, and one per session group, so joining
//! again for a fresh ticket does not lift it. With scope `everyone` all visitors are one group, so only the
//! per-ticket budget applies. A ticket is keyed by its MAC, checked before it gets here: a client cannot make new
//! keys by spelling one ticket differently, and every table is bounded (`budget`).

use std::num::NonZeroU32;

use governor::Quota;

use crate::server::budget::{Budget, MAX_KEYS};
use crate::server::group::GroupId;
use crate::server::ticket::TicketId;
use crate::shared::error::{ApiError, ErrorKind};

pub struct SendThrottle {
    per_ticket: Budget<TicketId>,
    per_group: Option<Budget<GroupId>>,
    rate: u32,
    burst: u32,
    /// What is counted, as the refusal names it ("messages").
    what: &'static str,
}

impl SendThrottle {
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
            Err(ApiError::new(
                ErrorKind::RateLimited,
                format!(
                    "Slow down: at most {} {} a second ({} at once). Wait a moment and try again.",
                    self.rate, self.what, self.burst
                ),
            ))
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
        let throttle = SendThrottle::new(2, 3, true).unwrap();
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
    fn without_group_budget_only_tickets_count_and_zero_means_no_limit() {
        let throttle = SendThrottle::new(1, 1, false).unwrap();
        let everyone = GroupId::everyone();
        throttle.check(&everyone, &ticket(1)).unwrap();
        assert!(throttle.check(&everyone, &ticket(1)).is_err());
        throttle.check(&everyone, &ticket(2)).unwrap();
        assert!(SendThrottle::new(0, 10, true).is_none());
    }
}
