//! `vaultd restore`: a new one-member vault from a backup. Nothing is written until the
//! backup has been fetched and checked whole and the configured KEK has unwrapped its
//! keys. Then the data directory gets the backup's state (under a new cluster id) and
//! audit trail, the vault starts in-process as a new one-member cluster, applies every
//! erasure the source's shipped ledger recorded after the backup, takes a snapshot and
//! purges its log (so that members added later receive the whole state), and stops.
//! `vaultd serve` on the directory then runs it; it grows through the learner path.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::verify::fetch_and_check;
use super::{BackupError, Destination};
use crate::cluster::{raft_state_keys, read_pairs, ClusterOptions};
use crate::crypto::Kek;
use crate::store::{encode, keys, Store};
use crate::vault::{Vault, VaultSettings};

/// Pairs written to the new state tree per batch.
const LOAD_BATCH: usize = 4096;

pub struct RestoreOptions {
    /// The backup to restore (the newest when `None`).
    pub backup: Option<String>,
    /// A data directory that does not exist yet or is empty.
    pub data_dir: PathBuf,
}

/// What `vaultd restore` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub restored_from: String,
    /// The source vault, and the new one.
    pub source_cluster_id: String,
    pub cluster_id: String,
    pub subjects: u64,
    pub last_applied_index: u64,
    /// Ledger entries newer than the backup: applied, and those with nothing left to
    /// erase (a subject created after the backup, data already gone).
    pub erasures_applied: u64,
    pub erasures_not_applicable: u64,
}

pub async fn restore(source: &Destination, kek: Kek, options: &RestoreOptions) -> Result<RestoreReport, BackupError> {
    let data_dir = &options.data_dir;
    if std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::Invalid(format!(
            "{} is not empty: restore makes a new data directory",
            data_dir.display()
        )));
    }
    let work = tempfile::tempdir().map_err(|e| BackupError::Invalid(format!("cannot make a work directory: {e}")))?;
    let checked = fetch_and_check(source, options.backup.as_deref(), work.path()).await?;
    checked.unwrap_keys(&kek).await?;
    let ledger = source.ledger_from(&checked.manifest.cluster_id, checked.manifest.ledger_next).await?;

    // From here on the data directory is written.
    let cluster_id = Uuid::new_v4();
    write_data_dir(data_dir, &checked.state, &checked.audit, cluster_id)
        .map_err(|e| BackupError::Invalid(format!("cannot write {}: {e}", data_dir.display())))?;
    let settings = VaultSettings::default();
    let throwaway_root = Zeroizing::new(crate::audit::hex(&crate::crypto::random_bytes::<32>()));
    let vault = Vault::open(data_dir, kek, throwaway_root, settings, ClusterOptions::default())
        .await
        .map_err(|e| BackupError::Invalid(format!("cannot open the restored vault: {e}")))?;
    let name = format!("{}/{}", source.name, checked.manifest.cluster_id);
    let (mut applied, mut not_applicable) = (0, 0);
    for row in &ledger {
        match vault.replay_erasure(row, &name).await {
            Ok(true) => applied += 1,
            Ok(false) => not_applicable += 1,
            Err(e) => return Err(BackupError::Refusal(format!("erasure ledger entry {}: {e}", row.seq))),
        }
    }
    vault
        .cluster()
        .snapshot_and_purge()
        .await
        .map_err(|e| BackupError::Refusal(format!("cannot snapshot the restored vault: {e}")))?;
    vault.cluster().shutdown().await;
    Ok(RestoreReport {
        restored_from: format!("{}/{}", source.name, checked.id),
        source_cluster_id: checked.manifest.cluster_id.clone(),
        cluster_id: cluster_id.to_string(),
        subjects: checked.manifest.subjects,
        last_applied_index: checked.manifest.last_applied_index,
        erasures_applied: applied,
        erasures_not_applicable: not_applicable,
    })
}

/// A data directory holding the backup's state (without the old cluster's Raft state),
/// under the new cluster id, and its trail.
fn write_data_dir(dir: &Path, state: &Path, audit: &Path, cluster_id: Uuid) -> Result<(), crate::store::StoreError> {
    std::fs::create_dir_all(dir)?;
    let store = Store::open(dir, 64 << 20)?;
    let tree = store.state_tree();
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    let raft_state = raft_state_keys();
    read_pairs(BufReader::with_capacity(1 << 20, File::open(state)?), |key, value| {
        if raft_state.iter().any(|raft_key| raft_key.as_slice() == key) {
            return Ok(());
        }
        batch.insert(key, value);
        pending += 1;
        if pending == LOAD_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
        Ok(())
    })?;
    batch.insert(keys::meta(keys::CLUSTER_ID), encode(&cluster_id)?);
    tree.apply_batch(batch)?;
    let audit_file = File::open(audit)?;
    let bytes = audit_file.metadata()?.len();
    store.audit_trail().replace(BufReader::with_capacity(1 << 20, audit_file), bytes)?;
    store.flush()?;
    Ok(())
}
