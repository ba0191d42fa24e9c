//! The children of `spec.backup`: the CronJob of the scheduled backups (a `vaultd backup`
//! then a `vaultd backup prune`, one Job per run, never two at once) and the Deployment
//! that ships the erasure ledger to the destination every [`SHIP_EVERY`], so that a
//! restore of any backup knows every erasure made since; and the CronJob of the restore
//! drills.
//!
//! The first two run the vault's own image as the vault's user, with the backup token
//! (scope `backup:read`) and the API's CA mounted, and the credentials Secret's keys as
//! their environment; they reach the vault through its client Service over HTTPS. The
//! backup container and its pod also make a `PiiVaultBackup`'s Job
//! (`crate::piivault_backup::job`). A drill never calls the vault: it needs the HSM and the
//! credentials only.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, KeyToPath, PodSpec, PodTemplateSpec, SecretEnvSource,
    SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::restore::{restore_args, restoring_pod};
use super::{child_meta, restricted_security_context, vaultd_pod_security_context, SECRET_FILE_MODE};
use crate::crd::piivault::BackupSpec;
use crate::crd::PiiVault;
use crate::piivault::api_tls::api_tls_secret;
use crate::piivault::names::{helper_labels, VaultNames};
use crate::Error;

/// Where the backup token Secret is mounted.
pub const TOKEN_DIR: &str = "/var/run/strongroom/backup";
/// The token's key in its Secret.
pub const TOKEN_KEY: &str = "token";
/// Where the vault's API CA (`ca.crt`) is mounted.
pub const CA_DIR: &str = "/etc/strongroom/vault-ca";
/// Where a restore drill's scratch volume is mounted.
const DRILL_DIR: &str = "/var/lib/strongroom-drill";
/// The name of the `vaultd backup` container.
pub const TAKE_CONTAINER: &str = "backup";
/// Where that container writes its report (`--summary-file`): the file Kubernetes keeps as
/// the container's termination message, which a `PiiVaultBackup` reads back.
pub const SUMMARY_FILE: &str = "/dev/termination-log";
/// How often the ledger shipper ships.
pub const SHIP_EVERY: &str = "30s";
/// A scheduled backup that has not started this long after its time is skipped.
const STARTING_DEADLINE_SECONDS: i64 = 3600;
const HISTORY_LIMIT: i32 = 3;
const BACKOFF_LIMIT: i32 = 2;
/// Schedules are in UTC, whatever the controller manager's time zone.
const TIME_ZONE: &str = "Etc/UTC";

/// The CronJob of the scheduled backups; `None` without `spec.backup.schedule`.
pub fn backup_cron_job(vault: &PiiVault) -> Result<Option<CronJob>, Error> {
    let Some(backup) = &vault.spec.backup else { return Ok(None) };
    let Some(schedule) = &backup.schedule else { return Ok(None) };
    let names = VaultNames::of(vault);
    let take = take_container(vault, backup);
    let mut prune_args = vec![
        "backup".to_string(),
        "prune".into(),
        "--from".into(),
        backup.destination.clone(),
        "--keep-last".into(),
        backup.retention.keep_last.to_string(),
    ];
    if let Some(within) = &backup.retention.keep_within {
        prune_args.extend(["--keep-within".to_string(), within.clone()]);
    }
    let prune = container(vault, "prune", prune_args);
    // The backup runs first (an init container), so a failed one prunes nothing.
    let pod = PodSpec { restart_policy: Some("Never".into()), init_containers: Some(vec![take]), ..pod(vault, prune) };
    Ok(Some(cron_job(vault, names.backup_cron_job(), schedule, helper_labels(&names, "backup"), pod)?))
}

/// The CronJob of the restore drills; `None` without `spec.backup.restoreDrill`: the newest
/// backup restored into a scratch volume as large as a node's, then verified.
pub fn restore_drill_cron_job(vault: &PiiVault) -> Result<Option<CronJob>, Error> {
    let Some(backup) = &vault.spec.backup else { return Ok(None) };
    let Some(drill) = &backup.restore_drill else { return Ok(None) };
    let names = VaultNames::of(vault);
    let scratch = EmptyDirVolumeSource { medium: None, size_limit: Some(vault.spec.storage.size.clone()) };
    let data = Volume { empty_dir: Some(scratch), ..Volume::default() };
    let steps = vec![
        ("restore", restore_args(&backup.destination, None, &format!("{DRILL_DIR}/data"))),
        ("verify", vec!["backup".into(), "verify".into(), "--from".into(), backup.destination.clone()]),
    ];
    let mut pod = restoring_pod(vault, &backup.credentials_secret, data, DRILL_DIR, steps);
    // verify fetches the backup again: onto the scratch volume, not the pod's /tmp.
    for container in &mut pod.containers {
        container.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: "TMPDIR".into(),
            value: Some(DRILL_DIR.into()),
            value_from: None,
        });
    }
    let labels = helper_labels(&names, "restore-drill");
    Ok(Some(cron_job(vault, names.restore_drill_cron_job(), &drill.schedule, labels, pod)?))
}

/// A CronJob running `pod` on `schedule` (UTC), one Job at a time.
fn cron_job(
    vault: &PiiVault,
    name: String,
    schedule: &str,
    labels: std::collections::BTreeMap<String, String>,
    pod: PodSpec,
) -> Result<CronJob, Error> {
    let template = ObjectMeta { labels: Some(labels), ..ObjectMeta::default() };
    Ok(CronJob {
        metadata: child_meta(vault, name)?,
        spec: Some(CronJobSpec {
            schedule: schedule.to_string(),
            time_zone: Some(TIME_ZONE.into()),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(HISTORY_LIMIT),
            failed_jobs_history_limit: Some(HISTORY_LIMIT),
            job_template: JobTemplateSpec {
                metadata: Some(template.clone()),
                spec: Some(JobSpec {
                    backoff_limit: Some(BACKOFF_LIMIT),
                    template: PodTemplateSpec { metadata: Some(template), spec: Some(pod) },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    })
}

/// The Deployment that ships the erasure ledger; `None` without `spec.backup`.
pub fn ledger_shipper(vault: &PiiVault) -> Result<Option<Deployment>, Error> {
    let Some(backup) = &vault.spec.backup else { return Ok(None) };
    let names = VaultNames::of(vault);
    let args = [
        vec!["backup".to_string(), "ship-ledger".into(), "--every".into(), SHIP_EVERY.into()],
        vault_args(vault),
        to(backup),
    ]
    .concat();
    let labels = helper_labels(&names, "ledger-shipper");
    Ok(Some(Deployment {
        metadata: child_meta(vault, names.ledger_shipper())?,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod(vault, container(vault, "ship-ledger", args))),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }))
}

/// The `vaultd backup` container of the scheduled backups and of a `PiiVaultBackup`'s Job.
/// Its report becomes its termination message (the end of its log when it fails).
pub(crate) fn take_container(vault: &PiiVault, backup: &BackupSpec) -> Container {
    let summary = vec!["--summary-file".to_string(), SUMMARY_FILE.into()];
    let args = [vec!["backup".to_string()], vault_args(vault), to(backup), summary].concat();
    Container {
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..container(vault, TAKE_CONTAINER, args)
    }
}

/// `--vault`, `--token-file` and (with TLS) `--ca-file`.
fn vault_args(vault: &PiiVault) -> Vec<String> {
    let mut args = vec![
        "--vault".to_string(),
        VaultNames::of(vault).client_address(),
        "--token-file".into(),
        format!("{TOKEN_DIR}/{TOKEN_KEY}"),
    ];
    if api_tls_secret(vault).is_some() {
        args.extend(["--ca-file".to_string(), format!("{CA_DIR}/ca.crt")]);
    }
    args
}

fn to(backup: &BackupSpec) -> Vec<String> {
    vec!["--to".to_string(), backup.destination.clone()]
}

/// A vaultd container with the token, the CA and the credentials.
fn container(vault: &PiiVault, name: &str, args: Vec<String>) -> Container {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut mounts = vec![mount("token", TOKEN_DIR)];
    if api_tls_secret(vault).is_some() {
        mounts.push(mount("vault-ca", CA_DIR));
    }
    let credentials = vault.spec.backup.as_ref().map(|backup| backup.credentials_secret.clone());
    Container {
        name: name.into(),
        image: Some(vault.spec.image.clone()),
        image_pull_policy: vault.spec.image_pull_policy.clone(),
        command: Some(vec!["vaultd".into()]),
        args: Some(args),
        env_from: credentials.map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: secret, optional: Some(false) }),
                ..EnvFromSource::default()
            }]
        }),
        volume_mounts: Some(mounts),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    }
}

/// The pod around `main`: the token and CA volumes, the vault's user, no service account
/// token.
pub(crate) fn pod(vault: &PiiVault, main: Container) -> PodSpec {
    let names = VaultNames::of(vault);
    let secret = |secret: String, key: &str| SecretVolumeSource {
        secret_name: Some(secret),
        items: Some(vec![KeyToPath { key: key.into(), path: key.into(), mode: None }]),
        default_mode: Some(SECRET_FILE_MODE),
        optional: Some(false),
    };
    let mut volumes = vec![Volume {
        name: "token".into(),
        secret: Some(secret(names.backup_token_secret(), TOKEN_KEY)),
        ..Volume::default()
    }];
    if let Some(tls) = api_tls_secret(vault) {
        volumes.push(Volume { name: "vault-ca".into(), secret: Some(secret(tls, "ca.crt")), ..Volume::default() });
    }
    PodSpec {
        automount_service_account_token: Some(false),
        containers: vec![main],
        volumes: Some(volumes),
        security_context: Some(vaultd_pod_security_context()),
        image_pull_secrets: (!vault.spec.image_pull_secrets.is_empty()).then(|| vault.spec.image_pull_secrets.clone()),
        ..PodSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_owned_child, softhsm_vault};
    use super::*;
    use crate::crd::piivault::{BackupRetention, RestoreDrillSpec};

    fn with_backup(schedule: Option<&str>) -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.spec.backup = Some(BackupSpec {
            destination: "s3://backups/pii/vault".into(),
            credentials_secret: "backup-s3".into(),
            schedule: schedule.map(String::from),
            retention: BackupRetention { keep_last: 5, keep_within: Some("30days".into()) },
            restore_drill: None,
        });
        vault
    }

    #[test]
    fn without_spec_backup_there_are_no_backup_children() {
        let vault = softhsm_vault(3);
        assert!(backup_cron_job(&vault).unwrap().is_none());
        assert!(ledger_shipper(&vault).unwrap().is_none());
        assert!(backup_cron_job(&with_backup(None)).unwrap().is_none(), "no schedule, no CronJob");
        assert!(ledger_shipper(&with_backup(None)).unwrap().is_some(), "the ledger ships anyway");
    }

    #[test]
    fn the_cron_job_backs_up_then_prunes_with_the_token_the_ca_and_the_credentials() {
        let job = backup_cron_job(&with_backup(Some("0 2 * * *"))).unwrap().unwrap();
        assert_owned_child(&job.metadata);
        assert_eq!(job.metadata.name.as_deref(), Some("vault-backup"));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.schedule, "0 2 * * *");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = spec.job_template.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let take = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            take.args.as_ref().unwrap(),
            &[
                "backup",
                "--vault",
                "https://vault.pii.svc:3000",
                "--token-file",
                "/var/run/strongroom/backup/token",
                "--ca-file",
                "/etc/strongroom/vault-ca/ca.crt",
                "--to",
                "s3://backups/pii/vault",
                "--summary-file",
                "/dev/termination-log"
            ]
        );
        assert_eq!(take.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
        let prune = &pod.containers[0];
        assert_eq!(
            prune.args.as_ref().unwrap(),
            &["backup", "prune", "--from", "s3://backups/pii/vault", "--keep-last", "5", "--keep-within", "30days"]
        );
        for container in [take, prune] {
            let from = &container.env_from.as_ref().unwrap()[0];
            assert_eq!(from.secret_ref.as_ref().unwrap().name, "backup-s3");
            assert_eq!(container.image.as_deref(), Some(softhsm_vault(3).spec.image.as_str()));
        }
        let volumes: Vec<_> = pod.volumes.as_ref().unwrap().iter().map(|v| v.secret.clone().unwrap()).collect();
        assert_eq!(volumes[0].secret_name.as_deref(), Some("vault-backup-token"));
        assert_eq!(volumes[1].secret_name.as_deref(), Some("vault-api-tls"));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn the_ledger_shipper_ships_every_30_seconds() {
        let deployment = ledger_shipper(&with_backup(None)).unwrap().unwrap();
        assert_owned_child(&deployment.metadata);
        let spec = deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        let labels = spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "ledger-shipper");
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        let args = container.args.as_ref().unwrap();
        assert_eq!(&args[..4], ["backup", "ship-ledger", "--every", "30s"]);
        assert!(args.ends_with(&["--to".to_string(), "s3://backups/pii/vault".to_string()]), "{args:?}");
    }

    #[test]
    fn a_restore_drill_restores_the_newest_backup_into_scratch_space_then_verifies_it() {
        assert!(restore_drill_cron_job(&with_backup(Some("0 2 * * *"))).unwrap().is_none(), "only when asked for");
        let mut vault = with_backup(None);
        vault.spec.backup.as_mut().unwrap().restore_drill = Some(RestoreDrillSpec { schedule: "0 4 * * 0".into() });
        let job = restore_drill_cron_job(&vault).unwrap().unwrap();
        assert_owned_child(&job.metadata);
        assert_eq!(job.metadata.name.as_deref(), Some("vault-restore-drill"));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.schedule, "0 4 * * 0");
        let pod = spec.job_template.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let init = pod.init_containers.as_ref().unwrap();
        assert_eq!(init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["softhsm-init", "restore"]);
        assert_eq!(
            init[1].args.as_ref().unwrap(),
            &["restore", "--from", "s3://backups/pii/vault", "--data-dir", "/var/lib/strongroom-drill/data"]
        );
        assert_eq!(pod.containers[0].args.as_ref().unwrap(), &["backup", "verify", "--from", "s3://backups/pii/vault"]);
        let tmp = pod.containers[0].env.as_ref().unwrap().iter().find(|e| e.name == "TMPDIR").unwrap();
        assert_eq!(tmp.value.as_deref(), Some("/var/lib/strongroom-drill"), "verify fetches onto the scratch volume");
        let scratch =
            pod.volumes.as_ref().unwrap().iter().find_map(|v| v.empty_dir.clone().filter(|d| d.size_limit.is_some()));
        assert_eq!(
            scratch.and_then(|d| d.size_limit),
            Some(vault.spec.storage.size.clone()),
            "as large as a node's volume"
        );
        // It never calls the vault: no token mounted.
        assert!(!pod.volumes.as_ref().unwrap().iter().any(|v| v.name == "token"));
    }
}
