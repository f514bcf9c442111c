//! The settings' contract: every spelling that worked before the settings were nested still works (flag,
//! environment variable, flat file key) and means what the nested key means; `--help`, the README's table and
//! the file's tables agree; bad values are errors that name the setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::CommandFactory;

use super::*;
use crate::server::group::Scope;

/// Every setting as `broadcasting --help` spelled it before the settings were nested (saved from `main` at
/// b1de557), with the concern table it now lives in and a value that is not its default. Written out here, not
/// read from the code, so a renamed flag or variable fails this list.
const OLD: &[(&str, &str, &str, &str)] = &[
    ("--addr", "BROADCASTING_ADDR", "server", "0.0.0.0:8080"),
    ("--scope", "BROADCASTING_SCOPE", "feed", "everyone"),
    ("--max-message-chars", "BROADCASTING_MAX_MESSAGE_CHARS", "feed", "300"),
    ("--page-size", "BROADCASTING_PAGE_SIZE", "feed", "50"),
    ("--page-bytes", "BROADCASTING_PAGE_BYTES", "feed", "4096"),
    ("--store", "BROADCASTING_STORE", "store", "memory"),
    ("--redis-url", "BROADCASTING_REDIS_URL", "store", "redis://10.0.0.5:6380/2"),
    ("--redis-prefix", "BROADCASTING_REDIS_PREFIX", "store", "blue"),
    ("--heal-every", "BROADCASTING_HEAL_EVERY", "store", "500ms"),
    ("--max-messages", "BROADCASTING_MAX_MESSAGES", "feed", "70"),
    ("--max-age", "BROADCASTING_MAX_AGE", "feed", "30d"),
    ("--prune-every", "BROADCASTING_PRUNE_EVERY", "feed", "2m"),
    ("--send-rate", "BROADCASTING_SEND_RATE", "limits", "6"),
    ("--send-burst", "BROADCASTING_SEND_BURST", "limits", "11"),
    ("--address-rate", "BROADCASTING_ADDRESS_RATE", "limits", "12"),
    ("--address-burst", "BROADCASTING_ADDRESS_BURST", "limits", "201"),
    ("--max-streams-per-address", "BROADCASTING_MAX_STREAMS_PER_ADDRESS", "limits", "999"),
    ("--trusted-proxies", "BROADCASTING_TRUSTED_PROXIES", "connections", "127.0.0.1, 10.0.0.0/8"),
    ("--max-streams", "BROADCASTING_MAX_STREAMS", "limits", "500"),
    ("--max-streams-per-browser", "BROADCASTING_MAX_STREAMS_PER_BROWSER", "limits", "49"),
    ("--max-feeds-per-stream", "BROADCASTING_MAX_FEEDS_PER_STREAM", "limits", "8"),
    ("--new-feeds-per-hour", "BROADCASTING_NEW_FEEDS_PER_HOUR", "limits", "3"),
    ("--feeds", "BROADCASTING_FEEDS", "feed", "listed"),
    ("--max-feeds", "BROADCASTING_MAX_FEEDS", "feed", "500"),
    ("--header-timeout", "BROADCASTING_HEADER_TIMEOUT", "connections", "11s"),
    ("--idle-timeout", "BROADCASTING_IDLE_TIMEOUT", "connections", "61s"),
    ("--request-timeout", "BROADCASTING_REQUEST_TIMEOUT", "connections", "12s"),
    ("--max-request-bytes", "BROADCASTING_MAX_REQUEST_BYTES", "connections", "65537"),
    ("--write-timeout", "BROADCASTING_WRITE_TIMEOUT", "connections", "31s"),
    ("--send-buffer-bytes", "BROADCASTING_SEND_BUFFER_BYTES", "connections", "131072"),
    ("--shutdown-grace", "BROADCASTING_SHUTDOWN_GRACE", "server", "2s"),
    ("--ticket-lifetime", "BROADCASTING_TICKET_LIFETIME", "tickets", "off"),
    ("--presence-lease", "BROADCASTING_PRESENCE_LEASE", "presence", "32s"),
    ("--max-tabs-per-ticket", "BROADCASTING_MAX_TABS_PER_TICKET", "presence", "4"),
    ("--max-tabs-per-address", "BROADCASTING_MAX_TABS_PER_ADDRESS", "presence", "1001"),
    ("--max-tabs", "BROADCASTING_MAX_TABS", "presence", "100001"),
    ("--secret", "BROADCASTING_SECRET", "tickets", "0123456789abcdef-test"),
    ("--data-dir", "BROADCASTING_DATA_DIR", "store", "/tmp/elsewhere"),
    ("--log-level", "BROADCASTING_LOG", "server", "debug"),
    ("--site-root", "LEPTOS_SITE_ROOT", "server", "/srv/site"),
    ("--embed-origins", "BROADCASTING_EMBED_ORIGINS", "embed", "https://blog.example"),
    // Added with sign-in tokens (issue 25): flags that did not exist before, held to the same contract.
    ("--join", "BROADCASTING_JOIN", "identity", "both"),
    ("--token-secret", "BROADCASTING_TOKEN_SECRET", "identity", "a-token-secret-of-thirty-two-bytes!"),
    ("--token-secret-file", "BROADCASTING_TOKEN_SECRET_FILE", "identity", "/run/secrets/token"),
    ("--token-public-key-file", "BROADCASTING_TOKEN_PUBLIC_KEY_FILE", "identity", "/etc/broadcasting/app.pem"),
    ("--token-algorithm", "BROADCASTING_TOKEN_ALGORITHM", "identity", "EdDSA"),
    ("--token-audience", "BROADCASTING_TOKEN_AUDIENCE", "identity", "chat"),
    ("--token-issuer", "BROADCASTING_TOKEN_ISSUER", "identity", "https://app.example.com"),
    ("--token-leeway", "BROADCASTING_TOKEN_LEEWAY", "identity", "5s"),
    ("--token-refresh-url", "BROADCASTING_TOKEN_REFRESH_URL", "identity", "/auth/token"),
    ("--api-keys-file", "BROADCASTING_API_KEYS_FILE", "identity", "/etc/broadcasting/api-keys.toml"),
];

/// A settings file in a directory of its own; `path` is rewritten by `write` so settings read from different
/// contents name the same file.
struct File {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl File {
    fn new(text: &str) -> File {
        let dir = tempfile::tempdir().unwrap();
        let file = File { path: dir.path().join("Leptos.toml"), _dir: dir };
        file.write(text);
        file
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }

    /// The settings from `flags`, with this file.
    fn load(&self, flags: &[&str]) -> Result<Settings, SettingsError> {
        let config = self.path.to_str().unwrap();
        Settings::load_from(["broadcasting", "--config", config].iter().chain(flags))
    }
}

/// The settings from `flags` alone (an empty file, so the checkout's Leptos.toml stays out of it).
fn flags(flags: &[&str]) -> Result<Settings, SettingsError> {
    File::new("").load(flags)
}

/// A file key's value as TOML: integers as integers (the file is typed), anything else as a string.
fn toml_value(value: &str) -> String {
    if value.parse::<i64>().is_ok() {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

/// README's settings table, row by row: (flag, file key, file table, environment variable, default when it is one
/// literal value).
type Row = (String, Option<String>, Option<String>, String, Option<String>);

fn readme_settings() -> Vec<Row> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = readme.split("\n## Settings\n").nth(1).expect("a Settings section");
    let literal = |cell: &str| {
        let cell = cell.trim();
        let inner = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`'))?;
        (!inner.contains('`')).then(|| inner.to_owned())
    };
    table
        .lines()
        .skip_while(|line| !line.starts_with("| setting"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells[1].rsplit('`').nth(1).expect("a `--flag`").to_owned();
            let key = cells[1].split_once(" / ").and_then(|(key, _)| literal(key));
            let env = literal(cells[3]).expect("an environment variable");
            (flag, key, literal(cells[2]), env, literal(cells[4]))
        })
        .collect()
}

/// The concern table each flag's setting lives in, from the command's groups.
fn tables() -> std::collections::BTreeMap<String, String> {
    let command = Settings::command();
    let mut tables = std::collections::BTreeMap::new();
    for group in command.get_groups() {
        for id in group.get_args() {
            let arg = command.get_arguments().find(|arg| arg.get_id() == id).unwrap();
            tables.insert(format!("--{}", arg.get_long().unwrap()), group.get_id().as_str().to_lowercase());
        }
    }
    tables
}

#[test]
fn every_setting_but_the_secret_has_a_default() {
    let settings = flags(&[]).unwrap();
    assert_eq!(settings.server.addr, std::net::SocketAddr::from(([127, 0, 0, 1], 3000)));
    assert_eq!((settings.feed.max_age, settings.tickets.ticket_lifetime), (None, Some(Duration::from_secs(24 * 3600))));
    let limits = &settings.limits;
    assert_eq!(
        (limits.max_streams, limits.max_streams_given, settings.connections.trusted_proxies.len()),
        (15_000, false, 0)
    );
    assert_eq!((settings.feed.prune_every, settings.connections.send_buffer_bytes), (Duration::from_secs(60), 262_144));
    assert_eq!(
        (settings.server.site_root, settings.store.data_dir),
        (PathBuf::from("target/site"), PathBuf::from("data"))
    );
    assert_eq!(settings.tickets.secret, None);
    assert_eq!(settings.presence.presence_lease, Duration::from_secs(30));
    let presence = &settings.presence;
    assert_eq!((presence.max_tabs_per_ticket, presence.max_tabs_per_address, presence.max_tabs), (3, 1000, 100_000));
    // Defaults are clap's, so a setting without one would be absent or required: only the secret may lack one.
    let command = Settings::command();
    let without: Vec<&str> = command
        .get_arguments()
        .filter(|arg| arg.get_long().is_some_and(|long| !["help", "version"].contains(&long)))
        .filter(|arg| arg.get_default_values().is_empty())
        .filter_map(|arg| arg.get_long())
        .collect();
    assert_eq!(
        without,
        [
            "secret",
            "token-secret",
            "token-secret-file",
            "token-public-key-file",
            "token-audience",
            "token-issuer",
            "token-refresh-url",
            "api-keys-file"
        ]
    );
}

#[test]
fn every_old_flag_and_file_key_resolves_as_the_nested_key() {
    let file = File::new("");
    let defaults = file.load(&[]).unwrap();
    let known: std::collections::BTreeSet<String> = tables().into_keys().collect();
    let old: std::collections::BTreeSet<String> = OLD.iter().map(|row| row.0.to_owned()).collect();
    assert_eq!(known, old, "every setting is in OLD, and every old flag is a setting");
    for &(flag, env, table, value) in OLD {
        let by_flag = file.load(&[flag, value]).unwrap_or_else(|err| panic!("{flag} {value}: {err}"));
        assert_ne!(by_flag, defaults, "{flag} {value} changes a setting");
        let key = flag.trim_start_matches("--");
        let arg = Settings::command().get_arguments().find(|arg| arg.get_long() == Some(key)).unwrap().clone();
        assert_eq!(arg.get_env().and_then(|env| env.to_str()), Some(env), "{flag}'s environment variable");
        assert_eq!(tables()[flag], table, "{flag}'s table");

        file.write(&format!("[broadcasting]\n{key} = {}\n", toml_value(value)));
        assert_eq!(file.load(&[]).unwrap(), by_flag, "flat `{key}` in [broadcasting]");
        file.write(&format!("[broadcasting.{table}]\n{key} = {}\n", toml_value(value)));
        assert_eq!(file.load(&[]).unwrap(), by_flag, "`{key}` in [broadcasting.{table}]");
        file.write("");
    }
    // All at once, flat and nested mixed: no setting masks another.
    let all_flags: Vec<&str> = OLD.iter().flat_map(|&(flag, _, _, value)| [flag, value]).collect();
    let by_flags = file.load(&all_flags).unwrap();
    let mut text = String::from("[broadcasting]\n");
    for (i, &(flag, _, _, value)) in OLD.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        text += &format!("{} = {} # row {i}\n", flag.trim_start_matches("--"), toml_value(value));
    }
    let mut nested = std::collections::BTreeMap::<&str, String>::new();
    for &(flag, _, table, value) in OLD.iter().skip(1).step_by(2) {
        *nested.entry(table).or_default() += &format!("{} = {}\n", flag.trim_start_matches("--"), toml_value(value));
    }
    for (table, keys) in nested {
        text += &format!("[broadcasting.{table}]\n{keys}");
    }
    file.write(&text);
    assert_eq!(file.load(&[]).unwrap(), by_flags, "{text}");
}

/// What one child run of this test binary printed: the settings it loaded from the environment `env` and the
/// arguments `args` (see `settings_from_the_environment`).
fn settings_in_a_child(env: &[(&str, &str)], args: &[&str]) -> String {
    let test = format!("{}::settings_from_the_environment", module_path!().split_once("::").unwrap().1);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env_clear()
        .envs(env.iter().copied())
        .env("SETTINGS_CHILD_ARGS", args.join("\n"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let printed = stdout.split("<<settings>>").nth(1).and_then(|rest| rest.split("<</settings>>").next());
    printed.unwrap_or_else(|| panic!("the child printed its settings: {stdout}")).to_owned()
}

/// Run only as a child of the tests below, in an environment they choose: clap reads environment variables when
/// the command is built, and setting them in this process would leak into every test running beside.
#[test]
#[ignore = "a child process of the environment tests, not a test of its own"]
fn settings_from_the_environment() {
    let args = std::env::var("SETTINGS_CHILD_ARGS").unwrap_or_default();
    let args = std::iter::once("broadcasting").chain(args.split('\n').filter(|arg| !arg.is_empty()));
    let settings = Settings::load_from(args).unwrap();
    println!("<<settings>>{settings:?}<</settings>>");
}

#[test]
fn every_old_environment_variable_resolves_as_its_flag() {
    let file = File::new("");
    let config = file.path.to_str().unwrap();
    let mut env: Vec<(&str, &str)> = OLD.iter().map(|&(_, env, _, value)| (env, value)).collect();
    env.push(("BROADCASTING_CONFIG", config));
    let all_flags: Vec<&str> = OLD.iter().flat_map(|&(flag, _, _, value)| [flag, value]).collect();
    let by_flags = file.load(&all_flags).unwrap();
    assert!(by_flags.limits.max_streams_given);
    assert_eq!(settings_in_a_child(&env, &[]), format!("{by_flags:?}"));
    // Nothing set: the defaults, and the child reads nothing this process does not.
    assert_eq!(settings_in_a_child(&[("BROADCASTING_CONFIG", config)], &[]), format!("{:?}", file.load(&[]).unwrap()));
}

#[test]
fn flags_then_environment_then_file_then_defaults() {
    let file = File::new("[broadcasting]\npage-size = 50\nmax-tabs = 5\n[broadcasting.feed]\nscope = \"everyone\"\n");
    let config = file.path.to_str().unwrap();
    let env = [("BROADCASTING_CONFIG", config), ("BROADCASTING_PAGE_SIZE", "7"), ("BROADCASTING_MAX_TABS", "8")];
    let printed = settings_in_a_child(&env, &["--max-tabs", "9"]);
    let expected = file.load(&["--page-size", "7", "--max-tabs", "9"]).unwrap();
    assert_eq!((expected.feed.page_size, expected.presence.max_tabs, expected.feed.scope), (7, 9, Scope::Everyone));
    assert_eq!(expected.feed.max_message_chars, 2000);
    assert_eq!(printed, format!("{expected:?}"));
}

#[test]
fn the_readme_settings_table_matches_help() {
    let command = Settings::command();
    let help: Vec<(String, String, Vec<String>)> = command
        .get_arguments()
        .filter_map(|arg| {
            let flag = format!("--{}", arg.get_long()?);
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let defaults = arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
            Some((flag, env, defaults))
        })
        .collect();
    let readme = readme_settings();
    assert!(readme.len() >= 36, "every row read: {readme:?}");
    let flags = |rows: Vec<&String>| rows.into_iter().cloned().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        flags(readme.iter().map(|row| &row.0).collect()),
        flags(help.iter().map(|row| &row.0).collect()),
        "README and --help list the same flags"
    );
    let tables = tables();
    for (flag, key, table, env, default) in readme {
        let (_, help_env, defaults) = help.iter().find(|row| row.0 == flag).unwrap();
        assert_eq!(&env, help_env, "{flag}: environment variable");
        assert_eq!(table.as_ref(), tables.get(&flag), "{flag}: file table");
        let file_key = tables.contains_key(&flag).then(|| flag.trim_start_matches("--").to_owned());
        assert_eq!(key, file_key, "{flag}: file key");
        if let Some(default) = default {
            assert_eq!(defaults, &[default], "{flag}: README default");
        }
    }
}

#[test]
fn help_lists_each_setting_under_its_concern() {
    let help = Settings::command().render_long_help().to_string();
    let tables = tables();
    let headings = ["Server", "Connections", "Feed", "Store", "Limits", "Presence", "Tickets", "Embed", "Identity"];
    for (i, heading) in headings.iter().enumerate() {
        let start = help.find(&format!("\n{heading}:\n")).unwrap_or_else(|| panic!("a {heading} heading: {help}"));
        let end = headings.get(i + 1).map_or(help.len(), |next| help.find(&format!("\n{next}:\n")).unwrap());
        let section = &help[start..end];
        for (flag, table) in &tables {
            let listed = section.contains(&format!("{flag} <"));
            assert_eq!(listed, *table == heading.to_lowercase(), "{flag} under {heading}");
        }
    }
    assert_eq!(tables.values().collect::<std::collections::BTreeSet<_>>().len(), headings.len());
}

#[test]
fn defaults_then_file_then_flags() {
    let defaults = flags(&[]).unwrap();
    assert_eq!(
        (defaults.feed.page_size, defaults.feed.max_message_chars, defaults.feed.scope),
        (200, 2000, Scope::Browser)
    );
    assert_eq!(
        (defaults.store.kind, defaults.feed.max_messages, defaults.feed.max_age),
        (StoreKind::Sqlite, 10_000, None)
    );

    let file = File::new(
        "[package.metadata.leptos]\noutput-name = \"x\"\n[broadcasting]\npage-size = 50\nscope = \"everyone\"\n",
    );
    let settings = file.load(&["--page-size", "7"]).unwrap();
    assert_eq!(settings.feed.page_size, 7);
    assert_eq!(settings.feed.scope, Scope::Everyone);
    assert!(!settings.limits.max_streams_given);
    // Given in the file, `max-streams` is given: start-up keeps it or stops rather than lower it.
    file.write("[broadcasting.limits]\nmax-streams = 500\n");
    assert!(file.load(&[]).unwrap().limits.max_streams_given);
    assert!(flags(&["--max-streams", "15000"]).unwrap().limits.max_streams_given);
}

#[test]
fn bad_settings_are_clear_errors() {
    let error = |text: &str| File::new(text).load(&[]).unwrap_err().to_string();
    let err = error("[broadcasting]\npage-sise = 5\n");
    assert!(err.contains("page-sise"), "{err}");
    let err = error("[broadcasting.limits]\naddr = \"0.0.0.0:1\"\n");
    assert!(
        err.contains("`addr`") && err.contains("[broadcasting.server]") && err.contains("[broadcasting.limits]"),
        "{err}"
    );
    let err = error("[broadcasting.limit]\nsend-rate = 5\n");
    assert!(err.contains("[broadcasting.limit]") && err.contains("[broadcasting.limits]"), "{err}");
    let err = error("[broadcasting]\npage-size = 5\n[broadcasting.feed]\npage-size = 6\n");
    assert!(err.contains("`page-size` is given twice"), "{err}");
    let err = error("[broadcasting.feed]\npage-size = 0\n");
    assert!(err.contains("page-size") && err.contains("1..=10000") && err.contains("Leptos.toml"), "{err}");
    let err = error("[broadcasting]\nscope = \"all\"\n");
    assert!(err.contains("scope") && err.contains("browser, everyone"), "{err}");
    let err = error("[broadcasting]\nmax-age = [1]\n");
    assert!(err.contains("max-age") && err.contains("a string, an integer or a boolean"), "{err}");
    let err = error("[broadcasting]\nsecret = \"short-one\"\n");
    assert!(err.contains("secret") && !err.contains("short-one"), "names the setting, not its value: {err}");
    assert!(error("[broadcasting\n").contains("Leptos.toml"));

    let err = flags(&["--page-size", "0"]).unwrap_err();
    assert!(matches!(err, SettingsError::Cli(_)) && err.to_string().contains("page-size"), "{err}");
    let err = flags(&["--secret", "short"]).unwrap_err();
    assert!(matches!(err, SettingsError::WeakSecret), "{err}");
    assert!(!err.to_string().contains("short\""), "{err}");
    let named = Settings::load_from(["broadcasting", "--config", "/nonexistent/Leptos.toml"]).unwrap_err();
    assert!(matches!(named, SettingsError::Read { .. }) && named.to_string().contains("/nonexistent"), "{named}");
    assert!(file::read(Path::new("/nonexistent/Leptos.toml"), false, &Settings::command()).unwrap().given.is_empty());
    let age = |raw: &str| flags(&["--max-age", raw]);
    assert_eq!(age("30d").unwrap().feed.max_age, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(age("off").unwrap().feed.max_age, None);
    assert!(age("soon").unwrap_err().to_string().contains("max-age"));
    assert!(flags(&["--prune-every", "0s"]).is_err());
    assert!(flags(&["--help"])
        .is_err_and(|err| matches!(err, SettingsError::Cli(e) if e.kind() == clap::error::ErrorKind::DisplayHelp)));
}

#[test]
fn the_redis_backend_takes_url_prefix_and_heal_period() {
    let defaults = flags(&[]).unwrap();
    assert_eq!(
        (defaults.store.redis_prefix.as_str(), defaults.store.heal_every),
        ("broadcasting", Duration::from_secs(2))
    );
    let given = ["--store", "redis", "--redis-url", "redis://10.0.0.5:6380/2", "--redis-prefix", "blue"];
    let settings = flags(&[&given[..], &["--heal-every", "500ms", "--max-messages", "50"]].concat()).unwrap();
    let target = RedisTarget { url: "redis://10.0.0.5:6380/2".into(), prefix: "blue".into() };
    let backend = Backend::Redis { target, max_messages: 50, heal_every: Duration::from_millis(500) };
    assert_eq!(settings.backend(), backend);
    let prefix = |raw: &str| flags(&["--redis-prefix", raw]);
    assert!(prefix("a b").unwrap_err().to_string().contains("redis-prefix"));
    assert!(prefix("").is_err());
    assert!(flags(&["--heal-every", "0s"]).is_err());
}

#[test]
fn trusted_proxies_are_addresses_or_blocks() {
    let trusted = |raw: &str| flags(&["--trusted-proxies", raw]);
    assert!(flags(&[]).unwrap().connections.trusted_proxies.is_empty());
    assert!(trusted("").unwrap().connections.trusted_proxies.is_empty());
    let nets = trusted("127.0.0.1, 10.0.0.0/8,::1").unwrap().connections.trusted_proxies;
    let strings: Vec<String> = nets.iter().map(ToString::to_string).collect();
    assert_eq!(strings, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
    let err = trusted("10.0.0.0/8, proxy.example").unwrap_err().to_string();
    assert!(err.contains("proxy.example") && err.contains("trusted-proxies"), "{err}");
}

/// Named feeds come from the file only: each a feed name, with its own retention or the default's.
#[test]
fn named_feeds_are_read_from_the_file_with_their_retention() {
    let file = File::new(
        "[broadcasting]\nfeeds = \"listed\"\n[broadcasting.named-feeds.team-news]\nmax-messages = 50\nmax-age = \"7d\"\n\
         [broadcasting.named-feeds.ops]\n",
    );
    let settings = file.load(&[]).unwrap();
    let (team, ops, other) =
        (FeedName::parse("team-news").unwrap(), FeedName::parse("ops").unwrap(), FeedName::parse("x").unwrap());
    assert_eq!(settings.named_feeds.len(), 2);
    assert_eq!(settings.retention_of(&team).keep, 50);
    assert_eq!(settings.retention_of(&team).max_age, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(settings.retention_of(&ops), settings.retention(), "no override: the default");
    let gate = |settings: &Settings| crate::server::state::FeedGate::new(settings.listed_feeds(), 10);
    let listed = gate(&settings);
    assert!(listed.may_exist(&team) && listed.may_exist(&FeedName::main()) && !listed.may_exist(&other));
    let open = File::new("").load(&[]).unwrap();
    assert!(gate(&open).may_exist(&other), "open: any name");
    for (bad, says) in [
        ("[broadcasting.named-feeds.Team]\n", "a-z"),
        ("[broadcasting.named-feeds.a]\nmax-messages = 0\n", "max-messages"),
        ("[broadcasting.named-feeds.a]\nmax-age = \"soon\"\n", "max-age"),
        ("[broadcasting.named-feeds.a]\nmax-mesages = 5\n", "max-mesages"),
        ("[broadcasting.named-feeds]\na = 5\n", "must be a table"),
    ] {
        let err = File::new(bad).load(&[]).unwrap_err().to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

/// Who may read and post where: `read`/`write` in a named feed's table, and in a pattern's `feed-access` table;
/// anything but `anyone` or `token`, a pattern that is none, or another key stops the start, naming the table.
#[test]
fn private_feeds_are_read_from_named_feeds_and_patterns() {
    use crate::server::access::{Access, Audience};
    let file = File::new(
        "[broadcasting.named-feeds.board]\nwrite = \"token\"\nmax-messages = 10\n\
         [broadcasting.feed-access.\"team-*\"]\nread = \"token\"\nwrite = \"token\"\n\
         [broadcasting.feed-access.\"team-lobby\"]\nread = \"anyone\"\n",
    );
    let settings = file.load(&[]).unwrap();
    let of = |name: &str| settings.access.of(&FeedName::parse(name).unwrap());
    assert_eq!(of("board"), Access { read: Audience::Anyone, write: Audience::Token });
    assert_eq!(settings.retention_of(&FeedName::parse("board").unwrap()).keep, 10);
    assert_eq!(of("team-ops"), Access { read: Audience::Token, write: Audience::Token });
    assert_eq!(of("team-lobby"), Access::default(), "the exact pattern wins");
    assert_eq!(of("main"), Access::default());
    assert!(!File::new("").load(&[]).unwrap().access.any(), "nothing private by default");
    for (bad, says) in [
        ("[broadcasting.named-feeds.a]\nread = \"members\"\n", "\"anyone\" or \"token\""),
        ("[broadcasting.named-feeds.a]\nwrite = true\n", "`write`"),
        ("[broadcasting.feed-access.\"Team*\"]\nread = \"token\"\n", "a pattern is"),
        ("[broadcasting.feed-access.\"t-*\"]\nreed = \"token\"\n", "reed"),
        ("[broadcasting.feed-access]\nt = 5\n", "must be a table"),
    ] {
        let err = File::new(bad).load(&[]).unwrap_err().to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

/// Origins that may frame the embed: each read as a browser serializes an origin, and anything else (a path, no
/// scheme, another scheme, a character that would break the header) stops the start naming the setting and the entry.
#[test]
fn embed_origins_are_origins_as_the_browser_writes_them() {
    let origins = |raw: &str| flags(&["--embed-origins", raw]).map(|settings| settings.embed.embed_origins);
    assert!(flags(&[]).unwrap().embed.embed_origins.is_empty(), "nobody may frame by default");
    assert!(origins("").unwrap().is_empty());
    assert_eq!(
        origins("HTTPS://Blog.Example:443/, http://localhost:8080 https://*.example.com,http://[::1]:3000").unwrap(),
        ["https://blog.example", "http://localhost:8080", "https://*.example.com", "http://[::1]:3000"]
    );
    assert_eq!(origins("https://bücher.example").unwrap(), ["https://xn--bcher-kva.example"]);
    for bad in [
        "blog.example",
        "https://blog.example/comments",
        "https://blog.example?x=1",
        "https://blog.example#top",
        "ftp://blog.example",
        "https://user@blog.example",
        "https://",
        "'self'",
        "*",
        "https://blog.example;script-src",
        "https://a*.example.com",
        "https://*.10.0.0.1",
    ] {
        let err = origins(bad).unwrap_err().to_string();
        assert!(err.contains("embed-origins") && err.contains("such as https://"), "{bad}: {err}");
    }
    let err = File::new("[broadcasting.embed]\nembed-origins = \"https://ok.example, blog.example\"\n").load(&[]);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("embed-origins") && err.contains("\"blog.example\" has no scheme"), "{err}");
}

#[test]
fn identity_settings_take_their_values_and_refuse_others_by_name() {
    use crate::server::identity::TokenAlgorithm;
    use crate::shared::domain::JoinMode;
    let defaults = flags(&[]).unwrap().identity;
    assert_eq!(
        (defaults.join, defaults.token_algorithm, defaults.token_leeway, defaults.token_refresh_url),
        (JoinMode::Anonymous, TokenAlgorithm::Hs256, Duration::from_secs(30), None)
    );
    let identity = |args: &[&str]| flags(args).map(|settings| settings.identity);
    assert_eq!(identity(&["--join", "token"]).unwrap().join, JoinMode::Token);
    assert_eq!(identity(&["--token-algorithm", "rs256"]).unwrap().token_algorithm, TokenAlgorithm::Rs256);
    assert_eq!(identity(&["--token-algorithm", "EdDSA"]).unwrap().token_algorithm, TokenAlgorithm::EdDsa);
    for good in ["/auth/token", "/auth/token?for=feed", "https://app.example.com/auth/token", "http://localhost:8080/t"]
    {
        assert_eq!(identity(&["--token-refresh-url", good]).unwrap().token_refresh_url.as_deref(), Some(good));
    }
    for (args, named) in [
        (&["--join", "anyone"][..], "anonymous, token, both"),
        (&["--token-algorithm", "none"], "HS256, RS256, EdDSA"),
        (&["--token-leeway", "soon"], "token-leeway"),
        (&["--token-refresh-url", "//evil.example/t"], "path on this site"),
        (&["--token-refresh-url", "/\\evil.example"], "path on this site"),
        (&["--token-refresh-url", "javascript:alert(1)"], "path on this site"),
        (&["--token-refresh-url", "https://a.example/x y"], "path on this site"),
        (&["--token-refresh-url", "https://a.example; script-src *"], "path on this site"),
        (&["--token-refresh-url", "https://a.example"], "https://a.example/"),
    ] {
        let err = identity(args).unwrap_err().to_string();
        assert!(err.contains(named), "{args:?}: {err}");
    }
    let err = File::new("[broadcasting.identity]\ntoken-secret = \"too short\"\njoin = \"every\"\n").load(&[]);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("join") && !err.contains("too short"), "{err}");
}
