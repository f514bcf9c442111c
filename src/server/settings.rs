//! Settings: defaults, then the `[broadcasting]` table of the settings file (Leptos.toml), then environment
//! variables, then command-line flags; the later wins. `broadcasting --help` explains each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::server::group::Scope;

const DEFAULT_CONFIG: &str = "Leptos.toml";

#[derive(Debug, Parser)]
#[command(name = "broadcasting", version, about = "Broadcasting: a realtime shared feed over Server-Sent Events.")]
pub struct Cli {
    /// Settings file whose [broadcasting] table is read at start-up; a missing default file is fine.
    /// [default: Leptos.toml]
    #[arg(long, env = "BROADCASTING_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: Overrides,
}

/// Every setting is optional here: what is not given falls through to the file, then to the default.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Overrides {
    /// Address to listen on; port 0 picks a free one. [default: 127.0.0.1:3000]
    #[arg(long, env = "BROADCASTING_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Who shares notifications: `browser` (one group per browser, by cookie) or `everyone`. [default: browser]
    #[arg(long, env = "BROADCASTING_SCOPE", value_enum)]
    pub scope: Option<Scope>,
    /// Longest message accepted, in characters. [default: 2000]
    #[arg(long, env = "BROADCASTING_MAX_MESSAGE_CHARS")]
    pub max_message_chars: Option<usize>,
    /// Most messages one `GET /api/messages` answers. [default: 200]
    #[arg(long, env = "BROADCASTING_PAGE_SIZE")]
    pub page_size: Option<usize>,
    /// Messages the in-memory store keeps; older ones are dropped. [default: 10000]
    #[arg(long, env = "BROADCASTING_MEMORY_CAP")]
    pub memory_cap: Option<usize>,
    /// Secret that signs tickets; without it one is made and kept in the data directory.
    #[arg(long, env = "BROADCASTING_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Directory for the server's own files (the ticket secret). [default: data]
    #[arg(long, env = "BROADCASTING_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, as in RUST_LOG (e.g. `info`, `broadcasting=debug,tower_http=debug`). [default: info]
    #[arg(long, env = "BROADCASTING_LOG")]
    pub log_level: Option<String>,
    /// Where the built site (pkg/, favicon) is served from; cargo-leptos sets LEPTOS_SITE_ROOT. [default: target/site]
    #[arg(long, env = "LEPTOS_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
}

impl Overrides {
    /// Fills what `self` lacks from `lower`.
    fn or(self, lower: Overrides) -> Overrides {
        Overrides {
            addr: self.addr.or(lower.addr),
            scope: self.scope.or(lower.scope),
            max_message_chars: self.max_message_chars.or(lower.max_message_chars),
            page_size: self.page_size.or(lower.page_size),
            memory_cap: self.memory_cap.or(lower.memory_cap),
            secret: self.secret.or(lower.secret),
            data_dir: self.data_dir.or(lower.data_dir),
            log_level: self.log_level.or(lower.log_level),
            site_root: self.site_root.or(lower.site_root),
        }
    }
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub scope: Scope,
    pub max_message_chars: usize,
    pub page_size: usize,
    pub memory_cap: usize,
    pub secret: Option<String>,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub site_root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("settings file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("setting `{name}` must be {rule}; got {got}")]
    OutOfRange { name: &'static str, rule: &'static str, got: usize },
    #[error("setting `secret` must be at least 16 characters")]
    WeakSecret,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    broadcasting: Overrides,
}

fn read_file(path: &Path, must_exist: bool) -> Result<Overrides, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if !must_exist && err.kind() == std::io::ErrorKind::NotFound => return Ok(Overrides::default()),
        Err(source) => return Err(SettingsError::Read { path: path.into(), source }),
    };
    // Other tables (cargo-leptos' own) may share the file: only [broadcasting] is ours.
    let table: toml::Table =
        toml::from_str(&text).map_err(|err| SettingsError::Parse { path: path.into(), message: err.to_string() })?;
    let ours = toml::Table::from_iter(table.get("broadcasting").map(|t| ("broadcasting".to_owned(), t.clone())));
    let file: File = ours
        .try_into()
        .map_err(|err: toml::de::Error| SettingsError::Parse { path: path.into(), message: err.to_string() })?;
    Ok(file.broadcasting)
}

fn in_range(
    name: &'static str,
    got: usize,
    min: usize,
    max: usize,
    rule: &'static str,
) -> Result<usize, SettingsError> {
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(SettingsError::OutOfRange { name, rule, got })
    }
}

impl Settings {
    pub fn from_cli(cli: Cli) -> Result<Self, SettingsError> {
        let file = match &cli.config {
            Some(path) => read_file(path, true)?,
            None => read_file(Path::new(DEFAULT_CONFIG), false)?,
        };
        Self::resolve(cli.overrides.or(file))
    }

    pub fn resolve(given: Overrides) -> Result<Self, SettingsError> {
        if given.secret.as_deref().is_some_and(|s| s.chars().count() < 16) {
            return Err(SettingsError::WeakSecret);
        }
        Ok(Settings {
            addr: given.addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
            scope: given.scope.unwrap_or(Scope::Browser),
            max_message_chars: in_range(
                "max-message-chars",
                given.max_message_chars.unwrap_or(2000),
                1,
                1_000_000,
                "1 to 1000000",
            )?,
            page_size: in_range("page-size", given.page_size.unwrap_or(200), 1, 10_000, "1 to 10000")?,
            memory_cap: in_range("memory-cap", given.memory_cap.unwrap_or(10_000), 1, 100_000_000, "1 to 100000000")?,
            secret: given.secret,
            data_dir: given.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            log_level: given.log_level.unwrap_or_else(|| "info".to_owned()),
            site_root: given.site_root.unwrap_or_else(|| PathBuf::from("target/site")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Leptos.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let defaults = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!((defaults.page_size, defaults.max_message_chars, defaults.scope), (200, 2000, Scope::Browser));

        let (_dir, path) = write(
            "[package.metadata.leptos]\noutput-name = \"x\"\n[broadcasting]\npage-size = 50\nscope = \"everyone\"\n",
        );
        let cli =
            Cli::try_parse_from(["broadcasting", "--config", path.to_str().unwrap(), "--page-size", "7"]).unwrap();
        let settings = Settings::from_cli(cli).unwrap();
        assert_eq!(settings.page_size, 7);
        assert_eq!(settings.scope, Scope::Everyone);
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let (_dir, path) = write("[broadcasting]\npage-sise = 5\n");
        let err = read_file(&path, true).unwrap_err().to_string();
        assert!(err.contains("page-sise"), "{err}");
        let err = Settings::resolve(Overrides { page_size: Some(0), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("page-size"), "{err}");
        assert!(Settings::resolve(Overrides { secret: Some("short".into()), ..Default::default() }).is_err());
        assert!(read_file(Path::new("/nonexistent/Leptos.toml"), true).is_err());
        assert!(read_file(Path::new("/nonexistent/Leptos.toml"), false).is_ok());
    }
}
