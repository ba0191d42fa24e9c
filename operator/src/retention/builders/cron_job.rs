//! The CronJob that runs the policy: on `spec.schedule` (UTC), never two runs at once, each
//! Job a `vaultd minimize` in the vault's own image with the policy's token and policy file
//! mounted, talking to the vault's client Service.
//!
//! The vault API is HTTPS (unless the PiiVault's `tls.enabled` is false): the Job mounts
//! the `ca.crt` of the Secret the vault serves its API with and `vaultd minimize` trusts
//! only that CA (`--ca-file`). The vault's NetworkPolicy admits any pod to the API port;
//! the Job pods carry [`JOB_VAULT_LABEL`] should it ever become selective.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, KeyToPath, PodSpec, PodTemplateSpec, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::child_meta;
use crate::crd::{PiiVault, RetentionPolicy};
use crate::piivault::api_tls::api_tls_secret;
use crate::piivault::builders::{restricted_security_context, vaultd_pod_security_context, SECRET_FILE_MODE};
use crate::piivault::names::VaultNames;
use crate::retention::names::{job_labels, PolicyNames, POLICY_KEY, TOKEN_KEY};
use crate::Error;

/// Where the token Secret is mounted in the Job's container.
pub const TOKEN_DIR: &str = "/var/run/strongroom/retention";
/// Where the vault's API CA (`ca.crt`) is mounted.
pub const CA_DIR: &str = "/etc/strongroom/vault-ca";
/// Where the policy ConfigMap is mounted.
pub const POLICY_DIR: &str = "/etc/strongroom/retention";
/// Retries of a failed run (runs are idempotent, so a retry changes nothing twice).
const BACKOFF_LIMIT: i32 = 2;
/// A run that has not started this long after its time is skipped (the next one comes).
const STARTING_DEADLINE_SECONDS: i64 = 3600;
const HISTORY_LIMIT: i32 = 3;
/// The schedule is in UTC, whatever the controller manager's time zone.
pub const TIME_ZONE: &str = "Etc/UTC";

pub fn cron_job(policy: &RetentionPolicy, vault: &PiiVault) -> Result<CronJob, Error> {
    let names = PolicyNames::of(policy);
    let labels = job_labels(&names);
    let token_file = format!("{TOKEN_DIR}/{TOKEN_KEY}");
    let policy_path = format!("{POLICY_DIR}/{POLICY_KEY}");
    let mut args = vec![
        "minimize".to_string(),
        "--vault".to_string(),
        VaultNames::of(vault).client_address(),
        "--token-file".to_string(),
        token_file,
        "--policy".to_string(),
        policy_path,
    ];
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut mounts = vec![mount("token", TOKEN_DIR), mount("policy", POLICY_DIR)];
    let mut volumes = vec![
        Volume {
            name: "token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.token_secret()),
                items: Some(vec![KeyToPath { key: TOKEN_KEY.into(), path: TOKEN_KEY.into(), mode: None }]),
                default_mode: Some(SECRET_FILE_MODE),
                optional: Some(false),
            }),
            ..Volume::default()
        },
        Volume {
            name: "policy".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                items: Some(vec![KeyToPath { key: POLICY_KEY.into(), path: POLICY_KEY.into(), mode: None }]),
                default_mode: None,
                optional: Some(false),
            }),
            ..Volume::default()
        },
    ];
    if let Some(secret) = api_tls_secret(vault) {
        args.extend(["--ca-file".to_string(), format!("{CA_DIR}/ca.crt")]);
        mounts.push(mount("vault-ca", CA_DIR));
        volumes.push(Volume {
            name: "vault-ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                items: Some(vec![KeyToPath { key: "ca.crt".into(), path: "ca.crt".into(), mode: None }]),
                default_mode: Some(SECRET_FILE_MODE),
                optional: Some(false),
            }),
            ..Volume::default()
        });
    }
    let container = Container {
        name: "minimize".to_string(),
        image: Some(vault.spec.image.clone()),
        image_pull_policy: vault.spec.image_pull_policy.clone(),
        command: Some(vec!["vaultd".to_string()]),
        args: Some(args),
        volume_mounts: Some(mounts),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".to_string()),
        automount_service_account_token: Some(false),
        containers: vec![container],
        volumes: Some(volumes),
        security_context: Some(vaultd_pod_security_context()),
        image_pull_secrets: (!vault.spec.image_pull_secrets.is_empty()).then(|| vault.spec.image_pull_secrets.clone()),
        ..PodSpec::default()
    };
    let template_meta = ObjectMeta { labels: Some(labels.clone()), ..ObjectMeta::default() };
    Ok(CronJob {
        metadata: child_meta(policy, names.cron_job())?,
        spec: Some(CronJobSpec {
            schedule: policy.spec.schedule.clone(),
            time_zone: Some(TIME_ZONE.to_string()),
            suspend: Some(policy.spec.suspend),
            concurrency_policy: Some("Forbid".to_string()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(HISTORY_LIMIT),
            failed_jobs_history_limit: Some(HISTORY_LIMIT),
            job_template: JobTemplateSpec {
                metadata: Some(template_meta.clone()),
                spec: Some(JobSpec {
                    backoff_limit: Some(BACKOFF_LIMIT),
                    template: PodTemplateSpec { metadata: Some(template_meta), spec: Some(pod) },
                    ..JobSpec::default()
                }),
            },
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_owned_by_policy;
    use super::*;
    use crate::retention::names::JOB_VAULT_LABEL;
    use crate::retention::test_support::{customers_vault, issue_example};

    fn pod(job: &CronJob) -> &PodSpec {
        let template = &job.spec.as_ref().unwrap().job_template;
        template.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn the_job_runs_vaultd_minimize_against_the_client_service() {
        let vault = customers_vault();
        let job = cron_job(&issue_example(), &vault).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("retention-drop-phone"));
        assert_owned_by_policy(&job.metadata);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.schedule, "0 3 * * *");
        assert_eq!(spec.time_zone.as_deref(), Some("Etc/UTC"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(spec.job_template.spec.as_ref().unwrap().backoff_limit, Some(2));
        let pod = pod(&job);
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("registry.example/strongroom/vaultd:0.1.0"));
        assert_eq!(container.command.as_deref(), Some(&["vaultd".to_string()][..]));
        assert_eq!(
            container.args.as_ref().unwrap(),
            &[
                "minimize",
                "--vault",
                "https://customers.shop.svc:3000",
                "--token-file",
                "/var/run/strongroom/retention/token",
                "--policy",
                "/etc/strongroom/retention/policy.yaml",
                "--ca-file",
                "/etc/strongroom/vault-ca/ca.crt"
            ]
        );
        let volumes = pod.volumes.as_ref().unwrap();
        let secret = volumes.iter().find_map(|v| v.secret.as_ref()).unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("retention-drop-phone-token"));
        let config = volumes.iter().find_map(|v| v.config_map.as_ref()).unwrap();
        assert_eq!(config.name, "retention-drop-phone-policy");
        let mounts: Vec<&str> =
            container.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        assert_eq!(mounts, [TOKEN_DIR, POLICY_DIR, CA_DIR]);
        let ca =
            volumes.iter().filter_map(|v| v.secret.as_ref()).find(|s| s.items.as_ref().unwrap()[0].key == "ca.crt");
        assert_eq!(ca.unwrap().secret_name.as_deref(), Some("customers-api-tls"), "the CA only, never the key");
        let labels = job.spec.as_ref().unwrap().job_template.spec.as_ref().unwrap().template.metadata.as_ref();
        assert_eq!(labels.unwrap().labels.as_ref().unwrap()[JOB_VAULT_LABEL], "customers");
        assert_eq!(container.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
    }

    #[test]
    fn without_tls_the_job_talks_plain_http_and_mounts_no_ca() {
        let mut vault = customers_vault();
        vault.spec.tls.enabled = false;
        let job = cron_job(&issue_example(), &vault).unwrap();
        let pod = pod(&job);
        let args = pod.containers[0].args.as_ref().unwrap();
        assert_eq!(args[2], "http://customers.shop.svc:3000");
        assert!(!args.contains(&"--ca-file".to_string()));
        assert_eq!(pod.volumes.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn suspend_and_the_pull_settings_follow_policy_and_vault() {
        let mut policy = issue_example();
        policy.spec.suspend = true;
        let mut vault = customers_vault();
        vault.spec.image_pull_policy = Some("Always".into());
        vault.spec.image_pull_secrets =
            vec![k8s_openapi::api::core::v1::LocalObjectReference { name: "registry".into() }];
        let job = cron_job(&policy, &vault).unwrap();
        assert_eq!(job.spec.as_ref().unwrap().suspend, Some(true));
        assert_eq!(pod(&job).containers[0].image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(pod(&job).image_pull_secrets.as_ref().unwrap()[0].name, "registry");
    }
}
