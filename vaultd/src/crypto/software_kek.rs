//! An in-memory key encryption key for `vaultd demo` only. It dies with the process, so
//! a demo vault's data cannot be decrypted after a restart: that is the point of a demo.

use zeroize::Zeroizing;

use super::{CryptoError, DataKey};

pub struct SoftwareKek {
    key: DataKey,
    label: String,
}

impl SoftwareKek {
    /// A fresh key, labelled uniquely so that data written under an earlier demo key is
    /// recognised as such at startup.
    pub fn generate() -> Self {
        let tag = crate::audit::hex(&super::random_bytes::<4>());
        SoftwareKek { key: DataKey::generate(), label: format!("software-demo-kek-{tag}") }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key.seal(plaintext, aad)
    }

    pub fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.key.open(wrapped, aad)
    }
}
