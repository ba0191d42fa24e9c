//! The erasure ledger: every erasure a command applies is also appended to it — subject,
//! what was removed, when — in the same transaction; so is every token revocation. Backups ship it, and a restored
//! backup applies its newer entries (see `vault::ledger`).

use uuid::Uuid;

use super::{read, write};
use crate::store::command::{Change, Target};
use crate::store::keys;
use crate::store::records::{Erasure, LedgerEntry};
use crate::store::staged::Staged;
use crate::store::StoreError;

/// What `change`, applied (to `resolved`, the subject it resolved to), erases, and whose.
pub(super) fn erasure_of(change: &Change, resolved: Option<Uuid>) -> Option<(Option<Uuid>, Erasure)> {
    let of_subject = |erasure: Erasure| resolved.map(|subject| (Some(subject), erasure));
    match change {
        Change::ForgetSubject { target, .. } => match (resolved, target) {
            (Some(subject), _) => Some((Some(subject), Erasure::Forget)),
            // An identifier kept with agreements from before sign-up, forgotten.
            (None, Target::Index(entry)) => Some((None, Erasure::ForgetIdentifier { entry: entry.clone() })),
            (None, _) => None,
        },
        Change::DeleteApp { app, .. } => of_subject(Erasure::DeleteApp { app: app.clone() }),
        Change::MinimiseSubject { minimised, .. } => of_subject(minimised.clone()),
        Change::ResolveRequest { approve: true, then: Some(effect), .. } => erasure_of(effect, resolved),
        Change::RevokeAccessToken { id, .. } => Some((None, Erasure::RevokeToken { id: id.clone() })),
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
