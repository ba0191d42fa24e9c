//! The ConfigMap holding the policy file that `vaultd minimize --policy` reads: the whole
//! resource (apiVersion, kind, name, namespace, spec) as YAML, so the vault sees exactly
//! the rules — and the `dryRun` — the policy states, and records the run under
//! `namespace/name`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde::Serialize;

use super::child_meta;
use crate::crd::{RetentionPolicy, RetentionPolicySpec};
use crate::retention::names::{PolicyNames, POLICY_KEY};
use crate::Error;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyFile<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: PolicyFileMetadata,
    spec: &'a RetentionPolicySpec,
}

#[derive(Serialize)]
struct PolicyFileMetadata {
    name: String,
    namespace: String,
}

/// The policy file's YAML.
pub fn policy_file(policy: &RetentionPolicy) -> Result<String, Error> {
    let file = PolicyFile {
        api_version: "strongroom.dev/v1alpha1",
        kind: "RetentionPolicy",
        metadata: PolicyFileMetadata { name: policy.name_any(), namespace: policy.namespace().unwrap_or_default() },
        spec: &policy.spec,
    };
    serde_saphyr::to_string(&file).map_err(|error| Error::Render { what: "the policy file", reason: error.to_string() })
}

pub fn config_map(policy: &RetentionPolicy) -> Result<ConfigMap, Error> {
    let names = PolicyNames::of(policy);
    Ok(ConfigMap {
        metadata: child_meta(policy, names.config_map())?,
        data: Some(BTreeMap::from([(POLICY_KEY.to_string(), policy_file(policy)?)])),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use strongroom_admin_api::retention::PolicyDocument;

    use super::super::test_support::assert_owned_by_policy;
    use super::*;
    use crate::retention::test_support::issue_example;

    #[test]
    fn the_policy_file_is_the_resource_as_vaultd_reads_it() {
        let mut policy = issue_example();
        policy.spec.dry_run = true;
        let map = config_map(&policy).unwrap();
        assert_eq!(map.metadata.name.as_deref(), Some("retention-drop-phone-policy"));
        assert_owned_by_policy(&map.metadata);
        let yaml = &map.data.as_ref().unwrap()[POLICY_KEY];
        assert!(yaml.contains("kind: RetentionPolicy"), "{yaml}");
        let document: PolicyDocument = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(document.policy_name().as_deref(), Some("shop/drop-phone"));
        assert_eq!(document.spec, policy.spec.to_policy_spec());
        assert!(document.spec.dry_run, "dryRun travels in the file");
        assert_eq!(document.spec.validate(), Ok(()));
    }

    #[test]
    fn schedules_and_names_that_look_like_yaml_syntax_survive() {
        let mut policy = issue_example();
        policy.spec.schedule = "*/15 * * * *".into();
        policy.spec.rules[0].fields = vec!["null".into(), "#x".into(), "a: b".into()];
        let yaml = policy_file(&policy).unwrap();
        let document: PolicyDocument = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(document.spec, policy.spec.to_policy_spec(), "{yaml}");
    }
}
