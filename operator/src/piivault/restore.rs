//! `spec.bootstrap.fromBackup` in the reconcile: before the StatefulSet exists, pod 0's
//! data volume is created and the Job `<name>-restore` runs `vaultd restore` into it. Once
//! the Job succeeded the StatefulSet is made; pod 0 starts as the restored cluster of one,
//! and the other pods join it as learners. Asked only while the vault has no StatefulSet
//! and never had members, so a restore never runs over a vault's own data.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;
use tracing::info;

use super::builders::{self, RESTORE_OF};
use super::membership::Restore;
use super::names::VaultNames;
use super::reconciler::Context;
use crate::controller_kit::{apply_object, publish};
use crate::crd::PiiVault;
use crate::Error;

/// Creates what the restore needs and says how far it is; `None`: nothing (left) to
/// restore.
pub async fn converge<V>(ctx: &Context<V>, vault: &PiiVault) -> Result<Option<Restore>, Error> {
    let (Some(bootstrap), Some(job)) = (&vault.spec.bootstrap, builders::restore_job(vault)?) else { return Ok(None) };
    let from = &bootstrap.from_backup;
    let names = VaultNames::of(vault);
    let name = names.restore_job();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), names.namespace());
    let Some(existing) = jobs.get_opt(&name).await? else {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), names.namespace());
        if secrets.get_opt(&from.credentials_secret).await?.is_none() {
            return Err(Error::SecretMissing { secret: from.credentials_secret.clone() });
        }
        if let Err(message) = ensure_claim(ctx, vault, &names).await? {
            return Ok(Some(Restore::Refused { message }));
        }
        ctx.control.ensure_leader()?;
        apply_object(&jobs, &job).await?;
        let backup = from.backup_id.as_deref().unwrap_or("the newest backup");
        let note = format!("restoring {backup} of {} into {} (Job {name})", from.source, names.data_claim(0));
        info!(vault = %crate::controller_kit::key(vault), "{note}");
        publish(&ctx.recorder, vault, EventType::Normal, "RestoreStarted", "Restore", note).await;
        return Ok(Some(Restore::Running { job: name }));
    };
    // Only this vault's own Job says anything of its volume (an earlier vault of this name
    // may have left one that is not collected yet).
    let uid = vault.metadata.uid.as_deref();
    if !existing
        .owner_references()
        .iter()
        .any(|owner| Some(owner.uid.as_str()) == uid && owner.controller == Some(true))
    {
        let message = format!(
            "a Job {name} exists that this vault does not control (an earlier vault's, not deleted yet?); the \
             restore starts once it is gone"
        );
        return Ok(Some(Restore::Refused { message }));
    }
    // A Job's pod template cannot change: the Job is left as it was made.
    let condition = |type_: &str| {
        existing.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True").cloned()
    };
    if condition("Complete").is_some() {
        let note = format!("pod 0's volume was restored (the Job {name}'s log has the report); making the StatefulSet");
        publish(&ctx.recorder, vault, EventType::Normal, "Restored", "Restore", note).await;
        return Ok(None);
    }
    if let Some(failed) = condition("Failed") {
        let why = [failed.reason, failed.message].into_iter().flatten().collect::<Vec<_>>().join(": ");
        return Ok(Some(Restore::Failed { job: name, message: why }));
    }
    Ok(Some(Restore::Running { job: name }))
}

/// Creates pod 0's claim, marked as this vault's restore; `Ok(Err(why))` when a claim of
/// that name exists without the mark (a volume of an earlier vault of the same name: a
/// restore never writes into a volume it did not make).
async fn ensure_claim<V>(ctx: &Context<V>, vault: &PiiVault, names: &VaultNames) -> Result<Result<(), String>, Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), names.namespace());
    let claim = builders::restore_claim(vault);
    let name = names.data_claim(0);
    if let Some(existing) = claims.get_opt(&name).await? {
        let mark = |claim: &PersistentVolumeClaim| claim.metadata.annotations.as_ref()?.get(RESTORE_OF).cloned();
        return Ok(match mark(&existing).is_some_and(|uid| Some(uid) == mark(&claim)) {
            true => Ok(()),
            false => Err(format!(
                "the volume {name} exists and was not made for this restore (a volume of an earlier vault of this \
                 name?); the restore writes only into a volume it makes: delete {name} once nothing in it is \
                 needed, or restore into a vault of another name"
            )),
        });
    }
    ctx.control.ensure_leader()?;
    match claims.create(&PostParams::default(), &claim).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(Ok(())),
        Err(error) => Err(error.into()),
    }
}
