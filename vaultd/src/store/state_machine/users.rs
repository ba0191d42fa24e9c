//! Applies the subject commands: the blind-index key, creating, reading, changing and
//! forgetting a subject. Forgetting reaches into every feature that keeps something of
//! the subject's, through that feature's own removal.

use uuid::Uuid;

use super::{
    active, first_duplicate, pending, read, sessions, shares, subject_requests, tokens, write, Applies, Outcome,
};
use crate::store::command::{Applied, ForgetCondition, Rejection, WrappedKey};
use crate::store::keys;
use crate::store::records::{ActiveSubject, ExpirationStatus, SubjectRecord, SubjectState};
use crate::store::staged::Staged;
use crate::store::StoreError;

/// Stores the blind-index key unless one is stored already; answers the stored one.
pub(super) fn init_index_key(staged: &mut Staged, key: &WrappedKey) -> Result<Outcome, StoreError> {
    Ok(Ok(match read(staged, &keys::meta(keys::INDEX_KEY))? {
        Some(existing) => Applied::IndexKey(existing),
        None => {
            write(staged, keys::meta(keys::INDEX_KEY), key)?;
            Applied::IndexKey(key.clone())
        }
    }))
}

pub(super) fn read_subject(staged: &Staged, subject: Uuid) -> Result<Outcome, StoreError> {
    Ok(match read::<SubjectRecord>(staged, &keys::subject(&subject))? {
        Some(record) => Ok(Applied::Subject { subject, record }),
        None => Err(Rejection::SubjectNotFound),
    })
}

/// What a new subject is made of.
pub(super) struct NewSubject<'c> {
    pub subject: &'c Uuid,
    pub kek: &'c str,
    pub wrapped_dek: &'c [u8],
    pub profile: &'c [u8],
    pub index: &'c [Vec<u8>],
}

pub(super) fn create(staged: &mut Staged, new: NewSubject<'_>, now: u64) -> Result<Outcome, StoreError> {
    let NewSubject { subject, kek, wrapped_dek, profile, index } = new;
    if let Some(existing) = read::<SubjectRecord>(staged, &keys::subject(subject))? {
        // The same create proposed twice (a retry after a leader change) is applied once.
        return Ok(match existing.state {
            SubjectState::Active(active) if active.wrapped_dek == wrapped_dek => Ok(Applied::Done),
            _ => Err(Rejection::Exists),
        });
    }
    if let Some(rejection) = first_duplicate(staged, subject, index)? {
        return Ok(Err(rejection));
    }
    for entry in index {
        staged.insert(keys::index(entry), subject.as_bytes());
    }
    pending::attach(staged, subject, index)?;
    let record = SubjectRecord {
        created: now,
        updated: now,
        version: 1,
        state: SubjectState::Active(ActiveSubject {
            kek: kek.to_string(),
            wrapped_dek: wrapped_dek.to_vec(),
            profile: profile.to_vec(),
            index: index.to_vec(),
            apps: Vec::new(),
        }),
        expiration: None,
    };
    write(staged, keys::subject(subject), &record)?;
    Ok(Ok(Applied::Done))
}

pub(super) fn update(
    staged: &mut Staged,
    subject: &Uuid,
    expected_version: u64,
    profile: &[u8],
    index: &[Vec<u8>],
    now: u64,
) -> Result<Outcome, StoreError> {
    let (mut record, mut state) = match active(staged, subject)? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    if record.version != expected_version {
        return Ok(Err(Rejection::Stale));
    }
    if let Some(rejection) = first_duplicate(staged, subject, index)? {
        return Ok(Err(rejection));
    }
    for old in &state.index {
        staged.remove(keys::index(old))?;
    }
    for entry in index {
        staged.insert(keys::index(entry), subject.as_bytes());
    }
    pending::attach(staged, subject, index.iter().filter(|entry| !state.index.contains(entry)))?;
    state.profile = profile.to_vec();
    state.index = index.to_vec();
    record.updated = now;
    record.version += 1;
    record.state = SubjectState::Active(state);
    write(staged, keys::subject(subject), &record)?;
    Ok(Ok(Applied::Done))
}

/// Forgets a subject when `condition` holds: its data, index entries, app records,
/// sessions, open requests, own tokens, shares and expiration go; a tombstone stays.
pub(super) fn forget(staged: &mut Staged, subject: Uuid, condition: ForgetCondition, now: u64) -> Applies {
    let resolved = Some(subject);
    let (mut record, state) = match active(staged, &subject)? {
        Ok(found) => found,
        // Forgetting twice is not an error: the subject is forgotten either way.
        Err(Rejection::Forgotten) if condition == ForgetCondition::Always => {
            return Ok((Ok(Applied::Resolved(subject)), resolved))
        }
        Err(rejection) => return Ok((Err(rejection), resolved)),
    };
    let holds = match condition {
        ForgetCondition::Always => true,
        ForgetCondition::Version(version) => record.version == version,
        ForgetCondition::ExpirationDue => {
            record.expiration.as_ref().is_some_and(|e| e.status == ExpirationStatus::Wait && e.ends_at <= now)
        }
    };
    if !holds {
        return Ok((Err(Rejection::Stale), resolved));
    }
    for entry in &state.index {
        staged.remove(keys::index(entry))?;
    }
    for app in &state.apps {
        staged.remove(keys::app(&subject, app))?;
    }
    sessions::remove_all_of(staged, &subject)?;
    subject_requests::close_for_forgotten(staged, &subject, now)?;
    tokens::remove_all_of(staged, &subject)?;
    shares::remove_all_of(staged, &subject)?;
    if let Some(expiration) = &mut record.expiration {
        staged.remove(keys::exp_token(&expiration.token_hash))?;
        staged.remove(keys::exp_due(expiration.ends_at, &subject))?;
        expiration.status = ExpirationStatus::Expired;
        expiration.sealed_token.clear();
    }
    record.updated = now;
    record.version += 1;
    record.state = SubjectState::Forgotten { at: now };
    write(staged, keys::subject(&subject), &record)?;
    Ok((Ok(Applied::Resolved(subject)), resolved))
}
