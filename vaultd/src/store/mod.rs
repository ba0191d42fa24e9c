//! Durable vault state in sled: the trees, the reads request handlers make, and the
//! write path (`StateMachine` applies `Command`s; `CommandLog` group-commits them).

mod command;
mod commit;
mod records;
mod state_machine;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

pub use command::{Applied, Change, Command, Receipt, Rejection, WrappedKey};
pub use commit::CommandLog;
pub use records::{AccessTokenRecord, ActiveSubject, AppRecord, SubjectRecord, SubjectState};
pub use state_machine::StateMachine;

use crate::audit::{self, AuditEvent, Verification};
use records::decode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record cannot be decoded")]
    Corrupt,
    #[error("record cannot be encoded")]
    Encoding,
    #[error("the commit log has stopped after a storage failure")]
    CommitFailed,
}

/// Names of the sled trees, in the order the state machine's transactions use them.
const TREES: [&str; 8] = ["subjects", "index", "apps", "app_names", "audit", "audit_by_subject", "tokens", "meta"];
const SUBJECTS: usize = 0;
const INDEX: usize = 1;
const APPS: usize = 2;
const APP_NAMES: usize = 3;
const AUDIT: usize = 4;
const AUDIT_BY_SUBJECT: usize = 5;
const TOKENS: usize = 6;
const META: usize = 7;

const META_AUDIT_HEAD: &[u8] = b"audit_head";
const META_INDEX_KEY: &[u8] = b"index_key";

/// sled's page cache when nothing else is configured (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// The vault's sled database. Cheap to clone; reads go straight to sled.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    durability: Arc<Durability>,
}

impl Store {
    /// Opens (or creates) the database in `dir`; `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let path = dir.join("vault.sled");
        let db = sled::Config::new().path(&path).cache_capacity(cache_bytes).open()?;
        let trees = TREES.iter().map(|name| db.open_tree(name)).collect::<Result<Vec<_>, _>>()?;
        let durability = Arc::new(Durability::open(&path)?);
        Ok(Store { db, trees, durability })
    }

    fn tree(&self, n: usize) -> &sled::Tree {
        &self.trees[n]
    }

    /// Makes everything written so far durable: on the disk, not in a cache.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.durability.sync().map_err(|e| StoreError::Sled(e.into()))
    }

    pub fn subject(&self, subject: &Uuid) -> Result<Option<SubjectRecord>, StoreError> {
        self.tree(SUBJECTS).get(subject.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// The subject that holds a blind-index entry.
    pub fn lookup(&self, entry: &[u8]) -> Result<Option<Uuid>, StoreError> {
        self.tree(INDEX).get(entry)?.map(|v| Uuid::from_slice(&v).map_err(|_| StoreError::Corrupt)).transpose()
    }

    pub fn app(&self, subject: &Uuid, app: &str) -> Result<Option<AppRecord>, StoreError> {
        self.tree(APPS).get(app_key(subject, app))?.map(|v| decode(&v)).transpose()
    }

    /// Every app name any subject has a record for, sorted.
    pub fn app_names(&self) -> Result<Vec<String>, StoreError> {
        self.tree(APP_NAMES).iter().keys().map(|k| Ok(String::from_utf8_lossy(&k?).into_owned())).collect()
    }

    /// Active subjects in token order, from `offset`, at most `limit`, and how many
    /// active subjects there are in all.
    pub fn subjects(&self, offset: usize, limit: usize) -> Result<(usize, Vec<(Uuid, SubjectRecord)>), StoreError> {
        let mut total = 0;
        let mut page = Vec::new();
        for item in self.tree(SUBJECTS).iter() {
            let (key, value) = item?;
            let record: SubjectRecord = decode(&value)?;
            if matches!(record.state, SubjectState::Active(_)) {
                if total >= offset && page.len() < limit {
                    page.push((Uuid::from_slice(&key).map_err(|_| StoreError::Corrupt)?, record));
                }
                total += 1;
            }
        }
        Ok((total, page))
    }

    pub fn wrapped_index_key(&self) -> Result<Option<WrappedKey>, StoreError> {
        self.tree(META).get(META_INDEX_KEY)?.map(|v| decode(&v)).transpose()
    }

    pub fn token_by_secret_hash(&self, hash: &[u8; 32]) -> Result<Option<AccessTokenRecord>, StoreError> {
        // Tokens are keyed by the SHA-256 of their secret: a lookup compares digests, which
        // an attacker cannot steer byte by byte, never the secret itself.
        self.tree(TOKENS).get(hash)?.map(|v| decode(&v)).transpose()
    }

    pub fn tokens(&self) -> Result<Vec<AccessTokenRecord>, StoreError> {
        self.tree(TOKENS).iter().values().map(|v| decode(&v?)).collect()
    }

    /// One event by id (Databunker's `atoken`).
    pub fn audit_event(&self, id: &Uuid) -> Result<Option<AuditEvent>, StoreError> {
        let event = self.audit_event_at(audit::seq_of_id(id))?;
        Ok(event.filter(|event| event.id == *id))
    }

    /// The event with this sequence number: found in the block that starts at or before it.
    fn audit_event_at(&self, seq: u64) -> Result<Option<AuditEvent>, StoreError> {
        let Some((key, block)) = self.tree(AUDIT).range(..=seq.to_be_bytes()).next_back().transpose()? else {
            return Ok(None);
        };
        let offset = seq.checked_sub(seq_of(&key)).ok_or(StoreError::Corrupt)?;
        let mut events = decode_block(&block)?;
        Ok(usize::try_from(offset).ok().filter(|&i| i < events.len()).map(|i| events.swap_remove(i)))
    }

    /// Events about one subject, newest first, with the total count.
    pub fn audit_for_subject(
        &self,
        subject: &Uuid,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<AuditEvent>), StoreError> {
        let keys: Vec<_> =
            self.tree(AUDIT_BY_SUBJECT).scan_prefix(subject.as_bytes()).keys().collect::<Result<_, _>>()?;
        let mut events = Vec::new();
        for key in keys.iter().rev().skip(offset).take(limit) {
            if let Some(event) = self.audit_event_at(seq_of(&key[16..]))? {
                events.push(event);
            }
        }
        Ok((keys.len(), events))
    }

    /// All events, newest first, with the total count.
    pub fn audit_all(&self, offset: usize, limit: usize) -> Result<(usize, Vec<AuditEvent>), StoreError> {
        let total = usize::try_from(self.audit_head()?.seq).map_err(|_| StoreError::Corrupt)?;
        let mut events = Vec::with_capacity(limit);
        let mut skip = offset;
        for block in self.tree(AUDIT).iter().values().rev() {
            if events.len() == limit {
                break;
            }
            let block = decode_block(&block?)?;
            if skip >= block.len() {
                skip -= block.len();
                continue;
            }
            events.extend(block.into_iter().rev().skip(skip).take(limit - events.len()));
            skip = 0;
        }
        Ok((total, events))
    }

    /// Walks the whole audit chain from genesis and checks every link.
    pub fn verify_audit(&self) -> Result<Verification, StoreError> {
        let head = self.audit_head()?;
        let events = self.tree(AUDIT).iter().flat_map(|item| -> Vec<Result<AuditEvent, u64>> {
            match item {
                Ok((key, block)) => match decode_block(&block) {
                    Ok(events) => events.into_iter().map(Ok).collect(),
                    Err(_) => vec![Err(seq_of(&key))],
                },
                Err(_) => vec![Err(0)],
            }
        });
        Ok(audit::verify(events, &head.hash))
    }

    pub(crate) fn audit_head(&self) -> Result<AuditHead, StoreError> {
        match self.tree(META).get(META_AUDIT_HEAD)? {
            Some(bytes) => decode(&bytes),
            None => Ok(AuditHead { seq: 0, hash: audit::GENESIS.to_string() }),
        }
    }

    /// Test and forensics access to the raw audit tree (e.g. to prove tampering is seen):
    /// blocks of events as JSON arrays, keyed by the first event's sequence number.
    #[doc(hidden)]
    pub fn raw_audit_tree(&self) -> &sled::Tree {
        self.tree(AUDIT)
    }
}

/// The latest event of the audit chain.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuditHead {
    pub seq: u64,
    pub hash: String,
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
        let io = |e: std::io::Error| StoreError::Sled(e.into());
        let log = File::open(path.join("db")).map_err(io)?;
        // The directory entries of the files sled created must be durable too.
        File::open(path).and_then(|dir| dir.sync_all()).map_err(io)?;
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
                File::open(entry.path())?.sync_data()?;
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

fn app_key(subject: &Uuid, app: &str) -> Vec<u8> {
    let mut key = subject.as_bytes().to_vec();
    key.extend_from_slice(app.as_bytes());
    key
}

fn decode_block(bytes: &[u8]) -> Result<Vec<AuditEvent>, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt)
}

fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
