//! Applies the session commands: sessions put, read, listed per subject and deleted
//! (by a caller, or by the sweeper once ended), with their index entries kept in step.

use uuid::Uuid;

use super::{active, read, write, Applies};
use crate::store::command::{Applied, Rejection};
use crate::store::keys;
use crate::store::records::SessionRecord;
use crate::store::staged::Staged;
use crate::store::StoreError;

/// Creates or replaces a session. Unless `may_take`, a session of another subject (or
/// an unlinked one, for a linked record) is not replaced.
pub(super) fn put(staged: &mut Staged, session: &Uuid, record: &SessionRecord, may_take: bool) -> Applies {
    if let Some(subject) = &record.subject {
        if let Err(rejection) = active(staged, subject)? {
            return Ok((Err(rejection), record.subject));
        }
    }
    if !may_take {
        if let Some(existing) = read::<SessionRecord>(staged, &keys::session(session))? {
            if existing.subject != record.subject {
                return Ok((Err(Rejection::Exists), record.subject));
            }
        }
    }
    remove(staged, session)?;
    write(staged, keys::session(session), record)?;
    staged.insert(keys::session_due(record.expires_at, session), &[]);
    if let Some(subject) = &record.subject {
        staged.insert(keys::session_of_subject(subject, session), &[]);
    }
    Ok((Ok(Applied::Done), record.subject))
}

/// A session that has not ended; with `owner`, only one of that subject's.
pub(super) fn read_one(staged: &Staged, session: &Uuid, owner: Option<Uuid>, now: u64) -> Applies {
    let Some(record) = read::<SessionRecord>(staged, &keys::session(session))?
        .filter(|r| r.expires_at > now && (owner.is_none() || r.subject == owner))
    else {
        return Ok((Err(Rejection::SessionNotFound), None));
    };
    let owner = match &record.subject {
        Some(subject) => match active(staged, subject)? {
            Ok((_, owner)) => Some(owner),
            Err(rejection) => return Ok((Err(rejection), record.subject)),
        },
        None => None,
    };
    let subject = record.subject;
    Ok((Ok(Applied::Session { record, owner }), subject))
}

/// Deletes a session; with `owner`, only one of that subject's; with `only_if_ended`,
/// only once it has ended (the sweeper).
pub(super) fn delete(
    staged: &mut Staged,
    session: &Uuid,
    only_if_ended: bool,
    owner: Option<Uuid>,
    now: u64,
) -> Applies {
    let Some(record) =
        read::<SessionRecord>(staged, &keys::session(session))?.filter(|r| owner.is_none() || r.subject == owner)
    else {
        return Ok((Err(Rejection::SessionNotFound), None));
    };
    if only_if_ended && record.expires_at > now {
        return Ok((Err(Rejection::Stale), record.subject));
    }
    remove(staged, session)?;
    Ok((Ok(Applied::Done), record.subject))
}

/// A page of a subject's sessions that have not ended, and how many there are.
pub(super) fn read_page(staged: &Staged, subject: Uuid, offset: u32, limit: u32, now: u64) -> Applies {
    if !staged.contains(&keys::subject(&subject))? {
        return Ok((Err(Rejection::SubjectNotFound), None));
    }
    let mut total = 0u64;
    let mut page = Vec::new();
    for key in staged.keys_with_prefix(&keys::sessions_of_subject(&subject))? {
        let Some(session) = keys::trailing_uuid(&key) else { continue };
        let Some(record) = read::<SessionRecord>(staged, &keys::session(&session))? else { continue };
        if record.expires_at <= now {
            continue;
        }
        if total >= u64::from(offset) && page.len() < limit as usize {
            page.push((session, record));
        }
        total += 1;
    }
    let owner = active(staged, &subject)?.ok().map(|(_, owner)| owner);
    Ok((Ok(Applied::Sessions { subject, owner, total, page }), Some(subject)))
}

/// A session of `subject`'s that has not ended at `now`.
pub(super) fn live_session_of(
    staged: &Staged,
    session: &Uuid,
    subject: &Uuid,
    now: u64,
) -> Result<Option<SessionRecord>, StoreError> {
    let record = read::<SessionRecord>(staged, &keys::session(session))?;
    Ok(record.filter(|r| r.subject.as_ref() == Some(subject) && r.expires_at > now))
}

/// Removes every session linked to `subject` (it is being forgotten).
pub(super) fn remove_all_of(staged: &mut Staged, subject: &Uuid) -> Result<(), StoreError> {
    for key in staged.keys_with_prefix(&keys::sessions_of_subject(subject))? {
        if let Some(session) = keys::trailing_uuid(&key) {
            remove(staged, &session)?;
        }
    }
    Ok(())
}

/// Removes a session and its index entries, if it exists.
fn remove(staged: &mut Staged, session: &Uuid) -> Result<(), StoreError> {
    if let Some(record) = read::<SessionRecord>(staged, &keys::session(session))? {
        staged.remove(keys::session(session))?;
        staged.remove(keys::session_due(record.expires_at, session))?;
        if let Some(subject) = &record.subject {
            staged.remove(keys::session_of_subject(subject, session))?;
        }
    }
    Ok(())
}
