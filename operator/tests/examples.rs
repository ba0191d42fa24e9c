//! The chart's example resources are valid: each parses as its kind, passes the CRD's CEL
//! rules as the API server would evaluate them, and — for RetentionPolicies — is a policy
//! the vault accepts (`PolicySpec::validate`) when read as `vaultd minimize` reads it.

use std::path::PathBuf;

use kube::core::cel::{ValidationErrors, Validator};
use kube::CustomResourceExt;
use serde_json::Value;
use strongroom_admin_api::retention::{Action, PolicyDocument};
use strongroom_operator::crd::{PiiVault, RetentionPolicy};

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/strongroom-operator/examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The object as the API server's CEL sees it: `null` fields are absent.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The CRD's CEL rules, evaluated client-side (kube's `cel` feature) as the API server would.
fn validate_cel(policy: &RetentionPolicy) -> Result<(), ValidationErrors> {
    let crd = RetentionPolicy::crd();
    let schema =
        serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref()).unwrap();
    Validator::new().validate(&schema, &without_nulls(serde_json::to_value(policy).unwrap()), None)
}

/// A RetentionPolicy example as the API server would store it (with a namespace).
fn policy(name: &str) -> RetentionPolicy {
    let mut policy: RetentionPolicy = serde_saphyr::from_str(&example(name)).expect("a RetentionPolicy");
    policy.metadata.namespace = Some("pii".into());
    assert!(validate_cel(&policy).is_ok(), "{name}: {:?}", validate_cel(&policy));
    assert_eq!(policy.spec.to_policy_spec().validate(), Ok(()), "{name}");
    let document: PolicyDocument = serde_saphyr::from_str(&example(name)).expect("a policy file");
    assert_eq!(document.spec.validate(), Ok(()), "{name}");
    policy
}

#[test]
fn the_retention_examples_are_valid_policies_for_the_example_vault() {
    let vault: PiiVault = serde_saphyr::from_str(&example("piivault-softhsm.yaml")).expect("a PiiVault");
    let vault_name = vault.metadata.name.expect("named");

    let drop_phone = policy("retention-drop-phone.yaml");
    assert_eq!(drop_phone.spec.rules[0].action, Action::DropFields);
    assert_eq!(drop_phone.spec.rules[0].fields, ["phone"]);
    assert_eq!(drop_phone.spec.rules[0].selector.older_than.as_deref(), Some("90d"));

    let forget = policy("retention-forget-inactive.yaml");
    assert_eq!(forget.spec.rules[0].action, Action::Delete);
    assert_eq!(forget.spec.rules[0].selector.older_than.as_deref(), Some("730d"));
    assert!(forget.spec.dry_run, "the destructive example starts as a dry run");

    let trials = policy("retention-expire-trials.yaml");
    assert_eq!(trials.spec.rules[0].action, Action::StartExpiration);
    assert_eq!(trials.spec.rules[0].selector.app.as_deref(), Some("trial"));
    assert_eq!(trials.spec.rules[0].expiration.as_deref(), Some("30d"));

    for policy in [drop_phone, forget, trials] {
        assert_eq!(policy.spec.vault_ref.name, vault_name, "the examples work together");
    }
}
