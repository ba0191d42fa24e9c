//! openraft's log storage: entries in segment files (`log_file`), the vote and the
//! purge/commit marks in sled's `raft_meta` tree. An append is acknowledged to openraft
//! only once it is on disk: appends queue their callbacks on a flusher thread, which makes
//! everything appended so far durable with one `fdatasync` and then acknowledges the
//! whole group.
//!
//! The state machine's sled database is not flushed per append: after a crash it comes
//! back at an earlier applied entry (sled recovers a consistent prefix, and the applied
//! log id is stored with the changes), and openraft applies the rest again from this
//! log. So the log never drops an entry the database might not hold durably: a purge
//! flushes the database first.

// openraft's storage traits report `StorageError`, a large type; the helpers here return
// it too rather than converting at every call.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, StorageIOError};

use super::log_file::LogFiles;
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::store::{decode, encode, Store, StoreError};

/// The sled tree of the vote and the marks.
const META_TREE: &str = "raft_meta";
const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

fn read_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// The index of the last entry this node knows committed (0 before any).
pub fn committed_index(store: &Store) -> Result<u64, StoreError> {
    let Some(value) = store.db().open_tree(META_TREE)?.get(COMMITTED)? else { return Ok(0) };
    Ok(decode::<Option<LogId>>(&value)?.map_or(0, |id| id.index))
}

/// Reads log entries; cheap to clone (replication tasks each hold one).
#[derive(Clone)]
pub struct LogReader {
    files: Arc<LogFiles>,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        self.files.read(start..end, |payload| decode(payload)).map_err(read_error)
    }
}

pub struct LogStore {
    store: Store,
    reader: LogReader,
    meta: sled::Tree,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    /// Opens the log in `dir` (beside `store`, which keeps the vote and marks) and
    /// removes entries a purge that a crash interrupted left behind.
    pub fn open(store: &Store, dir: &Path) -> Result<Self, StoreError> {
        let files = Arc::new(LogFiles::open(dir)?);
        let meta = store.db().open_tree(META_TREE)?;
        if let Some(purged) = meta.get(PURGED)?.map(|v| decode::<LogId>(&v)).transpose()? {
            if files.indexes().start <= purged.index {
                files.purge(purged.index)?;
            }
        }
        let (flusher, pending) = mpsc::channel();
        let durable = Arc::clone(&files);
        std::thread::Builder::new().name("raft-log-flush".into()).spawn(move || flush_loop(&durable, pending))?;
        Ok(LogStore { store: store.clone(), reader: LogReader { files }, meta, flusher })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        self.meta.get(key).map_err(read_error)?.map(|v| decode(&v)).transpose().map_err(read_error)
    }

    fn put<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        self.meta.insert(key, encode(value).map_err(write_error)?).map_err(write_error)?;
        Ok(())
    }

    /// The index of the log's last entry (or of the last purged one, when it holds none).
    pub fn last_index(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.last_log_id(self.get(PURGED)?)?.map(|id| id.index))
    }

    fn last_log_id(&self, last_purged: Option<LogId>) -> Result<Option<LogId>, StorageError> {
        Ok(self.last_entry_id()?.or(last_purged))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let files = &self.reader.files;
        let indexes = files.indexes();
        if indexes.is_empty() {
            return Ok(None);
        }
        let last = files.read(indexes.end - 1..indexes.end, |payload| decode::<Entry>(payload)).map_err(read_error)?;
        Ok(last.first().map(|entry| entry.log_id))
    }
}

/// Groups flushes: whatever was appended before a sync starts is covered by it.
fn flush_loop(files: &LogFiles, pending: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = pending.recv() {
        let mut group = vec![first];
        group.extend(pending.try_iter());
        let started = std::time::Instant::now();
        let result = files.sync();
        crate::metrics::instruments().log_fsync.observe(started.elapsed().as_secs_f64());
        for callback in group {
            callback.log_io_completed(
                result.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
            );
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get(PURGED)?;
        let last_log_id = self.last_log_id(last_purged_log_id)?;
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put(VOTE, vote)?;
        // A vote must be durable before it is cast.
        self.store.flush().map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let records = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, encode(&entry)?)))
            .collect::<Result<Vec<_>, StoreError>>()
            .map_err(write_error)?;
        self.reader.files.append(&records).map_err(write_error)?;
        self.flusher.send(callback).map_err(|_| write_error(StoreError::Io(std::io::Error::other("flusher stopped"))))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Durable when it returns: conflicting entries must not come back after a crash.
        self.reader.files.truncate(log_id.index).map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The state machine must hold the purged entries durably before they go, and the
        // mark is durable before the files change: a crash midway leaves entries that are
        // removed at the next start, never a gap that looks like missing entries.
        self.put(PURGED, &log_id)?;
        self.store.flush().map_err(write_error)?;
        self.reader.files.purge(log_id.index).map_err(write_error)?;
        crate::metrics::instruments().log_purges.inc();
        Ok(())
    }
}
