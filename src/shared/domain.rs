//! Domain types. `Username::parse` and `MessageText::parse` are the only ways to make those types, so every
//! function that holds one knows it is valid.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::mixed_script::AugmentedScriptSet;
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// Longest accepted name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 32;

/// Most combining marks (nonspacing or enclosing) on one character, after NFC: more than any language stacks
/// (Vietnamese two, Thai two), far fewer than "Zalgo" text that spills over the lines around it.
pub const MAX_MARKS_PER_CHAR: usize = 4;

/// Why a name or a message was refused; the text is what the user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("Pick a name first.")]
    EmptyName,
    #[error("Names are at most {max} characters; this one has {got}.")]
    NameTooLong { max: usize, got: usize },
    #[error("Names cannot contain control characters.")]
    NameControl,
    #[error(
        "Names cannot contain invisible or formatting characters (zero-width or direction marks, fillers, blank \
         patterns, soft hyphens) or spaces other than the plain space."
    )]
    NameInvisible,
    #[error("Names need a letter, digit or symbol, not only accents or other combining marks.")]
    NameOnlyMarks,
    #[error("Names can carry at most {max} accents or other combining marks on one character.")]
    NameMarks { max: usize },
    #[error(
        "Names are written in one script; Latin may go with one other, but not with Cyrillic or Greek, whose letters \
         look like Latin ones, and look-alike or obsolete letters are not taken."
    )]
    NameMixedScripts,
    #[error("Type a message first.")]
    EmptyText,
    #[error("Messages are at most {max} characters; this one has {got}.")]
    TextTooLong { max: usize, got: usize },
    #[error("Messages cannot contain control characters.")]
    TextControl,
    #[error("Messages can carry at most {max} accents or other combining marks on one character.")]
    TextMarks { max: usize },
    #[error("A send key is at most {max} letters, digits, '-' or '_'.")]
    BadSendKey { max: usize },
}

/// What is wrong with a field, before it is named.
enum Fault {
    Empty,
    TooLong(usize),
    Control,
    Marks,
}

/// The rules names and messages share: in Unicode normal form C (so "é" typed as e + combining accent is one
/// character, and looks the same as the precomposed one everywhere), trimmed, not empty, at most `max_chars`
/// characters (not bytes), no control characters.
fn check(raw: &str, max_chars: usize) -> Result<String, Fault> {
    let normal: String = raw.trim().nfc().collect();
    let got = normal.chars().count();
    if got == 0 {
        Err(Fault::Empty)
    } else if got > max_chars {
        Err(Fault::TooLong(got))
    } else if normal.chars().any(char::is_control) {
        Err(Fault::Control)
    } else if most_marks_on_one_char(&normal) > MAX_MARKS_PER_CHAR {
        Err(Fault::Marks)
    } else {
        Ok(normal)
    }
}

/// Nonspacing and enclosing marks stack on the character before them; spacing marks (as in Indic scripts) take
/// their own room and are not counted.
fn is_stacking_mark(c: char) -> bool {
    matches!(c.general_category(), GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark)
}

fn most_marks_on_one_char(text: &str) -> usize {
    let (mut most, mut run) = (0, 0);
    for c in text.chars() {
        run = if is_stacking_mark(c) { run + 1 } else { 0 };
        most = most.max(run);
    }
    most
}

/// Characters that show nothing, or change how what is around them shows, without being control characters:
/// format characters (bidi controls and isolates, zero-width space and joiners, U+FEFF, the soft hyphen, tag
/// characters), unassigned and private-use code points, line and paragraph separators, Unicode's
/// Default_Ignorable_Code_Point ranges (fillers and variation selectors among them, from DerivedCoreProperties.txt),
/// the blank Braille pattern, and every space but U+0020.
fn is_invisible(c: char) -> bool {
    const DEFAULT_IGNORABLE: &[(char, char)] = &[
        ('\u{00AD}', '\u{00AD}'),
        ('\u{034F}', '\u{034F}'),
        ('\u{061C}', '\u{061C}'),
        ('\u{115F}', '\u{1160}'),
        ('\u{17B4}', '\u{17B5}'),
        ('\u{180B}', '\u{180F}'),
        ('\u{200B}', '\u{200F}'),
        ('\u{202A}', '\u{202E}'),
        ('\u{2060}', '\u{206F}'),
        ('\u{3164}', '\u{3164}'),
        ('\u{FE00}', '\u{FE0F}'),
        ('\u{FEFF}', '\u{FEFF}'),
        ('\u{FFA0}', '\u{FFA0}'),
        ('\u{FFF0}', '\u{FFF8}'),
        ('\u{1BCA0}', '\u{1BCA3}'),
        ('\u{1D173}', '\u{1D17A}'),
        ('\u{E0000}', '\u{E0FFF}'),
    ];
    let category = matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::Unassigned
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    );
    category
        || DEFAULT_IGNORABLE.iter().any(|&(first, last)| (first..=last).contains(&c))
        || c == '\u{2800}'
        || (c.is_whitespace() && c != ' ')
}

/// UTS 39's Moderately Restrictive level, applied to a name's letters (spaces, punctuation, digits and emoji belong
/// to no script and are left out): one script, or Latin with Han/Kana/Hangul, or Latin with one other recommended
/// script except Cyrillic and Greek (whose letters pass for Latin ones, as in "pаypal" with a Cyrillic "а").
/// Letters that UTS 39 does not allow in identifiers (obsolete, technical, compatibility forms such as full-width
/// Latin) fall below that level too.
fn mixes_scripts(name: &str) -> bool {
    let letters: String = name.chars().filter(|&c| !AugmentedScriptSet::for_char(c).is_all()).collect();
    !letters.check_restriction_level(RestrictionLevel::ModeratelyRestrictive)
}

/// A display name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control, invisible or formatting characters,
/// at most [`MAX_MARKS_PER_CHAR`] marks on a character, not only marks, and in one script (see `mixes_scripts`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let name = match check(raw, MAX_NAME_CHARS) {
            Ok(name) => name,
            Err(Fault::Empty) => return Err(InputError::EmptyName),
            Err(Fault::TooLong(got)) => return Err(InputError::NameTooLong { max: MAX_NAME_CHARS, got }),
            Err(Fault::Control) => return Err(InputError::NameControl),
            Err(Fault::Marks) => return Err(InputError::NameMarks { max: MAX_MARKS_PER_CHAR }),
        };
        if name.chars().any(is_invisible) {
            Err(InputError::NameInvisible)
        } else if name.chars().all(|c| is_stacking_mark(c) || c == ' ') {
            Err(InputError::NameOnlyMarks)
        } else if mixes_scripts(&name) {
            Err(InputError::NameMixedScripts)
        } else {
            Ok(Self(name))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message body: trimmed, not empty, at most the configured number of characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, InputError> {
        match check(raw, max_chars) {
            Ok(text) => Ok(Self(text)),
            Err(Fault::Empty) => Err(InputError::EmptyText),
            Err(Fault::TooLong(got)) => Err(InputError::TextTooLong { max: max_chars, got }),
            Err(Fault::Control) => Err(InputError::TextControl),
            Err(Fault::Marks) => Err(InputError::TextMarks { max: MAX_MARKS_PER_CHAR }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest accepted send key, in characters.
pub const MAX_SEND_KEY_CHARS: usize = 64;

/// The tab's idempotency key for one message: a send repeated with the same key by the same ticket answers the
/// message stored the first time and appends nothing. 1 to [`MAX_SEND_KEY_CHARS`] ASCII letters, digits, `-` or
/// `_` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendKey(String);

impl SendKey {
    /// Blank means no key (the field is optional); anything else must be a well-formed key.
    pub fn parse(raw: &str) -> Result<Option<Self>, InputError> {
        if raw.is_empty() {
            return Ok(None);
        }
        let ok =
            raw.len() <= MAX_SEND_KEY_CHARS && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Some(Self(raw.to_owned())))
        } else {
            Err(InputError::BadSendKey { max: MAX_SEND_KEY_CHARS })
        }
    }

    /// A key standing for a longer one by its 32-byte digest (the server binds a tab's key to its ticket that
    /// way): 64 lowercase hex digits, a well-formed key of the longest length.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a message comes from, as readers may trust it: the only thing a page marks a name by. The name itself is
/// always plain text (anyone may type "✓ Ada"); the mark is drawn from this alone.
///
/// In JSON (`serde`'s external tagging): `{"verified": "SUBJECT"}` or `{"service": "KEY NAME"}`. A message's
/// `source` field is left out when it is anonymous, so a page of anonymous messages reads as it did before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Joined with a name the user typed: the name says nothing about who they are.
    #[default]
    Anonymous,
    /// Joined with a token of the deployer's backend, which vouches for the name: the token's subject (`sub`).
    Verified(String),
    /// Published by a backend through an API key: the key's name.
    Service(String),
}

impl Source {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }
}

/// One entry of the shared log, as stored and as served by `/api/messages` and `/api/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: u64,
    pub user: String,
    pub text: String,
    /// When the server stored it, RFC 3339 in UTC.
    pub at: String,
    /// Who vouches for `user`; left out of the JSON when nobody does (anonymous).
    #[serde(default, skip_serializing_if = "Source::is_anonymous")]
    pub source: Source,
    /// Removed by a moderator: `user`, `text` and `source` are erased (empty, anonymous) and the page shows "message
    /// removed" in its place. Left out of the JSON unless set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// A page of the log with the epoch it was read in. Over HTTP the messages are the JSON body and the epoch is the
/// `Broadcasting-Epoch` header (see `wire::EPOCH_HEADER`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub epoch: String,
    pub messages: Vec<Message>,
}

/// The answer to a join: the accepted name and the signed ticket the tab keeps in memory to send. A join with a
/// token also says who vouches for the name (`source`, left out when anonymous) and when the ticket stops being
/// accepted (`expires`, unix seconds like a token's `exp`; left out for a ticket of an anonymous join).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub name: String,
    pub ticket: String,
    #[serde(default, skip_serializing_if = "Source::is_anonymous")]
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// For a private feed: the read pass that goes with every read of it (its pages, who is here, the stream), valid
    /// as long as the ticket. Left out for every other feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
}

/// How tabs may join (the `join` setting): with a name typed in the form, with a token of the deployer's backend
/// (`server::identity`), or either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    #[default]
    Anonymous,
    Token,
    Both,
}

impl JoinMode {
    pub const ALL: [JoinMode; 3] = [Self::Anonymous, Self::Token, Self::Both];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Token => "token",
            Self::Both => "both",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.as_str() == raw)
    }

    pub fn is_anonymous(&self) -> bool {
        *self == Self::Anonymous
    }

    /// A name typed in the form is taken.
    pub fn takes_names(self) -> bool {
        self != Self::Token
    }

    /// A token is taken.
    pub fn takes_tokens(self) -> bool {
        self != Self::Anonymous
    }
}

/// What the page needs to know of the server's settings: the longest message, to check one before sending it; how
/// tabs join (`join`, left out when anonymous), so the form asks for what the server takes; and where to get a new
/// token before a sign-in expires (`refresh_url`, left out when not set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageLimits {
    pub max_message_chars: usize,
    #[serde(default, skip_serializing_if = "JoinMode::is_anonymous")]
    pub join: JoinMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_url: Option<String>,
}

/// Who is here in the session group (`GET /api/presence`): the names of its joined tabs whose lease runs, each
/// once, in alphabetical order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Here {
    /// Every name listed, in order (a name both signed in and typed by someone else is there twice).
    pub names: Vec<String>,
    /// Those of `names` the site's sign-in vouches for, each as often as it is listed so; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<String>,
}

/// A heartbeat's answer (`POST /api/presence`): beat again within this many milliseconds to stay on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub every_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_keys_are_optional_short_and_plain() {
        assert_eq!(SendKey::parse(""), Ok(None));
        let uuid = "0b6f3c7e-1f2a-4d5b-9c8d-7e6f5a4b3c2d";
        assert_eq!(SendKey::parse(uuid).unwrap().unwrap().as_str(), uuid);
        assert!(SendKey::parse(&"k".repeat(MAX_SEND_KEY_CHARS)).unwrap().is_some());
        for bad in ["k".repeat(MAX_SEND_KEY_CHARS + 1), "a b".into(), "ключ".into(), "a:b".into(), "\n".into()] {
            assert_eq!(SendKey::parse(&bad), Err(InputError::BadSendKey { max: MAX_SEND_KEY_CHARS }), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        assert_eq!(Username::parse("  ada  ").unwrap().as_str(), "ada");
        let max = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(Username::parse(&max).unwrap().as_str(), max);
        assert_eq!(
            Username::parse(&format!("{max}x")),
            Err(InputError::NameTooLong { max: MAX_NAME_CHARS, got: MAX_NAME_CHARS + 1 })
        );
    }

    #[test]
    fn input_is_normalized_to_nfc_before_it_is_counted() {
        let decomposed = "e\u{301}".repeat(MAX_NAME_CHARS); // 64 code points, 32 characters once composed
        assert_eq!(Username::parse(&decomposed).unwrap().as_str(), "\u{e9}".repeat(MAX_NAME_CHARS));
        assert_eq!(MessageText::parse("A\u{30a}ngstro\u{308}m", 8).unwrap().as_str(), "\u{c5}ngstr\u{f6}m");
        assert_eq!(MessageText::parse("a\u{30a}a\u{30a}", 1), Err(InputError::TextTooLong { max: 1, got: 2 }));
        // bidi controls are format characters, not control characters: kept, and shown as typed
        assert!(MessageText::parse("abc\u{202e}def", 10).is_ok());
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(Username::parse(""), Err(InputError::EmptyName));
        assert_eq!(Username::parse(" \t\n "), Err(InputError::EmptyName));
        assert_eq!(Username::parse("a\u{7}b"), Err(InputError::NameControl));
        assert_eq!(Username::parse("a\nb"), Err(InputError::NameControl));
    }

    /// Names that look like another, like nothing, or like more than a name.
    pub const HOSTILE_NAMES: &[(&str, &str)] = &[
        ("ad\u{200B}a", "zero-width space"),
        ("\u{200B}", "only a zero-width space"),
        ("ada\u{202E}nimda", "right-to-left override"),
        ("\u{2067}ada\u{2069}", "right-to-left isolate"),
        ("a\u{200E}da", "left-to-right mark"),
        ("\u{3164}", "Hangul filler"),
        ("ada\u{3164}", "trailing Hangul filler"),
        ("\u{2800}\u{2800}", "blank Braille"),
        ("\u{FEFF}ada", "byte-order mark"),
        ("ad\u{00AD}a", "soft hyphen"),
        ("ada\u{E0041}\u{E0042}", "tag characters"),
        ("a\u{2060}da", "word joiner"),
        ("ada\u{FE0F}", "variation selector"),
        ("a\u{00A0}da", "no-break space"),
        ("ada\u{3000}lovelace", "ideographic space"),
        ("ada\u{2028}x", "line separator"),
        ("\u{E000}ada", "private use"),
        ("\u{301}\u{302}", "only combining marks"),
        ("\u{20DD}", "only an enclosing mark"),
        ("a\u{336}\u{336}\u{336}\u{336}\u{336}", "five marks on one letter"),
        ("p\u{430}ypal", "Latin with a Cyrillic a"),
        ("\u{391}da", "Greek capital alpha for A"),
        ("\u{FF41}\u{FF44}\u{FF41}", "full-width Latin"),
    ];

    #[test]
    fn invisible_formatting_marked_up_and_look_alike_names_are_refused_with_a_sentence() {
        for (name, what) in HOSTILE_NAMES {
            let refused = Username::parse(name).expect_err(what);
            let sentence = refused.to_string();
            assert!(sentence.starts_with("Names ") && sentence.ends_with('.'), "{what}: {sentence}");
        }
        // and what people write is kept
        for name in [
            "Ada Lovelace",
            "Zoë",
            "Nguyễn Thị Minh Khai",
            "山田 Taro",
            "김민준",
            "Иван",
            "Σωκράτης",
            "محمد",
            "יעל",
            "देवनागरी",
            "O'Brien-Smith",
            "ada 🚀",
            "R2-D2",
            "a\u{301}\u{302}\u{303}\u{304}",
        ] {
            assert!(Username::parse(name).is_ok(), "{name}: {:?}", Username::parse(name));
        }
    }

    #[test]
    fn marks_are_counted_after_composition() {
        // a + U+0301 composes to á: four marks remain on it
        assert_eq!(Username::parse("a\u{301}\u{336}\u{336}\u{336}\u{336}").map(|_| ()), Ok(()));
        let five = "a\u{336}\u{336}\u{336}\u{336}\u{336}";
        assert_eq!(Username::parse(five), Err(InputError::NameMarks { max: MAX_MARKS_PER_CHAR }));
    }

    #[test]
    fn messages_keep_format_characters_but_not_stacks_of_marks() {
        assert!(MessageText::parse("a\u{200B}b \u{2067}שלום\u{2069}", 100).is_ok());
        assert!(MessageText::parse("Nguyễn, e\u{301}\u{302}\u{303}\u{304}", 100).is_ok());
        let zalgo = format!("h{}i", "\u{336}".repeat(5));
        assert_eq!(MessageText::parse(&zalgo, 100), Err(InputError::TextMarks { max: MAX_MARKS_PER_CHAR }));
        assert!(InputError::TextMarks { max: 4 }.to_string().contains("at most 4"));
    }

    /// A message's source is in its JSON only when someone vouches for it, so a page of anonymous messages (and an
    /// old client's reading of one) is what it was; a message of before sources reads as anonymous.
    #[test]
    fn a_source_is_in_the_json_only_when_it_is_not_anonymous() {
        let message =
            |source| Message { id: 1, user: "Ada".into(), text: "hi".into(), at: "t".into(), source, removed: false };
        let json = |m: &Message| serde_json::to_string(m).unwrap();
        assert_eq!(json(&message(Source::Anonymous)), r#"{"id":1,"user":"Ada","text":"hi","at":"t"}"#);
        let verified = message(Source::Verified("sub-123".into()));
        assert_eq!(json(&verified), r#"{"id":1,"user":"Ada","text":"hi","at":"t","source":{"verified":"sub-123"}}"#);
        let service = message(Source::Service("billing".into()));
        assert!(json(&service).ends_with(r#","source":{"service":"billing"}}"#), "{}", json(&service));
        let old: Message = serde_json::from_str(r#"{"id":1,"user":"Ada","text":"hi","at":"t"}"#).unwrap();
        assert_eq!(old.source, Source::Anonymous);
        assert_eq!(serde_json::from_str::<Message>(&json(&verified)).unwrap(), verified);
    }

    #[test]
    fn texts_are_trimmed_and_limited() {
        assert_eq!(MessageText::parse(" hi ", 5).unwrap().as_str(), "hi");
        assert_eq!(MessageText::parse("   ", 5), Err(InputError::EmptyText));
        assert_eq!(MessageText::parse("hello", 5).unwrap().as_str(), "hello");
        assert_eq!(MessageText::parse("hello!", 5), Err(InputError::TextTooLong { max: 5, got: 6 }));
        assert_eq!(MessageText::parse("a\u{0}b", 5), Err(InputError::TextControl));
        // markup is text, not refused: the page escapes it
        assert!(MessageText::parse("<img src=x onerror=alert(1)>", 100).is_ok());
    }
}

/// Longest feed name, in characters (all ASCII, so bytes too).
pub const MAX_FEED_CHARS: usize = 64;

/// What a feed name may be, as the 404 page and the API error say it.
pub const FEED_NAME_RULE: &str =
    "A feed name is 1 to 64 characters of a-z, 0-9 and '-', and does not start with '-' (for example: team-news).";

/// How a requested feed name reads: a name, a name to redirect to (its lowercase form), or no name at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedLookup {
    Name(FeedName),
    /// The name with capitals: the feed is the lowercase one, at its own URL.
    Lowercase(FeedName),
    Invalid,
}

/// A feed's name: 1 to [`MAX_FEED_CHARS`] of `a-z`, `0-9` and `-`, not starting with `-`. Safe in a URL path, a
/// Redis key (between `{}` as a cluster hash tag), a notice line and a file name as it is, so it is never escaped.
/// [`FeedName::main`] is the feed `/` shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FeedName(std::sync::Arc<str>);

impl FeedName {
    /// The feed of `/`, of `/api/messages` and of a stream that names no feed: every deployment's first.
    pub const MAIN: &'static str = "main";

    pub fn main() -> Self {
        Self(Self::MAIN.into())
    }

    /// The name as written, or `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        let fine = (1..=MAX_FEED_CHARS).contains(&raw.len()) && !raw.starts_with('-') && raw.bytes().all(plain);
        fine.then(|| Self(raw.into()))
    }

    /// A name from a URL: as written, or (with capitals) its lowercase form to redirect to, or none.
    pub fn lookup(raw: &str) -> FeedLookup {
        match Self::parse(raw) {
            Some(name) => FeedLookup::Name(name),
            None => match Self::parse(&raw.to_ascii_lowercase()) {
                Some(lower) if raw.is_ascii() => FeedLookup::Lowercase(lower),
                _ => FeedLookup::Invalid,
            },
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_main(&self) -> bool {
        &*self.0 == Self::MAIN
    }
}

impl std::fmt::Display for FeedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FeedName {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or(FEED_NAME_RULE)
    }
}

impl From<FeedName> for String {
    fn from(name: FeedName) -> Self {
        name.0.to_string()
    }
}

#[cfg(test)]
mod feed_name_tests {
    use super::{FeedLookup, FeedName, MAX_FEED_CHARS};

    #[test]
    fn a_feed_name_is_lowercase_ascii_digits_and_dashes_not_leading() {
        for good in ["main", "a", "team-news", "0", "a-", "x".repeat(MAX_FEED_CHARS).as_str()] {
            assert_eq!(FeedName::parse(good).map(|n| n.to_string()), Some(good.to_owned()), "{good:?}");
        }
        let long = "x".repeat(MAX_FEED_CHARS + 1);
        for bad in ["", "-a", "a b", "a_b", "a/b", "a.b", "ä", "a%20", "{a}", long.as_str(), "Team"] {
            assert_eq!(FeedName::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn capitals_redirect_to_the_lowercase_name_and_anything_else_is_no_name() {
        assert_eq!(FeedName::lookup("team"), FeedLookup::Name(FeedName::parse("team").unwrap()));
        assert_eq!(FeedName::lookup("Team-News"), FeedLookup::Lowercase(FeedName::parse("team-news").unwrap()));
        for bad in ["Team News", "-Team", "TEAM_1", "Ünïcode", ""] {
            assert_eq!(FeedName::lookup(bad), FeedLookup::Invalid, "{bad:?}");
        }
        assert!(FeedName::main().is_main() && !FeedName::parse("mainly").unwrap().is_main());
    }

    #[test]
    fn a_feed_name_travels_as_its_string_and_a_bad_one_is_refused() {
        let name: FeedName = serde_json::from_str("\"team-news\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"team-news\"");
        assert!(serde_json::from_str::<FeedName>("\"Team\"").is_err());
    }
}
