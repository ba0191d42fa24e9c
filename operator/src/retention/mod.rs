//! The `RetentionPolicy` controller: runs a policy's rules on a schedule.
//!
//! Each policy gets a CronJob whose Jobs run `vaultd minimize` against its vault with a
//! token scoped to `retention:run`; the vault applies and audits the changes, and records
//! each run, which the controller reads back into the status.
//!
//! - [`names`]: names and labels of a policy's children, and its names in the vault.
//! - [`builders`]: the CronJob, the policy ConfigMap and the token Secret, as pure functions.
//! - [`schedule`]: the next run of a cron schedule.
//! - [`status`]: the status written back to the resource.
//! - [`reconciler`]: issues the token, applies the children, reads the runs, reports; its
//!   finalizer revokes the token. `run` starts the controller.

pub mod builders;
pub mod names;
pub mod reconciler;
pub mod schedule;
pub mod status;
#[cfg(test)]
mod test_harness;

pub use reconciler::{run, Context};

#[cfg(test)]
pub(crate) mod test_support {
    //! Policies and vaults as the API server would hand them to the reconciler.

    use kube::api::ObjectMeta;
    use strongroom_admin_api::retention::{Action, Rule, RuleMatch, RuleReport, RunReport, Since, VaultRef};

    use crate::crd::{PiiVault, RetentionPolicy, RetentionPolicySpec};
    use crate::piivault::builders::test_support::softhsm_vault;

    pub const POLICY_UID: &str = "7d1e0c3a-0000-4000-8000-000000000002";
    pub const VAULT_UID: &str = "5f0c8f5e-0000-4000-8000-000000000001";

    /// A rule with only a name, an action and an age.
    pub fn rule(name: &str, action: Action) -> Rule {
        Rule {
            name: name.into(),
            selector: RuleMatch { older_than: Some("90d".into()), ..RuleMatch::default() },
            action,
            fields: vec![],
            expiration: None,
        }
    }

    /// The policy of the issue: drop phone numbers after 90 days, forget subjects
    /// inactive for two years.
    pub fn issue_example() -> RetentionPolicy {
        let mut policy = RetentionPolicy::new(
            "drop-phone",
            RetentionPolicySpec {
                vault_ref: VaultRef { name: "customers".into() },
                schedule: "0 3 * * *".into(),
                suspend: false,
                dry_run: false,
                rules: vec![
                    Rule {
                        name: "drop-phone-after-90d".into(),
                        selector: RuleMatch {
                            older_than: Some("90d".into()),
                            since: Since::Created,
                            app: None,
                            has_fields: vec!["phone".into()],
                        },
                        action: Action::DropFields,
                        fields: vec!["phone".into()],
                        expiration: None,
                    },
                    Rule {
                        name: "forget-inactive".into(),
                        selector: RuleMatch {
                            older_than: Some("730d".into()),
                            since: Since::Updated,
                            ..RuleMatch::default()
                        },
                        action: Action::Delete,
                        fields: vec![],
                        expiration: None,
                    },
                ],
            },
        );
        policy.metadata = ObjectMeta {
            name: Some("drop-phone".into()),
            namespace: Some("shop".into()),
            uid: Some(POLICY_UID.into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        policy
    }

    /// The `PiiVault` the example refers to.
    pub fn customers_vault() -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.metadata.name = Some("customers".into());
        vault.metadata.namespace = Some("shop".into());
        vault.metadata.uid = Some(VAULT_UID.into());
        vault
    }

    /// A run of the example that started 2026-11-23T03:00:00Z and took five seconds.
    pub fn run_report(matched: u64, changed: u64) -> RunReport {
        RunReport {
            policy: "shop/drop-phone".into(),
            dry_run: false,
            started_at: 1_795_402_800_000,
            finished_at: 1_795_402_805_000,
            matched,
            changed,
            rules: vec![RuleReport {
                name: "drop-phone-after-90d".into(),
                action: Action::DropFields,
                matched,
                changed,
                skipped: 0,
            }],
            audit_event_id: "evt-42".into(),
        }
    }
}
