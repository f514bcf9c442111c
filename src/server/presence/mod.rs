//! Presence: which joined tabs of a session group are here now, by name. A tab is here while its lease runs: each
//! joined tab renews it with a heartbeat (`POST /api/presence`, every third of the lease), drops it at once when the
//! page goes away (a `sendBeacon` to `/api/presence/leave`), and a tab that can do neither (crashed, frozen, cut
//! off) drops out when its lease runs out. Nothing here is durable: after a restart the table is empty and tabs
//! come back with their next heartbeat, so there are no zombies to clear.
//!
//! Presence is per tab, not per event stream: a browser holds one stream for all its tabs (`client/relay.rs`), and
//! each joined tab beats for itself with a plain request. A name is listed once however many tabs carry it.
//!
//! `Presence` is the seam: the in-memory table here serves one process; a shared one (leases in Redis, for several
//! replicas) implements the same trait, which is async and fallible for that reason. Every implementation bounds
//! its tables: joins are free, so tab ids must not be.

mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryPresence;

use crate::server::group::GroupId;
use crate::shared::domain::Username;

/// Most tabs listed in one session group (scope `everyone` makes every visitor one group).
pub const MAX_TABS_PER_GROUP: usize = 1_000;
/// Most tabs listed in all groups together.
pub const MAX_TABS: usize = 100_000;
/// Longest tab id, in bytes.
pub const MAX_TAB_ID_BYTES: usize = 40;

/// A tab's id: made at random by the tab for one page load; 1 to [`MAX_TAB_ID_BYTES`] ASCII letters, digits, `-` or
/// `_`. It is only ever paired with the group of the ticket that beats for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TabId(String);

impl TabId {
    pub fn parse(raw: &str) -> Option<Self> {
        let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        (!raw.is_empty() && raw.len() <= MAX_TAB_ID_BYTES && raw.bytes().all(plain)).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many tabs a table holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_group: usize,
    pub total: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self { per_group: MAX_TABS_PER_GROUP, total: MAX_TABS }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// The group lists as many tabs as it may: a new one is not added (those listed are renewed as ever).
    #[error("This session group already lists {0} tabs here; this one is left off until one leaves.")]
    GroupFull(usize),
    /// Every group together lists as many tabs as the server keeps.
    #[error("This server lists as many tabs as it can; this one is left off for now.")]
    Full,
    /// The shared table could not be reached.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
}

/// Whether a call changed who is listed (a name appeared or went), so the group should be told.
pub type Changed = bool;

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// `tab` of `group` is here as `name` for `lease` from now (a new lease, or a renewed one).
    async fn beat(
        &self,
        group: &GroupId,
        tab: &TabId,
        name: &Username,
        lease: Duration,
    ) -> Result<Changed, PresenceError>;
    /// `tab` of `group` left.
    async fn leave(&self, group: &GroupId, tab: &TabId) -> Result<Changed, PresenceError>;
    /// The names here in `group`, each once, in alphabetical order.
    async fn list(&self, group: &GroupId) -> Result<Vec<String>, PresenceError>;
    /// Drops the leases that ran out; answers the groups whose names changed.
    async fn expire(&self) -> Result<Vec<GroupId>, PresenceError>;
}
