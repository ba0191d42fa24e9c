//! A backup's cut: a snapshot of this node's state that holds everything it has applied,
//! taken by the same machinery that compacts the log, while applies go on. A restored
//! vault also purges its log up to such a snapshot, so that members added later get the
//! whole state from it.

use std::time::Duration;

use super::snapshot::SnapshotParts;
use super::{Cluster, Refusal};

/// How long a snapshot for a backup may take to build.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

impl Cluster {
    /// A snapshot that holds at least every entry this node had applied when called (so,
    /// after a read barrier, everything acknowledged before it), opened for reading.
    pub async fn snapshot_for_backup(&self) -> Result<SnapshotParts, Refusal> {
        let raft = self.raft()?;
        let index = |id: Option<openraft::LogId<u64>>| id.map_or(0, |id| id.index);
        let (applied, snapshot) = self.with_metrics(|m| (index(m.last_applied), index(m.snapshot)))?;
        if snapshot < applied || self.snapshots.current().is_none() {
            let failed = |e: String| Refusal::Failed(format!("snapshot for a backup: {e}"));
            raft.trigger().snapshot().await.map_err(|e| failed(e.to_string()))?;
            raft.wait(Some(BUILD_TIMEOUT))
                .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot for a backup")
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
        let trail = self.store.audit_trail();
        match self.snapshots.open_parts(trail) {
            Ok(Some(parts)) => Ok(parts),
            Ok(None) => Err(Refusal::Failed("no snapshot to back up".into())),
            Err(e) => Err(Refusal::Failed(format!("opening the snapshot for a backup: {e}"))),
        }
    }

    /// A snapshot of everything applied, and the log purged up to it.
    pub async fn snapshot_and_purge(&self) -> Result<(), Refusal> {
        let parts = self.snapshot_for_backup().await?;
        let index = parts.header.meta.last_log_id.map_or(0, |id| id.index);
        self.raft()?.trigger().purge_log(index).await.map_err(|e| Refusal::Failed(format!("log purge: {e}")))?;
        let purged = |m: &super::types::RaftMetrics| m.purged.is_some_and(|p| p.index >= index);
        self.raft()?
            .wait(Some(BUILD_TIMEOUT))
            .metrics(purged, "log purged to the snapshot")
            .await
            .map(drop)
            .map_err(|e| Refusal::Failed(format!("log purge: {e}")))
    }
}
