//! The Raft log on sled: entries in the `raft_log` tree keyed by index, the vote and
//! purge/commit marks in `raft_meta`. An append is acknowledged to openraft only once it
//! is on disk: appends queue their callbacks on a flusher thread, which makes everything
//! appended so far durable with one flush and then acknowledges the whole group.

// openraft's storage traits report `StorageError`, a large type; the helpers here return
// it too rather than converting at every call.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, StorageIOError};

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::store::{decode, encode, Store, StoreError};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

fn read_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// Reads log entries; cheap to clone (replication tasks each hold one).
#[derive(Clone)]
pub struct LogReader {
    log: sled::Tree,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(i.to_be_bytes()),
            Bound::Excluded(&i) => Bound::Excluded(i.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(i.to_be_bytes()),
            Bound::Excluded(&i) => Bound::Excluded(i.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.log
            .range::<[u8; 8], _>((start, end))
            .values()
            .map(|value| decode(&value.map_err(read_error)?).map_err(read_error))
            .collect()
    }
}

pub struct LogStore {
    store: Store,
    reader: LogReader,
    meta: sled::Tree,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        let log = store.db().open_tree("raft_log")?;
        let meta = store.db().open_tree("raft_meta")?;
        let (flusher, pending) = mpsc::channel();
        let durable = store.clone();
        std::thread::Builder::new().name("raft-log-flush".into()).spawn(move || flush_loop(durable, pending))?;
        Ok(LogStore { store: store.clone(), reader: LogReader { log }, meta, flusher })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        self.meta.get(key).map_err(read_error)?.map(|v| decode(&v)).transpose().map_err(read_error)
    }

    fn put<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        self.meta.insert(key, encode(value).map_err(write_error)?).map_err(write_error)?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.reader.log.last().map_err(read_error)? {
            Some((_, value)) => Ok(Some(decode::<Entry>(&value).map_err(read_error)?.log_id)),
            None => Ok(None),
        }
    }
}

/// Groups flushes: whatever was appended before a flush starts is covered by it.
fn flush_loop(store: Store, pending: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = pending.recv() {
        let mut group = vec![first];
        group.extend(pending.try_iter());
        let result = store.flush().map_err(|e| std::io::Error::other(e.to_string()));
        for callback in group {
            callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
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
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&entry.log_id.index.to_be_bytes(), encode(&entry).map_err(write_error)?);
        }
        self.reader.log.apply_batch(batch).map_err(write_error)?;
        self.flusher.send(callback).map_err(|_| write_error(StoreError::Io(std::io::Error::other("flusher stopped"))))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for key in self.reader.log.range(log_id.index.to_be_bytes()..).keys() {
            batch.remove(key.map_err(write_error)?);
        }
        self.reader.log.apply_batch(batch).map_err(write_error)?;
        // Conflicting entries must not come back after a crash.
        self.store.flush().map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge first: a crash midway leaves entries that are ignored, never a
        // gap that looks like missing entries.
        self.put(PURGED, &log_id)?;
        let mut batch = sled::Batch::default();
        for key in self.reader.log.range(..=log_id.index.to_be_bytes()).keys() {
            batch.remove(key.map_err(write_error)?);
        }
        self.reader.log.apply_batch(batch).map_err(write_error)
    }
}
