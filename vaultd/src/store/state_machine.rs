//! Applies commands to the state tree. Every replica applies the same commands in the same
//! log order, so application is deterministic: times and ids come from the command, never
//! from the applying node. A transaction covers one or more log entries; after a crash
//! either all of its commands and audit events are stored, or none (`redo`). A rejected
//! command writes only its audit event.

use std::sync::Arc;

use uuid::Uuid;

mod consent;
mod pending;
mod requests;

use super::command::{Applied, Change, Command, ForgetCondition, Receipt, Rejection, Target};
use super::records::{
    decode, encode, AccessTokenRecord, ActiveSubject, AppRecord, ExpirationStatus, SessionRecord, SharedRecord,
    SubjectRecord, SubjectState,
};
use super::redo::RedoLog;
use super::staged::Staged;
use super::tree_cut::TreeCuts;
use super::{keys, AuditHead, Store, StoreError, SubjectAuditHead};
use crate::audit::AuditEvent;
use crate::crypto::DekCache;
use crate::identity::IndexKind;

type Outcome = Result<Applied, Rejection>;

pub struct StateMachine {
    store: Store,
    redo: RedoLog,
    head: AuditHead,
    /// Forgetting a subject must also drop its unwrapped DEK from memory.
    dek_cache: Arc<DekCache>,
    /// Cuts of the state tree for snapshots, kept consistent by every commit.
    cuts: Arc<TreeCuts>,
}

impl StateMachine {
    /// Opens the machine on the store, first finishing a transaction a crash interrupted.
    pub fn new(store: Store, dek_cache: Arc<DekCache>) -> Result<Self, StoreError> {
        let redo = RedoLog::open(store.db())?;
        if redo.recover(store.state_tree())? {
            tracing::info!("finished the writes of a transaction a crash interrupted");
        }
        let head = store.audit_head()?;
        Ok(StateMachine { store, redo, head, dek_cache, cuts: Arc::default() })
    }

    /// Cuts of the state tree, consistent while applies go on.
    pub fn tree_cuts(&self) -> &Arc<TreeCuts> {
        &self.cuts
    }

    /// Brings the audit trail in step with the state: removes the events of a transaction
    /// that a crash kept from being stored, and says whether the trail holds every event
    /// the state names. It may not after a power loss, when sled (written back in the
    /// background) reached the disk further than the trail (synced at snapshots and at
    /// shutdown); the state must then be rolled back to a snapshot and the log applied
    /// again.
    pub fn trail_holds_state(&self) -> Result<bool, StoreError> {
        let trail = self.store.audit_trail();
        match trail.keep_through(self.head.seq)? {
            Some(event) if event.hash != self.head.hash => {
                // Someone changed the stored trail; verification reports where.
                tracing::error!(seq = event.seq, "the audit trail's newest event is not the one the state names");
                Ok(true)
            }
            Some(_) => Ok(true),
            None => Ok(self.head.seq == 0),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Starts a transaction; nothing is stored until it commits.
    pub fn begin(&mut self) -> Transaction<'_> {
        let staged = Staged::new(self.store.state_tree().clone());
        let head = self.head.clone();
        Transaction { machine: self, staged, head, events: Vec::new(), forgotten: Vec::new() }
    }

    /// Re-reads what the machine caches from the tree, after the tree was replaced
    /// wholesale (a snapshot was installed). Cached keys may belong to subjects the
    /// snapshot has forgotten, so the cache is emptied too.
    pub fn reload(&mut self) -> Result<(), StoreError> {
        self.head = self.store.audit_head()?;
        self.dek_cache.clear();
        Ok(())
    }
}

/// Commands applied but not yet stored.
pub struct Transaction<'m> {
    machine: &'m mut StateMachine,
    staged: Staged,
    head: AuditHead,
    events: Vec<AuditEvent>,
    forgotten: Vec<Uuid>,
}

impl Transaction<'_> {
    /// Applies one command and chains its audit event; `log_index` is the Raft entry
    /// that carries it.
    pub fn apply(&mut self, command: &Command, log_index: u64) -> Result<Receipt, StoreError> {
        let (outcome, resolved) =
            apply_change(&mut self.staged, &command.change, command.audit.time, self.head.seq + 1)?;
        let result = match (&outcome, &command.change) {
            (Ok(_), Change::Access { found: false }) => "not-found".to_string(),
            (Ok(_), _) => "ok".to_string(),
            (Err(rejection), _) => rejection.audit_result(),
        };
        if let (Ok(_), true, Some(subject)) = (&outcome, command.change.forgets(), resolved) {
            self.forgotten.push(subject);
        }
        if outcome.is_ok() && command.audit.operation.erases_data() {
            // The removed data is still in this entry's predecessors in the log.
            self.staged.insert(keys::erasure(log_index), encode(&command.audit.time)?);
        }
        let mut draft = command.audit.clone();
        draft.subject = draft.subject.or(resolved);
        let seq = self.head.seq + 1;
        let subject_prev = match draft.subject {
            Some(subject) => {
                let key = keys::subject_audit_head(&subject);
                let before = read::<SubjectAuditHead>(&self.staged, &key)?;
                write(
                    &mut self.staged,
                    key,
                    &SubjectAuditHead { newest: seq, count: before.map_or(0, |h| h.count) + 1 },
                )?;
                before.map(|head| head.newest)
            }
            None => None,
        };
        let event = AuditEvent::chain(draft, seq, result, &self.head.hash, subject_prev);
        self.head = AuditHead { seq: event.seq, hash: event.hash.clone() };
        self.events.push(event);
        Ok(Receipt { outcome, audit_seq: self.head.seq, log_index })
    }

    /// Stores a value of the cluster layer (e.g. the last applied log id) atomically with
    /// the commands.
    pub fn put_meta(&mut self, name: &str, value: Vec<u8>) {
        self.staged.insert(keys::meta(name), value);
    }

    /// Stores everything atomically: the events go to the audit trail first, then the
    /// state that names the newest of them as its head.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if !self.events.is_empty() {
            self.machine.store.audit_trail().append(&self.events)?;
            self.staged.insert(keys::meta(keys::AUDIT_HEAD), encode(&self.head)?);
        }
        self.staged.commit(&self.machine.redo, &self.machine.cuts)?;
        self.machine.head = self.head;
        for subject in &self.forgotten {
            self.machine.dek_cache.remove(subject);
        }
        Ok(())
    }
}

/// Retention runs kept per policy; older ones are dropped as new ones are recorded.
pub const MAX_RUNS_PER_POLICY: usize = 100;

fn read<T: serde::de::DeserializeOwned>(staged: &Staged, key: &[u8]) -> Result<Option<T>, StoreError> {
    staged.get(key)?.map(|v| decode(&v)).transpose()
}

fn write<T: serde::Serialize>(staged: &mut Staged, key: Vec<u8>, value: &T) -> Result<(), StoreError> {
    staged.insert(key, encode(value)?);
    Ok(())
}

/// The subject a target names, if the index holds the entry.
fn resolve(staged: &Staged, target: &Target) -> Result<Option<Uuid>, StoreError> {
    match target {
        Target::Token(subject) => Ok(Some(*subject)),
        Target::Index(entry) => uuid_at(staged, &keys::index(entry)),
        Target::ExpToken(hash) => uuid_at(staged, &keys::exp_token(hash)),
    }
}

fn uuid_at(staged: &Staged, key: &[u8]) -> Result<Option<Uuid>, StoreError> {
    staged.get(key)?.map(|v| Uuid::from_slice(&v).map_err(|_| StoreError::Corrupt)).transpose()
}

/// Removes a session and its index entries, if it exists.
fn remove_session(staged: &mut Staged, session: &Uuid) -> Result<(), StoreError> {
    if let Some(record) = read::<SessionRecord>(staged, &keys::session(session))? {
        staged.remove(keys::session(session))?;
        staged.remove(keys::session_due(record.expires_at, session))?;
        if let Some(subject) = &record.subject {
            staged.remove(keys::session_of_subject(subject, session))?;
        }
    }
    Ok(())
}

/// A session of `subject`'s that has not ended at `now`.
fn live_session_of(
    staged: &Staged,
    session: &Uuid,
    subject: &Uuid,
    now: u64,
) -> Result<Option<SessionRecord>, StoreError> {
    let record = read::<SessionRecord>(staged, &keys::session(session))?;
    Ok(record.filter(|r| r.subject.as_ref() == Some(subject) && r.expires_at > now))
}

/// Removes a shared record and its index entries, if it exists.
fn remove_share(staged: &mut Staged, hash: &[u8; 32]) -> Result<(), StoreError> {
    if let Some(record) = read::<SharedRecord>(staged, &keys::shared(hash))? {
        staged.remove(keys::shared(hash))?;
        staged.remove(keys::shared_due(record.expires_at, hash))?;
        staged.remove(keys::shared_of_subject(&record.subject, hash))?;
    }
    Ok(())
}

/// The first blind-index entry already held by another subject.
fn first_duplicate(staged: &Staged, subject: &Uuid, index: &[Vec<u8>]) -> Result<Option<Rejection>, StoreError> {
    for entry in index {
        if let Some(owner) = staged.get(&keys::index(entry))? {
            if owner.as_ref() != subject.as_bytes() {
                let kind = entry.first().and_then(|b| IndexKind::from_byte(*b)).ok_or(StoreError::Corrupt)?;
                return Ok(Some(Rejection::Duplicate(kind)));
            }
        }
    }
    Ok(None)
}

/// The active state of a subject, or why there is none.
fn active(staged: &Staged, subject: &Uuid) -> Result<Result<(SubjectRecord, ActiveSubject), Rejection>, StoreError> {
    let Some(record) = read::<SubjectRecord>(staged, &keys::subject(subject))? else {
        return Ok(Err(Rejection::SubjectNotFound));
    };
    match record.state.clone() {
        SubjectState::Active(active) => Ok(Ok((record, active))),
        SubjectState::Forgotten { .. } => Ok(Err(Rejection::Forgotten)),
    }
}

macro_rules! reject_unless {
    ($e:expr, $resolved:expr) => {
        match $e {
            Ok(value) => value,
            Err(rejection) => return Ok((Err(rejection), $resolved)),
        }
    };
}

/// Applies one change; also returns the subject it resolved to, for the audit event.
/// `audit_seq` is the sequence number the change's audit event will get.
fn apply_change(
    staged: &mut Staged,
    change: &Change,
    now: u64,
    audit_seq: u64,
) -> Result<(Outcome, Option<Uuid>), StoreError> {
    if let Change::ForgetSubject { target: Target::Index(entry), condition: ForgetCondition::Always } = change {
        if uuid_at(staged, &keys::index(entry))?.is_none() {
            // No subject holds the entry: an identifier with agreements kept from before
            // sign-up, or nobody.
            return Ok((pending::forget(staged, entry)?, None));
        }
    }
    let resolved = match change {
        Change::ReadSubject { target }
        | Change::ReadApp { target, .. }
        | Change::ForgetSubject { target, .. }
        | Change::DeleteApp { target, .. }
        | Change::CancelExpiration { target }
        | Change::RetainData { target }
        | Change::ReadSessions { target, .. } => match resolve(staged, target)? {
            Some(subject) => Some(subject),
            None => return Ok((Err(Rejection::SubjectNotFound), None)),
        },
        Change::Consent(consent) => match (consent.target(), consent.pending_entry()) {
            (Some(target), _) => match resolve(staged, target)? {
                Some(subject) => Some(subject),
                None => return Ok((Err(Rejection::SubjectNotFound), None)),
            },
            // `None`: the entry's pending agreements.
            (None, Some(entry)) => uuid_at(staged, &keys::index(entry))?,
            (None, None) => None,
        },
        Change::CreateSubject { subject, .. }
        | Change::UpdateSubject { subject, .. }
        | Change::PutApp { subject, .. }
        | Change::StartExpiration { subject, .. } => Some(*subject),
        _ => None,
    };
    let outcome = match (change, resolved) {
        (Change::Access { .. }, _) => Ok(Applied::Done),

        (Change::ReadSubject { .. }, Some(subject)) => match read::<SubjectRecord>(staged, &keys::subject(&subject))? {
            Some(record) => Ok(Applied::Subject { subject, record }),
            None => Err(Rejection::SubjectNotFound),
        },

        (Change::ReadApp { app, .. }, Some(subject)) => {
            let (_, owner) = reject_unless!(active(staged, &subject)?, resolved);
            match read::<AppRecord>(staged, &keys::app(&subject, app))? {
                Some(record) => Ok(Applied::App { subject, owner, record }),
                None => Err(Rejection::AppNotFound),
            }
        }

        (Change::InitIndexKey { key }, _) => match read(staged, &keys::meta(keys::INDEX_KEY))? {
            Some(existing) => Ok(Applied::IndexKey(existing)),
            None => {
                write(staged, keys::meta(keys::INDEX_KEY), key)?;
                Ok(Applied::IndexKey(key.clone()))
            }
        },

        (Change::CreateSubject { subject, kek, wrapped_dek, profile, index }, _) => {
            if let Some(existing) = read::<SubjectRecord>(staged, &keys::subject(subject))? {
                // The same create proposed twice (a retry after a leader change) is applied once.
                return Ok(match existing.state {
                    SubjectState::Active(active) if active.wrapped_dek == *wrapped_dek => (Ok(Applied::Done), resolved),
                    _ => (Err(Rejection::Exists), resolved),
                });
            }
            if let Some(rejection) = first_duplicate(staged, subject, index)? {
                return Ok((Err(rejection), resolved));
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
                    kek: kek.clone(),
                    wrapped_dek: wrapped_dek.clone(),
                    profile: profile.clone(),
                    index: index.clone(),
                    apps: Vec::new(),
                }),
                expiration: None,
            };
            write(staged, keys::subject(subject), &record)?;
            Ok(Applied::Done)
        }

        (Change::UpdateSubject { subject, expected_version, profile, index }, _) => {
            let (mut record, mut state) = reject_unless!(active(staged, subject)?, resolved);
            if record.version != *expected_version {
                return Ok((Err(Rejection::Stale), resolved));
            }
            if let Some(rejection) = first_duplicate(staged, subject, index)? {
                return Ok((Err(rejection), resolved));
            }
            for old in &state.index {
                staged.remove(keys::index(old))?;
            }
            for entry in index {
                staged.insert(keys::index(entry), subject.as_bytes());
            }
            pending::attach(staged, subject, index.iter().filter(|entry| !state.index.contains(entry)))?;
            state.profile = profile.clone();
            state.index = index.clone();
            record.updated = now;
            record.version += 1;
            record.state = SubjectState::Active(state);
            write(staged, keys::subject(subject), &record)?;
            Ok(Applied::Done)
        }

        (Change::ForgetSubject { condition, .. }, Some(subject)) => {
            let (mut record, state) = match active(staged, &subject)? {
                Ok(found) => found,
                // Forgetting twice is not an error: the subject is forgotten either way.
                Err(Rejection::Forgotten) if *condition == ForgetCondition::Always => {
                    return Ok((Ok(Applied::Resolved(subject)), resolved))
                }
                Err(rejection) => return Ok((Err(rejection), resolved)),
            };
            let holds = match condition {
                ForgetCondition::Always => true,
                ForgetCondition::Version(version) => record.version == *version,
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
            for session in staged.keys_with_prefix(&keys::sessions_of_subject(&subject))? {
                if let Some(session) = keys::trailing_uuid(&session) {
                    remove_session(staged, &session)?;
                }
            }
            requests::close_for_forgotten(staged, &subject, now)?;
            // The subject's own tokens go with it.
            for key in staged.keys_with_prefix(&[keys::TOKEN])? {
                if read::<AccessTokenRecord>(staged, &key)?.is_some_and(|t| t.subject == Some(subject)) {
                    staged.remove(key)?;
                }
            }
            for share in staged.keys_with_prefix(&keys::shared_of_subject_prefix(&subject))? {
                if let Some(hash) = keys::trailing_hash(&share) {
                    remove_share(staged, &hash)?;
                }
            }
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
            Ok(Applied::Resolved(subject))
        }

        (Change::PutApp { subject, app, sealed, expected_version }, _) => {
            let (mut record, mut state) = reject_unless!(active(staged, subject)?, resolved);
            let key = keys::app(subject, app);
            let existing = read::<AppRecord>(staged, &key)?;
            let app_record = match (existing, expected_version) {
                (None, Some(_)) => return Ok((Err(Rejection::AppNotFound), resolved)),
                (Some(current), Some(expected)) if current.version != *expected => {
                    return Ok((Err(Rejection::Stale), resolved))
                }
                (Some(current), _) => {
                    AppRecord { updated: now, version: current.version + 1, sealed: sealed.clone(), ..current }
                }
                (None, None) => AppRecord { created: now, updated: now, version: 1, sealed: sealed.clone() },
            };
            write(staged, key, &app_record)?;
            staged.insert(keys::app_name(app), &[]);
            if !state.apps.contains(app) {
                state.apps.push(app.clone());
                state.apps.sort();
                record.state = SubjectState::Active(state);
                write(staged, keys::subject(subject), &record)?;
            }
            Ok(Applied::Done)
        }

        (Change::DeleteApp { app, expected_version, .. }, Some(subject)) => {
            let (mut record, mut state) = reject_unless!(active(staged, &subject)?, resolved);
            let key = keys::app(&subject, app);
            let Some(existing) = read::<AppRecord>(staged, &key)? else {
                return Ok((Err(Rejection::AppNotFound), resolved));
            };
            if expected_version.is_some_and(|expected| expected != existing.version) {
                return Ok((Err(Rejection::Stale), resolved));
            }
            staged.remove(key)?;
            state.apps.retain(|a| a != app);
            record.state = SubjectState::Active(state);
            write(staged, keys::subject(&subject), &record)?;
            Ok(Applied::Resolved(subject))
        }

        (Change::StartExpiration { subject, expected_version, replace, expiration }, _) => {
            let (mut record, _) = reject_unless!(active(staged, subject)?, resolved);
            if expected_version.is_some_and(|expected| expected != record.version) {
                return Ok((Err(Rejection::Stale), resolved));
            }
            if let Some(existing) = &record.expiration {
                if existing.token_hash == expiration.token_hash {
                    // The same start proposed twice (a retry after a leader change).
                    return Ok((Ok(Applied::Done), resolved));
                }
                if !replace {
                    return Ok((Err(Rejection::Exists), resolved));
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
            Ok(Applied::Done)
        }

        (Change::CancelExpiration { .. }, Some(subject)) => {
            let (mut record, _) = reject_unless!(active(staged, &subject)?, resolved);
            if let Some(expiration) = record.expiration.take() {
                staged.remove(keys::exp_token(&expiration.token_hash))?;
                staged.remove(keys::exp_due(expiration.ends_at, &subject))?;
                write(staged, keys::subject(&subject), &record)?;
            }
            Ok(Applied::Resolved(subject))
        }

        (Change::RetainData { .. }, Some(subject)) => {
            let (mut record, _) = reject_unless!(active(staged, &subject)?, resolved);
            let Some(expiration) = &mut record.expiration else {
                return Ok((Err(Rejection::SubjectNotFound), resolved));
            };
            staged.remove(keys::exp_due(expiration.ends_at, &subject))?;
            expiration.status = ExpirationStatus::Retain;
            write(staged, keys::subject(&subject), &record)?;
            Ok(Applied::Resolved(subject))
        }

        (Change::PutSession { session, record, may_take }, _) => {
            if let Some(subject) = &record.subject {
                reject_unless!(active(staged, subject)?, record.subject);
            }
            if !may_take {
                if let Some(existing) = read::<SessionRecord>(staged, &keys::session(session))? {
                    if existing.subject != record.subject {
                        return Ok((Err(Rejection::Exists), record.subject));
                    }
                }
            }
            remove_session(staged, session)?;
            write(staged, keys::session(session), record)?;
            staged.insert(keys::session_due(record.expires_at, session), &[]);
            if let Some(subject) = &record.subject {
                staged.insert(keys::session_of_subject(subject, session), &[]);
            }
            return Ok((Ok(Applied::Done), record.subject));
        }

        (Change::ReadSession { session, owner }, _) => {
            let Some(record) = read::<SessionRecord>(staged, &keys::session(session))?
                .filter(|r| r.expires_at > now && (owner.is_none() || r.subject == *owner))
            else {
                return Ok((Err(Rejection::SessionNotFound), None));
            };
            let owner = match &record.subject {
                Some(subject) => Some(reject_unless!(active(staged, subject)?, record.subject).1),
                None => None,
            };
            let subject = record.subject;
            return Ok((Ok(Applied::Session { record, owner }), subject));
        }

        (Change::DeleteSession { session, only_if_ended, owner }, _) => {
            let Some(record) = read::<SessionRecord>(staged, &keys::session(session))?
                .filter(|r| owner.is_none() || r.subject == *owner)
            else {
                return Ok((Err(Rejection::SessionNotFound), None));
            };
            if *only_if_ended && record.expires_at > now {
                return Ok((Err(Rejection::Stale), record.subject));
            }
            remove_session(staged, session)?;
            return Ok((Ok(Applied::Done), record.subject));
        }

        (Change::ReadSessions { offset, limit, .. }, Some(subject)) => {
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
                if total >= u64::from(*offset) && page.len() < *limit as usize {
                    page.push((session, record));
                }
                total += 1;
            }
            let owner = active(staged, &subject)?.ok().map(|(_, owner)| owner);
            Ok(Applied::Sessions { subject, owner, total, page })
        }

        (Change::ShareRecord { hash, record }, _) => {
            let subject = Some(record.subject);
            let (_, owner) = reject_unless!(active(staged, &record.subject)?, subject);
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
            return Ok((Ok(Applied::Done), subject));
        }

        (Change::ReadShared { hash }, _) => {
            let Some(record) = read::<SharedRecord>(staged, &keys::shared(hash))?.filter(|r| r.expires_at > now) else {
                return Ok((Err(Rejection::ShareNotFound), None));
            };
            let subject = Some(record.subject);
            let (_, owner) = reject_unless!(active(staged, &record.subject)?, subject);
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
            return Ok((Ok(Applied::Shared { record, owner, app, session }), subject));
        }

        (Change::DeleteEndedShare { hash }, _) => {
            let Some(record) = read::<SharedRecord>(staged, &keys::shared(hash))? else {
                return Ok((Err(Rejection::ShareNotFound), None));
            };
            if record.expires_at > now {
                return Ok((Err(Rejection::Stale), Some(record.subject)));
            }
            remove_share(staged, hash)?;
            return Ok((Ok(Applied::Done), Some(record.subject)));
        }

        (Change::Consent(consent), _) => consent::apply(staged, consent, resolved)?,

        (Change::FileRequest { rtoken, record }, _) => {
            return Ok((requests::file(staged, rtoken, record)?, Some(record.subject)))
        }
        (Change::ReadRequest { rtoken, owner }, _) => return requests::read_one(staged, rtoken, *owner),
        (Change::ReadRequests { target, status, offset, limit }, _) => {
            return requests::read_page(staged, target.as_ref(), *status, *offset, *limit)
        }
        (Change::ResolveRequest { rtoken, approve, reason, owner, then }, _) => {
            return requests::resolve_request(staged, rtoken, *approve, reason, *owner, then.as_deref(), now, audit_seq)
        }

        (Change::RecordRetentionRun { report }, _) => {
            write(staged, keys::retention_run(&report.policy, audit_seq), report)?;
            let runs = staged.keys_with_prefix(&keys::retention_runs(&report.policy))?;
            for old in runs.iter().take(runs.len().saturating_sub(MAX_RUNS_PER_POLICY)) {
                staged.remove(old.clone())?;
            }
            Ok(Applied::Done)
        }

        (Change::CreateAccessToken { token }, _) => {
            let key = keys::token(&token.secret_hash);
            if staged.contains(&key)? {
                return Ok((Err(Rejection::Exists), resolved));
            }
            write(staged, key, token)?;
            Ok(Applied::Done)
        }

        (Change::RevokeAccessToken { id, secret_hash }, _) => {
            let key = keys::token(secret_hash);
            match read::<AccessTokenRecord>(staged, &key)? {
                Some(token) if token.id == *id => {
                    staged.remove(key)?;
                    Ok(Applied::Done)
                }
                _ => Err(Rejection::TokenNotFound),
            }
        }

        (Change::AllocateNodeId, _) => {
            // Node 1 is the node that bootstrapped the cluster.
            let next: u64 = read(staged, &keys::meta(keys::NEXT_NODE_ID))?.unwrap_or(2);
            write(staged, keys::meta(keys::NEXT_NODE_ID), &(next + 1))?;
            Ok(Applied::NodeId(next))
        }

        // Every target-carrying change resolved above or returned.
        (Change::ReadSubject { .. } | Change::ReadApp { .. } | Change::ForgetSubject { .. }, None)
        | (Change::DeleteApp { .. } | Change::CancelExpiration { .. } | Change::RetainData { .. }, None)
        | (Change::ReadSessions { .. }, None) => Err(Rejection::SubjectNotFound),
    };
    Ok((outcome, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditDraft, Operation};
    use crate::store::DEFAULT_CACHE_BYTES;

    fn machine() -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        (dir, StateMachine::new(store, Arc::new(DekCache::new(8))).unwrap())
    }

    fn apply(machine: &mut StateMachine, commands: &[Command]) -> Vec<Receipt> {
        let mut transaction = machine.begin();
        let receipts = commands.iter().map(|c| transaction.apply(c, 7).unwrap()).collect();
        transaction.commit().unwrap();
        receipts
    }

    fn command(change: Change) -> Command {
        let audit = AuditDraft {
            time: 1_000,
            actor: "root".into(),
            operation: Operation::UserCreate,
            subject: None,
            app: None,
            mode: None,
            purpose: None,
        };
        Command { audit, change }
    }

    fn create(subject: Uuid, index: Vec<Vec<u8>>) -> Command {
        command(Change::CreateSubject { subject, kek: "k".into(), wrapped_dek: vec![1], profile: vec![2], index })
    }

    #[test]
    fn uniqueness_holds_within_one_batch() {
        let (_dir, mut machine) = machine();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let email = vec![IndexKind::Email as u8, 7, 7];
        let receipts = apply(&mut machine, &[create(a, vec![email.clone()]), create(b, vec![email.clone()])]);
        assert_eq!(receipts[0].outcome, Ok(Applied::Done));
        assert_eq!(receipts[1].outcome, Err(Rejection::Duplicate(IndexKind::Email)));
        assert_eq!(receipts[1].log_index, 7);
        let store = machine.store();
        assert_eq!(store.lookup(&email).unwrap(), Some(a));
        assert!(store.subject(&b).unwrap().is_none(), "the rejected create wrote nothing");
        let (total, events) = store.audit_all(0, 10).unwrap();
        assert_eq!(total, 2, "both attempts are audited");
        assert_eq!(events[0].result, "rejected: duplicate email");
        assert!(store.verify_audit().unwrap().intact);
    }

    #[test]
    fn a_create_proposed_twice_is_applied_once() {
        let (_dir, mut machine) = machine();
        let a = Uuid::new_v4();
        let receipts = apply(&mut machine, &[create(a, vec![]), create(a, vec![])]);
        assert_eq!(receipts[1].outcome, Ok(Applied::Done));
        let mut other_key = create(a, vec![]);
        if let Change::CreateSubject { wrapped_dek, .. } = &mut other_key.change {
            *wrapped_dek = vec![9];
        }
        assert_eq!(apply(&mut machine, &[other_key])[0].outcome, Err(Rejection::Exists));
    }

    #[test]
    fn reads_resolve_their_target_when_applied_and_audit_the_subject() {
        let (_dir, mut machine) = machine();
        let a = Uuid::new_v4();
        let login = vec![IndexKind::Login as u8, 1];
        let read = |target| command(Change::ReadSubject { target });
        let receipts = apply(
            &mut machine,
            &[read(Target::Index(login.clone())), create(a, vec![login.clone()]), read(Target::Index(login.clone()))],
        );
        assert_eq!(receipts[0].outcome, Err(Rejection::SubjectNotFound), "the read precedes the create in the log");
        match &receipts[2].outcome {
            Ok(Applied::Subject { subject, record }) => {
                assert_eq!(*subject, a);
                assert_eq!(record.version, 1);
            }
            other => panic!("{other:?}"),
        }
        let (_, events) = machine.store().audit_all(0, 10).unwrap();
        assert_eq!((events[0].subject, events[0].result.as_str()), (Some(a), "ok"));
        assert_eq!((events[2].subject, events[2].result.as_str()), (None, "not-found"));

        let app = |name: &str| command(Change::ReadApp { target: Target::Token(a), app: name.into() });
        let put = command(Change::PutApp { subject: a, app: "shop".into(), sealed: vec![5], expected_version: None });
        let receipts = apply(&mut machine, &[app("shop"), put, app("shop")]);
        assert_eq!(receipts[0].outcome, Err(Rejection::AppNotFound));
        assert!(matches!(&receipts[2].outcome, Ok(Applied::App { record, .. }) if record.sealed == vec![5]));
    }

    #[test]
    fn node_ids_are_never_handed_out_twice() {
        let (_dir, mut machine) = machine();
        let receipts = apply(&mut machine, &[command(Change::AllocateNodeId), command(Change::AllocateNodeId)]);
        assert_eq!(receipts[0].outcome, Ok(Applied::NodeId(2)), "node 1 bootstrapped the cluster");
        assert_eq!(receipts[1].outcome, Ok(Applied::NodeId(3)));
        // The counter lives in the replicated state, not in the machine's memory.
        let mut machine = StateMachine::new(machine.store().clone(), Arc::new(DekCache::new(8))).unwrap();
        assert_eq!(apply(&mut machine, &[command(Change::AllocateNodeId)])[0].outcome, Ok(Applied::NodeId(4)));
    }

    #[test]
    fn audit_reads_find_events_anywhere_in_the_trail() {
        let (_dir, mut machine) = machine();
        let subject = Uuid::new_v4();
        let mut reads: Vec<Command> = (0..150).map(|_| command(Change::Access { found: true })).collect();
        for read in &mut reads {
            read.audit.subject = Some(subject);
        }
        apply(&mut machine, &reads);
        let store = machine.store();
        assert_eq!(store.raw_audit_events().unwrap().len(), 150);
        let (total, newest) = store.audit_all(60, 10).unwrap();
        assert_eq!(total, 150);
        assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), (81..=90).rev().collect::<Vec<_>>());
        let (count, mine) = store.audit_for_subject(&subject, 0, 200).unwrap();
        assert_eq!((count, mine.len(), mine[0].seq, mine[149].seq), (150, 150, 150, 1));
        let middle = &mine[80];
        assert_eq!(store.audit_event(&middle.id).unwrap().as_ref(), Some(middle));
        let mut forged = middle.id.into_bytes();
        forged[15] ^= 1;
        assert_eq!(store.audit_event(&Uuid::from_bytes(forged)).unwrap(), None, "ids cannot be guessed from seq");
        assert!(store.verify_audit().unwrap().intact);
    }

    #[test]
    fn the_trail_is_brought_in_step_with_the_state_at_open() {
        let (_dir, mut machine) = machine();
        let reads: Vec<Command> = (0..5).map(|_| command(Change::Access { found: true })).collect();
        apply(&mut machine, &reads);
        let store = machine.store().clone();
        // A crash after the trail got a transaction's events but before the state did.
        let events = store.raw_audit_events().unwrap();
        let mut next = events[4].clone();
        next.seq = 6;
        store.audit_trail().append(&[next]).unwrap();
        let machine = StateMachine::new(store.clone(), Arc::new(DekCache::new(8))).unwrap();
        assert!(machine.trail_holds_state().unwrap());
        assert_eq!(store.raw_audit_events().unwrap(), events, "the unstored event is gone");
        assert!(store.verify_audit().unwrap().intact);

        // A power loss that kept the state's last transaction but not its events.
        store.audit_trail().keep_through(3).unwrap();
        assert!(!machine.trail_holds_state().unwrap());
    }

    #[test]
    fn a_subjects_events_are_listed_through_their_links() {
        let (_dir, mut machine) = machine();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        // 200 events over three batches: every third about `first`, the rest about
        // `second` or nobody, so `first`'s list skips across blocks and batches.
        for batch in 0..3u64 {
            let reads: Vec<Command> = (0..200 / 3 + 1)
                .map(|i| {
                    let mut read = command(Change::Access { found: true });
                    read.audit.subject = match (batch * 67 + i) % 3 {
                        0 => Some(first),
                        1 => Some(second),
                        _ => None,
                    };
                    read
                })
                .collect();
            apply(&mut machine, &reads);
        }
        let store = machine.store();
        let (total, all) = store.audit_all(0, 300).unwrap();
        let expected: Vec<u64> =
            all.iter().filter(|event| event.subject == Some(first)).map(|event| event.seq).collect();
        let (count, listed) = store.audit_for_subject(&first, 0, 300).unwrap();
        assert_eq!((total, count), (201, expected.len()));
        assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
        assert_eq!(listed.last().unwrap().subject_prev, None, "the first event starts the list");
        let (_, page) = store.audit_for_subject(&first, 10, 5).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), expected[10..15]);
        let (_, past_the_end) = store.audit_for_subject(&first, count, 5).unwrap();
        assert!(past_the_end.is_empty());
        assert_eq!(store.audit_for_subject(&Uuid::new_v4(), 0, 5).unwrap(), (0, Vec::new()));
        assert!(store.verify_audit().unwrap().intact);
    }

    fn expiration(ends_at: u64, token: u8) -> crate::store::Expiration {
        crate::store::Expiration {
            status: ExpirationStatus::Wait,
            started: 0,
            ends_at,
            token_hash: [token; 32],
            sealed_token: vec![token],
        }
    }

    fn at(time: u64, change: Change) -> Command {
        let mut command = command(change);
        command.audit.time = time;
        command
    }

    #[test]
    fn an_expiration_counts_down_until_retained_cancelled_or_due() {
        let (_dir, mut machine) = machine();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let start = |subject, token, replace| {
            command(Change::StartExpiration {
                subject,
                expected_version: None,
                replace,
                expiration: expiration(5_000, token),
            })
        };
        apply(&mut machine, &[create(a, vec![]), create(b, vec![]), start(a, 1, true), start(b, 2, true)]);
        let store = machine.store().clone();
        assert_eq!(store.due_expirations(4_999, 10).unwrap(), Vec::<Uuid>::new());
        assert_eq!(store.due_expirations(5_000, 10).unwrap().len(), 2);
        assert_eq!(store.subject_by_exptoken(&[1; 32]).unwrap(), Some(a));
        assert_eq!(apply(&mut machine, &[start(a, 3, false)])[0].outcome, Err(Rejection::Exists));

        let due = |subject, time| {
            at(
                time,
                Change::ForgetSubject { target: Target::Token(subject), condition: ForgetCondition::ExpirationDue },
            )
        };
        let receipts = apply(
            &mut machine,
            &[
                due(a, 4_000),
                command(Change::RetainData { target: Target::ExpToken([2; 32]) }),
                due(b, 6_000),
                due(a, 6_000),
            ],
        );
        assert_eq!(receipts[0].outcome, Err(Rejection::Stale), "not due yet");
        assert_eq!(receipts[1].outcome, Ok(Applied::Resolved(b)));
        assert_eq!(receipts[2].outcome, Err(Rejection::Stale), "b retained its data");
        assert_eq!(receipts[3].outcome, Ok(Applied::Resolved(a)));
        assert_eq!(store.due_expirations(u64::MAX, 10).unwrap(), Vec::<Uuid>::new());
        let forgotten = store.subject(&a).unwrap().unwrap();
        let ended = forgotten.expiration.unwrap();
        assert_eq!((ended.status, ended.sealed_token.is_empty()), (ExpirationStatus::Expired, true));
        assert_eq!(store.subject_by_exptoken(&[1; 32]).unwrap(), None, "a used-up exptoken resolves nothing");

        let receipts = apply(&mut machine, &[command(Change::CancelExpiration { target: Target::Token(b) })]);
        assert_eq!(receipts[0].outcome, Ok(Applied::Resolved(b)));
        assert_eq!(store.subject(&b).unwrap().unwrap().expiration, None);
        assert_eq!(store.subject_by_exptoken(&[2; 32]).unwrap(), None);
    }

    #[test]
    fn conditional_changes_refuse_a_subject_that_changed() {
        let (_dir, mut machine) = machine();
        let a = Uuid::new_v4();
        let put = command(Change::PutApp { subject: a, app: "shop".into(), sealed: vec![5], expected_version: None });
        apply(&mut machine, &[create(a, vec![]), put.clone(), put]);
        let delete_app = |version| {
            command(Change::DeleteApp { target: Target::Token(a), app: "shop".into(), expected_version: Some(version) })
        };
        let forget = |version| {
            command(Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Version(version) })
        };
        let receipts = apply(&mut machine, &[delete_app(1), delete_app(2), forget(7), forget(1), forget(1)]);
        assert_eq!(receipts[0].outcome, Err(Rejection::Stale), "the app record is at version 2");
        assert_eq!(receipts[1].outcome, Ok(Applied::Resolved(a)));
        assert_eq!(receipts[2].outcome, Err(Rejection::Stale));
        assert_eq!(receipts[3].outcome, Ok(Applied::Resolved(a)));
        assert_eq!(receipts[4].outcome, Err(Rejection::Forgotten), "a conditional forget applies once");
    }

    #[test]
    fn run_history_is_bounded_per_policy_even_within_one_batch() {
        use strongroom_admin_api::retention::RunReport;
        let (_dir, mut machine) = machine();
        let run = |policy: &str, started_at| {
            command(Change::RecordRetentionRun {
                report: RunReport {
                    policy: policy.into(),
                    dry_run: false,
                    started_at,
                    finished_at: started_at,
                    matched: 0,
                    changed: 0,
                    rules: vec![],
                    audit_event_id: String::new(),
                },
            })
        };
        let mut runs: Vec<Command> = (0..MAX_RUNS_PER_POLICY as u64 + 5).map(|i| run("shop/a", i)).collect();
        runs.push(run("shop/ab", 99));
        apply(&mut machine, &runs);
        let kept = machine.store().retention_runs(Some("shop/a"), 1_000).unwrap();
        assert_eq!(kept.len(), MAX_RUNS_PER_POLICY);
        assert_eq!(kept[0].1.started_at, MAX_RUNS_PER_POLICY as u64 + 4, "newest first");
        assert_eq!(kept.last().unwrap().1.started_at, 5, "the oldest were dropped");
        let event = machine.store().audit_event_at(kept[0].0).unwrap().unwrap();
        assert_eq!(event.seq, kept[0].0, "a run is keyed by its audit event");
        assert_eq!(machine.store().retention_runs(Some("shop/ab"), 10).unwrap().len(), 1, "prefixes do not mix");
        assert_eq!(machine.store().retention_runs(None, 1_000).unwrap().len(), MAX_RUNS_PER_POLICY + 1);
    }

    #[test]
    fn sessions_end_and_go_with_their_subject() {
        use crate::store::SessionRecord;
        let (_dir, mut machine) = machine();
        let (a, linked, loose) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let session =
            |subject, expires_at| SessionRecord { subject, created: 1_000, expires_at, key: None, sealed: vec![1] };
        let put = |id, record| command(Change::PutSession { session: id, record, may_take: true });
        let receipts = apply(
            &mut machine,
            &[put(linked, session(Some(a), 5_000)), create(a, vec![]), put(linked, session(Some(a), 5_000))],
        );
        assert_eq!(receipts[0].outcome, Err(Rejection::SubjectNotFound), "a linked session needs its subject");
        assert_eq!(receipts[2].outcome, Ok(Applied::Done));
        apply(&mut machine, &[put(loose, session(None, 3_000))]);

        let read = |id, time| at(time, Change::ReadSession { session: id, owner: None });
        let list = |time| at(time, Change::ReadSessions { target: Target::Token(a), offset: 0, limit: 10 });
        let receipts = apply(&mut machine, &[read(loose, 2_999), read(loose, 3_000), list(4_000), list(5_000)]);
        assert!(matches!(&receipts[0].outcome, Ok(Applied::Session { owner: None, .. })));
        assert_eq!(receipts[1].outcome, Err(Rejection::SessionNotFound), "an ended session is gone for readers");
        assert!(matches!(&receipts[2].outcome, Ok(Applied::Sessions { total: 1, owner: Some(_), .. })));
        assert!(matches!(&receipts[3].outcome, Ok(Applied::Sessions { total: 0, .. })));

        let sweep = |id, time| at(time, Change::DeleteSession { session: id, only_if_ended: true, owner: None });
        let receipts = apply(&mut machine, &[sweep(linked, 4_999), sweep(loose, 3_000)]);
        assert_eq!(receipts[0].outcome, Err(Rejection::Stale), "the sweeper leaves running sessions alone");
        assert_eq!(receipts[1].outcome, Ok(Applied::Done));
        assert_eq!(machine.store().ended_sessions(u64::MAX, 10).unwrap(), vec![linked]);

        apply(
            &mut machine,
            &[command(Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Always })],
        );
        assert_eq!(apply(&mut machine, &[read(linked, 0)])[0].outcome, Err(Rejection::SessionNotFound));
        assert_eq!(machine.store().ended_sessions(u64::MAX, 10).unwrap(), Vec::<Uuid>::new(), "forget-me took it");
    }

    #[test]
    fn a_request_is_approved_with_its_effect_or_not_at_all() {
        use crate::store::{RequestAction, RequestRecord, RequestStatus};
        let (_dir, mut machine) = machine();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let login = vec![IndexKind::Login as u8, 1];
        apply(&mut machine, &[create(a, vec![]), create(b, vec![login.clone()])]);
        let request = |action| RequestRecord {
            subject: a,
            action,
            app: None,
            change: vec![1],
            status: RequestStatus::Open,
            reason: String::new(),
            created: 0,
            updated: 0,
        };
        let (rename, forget, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        apply(
            &mut machine,
            &[
                command(Change::FileRequest { rtoken: rename, record: request(RequestAction::ChangeProfile) }),
                command(Change::FileRequest { rtoken: forget, record: request(RequestAction::ForgetMe) }),
                command(Change::FileRequest { rtoken: other, record: request(RequestAction::ChangeProfile) }),
            ],
        );
        let approve = |rtoken, effect: Change| {
            command(Change::ResolveRequest {
                rtoken,
                approve: true,
                reason: "ok".into(),
                owner: None,
                then: Some(Box::new(effect)),
            })
        };
        let taken = Change::UpdateSubject { subject: a, expected_version: 1, profile: vec![3], index: vec![login] };
        let receipts = apply(&mut machine, &[approve(rename, taken)]);
        assert_eq!(receipts[0].outcome, Err(Rejection::Duplicate(IndexKind::Login)));
        assert_eq!(machine.store().request(&rename).unwrap().unwrap().status, RequestStatus::Open, "still open");

        let forget_a = Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Always };
        let receipts = apply(&mut machine, &[approve(forget, forget_a.clone()), approve(forget, forget_a)]);
        assert_eq!(receipts[0].outcome, Ok(Applied::Resolved(a)));
        assert_eq!(receipts[1].outcome, Err(Rejection::RequestClosed), "approved once");
        let store = machine.store();
        assert!(matches!(store.subject(&a).unwrap().unwrap().state, SubjectState::Forgotten { .. }));
        assert_eq!(store.request(&forget).unwrap().unwrap().status, RequestStatus::Approved);
        let cancelled = store.request(&other).unwrap().unwrap();
        assert_eq!((cancelled.status, cancelled.change.is_empty()), (RequestStatus::Cancelled, true));
        let (_, events) = store.audit_all(0, 1).unwrap();
        assert_eq!(events[0].result, "rejected: the request is no longer open");
    }

    #[test]
    fn stale_updates_and_forgotten_subjects_are_refused() {
        let (_dir, mut machine) = machine();
        let a = Uuid::new_v4();
        let login = vec![IndexKind::Login as u8, 1];
        apply(&mut machine, &[create(a, vec![login.clone()])]);
        let update = |version| {
            command(Change::UpdateSubject { subject: a, expected_version: version, profile: vec![3], index: vec![] })
        };
        let receipts = apply(&mut machine, &[update(1), update(1)]);
        assert_eq!(receipts[0].outcome, Ok(Applied::Done));
        assert_eq!(receipts[1].outcome, Err(Rejection::Stale), "the second writer read version 1 too");
        assert_eq!(machine.store().lookup(&login).unwrap(), None, "the update dropped the login");

        let forget = command(Change::ForgetSubject { target: Target::Token(a), condition: ForgetCondition::Always });
        let receipts = apply(&mut machine, &[forget.clone(), forget, update(3)]);
        assert_eq!(receipts[0].outcome, Ok(Applied::Resolved(a)));
        assert_eq!(receipts[1].outcome, Ok(Applied::Resolved(a)), "forgetting twice is idempotent");
        assert_eq!(receipts[2].outcome, Err(Rejection::Forgotten));
    }

    fn consent(change: crate::store::ConsentChange) -> Command {
        command(Change::Consent(change))
    }

    fn agreement(brief: &str, status: &str, when: u64) -> crate::store::Agreement {
        crate::store::Agreement {
            brief: brief.into(),
            status: status.into(),
            creationtime: when,
            when,
            starttime: 0,
            endtime: 0,
            mode: "email".into(),
            agreementmethod: "banner".into(),
            referencecode: String::new(),
            lastmodifiedby: String::new(),
        }
    }

    fn basis(brief: &str) -> Command {
        consent(crate::store::ConsentChange::PutLegalBasis {
            brief: brief.into(),
            basis: crate::store::LegalBasis {
                brief: brief.into(),
                status: "active".into(),
                module: String::new(),
                shortdesc: String::new(),
                fulldesc: String::new(),
                basistype: String::new(),
                requiredmsg: String::new(),
                usercontrol: false,
                requiredflag: false,
                creationtime: 0,
            },
        })
    }

    fn entry(kind: IndexKind, byte: u8) -> Vec<u8> {
        let mut entry = vec![kind as u8];
        entry.extend_from_slice(&[byte; 32]);
        entry
    }

    fn sealed_identity(byte: u8) -> crate::store::PendingIdentity {
        crate::store::PendingIdentity { kek: "k".into(), wrapped_key: vec![byte], sealed: vec![byte, byte] }
    }

    fn put_pending(entry: &[u8], agreement: crate::store::Agreement, identity: u8) -> Command {
        consent(crate::store::ConsentChange::PutByIdentifier {
            entry: entry.to_vec(),
            agreement,
            identity: Some(sealed_identity(identity)),
        })
    }

    fn read_pending(entry: &[u8], brief: Option<&str>) -> Command {
        consent(crate::store::ConsentChange::ReadByIdentifier { entry: entry.to_vec(), brief: brief.map(String::from) })
    }

    fn statuses(outcome: &Outcome) -> Vec<(String, String)> {
        match outcome {
            Ok(Applied::PendingAgreements { agreements } | Applied::Agreements { agreements, .. }) => {
                agreements.iter().map(|a| (a.brief.clone(), a.status.clone())).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(b, s)| (b.to_string(), s.to_string())).collect()
    }

    #[test]
    fn agreements_by_an_unknown_identifier_are_kept_and_taken_over_by_its_subject() {
        let (_dir, mut machine) = machine();
        let (email, phone, other) =
            (entry(IndexKind::Email, 1), entry(IndexKind::Phone, 2), entry(IndexKind::Email, 3));
        apply(&mut machine, &[basis("news"), basis("ads"), basis("stats")]);
        let receipts = apply(
            &mut machine,
            &[
                read_pending(&email, None),
                put_pending(&email, agreement("nope", "yes", 10), 1),
                put_pending(&email, agreement("ads", "no", 10), 1),
                put_pending(&email, agreement("news", "yes", 10), 1),
                put_pending(&email, agreement("ads", "yes", 11), 9),
                put_pending(&phone, agreement("ads", "yes", 8), 2),
                put_pending(&phone, agreement("ads", "no", 9), 2),
                put_pending(&phone, agreement("stats", "yes", 12), 2),
                put_pending(&other, agreement("news", "yes", 13), 3),
                read_pending(&email, Some("stats")),
            ],
        );
        assert_eq!(receipts[0].outcome, Err(Rejection::SubjectNotFound), "nothing kept yet");
        assert_eq!(receipts[1].outcome, Err(Rejection::UnknownBrief));
        assert_eq!(receipts[2].outcome, Err(Rejection::UnknownBrief), "nothing to withdraw");
        assert_eq!(receipts[6].outcome, Ok(Applied::Done), "withdrawing what this batch agreed to");
        assert_eq!(receipts[9].outcome, Err(Rejection::UnknownBrief));
        let store = machine.store().clone();
        assert_eq!(store.pending_identity(&email).unwrap(), Some(sealed_identity(1)), "the first identity stays");
        let receipts = apply(&mut machine, &[read_pending(&email, None), read_pending(&phone, Some("stats"))]);
        assert_eq!(statuses(&receipts[0].outcome), pairs(&[("ads", "yes"), ("news", "yes")]));
        assert_eq!(statuses(&receipts[1].outcome), pairs(&[("stats", "yes")]));
        let (_, events) = store.audit_all(0, 1).unwrap();
        assert_eq!((events[0].subject, events[0].result.as_str()), (None, "ok"));

        // Revoking and renaming a basis reach kept agreements too.
        let rename = consent(crate::store::ConsentChange::PutLegalBasis {
            brief: "ads".into(),
            basis: crate::store::LegalBasis { brief: "adverts".into(), ..basis_record("adverts") },
        });
        let revoke = consent(crate::store::ConsentChange::RevokeBasis { brief: "news".into() });
        apply(&mut machine, &[rename, revoke]);
        let receipts = apply(&mut machine, &[read_pending(&email, None), read_pending(&phone, None)]);
        assert_eq!(statuses(&receipts[0].outcome), pairs(&[("adverts", "yes"), ("news", "revoked")]));
        assert_eq!(statuses(&receipts[1].outcome), pairs(&[("adverts", "no"), ("stats", "yes")]));

        // A subject created with both identifiers takes over both sets in the same step;
        // of two agreements to one basis the one changed last wins.
        let a = Uuid::new_v4();
        let receipts = apply(
            &mut machine,
            &[
                create(a, vec![email.clone(), phone.clone()]),
                read_pending(&email, None),
                consent(crate::store::ConsentChange::ReadAgreements { target: Target::Token(a), brief: None }),
            ],
        );
        assert_eq!(receipts[0].outcome, Ok(Applied::Done));
        assert!(matches!(&receipts[1].outcome, Ok(Applied::Agreements { subject, .. }) if *subject == a));
        assert_eq!(statuses(&receipts[2].outcome), pairs(&[("adverts", "yes"), ("news", "revoked"), ("stats", "yes")]));
        assert_eq!(store.pending_identity(&email).unwrap(), None, "the sealed identifiers went");
        assert_eq!(store.pending_identity(&phone).unwrap(), None);
        assert_eq!(store.pending_identity(&other).unwrap(), Some(sealed_identity(3)), "another's stays");
        let leftover = |prefix: u8| store.state_tree().scan_prefix([prefix]).count();
        assert_eq!((leftover(b'e'), leftover(b'z')), (1, 1), "only the other identifier's agreement is kept");
        // Revoking still reaches the moved agreements, through the subject's index.
        apply(&mut machine, &[consent(crate::store::ConsentChange::RevokeBasis { brief: "stats".into() })]);
        let receipts = apply(&mut machine, &[read_pending(&phone, Some("stats"))]);
        assert_eq!(statuses(&receipts[0].outcome), pairs(&[("stats", "revoked")]));
    }

    fn basis_record(brief: &str) -> crate::store::LegalBasis {
        match basis(brief).change {
            Change::Consent(crate::store::ConsentChange::PutLegalBasis { basis, .. }) => basis,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_identifier_gained_by_an_update_brings_its_kept_agreements_and_forget_keeps_them() {
        let (_dir, mut machine) = machine();
        let (login, email, forgotten) =
            (entry(IndexKind::Login, 1), entry(IndexKind::Email, 2), entry(IndexKind::Email, 3));
        let a = Uuid::new_v4();
        apply(&mut machine, &[basis("news"), create(a, vec![login.clone()])]);
        let own = consent(crate::store::ConsentChange::PutAgreement {
            target: Target::Token(a),
            agreement: agreement("news", "yes", 20),
        });
        apply(&mut machine, &[own, put_pending(&email, agreement("news", "no", 15), 1)]);
        apply(&mut machine, &[put_pending(&email, agreement("news", "yes", 10), 1)]);
        let update = command(Change::UpdateSubject {
            subject: a,
            expected_version: 1,
            profile: vec![3],
            index: vec![login.clone(), email.clone()],
        });
        apply(&mut machine, &[update]);
        let receipts = apply(&mut machine, &[read_pending(&email, None)]);
        assert_eq!(statuses(&receipts[0].outcome), pairs(&[("news", "yes")]), "the subject's own was newer");
        assert_eq!(machine.store().pending_identity(&email).unwrap(), None);

        // Forget-me of an identifier with kept agreements drops its sealed identifier only.
        apply(&mut machine, &[put_pending(&forgotten, agreement("news", "yes", 30), 4)]);
        let forget = |entry: &[u8]| {
            let mut command = command(Change::ForgetSubject {
                target: Target::Index(entry.to_vec()),
                condition: ForgetCondition::Always,
            });
            command.audit.operation = Operation::UserForget;
            command
        };
        let nobody = entry(IndexKind::Phone, 9);
        let receipts = apply(&mut machine, &[forget(&forgotten), forget(&forgotten), forget(&nobody)]);
        assert_eq!(receipts[0].outcome, Ok(Applied::Done));
        assert_eq!(receipts[1].outcome, Ok(Applied::Done), "forgetting twice is idempotent");
        assert_eq!(receipts[2].outcome, Err(Rejection::SubjectNotFound));
        let store = machine.store();
        assert_eq!(store.pending_identity(&forgotten).unwrap(), None);
        assert!(store.erasures_after(0).unwrap().0 > 0, "an erasure, to be compacted out of the log");
        let receipts = apply(&mut machine, &[read_pending(&forgotten, None)]);
        assert_eq!(statuses(&receipts[0].outcome), pairs(&[("news", "yes")]), "the evidence stays");
    }
}
