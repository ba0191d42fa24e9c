//! Applying the erasure ledger to a restored vault: each erasure (and token revocation)
//! recorded after the backup was taken is done again, through the log like any change,
//! before the vault serves anything — audited as `ledger-replay`, with the ledger's name
//! and the entry's number as the purpose.

use serde_json::Value;
use strongroom_admin_api::backup::{ErasureKind, ErasureRow};
use strongroom_admin_api::retention::Action;

use super::*;
use crate::retention::rules::minimise;

impl Vault {
    /// Applies one ledger entry; `false` when there was nothing left to erase (the
    /// subject came after the backup, or lost that data before it).
    pub async fn replay_erasure(&self, row: &ErasureRow, ledger: &str) -> VaultResult<bool> {
        let mut audit = system_draft(Operation::LedgerReplay);
        audit.purpose = Some(format!("erasure ledger {ledger} entry {}", row.seq));
        match row.kind {
            ErasureKind::RevokeToken => {
                let id =
                    row.access_token.as_deref().ok_or(VaultError::bad_request("ledger entry names no access token"))?;
                let Some(token) = self.store.tokens()?.into_iter().find(|t| t.id == id) else { return Ok(false) };
                let change = Change::RevokeAccessToken { id: token.id, secret_hash: token.secret_hash };
                self.commit(audit, change).await?.outcome.map_err(rejected)?;
                return Ok(true);
            }
            ErasureKind::ForgetIdentifier => {
                let entry = row
                    .entry
                    .as_deref()
                    .and_then(from_hex)
                    .ok_or(VaultError::bad_request("ledger entry names no identifier"))?;
                // Only what is kept for nobody: an identifier a subject holds here is that
                // subject's, and the ledger has its own entries for it.
                if self.store.lookup(&entry)?.is_some() {
                    return Ok(false);
                }
                let change = Change::ForgetSubject { target: Target::Index(entry), condition: ForgetCondition::Always };
                return match self.commit(audit, change).await?.outcome {
                    Ok(_) => Ok(true),
                    Err(Rejection::SubjectNotFound) => Ok(false),
                    Err(other) => Err(rejected(other)),
                };
            }
            _ => {}
        }
        let token = row.token.as_deref().unwrap_or_default();
        let subject = Uuid::parse_str(token).map_err(|_| VaultError::bad_request("ledger entry names no token"))?;
        let Some(record) = self.store.subject(&subject)? else { return Ok(false) };
        let SubjectState::Active(active) = &record.state else { return Ok(false) };
        audit.subject = Some(subject);
        let change = match row.kind {
            ErasureKind::Forget => {
                Change::ForgetSubject { target: Target::Token(subject), condition: ForgetCondition::Always }
            }
            ErasureKind::DeleteApp => {
                let Some(app) = row.app.clone().filter(|app| active.apps.contains(app)) else { return Ok(false) };
                audit.app = Some(app.clone());
                Change::DeleteApp { target: Target::Token(subject), app, expected_version: None }
            }
            ErasureKind::RevokeToken | ErasureKind::ForgetIdentifier => return Ok(false),
            ErasureKind::DropFields | ErasureKind::Pseudonymize => {
                let Value::Object(mut profile) = self.open_profile(&subject, active).await? else {
                    return Err(VaultError::Crypto(CryptoError::Malformed));
                };
                let (action, erasure) = match row.kind {
                    ErasureKind::DropFields => (Action::DropFields, Erasure::DropFields { fields: row.fields.clone() }),
                    _ => (Action::Pseudonymize, Erasure::Pseudonymize { fields: row.fields.clone() }),
                };
                let index = self.index().await?;
                if !minimise(action, &row.fields, &mut profile, |field, value| index.pseudonym(field, value)) {
                    return Ok(false);
                }
                self.profile_change(subject, record.version, active, &profile, Some(erasure)).await?
            }
        };
        self.commit(audit, change).await?.outcome.map_err(rejected)?;
        Ok(true)
    }
}

/// Bytes from lowercase or uppercase hex; `None` for anything else.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok()).collect()
}
