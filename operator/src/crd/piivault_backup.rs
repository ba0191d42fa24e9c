//! The `PiiVaultBackup` custom resource: one backup of a `PiiVault`, taken now (as
//! CloudNativePG's `Backup` is to its scheduled backups).
//!
//! It runs once: its spec never changes, and once it is `Completed` or `Failed` the
//! operator leaves it as it is. Another backup is another `PiiVaultBackup`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest name: the Job is `<name>-backup`, and a Job's name is a label value of its pods
/// (at most 63 characters).
pub const MAX_NAME_LEN: usize = 56;

/// One backup of a `PiiVault`, taken now by a Job that runs `vaultd backup` into the
/// vault's `spec.backup` destination.
// Several `printcolumn(type_ = ...)` entries look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strongroom.dev",
    version = "v1alpha1",
    kind = "PiiVaultBackup",
    plural = "piivaultbackups",
    shortname = "pvbackup",
    category = "strongroom",
    namespaced,
    status = "PiiVaultBackupStatus",
    derive = "PartialEq",
    doc = "One backup of a Strongroom vault, taken now (a Job running `vaultd backup` into the vault's spec.backup destination).",
    validation = Rule::new("size(self.metadata.name) <= 56").message("the name of a PiiVaultBackup has at most 56 characters (its Job is <name>-backup)"),
    printcolumn(name = "Vault", type_ = "string", json_path = ".spec.vault"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Backup", type_ = "string", json_path = ".status.backupId"),
    printcolumn(name = "Subjects", type_ = "integer", json_path = ".status.subjects"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("the spec of a PiiVaultBackup is immutable: create another PiiVaultBackup for another backup"))]
pub struct PiiVaultBackupSpec {
    /// The `PiiVault` in this namespace to back up; it needs `spec.backup` (the
    /// destination and its credentials).
    #[schemars(length(min = 1, max = 253))]
    pub vault: String,
}

/// Where the backup stands, and once it is stored, what it holds.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PiiVaultBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// The backup's id in the destination (`vaultd backup list` lists it, `vaultd restore
    /// --backup` takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Where the backup is stored (`s3://bucket/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Active subjects in the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<i64>,
    /// The backup's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// When the Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the Job finished (successfully).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// What the backup waits for, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Job that takes the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// Where a backup stands.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupPhase {
    /// Not started: waiting for the vault's backup token.
    Pending,
    /// The Job runs.
    Running,
    /// The backup is stored.
    Completed,
    /// No backup was stored; `message` says why.
    Failed,
}

impl BackupPhase {
    /// Completed and Failed are final: the operator changes nothing after them.
    pub fn is_terminal(self) -> bool {
        matches!(self, BackupPhase::Completed | BackupPhase::Failed)
    }
}

#[cfg(test)]
mod tests {
    //! The CEL rules, evaluated client-side as the API server would (kube's `cel` feature).

    use kube::core::cel::{validate_cel, validate_cel_update};

    use super::*;

    fn backup(name: &str, vault: &str) -> PiiVaultBackup {
        PiiVaultBackup::new(name, PiiVaultBackupSpec { vault: vault.into() })
    }

    #[test]
    fn the_spec_never_changes() {
        let old = backup("nightly", "customers");
        assert!(validate_cel_update(&old.clone(), &old).is_ok());
        let error = validate_cel_update(&backup("nightly", "other"), &old).expect_err("rejected");
        assert!(format!("{error:?}").contains("the spec of a PiiVaultBackup is immutable"), "{error:?}");
    }

    #[test]
    fn names_leave_room_for_the_job_suffix() {
        assert!(validate_cel(&backup(&"b".repeat(MAX_NAME_LEN), "customers")).is_ok());
        let error = validate_cel(&backup(&"b".repeat(MAX_NAME_LEN + 1), "customers")).expect_err("rejected");
        assert!(format!("{error:?}").contains("at most 56 characters"), "{error:?}");
    }
}
