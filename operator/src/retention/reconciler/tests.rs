//! The reconciler against a fake API server (kube-rs's mock service) and a scripted vault.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Method;
use k8s_openapi::api::batch::v1::CronJobStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::ByteString;
use serde_json::Value;

use super::*;
use crate::crd::RetentionPolicyStatus;
use crate::fake_api_server::{event_reasons, events, writes, ApiRequest};
use crate::piivault::builders::generated_secret;
use crate::retention::test_harness::{test_context, Call, ScriptedVault, OPERATOR_TOKEN, ROOT_TOKEN};
use crate::retention::test_support::{customers_vault, issue_example, run_report, VAULT_UID};

const POLICY_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/shop/retentionpolicies/drop-phone";
const STATUS_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/shop/retentionpolicies/drop-phone/status";
const VAULT_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/shop/piivaults/customers";
const ROOT_SECRET_PATH: &str = "/api/v1/namespaces/shop/secrets/customers-root-token";
const TOKEN_SECRET_PATH: &str = "/api/v1/namespaces/shop/secrets/retention-drop-phone-token";
const CONFIG_MAP_PATH: &str = "/api/v1/namespaces/shop/configmaps/retention-drop-phone-policy";
const CRON_JOB_PATH: &str = "/apis/batch/v1/namespaces/shop/cronjobs/retention-drop-phone";
const CLIENT_SERVICE: &str = "https://customers.shop.svc:3000";
const TOKEN_NAME: &str = "retention-shop-drop-phone";

/// The policy as the API server hands it over: with our finalizer already in place.
fn policy() -> RetentionPolicy {
    let mut policy = issue_example();
    policy.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    policy
}

/// The API server's objects: the policy, its vault and the vault's generated root token.
fn existing(policy: &RetentionPolicy) -> HashMap<String, Value> {
    let vault = customers_vault();
    let data = BTreeMap::from([("token".to_string(), ByteString(format!("{ROOT_TOKEN}\n").into_bytes()))]);
    let root = generated_secret(&vault, "customers-root-token".into(), data).unwrap();
    let ca = BTreeMap::from([("ca.crt".to_string(), ByteString(VAULT_CA.as_bytes().to_vec()))]);
    let api_tls = generated_secret(&vault, "customers-api-tls".into(), ca).unwrap();
    HashMap::from([
        (POLICY_PATH.to_string(), serde_json::to_value(policy).unwrap()),
        (VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap()),
        (ROOT_SECRET_PATH.to_string(), serde_json::to_value(&root).unwrap()),
        ("/api/v1/namespaces/shop/secrets/customers-api-tls".to_string(), serde_json::to_value(&api_tls).unwrap()),
    ])
}

/// The CA of the vault's API certificate, as the tests store it (not parsed by the double).
const VAULT_CA: &str = "-----BEGIN CERTIFICATE-----\nthe customers vault's API CA\n-----END CERTIFICATE-----\n";

/// [`existing`] plus the token Secret the operator stored earlier for token `id`.
fn with_stored_token(policy: &RetentionPolicy, id: &str, secret: &str) -> HashMap<String, Value> {
    let mut objects = existing(policy);
    let token = NewToken { id: id.into(), secret: RootToken::new(secret) };
    let stored = builders::token_secret(policy, &token, VAULT_UID).unwrap();
    objects.insert(TOKEN_SECRET_PATH.to_string(), serde_json::to_value(stored).unwrap());
    objects
}

/// Runs one reconcile and returns its result with every API request it made.
async fn reconcile_once(
    policy: &RetentionPolicy,
    objects: HashMap<String, Value>,
    vault: &ScriptedVault,
) -> (Result<Action, Error>, Vec<ApiRequest>) {
    reconcile_gated(policy, objects, vault, LeaderGate::always()).await
}

async fn reconcile_gated(
    policy: &RetentionPolicy,
    objects: HashMap<String, Value>,
    vault: &ScriptedVault,
    gate: LeaderGate,
) -> (Result<Action, Error>, Vec<ApiRequest>) {
    let (ctx, server) = test_context(objects, vault.clone(), gate);
    let result = reconcile(Arc::new(policy.clone()), ctx).await;
    // The context (and with it the client) is gone: the fake server stops and reports.
    (result, server.await.expect("fake API server"))
}

fn request<'a>(requests: &'a [ApiRequest], method: Method, path: &str) -> &'a ApiRequest {
    requests.iter().find(|r| r.is(method.clone(), path)).unwrap_or_else(|| panic!("no {method} {path}"))
}

fn written_status(requests: &[ApiRequest]) -> RetentionPolicyStatus {
    serde_json::from_value(request(requests, Method::PATCH, STATUS_PATH).body["status"].clone()).expect("a status")
}

fn condition<'a>(status: &'a RetentionPolicyStatus, type_: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == type_).expect("condition present")
}

fn create_token_call() -> Call {
    Call::CreateToken {
        node: CLIENT_SERVICE.into(),
        request: CreateToken { name: TOKEN_NAME.into(), scopes: vec!["retention:run".into()], subject: None },
    }
}

fn latest_run_call() -> Call {
    Call::LatestRun { node: CLIENT_SERVICE.into(), policy: "shop/drop-phone".into() }
}

#[tokio::test]
async fn the_first_reconcile_issues_a_scoped_token_and_schedules_the_cron_job() {
    let policy = policy();
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_once(&policy, existing(&policy), &vault).await;
    assert_eq!(result.unwrap(), Action::requeue(REFRESH));

    // The token: leftovers looked for and the new one created with the root token; the
    // runs read with the new token itself.
    assert_eq!(
        vault.calls(),
        vec![Call::ListTokens { node: CLIENT_SERVICE.into() }, create_token_call(), latest_run_call()]
    );
    assert_eq!(vault.tokens_used(), vec![ROOT_TOKEN, ROOT_TOKEN, "scoped-secret-1"]);
    // Over HTTPS, trusting only the vault's API CA.
    assert_eq!(vault.trusted(), vec![Some(VAULT_CA.as_bytes().to_vec())]);

    // Children, all server-side applied with the operator's field manager, in this order.
    assert_eq!(writes(&requests), vec![TOKEN_SECRET_PATH, CONFIG_MAP_PATH, CRON_JOB_PATH, STATUS_PATH]);
    for path in [TOKEN_SECRET_PATH, CONFIG_MAP_PATH, CRON_JOB_PATH] {
        let apply = request(&requests, Method::PATCH, path);
        assert!(apply.query.contains("fieldManager=strongroom-operator"), "{}", apply.query);
        assert!(apply.query.contains("force=true"), "{}", apply.query);
    }
    let secret: Secret =
        serde_json::from_value(request(&requests, Method::PATCH, TOKEN_SECRET_PATH).body.clone()).expect("a Secret");
    assert_eq!(secret.data.as_ref().unwrap()[TOKEN_KEY].0, b"scoped-secret-1");
    let annotations = secret.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[TOKEN_ID_ANNOTATION], "tok-new-1");
    assert_eq!(annotations[VAULT_UID_ANNOTATION], VAULT_UID);
    assert_eq!(secret.metadata.owner_references.as_ref().unwrap()[0].kind, "RetentionPolicy");

    let job = &request(&requests, Method::PATCH, CRON_JOB_PATH).body;
    assert_eq!(job["spec"]["schedule"], "0 3 * * *");
    assert_eq!(job["spec"]["suspend"], false);
    assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(job["spec"]["jobTemplate"]["spec"]["backoffLimit"], 2);
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "registry.example/strongroom/vaultd:0.1.0");
    assert_eq!(pod["containers"][0]["command"], serde_json::json!(["vaultd"]));
    assert_eq!(
        pod["containers"][0]["args"],
        serde_json::json!([
            "minimize",
            "--vault",
            CLIENT_SERVICE,
            "--token-file",
            "/var/run/strongroom/retention/token",
            "--policy",
            "/etc/strongroom/retention/policy.yaml",
            "--ca-file",
            "/etc/strongroom/vault-ca/ca.crt"
        ])
    );
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["secret"]["secretName"] == "retention-drop-phone-token"), "{volumes:?}");
    assert!(volumes.iter().any(|v| v["configMap"]["name"] == "retention-drop-phone-policy"), "{volumes:?}");
    let policy_file = request(&requests, Method::PATCH, CONFIG_MAP_PATH).body["data"]["policy.yaml"].as_str().unwrap();
    let document: strongroom_admin_api::retention::PolicyDocument = serde_saphyr::from_str(policy_file).unwrap();
    assert_eq!(document.spec, policy.spec.to_policy_spec());

    // The status: ready, the token's id (never its secret), the next run.
    let status = written_status(&requests);
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(condition(&status, "Ready").reason, "Scheduled");
    assert_eq!(condition(&status, "Degraded").status, "False");
    assert_eq!(status.token.as_ref().unwrap().id, "tok-new-1");
    assert_eq!(status.cron_job.as_deref(), Some("retention-drop-phone"));
    let next = status.next_run.expect("a next run").0;
    assert_eq!((next.as_second() % 86_400), 3 * 3600, "03:00 UTC");
    assert_eq!(status.last_run, None, "the vault has recorded no run yet");
    assert_eq!(event_reasons(&requests), vec!["TokenIssued"]);

    // The secret appears nowhere but in the Secret (base64).
    for request in requests.iter() {
        assert!(!request.body.to_string().contains("scoped-secret"), "{} {}", request.path, request.body);
        assert!(!request.body.to_string().contains(ROOT_TOKEN), "{} {}", request.path, request.body);
    }
}

#[tokio::test]
async fn a_stored_token_is_kept_and_the_status_shows_the_latest_run_report() {
    let policy = policy();
    let vault = ScriptedVault::default();
    vault.holding("tok-7", TOKEN_NAME, "stored-secret").ran(run_report(1, 1)).ran(run_report(12, 5));
    let (result, requests) =
        reconcile_once(&policy, with_stored_token(&policy, "tok-7", "stored-secret"), &vault).await;
    assert_eq!(result.unwrap(), Action::requeue(REFRESH));
    assert_eq!(vault.calls(), vec![latest_run_call()], "no new token");
    assert_eq!(vault.tokens_used(), vec!["stored-secret"], "the runs are read with the policy's own token");
    assert!(!writes(&requests).contains(&TOKEN_SECRET_PATH));

    let status = written_status(&requests);
    let run = status.last_run.as_ref().expect("the last run");
    assert_eq!((run.matched, run.changed, run.dry_run), (12, 5, false));
    assert_eq!(run.audit_event_id, "evt-42");
    assert_eq!(run.time, Time("2026-11-23T03:00:05Z".parse().unwrap()));
    assert_eq!(status.token.as_ref().unwrap().id, "tok-7");
    assert_eq!(condition(&status, "Ready").status, "True");
}

#[tokio::test]
async fn suspend_reaches_the_cron_job_and_the_status() {
    let mut policy = policy();
    policy.spec.suspend = true;
    let vault = ScriptedVault::default();
    vault.holding("tok-7", TOKEN_NAME, "stored-secret");
    let (result, requests) =
        reconcile_once(&policy, with_stored_token(&policy, "tok-7", "stored-secret"), &vault).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(request(&requests, Method::PATCH, CRON_JOB_PATH).body["spec"]["suspend"], true);
    let status = written_status(&requests);
    assert_eq!(condition(&status, "Ready").reason, "Suspended");
    assert_eq!(status.next_run, None);
}

#[tokio::test]
async fn dry_run_travels_in_the_policy_file() {
    let mut policy = policy();
    policy.spec.dry_run = true;
    let vault = ScriptedVault::default();
    vault.holding("tok-7", TOKEN_NAME, "stored-secret");
    let (_, requests) = reconcile_once(&policy, with_stored_token(&policy, "tok-7", "stored-secret"), &vault).await;
    let file = request(&requests, Method::PATCH, CONFIG_MAP_PATH).body["data"]["policy.yaml"].as_str().unwrap();
    let document: strongroom_admin_api::retention::PolicyDocument = serde_saphyr::from_str(file).unwrap();
    assert!(document.spec.dry_run);
}

#[tokio::test]
async fn a_missing_vault_is_explained_and_looked_at_again() {
    let policy = policy();
    let mut objects = existing(&policy);
    objects.remove(VAULT_PATH);
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_once(&policy, objects, &vault).await;
    assert_eq!(result.unwrap(), Action::requeue(WAIT_FOR_VAULT));
    assert_eq!(vault.calls(), vec![], "no vault to call");
    assert_eq!(writes(&requests), vec![STATUS_PATH], "nothing but the status is written");
    let status = written_status(&requests);
    let ready = condition(&status, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "VaultNotFound"));
    assert_eq!(
        ready.message,
        "PiiVault customers does not exist in namespace shop; the policy is scheduled once it exists"
    );
    assert_eq!(ready.observed_generation, Some(1));
    assert_eq!(condition(&status, "Degraded").reason, "VaultNotFound");
    assert_eq!(status.next_run, None);
    assert_eq!(event_reasons(&requests), vec!["VaultNotFound"]);
}

#[tokio::test]
async fn a_new_vault_without_its_root_token_yet_is_waited_for_not_reported_lost() {
    // Applied together (or the vault paused): the policy may reconcile before the vault has
    // generated its Secrets. Seen against a real API server (tests/), where the policy said
    // the root token Secret was lost and had to be restored from a backup.
    let policy = policy();
    let mut objects = existing(&policy);
    objects.remove(ROOT_SECRET_PATH);
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_once(&policy, objects, &vault).await;
    assert_eq!(result.unwrap(), Action::requeue(WAIT_FOR_VAULT));
    assert_eq!(vault.calls(), vec![], "no token to call the vault with");
    assert_eq!(writes(&requests), vec![STATUS_PATH], "nothing but the status is written");
    let status = written_status(&requests);
    let ready = condition(&status, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "VaultNotReady"));
    assert_eq!(
        ready.message,
        "PiiVault customers has not generated its root token (Secret customers-root-token) yet; the policy is \
         scheduled once it has"
    );
    assert_eq!(status.cron_job, None);

    // Once the vault has had members, a missing root token is lost, and said so.
    let mut objects = existing(&policy);
    objects.remove(ROOT_SECRET_PATH);
    let mut initialised = customers_vault();
    initialised.status = Some(crate::crd::PiiVaultStatus {
        members: vec![crate::crd::piivault::MemberStatus {
            pod: Some("customers-0".into()),
            node_id: 1,
            role: crate::crd::piivault::MemberRole::Voter,
            lag: None,
            healthy: true,
        }],
        ..Default::default()
    });
    objects.insert(VAULT_PATH.to_string(), serde_json::to_value(&initialised).unwrap());
    let (result, requests) = reconcile_once(&policy, objects, &vault).await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(condition(&written_status(&requests), "Ready").reason, "SecretMissing");
}

#[tokio::test]
async fn a_rejected_token_is_replaced_once() {
    let policy = policy();
    let vault = ScriptedVault::default();
    // The Secret names tok-7, but the vault (its data restored from an old backup) does
    // not know it; an older token of the policy's name is still live.
    vault.holding("tok-3", TOKEN_NAME, "older-secret").ran(run_report(2, 2));
    let (result, requests) =
        reconcile_once(&policy, with_stored_token(&policy, "tok-7", "stored-secret"), &vault).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        vault.calls(),
        vec![
            latest_run_call(),
            Call::ListTokens { node: CLIENT_SERVICE.into() },
            Call::Revoke { node: CLIENT_SERVICE.into(), id: "tok-3".into() },
            create_token_call(),
            latest_run_call(),
        ]
    );
    assert_eq!(vault.live_tokens(), vec!["tok-new-1"], "only the stored token is live");
    let status = written_status(&requests);
    assert_eq!(status.token.as_ref().unwrap().id, "tok-new-1");
    assert_eq!(status.last_run.as_ref().unwrap().changed, 2);
}

#[tokio::test]
async fn a_token_secret_the_policy_does_not_control_is_left_alone() {
    let policy = policy();
    let mut objects = existing(&policy);
    let foreign = Secret {
        metadata: kube::api::ObjectMeta { name: Some("retention-drop-phone-token".into()), ..Default::default() },
        ..Secret::default()
    };
    objects.insert(TOKEN_SECRET_PATH.to_string(), serde_json::to_value(foreign).unwrap());
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_once(&policy, objects, &vault).await;
    let error = result.expect_err("retried with backoff");
    assert_eq!(error.condition_reason(), "SecretConflict");
    assert_eq!(vault.calls(), vec![]);
    assert_eq!(writes(&requests), vec![STATUS_PATH]);
    let status = written_status(&requests);
    assert_eq!(condition(&status, "Degraded").reason, "SecretConflict");
    assert!(condition(&status, "Degraded").message.contains("retention-drop-phone-token"));
    assert_eq!(event_reasons(&requests), vec!["SecretConflict"]);
}

#[tokio::test]
async fn a_failed_scheduled_run_degrades_the_policy() {
    let policy = policy();
    let mut objects = with_stored_token(&policy, "tok-7", "stored-secret");
    let vault_obj = customers_vault();
    let mut job = builders::cron_job(&policy, &vault_obj).unwrap();
    job.status = Some(CronJobStatus {
        active: None,
        last_schedule_time: Some(Time("2026-11-23T03:00:00Z".parse().unwrap())),
        last_successful_time: Some(Time("2026-11-22T03:00:09Z".parse().unwrap())),
    });
    objects.insert(CRON_JOB_PATH.to_string(), serde_json::to_value(job).unwrap());
    let vault = ScriptedVault::default();
    vault.holding("tok-7", TOKEN_NAME, "stored-secret");
    let (result, requests) = reconcile_once(&policy, objects, &vault).await;
    assert!(result.is_ok(), "{result:?}");
    let status = written_status(&requests);
    let degraded = condition(&status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "LastRunFailed"));
    assert!(degraded.message.contains("2026-11-23T03:00:00Z"), "{}", degraded.message);
    assert_eq!(condition(&status, "Ready").status, "False");
}

#[tokio::test]
async fn an_unreachable_vault_keeps_the_last_run_and_says_why() {
    let mut policy = policy();
    policy.status = Some(RetentionPolicyStatus {
        last_run: Some(status::last_run(&run_report(4, 3))),
        ..RetentionPolicyStatus::default()
    });
    let vault = ScriptedVault::default();
    vault.holding("tok-7", TOKEN_NAME, "stored-secret").unreachable();
    let (result, requests) =
        reconcile_once(&policy, with_stored_token(&policy, "tok-7", "stored-secret"), &vault).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(writes(&requests).contains(&CRON_JOB_PATH), "the schedule does not depend on the vault answering");
    let status = written_status(&requests);
    assert_eq!(status.last_run.as_ref().unwrap().changed, 3);
    assert_eq!(condition(&status, "Degraded").reason, "RunsUnavailable");
    assert!(condition(&status, "Degraded").message.contains("connection refused"));
}

#[tokio::test]
async fn without_the_lease_nothing_is_written_or_issued() {
    let policy = policy();
    let lost = LeaderGate::until(tokio::time::Instant::now());
    lost.revoke();
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_gated(&policy, existing(&policy), &vault, lost).await;
    assert!(matches!(result, Err(Error::NotLeader)), "{result:?}");
    assert!(requests.is_empty());
    assert_eq!(vault.calls(), vec![]);
}

/// The policy being deleted at `deleted`, with the token its status names.
fn deleted_policy(deleted: Timestamp) -> RetentionPolicy {
    let mut policy = policy();
    policy.metadata.deletion_timestamp = Some(Time(deleted));
    policy.status = Some(RetentionPolicyStatus {
        token: Some(IssuedToken {
            id: "tok-7".into(),
            secret_name: "retention-drop-phone-token".into(),
            vault_uid: VAULT_UID.into(),
        }),
        ..RetentionPolicyStatus::default()
    });
    policy
}

fn finalizer_released(requests: &[ApiRequest]) -> bool {
    requests.iter().any(|r| r.is(Method::PATCH, POLICY_PATH) && r.body[1]["op"] == "remove")
}

#[tokio::test]
async fn deletion_revokes_the_token_and_releases_the_finalizer() {
    let policy = deleted_policy(Timestamp::now());
    let vault = ScriptedVault::default();
    vault.holding("tok-7", TOKEN_NAME, "stored-secret").holding("tok-9", "someone-else", "other");
    let (result, requests) = reconcile_once(&policy, existing(&policy), &vault).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(vault.calls(), vec![Call::Revoke { node: CLIENT_SERVICE.into(), id: "tok-7".into() }]);
    assert_eq!(vault.tokens_used(), vec![ROOT_TOKEN]);
    assert_eq!(vault.live_tokens(), vec!["tok-9"]);
    assert!(finalizer_released(&requests), "{:?}", writes(&requests));
    assert_eq!(event_reasons(&requests), vec!["TokenRevoked"]);
    // Owner references delete the children: the operator deletes nothing itself.
    assert!(requests.iter().all(|r| r.method != Method::DELETE));
}

#[tokio::test]
async fn deletion_waits_for_an_unreachable_vault_then_gives_up() {
    let vault = ScriptedVault::default();
    vault.holding("tok-7", TOKEN_NAME, "stored-secret").unreachable();
    let just_now = deleted_policy(Timestamp::now());
    let (result, requests) = reconcile_once(&just_now, existing(&just_now), &vault).await;
    assert!(result.is_err(), "retried with backoff");
    assert!(!finalizer_released(&requests));

    let long_ago = deleted_policy(Timestamp::now() - SignedDuration::from_mins(16));
    let (result, requests) = reconcile_once(&long_ago, existing(&long_ago), &vault).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(finalizer_released(&requests));
    let warning = events(&requests).into_iter().find(|e| e["reason"] == "TokenNotRevoked").expect("a Warning");
    assert_eq!(warning["type"], "Warning");
    assert!(warning["note"].as_str().unwrap().contains("tok-7"));
}

#[tokio::test]
async fn deletion_after_the_vault_is_gone_revokes_nothing() {
    let policy = deleted_policy(Timestamp::now());
    let mut objects = existing(&policy);
    objects.remove(VAULT_PATH);
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_once(&policy, objects, &vault).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(vault.calls(), vec![]);
    assert!(finalizer_released(&requests));
    assert_eq!(event_reasons(&requests), vec!["TokenGoneWithVault"]);
}

#[test]
fn the_revocation_grace_counts_from_the_deletion() {
    let now: Timestamp = "2026-11-23T05:00:00Z".parse().unwrap();
    assert!(!grace_expired(&deleted_policy(now - SignedDuration::from_mins(14)), now));
    assert!(grace_expired(&deleted_policy(now - SignedDuration::from_mins(16)), now));
    assert!(!grace_expired(&policy(), now));
}

#[test]
fn a_job_that_is_running_or_succeeded_is_no_failure() {
    let policy = policy();
    let mut job = builders::cron_job(&policy, &customers_vault()).unwrap();
    assert_eq!(last_job_failed(&job), None, "never scheduled");
    let at = |text: &str| Some(Time(text.parse().unwrap()));
    job.status = Some(CronJobStatus {
        active: None,
        last_schedule_time: at("2026-11-23T03:00:00Z"),
        last_successful_time: at("2026-11-23T03:00:07Z"),
    });
    assert_eq!(last_job_failed(&job), None);
    job.status = Some(CronJobStatus {
        active: Some(vec![Default::default()]),
        last_schedule_time: at("2026-11-23T03:00:00Z"),
        last_successful_time: None,
    });
    assert_eq!(last_job_failed(&job), None, "still running");
}

#[test]
fn only_a_complete_token_of_this_vault_in_a_secret_of_this_policy_is_held() {
    let policy = policy();
    let token = NewToken { id: "tok-7".into(), secret: RootToken::new("stored-secret") };
    let stored = builders::token_secret(&policy, &token, VAULT_UID).unwrap();
    assert_eq!(held_token(&policy, Some(&stored), VAULT_UID).unwrap(), Some(token));
    assert_eq!(held_token(&policy, None, VAULT_UID).unwrap(), None);
    assert_eq!(held_token(&policy, Some(&stored), "uid-of-a-recreated-vault").unwrap(), None, "issued by another");

    let mut without_data = stored.clone();
    without_data.data = None;
    assert_eq!(held_token(&policy, Some(&without_data), VAULT_UID).unwrap(), None);
    let mut without_id = stored.clone();
    without_id.metadata.annotations.as_mut().unwrap().remove(TOKEN_ID_ANNOTATION);
    assert_eq!(held_token(&policy, Some(&without_id), VAULT_UID).unwrap(), None);

    let mut foreign = stored;
    foreign.metadata.owner_references = None;
    let error = held_token(&policy, Some(&foreign), VAULT_UID).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Secret retention-drop-phone-token exists but is not controlled by this RetentionPolicy; the operator does \
         not take it over (remove it, or give the RetentionPolicy another name)"
    );
}

#[tokio::test]
async fn failures_back_off_per_policy_and_count_in_the_metrics() {
    let policy = policy();
    let (ctx, server) = test_context(HashMap::new(), ScriptedVault::default(), LeaderGate::always());
    let error = Error::InvalidSchedule("bad".into());
    let first = error_policy(Arc::new(policy.clone()), &error, ctx.clone());
    let second = error_policy(Arc::new(policy), &error, ctx.clone());
    assert_eq!((first, second), (Action::requeue(Duration::from_secs(5)), Action::requeue(Duration::from_secs(10))));
    let text = ctx.metrics.encode().unwrap();
    assert!(text.contains(
        r#"strongroom_operator_reconcile_failures_total{controller="retentionpolicy",error="invalid_schedule"} 2"#
    ));
    drop(ctx);
    server.await.unwrap();
}

#[tokio::test]
async fn a_schedule_that_does_not_parse_is_reported_before_anything_is_issued() {
    let mut policy = policy();
    policy.spec.schedule = "61 * * * *".into();
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_once(&policy, existing(&policy), &vault).await;
    assert_eq!(result.expect_err("retried with backoff").condition_reason(), "InvalidSchedule");
    assert_eq!(vault.calls(), vec![]);
    assert_eq!(writes(&requests), vec![STATUS_PATH]);
    let degraded = written_status(&requests);
    let degraded = condition(&degraded, "Degraded");
    assert_eq!(degraded.reason, "InvalidSchedule");
    assert!(degraded.message.contains("\"61 * * * *\" is not a valid cron schedule"), "{}", degraded.message);
}

#[tokio::test]
async fn tokens_are_issued_with_the_operators_scoped_token_once_the_vault_has_one() {
    let policy = policy();
    let mut objects = existing(&policy);
    let data = crate::piivault::secret_material::operator_token_data("tok-operator", &RootToken::new(OPERATOR_TOKEN));
    let secret = generated_secret(&customers_vault(), "customers-operator-token".into(), data).unwrap();
    objects.insert(
        "/api/v1/namespaces/shop/secrets/customers-operator-token".into(),
        serde_json::to_value(secret).unwrap(),
    );
    let vault = ScriptedVault::default();
    let (result, _) = reconcile_once(&policy, objects, &vault).await;
    assert_eq!(result.unwrap(), Action::requeue(REFRESH));
    assert_eq!(vault.tokens_used(), vec![OPERATOR_TOKEN, OPERATOR_TOKEN, "scoped-secret-1"], "never the root token");
}

#[tokio::test]
async fn a_vault_whose_image_the_policy_refuses_gets_no_cron_job_and_no_token() {
    let policy = policy();
    let mut objects = existing(&policy);
    let mut vault_obj = customers_vault();
    vault_obj.spec.image = "evil.example/miner:latest".into();
    objects.insert(VAULT_PATH.to_string(), serde_json::to_value(&vault_obj).unwrap());
    let vault = ScriptedVault::default();
    let (result, requests) = reconcile_once(&policy, objects, &vault).await;
    assert!(format!("{result:?}").contains("NotAllowed"), "{result:?}");
    assert!(vault.calls().is_empty(), "{:?}", vault.calls());
    let written = writes(&requests);
    assert!(!written.iter().any(|path| *path == CRON_JOB_PATH || *path == TOKEN_SECRET_PATH), "{written:?}");
    let degraded = condition(&written_status(&requests), "Degraded").clone();
    assert_eq!(degraded.status, "True");
    assert!(degraded.message.contains("policy.allowedImages"), "{}", degraded.message);
}

#[tokio::test]
async fn the_next_due_run_follows_the_last_run_and_a_suspended_policy_has_none() {
    let policy = policy();
    let vault = ScriptedVault::default();
    vault.ran(run_report(3, 2));
    let (ctx, server) = test_context(existing(&policy), vault.clone(), LeaderGate::always());
    reconcile(Arc::new(policy.clone()), ctx.clone()).await.unwrap();
    // The run started 2026-11-23T03:00:00Z; "0 3 * * *" is next due a day later.
    let series = r#"strongroom_operator_retention_run_due_timestamp_seconds{vault_namespace="shop",vault="customers",policy="shop/drop-phone"}"#;
    let text = ctx.metrics.encode().unwrap();
    assert!(text.contains(&format!("{series} 1795489200.0")), "{text}");

    let mut suspended = policy;
    suspended.spec.suspend = true;
    reconcile(Arc::new(suspended), ctx.clone()).await.unwrap();
    let text = ctx.metrics.encode().unwrap();
    assert!(!text.contains(series), "{text}");
    drop(ctx);
    server.await.unwrap();
}
