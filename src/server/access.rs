//! Private feeds: who may read a feed and who may post in it (settings: `read` and `write` of a named feed's table,
//! or of a pattern's in `[broadcasting.feed-access."team-*"]`). `anyone` is the default both ways; `token` means a
//! sign-in token of the deployer's backend whose grants cover the feed. A feed's own table wins over a pattern, and
//! of the patterns that match, the longest.
//!
//! A tab proves it may read a private feed with a read pass (`ticket::TicketKeys::issue_pass`), which the join hands
//! out when the token grants the feed: it names the feed and expires with the token, and goes along with every read
//! (pages and presence: `Authorization: Bearer`; the stream, which `EventSource` opens without headers: a `pass`
//! field of its URL). Plain data: the checks that use it are the use cases' (`feed::readable`).

use std::collections::BTreeMap;

use crate::server::identity::FeedPattern;
use crate::shared::domain::FeedName;
use crate::shared::error::{ApiError, ErrorKind};

/// 403: `feed` takes tabs signed in through the deployer's site only (to read it, or to post in it). It says no more
/// than the settings do: nothing of what the feed holds.
pub fn members_only(feed: &FeedName) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!("The feed {feed} is for signed-in members: open it from the site that signs you in."),
    )
}

/// Who may do one thing (read, or post) in a feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Audience {
    /// Every visitor (the default).
    #[default]
    Anyone,
    /// Only a tab signed in with a token that grants the feed (and a backend's API key that covers it).
    Token,
}

impl Audience {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "anyone" => Some(Self::Anyone),
            "token" => Some(Self::Token),
            _ => None,
        }
    }
}

/// A feed's two rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub read: Audience,
    pub write: Audience,
}

impl Access {
    /// Whether reading it takes a sign-in.
    pub fn private(self) -> bool {
        self.read == Audience::Token
    }

    /// Whether it takes anything but an anonymous visitor's, either way.
    pub fn signed_in_only(self) -> bool {
        self.read == Audience::Token || self.write == Audience::Token
    }
}

/// The deployment's rules: per feed, and per pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    named: BTreeMap<FeedName, Access>,
    /// Longest pattern first, so the first that matches is the one that applies.
    patterns: Vec<(FeedPattern, Access)>,
}

impl Rules {
    /// `feed`'s own rules (a named feed's table).
    pub fn set(&mut self, feed: FeedName, access: Access) {
        self.named.insert(feed, access);
    }

    /// The rules of every feed `pattern` matches that has none of its own.
    pub fn set_pattern(&mut self, pattern: FeedPattern, access: Access) {
        self.patterns.retain(|(held, _)| *held != pattern);
        self.patterns.push((pattern, access));
        self.patterns.sort_by_key(|(pattern, _)| std::cmp::Reverse(specificity(pattern)));
    }

    pub fn of(&self, feed: &FeedName) -> Access {
        if let Some(access) = self.named.get(feed) {
            return *access;
        }
        self.patterns.iter().find(|(pattern, _)| pattern.matches(feed)).map(|(_, access)| *access).unwrap_or_default()
    }

    /// Whether any feed may be private (nothing to check otherwise).
    pub fn any(&self) -> bool {
        self.named.values().chain(self.patterns.iter().map(|(_, access)| access)).any(|access| access.signed_in_only())
    }
}

/// An exact name beats every prefix; a longer prefix beats a shorter one.
fn specificity(pattern: &FeedPattern) -> usize {
    match pattern {
        FeedPattern::Exact(_) => usize::MAX,
        FeedPattern::Prefix(prefix) => prefix.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(name: &str) -> FeedName {
        FeedName::parse(name).unwrap()
    }

    const PRIVATE: Access = Access { read: Audience::Token, write: Audience::Token };
    const ANNOUNCE: Access = Access { read: Audience::Anyone, write: Audience::Token };

    #[test]
    fn a_feeds_own_rule_wins_then_the_longest_pattern_and_the_rest_are_open() {
        let mut rules = Rules::default();
        assert!(!rules.any());
        rules.set_pattern(FeedPattern::parse("team-*").unwrap(), PRIVATE);
        rules.set_pattern(FeedPattern::parse("team-news*").unwrap(), ANNOUNCE);
        rules.set(feed("team-lobby"), Access::default());
        assert!(rules.any());
        assert_eq!(rules.of(&feed("team-ops")), PRIVATE);
        assert_eq!(rules.of(&feed("team-news")), ANNOUNCE);
        assert_eq!(rules.of(&feed("team-newsroom")), ANNOUNCE);
        assert_eq!(rules.of(&feed("team-lobby")), Access::default());
        assert_eq!(rules.of(&feed("teams")), Access::default());
        assert_eq!(rules.of(&FeedName::main()), Access::default());
        assert!(rules.of(&feed("team-ops")).private() && !rules.of(&feed("team-news")).private());
        assert!(rules.of(&feed("team-news")).signed_in_only());
    }

    #[test]
    fn a_pattern_set_again_replaces_the_first() {
        let mut rules = Rules::default();
        rules.set_pattern(FeedPattern::parse("*").unwrap(), PRIVATE);
        rules.set_pattern(FeedPattern::parse("*").unwrap(), ANNOUNCE);
        assert_eq!(rules.of(&feed("anything")), ANNOUNCE);
        assert_eq!(Audience::parse("token"), Some(Audience::Token));
        assert_eq!(Audience::parse("Token"), None);
    }
}
