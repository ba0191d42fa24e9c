//! The `PiiVaultBackup` reconciler: one backup, taken by a Job and followed to its end.
//!
//! A backup that is `Completed` or `Failed` is left as it is, for good. Otherwise each
//! reconcile
//! 1. follows the Job `<name>-backup` once it exists: while it runs the backup is
//!    `Running`; its `Complete` condition makes it `Completed`, with the report the Job's
//!    succeeded pod left as its termination message; its `Failed` condition makes it
//!    `Failed`, with why. A Job of that name that the backup does not control is not
//!    followed (`Failed`), and a Job that disappears before it ended fails the backup
//!    rather than taking a second one.
//! 2. Before there is a Job, resolves the vault: a missing or departing vault, one without
//!    `spec.backup` or with an image the operator's policy refuses fails the backup (it
//!    would not start by itself later). While the vault's backup token Secret (issued by
//!    the `PiiVault` controller) does not exist yet, the backup is `Pending` and looked at
//!    again every [`WAIT_FOR_TOKEN`]. Then the Job is applied and the backup is `Running`.
//! 3. Writes the status when it changed, then records Events: `BackupStarted` (the Job was
//!    created), `BackupCompleted` (also on the vault), `BackupFailed`.
//!
//! A failure to talk to the API server is retried with the error backoff, with a Warning
//! Event. Nothing is done without the leader Lease; the gate is checked before every write.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use super::job::{backup_job, job_name, JOB_NAME_LABEL};
use super::status::{self, JobEnd, Observed};
use crate::controller_kit::{api, apply_object, key, publish, write_status, Control};
use crate::crd::piivault_backup::BackupPhase;
use crate::crd::{PiiVault, PiiVaultBackup, PiiVaultBackupStatus};
use crate::leader_election::LeaderGate;
use crate::metrics::Metrics;
use crate::piivault::names::VaultNames;
use crate::piivault::policy::VaultPolicy;
use crate::{Error, FIELD_MANAGER};

/// The controller's name in metrics and events.
pub const CONTROLLER: &str = "piivaultbackup";
/// How often a backup waiting for its vault's backup token looks again.
pub const WAIT_FOR_TOKEN: Duration = Duration::from_secs(15);
/// How often a running backup's Job is looked at even when it did not change (its changes
/// are watched).
pub const RECHECK: Duration = Duration::from_secs(300);

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Acting only while leading, and the error backoff per backup.
    pub control: Control,
    /// What the vaults may run: the Job runs the vault's image, so it must be allowed.
    pub policy: VaultPolicy,
}

impl Context {
    /// Acts only while `gate` holds (leader election), runs only images `policy` allows.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        reporter: Reporter,
        policy: VaultPolicy,
        gate: LeaderGate,
    ) -> Self {
        let mut control = Control::new();
        control.set_leader_gate(gate);
        Self { recorder: Recorder::new(client.clone(), reporter), client, metrics, control, policy }
    }
}

/// Runs the controller for `PiiVaultBackup`s in `namespace` (all namespaces when `None`)
/// until the process is asked to stop.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let jobs = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    info!(namespace = ns.unwrap_or("(all)"), "starting the PiiVaultBackup controller");
    Controller::new(api::<PiiVaultBackup>(&client, ns), watcher::Config::default().any_semantic())
        // A Job that starts, succeeds or fails is looked at right away.
        .owns(api::<Job>(&client, ns), jobs)
        .with_config(controller::Config::default().debounce(Duration::from_secs(1)))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(backup = %object, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

/// One reconcile of one `PiiVaultBackup`.
pub async fn reconcile(backup: Arc<PiiVaultBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let previous = backup.status.clone().unwrap_or_default();
    if previous.phase.is_some_and(BackupPhase::is_terminal) {
        return Ok(Action::await_change());
    }
    ctx.control.ensure_leader()?;
    let (observed, created) = match observe(&backup, &ctx, &previous).await {
        Ok(seen) => seen,
        Err(Error::NotLeader) => return Err(Error::NotLeader),
        Err(error) => {
            let reason = error.condition_reason();
            publish(&ctx.recorder, &*backup, EventType::Warning, reason, "Reconcile", error.to_string()).await;
            return Err(error);
        }
    };
    let status = status::compute(&previous, observed);
    if status != previous {
        ctx.control.ensure_leader()?;
        write_status(&ctx.client, &*backup, &status).await?;
        announce(&ctx, &backup, created, &previous, &status).await;
    }
    ctx.control.reset_backoff(&key(&*backup));
    Ok(match status.phase {
        Some(BackupPhase::Pending) => Action::requeue(WAIT_FOR_TOKEN),
        Some(BackupPhase::Running) => Action::requeue(RECHECK),
        _ => Action::await_change(),
    })
}

/// Failed reconciles retry with exponential backoff.
pub fn error_policy(backup: Arc<PiiVaultBackup>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.control.backoff(&key(&*backup));
    warn!(backup = %key(&*backup), %error, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(delay)
}

/// Steps 1 and 2: what there is now, and whether this reconcile created the Job.
async fn observe(
    backup: &PiiVaultBackup,
    ctx: &Context,
    previous: &PiiVaultBackupStatus,
) -> Result<(Observed, bool), Error> {
    let namespace = backup.namespace().ok_or(Error::MissingField("PiiVaultBackup metadata.namespace"))?;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = job_name(backup);
    if let Some(job) = jobs.get_opt(&name).await? {
        return Ok((follow(ctx, backup, &namespace, job).await?, false));
    }
    let failed = |message: String| Ok((Observed::Failed { job: None, started: None, message }, false));
    if let Some(job) = &previous.job {
        return failed(format!("the Job {job} was deleted before it finished; no backup is taken twice"));
    }
    let vault_name = &backup.spec.vault;
    let vaults: Api<PiiVault> = Api::namespaced(ctx.client.clone(), &namespace);
    let vault = match vaults.get_opt(vault_name).await? {
        Some(vault) if vault.metadata.deletion_timestamp.is_none() => vault,
        found => {
            let why = if found.is_some() { "is being deleted" } else { "does not exist" };
            return failed(format!("PiiVault {vault_name} {why} in namespace {namespace}"));
        }
    };
    let Some(spec) = &vault.spec.backup else {
        return failed(format!("PiiVault {vault_name} has no spec.backup: nowhere to store a backup"));
    };
    if let Err(why) = ctx.policy.check_image(&vault.spec.image) {
        return failed(format!("PiiVault {vault_name}: {why}"));
    }
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let token = VaultNames::of(&vault).backup_token_secret();
    if secrets.get_opt(&token).await?.is_none() {
        let message = format!(
            "waiting for the backup token of PiiVault {vault_name} (Secret {token}), which the operator issues \
             once the vault is ready"
        );
        return Ok((Observed::Waiting(message), false));
    }
    // A pod without it would wait for it, not fail.
    let credentials = &spec.credentials_secret;
    if secrets.get_opt(credentials).await?.is_none() {
        let message = format!("waiting for the Secret {credentials} (spec.backup.credentialsSecret of {vault_name})");
        return Ok((Observed::Waiting(message), false));
    }
    let job = backup_job(backup, &vault, spec)?;
    ctx.control.ensure_leader()?;
    let applied = apply_object(&jobs, &job).await?;
    info!(backup = %key(backup), job = %name, "created the backup Job");
    let started = applied.status.and_then(|status| status.start_time);
    Ok((Observed::Running { job: name, started }, true))
}

/// Where the backup's Job stands; once it ended, what its pods said.
async fn follow(ctx: &Context, backup: &PiiVaultBackup, namespace: &str, job: Job) -> Result<Observed, Error> {
    let name = job.name_any();
    let uid = backup.metadata.uid.as_deref().ok_or(Error::MissingField("PiiVaultBackup metadata.uid"))?;
    if !job.owner_references().iter().any(|owner| owner.uid == uid && owner.controller == Some(true)) {
        // An earlier PiiVaultBackup of this name (deleted, its Job not collected yet): wait.
        let earlier = job.owner_references().iter().any(|owner| {
            owner.kind == "PiiVaultBackup" && owner.name == backup.name_any() && owner.controller == Some(true)
        });
        if earlier || job.metadata.deletion_timestamp.is_some() {
            return Ok(Observed::Waiting(format!("waiting for the Job {name} of an earlier PiiVaultBackup to go")));
        }
        let message = format!("a Job {name} exists that this PiiVaultBackup does not control; it is left alone");
        return Ok(Observed::Failed { job: None, started: None, message });
    }
    let started = job.status.as_ref().and_then(|status| status.start_time.clone());
    let Some(end) = status::job_end(&job) else { return Ok(Observed::Running { job: name, started }) };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let pods = pods.list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={name}"))).await?.items;
    // Only the Job's own pods speak for it (anyone may label a pod).
    let job_uid = job.metadata.uid.clone();
    let pods: Vec<Pod> = pods
        .into_iter()
        .filter(|pod| pod.owner_references().iter().any(|owner| Some(&owner.uid) == job_uid.as_ref()))
        .collect();
    Ok(match end {
        JobEnd::Complete { completed } => {
            Observed::Succeeded { report: status::report(&pods), job: name, started, completed }
        }
        JobEnd::Failed(condition) => {
            Observed::Failed { message: status::failure(&name, &condition, &pods), job: Some(name), started }
        }
    })
}

/// Step 3's Events, for what changed from `previous` to `status`.
async fn announce(
    ctx: &Context,
    backup: &PiiVaultBackup,
    created: bool,
    previous: &PiiVaultBackupStatus,
    status: &PiiVaultBackupStatus,
) {
    let recorder = &ctx.recorder;
    let vault = &backup.spec.vault;
    if created {
        let note = format!("started the Job {} to back up PiiVault {vault}", job_name(backup));
        publish(recorder, backup, EventType::Normal, "BackupStarted", "CreateJob", note).await;
    }
    if status.phase == previous.phase {
        return;
    }
    match status.phase {
        Some(BackupPhase::Completed) => {
            let note = match (&status.backup_id, &status.destination) {
                (Some(id), Some(destination)) => format!(
                    "stored backup {id} of PiiVault {vault} in {destination} ({} subjects, {} bytes)",
                    status.subjects.unwrap_or_default(),
                    status.bytes.unwrap_or_default()
                ),
                _ => status.message.clone().unwrap_or_default(),
            };
            publish(recorder, backup, EventType::Normal, "BackupCompleted", "Backup", note.clone()).await;
            let on_vault = format!("PiiVaultBackup {}: {note}", backup.name_any());
            let vaults: Api<PiiVault> = Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
            match vaults.get_opt(vault).await {
                Ok(Some(vault)) => {
                    publish(recorder, &vault, EventType::Normal, "BackupCompleted", "Backup", on_vault).await
                }
                Ok(None) => {}
                Err(error) => warn!(backup = %key(backup), %error, "cannot read the vault for its Event"),
            }
        }
        Some(BackupPhase::Failed) => {
            let note = status.message.clone().unwrap_or_default();
            publish(recorder, backup, EventType::Warning, "BackupFailed", "Backup", note).await;
        }
        Some(BackupPhase::Pending | BackupPhase::Running) | None => {}
    }
}

#[cfg(test)]
mod tests;
