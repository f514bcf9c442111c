//! The value parsers clap has no ready-made one for: durations (with `off`), a list of proxies, a Redis key
//! prefix. Each error says what the value must be; clap puts the flag and the value in front of it, and the
//! settings file puts the file and the key.

use std::time::Duration;

const DURATION: &str = "must be a duration such as 30d, 12h or 500ms";

/// `30d`, `12h`, `500ms`: humantime's syntax. Zero is refused: every duration here is a period or a deadline,
/// and zero would mean a busy loop or an instant refusal.
pub(super) fn duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim()).ok().filter(|d| !d.is_zero()).ok_or_else(|| DURATION.to_owned())
}

/// A duration, or `off` (None) for no limit.
pub(super) fn duration_or_off(raw: &str) -> Result<Option<Duration>, String> {
    match raw.trim() {
        "off" => Ok(None),
        raw => duration(raw).map(Some).map_err(|_| format!("{DURATION}, or off")),
    }
}

/// `10.0.0.1, 10.1.0.0/16, ::1`: addresses are blocks of one; empty entries (and an empty list) are none.
pub(super) fn proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let net = entry.parse::<ipnet::IpNet>().ok();
            net.or_else(|| entry.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)).ok_or_else(|| {
                format!("must list IP addresses or CIDR blocks (e.g. 10.0.0.0/8), comma-separated; got {entry:?}")
            })
        })
        .collect()
}

/// A key namespace: no spaces (they would split a notice), nothing invisible.
pub(super) fn redis_prefix(raw: &str) -> Result<String, String> {
    let fine = (1..=64).contains(&raw.chars().count()) && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if fine {
        Ok(raw.to_owned())
    } else {
        Err("must be 1 to 64 characters without spaces or control characters".to_owned())
    }
}
