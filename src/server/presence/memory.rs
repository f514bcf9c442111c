//! Presence in this process's memory: per group, each tab's lease (its name, the network it came from, when it runs
//! out and how old it is), with the tabs of each ticket and of each network by age beside it, so every cap is
//! checked, and its biggest holder's oldest tab found, without walking the whole table. Time is tokio's, so tests
//! move it forward instead of waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{evictee, Caps, Changed, Holder, Listed, Network, Presence, PresenceError, TabId, TicketTag};
use crate::server::group::Audience;

struct Lease {
    name: String,
    network: Network,
    until: Instant,
    /// The order it was first listed in: the lower, the older.
    born: u64,
}

/// A tab within its group: the ticket that made it and its id.
type TabKey = (TicketTag, TabId);
/// A tab anywhere.
type Place = (Audience, TabKey);

#[derive(Default)]
struct Group {
    tabs: HashMap<TabKey, Lease>,
    /// How many tabs carry each name: a name appears with its first tab and goes with its last.
    names: HashMap<String, usize>,
}

#[derive(Default)]
struct Table {
    groups: HashMap<Audience, Group>,
    /// Each ticket's tabs, and each network's, oldest first.
    tickets: HashMap<TicketTag, BTreeMap<u64, Place>>,
    networks: HashMap<Network, BTreeMap<u64, Place>>,
    /// The networks by how many tabs they hold, the biggest last.
    by_size: BTreeSet<(usize, Network)>,
    /// Tabs over all groups.
    total: usize,
    next_born: u64,
}

impl Table {
    /// Lists a new tab; answers whether its name is new in its group.
    fn insert(&mut self, group: &Audience, key: TabKey, name: &str, network: Network, until: Instant) -> bool {
        let born = self.next_born;
        self.next_born += 1;
        let place = (group.clone(), key.clone());
        self.tickets.entry(key.0).or_default().insert(born, place.clone());
        self.resize(network, |tabs| {
            tabs.insert(born, place);
        });
        self.total += 1;
        let listed = self.groups.entry(group.clone()).or_default();
        listed.tabs.insert(key, Lease { name: name.to_owned(), network, until, born });
        let carrying = listed.names.entry(name.to_owned()).or_default();
        *carrying += 1;
        *carrying == 1
    }

    /// Unlists a tab; answers whether its name went with it (`None`: it was not listed).
    fn remove(&mut self, group: &Audience, key: &TabKey) -> Option<bool> {
        let listed = self.groups.get_mut(group)?;
        let lease = listed.tabs.remove(key)?;
        let went = match listed.names.get_mut(&lease.name) {
            Some(carrying) if *carrying > 1 => {
                *carrying -= 1;
                false
            }
            _ => {
                listed.names.remove(&lease.name);
                true
            }
        };
        if listed.tabs.is_empty() {
            self.groups.remove(group);
        }
        if let Some(tabs) = self.tickets.get_mut(&key.0) {
            tabs.remove(&lease.born);
            if tabs.is_empty() {
                self.tickets.remove(&key.0);
            }
        }
        self.resize(lease.network, |tabs| {
            tabs.remove(&lease.born);
        });
        self.total -= 1;
        Some(went)
    }

    /// Changes `network`'s tabs with `change`, keeping `by_size` in step and no empty entry.
    fn resize(&mut self, network: Network, change: impl FnOnce(&mut BTreeMap<u64, Place>)) {
        let tabs = self.networks.entry(network).or_default();
        self.by_size.remove(&(tabs.len(), network));
        change(tabs);
        if tabs.is_empty() {
            self.networks.remove(&network);
        } else {
            self.by_size.insert((tabs.len(), network));
        }
    }

    /// The tab to push out so that a new tab of `holder` fits in `group`, if a list it joins is full: the ticket's
    /// oldest; the oldest of the ticket holding most of the network's; the oldest of the network holding most of
    /// the group's, or of the whole table's.
    fn evictee(&self, caps: &Caps, group: &Audience, holder: &Holder) -> Option<Place> {
        if let Some(tabs) = self.tickets.get(&holder.ticket).filter(|tabs| tabs.len() >= caps.per_ticket) {
            return tabs.values().next().cloned();
        }
        if let Some(tabs) = self.networks.get(&holder.network).filter(|tabs| tabs.len() >= caps.per_network) {
            return evictee(tabs.iter().map(|(born, place)| (*born, place.1 .0, place))).cloned();
        }
        if let Some(listed) = self.groups.get(group).filter(|listed| listed.tabs.len() >= caps.per_group) {
            let tabs = listed.tabs.iter().map(|(key, lease)| (lease.born, lease.network, key));
            return evictee(tabs).map(|key| (group.clone(), key.clone()));
        }
        if self.total >= caps.total {
            let (_, biggest) = self.by_size.last()?;
            return self.networks.get(biggest)?.values().next().cloned();
        }
        None
    }
}

#[derive(Default)]
pub struct MemoryPresence {
    caps: Caps,
    table: Mutex<Table>,
}

impl MemoryPresence {
    pub fn new(caps: Caps) -> Self {
        Self { caps, table: Mutex::default() }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tabs listed over all groups (tests).
    pub fn tabs(&self) -> usize {
        self.table().total
    }
}

fn note(changed: &mut Changed, group: &Audience) {
    if !changed.contains(group) {
        changed.push(group.clone());
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn beat(
        &self,
        group: &Audience,
        holder: &Holder,
        tab: &TabId,
        name: &Listed,
        lease: Duration,
    ) -> Result<Changed, PresenceError> {
        let until = Instant::now() + lease;
        let key = (holder.ticket, tab.clone());
        let mut table = self.table();
        // A renewal: the ticket names its author, so the tab's name is the one it was listed with.
        if let Some(listed) = table.groups.get_mut(group).and_then(|listed| listed.tabs.get_mut(&key)) {
            listed.until = until;
            return Ok(Vec::new());
        }
        let mut changed = Vec::new();
        // Each pass unlists one tab, so this ends; a lease that ran out counts until the sweep (at most a second)
        // drops it, and may be the one pushed out.
        while let Some((other, other_key)) = table.evictee(&self.caps, group, holder) {
            match table.remove(&other, &other_key) {
                Some(went) => {
                    if went {
                        note(&mut changed, &other);
                    }
                }
                None => return Err(PresenceError::Full), // the indexes disagree: never loop for it
            }
        }
        if table.insert(group, key, name.as_str(), holder.network, until) {
            note(&mut changed, group);
        }
        Ok(changed)
    }

    async fn leave(&self, group: &Audience, ticket: &TicketTag, tab: &TabId) -> Result<Changed, PresenceError> {
        let went = self.table().remove(group, &(*ticket, tab.clone()));
        Ok(if went == Some(true) { vec![group.clone()] } else { Vec::new() })
    }

    async fn list(&self, group: &Audience) -> Result<Vec<String>, PresenceError> {
        let now = Instant::now();
        let table = self.table();
        let Some(listed) = table.groups.get(group) else { return Ok(Vec::new()) };
        // A lease that ran out is not listed, even before the sweeper drops it.
        let live: BTreeSet<&str> =
            listed.tabs.values().filter(|lease| lease.until > now).map(|lease| lease.name.as_str()).collect();
        Ok(live.into_iter().map(str::to_owned).collect())
    }

    async fn expire(&self) -> Result<Changed, PresenceError> {
        let now = Instant::now();
        let mut table = self.table();
        let gone: Vec<Place> = table
            .groups
            .iter()
            .flat_map(|(group, listed)| {
                let expired = listed.tabs.iter().filter(|(_, lease)| lease.until <= now);
                expired.map(|(key, _)| (group.clone(), key.clone()))
            })
            .collect();
        let mut changed = Vec::new();
        for (group, key) in gone {
            if table.remove(&group, &key) == Some(true) {
                note(&mut changed, &group);
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::group::GroupId;
    use crate::server::ticket::TicketId;
    use crate::shared::domain::Username;

    const LEASE: Duration = Duration::from_secs(30);

    fn tab(id: &str) -> TabId {
        TabId::parse(id).unwrap()
    }

    fn name(name: &str) -> Listed {
        Listed::new(&Username::parse(name).unwrap(), false)
    }

    /// The holder of ticket number `ticket` from the address `192.0.2.<network>`.
    fn holder(ticket: u8, network: u8) -> Holder {
        Holder {
            ticket: TicketTag::of(&TicketId::from_mac([ticket; 32])),
            network: Network::of([192, 0, 2, network].into()),
        }
    }

    async fn beat(p: &MemoryPresence, group: &Audience, who: Holder, id: &str, as_name: &str) -> Changed {
        p.beat(group, &who, &tab(id), &name(as_name), LEASE).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn leases_run_out_unless_renewed_and_the_sweep_names_the_groups_that_changed() {
        let presence = MemoryPresence::default();
        let group = Audience::main(GroupId::new("g"));
        assert_eq!(beat(&presence, &group, holder(1, 1), "a", "Ada").await, vec![group.clone()]);
        assert_eq!(beat(&presence, &group, holder(2, 1), "b", "Linus").await, vec![group.clone()]);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(beat(&presence, &group, holder(1, 1), "a", "Ada").await.is_empty(), "a renewal changes nothing");
        assert!(presence.expire().await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(11)).await;
        // Linus's lease ran out: not listed even before the sweep, and the sweep reports the group once
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada"]);
        assert_eq!(presence.expire().await.unwrap(), vec![group.clone()]);
        assert!(presence.expire().await.unwrap().is_empty());
        assert_eq!(presence.tabs(), 1);
        tokio::time::advance(LEASE).await;
        assert_eq!(presence.expire().await.unwrap(), vec![group.clone()]);
        assert!(presence.list(&group).await.unwrap().is_empty());
        assert_eq!(presence.tabs(), 0);
        assert!(presence.table().networks.is_empty() && presence.table().tickets.is_empty(), "no index outlives");
    }

    #[tokio::test(start_paused = true)]
    async fn two_tabs_with_one_name_count_once_and_the_name_stays_until_both_are_gone() {
        let presence = MemoryPresence::default();
        let group = Audience::main(GroupId::new("g"));
        let (ada, ada_again) = (holder(1, 1), holder(2, 1));
        assert!(!beat(&presence, &group, ada, "one", "Ada").await.is_empty());
        assert!(beat(&presence, &group, ada_again, "two", "Ada").await.is_empty(), "Ada was here already");
        assert!(!beat(&presence, &group, holder(3, 1), "three", "Grace").await.is_empty());
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada", "Grace"]);
        assert!(presence.leave(&group, &ada.ticket, &tab("one")).await.unwrap().is_empty(), "still in tab two");
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada", "Grace"]);
        assert_eq!(presence.leave(&group, &ada_again.ticket, &tab("two")).await.unwrap(), vec![group.clone()]);
        assert!(presence.leave(&group, &ada_again.ticket, &tab("two")).await.unwrap().is_empty(), "leaving twice");
        assert_eq!(presence.list(&group).await.unwrap(), ["Grace"]);
        assert_eq!(presence.tabs(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_groups_presence_never_shows_in_another() {
        let presence = MemoryPresence::default();
        let (ours, theirs) = (Audience::main(GroupId::new("ours")), Audience::main(GroupId::new("theirs")));
        beat(&presence, &ours, holder(1, 1), "t", "Ada").await;
        // the same tab id in another group is another tab
        beat(&presence, &theirs, holder(2, 2), "t", "Eve").await;
        assert_eq!(presence.list(&ours).await.unwrap(), ["Ada"]);
        assert_eq!(presence.list(&theirs).await.unwrap(), ["Eve"]);
        assert!(presence.leave(&theirs, &holder(2, 2).ticket, &tab("x")).await.unwrap().is_empty());
        presence.leave(&theirs, &holder(2, 2).ticket, &tab("t")).await.unwrap();
        assert_eq!(presence.list(&ours).await.unwrap(), ["Ada"]);
        tokio::time::advance(LEASE).await;
        beat(&presence, &theirs, holder(2, 2), "t", "Eve").await;
        assert_eq!(presence.expire().await.unwrap(), vec![ours.clone()], "only the group whose lease ran out");
    }

    /// Bob knows Ada's tab id: his beat or leave of it is his own tab, and Ada's lease, name and listing stay.
    #[tokio::test(start_paused = true)]
    async fn a_tab_is_its_tickets_and_another_ticket_naming_its_id_changes_nothing_of_it() {
        let presence = MemoryPresence::default();
        let group = Audience::main(GroupId::everyone());
        let (ada, bob) = (holder(1, 1), holder(2, 2));
        beat(&presence, &group, ada, "ada-tab", "Ada").await;
        assert!(presence.leave(&group, &bob.ticket, &tab("ada-tab")).await.unwrap().is_empty());
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada"]);
        beat(&presence, &group, bob, "ada-tab", "Bob").await;
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada", "Bob"], "Bob's own tab; Ada's keeps her name");
        presence.leave(&group, &bob.ticket, &tab("ada-tab")).await.unwrap();
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada"]);
        // Ada's lease was never renewed by Bob: it runs out on her own clock
        tokio::time::advance(Duration::from_secs(20)).await;
        beat(&presence, &group, bob, "ada-tab", "Bob").await;
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(presence.list(&group).await.unwrap(), ["Bob"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_ticket_or_network_pushes_out_its_own_oldest_and_never_refuses_the_newcomer() {
        let caps = Caps { per_ticket: 2, per_network: 5, per_group: 100, total: 100 };
        let presence = MemoryPresence::new(caps);
        let group = Audience::main(GroupId::everyone());
        let eve = holder(1, 9);
        for i in 0..10 {
            beat(&presence, &group, eve, &format!("e{i}"), "Eve").await;
        }
        assert_eq!(presence.tabs(), 2, "one ticket holds at most its cap: its newest tabs");
        let newest: Vec<TabId> =
            presence.table().tickets[&eve.ticket].values().map(|place| place.1 .1.clone()).collect();
        assert_eq!(newest, [tab("e8"), tab("e9")]);
        // Many tickets from one network: the network holds 5, and each newcomer pushes out the oldest of the
        // ticket that holds most of them (here every ticket holds one or two: the oldest of the two-tab ones).
        for t in 2..20 {
            beat(&presence, &group, holder(t, 9), "x", &format!("Eve{t}")).await;
            assert!(presence.tabs() <= 5);
        }
        assert_eq!(presence.table().networks[&Network::of([192, 0, 2, 9].into())].len(), 5);
        let listed = presence.list(&group).await.unwrap();
        assert_eq!(listed, ["Eve15", "Eve16", "Eve17", "Eve18", "Eve19"], "the newest, one tab each");
        // Another network is untouched by all of it
        beat(&presence, &group, holder(30, 1), "mine", "Ada").await;
        assert!(presence.list(&group).await.unwrap().contains(&"Ada".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_group_or_table_pushes_out_the_biggest_networks_oldest_tab() {
        let presence = MemoryPresence::new(Caps { per_ticket: 3, per_network: 100, per_group: 6, total: 8 });
        let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
        // network 1 holds 4 of g's tabs (two tickets), network 2 holds 1
        for (ticket, id) in [(1, "a"), (1, "b"), (2, "c"), (2, "d")] {
            beat(&presence, &g, holder(ticket, 1), id, &format!("N{ticket}")).await;
        }
        beat(&presence, &g, holder(3, 2), "e", "Grace").await;
        beat(&presence, &g, holder(4, 3), "f", "Linus").await;
        // g is full (6): a newcomer from network 4 pushes out network 1's oldest ("a")
        assert!(!beat(&presence, &g, holder(5, 4), "new", "Ada").await.is_empty());
        assert_eq!(presence.table().groups[&g].tabs.len(), 6);
        assert!(!presence.table().groups[&g].tabs.contains_key(&(holder(1, 1).ticket, tab("a"))));
        assert_eq!(presence.list(&g).await.unwrap(), ["Ada", "Grace", "Linus", "N1", "N2"]);
        // The table holds 8: two in h, then the next newcomer (in h) pushes out network 1's oldest again ("b"),
        // and g, whose name N1 went with it, is told
        beat(&presence, &h, holder(6, 5), "h1", "Hal").await;
        beat(&presence, &h, holder(7, 5), "h2", "Hal").await;
        assert_eq!(presence.tabs(), 8);
        let changed = beat(&presence, &h, holder(8, 6), "h3", "Ida").await;
        assert_eq!(changed, [g.clone(), h.clone()]);
        assert_eq!(presence.tabs(), 8);
        assert_eq!(presence.list(&g).await.unwrap(), ["Ada", "Grace", "Linus", "N2"]);
        // A flood of fresh ids never refuses anyone, and never grows the table
        for i in 0..1_000 {
            beat(&presence, &h, holder(100 + (i % 100) as u8, 7), &format!("x{i}"), "Eve").await;
        }
        assert_eq!(presence.tabs(), 8);
        assert!(presence.list(&g).await.unwrap().contains(&"Grace".to_owned()), "one tab, not the biggest holder");
    }

    #[test]
    fn tab_ids_are_short_plain_ascii() {
        assert!(TabId::parse("0f3a-9B_x").is_some());
        assert!(TabId::parse(&"a".repeat(40)).is_some());
        for bad in ["", " a", "a b", "é", &"a".repeat(41), "a\n", "a.b"] {
            assert!(TabId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn networks_are_addresses_and_ipv6_slash_64s() {
        let net = |raw: &str| Network::of(raw.parse().unwrap());
        assert_eq!(net("2001:db8::1"), net("2001:db8::ffff:1"));
        assert_ne!(net("2001:db8::1"), net("2001:db8:0:1::1"));
        assert_eq!(net("::ffff:192.0.2.1"), net("192.0.2.1"));
        assert_ne!(net("192.0.2.1"), net("192.0.2.2"));
        assert_eq!(net("2001:db8::1").to_string(), "2001:db8::");
    }
}
