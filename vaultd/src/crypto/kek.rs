//! The key encryption key, whichever backend holds it. Callers wrap and unwrap through
//! this one type; HSM calls run on the HSM worker threads, never on the async executor.

use zeroize::Zeroizing;

use super::{CryptoError, DataKey, HsmKek, SoftwareKek};

pub enum Kek {
    /// Demo mode only: a key in process memory.
    Software(SoftwareKek),
    /// Every other mode: an AES-256 key inside a PKCS#11 token.
    Hsm(HsmKek),
}

impl Kek {
    /// The label of the KEK version new wraps are made under (e.g. `strongroom-kek-1`).
    pub fn label(&self) -> &str {
        match self {
            Kek::Software(kek) => kek.label(),
            Kek::Hsm(hsm) => hsm.key_label(),
        }
    }

    pub async fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            Kek::Software(kek) => kek.wrap(plaintext, aad),
            Kek::Hsm(hsm) => hsm.encrypt(plaintext.to_vec(), aad.to_vec()).await,
        }
    }

    pub async fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match self {
            Kek::Software(kek) => kek.unwrap(wrapped, aad),
            Kek::Hsm(hsm) => hsm.decrypt(wrapped.to_vec(), aad.to_vec()).await,
        }
    }

    pub async fn wrap_key(&self, key: &DataKey, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.wrap(key.expose(), aad).await
    }

    pub async fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, CryptoError> {
        DataKey::from_slice(&self.unwrap(wrapped, aad).await?)
    }
}
