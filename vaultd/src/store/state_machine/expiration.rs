//! Applies the expiration commands: a subject's countdown to erasure started, cancelled,
//! or turned into retention by the subject. The sweeper's erasure of due subjects is a
//! conditional forget (`users::forget`).

use uuid::Uuid;

use super::{active, write, Outcome};
use crate::store::command::{Applied, Rejection};
use crate::store::keys;
use crate::store::records::{Expiration, ExpirationStatus};
use crate::store::staged::Staged;
use crate::store::StoreError;

/// Starts `expiration`; with `replace`, in place of a running one. With
/// `expected_version`, only while the subject is at that version.
pub(super) fn start(
    staged: &mut Staged,
    subject: &Uuid,
    expected_version: Option<u64>,
    replace: bool,
    expiration: &Expiration,
) -> Result<Outcome, StoreError> {
    let (mut record, _) = match active(staged, subject)? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    if expected_version.is_some_and(|expected| expected != record.version) {
        return Ok(Err(Rejection::Stale));
    }
    if let Some(existing) = &record.expiration {
        if existing.token_hash == expiration.token_hash {
            // The same start proposed twice (a retry after a leader change).
            return Ok(Ok(Applied::Done));
        }
        if !replace {
            return Ok(Err(Rejection::Exists));
        }
        staged.remove(keys::exp_token(&existing.token_hash))?;
        staged.remove(keys::exp_due(existing.ends_at, subject))?;
    }
    staged.insert(keys::exp_token(&expiration.token_hash), subject.as_bytes());
    if expiration.status == ExpirationStatus::Wait {
        staged.insert(keys::exp_due(expiration.ends_at, subject), &[]);
    }
    record.expiration = Some(expiration.clone());
    write(staged, keys::subject(subject), &record)?;
    Ok(Ok(Applied::Done))
}

pub(super) fn cancel(staged: &mut Staged, subject: Uuid) -> Result<Outcome, StoreError> {
    let (mut record, _) = match active(staged, &subject)? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    if let Some(expiration) = record.expiration.take() {
        staged.remove(keys::exp_token(&expiration.token_hash))?;
        staged.remove(keys::exp_due(expiration.ends_at, &subject))?;
        write(staged, keys::subject(&subject), &record)?;
    }
    Ok(Ok(Applied::Resolved(subject)))
}

/// The subject keeps its data: the countdown stops, its status says so.
pub(super) fn retain(staged: &mut Staged, subject: Uuid) -> Result<Outcome, StoreError> {
    let (mut record, _) = match active(staged, &subject)? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let Some(expiration) = &mut record.expiration else {
        return Ok(Err(Rejection::SubjectNotFound));
    };
    staged.remove(keys::exp_due(expiration.ends_at, &subject))?;
    expiration.status = ExpirationStatus::Retain;
    write(staged, keys::subject(&subject), &record)?;
    Ok(Ok(Applied::Resolved(subject)))
}
