//! Applies commands to the state tree. Every replica applies the same commands in the same
//! log order, so application is deterministic: times and ids come from the command, never
//! from the applying node. A transaction covers one or more log entries; after a crash
//! either all of its commands and audit events are stored, or none (`redo`). A rejected
//! command writes only its audit event.
//!
//! This file holds transactions, the audit chain and the dispatch of each command to the
//! file of its feature (`users`, `apps`, `sessions`, ... — the names of `api/` and
//! `vault/`), with the helpers they share.

use std::sync::Arc;

use uuid::Uuid;

mod apps;
mod cluster;
mod consent;
mod expiration;
mod ledger;
mod pending;
mod retention;
mod sessions;
mod shares;
mod subject_requests;
mod tokens;
mod users;

use super::command::{Applied, Change, Command, ForgetCondition, Receipt, Rejection, Target};
use super::records::{decode, encode, ActiveSubject, SubjectRecord, SubjectState};
use super::redo::RedoLog;
use super::staged::Staged;
use super::tree_cut::TreeCuts;
use super::{keys, AuditHead, Store, StoreError, SubjectAuditHead};
use crate::audit::AuditEvent;
use crate::crypto::DekCache;
use crate::identifiers::IndexKind;

type Outcome = Result<Applied, Rejection>;
/// An outcome and the subject the command resolved to, for its audit event.
type Applies = Result<(Outcome, Option<Uuid>), StoreError>;

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
        if let (Ok(_), Some((subject, erasure))) = (&outcome, ledger::erasure_of(&command.change, resolved)) {
            ledger::append(&mut self.staged, subject, erasure, command.audit.time)?;
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

/// Applies one change; also returns the subject it resolved to, for the audit event.
/// `audit_seq` is the sequence number the change's audit event will get.
fn apply_change(staged: &mut Staged, change: &Change, now: u64, audit_seq: u64) -> Applies {
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
        | Change::MinimiseSubject { subject, .. }
        | Change::PutApp { subject, .. }
        | Change::StartExpiration { subject, .. } => Some(*subject),
        _ => None,
    };
    // Changes that name their subject in another way, or none, answer it themselves.
    let outcome = match (change, resolved) {
        (Change::Access { .. }, _) => Ok(Applied::Done),
        (Change::InitIndexKey { key }, _) => users::init_index_key(staged, key)?,
        (Change::ReadSubject { .. }, Some(subject)) => users::read_subject(staged, subject)?,
        (Change::CreateSubject { subject, kek, wrapped_dek, profile, index }, _) => {
            users::create(staged, users::NewSubject { subject, kek, wrapped_dek, profile, index }, now)?
        }
        (Change::UpdateSubject { subject, expected_version, profile, index }, _)
        | (Change::MinimiseSubject { subject, expected_version, profile, index, .. }, _) => {
            users::update(staged, subject, *expected_version, profile, index, now)?
        }
        (Change::ForgetSubject { condition, .. }, Some(subject)) => {
            return users::forget(staged, subject, *condition, now)
        }

        (Change::ReadApp { app, .. }, Some(subject)) => apps::read_app(staged, subject, app)?,
        (Change::PutApp { subject, app, sealed, expected_version }, _) => {
            apps::put(staged, subject, app, sealed, *expected_version, now)?
        }
        (Change::DeleteApp { app, expected_version, .. }, Some(subject)) => {
            apps::delete(staged, subject, app, *expected_version)?
        }

        (Change::StartExpiration { subject, expected_version, replace, expiration }, _) => {
            expiration::start(staged, subject, *expected_version, *replace, expiration)?
        }
        (Change::CancelExpiration { .. }, Some(subject)) => expiration::cancel(staged, subject)?,
        (Change::RetainData { .. }, Some(subject)) => expiration::retain(staged, subject)?,

        (Change::PutSession { session, record, may_take }, _) => {
            return sessions::put(staged, session, record, *may_take)
        }
        (Change::ReadSession { session, owner }, _) => return sessions::read_one(staged, session, *owner, now),
        (Change::DeleteSession { session, only_if_ended, owner }, _) => {
            return sessions::delete(staged, session, *only_if_ended, *owner, now)
        }
        (Change::ReadSessions { offset, limit, .. }, Some(subject)) => {
            return sessions::read_page(staged, subject, *offset, *limit, now)
        }

        (Change::ShareRecord { hash, record }, _) => return shares::create(staged, hash, record, now),
        (Change::ReadShared { hash }, _) => return shares::read_one(staged, hash, now),
        (Change::DeleteEndedShare { hash }, _) => return shares::delete_ended(staged, hash, now),

        (Change::Consent(consent), _) => consent::apply(staged, consent, resolved)?,

        (Change::FileRequest { rtoken, record }, _) => {
            return Ok((subject_requests::file(staged, rtoken, record)?, Some(record.subject)))
        }
        (Change::ReadRequest { rtoken, owner }, _) => return subject_requests::read_one(staged, rtoken, *owner),
        (Change::ReadRequests { target, status, offset, limit }, _) => {
            return subject_requests::read_page(staged, target.as_ref(), *status, *offset, *limit)
        }
        (Change::ResolveRequest { rtoken, approve, reason, owner, then }, _) => {
            return subject_requests::resolve_request(
                staged,
                rtoken,
                *approve,
                reason,
                *owner,
                then.as_deref(),
                now,
                audit_seq,
            )
        }

        (Change::RecordRetentionRun { report }, _) => retention::record_run(staged, report, audit_seq)?,
        (Change::CreateAccessToken { token }, _) => tokens::create(staged, token)?,
        (Change::RevokeAccessToken { id, secret_hash }, _) => tokens::revoke(staged, id, secret_hash)?,
        (Change::AllocateNodeId, _) => cluster::allocate_node_id(staged)?,
        (Change::RetireRootToken, _) => tokens::retire_root(staged)?,

        // Every target-carrying change resolved above or returned.
        (Change::ReadSubject { .. } | Change::ReadApp { .. } | Change::ForgetSubject { .. }, None)
        | (Change::DeleteApp { .. } | Change::CancelExpiration { .. } | Change::RetainData { .. }, None)
        | (Change::ReadSessions { .. }, None) => Err(Rejection::SubjectNotFound),
    };
    Ok((outcome, resolved))
}

#[cfg(test)]
mod tests;
