//! The notice channel's wire format, both ways: what replicas say to each other on `PREFIX:notices`. Every notice
//! is one line of three space-separated fields, the first telling its kind:
//!
//! - `<epoch> <id> <group>`: messages up to `id` exist in `group`, in the log of `epoch` (hex). Written by the
//!   append script itself ([`APPENDED_LUA`]), in the step that appends, so id order is notice order everywhere;
//! - `presence <group>`: who is here in `group` changed;
//! - `pruned <count> <replica>`: the replica whose turn it was deleted `count` messages;
//! - `removed <id> <epoch>`: messages were removed (erased) and the log goes on in `epoch`, its newest id `id`.
//!   Written by the removal script itself ([`REMOVED_LUA`]), so it comes before every append of the new epoch.
//!
//! `pruned` and `removed` are shaped like an append's notice on purpose: a receiver of the version before, which
//! does not know them, reads a notice of an unknown epoch and compares with the log's head (for `removed`: a new
//! epoch, so it drops its pages and every tab reloads, as it should). A group has no
//! spaces (`GroupId`), an epoch is hex, so no field can spill into the next.

/// The channel's name under the prefix.
pub const CHANNEL: &str = "notices";

const PRESENCE: &str = "presence";
const PRUNED: &str = "pruned";
const REMOVED: &str = "removed";

/// The Lua function the append script calls to write its notice: the one place in Lua that knows the format.
pub const APPENDED_LUA: &str = r#"
local function appended_notice(epoch, id, group) return epoch .. ' ' .. id .. ' ' .. group end
"#;

/// The Lua function the removal script calls to write its notice.
pub const REMOVED_LUA: &str = r#"
local function removed_notice(epoch, id) return 'removed ' .. id .. ' ' .. epoch end
"#;

/// One notice, as read from the channel or about to be written to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    Appended { epoch: &'a str, id: u64, group: &'a str },
    Presence { group: &'a str },
    Pruned { count: u64, replica: &'a str },
    Removed { id: u64, epoch: &'a str },
}

impl<'a> Notice<'a> {
    /// `None` for a line no version writes.
    pub fn parse(payload: &'a str) -> Option<Self> {
        let (first, rest) = payload.split_once(' ')?;
        if first == PRESENCE {
            return (!rest.is_empty() && !rest.contains(' ')).then_some(Notice::Presence { group: rest });
        }
        let (second, third) = rest.split_once(' ').filter(|(_, third)| !third.is_empty())?;
        match first {
            PRUNED => Some(Notice::Pruned { count: second.parse().ok()?, replica: third }),
            REMOVED => Some(Notice::Removed { id: second.parse().ok()?, epoch: third }),
            epoch => Some(Notice::Appended { epoch, id: second.parse().ok()?, group: third }),
        }
    }

    pub fn encode(&self) -> String {
        match self {
            Notice::Appended { epoch, id, group } => format!("{epoch} {id} {group}"),
            Notice::Presence { group } => format!("{PRESENCE} {group}"),
            Notice::Pruned { count, replica } => format!("{PRUNED} {count} {replica}"),
            Notice::Removed { id, epoch } => format!("{REMOVED} {id} {epoch}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Notice;

    #[test]
    fn every_notice_reads_back_as_written() {
        let notices = [
            Notice::Appended { epoch: "ab12", id: 7, group: "everyone" },
            Notice::Presence { group: "g1" },
            Notice::Pruned { count: 3, replica: "00ff" },
            Notice::Removed { id: 9, epoch: "cd34" },
        ];
        for notice in notices {
            assert_eq!(Notice::parse(&notice.encode()), Some(notice));
        }
    }

    #[test]
    fn malformed_lines_are_no_notice() {
        for line in ["ab12 x g", "ab12 7", "ab12 7 ", "pruned x 00ff", "removed x ab", "removed 3 ", "presence ", ""] {
            assert_eq!(Notice::parse(line), None, "{line:?}");
        }
    }

    /// A receiver of the version before read every line as `<epoch> <id> <group>` and a presence line by its
    /// prefix: a retention notice must read there as an append of an unknown epoch, never as garbage.
    #[test]
    fn a_retention_or_removal_notice_reads_as_an_unknown_epoch_to_the_version_before() {
        for (notice, kind) in [
            (Notice::Pruned { count: 3, replica: "00ff" }, "pruned"),
            (Notice::Removed { id: 3, epoch: "cd" }, "removed"),
        ] {
            let line = notice.encode();
            let mut fields = line.splitn(3, ' ');
            assert_eq!(fields.next(), Some(kind));
            assert_eq!(fields.next().and_then(|id| id.parse::<u64>().ok()), Some(3));
            assert!(fields.next().is_some_and(|group| !group.is_empty() && !group.contains(' ')));
        }
    }
}
