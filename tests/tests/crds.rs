//! The CRDs of `crds/` on a real API server: they apply, the example resources pass their
//! schemas, and their CEL rules refuse bad specs — on create and, for the immutable fields,
//! on update — with the rule's message.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
use strongroom_system_tests::{read_yaml, Env, TEST_MANAGER};

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("strongroom.dev", "v1alpha1", kind))
}

fn api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource(kind))
}

/// An example of `charts/strongroom-operator/examples/`, as JSON.
fn example(env: &Env, file: &str) -> Value {
    read_yaml(&env.path("charts/strongroom-operator/examples").join(file))
}

/// Sets `pointer` (a JSON pointer, parents created) in `value`.
fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    let mut at = &mut value;
    for part in pointer.trim_start_matches('/').split('/') {
        if at.get(part).is_none() {
            at[part] = json!({});
        }
        at = &mut at[part];
    }
    *at = new;
    value
}

async fn create(api: &Api<DynamicObject>, object: &Value) -> Result<DynamicObject, String> {
    let object: DynamicObject = serde_json::from_value(object.clone()).expect("an object");
    api.create(&PostParams::default(), &object).await.map_err(|error| error.to_string())
}

/// Creating `object` fails, with `message` in the API server's answer.
async fn refused(api: &Api<DynamicObject>, object: &Value, message: &str) {
    match create(api, object).await {
        Ok(_) => panic!("accepted, though it breaks the rule \"{message}\": {object}"),
        Err(error) => assert!(error.contains(message), "refused, but not with \"{message}\": {error}"),
    }
}

#[tokio::test]
async fn the_crds_apply_and_the_examples_pass_their_schemas() {
    let Some(env) = Env::get("the_crds_apply_and_the_examples_pass_their_schemas") else { return };
    let client = env.admin().await;
    env.apply_crds(&client).await;
    let namespace = env.namespace(&client, "crds").await;
    for (kind, file) in [
        ("PiiVault", "piivault-softhsm.yaml"),
        ("PiiVault", "piivault-vendor-hsm.yaml"),
        ("PiiVault", "piivault-from-backup.yaml"),
        ("RetentionPolicy", "retention-drop-phone.yaml"),
        ("RetentionPolicy", "retention-expire-trials.yaml"),
        ("RetentionPolicy", "retention-forget-inactive.yaml"),
    ] {
        let created = create(&api(&client, &namespace, kind), &example(env, file))
            .await
            .unwrap_or_else(|error| panic!("{file} refused: {error}"));
        // Defaults from the schema are filled in by the server.
        if file == "retention-drop-phone.yaml" {
            assert_eq!(created.data["spec"]["suspend"], json!(false), "{file}");
            assert_eq!(created.data["spec"]["dryRun"], json!(false), "{file}");
        }
    }
    // The printer columns are served.
    let table = env.kubectl(&["get", "piivaults", "-n", &namespace], None).expect("kubectl get piivaults");
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "REPLICAS", "READY", "LEADER", "PHASE", "LAST", "BACKUP", "NEXT", "BACKUP", "AGE"],
        "{table}"
    );
    let table = env.kubectl(&["get", "retpol", "-n", &namespace], None).expect("kubectl get retpol");
    assert!(table.starts_with("NAME") && table.contains("drop-phone") && table.contains("0 3 * * *"), "{table}");
}

#[tokio::test]
async fn cel_rules_refuse_bad_piivaults() {
    let Some(env) = Env::get("cel_rules_refuse_bad_piivaults") else { return };
    let client = env.admin().await;
    env.apply_crds(&client).await;
    let namespace = env.namespace(&client, "cel-vault").await;
    let vaults = api(&client, &namespace, "PiiVault");
    let good = example(env, "piivault-softhsm.yaml");

    for replicas in [0, 2, 4, 7] {
        refused(&vaults, &with(good.clone(), "/spec/replicas", json!(replicas)), "replicas must be 1, 3 or 5").await;
    }
    let both = with(
        good.clone(),
        "/spec/hsm/pkcs11",
        json!({"modulePath": "/usr/lib/p11.so", "pinSecretRef": {"name": "pin", "key": "pin"}}),
    );
    refused(&vaults, &both, "set exactly one of hsm.softhsm and hsm.pkcs11").await;
    let mut neither = good.clone();
    neither["spec"]["hsm"].as_object_mut().unwrap().remove("softhsm");
    refused(&vaults, &neither, "set exactly one of hsm.softhsm and hsm.pkcs11").await;
    let unacknowledged = with(good.clone(), "/spec/hsm/softhsm", json!({}));
    refused(&vaults, &unacknowledged, "acknowledgeDevelopmentOnly: true").await;
    let declined = with(good.clone(), "/spec/hsm/softhsm/acknowledgeDevelopmentOnly", json!(false));
    refused(&vaults, &declined, "acknowledgeDevelopmentOnly: true").await;
    let backup =
        json!({"destination": "s3://backups/pii/vault", "credentialsSecret": "backup-s3", "schedule": "0 2 * * *"});
    let mut to_disk = backup.clone();
    to_disk["destination"] = json!("/srv/backups");
    refused(&vaults, &with(good.clone(), "/spec/backup", to_disk), "backup.destination must be s3://bucket/prefix")
        .await;
    let mut daily = backup.clone();
    daily["schedule"] = json!("@daily");
    refused(&vaults, &with(good.clone(), "/spec/backup", daily), "backup.schedule must be a cron schedule").await;
    let mut drill = backup.clone();
    drill["restoreDrill"] = json!({"schedule": "weekly"});
    refused(&vaults, &with(good.clone(), "/spec/backup", drill), "backup.restoreDrill.schedule must be a cron").await;

    let restore = json!({"fromBackup": {"source": "/srv/backups", "credentialsSecret": "backup-s3"}});
    refused(&vaults, &with(good.clone(), "/spec/bootstrap", restore), "fromBackup.source must be s3://bucket/prefix")
        .await;

    // In SoftHSM mode the restore needs the source's KEK.
    let restore = json!({"fromBackup": {"source": "s3://backups/pii/old", "credentialsSecret": "backup-s3"}});
    refused(&vaults, &with(good.clone(), "/spec/bootstrap", restore.clone()), "softhsmSecret names the source").await;

    // Storage and the bootstrap are fixed once created.
    let mut restore = restore;
    restore["fromBackup"]["softhsmSecret"] = json!("old-softhsm");
    let good = with(with(good, "/spec/backup", backup), "/spec/bootstrap", restore);
    create(&vaults, &good).await.expect("the example, with backups and a bootstrap, is accepted");
    let params = PatchParams::default();
    let other_backup = Patch::Merge(json!({"spec": {"bootstrap": {"fromBackup": {"backupId": "20261201T020000Z-1"}}}}));
    let error = vaults.patch("vault", &params, &other_backup).await.expect_err("bootstrap changed");
    assert!(error.to_string().contains("bootstrap is fixed at creation"), "{error}");
    let removed = Patch::Merge(json!({"spec": {"bootstrap": null}}));
    let error = vaults.patch("vault", &params, &removed).await.expect_err("bootstrap removed");
    assert!(error.to_string().contains("bootstrap is fixed at creation"), "{error}");
    let resize = Patch::Merge(json!({"spec": {"storage": {"size": "20Gi"}}}));
    let error = vaults.patch("vault", &params, &resize).await.expect_err("storage.size changed");
    assert!(error.to_string().contains("storage.size is immutable"), "{error}");
    let class = Patch::Merge(json!({"spec": {"storage": {"storageClassName": "fast"}}}));
    let error = vaults.patch("vault", &params, &class).await.expect_err("storage class set");
    assert!(error.to_string().contains("storage.storageClassName is immutable"), "{error}");
    // Other fields change freely.
    vaults
        .patch("vault", &params, &Patch::Merge(json!({"spec": {"replicas": 5, "paused": true}})))
        .await
        .expect("replicas and paused change");
    // Status is a subresource: a spec write does not set it.
    let applied = vaults
        .patch(
            "vault",
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(
                json!({"apiVersion": "strongroom.dev/v1alpha1", "kind": "PiiVault", "status": {"phase": "Running"}}),
            ),
        )
        .await
        .expect("apply");
    assert!(applied.data.get("status").is_none(), "status written through the main resource: {:?}", applied.data);
}

#[tokio::test]
async fn cel_rules_refuse_bad_retention_policies() {
    let Some(env) = Env::get("cel_rules_refuse_bad_retention_policies") else { return };
    let client = env.admin().await;
    env.apply_crds(&client).await;
    let namespace = env.namespace(&client, "cel-policy").await;
    let policies = api(&client, &namespace, "RetentionPolicy");
    let good = example(env, "retention-drop-phone.yaml");
    let rule = |value: Value| with(good.clone(), "/spec/rules", json!([value]));

    for schedule in ["daily", "0 3 * *", "@daily", ""] {
        refused(
            &policies,
            &with(good.clone(), "/spec/schedule", json!(schedule)),
            "schedule must be a cron schedule of 5 space-separated fields",
        )
        .await;
    }
    for action in ["dropFields", "pseudonymize"] {
        let bad = rule(json!({"name": "r", "match": {"olderThan": "90d"}, "action": action}));
        refused(&policies, &bad, "dropFields and pseudonymize need fields").await;
        let bad = rule(json!({"name": "r", "match": {"olderThan": "90d"}, "action": action, "fields": []}));
        refused(&policies, &bad, "dropFields and pseudonymize need fields").await;
    }
    refused(
        &policies,
        &rule(json!({"name": "r", "match": {"olderThan": "90d"}, "action": "deleteApp"})),
        "deleteApp needs match.app",
    )
    .await;
    refused(
        &policies,
        &rule(json!({"name": "r", "match": {"olderThan": "90d"}, "action": "startExpiration"})),
        "startExpiration needs expiration",
    )
    .await;
    refused(
        &policies,
        &rule(json!({"name": "r", "match": {"olderThan": "90d"}, "action": "delete", "fields": ["phone"]})),
        "only dropFields and pseudonymize take fields",
    )
    .await;
    refused(
        &policies,
        &rule(json!({"name": "r", "match": {"olderThan": "90days"}, "action": "delete"})),
        "match.olderThan must be a duration",
    )
    .await;
    refused(&policies, &with(good.clone(), "/metadata/name", json!("x".repeat(43))), "at most 42 characters").await;
    create(&policies, &with(good.clone(), "/metadata/name", json!("x".repeat(42)))).await.expect("42 characters");

    // The vault a policy belongs to never changes.
    create(&policies, &good).await.expect("the example is accepted");
    let error = policies
        .patch("drop-phone", &PatchParams::default(), &Patch::Merge(json!({"spec": {"vaultRef": {"name": "other"}}})))
        .await
        .expect_err("vaultRef changed");
    assert!(error.to_string().contains("vaultRef is immutable"), "{error}");
    policies
        .patch(
            "drop-phone",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true, "schedule": "30 4 * * 1"}})),
        )
        .await
        .expect("schedule and suspend change");
}

#[tokio::test]
async fn cel_rules_refuse_bad_piivault_backups() {
    let Some(env) = Env::get("cel_rules_refuse_bad_piivault_backups") else { return };
    let client = env.admin().await;
    env.apply_crds(&client).await;
    let namespace = env.namespace(&client, "cel-backup").await;
    let backups = api(&client, &namespace, "PiiVaultBackup");
    let good = json!({
        "apiVersion": "strongroom.dev/v1alpha1",
        "kind": "PiiVaultBackup",
        "metadata": {"name": "before-upgrade"},
        "spec": {"vault": "vault"},
    });
    refused(&backups, &with(good.clone(), "/spec/vault", json!("")), "should be at least 1 chars long").await;
    refused(&backups, &with(good.clone(), "/metadata/name", json!("x".repeat(57))), "at most 56 characters").await;
    create(&backups, &with(good.clone(), "/metadata/name", json!("x".repeat(56)))).await.expect("56 characters");

    // One backup of one vault: the spec never changes.
    create(&backups, &good).await.expect("a backup is accepted");
    let error = backups
        .patch("before-upgrade", &PatchParams::default(), &Patch::Merge(json!({"spec": {"vault": "other"}})))
        .await
        .expect_err("spec.vault changed");
    assert!(error.to_string().contains("the spec of a PiiVaultBackup is immutable"), "{error}");
    let table = env.kubectl(&["get", "pvbackup", "-n", &namespace], None).expect("kubectl get pvbackup");
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "VAULT", "PHASE", "BACKUP", "SUBJECTS", "AGE"], "{table}");
}
