//! Lookup modes and identifier normalisation.
//!
//! A subject is found by its token or by one of four unique identifiers (login, email,
//! phone, custom). Identifiers are normalised before they are hashed into the blind
//! index, so `John@Example.com ` and `john@example.com` are the same person, and every
//! way of writing a phone number collapses to E.164.

use std::str::FromStr;

use phonenumber::country;
use unicode_normalization::UnicodeNormalization;

/// The `{mode}` path segment of the Databunker API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Token,
    Login,
    Email,
    Phone,
    Custom,
}

impl FromStr for Mode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "token" => Ok(Mode::Token),
            "login" => Ok(Mode::Login),
            "email" => Ok(Mode::Email),
            "phone" => Ok(Mode::Phone),
            "custom" => Ok(Mode::Custom),
            _ => Err(()),
        }
    }
}

impl Mode {
    /// The blind index that serves this mode; `None` for lookups by token.
    pub fn index_kind(self) -> Option<IndexKind> {
        match self {
            Mode::Token => None,
            Mode::Login => Some(IndexKind::Login),
            Mode::Email => Some(IndexKind::Email),
            Mode::Phone => Some(IndexKind::Phone),
            Mode::Custom => Some(IndexKind::Custom),
        }
    }
}

/// The unique identifiers a profile can carry, each with its own blind index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum IndexKind {
    Login = 1,
    Email = 2,
    Phone = 3,
    Custom = 4,
}

impl IndexKind {
    pub const ALL: [IndexKind; 4] = [IndexKind::Login, IndexKind::Email, IndexKind::Phone, IndexKind::Custom];

    /// The profile field holding this identifier.
    pub fn field(self) -> &'static str {
        match self {
            IndexKind::Login => "login",
            IndexKind::Email => "email",
            IndexKind::Phone => "phone",
            IndexKind::Custom => "custom",
        }
    }

    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }
}

/// The default region for phone numbers written without a country code.
#[derive(Clone, Copy, Debug)]
pub struct PhoneRegion(country::Id);

impl FromStr for PhoneRegion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let code = s.trim().to_ascii_uppercase();
        // Databunker's configuration spells the United Kingdom "UK".
        let code = if code == "UK" { "GB".to_string() } else { code };
        country::Id::from_str(&code)
            .map(PhoneRegion)
            .map_err(|_| format!("unknown country code {s:?} (use ISO 3166 alpha-2, e.g. GB, US, DE)"))
    }
}

impl Default for PhoneRegion {
    fn default() -> Self {
        PhoneRegion(country::Id::GB)
    }
}

/// Normalises an identifier for indexing. Returns `None` for an empty value, which
/// is treated as absent: not indexed, never a duplicate.
pub fn normalise(kind: IndexKind, raw: &str, region: PhoneRegion) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    // One spelling of each character (Unicode NFC), so that a composed `é` and an `e`
    // followed by a combining accent are one identifier, not two look-alikes.
    let composed: String = trimmed.nfc().collect();
    Some(match kind {
        IndexKind::Email => composed.to_lowercase(),
        IndexKind::Phone => normalise_phone(&composed, region),
        IndexKind::Login | IndexKind::Custom => composed,
    })
}

/// Whether an email or phone number is shaped like one: an email has one `@` with text
/// on both sides and no spaces; a phone number has at least one digit and otherwise only
/// `+`, spaces, `-`, `.`, `(` and `)`. Subjects' own identifiers are taken as given
/// (Databunker does), but agreements by an identifier that names no subject yet are
/// kept under it, so a typo or garbage there is refused instead of stored. Other kinds
/// are always well-formed.
pub fn is_well_formed(kind: IndexKind, raw: &str) -> bool {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_IDENTIFIER_LEN {
        return false;
    }
    match kind {
        IndexKind::Email => match trimmed.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        },
        IndexKind::Phone => {
            trimmed.chars().any(|c| c.is_ascii_digit())
                && trimmed.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
        }
        IndexKind::Login | IndexKind::Custom => true,
    }
}

/// The longest email address (RFC 5321's path limit) or phone number taken.
const MAX_IDENTIFIER_LEN: usize = 254;

/// E.164 when the number parses for the region; otherwise its digits, keeping a
/// leading `+`. Short or unusual numbers are normalised, never rejected.
fn normalise_phone(raw: &str, region: PhoneRegion) -> String {
    if let Ok(number) = phonenumber::parse(Some(region.0), raw) {
        return number.format().mode(phonenumber::Mode::E164).to_string();
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return raw.to_string();
    }
    if raw.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_spellings_are_one_identifier() {
        let region = PhoneRegion::default();
        let composed = normalise(IndexKind::Login, "Jos\u{e9}", region);
        assert_eq!(normalise(IndexKind::Login, "Jose\u{301}", region), composed);
        assert_eq!(
            normalise(IndexKind::Email, "RE\u{301}MY@Example.COM", region).as_deref(),
            Some("r\u{e9}my@example.com")
        );
        assert_eq!(normalise(IndexKind::Custom, "  n\u{303}  ", region).as_deref(), Some("\u{f1}"));
    }

    #[test]
    fn modes_parse_and_unknown_is_rejected() {
        assert_eq!("email".parse(), Ok(Mode::Email));
        assert_eq!("token".parse::<Mode>().unwrap().index_kind(), None);
        assert!("nickname".parse::<Mode>().is_err());
    }

    #[test]
    fn email_is_trimmed_and_lowercased_and_empty_is_absent() {
        let r = PhoneRegion::default();
        assert_eq!(normalise(IndexKind::Email, "  John@Example.COM ", r).as_deref(), Some("john@example.com"));
        assert_eq!(normalise(IndexKind::Email, "   ", r), None);
        assert_eq!(normalise(IndexKind::Login, "", r), None);
    }

    #[test]
    fn phones_become_e164_in_the_default_region() {
        let gb: PhoneRegion = "UK".parse().unwrap();
        let us: PhoneRegion = "us".parse().unwrap();
        assert_eq!(normalise(IndexKind::Phone, "020 7946 0018", gb).as_deref(), Some("+442079460018"));
        assert_eq!(normalise(IndexKind::Phone, "(415) 555-2671", us).as_deref(), Some("+14155552671"));
        assert_eq!(normalise(IndexKind::Phone, "+44 20 7946 0018", us).as_deref(), Some("+442079460018"));
    }

    #[test]
    fn emails_and_phones_are_checked_for_their_shape() {
        for good in ["a@b", " Ann@Example.com ", "x.y+tag@sub.example.org"] {
            assert!(is_well_formed(IndexKind::Email, good), "{good:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in ["", "  ", "ann", "@example.com", "ann@", "a@b@c", "a b@c", "a@b\tc", "a@b\u{0}", long.as_str()] {
            assert!(!is_well_formed(IndexKind::Email, bad), "{bad:?}");
        }
        for good in ["4444", "+44 20 7946 0018", "(415) 555-2671", "020.7946.0018"] {
            assert!(is_well_formed(IndexKind::Phone, good), "{good:?}");
        }
        for bad in ["", "call me", "+", "12a34", "--", "0800;1"] {
            assert!(!is_well_formed(IndexKind::Phone, bad), "{bad:?}");
        }
        assert!(is_well_formed(IndexKind::Login, "anything at all"));
    }

    #[test]
    fn short_or_odd_phones_are_normalised_not_rejected() {
        let r = PhoneRegion::default();
        let short = normalise(IndexKind::Phone, "4444", r).unwrap();
        assert!(short.ends_with("4444"));
        assert_eq!(normalise(IndexKind::Phone, "4444", r).unwrap(), normalise(IndexKind::Phone, " 4444 ", r).unwrap());
        assert!(normalise(IndexKind::Phone, "call me", r).is_some());
        assert!("Atlantis".parse::<PhoneRegion>().is_err());
    }
}
