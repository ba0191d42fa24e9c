//! The committed CRD YAML (`crds/` and the Helm chart's `crds/`) is what the Rust types
//! generate. Regenerate with `cargo run -p strongroom-operator --bin crdgen`.

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use strongroom_operator::crd;

/// The CRD generated into `file`.
fn generated(file: &str) -> CustomResourceDefinition {
    crd::all().into_iter().find(|(name, _)| name == file).map(|(_, definition)| definition).expect("generated")
}

/// `(name, type)` of a version's printer columns.
fn columns(version: &CustomResourceDefinitionVersion) -> Vec<(&str, &str)> {
    let columns = version.additional_printer_columns.iter().flatten();
    columns.map(|column| (column.name.as_str(), column.type_.as_str())).collect()
}

#[test]
fn crds_are_current() {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, definition) in crd::all() {
        let expected = crd::to_yaml(&definition).expect("renders");
        for dir in crd::OUTPUT_DIRS {
            let path = workspace.join(dir).join(&file);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == expected,
                "{} is out of date: run `cargo run -p strongroom-operator --bin crdgen`",
                path.display()
            );
        }
    }
}

#[test]
fn the_piivault_crd_has_its_short_name_columns_and_status() {
    let definition = generated("piivaults.strongroom.dev.yaml");
    assert_eq!(definition.spec.group, "strongroom.dev");
    assert_eq!(definition.spec.names.short_names, Some(vec!["pvault".to_string()]));
    let version = &definition.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    // kubectl prints a date as an age (a future one as <invalid>): the next backup is a time.
    assert_eq!(
        columns(version),
        vec![
            ("Replicas", "integer"),
            ("Ready", "integer"),
            ("Leader", "string"),
            ("Phase", "string"),
            ("Last Backup", "date"),
            ("Next Backup", "string"),
            ("Age", "date")
        ]
    );
    assert!(version.subresources.as_ref().unwrap().status.is_some());
}

#[test]
fn the_retention_policy_crd_has_its_short_name_columns_status_and_rules() {
    let definition = generated("retentionpolicies.strongroom.dev.yaml");
    assert_eq!(definition.spec.group, "strongroom.dev");
    assert_eq!(definition.spec.scope, "Namespaced");
    assert_eq!(definition.spec.names.short_names, Some(vec!["retpol".to_string()]));
    assert_eq!(definition.spec.names.categories, Some(vec!["strongroom".to_string()]));
    let version = &definition.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let columns: Vec<_> =
        version.additional_printer_columns.iter().flatten().map(|column| column.name.as_str()).collect();
    assert_eq!(columns, vec!["Vault", "Schedule", "Suspend", "Dry Run", "Last Run", "Changed", "Next Run", "Age"]);
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    let rules: Vec<&str> = spec["properties"]["rules"]["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["message"].as_str().unwrap())
        .collect();
    for message in
        ["dropFields and pseudonymize need fields", "deleteApp needs match.app", "startExpiration needs expiration"]
    {
        assert!(rules.contains(&message), "{rules:?}");
    }
    let required: Vec<&str> = spec["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(required, vec!["rules", "schedule", "vaultRef"]);
    let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
    for field in ["observedGeneration", "conditions", "lastRun", "nextRun", "token"] {
        assert!(status.get(field).is_some(), "status.{field}");
    }
}

#[test]
fn the_piivault_backup_crd_has_its_short_name_columns_and_status() {
    let definition = generated("piivaultbackups.strongroom.dev.yaml");
    assert_eq!(definition.spec.scope, "Namespaced");
    assert_eq!(definition.spec.names.short_names, Some(vec!["pvbackup".to_string()]));
    assert_eq!(definition.spec.names.categories, Some(vec!["strongroom".to_string()]));
    let version = &definition.spec.versions[0];
    assert_eq!(
        columns(version),
        vec![("Vault", "string"), ("Phase", "string"), ("Backup", "string"), ("Subjects", "integer"), ("Age", "date")]
    );
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
    let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
    for field in ["phase", "backupId", "subjects", "bytes", "startedAt", "completedAt", "message", "job"] {
        assert!(status.get(field).is_some(), "status.{field}");
    }
}
