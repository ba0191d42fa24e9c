//! openraft's view of the vault state: applies committed entries through the store's
//! `StateMachine` (the last applied log id and the membership are stored in the same
//! transaction as the commands), builds snapshots and installs them.

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use tokio::fs::File;
use tokio::io::AsyncWriteExt;

use super::snapshot::{PendingBuild, Snapshots};
use super::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::store::{decode, encode, Receipt, StateMachine, Store, StoreError};

const LAST_APPLIED: &str = "raft_last_applied";
const MEMBERSHIP: &str = "raft_membership";
/// Set in `raft_meta` while a snapshot is being loaded into the state tree.
const INSTALLING: &[u8] = b"installing_snapshot";

fn sm_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snapshot_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

pub struct StateMachineStore {
    machine: StateMachine,
    snapshots: Arc<Snapshots>,
    raft_meta: sled::Tree,
    snapshots_built: u64,
}

impl StateMachineStore {
    /// Opens the state machine; finishes a snapshot load that a crash interrupted.
    pub fn open(machine: StateMachine, snapshots: Snapshots) -> Result<Self, StoreError> {
        let raft_meta = machine.store().db().open_tree("raft_meta")?;
        let mut store = StateMachineStore { machine, snapshots: Arc::new(snapshots), raft_meta, snapshots_built: 0 };
        if store.raft_meta.contains_key(INSTALLING)? {
            tracing::warn!("finishing a snapshot installation that was interrupted");
            store.load()?;
        }
        Ok(store)
    }

    fn store(&self) -> &Store {
        self.machine.store()
    }

    fn applied(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let last = self.store().meta(LAST_APPLIED)?.map(|v| decode::<Option<LogId>>(&v)).transpose()?.flatten();
        let membership = self.store().meta(MEMBERSHIP)?.map(|v| decode(&v)).transpose()?.unwrap_or_default();
        Ok((last, membership))
    }

    /// Loads the current snapshot into the state tree, marked so that a crash midway is
    /// redone.
    fn load(&mut self) -> Result<(), StoreError> {
        self.raft_meta.insert(INSTALLING, &[])?;
        self.store().flush()?;
        self.snapshots.load_current(self.store().state_tree())?;
        self.store().flush()?;
        self.raft_meta.remove(INSTALLING)?;
        self.store().flush()?;
        self.machine.reload()
    }

    fn start_build(&mut self) -> Result<PendingBuild, StoreError> {
        self.snapshots_built += 1;
        let (last_log_id, last_membership) = self.applied()?;
        let snapshot_id = match &last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.snapshots_built),
            None => format!("0-0-{}", self.snapshots_built),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        self.snapshots.start_build(self.store().state_tree(), &meta)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.applied().map_err(sm_error)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Receipt>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut transaction = self.machine.begin();
        let mut responses = Vec::new();
        let mut last = None;
        for entry in entries {
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(Vec::new()),
                EntryPayload::Normal(batch) => {
                    let receipts = batch
                        .commands
                        .iter()
                        .map(|command| transaction.apply(command, entry.log_id.index))
                        .collect::<Result<_, _>>()
                        .map_err(sm_error)?;
                    responses.push(receipts);
                }
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembership::new(Some(entry.log_id), membership);
                    transaction.put_meta(MEMBERSHIP, encode(&stored).map_err(sm_error)?);
                    responses.push(Vec::new());
                }
            }
        }
        if last.is_some() {
            transaction.put_meta(LAST_APPLIED, encode(&last).map_err(sm_error)?);
        }
        transaction.commit().map_err(sm_error)?;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Called between applies, so the first part of the build is a consistent cut.
        SnapshotBuilder {
            pending: Some(self.start_build()),
            snapshots: Arc::clone(&self.snapshots),
            tree: self.store().state_tree().clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<File>, StorageError> {
        let file = self.snapshots.receive().map_err(snapshot_error)?;
        Ok(Box::new(File::from_std(file)))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, mut snapshot: Box<File>) -> Result<(), StorageError> {
        snapshot.flush().await.map_err(snapshot_error)?;
        let file = snapshot.into_std().await;
        self.snapshots.accept_received(file, meta).map_err(snapshot_error)?;
        self.load().map_err(snapshot_error)?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self.snapshots.open_current().map_err(snapshot_error)?;
        Ok(current.map(|(meta, file)| Snapshot { meta, snapshot: Box::new(File::from_std(file)) }))
    }
}

/// Finishes a build started by `get_snapshot_builder`, off the apply path.
pub struct SnapshotBuilder {
    pending: Option<Result<PendingBuild, StoreError>>,
    snapshots: Arc<Snapshots>,
    tree: sled::Tree,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let pending = self.pending.take().ok_or(StoreError::Corrupt).and_then(|r| r).map_err(snapshot_error)?;
        let meta = pending.meta().clone();
        let (snapshots, tree) = (Arc::clone(&self.snapshots), self.tree.clone());
        let file = tokio::task::spawn_blocking(move || pending.finish(&tree, &snapshots))
            .await
            .map_err(|e| snapshot_error(std::io::Error::other(e.to_string())))?
            .map_err(snapshot_error)?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or_default();
        tracing::info!(snapshot = %meta.snapshot_id, bytes, "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(File::from_std(file)) })
    }
}
