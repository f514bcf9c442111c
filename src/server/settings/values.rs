//! The value parsers clap has no ready-made one for: durations (with `off`), a list of proxies, a list of origins, a
//! Redis key prefix, how tabs join, a token algorithm, the token refresh URL. Each error says what the value must be;
//! clap puts the flag and the value in front of it, and the
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

/// `https://blog.example, https://*.example.com:8443`: origins that may frame the embed, for a CSP `frame-ancestors`
/// list. Each is a scheme (`http` or `https`), a host and a port, nothing else, and is given back as the browser
/// serializes an origin (lower case, punycode, the scheme's default port left out), so the header names exactly what
/// a browser compares. A host may start with `*.` (any subdomain, as CSP reads it). Commas or spaces separate them;
/// an empty list is none.
pub(super) fn origins(raw: &str) -> Result<Vec<String>, String> {
    raw.split(|c: char| c == ',' || c.is_whitespace()).filter(|entry| !entry.is_empty()).map(origin).collect()
}

fn origin(entry: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        format!(
            "must list origins such as https://blog.example (a scheme, a host and a port, nothing else), \
             comma-separated; {entry:?} {why}"
        )
    };
    let (scheme, rest) = entry.split_once("://").ok_or_else(|| refuse("has no scheme"))?;
    // The wildcard is CSP's, not a URL's: parsed without it, put back after.
    let (wildcard, rest) = rest.strip_prefix("*.").map_or(("", rest), |rest| ("*.", rest));
    let url = url::Url::parse(&format!("{scheme}://{rest}")).map_err(|err| refuse(&format!("is no URL ({err})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("is not http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("names a user"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("has a path, a query or a fragment"));
    }
    let host = url.host_str().ok_or_else(|| refuse("has no host"))?;
    // The URL parser lets through characters a header value must not carry (`;` would end the directive).
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':')) {
        return Err(refuse("has a character no host name has"));
    }
    if !wildcard.is_empty() && url.domain().is_none() {
        return Err(refuse("puts `*.` before an IP address"));
    }
    let port = url.port().map(|port| format!(":{port}")).unwrap_or_default();
    Ok(format!("{}://{wildcard}{host}{port}", url.scheme()))
}

/// `anonymous`, `token` or `both`.
pub(super) fn join_mode(raw: &str) -> Result<crate::shared::domain::JoinMode, String> {
    crate::shared::domain::JoinMode::parse(raw.trim()).ok_or_else(|| "must be one of anonymous, token, both".to_owned())
}

/// `HS256`, `RS256` or `EdDSA`, in any case.
pub(super) fn token_algorithm(raw: &str) -> Result<crate::server::identity::TokenAlgorithm, String> {
    use crate::server::identity::TokenAlgorithm;
    let found = TokenAlgorithm::NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(raw.trim()));
    found.map(|(_, algorithm)| *algorithm).ok_or_else(|| "must be one of HS256, RS256, EdDSA".to_owned())
}

/// A path on this site (`/auth/token`) or an `http(s)://` URL with a host, kept as written. The origin of a URL
/// joins the page's `connect-src` (`identity::SignIn::refresh_origin`), so it is taken only when the `url` crate
/// writes it back the same; a path is printable ASCII with nothing a browser could read as another host (`//`,
/// `/\`) or that could close a quote.
pub(super) fn refresh_url(raw: &str) -> Result<String, String> {
    const RULE: &str = "must be a path on this site (/auth/token) or an http:// or https:// URL";
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix('/') {
        let plain = |b: u8| b.is_ascii_graphic() && !b"\"'\\<>`".contains(&b);
        let fine = !rest.starts_with(['/', '\\']) && raw.bytes().all(plain);
        return if fine { Ok(raw.to_owned()) } else { Err(RULE.to_owned()) };
    }
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            if url.as_str() == raw {
                Ok(raw.to_owned())
            } else {
                Err(format!("{RULE}, written as it reads ({})", url.as_str()))
            }
        }
        _ => Err(RULE.to_owned()),
    }
}
