//! The `PiiVault` reconciler: observe, decide, apply, report.
//!
//! Each reconcile
//! 1. observes the StatefulSet's size and every pod's `/v1/status`,
//! 2. ensures the generated Secrets: created only while the vault has never had a member
//!    (no members in its status, no pod answering as an initialised node), otherwise
//!    re-applied unchanged — a missing, incomplete or foreign Secret is reported instead,
//! 3. reads the root token, the operator's scoped token (`<name>-operator-token`, created
//!    with the root token once the cluster exists and used for every admin call after) and
//!    the leader's view of the cluster,
//! 4. asks [`membership::next_step`] for at most one change,
//! 5. server-side applies every child (the StatefulSet at the size the step allows),
//! 6. carries out the step through the vault's admin API and records an Event,
//! 7. applies the backup children and the monitoring objects (`spec.backup`,
//!    `spec.monitoring`; see `backups` and `monitoring`),
//! 8. writes the status computed from what the vault reported.
//!
//! A failure in steps 1–5 skips the rest of 5 and 6 but not 7: the status says `Degraded`
//! with the failure's reason, a Warning Event repeats it, and the reconcile is retried with
//! the error backoff. `spec.paused` stops steps 2, 5 and 6. Nothing at all is done once the
//! leader Lease is no longer confirmed ([`crate::leader_election::LeaderGate`]); the gate is
//! checked again right before every write and every membership change.
//!
//! A finalizer deletes what owner references cannot: in SoftHSM mode the data volumes,
//! which are unreadable once the generated KEK is gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use strongroom_admin_api::cluster::{ClusterStatus, NodeState};
use strongroom_admin_api::tokens::CreateToken;
use tracing::{debug, info, warn};

use super::api_tls;
use super::backups;
use super::builders::{self, Children};
use super::defaults::VaultDefaults;
use super::membership::{self, Observation, PodState, Step};
use super::monitoring;
use super::names::{selector_labels, VaultNames};
use super::policy::VaultPolicy;
use super::restore;
use super::secret_material::{
    operator_token_data, operator_token_of, restored_kek, restored_kek_secret, Decision, GeneratedSecret,
    OPERATOR_TOKEN_NAME, OPERATOR_TOKEN_SCOPES,
};
use super::status::{self, Explanation, Outcome};
use crate::controller_kit::{api, apply_object, key, publish, write_status, Control};
use crate::crd::PiiVault;
use crate::leader_election::LeaderGate;
use crate::metrics::Metrics;
use crate::vaultd_client::{RootToken, StatusBody, VaultAdmin, VaultError};
use crate::{Error, FIELD_MANAGER};

/// The controller's name in metrics and events.
pub const CONTROLLER: &str = "piivault";
/// The finalizer on every `PiiVault`.
pub const FINALIZER: &str = "strongroom.dev/piivault-cleanup";

/// Look again soon after a change, a little later while waiting, rarely when converged
/// (watch events on the StatefulSet trigger reconciles in between).
const REQUEUE_AFTER_CHANGE: Duration = Duration::from_secs(2);
const REQUEUE_WHILE_WAITING: Duration = Duration::from_secs(10);
const REQUEUE_WHEN_CONVERGED: Duration = Duration::from_secs(60);

/// What every reconcile needs.
pub struct Context<V> {
    pub client: Client,
    pub vault: V,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub defaults: VaultDefaults,
    /// What a vault may ask for; a vault that asks for more is not rendered.
    pub policy: VaultPolicy,
    /// Acting only while leading, and the error backoff per vault.
    pub control: Control,
}

impl<V> Context<V> {
    pub fn new(client: Client, vault: V, metrics: Arc<Metrics>, reporter: Reporter, defaults: VaultDefaults) -> Self {
        Self {
            defaults,
            policy: VaultPolicy::default(),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            vault,
            metrics,
            control: Control::new(),
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

/// Runs the controller for `PiiVault`s in `namespace` (all namespaces when `None`) until
/// the process is asked to stop.
pub async fn run<V: VaultAdmin>(ctx: Arc<Context<V>>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    info!(namespace = ns.unwrap_or("(all)"), "starting the PiiVault controller");
    Controller::new(api::<PiiVault>(&client, ns), watcher::Config::default().any_semantic())
        .owns(api::<StatefulSet>(&client, ns), children.clone())
        .owns(api::<Service>(&client, ns), children.clone())
        .owns(api::<ConfigMap>(&client, ns), children.clone())
        .owns(api::<ServiceAccount>(&client, ns), children.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), children.clone())
        .owns(api::<NetworkPolicy>(&client, ns), children.clone())
        .owns(api::<Job>(&client, ns), children)
        // Our own status writes trigger reconciles too; coalesce bursts of events.
        .with_config(controller::Config::default().debounce(Duration::from_secs(1)))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(vault = %object, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

/// One reconcile of one `PiiVault`.
pub async fn reconcile<V: VaultAdmin>(vault: Arc<PiiVault>, ctx: Arc<Context<V>>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    ctx.control.ensure_leader()?;
    let namespace = vault.namespace().ok_or(Error::MissingField("PiiVault metadata.namespace"))?;
    let vaults: Api<PiiVault> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = key(&*vault);
    let result = finalizer(&vaults, FINALIZER, vault, |event| async {
        match event {
            FinalizerEvent::Apply(vault) => {
                let applied = apply(&ctx.defaults.apply(&vault), &ctx).await;
                if applied.is_ok() {
                    let now = Timestamp::now().as_millisecond() as f64 / 1000.0;
                    ctx.metrics.vault_reconciled(&namespace, &vault.name_any(), now);
                }
                applied
            }
            FinalizerEvent::Cleanup(vault) => {
                ctx.metrics.vault_removed(&namespace, &vault.name_any());
                cleanup(&vault, &ctx).await
            }
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
pub fn error_policy<V: VaultAdmin>(vault: Arc<PiiVault>, error: &Error, ctx: Arc<Context<V>>) -> Action {
    let delay = ctx.control.backoff(&key(&*vault));
    warn!(vault = %key(&*vault), %error, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(delay)
}

async fn apply<V: VaultAdmin>(vault: &PiiVault, ctx: &Context<V>) -> Result<Action, Error> {
    let names = VaultNames::of(vault);
    let paused = vault.spec.paused;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), names.namespace());
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), names.namespace());
    let had_members = vault.status.as_ref().is_some_and(|status| !status.members.is_empty());

    // The first failure before the step: reported in the status, then retried with backoff.
    // A vault the policy refuses is observed but nothing of it is rendered.
    let default_module = ctx.defaults.pkcs11_module_image.as_ref().map(|module| module.image.as_str());
    let mut failure: Option<Error> = ctx.policy.check(vault, default_module).err().map(Error::NotAllowed);
    let set_replicas = match sets.get_opt(&names.stateful_set()).await {
        Ok(set) => set.and_then(|set| set.spec).and_then(|spec| spec.replicas),
        Err(error) => {
            failure.get_or_insert(error.into());
            None
        }
    };
    // Every call to the vault trusts only its API CA (issuing a fresh certificate first).
    let may_write = !paused && failure.is_none();
    let ca = api_ca(ctx, vault, &names, &secrets, may_write).await.unwrap_or_else(|error| {
        failure.get_or_insert(error);
        None
    });
    let admin = ctx.vault.trusting(ca.as_deref()).or_else(|error| {
        failure.get_or_insert(Error::Tls(format!("the vault's API CA: {error}")));
        ctx.vault.trusting(None)
    })?;
    let pods = observe_pods(&admin, &names, set_replicas).await;
    let pod_states: BTreeMap<i32, PodState> =
        pods.iter().map(|(ordinal, status)| (*ordinal, pod_state(status.as_ref()))).collect();

    let initialised = membership::vault_initialised(had_members, &pod_states);
    let mut generated = BTreeMap::new();
    if !paused && failure.is_none() {
        match ensure_generated_secrets(ctx, vault, &names, &secrets, initialised).await {
            Ok(ensured) => generated = ensured,
            Err(error) => failure = Some(error),
        }
    }
    let token = match root_token(vault, &names, &secrets, &generated, initialised).await {
        Ok(token) => token,
        Err(error) => {
            failure.get_or_insert(error);
            None
        }
    };

    // After the bootstrap every admin call uses the operator's scoped token; the root token
    // only bootstraps and creates that token once (so it may be retired afterwards).
    let mut operator_token = match secrets.get_opt(&names.operator_token_secret()).await {
        Ok(secret) => operator_token_of(vault, secret.as_ref()).unwrap_or_else(|error| {
            failure.get_or_insert(error);
            None
        }),
        Err(error) => {
            failure.get_or_insert(error.into());
            None
        }
    };
    let mut seen = observe_cluster(&admin, &names, pods.clone(), operator_token.as_ref().or(token.as_ref())).await;
    let rejected = seen.cluster_error.as_ref().and_then(VaultError::status) == Some(401);
    if operator_token.is_some() && rejected && token.is_some() {
        // The vault does not know the operator's token (its data was replaced?): look with
        // the root token, and make a new one below if that works.
        info!(vault = %key(vault), "the vault rejects the operator's token; trying the root token");
        operator_token = None;
        seen = observe_cluster(&admin, &names, pods, token.as_ref()).await;
    }
    if operator_token.is_none() && seen.cluster.is_some() && !paused && failure.is_none() {
        match create_operator_token(ctx, &admin, vault, &names, &secrets, &seen, token.as_ref()).await {
            Ok(created) => operator_token = Some(created),
            Err(error) => failure = Some(error),
        }
    }
    let admin_token = operator_token.as_ref().or(token.as_ref());
    // A vault made from a backup: its first volume is restored before the StatefulSet.
    let mut restore = None;
    if let (None, false, false, None) = (set_replicas, had_members, paused, &failure) {
        restore = restore::converge(ctx, vault).await.unwrap_or_else(|error| {
            failure = Some(error);
            None
        });
    }
    let observation = Observation {
        names: names.clone(),
        desired_replicas: vault.spec.replicas,
        stateful_set_replicas: set_replicas,
        pods: pod_states,
        cluster: seen.cluster.clone(),
        had_members,
        restore,
        from_backup: vault.spec.bootstrap.is_some(),
    };
    let step = membership::next_step(&observation);
    debug!(vault = %key(vault), ?step, "membership step");

    let mut step_error = None;
    if !paused && failure.is_none() {
        let tokens = Tokens { root: token.as_ref(), admin: admin_token };
        match apply_and_step(ctx, &admin, vault, &observation, &seen, tokens, &step).await {
            Ok(result) => step_error = result.err(),
            Err(error) => failure = Some(error),
        }
    }
    // Backups once the cluster answers (the backup token is issued through it).
    let mut backups = None;
    if let (false, None, Some(token), Some(endpoint)) = (paused, &failure, admin_token, &seen.cluster_endpoint) {
        match backups::converge(ctx, &admin, vault, endpoint, token, Timestamp::now()).await {
            Ok(seen) => backups = seen,
            Err(error) => failure = Some(error),
        }
    }
    // Prometheus Operator objects; without that API the rest goes on (an Event says so).
    if let (false, None) = (paused, &failure) {
        if let Err(error) = monitoring::converge(ctx, vault).await {
            failure = Some(error);
        }
    }
    if let Some(Error::NotLeader) = failure {
        // Another replica may be in charge by now: not even the status is written.
        return Err(Error::NotLeader);
    }
    if let Some(error) = &failure {
        publish(&ctx.recorder, vault, EventType::Warning, error.condition_reason(), "Reconcile", error.to_string())
            .await;
    }
    if let Some(error) = &seen.cluster_error {
        publish(&ctx.recorder, vault, EventType::Warning, "VaultUnreachable", "Observe", error.to_string()).await;
    }
    if vault.spec.hsm.softhsm.is_some() && !status::warns_of_insecure_key_storage(vault.status.as_ref()) {
        let note = status::softhsm_warning(&names);
        publish(&ctx.recorder, vault, EventType::Warning, status::SOFTHSM_DEVELOPMENT_MODE, "Reconcile", note).await;
    }

    let outcome = Outcome {
        observation: &observation,
        step: &step,
        kek: seen.kek(),
        observe_error: seen.cluster_error.as_ref().map(ToString::to_string),
        step_error: step_error
            .as_ref()
            .map(|error| Explanation { reason: "MembershipChangeFailed", message: error.to_string() }),
        failure: failure
            .as_ref()
            .map(|error| Explanation { reason: error.condition_reason(), message: error.to_string() }),
        paused,
        backups: backups.as_ref(),
    };
    ctx.control.ensure_leader()?;
    let computed = status::compute(vault, &outcome, Timestamp::now());
    write_status(&ctx.client, vault, &computed).await?;
    report_status(ctx, vault, &computed);

    match (failure, step_error, seen.cluster_error) {
        (Some(error), _, _) => Err(error),
        (None, Some(error), _) | (None, None, Some(error)) => Err(Error::Vault(error)),
        (None, None, None) if step.is_change() => Ok(Action::requeue(REQUEUE_AFTER_CHANGE)),
        (None, None, None) if step == Step::Converged => Ok(Action::requeue(REQUEUE_WHEN_CONVERGED)),
        (None, None, None) => Ok(Action::requeue(REQUEUE_WHILE_WAITING)),
    }
}

/// The vault's phase and its members' health, as written to its status, for the metrics.
fn report_status<V>(ctx: &Context<V>, vault: &PiiVault, status: &crate::crd::PiiVaultStatus) {
    let phase = status.phase.map(|phase| format!("{phase:?}")).unwrap_or_else(|| "Unknown".to_string());
    let healthy = status.members.iter().filter(|member| member.healthy).count();
    let unhealthy = status.members.len() - healthy;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let namespace = vault.namespace().unwrap_or_default();
    ctx.metrics.vault_observed(&namespace, &vault.name_any(), &phase, count(healthy), count(unhealthy));
}

/// The root token (bootstrap only) and the token of every other admin call (the operator's
/// scoped token once it exists, the root token before).
#[derive(Clone, Copy)]
struct Tokens<'a> {
    root: Option<&'a RootToken>,
    admin: Option<&'a RootToken>,
}

/// Creates the operator's scoped token with the root token, on the member that answered for
/// the cluster, and stores it in the Secret `<name>-operator-token` (owned by the vault).
async fn create_operator_token<V: VaultAdmin>(
    ctx: &Context<V>,
    admin: &V,
    vault: &PiiVault,
    names: &VaultNames,
    secrets: &Api<Secret>,
    seen: &VaultObservation,
    root: Option<&RootToken>,
) -> Result<RootToken, Error> {
    let root = root.ok_or(Error::MissingField("the root token Secret"))?;
    let endpoint = seen.cluster_endpoint.clone().unwrap_or_else(|| names.api_address(0));
    let request = CreateToken {
        name: OPERATOR_TOKEN_NAME.to_string(),
        scopes: OPERATOR_TOKEN_SCOPES.iter().map(ToString::to_string).collect(),
        subject: None,
    };
    ctx.control.ensure_leader()?;
    let created = admin.create_scoped_token(&endpoint, root, &request).await.map_err(Error::OperatorToken)?;
    let name = names.operator_token_secret();
    let secret = builders::generated_secret(vault, name.clone(), operator_token_data(&created.id, &created.secret))?;
    apply_object(secrets, &secret).await?;
    // Nothing but this Secret may hold a live operator token: earlier ones (a lost Secret,
    // a vault whose data was replaced) are revoked, with the new token. Best effort.
    match admin.revoke_others_named(&endpoint, &created.secret, OPERATOR_TOKEN_NAME, &created.id).await {
        Ok(revoked) if !revoked.is_empty() => info!(vault = %key(vault), ?revoked, "revoked earlier operator tokens"),
        Ok(_) => {}
        Err(error) => warn!(vault = %key(vault), %error, "cannot revoke earlier operator tokens"),
    }
    let note =
        format!("created the operator's vault token {} ({}) in Secret {name}", created.id, request.scopes.join(", "));
    info!(vault = %key(vault), "{note}");
    publish(&ctx.recorder, vault, EventType::Normal, "OperatorTokenCreated", "CreateToken", note).await;
    Ok(created.secret)
}

/// Applies the children (the StatefulSet at the size `step` allows), then takes the step.
/// `Ok(Err(_))`: the vault refused or missed the membership change.
async fn apply_and_step<V: VaultAdmin>(
    ctx: &Context<V>,
    admin: &V,
    vault: &PiiVault,
    observation: &Observation,
    seen: &VaultObservation,
    tokens: Tokens<'_>,
    step: &Step,
) -> Result<Result<(), VaultError>, Error> {
    let children = builders::children(vault, membership::stateful_set_replicas(observation, step))?;
    ctx.control.ensure_leader()?;
    apply_children(ctx, observation.names.namespace(), &children).await?;
    // Not paused: the generated Secrets exist, or the referenced one was read.
    let missing = || Error::MissingField("the root token Secret");
    let token = match step {
        Step::Bootstrap { .. } => tokens.root.ok_or_else(missing)?,
        _ => tokens.admin.ok_or_else(missing)?,
    };
    match take_step(ctx, admin, vault, seen, token, step).await {
        Ok(()) => Ok(Ok(())),
        Err(Error::Vault(error)) => Ok(Err(error)),
        Err(error) => Err(error),
    }
}

/// Decides about every generated Secret the vault needs (see [`GeneratedSecret::decide`]),
/// then — only if none is missing, incomplete or foreign — creates the new ones and
/// re-applies the existing ones with their own data (restoring labels and owner). Returns
/// their data.
async fn ensure_generated_secrets<V>(
    ctx: &Context<V>,
    vault: &PiiVault,
    names: &VaultNames,
    secrets: &Api<Secret>,
    vault_initialised: bool,
) -> Result<BTreeMap<String, BTreeMap<String, ByteString>>, Error> {
    let uid = vault.metadata.uid.as_deref().ok_or(Error::MissingField("PiiVault metadata.uid"))?;
    let mut decided = Vec::new();
    for kind in GeneratedSecret::needed_by(vault) {
        let name = kind.secret_name(names);
        let existing = secrets.get_opt(&name).await?;
        decided.push((kind, name.clone(), kind.decide(&name, existing.as_ref(), uid, vault_initialised)?));
    }
    let mut ensured = BTreeMap::new();
    for (kind, name, decision) in decided {
        let data = match decision {
            Decision::Keep(data) => data,
            Decision::Generate => {
                info!(vault = %key(vault), secret = %name, "generating secret");
                let mut data = kind.generate(names)?;
                if let (GeneratedSecret::SoftHsm, Some(source)) = (kind, restored_kek_secret(vault)) {
                    let source = secrets.get_opt(source).await?;
                    data.extend(restored_kek(vault, source.as_ref())?.map(|kek| ("kek".to_string(), kek)));
                }
                data
            }
        };
        ctx.control.ensure_leader()?;
        apply_object(secrets, &builders::generated_secret(vault, name.clone(), data.clone())?).await?;
        ensured.insert(name, data);
    }
    Ok(ensured)
}

/// The CA the operator trusts for the vault's API; `None` when TLS is off. With
/// `may_write`, first makes sure the operator's CA and the certificate it issues exist and
/// are fresh (see [`api_tls`]); a cert-manager Secret named in the spec is only read.
async fn api_ca<V>(
    ctx: &Context<V>,
    vault: &PiiVault,
    names: &VaultNames,
    secrets: &Api<Secret>,
    may_write: bool,
) -> Result<Option<Vec<u8>>, Error> {
    let Some(secret_name) = api_tls::api_tls_secret(vault) else { return Ok(None) };
    if vault.spec.tls.api_secret_name.is_some() {
        return api_tls::read_trusted_ca(vault, secrets).await;
    }
    if !may_write {
        // Paused or refused: the issued certificate as it is; none yet, nothing to trust.
        return match api_tls::read_trusted_ca(vault, secrets).await {
            Err(Error::SecretMissing { .. }) => Ok(None),
            other => other,
        };
    }
    let uid = vault.metadata.uid.as_deref().ok_or(Error::MissingField("PiiVault metadata.uid"))?;
    let controlled = |secret: &Secret, name: &str| {
        let owned =
            secret.metadata.owner_references.iter().flatten().any(|o| o.uid == uid && o.controller == Some(true));
        if owned {
            Ok(())
        } else {
            Err(Error::SecretConflict { secret: name.to_string() })
        }
    };
    let today = api_tls::today();

    let ca_name = names.api_ca_secret();
    let existing_ca = secrets.get_opt(&ca_name).await?;
    let complete = |data: &BTreeMap<String, ByteString>| ["ca.crt", "ca.key"].iter().all(|key| data.contains_key(*key));
    let ca = match existing_ca {
        Some(secret) => {
            controlled(&secret, &ca_name)?;
            secret.data.filter(complete)
        }
        None => None,
    };
    let ca = match ca {
        Some(ca) => ca,
        None => {
            let ca = api_tls::generate_ca(names, today)?;
            ctx.control.ensure_leader()?;
            apply_object(secrets, &builders::generated_secret(vault, ca_name.clone(), ca.clone())?).await?;
            info!(vault = %key(vault), secret = %ca_name, "generated the API CA");
            ca
        }
    };
    let ca_pem = ca.get("ca.crt").map(|value| value.0.clone()).unwrap_or_default();

    let existing = secrets.get_opt(&secret_name).await?;
    if let Some(secret) = &existing {
        controlled(secret, &secret_name)?;
    }
    if api_tls::needs_issuing(existing.as_ref(), &ca_pem, today) {
        let (data, not_after) = api_tls::issue(names, &ca, today)?;
        let mut secret = builders::generated_secret(vault, secret_name.clone(), data)?;
        secret.metadata.annotations =
            Some(BTreeMap::from([(api_tls::NOT_AFTER_ANNOTATION.to_string(), not_after.to_string())]));
        ctx.control.ensure_leader()?;
        apply_object(secrets, &secret).await?;
        let note = format!("issued the API certificate in Secret {secret_name}, valid until {not_after}");
        info!(vault = %key(vault), "{note}");
        publish(&ctx.recorder, vault, EventType::Normal, "CertificateIssued", "IssueCertificate", note).await;
    }
    Ok(Some(ca_pem))
}

/// The root token: from the referenced Secret, or from the generated one (as just ensured,
/// or — paused, or when ensuring failed — as stored, if this vault controls it).
async fn root_token(
    vault: &PiiVault,
    names: &VaultNames,
    secrets: &Api<Secret>,
    generated: &BTreeMap<String, BTreeMap<String, ByteString>>,
    vault_initialised: bool,
) -> Result<Option<RootToken>, Error> {
    let uid = vault.metadata.uid.as_deref().unwrap_or_default();
    let (name, key) = match &vault.spec.root_token_secret_ref {
        Some(reference) => (reference.name.clone(), reference.key.clone()),
        None => (names.root_token_secret(), "token".to_string()),
    };
    let data = match (generated.get(&name), &vault.spec.root_token_secret_ref) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(_)) => secrets.get_opt(&name).await?.map(|secret| secret.data.unwrap_or_default()),
        // Never a token from a Secret this vault does not control.
        (None, None) => {
            let existing = secrets.get_opt(&name).await?;
            match GeneratedSecret::RootToken.decide(&name, existing.as_ref(), uid, vault_initialised)? {
                Decision::Keep(data) => Some(data),
                Decision::Generate => None,
            }
        }
    };
    let Some(data) = data else {
        // Paused before the generated Secret existed (or it is missing or foreign, which is
        // reported already): observe without the admin API.
        return match vault.spec.root_token_secret_ref {
            Some(_) => Err(Error::SecretMissing { secret: name }),
            None => Ok(None),
        };
    };
    data.get(&key)
        .and_then(|value| RootToken::from_secret_value(&value.0))
        .map(Some)
        .ok_or(Error::SecretIncomplete { secret: name, key })
}

/// What the vault said.
struct VaultObservation {
    /// `GET /v1/status` of pods `0..replicas`; `None` when a pod did not answer.
    pods: BTreeMap<i32, Option<StatusBody>>,
    /// The member that answered for the cluster (the leader when known).
    cluster_endpoint: Option<String>,
    cluster: Option<ClusterStatus>,
    cluster_error: Option<VaultError>,
}

impl VaultObservation {
    /// The active KEK label, preferably as the leader reports it.
    fn kek(&self) -> Option<String> {
        let statuses = || self.pods.values().flatten();
        statuses()
            .find(|status| status.node.state == NodeState::Leader)
            .or_else(|| statuses().next())
            .map(|status| status.kek.clone())
    }
}

fn pod_state(status: Option<&StatusBody>) -> PodState {
    match status {
        Some(status) => PodState::Answered { state: status.node.state, id: status.node.id },
        None => PodState::Unreachable,
    }
}

/// `GET /v1/status` of pods `0..replicas` (no token needed).
async fn observe_pods<V: VaultAdmin>(
    vault: &V,
    names: &VaultNames,
    replicas: Option<i32>,
) -> BTreeMap<i32, Option<StatusBody>> {
    let ordinals: Vec<i32> = (0..replicas.unwrap_or(0)).collect();
    let answers = join_all(ordinals.iter().map(|ordinal| node_status(vault, names, *ordinal))).await;
    ordinals.into_iter().zip(answers).collect()
}

/// The leader's view of the cluster, asked of a member the pods' answers point to.
async fn observe_cluster<V: VaultAdmin>(
    vault: &V,
    names: &VaultNames,
    pods: BTreeMap<i32, Option<StatusBody>>,
    token: Option<&RootToken>,
) -> VaultObservation {
    // Ask the leader if a pod says it is one, otherwise any initialised pod (it forwards).
    let member = |wanted: fn(NodeState) -> bool| {
        pods.iter()
            .find(|(_, status)| status.as_ref().is_some_and(|s| wanted(s.node.state)))
            .map(|(ordinal, _)| *ordinal)
    };
    let endpoint = member(|state| state == NodeState::Leader)
        .or_else(|| member(|state| !matches!(state, NodeState::Uninitialized | NodeState::Shutdown)))
        .map(|ordinal| names.api_address(ordinal));
    let (cluster, cluster_error) = match (&endpoint, token) {
        (Some(endpoint), Some(token)) => match vault.cluster_status(endpoint, token).await {
            Ok(cluster) => (Some(cluster), None),
            Err(error) => (None, Some(error)),
        },
        _ => (None, None),
    };
    VaultObservation { pods, cluster_endpoint: endpoint, cluster, cluster_error }
}

/// `GET /v1/status` of one pod, `None` when it does not answer.
async fn node_status<V: VaultAdmin>(vault: &V, names: &VaultNames, ordinal: i32) -> Option<StatusBody> {
    match vault.node_status(&names.api_address(ordinal)).await {
        Ok(status) => Some(status),
        Err(error) => {
            debug!(pod = %names.pod(ordinal), %error, "no status");
            None
        }
    }
}

/// Server-side applies every child.
async fn apply_children<V>(ctx: &Context<V>, namespace: &str, children: &Children) -> Result<(), Error> {
    let client = &ctx.client;
    apply_object(&Api::namespaced(client.clone(), namespace), &children.service_account).await?;
    apply_object(&Api::namespaced(client.clone(), namespace), &children.config_map).await?;
    apply_object(&Api::namespaced(client.clone(), namespace), &children.headless_service).await?;
    apply_object(&Api::namespaced(client.clone(), namespace), &children.client_service).await?;
    if let Some(stateful_set) = &children.stateful_set {
        apply_object(&Api::namespaced(client.clone(), namespace), stateful_set).await?;
    }
    apply_object(&Api::namespaced(client.clone(), namespace), &children.disruption_budget).await?;
    apply_object(&Api::namespaced(client.clone(), namespace), &children.network_policy).await?;
    Ok(())
}

/// Carries out a membership step through the vault's admin API and records an Event.
/// Fails with [`Error::NotLeader`], calling nothing, unless this replica may act right now.
async fn take_step<V: VaultAdmin>(
    ctx: &Context<V>,
    admin: &V,
    vault: &PiiVault,
    seen: &VaultObservation,
    token: &RootToken,
    step: &Step,
) -> Result<(), Error> {
    let names = VaultNames::of(vault);
    // Cluster-wide calls go to the member that answered for the cluster (the leader when
    // one said so); vaultd forwards them to the leader otherwise.
    let member_endpoint = seen.cluster_endpoint.clone().unwrap_or_else(|| names.api_address(0));
    // The last moment to notice that another replica may have taken over.
    if step.is_change() {
        ctx.control.ensure_leader()?;
    }
    let (reason, note) = match step {
        Step::Bootstrap { pod, api_address } => {
            let added = admin.init_cluster(api_address, token).await;
            let added = record_failure(ctx, vault, "Bootstrap", added).await?;
            ("Bootstrapped", format!("initialised the cluster on {pod} as node {}", added.id))
        }
        Step::AddLearner { pod, learner } => {
            let added =
                record_failure(ctx, vault, "AddLearner", admin.add_learner(&member_endpoint, token, learner).await)
                    .await?;
            ("LearnerAdded", format!("added {pod} as learner node {}", added.id))
        }
        Step::Promote { pod, node_id } => match admin.promote(&member_endpoint, token, *node_id).await {
            // Not caught up after all: the next reconcile looks again.
            Err(error) if error.status() == Some(409) => {
                debug!(%pod, %error, "learner not ready for promotion");
                return Ok(());
            }
            result => {
                record_failure(ctx, vault, "Promote", result).await?;
                ("LearnerPromoted", format!("promoted {pod} (node {node_id}) to voter"))
            }
        },
        Step::RemoveMember { pod, node_id, .. } => {
            let removed = admin.remove_member(&member_endpoint, token, *node_id).await;
            record_failure(ctx, vault, "RemoveMember", removed).await?;
            let pod = pod.as_deref().unwrap_or("no pod");
            ("MemberRemoved", format!("removed node {node_id} ({pod}): {}", status::explain(step, None).message))
        }
        Step::ResizeStatefulSet { from, to } => {
            ("StatefulSetResized", format!("resized the StatefulSet from {from} to {to} pods"))
        }
        Step::Wait(_) | Step::Converged => return Ok(()),
    };
    info!(vault = %key(vault), reason, "{note}");
    ctx.metrics.membership_change(CONTROLLER, reason);
    publish(&ctx.recorder, vault, EventType::Normal, reason, "ChangeMembership", note).await;
    Ok(())
}

/// Publishes a Warning Event for a failed admin call and passes the result on.
async fn record_failure<V, T>(
    ctx: &Context<V>,
    vault: &PiiVault,
    action: &str,
    result: Result<T, VaultError>,
) -> Result<T, VaultError> {
    if let Err(error) = &result {
        publish(&ctx.recorder, vault, EventType::Warning, "MembershipChangeFailed", action, error.to_string()).await;
    }
    result
}

/// Deletion: owner references remove the children. In SoftHSM mode the generated KEK goes
/// with them, which leaves the data volumes unreadable — and in the way of a new vault of
/// the same name — so they are deleted too. With a vendor HSM the KEK outlives the vault
/// and the volumes are kept: recreating the vault under the same name recovers the data.
async fn cleanup<V: VaultAdmin>(vault: &PiiVault, ctx: &Context<V>) -> Result<Action, Error> {
    let names = VaultNames::of(vault);
    if vault.spec.hsm.softhsm.is_some() {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), names.namespace());
        let selector = selector_labels(&names).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        ctx.control.ensure_leader()?;
        claims.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&selector)).await?;
        let note = "deleted the data volumes: their KEK was generated for this vault and is gone with it".to_string();
        publish(&ctx.recorder, vault, EventType::Normal, "VolumesDeleted", "Cleanup", note).await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
