//! Presence in this process's memory: one table of tabs per group, each with its name and the instant its lease
//! runs out. Bounded per group and in total ([`Caps`]); a tab already listed is always renewed, only new ones are
//! refused when full. Time is tokio's, so tests move it forward instead of waiting.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Caps, Changed, Presence, PresenceError, TabId};
use crate::server::group::GroupId;
use crate::shared::domain::Username;

struct Lease {
    name: String,
    until: Instant,
}

type Tabs = HashMap<TabId, Lease>;

#[derive(Default)]
struct Table {
    groups: HashMap<GroupId, Tabs>,
    /// Tabs over all groups.
    total: usize,
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

/// The names of `tabs`, each once.
fn names(tabs: &Tabs) -> BTreeSet<&str> {
    tabs.values().map(|lease| lease.name.as_str()).collect()
}

/// Drops the leases of `tabs` that ran out by `now`; answers how many went and whether a name went with them.
fn drop_expired(tabs: &mut Tabs, now: Instant) -> (usize, Changed) {
    if tabs.values().all(|lease| lease.until > now) {
        return (0, false);
    }
    let before = names(tabs).len();
    let count = tabs.len();
    tabs.retain(|_, lease| lease.until > now);
    (count - tabs.len(), names(tabs).len() != before)
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn beat(
        &self,
        group: &GroupId,
        tab: &TabId,
        name: &Username,
        lease: Duration,
    ) -> Result<Changed, PresenceError> {
        let until = Instant::now() + lease;
        let mut table = self.table();
        let Table { groups, total } = &mut *table;
        if let Some(listed) = groups.get_mut(group).and_then(|tabs| tabs.get_mut(tab)) {
            listed.until = until;
            if listed.name == name.as_str() {
                return Ok(false);
            }
        }
        // Leases that ran out still count against the caps until the sweep (at most a second): they go there, so
        // that their group is told.
        let tabs = groups.entry(group.clone()).or_default();
        let had_name = names(tabs).contains(name.as_str());
        if !tabs.contains_key(tab) {
            if tabs.len() >= self.caps.per_group {
                return Err(PresenceError::GroupFull(self.caps.per_group));
            }
            if *total >= self.caps.total {
                if tabs.is_empty() {
                    groups.remove(group);
                }
                return Err(PresenceError::Full);
            }
            *total += 1;
        }
        let before = names(tabs).len();
        tabs.insert(tab.clone(), Lease { name: name.as_str().to_owned(), until });
        Ok(!had_name || names(tabs).len() != before)
    }

    async fn leave(&self, group: &GroupId, tab: &TabId) -> Result<Changed, PresenceError> {
        let mut table = self.table();
        let Table { groups, total } = &mut *table;
        let Some(tabs) = groups.get_mut(group) else { return Ok(false) };
        let Some(gone) = tabs.remove(tab) else { return Ok(false) };
        *total -= 1;
        let changed = !names(tabs).contains(gone.name.as_str());
        if tabs.is_empty() {
            groups.remove(group);
        }
        Ok(changed)
    }

    async fn list(&self, group: &GroupId) -> Result<Vec<String>, PresenceError> {
        let now = Instant::now();
        let table = self.table();
        let Some(tabs) = table.groups.get(group) else { return Ok(Vec::new()) };
        // A lease that ran out is not listed, even before the sweeper drops it.
        let live: BTreeSet<&str> =
            tabs.values().filter(|lease| lease.until > now).map(|lease| lease.name.as_str()).collect();
        Ok(live.into_iter().map(str::to_owned).collect())
    }

    async fn expire(&self) -> Result<Vec<GroupId>, PresenceError> {
        let now = Instant::now();
        let mut table = self.table();
        let Table { groups, total } = &mut *table;
        let mut changed = Vec::new();
        groups.retain(|group, tabs| {
            let (gone, names_changed) = drop_expired(tabs, now);
            *total -= gone;
            if names_changed {
                changed.push(group.clone());
            }
            !tabs.is_empty()
        });
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    fn tab(id: &str) -> TabId {
        TabId::parse(id).unwrap()
    }

    fn name(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn leases_run_out_unless_renewed_and_the_sweep_names_the_groups_that_changed() {
        let presence = MemoryPresence::default();
        let group = GroupId::new("g");
        assert!(presence.beat(&group, &tab("a"), &name("Ada"), LEASE).await.unwrap());
        assert!(presence.beat(&group, &tab("b"), &name("Linus"), LEASE).await.unwrap());
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(!presence.beat(&group, &tab("a"), &name("Ada"), LEASE).await.unwrap(), "a renewal changes nothing");
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
    }

    #[tokio::test(start_paused = true)]
    async fn two_tabs_with_one_name_count_once_and_the_name_stays_until_both_are_gone() {
        let presence = MemoryPresence::default();
        let group = GroupId::new("g");
        assert!(presence.beat(&group, &tab("one"), &name("Ada"), LEASE).await.unwrap());
        assert!(!presence.beat(&group, &tab("two"), &name("Ada"), LEASE).await.unwrap(), "Ada was here already");
        assert!(presence.beat(&group, &tab("three"), &name("Grace"), LEASE).await.unwrap());
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada", "Grace"]);
        assert!(!presence.leave(&group, &tab("one")).await.unwrap(), "Ada is still here in tab two");
        assert_eq!(presence.list(&group).await.unwrap(), ["Ada", "Grace"]);
        assert!(presence.leave(&group, &tab("two")).await.unwrap());
        assert!(!presence.leave(&group, &tab("two")).await.unwrap(), "leaving twice changes nothing");
        assert_eq!(presence.list(&group).await.unwrap(), ["Grace"]);
        assert_eq!(presence.tabs(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_groups_presence_never_shows_in_another() {
        let presence = MemoryPresence::default();
        let (ours, theirs) = (GroupId::new("ours"), GroupId::new("theirs"));
        presence.beat(&ours, &tab("t"), &name("Ada"), LEASE).await.unwrap();
        // the same tab id in another group is another tab
        presence.beat(&theirs, &tab("t"), &name("Eve"), LEASE).await.unwrap();
        assert_eq!(presence.list(&ours).await.unwrap(), ["Ada"]);
        assert_eq!(presence.list(&theirs).await.unwrap(), ["Eve"]);
        assert!(!presence.leave(&theirs, &tab("x")).await.unwrap());
        presence.leave(&theirs, &tab("t")).await.unwrap();
        assert_eq!(presence.list(&ours).await.unwrap(), ["Ada"]);
        tokio::time::advance(LEASE).await;
        presence.beat(&theirs, &tab("t"), &name("Eve"), LEASE).await.unwrap();
        assert_eq!(presence.expire().await.unwrap(), vec![ours.clone()], "only the group whose lease ran out");
    }

    #[tokio::test(start_paused = true)]
    async fn tables_are_bounded_per_group_and_in_total_and_listed_tabs_are_still_renewed() {
        let presence = MemoryPresence::new(Caps { per_group: 3, total: 5 });
        let (a, b, c) = (GroupId::new("a"), GroupId::new("b"), GroupId::new("c"));
        for i in 0..3 {
            presence.beat(&a, &tab(&format!("t{i}")), &name(&format!("n{i}")), LEASE).await.unwrap();
        }
        let refused = presence.beat(&a, &tab("t3"), &name("n3"), LEASE).await.unwrap_err();
        assert_eq!(refused, PresenceError::GroupFull(3));
        presence.beat(&a, &tab("t0"), &name("n0"), LEASE).await.unwrap();
        for i in 0..2 {
            presence.beat(&b, &tab(&format!("t{i}")), &name("Bo"), LEASE).await.unwrap();
        }
        assert_eq!(presence.beat(&c, &tab("t"), &name("Cy"), LEASE).await.unwrap_err(), PresenceError::Full);
        assert_eq!(presence.tabs(), 5);
        assert!(presence.list(&c).await.unwrap().is_empty());
        // a flood of fresh tab ids in one group changes nothing once it is full
        for i in 0..1_000 {
            assert!(presence.beat(&b, &tab(&format!("x{i}")), &name("Eve"), LEASE).await.is_err());
        }
        assert_eq!(presence.tabs(), 5);
        assert_eq!(presence.list(&b).await.unwrap(), ["Bo"]);
        // room comes back once the leases run out and the sweep drops them
        tokio::time::advance(LEASE).await;
        assert_eq!(presence.expire().await.unwrap().len(), 2);
        presence.beat(&c, &tab("t"), &name("Cy"), LEASE).await.unwrap();
        assert_eq!(presence.tabs(), 1);
    }

    #[test]
    fn tab_ids_are_short_plain_ascii() {
        assert!(TabId::parse("0f3a-9B_x").is_some());
        assert!(TabId::parse(&"a".repeat(40)).is_some());
        for bad in ["", " a", "a b", "é", &"a".repeat(41), "a\n", "a.b"] {
            assert!(TabId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
