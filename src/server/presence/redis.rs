//! `RedisPresence`: who is here, shared by every replica on one Redis, so a tab that beats through replica A is
//! listed for the tabs on replica B, and a replica that is killed leaves no zombie: its tabs' leases simply run out.
//!
//! Keys, under the deployment's prefix, per session group: `here:<group>` (a hash, tab → name) and
//! `here-leases:<group>` (a sorted set, tab → lease end in Redis milliseconds), both expiring after two leases; and
//! one `here-groups` (a sorted set, group → its earliest lease end) that any replica's sweep walks. Each change is one
//! Lua script on Redis's clock (replicas' clocks may disagree): drop the leases that ran out, make the change,
//! compare the names before and after, and when they differ publish `presence <group>` on the notice channel.
//! Every replica's bus receiver turns that into `PresenceChanged` for its own tabs of the group (`bus::redis`), the
//! replica that made the change included, so this implementation answers "unchanged" to its caller: the
//! announcement is already on its way, once, to everyone.
//!
//! Bounds: at most `Caps::per_group` tabs per group and `Caps::total` groups with someone here; every key expires.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{Caps, Changed, Presence, PresenceError, TabId};
use crate::server::group::GroupId;
use crate::server::replicas::{Link, LinkError};
use crate::shared::domain::Username;

/// Groups one sweep handles at most (the rest wait for the next sweep, a second later).
const SWEEP_GROUPS: usize = 200;

/// Shared by the scripts: the time, the names of a group, dropping its leases that ran out, and re-filing the
/// group under its earliest lease (or dropping it) in `here-groups`.
const COMMON: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function names(tabs)
  local seen, list = {}, {}
  for _, name in ipairs(redis.call('HVALS', tabs)) do
    if not seen[name] then seen[name] = true; list[#list + 1] = name end
  end
  table.sort(list)
  return table.concat(list, '\n')
end
local function drop_expired(tabs, leases)
  local gone = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  for i = 1, #gone, 500 do
    local part = {unpack(gone, i, math.min(i + 499, #gone))}
    redis.call('ZREM', leases, unpack(part))
    redis.call('HDEL', tabs, unpack(part))
  end
end
local function refile(groups, leases, group)
  local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  if first[2] then redis.call('ZADD', groups, first[2], group) else redis.call('ZREM', groups, group) end
end
local function tell(before, tabs, channel, group)
  if names(tabs) ~= before then redis.call('PUBLISH', channel, 'presence ' .. group); return 1 end
  return 0
end
"#;

/// `KEYS`: tabs, leases, groups. `ARGV`: group, tab, name, lease ms, per-group cap, group cap, channel.
/// Answers 1 (names changed), 0 (not), -1 (group full), -2 (too many groups).
const BEAT: &str = r#"
local tabs, leases, groups = KEYS[1], KEYS[2], KEYS[3]
local group, tab, name, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local before = names(tabs)
drop_expired(tabs, leases)
if redis.call('HEXISTS', tabs, tab) == 0 then
  if redis.call('HLEN', tabs) >= tonumber(ARGV[5]) then refile(groups, leases, group); return -1 end
  if redis.call('ZSCORE', groups, group) == false and redis.call('ZCARD', groups) >= tonumber(ARGV[6]) then return -2 end
end
redis.call('HSET', tabs, tab, name)
redis.call('ZADD', leases, now + lease, tab)
redis.call('PEXPIRE', tabs, 2 * lease)
redis.call('PEXPIRE', leases, 2 * lease)
refile(groups, leases, group)
return tell(before, tabs, ARGV[7], group)
"#;

/// `KEYS`: tabs, leases, groups. `ARGV`: group, tab, channel. Answers 1 if the names changed.
const LEAVE: &str = r#"
local tabs, leases, groups = KEYS[1], KEYS[2], KEYS[3]
local before = names(tabs)
drop_expired(tabs, leases)
redis.call('HDEL', tabs, ARGV[2])
redis.call('ZREM', leases, ARGV[2])
refile(groups, leases, ARGV[1])
return tell(before, tabs, ARGV[3], ARGV[1])
"#;

/// `KEYS`: tabs, leases. Answers the names of the live leases (a lease that ran out is never listed, swept or not).
const LIST: &str = r#"
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
if #live == 0 then return {} end
local out = {}
for i = 1, #live, 500 do
  for _, name in ipairs(redis.call('HMGET', KEYS[1], unpack(live, i, math.min(i + 499, #live)))) do
    if name then out[#out + 1] = name end
  end
end
return out
"#;

/// `KEYS`: groups. `ARGV`: key prefix, channel, most groups. Drops the leases that ran out in the groups due, and
/// tells each group whose names changed. The per-group keys are made from the prefix (one Redis, not a cluster).
const SWEEP: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local told = 0
for _, group in ipairs(due) do
  local tabs, leases = ARGV[1] .. 'here:' .. group, ARGV[1] .. 'here-leases:' .. group
  local before = names(tabs)
  drop_expired(tabs, leases)
  refile(KEYS[1], leases, group)
  told = told + tell(before, tabs, ARGV[2], group)
end
return told
"#;

pub struct RedisPresence {
    link: Link,
    caps: Caps,
    beat: Script,
    leave: Script,
    list: Script,
    sweep: Script,
}

impl RedisPresence {
    /// `caps.total` bounds the groups with someone here (each holds at most `caps.per_group` tabs).
    pub fn new(link: Link, caps: Caps) -> Self {
        let script = |body: &str| Script::new(&format!("{COMMON}{body}"));
        Self { link, caps, beat: script(BEAT), leave: script(LEAVE), list: script(LIST), sweep: script(SWEEP) }
    }

    fn keys(&self, group: &GroupId) -> [String; 3] {
        let group = group.as_str();
        [self.link.key(&format!("here:{group}")), self.link.key(&format!("here-leases:{group}")), self.groups()]
    }

    fn groups(&self) -> String {
        self.link.key("here-groups")
    }

    /// The channel the bus receivers listen to (`bus::redis`).
    fn channel(&self) -> String {
        self.link.key("notices")
    }
}

fn unavailable(err: LinkError) -> PresenceError {
    PresenceError::Unavailable(err.to_string())
}

#[async_trait]
impl Presence for RedisPresence {
    async fn beat(
        &self,
        group: &GroupId,
        tab: &TabId,
        name: &Username,
        lease: Duration,
    ) -> Result<Changed, PresenceError> {
        let mut call = self.beat.prepare_invoke();
        for key in self.keys(group) {
            call.key(key);
        }
        call.arg(group.as_str())
            .arg(tab.as_str())
            .arg(name.as_str())
            .arg(lease.as_millis().max(1) as u64)
            .arg(self.caps.per_group)
            .arg(self.caps.total)
            .arg(self.channel());
        match self.link.invoke::<i64>(&call).await.map_err(unavailable)? {
            -1 => Err(PresenceError::GroupFull(self.caps.per_group)),
            -2 => Err(PresenceError::Full),
            _ => Ok(false), // a change was published to every replica, this one included
        }
    }

    async fn leave(&self, group: &GroupId, tab: &TabId) -> Result<Changed, PresenceError> {
        let mut call = self.leave.prepare_invoke();
        for key in self.keys(group) {
            call.key(key);
        }
        call.arg(group.as_str()).arg(tab.as_str()).arg(self.channel());
        self.link.invoke::<i64>(&call).await.map_err(unavailable)?;
        Ok(false)
    }

    async fn list(&self, group: &GroupId) -> Result<Vec<String>, PresenceError> {
        let [tabs, leases, _] = self.keys(group);
        let mut call = self.list.prepare_invoke();
        call.key(tabs).key(leases);
        let mut names: Vec<String> = self.link.invoke(&call).await.map_err(unavailable)?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn expire(&self) -> Result<Vec<GroupId>, PresenceError> {
        let mut call = self.sweep.prepare_invoke();
        call.key(self.groups()).arg(self.link.key("")).arg(self.channel()).arg(SWEEP_GROUPS);
        self.link.invoke::<i64>(&call).await.map_err(unavailable)?;
        Ok(Vec::new()) // announced through Redis
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::replicas::{test_link, test_redis::TestRedis};

    fn tab(id: &str) -> TabId {
        TabId::parse(id).unwrap()
    }

    fn name(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    fn presence(redis: &TestRedis, caps: Caps) -> RedisPresence {
        RedisPresence::new(test_link(redis), caps)
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn two_replicas_list_one_presence_each_name_once_and_groups_apart() {
        let redis = TestRedis::start();
        let (a, b) = (presence(&redis, Caps::default()), presence(&redis, Caps::default()));
        let (g, h) = (GroupId::new("g"), GroupId::new("h"));
        a.beat(&g, &tab("t1"), &name("Ada"), LEASE).await.unwrap();
        b.beat(&g, &tab("t2"), &name("Ada"), LEASE).await.unwrap();
        b.beat(&g, &tab("t3"), &name("Linus"), LEASE).await.unwrap();
        a.beat(&h, &tab("t4"), &name("Grace"), LEASE).await.unwrap();
        for replica in [&a, &b] {
            assert_eq!(replica.list(&g).await.unwrap(), ["Ada", "Linus"]);
            assert_eq!(replica.list(&h).await.unwrap(), ["Grace"]);
        }
        b.leave(&g, &tab("t1")).await.unwrap();
        assert_eq!(a.list(&g).await.unwrap(), ["Ada", "Linus"], "Ada is still here in another tab");
        a.leave(&g, &tab("t2")).await.unwrap();
        assert_eq!(b.list(&g).await.unwrap(), ["Linus"]);
        assert!(a.list(&GroupId::new("nobody")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn leases_run_out_for_every_replica_and_the_sweep_leaves_no_key_behind() {
        let redis = TestRedis::start();
        let (a, b) = (presence(&redis, Caps::default()), presence(&redis, Caps::default()));
        let g = GroupId::new("g");
        a.beat(&g, &tab("gone"), &name("Ada"), Duration::from_millis(150)).await.unwrap();
        b.beat(&g, &tab("stays"), &name("Linus"), LEASE).await.unwrap();
        assert_eq!(b.list(&g).await.unwrap(), ["Ada", "Linus"]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Listed by nobody once the lease ran out, before any sweep ("a" may have been killed: no zombie).
        assert_eq!(b.list(&g).await.unwrap(), ["Linus"]);
        b.expire().await.unwrap();
        assert_eq!(redis.command(&["HLEN", "test:here:g"]).int(), Some(1));
        b.leave(&g, &tab("stays")).await.unwrap();
        b.expire().await.unwrap();
        for key in ["test:here:g", "test:here-leases:g"] {
            assert_eq!(redis.command(&["EXISTS", key]).int(), Some(0), "{key}");
        }
        assert_eq!(redis.command(&["ZCARD", "test:here-groups"]).int(), Some(0));
    }

    #[tokio::test]
    async fn tables_are_bounded_per_group_and_in_groups_and_listed_tabs_are_still_renewed() {
        let redis = TestRedis::start();
        let p = presence(&redis, Caps { per_group: 2, total: 2 });
        let (g, h, i) = (GroupId::new("g"), GroupId::new("h"), GroupId::new("i"));
        p.beat(&g, &tab("1"), &name("A"), LEASE).await.unwrap();
        p.beat(&g, &tab("2"), &name("B"), LEASE).await.unwrap();
        assert_eq!(p.beat(&g, &tab("3"), &name("C"), LEASE).await, Err(PresenceError::GroupFull(2)));
        p.beat(&g, &tab("2"), &name("B"), LEASE).await.unwrap();
        p.beat(&h, &tab("4"), &name("D"), LEASE).await.unwrap();
        assert_eq!(p.beat(&i, &tab("5"), &name("E"), LEASE).await, Err(PresenceError::Full));
        assert_eq!(p.list(&g).await.unwrap(), ["A", "B"]);
        assert!(p.list(&i).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_change_is_published_once_and_a_renewal_is_not() {
        let redis = TestRedis::start();
        let p = presence(&redis, Caps::default());
        let g = GroupId::new("g");
        // What the scripts publish, counted by Redis itself (PUBLISH inside a script counts as a call).
        let calls = |redis: &TestRedis| {
            let info = redis.command(&["INFO", "commandstats"]);
            let text = info.text().unwrap_or_default().to_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        p.beat(&g, &tab("1"), &name("Ada"), LEASE).await.unwrap();
        assert_eq!(calls(&redis), 1, "a new name is told");
        p.beat(&g, &tab("1"), &name("Ada"), LEASE).await.unwrap();
        p.beat(&g, &tab("2"), &name("Ada"), LEASE).await.unwrap();
        assert_eq!(calls(&redis), 1, "a renewal, or the same name in another tab, is not");
        p.leave(&g, &tab("1")).await.unwrap();
        assert_eq!(calls(&redis), 1, "Ada is still here in tab 2");
        p.leave(&g, &tab("2")).await.unwrap();
        assert_eq!(calls(&redis), 2, "Ada left");
    }
}
