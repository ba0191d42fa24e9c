//! The key encryption keys, whichever backend holds them. Every wrap names the KEK by
//! label, and the label is stored with what it wrapped, so the KEK that new wraps use can
//! change (a rotation) while older wraps still open under the key that made them. HSM
//! calls run on the HSM worker threads, never on the async executor.

use zeroize::Zeroizing;

use super::{CryptoError, DataKey, HsmKek, SoftwareKek};

pub enum Kek {
    /// Demo mode only: keys in process memory.
    Software(SoftwareKek),
    /// Every other mode: AES-256 keys inside a PKCS#11 token.
    Hsm(HsmKek),
}

impl Kek {
    /// The label the vault was started with (e.g. `strongroom-kek-1`): the KEK new wraps
    /// use until a rotation names another.
    pub fn label(&self) -> &str {
        match self {
            Kek::Software(kek) => kek.label(),
            Kek::Hsm(hsm) => hsm.key_label(),
        }
    }

    pub async fn wrap(&self, label: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            Kek::Software(kek) => kek.wrap(label, plaintext, aad),
            Kek::Hsm(hsm) => hsm.encrypt(label, plaintext.to_vec(), aad.to_vec()).await,
        }
    }

    pub async fn unwrap(&self, label: &str, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match self {
            Kek::Software(kek) => kek.unwrap(label, wrapped, aad),
            Kek::Hsm(hsm) => hsm.decrypt(label, wrapped.to_vec(), aad.to_vec()).await,
        }
    }

    pub async fn wrap_key(&self, label: &str, key: &DataKey, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.wrap(label, key.expose(), aad).await
    }

    pub async fn unwrap_key(&self, label: &str, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, CryptoError> {
        DataKey::from_slice(&self.unwrap(label, wrapped, aad).await?)
    }
}
