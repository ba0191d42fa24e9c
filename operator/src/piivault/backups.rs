//! `spec.backup` in the reconcile: the backup token (scope `backup:read`, issued with the
//! operator's token into the Secret `<name>-backup-token`), the ledger shipper and the
//! scheduled backups' CronJob — applied while `spec.backup` is set, deleted once it is not
//! — and what the CronJob says about the last backups, for the status.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use strongroom_admin_api::tokens::CreateToken;
use tracing::info;

use super::builders;
use super::names::VaultNames;
use super::reconciler::{apply_object, Context};
use super::secret_material::{operator_token_data, token_of};
use super::status::Explanation;
use crate::crd::PiiVault;
use crate::retention::{reconciler::last_job_failed, schedule};
use crate::vaultd_client::{RootToken, VaultAdmin};
use crate::Error;

/// The name of the backup Jobs' vault token (one per vault).
pub const BACKUP_TOKEN_NAME: &str = "strongroom-backup";
pub const BACKUP_SCOPE: &str = "backup:read";

/// What the scheduled backups did, for the status (`None` fields: not known yet).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backups {
    pub last_successful: Option<Time>,
    pub next: Option<Time>,
    /// Why the last scheduled backup did not succeed.
    pub failed: Option<Explanation>,
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
        delete_if_present(&deployments, &names.ledger_shipper()).await?;
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    ensure_token(ctx, admin, vault, &names, &secrets, endpoint, token).await?;
    ctx.control.ensure_leader()?;
    if let Some(shipper) = builders::ledger_shipper(vault)? {
        apply_object(&deployments, &shipper).await?;
    }
    let Some(cron_job) = builders::backup_cron_job(vault)? else {
        delete_if_present(&cron_jobs, &names.backup_cron_job()).await?;
        return Ok(Some(Backups::default()));
    };
    let applied = apply_object(&cron_jobs, &cron_job).await?;
    let schedule = spec.schedule.as_deref().unwrap_or_default();
    let next = schedule::next_run(schedule, now).ok().map(Time);
    let last_successful = applied.status.as_ref().and_then(|status| status.last_successful_time.clone());
    let failed = last_job_failed(&applied).map(|message| Explanation { reason: "LastBackupFailed", message });
    Ok(Some(Backups { last_successful, next, failed }))
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
