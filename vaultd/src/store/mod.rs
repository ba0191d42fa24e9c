//! Durable vault state: the replicated state tree in sled, the audit trail in its own
//! append-only files (`audit_trail`), the reads request handlers make from both, and the
//! `StateMachine` that applies `Command`s to them. The Raft log that orders the commands
//! is `crate::cluster`'s.

mod audit_trail;
mod command;
pub mod format;
pub(crate) mod framing;
pub(crate) mod keys;
mod records;
mod redo;
mod staged;
mod state_machine;
mod tree_cut;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

pub use audit_trail::TrailCut;
pub use command::{
    Applied, Batch, Change, Command, ConsentChange, ForgetCondition, Receipt, Rejection, Target, WrappedKey,
};
pub use records::{
    decode, encode, AccessTokenRecord, ActiveSubject, Agreement, AppRecord, Erasure, Expiration, ExpirationStatus,
    LedgerEntry, LegalBasis, PendingIdentity, ProcessingActivity, RequestAction, RequestRecord, RequestStatus,
    SessionRecord, SharedRecord, SubjectRecord, SubjectState,
};
pub use state_machine::{StateMachine, Transaction};
pub use tree_cut::{Cut, TreeCuts};

pub(crate) use audit_trail::AuditTrail;

use strongroom_admin_api::retention::RunReport;

use crate::audit::{self, AuditEvent, Verification};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record cannot be decoded")]
    Corrupt,
    #[error("record cannot be encoded")]
    Encoding,
    #[error("file system error: {0}")]
    Io(#[from] std::io::Error),
    #[error("this data directory has data format {}, and this vaultd reads format {expected}: start on an empty data directory (a cluster node catches up by snapshot) or use the vaultd that wrote it", found.map_or("1 or unknown".to_string(), |n| n.to_string()))]
    Format { found: Option<u32>, expected: u32 },
}

/// sled's page cache when nothing else is configured (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 96 * 1024 * 1024;

/// The vault's sled database. Cheap to clone; reads go straight to sled.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    state: sled::Tree,
    durability: Arc<Durability>,
    audit: Arc<AuditTrail>,
}

impl Store {
    /// Opens (or creates) the database in `dir`; `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let path = dir.join("vault.sled");
        format::check_or_create(dir, &path)?;
        let db = sled::Config::new().path(&path).cache_capacity(cache_bytes).mode(sled::Mode::HighThroughput).open()?;
        let state = db.open_tree("state")?;
        let durability = Arc::new(Durability::open(&path)?);
        let audit = Arc::new(AuditTrail::open(&dir.join("audit"))?);
        Ok(Store { db, state, durability, audit })
    }

    /// The database, for the Raft log's own trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The replicated state: everything a snapshot holds.
    pub fn state_tree(&self) -> &sled::Tree {
        &self.state
    }

    /// Makes the state written so far durable: on the disk, not in a cache. The audit
    /// trail is synced by snapshots (which is all a log purge needs) and at shutdown, not
    /// here: this runs on Raft's own path (votes, purges).
    pub fn flush(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.db.flush()?;
        self.durability.sync()?;
        crate::metrics::instruments().state_flush.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.state.get(key)?.map(|v| decode(&v)).transpose()
    }

    pub fn subject(&self, subject: &Uuid) -> Result<Option<SubjectRecord>, StoreError> {
        self.get(&keys::subject(subject))
    }

    /// The subject that holds a blind-index entry.
    pub fn lookup(&self, entry: &[u8]) -> Result<Option<Uuid>, StoreError> {
        self.uuid_at(&keys::index(entry))
    }

    /// The sealed identifier behind a blind-index entry that has agreements but no
    /// subject (consent before sign-up), until it is forgotten or the subject is created.
    pub fn pending_identity(&self, entry: &[u8]) -> Result<Option<PendingIdentity>, StoreError> {
        self.get(&keys::pending_identity(entry))
    }

    fn uuid_at(&self, key: &[u8]) -> Result<Option<Uuid>, StoreError> {
        self.state.get(key)?.map(|v| Uuid::from_slice(&v).map_err(|_| StoreError::Corrupt)).transpose()
    }

    /// The subject whose pending expiration has an exptoken with this SHA-256.
    pub fn subject_by_exptoken(&self, hash: &[u8; 32]) -> Result<Option<Uuid>, StoreError> {
        self.uuid_at(&keys::exp_token(hash))
    }

    /// The share whose record id has this SHA-256, ended or not.
    pub fn shared(&self, hash: &[u8; 32]) -> Result<Option<SharedRecord>, StoreError> {
        self.get(&keys::shared(hash))
    }

    pub fn app(&self, subject: &Uuid, app: &str) -> Result<Option<AppRecord>, StoreError> {
        self.get(&keys::app(subject, app))
    }

    /// Every app name any subject has a record for, sorted.
    pub fn app_names(&self) -> Result<Vec<String>, StoreError> {
        self.state
            .scan_prefix([keys::APP_NAME])
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?[1..]).into_owned()))
            .collect()
    }

    /// Active subjects in token order, from `offset`, at most `limit`, and how many
    /// active subjects there are in all.
    pub fn subjects(&self, offset: usize, limit: usize) -> Result<(usize, Vec<(Uuid, SubjectRecord)>), StoreError> {
        let mut total = 0;
        let mut page = Vec::new();
        for item in self.state.scan_prefix([keys::SUBJECT]) {
            let (key, value) = item?;
            let record: SubjectRecord = decode(&value)?;
            if matches!(record.state, SubjectState::Active(_)) {
                if total >= offset && page.len() < limit {
                    page.push((Uuid::from_slice(&key[1..]).map_err(|_| StoreError::Corrupt)?, record));
                }
                total += 1;
            }
        }
        Ok((total, page))
    }

    /// Every subject record (active and forgotten), in token order, read lazily.
    pub fn subject_records(&self) -> impl Iterator<Item = Result<(Uuid, SubjectRecord), StoreError>> + '_ {
        self.state.scan_prefix([keys::SUBJECT]).map(|item| {
            let (key, value) = item?;
            Ok((Uuid::from_slice(&key[1..]).map_err(|_| StoreError::Corrupt)?, decode(&value)?))
        })
    }

    /// Subjects whose expiration ended at or before `now` (ms) and still counts down,
    /// earliest first, at most `limit`.
    pub fn due_expirations(&self, now: u64, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        self.due(keys::EXP_DUE, keys::exp_due(now, &Uuid::max()), limit, keys::trailing_uuid)
    }

    /// Sessions that ended at or before `now` (ms), earliest first, at most `limit`.
    pub fn ended_sessions(&self, now: u64, limit: usize) -> Result<Vec<Uuid>, StoreError> {
        self.due(keys::SESSION_DUE, keys::session_due(now, &Uuid::max()), limit, keys::trailing_uuid)
    }

    /// Shared records that ended at or before `now` (ms), earliest first, at most `limit`:
    /// the SHA-256s of their ids.
    pub fn ended_shares(&self, now: u64, limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
        self.due(keys::SHARED_DUE, keys::shared_due(now, &[0xff; 32]), limit, keys::trailing_hash)
    }

    /// The ids in a time index (`prefix` + end time + id) up to the key `last`, earliest
    /// first, at most `limit`.
    fn due<T>(
        &self,
        prefix: u8,
        last: Vec<u8>,
        limit: usize,
        id: fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.state
            .range(vec![prefix]..=last)
            .keys()
            .take(limit)
            .map(|key| id(&key?).ok_or(StoreError::Corrupt))
            .collect()
    }

    pub fn request(&self, rtoken: &Uuid) -> Result<Option<RequestRecord>, StoreError> {
        self.get(&keys::request(rtoken))
    }

    /// How many sessions are linked to a subject.
    pub fn sessions_of(&self, subject: &Uuid) -> Result<usize, StoreError> {
        self.count_prefix(&keys::sessions_of_subject(subject))
    }

    /// How many shared records of a subject's data there are.
    pub fn shares_of(&self, subject: &Uuid) -> Result<usize, StoreError> {
        self.count_prefix(&keys::shared_of_subject_prefix(subject))
    }

    /// Whether `session` is linked to `subject`.
    pub fn is_session_of(&self, subject: &Uuid, session: &Uuid) -> Result<bool, StoreError> {
        Ok(self.state.contains_key(keys::session_of_subject(subject, session))?)
    }

    fn count_prefix(&self, prefix: &[u8]) -> Result<usize, StoreError> {
        let mut count = 0;
        for key in self.state.scan_prefix(prefix).keys() {
            key?;
            count += 1;
        }
        Ok(count)
    }

    /// How many of a subject's requests still wait for a DPO.
    pub fn open_requests_of(&self, subject: &Uuid) -> Result<usize, StoreError> {
        self.count_prefix(&keys::open_requests_of(subject))
    }

    /// Every legal basis, in brief order.
    pub fn legal_bases(&self) -> Result<Vec<LegalBasis>, StoreError> {
        self.state.scan_prefix([keys::LEGAL_BASIS]).values().map(|v| decode(&v?)).collect()
    }

    /// Every processing activity, in name order.
    pub fn activities(&self) -> Result<Vec<ProcessingActivity>, StoreError> {
        self.state.scan_prefix([keys::ACTIVITY]).values().map(|v| decode(&v?)).collect()
    }

    /// Recorded retention runs, newest first, at most `limit`: of one policy, or of all.
    /// Each comes with the sequence number of the audit event that records it.
    pub fn retention_runs(&self, policy: Option<&str>, limit: usize) -> Result<Vec<(u64, RunReport)>, StoreError> {
        let prefix = policy.map_or_else(|| vec![keys::RETENTION_RUN], keys::retention_runs);
        let mut runs = self
            .state
            .scan_prefix(prefix)
            .map(|item| {
                let (key, value) = item?;
                Ok((keys::trailing_seq(&key), decode(&value)?))
            })
            .collect::<Result<Vec<(u64, RunReport)>, StoreError>>()?;
        runs.sort_by_key(|run| std::cmp::Reverse(run.0));
        runs.truncate(limit);
        Ok(runs)
    }

    /// Each policy's newest recorded run, in policy order: one seek per policy (the key
    /// after all of a policy's runs is its name followed by a 1 byte).
    pub fn last_retention_runs(&self) -> Result<Vec<RunReport>, StoreError> {
        let end = vec![keys::RETENTION_RUN + 1];
        let mut from = vec![keys::RETENTION_RUN];
        let mut last = Vec::new();
        while let Some((key, _)) = self.state.range(from.clone()..end.clone()).next().transpose()? {
            let name_end = key.iter().skip(1).position(|byte| *byte == 0).ok_or(StoreError::Corrupt)? + 1;
            let policy = &key[..name_end + 1];
            if let Some((_, value)) = self.state.scan_prefix(policy).next_back().transpose()? {
                last.push(decode(&value)?);
            }
            from = [&key[..name_end], &[1]].concat();
        }
        Ok(last)
    }

    /// A value the cluster layer stored with `Transaction::put_meta`.
    pub fn meta(&self, name: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.state.get(keys::meta(name))?)
    }

    /// Erasures applied at log indexes after `index`: how many, and when the oldest was
    /// applied (ms since the epoch).
    pub fn erasures_after(&self, index: u64) -> Result<(u64, Option<u64>), StoreError> {
        let mut count = 0;
        let mut oldest = None;
        for item in self.state.range(keys::erasure(index.saturating_add(1))..keys::erasure(u64::MAX)) {
            let (_, time) = item?;
            let time: u64 = decode(&time)?;
            oldest = Some(oldest.map_or(time, |t: u64| t.min(time)));
            count += 1;
        }
        Ok((count, oldest))
    }

    pub fn wrapped_index_key(&self) -> Result<Option<WrappedKey>, StoreError> {
        self.get(&keys::meta(keys::INDEX_KEY))
    }

    /// The vault's identity: set anew by a restore, otherwise derived from the wrapped
    /// index key, which the cluster makes once, when it is created. `None` before that.
    pub fn cluster_id(&self) -> Result<Option<Uuid>, StoreError> {
        if let Some(id) = self.get::<Uuid>(&keys::meta(keys::CLUSTER_ID))? {
            return Ok(Some(id));
        }
        Ok(self.wrapped_index_key()?.map(|key| cluster_id_of(&key)))
    }

    /// Ledger entries after `after`, in order, at most `limit`; and the sequence number
    /// the next entry will take.
    pub fn ledger_after(&self, after: u64, limit: usize) -> Result<(Vec<(u64, LedgerEntry)>, u64), StoreError> {
        let entries = self
            .state
            .range(keys::ledger(after.saturating_add(1))..=keys::ledger(u64::MAX))
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                Ok((keys::trailing_seq(&key), decode(&value)?))
            })
            .collect::<Result<_, StoreError>>()?;
        let next = self.get::<u64>(&keys::meta(keys::LEDGER_NEXT))?.unwrap_or(1);
        Ok((entries, next))
    }

    pub fn token_by_secret_hash(&self, hash: &[u8; 32]) -> Result<Option<AccessTokenRecord>, StoreError> {
        // Tokens are keyed by the SHA-256 of their secret: a lookup compares digests, which
        // an attacker cannot steer byte by byte, never the secret itself.
        self.get(&keys::token(hash))
    }

    /// Whether the root token was retired.
    pub fn root_retired(&self) -> Result<bool, StoreError> {
        Ok(self.state.contains_key(keys::meta(keys::ROOT_RETIRED))?)
    }

    pub fn tokens(&self) -> Result<Vec<AccessTokenRecord>, StoreError> {
        self.state.scan_prefix([keys::TOKEN]).values().map(|v| decode(&v?)).collect()
    }

    /// One event by id (Databunker's `atoken`).
    /// The audit trail's length now: events and bytes.
    pub fn audit_cut(&self) -> TrailCut {
        self.audit.cut()
    }

    pub fn audit_event(&self, id: &Uuid) -> Result<Option<AuditEvent>, StoreError> {
        let event = self.audit_event_at(audit::seq_of_id(id))?;
        Ok(event.filter(|event| event.id == *id))
    }

    /// The event with this sequence number, once its transaction is stored.
    pub fn audit_event_at(&self, seq: u64) -> Result<Option<AuditEvent>, StoreError> {
        if seq > self.audit_head()?.seq {
            return Ok(None);
        }
        self.audit.get(seq)
    }

    /// Events about one subject, newest first, with the total count: a walk from the
    /// subject's newest event along `subject_prev`.
    pub fn audit_for_subject(
        &self,
        subject: &Uuid,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<AuditEvent>), StoreError> {
        let Some(head) = self.get::<SubjectAuditHead>(&keys::subject_audit_head(subject))? else {
            return Ok((0, Vec::new()));
        };
        let total = usize::try_from(head.count).map_err(|_| StoreError::Corrupt)?;
        let mut events = Vec::with_capacity(limit.min(total));
        let mut next = Some(head.newest);
        for position in 0..offset.saturating_add(limit).min(total) {
            let seq = next.ok_or(StoreError::Corrupt)?;
            let event =
                self.audit.get(seq)?.filter(|event| event.subject == Some(*subject)).ok_or(StoreError::Corrupt)?;
            next = event.subject_prev;
            if position >= offset {
                events.push(event);
            }
        }
        Ok((total, events))
    }

    /// All events, newest first, with the total count.
    pub fn audit_all(&self, offset: usize, limit: usize) -> Result<(usize, Vec<AuditEvent>), StoreError> {
        let total = self.audit_head()?.seq;
        let newest = total.saturating_sub(offset as u64);
        let oldest = newest.saturating_sub(limit as u64);
        let mut events = self.audit.read(oldest + 1..newest + 1)?;
        events.reverse();
        Ok((usize::try_from(total).map_err(|_| StoreError::Corrupt)?, events))
    }

    /// Walks the whole audit chain from genesis and checks every link, reading the trail
    /// a chunk at a time.
    pub fn verify_audit(&self) -> Result<Verification, StoreError> {
        let head = self.audit_head()?;
        let mut chain = audit::ChainCheck::default();
        self.audit.walk(1..head.seq + 1, |position, event| chain.push(event.ok_or(position)))?;
        Ok(chain.finish(&head.hash))
    }

    pub(crate) fn audit_head(&self) -> Result<AuditHead, StoreError> {
        Ok(self.get(&keys::meta(keys::AUDIT_HEAD))?.unwrap_or_else(AuditHead::genesis))
    }

    /// The audit trail's files, which hold the events the state's head names.
    pub(crate) fn audit_trail(&self) -> &AuditTrail {
        &self.audit
    }

    /// Test and forensics access to the stored audit events, in the order they are stored
    /// (e.g. to prove tampering is seen).
    #[doc(hidden)]
    pub fn raw_audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = Vec::new();
        self.audit.walk(1..u64::MAX, |_, event| events.push(event.ok_or(StoreError::Corrupt)))?;
        events.into_iter().collect()
    }

    /// Replaces the stored audit events with `events`, checksums and all, as someone with
    /// the disk could; the test of tamper evidence.
    #[doc(hidden)]
    pub fn raw_rewrite_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.audit.rewrite(events)
    }
}

/// The latest event of the audit chain.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

impl AuditHead {
    fn genesis() -> Self {
        AuditHead { seq: 0, hash: audit::GENESIS.to_string() }
    }
}

/// Where a subject's events begin: its newest event and how many it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SubjectAuditHead {
    pub newest: u64,
    pub count: u64,
}

/// What sled's `flush` leaves out. On Linux it ends with `sync_file_range`, which neither
/// empties the drive's write cache nor syncs metadata, and values too large for the log
/// go to blob files that are never synced. After each flush this syncs the log file, any
/// new blob files and the blob directory, so an acknowledged write survives power loss.
struct Durability {
    log: File,
    blobs: PathBuf,
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl Durability {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let log = File::open(path.join("db"))?;
        // The directory entries of the files sled created must be durable too.
        File::open(path).and_then(|dir| dir.sync_all())?;
        Ok(Durability { log, blobs: path.join("blobs"), synced_blobs: Mutex::new(HashSet::new()) })
    }

    fn sync(&self) -> std::io::Result<()> {
        self.log.sync_data()?;
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut present = HashSet::new();
        let mut created = false;
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data()?,
                    // sled removed the blob (its value was replaced or deleted) after the
                    // directory was listed: there is nothing left to make durable.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                created = true;
            }
            present.insert(name);
        }
        if created {
            File::open(&self.blobs)?.sync_all()?;
        }
        *synced = present;
        Ok(())
    }
}

/// The identity derived from a cluster's wrapped index key.
fn cluster_id_of(index_key: &WrappedKey) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(b"strongroom cluster id\0").chain_update(&index_key.wrapped).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}
