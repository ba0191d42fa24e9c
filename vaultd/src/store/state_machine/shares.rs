//! Applies the shared-record commands: shares created, read by their holder while they
//! last, and deleted by the sweeper once ended, with their index entries kept in step.

use uuid::Uuid;

use super::sessions::live_session_of;
use super::{active, read, write, Applies};
use crate::store::command::{Applied, Rejection};
use crate::store::keys;
use crate::store::records::{AppRecord, SharedRecord};
use crate::store::staged::Staged;
use crate::store::StoreError;

/// Stores a share under the hash of its record id; what it names must exist.
pub(super) fn create(staged: &mut Staged, hash: &[u8; 32], record: &SharedRecord, now: u64) -> Applies {
    let subject = Some(record.subject);
    let owner = match active(staged, &record.subject)? {
        Ok((_, owner)) => owner,
        Err(rejection) => return Ok((Err(rejection), subject)),
    };
    if let Some(app) = &record.app {
        if !owner.apps.contains(app) {
            return Ok((Err(Rejection::AppNotFound), subject));
        }
    }
    if let Some(session) = &record.session {
        if live_session_of(staged, session, &record.subject, now)?.is_none() {
            return Ok((Err(Rejection::SessionNotFound), subject));
        }
    }
    if staged.contains(&keys::shared(hash))? {
        return Ok((Err(Rejection::Exists), subject));
    }
    write(staged, keys::shared(hash), record)?;
    staged.insert(keys::shared_of_subject(&record.subject, hash), &[]);
    staged.insert(keys::shared_due(record.expires_at, hash), &[]);
    Ok((Ok(Applied::Done), subject))
}

/// A share that has not ended, with the subject's key material and the app record or
/// session it shares from.
pub(super) fn read_one(staged: &Staged, hash: &[u8; 32], now: u64) -> Applies {
    let Some(record) = read::<SharedRecord>(staged, &keys::shared(hash))?.filter(|r| r.expires_at > now) else {
        return Ok((Err(Rejection::ShareNotFound), None));
    };
    let subject = Some(record.subject);
    let owner = match active(staged, &record.subject)? {
        Ok((_, owner)) => owner,
        Err(rejection) => return Ok((Err(rejection), subject)),
    };
    let app = match &record.app {
        Some(app) => match read::<AppRecord>(staged, &keys::app(&record.subject, app))? {
            Some(found) => Some(found),
            None => return Ok((Err(Rejection::AppNotFound), subject)),
        },
        None => None,
    };
    // A session that ended or was deleted takes what was shared from it along.
    let session = match &record.session {
        Some(session) => match live_session_of(staged, session, &record.subject, now)? {
            Some(found) => Some(found),
            None => return Ok((Err(Rejection::ShareNotFound), subject)),
        },
        None => None,
    };
    Ok((Ok(Applied::Shared { record, owner, app, session }), subject))
}

/// Deletes a share once it has ended (the sweeper).
pub(super) fn delete_ended(staged: &mut Staged, hash: &[u8; 32], now: u64) -> Applies {
    let Some(record) = read::<SharedRecord>(staged, &keys::shared(hash))? else {
        return Ok((Err(Rejection::ShareNotFound), None));
    };
    if record.expires_at > now {
        return Ok((Err(Rejection::Stale), Some(record.subject)));
    }
    remove(staged, hash)?;
    Ok((Ok(Applied::Done), Some(record.subject)))
}

/// Removes every share of `subject`'s (it is being forgotten).
pub(super) fn remove_all_of(staged: &mut Staged, subject: &Uuid) -> Result<(), StoreError> {
    for share in staged.keys_with_prefix(&keys::shared_of_subject_prefix(subject))? {
        if let Some(hash) = keys::trailing_hash(&share) {
            remove(staged, &hash)?;
        }
    }
    Ok(())
}

/// Removes a shared record and its index entries, if it exists.
fn remove(staged: &mut Staged, hash: &[u8; 32]) -> Result<(), StoreError> {
    if let Some(record) = read::<SharedRecord>(staged, &keys::shared(hash))? {
        staged.remove(keys::shared(hash))?;
        staged.remove(keys::shared_due(record.expires_at, hash))?;
        staged.remove(keys::shared_of_subject(&record.subject, hash))?;
    }
    Ok(())
}
