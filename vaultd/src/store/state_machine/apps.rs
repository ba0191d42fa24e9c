//! Applies the app-record commands: a subject's per-application records, read, put and
//! deleted, with the subject's list of app names kept in step.

use uuid::Uuid;

use super::{active, read, write, Outcome};
use crate::store::command::{Applied, Rejection};
use crate::store::keys;
use crate::store::records::{AppRecord, SubjectState};
use crate::store::staged::Staged;
use crate::store::StoreError;

pub(super) fn read_app(staged: &Staged, subject: Uuid, app: &str) -> Result<Outcome, StoreError> {
    let (_, owner) = match active(staged, &subject)? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    Ok(match read::<AppRecord>(staged, &keys::app(&subject, app))? {
        Some(record) => Ok(Applied::App { subject, owner, record }),
        None => Err(Rejection::AppNotFound),
    })
}

/// Creates or replaces an app record; with `expected_version`, only that version of an
/// existing one.
pub(super) fn put(
    staged: &mut Staged,
    subject: &Uuid,
    app: &str,
    sealed: &[u8],
    expected_version: Option<u64>,
    now: u64,
) -> Result<Outcome, StoreError> {
    let (mut record, mut state) = match active(staged, subject)? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let key = keys::app(subject, app);
    let existing = read::<AppRecord>(staged, &key)?;
    let app_record = match (existing, expected_version) {
        (None, Some(_)) => return Ok(Err(Rejection::AppNotFound)),
        (Some(current), Some(expected)) if current.version != expected => return Ok(Err(Rejection::Stale)),
        (Some(current), _) => {
            AppRecord { updated: now, version: current.version + 1, sealed: sealed.to_vec(), ..current }
        }
        (None, None) => AppRecord { created: now, updated: now, version: 1, sealed: sealed.to_vec() },
    };
    write(staged, key, &app_record)?;
    staged.insert(keys::app_name(app), &[]);
    if !state.apps.iter().any(|a| a == app) {
        state.apps.push(app.to_string());
        state.apps.sort();
        record.state = SubjectState::Active(state);
        write(staged, keys::subject(subject), &record)?;
    }
    Ok(Ok(Applied::Done))
}

pub(super) fn delete(
    staged: &mut Staged,
    subject: Uuid,
    app: &str,
    expected_version: Option<u64>,
) -> Result<Outcome, StoreError> {
    let (mut record, mut state) = match active(staged, &subject)? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let key = keys::app(&subject, app);
    let Some(existing) = read::<AppRecord>(staged, &key)? else {
        return Ok(Err(Rejection::AppNotFound));
    };
    if expected_version.is_some_and(|expected| expected != existing.version) {
        return Ok(Err(Rejection::Stale));
    }
    staged.remove(key)?;
    state.apps.retain(|a| a != app);
    record.state = SubjectState::Active(state);
    write(staged, keys::subject(&subject), &record)?;
    Ok(Ok(Applied::Resolved(subject)))
}
