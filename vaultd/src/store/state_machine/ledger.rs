//! The erasure ledger: every erasure a command applies is also appended to it — subject,
//! what was removed, when — in the same transaction; so is every token revocation. Backups ship it, and a restored
//! backup applies its newer entries (see `vault::ledger`).

use uuid::Uuid;

use super::{read, write};
use crate::store::command::Change;
use crate::store::keys;
use crate::store::records::{Erasure, LedgerEntry};
use crate::store::staged::Staged;
use crate::store::StoreError;

/// What `change`, applied, erases.
pub(super) fn erasure_of(change: &Change) -> Option<Erasure> {
    match change {
        Change::ForgetSubject { .. } => Some(Erasure::Forget),
        Change::DeleteApp { app, .. } => Some(Erasure::DeleteApp { app: app.clone() }),
        Change::MinimiseSubject { minimised, .. } => Some(minimised.clone()),
        Change::ResolveRequest { approve: true, then: Some(effect), .. } => erasure_of(effect),
        Change::RevokeAccessToken { id, .. } => Some(Erasure::RevokeToken { id: id.clone() }),
        _ => None,
    }
}

/// Appends an entry; returns its sequence number.
pub(super) fn append(
    staged: &mut Staged,
    subject: Option<Uuid>,
    erasure: Erasure,
    time: u64,
) -> Result<u64, StoreError> {
    let seq = read::<u64>(staged, &keys::meta(keys::LEDGER_NEXT))?.unwrap_or(1);
    write(staged, keys::ledger(seq), &LedgerEntry { time, subject, erasure })?;
    write(staged, keys::meta(keys::LEDGER_NEXT), &(seq + 1))?;
    Ok(seq)
}
