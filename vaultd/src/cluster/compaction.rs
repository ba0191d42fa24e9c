//! Crypto-shredding has to reach the disk: a forgotten subject's wrapped key and sealed
//! records — or the old version of a record that a retention rule minimised — stay in the
//! Raft log (and in the last snapshot) until the log is compacted.
//! Each node checks every second for erasures it has applied but not yet compacted, and
//! once the oldest has waited `erasure_compaction`, it takes a snapshot (which no longer
//! holds the subject) and purges its log up to it. `GET /v1/sys/cluster` reports what is
//! still pending.

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;

const CHECK_EVERY: Duration = Duration::from_secs(1);

pub async fn run(cluster: Arc<Cluster>) {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    loop {
        ticks.tick().await;
        if let Err(error) = compact_due_erasures(&cluster).await {
            tracing::warn!(%error, "erasure compaction failed; retrying");
        }
    }
}

async fn compact_due_erasures(cluster: &Cluster) -> Result<(), String> {
    let raft = cluster.raft().map_err(|e| e.to_string())?;
    let (applied, purged, snapshot_index) = cluster
        .with_metrics(|m| {
            let index = |id: Option<openraft::LogId<u64>>| id.map_or(0, |id| id.index);
            (index(m.last_applied), index(m.purged), index(m.snapshot))
        })
        .map_err(|e| e.to_string())?;
    let (pending, oldest) = cluster.store.erasures_after(purged).map_err(|e| e.to_string())?;
    let due = oldest.is_some_and(|since| {
        crate::audit::now_ms().saturating_sub(since) >= cluster.erasure_compaction.as_millis() as u64
    });
    if pending == 0 || !due {
        return Ok(());
    }
    if snapshot_index < applied {
        raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
        raft.wait(Some(Duration::from_secs(60)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "snapshot for erasure compaction")
            .await
            .map_err(|e| e.to_string())?;
    }
    let upto = cluster.with_metrics(|m| m.snapshot.map_or(0, |s| s.index)).map_err(|e| e.to_string())?;
    raft.trigger().purge_log(upto).await.map_err(|e| e.to_string())?;
    crate::metrics::instruments().erasure_compactions.inc();
    tracing::info!(erasures = pending, upto, "compacting erasures out of the log");
    Ok(())
}
