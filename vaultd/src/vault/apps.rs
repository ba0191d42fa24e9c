//! Per-application records of a subject (shipping address, preferences), sealed under
//! the subject's DEK and kept apart from the profile.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::limits::MAX_STARTED_BY_SUBJECT_TOKEN;
use super::*;
use crate::store::AppRecord;

/// App names: 1–64 characters of lowercase letters, digits, `-` and `_`, starting with
/// a letter (they appear in scopes and audit events, so they stay plain).
pub fn valid_app_name(app: &str) -> bool {
    let mut chars = app.chars();
    app.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check_app(app: &str) -> VaultResult<()> {
    if valid_app_name(app) {
        Ok(())
    } else {
        Err(VaultError::bad_request(
            "invalid app name: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter",
        ))
    }
}

impl Vault {
    /// Creates or replaces a subject's record for an app.
    pub async fn put_app(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        app: &str,
        document: Map<String, Value>,
    ) -> VaultResult<Uuid> {
        check_app(app)?;
        let (subject, _, active) = self.find_active(caller, Operation::AppCreate, mode, app, id).await?;
        let _start = self.starts.hold(caller, &subject).await;
        let started = match caller.subject {
            Some(_) => match self.store.subject(&subject)?.map(|record| record.state) {
                Some(SubjectState::Active(now)) => Some(now.apps),
                _ => None,
            },
            None => None,
        };
        if started.is_some_and(|apps| !apps.iter().any(|a| a == app) && apps.len() >= MAX_STARTED_BY_SUBJECT_TOKEN) {
            return Err(VaultError::Conflict("a subject token may not start more app records for its subject"));
        }
        let dek = self.dek(&subject, &active).await?;
        let sealed = seal_app(&dek, &subject, app, &Value::Object(document), self.settings.max_record_bytes)?;
        let change = Change::PutApp { subject, app: app.to_string(), sealed, expected_version: None };
        let receipt =
            self.commit(draft(caller, Operation::AppCreate, Some(subject), Some(app), Some(mode)), change).await?;
        receipt.outcome.map_err(rejected)?;
        Ok(subject)
    }

    /// Merges into (object) or patches (array) an existing app record.
    pub async fn update_app(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        app: &str,
        update: &Value,
    ) -> VaultResult<Uuid> {
        check_app(app)?;
        for attempt in 0..UPDATE_ATTEMPTS {
            let (subject, _, active) = self.find_active(caller, Operation::AppUpdate, mode, app, id).await?;
            let dek = self.dek(&subject, &active).await?;
            let record = match self.store.app(&subject, app)? {
                Some(record) => Some(record),
                None => {
                    self.catch_up().await?;
                    self.store.app(&subject, app)?
                }
            };
            let Some(record) = record else {
                self.record_access(draft(caller, Operation::AppUpdate, Some(subject), Some(app), Some(mode)), false)
                    .await?;
                return Err(VaultError::NotFound("app record"));
            };
            let change = updated_app(&dek, subject, app, &record, update, self.settings.max_record_bytes)?;
            let receipt =
                self.commit(draft(caller, Operation::AppUpdate, Some(subject), Some(app), Some(mode)), change).await?;
            match receipt.outcome {
                Ok(_) => return Ok(subject),
                Err(Rejection::Stale) => self.after_conflict(&receipt, attempt).await?,
                Err(other) => return Err(rejected(other)),
            }
        }
        Err(VaultError::Conflict("record is being changed concurrently; retry"))
    }

    /// One app record, read through the log (audited, linearizable).
    pub async fn get_app(&self, caller: &Caller, mode: Mode, id: &str, app: &str) -> VaultResult<(Uuid, Value)> {
        check_app(app)?;
        let target = self.target(caller, mode, id).await?;
        let audit = draft(caller, Operation::AppRead, None, Some(app), Some(mode));
        let receipt = self.commit(audit, Change::ReadApp { target, app: app.to_string() }).await?;
        match receipt.outcome {
            Ok(Applied::App { subject, owner, record }) => {
                let dek = self.dek(&subject, &owner).await?;
                Ok((subject, open_app(&dek, &subject, app, &record.sealed)?))
            }
            Ok(_) => Err(VaultError::Storage(StoreError::Corrupt)),
            Err(Rejection::Forgotten) => Err(VaultError::NotFound("record")),
            Err(rejection) => Err(rejected(rejection)),
        }
    }

    pub async fn delete_app(&self, caller: &Caller, mode: Mode, id: &str, app: &str) -> VaultResult<Uuid> {
        check_app(app)?;
        let target = self.target(caller, mode, id).await?;
        let audit = draft(caller, Operation::AppDelete, None, Some(app), Some(mode));
        let receipt =
            self.commit(audit, Change::DeleteApp { target, app: app.to_string(), expected_version: None }).await?;
        match receipt.outcome {
            Ok(Applied::Resolved(subject)) => Ok(subject),
            Ok(_) => Err(VaultError::Storage(StoreError::Corrupt)),
            Err(Rejection::Forgotten) => Err(VaultError::NotFound("record")),
            Err(rejection) => Err(rejected(rejection)),
        }
    }

    /// The names of the apps a subject has records for.
    pub async fn user_apps(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<(Uuid, Vec<String>)> {
        let (subject, record) = self.read_subject(caller, Operation::AppList, mode, id).await?;
        match record.state {
            SubjectState::Active(active) => Ok((subject, active.apps)),
            SubjectState::Forgotten { .. } => Ok((subject, Vec::new())),
        }
    }

    /// The names of all apps any subject has records for (no personal data).
    pub async fn app_names(&self) -> VaultResult<Vec<String>> {
        self.catch_up().await?;
        Ok(self.store.app_names()?)
    }

    async fn find_active(
        &self,
        caller: &Caller,
        op: Operation,
        mode: Mode,
        app: &str,
        id: &str,
    ) -> VaultResult<(Uuid, u64, Box<ActiveSubject>)> {
        match self.find_audited(caller, op, mode, Some(app), id).await? {
            Found::Active(subject, version, active) => Ok((subject, version, active)),
            Found::Forgotten(subject) => {
                self.record_access(draft(caller, op, Some(subject), Some(app), Some(mode)), false).await?;
                Err(VaultError::NotFound("record"))
            }
        }
    }
}

/// The command that applies `update` (merge or patch) to an app record as read; the
/// result may encode to at most `max_bytes`.
pub(super) fn updated_app(
    dek: &DataKey,
    subject: Uuid,
    app: &str,
    current: &AppRecord,
    update: &Value,
    max_bytes: usize,
) -> VaultResult<Change> {
    let mut document = open_app(dek, &subject, app, &current.sealed)?;
    apply_update(&mut document, update, APP_RECORD, max_bytes)?;
    let sealed = seal_app(dek, &subject, app, &document, max_bytes)?;
    Ok(Change::PutApp { subject, app: app.to_string(), sealed, expected_version: Some(current.version) })
}

const APP_RECORD: &str = "app record";

fn seal_app(dek: &DataKey, subject: &Uuid, app: &str, document: &Value, max_bytes: usize) -> VaultResult<Vec<u8>> {
    let plaintext = limits::encode_record(document, APP_RECORD, max_bytes)?;
    Ok(dek.seal(&plaintext, &crypto::record_aad(subject, &format!("app:{app}")))?)
}

pub(super) fn open_app(dek: &DataKey, subject: &Uuid, app: &str, sealed: &[u8]) -> VaultResult<Value> {
    let plaintext = dek.open(sealed, &crypto::record_aad(subject, &format!("app:{app}")))?;
    serde_json::from_slice(&plaintext).map_err(|_| VaultError::Crypto(CryptoError::Malformed))
}

#[cfg(test)]
mod tests {
    use super::valid_app_name;

    #[test]
    fn app_names() {
        for good in ["shop", "crm-2", "a", "loyalty_points"] {
            assert!(valid_app_name(good), "{good}");
        }
        for bad in ["", "Shop", "2shop", "shop name", "shop/../x", &"a".repeat(65)] {
            assert!(!valid_app_name(bad), "{bad}");
        }
    }
}
