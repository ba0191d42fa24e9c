//! Consent before sign-up: agreements to an email or phone number that names no subject
//! yet (a cookie banner's visitor), kept under the identifier's blind-index entry with
//! the identifier sealed beside them. A subject created (or changed) with the identifier
//! takes them over in the same step; forget-me of the identifier removes the sealed
//! identifier and keeps the agreements as evidence of what was agreed and withdrawn.

use uuid::Uuid;

use super::consent::merge_agreement;
use super::{read, write, Outcome};
use crate::identifiers::IndexKind;
use crate::store::command::{Applied, Rejection};
use crate::store::keys;
use crate::store::records::{Agreement, PendingIdentity};
use crate::store::staged::Staged;
use crate::store::StoreError;

/// Records an agreement (`yes`) to an existing basis, or the withdrawal (`no`) of one
/// kept already, under `entry`; keeps the sealed identifier unless one is kept already.
pub(super) fn put(
    staged: &mut Staged,
    entry: &[u8],
    agreement: &Agreement,
    identity: Option<&PendingIdentity>,
) -> Result<Outcome, StoreError> {
    if agreement.status == "yes" && !staged.contains(&keys::legal_basis(&agreement.brief))? {
        return Ok(Err(Rejection::UnknownBrief));
    }
    let key = keys::pending_agreement(entry, &agreement.brief);
    let existing = read::<Agreement>(staged, &key)?;
    if existing.is_none() && agreement.status != "yes" {
        // Withdrawing what was never agreed to changes nothing.
        return Ok(Err(Rejection::UnknownBrief));
    }
    write(staged, key, &merge_agreement(existing, agreement))?;
    staged.insert(keys::pending_of_brief(&agreement.brief, entry), &[]);
    if let Some(identity) = identity {
        let key = keys::pending_identity(entry);
        if !staged.contains(&key)? {
            write(staged, key, identity)?;
        }
    }
    Ok(Ok(Applied::Done))
}

/// The agreements kept under `entry` (to one basis, or all). An entry with none names
/// nobody.
pub(super) fn read_all(staged: &Staged, entry: &[u8], brief: Option<&str>) -> Result<Outcome, StoreError> {
    let keys = staged.keys_with_prefix(&keys::pending_agreements_of(entry))?;
    if keys.is_empty() {
        return Ok(Err(Rejection::SubjectNotFound));
    }
    let agreements = match brief {
        Some(brief) => match read::<Agreement>(staged, &keys::pending_agreement(entry, brief))? {
            Some(agreement) => vec![agreement],
            None => return Ok(Err(Rejection::UnknownBrief)),
        },
        None => keys.iter().filter_map(|key| read::<Agreement>(staged, key).transpose()).collect::<Result<_, _>>()?,
    };
    Ok(Ok(Applied::PendingAgreements { agreements }))
}

/// Forget-me of an identifier that names no subject: its sealed identifier goes, its
/// agreements stay. Refused when the entry has neither.
pub(super) fn forget(staged: &mut Staged, entry: &[u8]) -> Result<Outcome, StoreError> {
    let had_identity = staged.remove(keys::pending_identity(entry))?;
    let has_agreements = !staged.keys_with_prefix(&keys::pending_agreements_of(entry))?.is_empty();
    if !had_identity && !has_agreements {
        return Ok(Err(Rejection::SubjectNotFound));
    }
    Ok(Ok(Applied::Done))
}

/// Hands the agreements kept under `entries` to `subject`, and removes their sealed
/// identifiers. Where the subject has an agreement to the same basis, the one changed
/// last wins (the subject's own on a tie) as if given again after the other: a method
/// or reference code it lacks is kept from the other, and the earliest creation time.
pub(super) fn attach<'a>(
    staged: &mut Staged,
    subject: &Uuid,
    entries: impl IntoIterator<Item = &'a Vec<u8>>,
) -> Result<(), StoreError> {
    // Only emails and phones are kept for; other kinds skip the scan (creates are hot).
    let kept_for = |entry: &&Vec<u8>| {
        matches!(entry.first().copied().and_then(IndexKind::from_byte), Some(IndexKind::Email | IndexKind::Phone))
    };
    for entry in entries.into_iter().filter(kept_for) {
        for key in staged.keys_with_prefix(&keys::pending_agreements_of(entry))? {
            let Some(pending) = read::<Agreement>(staged, &key)? else { continue };
            staged.remove(key)?;
            staged.remove(keys::pending_of_brief(&pending.brief, entry))?;
            let own_key = keys::agreement(subject, &pending.brief);
            let attached = match read::<Agreement>(staged, &own_key)? {
                Some(own) => {
                    let creationtime = own.creationtime.min(pending.creationtime);
                    let (older, newer) = if own.when >= pending.when { (pending, own) } else { (own, pending) };
                    Agreement { creationtime, ..merge_agreement(Some(older), &newer) }
                }
                None => pending,
            };
            staged.insert(keys::agreement_by_brief(&attached.brief, subject), &[]);
            write(staged, own_key, &attached)?;
        }
        staged.remove(keys::pending_identity(entry))?;
    }
    Ok(())
}

/// Marks every pending agreement to a basis `revoked`.
pub(super) fn revoke(staged: &mut Staged, brief: &str) -> Result<(), StoreError> {
    for key in staged.keys_with_prefix(&keys::pending_by_brief(brief))? {
        let Some(entry) = keys::trailing_entry(&key) else { continue };
        let key = keys::pending_agreement(entry, brief);
        if let Some(mut agreement) = read::<Agreement>(staged, &key)? {
            agreement.status = "revoked".into();
            write(staged, key, &agreement)?;
        }
    }
    Ok(())
}

/// Carries a basis's pending agreements over to its new brief.
pub(super) fn rename(staged: &mut Staged, old: &str, new: &str) -> Result<(), StoreError> {
    for key in staged.keys_with_prefix(&keys::pending_by_brief(old))? {
        if let Some(entry) = keys::trailing_entry(&key).map(<[u8]>::to_vec) {
            if let Some(mut agreement) = read::<Agreement>(staged, &keys::pending_agreement(&entry, old))? {
                staged.remove(keys::pending_agreement(&entry, old))?;
                agreement.brief = new.to_string();
                write(staged, keys::pending_agreement(&entry, new), &agreement)?;
                staged.insert(keys::pending_of_brief(new, &entry), &[]);
            }
        }
        staged.remove(key)?;
    }
    Ok(())
}
