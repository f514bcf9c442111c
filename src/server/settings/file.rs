//! The settings file: its `[broadcasting]` table, read into defaults for clap. A setting is written either
//! nested in its concern's table (`[broadcasting.limits] send-rate = 5`) or, as before the tables existed, flat
//! in `[broadcasting]` (`send-rate = 5`); the key is the flag without `--`, the table the concern's name in
//! lower case (its clap group, `concerns.rs`). An unknown key, a key in another concern's table, a key given
//! twice, or a value its flag would refuse is an error naming the file and the key. Other tables of the file
//! (cargo-leptos' own, in Leptos.toml) are not ours and are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::{Arg, Command};

use super::{values, NamedFeed, SettingsError};
use crate::server::access::{Access, Audience, Rules};
use crate::server::identity::FeedPattern;
use crate::shared::domain::FeedName;

const TABLE: &str = "broadcasting";

/// The table of feeds the file names (`[broadcasting.named-feeds.NAME]`, each with an optional `max-messages` and
/// `max-age`): no flag stands for it.
const NAMED_FEEDS: &str = "named-feeds";

/// The table of name patterns and who may read and post in the feeds they match
/// (`[broadcasting.feed-access."team-*"]`, each with `read` and `write`): no flag stands for it either.
const FEED_ACCESS: &str = "feed-access";

/// What the file gives: settings for clap, the named feeds, and who may read and post where.
pub(super) struct Read {
    pub given: Vec<Given>,
    pub named_feeds: BTreeMap<FeedName, NamedFeed>,
    pub access: Rules,
}

/// One setting the file gives: the clap id of its argument and the text clap parses, as a flag's value would be.
#[derive(Debug)]
pub(super) struct Given {
    pub id: String,
    pub value: String,
}

/// Where a key belongs: its argument and the table of its concern.
struct Key<'a> {
    arg: &'a Arg,
    table: String,
}

/// Every setting's key (its long flag), from the concern groups of `command`.
fn keys(command: &Command) -> BTreeMap<String, Key<'_>> {
    let mut keys = BTreeMap::new();
    for group in command.get_groups() {
        let table = group.get_id().as_str().to_lowercase();
        for id in group.get_args() {
            let arg = command.get_arguments().find(|arg| arg.get_id() == id).expect("a group lists its own args");
            let key = arg.get_long().expect("every setting has a flag").to_owned();
            keys.insert(key, Key { arg, table: table.clone() });
        }
    }
    keys
}

/// The settings `path` gives, each checked with its flag's own parser. A missing file is an error only if it was
/// named (`must_exist`): the default Leptos.toml may be absent.
pub(super) fn read(path: &Path, must_exist: bool, command: &Command) -> Result<Read, SettingsError> {
    let nothing = || Read { given: Vec::new(), named_feeds: BTreeMap::new(), access: Rules::default() };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if !must_exist && err.kind() == std::io::ErrorKind::NotFound => return Ok(nothing()),
        Err(source) => return Err(SettingsError::Read { path: path.into(), source }),
    };
    let fail = |message: String| SettingsError::File { path: PathBuf::from(path), message };
    let file: toml::Table = toml::from_str(&text).map_err(|err| fail(err.to_string()))?;
    let Some(ours) = file.get(TABLE) else { return Ok(nothing()) };
    let ours = ours.as_table().ok_or_else(|| fail(format!("`{TABLE}` must be a table")))?;
    let keys = keys(command);
    let tables: BTreeSet<&str> = keys.values().map(|key| key.table.as_str()).collect();

    // (key, the table it was written in, value).
    let mut written: Vec<(&str, String, &toml::Value)> = Vec::new();
    let (mut named_feeds, mut patterns) = (BTreeMap::new(), None);
    for (name, value) in ours {
        match value {
            toml::Value::Table(feeds) if name == NAMED_FEEDS => named_feeds = read_named_feeds(feeds).map_err(fail)?,
            toml::Value::Table(table) if name == FEED_ACCESS => patterns = Some(table),
            // `store` is both a table and a setting: a table is the concern, anything else the setting.
            toml::Value::Table(nested) if tables.contains(&name.as_str()) => {
                let table = format!("{TABLE}.{name}");
                written.extend(nested.iter().map(|(key, value)| (key.as_str(), table.clone(), value)));
            }
            toml::Value::Table(_) => {
                return Err(fail(format!(
                    "unknown table [{TABLE}.{name}]; the tables are {}",
                    list(tables.iter().map(|t| format!("[{TABLE}.{t}]")))
                )))
            }
            value => written.push((name.as_str(), TABLE.to_owned(), value)),
        }
    }

    let mut given: BTreeMap<&str, (String, Given)> = BTreeMap::new();
    for (key, table, value) in written {
        let Some(Key { arg, table: home }) = keys.get(key) else {
            return Err(fail(format!("unknown setting `{key}` in [{table}] (`broadcasting --help` lists them)")));
        };
        let home = format!("{TABLE}.{home}");
        if table != TABLE && table != home {
            return Err(fail(format!("`{key}` belongs in [{home}] (or [{TABLE}]), not in [{table}]")));
        }
        if let Some((first, _)) = given.get(key) {
            return Err(fail(format!("`{key}` is given twice, in [{first}] and in [{table}]")));
        }
        let value = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            _ => return Err(fail(format!("`{key}` in [{table}] must be a string, an integer or a boolean"))),
        };
        check(command, arg, &value).map_err(|reason| {
            // A refused secret is not repeated: the file may be shown to fewer people than the terminal.
            let hidden = arg.is_hide_env_values_set() || reason.contains(value.as_str());
            let got = if hidden { String::new() } else { format!(" (got {value:?})") };
            fail(format!("`{key}` in [{table}]: {reason}{got}"))
        })?;
        given.insert(key, (table, Given { id: arg.get_id().to_string(), value }));
    }
    let mut access = Rules::default();
    for (feed, named) in &named_feeds {
        if named.access != Access::default() {
            access.set(feed.clone(), named.access);
        }
    }
    for (raw, table) in patterns.into_iter().flatten() {
        let here = format!("[{TABLE}.{FEED_ACCESS}.\"{raw}\"]");
        let pattern = FeedPattern::parse(raw).ok_or_else(|| {
            fail(format!("{here}: a pattern is a feed name, or the start of one followed by `*` (`team-*`, `*`)"))
        })?;
        let table = table.as_table().ok_or_else(|| fail(format!("{here} must be a table")))?;
        let mut rule = Access::default();
        for (key, value) in table {
            if !read_access(&mut rule, key, value, &here).map_err(fail)? {
                return Err(fail(format!("unknown setting `{key}` in {here} (a pattern takes read and write)")));
            }
        }
        access.set_pattern(pattern, rule);
    }
    Ok(Read { given: given.into_values().map(|(_, given)| given).collect(), named_feeds, access })
}

/// `read` or `write` (`"anyone"` or `"token"`) into `rule`: `Ok(false)` for any other key.
fn read_access(rule: &mut Access, key: &str, value: &toml::Value, here: &str) -> Result<bool, String> {
    let target = match key {
        "read" => &mut rule.read,
        "write" => &mut rule.write,
        _ => return Ok(false),
    };
    *target = value
        .as_str()
        .and_then(Audience::parse)
        .ok_or_else(|| format!("`{key}` in {here} must be \"anyone\" or \"token\""))?;
    Ok(true)
}

/// `[broadcasting.named-feeds.NAME]` tables: each name a feed name, each table empty or with `max-messages` (an
/// integer, 1 to 1,000,000,000) and `max-age` (a duration, or `off`).
fn read_named_feeds(feeds: &toml::Table) -> Result<BTreeMap<FeedName, NamedFeed>, String> {
    let mut named = BTreeMap::new();
    for (name, table) in feeds {
        let here = format!("[{TABLE}.{NAMED_FEEDS}.{name}]");
        let feed = FeedName::parse(name).ok_or_else(|| format!("{here}: {}", crate::shared::domain::FEED_NAME_RULE))?;
        let table = table.as_table().ok_or_else(|| format!("{here} must be a table"))?;
        let mut entry = NamedFeed::default();
        for (key, value) in table {
            match (key.as_str(), value) {
                ("max-messages", toml::Value::Integer(n)) if (1..=1_000_000_000).contains(n) => {
                    entry.max_messages = Some(*n as usize)
                }
                ("max-messages", _) => return Err(format!("`max-messages` in {here} must be 1 to 1000000000")),
                ("max-age", toml::Value::String(text)) => {
                    entry.max_age =
                        Some(values::duration_or_off(text).map_err(|why| format!("`max-age` in {here}: {why}"))?)
                }
                ("max-age", _) => {
                    return Err(format!("`max-age` in {here} must be a duration such as \"7d\", or \"off\""))
                }
                (other, value) => {
                    if !read_access(&mut entry.access, other, value, &here)? {
                        return Err(format!(
                            "unknown setting `{other}` in {here} (a named feed takes max-messages, max-age, read \
                             and write)"
                        ));
                    }
                }
            }
        }
        named.insert(feed, entry);
    }
    Ok(named)
}

/// Parses `value` as the flag would, with the flag's own parser, alone (no environment, no default): a value the
/// file gives is checked even when a flag or the environment overrides it, since the file is wrong either way.
fn check(command: &Command, arg: &Arg, value: &str) -> Result<(), String> {
    let alone = arg.clone().env(None::<&str>).default_value(None::<&str>).allow_hyphen_values(true).required(true);
    let long = format!("--{}", arg.get_long().unwrap_or_default());
    let probe = Command::new(command.get_name().to_owned()).no_binary_name(true).arg(alone);
    match probe.try_get_matches_from([long.as_str(), value]) {
        Ok(_) => Ok(()),
        Err(err) => Err(reason(&err)),
    }
}

/// What a value must be, without clap's framing (`error: invalid value … for '--flag'`, the usage line): the
/// parser's own words, or the values a choice accepts.
fn reason(err: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(err) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = err.get(ContextKind::ValidValue) {
        return format!("must be one of {}", list(valid.iter()));
    }
    err.kind().to_string()
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|item| item.to_string()).collect::<Vec<_>>().join(", ")
}
