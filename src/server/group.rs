//! Session groups, a domain type: who gets pushed a notification, and whose tickets are valid together. By default
//! a group is one browser, named by an anonymous random id (which `cookie` carries); with scope `everyone`, every
//! visitor shares one group. Nothing here knows HTTP: the use cases take a `GroupId`, and the middleware that finds
//! the caller's (`server::cookie`) makes one with `random` or `issued`. An `Audience` is a group on one feed.

use std::sync::Arc;

use rand::RngCore;

use crate::shared::domain::FeedName;

/// 128 random bits, hex-encoded.
const GROUP_HEX_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupId(Arc<str>);

impl GroupId {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The one group of scope `everyone`.
    pub fn everyone() -> Self {
        Self::new("everyone")
    }

    /// Every group that follows a feed: what a backend publishes (`feed::publish`) is announced to every tab of the
    /// feed, whatever its scope. No browser's group can be it (`issued` takes hex only).
    pub fn every_follower() -> Self {
        Self::new("*")
    }

    pub fn is_every_follower(&self) -> bool {
        &*self.0 == "*"
    }

    /// A fresh browser's group: 128 random bits, so nobody can guess another browser's.
    pub fn random() -> Self {
        let mut bytes = [0u8; GROUP_HEX_LEN / 2];
        rand::rng().fill_bytes(&mut bytes);
        Self::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    /// A value `random` could have made; anything else (a client's invention) is no group, and the caller gets a
    /// fresh one.
    pub fn issued(value: &str) -> Option<Self> {
        let ours =
            value.len() == GROUP_HEX_LEN && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ours.then(|| Self::new(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a notice is for: the tabs of one session group that show one feed. Notices, presence and the hub's
/// subscriptions are all kept per audience; a browser's stream may serve several (one per feed its tabs show).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Audience {
    pub feed: FeedName,
    pub group: GroupId,
}

impl Audience {
    pub fn new(feed: FeedName, group: GroupId) -> Self {
        Self { feed, group }
    }

    /// The group's audience on the feed of `/`.
    pub fn main(group: GroupId) -> Self {
        Self::new(FeedName::main(), group)
    }

    /// `feed/group`: one string for shared tables (neither a feed name nor a group id holds a `/`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.feed, self.group.as_str())
    }

    /// What `key` made.
    pub fn from_key(key: &str) -> Option<Self> {
        let (feed, group) = key.split_once('/')?;
        Some(Self::new(FeedName::parse(feed)?, GroupId::new(group)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One group per browser (the group cookie).
    Browser,
    /// One group for every visitor.
    Everyone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_groups_are_128_bit_hex_and_distinct() {
        let (a, b) = (GroupId::random(), GroupId::random());
        assert_ne!(a, b);
        assert_eq!(GroupId::issued(a.as_str()), Some(a.clone()));
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn an_audience_key_reads_back() {
        let audience = Audience::new(FeedName::parse("team-news").unwrap(), GroupId::random());
        assert_eq!(Audience::from_key(&audience.key()), Some(audience));
        assert_eq!(Audience::from_key("Bad/g"), None);
        assert_eq!(Audience::from_key("main"), None);
    }

    #[test]
    fn foreign_values_are_not_groups() {
        assert_eq!(GroupId::issued("everyone"), None);
        assert_eq!(GroupId::issued("*"), None);
        assert!(GroupId::every_follower().is_every_follower() && !GroupId::everyone().is_every_follower());
        assert_eq!(GroupId::issued(""), None);
        assert_eq!(GroupId::issued(&"G".repeat(32)), None);
        assert_eq!(GroupId::issued(&"a".repeat(33)), None);
    }
}
