//! The children of `spec.bootstrap.fromBackup`, made before the StatefulSet: pod 0's data
//! volume (named as the StatefulSet's claim template names it, so that pod 0 finds it) and
//! the Job that runs `vaultd restore` into it with the vault's HSM.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    SecretEnvSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::stateful_set::{
    data_claim_spec, hsm_access, hsm_env, vault_affinity, vaultd_env_from, HsmAccess, DATA_VOLUME,
};
use super::{child_meta, layout, restricted_security_context, vaultd_pod_security_context};
use crate::crd::PiiVault;
use crate::piivault::names::{helper_labels, selector_labels, VaultNames};
use crate::Error;

/// Retries of a failed restore (each starts afresh or finishes the last one's move).
const BACKOFF_LIMIT: i32 = 3;

/// The annotation on pod 0's claim that says which vault's restore made it (its UID).
pub const RESTORE_OF: &str = "strongroom.dev/restore-of";

/// Pod 0's data volume. Not owned by the vault: like the StatefulSet's own claims, it
/// outlives a deleted vault.
pub fn restore_claim(vault: &PiiVault) -> PersistentVolumeClaim {
    let names = VaultNames::of(vault);
    let uid = vault.metadata.uid.clone().unwrap_or_default();
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(names.data_claim(0)),
            namespace: Some(names.namespace().to_string()),
            labels: Some(selector_labels(&names)),
            annotations: Some([(RESTORE_OF.to_string(), uid)].into()),
            ..ObjectMeta::default()
        },
        spec: Some(data_claim_spec(vault)),
        status: None,
    }
}

/// The Job restoring `from` into pod 0's volume; `None` without `spec.bootstrap`.
pub fn restore_job(vault: &PiiVault) -> Result<Option<Job>, Error> {
    let Some(from) = vault.spec.bootstrap.as_ref().map(|bootstrap| &bootstrap.from_backup) else { return Ok(None) };
    let names = VaultNames::of(vault);
    let volume = PersistentVolumeClaimVolumeSource { claim_name: names.data_claim(0), read_only: Some(false) };
    let data = Volume { persistent_volume_claim: Some(volume), ..Volume::default() };
    let restore = ("restore", restore_args(&from.source, from.backup_id.as_deref(), layout::DATA_DIR));
    let pod = restoring_pod(vault, &from.credentials_secret, data, layout::DATA_DIR, vec![restore]);
    let template = ObjectMeta { labels: Some(helper_labels(&names, "restore")), ..ObjectMeta::default() };
    Ok(Some(Job {
        metadata: child_meta(vault, names.restore_job())?,
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            template: PodTemplateSpec { metadata: Some(template), spec: Some(pod) },
            ..JobSpec::default()
        }),
        status: None,
    }))
}

/// A pod that restores with the vault's HSM and the backup store's `credentials` into
/// `data`, mounted at `data_dir`: the HSM's init containers, then each `(name, args)` of
/// `steps` in turn, all `vaultd` (the last one the main container).
pub(super) fn restoring_pod(
    vault: &PiiVault,
    credentials: &str,
    data: Volume,
    data_dir: &str,
    steps: Vec<(&str, Vec<String>)>,
) -> PodSpec {
    let HsmAccess { mut volumes, mut mounts, init_containers: mut containers } = hsm_access(vault);
    volumes.push(Volume { name: DATA_VOLUME.into(), ..data });
    mounts.push(VolumeMount { name: DATA_VOLUME.into(), mount_path: data_dir.into(), ..VolumeMount::default() });
    let mut env_from = vaultd_env_from(vault);
    env_from.push(EnvFromSource {
        secret_ref: Some(SecretEnvSource { name: credentials.to_string(), optional: Some(false) }),
        ..EnvFromSource::default()
    });
    containers.extend(steps.into_iter().map(|(name, args)| Container {
        name: name.into(),
        image: Some(vault.spec.image.clone()),
        image_pull_policy: vault.spec.image_pull_policy.clone(),
        command: Some(vec!["vaultd".into()]),
        args: Some(args),
        env: Some(hsm_env(vault)).filter(|env| !env.is_empty()),
        env_from: Some(env_from.clone()),
        volume_mounts: Some(mounts.clone()),
        resources: vault.spec.resources.clone(),
        // What vaultd said last (its error) becomes the pod's message.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    }));
    let main = containers.pop().into_iter().collect();
    PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        init_containers: (!containers.is_empty()).then_some(containers),
        containers: main,
        volumes: Some(volumes),
        security_context: Some(vaultd_pod_security_context()),
        // Placed as a node is: the restore decides where pod 0's volume lives.
        affinity: Some(vault_affinity(vault)),
        node_selector: (!vault.spec.node_selector.is_empty()).then(|| vault.spec.node_selector.clone()),
        tolerations: (!vault.spec.tolerations.is_empty()).then(|| vault.spec.tolerations.clone()),
        priority_class_name: vault.spec.priority_class_name.clone(),
        image_pull_secrets: (!vault.spec.image_pull_secrets.is_empty()).then(|| vault.spec.image_pull_secrets.clone()),
        ..PodSpec::default()
    }
}

/// `vaultd restore` of `backup` (the newest when `None`) from `source` into `data_dir`.
pub(super) fn restore_args(source: &str, backup: Option<&str>, data_dir: &str) -> Vec<String> {
    let mut args = vec!["restore".to_string(), "--from".into(), source.to_string()];
    if let Some(id) = backup {
        args.extend(["--backup".to_string(), id.to_string()]);
    }
    args.extend(["--data-dir".to_string(), data_dir.to_string()]);
    args
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_owned_child, softhsm_vault};
    use super::*;
    use crate::crd::piivault::{BootstrapSpec, FromBackupSpec};

    fn restoring(backup_id: Option<&str>) -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.spec.bootstrap = Some(BootstrapSpec {
            from_backup: FromBackupSpec {
                source: "s3://backups/pii/old".into(),
                credentials_secret: "backup-s3".into(),
                backup_id: backup_id.map(String::from),
                softhsm_secret: None,
            },
        });
        vault
    }

    fn stateful_set_pod(vault: &PiiVault) -> k8s_openapi::api::core::v1::PodSpec {
        let set = super::super::stateful_set(vault, 3, &super::super::config_map(vault).unwrap()).unwrap();
        set.spec.unwrap().template.spec.unwrap()
    }

    #[test]
    fn without_bootstrap_there_is_no_restore() {
        assert!(restore_job(&softhsm_vault(3)).unwrap().is_none());
    }

    #[test]
    fn the_job_restores_into_pod_zeros_volume_with_the_vaults_hsm_and_the_credentials() {
        let job = restore_job(&restoring(Some("20261201T020000Z-1"))).unwrap().unwrap();
        assert_owned_child(&job.metadata);
        assert_eq!(job.metadata.name.as_deref(), Some("vault-restore"));
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let restore = &pod.containers[0];
        assert_eq!(restore.name, "restore");
        assert_eq!(
            restore.args.as_ref().unwrap(),
            &[
                "restore",
                "--from",
                "s3://backups/pii/old",
                "--backup",
                "20261201T020000Z-1",
                "--data-dir",
                "/var/lib/strongroom"
            ]
        );
        let env_from = restore.env_from.as_ref().unwrap();
        assert_eq!(env_from[0].config_map_ref.as_ref().unwrap().name, "vault-config");
        assert_eq!(env_from[1].secret_ref.as_ref().unwrap().name, "backup-s3");
        // The same SoftHSM token as a node's: the init container imports the shared KEK.
        assert_eq!(pod.init_containers.as_ref().unwrap()[0].name, "softhsm-init");
        let claim = pod.volumes.as_ref().unwrap().iter().find_map(|v| v.persistent_volume_claim.as_ref()).unwrap();
        assert_eq!(claim.claim_name, "data-vault-0");
        let mounts: Vec<_> = restore.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        assert!(mounts.contains(&"/var/lib/strongroom") && mounts.contains(&"/hsm"), "{mounts:?}");
        // Placed as a node is (the restore decides where pod 0's volume lives).
        assert_eq!(pod.affinity, stateful_set_pod(&restoring(None)).affinity);
        let labels = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "restore");
        // The newest backup when none is named.
        let newest = restore_job(&restoring(None)).unwrap().unwrap();
        let args = newest.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
        assert!(!args.contains(&"--backup".to_string()), "{args:?}");
    }

    #[test]
    fn pod_zeros_claim_is_the_one_the_stateful_set_would_make_and_outlives_the_vault() {
        let vault = restoring(None);
        let claim = restore_claim(&vault);
        assert_eq!(claim.metadata.name.as_deref(), Some("data-vault-0"));
        assert!(claim.metadata.owner_references.is_none());
        let set = super::super::stateful_set(&vault, 3, &super::super::config_map(&vault).unwrap()).unwrap();
        let template = &set.spec.unwrap().volume_claim_templates.unwrap()[0];
        assert_eq!(claim.spec, template.spec);
        assert_eq!(claim.metadata.labels, template.metadata.labels);
    }
}
