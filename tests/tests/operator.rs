//! The operator binary under the Helm chart's ServiceAccount and RBAC, against a real API
//! server: it takes its Lease, renders every child of the example PiiVault with owner
//! references, reports what it sees honestly (no pods ever run here: no kubelet), follows
//! spec changes, runs its finalizers, and gives a RetentionPolicy its status. The chart's
//! default install is confined to its own namespace; a vault the policy does not allow is
//! not rendered.
//!
//! Each test has an operator and namespaces of its own, so they run in parallel.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use strongroom_operator::crd::{PiiVault, RetentionPolicy};
use strongroom_system_tests::operator::{Deployed, Install, Operator, RELEASE};
use strongroom_system_tests::resources::*;
use strongroom_system_tests::wait::{check, until};
use strongroom_system_tests::Env;

#[tokio::test]
async fn the_operator_takes_its_lease_and_hands_it_over_on_sigterm() {
    let Some(env) = Env::get("the_operator_takes_its_lease_and_hands_it_over_on_sigterm") else { return };
    let mut deployed = Deployed::new(env, "lease").await;
    let client = deployed.client.clone();
    let namespace = deployed.install.namespace.clone();
    let first = deployed.operator.identity.clone();
    until("the first operator to hold the Lease", || async {
        let holder = lease_holder(&client, &namespace).await?;
        check(holder == first, || format!("held by {holder}"))
    })
    .await;
    // A second replica waits behind it...
    let mut standby = Operator::start(env, &deployed.install, &format!("{RELEASE}-1"));
    until("the standby to wait for the Lease", || async {
        check(standby.log().contains("waiting to become leader"), || standby.log())
    })
    .await;
    assert_eq!(lease_holder(&client, &namespace).await.as_deref(), Ok(first.as_str()));
    // ...and takes over as soon as the leader, asked to stop, releases the Lease (rather
    // than 15 s later, when it would expire): by the time the leader has exited it no
    // longer holds it.
    let status = deployed.operator.stop().await;
    assert!(status.success(), "the leader exits cleanly on SIGTERM: {status}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let lease = leases.get(RELEASE).await.expect("the Lease");
    let holder = lease.spec.and_then(|spec| spec.holder_identity);
    assert_ne!(holder.as_deref(), Some(first.as_str()), "the leader exited without releasing the Lease");
    until("the standby to take the Lease", || async {
        let holder = lease_holder(&client, &namespace).await?;
        check(holder == standby.identity, || format!("held by {holder}"))
    })
    .await;
    until("the standby to act as leader", || async {
        check(standby.log().contains("became leader"), || standby.log())
    })
    .await;
    assert!(standby.running());
}

#[tokio::test]
async fn the_charts_rbac_confines_the_operator_to_what_it_needs() {
    let Some(env) = Env::get("the_charts_rbac_confines_the_operator_to_what_it_needs") else { return };
    let deployed = Deployed::new(env, "rbac").await;
    let operator = &deployed.operator;
    let (vaults, own) = (Some(deployed.namespace.as_str()), Some(deployed.install.namespace.as_str()));
    let elsewhere = env.namespace(&deployed.client, "rbac-other").await;
    let may = |verb, resource, namespace| operator.may(env, verb, resource, namespace);
    // In the watched namespace: what the reconcilers do. (The Prometheus Operator's kinds are
    // not installed here, so `auth can-i` cannot ask about them: tests/tests/monitoring.rs
    // has the operator apply and delete them under this RBAC.)
    for (verb, resource) in [
        ("patch", "piivaults.strongroom.dev"),
        ("patch", "piivaults.strongroom.dev/status"),
        ("update", "piivaults.strongroom.dev/finalizers"),
        ("watch", "retentionpolicies.strongroom.dev"),
        ("create", "statefulsets.apps"),
        ("patch", "cronjobs.batch"),
        ("get", "secrets"),
        ("create", "secrets"),
        ("deletecollection", "persistentvolumeclaims"),
        ("create", "persistentvolumeclaims"),
        ("create", "events.events.k8s.io"),
        ("patch", "piivaultbackups.strongroom.dev/status"),
        ("create", "jobs.batch"),
        ("watch", "jobs.batch"),
        ("list", "pods"),
    ] {
        assert!(may(verb, resource, vaults), "may not {verb} {resource} in the watched namespace");
    }
    // Never every Secret at once, nothing it does not do.
    for (verb, resource) in [
        ("list", "secrets"),
        ("watch", "secrets"),
        ("delete", "secrets"),
        ("update", "piivaults.strongroom.dev"),
        ("update", "piivaults.strongroom.dev/status"),
        ("delete", "statefulsets.apps"),
        ("create", "pods"),
        ("delete", "persistentvolumeclaims"),
        ("delete", "jobs.batch"),
    ] {
        assert!(!may(verb, resource, vaults), "may {verb} {resource} in the watched namespace");
    }
    // Elsewhere nothing, but its own Lease.
    assert!(!may("get", "secrets", Some(&elsewhere)));
    assert!(!may("list", "piivaults.strongroom.dev", Some(&elsewhere)));
    assert!(!may("list", "piivaults.strongroom.dev", None), "cluster-wide list with watchNamespaces set");
    assert!(may("get", "secrets", own), "the release namespace is always watched");
    assert!(may("update", "leases.coordination.k8s.io", own));
    assert!(!may("update", "leases.coordination.k8s.io", vaults));
}

#[tokio::test]
async fn the_default_install_is_confined_to_its_own_namespace() {
    let Some(env) = Env::get("the_default_install_is_confined_to_its_own_namespace") else { return };
    let client = env.admin().await;
    env.apply_crds(&client).await;
    let own = env.namespace(&client, "default-install").await;
    let elsewhere = env.namespace(&client, "default-other").await;
    let install = Install::apply(env, &own, &[]);
    let operator = Operator::start(env, &install, &format!("{RELEASE}-0"));
    let rendered = env.kubectl(&["get", "roles,rolebindings", "-n", &own, "-o", "name"], None).expect("kubectl");
    assert!(rendered.contains("role.rbac.authorization.k8s.io/strongroom-operator\n"), "{rendered}");
    let may = |verb, resource, namespace| operator.may(env, verb, resource, namespace);
    assert!(may("create", "statefulsets.apps", Some(&own)));
    assert!(may("get", "secrets", Some(&own)));
    assert!(!may("get", "secrets", Some(&elsewhere)));
    assert!(!may("create", "statefulsets.apps", Some(&elsewhere)));
    assert!(!may("list", "piivaults.strongroom.dev", None), "no cluster-wide rights");

    // A vault in its own namespace is run; one elsewhere is not looked at.
    apply_example(env, &own, "piivault-softhsm.yaml");
    apply_example(env, &elsewhere, "piivault-softhsm.yaml");
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), &own);
    vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;
    let others: Api<PiiVault> = Api::namespaced(client.clone(), &elsewhere);
    assert!(others.get("vault").await.expect("the other vault").status.is_none(), "not watched");
}

#[tokio::test]
async fn a_vault_the_policy_does_not_allow_is_not_rendered() {
    let Some(env) = Env::get("a_vault_the_policy_does_not_allow_is_not_rendered") else { return };
    let deployed = Deployed::new(env, "not-allowed").await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let mut vault: PiiVault = serde_json::from_value(strongroom_system_tests::read_yaml(
        &env.path("charts/strongroom-operator/examples/piivault-softhsm.yaml"),
    ))
    .unwrap();
    vault.spec.image = "docker.io/somebody/vaultd:latest".into();
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    vaults.create(&PostParams::default(), &vault).await.expect("create");
    let wanted = [
        ("Ready", "False/NotAllowed"),
        ("Available", "False/NotInitialized"),
        ("Progressing", "False/WaitingForPod"),
        ("Degraded", "True/NotAllowed"),
    ];
    let reported = vault_reported(&vaults, "vault", &wanted).await;
    let ready = condition(&reported.status.unwrap().conditions, "Ready").unwrap().message.clone();
    assert!(ready.contains("docker.io/somebody/vaultd:latest") && ready.contains("policy.allowedImages"), "{ready}");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    assert!(sets.get_opt("vault").await.expect("get").is_none(), "nothing rendered");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    assert!(secrets.get_opt("vault-softhsm").await.expect("get").is_none(), "no Secret generated");
    until("a NotAllowed Warning Event", || async {
        let events = events_about(client, namespace, "vault").await;
        check(events.iter().any(|(type_, reason)| type_ == "Warning" && reason == "NotAllowed"), || {
            format!("{events:?}")
        })
    })
    .await;
}

#[tokio::test]
async fn the_example_vault_gets_every_child_and_honest_conditions() {
    let Some(env) = Env::get("the_example_vault_gets_every_child_and_honest_conditions") else { return };
    let deployed = Deployed::new(env, "children").await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    apply_example(env, namespace, "piivault-softhsm.yaml");
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);

    // No kubelet runs, so no pod ever answers: the vault waits for its first pod, and says so.
    let vault = vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;
    let status = vault.status.clone().unwrap();
    assert_eq!(serde_json::to_value(status.phase).unwrap(), json!("Pending"));
    assert_eq!((status.ready_replicas, status.members.len(), status.leader.clone()), (0, 0, None));
    let progressing = condition(&status.conditions, "Progressing").unwrap();
    assert_eq!(progressing.message, "waiting for vault-0 to answer");
    assert!(status.conditions.iter().all(|c| c.observed_generation == vault.metadata.generation), "{status:?}");
    assert!(vault.finalizers().iter().any(|f| f == VAULT_FINALIZER), "{:?}", vault.finalizers());

    // Every child, applied server-side with the vault as controlling owner.
    let set: StatefulSet = get(client, namespace, "vault").await;
    assert_child_of(&set.metadata, &vault, "StatefulSet vault");
    let spec = set.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(3), "created at the desired size");
    assert_eq!(spec.service_name.as_deref(), Some("vault-headless"));
    let claims = spec.volume_claim_templates.unwrap_or_default();
    assert_eq!(claims.len(), 1, "one data volume per node");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("vault"));
    assert!(!pod.init_containers.unwrap_or_default().is_empty(), "SoftHSM token set-up");
    assert_eq!(pod.containers[0].image.as_deref(), Some("ghcr.io/strongroom/vaultd:0.1.0"));
    // HTTPS on the API, probed as such.
    let probe = pod.containers[0].readiness_probe.clone().and_then(|p| p.http_get).and_then(|g| g.scheme);
    assert_eq!(probe.as_deref(), Some("HTTPS"));
    // SoftHSM mode is development only, and says so.
    let warning = condition(&status.conditions, "InsecureKeyStorage").expect("InsecureKeyStorage");
    assert_eq!((warning.status.as_str(), warning.reason.as_str()), ("True", "SoftHsmDevelopmentMode"));

    let headless: Service = get(client, namespace, "vault-headless").await;
    assert_child_of(&headless.metadata, &vault, "Service vault-headless");
    assert_eq!(headless.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()), Some("None"));
    assert_eq!(headless.spec.as_ref().and_then(|s| s.publish_not_ready_addresses), Some(true));
    let service: Service = get(client, namespace, "vault").await;
    assert_child_of(&service.metadata, &vault, "Service vault");
    let ports: Vec<i32> = service.spec.unwrap().ports.unwrap_or_default().iter().map(|p| p.port).collect();
    assert_eq!(ports, [3000]);
    let config: ConfigMap = get(client, namespace, "vault-config").await;
    assert_child_of(&config.metadata, &vault, "ConfigMap vault-config");
    let account: ServiceAccount = get(client, namespace, "vault").await;
    assert_child_of(&account.metadata, &vault, "ServiceAccount vault");
    let budget: PodDisruptionBudget = get(client, namespace, "vault").await;
    assert_child_of(&budget.metadata, &vault, "PodDisruptionBudget vault");
    let policy: NetworkPolicy = get(client, namespace, "vault").await;
    assert_child_of(&policy.metadata, &vault, "NetworkPolicy vault");
    for (secret, keys) in [
        ("vault-root-token", &["token"][..]),
        ("vault-peer-auth", &["secret"][..]),
        ("vault-peer-tls", &["ca.crt", "tls.crt", "tls.key"][..]),
        ("vault-softhsm", &["kek", "so.pin", "user.pin"][..]),
        ("vault-api-ca", &["ca.crt", "ca.key"][..]),
        ("vault-api-tls", &["ca.crt", "tls.crt", "tls.key"][..]),
    ] {
        let secret: Secret = get(client, namespace, secret).await;
        let name = secret.name_any();
        assert_child_of(&secret.metadata, &vault, &format!("Secret {name}"));
        let data = secret.data.unwrap_or_default();
        let mut present: Vec<&str> = data.keys().map(String::as_str).collect();
        present.sort_unstable();
        assert_eq!(present, keys, "Secret {name}");
        assert!(data.values().all(|value| !value.0.is_empty()), "Secret {name} has an empty key");
    }

    // Drift is corrected: a setting changed by hand (by another field manager) is put back.
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"data": {"VAULTD_HSM_KEY_LABEL": "changed-by-hand"}});
    configs.patch("vault-config", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch");
    until("the ConfigMap's setting to be restored", || async {
        let config = configs.get("vault-config").await.map_err(|error| error.to_string())?;
        let label = config.data.unwrap_or_default().remove("VAULTD_HSM_KEY_LABEL");
        check(label.as_deref() == Some("strongroom-kek-1"), || format!("{label:?}"))
    })
    .await;

    // What `kubectl get piivaults` shows.
    let table = env.kubectl(&["get", "piivaults", "-n", namespace], None).expect("kubectl get");
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.get(..3), Some(&["vault", "3", "0"][..]), "{table}");
    assert!(row.contains(&"Pending"), "{table}");
}

#[tokio::test]
async fn replicas_and_paused_changes_are_followed() {
    let Some(env) = Env::get("replicas_and_paused_changes_are_followed") else { return };
    let deployed = Deployed::new(env, "changes").await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    apply_example(env, namespace, "piivault-softhsm.yaml");
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;
    let patch = |spec: serde_json::Value| {
        let vaults = vaults.clone();
        async move {
            vaults.patch("vault", &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await.expect("patch")
        }
    };
    let replicas = |set: StatefulSet| set.spec.and_then(|spec| spec.replicas);

    // 3 → 5: the new generation is observed, but the StatefulSet grows only once its pods
    // have joined the cluster, which none can here.
    let scaled = patch(json!({"replicas": 5})).await;
    let vault = vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;
    assert_eq!(vault.status.unwrap().observed_generation, scaled.metadata.generation);
    assert_eq!(replicas(sets.get("vault").await.unwrap()), Some(3));

    // Paused: reported, and nothing is changed — a deleted child stays deleted...
    patch(json!({"paused": true})).await;
    let paused = [
        ("Ready", "False/Paused"),
        ("Available", "False/NotInitialized"),
        ("Progressing", "False/Paused"),
        ("Degraded", "False/AsExpected"),
    ];
    let vault = vault_reported(&vaults, "vault", &paused).await;
    assert_eq!(serde_json::to_value(vault.status.unwrap().phase).unwrap(), json!("Paused"));
    configs.delete("vault-config", &DeleteParams::default()).await.expect("delete the ConfigMap");
    // (a later generation observed while paused proves a reconcile ran after the deletion)
    patch(json!({"replicas": 3})).await;
    vault_reported(&vaults, "vault", &paused).await;
    assert!(configs.get_opt("vault-config").await.unwrap().is_none(), "a paused vault's child was re-created");

    // ...until the vault is resumed.
    patch(json!({"paused": false})).await;
    let vault = vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;
    let config: ConfigMap = get(client, namespace, "vault-config").await;
    assert_child_of(&config.metadata, &vault, "re-created ConfigMap");
    assert_eq!(serde_json::to_value(vault.status.unwrap().phase).unwrap(), json!("Pending"));
}

#[tokio::test]
async fn deleting_a_vault_runs_its_finalizer() {
    let Some(env) = Env::get("deleting_a_vault_runs_its_finalizer") else { return };
    let deployed = Deployed::new(env, "delete").await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    apply_example(env, namespace, "piivault-softhsm.yaml");
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    let vault = until("the finalizer and the StatefulSet", || async {
        let vault = vaults.get("vault").await.map_err(|error| error.to_string())?;
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
        let has_set = sets.get_opt("vault").await.map_err(|error| error.to_string())?.is_some();
        check(vault.finalizers().iter().any(|f| f == VAULT_FINALIZER) && has_set, || format!("{vault:?}"))?;
        Ok(vault)
    })
    .await;

    // The volumes a StatefulSet would have made for the vault's pods, and one of another app.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let set: StatefulSet = get(client, namespace, "vault").await;
    let selector = set.spec.unwrap().selector.match_labels.unwrap_or_default();
    for (name, labels) in [
        ("data-vault-0", selector.clone()),
        ("data-other-0", BTreeMap::from([("app.kubernetes.io/name".to_string(), "other".to_string())])),
    ] {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .unwrap();
        claims.create(&PostParams::default(), &claim).await.expect("create a claim");
    }

    vaults.delete("vault", &DeleteParams::default()).await.expect("delete the vault");
    until("the vault to be gone", || async {
        let left = vaults.get_opt("vault").await.map_err(|error| error.to_string())?;
        check(left.is_none(), || format!("still there: {left:?}"))
    })
    .await;
    // Its SoftHSM volumes were deleted (they wait for the PVC protection controller, which
    // does not run here, to let them go); other volumes were not.
    let ours = claims.get("data-vault-0").await.expect("claim");
    assert!(ours.metadata.deletion_timestamp.is_some(), "the vault's volume was not deleted: {ours:?}");
    let other = claims.get("data-other-0").await.expect("claim");
    assert!(other.metadata.deletion_timestamp.is_none(), "another app's volume was deleted");
    let events = events_about(client, namespace, "vault").await;
    assert!(events.contains(&("Normal".to_string(), "VolumesDeleted".to_string())), "{events:?}");
    // No garbage collector runs on this server: the children stay, owned by a vault that is
    // gone (a cluster's garbage collector deletes them through these references).
    let set: StatefulSet = get(client, namespace, "vault").await;
    assert_eq!(set.owner_references()[0].uid, vault.uid().unwrap());
}

#[tokio::test]
async fn a_vault_missing_its_root_token_secret_is_degraded_until_it_appears() {
    let Some(env) = Env::get("a_vault_missing_its_root_token_secret_is_degraded_until_it_appears") else { return };
    let deployed = Deployed::new(env, "secret").await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    let mut vault: serde_json::Value =
        strongroom_system_tests::read_yaml(&env.path("charts/strongroom-operator/examples/piivault-softhsm.yaml"));
    vault["spec"]["rootTokenSecretRef"] = json!({"name": "vault-root", "key": "token"});
    vaults.create(&PostParams::default(), &serde_json::from_value(vault).unwrap()).await.expect("create");

    let vault = vault_reported(
        &vaults,
        "vault",
        &[
            ("Ready", "False/SecretMissing"),
            ("Available", "False/NotInitialized"),
            ("Progressing", "False/WaitingForPod"),
            ("Degraded", "True/SecretMissing"),
        ],
    )
    .await;
    assert_eq!(serde_json::to_value(vault.status.unwrap().phase).unwrap(), json!("Degraded"));
    until("a Warning Event", || async {
        let events = events_about(client, namespace, "vault").await;
        check(events.contains(&("Warning".to_string(), "SecretMissing".to_string())), || format!("{events:?}"))
    })
    .await;
    // Nothing was applied.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    assert!(sets.get_opt("vault").await.unwrap().is_none());

    // Once the Secret exists the retry (with backoff) goes on.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "vault-root"},
        "stringData": {"token": "an-e2e-root-token-of-32-characters"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.expect("create the Secret");
    vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;
    get::<StatefulSet>(client, namespace, "vault").await;
    assert!(secrets.get_opt("vault-root-token").await.unwrap().is_none(), "a root token was generated anyway");
}

#[tokio::test]
async fn a_retention_policy_gets_its_status() {
    let Some(env) = Env::get("a_retention_policy_gets_its_status") else { return };
    let deployed = Deployed::new(env, "retention").await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), namespace);
    let reported = |wanted: &'static [(&'static str, &'static str)]| {
        let policies = policies.clone();
        async move {
            let wanted = expected(wanted);
            until(&format!("RetentionPolicy drop-phone to report {wanted:?}"), || async {
                let policy = policies.get("drop-phone").await.map_err(|error| error.to_string())?;
                let status = policy.status.clone().ok_or("no status yet")?;
                let seen = summary(&status.conditions);
                check(status.observed_generation == policy.metadata.generation && seen == wanted, || {
                    format!("{status:?}")
                })?;
                Ok(policy)
            })
            .await
        }
    };

    // Before its vault exists: waiting for it, nothing applied.
    apply_example(env, namespace, "retention-drop-phone.yaml");
    let policy = reported(&[("Ready", "False/VaultNotFound"), ("Degraded", "True/VaultNotFound")]).await;
    assert!(policy.finalizers().iter().any(|f| f == POLICY_FINALIZER), "{:?}", policy.finalizers());
    let status = policy.status.unwrap();
    assert!(status.cron_job.is_none() && status.token.is_none() && status.next_run.is_none(), "{status:?}");

    // Any change to the policy makes the operator look again (rather than in 30 s).
    let kick = |n: u32| {
        let policies = policies.clone();
        async move {
            let patch = Patch::Merge(json!({"metadata": {"annotations": {"e2e/kick": n.to_string()}}}));
            policies.patch("drop-phone", &PatchParams::default(), &patch).await.expect("annotate");
        }
    };

    // A new vault that has not generated its root token yet (paused: it generates nothing)
    // is waited for — not reported as a lost Secret to restore from a backup.
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    let mut vault: serde_json::Value =
        strongroom_system_tests::read_yaml(&env.path("charts/strongroom-operator/examples/piivault-softhsm.yaml"));
    vault["spec"]["paused"] = json!(true);
    vaults.create(&PostParams::default(), &serde_json::from_value(vault).unwrap()).await.expect("create");
    kick(1).await;
    let policy = reported(&[("Ready", "False/VaultNotReady"), ("Degraded", "True/VaultNotReady")]).await;
    let ready = condition(&policy.status.as_ref().unwrap().conditions, "Ready").unwrap().message.clone();
    assert!(ready.contains("has not generated its root token"), "{ready}");

    // Resumed, the vault generates its Secrets; the policy needs a token from the vault, and
    // no vault pod answers here.
    vaults.patch("vault", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}}))).await.unwrap();
    get::<Secret>(client, namespace, "vault-root-token").await;
    kick(2).await;
    let policy = reported(&[("Ready", "False/VaultUnreachable"), ("Degraded", "True/VaultUnreachable")]).await;
    let degraded = condition(&policy.status.as_ref().unwrap().conditions, "Degraded").unwrap().message.clone();
    assert!(degraded.contains("vault.") && degraded.contains(".svc:3000"), "{degraded}");
    until("a Warning Event", || async {
        let events = events_about(client, namespace, "drop-phone").await;
        check(events.contains(&("Warning".to_string(), "VaultUnreachable".to_string())), || format!("{events:?}"))
    })
    .await;

    // Deleting it finishes: no token was issued, so there is none to revoke.
    policies.delete("drop-phone", &DeleteParams::default()).await.expect("delete");
    until("the policy to be gone", || async {
        let left = policies.get_opt("drop-phone").await.map_err(|error| error.to_string())?;
        check(left.is_none(), || format!("{left:?}"))
    })
    .await;
}
