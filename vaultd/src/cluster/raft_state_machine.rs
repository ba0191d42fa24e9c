//! openraft's view of the vault state: applies committed entries through the store's
//! `StateMachine` (the last applied log id and the membership are stored in the same
//! transaction as the commands), builds snapshots and installs them.

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use tokio::io::AsyncWriteExt;

use super::snapshot::{Header, PendingBuild, Snapshots};
use super::snapshot_stream::SnapshotData;
use super::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::store::{decode, encode, keys, Receipt, StateMachine, Store, StoreError};

const LAST_APPLIED: &str = "raft_last_applied";
const MEMBERSHIP: &str = "raft_membership";

/// The state-tree keys that hold Raft's own state (what was applied, the membership):
/// they belong to one cluster, so a restore into a new one leaves them out.
pub fn raft_state_keys() -> [Vec<u8>; 2] {
    [keys::meta(LAST_APPLIED), keys::meta(MEMBERSHIP)]
}
/// Set in `raft_meta` while the state is being restored from a snapshot.
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
    /// Opens the state machine. Finishes restoring a snapshot if a crash interrupted it,
    /// and restores the last one if the audit trail lacks events the state names (after a
    /// power loss): openraft then applies the log again from there.
    pub fn open(machine: StateMachine, snapshots: Arc<Snapshots>) -> Result<Self, StoreError> {
        let raft_meta = machine.store().db().open_tree("raft_meta")?;
        let mut store = StateMachineStore { machine, snapshots, raft_meta, snapshots_built: 0 };
        if store.raft_meta.contains_key(INSTALLING)? {
            tracing::warn!("finishing a snapshot installation that was interrupted");
            store.restore()?;
        } else {
            store.snapshots.discard_received()?;
            if !store.machine.trail_holds_state()? {
                tracing::warn!(
                    "the audit trail lacks events that the stored state names (the disk lost writes): \
                     restoring the last snapshot, and the Raft log is applied again from there"
                );
                store.restore()?;
            }
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

    /// Makes the state and the audit trail those of the current snapshot — after moving
    /// a received one into place — marked so that a crash midway is redone.
    fn restore(&mut self) -> Result<(), StoreError> {
        self.raft_meta.insert(INSTALLING, &[])?;
        self.store().flush()?;
        let trail = self.machine.store().audit_trail();
        if self.snapshots.has_received() {
            self.snapshots.install_received(trail)?;
        }
        let rewriting = self.machine.tree_cuts().rewriting();
        self.snapshots.load_current(self.machine.store().state_tree(), trail)?;
        drop(rewriting);
        self.store().flush()?;
        self.raft_meta.remove(INSTALLING)?;
        self.store().flush()?;
        self.machine.reload()?;
        if !self.machine.trail_holds_state()? {
            return Err(StoreError::Corrupt);
        }
        Ok(())
    }

    fn start_build(&mut self) -> Result<PendingBuild, StoreError> {
        self.snapshots_built += 1;
        let (last_log_id, last_membership) = self.applied()?;
        let snapshot_id = match &last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.snapshots_built),
            None => format!("0-0-{}", self.snapshots_built),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let header = Header { meta, cut: self.store().audit_trail().cut() };
        Ok(self.snapshots.start_build(header, self.machine.tree_cuts().take()))
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
        // Called between applies: the cut of the tree and the trail's cut match.
        SnapshotBuilder {
            pending: Some(self.start_build()),
            snapshots: Arc::clone(&self.snapshots),
            store: self.store().clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        let file = self.snapshots.receive().map_err(snapshot_error)?;
        Ok(Box::new(SnapshotData::Receiving(tokio::fs::File::from_std(file))))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        let SnapshotData::Receiving(mut file) = *snapshot else {
            return Err(snapshot_error(StoreError::Corrupt));
        };
        let started = std::time::Instant::now();
        file.flush().await.map_err(snapshot_error)?;
        let bytes = file.metadata().await.map_err(snapshot_error)?.len();
        self.snapshots.accept_received(file.into_std().await, meta).map_err(snapshot_error)?;
        self.restore().map_err(snapshot_error)?;
        let instruments = crate::metrics::instruments();
        instruments.snapshot_installs.observe(started.elapsed().as_secs_f64());
        instruments.snapshot_bytes.set(bytes as i64);
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self.snapshots.open_current(self.store().audit_trail()).map_err(snapshot_error)?;
        Ok(current.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(data) }))
    }
}

/// Finishes a build started by `get_snapshot_builder`, off the apply path.
pub struct SnapshotBuilder {
    pending: Option<Result<PendingBuild, StoreError>>,
    snapshots: Arc<Snapshots>,
    store: Store,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let pending = self.pending.take().ok_or(StoreError::Corrupt).and_then(|r| r).map_err(snapshot_error)?;
        let (snapshots, store) = (Arc::clone(&self.snapshots), self.store.clone());
        let started = std::time::Instant::now();
        let (meta, data) =
            tokio::task::spawn_blocking(move || pending.finish(store.state_tree(), &snapshots, store.audit_trail()))
                .await
                .map_err(|e| snapshot_error(std::io::Error::other(e.to_string())))?
                .map_err(snapshot_error)?;
        let instruments = crate::metrics::instruments();
        instruments.snapshot_builds.observe(started.elapsed().as_secs_f64());
        if let SnapshotData::Sending(parts) = &data {
            instruments.snapshot_bytes.set(parts.len() as i64);
        }
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(data) })
    }
}
