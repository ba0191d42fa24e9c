//! `spec.backup` in the reconcile: the backup token (scope `backup:read`, issued with the
//! operator's token into the Secret `<name>-backup-token`), the ledger shipper and the
//! CronJobs of the scheduled backups and restore drills — applied while they are asked
//! for, deleted once they are not — and what the CronJobs say about their last runs, for
//! the status.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::events::EventType;
use strongroom_admin_api::tokens::CreateToken;
use tracing::info;

use super::builders;
use super::names::VaultNames;
use super::reconciler::Context;
use super::secret_material::{operator_token_data, token_of};
use super::status::{Explanation, BACKUPS_HEALTHY};
use crate::controller_kit::{apply_object, publish};
use crate::crd::PiiVault;
use crate::retention::{reconciler::last_job_failed, schedule};
use crate::vaultd_client::{RootToken, VaultAdmin};
use crate::Error;

/// The name of the backup Jobs' vault token (one per vault).
pub const BACKUP_TOKEN_NAME: &str = "strongroom-backup";
pub const BACKUP_SCOPE: &str = "backup:read";

/// What the scheduled backups and restore drills did, for the status (`None` fields: not
/// known yet, or not scheduled).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backups {
    pub last_successful: Option<Time>,
    pub next: Option<Time>,
    /// Why the last scheduled backup did not succeed.
    pub failed: Option<Explanation>,
    pub last_successful_drill: Option<Time>,
    /// Why the last restore drill did not succeed.
    pub drill_failed: Option<Explanation>,
}

/// Applies (or, without `spec.backup`, deletes) the backup children; `endpoint` and
/// `token` reach the vault's admin API to issue the backup token when it has none.
pub async fn converge<V: VaultAdmin>(
    ctx: &Context<V>,
    admin: &V,
    vault: &PiiVault,
    endpoint: &str,
    token: &RootToken,
    now: Timestamp,
) -> Result<Option<Backups>, Error> {
    let names = VaultNames::of(vault);
    let namespace = names.namespace();
    let cron_jobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(spec) = &vault.spec.backup else {
        ctx.control.ensure_leader()?;
        delete_if_present(&cron_jobs, &names.backup_cron_job()).await?;
        delete_if_present(&cron_jobs, &names.restore_drill_cron_job()).await?;
        delete_if_present(&deployments, &names.ledger_shipper()).await?;
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    ensure_token(ctx, admin, vault, &names, &secrets, endpoint, token).await?;
    ctx.control.ensure_leader()?;
    if let Some(shipper) = builders::ledger_shipper(vault)? {
        apply_object(&deployments, &shipper).await?;
    }
    let mut seen = Backups::default();
    if let Some(applied) =
        converge_cron_job(&cron_jobs, names.backup_cron_job(), builders::backup_cron_job(vault)?).await?
    {
        let schedule = spec.schedule.as_deref().unwrap_or_default();
        seen.next = schedule::next_run(schedule, now).ok().map(Time);
        seen.last_successful = applied.status.as_ref().and_then(|status| status.last_successful_time.clone());
        seen.failed = last_job_failed(&applied).map(|message| Explanation { reason: "LastBackupFailed", message });
    }
    let drill = builders::restore_drill_cron_job(vault)?;
    if let Some(applied) = converge_cron_job(&cron_jobs, names.restore_drill_cron_job(), drill).await? {
        seen.last_successful_drill = applied.status.as_ref().and_then(|status| status.last_successful_time.clone());
        seen.drill_failed =
            last_job_failed(&applied).map(|message| Explanation { reason: "RestoreDrillFailed", message });
    }
    announce(ctx, vault, &seen).await;
    Ok(Some(seen))
}

/// Events for what changed since the last status: a backup or drill that succeeded, one
/// that failed.
async fn announce<V>(ctx: &Context<V>, vault: &PiiVault, seen: &Backups) {
    let status = vault.status.as_ref();
    let before = status.and_then(|status| status.backups.clone()).unwrap_or_default();
    let successes = [
        ("BackupSucceeded", "backup", &seen.last_successful, &before.last_successful_backup),
        ("RestoreDrillSucceeded", "restore drill", &seen.last_successful_drill, &before.last_successful_restore_drill),
    ];
    for (reason, what, now, then) in successes {
        if let Some(started) = now.as_ref().filter(|_| now != then) {
            let note = format!("the scheduled {what} started at {} succeeded", started.0);
            publish(&ctx.recorder, vault, EventType::Normal, reason, "Backup", note).await;
        }
    }
    let reported = status
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == BACKUPS_HEALTHY))
        .filter(|condition| condition.status == "False")
        .map(|condition| condition.reason.as_str());
    // The failure the condition will carry (a backup's before a drill's), once.
    if let Some(failed) = seen.failed.as_ref().or(seen.drill_failed.as_ref()) {
        if reported != Some(failed.reason) {
            publish(&ctx.recorder, vault, EventType::Warning, failed.reason, "Backup", failed.message.clone()).await;
        }
    }
}

/// Applies the CronJob `name` as built (returning it as applied), or deletes it when there
/// is none to apply.
async fn converge_cron_job(
    cron_jobs: &Api<CronJob>,
    name: String,
    built: Option<CronJob>,
) -> Result<Option<CronJob>, Error> {
    match built {
        Some(cron_job) => Ok(Some(apply_object(cron_jobs, &cron_job).await?)),
        None => delete_if_present(cron_jobs, &name).await.map(|()| None),
    }
}

/// Keeps the backup token Secret, or issues a token into it: earlier tokens of that name
/// (a lost Secret) are revoked.
async fn ensure_token<V: VaultAdmin>(
    ctx: &Context<V>,
    admin: &V,
    vault: &PiiVault,
    names: &VaultNames,
    secrets: &Api<Secret>,
    endpoint: &str,
    token: &RootToken,
) -> Result<(), Error> {
    let name = names.backup_token_secret();
    if token_of(vault, secrets.get_opt(&name).await?.as_ref(), name.clone())?.is_some() {
        return Ok(());
    }
    ctx.control.ensure_leader()?;
    let request = CreateToken { name: BACKUP_TOKEN_NAME.into(), scopes: vec![BACKUP_SCOPE.into()], subject: None };
    let created = admin.create_scoped_token(endpoint, token, &request).await.map_err(Error::Vault)?;
    let secret = builders::generated_secret(vault, name.clone(), operator_token_data(&created.id, &created.secret))?;
    apply_object(secrets, &secret).await?;
    admin.revoke_others_named(endpoint, token, BACKUP_TOKEN_NAME, &created.id).await.map_err(Error::Vault)?;
    info!(vault = %crate::controller_kit::key(vault), token = %created.id, "issued the backup token into Secret {name}");
    Ok(())
}

/// Deletes the object if there is one (looked up first: most vaults never had one).
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if api.get_opt(name).await?.is_none() {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}
