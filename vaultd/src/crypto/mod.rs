//! Key custody and encryption: the KEK (in an HSM, or in memory for the demo), one data
//! encryption key per data subject, record sealing, and the blind index for lookups.
//!
//! The hierarchy (spec §3): the KEK never leaves the HSM; it wraps each subject's DEK and
//! the blind-index key; DEKs seal the subject's records with AES-256-GCM and an AAD that
//! names the owner and field, so a ciphertext cannot be moved to another record.

mod blind_index;
mod dek_cache;
mod hsm;
mod kek;
mod memory_protection;
mod sealing;
mod software_kek;

pub use blind_index::BlindIndex;
pub use dek_cache::DekCache;
pub use hsm::{import_key, HsmConfig, HsmError, HsmKek, Imported};
pub use kek::Kek;
pub use memory_protection::protect_process_memory;
pub use sealing::{DataKey, KEY_LEN, NONCE_LEN};
pub use software_kek::SoftwareKek;

/// Failures of the cryptographic layer. None of them carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext failed authentication")]
    Authentication,
    #[error("malformed ciphertext")]
    Malformed,
    #[error("HSM operation failed: {0}")]
    Hsm(String),
    #[error("HSM worker pool is gone")]
    HsmUnavailable,
    #[error("the key store holds no KEK labelled {0:?}")]
    UnknownKek(String),
}

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

/// Additional authenticated data for a wrapped DEK: binds it to its subject.
pub fn dek_aad(subject: &uuid::Uuid) -> Vec<u8> {
    let mut aad = b"strongroom/v1/dek/".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad
}

/// Additional authenticated data for a sealed record: binds it to owner and field.
pub fn record_aad(subject: &uuid::Uuid, field: &str) -> Vec<u8> {
    let mut aad = b"strongroom/v1/record/".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad.push(b'/');
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// AAD of the key that seals the identifier behind a blind-index entry with agreements
/// but no subject (consent before sign-up), as wrapped by the KEK.
pub fn pending_key_aad(entry: &[u8]) -> Vec<u8> {
    let mut aad = b"strongroom/v1/pending-key/".to_vec();
    aad.extend_from_slice(entry);
    aad
}

/// AAD of such a sealed identifier: binds it to its entry, so it cannot be moved to
/// another.
pub fn pending_aad(entry: &[u8]) -> Vec<u8> {
    let mut aad = b"strongroom/v1/pending/".to_vec();
    aad.extend_from_slice(entry);
    aad
}

/// AAD of the wrapped blind-index key.
pub const INDEX_KEY_AAD: &[u8] = b"strongroom/v1/index-key";
