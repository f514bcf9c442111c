//! Presence: which joined tabs of a session group are here now, by name. A tab is here while its lease runs: each
//! joined tab renews it with a heartbeat (`POST /api/presence`, every third of the lease), drops it at once when the
//! page goes away (a `sendBeacon` to `/api/presence/leave`), and a tab that can do neither (crashed, frozen, cut
//! off) drops out when its lease runs out. Nothing here is durable: after a restart the table is empty and tabs
//! come back with their next heartbeat, so there are no zombies to clear.
//!
//! Presence is per tab, not per event stream: a browser holds one stream for all its tabs (`client/relay.rs`), and
//! each joined tab beats for itself with a plain request. A name is listed once however many tabs carry it.
//!
//! A tab is bound to the ticket that made it: its key is the ticket and the tab's id together, so another ticket
//! naming the same id beats or leaves another tab (its own), and the owner's lease and name are untouched. The tab
//! is also counted against the network it first came from ([`Network`]: the address, an IPv6 /64).
//!
//! Every list is bounded ([`Caps`]): a ticket's tabs, a network's, a group's, and the whole table. Joins are free
//! and addresses are not, so when a list is full the newcomer is never refused: whoever holds the most of that list
//! (the ticket with the most of a network's tabs, the network with the most of a group's or of the table's) loses
//! its oldest tab. One address can fill only its own share, and then pushes out only its own tabs.
//!
//! `Presence` is the seam: the in-memory table here serves one process; a shared one (leases in Redis, for several
//! replicas) implements the same trait, which is async and fallible for that reason.

mod memory;
pub mod redis;

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use memory::MemoryPresence;

use crate::server::group::Audience;
use crate::server::ticket::TicketId;
use crate::shared::domain::Username;

/// Most tabs listed for one ticket: one page load holds one ticket and beats for one tab id, so a few is plenty.
pub const MAX_TABS_PER_TICKET: usize = 3;
/// Most tabs listed for one network (an address, an IPv6 /64), over all groups.
pub const MAX_TABS_PER_NETWORK: usize = 100;
/// Most tabs listed in one session group (scope `everyone` makes every visitor one group).
pub const MAX_TABS_PER_GROUP: usize = 1_000;
/// Most tabs listed in all groups together.
pub const MAX_TABS: usize = 100_000;
/// Longest tab id, in bytes.
pub const MAX_TAB_ID_BYTES: usize = 40;

/// How a tab is listed: its name, and whether the site's sign-in vouches for it. The tables keep it as one string,
/// the name alone or the name, a NUL and [`VERIFIED`], so a tab listed both ways under one name is two entries, and
/// no name can be read as verified: `Username` refuses control characters, so an anonymous "✓ Ada" or "Ada\0…"
/// never carries the suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed(String);

/// What follows a verified tab's name (after a NUL) in the tables.
const VERIFIED: &str = "\0verified";

impl Listed {
    pub fn new(name: &Username, verified: bool) -> Self {
        Self(if verified { format!("{}{VERIFIED}", name.as_str()) } else { name.as_str().to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A listed string as the tables answer it: the name, and whether it is verified.
    pub fn read(listed: &str) -> (&str, bool) {
        match listed.strip_suffix(VERIFIED) {
            Some(name) => (name, true),
            None => (listed, false),
        }
    }
}

/// A tab's id: made at random by the tab for one page load; 1 to [`MAX_TAB_ID_BYTES`] ASCII letters, digits, `-` or
/// `_`. It is only ever paired with the group and the ticket that beat for it: alone it names no one's tab.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Who holds a tab: the ticket that made it (the tab is only ever that ticket's) and the network it first came
/// from (what its caps are counted against).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Holder {
    pub ticket: TicketTag,
    pub network: Network,
}

/// A ticket as presence names it: the first 128 bits of SHA-256 of its MAC (as the send budgets name it), so the
/// MAC itself, which with the name and time is the ticket, is never written to a shared table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketTag([u8; 16]);

impl TicketTag {
    pub fn of(ticket: &TicketId) -> Self {
        let digest = Sha256::digest(ticket.as_bytes());
        let mut tag = [0; 16];
        tag.copy_from_slice(&digest[..16]);
        Self(tag)
    }

    /// Lowercase hex: letters and digits only, so it can never be mistaken for a separator.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a client cannot vary for free: its address, or for IPv6 its /64 (the block one subscriber usually gets).
/// The address budgets (`peer`) are kept per the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network(IpAddr);

impl Network {
    pub fn of(address: IpAddr) -> Self {
        let address = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => ipnet::Ipv6Net::new(v6, 64).map_or(address, |net| IpAddr::V6(net.trunc().addr())),
            },
            v4 => v4,
        };
        Self(address)
    }
}

impl From<Network> for IpAddr {
    fn from(network: Network) -> Self {
        network.0
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How many tabs a table holds at most, per list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_ticket: usize,
    pub per_network: usize,
    pub per_group: usize,
    pub total: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            per_ticket: MAX_TABS_PER_TICKET,
            per_network: MAX_TABS_PER_NETWORK,
            per_group: MAX_TABS_PER_GROUP,
            total: MAX_TABS,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// No room could be made for a new tab (the shared table did not shrink when its biggest holder was pushed
    /// out): the client tries again with its next heartbeat.
    #[error("This server lists as many tabs as it can; this one is left off for now.")]
    Full,
    /// The shared table could not be reached.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
}

/// The audiences (a group on a feed) whose names changed (a name appeared or went, here or in a tab pushed out to make room), so they
/// should be told; empty when the implementation told them itself.
pub type Changed = Vec<Audience>;

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// The tab `tab` of `holder`'s ticket in `group` is here as `name` for `lease` from now (a new lease, or a
    /// renewed one). A new tab makes room in full lists by pushing out their biggest holder's oldest tab.
    async fn beat(
        &self,
        group: &Audience,
        holder: &Holder,
        tab: &TabId,
        name: &Listed,
        lease: Duration,
    ) -> Result<Changed, PresenceError>;
    /// The tab `tab` of `ticket` in `group` left (another ticket's tab of that id is another tab, and stays).
    async fn leave(&self, group: &Audience, ticket: &TicketTag, tab: &TabId) -> Result<Changed, PresenceError>;
    /// The names here in `group`, each once, in alphabetical order.
    async fn list(&self, group: &Audience) -> Result<Vec<String>, PresenceError>;
    /// Drops the leases that ran out; answers the groups whose names changed.
    async fn expire(&self) -> Result<Changed, PresenceError>;
}

/// Of the members of a full list, the one to push out: the oldest of the holder with the most members (ties: the
/// holder whose oldest is oldest). `members` are (age order, holder, member), in any order.
fn evictee<H: Eq + std::hash::Hash, M>(members: impl IntoIterator<Item = (u64, H, M)>) -> Option<M> {
    let mut holders: std::collections::HashMap<H, (usize, u64, M)> = std::collections::HashMap::new();
    for (born, holder, member) in members {
        match holders.entry(holder) {
            std::collections::hash_map::Entry::Occupied(mut seen) => {
                let seen = seen.get_mut();
                seen.0 += 1;
                if born < seen.1 {
                    (seen.1, seen.2) = (born, member);
                }
            }
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert((1, born, member));
            }
        }
    }
    // Most members first; among equals, the oldest first member.
    holders.into_values().max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1))).map(|(_, _, member)| member)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_name_reads_back_with_its_mark_and_no_typed_name_reads_as_verified() {
        let ada = Username::parse("Ada").unwrap();
        assert_eq!(Listed::read(Listed::new(&ada, true).as_str()), ("Ada", true));
        assert_eq!(Listed::read(Listed::new(&ada, false).as_str()), ("Ada", false));
        assert_ne!(Listed::new(&ada, true), Listed::new(&ada, false), "two entries, not one");
        for typed in ["✓ Ada", "Ada (verified)", "Adaverified"] {
            let name = Username::parse(typed).unwrap();
            assert_eq!(Listed::read(Listed::new(&name, false).as_str()), (typed, false), "{typed}");
        }
        assert!(Username::parse("Ada\0verified").is_err(), "no name carries the suffix");
    }
}
