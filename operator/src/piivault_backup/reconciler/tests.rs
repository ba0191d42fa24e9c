//! The reconciler against a fake API server (kube-rs's mock service): every way a backup
//! goes, from the objects the API server holds.

use std::collections::{BTreeMap, HashMap};

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use serde_json::{json, Value};

use super::*;
use crate::fake_api_server::{event_reasons, events, fake_api_server, writes, ApiRequest, FakeApiOptions};
use crate::piivault::builders::generated_secret;
use crate::piivault::test_harness::test_policy;
use crate::piivault_backup::test_support::{nightly, pod, take_report, vault_with_backup, JOB_UID};

const BACKUP_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaultbackups/nightly";
const STATUS_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaultbackups/nightly/status";
const VAULT_PATH: &str = "/apis/strongroom.dev/v1alpha1/namespaces/pii/piivaults/vault";
const TOKEN_PATH: &str = "/api/v1/namespaces/pii/secrets/vault-backup-token";
const CREDENTIALS_PATH: &str = "/api/v1/namespaces/pii/secrets/backup-s3";
const JOB_PATH: &str = "/apis/batch/v1/namespaces/pii/jobs/nightly-backup";
const PODS_PATH: &str = "/api/v1/namespaces/pii/pods";

/// The API server's objects when a backup can start: the backup, its vault (with
/// `spec.backup`) and the vault's backup token.
fn ready(backup: &PiiVaultBackup) -> HashMap<String, Value> {
    let vault = vault_with_backup();
    let data = BTreeMap::from([("token".to_string(), ByteString(b"backup-token-secret".to_vec()))]);
    let token = generated_secret(&vault, "vault-backup-token".into(), data).unwrap();
    let credentials = generated_secret(&vault, "backup-s3".into(), BTreeMap::new()).unwrap();
    HashMap::from([
        (BACKUP_PATH.to_string(), serde_json::to_value(backup).unwrap()),
        (VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap()),
        (TOKEN_PATH.to_string(), serde_json::to_value(&token).unwrap()),
        (CREDENTIALS_PATH.to_string(), serde_json::to_value(&credentials).unwrap()),
    ])
}

/// [`ready`] plus the backup's Job with `status` (and the Job's pods, when given).
fn with_job(backup: &PiiVaultBackup, status: Value, pods: Option<Vec<Pod>>) -> HashMap<String, Value> {
    let mut objects = ready(backup);
    let vault = vault_with_backup();
    let mut job =
        serde_json::to_value(backup_job(backup, &vault, vault.spec.backup.as_ref().unwrap()).unwrap()).unwrap();
    job["status"] = status;
    job["metadata"]["uid"] = json!(JOB_UID);
    objects.insert(JOB_PATH.to_string(), job);
    if let Some(pods) = pods {
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods});
        objects.insert(PODS_PATH.to_string(), list);
    }
    objects
}

/// The backup as the reconciler left it after creating its Job.
fn running() -> PiiVaultBackup {
    let mut backup = nightly();
    backup.status = Some(PiiVaultBackupStatus {
        phase: Some(BackupPhase::Running),
        job: Some("nightly-backup".into()),
        ..PiiVaultBackupStatus::default()
    });
    backup
}

const STARTED: &str = "2026-11-23T02:00:00Z";

fn complete_job() -> Value {
    json!({
        "startTime": STARTED,
        "completionTime": "2026-11-23T02:03:00Z",
        "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"},
        ],
    })
}

/// Runs one reconcile and returns its result with every API request it made.
async fn reconcile_once(
    backup: &PiiVaultBackup,
    objects: HashMap<String, Value>,
    options: FakeApiOptions,
    gate: LeaderGate,
) -> (Result<Action, Error>, Vec<ApiRequest>) {
    let (client, server) = fake_api_server(objects, options);
    let reporter = Reporter { controller: "strongroom-operator".into(), instance: Some("test".into()) };
    let ctx = Context::new(client, Arc::new(Metrics::default()), reporter, test_policy(), gate);
    let result = reconcile(Arc::new(backup.clone()), Arc::new(ctx)).await;
    // The context (and with it the client) is gone: the fake server stops and reports.
    (result, server.await.expect("fake API server"))
}

async fn reconcile_with(
    backup: &PiiVaultBackup,
    objects: HashMap<String, Value>,
) -> (Result<Action, Error>, Vec<ApiRequest>) {
    reconcile_once(backup, objects, FakeApiOptions::default(), LeaderGate::always()).await
}

fn request<'a>(requests: &'a [ApiRequest], method: Method, path: &str) -> &'a ApiRequest {
    requests.iter().find(|r| r.is(method.clone(), path)).unwrap_or_else(|| panic!("no {method} {path}"))
}

fn written_status(requests: &[ApiRequest]) -> PiiVaultBackupStatus {
    serde_json::from_value(request(requests, Method::PATCH, STATUS_PATH).body["status"].clone()).expect("a status")
}

/// `(type, reason, kind of the object it is about)` of every Event.
fn recorded(requests: &[ApiRequest]) -> Vec<(String, String, String)> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    events(requests).iter().map(|e| (text(&e["type"]), text(&e["reason"]), text(&e["regarding"]["kind"]))).collect()
}

/// Asserts a single write, the status `Failed` with `message`, and a Warning Event.
fn assert_failed(result: Result<Action, Error>, requests: &[ApiRequest], message: &str) {
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(writes(requests), vec![STATUS_PATH], "nothing but the status is written");
    let status = written_status(requests);
    assert_eq!(status.phase, Some(BackupPhase::Failed));
    assert_eq!(status.message.as_deref(), Some(message));
    let failed = ("Warning".to_string(), "BackupFailed".to_string(), "PiiVaultBackup".to_string());
    assert_eq!(recorded(requests), vec![failed]);
}

#[tokio::test]
async fn a_backup_of_a_missing_vault_fails_and_names_it() {
    let backup = nightly();
    let mut objects = ready(&backup);
    objects.remove(VAULT_PATH);
    let (result, requests) = reconcile_with(&backup, objects).await;
    assert_failed(result, &requests, "PiiVault vault does not exist in namespace pii");
}

#[tokio::test]
async fn a_backup_of_a_vault_without_spec_backup_fails() {
    let backup = nightly();
    let mut objects = ready(&backup);
    let mut vault = vault_with_backup();
    vault.spec.backup = None;
    objects.insert(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap());
    let (result, requests) = reconcile_with(&backup, objects).await;
    assert_failed(result, &requests, "PiiVault vault has no spec.backup: nowhere to store a backup");
}

#[tokio::test]
async fn a_vault_whose_image_the_policy_refuses_gets_no_job() {
    let backup = nightly();
    let mut objects = ready(&backup);
    let mut vault = vault_with_backup();
    vault.spec.image = "evil.example/miner:latest".into();
    objects.insert(VAULT_PATH.to_string(), serde_json::to_value(&vault).unwrap());
    let (result, requests) = reconcile_with(&backup, objects).await;
    assert_failed(
        result,
        &requests,
        "PiiVault vault: image \"evil.example/miner:latest\" is not allowed by the operator's policy \
         (policy.allowedImages)",
    );
}

#[tokio::test]
async fn without_the_backup_token_yet_the_backup_waits_and_creates_no_job() {
    let backup = nightly();
    let mut objects = ready(&backup);
    objects.remove(TOKEN_PATH);
    let (result, requests) = reconcile_with(&backup, objects).await;
    assert_eq!(result.unwrap(), Action::requeue(WAIT_FOR_TOKEN));
    assert_eq!(writes(&requests), vec![STATUS_PATH]);
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Pending));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "waiting for the backup token of PiiVault vault (Secret vault-backup-token), which the operator issues \
             once the vault is ready"
        )
    );
    assert_eq!(event_reasons(&requests), Vec::<String>::new());

    // Looked at again while still waiting: the same status is not written again.
    let mut waiting = backup.clone();
    waiting.status = Some(status);
    let mut objects = ready(&waiting);
    objects.remove(TOKEN_PATH);
    let (result, requests) = reconcile_with(&waiting, objects).await;
    assert_eq!(result.unwrap(), Action::requeue(WAIT_FOR_TOKEN));
    assert_eq!(writes(&requests), Vec::<&str>::new());
}

#[tokio::test]
async fn the_first_reconcile_creates_the_job_and_reports_it_running() {
    let backup = nightly();
    let (result, requests) = reconcile_with(&backup, ready(&backup)).await;
    assert_eq!(result.unwrap(), Action::requeue(RECHECK));
    assert_eq!(writes(&requests), vec![JOB_PATH, STATUS_PATH]);
    let apply = request(&requests, Method::PATCH, JOB_PATH);
    assert!(apply.query.contains("fieldManager=strongroom-operator"), "{}", apply.query);
    let job: Job = serde_json::from_value(apply.body.clone()).expect("a Job");
    assert_eq!(job.metadata.owner_references.as_ref().unwrap()[0].kind, "PiiVaultBackup");
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let args = container.args.clone().unwrap();
    assert!(args.ends_with(&["--summary-file".into(), "/dev/termination-log".into()]), "{args:?}");

    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Running));
    assert_eq!(status.job.as_deref(), Some("nightly-backup"));
    assert_eq!(status.started_at, None, "the Job has not started yet");
    let started = ("Normal".to_string(), "BackupStarted".to_string(), "PiiVaultBackup".to_string());
    assert_eq!(recorded(&requests), vec![started]);
    // The token is read for its existence only: it appears in no request.
    assert!(requests.iter().all(|r| !r.body.to_string().contains("backup-token-secret")));
}

#[tokio::test]
async fn a_running_job_gives_the_start_time_once() {
    let backup = running();
    let (result, requests) =
        reconcile_with(&backup, with_job(&backup, json!({"startTime": STARTED, "active": 1}), None)).await;
    assert_eq!(result.unwrap(), Action::requeue(RECHECK));
    assert_eq!(writes(&requests), vec![STATUS_PATH], "the Job is not applied again");
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Running));
    assert_eq!(status.started_at, Some(Time(STARTED.parse().unwrap())));
    assert_eq!(event_reasons(&requests), Vec::<String>::new());

    let mut seen = backup.clone();
    seen.status = Some(status);
    let (_, requests) = reconcile_with(&seen, with_job(&seen, json!({"startTime": STARTED, "active": 1}), None)).await;
    assert_eq!(writes(&requests), Vec::<&str>::new(), "nothing changed, nothing written");
}

#[tokio::test]
async fn a_succeeded_job_completes_the_backup_with_the_report_its_pod_left() {
    let backup = running();
    let report = serde_json::to_string(&take_report()).unwrap();
    let pods = vec![
        pod("nightly-backup-x1", "Failed", Some("the vault refused (409)")),
        pod("nightly-backup-x2", "Succeeded", Some(&report)),
    ];
    let (result, requests) = reconcile_with(&backup, with_job(&backup, complete_job(), Some(pods))).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let list = request(&requests, Method::GET, PODS_PATH);
    assert_eq!(list.query, "&labelSelector=batch.kubernetes.io%2Fjob-name%3Dnightly-backup");

    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Completed));
    assert_eq!(status.backup_id.as_deref(), Some("20261123T020001.123Z-42"));
    assert_eq!(status.destination.as_deref(), Some("s3://backups/pii/vault"));
    assert_eq!((status.subjects, status.bytes), (Some(1200), Some(5_000_000)));
    assert_eq!(status.started_at, Some(Time(STARTED.parse().unwrap())));
    assert_eq!(status.completed_at, Some(Time("2026-11-23T02:03:00Z".parse().unwrap())));
    assert_eq!(status.message, None);
    let completed = |kind: &str| ("Normal".to_string(), "BackupCompleted".to_string(), kind.to_string());
    assert_eq!(recorded(&requests), vec![completed("PiiVaultBackup"), completed("PiiVault")]);
    let note = events(&requests)[0]["note"].as_str().unwrap().to_string();
    assert_eq!(
        note,
        "stored backup 20261123T020001.123Z-42 of PiiVault vault in s3://backups/pii/vault (1200 subjects, 5000000 \
         bytes)"
    );
}

#[tokio::test]
async fn a_succeeded_job_without_a_readable_summary_still_completes() {
    let backup = running();
    let pods = vec![pod("nightly-backup-x1", "Succeeded", Some("not JSON"))];
    let (result, requests) = reconcile_with(&backup, with_job(&backup, complete_job(), Some(pods))).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Completed));
    assert_eq!((status.backup_id, status.subjects), (None, None));
    let message = status.message.unwrap();
    assert!(message.starts_with("the Job nightly-backup succeeded, but its summary could not be read"), "{message}");
    assert_eq!(event_reasons(&requests), vec!["BackupCompleted", "BackupCompleted"]);
}

#[tokio::test]
async fn a_failed_job_fails_the_backup_with_its_condition_and_the_pods_last_words() {
    let backup = running();
    let failed = json!({
        "startTime": STARTED,
        "failed": 3,
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}],
    });
    let pods =
        vec![pod("nightly-backup-x3", "Failed", Some("vaultd: the vault refused (403): missing scope backup:read\n"))];
    let (result, requests) = reconcile_with(&backup, with_job(&backup, failed, Some(pods))).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(writes(&requests), vec![STATUS_PATH]);
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Failed));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "the Job nightly-backup failed (BackoffLimitExceeded: Job has reached the specified backoff limit); its \
             last pod said: vaultd: the vault refused (403): missing scope backup:read"
        )
    );
    assert_eq!((status.job.as_deref(), status.backup_id), (Some("nightly-backup"), None));
    let failed = ("Warning".to_string(), "BackupFailed".to_string(), "PiiVaultBackup".to_string());
    assert_eq!(recorded(&requests), vec![failed]);
}

#[tokio::test]
async fn a_completed_or_failed_backup_is_left_alone() {
    for phase in [BackupPhase::Completed, BackupPhase::Failed] {
        let mut backup = nightly();
        backup.status = Some(PiiVaultBackupStatus { phase: Some(phase), ..PiiVaultBackupStatus::default() });
        // Whatever the Job and the vault look like now.
        let mut objects = with_job(&backup, json!({"active": 1}), None);
        objects.remove(VAULT_PATH);
        let (result, requests) = reconcile_with(&backup, objects).await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert!(requests.is_empty(), "{phase:?}: {requests:?}");
    }
}

#[tokio::test]
async fn a_job_deleted_before_it_ended_fails_the_backup_instead_of_taking_another() {
    let (result, requests) = reconcile_with(&running(), ready(&running())).await;
    assert_failed(result, &requests, "the Job nightly-backup was deleted before it finished; no backup is taken twice");
    assert_eq!(written_status(&requests).job.as_deref(), Some("nightly-backup"));
}

#[tokio::test]
async fn a_job_of_that_name_the_backup_does_not_control_is_not_followed() {
    let backup = nightly();
    let mut objects = with_job(&backup, complete_job(), Some(vec![]));
    let owner = &mut objects.get_mut(JOB_PATH).unwrap()["metadata"]["ownerReferences"][0];
    (owner["uid"], owner["kind"], owner["name"]) = (json!("someone-else"), json!("CronJob"), json!("hourly"));
    let (result, requests) = reconcile_with(&backup, objects).await;
    assert_failed(
        result,
        &requests,
        "a Job nightly-backup exists that this PiiVaultBackup does not control; it is left alone",
    );
    assert!(!requests.iter().any(|r| r.path == PODS_PATH), "its pods are not read");
}

#[tokio::test]
async fn a_refused_job_is_retried_with_a_warning_and_no_status() {
    let backup = nightly();
    let options = FakeApiOptions { refuse_patch: vec![JOB_PATH.to_string()], ..FakeApiOptions::default() };
    let (result, requests) = reconcile_once(&backup, ready(&backup), options, LeaderGate::always()).await;
    assert_eq!(result.expect_err("retried with backoff").condition_reason(), "ApplyFailed");
    assert_eq!(writes(&requests), vec![JOB_PATH]);
    assert_eq!(event_reasons(&requests), vec!["ApplyFailed"]);
}

#[tokio::test]
async fn leadership_lost_before_the_job_is_created_creates_nothing() {
    let backup = nightly();
    let gate = LeaderGate::until(tokio::time::Instant::now() + Duration::from_secs(60));
    let options =
        FakeApiOptions { revoke_on: Some((TOKEN_PATH.to_string(), gate.clone())), ..FakeApiOptions::default() };
    let (result, requests) = reconcile_once(&backup, ready(&backup), options, gate).await;
    assert!(matches!(result, Err(Error::NotLeader)), "{result:?}");
    assert_eq!(writes(&requests), Vec::<&str>::new());
    assert!(events(&requests).is_empty());
}

#[tokio::test]
async fn without_the_credentials_secret_the_backup_waits_and_creates_no_job() {
    let backup = nightly();
    let mut objects = ready(&backup);
    objects.remove(CREDENTIALS_PATH);
    let (result, requests) = reconcile_with(&backup, objects).await;
    assert_eq!(result.unwrap(), Action::requeue(WAIT_FOR_TOKEN));
    assert!(!requests.iter().any(|r| r.path == JOB_PATH && r.method != Method::GET), "no Job");
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Pending));
    assert_eq!(
        status.message.as_deref(),
        Some("waiting for the Secret backup-s3 (spec.backup.credentialsSecret of vault)")
    );
}

#[tokio::test]
async fn an_earlier_backups_job_of_the_same_name_is_waited_for_not_taken_for_a_failure() {
    let backup = nightly();
    let mut objects = with_job(&backup, complete_job(), Some(vec![]));
    objects.get_mut(JOB_PATH).unwrap()["metadata"]["ownerReferences"][0]["uid"] = json!("uid-of-an-earlier-nightly");
    let (result, requests) = reconcile_with(&backup, objects).await;
    assert_eq!(result.unwrap(), Action::requeue(WAIT_FOR_TOKEN));
    let status = written_status(&requests);
    assert_eq!(status.phase, Some(BackupPhase::Pending));
    assert!(status.message.unwrap().contains("of an earlier PiiVaultBackup to go"));
}

#[tokio::test]
async fn only_the_jobs_own_pods_speak_for_it_and_a_ledger_failure_is_said() {
    let backup = running();
    let mut report = take_report();
    report.ledger_error = Some("the store answered 503".into());
    let mut forged = pod("nightly-backup-forged", "Succeeded", Some(r#"{"backup":"forged"}"#));
    forged.metadata.owner_references = None;
    let pods = vec![forged, pod("nightly-backup-x1", "Succeeded", Some(&serde_json::to_string(&report).unwrap()))];
    let (result, requests) = reconcile_with(&backup, with_job(&backup, complete_job(), Some(pods))).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let status = written_status(&requests);
    assert_eq!(status.backup_id.as_deref(), Some("20261123T020001.123Z-42"), "not the forged report");
    assert_eq!(
        status.message.as_deref(),
        Some("the backup is stored, but the erasure ledger could not be shipped after it: the store answered 503")
    );
}
