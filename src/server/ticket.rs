//! Tickets: what a tab holds after joining. A ticket names the author and is signed (HMAC-SHA256) over the
//! session group, the name and the issue time, so the server takes the author from the ticket, and a ticket from
//! another group, forged or altered, is refused.
//!
//! Two versions, both accepted:
//! - `v1.<base64url(name)>.<issued unix seconds>.<base64url(mac)>`: a join with a typed name (anonymous);
//! - `v2.<base64url(name)>.<base64url(subject)>.<feed>.<issued>.<expires>.<base64url(mac)>`: a join with a token
//!   (`identity`). It carries the token's subject, so what it sends is `Source::Verified`; it expires when the token
//!   does (or sooner, with `ticket-lifetime`), never later; `feed` is empty, or the one feed it may post in when
//!   the token's write grant is a list (checked against the grant at the join).
//!
//! Only the spelling the server issued is taken: no surrounding whitespace, no sign or leading zeros in a number,
//! no padding, at most [`MAX_TICKET_BYTES`]. Anything else is refused before it is decoded, so one ticket has one key
//! in the send budgets (its MAC).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::server::group::GroupId;
use crate::shared::domain::{FeedName, Source, Username};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("Join first: this tab has no ticket.")]
    Missing,
    #[error("This ticket is not valid here; join again.")]
    Invalid,
    #[error("This ticket has expired; reload the page and join again.")]
    Expired,
}

/// Longest ticket the server issues, a v2 one: `v2.`, a 32-character name of 4-byte characters (171 base64
/// characters), a 255-byte subject (`identity::MAX_SUBJECT_BYTES`: 340), a 64-character feed, two 20-digit times,
/// a 43-character MAC and five dots: 666 bytes, with room to spare. (A v1 ticket is at most 240.) Longer ones are
/// refused unread.
pub const MAX_TICKET_BYTES: usize = 700;

/// What identifies one issued ticket: its MAC, which only the server can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketId([u8; 32]);

impl TicketId {
    pub fn from_mac(mac: [u8; 32]) -> Self {
        Self(mac)
    }

    /// The MAC: what a budget shared through Redis is keyed by (hashed first, see `replicas::send_limit`).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A ticket the server issued for this group: its author, its identity, who vouches for the author (anonymous for
/// v1, the token's subject for v2), and for v2 the one feed it may post in, if the token limited it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub author: Username,
    pub id: TicketId,
    pub source: Source,
    pub feed: Option<FeedName>,
}

/// What a v2 ticket says besides the name: whose token it came from, where it may post, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn<'a> {
    pub subject: &'a str,
    /// The one feed the ticket may post in; `None`: any.
    pub feed: Option<&'a FeedName>,
    /// Unix seconds: the ticket is refused from then on.
    pub expires: u64,
}

#[derive(Clone)]
pub struct TicketKeys {
    secret: std::sync::Arc<[u8]>,
    /// How long a ticket is accepted after it was issued; `None`: for ever.
    lifetime: Option<std::time::Duration>,
}

/// Unix seconds now: the clock tickets, read passes and sign-in tokens are checked by.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl TicketKeys {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret: secret.into(), lifetime: None }
    }

    pub fn with_lifetime(self, lifetime: Option<std::time::Duration>) -> Self {
        Self { lifetime, ..self }
    }

    /// The secret from settings if given, else the one kept in `data_dir/secret`, made on first start (and made
    /// again, with a warning, if the file is empty). A kept secret under 16 characters stops the start; one that
    /// others may read is used, with a warning.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Self> {
        if let Some(secret) = configured {
            return Ok(Self::new(secret.as_bytes().to_vec()));
        }
        let path = data_dir.join("secret");
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => {
                tracing::warn!(path = %path.display(), "the ticket secret file is empty; making a new one (tickets issued before no longer verify)");
            }
            Ok(text) => {
                let secret = text.trim();
                if secret.chars().count() < MIN_SECRET_CHARS {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the ticket secret in {} is shorter than {MIN_SECRET_CHARS} characters; put a longer one \
                             there, or delete the file to have one made",
                            path.display()
                        ),
                    ));
                }
                warn_if_readable_by_others(&path);
                return Ok(Self::new(secret.as_bytes().to_vec()));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        std::fs::create_dir_all(data_dir)?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = URL_SAFE_NO_PAD.encode(bytes);
        write_private(&path, &secret)?;
        Ok(Self::new(secret.into_bytes()))
    }

    /// The MAC over `parts`, each prefixed with its length, so no two lists of parts sign the same bytes (and a v1
    /// MAC, over 4 parts starting `v1`, is never a v2 one, over 7 starting `v2`).
    fn mac_of(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn mac(&self, group: &GroupId, name: &str, issued: u64) -> HmacSha256 {
        self.mac_of(&[b"v1", group.as_str().as_bytes(), name.as_bytes(), issued.to_string().as_bytes()])
    }

    fn mac_v2(&self, group: &GroupId, name: &str, subject: &str, feed: &str, issued: u64, expires: u64) -> HmacSha256 {
        let (issued, expires) = (issued.to_string(), expires.to_string());
        self.mac_of(&[
            b"v2",
            group.as_str().as_bytes(),
            name.as_bytes(),
            subject.as_bytes(),
            feed.as_bytes(),
            issued.as_bytes(),
            expires.as_bytes(),
        ])
    }

    pub fn issue(&self, group: &GroupId, name: &Username) -> String {
        self.issue_at(group, name, now_secs())
    }

    fn issue_at(&self, group: &GroupId, name: &Username, issued: u64) -> String {
        let tag = self.mac(group, name.as_str(), issued).finalize().into_bytes();
        format!("v1.{}.{issued}.{}", URL_SAFE_NO_PAD.encode(name.as_str()), URL_SAFE_NO_PAD.encode(tag))
    }

    /// A v2 ticket for a token's `name` and `signed` (subject, feed, expiry), and when it expires: the token's
    /// expiry, or sooner if the ticket lifetime ends first.
    pub fn issue_signed(&self, group: &GroupId, name: &Username, signed: &SignedIn<'_>) -> (String, u64) {
        self.issue_signed_at(group, name, signed, now_secs())
    }

    fn issue_signed_at(&self, group: &GroupId, name: &Username, signed: &SignedIn<'_>, issued: u64) -> (String, u64) {
        let lifetime_ends = self.lifetime.map(|lifetime| issued.saturating_add(lifetime.as_secs()));
        let expires = lifetime_ends.map_or(signed.expires, |ends| ends.min(signed.expires));
        let feed = signed.feed.map_or("", FeedName::as_str);
        let tag = self.mac_v2(group, name.as_str(), signed.subject, feed, issued, expires).finalize().into_bytes();
        let ticket = format!(
            "v2.{}.{}.{feed}.{issued}.{expires}.{}",
            URL_SAFE_NO_PAD.encode(name.as_str()),
            URL_SAFE_NO_PAD.encode(signed.subject),
            URL_SAFE_NO_PAD.encode(tag)
        );
        (ticket, expires)
    }

    /// A read pass for the private feed `feed` (`access`), valid until `expires` (unix seconds; the ticket's
    /// expiry, so never past the token's): `p1.FEED.EXPIRES.MAC`. It is not bound to the group: the page fetches
    /// (which carry no group, so that every tab asks the same cacheable URL) check it too.
    pub fn issue_pass(&self, feed: &FeedName, expires: u64) -> String {
        let tag = self.mac_pass(feed.as_str(), expires).finalize().into_bytes();
        format!("p1.{feed}.{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    fn mac_pass(&self, feed: &str, expires: u64) -> HmacSha256 {
        self.mac_of(&[b"p1", feed.as_bytes(), expires.to_string().as_bytes()])
    }

    /// Whether `pass` says it is for `feed` (`p1.FEED.…`), as a stream with several passes picks each feed's; whether
    /// the server made it, `check_pass` tells.
    pub fn pass_names(pass: &str, feed: &FeedName) -> bool {
        pass.strip_prefix("p1.")
            .and_then(|rest| rest.strip_prefix(feed.as_str()))
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Whether `pass` is one `issue_pass` made for `feed` that has not expired (at `now`, unix seconds).
    pub fn check_pass(&self, feed: &FeedName, pass: &str, now: u64) -> Result<(), TicketError> {
        if pass.len() > MAX_TICKET_BYTES {
            return Err(TicketError::Invalid);
        }
        let ["p1", feed_part, expires_part, tag_part] = pass.split('.').collect::<Vec<_>>()[..] else {
            return Err(TicketError::Invalid);
        };
        let expires = canonical_number(expires_part)?;
        let tag = URL_SAFE_NO_PAD.decode(tag_part).map_err(|_| TicketError::Invalid)?;
        self.mac_pass(feed_part, expires).verify_slice(&tag).map_err(|_| TicketError::Invalid)?;
        if feed_part != feed.as_str() {
            return Err(TicketError::Invalid);
        }
        if now >= expires {
            return Err(TicketError::Expired);
        }
        Ok(())
    }

    /// The author the ticket was issued to, if it was issued by this server for this group.
    pub fn verify(&self, group: &GroupId, ticket: &str) -> Result<Username, TicketError> {
        self.authenticate(group, ticket).map(|verified| verified.author)
    }

    /// The ticket's author and identity, if the server issued exactly this spelling of it for this group.
    pub fn authenticate(&self, group: &GroupId, ticket: &str) -> Result<Verified, TicketError> {
        if ticket.is_empty() {
            return Err(TicketError::Missing);
        }
        if ticket.len() > MAX_TICKET_BYTES {
            return Err(TicketError::Invalid);
        }
        if ticket.starts_with("v2.") {
            return self.authenticate_v2(group, ticket, now_secs());
        }
        let mut parts = ticket.split('.');
        let (Some("v1"), Some(name_part), Some(issued_part), Some(tag_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TicketError::Invalid);
        };
        let issued = canonical_number(issued_part)?;
        let name = text_part(name_part)?;
        let tag = URL_SAFE_NO_PAD.decode(tag_part).map_err(|_| TicketError::Invalid)?;
        self.mac(group, &name, issued).verify_slice(&tag).map_err(|_| TicketError::Invalid)?;
        let id = TicketId(tag.try_into().map_err(|_| TicketError::Invalid)?);
        if self.lifetime.is_some_and(|lifetime| now_secs().saturating_sub(issued) > lifetime.as_secs()) {
            return Err(TicketError::Expired);
        }
        Ok(Verified { author: issued_name(&name)?, id, source: Source::Anonymous, feed: None })
    }

    /// A v2 ticket (see the module doc), checked as a v1 one is, and refused from its expiry on (at `now`).
    fn authenticate_v2(&self, group: &GroupId, ticket: &str, now: u64) -> Result<Verified, TicketError> {
        let parts: Vec<&str> = ticket.split('.').collect();
        let ["v2", name_part, subject_part, feed_part, issued_part, expires_part, tag_part] = parts[..] else {
            return Err(TicketError::Invalid);
        };
        let (issued, expires) = (canonical_number(issued_part)?, canonical_number(expires_part)?);
        let (name, subject) = (text_part(name_part)?, text_part(subject_part)?);
        // A feed name is written as it is (a-z, 0-9, '-': nothing to encode); empty is none.
        let feed = match feed_part {
            "" => None,
            name => Some(FeedName::parse(name).ok_or(TicketError::Invalid)?),
        };
        let tag = URL_SAFE_NO_PAD.decode(tag_part).map_err(|_| TicketError::Invalid)?;
        self.mac_v2(group, &name, &subject, feed_part, issued, expires)
            .verify_slice(&tag)
            .map_err(|_| TicketError::Invalid)?;
        let id = TicketId(tag.try_into().map_err(|_| TicketError::Invalid)?);
        if now >= expires {
            return Err(TicketError::Expired);
        }
        Ok(Verified { author: issued_name(&name)?, id, source: Source::Verified(subject), feed })
    }
}

/// A time as `issue` writes it: ASCII digits, no sign, no leading zero (u64::parse takes `+1` and `01`).
fn canonical_number(part: &str) -> Result<u64, TicketError> {
    let canonical = part == "0" || !part.starts_with('0');
    if !canonical || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TicketError::Invalid);
    }
    part.parse().map_err(|_| TicketError::Invalid)
}

/// A base64url part holding UTF-8 text. The engine refuses padding and non-zero trailing bits, so each part has one
/// spelling.
fn text_part(part: &str) -> Result<String, TicketError> {
    URL_SAFE_NO_PAD.decode(part).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or(TicketError::Invalid)
}

/// The author a ticket names. What the server issues is already normal (trimmed, NFC): a name that parsing changes
/// was not issued.
fn issued_name(name: &str) -> Result<Username, TicketError> {
    let author = Username::parse(name).map_err(|_| TicketError::Invalid)?;
    if author.as_str() != name {
        return Err(TicketError::Invalid);
    }
    Ok(author)
}

/// The shortest secret accepted, in characters (as for the `secret` setting).
pub const MIN_SECRET_CHARS: usize = 16;

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the ticket secret file may be read by others than its owner; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes `contents` to `path` whole or not at all: into a private temporary file beside it, synced, then renamed
/// over it, and the directory synced, so a crash leaves either no secret or the full one, never a torn one.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    // A leftover from a crash mid-write: never used, only replaced.
    match std::fs::remove_file(&temporary) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TicketKeys {
        TicketKeys::new(b"k".repeat(32))
    }

    #[test]
    fn a_ticket_verifies_to_its_name_in_its_group() {
        let group = GroupId::new("g1");
        let name = Username::parse("Zoë the.dot").unwrap();
        let ticket = keys().issue(&group, &name);
        assert_eq!(keys().verify(&group, &ticket), Ok(name));
    }

    #[test]
    fn other_group_other_key_and_tampering_are_refused() {
        let group = GroupId::new("g1");
        let ticket = keys().issue(&group, &Username::parse("ada").unwrap());
        assert_eq!(keys().verify(&GroupId::new("g2"), &ticket), Err(TicketError::Invalid));
        assert_eq!(TicketKeys::new(b"other".to_vec()).verify(&group, &ticket), Err(TicketError::Invalid));

        let parts: Vec<&str> = ticket.split('.').collect();
        let renamed = format!("v1.{}.{}.{}", URL_SAFE_NO_PAD.encode("eve"), parts[2], parts[3]);
        assert_eq!(keys().verify(&group, &renamed), Err(TicketError::Invalid));
        let redated = format!("v1.{}.{}.{}", parts[1], parts[2].parse::<u64>().unwrap() + 1, parts[3]);
        assert_eq!(keys().verify(&group, &redated), Err(TicketError::Invalid));
        for junk in ["v1", "v2.a.1.b", "v1.a.b.c", "v1.!!.1.AAAA", &format!("{ticket}.x")] {
            assert_eq!(keys().verify(&group, junk), Err(TicketError::Invalid), "{junk}");
        }
        assert_eq!(keys().verify(&group, ""), Err(TicketError::Missing));
        assert_eq!(keys().verify(&group, "  "), Err(TicketError::Invalid));
    }

    #[test]
    fn only_the_issued_spelling_is_accepted() {
        let group = GroupId::new("g1");
        let ticket = keys().issue_at(&group, &Username::parse("ada").unwrap(), 1_700_000_000);
        assert!(keys().verify(&group, &ticket).is_ok());
        let parts: Vec<&str> = ticket.split('.').collect();
        let with_number = |n: &str| format!("v1.{}.{n}.{}", parts[1], parts[3]);
        let spellings = [
            format!(" {ticket}"),
            format!("{ticket}\n"),
            format!("{ticket} "),
            with_number("+1700000000"),
            with_number("01700000000"),
            with_number(&format!("{}1700000000", "0".repeat(60_000))),
            with_number(" 1700000000"),
            format!("v1.{}=.1700000000.{}", parts[1], parts[3]),
            format!("v1.{}.1700000000.{}=", parts[1], parts[3]),
            ticket.to_uppercase().replacen("V1", "v1", 1),
        ];
        for spelling in &spellings {
            assert_ne!(spelling, &ticket);
            assert_eq!(keys().verify(&group, spelling), Err(TicketError::Invalid), "{spelling:.80}");
        }
        // a MAC whose last base64 character carries non-zero trailing bits spells the same bytes differently
        let mut tag = parts[3].to_owned();
        let last = tag.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.find(last).unwrap();
        tag.push(alphabet.as_bytes()[index ^ 1] as char);
        let twin = format!("v1.{}.{}.{tag}", parts[1], parts[2]);
        assert_eq!(keys().verify(&group, &twin), Err(TicketError::Invalid));
        // the same ticket always has the same identity; another ticket has another
        let again = keys().authenticate(&group, &ticket).unwrap().id;
        assert_eq!(keys().authenticate(&group, &ticket).unwrap().id, again);
        let other = keys().issue_at(&group, &Username::parse("ada").unwrap(), 1_700_000_001);
        assert_ne!(keys().authenticate(&group, &other).unwrap().id, again);
    }

    #[test]
    fn a_ticket_older_than_the_lifetime_is_expired_and_says_so() {
        let group = GroupId::new("g1");
        let ada = Username::parse("ada").unwrap();
        let keys = keys().with_lifetime(Some(std::time::Duration::from_secs(3_600)));
        let fresh = keys.issue_at(&group, &ada, now_secs() - 3_500);
        assert_eq!(keys.verify(&group, &fresh), Ok(ada.clone()));
        let stale = keys.issue_at(&group, &ada, now_secs() - 3_700);
        assert_eq!(keys.verify(&group, &stale), Err(TicketError::Expired));
        assert!(TicketError::Expired.to_string().contains("join again"));
        // tampering is still reported as such, and without a lifetime old tickets stay good
        assert_eq!(keys.verify(&GroupId::new("g2"), &stale), Err(TicketError::Invalid));
        assert_eq!(self::keys().verify(&group, &stale), Ok(ada));
    }

    fn signed<'a>(subject: &'a str, feed: Option<&'a FeedName>, expires: u64) -> SignedIn<'a> {
        SignedIn { subject, feed, expires }
    }

    /// A v2 ticket names its subject and feed and is refused from its expiry on; every part is signed, so changing
    /// the subject, the feed or the expiry (or the group) is refused as tampering.
    #[test]
    fn a_signed_in_ticket_carries_its_subject_and_feed_and_ends_with_its_token() {
        let (group, ada) = (GroupId::new("g1"), Username::parse("Ada").unwrap());
        let team = FeedName::parse("team").unwrap();
        let now = now_secs();
        let (ticket, expires) = keys().issue_signed_at(&group, &ada, &signed("sub-1", Some(&team), now + 60), now);
        assert_eq!(expires, now + 60);
        let verified = keys().authenticate_v2(&group, &ticket, now).unwrap();
        assert_eq!(
            (verified.author, verified.source, verified.feed),
            (ada.clone(), Source::Verified("sub-1".into()), Some(team.clone()))
        );
        assert_eq!(keys().authenticate(&group, &ticket).map(|v| v.id), Ok(verified.id), "through the one entry");
        assert_eq!(keys().authenticate_v2(&group, &ticket, now + 59).map(|_| ()), Ok(()));
        assert_eq!(keys().authenticate_v2(&group, &ticket, now + 60), Err(TicketError::Expired));
        assert_eq!(keys().authenticate(&GroupId::new("g2"), &ticket), Err(TicketError::Invalid));

        let parts: Vec<&str> = ticket.split('.').collect();
        let with = |i: usize, part: &str| {
            let mut parts = parts.clone();
            parts[i] = part;
            parts.join(".")
        };
        let eve = URL_SAFE_NO_PAD.encode("sub-2");
        let later = (now + 3_600).to_string();
        for forged in
            [with(2, &eve), with(3, ""), with(3, "other"), with(5, &later), with(1, &URL_SAFE_NO_PAD.encode("Eve"))]
        {
            assert_eq!(keys().authenticate_v2(&group, &forged, now), Err(TicketError::Invalid), "{forged}");
        }
        for junk in
            [with(3, "Team"), with(4, "01"), with(5, "+1"), format!("{ticket}.x"), ticket.replacen("v2", "v1", 1)]
        {
            assert_eq!(keys().authenticate(&group, &junk), Err(TicketError::Invalid), "{junk}");
        }
        // No feed: any feed.
        let (anywhere, _) = keys().issue_signed_at(&group, &ada, &signed("sub-1", None, now + 60), now);
        assert_eq!(keys().authenticate_v2(&group, &anywhere, now).unwrap().feed, None);
        // A v1 ticket is anonymous, as it always was.
        let v1 = keys().issue(&group, &ada);
        let verified = keys().authenticate(&group, &v1).unwrap();
        assert_eq!((verified.source, verified.feed), (Source::Anonymous, None));
    }

    /// The ticket lifetime still bounds a v2 ticket, and the longest v2 ticket the server can issue fits the cap.
    #[test]
    fn a_signed_in_ticket_expires_by_the_lifetime_too_and_the_longest_fits() {
        let group = GroupId::new("g1");
        let ada = Username::parse("Ada").unwrap();
        let hour = keys().with_lifetime(Some(std::time::Duration::from_secs(3_600)));
        let now = now_secs();
        let (_, expires) = hour.issue_signed_at(&group, &ada, &signed("s", None, now + 86_400), now);
        assert_eq!(expires, now + 3_600, "the lifetime ends first");
        let (_, expires) = hour.issue_signed_at(&group, &ada, &signed("s", None, now + 60), now);
        assert_eq!(expires, now + 60, "the token ends first");

        let widest = Username::parse(&"\u{1F680}".repeat(crate::shared::domain::MAX_NAME_CHARS)).unwrap();
        let subject = "\u{10FFFF}".repeat(crate::server::identity::MAX_SUBJECT_BYTES / 4) + "xyz";
        assert_eq!(subject.len(), crate::server::identity::MAX_SUBJECT_BYTES);
        let feed = FeedName::parse(&"f".repeat(crate::shared::domain::MAX_FEED_CHARS)).unwrap();
        let (ticket, _) = keys().issue_signed_at(&group, &widest, &signed(&subject, Some(&feed), u64::MAX), u64::MAX);
        assert!(ticket.len() <= MAX_TICKET_BYTES, "{} > {MAX_TICKET_BYTES}", ticket.len());
        assert_eq!(keys().authenticate_v2(&group, &ticket, 0).unwrap().author, widest);
    }

    #[test]
    fn a_read_pass_opens_its_own_feed_until_it_expires_and_nothing_else() {
        let keys = keys();
        let (team, other) = (FeedName::parse("team").unwrap(), FeedName::parse("other").unwrap());
        let pass = keys.issue_pass(&team, 2_000);
        assert_eq!(keys.check_pass(&team, &pass, 1_999), Ok(()));
        assert_eq!(keys.check_pass(&team, &pass, 2_000), Err(TicketError::Expired));
        assert_eq!(keys.check_pass(&other, &pass, 1_000), Err(TicketError::Invalid));
        // Another feed's name or a later expiry written in: the MAC no longer matches.
        for forged in [pass.replacen("team", "other", 1), pass.replacen("2000", "9000", 1), format!("{pass}x")] {
            assert_eq!(
                keys.check_pass(&other, &forged, 1_000).and(keys.check_pass(&team, &forged, 1_000)),
                Err(TicketError::Invalid)
            );
        }
        let stranger = TicketKeys::new(b"another-secret-of-16+".to_vec());
        assert_eq!(stranger.check_pass(&team, &pass, 1_000), Err(TicketError::Invalid));
        for bad in ["", "p1", "p1.team.2000", "p2.team.2000.x", "p1.team.02000.x", &"p".repeat(MAX_TICKET_BYTES + 1)] {
            assert_eq!(keys.check_pass(&team, bad, 1_000), Err(TicketError::Invalid), "{bad}");
        }
    }

    #[test]
    fn the_secret_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId::new("g");
        let first = TicketKeys::load(None, dir.path()).unwrap();
        let ticket = first.issue(&group, &Username::parse("ada").unwrap());
        let again = TicketKeys::load(None, dir.path()).unwrap();
        assert!(again.verify(&group, &ticket).is_ok());
        let configured = TicketKeys::load(Some("from settings"), dir.path()).unwrap();
        assert!(configured.verify(&group, &ticket).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["secret"], "no temporary file is left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_empty_secret_is_made_again_and_a_short_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "\n").unwrap();
        TicketKeys::load(None, dir.path()).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().len() >= 32, "a new secret was written");
        std::fs::write(&path, "short").unwrap();
        let err = TicketKeys::load(None, dir.path()).err().unwrap().to_string();
        assert!(err.contains("shorter than 16") && err.contains(&path.display().to_string()), "{err}");
    }
}
