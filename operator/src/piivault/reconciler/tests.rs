//! The reconciler against a fake API server (kube-rs's mock service) and a scripted vault.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use serde_json::Value;
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, ErasureCompaction, Member, NodeState};

use super::*;
use crate::crd::piivault::{MemberRole, MemberStatus, Phase};
use crate::piivault::builders::test_support::softhsm_vault;
use crate::piivault::secret_material::GeneratedSecret;
use crate::piivault::test_harness::{test_context, ApiRequest, ScriptedVault, VaultCall};

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
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some("pii".into()), ..Default::default() },
            data: Some(kind.generate(&names()).unwrap()),
            ..Default::default()
        };
        objects.insert(secret_path(&name), serde_json::to_value(secret).unwrap());
    }
    if let Some(replicas) = set_replicas {
        let set = builders::children(vault, replicas).unwrap().stateful_set;
        objects.insert(SET_PATH.to_string(), serde_json::to_value(set).unwrap());
    }
    objects
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
    let (ctx, server) = test_context(objects, scripted.clone());
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

fn event_reasons(requests: &[ApiRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with("/events"))
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_string())
        .collect()
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
    assert_eq!(event_reasons(&requests), vec!["Bootstrapped"]);
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
        api_address: "http://vault-3.vault-headless.pii.svc:3000".into(),
        replace: false,
    };
    assert_eq!(scripted.changes(), vec![VaultCall::AddLearner(leader.clone(), learner)]);
    assert_eq!(event_reasons(&requests), vec!["LearnerAdded"]);
    assert_eq!(written_status(&requests).phase, Some(Phase::Scaling));

    // The vault now reports the learner (node 4), caught up.
    let next = scripted.clone();
    next.node(names().api_address(3), NodeState::Learner, Some(4));
    let mut members: Vec<Member> = (0..3).map(|o| member(o, o as u64 + 1, true, 0)).collect();
    members.push(member(3, 4, false, 0));
    next.cluster(cluster(members));
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(5)), &next).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(scripted.changes().last(), Some(&VaultCall::Promote(leader, 4)));
    assert_eq!(event_reasons(&requests), vec!["LearnerPromoted"]);
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
    assert_eq!(event_reasons(&requests), vec!["MemberRemoved"]);

    // Node 5 has left the cluster: now the StatefulSet shrinks.
    let next = scripted.clone();
    next.cluster(cluster((0..4).map(|o| member(o, o as u64 + 1, true, 0)).collect()));
    let (result, requests, _) = reconcile_once(&vault, existing(&vault, Some(5)), &next).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(applied_set_replicas(&requests), Some(4));
    assert_eq!(scripted.changes().len(), 1, "no further membership change");
    assert_eq!(event_reasons(&requests), vec!["StatefulSetResized"]);
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
    let writes: Vec<&str> = requests.iter().filter(|r| r.method != Method::GET).map(|r| r.path.as_str()).collect();
    assert_eq!(writes, vec!["/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaults/vault/status"]);
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
    assert_eq!(event_reasons(&requests), vec!["VaultUnreachable"]);
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

#[test]
fn backoff_doubles_up_to_five_minutes() {
    assert_eq!(backoff_delay(1), Duration::from_secs(5));
    assert_eq!(backoff_delay(2), Duration::from_secs(10));
    assert_eq!(backoff_delay(4), Duration::from_secs(40));
    assert_eq!(backoff_delay(7), Duration::from_secs(300));
    assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(300));
}
