//! The `PiiVaultBackup` controller: one backup of a vault, now.
//!
//! Each `PiiVaultBackup` gets one Job that runs the scheduled backups' `vaultd backup`
//! container (the vault's backup token, CA and bucket credentials) once, into the vault's
//! `spec.backup` destination. The container leaves its report as its termination message,
//! which the controller reads back into the status when the Job has succeeded.
//!
//! - [`job`]: the Job, as a pure function of the resource and its vault.
//! - [`status`]: the status, from what the reconciler saw (the vault, the Job, its pods).
//! - [`reconciler`]: creates the Job when the vault is ready for it, follows it to its end,
//!   reports; `run` starts the controller.

pub mod job;
pub mod reconciler;
pub mod status;

pub use reconciler::{run, Context};

#[cfg(test)]
pub(crate) mod test_support {
    //! Backups, vaults and pods as the API server would hand them to the reconciler.

    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;
    use strongroom_admin_api::backup::TakeReport;

    use crate::crd::piivault::{BackupRetention, BackupSpec};
    use crate::crd::{PiiVault, PiiVaultBackup, PiiVaultBackupSpec};
    use crate::piivault::builders::test_support::softhsm_vault;

    pub const BACKUP_UID: &str = "9a3e55d1-0000-4000-8000-000000000003";

    /// `PiiVaultBackup` nightly of the vault `vault` (namespace `pii`), as created.
    pub fn nightly() -> PiiVaultBackup {
        let mut backup = PiiVaultBackup::new("nightly", PiiVaultBackupSpec { vault: "vault".into() });
        backup.metadata = ObjectMeta {
            name: Some("nightly".into()),
            namespace: Some("pii".into()),
            uid: Some(BACKUP_UID.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        backup
    }

    /// The vault `vault`, backed up to s3://backups/pii/vault with the Secret backup-s3.
    pub fn vault_with_backup() -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.spec.backup = Some(BackupSpec {
            destination: "s3://backups/pii/vault".into(),
            credentials_secret: "backup-s3".into(),
            schedule: None,
            retention: BackupRetention::default(),
            restore_drill: None,
        });
        vault
    }

    /// What `vaultd backup` reports.
    pub fn take_report() -> TakeReport {
        TakeReport {
            backup: "20261123T020001.123Z-42".into(),
            destination: "s3://backups/pii/vault".into(),
            subjects: 1200,
            bytes: 5_000_000,
            last_applied_index: 42,
            ledger_entries_shipped: 3,
            ledger_error: None,
        }
    }

    /// The uid of the backup's Job.
    pub const JOB_UID: &str = "job-uid";

    /// A pod of the Job in `phase` whose backup container ended with `message`.
    pub fn pod(name: &str, phase: &str, message: Option<&str>) -> Pod {
        let terminated = ContainerStateTerminated {
            exit_code: if phase == "Succeeded" { 0 } else { 1 },
            message: message.map(String::from),
            ..ContainerStateTerminated::default()
        };
        let job = OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "nightly-backup".into(),
            uid: JOB_UID.into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("pii".into()),
                owner_references: Some(vec![job]),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "backup".into(),
                    state: Some(ContainerState { terminated: Some(terminated), ..ContainerState::default() }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }
}
