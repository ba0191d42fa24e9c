//! What a retention rule selects and what its action makes of a profile, as pure
//! functions of the stored metadata and the decrypted profile.
//!
//! Selection uses only what the vault stores in the clear (times, app names, expiration
//! state); field conditions need the profile, which the caller decrypts only for subjects
//! that pass the metadata test.

use serde_json::{Map, Value};
use strongroom_admin_api::retention::{parse_duration, Action, Rule, Since};

use crate::store::{AppRecord, SubjectRecord};

/// A rule with its age turned into a cutoff time.
pub struct Selector<'r> {
    pub rule: &'r Rule,
    /// Records whose reference time is at or before this (ms) are old enough.
    cutoff: u64,
}

impl<'r> Selector<'r> {
    /// `None` when the rule's age is malformed (validated policies never are).
    pub fn new(rule: &'r Rule, now_ms: u64) -> Option<Self> {
        let age_ms = match &rule.selector.older_than {
            Some(text) => parse_duration(text)?.saturating_mul(1000),
            None => 0,
        };
        Some(Selector { rule, cutoff: now_ms.saturating_sub(age_ms) })
    }

    /// The app whose record the rule looks at, if any.
    pub fn app(&self) -> Option<&str> {
        self.rule.selector.app.as_deref()
    }

    /// Whether an active subject passes the rule's metadata conditions: it holds the
    /// rule's app record (`app`, looked up by the caller when `self.app()` is set), and
    /// that record — or, without an app, the subject — is old enough.
    pub fn selects(&self, subject: &SubjectRecord, app: Option<&AppRecord>) -> bool {
        let (created, updated) = match (self.app(), app) {
            (Some(_), None) => return false,
            (Some(_), Some(record)) => (record.created, record.updated),
            (None, _) => (subject.created, subject.updated),
        };
        let reference = match self.rule.selector.since {
            Since::Created => Some(created),
            Since::Updated => Some(updated),
            Since::ExpirationStart => subject.expiration.as_ref().map(|e| e.started),
        };
        reference.is_some_and(|time| time <= self.cutoff)
    }

    /// Whether the rule needs the decrypted profile to decide or to act.
    pub fn needs_profile(&self) -> bool {
        !self.rule.selector.has_fields.is_empty()
            || matches!(self.rule.action, Action::DropFields | Action::Pseudonymize)
    }

    /// Whether a profile has every field the rule asks for.
    pub fn has_fields(&self, profile: &Map<String, Value>) -> bool {
        self.rule.selector.has_fields.iter().all(|field| profile.get(field).is_some_and(|v| !v.is_null()))
    }
}

/// The prefix of every pseudonym, so that a pseudonymised value is recognised and left
/// alone by the next run.
pub const PSEUDONYM_PREFIX: &str = "psn_";

/// Applies `dropFields` or `pseudonymize` to a profile; `pseudonym` maps a field and its
/// value to the value's pseudonym. Returns whether anything changed.
pub fn edit_profile(rule: &Rule, profile: &mut Map<String, Value>, pseudonym: impl Fn(&str, &Value) -> String) -> bool {
    minimise(rule.action, &rule.fields, profile, pseudonym)
}

/// [`edit_profile`] for an action and its fields, as the erasure ledger records them.
pub fn minimise(
    action: Action,
    fields: &[String],
    profile: &mut Map<String, Value>,
    pseudonym: impl Fn(&str, &Value) -> String,
) -> bool {
    let mut changed = false;
    for field in fields {
        match action {
            Action::DropFields => changed |= profile.remove(field).is_some(),
            Action::Pseudonymize => {
                if let Some(value) = profile.get_mut(field) {
                    if !value.is_null() && !is_pseudonym(value) {
                        *value = Value::String(pseudonym(field, value));
                        changed = true;
                    }
                }
            }
            Action::Delete | Action::DeleteApp | Action::StartExpiration => {}
        }
    }
    changed
}

fn is_pseudonym(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.starts_with(PSEUDONYM_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expiration, ExpirationStatus, SubjectState};
    use serde_json::json;
    use strongroom_admin_api::retention::RuleMatch;

    const DAY: u64 = 86_400_000;

    fn rule(action: Action, selector: RuleMatch, fields: &[&str]) -> Rule {
        Rule {
            name: "r".into(),
            selector,
            action,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            expiration: None,
        }
    }

    fn subject(created: u64, updated: u64) -> SubjectRecord {
        SubjectRecord { created, updated, version: 1, state: SubjectState::Forgotten { at: 0 }, expiration: None }
    }

    fn older(days: &str, since: Since) -> RuleMatch {
        RuleMatch { older_than: Some(days.into()), since, ..Default::default() }
    }

    #[test]
    fn age_is_measured_from_the_chosen_time() {
        let now = 1000 * DAY;
        let by_created = rule(Action::Delete, older("90d", Since::Created), &[]);
        let selector = Selector::new(&by_created, now).unwrap();
        assert!(selector.selects(&subject(now - 90 * DAY, now), None), "exactly 90 days old");
        assert!(!selector.selects(&subject(now - 89 * DAY, now - 200 * DAY), None));

        let by_updated = rule(Action::Delete, older("90d", Since::Updated), &[]);
        let selector = Selector::new(&by_updated, now).unwrap();
        assert!(selector.selects(&subject(0, now - 91 * DAY), None));
        assert!(!selector.selects(&subject(0, now - DAY), None));

        let by_expiration = rule(Action::Delete, older("30d", Since::ExpirationStart), &[]);
        let selector = Selector::new(&by_expiration, now).unwrap();
        let mut expiring = subject(0, 0);
        assert!(!selector.selects(&expiring, None), "no expiration: never selected");
        expiring.expiration = Some(Expiration {
            status: ExpirationStatus::Retain,
            started: now - 31 * DAY,
            ends_at: now,
            token_hash: [0; 32],
            sealed_token: vec![],
        });
        assert!(selector.selects(&expiring, None));
    }

    #[test]
    fn an_app_rule_looks_at_the_app_record() {
        let now = 1000 * DAY;
        let selector_rule =
            rule(Action::DeleteApp, RuleMatch { app: Some("trial".into()), ..older("30d", Since::Created) }, &[]);
        let selector = Selector::new(&selector_rule, now).unwrap();
        let old_subject = subject(0, 0);
        assert!(!selector.selects(&old_subject, None), "no trial record");
        let app = |created| AppRecord { created, updated: created, version: 1, sealed: vec![] };
        assert!(!selector.selects(&old_subject, Some(&app(now - DAY))), "the app record is young");
        assert!(selector.selects(&subject(now, now), Some(&app(now - 40 * DAY))));
    }

    #[test]
    fn profile_edits_change_only_what_is_there_and_only_once() {
        let drop = rule(Action::DropFields, RuleMatch::default(), &["phone", "fax"]);
        let mut profile = json!({"name": "A", "phone": "+4912345"}).as_object().unwrap().clone();
        assert!(edit_profile(&drop, &mut profile, |_, _| unreachable!()));
        assert_eq!(Value::Object(profile.clone()), json!({"name": "A"}));
        assert!(!edit_profile(&drop, &mut profile, |_, _| unreachable!()), "a rerun changes nothing");

        let pseudonymize = rule(Action::Pseudonymize, RuleMatch::default(), &["name", "email"]);
        let pseudonym = |field: &str, value: &Value| format!("{PSEUDONYM_PREFIX}{field}-{}", value.as_str().unwrap());
        assert!(edit_profile(&pseudonymize, &mut profile, pseudonym));
        assert_eq!(Value::Object(profile.clone()), json!({"name": "psn_name-A"}));
        assert!(!edit_profile(&pseudonymize, &mut profile, pseudonym), "pseudonyms are not pseudonymised again");
    }

    #[test]
    fn field_conditions() {
        let selector_rule = rule(
            Action::Delete,
            RuleMatch { has_fields: vec!["phone".into(), "email".into()], ..Default::default() },
            &[],
        );
        let selector = Selector::new(&selector_rule, 0).unwrap();
        assert!(selector.needs_profile());
        let with = |v: Value| v.as_object().unwrap().clone();
        assert!(selector.has_fields(&with(json!({"phone": "1", "email": "e"}))));
        assert!(!selector.has_fields(&with(json!({"phone": "1"}))));
        assert!(!selector.has_fields(&with(json!({"phone": "1", "email": null}))));
    }
}
