//! Applies the consent commands: legal bases, agreements and processing activities.
//! None of these hold profile data; agreements outlive the subject as evidence.
//! Agreements by an email or phone that names no subject yet are kept apart
//! (`pending`) until a subject takes them over.

use uuid::Uuid;

use super::{pending, read, write, Outcome};
use crate::store::command::{Applied, ConsentChange as Change, Rejection};
use crate::store::keys;
use crate::store::records::{Agreement, LegalBasis, ProcessingActivity, SubjectRecord, SubjectState};
use crate::store::staged::Staged;
use crate::store::StoreError;

/// Applies a consent change; `subject` is what its target resolved to (`None` when it
/// has no target, or the target names nobody).
pub(super) fn apply(staged: &mut Staged, change: &Change, subject: Option<Uuid>) -> Result<Outcome, StoreError> {
    Ok(match (change, subject) {
        (Change::PutLegalBasis { brief, basis }, _) => {
            let existing = read::<LegalBasis>(staged, &keys::legal_basis(brief))?;
            if basis.brief != *brief {
                if staged.contains(&keys::legal_basis(&basis.brief))? {
                    return Ok(Err(Rejection::Exists));
                }
                if existing.is_some() {
                    rename_basis(staged, brief, &basis.brief)?;
                }
                staged.remove(keys::legal_basis(brief))?;
            }
            let creationtime = existing.map_or(basis.creationtime, |e| e.creationtime);
            write(staged, keys::legal_basis(&basis.brief), &LegalBasis { creationtime, ..basis.clone() })?;
            Ok(Applied::Done)
        }

        (Change::DeleteLegalBasis { brief }, _) => {
            if !staged.remove(keys::legal_basis(brief))? {
                return Ok(Err(Rejection::UnknownBrief));
            }
            for key in staged.keys_with_prefix(&[keys::ACTIVITY])? {
                if let Some(mut activity) = read::<ProcessingActivity>(staged, &key)? {
                    if activity.legalbasis.contains(brief) {
                        activity.legalbasis.retain(|b| b != brief);
                        write(staged, key, &activity)?;
                    }
                }
            }
            Ok(Applied::Done)
        }

        (Change::PutAgreement { agreement, .. } | Change::PutByIdentifier { agreement, .. }, Some(subject)) => {
            return put_agreement(staged, subject, agreement)
        }

        (Change::PutByIdentifier { entry, agreement, identity }, None) => {
            return pending::put(staged, entry, agreement, identity.as_ref())
        }

        (Change::ReadAgreements { brief, .. } | Change::ReadByIdentifier { brief, .. }, Some(subject)) => {
            return read_agreements(staged, subject, brief.as_deref())
        }

        (Change::ReadByIdentifier { entry, brief }, None) => return pending::read_all(staged, entry, brief.as_deref()),

        (Change::RevokeBasis { brief }, _) => {
            if !staged.contains(&keys::legal_basis(brief))? {
                return Ok(Err(Rejection::UnknownBrief));
            }
            for key in staged.keys_with_prefix(&keys::agreements_by_brief(brief))? {
                let Some(subject) = keys::trailing_uuid(&key) else { continue };
                let key = keys::agreement(&subject, brief);
                if let Some(mut agreement) = read::<Agreement>(staged, &key)? {
                    agreement.status = "revoked".into();
                    write(staged, key, &agreement)?;
                }
            }
            pending::revoke(staged, brief)?;
            Ok(Applied::Done)
        }

        (Change::PutActivity { activity, record }, _) => {
            let existing = read::<ProcessingActivity>(staged, &keys::activity(activity))?;
            if record.activity != *activity {
                if staged.contains(&keys::activity(&record.activity))? {
                    return Ok(Err(Rejection::Exists));
                }
                staged.remove(keys::activity(activity))?;
            }
            let (creationtime, legalbasis) = match existing {
                Some(old) => (old.creationtime, old.legalbasis),
                None => (record.creationtime, Vec::new()),
            };
            let record = ProcessingActivity { creationtime, legalbasis, ..record.clone() };
            write(staged, keys::activity(&record.activity), &record)?;
            Ok(Applied::Done)
        }

        (Change::DeleteActivity { activity }, _) => match staged.remove(keys::activity(activity))? {
            true => Ok(Applied::Done),
            false => Err(Rejection::UnknownActivity),
        },

        (Change::LinkActivity { activity, brief, link }, _) => {
            let Some(mut record) = read::<ProcessingActivity>(staged, &keys::activity(activity))? else {
                return Ok(Err(Rejection::UnknownActivity));
            };
            if *link && !staged.contains(&keys::legal_basis(brief))? {
                return Ok(Err(Rejection::UnknownBrief));
            }
            record.legalbasis.retain(|b| b != brief);
            if *link {
                record.legalbasis.push(brief.clone());
                record.legalbasis.sort();
            }
            write(staged, keys::activity(activity), &record)?;
            Ok(Applied::Done)
        }

        (Change::PutAgreement { .. } | Change::ReadAgreements { .. }, None) => Err(Rejection::SubjectNotFound),
    })
}

/// Records a subject's agreement to an existing basis, or the withdrawal of one. An
/// active subject may do either, a forgotten one only withdraw.
fn put_agreement(staged: &mut Staged, subject: Uuid, agreement: &Agreement) -> Result<Outcome, StoreError> {
    // Agreeing needs the basis; withdrawing only the agreement (so consent to a basis
    // deleted since can still be withdrawn).
    if agreement.status == "yes" && !staged.contains(&keys::legal_basis(&agreement.brief))? {
        return Ok(Err(Rejection::UnknownBrief));
    }
    let Some(record) = read::<SubjectRecord>(staged, &keys::subject(&subject))? else {
        return Ok(Err(Rejection::SubjectNotFound));
    };
    if agreement.status == "yes" && matches!(record.state, SubjectState::Forgotten { .. }) {
        return Ok(Err(Rejection::Forgotten));
    }
    let key = keys::agreement(&subject, &agreement.brief);
    let existing = read::<Agreement>(staged, &key)?;
    if existing.is_none() && agreement.status != "yes" {
        // Withdrawing what was never agreed to changes nothing.
        return Ok(Err(Rejection::UnknownBrief));
    }
    write(staged, key, &merge_agreement(existing, agreement))?;
    staged.insert(keys::agreement_by_brief(&agreement.brief, &subject), &[]);
    Ok(Ok(Applied::Resolved(subject)))
}

fn read_agreements(staged: &Staged, subject: Uuid, brief: Option<&str>) -> Result<Outcome, StoreError> {
    if !staged.contains(&keys::subject(&subject))? {
        return Ok(Err(Rejection::SubjectNotFound));
    }
    let agreements = match brief {
        Some(brief) => match read::<Agreement>(staged, &keys::agreement(&subject, brief))? {
            Some(agreement) => vec![agreement],
            None => return Ok(Err(Rejection::UnknownBrief)),
        },
        None => staged
            .keys_with_prefix(&keys::agreements_of(&subject))?
            .iter()
            .filter_map(|key| read::<Agreement>(staged, key).transpose())
            .collect::<Result<_, _>>()?,
    };
    Ok(Ok(Applied::Agreements { subject, agreements }))
}

/// An agreement given again: what was first agreed, and how, stays unless given anew.
pub(super) fn merge_agreement(existing: Option<Agreement>, agreement: &Agreement) -> Agreement {
    match existing {
        Some(old) => Agreement {
            creationtime: old.creationtime,
            agreementmethod: keep_if_empty(&agreement.agreementmethod, old.agreementmethod),
            referencecode: keep_if_empty(&agreement.referencecode, old.referencecode),
            ..agreement.clone()
        },
        None => agreement.clone(),
    }
}

/// Carries a basis's agreements and activity links over to its new brief.
fn rename_basis(staged: &mut Staged, old: &str, new: &str) -> Result<(), StoreError> {
    pending::rename(staged, old, new)?;
    for key in staged.keys_with_prefix(&keys::agreements_by_brief(old))? {
        let Some(subject) = keys::trailing_uuid(&key) else { continue };
        if let Some(mut agreement) = read::<Agreement>(staged, &keys::agreement(&subject, old))? {
            staged.remove(keys::agreement(&subject, old))?;
            agreement.brief = new.to_string();
            write(staged, keys::agreement(&subject, new), &agreement)?;
            staged.insert(keys::agreement_by_brief(new, &subject), &[]);
        }
        staged.remove(key)?;
    }
    for key in staged.keys_with_prefix(&[keys::ACTIVITY])? {
        if let Some(mut activity) = read::<ProcessingActivity>(staged, &key)? {
            if activity.legalbasis.iter().any(|b| b == old) {
                activity.legalbasis.retain(|b| b != old);
                activity.legalbasis.push(new.to_string());
                activity.legalbasis.sort();
                write(staged, key, &activity)?;
            }
        }
    }
    Ok(())
}

fn keep_if_empty(new: &str, old: String) -> String {
    if new.is_empty() {
        old
    } else {
        new.to_string()
    }
}
