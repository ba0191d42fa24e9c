//! The operator and real vaultd processes together: each stands in for a pod of the vault
//! (reached through an HTTP proxy under its cluster DNS names, since no pod runs here), with
//! the Secrets the operator generated. The operator bootstraps a one-node vault and reports
//! it Ready; a RetentionPolicy gets its token, CronJob and schedule, a run as its Job would
//! make it shows up in its status, and deleting the policy revokes its token. A vault grows
//! from one node to three and back, with a node killed and one wiped on the way. A
//! PiiVaultBackup's Job, run here as its pod would run, stores a backup in an S3 bucket
//! (moto's) and its report reaches the status. A vault made from a backup restores its
//! first node (a Job the test runs as the kubelet would) before its StatefulSet, without
//! the person forgotten after the backup, whose erasure the source's ledger shipper (its
//! Deployment's command) shipped.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use strongroom_operator::crd::piivault_backup::BackupPhase;
use strongroom_operator::crd::{PiiVault, PiiVaultBackup, PiiVaultStatus, RetentionPolicy};
use strongroom_system_tests::operator::Deployed;
use strongroom_system_tests::resources::*;
use strongroom_system_tests::vaultd::{self, JobCommand, NodeSecrets, Proxy, Vaultd};
use strongroom_system_tests::wait::{check, until};
use strongroom_system_tests::{run, Env};
use strongroom_testkit::s3::S3Server;

/// `GET /v1/sys/tokens` of a node, with the root token.
async fn vault_tokens(http: &reqwest::Client, node: &Vaultd, root: &str) -> Value {
    let reply = http.get(format!("http://{}/v1/sys/tokens", node.api)).header("X-Bunker-Token", root).send();
    reply.await.expect("list tokens").json().await.expect("JSON")
}

/// A key of a Secret the operator wrote.
async fn secret_value(client: &Client, namespace: &str, name: &str, key: &str) -> Vec<u8> {
    let secret: Secret = get(client, namespace, name).await;
    secret.data.unwrap_or_default().remove(key).unwrap_or_else(|| panic!("{name} has no {key}")).0
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("text").trim().to_string()
}

/// What the nodes of the vault `vault` share, once the operator has generated it.
async fn node_secrets(client: &Client, namespace: &str) -> NodeSecrets {
    NodeSecrets {
        root_token: text(secret_value(client, namespace, "vault-root-token", "token").await),
        peer_secret: text(secret_value(client, namespace, "vault-peer-auth", "secret").await),
        kek: secret_value(client, namespace, "vault-softhsm", "kek").await,
    }
}

/// Pod `vault-<ordinal>`: a vaultd, and the proxy's routes to its API and peer ports.
fn start_node(env: &Env, proxy: &Proxy, namespace: &str, ordinal: u32, secrets: &NodeSecrets) -> Vaultd {
    let pod_host = format!("vault-{ordinal}.vault-headless.{namespace}.svc");
    let dir = env.work_dir.join(namespace).join(format!("vault-{ordinal}"));
    let node = Vaultd::start(&env.repo, &dir, &pod_host, secrets, &proxy.url());
    proxy.route(&format!("{pod_host}:3000"), node.api);
    proxy.route(&format!("{pod_host}:3001"), node.peer);
    node
}

/// A one-node vault (no peer TLS: the stand-in pods are not given certificates) of the
/// SoftHSM example.
fn one_node_vault(env: &Env) -> PiiVault {
    let mut vault: Value =
        strongroom_system_tests::read_yaml(&env.path("charts/strongroom-operator/examples/piivault-softhsm.yaml"));
    vault["spec"]["replicas"] = json!(1);
    vault["spec"]["tls"] = json!({"enabled": false});
    serde_json::from_value(vault).unwrap()
}

/// The vault once it reports `wanted`, its metadata changed every 2 s: what happens to the
/// vaultd processes makes no Kubernetes event, and a converged vault is otherwise looked at
/// again only after a minute. (The operator waits for a second without changes.)
async fn vault_reported_nudged(vaults: &Api<PiiVault>, wanted: &[(&str, &str)]) -> PiiVault {
    vault_nudged_until(vaults, wanted, |_| true).await
}

/// [`vault_reported_nudged`], its status also passing `also`.
async fn vault_nudged_until(
    vaults: &Api<PiiVault>,
    wanted: &[(&str, &str)],
    also: impl Fn(&PiiVaultStatus) -> bool,
) -> PiiVault {
    let wanted = expected(wanted);
    let also = &also;
    let mut polls = 0u32;
    until(&format!("PiiVault vault to report {wanted:?}"), || {
        polls += 1;
        let nudge = polls % 10 == 1;
        let (vaults, wanted) = (vaults.clone(), wanted.clone());
        async move {
            if nudge {
                let patch = Patch::Merge(json!({"metadata": {"annotations": {"e2e/nudge": polls.to_string()}}}));
                vaults.patch("vault", &PatchParams::default(), &patch).await.map_err(|error| error.to_string())?;
            }
            let vault = vaults.get("vault").await.map_err(|error| error.to_string())?;
            let status = vault.status.clone().ok_or("no status")?;
            let fresh = status.observed_generation == vault.metadata.generation;
            check(fresh && summary(&status.conditions) == wanted && also(&status), || format!("{status:?}"))?;
            Ok(vault)
        }
    })
    .await
}

const READY: [(&str, &str); 4] = [
    ("Ready", "True/ClusterReady"),
    ("Available", "True/QuorumAvailable"),
    ("Progressing", "False/Converged"),
    ("Degraded", "False/AsExpected"),
];

/// A process that a pod would run until deleted: killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The arguments of the ledger shipper's container.
fn shipper_args(shipper: &Deployment) -> Vec<String> {
    let pod = shipper.spec.clone().and_then(|spec| spec.template.spec).expect("a pod template");
    pod.containers[0].args.clone().expect("arguments")
}

/// Runs a Job's container here as the kubelet would: its command (`vaultd`) and arguments
/// with each mounted file (an argument `/…/<key>`) a copy of `files[key]` in `dir`, and
/// `env`. What it printed.
fn run_as_kubelet(
    container: &Container,
    files: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
    env: &[(String, String)],
) -> String {
    assert_eq!(container.command.as_deref(), Some(&["vaultd".to_string()][..]));
    std::fs::create_dir_all(dir).unwrap();
    let mut args = container.args.clone().unwrap_or_default();
    for arg in args.iter_mut().filter(|arg| arg.starts_with('/')) {
        let key = arg.rsplit('/').next().unwrap_or_default().to_string();
        let content = files.get(&key).unwrap_or_else(|| panic!("{arg} is in no volume of the test's"));
        let path = dir.join(&key);
        std::fs::write(&path, content).unwrap();
        *arg = path.to_string_lossy().into_owned();
    }
    run(std::process::Command::new(vaultd::binary()).args(&args).envs(env.iter().cloned()), None)
        .unwrap_or_else(|error| panic!("vaultd {args:?}: {error:#}"))
}

/// Now, to the second (as the API server keeps times).
fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).expect("a time"))
}

/// The operator's environment here: its calls to the vault go through the proxy, and the
/// vaults, whose pods are processes on loopback, speak plain HTTP (which the chart's policy
/// must allow).
fn vaultd_operator_env(proxy: &Proxy) -> [(String, String); 2] {
    [("HTTP_PROXY".into(), proxy.url()), ("STRONGROOM_ALLOW_PLAIN_HTTP".into(), "true".into())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_bootstraps_a_real_vaultd_and_runs_its_retention_policy() {
    let test = "the_operator_bootstraps_a_real_vaultd_and_runs_its_retention_policy";
    let Some(env) = Env::with_vaultd(test) else { return };
    let proxy = Proxy::start();
    let deployed = Deployed::with_env(env, "vaultd", &vaultd_operator_env(&proxy)).await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    vaults.create(&PostParams::default(), &one_node_vault(env)).await.expect("create");

    // Pod vault-0: a vaultd with the Secrets the operator generated for the vault.
    let secrets = node_secrets(client, namespace).await;
    let root = secrets.root_token.clone();
    let node = start_node(env, &proxy, namespace, 0, &secrets);
    proxy.route(&format!("vault.{namespace}.svc:3000"), node.api);

    let vault = vault_reported(&vaults, "vault", &READY).await;
    let status = vault.status.clone().unwrap();
    assert_eq!(serde_json::to_value(status.phase).unwrap(), json!("Running"));
    assert_eq!((status.ready_replicas, status.leader.as_deref()), (1, Some("vault-0")));
    assert_eq!(status.members.len(), 1, "{status:?}");
    assert_eq!(status.members[0].pod.as_deref(), Some("vault-0"));
    assert!(status.members[0].healthy);
    assert_eq!(status.kek_version.as_deref(), Some("strongroom-kek-1"));
    let events = events_about(client, namespace, "vault").await;
    assert!(events.contains(&("Normal".into(), "Bootstrapped".into())), "{events:?}");
    until("the operator's token", || async {
        let events = events_about(client, namespace, "vault").await;
        check(events.contains(&("Normal".into(), "OperatorTokenCreated".into())), || format!("{events:?}"))
    })
    .await;

    // A RetentionPolicy of that vault: a token scoped to retention:run, the CronJob, the
    // next run — and no run yet.
    apply_example(env, namespace, "retention-drop-phone.yaml");
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), namespace);
    let scheduled = || async {
        until("RetentionPolicy drop-phone to be scheduled", || async {
            let policy = policies.get("drop-phone").await.map_err(|error| error.to_string())?;
            let status = policy.status.clone().ok_or("no status yet")?;
            let ready = condition(&status.conditions, "Ready").map(|c| c.reason.clone());
            check(ready.as_deref() == Some("Scheduled"), || format!("{status:?}"))?;
            Ok(policy)
        })
        .await
    };
    let policy = scheduled().await;
    let status = policy.status.clone().unwrap();
    assert_eq!(status.cron_job.as_deref(), Some("retention-drop-phone"));
    assert!(status.next_run.is_some() && status.last_run.is_none(), "{status:?}");
    let token = status.token.clone().expect("the token's id");
    assert_eq!(Some(&token.vault_uid), vault.metadata.uid.as_ref());
    let cron_job: CronJob = get(client, namespace, "retention-drop-phone").await;
    assert_child_of(&cron_job.metadata, &policy, "CronJob retention-drop-phone");
    assert_eq!(cron_job.spec.as_ref().unwrap().schedule, "0 3 * * *");
    let config: ConfigMap = get(client, namespace, "retention-drop-phone-policy").await;
    assert_child_of(&config.metadata, &policy, "ConfigMap retention-drop-phone-policy");
    let token_secret: Secret = get(client, namespace, "retention-drop-phone-token").await;
    assert_child_of(&token_secret.metadata, &policy, "Secret retention-drop-phone-token");

    // Run it as the CronJob's Job would: its command, its token and policy files.
    let job = cron_job.spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
    let token_files = token_secret.data.clone().unwrap_or_default().into_iter().map(|(key, value)| (key, value.0));
    let config_files = config.data.clone().unwrap_or_default().into_iter().map(|(key, text)| (key, text.into_bytes()));
    let files: BTreeMap<String, Vec<u8>> = token_files.chain(config_files).collect();
    let dir = env.work_dir.join(namespace).join("job");
    let report = run_as_kubelet(&job.containers[0], &files, &dir, &[("HTTP_PROXY".into(), proxy.url())]);
    let report: Value = serde_json::from_str(&report).unwrap_or_else(|_| panic!("a JSON report: {report}"));

    // The vault's record of the run reaches the status (looked at again on any change).
    policies
        .patch(
            "drop-phone",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"e2e/ran": "1"}}})),
        )
        .await
        .unwrap();
    let last_run = until("the run in status.lastRun", || async {
        let policy = policies.get("drop-phone").await.map_err(|error| error.to_string())?;
        policy.status.and_then(|status| status.last_run).ok_or_else(|| "no lastRun".to_string())
    })
    .await;
    assert_eq!(json!(last_run.audit_event_id), report["auditEventId"], "{report}");
    assert_eq!((last_run.matched, last_run.changed, last_run.dry_run), (0, 0, false));

    let table = env.kubectl(&["get", "retpol", "drop-phone", "-n", namespace], None).expect("kubectl get retpol");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("LAST RUN") && lines[0].contains("NEXT RUN"), "{table}");
    assert!(lines[1].starts_with("drop-phone") && !lines[1].contains("<none>"), "every column filled: {table}");

    // Deleting the policy revokes its token in the vault.
    policies.delete("drop-phone", &DeleteParams::default()).await.expect("delete");
    until("the policy to be gone", || async {
        let left = policies.get_opt("drop-phone").await.map_err(|error| error.to_string())?;
        check(left.is_none(), || format!("{left:?}"))
    })
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let tokens = vault_tokens(&http, &node, &root).await;
    let ids: Vec<&str> = tokens["tokens"].as_array().unwrap().iter().filter_map(|t| t["id"].as_str()).collect();
    assert!(!ids.contains(&token.id.as_str()), "token {} still valid: {tokens}", token.id);
    // The operator's own token, made with the root token right after the bootstrap and kept
    // in the vault's Secret, is known to the vault with exactly its four scopes.
    let operator_id = text(secret_value(client, namespace, "vault-operator-token", "id").await);
    let operator = tokens["tokens"].as_array().unwrap().iter().find(|t| t["id"] == operator_id.as_str());
    let operator = operator.unwrap_or_else(|| panic!("the operator's token {operator_id}: {tokens}"));
    assert_eq!(operator["name"], "strongroom-operator");
    assert_eq!(operator["scopes"], json!(["cluster:admin", "tokens:admin", "retention:run", "backup:read"]));
    let scoped = text(secret_value(client, namespace, "vault-operator-token", "token").await);
    let cluster = http
        .get(format!("http://{}/v1/sys/cluster", node.api))
        .header("X-Bunker-Token", &scoped)
        .send()
        .await
        .expect("cluster status");
    assert_eq!(cluster.status(), 200, "the operator's token reads the cluster");
    let events = events_about(client, namespace, "drop-phone").await;
    assert!(events.contains(&("Normal".into(), "TokenRevoked".into())), "{events:?}");

    // Backups: a backup token the vault knows, the ledger shipper, the schedule, the status.
    let backup = json!({
        "destination": "s3://backups/e2e", "credentialsSecret": "backup-s3", "schedule": "0 2 * * *",
        "restoreDrill": {"schedule": "0 4 * * 0"}
    });
    vaults.patch("vault", &PatchParams::default(), &Patch::Merge(json!({"spec": {"backup": backup}}))).await.unwrap();
    let with_backups = [READY.as_slice(), &[("BackupsHealthy", "True/NoBackupYet")]].concat();
    let vault = vault_nudged_until(&vaults, &with_backups, |status| {
        status.backups.as_ref().is_some_and(|backups| backups.next_scheduled_backup.is_some())
    })
    .await;
    let backup_secret: Secret = get(client, namespace, "vault-backup-token").await;
    assert_child_of(&backup_secret.metadata, &vault, "Secret vault-backup-token");
    let backup_id = text(secret_value(client, namespace, "vault-backup-token", "id").await);
    let tokens = vault_tokens(&http, &node, &root).await;
    let known = tokens["tokens"].as_array().unwrap().iter().find(|t| t["id"] == backup_id.as_str()).cloned();
    assert_eq!(known.map(|t| t["scopes"].clone()), Some(json!(["backup:read"])), "{tokens}");
    let shipper: Deployment = get(client, namespace, "vault-ledger-shipper").await;
    assert_child_of(&shipper.metadata, &vault, "Deployment vault-ledger-shipper");
    let backup_job: CronJob = get(client, namespace, "vault-backup").await;
    assert_child_of(&backup_job.metadata, &vault, "CronJob vault-backup");
    let drill: CronJob = get(client, namespace, "vault-restore-drill").await;
    assert_child_of(&drill.metadata, &vault, "CronJob vault-restore-drill");
    let table = env.kubectl(&["get", "pvault", "vault", "-n", namespace], None).expect("kubectl get pvault");
    let next = vault.status.and_then(|s| s.backups).and_then(|b| b.next_scheduled_backup).unwrap();
    assert!(table.contains(&next.0.to_string()), "Next Backup is shown as a time: {table}");
    // Without spec.backup the shipper, the schedule and the drills go.
    vaults.patch("vault", &PatchParams::default(), &Patch::Merge(json!({"spec": {"backup": null}}))).await.unwrap();
    vault_reported_nudged(&vaults, &READY).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    until("the backup children to go", || async {
        let shipper = deployments.get_opt("vault-ledger-shipper").await.map_err(|error| error.to_string())?;
        let job = cron_jobs.get_opt("vault-backup").await.map_err(|error| error.to_string())?;
        let drill = cron_jobs.get_opt("vault-restore-drill").await.map_err(|error| error.to_string())?;
        check(shipper.is_none() && job.is_none() && drill.is_none(), || "still there".to_string())
    })
    .await;

    // And the vault goes too, through its finalizer.
    vaults.delete("vault", &DeleteParams::default()).await.expect("delete the vault");
    until("the vault to be gone", || async {
        let left = vaults.get_opt("vault").await.map_err(|error| error.to_string())?;
        check(left.is_none(), || left.map(|v| v.name_any()).unwrap_or_default())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_grows_a_real_vault_from_one_node_to_three_and_back() {
    let test = "the_operator_grows_a_real_vault_from_one_node_to_three_and_back";
    let Some(env) = Env::with_vaultd(test) else { return };
    let proxy = Proxy::start();
    let deployed = Deployed::with_env(env, "scale", &vaultd_operator_env(&proxy)).await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    vaults.create(&PostParams::default(), &one_node_vault(env)).await.expect("create");
    let secrets = node_secrets(client, namespace).await;
    // Every pod a StatefulSet of 3 would have, ready before they are asked for.
    let mut nodes: Vec<Vaultd> = (0..3).map(|ordinal| start_node(env, &proxy, namespace, ordinal, &secrets)).collect();
    vault_reported(&vaults, "vault", &READY).await;

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let members = |vault: &PiiVault| {
        let status = vault.status.clone().unwrap();
        status
            .members
            .iter()
            .map(|m| (m.pod.clone().unwrap_or_default(), format!("{:?}", m.role), m.healthy))
            .collect::<Vec<_>>()
    };
    let resize = |replicas: i32| {
        let vaults = vaults.clone();
        async move {
            let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
            vaults.patch("vault", &PatchParams::default(), &patch).await.expect("patch replicas");
        }
    };

    // 1 → 3: the StatefulSet grows, each new node joins as a learner and is promoted.
    resize(3).await;
    let vault = vault_reported(&vaults, "vault", &READY).await;
    let voter = |pod: &str| (pod.to_string(), "Voter".to_string(), true);
    assert_eq!(members(&vault), [voter("vault-0"), voter("vault-1"), voter("vault-2")]);
    let status = vault.status.clone().unwrap();
    assert_eq!((status.ready_replicas, status.failure_tolerance), (3, 1));
    assert_eq!(sets.get("vault").await.unwrap().spec.unwrap().replicas, Some(3));
    let events = events_about(client, namespace, "vault").await;
    for reason in ["Bootstrapped", "StatefulSetResized", "LearnerAdded", "LearnerPromoted"] {
        assert!(events.contains(&("Normal".into(), reason.into())), "no {reason} in {events:?}");
    }

    // A node dies: the vault still serves (a quorum of 2), but is degraded and says which
    // node it waits for; nothing is changed meanwhile. Back, it is ready again. (A change
    // of the vault's metadata makes the operator look at once instead of in a minute.)
    nodes[2].kill();
    let degraded = [
        ("Ready", "False/MembersUnhealthy"),
        ("Available", "True/QuorumAvailable"),
        ("Progressing", "False/MembersUnhealthy"),
        ("Degraded", "True/MembersUnhealthy"),
    ];
    let vault = vault_reported_nudged(&vaults, &degraded).await;
    let status = vault.status.clone().unwrap();
    assert_eq!((status.ready_replicas, status.failure_tolerance), (2, 0), "{status:?}");
    assert_eq!(serde_json::to_value(status.phase).unwrap(), json!("Degraded"));
    let message = &condition(&status.conditions, "Degraded").unwrap().message;
    assert!(message.contains("[3]"), "names node 3: {message}");
    nodes[2].restart();
    vault_reported_nudged(&vaults, &READY).await;

    // A node loses its volume: its old member is removed and the pod, uninitialised again,
    // rejoins under a new node id.
    nodes[1].wipe();
    let vault = vault_nudged_until(&vaults, &READY, |status| {
        status.members.iter().any(|m| m.pod.as_deref() == Some("vault-1") && m.node_id == 4)
    })
    .await;
    assert_eq!(members(&vault), [voter("vault-0"), voter("vault-1"), voter("vault-2")]);

    // 3 → 1: the highest node leaves the cluster before its pod goes, one at a time.
    resize(1).await;
    let vault = vault_reported(&vaults, "vault", &READY).await;
    assert_eq!(members(&vault), [voter("vault-0")]);
    assert_eq!(sets.get("vault").await.unwrap().spec.unwrap().replicas, Some(1));
    let events = events_about(client, namespace, "vault").await;
    assert!(events.contains(&("Normal".into(), "MemberRemoved".into())), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_made_from_a_backup_keeps_what_was_backed_up_and_no_one_erased_after_it() {
    let test = "a_vault_made_from_a_backup_keeps_what_was_backed_up_and_no_one_erased_after_it";
    let Some(env) = Env::with_vaultd(test) else { return };
    // (The testkit blocks: outside the runtime's own threads.)
    let started = tokio::task::block_in_place(|| S3Server::start(test, "vault-backups"));
    let Some(s3) = started else { return };
    let proxy = Proxy::start();
    let deployed = Deployed::with_env(env, "restore", &vaultd_operator_env(&proxy)).await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);

    // The source vault, with two people, backed up to S3: its ledger shipper runs.
    vaults.create(&PostParams::default(), &one_node_vault(env)).await.expect("create");
    let secrets = node_secrets(client, namespace).await;
    let source = start_node(env, &proxy, namespace, 0, &secrets);
    proxy.route(&format!("vault.{namespace}.svc:3000"), source.api);
    vault_reported(&vaults, "vault", &READY).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = |node: &Vaultd, method: reqwest::Method, path: &str| {
        http.request(method, format!("http://{}{path}", node.api)).header("X-Bunker-Token", &secrets.root_token)
    };
    let mut people = Vec::new();
    for login in ["alice", "bob"] {
        let created: Value = api(&source, reqwest::Method::POST, "/v1/user")
            .json(&json!({"login": login, "email": format!("{login}@example.com")}))
            .send()
            .await
            .expect("create a person")
            .json()
            .await
            .expect("JSON");
        people.push(created["token"].as_str().expect("a token").to_string());
    }
    let credentials: BTreeMap<String, String> = s3.env().into_iter().collect();
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let credentials_secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some("backup-s3".into()), ..Default::default() },
        string_data: Some(credentials.clone()),
        ..Default::default()
    };
    secrets_api.create(&PostParams::default(), &credentials_secret).await.expect("the credentials Secret");
    let destination = "s3://vault-backups/pii/vault";
    let backup = json!({"destination": destination, "credentialsSecret": "backup-s3"});
    vaults.patch("vault", &PatchParams::default(), &Patch::Merge(json!({"spec": {"backup": backup}}))).await.unwrap();
    let shipper: Deployment = until("the ledger shipper", || async {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        deployments.get_opt("vault-ledger-shipper").await.map_err(|e| e.to_string())?.ok_or("not yet".to_string())
    })
    .await;
    let backup_token = secret_value(client, namespace, "vault-backup-token", "token").await;
    let files = env.work_dir.join(namespace).join("backup");
    std::fs::create_dir_all(&files).unwrap();
    let token_file = files.join("token");
    std::fs::write(&token_file, &backup_token).unwrap();
    // The pods' mounted token file is the test's copy.
    let job_args = |args: Vec<String>| -> Vec<String> {
        let token = token_file.to_string_lossy().into_owned();
        args.into_iter().map(|arg| if arg.ends_with("/backup/token") { token.clone() } else { arg }).collect()
    };
    let vaultd_command = |args: Vec<String>| {
        let mut command = std::process::Command::new(vaultd::binary());
        // The vault through the proxy, under its cluster name; the S3 server directly.
        command.args(args).envs(credentials.clone()).env("HTTP_PROXY", proxy.url()).env("NO_PROXY", "127.0.0.1");
        command
    };

    // A backup (as the CronJob's or a PiiVaultBackup's Job takes it); then Bob forgets
    // himself, and the shipper — its Deployment's command — ships that, without a backup.
    let take = [&["backup".to_string()][..], &shipper_args(&shipper)[4..]].concat();
    let printed = run(&mut vaultd_command(job_args(take)), None).unwrap_or_else(|error| panic!("{error:#}"));
    let taken: Value = serde_json::from_str(&printed).unwrap_or_else(|_| panic!("a JSON report: {printed}"));
    let forgotten = api(&source, reqwest::Method::DELETE, &format!("/v1/user/token/{}", people[1])).send().await;
    assert_eq!(forgotten.expect("forget bob").status(), 200);
    let shipping = Running(vaultd_command(job_args(shipper_args(&shipper))).spawn().expect("the ledger shipper"));
    let listing = format!("{}/vault-backups?list-type=2&prefix=pii/vault/ledger/", s3.endpoint);
    until("the ledger shipper to ship Bob's erasure", || async {
        let listed =
            http.get(&listing).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
        check(listed.contains("<Key>"), || listed.clone())
    })
    .await;
    drop(shipping);

    // A new vault from that backup, with the source's SoftHSM KEK (development mode).
    let mut copy = serde_json::to_value(one_node_vault(env)).unwrap();
    copy["metadata"]["name"] = json!("copy");
    copy["spec"]["bootstrap"] = json!({"fromBackup": {
        "source": destination, "credentialsSecret": "backup-s3", "backupId": taken["backup"], "softhsmSecret": "vault-softhsm"
    }});
    vaults.create(&PostParams::default(), &serde_json::from_value(copy).unwrap()).await.expect("create the copy");
    let restoring = [
        ("Ready", "False/Restoring"),
        ("Available", "False/NotInitialized"),
        ("Progressing", "True/Restoring"),
        ("Degraded", "False/AsExpected"),
    ];
    let copy = vault_reported(&vaults, "copy", &restoring).await;
    assert_eq!(serde_json::to_value(copy.status.clone().unwrap().phase).unwrap(), json!("Restoring"));
    let job: Job = get(client, namespace, "copy-restore").await;
    assert_child_of(&job.metadata, &copy, "Job copy-restore");
    let claim: PersistentVolumeClaim = get(client, namespace, "data-copy-0").await;
    assert!(claim.metadata.owner_references.is_none(), "pod 0's volume outlives the vault");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    assert!(sets.get_opt("copy").await.unwrap().is_none(), "no StatefulSet before the restore");
    let copy_secrets = NodeSecrets {
        root_token: text(secret_value(client, namespace, "copy-root-token", "token").await),
        peer_secret: text(secret_value(client, namespace, "copy-peer-auth", "secret").await),
        kek: secret_value(client, namespace, "copy-softhsm", "kek").await,
    };
    assert_eq!(copy_secrets.kek, secrets.kek, "the source's KEK");

    // Play the kubelet: the Job's command on pod copy-0's volume, then the Job's success;
    // the StatefulSet follows and pod copy-0 starts on the restored volume.
    let container = &job.spec.clone().unwrap().template.spec.unwrap().containers[0];
    let pod_host = format!("copy-0.copy-headless.{namespace}.svc");
    let dir = env.work_dir.join(namespace).join("copy-0");
    let job_command = JobCommand { args: container.args.clone().unwrap(), env: credentials.into_iter().collect() };
    let (restored, printed) =
        Vaultd::start_after(&env.repo, &dir, &pod_host, &copy_secrets, &proxy.url(), Some(&job_command));
    let report: Value = serde_json::from_str(&printed).unwrap_or_else(|_| panic!("a JSON report: {printed}"));
    assert_eq!(report["erasuresApplied"], 1, "{report}");
    proxy.route(&format!("{pod_host}:3000"), restored.api);
    proxy.route(&format!("{pod_host}:3001"), restored.peer);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let finished = json!({"status": {
        "startTime": now, "completionTime": now, "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastTransitionTime": now}
        ]
    }});
    jobs.patch_status("copy-restore", &PatchParams::default(), &Patch::Merge(finished))
        .await
        .expect("the Job succeeds");
    let copy = vault_reported(&vaults, "copy", &READY).await;
    let status = copy.status.clone().unwrap();
    assert_eq!((status.ready_replicas, status.leader.as_deref()), (1, Some("copy-0")));
    let events = events_about(client, namespace, "copy").await;
    for reason in ["RestoreStarted", "Restored"] {
        assert!(events.contains(&("Normal".into(), reason.into())), "no {reason} in {events:?}");
    }
    assert!(!events.contains(&("Normal".into(), "Bootstrapped".into())), "{events:?}");

    // Alice is there; Bob, forgotten after the backup, is not: his token resolves to an
    // empty record (as on the source), his login to no one.
    let read = |path: String| {
        let request =
            http.get(format!("http://{}{path}", restored.api)).header("X-Bunker-Token", &copy_secrets.root_token);
        async move { request.send().await.expect("read a person") }
    };
    let alice: Value = read(format!("/v1/user/token/{}", people[0])).await.json().await.expect("JSON");
    assert_eq!(alice["data"]["email"], "alice@example.com", "{alice}");
    let bob: Value = read(format!("/v1/user/token/{}", people[1])).await.json().await.expect("JSON");
    assert_eq!(bob["data"], json!({}), "{bob}");
    assert_eq!(read("/v1/user/login/bob".into()).await.status(), 404);
    assert_eq!(read("/v1/user/login/alice".into()).await.status(), 200);
    drop(source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piivault_backup_backs_a_real_vault_up_into_s3() {
    let test = "a_piivault_backup_backs_a_real_vault_up_into_s3";
    let Some(env) = Env::with_vaultd(test) else { return };
    let bucket = "e2e-backups";
    let Some(s3) = tokio::task::spawn_blocking(move || S3Server::start(test, bucket)).await.unwrap() else { return };
    let proxy = Proxy::start();
    let deployed = Deployed::with_env(env, "backup", &vaultd_operator_env(&proxy)).await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let post = PostParams::default();

    // A vault backed up into the bucket, its credentials in a Secret as users keep them.
    let credentials: Secret = serde_json::from_value(json!({
        "metadata": {"name": "backup-s3"},
        "stringData": s3.env().into_iter().collect::<BTreeMap<_, _>>(),
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace).create(&post, &credentials).await.expect("credentials");
    let destination = format!("s3://{bucket}/vault");
    let mut vault = one_node_vault(env);
    vault.spec.backup =
        serde_json::from_value(json!({"destination": destination, "credentialsSecret": "backup-s3"})).unwrap();
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    vaults.create(&post, &vault).await.expect("create the vault");
    let mut plain = one_node_vault(env);
    plain.metadata.name = Some("plain".into());
    vaults.create(&post, &plain).await.expect("create the vault without backups");

    // Asked for before the vault has a backup token (no node runs yet): it waits.
    let backups: Api<PiiVaultBackup> = Api::namespaced(client.clone(), namespace);
    let request = |name: &str, vault: &str| -> PiiVaultBackup {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"vault": vault}})).unwrap()
    };
    backups.create(&post, &request("before-upgrade", "vault")).await.expect("create the backup");
    backups.create(&post, &request("nowhere", "plain")).await.expect("create the backup of plain");
    let phase_of = |name: &'static str, wanted: BackupPhase| {
        let backups = backups.clone();
        async move {
            until(&format!("PiiVaultBackup {name} to be {wanted:?}"), || async {
                let backup = backups.get(name).await.map_err(|error| error.to_string())?;
                let status = backup.status.clone().unwrap_or_default();
                check(status.phase == Some(wanted), || format!("{status:?}"))?;
                Ok(status)
            })
            .await
        }
    };
    let waiting = phase_of("before-upgrade", BackupPhase::Pending).await;
    assert!(waiting.message.unwrap_or_default().contains("Secret vault-backup-token"));
    let failed = phase_of("nowhere", BackupPhase::Failed).await;
    assert_eq!(failed.message.as_deref(), Some("PiiVault plain has no spec.backup: nowhere to store a backup"));
    assert_eq!(events_about(client, namespace, "nowhere").await, [("Warning".to_string(), "BackupFailed".to_string())]);

    // Pod vault-0, with two subjects; then the operator issues the backup token.
    let secrets = node_secrets(client, namespace).await;
    let node = start_node(env, &proxy, namespace, 0, &secrets);
    proxy.route(&format!("vault.{namespace}.svc:3000"), node.api);
    let with_backups = [READY.as_slice(), &[("BackupsHealthy", "True/LedgerShipped")]].concat();
    vault_nudged_until(&vaults, &with_backups, |_| true).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for login in ["alice", "bob"] {
        let created = http
            .post(format!("http://{}/v1/user", node.api))
            .header("X-Bunker-Token", &secrets.root_token)
            .json(&json!({"login": login}))
            .send()
            .await
            .expect("create a subject");
        assert_eq!(created.status(), 200, "{login}");
    }

    // The Job, owned by the backup, runs the backup container with its summary file.
    let job_name = "before-upgrade-backup";
    let job: Job = get(client, namespace, job_name).await;
    let backup = backups.get("before-upgrade").await.unwrap();
    assert_child_of(&job.metadata, &backup, "Job before-upgrade-backup");
    let running = phase_of("before-upgrade", BackupPhase::Running).await;
    assert_eq!(running.job.as_deref(), Some(job_name));
    let template = job.spec.clone().unwrap().template;
    let pod_spec = template.spec.clone().unwrap();
    let container = &pod_spec.containers[0];
    assert_eq!(container.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
    let summary_path = container.args.iter().flatten().find(|arg| arg.starts_with("/dev/")).cloned();
    assert_eq!(summary_path.as_deref(), Some("/dev/termination-log"));

    // Play the Job controller and the kubelet: the Job starts, ...
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let started = now();
    let status = |status: Value| Patch::Merge(json!({"status": status}));
    jobs.patch_status(job_name, &PatchParams::default(), &status(json!({"startTime": started, "active": 1})))
        .await
        .expect("the Job starts");
    let with_start = until("startedAt from the Job", || async {
        let backup = backups.get("before-upgrade").await.map_err(|error| error.to_string())?;
        backup.status.filter(|status| status.started_at.is_some()).ok_or_else(|| "no startedAt".to_string())
    })
    .await;
    assert_eq!(with_start.started_at, Some(started.clone()));

    // ... its pod runs the container with the token, the bucket's credentials and the proxy,
    let token: Secret = get(client, namespace, "vault-backup-token").await;
    let mut files: BTreeMap<String, Vec<u8>> =
        token.data.unwrap_or_default().into_iter().map(|(key, value)| (key, value.0)).collect();
    files.insert("termination-log".into(), Vec::new());
    let from = container.env_from.clone().unwrap_or_default();
    let credentials_name = from[0].secret_ref.as_ref().map(|secret| secret.name.clone()).expect("a Secret");
    let credentials: Secret = get(client, namespace, &credentials_name).await;
    let variables = credentials.data.unwrap_or_default().into_iter();
    let mut job_env: Vec<(String, String)> =
        variables.map(|(name, value)| (name, String::from_utf8(value.0).expect("text"))).collect();
    job_env.extend([("HTTP_PROXY".into(), proxy.url()), ("NO_PROXY".into(), "127.0.0.1,localhost".into())]);
    let dir = env.work_dir.join(namespace).join("backup-job");
    run_as_kubelet(container, &files, &dir, &job_env);
    let summary = std::fs::read_to_string(dir.join("termination-log")).expect("the summary file");

    // ... ends with the summary as its termination message, and the Job completes.
    let job_uid = job.metadata.uid.clone().unwrap();
    let labels = json!({
        "batch.kubernetes.io/job-name": job_name,
        "job-name": job_name,
        "batch.kubernetes.io/controller-uid": job_uid,
        "controller-uid": job_uid,
    });
    let owner = json!({"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid, "controller": true});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "before-upgrade-backup-x7k2p", "labels": labels, "ownerReferences": [owner]},
        "spec": pod_spec,
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.create(&post, &pod).await.expect("the Job's pod");
    let terminated =
        json!({"exitCode": 0, "reason": "Completed", "message": summary, "startedAt": started, "finishedAt": now()});
    let container_status = json!({
        "name": "backup",
        "image": container.image,
        "imageID": "",
        "ready": false,
        "restartCount": 0,
        "state": {"terminated": terminated},
    });
    let pod_status = json!({"phase": "Succeeded", "containerStatuses": [container_status]});
    pods.patch_status("before-upgrade-backup-x7k2p", &PatchParams::default(), &status(pod_status))
        .await
        .expect("the pod ends");
    let finished = now();
    let complete = json!({
        "active": 0,
        "succeeded": 1,
        "completionTime": finished,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": finished, "lastProbeTime": finished},
            {"type": "Complete", "status": "True", "lastTransitionTime": finished, "lastProbeTime": finished},
        ],
    });
    jobs.patch_status(job_name, &PatchParams::default(), &status(complete)).await.expect("the Job completes");

    // The backup is what `vaultd backup list` finds in the bucket, with the vault's subjects.
    let completed = phase_of("before-upgrade", BackupPhase::Completed).await;
    let listed = run(
        std::process::Command::new(vaultd::binary()).args(["backup", "list", "--from", &destination]).envs(s3.env()),
        None,
    )
    .expect("vaultd backup list");
    assert_eq!(completed.backup_id.as_deref(), Some(listed.trim()), "{completed:?}");
    assert_eq!(completed.destination.as_deref(), Some(destination.as_str()));
    assert_eq!(completed.subjects, Some(2));
    let report: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(completed.bytes.map(Value::from), Some(report["bytes"].clone()));
    assert!(completed.bytes.unwrap_or_default() > 0);
    assert_eq!((completed.started_at, completed.completed_at), (Some(started), Some(finished)));
    assert_eq!(completed.message, None);
    let events = events_about(client, namespace, "before-upgrade").await;
    for reason in ["BackupStarted", "BackupCompleted"] {
        assert!(events.contains(&("Normal".into(), reason.into())), "no {reason} in {events:?}");
    }
    let events = events_about(client, namespace, "vault").await;
    assert!(events.contains(&("Normal".into(), "BackupCompleted".into())), "{events:?}");

    let table = env.kubectl(&["get", "pvbackup", "-n", namespace], None).expect("kubectl get pvbackup");
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "VAULT", "PHASE", "BACKUP", "SUBJECTS", "AGE"], "{table}");
    let row: Vec<&str> =
        lines.iter().find(|line| line.starts_with("before-upgrade")).unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["before-upgrade", "vault", "Completed", listed.trim(), "2"], "{table}");
}
