//! Blind index: keyed HMAC-SHA256 of a normalised identifier, so that the vault can find
//! a subject by login, email, phone or custom id without storing the identifier. The key
//! is stored only wrapped by the KEK, so a stolen data directory gives nothing to guess
//! against offline.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::DataKey;
use crate::identifiers::IndexKind;

pub struct BlindIndex {
    key: DataKey,
}

impl BlindIndex {
    pub fn new(key: DataKey) -> Self {
        BlindIndex { key }
    }

    /// Index key for a normalised identifier: the kind tag, then the 32-byte MAC.
    pub fn entry(&self, kind: IndexKind, normalised: &str) -> Vec<u8> {
        // A MAC accepts keys of any length, so construction cannot fail for a 32-byte key.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&[kind as u8]);
        mac.update(normalised.as_bytes());
        let mut out = Vec::with_capacity(33);
        out.push(kind as u8);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// A keyed pseudonym for a field's value (`psn_` and 32 hex digits): equal values of
    /// one field get equal pseudonyms, and without the key nobody can link a pseudonym
    /// to a guessed value.
    pub fn pseudonym(&self, field: &str, value: &serde_json::Value) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // Index entries start with a kind byte (1-4); this domain tag keeps them apart.
        mac.update(b"strongroom/v1/pseudonym\0");
        mac.update(field.as_bytes());
        mac.update(&[0]);
        mac.update(value.to_string().as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{}{}", crate::retention::rules::PSEUDONYM_PREFIX, crate::audit::hex(&digest[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_depend_on_kind_value_and_key() {
        let index = BlindIndex::new(DataKey::generate());
        let a = index.entry(IndexKind::Email, "a@example.com");
        assert_eq!(a, index.entry(IndexKind::Email, "a@example.com"));
        assert_ne!(a, index.entry(IndexKind::Login, "a@example.com"));
        assert_ne!(a, index.entry(IndexKind::Email, "b@example.com"));
        assert_ne!(a, BlindIndex::new(DataKey::generate()).entry(IndexKind::Email, "a@example.com"));
        assert_eq!(a.len(), 33);
    }
}
