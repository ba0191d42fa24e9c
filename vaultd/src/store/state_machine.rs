//! Applies commands to the sled trees. Each batch is one sled transaction: either every
//! accepted command of the batch and every audit event is stored, or nothing is. A
//! rejected command writes only its audit event. Application is deterministic (times
//! and ids come from the command), so replicas that apply the same commands agree.

use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use uuid::Uuid;

use super::command::{Applied, Change, Command, Receipt, Rejection};
use super::records::{decode, encode, AccessTokenRecord, ActiveSubject, AppRecord, SubjectRecord, SubjectState};
use super::*;
use crate::audit::AuditEvent;
use crate::crypto::DekCache;
use crate::identity::IndexKind;

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

pub struct StateMachine {
    store: Store,
    head: AuditHead,
    /// Forgetting a subject must also drop its unwrapped DEK from memory.
    dek_cache: Arc<DekCache>,
}

impl StateMachine {
    pub fn new(store: Store, dek_cache: Arc<DekCache>) -> Result<Self, StoreError> {
        let head = store.audit_head()?;
        Ok(StateMachine { store, head, dek_cache })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies a batch atomically; one receipt per command, in order.
    pub fn apply_batch(&mut self, commands: &[Command]) -> Result<Vec<Receipt>, StoreError> {
        let start = self.head.clone();
        let result = self.store.trees.as_slice().transaction(|trees| {
            let mut head = start.clone();
            let mut receipts = Vec::with_capacity(commands.len());
            let mut events = Vec::with_capacity(commands.len());
            for command in commands {
                let outcome = apply_change(trees, &command.change, command.audit.time)?;
                let result = match (&outcome, &command.change) {
                    (Ok(_), Change::Access { found: false }) => "not-found".to_string(),
                    (Ok(_), _) => "ok".to_string(),
                    (Err(rejection), _) => rejection.audit_result(),
                };
                let event = AuditEvent::chain(command.audit.clone(), head.seq + 1, result, &head.hash);
                head = AuditHead { seq: event.seq, hash: event.hash.clone() };
                receipts.push(Receipt { outcome, audit_seq: head.seq });
                events.push(event);
            }
            append_audit_block(trees, &events)?;
            trees[META].insert(META_AUDIT_HEAD, encode(&head).map_err(abort)?)?;
            Ok((receipts, head))
        });
        let (receipts, head) = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        })?;
        self.head = head;
        for (command, receipt) in commands.iter().zip(&receipts) {
            if let (Change::ForgetSubject { subject }, Ok(_)) = (&command.change, &receipt.outcome) {
                self.dek_cache.remove(subject);
            }
        }
        Ok(receipts)
    }
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn read<T: serde::de::DeserializeOwned>(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<T>> {
    tree.get(key)?.map(|v| decode(&v)).transpose().map_err(abort)
}

fn write<T: serde::Serialize>(tree: &TransactionalTree, key: &[u8], value: &T) -> TxResult<()> {
    tree.insert(key, encode(value).map_err(abort)?)?;
    Ok(())
}

/// Events per stored audit block: small enough that a block stays inline in sled's log.
const AUDIT_BLOCK_EVENTS: usize = 64;

/// Stores a batch's events in blocks keyed by their first sequence number, and indexes
/// each event under its subject.
fn append_audit_block(trees: &[TransactionalTree], events: &[AuditEvent]) -> TxResult<()> {
    for block in events.chunks(AUDIT_BLOCK_EVENTS) {
        let json = serde_json::to_vec(block).map_err(|_| abort(StoreError::Encoding))?;
        trees[AUDIT].insert(&block[0].seq.to_be_bytes(), json)?;
    }
    for event in events {
        if let Some(subject) = &event.subject {
            let mut key = subject.as_bytes().to_vec();
            key.extend_from_slice(&event.seq.to_be_bytes());
            trees[AUDIT_BY_SUBJECT].insert(key, &[])?;
        }
    }
    Ok(())
}

/// The first blind-index entry already held by another subject.
fn first_duplicate(trees: &[TransactionalTree], subject: &Uuid, index: &[Vec<u8>]) -> TxResult<Option<Rejection>> {
    for entry in index {
        if let Some(owner) = trees[INDEX].get(entry)? {
            if owner.as_ref() != subject.as_bytes() {
                let kind =
                    entry.first().and_then(|b| IndexKind::from_byte(*b)).ok_or_else(|| abort(StoreError::Corrupt))?;
                return Ok(Some(Rejection::Duplicate(kind)));
            }
        }
    }
    Ok(None)
}

/// The active state of a subject, or why there is none.
fn active(trees: &[TransactionalTree], subject: &Uuid) -> TxResult<Result<(SubjectRecord, ActiveSubject), Rejection>> {
    let Some(record) = read::<SubjectRecord>(&trees[SUBJECTS], subject.as_bytes())? else {
        return Ok(Err(Rejection::SubjectNotFound));
    };
    match record.state.clone() {
        SubjectState::Active(active) => Ok(Ok((record, active))),
        SubjectState::Forgotten { .. } => Ok(Err(Rejection::Forgotten)),
    }
}

macro_rules! reject_unless {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(rejection) => return Ok(Err(rejection)),
        }
    };
}

fn apply_change(trees: &[TransactionalTree], change: &Change, now: u64) -> TxResult<Result<Applied, Rejection>> {
    match change {
        Change::Access { .. } => Ok(Ok(Applied::Done)),

        Change::InitIndexKey { key } => match read(&trees[META], META_INDEX_KEY)? {
            Some(existing) => Ok(Ok(Applied::IndexKey(existing))),
            None => {
                write(&trees[META], META_INDEX_KEY, key)?;
                Ok(Ok(Applied::IndexKey(key.clone())))
            }
        },

        Change::CreateSubject { subject, kek, wrapped_dek, profile, index } => {
            if trees[SUBJECTS].get(subject.as_bytes())?.is_some() {
                return Ok(Err(Rejection::Exists));
            }
            if let Some(rejection) = first_duplicate(trees, subject, index)? {
                return Ok(Err(rejection));
            }
            for entry in index {
                trees[INDEX].insert(entry.as_slice(), subject.as_bytes())?;
            }
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
            };
            write(&trees[SUBJECTS], subject.as_bytes(), &record)?;
            Ok(Ok(Applied::Done))
        }

        Change::UpdateSubject { subject, expected_version, profile, index } => {
            let (mut record, mut state) = reject_unless!(active(trees, subject)?);
            if record.version != *expected_version {
                return Ok(Err(Rejection::Stale));
            }
            if let Some(rejection) = first_duplicate(trees, subject, index)? {
                return Ok(Err(rejection));
            }
            for old in &state.index {
                trees[INDEX].remove(old.as_slice())?;
            }
            for entry in index {
                trees[INDEX].insert(entry.as_slice(), subject.as_bytes())?;
            }
            state.profile = profile.clone();
            state.index = index.clone();
            record.updated = now;
            record.version += 1;
            record.state = SubjectState::Active(state);
            write(&trees[SUBJECTS], subject.as_bytes(), &record)?;
            Ok(Ok(Applied::Done))
        }

        Change::ForgetSubject { subject } => {
            let (mut record, state) = match active(trees, subject)? {
                Ok(found) => found,
                // Forgetting twice is not an error: the subject is forgotten either way.
                Err(Rejection::Forgotten) => return Ok(Ok(Applied::Done)),
                Err(rejection) => return Ok(Err(rejection)),
            };
            for entry in &state.index {
                trees[INDEX].remove(entry.as_slice())?;
            }
            for app in &state.apps {
                trees[APPS].remove(app_key(subject, app))?;
            }
            record.updated = now;
            record.version += 1;
            record.state = SubjectState::Forgotten { at: now };
            write(&trees[SUBJECTS], subject.as_bytes(), &record)?;
            Ok(Ok(Applied::Done))
        }

        Change::PutApp { subject, app, sealed, expected_version } => {
            let (mut record, mut state) = reject_unless!(active(trees, subject)?);
            let key = app_key(subject, app);
            let existing = read::<AppRecord>(&trees[APPS], &key)?;
            let app_record = match (existing, expected_version) {
                (None, Some(_)) => return Ok(Err(Rejection::AppNotFound)),
                (Some(current), Some(expected)) if current.version != *expected => return Ok(Err(Rejection::Stale)),
                (Some(current), _) => {
                    AppRecord { updated: now, version: current.version + 1, sealed: sealed.clone(), ..current }
                }
                (None, None) => AppRecord { created: now, updated: now, version: 1, sealed: sealed.clone() },
            };
            write(&trees[APPS], &key, &app_record)?;
            trees[APP_NAMES].insert(app.as_bytes(), &[])?;
            if !state.apps.contains(app) {
                state.apps.push(app.clone());
                state.apps.sort();
                record.state = SubjectState::Active(state);
                write(&trees[SUBJECTS], subject.as_bytes(), &record)?;
            }
            Ok(Ok(Applied::Done))
        }

        Change::DeleteApp { subject, app } => {
            let (mut record, mut state) = reject_unless!(active(trees, subject)?);
            if trees[APPS].remove(app_key(subject, app))?.is_none() {
                return Ok(Err(Rejection::AppNotFound));
            }
            state.apps.retain(|a| a != app);
            record.state = SubjectState::Active(state);
            write(&trees[SUBJECTS], subject.as_bytes(), &record)?;
            Ok(Ok(Applied::Done))
        }

        Change::CreateAccessToken { token } => {
            if trees[TOKENS].get(token.secret_hash)?.is_some() {
                return Ok(Err(Rejection::Exists));
            }
            write(&trees[TOKENS], &token.secret_hash, token)?;
            Ok(Ok(Applied::Done))
        }

        Change::RevokeAccessToken { id, secret_hash } => {
            match read::<AccessTokenRecord>(&trees[TOKENS], secret_hash)? {
                Some(token) if token.id == *id => {
                    trees[TOKENS].remove(secret_hash)?;
                    Ok(Ok(Applied::Done))
                }
                _ => Ok(Err(Rejection::TokenNotFound)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditDraft, Operation};

    fn machine() -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        (dir, StateMachine::new(store, Arc::new(DekCache::new(8))).unwrap())
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
        let receipts = machine.apply_batch(&[create(a, vec![email.clone()]), create(b, vec![email.clone()])]).unwrap();
        assert_eq!(receipts[0].outcome, Ok(Applied::Done));
        assert_eq!(receipts[1].outcome, Err(Rejection::Duplicate(IndexKind::Email)));
        let store = machine.store();
        assert_eq!(store.lookup(&email).unwrap(), Some(a));
        assert!(store.subject(&b).unwrap().is_none(), "the rejected create wrote nothing");
        let (total, events) = store.audit_all(0, 10).unwrap();
        assert_eq!(total, 2, "both attempts are audited");
        assert_eq!(events[0].result, "rejected: duplicate email");
        assert!(store.verify_audit().unwrap().intact);
    }

    #[test]
    fn audit_reads_span_blocks() {
        let (_dir, mut machine) = machine();
        let subject = Uuid::new_v4();
        let mut reads: Vec<Command> = (0..150).map(|_| command(Change::Access { found: true })).collect();
        for read in &mut reads {
            read.audit.subject = Some(subject);
        }
        machine.apply_batch(&reads).unwrap();
        let store = machine.store();
        assert_eq!(store.raw_audit_tree().len(), 3, "150 events make blocks of 64, 64 and 22");
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
    fn stale_updates_and_forgotten_subjects_are_refused() {
        let (_dir, mut machine) = machine();
        let a = Uuid::new_v4();
        let login = vec![IndexKind::Login as u8, 1];
        machine.apply_batch(&[create(a, vec![login.clone()])]).unwrap();
        let update = |version| {
            command(Change::UpdateSubject { subject: a, expected_version: version, profile: vec![3], index: vec![] })
        };
        let receipts = machine.apply_batch(&[update(1), update(1)]).unwrap();
        assert_eq!(receipts[0].outcome, Ok(Applied::Done));
        assert_eq!(receipts[1].outcome, Err(Rejection::Stale), "the second writer read version 1 too");
        assert_eq!(machine.store().lookup(&login).unwrap(), None, "the update dropped the login");

        let forget = command(Change::ForgetSubject { subject: a });
        let receipts = machine.apply_batch(&[forget.clone(), forget, update(3)]).unwrap();
        assert_eq!(receipts[0].outcome, Ok(Applied::Done));
        assert_eq!(receipts[1].outcome, Ok(Applied::Done), "forgetting twice is idempotent");
        assert_eq!(receipts[2].outcome, Err(Rejection::Forgotten));
    }
}
