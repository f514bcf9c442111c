//! `RedisPresence`: who is here, shared by every replica on one Redis, so a tab that beats through replica A is
//! listed for the tabs on replica B, and a replica that is killed leaves no zombie: its tabs' leases simply run out.
//!
//! A tab is `<ticket tag>.<tab id>` within its group (`TicketTag`: a hash of the ticket, never the ticket). Keys,
//! under the deployment's prefix, per session group: `here:<group>` (a hash, tab → name), `here-leases:<group>`
//! (a sorted set, tab → lease end in Redis milliseconds), `here-born:<group>` (tab → its age, from `here-seq`),
//! `here-from:<group>` (tab → the network it came from) and `here-names:<group>` (name → how many tabs carry it, so
//! a change of names is one counter, never a rebuilt list); per ticket `here-ticket:<tag>` and per network
//! `here-net:<network>` (their tabs by age); and over all groups `here-all` (every tab, `network\ngroup\ntab`, by
//! lease end: its size is the table's, and the sweep walks it), `here-by-net` (network → its tab count, the
//! biggest holder on top) and `here-seq` (the ages' counter). Every key is renewed for two leases by each beat that
//! touches it, and the sweep keeps them in step well before that.
//!
//! Each change is one Lua script on Redis's clock (replicas' clocks may disagree): make room (a full list loses
//! its biggest holder's oldest tab, as in `presence`), make the change, and answer the groups whose names changed,
//! as the in-memory table does; the caller hands them to the broker, which tells every replica (`broker::redis`).
//! Each change is answered to the one replica whose script made it, so it is announced once. The per-group keys are made inside the scripts from the prefix (one Redis, not a cluster), as a full
//! list may push out a tab of any group.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{Caps, Changed, Holder, Listed, Presence, PresenceError, TabId, TicketTag};
use crate::server::group::Audience;
use crate::server::link::{Link, LinkError};

/// Leases one sweep call drops at most; a sweep calls again while a call drops that many, up to
/// [`SWEEP_CALLS`] times (the rest wait for the next sweep, a second later).
const SWEEP_TABS: usize = 500;
const SWEEP_CALLS: usize = 20;
/// Leases a new tab's beat drops first, so that those that ran out are not counted against the caps.
const SWEEP_ON_BEAT: usize = 50;

/// Shared by the scripts (`ARGV[1]` is always the key prefix): the time, the keys, dropping a tab from every list,
/// the sweep, choosing whom a full list pushes out, and telling the groups whose names changed.
const COMMON: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1]
local ALL, BY_NET, SEQ = P .. 'here-all', P .. 'here-by-net', P .. 'here-seq'
local function group_keys(g)
  return P .. 'here:' .. g, P .. 'here-leases:' .. g, P .. 'here-born:' .. g, P .. 'here-from:' .. g,
    P .. 'here-names:' .. g
end
local function net_key(net) return P .. 'here-net:' .. net end
local function ticket_key(tag) return P .. 'here-ticket:' .. tag end
local changed, noted = {}, {}
local function note(g)
  if not noted[g] then noted[g] = true; changed[#changed + 1] = g end
end
local function resize(net)
  local count = redis.call('ZCARD', net_key(net))
  if count > 0 then redis.call('ZADD', BY_NET, count, net) else redis.call('ZREM', BY_NET, net) end
end
-- Unlists the tab `tk` of group `g`, counted against `net`, from every list (those already gone are skipped).
local function drop(net, g, tk)
  redis.call('ZREM', ALL, net .. '\n' .. g .. '\n' .. tk)
  redis.call('ZREM', net_key(net), g .. '\n' .. tk)
  resize(net)
  local tag = string.match(tk, '^(%x+)%.')
  if tag then redis.call('ZREM', ticket_key(tag), tk) end
  local tabs, leases, born, from, names = group_keys(g)
  local name = redis.call('HGET', tabs, tk)
  if name then
    redis.call('HDEL', tabs, tk)
    redis.call('HDEL', from, tk)
    redis.call('ZREM', leases, tk)
    redis.call('ZREM', born, tk)
    if redis.call('HINCRBY', names, name, -1) <= 0 then
      redis.call('HDEL', names, name)
      note(g)
    end
  end
  if redis.call('EXISTS', ALL) == 0 then redis.call('DEL', SEQ) end
end
-- A member of `here-all`: `network\ngroup\ntab`.
local function drop_member(m)
  local net, g, tk = string.match(m, '^([^\n]*)\n([^\n]*)\n(.*)$')
  if net then drop(net, g, tk) else redis.call('ZREM', ALL, m) end
end
local function sweep(most)
  local due = redis.call('ZRANGEBYSCORE', ALL, '-inf', now, 'LIMIT', 0, most)
  for _, m in ipairs(due) do drop_member(m) end
  return #due
end
-- Of a full list's members, oldest first, held by `holders[i]` (false: a member no longer listed, pushed out
-- first), the index of the one to push out: the oldest of the holder with the most; among equals, the holder
-- whose oldest is oldest.
local function evictee(holders, n)
  local count, first, best = {}, {}, nil
  for i = 1, n do
    local h = holders[i]
    if not h then return i end
    if count[h] then count[h] = count[h] + 1 else count[h] = 1; first[h] = i end
  end
  for h, c in pairs(count) do
    if best == nil or c > count[best] or (c == count[best] and first[h] < first[best]) then best = h end
  end
  return first[best]
end
-- `{first, changed groups...}`: what a script answers, its own word first.
local function answer(first)
  local out = {tostring(first)}
  for _, g in ipairs(changed) do out[#out + 1] = g end
  return out
end
"#;

/// `ARGV`: prefix, group, ticket tag, tab, name, network, lease ms, caps per ticket, per network, per group and in
/// total, leases to sweep first. Answers `{"ok" | "full", groups whose names changed...}` (`full`: no room could be
/// made; a renewal changes none).
const BEAT: &str = r#"
local g, tag, tab, name, net = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local lease = tonumber(ARGV[7])
local per_ticket, per_net, per_group, total = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local tk = tag .. '.' .. tab
local tabs, leases, born, from, names = group_keys(g)
local ends = now + lease
local function keep(keys)
  for _, key in ipairs(keys) do redis.call('PEXPIRE', key, 2 * lease) end
end
local held = redis.call('HGET', from, tk)
if held then
  -- A renewal: the ticket names its author, so who is listed does not change.
  redis.call('ZADD', leases, ends, tk)
  redis.call('ZADD', ALL, ends, held .. '\n' .. g .. '\n' .. tk)
  keep({tabs, leases, born, from, names, ticket_key(tag), net_key(held), ALL, BY_NET, SEQ})
  return answer('ok')
end
sweep(tonumber(ARGV[12]))
local function split(m) return string.match(m, '^([^\n]*)\n(.*)$') end
-- Pushes out one tab if a list the new tab joins is full; answers whether it did.
local function make_room()
  local mine = redis.call('ZRANGE', ticket_key(tag), 0, -1)
  if #mine >= per_ticket then
    local at = redis.call('HGET', from, mine[1])
    if at then drop(at, g, mine[1]) else redis.call('ZREM', ticket_key(tag), mine[1]) end
    return true
  end
  if redis.call('ZCARD', net_key(net)) >= per_net then
    local members = redis.call('ZRANGE', net_key(net), 0, -1)
    local holders = {}
    for i, m in ipairs(members) do holders[i] = string.match(m, '\n(%x+)%.') or false end
    local m = members[evictee(holders, #members)]
    local og, otk = split(m)
    if og then drop(net, og, otk) else redis.call('ZREM', net_key(net), m); resize(net) end
    return true
  end
  if redis.call('ZCARD', born) >= per_group then
    local members = redis.call('ZRANGE', born, 0, -1)
    local holders = {}
    for i = 1, #members, 500 do
      local part = redis.call('HMGET', from, unpack(members, i, math.min(i + 499, #members)))
      for j = 1, #part do holders[i + j - 1] = part[j] end
    end
    local i = evictee(holders, #members)
    if holders[i] then drop(holders[i], g, members[i]) else redis.call('ZREM', born, members[i]) end
    return true
  end
  if redis.call('ZCARD', ALL) >= total then
    local biggest = redis.call('ZREVRANGE', BY_NET, 0, 0)[1]
    local first = biggest and redis.call('ZRANGE', net_key(biggest), 0, 0)[1]
    if first then
      local og, otk = split(first)
      drop(biggest, og, otk)
    elseif biggest then
      redis.call('ZREM', BY_NET, biggest)
    else
      drop_member(redis.call('ZRANGE', ALL, 0, 0)[1])
    end
    return true
  end
  return false
end
-- Each pass shrinks a list, so a handful always do; more would mean lists out of step: the beat is refused.
for _ = 1, 16 do
  if not make_room() then
    -- Ages from a counter, not the clock: tabs listed in the same millisecond keep their order.
    local age = redis.call('INCR', SEQ)
    redis.call('HSET', tabs, tk, name)
    redis.call('HSET', from, tk, net)
    redis.call('ZADD', leases, ends, tk)
    redis.call('ZADD', born, age, tk)
    redis.call('ZADD', ALL, ends, net .. '\n' .. g .. '\n' .. tk)
    redis.call('ZADD', net_key(net), age, g .. '\n' .. tk)
    resize(net)
    redis.call('ZADD', ticket_key(tag), age, tk)
    if redis.call('HINCRBY', names, name, 1) == 1 then note(g) end
    keep({tabs, leases, born, from, names, ticket_key(tag), net_key(net), ALL, BY_NET, SEQ})
    return answer('ok')
  end
end
return answer('full')
"#;

/// `ARGV`: prefix, group, ticket tag, tab. Answers `{"ok", groups whose names changed...}`.
const LEAVE: &str = r#"
local g, tk = ARGV[2], ARGV[3] .. '.' .. ARGV[4]
local _, _, _, from = group_keys(g)
local net = redis.call('HGET', from, tk)
if net then drop(net, g, tk) end
return answer('ok')
"#;

/// `ARGV`: prefix, group. Answers the names of the live leases (a lease that ran out is never listed, swept or not).
const LIST: &str = r#"
local tabs, leases = group_keys(ARGV[2])
local live = redis.call('ZRANGEBYSCORE', leases, '(' .. now, '+inf')
if #live == 0 then return {} end
local out = {}
for i = 1, #live, 500 do
  for _, name in ipairs(redis.call('HMGET', tabs, unpack(live, i, math.min(i + 499, #live)))) do
    if name then out[#out + 1] = name end
  end
end
return out
"#;

/// `ARGV`: prefix, most leases. Drops the leases that ran out, oldest first; answers `{dropped, groups whose names
/// changed...}`.
const SWEEP: &str = r#"
return answer(sweep(tonumber(ARGV[2])))
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
    pub fn new(link: Link, caps: Caps) -> Self {
        let script = |body: &str| Script::new(&format!("{COMMON}{body}"));
        Self { link, caps, beat: script(BEAT), leave: script(LEAVE), list: script(LIST), sweep: script(SWEEP) }
    }

    /// What every script is given first: the prefix its keys start with.
    fn prefix(&self) -> String {
        self.link.key("")
    }
}

/// A script's answer: its own word, then the groups whose names changed.
fn answered(mut reply: Vec<String>) -> (String, Changed) {
    let word = if reply.is_empty() { String::new() } else { reply.remove(0) };
    (word, reply.iter().filter_map(|key| Audience::from_key(key)).collect())
}

fn unavailable(err: LinkError) -> PresenceError {
    PresenceError::Unavailable(err.to_string())
}

#[async_trait]
impl Presence for RedisPresence {
    async fn beat(
        &self,
        group: &Audience,
        holder: &Holder,
        tab: &TabId,
        name: &Listed,
        lease: Duration,
    ) -> Result<Changed, PresenceError> {
        let mut call = self.beat.prepare_invoke();
        call.arg(self.prefix())
            .arg(group.key())
            .arg(holder.ticket.hex())
            .arg(tab.as_str())
            .arg(name.as_str())
            .arg(holder.network.to_string())
            .arg(lease.as_millis().max(1) as u64)
            .arg(self.caps.per_ticket)
            .arg(self.caps.per_network)
            .arg(self.caps.per_group)
            .arg(self.caps.total)
            .arg(SWEEP_ON_BEAT);
        let (word, changed) = answered(self.link.invoke(&call).await.map_err(unavailable)?);
        match word.as_str() {
            "full" => Err(PresenceError::Full),
            _ => Ok(changed),
        }
    }

    async fn leave(&self, group: &Audience, ticket: &TicketTag, tab: &TabId) -> Result<Changed, PresenceError> {
        let mut call = self.leave.prepare_invoke();
        call.arg(self.prefix()).arg(group.key()).arg(ticket.hex()).arg(tab.as_str());
        Ok(answered(self.link.invoke(&call).await.map_err(unavailable)?).1)
    }

    async fn list(&self, group: &Audience) -> Result<Vec<String>, PresenceError> {
        let mut call = self.list.prepare_invoke();
        call.arg(self.prefix()).arg(group.key());
        let mut names: Vec<String> = self.link.invoke(&call).await.map_err(unavailable)?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn expire(&self) -> Result<Changed, PresenceError> {
        let mut changed = Changed::new();
        for _ in 0..SWEEP_CALLS {
            let mut call = self.sweep.prepare_invoke();
            call.arg(self.prefix()).arg(SWEEP_TABS);
            let (dropped, groups) = answered(self.link.invoke(&call).await.map_err(unavailable)?);
            changed.extend(groups.into_iter().filter(|group| !changed.contains(group)).collect::<Vec<_>>());
            if dropped.parse::<usize>().unwrap_or(0) < SWEEP_TABS {
                break;
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::group::GroupId;
    use crate::server::presence::Network;
    use crate::server::replicas::test_link;
    use crate::server::replicas::test_redis::{Reply, TestRedis};
    use crate::server::ticket::TicketId;
    use crate::shared::domain::Username;

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

    fn presence(redis: &TestRedis, caps: Caps) -> RedisPresence {
        RedisPresence::new(test_link(redis), caps)
    }

    const LEASE: Duration = Duration::from_secs(30);

    async fn beat(p: &RedisPresence, group: &Audience, who: Holder, id: &str, as_name: &str) -> Changed {
        p.beat(group, &who, &tab(id), &name(as_name), LEASE).await.unwrap()
    }

    #[tokio::test]
    async fn two_replicas_list_one_presence_each_name_once_and_groups_apart() {
        let redis = TestRedis::start();
        let (a, b) = (presence(&redis, Caps::default()), presence(&redis, Caps::default()));
        let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
        beat(&a, &g, holder(1, 1), "t1", "Ada").await;
        beat(&b, &g, holder(2, 1), "t2", "Ada").await;
        beat(&b, &g, holder(3, 1), "t3", "Linus").await;
        beat(&a, &h, holder(4, 1), "t4", "Grace").await;
        for replica in [&a, &b] {
            assert_eq!(replica.list(&g).await.unwrap(), ["Ada", "Linus"]);
            assert_eq!(replica.list(&h).await.unwrap(), ["Grace"]);
        }
        b.leave(&g, &holder(1, 1).ticket, &tab("t1")).await.unwrap();
        assert_eq!(a.list(&g).await.unwrap(), ["Ada", "Linus"], "Ada is still here in another tab");
        a.leave(&g, &holder(2, 1).ticket, &tab("t2")).await.unwrap();
        assert_eq!(b.list(&g).await.unwrap(), ["Linus"]);
        assert!(a.list(&Audience::main(GroupId::new("nobody"))).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn leases_run_out_for_every_replica_and_the_sweep_leaves_no_key_behind() {
        let redis = TestRedis::start();
        let (a, b) = (presence(&redis, Caps::default()), presence(&redis, Caps::default()));
        let g = Audience::main(GroupId::new("g"));
        a.beat(&g, &holder(1, 1), &tab("gone"), &name("Ada"), Duration::from_millis(150)).await.unwrap();
        beat(&b, &g, holder(2, 2), "stays", "Linus").await;
        assert_eq!(b.list(&g).await.unwrap(), ["Ada", "Linus"]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Listed by nobody once the lease ran out, before any sweep ("a" may have been killed: no zombie).
        assert_eq!(b.list(&g).await.unwrap(), ["Linus"]);
        assert_eq!(b.expire().await.unwrap(), vec![g.clone()], "the sweep answers the group whose names changed");
        assert_eq!(a.expire().await.unwrap(), Changed::new(), "and only to the replica that swept");
        assert_eq!(redis.command(&["HLEN", "test:here:main/g"]).int(), Some(1));
        assert_eq!(redis.command(&["ZCARD", "test:here-all"]).int(), Some(1));
        assert_eq!(redis.command(&["EXISTS", "test:here-net:192.0.2.1"]).int(), Some(0));
        b.leave(&g, &holder(2, 2).ticket, &tab("stays")).await.unwrap();
        b.expire().await.unwrap();
        let keys = redis.command(&["KEYS", "test:here*"]);
        assert_eq!(keys, Reply::Array(Vec::new()), "no presence key is left");
    }

    /// Bob knows Ada's tab id: his leave and his beat of it are his own tab's, and Ada stays listed as Ada.
    #[tokio::test]
    async fn a_tab_is_its_tickets_and_another_ticket_naming_its_id_changes_nothing_of_it() {
        let redis = TestRedis::start();
        let p = presence(&redis, Caps::default());
        let g = Audience::main(GroupId::everyone());
        let (ada, bob) = (holder(1, 1), holder(2, 2));
        beat(&p, &g, ada, "ada-tab", "Ada").await;
        p.leave(&g, &bob.ticket, &tab("ada-tab")).await.unwrap();
        assert_eq!(p.list(&g).await.unwrap(), ["Ada"]);
        beat(&p, &g, bob, "ada-tab", "Bob").await;
        assert_eq!(p.list(&g).await.unwrap(), ["Ada", "Bob"]);
        p.leave(&g, &bob.ticket, &tab("ada-tab")).await.unwrap();
        assert_eq!(p.list(&g).await.unwrap(), ["Ada"]);
    }

    /// The caps count tabs (not groups), and a full list pushes out its biggest holder's oldest tab: one network
    /// flooding fresh ids holds its share and no more, and the others are still listed.
    #[tokio::test]
    async fn full_lists_push_out_their_biggest_holders_oldest_and_never_refuse_the_newcomer() {
        let redis = TestRedis::start();
        let p = presence(&redis, Caps { per_ticket: 2, per_network: 5, per_group: 8, total: 10 });
        let (g, h) = (Audience::main(GroupId::new("g")), Audience::main(GroupId::new("h")));
        beat(&p, &g, holder(1, 1), "grace", "Grace").await;
        for i in 0..10 {
            beat(&p, &g, holder(2, 9), &format!("e{i}"), "Eve").await;
        }
        assert_eq!(redis.command(&["ZCARD", "test:here-all"]).int(), Some(3), "one ticket holds two tabs");
        for t in 10..40 {
            beat(&p, &g, holder(t, 9), "x", &format!("Eve{t}")).await;
        }
        assert_eq!(redis.command(&["ZCARD", "test:here-net:192.0.2.9"]).int(), Some(5), "the network's share");
        assert_eq!(p.list(&g).await.unwrap(), ["Eve35", "Eve36", "Eve37", "Eve38", "Eve39", "Grace"]);
        // the group (8) fills with two more networks; a newcomer pushes out network 9's oldest
        beat(&p, &g, holder(50, 2), "y", "Linus").await;
        beat(&p, &g, holder(51, 3), "z", "Ada").await;
        beat(&p, &g, holder(52, 4), "w", "Barbara").await;
        assert_eq!(redis.command(&["ZCARD", "test:here-born:main/g"]).int(), Some(8));
        let listed = p.list(&g).await.unwrap();
        assert!(!listed.contains(&"Eve35".to_owned()) && listed.contains(&"Barbara".to_owned()), "{listed:?}");
        // the table (10) fills in another group; every newcomer is still listed, the biggest network pays
        for (t, id) in [(60, "h1"), (61, "h2"), (62, "h3")] {
            beat(&p, &h, holder(t, 6), id, &format!("H{t}")).await;
        }
        assert_eq!(redis.command(&["ZCARD", "test:here-all"]).int(), Some(10), "tabs, not groups, are counted");
        assert_eq!(p.list(&h).await.unwrap(), ["H60", "H61", "H62"]);
        let listed = p.list(&g).await.unwrap();
        assert!(["Grace", "Linus", "Ada", "Barbara"].iter().all(|n| listed.contains(&n.to_string())), "{listed:?}");
        let biggest = redis.command(&["ZSCORE", "test:here-by-net", "192.0.2.9"]);
        assert_eq!(biggest.text(), Some("3"), "network 9 paid for the newcomer in h");
    }

    /// `Changed` means what it means in memory: the groups whose names changed, each once; the scripts publish
    /// nothing themselves (the broker announces what the caller hands it).
    #[tokio::test]
    async fn a_change_is_answered_once_a_renewal_is_not_and_nothing_is_published() {
        let redis = TestRedis::start();
        let p = presence(&redis, Caps::default());
        let g = Audience::main(GroupId::new("g"));
        let (one, two) = (holder(1, 1), holder(2, 1));
        assert_eq!(beat(&p, &g, one, "1", "Ada").await, vec![g.clone()], "a new name is told");
        assert_eq!(beat(&p, &g, one, "1", "Ada").await, Changed::new(), "a renewal is not");
        assert_eq!(beat(&p, &g, two, "2", "Ada").await, Changed::new(), "nor the same name in another tab");
        assert_eq!(p.leave(&g, &one.ticket, &tab("1")).await.unwrap(), Changed::new(), "Ada is still here in tab 2");
        assert_eq!(p.leave(&g, &two.ticket, &tab("2")).await.unwrap(), vec![g.clone()], "Ada left");
        let stats = redis.command(&["INFO", "commandstats"]);
        assert!(!stats.text().unwrap_or_default().contains("cmdstat_publish"), "no script publishes");
    }

    /// A renewal reads two keys and writes the leases: it neither lists the group's names nor walks its tabs, so
    /// its cost does not grow with the group (the script before listed every name of the group twice per beat).
    #[tokio::test]
    async fn a_renewal_touches_no_list_of_names() {
        let redis = TestRedis::start();
        let p = presence(&redis, Caps::default());
        let g = Audience::main(GroupId::everyone());
        for t in 0..200u8 {
            beat(&p, &g, holder(t, t), "t", &format!("N{t}")).await;
        }
        redis.command(&["CONFIG", "RESETSTAT"]);
        for t in 0..200u8 {
            beat(&p, &g, holder(t, t), "t", &format!("N{t}")).await;
        }
        let info = redis.command(&["INFO", "commandstats"]);
        let text = info.text().unwrap_or_default().to_owned();
        for listing in ["cmdstat_hvals:", "cmdstat_hgetall:", "cmdstat_zrange:", "cmdstat_zrangebyscore:"] {
            assert!(!text.contains(listing), "{listing} in {text}");
        }
    }
}
