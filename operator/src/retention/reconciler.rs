//! The `RetentionPolicy` reconciler: resolve the vault, hold a token, apply the CronJob,
//! read the runs back, report.
//!
//! Each reconcile
//! 1. resolves `spec.vaultRef` to the `PiiVault` in the policy's namespace — a missing (or
//!    departing) vault is reported (`VaultNotFound`) and looked at again shortly,
//! 2. parses the schedule (for `nextRun`; a schedule the API server's CEL shape check let
//!    through but that does not parse is reported as `InvalidSchedule`),
//!    The vault's image must be one the operator's policy allows (the CronJob runs it).
//! 3. keeps the token Secret when it holds a token of this vault (by uid), or else issues a
//!    token named [`PolicyNames::token_name`] with scope `retention:run` through the vault's
//!    admin API with the root token — first revoking any earlier token of that name (a
//!    token whose Secret was lost) — and stores it in a Secret the policy owns; a new vault
//!    that has not generated its root token yet is waited for (`VaultNotReady`),
//! 4. server-side applies the policy ConfigMap and the CronJob (`spec.suspend` is the
//!    CronJob's; `spec.dryRun` travels in the policy file),
//! 5. reads the newest run of `namespace/name` from the vault with the policy's own token
//!    (a 401 means the vault no longer knows it: a new one is issued once),
//! 6. writes the status: conditions, `lastRun`, `nextRun`, the token's id.
//!
//! A failure in 1–4 is reported as `Degraded` with a Warning Event and retried with the
//! error backoff. A converged policy is looked at again every [`REFRESH`] (and whenever its
//! CronJob changes, e.g. when a Job finishes) to refresh `lastRun` and `nextRun`. Nothing is
//! done without the leader Lease; the gate is checked before every write.
//!
//! The finalizer revokes the token on deletion (a 404 means it is gone already); owner
//! references then delete the CronJob, the ConfigMap and the token Secret. When the vault
//! is gone or departing there is nothing to revoke (its tokens go with it). When the vault
//! exists but does not answer, deletion is retried with backoff for [`REVOKE_GRACE`] after
//! the deletion was asked for, then given up with a Warning Event naming the token's id:
//! an unreachable vault must not keep a namespace from being deleted. The given-up token is
//! harmless without its secret, whose only copy goes with the Secret; its name lets a later
//! policy of the same name (which revokes leftovers of its name) or an admin revoke it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use strongroom_admin_api::tokens::CreateToken;
use tracing::{debug, info, warn};

use super::builders;
use super::names::{PolicyNames, TOKEN_ID_ANNOTATION, TOKEN_KEY, VAULT_UID_ANNOTATION};
use super::schedule;
use super::status::{self, Outcome, Runs};
use crate::controller_kit::{api, apply_object, key, publish, write_status, Control};
use crate::crd::retention_policy::IssuedToken;
use crate::crd::{PiiVault, RetentionPolicy};
use crate::leader_election::LeaderGate;
use crate::metrics::Metrics;
use crate::piivault::api_tls;
use crate::piivault::names::VaultNames;
use crate::piivault::policy::VaultPolicy;
use crate::piivault::secret_material::{operator_token_of, root_token_location, root_token_of};
use crate::piivault::status::Explanation;
use crate::vaultd_client::{NewToken, RetentionAdmin, RootToken};
use crate::{Error, FIELD_MANAGER};

/// The controller's name in metrics and events.
pub const CONTROLLER: &str = "retentionpolicy";
/// The finalizer on every `RetentionPolicy`.
pub const FINALIZER: &str = "strongroom.dev/retention-cleanup";
/// The only scope a policy's token gets.
pub const RUN_SCOPE: &str = "retention:run";
/// How often a converged policy's `lastRun` and `nextRun` are refreshed.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How often a policy whose vault does not exist looks again.
pub const WAIT_FOR_VAULT: Duration = Duration::from_secs(30);
/// How long deletion keeps trying to revoke the token from a vault that does not answer.
pub const REVOKE_GRACE: Duration = Duration::from_secs(15 * 60);

/// What every reconcile needs.
pub struct Context<V> {
    pub client: Client,
    pub vault: V,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Acting only while leading, and the error backoff per policy.
    pub control: Control,
    /// What the vaults may run: the CronJob runs the vault's image, so it must be allowed.
    pub policy: VaultPolicy,
}

impl<V> Context<V> {
    pub fn new(client: Client, vault: V, metrics: Arc<Metrics>, reporter: Reporter) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            vault,
            metrics,
            control: Control::new(),
            policy: VaultPolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: VaultPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Acts only while `gate` holds (leader election); without it, always.
    pub fn with_leader_gate(mut self, gate: LeaderGate) -> Self {
        self.control.set_leader_gate(gate);
        self
    }
}

/// Runs the controller for `RetentionPolicy`s in `namespace` (all namespaces when `None`)
/// until the process is asked to stop.
pub async fn run<V: RetentionAdmin>(ctx: Arc<Context<V>>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    info!(namespace = ns.unwrap_or("(all)"), "starting the RetentionPolicy controller");
    Controller::new(api::<RetentionPolicy>(&client, ns), watcher::Config::default().any_semantic())
        // A finished Job updates its CronJob's status: the run is read back right away.
        .owns(api::<CronJob>(&client, ns), children.clone())
        .owns(api::<ConfigMap>(&client, ns), children)
        .with_config(controller::Config::default().debounce(Duration::from_secs(1)))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(policy = %object, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

/// One reconcile of one `RetentionPolicy`.
pub async fn reconcile<V: RetentionAdmin>(policy: Arc<RetentionPolicy>, ctx: Arc<Context<V>>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    ctx.control.ensure_leader()?;
    let namespace = policy.namespace().ok_or(Error::MissingField("RetentionPolicy metadata.namespace"))?;
    let policies: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = key(&*policy);
    let result = finalizer(&policies, FINALIZER, policy, |event| async {
        match event {
            FinalizerEvent::Apply(policy) => apply(&policy, &ctx).await,
            FinalizerEvent::Cleanup(policy) => cleanup(&policy, &ctx).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)));
    if result.is_ok() {
        ctx.control.reset_backoff(&key);
    }
    result
}

/// Failed reconciles retry with exponential backoff.
pub fn error_policy<V: RetentionAdmin>(policy: Arc<RetentionPolicy>, error: &Error, ctx: Arc<Context<V>>) -> Action {
    let delay = ctx.control.backoff(&key(&*policy));
    warn!(policy = %key(&*policy), %error, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(delay)
}

/// How a reconcile that did not fail ended.
enum Converged {
    /// Everything is in place.
    Scheduled,
    /// The vault does not exist (yet).
    WaitingForVault,
}

async fn apply<V: RetentionAdmin>(policy: &RetentionPolicy, ctx: &Context<V>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let mut outcome = Outcome {
        failure: None,
        cron_job: None,
        token: None,
        runs: Runs::NotAsked,
        last_job_failed: None,
        next_run: None,
    };
    let result = converge(policy, ctx, now, &mut outcome).await;
    if let Err(Error::NotLeader) = result {
        // Another replica may be in charge by now: not even the status is written.
        return Err(Error::NotLeader);
    }
    if let Err(error) = &result {
        outcome.failure = Some(Explanation { reason: error.condition_reason(), message: error.to_string() });
        publish(&ctx.recorder, policy, EventType::Warning, error.condition_reason(), "Reconcile", error.to_string())
            .await;
    }
    if let Some(failure) = outcome.failure.as_ref().filter(|_| result.is_ok()) {
        publish(&ctx.recorder, policy, EventType::Warning, failure.reason, "Reconcile", failure.message.clone()).await;
    }
    report_due(ctx, policy, &outcome.runs);
    ctx.control.ensure_leader()?;
    write_status(&ctx.client, policy, &status::compute(policy, &outcome, now)).await?;
    match result? {
        Converged::WaitingForVault => Ok(Action::requeue(WAIT_FOR_VAULT)),
        Converged::Scheduled => Ok(Action::requeue(REFRESH)),
    }
}

/// The policy's `strongroom_operator_retention_run_due_timestamp_seconds`: its schedule's
/// first time after its last run (after its creation before any), none while suspended; as
/// it was while the vault's runs are not known.
fn report_due<V>(ctx: &Context<V>, policy: &RetentionPolicy, runs: &Runs) {
    let names = PolicyNames::of(policy);
    let vault = names.vault();
    let report = |due| ctx.metrics.retention_due(vault.namespace(), vault.vault(), &names.run_label(), due);
    if policy.spec.suspend {
        return report(None);
    }
    let after = match runs {
        Runs::Read(Some(run)) => {
            i64::try_from(run.started_at).ok().and_then(|millis| Timestamp::from_millisecond(millis).ok())
        }
        Runs::Read(None) => policy.metadata.creation_timestamp.as_ref().map(|time| time.0),
        Runs::NotAsked | Runs::Unavailable(_) => return,
    };
    if let Some(due) = after.and_then(|after| schedule::next_run(&policy.spec.schedule, after).ok()) {
        report(Some(due.as_millisecond() as f64 / 1000.0));
    }
}

/// Steps 1–5; what it saw goes into `outcome`.
async fn converge<V: RetentionAdmin>(
    policy: &RetentionPolicy,
    ctx: &Context<V>,
    now: Timestamp,
    outcome: &mut Outcome,
) -> Result<Converged, Error> {
    let names = PolicyNames::of(policy);
    let vault_names = names.vault();
    let vaults: Api<PiiVault> = Api::namespaced(ctx.client.clone(), names.namespace());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), names.namespace());

    let vault = match vaults.get_opt(vault_names.vault()).await? {
        Some(vault) if vault.metadata.deletion_timestamp.is_none() => vault,
        found => {
            let why = if found.is_some() { "is being deleted" } else { "does not exist" };
            let message = format!(
                "PiiVault {} {why} in namespace {}; the policy is scheduled once it exists",
                vault_names.vault(),
                names.namespace()
            );
            outcome.failure = Some(Explanation { reason: "VaultNotFound", message });
            return Ok(Converged::WaitingForVault);
        }
    };
    // The CronJob runs the vault's image: one the policy refuses gets no Job either.
    ctx.policy.check_image(&vault.spec.image).map_err(Error::NotAllowed)?;
    let vault_uid = vault.metadata.uid.clone().ok_or(Error::MissingField("PiiVault metadata.uid"))?;
    let next_run = schedule::next_run(&policy.spec.schedule, now).map_err(Error::InvalidSchedule)?;

    let existing = secrets.get_opt(&names.token_secret()).await?;
    let held = held_token(policy, existing.as_ref(), &vault_uid)?;
    if held.is_none() {
        if let Some(wait) = root_token_not_generated_yet(&vault, &secrets).await? {
            outcome.failure = Some(wait);
            return Ok(Converged::WaitingForVault);
        }
    }
    // HTTPS to the vault's API, trusting only its CA.
    let client = ctx.vault.trusting(api_tls::read_trusted_ca(&vault, &secrets).await?.as_deref())?;
    let (mut token, fresh) = match held {
        Some(held) => (held, false),
        None => (issue_token(ctx, &client, policy, &vault, &vault_uid, &secrets).await?, true),
    };
    outcome.token = Some(issued(&names, &token.id, &vault_uid));

    let config_map = builders::config_map(policy)?;
    let cron_job = builders::cron_job(policy, &vault)?;
    ctx.control.ensure_leader()?;
    apply_object(&Api::namespaced(ctx.client.clone(), names.namespace()), &config_map).await?;
    let applied = apply_object(&Api::namespaced(ctx.client.clone(), names.namespace()), &cron_job).await?;
    outcome.cron_job = Some(names.cron_job());
    outcome.next_run = (!policy.spec.suspend).then_some(next_run);
    outcome.last_job_failed = last_job_failed(&applied);

    let address = VaultNames::of(&vault).client_address();
    let label = names.run_label();
    let mut runs = client.latest_run(&address, &token.secret, &label).await;
    if !fresh && matches!(&runs, Err(error) if error.status() == Some(401)) {
        // The vault does not know the stored token (its data was replaced?): issue anew.
        info!(policy = %key(policy), token = %token.id, "the vault rejects the policy's token; issuing a new one");
        token = issue_token(ctx, &client, policy, &vault, &vault_uid, &secrets).await?;
        outcome.token = Some(issued(&names, &token.id, &vault_uid));
        runs = client.latest_run(&address, &token.secret, &label).await;
    }
    outcome.runs = match runs {
        Ok(run) => Runs::Read(run),
        Err(error) => Runs::Unavailable(error.to_string()),
    };
    Ok(Converged::Scheduled)
}

fn issued(names: &PolicyNames, id: &str, vault_uid: &str) -> IssuedToken {
    IssuedToken { id: id.to_string(), secret_name: names.token_secret(), vault_uid: vault_uid.to_string() }
}

/// The token in the policy's Secret, if it is one this vault (by uid) issued. A Secret of
/// that name that the policy does not control is never used or overwritten.
pub fn held_token(
    policy: &RetentionPolicy,
    secret: Option<&Secret>,
    vault_uid: &str,
) -> Result<Option<NewToken>, Error> {
    let Some(secret) = secret else { return Ok(None) };
    let uid = policy.metadata.uid.as_deref().ok_or(Error::MissingField("RetentionPolicy metadata.uid"))?;
    let controlled = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid && owner.controller == Some(true));
    if !controlled {
        let name = secret.metadata.name.clone().unwrap_or_default();
        return Err(Error::ForeignSecret { secret: name, owner: "RetentionPolicy" });
    }
    let annotation = |key: &str| secret.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned();
    if annotation(VAULT_UID_ANNOTATION).as_deref() != Some(vault_uid) {
        return Ok(None);
    }
    let id = annotation(TOKEN_ID_ANNOTATION).filter(|id| !id.is_empty());
    let value =
        secret.data.as_ref().and_then(|data| data.get(TOKEN_KEY)).and_then(|v| RootToken::from_secret_value(&v.0));
    Ok(id.zip(value).map(|(id, secret)| NewToken { id, secret }))
}

/// Issues a token for the policy and stores it in the policy's Secret. Earlier tokens of
/// the policy's name are revoked first: nothing but this Secret may hold a live one.
async fn issue_token<V: RetentionAdmin>(
    ctx: &Context<V>,
    client: &V,
    policy: &RetentionPolicy,
    vault: &PiiVault,
    vault_uid: &str,
    secrets: &Api<Secret>,
) -> Result<NewToken, Error> {
    let names = PolicyNames::of(policy);
    let address = VaultNames::of(vault).client_address();
    let root = read_root_token(vault, secrets).await?;
    let token_name = names.token_name();
    ctx.control.ensure_leader()?;
    for leftover in client.list_tokens(&address, &root).await?.into_iter().filter(|t| t.name == token_name) {
        ctx.control.ensure_leader()?;
        client.revoke_token(&address, &root, &leftover.id).await?;
        info!(policy = %key(policy), token = %leftover.id, "revoked an earlier token of this policy");
    }
    ctx.control.ensure_leader()?;
    let request = CreateToken { name: token_name, scopes: vec![RUN_SCOPE.to_string()], subject: None };
    let created = client.create_token(&address, &root, &request).await?;
    let stored = match builders::token_secret(policy, &created, vault_uid) {
        Ok(secret) => apply_object(secrets, &secret).await,
        Err(error) => Err(error),
    };
    if let Err(error) = stored {
        // Not kept anywhere: revoke it now (or, failing that, as a leftover next time).
        if let Err(revoke) = client.revoke_token(&address, &root, &created.id).await {
            warn!(policy = %key(policy), token = %created.id, error = %revoke, "cannot revoke an unstored token");
        }
        return Err(error);
    }
    ctx.metrics.token_change(CONTROLLER, "issued");
    let note = format!("issued vault token {} (scope {RUN_SCOPE}) into Secret {}", created.id, names.token_secret());
    info!(policy = %key(policy), "{note}");
    publish(&ctx.recorder, policy, EventType::Normal, "TokenIssued", "IssueToken", note).await;
    Ok(created)
}

/// Why no token can be issued yet, when the vault is new: it generates its root token on
/// its first reconcile (not at all while paused), so a policy applied with it — or before
/// it — finds no root token Secret for a while. That is waited for, not reported as a lost
/// Secret (which it is only once the vault has had members).
async fn root_token_not_generated_yet(vault: &PiiVault, secrets: &Api<Secret>) -> Result<Option<Explanation>, Error> {
    let had_members = vault.status.as_ref().is_some_and(|status| !status.members.is_empty());
    if vault.spec.root_token_secret_ref.is_some() || had_members {
        return Ok(None);
    }
    let (name, _) = root_token_location(vault);
    if secrets.get_opt(&name).await?.is_some() {
        return Ok(None);
    }
    let message = format!(
        "PiiVault {} has not generated its root token (Secret {name}) yet; the policy is scheduled once it has",
        vault.name_any()
    );
    Ok(Some(Explanation { reason: "VaultNotReady", message }))
}

/// The token for the vault's token API: the operator's scoped token of the vault once it
/// has one (the root token may be retired by then), otherwise the vault's root token, from
/// the Secret its spec names or the one generated for it.
async fn read_root_token(vault: &PiiVault, secrets: &Api<Secret>) -> Result<RootToken, Error> {
    let operator_secret = secrets.get_opt(&VaultNames::of(vault).operator_token_secret()).await?;
    if let Some(token) = operator_token_of(vault, operator_secret.as_ref())? {
        return Ok(token);
    }
    let (name, _) = root_token_location(vault);
    root_token_of(vault, secrets.get_opt(&name).await?.as_ref())
}

/// Why the CronJob's last scheduled Job did not succeed, when it did not: it was started,
/// nothing runs now, and no success came after it.
pub fn last_job_failed(cron_job: &CronJob) -> Option<String> {
    let status = cron_job.status.as_ref()?;
    let scheduled = status.last_schedule_time.as_ref()?;
    if status.active.as_ref().is_some_and(|active| !active.is_empty()) {
        return None;
    }
    let instance = cron_job.metadata.labels.as_ref().and_then(|labels| labels.get("app.kubernetes.io/instance"));
    match &status.last_successful_time {
        Some(success) if success.0 >= scheduled.0 => None,
        _ => Some(format!(
            "the run the CronJob {} started at {} did not succeed (kubectl get jobs -l app.kubernetes.io/instance={} \
             shows its Job and pods)",
            cron_job.metadata.name.as_deref().unwrap_or_default(),
            scheduled.0,
            instance.map(String::as_str).unwrap_or_default(),
        )),
    }
}

/// Deletion: revoke the token (see the module docs for when it is given up), then let
/// owner references delete the children.
async fn cleanup<V: RetentionAdmin>(policy: &RetentionPolicy, ctx: &Context<V>) -> Result<Action, Error> {
    let names = PolicyNames::of(policy);
    ctx.metrics.retention_due(names.vault().namespace(), names.vault().vault(), &names.run_label(), None);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), names.namespace());
    let vaults: Api<PiiVault> = Api::namespaced(ctx.client.clone(), names.namespace());
    // The status names the token; the Secret too, unless it is gone already (foreground
    // deletion removes dependents first).
    let from_secret = || async {
        let secret = secrets.get_opt(&names.token_secret()).await?;
        let annotation = |key: &str| secret.as_ref()?.metadata.annotations.as_ref()?.get(key).cloned();
        Ok::<_, Error>(annotation(TOKEN_ID_ANNOTATION).zip(annotation(VAULT_UID_ANNOTATION)))
    };
    let token = match policy.status.as_ref().and_then(|status| status.token.clone()) {
        Some(token) => Some((token.id, token.vault_uid)),
        None => from_secret().await?,
    };
    let Some((id, issuer_uid)) = token else {
        debug!(policy = %key(policy), "no token to revoke");
        return Ok(Action::await_change());
    };
    let vault = vaults.get_opt(names.vault().vault()).await?;
    let Some(vault) = vault.filter(|v| v.metadata.deletion_timestamp.is_none() && v.metadata.uid == Some(issuer_uid))
    else {
        let note = format!("token {id} is gone with the vault that issued it");
        publish(&ctx.recorder, policy, EventType::Normal, "TokenGoneWithVault", "Cleanup", note).await;
        return Ok(Action::await_change());
    };
    let revoked = async {
        let root = read_root_token(&vault, &secrets).await?;
        let client = ctx.vault.trusting(api_tls::read_trusted_ca(&vault, &secrets).await?.as_deref())?;
        ctx.control.ensure_leader()?;
        client.revoke_token(&VaultNames::of(&vault).client_address(), &root, &id).await?;
        Ok::<_, Error>(())
    }
    .await;
    match revoked {
        Ok(()) => {
            ctx.metrics.token_change(CONTROLLER, "revoked");
            let note = format!("revoked vault token {id}");
            info!(policy = %key(policy), "{note}");
            publish(&ctx.recorder, policy, EventType::Normal, "TokenRevoked", "Cleanup", note).await;
            Ok(Action::await_change())
        }
        Err(Error::NotLeader) => Err(Error::NotLeader),
        Err(error) if grace_expired(policy, Timestamp::now()) => {
            let note = format!(
                "gave up revoking vault token {id} after {} min: {error}; its secret is deleted with the policy \
                 (revoke it with DELETE /v1/sys/tokens/{id})",
                REVOKE_GRACE.as_secs() / 60
            );
            warn!(policy = %key(policy), "{note}");
            publish(&ctx.recorder, policy, EventType::Warning, "TokenNotRevoked", "Cleanup", note).await;
            Ok(Action::await_change())
        }
        Err(error) => Err(error),
    }
}

/// Whether the deletion was asked for more than [`REVOKE_GRACE`] ago.
pub fn grace_expired(policy: &RetentionPolicy, now: Timestamp) -> bool {
    let Some(asked) = policy.metadata.deletion_timestamp.as_ref() else { return false };
    let grace = SignedDuration::try_from(REVOKE_GRACE).unwrap_or(SignedDuration::MAX);
    now.duration_since(asked.0) > grace
}

#[cfg(test)]
mod tests;
