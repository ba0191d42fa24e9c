//! Backups of a running vault and restores from them. `vaultd backup` takes a backup
//! through the API (`GET /v1/sys/backup`), stores it in a [`Destination`] and ships the
//! erasure ledger beside it; `list`, `verify` and `prune` look after what is stored;
//! `vaultd restore` makes a new one-member vault from a backup and applies every erasure
//! the ledger recorded after it, so that nobody erased since comes back.

mod destination;
mod restore;
mod take;
mod verify;

pub use destination::Destination;
pub use restore::{forget_finished_restore, restore, RestoreOptions, RestoreReport};
pub use strongroom_admin_api::backup::TakeReport;
pub use take::{ship_ledger, take, VaultApi};
pub use verify::{verify, VerifyReport};

use std::time::Duration;

use serde::Serialize;
use strongroom_admin_api::backup::Manifest;

/// Why a backup command failed. Each message says what went wrong where.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: {1}")]
    Store(String, String),
    #[error("no complete backup in {0}")]
    NoBackup(String),
    #[error("the backup is damaged: {0}")]
    Corrupt(String),
    #[error("cannot reach the vault at {0}: {1}")]
    Unreachable(String, String),
    #[error("the vault refused ({0}): {1}")]
    Refused(u16, String),
    #[error("{0}")]
    Refusal(String),
}

/// A backup's id: when it was cut (UTC, to the millisecond) and its last log index, so
/// that ids sort in the order backups were taken.
pub fn backup_id(manifest: &Manifest) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(manifest.created_at);
    let stamp = humantime::format_rfc3339_millis(time).to_string().replace(['-', ':'], "");
    format!("{stamp}-{}", manifest.last_applied_index)
}

/// What `vaultd backup prune` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub kept: Vec<String>,
    pub deleted: Vec<String>,
}

/// Deletes the backups that are neither among the newest `keep_last` nor younger than
/// `keep_within`; the newest is always kept. The ledger is kept whole: a kept backup may
/// need any entry after it.
pub async fn prune(
    destination: &Destination,
    keep_last: usize,
    keep_within: Option<Duration>,
) -> Result<PruneReport, BackupError> {
    let backups = destination.backups().await?;
    let now = crate::audit::now_ms();
    let within_ms = keep_within.map_or(0, |d| d.as_millis() as u64);
    let (mut kept, mut deleted) = (Vec::new(), Vec::new());
    for (age_rank, id) in backups.iter().rev().enumerate() {
        let young = within_ms > 0 && now.saturating_sub(destination.manifest(id).await?.created_at) <= within_ms;
        if age_rank < keep_last.max(1) || young {
            kept.push(id.clone());
        } else {
            destination.delete(id).await?;
            deleted.push(id.clone());
        }
    }
    kept.reverse();
    deleted.reverse();
    Ok(PruneReport { kept, deleted })
}
