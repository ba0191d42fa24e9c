//! The operator and real vaultd processes together: each stands in for a pod of the vault
//! (reached through an HTTP proxy under its cluster DNS names, since no pod runs here), with
//! the Secrets the operator generated. The operator bootstraps a one-node vault and reports
//! it Ready; a RetentionPolicy gets its token, CronJob and schedule, a run as its Job would
//! make it shows up in its status, and deleting the policy revokes its token. A vault grows
//! from one node to three and back, with a node killed and one wiped on the way. A vault made
//! from a backup restores its first node (a Job the test runs as the kubelet would) before
//! its StatefulSet, without the person forgotten after the backup, whose erasure the
//! source's ledger shipper (its Deployment's command) shipped.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use strongroom_operator::crd::{PiiVault, PiiVaultStatus, RetentionPolicy};
use strongroom_system_tests::operator::Deployed;
use strongroom_system_tests::resources::*;
use strongroom_system_tests::vaultd::{self, JobCommand, NodeSecrets, Proxy, Vaultd};
use strongroom_system_tests::wait::{check, until};
use strongroom_system_tests::{run, Env};

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
    let container = &job.containers[0];
    let files = env.work_dir.join(namespace).join("job");
    std::fs::create_dir_all(&files).unwrap();
    let mut args = container.args.clone().unwrap_or_default();
    let token_data = token_secret.data.clone().unwrap_or_default();
    let config_data = config.data.clone().unwrap_or_default();
    for arg in args.iter_mut() {
        // The mounted files: /var/run/strongroom/<dir>/<key> → the test's copies.
        let Some(key) = arg.rsplit('/').next().filter(|_| arg.starts_with('/')).map(str::to_string) else { continue };
        let content = match (token_data.get(&key), config_data.get(&key)) {
            (Some(value), _) => value.0.clone(),
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => panic!("{arg} is neither in the token Secret nor in the ConfigMap"),
        };
        let path = files.join(&key);
        std::fs::write(&path, content).unwrap();
        *arg = path.to_string_lossy().into_owned();
    }
    assert_eq!(container.command.as_deref(), Some(&["vaultd".to_string()][..]));
    let report = run(std::process::Command::new(vaultd::binary()).args(&args).env("HTTP_PROXY", proxy.url()), None)
        .unwrap_or_else(|error| panic!("vaultd {args:?}: {error:#}"));
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
    let tokens: Value = http
        .get(format!("http://{}/v1/sys/tokens", node.api))
        .header("X-Bunker-Token", &root)
        .send()
        .await
        .expect("list tokens")
        .json()
        .await
        .expect("JSON");
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
    let tokens: Value = http
        .get(format!("http://{}/v1/sys/tokens", node.api))
        .header("X-Bunker-Token", &root)
        .send()
        .await
        .expect("list tokens")
        .json()
        .await
        .expect("JSON");
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
    let started = tokio::task::block_in_place(|| strongroom_testkit::S3Server::start(test, "vault-backups"));
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
