//! Retention policies and their runs: one schema for the `RetentionPolicy` custom
//! resource's `spec`, the policy files `vaultd minimize --policy` reads, and the
//! `/v1/sys/retention` API (scope `retention:run`).
//!
//! - `POST /v1/sys/retention/run` with [`RunRequest`] applies the policy's rules once and
//!   answers a [`RunReport`].
//! - `GET /v1/sys/retention/runs?policy=<namespace/name>&limit=<n>` answers [`RunList`],
//!   newest run first (all policies when `policy` is absent).
//!
//! A rule selects active subjects by age (and optionally by app and by the presence of
//! profile fields) and applies one action to each. Runs are idempotent: a subject a rule
//! already changed no longer qualifies for the change (it is forgotten, the field is gone,
//! its expiration has started), so a rerun — or a run repeated after it was interrupted —
//! changes nothing twice.
//!
//! The policy types are JSON and YAML only (absent fields are left out); the run report is
//! also stored in the replicated state (postcard), so its fields are always written.

use serde::{Deserialize, Serialize};

/// What a `RetentionPolicy` says, as the vault reads it. `vaultRef`, `schedule` and
/// `suspend` concern the operator and are ignored by the vault.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// The `PiiVault` (same namespace) the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_ref: Option<VaultRef>,
    /// Cron schedule (5 fields, UTC) of the CronJob that runs the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Stop scheduling runs; a run already started completes.
    #[serde(default)]
    pub suspend: bool,
    /// Report what would change without changing anything. Each rule is then evaluated
    /// on the data as it is: a later rule does not see what an earlier one would change.
    #[serde(default)]
    pub dry_run: bool,
    /// Applied in order; a subject one rule forgets is not seen by the rules after it.
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VaultRef {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Unique within the policy; names the rule in reports and audit events.
    pub name: String,
    #[serde(rename = "match")]
    pub selector: RuleMatch,
    pub action: Action,
    /// `dropFields` and `pseudonymize`: the top-level profile fields to change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// `startExpiration`: how long the subject has to retain its data (e.g. `30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

/// Which active subjects a rule applies to. Every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// Minimum age, a [duration](parse_duration) such as `90d`; any age when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// What the age is measured from.
    #[serde(default)]
    pub since: Since,
    /// Only subjects holding a record of this app. The age is then that record's age
    /// (`created` / `updated` of the app record), and `deleteApp` deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Only subjects whose profile has every one of these top-level fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has_fields: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Since {
    #[default]
    Created,
    Updated,
    /// When the subject's expiration (`/v1/exp/start`) began; subjects without one never
    /// match.
    ExpirationStart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Forget the subject (crypto-shredding, as `DELETE /v1/user`).
    Delete,
    /// Remove `fields` from the profile.
    DropFields,
    /// Replace the values of `fields` with keyed pseudonyms (`psn_…`): equal values get
    /// equal pseudonyms, and nobody without the vault's keys can reverse them.
    Pseudonymize,
    /// Delete the subject's record of `match.app`.
    DeleteApp,
    /// Start Databunker's expiration flow (`expiration` from now) unless one is already
    /// under way or the subject chose to retain its data.
    StartExpiration,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::DropFields => "dropFields",
            Action::Pseudonymize => "pseudonymize",
            Action::DeleteApp => "deleteApp",
            Action::StartExpiration => "startExpiration",
        }
    }
}

/// `POST /v1/sys/retention/run`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// `namespace/name` of the policy (or any label of at most 253 characters from
    /// `[a-z0-9-./]`), under which the run is recorded.
    pub policy: String,
    pub spec: PolicySpec,
}

/// The answer to a run, and one entry of the run history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub policy: String,
    pub dry_run: bool,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    pub finished_at: u64,
    /// Subject-rule pairs that matched, and how many of those were (or, in a dry run,
    /// would have been) changed. A matched subject is unchanged when there was nothing
    /// left to change (the field was already gone).
    pub matched: u64,
    pub changed: u64,
    pub rules: Vec<RuleReport>,
    /// The audit event that records the run; each change has its own event too.
    pub audit_event_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleReport {
    pub name: String,
    pub action: Action,
    pub matched: u64,
    pub changed: u64,
    /// Matched subjects that changed concurrently while the run was deciding about them
    /// and were left alone; the next run looks at them again.
    pub skipped: u64,
}

/// `GET /v1/sys/retention/runs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<RunReport>,
}

/// A whole `RetentionPolicy` resource, as `vaultd minimize --policy FILE` reads it (YAML
/// or JSON). Only the name, namespace and spec matter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    #[serde(default)]
    pub metadata: PolicyMetadata,
    pub spec: PolicySpec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyMetadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl PolicyDocument {
    /// The name runs are recorded under: `namespace/name`, or `name` without a namespace.
    pub fn policy_name(&self) -> Option<String> {
        let name = self.metadata.name.as_deref().filter(|n| !n.is_empty())?;
        Some(match self.metadata.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.to_string(),
        })
    }
}

/// The pattern every duration matches (also the CRD's CEL rule).
pub const DURATION_PATTERN: &str = "^[0-9]{1,6}[smhd]$";

/// Seconds in a duration: a count and a unit — `s` seconds, `h` hours, `d` days, `m`
/// months of 31 days (Databunker's meaning of `m`). `None` when malformed.
pub fn parse_duration(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let count = &text[..text.len() - unit.len_utf8()];
    if count.is_empty() || count.len() > 6 || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u64 = count.parse().ok()?;
    let seconds_per_unit = match unit {
        's' => 1,
        'h' => 3_600,
        'd' => 86_400,
        'm' => 31 * 86_400,
        _ => return None,
    };
    Some(count * seconds_per_unit)
}

pub const MAX_RULES: usize = 64;
pub const MAX_FIELDS: usize = 64;
const MAX_NAME_LEN: usize = 63;
const MAX_FIELD_LEN: usize = 128;
const MAX_POLICY_LEN: usize = 253;

/// Whether a policy label is acceptable: 1–253 characters of `[a-z0-9-./]`.
pub fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_POLICY_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-./".contains(&b))
}

impl PolicySpec {
    /// Checks what a schema cannot: names, durations, and that each action has what it
    /// needs. The message names the rule and the problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.is_empty() {
            return Err("rules must not be empty".into());
        }
        if self.rules.len() > MAX_RULES {
            return Err(format!("at most {MAX_RULES} rules"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate().map_err(|problem| format!("rule {:?}: {problem}", rule.name))?;
            if self.rules[..i].iter().any(|earlier| earlier.name == rule.name) {
                return Err(format!("rule {:?}: names must be unique", rule.name));
            }
        }
        Ok(())
    }
}

impl Rule {
    fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!("name must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9_-]"));
        }
        if let Some(age) = &self.selector.older_than {
            if parse_duration(age).is_none() {
                return Err(format!("olderThan {age:?} is not a duration like 90d, 12h, 6m (months) or 30s"));
            }
        }
        check_fields("match.hasFields", &self.selector.has_fields)?;
        let needs_fields = matches!(self.action, Action::DropFields | Action::Pseudonymize);
        if needs_fields && self.fields.is_empty() {
            return Err(format!("{} needs fields", self.action.as_str()));
        }
        if !needs_fields && !self.fields.is_empty() {
            return Err(format!("{} takes no fields", self.action.as_str()));
        }
        check_fields("fields", &self.fields)?;
        if self.action == Action::DeleteApp && self.selector.app.is_none() {
            return Err("deleteApp needs match.app".into());
        }
        match (self.action, &self.expiration) {
            (Action::StartExpiration, None) => Err("startExpiration needs expiration".into()),
            (Action::StartExpiration, Some(text)) if parse_duration(text).is_none() => {
                Err(format!("expiration {text:?} is not a duration like 30d"))
            }
            (Action::StartExpiration, Some(_)) | (_, None) => Ok(()),
            (other, Some(_)) => Err(format!("{} takes no expiration", other.as_str())),
        }
    }
}

fn check_fields(what: &str, fields: &[String]) -> Result<(), String> {
    if fields.len() > MAX_FIELDS {
        return Err(format!("{what}: at most {MAX_FIELDS} fields"));
    }
    match fields.iter().find(|f| f.is_empty() || f.chars().count() > MAX_FIELD_LEN || f.chars().any(char::is_control)) {
        Some(_) => Err(format!("{what}: field names must be 1-{MAX_FIELD_LEN} printable characters")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10d"), Some(864_000));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("1m"), Some(31 * 86_400));
        assert_eq!(parse_duration("30s"), Some(30));
        for bad in ["", "d", "10", "10w", "-1d", "1.5d", "1234567d", " 1d", "1dd", "１d"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    fn rule(action: Action) -> Rule {
        Rule {
            name: "r".into(),
            selector: RuleMatch { older_than: Some("90d".into()), ..Default::default() },
            action,
            fields: vec![],
            expiration: None,
        }
    }

    #[test]
    fn each_action_gets_what_it_needs() {
        let spec = |rules| PolicySpec { rules, ..Default::default() };
        assert!(spec(vec![rule(Action::Delete)]).validate().is_ok());
        assert!(spec(vec![]).validate().is_err());
        assert!(spec(vec![rule(Action::DropFields)]).validate().unwrap_err().contains("needs fields"));
        assert!(spec(vec![rule(Action::DeleteApp)]).validate().unwrap_err().contains("match.app"));
        assert!(spec(vec![rule(Action::StartExpiration)]).validate().unwrap_err().contains("expiration"));
        let mut bad_age = rule(Action::Delete);
        bad_age.selector.older_than = Some("90 days".into());
        assert!(spec(vec![bad_age]).validate().unwrap_err().contains("olderThan"));
        let twice = spec(vec![rule(Action::Delete), rule(Action::Delete)]);
        assert!(twice.validate().unwrap_err().contains("unique"));
    }

    #[test]
    fn the_issue_example_parses_as_json() {
        let json = r#"{"policy":"shop/drop-phone","spec":{"vaultRef":{"name":"customers"},"schedule":"0 3 * * *",
            "dryRun":false,"rules":[
              {"name":"drop-phone-after-90d","match":{"olderThan":"90d","since":"created","hasFields":["phone"]},
               "action":"dropFields","fields":["phone"]},
              {"name":"forget-inactive","match":{"olderThan":"730d","since":"updated"},"action":"delete"}]}}"#;
        let request: RunRequest = serde_json::from_str(json).unwrap();
        assert!(request.spec.validate().is_ok());
        assert_eq!(request.spec.rules[0].selector.has_fields, ["phone"]);
        assert_eq!(request.spec.rules[1].selector.since, Since::Updated);
        assert!(valid_policy_name(&request.policy));
        assert!(!valid_policy_name("Shop/Drop Phone"));
    }
}
