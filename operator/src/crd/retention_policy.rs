//! The `RetentionPolicy` custom resource: rules that minimise a vault's personal data on a
//! schedule (drop a field after 90 days, forget inactive subjects, start expirations).
//!
//! The rules are the admin API's own types ([`strongroom_admin_api::retention::Rule`](RetentionRule)), so
//! the CRD, the policy file `vaultd minimize --policy` reads and the vault's run API are one
//! schema: the operator writes the resource itself, as YAML, into the policy file.
//!
//! The schema of those shared types carries no Kubernetes-specific bounds, so
//! [`rules_schema`] adds them here (item and length limits keep the CEL rules' estimated
//! cost within the API server's budget; rule names are the list's map key, so they are
//! unique). The CEL rules check what [`PolicySpec::validate`] checks that a schema cannot:
//! each action has what it needs, and durations look like `90d`. The shared types'
//! optional fields are nullable (they serialise as `null`); the API server treats a `null`
//! as an absent field in CEL (`has()` is false, and comparing with `null` does not even
//! compile), so the rules only use `has()`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strongroom_admin_api::retention::{PolicySpec, Rule as RetentionRule, VaultRef, MAX_FIELDS, MAX_RULES};

/// Longest policy name: the CronJob is named `retention-<name>`, and a CronJob's name may
/// have at most 52 characters (its Jobs append an 11-character suffix).
pub const MAX_NAME_LEN: usize = 42;

/// Rules that minimise the personal data in a `PiiVault`, run on a schedule by a CronJob.
// Several `printcolumn(type_ = ...)` entries look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strongroom.dev",
    version = "v1alpha1",
    kind = "RetentionPolicy",
    plural = "retentionpolicies",
    shortname = "retpol",
    category = "strongroom",
    namespaced,
    status = "RetentionPolicyStatus",
    derive = "PartialEq",
    doc = "Retention rules applied to a Strongroom vault on a schedule (a CronJob running `vaultd minimize`).",
    validation = Rule::new("size(self.metadata.name) <= 42").message("the name of a RetentionPolicy has at most 42 characters (its CronJob is retention-<name>)"),
    printcolumn(name = "Vault", type_ = "string", json_path = ".spec.vaultRef.name"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Dry Run", type_ = "boolean", json_path = ".spec.dryRun"),
    printcolumn(name = "Last Run", type_ = "date", json_path = ".status.lastRun.time"),
    printcolumn(name = "Changed", type_ = "integer", json_path = ".status.lastRun.changed"),
    // A string, not a date: kubectl prints a date as an age, and a future one as <invalid>.
    printcolumn(name = "Next Run", type_ = "string", json_path = ".status.nextRun"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicySpec {
    /// The `PiiVault` in the policy's namespace whose data the rules apply to. Fixed at
    /// creation: the policy's access token belongs to that vault.
    #[x_kube(validation = Rule::new("self.name == oldSelf.name").message("vaultRef is immutable"))]
    pub vault_ref: VaultRef,

    /// When runs start: a cron schedule of five space-separated fields (minute hour
    /// day-of-month month day-of-week), in UTC.
    #[schemars(length(min = 9, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[^ ]+( +[^ ]+){4}$')").message("schedule must be a cron schedule of 5 space-separated fields, e.g. \"0 3 * * *\""))]
    pub schedule: String,

    /// Start no new runs (the CronJob is suspended); a run already started completes.
    #[serde(default)]
    pub suspend: bool,

    /// Report what would change without changing anything.
    #[serde(default)]
    pub dry_run: bool,

    /// Applied in order; a subject one rule forgets is not seen by the rules after it.
    #[schemars(schema_with = "rules_schema")]
    #[x_kube(
        validation = Rule::new("self.all(r, !(r.action in ['dropFields', 'pseudonymize']) || (has(r.fields) && size(r.fields) > 0))").message("dropFields and pseudonymize need fields"),
        validation = Rule::new("self.all(r, r.action in ['dropFields', 'pseudonymize'] || !has(r.fields) || size(r.fields) == 0)").message("only dropFields and pseudonymize take fields"),
        validation = Rule::new("self.all(r, r.action != 'deleteApp' || (has(r.match.app) && size(r.match.app) > 0))").message("deleteApp needs match.app"),
        validation = Rule::new("self.all(r, r.action != 'startExpiration' || has(r.expiration))").message("startExpiration needs expiration"),
        validation = Rule::new("self.all(r, r.action == 'startExpiration' || !has(r.expiration))").message("only startExpiration takes expiration"),
        validation = Rule::new("self.all(r, !has(r.match.olderThan) || r.match.olderThan.matches('^[0-9]{1,6}[smhd]$'))").message("match.olderThan must be a duration such as 90d, 12h, 6m (months) or 30s"),
        validation = Rule::new("self.all(r, !has(r.expiration) || r.expiration.matches('^[0-9]{1,6}[smhd]$'))").message("expiration must be a duration such as 30d")
    )]
    pub rules: Vec<RetentionRule>,
}

/// The schema of `rules`: the admin API's, with the bounds Kubernetes needs.
fn rules_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<RetentionRule>>::json_schema(generator);
    bound_rules(schema.as_object_mut());
    schema
}

/// Adds item and length limits (the ones [`PolicySpec::validate`] enforces) and makes the
/// rule name the list's key.
fn bound_rules(schema: Option<&mut serde_json::Map<String, Value>>) {
    let Some(schema) = schema else { return };
    schema.insert("minItems".into(), json!(1));
    schema.insert("maxItems".into(), json!(MAX_RULES));
    schema.insert("x-kubernetes-list-type".into(), json!("map"));
    schema.insert("x-kubernetes-list-map-keys".into(), json!(["name"]));
    let Some(rule) = schema.get_mut("items").and_then(Value::as_object_mut) else { return };
    let Some(properties) = rule.get_mut("properties").and_then(Value::as_object_mut) else { return };
    let bound_string = |property: Option<&mut Value>, max: usize| {
        if let Some(property) = property.and_then(Value::as_object_mut) {
            property.insert("maxLength".into(), json!(max));
        }
    };
    let bound_list = |property: Option<&mut Value>| {
        if let Some(property) = property.and_then(Value::as_object_mut) {
            property.insert("maxItems".into(), json!(MAX_FIELDS));
            if let Some(items) = property.get_mut("items").and_then(Value::as_object_mut) {
                items.insert("maxLength".into(), json!(128));
            }
        }
    };
    bound_string(properties.get_mut("name"), 63);
    bound_string(properties.get_mut("expiration"), 7);
    bound_list(properties.get_mut("fields"));
    if let Some(selector) =
        properties.get_mut("match").and_then(|m| m.get_mut("properties")).and_then(Value::as_object_mut)
    {
        bound_string(selector.get_mut("olderThan"), 7);
        bound_string(selector.get_mut("app"), 128);
        bound_list(selector.get_mut("hasFields"));
    }
}

impl RetentionPolicySpec {
    /// The spec as the vault reads it from the policy file.
    pub fn to_policy_spec(&self) -> PolicySpec {
        PolicySpec {
            vault_ref: Some(self.vault_ref.clone()),
            schedule: Some(self.schedule.clone()),
            suspend: self.suspend,
            dry_run: self.dry_run,
            rules: self.rules.clone(),
        }
    }
}

/// What the operator observed: the last run the vault recorded, the next scheduled one,
/// and the access token it issued for the runs.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the CronJob and its token are in place and the vault answers) and
    /// `Degraded` (what needs attention: a missing vault, a failed run, ...).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The latest run the vault recorded for this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// When the CronJob starts the next run (absent while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Time>,
    /// The CronJob that runs the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_job: Option<String>,
    /// The vault token the runs use (its id, never its secret): revoked when the policy is
    /// deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<IssuedToken>,
}

/// The latest run, as the vault's run history reports it.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// When the run finished.
    pub time: Time,
    /// When it started.
    pub started: Time,
    /// Subject-rule pairs that matched.
    pub matched: i64,
    /// How many of those were changed (or, in a dry run, would have been).
    pub changed: i64,
    pub dry_run: bool,
    /// The audit event that records the run (`GET /v1/sys/audit/...` shows it).
    pub audit_event_id: String,
}

/// An access token the operator created in the vault for this policy.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    /// The token's id (`tok-…`): audit events name it as the actor of each run.
    pub id: String,
    /// The Secret (key `token`) holding the bearer secret the Jobs mount.
    pub secret_name: String,
    /// The uid of the `PiiVault` that issued it (a vault created again under the same
    /// name does not know it).
    pub vault_uid: String,
}

#[cfg(test)]
mod tests {
    //! The CEL rules, evaluated client-side as the API server would (kube's `cel` feature),
    //! and the round trip into the policy file format.

    use kube::core::cel::{ValidationErrors, Validator};
    use kube::CustomResourceExt;
    use strongroom_admin_api::retention::{Action, PolicyDocument, RuleMatch, Since};

    use super::*;
    use crate::retention::test_support::{issue_example, rule};

    /// The object as the API server's CEL sees it: `null` fields are absent.
    fn without_nulls(value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
            other => other,
        }
    }

    /// The CRD's CEL rules, evaluated client-side (kube's `cel` feature) as the API server
    /// evaluates them.
    pub(crate) fn validate_cel_update(policy: &RetentionPolicy, old: &RetentionPolicy) -> Result<(), ValidationErrors> {
        validate(policy, Some(old))
    }

    pub(crate) fn validate_cel(policy: &RetentionPolicy) -> Result<(), ValidationErrors> {
        validate(policy, None)
    }

    fn validate(policy: &RetentionPolicy, old: Option<&RetentionPolicy>) -> Result<(), ValidationErrors> {
        let crd = RetentionPolicy::crd();
        let schema =
            serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref()).unwrap();
        let object = without_nulls(serde_json::to_value(policy).unwrap());
        let old = old.map(|old| without_nulls(serde_json::to_value(old).unwrap()));
        Validator::new().validate(&schema, &object, old.as_ref())
    }

    fn rejected(policy: &RetentionPolicy, message: &str) {
        let error = validate_cel(policy).expect_err("rejected");
        assert!(format!("{error:?}").contains(message), "{message}: {error:?}");
    }

    #[test]
    fn the_issue_example_is_valid() {
        let policy = issue_example();
        assert!(validate_cel(&policy).is_ok(), "{:?}", validate_cel(&policy));
        assert_eq!(policy.spec.to_policy_spec().validate(), Ok(()));
    }

    #[test]
    fn each_action_needs_what_it_uses() {
        let with = |rule: RetentionRule| {
            let mut policy = issue_example();
            policy.spec.rules = vec![rule];
            policy
        };
        rejected(&with(rule("r", Action::DropFields)), "dropFields and pseudonymize need fields");
        rejected(&with(rule("r", Action::Pseudonymize)), "dropFields and pseudonymize need fields");
        rejected(&with(rule("r", Action::DeleteApp)), "deleteApp needs match.app");
        rejected(&with(rule("r", Action::StartExpiration)), "startExpiration needs expiration");
        let mut delete_with_fields = rule("r", Action::Delete);
        delete_with_fields.fields = vec!["phone".into()];
        rejected(&with(delete_with_fields), "only dropFields and pseudonymize take fields");
        let mut delete_with_expiration = rule("r", Action::Delete);
        delete_with_expiration.expiration = Some("30d".into());
        rejected(&with(delete_with_expiration), "only startExpiration takes expiration");

        let mut delete_app = rule("r", Action::DeleteApp);
        delete_app.selector.app = Some("trial".into());
        let mut expire = rule("r", Action::StartExpiration);
        expire.expiration = Some("30d".into());
        let mut pseudonymize = rule("r", Action::Pseudonymize);
        pseudonymize.fields = vec!["email".into()];
        for good in [delete_app, expire, pseudonymize, rule("r", Action::Delete)] {
            let policy = with(good);
            assert!(validate_cel(&policy).is_ok(), "{:?}", validate_cel(&policy));
            assert_eq!(policy.spec.to_policy_spec().validate(), Ok(()));
        }
    }

    #[test]
    fn durations_match_the_admin_api_pattern() {
        let mut policy = issue_example();
        policy.spec.rules[1].selector.older_than = Some("2 years".into());
        rejected(&policy, "match.olderThan must be a duration");
        let mut policy = issue_example();
        let mut expire = rule("expire", Action::StartExpiration);
        expire.expiration = Some("30 days".into());
        policy.spec.rules = vec![expire];
        rejected(&policy, "expiration must be a duration");
        assert_eq!(strongroom_admin_api::retention::DURATION_PATTERN, "^[0-9]{1,6}[smhd]$", "the CEL rules copy it");
    }

    #[test]
    fn the_schedule_has_five_fields() {
        for bad in ["0 3 * *", "0 0 3 * * *", " 0 3 * * *", "@daily"] {
            let mut policy = issue_example();
            policy.spec.schedule = bad.into();
            rejected(&policy, "schedule must be a cron schedule of 5 space-separated fields");
        }
        let mut policy = issue_example();
        policy.spec.schedule = "*/15 1-5 1,15 * MON-FRI".into();
        assert!(validate_cel(&policy).is_ok());
    }

    #[test]
    fn printer_columns_show_past_times_as_ages_and_the_next_run_as_a_time() {
        let crd = RetentionPolicy::crd();
        let columns = crd.spec.versions[0].additional_printer_columns.clone().unwrap();
        let kind = |name: &str| columns.iter().find(|c| c.name == name).map(|c| c.type_.clone()).unwrap();
        // kubectl prints a `date` as an age, and a future one as <invalid>.
        assert_eq!(kind("Next Run"), "string");
        assert_eq!(kind("Last Run"), "date");
        assert_eq!(kind("Age"), "date");
    }

    #[test]
    fn rules_must_not_be_empty_and_names_are_the_list_key() {
        let crd = RetentionPolicy::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let rules = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["rules"];
        assert_eq!(rules["minItems"], 1);
        assert_eq!(rules["maxItems"], MAX_RULES);
        assert_eq!(rules["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(rules["items"]["properties"]["match"]["properties"]["olderThan"]["maxLength"], 7);
        assert_eq!(rules["items"]["properties"]["fields"]["maxItems"], MAX_FIELDS);
        // The API server rejects a CRD whose rules compare with null.
        let yaml = crate::crd::to_yaml(&crd).unwrap();
        assert!(!yaml.contains("== null") && !yaml.contains("!= null"));
    }

    #[test]
    fn the_vault_reference_and_name_length_are_checked() {
        let old = issue_example();
        let mut other_vault = old.clone();
        other_vault.spec.vault_ref.name = "other".into();
        let error = validate_cel_update(&other_vault, &old).expect_err("rejected");
        assert!(format!("{error:?}").contains("vaultRef is immutable"), "{error:?}");
        let mut suspended = old.clone();
        suspended.spec.suspend = true;
        assert!(validate_cel_update(&suspended, &old).is_ok());

        let mut long = issue_example();
        long.metadata.name = Some("x".repeat(MAX_NAME_LEN + 1));
        rejected(&long, "at most 42 characters");
    }

    #[test]
    fn the_resource_as_yaml_is_a_policy_file_with_the_same_spec() {
        let policy = issue_example();
        let yaml = serde_saphyr::to_string(&policy).unwrap();
        let document: PolicyDocument = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(document.spec, policy.spec.to_policy_spec());
        assert_eq!(document.policy_name().as_deref(), Some("shop/drop-phone"));
        assert_eq!(document.spec.validate(), Ok(()));
        assert_eq!(
            document.spec.rules[0].selector,
            RuleMatch {
                older_than: Some("90d".into()),
                since: Since::Created,
                app: None,
                has_fields: vec!["phone".into()]
            }
        );
    }
}
