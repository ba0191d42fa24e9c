//! AES-256-GCM sealing of records under a data encryption key.
//!
//! Sealed format: a random 96-bit nonce followed by ciphertext and 128-bit tag.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::{random_bytes, CryptoError};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;

/// A 256-bit symmetric key, wiped from memory when dropped.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    pub fn generate() -> Self {
        DataKey(Zeroizing::new(random_bytes::<KEY_LEN>()))
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::Malformed)?;
        Ok(DataKey(Zeroizing::new(array)))
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        let nonce = random_bytes::<NONCE_LEN>();
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .map_err(|_| CryptoError::Malformed)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_record_opens_only_with_its_aad() {
        let key = DataKey::generate();
        let sealed = key.seal(b"john@example.com", b"owner-a/profile").unwrap();
        assert_eq!(&key.open(&sealed, b"owner-a/profile").unwrap()[..], b"john@example.com");
        assert!(matches!(key.open(&sealed, b"owner-b/profile"), Err(CryptoError::Authentication)));
    }

    #[test]
    fn nonces_are_fresh_and_tampering_is_detected() {
        let key = DataKey::generate();
        let a = key.seal(b"x", b"aad").unwrap();
        let b = key.seal(b"x", b"aad").unwrap();
        assert_ne!(a, b);
        let mut tampered = a.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open(&tampered, b"aad").is_err());
        assert!(matches!(key.open(&a[..10], b"aad"), Err(CryptoError::Malformed)));
    }

    #[test]
    fn another_key_cannot_open() {
        let sealed = DataKey::generate().seal(b"x", b"aad").unwrap();
        assert!(DataKey::generate().open(&sealed, b"aad").is_err());
    }
}
