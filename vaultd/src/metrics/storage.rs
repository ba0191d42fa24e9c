//! What the node stores, at scrape time: the bytes of each part of the data directory (the
//! Raft log, the state store, the audit trail, snapshots), the volume's free space and the
//! reserve below which writes are refused, the audit trail's length and its verification,
//! when each retention policy last ran (from the replicated run records) and how many
//! expirations are due.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{gauge, gauges_by};
use crate::cluster::{statvfs, Cluster};
use crate::vault::Vault;

pub struct StorageCollector {
    cluster: Arc<Cluster>,
    /// How often the node verifies its audit chain (`None`: only when asked).
    audit_verification: Option<Duration>,
}

impl std::fmt::Debug for StorageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageCollector")
    }
}

impl StorageCollector {
    pub fn new(vault: &Vault) -> Self {
        StorageCollector {
            cluster: Arc::clone(vault.cluster()),
            audit_verification: vault.settings().audit_verification,
        }
    }
}

/// The data directory's parts, by the names of their files and directories.
fn part_of(name: &str) -> &'static str {
    match name {
        "raft-log" => "log",
        "vault.sled" => "state",
        "audit" => "audit",
        name if name.starts_with("snapshot") => "snapshots",
        _ => "other",
    }
}

/// Bytes of the files below `path` (0 for what cannot be read).
fn bytes_below(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return 0 };
    if !metadata.is_dir() {
        return metadata.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries.flatten().map(|entry| bytes_below(&entry.path())).sum()
}

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut encoder;
        let dir = self.cluster.data_dir();
        let mut parts: Vec<(String, i64)> =
            ["log", "state", "audit", "snapshots", "other"].iter().map(|part| (part.to_string(), 0)).collect();
        let entries: Vec<PathBuf> =
            std::fs::read_dir(dir).into_iter().flatten().flatten().map(|entry| entry.path()).collect();
        for path in entries {
            let part = part_of(&path.file_name().unwrap_or_default().to_string_lossy());
            if let Some((_, bytes)) = parts.iter_mut().find(|(name, _)| name == part) {
                *bytes += bytes_below(&path) as i64;
            }
        }
        let help = "Bytes of the data directory, by part (log, state, audit, snapshots, other)";
        gauges_by(e, "data_directory", help, Some(&Unit::Bytes), "part", &parts)?;
        let segments = std::fs::read_dir(dir.join("raft-log")).into_iter().flatten().flatten();
        let segments = segments.filter(|entry| entry.path().extension().is_some_and(|ext| ext == "seg")).count();
        gauge(e, "raft_log_segments", "Segment files of the Raft log", None, segments as i64)?;
        if let Ok((free, size)) = statvfs(dir) {
            let help = "Bytes still free for vaultd on the data directory's volume";
            gauge(e, "volume_free", help, Some(&Unit::Bytes), free as i64)?;
            gauge(e, "volume_size", "Size of the data directory's volume", Some(&Unit::Bytes), size as i64)?;
            if let Some(reserve) = self.cluster.reserve_for(size) {
                let help = "Free bytes below which writes are refused (507), so that Raft never meets a full disk";
                gauge(e, "volume_reserve", help, Some(&Unit::Bytes), reserve as i64)?;
            }
        }
        let trail = self.cluster.store().audit_cut();
        gauge(e, "audit_events", "Events in this node's audit trail", None, trail.events as i64)?;
        gauge(e, "audit_trail", "Length of this node's audit trail", Some(&Unit::Bytes), trail.bytes as i64)?;
        if let Some((intact, at)) = super::instruments().last_audit_verification() {
            let help = "1 when the last audit chain verification on this node found the chain intact, 0 when broken";
            gauge(e, "audit_verification_ok", help, None, i64::from(intact))?;
            let help = "When the last audit chain verification on this node ran";
            gauge(e, "audit_verification_timestamp", help, Some(&Unit::Seconds), at)?;
        }
        if let Some(every) = self.audit_verification {
            let help = "How often this node verifies its audit chain";
            gauge(e, "audit_verification_interval", help, Some(&Unit::Seconds), every.as_secs_f64())?;
        }
        self.encode_retention(e)
    }
}

impl StorageCollector {
    fn encode_retention(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let store = self.cluster.store();
        if let Ok(mut runs) = store.last_retention_runs() {
            // The policies that ran last, if there are more than a bounded label allows.
            runs.sort_by_key(|run| std::cmp::Reverse(run.finished_at));
            runs.truncate(super::POLICY_SERIES);
            let last: Vec<(String, f64)> =
                runs.into_iter().map(|run| (run.policy, run.finished_at as f64 / 1000.0)).collect();
            let help = "When each retention policy's last recorded run finished";
            gauges_by(e, "retention_last_run_timestamp", help, Some(&Unit::Seconds), "policy", &last)?;
        }
        // Counted up to one sweep's worth: enough to tell a sweeper that keeps up from one
        // that does not, at a bounded cost per scrape.
        let cap = crate::retention::sweeper::PER_SWEEP;
        if let Ok(due) = store.due_expirations(crate::audit::now_ms(), cap).map(|due| due.len()) {
            let help = format!(
                "Subjects whose expiration time has come and whom the sweeper has not yet forgotten (counted up to {cap})"
            );
            gauge(e, "expirations_due", &help, None, due as i64)?;
        }
        Ok(())
    }
}
