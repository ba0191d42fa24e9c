//! Data subjects: create, read, update, forget (crypto-shred) and bulk listing.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::*;

impl Vault {
    pub async fn create_user(&self, caller: &Caller, profile: Map<String, Value>) -> VaultResult<Uuid> {
        if profile.is_empty() {
            return Err(VaultError::bad_request("profile must not be empty"));
        }
        let index = self.index_entries(&profile)?;
        let subject = Uuid::new_v4();
        let dek = DataKey::generate();
        let wrapped_dek = self.kek.wrap_key(&dek, &crypto::dek_aad(&subject)).await?;
        let plaintext = Zeroizing::new(
            serde_json::to_vec(&profile).map_err(|_| VaultError::bad_request("profile is not valid JSON"))?,
        );
        let sealed = dek.seal(&plaintext, &crypto::record_aad(&subject, "profile"))?;
        let change =
            Change::CreateSubject { subject, kek: self.kek.label().to_string(), wrapped_dek, profile: sealed, index };
        let receipt = self.commit(draft(caller, Operation::UserCreate, Some(subject), None, None), change).await?;
        receipt.outcome.map_err(rejected)?;
        self.deks.insert(subject, dek);
        Ok(subject)
    }

    /// The profile of a subject; a forgotten subject resolves to an empty object.
    pub async fn get_user(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<(Uuid, Value)> {
        let (subject, profile) = match self.find_audited(caller, Operation::UserRead, mode, None, id).await? {
            Found::Forgotten(subject) => (subject, Value::Object(Map::new())),
            Found::Active(subject, _, active) => (subject, self.open_profile(&subject, &active).await?),
        };
        // The read is audited before any data leaves the vault.
        self.record_access(draft(caller, Operation::UserRead, Some(subject), None, Some(mode)), true).await?;
        Ok((subject, profile))
    }

    pub async fn update_user(&self, caller: &Caller, mode: Mode, id: &str, update: &Value) -> VaultResult<Uuid> {
        for attempt in 0..UPDATE_ATTEMPTS {
            let (subject, version, active) =
                match self.find_audited(caller, Operation::UserUpdate, mode, None, id).await? {
                    Found::Active(subject, version, active) => (subject, version, active),
                    Found::Forgotten(subject) => {
                        let audit = draft(caller, Operation::UserUpdate, Some(subject), None, Some(mode));
                        self.record_access(audit, false).await?;
                        return Err(VaultError::NotFound("record"));
                    }
                };
            let dek = self.dek(&subject, &active).await?;
            let mut profile = self.open_profile(&subject, &active).await?;
            apply_update(&mut profile, update)?;
            let Value::Object(map) = &profile else {
                return Err(VaultError::bad_request("the record must remain a JSON object"));
            };
            let index = self.index_entries(map)?;
            let plaintext = Zeroizing::new(
                serde_json::to_vec(&profile).map_err(|_| VaultError::bad_request("profile is not valid JSON"))?,
            );
            let sealed = dek.seal(&plaintext, &crypto::record_aad(&subject, "profile"))?;
            let change = Change::UpdateSubject { subject, expected_version: version, profile: sealed, index };
            let receipt =
                self.commit(draft(caller, Operation::UserUpdate, Some(subject), None, Some(mode)), change).await?;
            match receipt.outcome {
                Ok(_) => return Ok(subject),
                Err(Rejection::Stale) => backoff(attempt).await,
                Err(other) => return Err(rejected(other)),
            }
        }
        Err(VaultError::Conflict("record is being changed concurrently; retry"))
    }

    /// Forget-me: removes the profile, index entries and app records, and destroys the
    /// DEK. The token keeps resolving to an empty record as evidence of the erasure.
    pub async fn forget_user(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<Uuid> {
        let subject = match self.find_audited(caller, Operation::UserForget, mode, None, id).await? {
            Found::Active(subject, ..) | Found::Forgotten(subject) => subject,
        };
        let receipt = self
            .commit(
                draft(caller, Operation::UserForget, Some(subject), None, Some(mode)),
                Change::ForgetSubject { subject },
            )
            .await?;
        receipt.outcome.map_err(rejected)?;
        Ok(subject)
    }

    /// Bulk listing of profiles, each read audited. Disabled unless configured.
    pub async fn list_users(
        &self,
        caller: &Caller,
        offset: usize,
        limit: usize,
    ) -> VaultResult<(Vec<(Uuid, Value)>, usize)> {
        if !self.settings.bulk_list_enabled {
            return Err(VaultError::Disabled("bulk listing of users"));
        }
        let (total, page) = self.store.subjects(offset, limit)?;
        let mut users = Vec::with_capacity(page.len());
        for (subject, record) in page {
            if let SubjectState::Active(active) = record.state {
                users.push((subject, self.open_profile(&subject, &active).await?));
            }
        }
        let audits = users.iter().map(|(subject, _)| {
            let audit = draft(caller, Operation::UserList, Some(*subject), None, None);
            self.record_access(audit, true)
        });
        futures_util::future::try_join_all(audits).await?;
        Ok((users, total))
    }

    async fn open_profile(&self, subject: &Uuid, active: &ActiveSubject) -> VaultResult<Value> {
        let dek = self.dek(subject, active).await?;
        let plaintext = dek.open(&active.profile, &crypto::record_aad(subject, "profile"))?;
        serde_json::from_slice(&plaintext).map_err(|_| VaultError::Crypto(CryptoError::Malformed))
    }
}
