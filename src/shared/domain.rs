//! Domain types. `Username::parse` and `MessageText::parse` are the only ways to make those types, so every
//! function that holds one knows it is valid.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Longest accepted name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 32;

/// Why a name or a message was refused; the text is what the user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("Pick a name first.")]
    EmptyName,
    #[error("Names are at most {max} characters; this one has {got}.")]
    NameTooLong { max: usize, got: usize },
    #[error("Names cannot contain control characters.")]
    NameControl,
    #[error("Type a message first.")]
    EmptyText,
    #[error("Messages are at most {max} characters; this one has {got}.")]
    TextTooLong { max: usize, got: usize },
    #[error("Messages cannot contain control characters.")]
    TextControl,
}

/// What is wrong with a field, before it is named.
enum Fault {
    Empty,
    TooLong(usize),
    Control,
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
    } else {
        Ok(normal)
    }
}

/// A display name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        match check(raw, MAX_NAME_CHARS) {
            Ok(name) => Ok(Self(name)),
            Err(Fault::Empty) => Err(InputError::EmptyName),
            Err(Fault::TooLong(got)) => Err(InputError::NameTooLong { max: MAX_NAME_CHARS, got }),
            Err(Fault::Control) => Err(InputError::NameControl),
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
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One entry of the shared log, as stored and as served by `/api/messages` and `/api/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    pub user: String,
    pub text: String,
    /// When the server stored it, RFC 3339 in UTC.
    pub at: String,
}

/// The answer to a join: the accepted name and the signed ticket the tab keeps in memory to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub name: String,
    pub ticket: String,
}

#[cfg(test)]
mod tests {
    use super::*;

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
