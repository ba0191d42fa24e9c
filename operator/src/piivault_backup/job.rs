//! The Job of a `PiiVaultBackup`, as a pure function of the resource and its vault: the
//! scheduled backups' `vaultd backup` container and pod (`piivault::builders::backup`), run
//! once, owned by the `PiiVaultBackup`.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::controller_kit::child_meta;
use crate::crd::piivault::BackupSpec;
use crate::crd::{PiiVault, PiiVaultBackup};
use crate::piivault::builders::backup::{pod, take_container};
use crate::piivault::names::{helper_labels, VaultNames};
use crate::Error;

/// Attempts after the first one fails (a vault briefly away, a node's one backup slot taken).
const BACKOFF_LIMIT: i32 = 2;
/// The Job fails if it has not finished in six hours.
const ACTIVE_DEADLINE_SECONDS: i64 = 6 * 3600;
/// The label the Job controller gives a Job's pods, naming the Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// The Job's name: `<name>-backup`.
pub fn job_name(backup: &PiiVaultBackup) -> String {
    format!("{}-backup", backup.name_any())
}

/// The Job that backs up `vault` into `spec` (its `spec.backup`) for `backup`.
pub fn backup_job(backup: &PiiVaultBackup, vault: &PiiVault, spec: &BackupSpec) -> Result<Job, Error> {
    let labels = helper_labels(&VaultNames::of(vault), "backup");
    let pod = PodSpec { restart_policy: Some("Never".into()), ..pod(vault, take_container(vault, spec)) };
    Ok(Job {
        metadata: child_meta(backup, job_name(backup), labels.clone(), "PiiVaultBackup metadata.uid")?,
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::piivault::builders::backup_cron_job;
    use crate::piivault::names::selector_labels;
    use crate::piivault_backup::test_support::{nightly, vault_with_backup, BACKUP_UID};

    #[test]
    fn the_job_runs_the_backup_container_once_with_its_summary_as_termination_message() {
        let vault = vault_with_backup();
        let job = backup_job(&nightly(), &vault, vault.spec.backup.as_ref().unwrap()).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("nightly-backup"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("pii"));
        let owners = job.metadata.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!((owners[0].kind.as_str(), owners[0].name.as_str()), ("PiiVaultBackup", "nightly"));
        assert_eq!((owners[0].uid.as_str(), owners[0].controller), (BACKUP_UID, Some(true)));

        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(spec.active_deadline_seconds, Some(6 * 3600));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.init_containers, None);
        // The scheduled backups' container: the token, the CA, the credentials, and the
        // summary as termination message.
        let mut scheduled = vault.clone();
        scheduled.spec.backup.as_mut().unwrap().schedule = Some("0 2 * * *".into());
        let cron_job = backup_cron_job(&scheduled).unwrap().unwrap();
        let cron_pod = cron_job.spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers, cron_pod.init_containers.unwrap());
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.ends_with(&["--summary-file".into(), "/dev/termination-log".into()]), "{args:?}");
        assert_eq!(pod.volumes, cron_pod.volumes);
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn backup_pods_carry_the_vaults_labels_but_are_never_selected_as_vault_pods() {
        let vault = vault_with_backup();
        let job = backup_job(&nightly(), &vault, vault.spec.backup.as_ref().unwrap()).unwrap();
        let template = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(Some(&template), job.metadata.labels.as_ref());
        assert_eq!(template["app.kubernetes.io/component"], "backup");
        assert_eq!(template["app.kubernetes.io/instance"], "vault");
        assert_eq!(template["app.kubernetes.io/managed-by"], "strongroom-operator");
        let vault_pods = selector_labels(&VaultNames::of(&vault));
        assert!(vault_pods.iter().any(|(key, value)| template.get(key) != Some(value)), "{template:?}");
    }
}
