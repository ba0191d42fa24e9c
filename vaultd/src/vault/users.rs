//! Data subjects: create, read, update, forget (crypto-shred) and bulk listing.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::*;

/// What a profile is called in errors.
const PROFILE: &str = "profile";

impl Vault {
    pub async fn create_user(&self, caller: &Caller, profile: Map<String, Value>) -> VaultResult<Uuid> {
        if profile.is_empty() {
            return Err(VaultError::bad_request("profile must not be empty"));
        }
        let index = self.index_entries(&profile).await?;
        require_lookup_field(&index)?;
        let subject = Uuid::new_v4();
        let generation = self.deks.generation();
        let dek = DataKey::generate();
        let kek = self.active_kek();
        let wrapped_dek = self.kek.wrap_key(&kek, &dek, &crypto::dek_aad(&subject)).await?;
        let plaintext = limits::encode_object(&profile, PROFILE, self.settings.max_record_bytes)?;
        let sealed = dek.seal(&plaintext, &crypto::record_aad(&subject, "profile"))?;
        let change = Change::CreateSubject { subject, kek, wrapped_dek, profile: sealed, index };
        let receipt = self.commit(draft(caller, Operation::UserCreate, Some(subject), None, None), change).await?;
        receipt.outcome.map_err(rejected)?;
        self.deks.insert(subject, dek, generation);
        Ok(subject)
    }

    /// The profile of a subject; a forgotten subject resolves to an empty object. The
    /// read is a command: it is audited (on a quorum) before any data leaves the vault,
    /// and it sees every write acknowledged before it.
    pub async fn get_user(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<(Uuid, Value)> {
        let (subject, record) = self.read_subject(caller, Operation::UserRead, mode, id).await?;
        let profile = match record.state {
            SubjectState::Forgotten { .. } => Value::Object(Map::new()),
            SubjectState::Active(active) => self.open_profile(&subject, &active).await?,
        };
        Ok((subject, profile))
    }

    /// Reads a subject's record through the log, audited as `operation`.
    pub(super) async fn read_subject(
        &self,
        caller: &Caller,
        operation: Operation,
        mode: Mode,
        id: &str,
    ) -> VaultResult<(Uuid, SubjectRecord)> {
        let target = self.target(caller, mode, id).await?;
        let receipt =
            self.commit(draft(caller, operation, None, None, Some(mode)), Change::ReadSubject { target }).await?;
        match receipt.outcome.map_err(rejected)? {
            Applied::Subject { subject, record } => Ok((subject, record)),
            _ => Err(VaultError::Storage(StoreError::Corrupt)),
        }
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
            let change = self.updated_profile(subject, version, &active, update).await?;
            let receipt =
                self.commit(draft(caller, Operation::UserUpdate, Some(subject), None, Some(mode)), change).await?;
            match receipt.outcome {
                Ok(_) => return Ok(subject),
                Err(Rejection::Stale) => self.after_conflict(&receipt, attempt).await?,
                Err(other) => return Err(rejected(other)),
            }
        }
        Err(VaultError::Conflict("record is being changed concurrently; retry"))
    }

    /// Forget-me: removes the profile, index entries and app records, and destroys the
    /// DEK. The token keeps resolving to an empty record as evidence of the erasure.
    /// An email or phone that names no subject but has agreements kept from before
    /// sign-up loses its sealed identifier (the agreements stay): no token then.
    pub async fn forget_user(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<Option<Uuid>> {
        let target = self.target(caller, mode, id).await?;
        let receipt = self
            .commit(
                draft(caller, Operation::UserForget, None, None, Some(mode)),
                Change::ForgetSubject { target, condition: ForgetCondition::Always },
            )
            .await?;
        match receipt.outcome.map_err(rejected)? {
            Applied::Resolved(subject) => Ok(Some(subject)),
            Applied::Done => Ok(None),
            _ => Err(VaultError::Storage(StoreError::Corrupt)),
        }
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
        self.catch_up().await?;
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

    /// The command that applies `update` (merge or patch) to the subject's profile as
    /// read at `version`.
    pub(super) async fn updated_profile(
        &self,
        subject: Uuid,
        version: u64,
        active: &ActiveSubject,
        update: &Value,
    ) -> VaultResult<Change> {
        let mut profile = self.open_profile(&subject, active).await?;
        apply_update(&mut profile, update, PROFILE, self.settings.max_record_bytes)?;
        let Value::Object(map) = profile else {
            return Err(VaultError::bad_request("the record must remain a JSON object"));
        };
        let change = self.profile_change(subject, version, active, &map, None).await?;
        // A change may not remove the last lookup field; a profile that retention already
        // minimised to none may still change.
        if let Change::UpdateSubject { index, .. } = &change {
            if !active.index.is_empty() {
                require_lookup_field(index)?;
            }
        }
        Ok(change)
    }

    /// The command that stores `profile` as the subject's profile, replacing the one at
    /// `version`: sealed under the subject's DEK, with its blind-index entries. A
    /// retention rule's edit names what it `minimised`, for the erasure ledger.
    pub(super) async fn profile_change(
        &self,
        subject: Uuid,
        version: u64,
        active: &ActiveSubject,
        profile: &Map<String, Value>,
        minimised: Option<Erasure>,
    ) -> VaultResult<Change> {
        let index = self.index_entries(profile).await?;
        let plaintext = limits::encode_object(profile, PROFILE, self.settings.max_record_bytes)?;
        let sealed = self.dek(&subject, active).await?.seal(&plaintext, &crypto::record_aad(&subject, "profile"))?;
        Ok(match minimised {
            None => Change::UpdateSubject { subject, expected_version: version, profile: sealed, index },
            Some(minimised) => {
                Change::MinimiseSubject { subject, expected_version: version, profile: sealed, index, minimised }
            }
        })
    }

    pub(super) async fn open_profile(&self, subject: &Uuid, active: &ActiveSubject) -> VaultResult<Value> {
        let dek = self.dek(subject, active).await?;
        let plaintext = dek.open(&active.profile, &crypto::record_aad(subject, "profile"))?;
        serde_json::from_slice(&plaintext).map_err(|_| VaultError::Crypto(CryptoError::Malformed))
    }
}

/// A subject is found by its login, email, phone or custom id, so a profile must keep at
/// least one of them (Databunker's rule): creating a subject without one, or a change
/// that removes the last one, is refused. Retention may still drop them all: minimising
/// data outranks findability, and the token still reaches the subject.
fn require_lookup_field(index: &[Vec<u8>]) -> VaultResult<()> {
    if index.is_empty() {
        return Err(VaultError::bad_request(
            "a subject needs at least one lookup field: a non-empty login, email, phone or custom",
        ));
    }
    Ok(())
}
