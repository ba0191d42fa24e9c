//! In-memory key encryption keys for `vaultd demo` only. They die with the process, so a
//! demo vault's data cannot be decrypted after a restart: that is the point of a demo.

use std::collections::HashMap;
use std::sync::RwLock;

use zeroize::Zeroizing;

use super::{CryptoError, DataKey};

pub struct SoftwareKek {
    /// The first key's label.
    label: String,
    keys: RwLock<HashMap<String, DataKey>>,
}

impl SoftwareKek {
    /// A fresh key, labelled uniquely so that data written under an earlier demo key is
    /// recognised as such at startup.
    pub fn generate() -> Self {
        let tag = crate::audit::hex(&super::random_bytes::<4>());
        let label = format!("software-demo-kek-{tag}");
        let keys = RwLock::new(HashMap::from([(label.clone(), DataKey::generate())]));
        SoftwareKek { label, keys }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn key(&self, label: &str) -> Result<DataKey, CryptoError> {
        let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.get(label).cloned().ok_or_else(|| CryptoError::UnknownKek(label.to_string()))
    }

    pub fn wrap(&self, label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key(label)?.seal(plaintext, aad)
    }

    pub fn unwrap(&self, label: &str, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.key(label)?.open(wrapped, aad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrap_opens_only_under_the_label_that_made_it() {
        let kek = SoftwareKek::generate();
        let wrapped = kek.wrap(kek.label(), b"a data key", b"aad").unwrap();
        assert_eq!(&kek.unwrap(kek.label(), &wrapped, b"aad").unwrap()[..], b"a data key");
        let unknown = kek.unwrap("strongroom-kek-2", &wrapped, b"aad");
        assert!(matches!(unknown, Err(CryptoError::UnknownKek(label)) if label == "strongroom-kek-2"));
        assert!(kek.wrap("strongroom-kek-2", b"a data key", b"aad").is_err(), "no key, no wrap");
        let another = SoftwareKek::generate();
        assert!(another.unwrap(kek.label(), &wrapped, b"aad").is_err(), "another demo's keys");
    }
}
