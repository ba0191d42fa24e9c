//! `vaultd restore`: a new one-member vault from a backup. Nothing is written until the
//! backup has been fetched and checked whole and the configured KEK has unwrapped its
//! keys. Then a staging directory inside the data directory gets the backup's state (under
//! a new cluster id) and audit trail, the vault starts there in-process as a new
//! one-member cluster, applies every erasure the source's shipped ledger recorded after
//! the backup, takes a snapshot and purges its log (so that members added later receive
//! the whole state), and stops; only then is it moved into place with its report.
//! `vaultd serve` on the directory then runs it; it grows through the learner path.
//!
//! Run again (a retried Job), a restore that was stopped starts afresh, one stopped while
//! moving into place finishes the move, and a finished one of the same backup answers with
//! its report — until `vaultd serve` has opened the directory, which removes the report.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::verify::fetch_and_check;
use super::{BackupError, Destination};
use crate::cluster::{raft_state_keys, read_pairs, ClusterOptions};
use crate::crypto::Kek;
use crate::store::{encode, keys, Store};
use crate::vault::{Vault, VaultSettings};

/// Where the vault is built inside the data directory, so that an interrupted restore
/// leaves nothing `vaultd serve` would open.
const STAGING_DIR: &str = ".restoring";
/// The report of a finished restore, kept in the data directory: a restore run again on
/// it (a retried Job) answers with it instead of failing.
const REPORT_FILE: &str = "restore-report.json";
/// Where the backup is fetched to, inside the data directory.
const WORK_DIR: &str = ".restore-work";
/// What mkfs leaves on a new volume's root: not data.
const LOST_AND_FOUND: &str = "lost+found";

/// Pairs written to the new state tree per batch.
const LOAD_BATCH: usize = 4096;

pub struct RestoreOptions {
    /// The backup to restore (the newest when `None`).
    pub backup: Option<String>,
    /// A data directory that does not exist yet or is empty (but for `lost+found`).
    pub data_dir: PathBuf,
}

/// What `vaultd restore` prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The backup's id, and where it came from.
    pub backup: String,
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
    let staging = data_dir.join(STAGING_DIR);
    let invalid = |what: &str, e: std::io::Error| BackupError::Invalid(format!("{what} {}: {e}", data_dir.display()));
    if staging.join(REPORT_FILE).exists() {
        // An earlier restore finished but was stopped while moving its result into place.
        move_into_place(data_dir).map_err(|e| invalid("cannot move the restored vault into", e))?;
    }
    if let Some(report) = finished_restore(data_dir).map_err(|e| invalid("cannot read the restore report in", e))? {
        // Only the same restore, not served yet (serve removes the report), is answered.
        let same_source = report.restored_from == format!("{}/{}", source.name, report.backup);
        if !same_source || options.backup.as_ref().is_some_and(|wanted| *wanted != report.backup) {
            return Err(BackupError::Invalid(format!(
                "{} already holds a restore of {}, not of {}/{}",
                data_dir.display(),
                report.restored_from,
                source.name,
                options.backup.as_deref().unwrap_or("(the newest backup)")
            )));
        }
        tracing::info!(backup = %report.backup, "the data directory already holds this restore");
        return Ok(report);
    }
    // What an earlier restore that stopped before it finished left: start again.
    let work_dir = data_dir.join(WORK_DIR);
    for leftover in [&staging, &work_dir] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(|e| invalid("cannot remove an unfinished restore from", e))?;
        }
    }
    if holds_data(data_dir).map_err(|e| invalid("cannot read", e))? {
        return Err(BackupError::Invalid(format!(
            "{} is not empty: restore makes a new data directory",
            data_dir.display()
        )));
    }
    // The backup is fetched onto the data directory's volume, not into /tmp (a pod's /tmp
    // may be small), and removed once its state is loaded — or at once if it is refused,
    // so that a refusal leaves nothing behind.
    let made_data_dir = !data_dir.exists();
    std::fs::create_dir_all(&work_dir).map_err(|e| invalid("cannot make a work directory in", e))?;
    let fetched = async {
        let checked = fetch_and_check(source, options.backup.as_deref(), &work_dir).await?;
        checked.unwrap_keys(&kek).await?;
        let ledger = source.ledger_from(&checked.manifest.cluster_id, checked.manifest.ledger_next).await?;
        Ok::<_, BackupError>((checked, ledger))
    };
    let (checked, ledger) = match fetched.await {
        Ok(fetched) => fetched,
        Err(refusal) => {
            let _ = std::fs::remove_dir_all(&work_dir);
            if made_data_dir {
                let _ = std::fs::remove_dir(data_dir);
            }
            return Err(refusal);
        }
    };

    // From here on the staging directory is written; the data directory only at the end.
    let cluster_id = Uuid::new_v4();
    let store = write_data_dir(&staging, &checked.state, &checked.audit, cluster_id)
        .map_err(|e| BackupError::Invalid(format!("cannot write {}: {e}", staging.display())))?;
    std::fs::remove_dir_all(&work_dir).map_err(|e| invalid("cannot remove the work directory from", e))?;
    // The backup's hash chain was checked as it was fetched: no verification walk here.
    let settings = VaultSettings { audit_verification: None, ..VaultSettings::default() };
    let throwaway_root = Zeroizing::new(crate::audit::hex(&crate::crypto::random_bytes::<32>()));
    let vault = Vault::open_store(store, &staging, kek, throwaway_root, settings, ClusterOptions::default())
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
    drop(vault);
    let report = RestoreReport {
        backup: checked.id.clone(),
        restored_from: format!("{}/{}", source.name, checked.id),
        source_cluster_id: checked.manifest.cluster_id.clone(),
        cluster_id: cluster_id.to_string(),
        subjects: checked.manifest.subjects,
        last_applied_index: checked.manifest.last_applied_index,
        erasures_applied: applied,
        erasures_not_applicable: not_applicable,
    };
    write_report(&staging, &report).map_err(|e| invalid("cannot write the restore report in", e))?;
    move_into_place(data_dir).map_err(|e| invalid("cannot move the restored vault into", e))?;
    Ok(report)
}

/// Called when `vaultd serve` has opened `data_dir`: a restore's report goes (so that a
/// restore run again on a directory that was served since is refused, not answered with
/// it), and so does an empty staging directory a stopped move left.
pub fn forget_finished_restore(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(data_dir.join(REPORT_FILE)) {
        Ok(()) => tracing::info!("first start after a restore: its report is removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Best effort: only an empty one goes.
    let _ = std::fs::remove_dir(data_dir.join(STAGING_DIR));
    Ok(())
}

/// Whether `dir` holds anything but what a new volume's root has (`lost+found`).
fn holds_data(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                if entry?.file_name() != LOST_AND_FOUND {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The report of a restore that finished in `dir`, if one did.
fn finished_restore(dir: &Path) -> std::io::Result<Option<RestoreReport>> {
    match std::fs::read(dir.join(REPORT_FILE)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The report goes into the staging directory last, durably: its presence there means the
/// vault beside it is whole.
fn write_report(staging: &Path, report: &RestoreReport) -> std::io::Result<()> {
    let partial = staging.join(format!("{REPORT_FILE}.partial"));
    let mut file = File::create(&partial)?;
    serde_json::to_writer_pretty(&mut file, report)?;
    file.sync_all()?;
    std::fs::rename(&partial, staging.join(REPORT_FILE))?;
    File::open(staging)?.sync_all()
}

/// Moves everything from the staging directory up into the data directory, the report
/// last, then removes the staging directory. Running it again after an interruption
/// finishes the move.
fn move_into_place(data_dir: &Path) -> std::io::Result<()> {
    let staging = data_dir.join(STAGING_DIR);
    for entry in std::fs::read_dir(&staging)? {
        let name = entry?.file_name();
        if name != REPORT_FILE {
            std::fs::rename(staging.join(&name), data_dir.join(&name))?;
        }
    }
    File::open(data_dir)?.sync_all()?;
    std::fs::rename(staging.join(REPORT_FILE), data_dir.join(REPORT_FILE))?;
    File::open(data_dir)?.sync_all()?;
    std::fs::remove_dir(&staging)
}

/// A data directory holding the backup's state (without the old cluster's Raft state),
/// under the new cluster id, and its trail; the store stays open for the vault.
fn write_data_dir(dir: &Path, state: &Path, audit: &Path, cluster_id: Uuid) -> Result<Store, crate::store::StoreError> {
    std::fs::create_dir_all(dir)?;
    let store = Store::open(dir, VaultSettings::default().storage_cache_bytes)?;
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
    Ok(store)
}
