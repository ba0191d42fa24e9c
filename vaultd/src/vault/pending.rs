//! Consent before sign-up: a cookie banner records an agreement for a visitor known only
//! by an email or phone number that no subject has yet. The agreement is kept under the
//! identifier's blind-index entry, with the identifier sealed under a key of its own
//! (wrapped by the KEK, bound to the entry) — never in plaintext. Reads, withdrawals and
//! forget-me by the identifier reach those agreements; the subject later created with
//! the identifier takes them over in the same log entry (`store::state_machine::pending`).
//!
//! Only the email and phone modes do this, as in Databunker; the other modes still need
//! a subject.

use super::*;
use crate::store::PendingIdentity;

/// How an agreement route reaches its agreements.
pub(super) enum ConsentTarget {
    /// By a target the state machine resolves to a subject.
    Subject(Target),
    /// By an email or phone entry: the subject holding it when the command applies, or
    /// else the agreements kept under it. `unknown` holds the normalised identifier when
    /// no subject held the entry as the request was read.
    Identifier { entry: Vec<u8>, unknown: Option<Zeroizing<String>> },
}

impl Vault {
    /// Where an agreement route's `{mode}/{id}` leads. A subject token always reaches its
    /// own subject; email and phone lookups by staff fall back to agreements kept under
    /// the identifier, which must then be shaped like an email or a phone number.
    pub(super) async fn consent_target(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<ConsentTarget> {
        let kind = match mode.index_kind() {
            Some(kind @ (IndexKind::Email | IndexKind::Phone)) if caller.subject.is_none() => kind,
            _ => return Ok(ConsentTarget::Subject(self.target(caller, mode, id).await?)),
        };
        let Some(normalised) = identifiers::normalise(kind, id, self.settings.phone_region).map(Zeroizing::new) else {
            return Err(VaultError::bad_request(format!("{} must not be empty", kind.field())));
        };
        let entry = self.index().await?.entry(kind, &normalised);
        if self.find(&Target::Index(entry.clone())).await?.is_some() {
            return Ok(ConsentTarget::Identifier { entry, unknown: None });
        }
        if !identifiers::is_well_formed(kind, id) {
            return Err(VaultError::bad_request(format!("{} is malformed", kind.field())));
        }
        Ok(ConsentTarget::Identifier { entry, unknown: Some(normalised) })
    }

    /// The sealed identifier to keep beside an agreement under `entry`: none when the
    /// entry names a subject (`unknown` is `None`), or one is kept already.
    pub(super) async fn pending_identity(
        &self,
        entry: &[u8],
        unknown: Option<&str>,
    ) -> VaultResult<Option<PendingIdentity>> {
        let Some(normalised) = unknown else { return Ok(None) };
        if self.store.pending_identity(entry)?.is_some() {
            return Ok(None);
        }
        Ok(Some(seal_identifier(&self.kek, &self.active_kek(), entry, normalised).await?))
    }
}

/// Seals an identifier under a new key, wrapped by the KEK `label`; both bound to `entry`.
async fn seal_identifier(kek: &Kek, label: &str, entry: &[u8], normalised: &str) -> VaultResult<PendingIdentity> {
    let key = DataKey::generate();
    let wrapped_key = kek.wrap_key(label, &key, &crypto::pending_key_aad(entry)).await?;
    let sealed = key.seal(normalised.as_bytes(), &crypto::pending_aad(entry))?;
    Ok(PendingIdentity { kek: label.to_string(), wrapped_key, sealed })
}

/// Opens a sealed identifier, as a DPO's tool would; the API never shows it.
#[cfg(test)]
async fn open_identifier(kek: &Kek, entry: &[u8], identity: &PendingIdentity) -> VaultResult<Zeroizing<Vec<u8>>> {
    let key = kek.unwrap_key(&identity.kek, &identity.wrapped_key, &crypto::pending_key_aad(entry)).await?;
    Ok(key.open(&identity.sealed, &crypto::pending_aad(entry))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SoftwareKek;

    #[tokio::test]
    async fn a_sealed_identifier_opens_only_under_its_entry() {
        let kek = Kek::Software(SoftwareKek::generate());
        let (entry, other) = ([2u8; 33], [3u8; 33]);
        let identity = seal_identifier(&kek, kek.label(), &entry, "ann@example.com").await.unwrap();
        assert_eq!(&open_identifier(&kek, &entry, &identity).await.unwrap()[..], b"ann@example.com");
        assert!(!identity.sealed.windows(3).any(|w| w == b"ann"), "sealed, not in the clear");
        assert!(open_identifier(&kek, &other, &identity).await.is_err(), "moved to another entry");
        let mut swapped = seal_identifier(&kek, kek.label(), &other, "bob@example.com").await.unwrap();
        swapped.sealed = identity.sealed.clone();
        assert!(open_identifier(&kek, &other, &swapped).await.is_err(), "another entry's identifier");
        let foreign = Kek::Software(SoftwareKek::generate());
        assert!(open_identifier(&foreign, &entry, &identity).await.is_err(), "another KEK");
    }
}
