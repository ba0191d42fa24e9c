//! Applies the request commands: a subject's changes filed for a DPO, read, and approved
//! (together with their effect, in one step) or cancelled.

use uuid::Uuid;

use super::{active, apply_change, read, resolve, write, Outcome};
use crate::store::command::{Applied, Change, Rejection, Target};
use crate::store::keys;
use crate::store::records::{RequestRecord, RequestStatus};
use crate::store::staged::Staged;
use crate::store::StoreError;

pub(super) fn file(staged: &mut Staged, rtoken: &Uuid, record: &RequestRecord) -> Result<Outcome, StoreError> {
    if let Err(rejection) = active(staged, &record.subject)? {
        return Ok(Err(rejection));
    }
    if staged.contains(&keys::request(rtoken))? {
        return Ok(Err(Rejection::Exists));
    }
    write(staged, keys::request(rtoken), record)?;
    staged.insert(keys::request_of(&record.subject, rtoken), &[]);
    staged.insert(keys::open_request_of(&record.subject, rtoken), &[]);
    Ok(Ok(Applied::Done))
}

pub(super) fn read_one(
    staged: &Staged,
    rtoken: &Uuid,
    owner: Option<Uuid>,
) -> Result<(Outcome, Option<Uuid>), StoreError> {
    let Some(record) =
        read::<RequestRecord>(staged, &keys::request(rtoken))?.filter(|r| owner.is_none_or(|o| o == r.subject))
    else {
        return Ok((Err(Rejection::RequestNotFound), None));
    };
    let subject = Some(record.subject);
    let owner = active(staged, &record.subject)?.ok().map(|(_, owner)| owner);
    Ok((Ok(Applied::Request { record, owner }), subject))
}

pub(super) fn read_page(
    staged: &Staged,
    target: Option<&Target>,
    status: Option<RequestStatus>,
    offset: u32,
    limit: u32,
) -> Result<(Outcome, Option<Uuid>), StoreError> {
    let (subject, keys) = match target {
        Some(target) => {
            let Some(subject) = resolve(staged, target)? else {
                return Ok((Err(Rejection::SubjectNotFound), None));
            };
            if !staged.contains(&keys::subject(&subject))? {
                return Ok((Err(Rejection::SubjectNotFound), None));
            }
            let rtokens = staged.keys_with_prefix(&keys::requests_of(&subject))?;
            (Some(subject), rtokens.iter().filter_map(|k| keys::trailing_uuid(k)).map(|r| keys::request(&r)).collect())
        }
        None => (None, staged.keys_with_prefix(&[keys::REQUEST])?),
    };
    // Newest first: a DPO works through the queue in the order it grew.
    let mut matching = Vec::new();
    for key in keys {
        let Some(record) = read::<RequestRecord>(staged, &key)? else { continue };
        if status.is_none_or(|s| s == record.status) {
            matching.push((keys::trailing_uuid(&key).ok_or(StoreError::Corrupt)?, record));
        }
    }
    matching.sort_by(|(a, ra), (b, rb)| rb.created.cmp(&ra.created).then(a.cmp(b)));
    let total = matching.len() as u64;
    let page = matching.into_iter().skip(offset as usize).take(limit as usize).collect();
    Ok((Ok(Applied::Requests { total, page }), subject))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_request(
    staged: &mut Staged,
    rtoken: &Uuid,
    approve: bool,
    reason: &str,
    owner: Option<Uuid>,
    then: Option<&Change>,
    now: u64,
    audit_seq: u64,
) -> Result<(Outcome, Option<Uuid>), StoreError> {
    let key = keys::request(rtoken);
    let Some(record) = read::<RequestRecord>(staged, &key)?.filter(|r| owner.is_none_or(|o| o == r.subject)) else {
        return Ok((Err(Rejection::RequestNotFound), None));
    };
    let subject = Some(record.subject);
    if record.status != RequestStatus::Open {
        return Ok((Err(Rejection::RequestClosed), subject));
    }
    if let Some(effect) = then {
        if let (Err(rejection), _) = apply_change(staged, effect, now, audit_seq)? {
            return Ok((Err(rejection), subject));
        }
    }
    // The effect may have changed the record (a forget-me clears the sealed change). A
    // settled request keeps no change either: what was approved is in the record and the
    // audit trail, and a withdrawn one must not cost its space for good.
    let mut record = read::<RequestRecord>(staged, &key)?.ok_or(StoreError::Corrupt)?;
    record.status = if approve { RequestStatus::Approved } else { RequestStatus::Cancelled };
    record.reason = reason.to_string();
    record.updated = now;
    record.change.clear();
    write(staged, key, &record)?;
    staged.remove(keys::open_request_of(&record.subject, rtoken))?;
    Ok((Ok(Applied::Resolved(record.subject)), subject))
}

/// When a subject is forgotten: its requests lose their sealed changes (undecryptable
/// now), and open ones are cancelled.
pub(super) fn close_for_forgotten(staged: &mut Staged, subject: &Uuid, now: u64) -> Result<(), StoreError> {
    for key in staged.keys_with_prefix(&keys::requests_of(subject))? {
        let Some(rtoken) = keys::trailing_uuid(&key) else { continue };
        let Some(mut record) = read::<RequestRecord>(staged, &keys::request(&rtoken))? else { continue };
        record.change.clear();
        staged.remove(keys::open_request_of(subject, &rtoken))?;
        if record.status == RequestStatus::Open {
            record.status = RequestStatus::Cancelled;
            record.reason = "the subject was forgotten".into();
            record.updated = now;
        }
        write(staged, keys::request(&rtoken), &record)?;
    }
    Ok(())
}
