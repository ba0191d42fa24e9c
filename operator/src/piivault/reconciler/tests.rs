//! The reconciler against a fake API server (kube-rs's mock service) and a scripted vault.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::ToSpan;
use kube::api::ObjectMeta;
use serde_json::Value;
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, ErasureCompaction, Member, NodeState};
use tokio::time::Instant;

use super::*;
use crate::crd::piivault::SecretKeyRef;
use crate::crd::piivault::{BootstrapSpec, FromBackupSpec, MemberRole, MemberStatus, Phase, RestoreDrillSpec};
use crate::crd::PiiVaultStatus;
use crate::fake_api_server::{event_reasons, events, writes, ApiRequest, FakeApiOptions};
use crate::piivault::builders::test_support::softhsm_vault;
use crate::piivault::secret_material::{operator_token_data, GeneratedSecret};
use crate::piivault::test_harness::{test_context, test_context_with, ScriptedVault, VaultCall, SCOPED_TOKEN};

const VAULT_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaults/vault";
const SET_PATH: &str = "/apis/apps/v1/namespaces/pii/statefulsets/vault";

fn names() -> VaultNames {
    VaultNames::new("vault", "pii")
}

fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/pii/secrets/{name}")
}

/// A vault as the API server hands it over: with our finalizer already in place.
fn vault(replicas: i32) -> PiiVault {
    let mut vault = softhsm_vault(replicas);
    vault.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    vault
}

fn with_members(mut vault: PiiVault, count: usize) -> PiiVault {
    let member =
        |id: u64| MemberStatus { pod: None, node_id: id, role: MemberRole::Voter, lag: Some(0), healthy: true };
    vault.status = Some(PiiVaultStatus { members: (1..=count as u64).map(member).collect(), ..Default::default() });
    vault
}

/// The API server's objects: the vault, its generated Secrets, and a StatefulSet of `set`.
fn existing(vault: &PiiVault, set_replicas: Option<i32>) -> HashMap<String, Value> {
    let mut objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(vault).unwrap())]);
    for kind in GeneratedSecret::needed_by(vault) {
        let name = kind.secret_name(&names());
        // As the operator created it: owned by the vault.
        let secret = builders::generated_secret(vault, name.clone(), kind.generate(&names()).unwrap()).unwrap();
        objects.insert(secret_path(&name), serde_json::to_value(secret).unwrap());
    }
    // Steady state: the API CA and a fresh certificate from it, and the operator's scoped
    // token made after the bootstrap.
    let (ca, tls) = api_material();
    for (name, data) in [("vault-api-ca", ca), ("vault-api-tls", tls)] {
        let mut secret = builders::generated_secret(vault, name.to_string(), data).unwrap();
        let not_after = api_tls::today().checked_add(60.days()).unwrap().to_string();
        secret.metadata.annotations = Some([(api_tls::NOT_AFTER_ANNOTATION.to_string(), not_after)].into());
        objects.insert(secret_path(name), serde_json::to_value(secret).unwrap());
    }
    let token = RootToken::new(SCOPED_TOKEN);
    let name = names().operator_token_secret();
    let secret = builders::generated_secret(vault, name.clone(), operator_token_data("tok-operator", &token)).unwrap();
    objects.insert(secret_path(&name), serde_json::to_value(secret).unwrap());
    if let Some(replicas) = set_replicas {
        let set = builders::children(vault, Some(replicas)).unwrap().stateful_set;
        objects.insert(SET_PATH.to_string(), serde_json::to_value(set).unwrap());
    }
    objects
}

/// One API CA and certificate for all tests (generating keys takes a moment).
fn api_material() -> (BTreeMap<String, ByteString>, BTreeMap<String, ByteString>) {
    static MATERIAL: std::sync::OnceLock<(BTreeMap<String, ByteString>, BTreeMap<String, ByteString>)> =
        std::sync::OnceLock::new();
    MATERIAL
        .get_or_init(|| {
            let ca = api_tls::generate_ca(&names(), api_tls::today()).unwrap();
            let (tls, _) = api_tls::issue(&names(), &ca, api_tls::today()).unwrap();
            (ca, tls)
        })
        .clone()
}

fn member(ordinal: i32, id: u64, voter: bool, lag: u64) -> Member {
    Member {
        id,
        raft_address: names().raft_address(ordinal),
        api_address: names().api_address(ordinal),
        voter,
        matched_index: Some(100 - lag),
        lag: Some(lag),
        healthy: Some(true),
    }
}

fn cluster(members: Vec<Member>) -> ClusterStatus {
    ClusterStatus {
        node_id: Some(1),
        state: NodeState::Leader,
        leader: Some(1),
        term: 2,
        last_log_index: Some(100),
        applied_index: Some(100),
        snapshot_index: None,
        purged_index: None,
        members,
        erasures: ErasureCompaction::default(),
    }
}

/// A scripted vault with `voters` healthy voters at pods 0.. (pod 0, node 1, leads) and
/// uninitialised pods up to `pods`.
fn scripted(voters: i32, pods: i32) -> ScriptedVault {
    let vault = ScriptedVault::default();
    for ordinal in 0..pods {
        let (state, id) = match ordinal {
            0 => (NodeState::Leader, Some(1)),
            o if o < voters => (NodeState::Follower, Some(o as u64 + 1)),
            _ => (NodeState::Uninitialized, None),
        };
        vault.node(names().api_address(ordinal), state, id);
    }
    vault.cluster(cluster((0..voters).map(|o| member(o, o as u64 + 1, true, 0)).collect()));
    vault
}

/// Runs one reconcile and returns its result with every API request it made.
async fn reconcile_once(
    vault: &PiiVault,
    objects: HashMap<String, Value>,
    scripted: &ScriptedVault,
) -> (Result<Action, Error>, Vec<ApiRequest>, Arc<Metrics>) {
    reconcile_with(vault, objects, scripted, FakeApiOptions::default(), LeaderGate::always()).await
}

/// [`reconcile_once`] against a misbehaving API server, with a leader gate.
async fn reconcile_with(
    vault: &PiiVault,
    objects: HashMap<String, Value>,
    scripted: &ScriptedVault,
    options: FakeApiOptions,
    gate: LeaderGate,
) -> (Result<Action, Error>, Vec<ApiRequest>, Arc<Metrics>) {
    let (ctx, server) = test_context_with(objects, scripted.clone(), options, gate);
    let metrics = ctx.metrics.clone();
    let result = reconcile(Arc::new(vault.clone()), ctx).await;
    // The context (and with it the client) is gone: the fake server stops and reports.
    (result, server.await.expect("fake API server"), metrics)
}

fn applies(requests: &[ApiRequest]) -> Vec<&ApiRequest> {
    requests.iter().filter(|request| request.method == Method::PATCH).collect()
}

fn applied_set_replicas(requests: &[ApiRequest]) -> Option<i64> {
    requests.iter().find(|r| r.is(Method::PATCH, SET_PATH)).and_then(|r| r.body["spec"]["replicas"].as_i64())
}

fn written_status(requests: &[ApiRequest]) -> PiiVaultStatus {
    let status_path = format!("{VAULT_PATH}/status");
    let request = requests.iter().find(|r| r.is(Method::PATCH, &status_path)).expect("a status write");
    serde_json::from_value(request.body["status"].clone()).expect("a valid status")
}

fn condition<'a>(
    status: &'a PiiVaultStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status.conditions.iter().find(|c| c.type_ == type_).expect("condition present")
}

/// The reasons of the Events, without the SoftHSM warning every test vault (SoftHSM mode,
/// no such condition in its status yet) gets (see its own test).
fn reasons(requests: &[ApiRequest]) -> Vec<String> {
    event_reasons(requests).into_iter().filter(|reason| reason != status::SOFTHSM_DEVELOPMENT_MODE).collect()
}

const STATUS_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaults/vault/status";

/// Asserts that a reconcile stopped before any change: no child was applied (existing
/// generated Secrets may have been re-applied unchanged), the status was written and says
/// `Degraded` with `reason`, a Warning Event says the same, and the error is retried.
fn assert_stopped_and_degraded(result: &Result<Action, Error>, requests: &[ApiRequest], reason: &str) -> String {
    let error = result.as_ref().expect_err("the reconcile fails and is retried with backoff");
    assert_eq!(error.condition_reason(), reason, "{error}");
    let others: Vec<&str> =
        writes(requests).into_iter().filter(|path| !path.starts_with("/api/v1/namespaces/pii/secrets/")).collect();
    assert_eq!(others, vec![STATUS_PATH], "nothing but the status (and unchanged Secrets) is written");
    let status = written_status(requests);
    let degraded = condition(&status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", reason));
    assert_eq!(degraded.observed_generation, Some(1));
    assert_eq!(condition(&status, "Ready").status, "False");
    assert_eq!(status.phase, Some(Phase::Degraded));
    let warning = events(requests).into_iter().find(|e| e["reason"] == reason).expect("a Warning Event");
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["note"].as_str(), Some(degraded.message.as_str()));
    degraded.message.clone()
}

#[tokio::test]
async fn the_first_reconcile_creates_every_child_with_server_side_apply() {
    let vault = vault(3);
    let objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap())]);
    let scripted = ScriptedVault::default();
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");

    let applied: Vec<&str> = applies(&requests).iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        applied,
        vec![
            "/api/v1/namespaces/pii/secrets/vault-api-ca",
            "/api/v1/namespaces/pii/secrets/vault-api-tls",
            "/api/v1/namespaces/pii/secrets/vault-root-token",
            "/api/v1/namespaces/pii/secrets/vault-peer-auth",
            "/api/v1/namespaces/pii/secrets/vault-peer-tls",
            "/api/v1/namespaces/pii/secrets/vault-softhsm",
            "/api/v1/namespaces/pii/serviceaccounts/vault",
            "/api/v1/namespaces/pii/configmaps/vault-config",
            "/api/v1/namespaces/pii/services/vault-headless",
            "/api/v1/namespaces/pii/services/vault",
            SET_PATH,
            "/apis/policy/v1/namespaces/pii/poddisruptionbudgets/vault",
            "/apis/networking.k8s.io/v1/namespaces/pii/networkpolicies/vault",
            "/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaults/vault/status",
        ]
    );
    for request in applies(&requests) {
        assert!(request.query.contains("fieldManager=strongroom-operator"), "{}", request.query);
        assert!(request.query.contains("force=true"), "{}", request.query);
    }
    // Each generated Secret was looked up before it was generated.
    for name in ["vault-root-token", "vault-peer-auth", "vault-peer-tls", "vault-softhsm"] {
        let get = requests.iter().position(|r| r.is(Method::GET, &secret_path(name))).expect("looked up");
        let apply = requests.iter().position(|r| r.is(Method::PATCH, &secret_path(name))).expect("applied");
        assert!(get < apply);
    }
    let softhsm = requests.iter().find(|r| r.is(Method::PATCH, &secret_path("vault-softhsm"))).unwrap();
    let data = softhsm.body["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), vec!["kek", "so.pin", "user.pin"]);
    let child = requests.iter().find(|r| r.is(Method::PATCH, SET_PATH)).unwrap();
    assert_eq!(child.body["metadata"]["ownerReferences"][0]["kind"], "PiiVault");
    assert_eq!(applied_set_replicas(&requests), Some(3));
    assert!(scripted.changes().is_empty(), "no pod exists yet: {:?}", scripted.changes());

    let status = written_status(&requests);
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!(condition(&status, "Progressing").status, "True");
    assert_eq!(condition(&status, "Progressing").reason, "WaitingForPod");
    assert_eq!(condition(&status, "Ready").status, "False");
    assert_eq!(status.observed_generation, Some(1));
}

#[tokio::test]
async fn existing_generated_secrets_are_reapplied_unchanged() {
    let vault = vault(3);
    let objects = existing(&vault, None);
    let stored = objects[&secret_path("vault-softhsm")]["data"].clone();
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    let applied = requests.iter().find(|r| r.is(Method::PATCH, &secret_path("vault-softhsm"))).unwrap();
    assert_eq!(applied.body["data"], stored, "the KEK must never change");
}

#[tokio::test]
async fn fresh_pods_are_bootstrapped_from_pod_0() {
    let vault = vault(3);
    let scripted = ScriptedVault::default();
    for ordinal in 0..3 {
        scripted.node(names().api_address(ordinal), NodeState::Uninitialized, None);
    }
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(3)), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(scripted.changes(), vec![VaultCall::Init(names().api_address(0))]);
    assert_eq!(reasons(&requests), vec!["Bootstrapped"]);
    assert_eq!(written_status(&requests).phase, Some(Phase::Initializing));
    // The admin call carried the token from the generated Secret.
    assert_eq!(scripted.tokens().len(), 1);
}

#[tokio::test]
async fn a_scale_up_adds_the_new_pod_as_learner_then_promotes_it() {
    let vault = with_members(vault(5), 3);
    let scripted = scripted(3, 5);
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(5)), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    let leader = names().api_address(0);
    let learner = AddLearner {
        raft_address: "vault-3.vault-headless.pii.svc:3001".into(),
        api_address: "https://vault-3.vault-headless.pii.svc:3000".into(),
        replace: false,
    };
    assert_eq!(scripted.changes(), vec![VaultCall::AddLearner(leader.clone(), learner)]);
    assert_eq!(reasons(&requests), vec!["LearnerAdded"]);
    assert_eq!(written_status(&requests).phase, Some(Phase::Scaling));

    // The leader has not heard from the new learner yet: progress, not a problem.
    let joining = scripted.clone();
    joining.node(names().api_address(3), NodeState::Learner, Some(4));
    let mut members: Vec<Member> = (0..3).map(|o| member(o, o as u64 + 1, true, 0)).collect();
    members.push(Member { healthy: None, lag: None, matched_index: None, ..member(3, 4, false, 0) });
    joining.cluster(cluster(members));
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(5)), &joining).await;
    assert!(result.is_ok(), "{result:?}");
    let status = written_status(&requests);
    assert_eq!(condition(&status, "Degraded").status, "False");
    assert_eq!(condition(&status, "Progressing").reason, "LearnerCatchingUp");
    assert_eq!(scripted.changes().len(), 1, "nothing else changed meanwhile");

    // The vault now reports the learner (node 4), caught up.
    let next = scripted.clone();
    next.node(names().api_address(3), NodeState::Learner, Some(4));
    let mut members: Vec<Member> = (0..3).map(|o| member(o, o as u64 + 1, true, 0)).collect();
    members.push(member(3, 4, false, 0));
    next.cluster(cluster(members));
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(5)), &next).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(scripted.changes().last(), Some(&VaultCall::Promote(leader, 4)));
    assert_eq!(reasons(&requests), vec!["LearnerPromoted"]);
    let status = written_status(&requests);
    let learner = status.members.iter().find(|m| m.node_id == 4).unwrap();
    assert_eq!(learner.pod.as_deref(), Some("vault-3"));
    assert_eq!(learner.role, MemberRole::Learner);
}

#[tokio::test]
async fn a_scale_down_removes_the_member_before_shrinking_the_stateful_set() {
    let vault = with_members(vault(3), 5);
    let scripted = scripted(5, 5);
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(5)), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(scripted.changes(), vec![VaultCall::RemoveMember(names().api_address(0), 5)]);
    assert_eq!(applied_set_replicas(&requests), Some(5), "not shrunk while vault-4 is a member");
    assert_eq!(reasons(&requests), vec!["MemberRemoved"]);

    // Node 5 has left the cluster: now the StatefulSet shrinks.
    let next = scripted.clone();
    next.cluster(cluster((0..4).map(|o| member(o, o as u64 + 1, true, 0)).collect()));
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(5)), &next).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(applied_set_replicas(&requests), Some(4));
    assert_eq!(scripted.changes().len(), 1, "no further membership change");
    assert_eq!(reasons(&requests), vec!["StatefulSetResized"]);
}

#[tokio::test]
async fn a_paused_vault_changes_nothing_but_its_status() {
    let mut vault = with_members(vault(5), 3);
    vault.spec.paused = true;
    // Pods 3 and 4 wait to join: an unpaused vault would add one.
    let scripted = scripted(3, 5);
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(3)), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(scripted.changes().is_empty(), "{:?}", scripted.changes());
    assert_eq!(writes(&requests), vec!["/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaults/vault/status"]);
    assert!(reasons(&requests).is_empty());
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(Phase::Paused));
    assert_eq!(condition(&status, "Progressing").reason, "Paused");
    assert_eq!(status.ready_replicas, 3, "still observed");
}

#[tokio::test]
async fn an_unreachable_vault_is_degraded_and_retried_with_backoff() {
    let vault = with_members(vault(3), 3);
    let scripted = ScriptedVault::default();
    // Pod 0 answers as a member, but the cluster API does not answer.
    scripted.node(names().api_address(0), NodeState::Follower, Some(1));
    let (ctx, server) = test_context(existing(&vault, Some(3)), scripted.clone());
    let result = reconcile(Arc::new(vault.clone()), ctx.clone()).await;
    let error = result.expect_err("the reconcile fails");
    assert_eq!(error.metric_label(), "vault");
    let first = error_policy(Arc::new(vault.clone()), &error, ctx.clone());
    let second = error_policy(Arc::new(vault.clone()), &error, ctx.clone());
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
    let metrics = ctx.metrics.encode().unwrap();
    assert!(metrics.contains(r#"reconcile_failures_total{controller="piivault",error="vault"} 2"#), "{metrics}");
    drop(ctx);
    let requests = server.await.unwrap();

    let status = written_status(&requests);
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "VaultUnreachable");
    assert!(degraded.message.contains("connection refused"), "{}", degraded.message);
    assert_eq!(degraded.observed_generation, Some(1));
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(reasons(&requests), vec!["VaultUnreachable"]);
    assert!(scripted.changes().is_empty());
}

#[tokio::test]
async fn deleting_a_softhsm_vault_deletes_its_volumes_and_releases_the_finalizer() {
    let mut vault = with_members(vault(3), 3);
    vault.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH));
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(3)), &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    let delete = requests.iter().find(|r| r.method == Method::DELETE).expect("volumes deleted");
    assert_eq!(delete.path, "/api/v1/namespaces/pii/persistentvolumeclaims");
    assert!(delete.query.contains("app.kubernetes.io%2Finstance%3Dvault"), "{}", delete.query);
    let release = requests.iter().find(|r| r.is(Method::PATCH, VAULT_PATH)).expect("finalizer removed");
    assert_eq!(release.body[1]["op"], "remove", "{}", release.body);
}

#[tokio::test]
async fn a_deleted_generated_secret_of_a_vault_with_members_is_reported_not_regenerated() {
    for secret in ["vault-root-token", "vault-peer-auth", "vault-peer-tls", "vault-softhsm"] {
        // Members in the status, or — status lost — a pod answering as an initialised node.
        for with_status in [true, false] {
            let vault = if with_status { with_members(vault(3), 3) } else { vault(3) };
            let mut objects = existing(&vault, Some(3));
            objects.remove(&secret_path(secret));
            let scripted = scripted(3, 3);
            let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
            let message = assert_stopped_and_degraded(&result, &requests, "SecretMissing");
            assert!(message.contains(secret), "{message}");
            assert!(!requests.iter().any(|r| r.is(Method::PATCH, &secret_path(secret))), "{secret} regenerated");
            assert!(scripted.changes().is_empty(), "{:?}", scripted.changes());
            assert_eq!(result.unwrap_err().metric_label(), "secret_missing");
        }
    }
}

#[tokio::test]
async fn a_new_vault_whose_pods_are_uninitialised_gets_its_missing_secrets() {
    let vault = vault(3);
    let mut objects = existing(&vault, Some(3));
    objects.remove(&secret_path("vault-softhsm"));
    let scripted = ScriptedVault::default();
    for ordinal in 0..3 {
        scripted.node(names().api_address(ordinal), NodeState::Uninitialized, None);
    }
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(requests.iter().any(|r| r.is(Method::PATCH, &secret_path("vault-softhsm"))));
    assert_eq!(scripted.changes(), vec![VaultCall::Init(names().api_address(0))]);
}

#[tokio::test]
async fn a_missing_root_token_secret_ref_is_degraded_before_anything_is_applied() {
    let mut vault = with_members(vault(3), 3);
    vault.spec.root_token_secret_ref = Some(SecretKeyRef { name: "app-root-token".into(), key: "token".into() });
    let scripted = scripted(3, 3);
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(3)), &scripted).await;
    let message = assert_stopped_and_degraded(&result, &requests, "SecretMissing");
    assert_eq!(message, "Secret app-root-token does not exist");
    assert!(scripted.changes().is_empty());
    // Without a token the cluster cannot be read, so the members are kept without health.
    assert_eq!(written_status(&requests).members.len(), 3);
}

#[tokio::test]
async fn an_incomplete_secret_is_degraded_and_never_shown() {
    let mut vault = with_members(vault(3), 3);
    vault.spec.root_token_secret_ref = Some(SecretKeyRef { name: "app-root-token".into(), key: "token".into() });
    let mut objects = existing(&vault, Some(3));
    let wrong_key = Secret {
        metadata: ObjectMeta { name: Some("app-root-token".into()), ..Default::default() },
        data: Some(BTreeMap::from([("password".to_string(), ByteString(b"s3cr3t-value".to_vec()))])),
        ..Default::default()
    };
    objects.insert(secret_path("app-root-token"), serde_json::to_value(wrong_key).unwrap());
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted(3, 3)).await;
    let message = assert_stopped_and_degraded(&result, &requests, "SecretIncomplete");
    assert_eq!(message, r#"Secret app-root-token has no key "token""#);

    // A generated Secret without its key is not repaired with new material either.
    let vault = with_members(self::vault(3), 3);
    let mut objects = existing(&vault, Some(3));
    objects.get_mut(&secret_path("vault-softhsm")).unwrap()["data"].as_object_mut().unwrap().remove("kek");
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted(3, 3)).await;
    let message = assert_stopped_and_degraded(&result, &requests, "SecretIncomplete");
    assert!(message.contains("vault-softhsm") && message.contains("kek"), "{message}");
    let text = serde_json::to_string(&requests.iter().map(|r| &r.body).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("s3cr3t"));
}

#[tokio::test]
async fn a_refused_apply_is_degraded_without_the_api_message_and_retried() {
    let vault = with_members(vault(3), 3);
    let scripted = scripted(3, 3);
    let options = FakeApiOptions { refuse_patch: vec![secret_path("vault-peer-auth")], ..Default::default() };
    let (ctx, server) = test_context_with(existing(&vault, Some(3)), scripted.clone(), options, LeaderGate::always());
    let error = reconcile(Arc::new(vault.clone()), ctx.clone()).await.expect_err("fails");
    assert_eq!(error_policy(Arc::new(vault.clone()), &error, ctx.clone()), Action::requeue(Duration::from_secs(5)));
    drop(ctx);
    let requests = server.await.unwrap();
    let status = written_status(&requests);
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.reason, "ApplyFailed");
    assert_eq!(degraded.message, "cannot apply Secret vault-peer-auth: Invalid (422)");
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, SET_PATH)), "children are not applied after a failure");
    assert_eq!(reasons(&requests), vec!["ApplyFailed"]);
    assert!(scripted.changes().is_empty());

    // A refused child: its message helps and holds no secret.
    let options = FakeApiOptions { refuse_patch: vec![SET_PATH.to_string()], ..Default::default() };
    // Pods 3 and 4 wait to join: without the failure vault-3 would be added.
    let growing = self::scripted(3, 5);
    let vault = with_members(self::vault(5), 3);
    let (result, requests, _) =
        reconcile_with(&vault, existing(&vault, Some(5)), &growing, options, LeaderGate::always()).await;
    assert_eq!(result.expect_err("fails").condition_reason(), "ApplyFailed");
    let degraded = written_status(&requests).conditions.into_iter().find(|c| c.type_ == "Degraded").unwrap();
    assert!(degraded.message.starts_with("cannot apply StatefulSet vault: "), "{}", degraded.message);
    assert!(growing.changes().is_empty(), "no membership change after a failed apply");
}

#[tokio::test]
async fn a_secret_of_a_generated_name_that_the_vault_does_not_own_is_not_adopted() {
    let vault = vault(3);
    let mut objects = existing(&vault, None);
    let someone_elses = Secret {
        metadata: ObjectMeta {
            name: Some("vault-root-token".into()),
            namespace: Some("pii".into()),
            ..Default::default()
        },
        data: Some(GeneratedSecret::RootToken.generate(&names()).unwrap()),
        ..Default::default()
    };
    objects.insert(secret_path("vault-root-token"), serde_json::to_value(someone_elses).unwrap());
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    let message = assert_stopped_and_degraded(&result, &requests, "SecretConflict");
    assert!(message.contains("vault-root-token"), "{message}");
    assert!(!requests.iter().any(|r| r.method == Method::PATCH && r.path.contains("/secrets/")), "nothing adopted");

    // Swapped under a running vault (before the operator made its own token): its token is
    // not even used to read the cluster.
    let vault = with_members(self::vault(3), 3);
    let mut objects = without_operator_token(existing(&vault, Some(3)));
    let mut swapped: Secret = serde_json::from_value(objects[&secret_path("vault-root-token")].clone()).unwrap();
    swapped.metadata.owner_references = None;
    objects.insert(secret_path("vault-root-token"), serde_json::to_value(swapped).unwrap());
    let scripted = scripted(3, 3);
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert_stopped_and_degraded(&result, &requests, "SecretConflict");
    assert!(scripted.tokens().is_empty(), "a token from a foreign Secret was sent");
}

#[tokio::test]
async fn a_replica_whose_lease_is_not_confirmed_does_nothing() {
    let vault = with_members(vault(5), 3);
    let scripted = scripted(3, 5);
    let expired = LeaderGate::until(Instant::now());
    let (result, requests, _) =
        reconcile_with(&vault, existing(&vault, Some(5)), &scripted, FakeApiOptions::default(), expired).await;
    assert!(matches!(result.as_ref().map_err(Error::cause), Err(Error::NotLeader)), "{result:?}");
    assert!(requests.is_empty(), "{requests:?}");
    assert!(scripted.calls().is_empty());
}

#[tokio::test]
async fn leadership_lost_mid_reconcile_stops_the_membership_change_about_to_be_made() {
    let vault = with_members(vault(5), 3);
    // Pods 3 and 4 wait to join: a leader would add vault-3 as a learner now.
    let scripted = scripted(3, 5);
    let gate = LeaderGate::until(Instant::now() + Duration::from_secs(600));
    // The Lease runs out while the children are applied, after the last one was sent.
    let last_child = "/apis/networking.k8s.io/v1/namespaces/pii/networkpolicies/vault".to_string();
    let options = FakeApiOptions { revoke_on: Some((last_child, gate.clone())), ..Default::default() };
    let (result, requests, _) = reconcile_with(&vault, existing(&vault, Some(5)), &scripted, options, gate).await;
    assert!(matches!(result.as_ref().map_err(Error::cause), Err(Error::NotLeader)), "{result:?}");
    assert!(scripted.changes().is_empty(), "{:?}", scripted.changes());
    assert!(!writes(&requests).contains(&STATUS_PATH), "nor is the status written");
    assert!(reasons(&requests).is_empty());
}

#[tokio::test]
async fn a_vault_whose_image_the_policy_refuses_is_not_rendered() {
    let mut vault = vault(3);
    vault.spec.image = "docker.io/somebody/vaultd:latest".into();
    let objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap())]);
    let scripted = ScriptedVault::default();
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    let message = assert_stopped_and_degraded(&result, &requests, "NotAllowed");
    assert!(
        message.contains("docker.io/somebody/vaultd:latest") && message.contains("policy.allowedImages"),
        "{message}"
    );
    assert!(!writes(&requests).iter().any(|path| path.contains("/secrets/")), "not even the Secrets are generated");
    let status = written_status(&requests);
    assert_eq!(condition(&status, "Ready").reason, "NotAllowed");
    assert!(scripted.changes().is_empty());
}

#[tokio::test]
async fn a_softhsm_vault_carries_an_insecure_key_storage_warning() {
    let vault = vault(3);
    let objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap())]);
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    let status = written_status(&requests);
    let warning = condition(&status, "InsecureKeyStorage");
    assert_eq!((warning.status.as_str(), warning.reason.as_str()), ("True", "SoftHsmDevelopmentMode"));
    assert!(warning.message.contains("vault-softhsm"), "{}", warning.message);
    let event = events(&requests).into_iter().find(|e| e["reason"] == "SoftHsmDevelopmentMode").expect("an Event");
    assert_eq!(event["type"], "Warning");

    // Once the status says so, the Event is not repeated on every reconcile.
    let mut warned = vault.clone();
    warned.status = Some(status);
    let objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&warned).unwrap())]);
    let (_, requests, _) = reconcile_once(&warned, objects, &ScriptedVault::default()).await;
    assert!(!event_reasons(&requests).contains(&"SoftHsmDevelopmentMode".to_string()));
    assert_eq!(condition(&written_status(&requests), "InsecureKeyStorage").status, "True");

    // A vendor-HSM vault has no such condition.
    let mut vendor = vault.clone();
    vendor.spec.hsm.softhsm = None;
    vendor.spec.hsm.pkcs11 = Some(crate::crd::piivault::Pkcs11Spec {
        module_path: "/usr/lib/libvendor.so".into(),
        module_image: None,
        pin_secret_ref: SecretKeyRef { name: "pin".into(), key: "pin".into() },
        config_secret_name: None,
        env: vec![],
    });
    let objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&vendor).unwrap())]);
    let (_, requests, _) = reconcile_once(&vendor, objects, &ScriptedVault::default()).await;
    assert!(written_status(&requests).conditions.iter().all(|c| c.type_ != "InsecureKeyStorage"));
}

/// The objects of [`existing`] without the operator's token Secret.
fn without_operator_token(mut objects: HashMap<String, Value>) -> HashMap<String, Value> {
    objects.remove(&secret_path(&names().operator_token_secret()));
    objects
}

fn root_of(objects: &HashMap<String, Value>) -> RootToken {
    let secret: Secret = serde_json::from_value(objects[&secret_path("vault-root-token")].clone()).unwrap();
    RootToken::from_secret_value(&secret.data.unwrap()["token"].0).unwrap()
}

#[tokio::test]
async fn once_the_cluster_exists_the_operator_makes_its_scoped_token_with_the_root_token() {
    let vault = with_members(vault(5), 3);
    let objects = without_operator_token(existing(&vault, Some(5)));
    let root = root_of(&objects);
    let scripted = scripted(3, 5);
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    let leader = names().api_address(0);
    let scopes = vec!["cluster:admin".to_string(), "tokens:admin".into(), "retention:run".into(), "backup:read".into()];
    assert_eq!(scripted.changes()[0], VaultCall::CreateToken(leader, scopes));
    // Any earlier operator token is revoked, with the new one.
    assert_eq!(scripted.changes()[1], VaultCall::RevokeOthers("strongroom-operator".into(), "tok-operator".into()));
    assert!(matches!(scripted.changes()[2], VaultCall::AddLearner(..)), "{:?}", scripted.changes());
    // Observed and the token made with the root token; the rest with the new one.
    let scoped = RootToken::new(SCOPED_TOKEN);
    assert_eq!(scripted.tokens(), vec![root.clone(), root, scoped.clone(), scoped]);
    let stored = requests
        .iter()
        .find(|r| r.is(Method::PATCH, &secret_path("vault-operator-token")))
        .expect("the token is stored");
    assert_eq!(stored.body["metadata"]["ownerReferences"][0]["uid"], "5f0c8f5e-0000-4000-8000-000000000001");
    let data: Secret = serde_json::from_value(stored.body.clone()).unwrap();
    assert_eq!(data.data.unwrap()["token"].0, SCOPED_TOKEN.as_bytes());
    assert_eq!(reasons(&requests), vec!["OperatorTokenCreated", "LearnerAdded"]);
}

#[tokio::test]
async fn with_its_scoped_token_the_operator_never_uses_the_root_token() {
    let vault = with_members(vault(5), 3);
    let scripted = scripted(3, 5);
    // The root token is retired: the vault would refuse it.
    scripted.refuse_tokens();
    let (result, _, _) = reconcile_once(&vault, existing(&vault, Some(5)), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(scripted.changes().iter().all(|call| !matches!(call, VaultCall::CreateToken(..))));
    assert!(matches!(scripted.changes()[0], VaultCall::AddLearner(..)));
    assert!(scripted.tokens().iter().all(|token| *token == RootToken::new(SCOPED_TOKEN)), "only the scoped token");
}

#[tokio::test]
async fn a_vault_whose_root_token_was_retired_before_the_operator_token_existed_is_degraded() {
    let vault = with_members(vault(5), 3);
    let scripted = scripted(3, 5);
    scripted.refuse_tokens();
    let objects = without_operator_token(existing(&vault, Some(5)));
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    let message = assert_stopped_and_degraded(&result, &requests, "OperatorTokenFailed");
    assert!(message.contains("operator's vault token"), "{message}");
    assert_eq!(scripted.changes().len(), 1, "only the refused token creation: {:?}", scripted.changes());
}

#[tokio::test]
async fn the_api_certificate_is_issued_from_the_vaults_ca_and_only_that_ca_is_trusted() {
    let vault = vault(3);
    let objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap())]);
    let scripted = ScriptedVault::default();
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    let body = |name: &str| request_body(&requests, &secret_path(name));
    let ca: Secret = serde_json::from_value(body("vault-api-ca")).unwrap();
    let tls: Secret = serde_json::from_value(body("vault-api-tls")).unwrap();
    let (ca, tls_data) = (ca.data.unwrap(), tls.data.clone().unwrap());
    assert_eq!(tls_data["ca.crt"], ca["ca.crt"]);
    assert!(!tls_data.contains_key("ca.key"));
    let not_after = &tls.metadata.annotations.unwrap()[api_tls::NOT_AFTER_ANNOTATION];
    assert_eq!(not_after, &api_tls::today().checked_add(90.days()).unwrap().to_string());
    assert_eq!(scripted.trusted(), vec![Some(ca["ca.crt"].0.clone())]);
    assert!(reasons(&requests).contains(&"CertificateIssued".to_string()));

    // The pods serve it over HTTPS; the probes use HTTPS.
    let set = request_body(&requests, SET_PATH);
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    let volumes = set["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["secret"]["secretName"] == "vault-api-tls"));
}

#[tokio::test]
async fn an_api_certificate_near_its_expiry_is_renewed_and_a_fresh_one_kept() {
    let vault = with_members(vault(3), 3);
    let mut objects = existing(&vault, Some(3));
    let scripted = scripted(3, 3);
    let (result, requests, _) = reconcile_once(&vault, objects.clone(), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!writes(&requests).contains(&secret_path("vault-api-tls").as_str()), "60 days left: kept");

    let path = secret_path("vault-api-tls");
    let soon = api_tls::today().checked_add(29.days()).unwrap().to_string();
    objects.get_mut(&path).unwrap()["metadata"]["annotations"][api_tls::NOT_AFTER_ANNOTATION] = soon.into();
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(writes(&requests).contains(&path.as_str()), "29 days left: renewed");
    assert!(!writes(&requests).contains(&secret_path("vault-api-ca").as_str()), "same CA");
}

#[tokio::test]
async fn a_cert_manager_secret_named_in_the_spec_is_only_read() {
    let mut vault = vault(3);
    vault.spec.tls.api_secret_name = Some("vault-cert".into());
    let objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap())]);
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    let message = assert_stopped_and_degraded(&result, &requests, "SecretMissing");
    assert!(message.contains("vault-cert"), "{message}");

    let mut objects = HashMap::from([(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap())]);
    let (ca, tls) = api_material();
    let theirs = Secret {
        metadata: ObjectMeta { name: Some("vault-cert".into()), ..Default::default() },
        data: Some(tls),
        ..Default::default()
    };
    objects.insert(secret_path("vault-cert"), serde_json::to_value(theirs).unwrap());
    let scripted = ScriptedVault::default();
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!writes(&requests).iter().any(|path| path.contains("api-")), "nothing issued");
    assert_eq!(scripted.trusted(), vec![Some(ca["ca.crt"].0.clone())]);
}

fn request_body(requests: &[ApiRequest], path: &str) -> Value {
    requests.iter().find(|r| r.is(Method::PATCH, path)).map(|r| r.body.clone()).expect(path)
}

#[tokio::test]
async fn an_operator_token_the_vault_does_not_know_is_made_anew_with_the_root_token() {
    let vault = with_members(vault(3), 3);
    let objects = existing(&vault, Some(3));
    let root = root_of(&objects);
    let scripted = scripted(3, 3);
    scripted.unknown_token(RootToken::new(SCOPED_TOKEN));
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        matches!(scripted.changes()[..], [VaultCall::CreateToken(..), VaultCall::RevokeOthers(..)]),
        "{:?}",
        scripted.changes()
    );
    assert_eq!(scripted.tokens()[..3], [RootToken::new(SCOPED_TOKEN), root.clone(), root]);
    assert!(writes(&requests).contains(&secret_path("vault-operator-token").as_str()));
}

fn with_backup(mut vault: PiiVault, schedule: Option<&str>) -> PiiVault {
    vault.spec.backup = Some(crate::crd::piivault::BackupSpec {
        destination: "s3://backups/pii/vault".into(),
        credentials_secret: "backup-s3".into(),
        schedule: schedule.map(String::from),
        retention: Default::default(),
        restore_drill: None,
    });
    vault
}

const BACKUP_CRON_JOB_PATH: &str = "/apis/batch/v1/namespaces/pii/cronjobs/vault-backup";
const LEDGER_SHIPPER_PATH: &str = "/apis/apps/v1/namespaces/pii/deployments/vault-ledger-shipper";

#[tokio::test]
async fn with_spec_backup_the_operator_issues_a_backup_token_and_runs_the_shipper_and_the_schedule() {
    let vault = with_backup(with_members(vault(3), 3), Some("0 2 * * *"));
    let scripted = scripted(3, 3);
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(3)), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    let leader = names().api_address(0);
    assert_eq!(scripted.changes()[0], VaultCall::CreateToken(leader, vec!["backup:read".to_string()]));
    assert!(matches!(&scripted.changes()[1], VaultCall::RevokeOthers(name, _) if name == "strongroom-backup"));
    assert!(scripted.tokens().iter().all(|token| *token == RootToken::new(SCOPED_TOKEN)), "the operator's token");
    for path in [secret_path("vault-backup-token"), LEDGER_SHIPPER_PATH.into(), BACKUP_CRON_JOB_PATH.into()] {
        assert!(requests.iter().any(|r| r.is(Method::PATCH, &path)), "{path} is not applied");
    }
    let status = written_status(&requests);
    let backups = status.backups.clone().expect("backup status");
    assert!(backups.next_scheduled_backup.is_some() && backups.last_successful_backup.is_none(), "{backups:?}");
    let healthy = condition(&status, "BackupsHealthy");
    assert_eq!((healthy.status.as_str(), healthy.reason.as_str()), ("True", "NoBackupYet"));
}

#[tokio::test]
async fn a_kept_backup_token_is_not_issued_again_and_without_spec_backup_the_children_go() {
    let vault = with_backup(with_members(vault(3), 3), None);
    let mut objects = existing(&vault, Some(3));
    let token = builders::generated_secret(
        &vault,
        "vault-backup-token".into(),
        operator_token_data("tok-backup", &RootToken::new("backup-secret")),
    )
    .unwrap();
    objects.insert(secret_path("vault-backup-token"), serde_json::to_value(token).unwrap());
    let scripted = scripted(3, 3);
    let (result, requests, _) = reconcile_once(&vault, objects.clone(), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(scripted.changes().is_empty(), "{:?}", scripted.changes());
    assert!(requests.iter().any(|r| r.is(Method::PATCH, LEDGER_SHIPPER_PATH)));
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, BACKUP_CRON_JOB_PATH)), "no schedule, no CronJob");
    assert_eq!(condition(&written_status(&requests), "BackupsHealthy").reason, "LedgerShipped");

    // spec.backup removed: the shipper and the CronJob are deleted.
    let without = with_members(self::vault(3), 3);
    let mut objects = existing(&without, Some(3));
    let shipper = builders::ledger_shipper(&vault).unwrap().unwrap();
    let cron_job = builders::backup_cron_job(&with_backup(vault.clone(), Some("0 2 * * *"))).unwrap().unwrap();
    objects.insert(LEDGER_SHIPPER_PATH.into(), serde_json::to_value(shipper).unwrap());
    objects.insert(BACKUP_CRON_JOB_PATH.into(), serde_json::to_value(cron_job).unwrap());
    let (result, requests, _) = reconcile_once(&without, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    for path in [LEDGER_SHIPPER_PATH, BACKUP_CRON_JOB_PATH] {
        assert!(requests.iter().any(|r| r.is(Method::DELETE, path)), "{path} is not deleted");
    }
    assert!(written_status(&requests).backups.is_none());
}

const RESTORE_JOB_PATH: &str = "/apis/batch/v1/namespaces/pii/jobs/vault-restore";
const CLAIMS_PATH: &str = "/api/v1/namespaces/pii/persistentvolumeclaims";

fn from_backup(mut vault: PiiVault, softhsm_secret: Option<&str>) -> PiiVault {
    vault.spec.bootstrap = Some(BootstrapSpec {
        from_backup: FromBackupSpec {
            source: "s3://backups/pii/old".into(),
            credentials_secret: "backup-s3".into(),
            backup_id: None,
            softhsm_secret: softhsm_secret.map(String::from),
        },
    });
    vault
}

/// The restore Job as the API server would hold it, with a condition of `type_` if any.
fn restore_job_with(vault: &PiiVault, condition: Option<(&str, &str)>) -> Value {
    let mut job = serde_json::to_value(builders::restore_job(vault).unwrap().unwrap()).unwrap();
    if let Some((type_, reason)) = condition {
        job["status"] = serde_json::json!({"conditions": [{
            "type": type_, "status": "True", "reason": reason, "message": "Job has reached the specified backoff limit"
        }]});
    }
    job
}

/// The objects of a vault to be restored: its Secrets and the store's credentials.
fn restorable(vault: &PiiVault) -> HashMap<String, Value> {
    let mut objects = existing(vault, None);
    let credentials = Secret {
        metadata: ObjectMeta { name: Some("backup-s3".into()), namespace: Some("pii".into()), ..Default::default() },
        ..Default::default()
    };
    objects.insert(secret_path("backup-s3"), serde_json::to_value(credentials).unwrap());
    objects
}

#[tokio::test]
async fn a_vault_from_a_backup_restores_pod_zeros_volume_before_its_stateful_set() {
    let vault = from_backup(vault(3), None);
    let (result, requests, _) = reconcile_once(&vault, restorable(&vault), &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    let claim = requests.iter().find(|r| r.is(Method::POST, CLAIMS_PATH)).expect("pod 0's claim is created");
    assert_eq!(claim.body["metadata"]["name"], "data-vault-0");
    assert_eq!(claim.body["metadata"]["annotations"][builders::RESTORE_OF], vault.metadata.uid.clone().unwrap());
    let job = requests.iter().find(|r| r.is(Method::PATCH, RESTORE_JOB_PATH)).expect("the restore Job is applied");
    assert_eq!(job.body["spec"]["template"]["spec"]["containers"][0]["args"][0], "restore");
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, SET_PATH)), "no StatefulSet before the restore");
    assert!(requests.iter().any(|r| r.is(Method::PATCH, "/api/v1/namespaces/pii/configmaps/vault-config")));
    assert_eq!(reasons(&requests), vec!["RestoreStarted"]);
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(Phase::Restoring));
    let progressing = condition(&status, "Progressing");
    assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("True", "Restoring"));
    assert_eq!(condition(&status, "Degraded").status, "False");

    // Still running: nothing is made again.
    let mut objects = restorable(&vault);
    objects.insert(RESTORE_JOB_PATH.into(), restore_job_with(&vault, None));
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, RESTORE_JOB_PATH) || r.is(Method::POST, CLAIMS_PATH)));
    assert_eq!(written_status(&requests).phase, Some(Phase::Restoring));
}

#[tokio::test]
async fn once_the_restore_succeeded_the_stateful_set_is_made_and_pod_zero_is_not_bootstrapped() {
    let vault = from_backup(vault(3), None);
    let mut objects = restorable(&vault);
    objects.insert(RESTORE_JOB_PATH.into(), restore_job_with(&vault, Some(("Complete", "CompletionsReached"))));
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(applied_set_replicas(&requests), Some(3));
    assert_eq!(reasons(&requests), vec!["Restored"]);

    // Pod 0 comes up as the restored cluster of one; pods 1 and 2 join it as learners.
    let scripted = scripted(1, 3);
    let mut objects = existing(&vault, Some(3));
    objects.insert(RESTORE_JOB_PATH.into(), restore_job_with(&vault, Some(("Complete", "CompletionsReached"))));
    let (result, requests, _) = reconcile_once(&vault, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!requests.iter().any(|r| r.path.starts_with(RESTORE_JOB_PATH)), "the Job is not looked at again");
    assert!(matches!(scripted.changes().last(), Some(VaultCall::AddLearner(..))), "{:?}", scripted.changes());
    assert!(!scripted.changes().iter().any(|call| matches!(call, VaultCall::Init(_))));
}

#[tokio::test]
async fn a_failed_restore_is_degraded_and_makes_no_stateful_set() {
    let vault = from_backup(vault(3), None);
    let mut objects = restorable(&vault);
    objects.insert(RESTORE_JOB_PATH.into(), restore_job_with(&vault, Some(("Failed", "BackoffLimitExceeded"))));
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, SET_PATH)));
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(Phase::Degraded));
    let degraded = condition(&status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "RestoreFailed"));
    assert!(
        degraded.message.contains("BackoffLimitExceeded")
            && degraded.message.contains("kubectl logs job/vault-restore")
    );
}

#[tokio::test]
async fn a_vault_that_had_members_or_a_stateful_set_is_never_restored() {
    for (vault, set) in [(with_members(from_backup(vault(3), None), 3), None), (from_backup(vault(3), None), Some(3))] {
        let (result, requests, _) = reconcile_once(&vault, existing(&vault, set), &scripted(3, 3)).await;
        assert!(result.is_ok(), "{result:?}");
        assert!(!requests.iter().any(|r| r.path.starts_with(RESTORE_JOB_PATH) || r.path.starts_with(CLAIMS_PATH)));
    }
}

#[tokio::test]
async fn a_softhsm_vault_from_a_backup_gets_the_source_vaults_kek() {
    let vault = from_backup(vault(3), Some("old-softhsm"));
    let mut objects = restorable(&vault);
    objects.retain(|path, _| path == VAULT_PATH || path == &secret_path("backup-s3"));
    // Without the source's Secret nothing is generated from a fresh KEK.
    let (result, requests, _) = reconcile_once(&vault, objects.clone(), &ScriptedVault::default()).await;
    assert_eq!(result.expect_err("the source Secret is missing").condition_reason(), "SecretMissing");
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, &secret_path("vault-softhsm"))));

    let source = Secret {
        metadata: ObjectMeta { name: Some("old-softhsm".into()), namespace: Some("pii".into()), ..Default::default() },
        data: Some(BTreeMap::from([("kek".to_string(), ByteString(vec![7; 32]))])),
        ..Default::default()
    };
    objects.insert(secret_path("old-softhsm"), serde_json::to_value(source).unwrap());
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    let softhsm = requests.iter().find(|r| r.is(Method::PATCH, &secret_path("vault-softhsm"))).unwrap();
    let kek: ByteString = serde_json::from_value(softhsm.body["data"]["kek"].clone()).unwrap();
    assert_eq!(kek.0, vec![7; 32]);
    assert!(softhsm.body["data"]["user.pin"].is_string(), "fresh PINs");
}

const DRILL_CRON_JOB_PATH: &str = "/apis/batch/v1/namespaces/pii/cronjobs/vault-restore-drill";

/// The restore drill's CronJob as the API server holds it after a run at `at` that
/// succeeded, or not.
fn drill_ran(vault: &PiiVault, at: &str, succeeded: bool) -> Value {
    let mut cron_job = serde_json::to_value(builders::restore_drill_cron_job(vault).unwrap().unwrap()).unwrap();
    cron_job["status"] = match succeeded {
        true => serde_json::json!({"lastScheduleTime": at, "lastSuccessfulTime": at}),
        false => serde_json::json!({"lastScheduleTime": at}),
    };
    cron_job
}

#[tokio::test]
async fn restore_drills_are_scheduled_and_their_results_reported_with_events() {
    let mut vault = with_backup(with_members(vault(3), 3), None);
    vault.spec.backup.as_mut().unwrap().restore_drill = Some(RestoreDrillSpec { schedule: "0 4 * * 0".into() });
    let mut objects = existing(&vault, Some(3));
    let token = operator_token_data("tok-backup", &RootToken::new("backup-secret"));
    let token = builders::generated_secret(&vault, "vault-backup-token".into(), token).unwrap();
    objects.insert(secret_path("vault-backup-token"), serde_json::to_value(token).unwrap());

    // A drill that succeeded: its time in the status, and an Event.
    let mut succeeded = objects.clone();
    succeeded.insert(DRILL_CRON_JOB_PATH.into(), drill_ran(&vault, "2027-01-17T04:00:00Z", true));
    let (result, requests, _) = reconcile_once(&vault, succeeded, &scripted(3, 3)).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(requests.iter().any(|r| r.is(Method::PATCH, DRILL_CRON_JOB_PATH)), "the drill's CronJob is applied");
    let status = written_status(&requests);
    let drill = status.backups.as_ref().and_then(|b| b.last_successful_restore_drill.clone());
    assert_eq!(drill.map(|time| time.0.to_string()), Some("2027-01-17T04:00:00Z".to_string()));
    assert_eq!(condition(&status, "BackupsHealthy").status, "True");
    assert_eq!(reasons(&requests), vec!["RestoreDrillSucceeded"]);

    // The same drill seen again: no second Event.
    let mut again = objects.clone();
    again.insert(DRILL_CRON_JOB_PATH.into(), drill_ran(&vault, "2027-01-17T04:00:00Z", true));
    let seen = PiiVault { status: Some(status.clone()), ..vault.clone() };
    let (_, requests, _) = reconcile_once(&seen, again, &scripted(3, 3)).await;
    assert!(reasons(&requests).is_empty(), "{:?}", reasons(&requests));

    // A week later the drill fails: unhealthy, and a Warning.
    objects.insert(DRILL_CRON_JOB_PATH.into(), drill_ran(&vault, "2027-01-24T04:00:00Z", false));
    let (result, requests, _) = reconcile_once(&seen, objects, &scripted(3, 3)).await;
    assert!(result.is_ok(), "{result:?}");
    let healthy = condition(&written_status(&requests), "BackupsHealthy").clone();
    assert_eq!((healthy.status.as_str(), healthy.reason.as_str()), ("False", "RestoreDrillFailed"));
    let warning = events(&requests).into_iter().find(|e| e["reason"] == "RestoreDrillFailed").expect("a Warning");
    assert_eq!(warning["type"], "Warning");
}

#[tokio::test]
async fn a_restore_needs_its_credentials_and_writes_only_into_a_volume_it_made() {
    let vault = from_backup(vault(3), None);
    // No credentials Secret: degraded, and no Job that could never start.
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, None), &ScriptedVault::default()).await;
    assert_eq!(result.expect_err("no credentials").condition_reason(), "SecretMissing");
    assert!(!requests.iter().any(|r| r.path.starts_with(RESTORE_JOB_PATH) && r.method != Method::GET));

    // A volume of that name not made for this restore (an earlier vault's): refused.
    let mut objects = restorable(&vault);
    let mut foreign = builders::restore_claim(&vault);
    foreign.metadata.annotations = None;
    objects.insert(format!("{CLAIMS_PATH}/data-vault-0"), serde_json::to_value(foreign).unwrap());
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, RESTORE_JOB_PATH)), "no Job writes into it");
    let degraded = condition(&written_status(&requests), "Degraded").clone();
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "RestoreRefused"));
    assert!(degraded.message.starts_with("the volume data-vault-0 exists and was not made for this restore"));
    assert!(!degraded.message.contains("kubectl logs"), "no Job to look at: {}", degraded.message);

    // An earlier vault's Job of the same name, not collected yet: not followed.
    let mut objects = restorable(&vault);
    let mut earlier = restore_job_with(&vault, Some(("Complete", "CompletionsReached")));
    earlier["metadata"]["ownerReferences"][0]["uid"] = serde_json::json!("uid-of-an-earlier-vault");
    objects.insert(RESTORE_JOB_PATH.into(), earlier);
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!requests.iter().any(|r| r.is(Method::PATCH, SET_PATH)), "no StatefulSet on an unrestored volume");
    assert_eq!(condition(&written_status(&requests), "Degraded").reason, "RestoreRefused");

    // Its own volume (a Job deleted to try again): the Job is made again.
    let mut objects = restorable(&vault);
    objects
        .insert(format!("{CLAIMS_PATH}/data-vault-0"), serde_json::to_value(builders::restore_claim(&vault)).unwrap());
    let (result, requests, _) = reconcile_once(&vault, objects, &ScriptedVault::default()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(requests.iter().any(|r| r.is(Method::PATCH, RESTORE_JOB_PATH)));
}

fn with_monitoring(mut vault: PiiVault, kind: crate::crd::piivault::MonitorKind) -> PiiVault {
    vault.spec.monitoring = Some(crate::crd::piivault::MonitoringSpec {
        kind,
        labels: [("release".to_string(), "prometheus".to_string())].into(),
        interval: None,
        alerts: true,
    });
    vault
}

const POD_MONITOR_PATH: &str = "/apis/monitoring.coreos.com/v1/namespaces/pii/podmonitors/vault";
const SERVICE_MONITOR_PATH: &str = "/apis/monitoring.coreos.com/v1/namespaces/pii/servicemonitors/vault";
const PROMETHEUS_RULE_PATH: &str = "/apis/monitoring.coreos.com/v1/namespaces/pii/prometheusrules/vault";

#[tokio::test]
async fn with_spec_monitoring_the_monitor_and_the_rule_are_applied() {
    use crate::crd::piivault::MonitorKind;
    let vault = with_monitoring(with_members(vault(3), 3), MonitorKind::PodMonitor);
    let scripted = scripted(3, 3);
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(3)), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    let applied = |path: &str| requests.iter().find(|r| r.is(Method::PATCH, path)).map(|r| r.body.clone());
    let monitor = applied(POD_MONITOR_PATH).expect("the PodMonitor is applied");
    assert_eq!(monitor["kind"], "PodMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "api");
    let rule = applied(PROMETHEUS_RULE_PATH).expect("the PrometheusRule is applied");
    assert_eq!(rule["spec"]["groups"][0]["name"], "strongroom-vault");
    assert!(applied(SERVICE_MONITOR_PATH).is_none());
    assert!(!reasons(&requests).contains(&"MonitoringUnavailable".to_string()));
}

#[tokio::test]
async fn without_spec_monitoring_or_after_a_switch_the_objects_that_are_not_asked_for_go() {
    use crate::crd::piivault::MonitorKind;
    let before = with_monitoring(with_members(vault(3), 3), MonitorKind::PodMonitor);
    let mut objects = existing(&before, Some(3));
    let monitor = builders::monitor(&before).unwrap().unwrap();
    let rule = builders::prometheus_rule(&before).unwrap().unwrap();
    objects.insert(POD_MONITOR_PATH.into(), serde_json::to_value(monitor).unwrap());
    objects.insert(PROMETHEUS_RULE_PATH.into(), serde_json::to_value(rule).unwrap());
    let scripted = scripted(3, 3);

    // Switched to a ServiceMonitor without alerts: the PodMonitor and the rule go.
    let mut switched = with_monitoring(with_members(vault(3), 3), MonitorKind::ServiceMonitor);
    switched.spec.monitoring.as_mut().unwrap().alerts = false;
    let (result, requests, _) = reconcile_once(&switched, objects.clone(), &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(requests.iter().any(|r| r.is(Method::PATCH, SERVICE_MONITOR_PATH)));
    for path in [POD_MONITOR_PATH, PROMETHEUS_RULE_PATH] {
        assert!(requests.iter().any(|r| r.is(Method::DELETE, path)), "{path} is not deleted");
    }

    // spec.monitoring removed: everything goes, nothing is applied.
    let without = with_members(vault(3), 3);
    let (result, requests, _) = reconcile_once(&without, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    for path in [POD_MONITOR_PATH, PROMETHEUS_RULE_PATH] {
        assert!(requests.iter().any(|r| r.is(Method::DELETE, path)), "{path} is not deleted");
    }
    assert!(!requests.iter().any(|r| r.method == Method::PATCH && r.path.contains("monitoring.coreos.com")));
    // None was there: nothing to delete.
    assert!(!requests.iter().any(|r| r.is(Method::DELETE, SERVICE_MONITOR_PATH)));

    // A PodMonitor of that name a user made (no owner): left alone.
    let mut objects = existing(&without, Some(3));
    let mut theirs = serde_json::to_value(builders::monitor(&before).unwrap().unwrap()).unwrap();
    theirs["metadata"]["ownerReferences"] = serde_json::json!([]);
    objects.insert(POD_MONITOR_PATH.into(), theirs);
    let (result, requests, _) = reconcile_once(&without, objects, &scripted).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!requests.iter().any(|r| r.is(Method::DELETE, POD_MONITOR_PATH)), "not the operator's to delete");
}

#[tokio::test]
async fn without_the_monitoring_api_the_reconcile_goes_on_and_an_event_says_so() {
    use crate::crd::piivault::MonitorKind;
    let vault = with_monitoring(with_members(vault(3), 3), MonitorKind::PodMonitor);
    let scripted = scripted(3, 3);
    let options = FakeApiOptions { missing_apis: vec!["/apis/monitoring.coreos.com/".into()], ..Default::default() };
    let (result, requests, _) =
        reconcile_with(&vault, existing(&vault, Some(3)), &scripted, options.clone(), LeaderGate::always()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(reasons(&requests), vec!["MonitoringUnavailable".to_string()]);
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(Phase::Running), "{status:?}");
    assert!(requests.iter().any(|r| r.is(Method::PATCH, SET_PATH)), "the rest is applied");

    // Not asked for: no Event, whether the API exists or not.
    let without = with_members(self::vault(3), 3);
    let (result, requests, _) =
        reconcile_with(&without, existing(&without, Some(3)), &scripted, options, LeaderGate::always()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(reasons(&requests).is_empty(), "{:?}", reasons(&requests));
}

#[tokio::test]
async fn a_reconcile_reports_the_vaults_phase_members_and_success_in_the_metrics() {
    let vault = with_members(vault(3), 3);
    let (result, _, metrics) = reconcile_once(&vault, existing(&vault, Some(3)), &scripted(3, 3)).await;
    assert!(result.is_ok(), "{result:?}");
    let text = metrics.encode().unwrap();
    assert!(text.contains(r#"strongroom_operator_vaults{phase="Running"} 1"#), "{text}");
    assert!(
        text.contains(r#"strongroom_operator_vault_members{vault_namespace="pii",vault="vault",health="healthy"} 3"#)
    );
    assert!(
        text.contains(r#"strongroom_operator_vault_members{vault_namespace="pii",vault="vault",health="unhealthy"} 0"#)
    );
    assert!(text.contains(
        r#"strongroom_operator_vault_last_successful_reconcile_timestamp_seconds{vault_namespace="pii",vault="vault"} "#
    ));
}

#[tokio::test]
async fn a_failed_reconcile_is_no_success_in_the_metrics() {
    let vault = with_members(vault(3), 3);
    let options = FakeApiOptions { refuse_patch: vec![SET_PATH.to_string()], ..Default::default() };
    let (result, _, metrics) =
        reconcile_with(&vault, existing(&vault, Some(3)), &scripted(3, 3), options, LeaderGate::always()).await;
    assert!(result.is_err());
    let text = metrics.encode().unwrap();
    assert!(text.contains(r#"strongroom_operator_vaults{phase="Degraded"} 1"#), "{text}");
    assert!(!text.contains("strongroom_operator_vault_last_successful_reconcile_timestamp_seconds{"), "{text}");
}
