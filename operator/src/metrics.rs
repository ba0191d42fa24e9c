//! Prometheus metrics of the operator, served on `/metrics`.
//!
//! The reconcile series carry a `controller` label, so each custom resource's controller
//! reports into the same families. The per-vault and per-policy series name the vault by
//! `vault_namespace` and `vault` (not `namespace`, which a scrape sets to the operator's).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    controller: &'static str,
    change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VaultLabels {
    vault_namespace: String,
    vault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    vault_namespace: String,
    vault: String,
    health: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    vault_namespace: String,
    vault: String,
    /// `<namespace>/<name>`, as vaultd's retention series name the policy.
    policy: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    membership_changes: Family<ChangeLabels, Counter>,
    token_changes: Family<ChangeLabels, Counter>,
    vaults: Family<PhaseLabels, Gauge>,
    /// The last phase reported per vault, from which `vaults` is counted.
    phases: Mutex<BTreeMap<(String, String), String>>,
    members: Family<MemberLabels, Gauge>,
    last_reconciled: Family<VaultLabels, Gauge<f64, AtomicU64>>,
    retention_due: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("strongroom_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let durations = Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let membership_changes = Family::<ChangeLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by error kind", failures.clone());
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in a reconcile",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register("membership_changes", "Raft membership changes made", membership_changes.clone());
        let token_changes = Family::<ChangeLabels, Counter>::default();
        registry.register("token_changes", "Vault access tokens issued or revoked", token_changes.clone());
        let vaults = Family::<PhaseLabels, Gauge>::default();
        registry.register("vaults", "PiiVaults by the phase in their status", vaults.clone());
        let members = Family::<MemberLabels, Gauge>::default();
        registry.register("vault_members", "Raft members of a vault by health (healthy, unhealthy)", members.clone());
        let last_reconciled = Family::<VaultLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "vault_last_successful_reconcile_timestamp",
            "When a reconcile of the vault last succeeded (Unix time)",
            Unit::Seconds,
            last_reconciled.clone(),
        );
        let retention_due = Family::<PolicyLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "retention_run_due_timestamp",
            "When a RetentionPolicy's next run is due: its schedule's first time after its last run (after its \
             creation before one); absent while suspended (Unix time)",
            Unit::Seconds,
            retention_due.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            durations,
            membership_changes,
            token_changes,
            vaults,
            phases: Mutex::new(BTreeMap::new()),
            members,
            last_reconciled,
            retention_due,
        }
    }
}

impl Metrics {
    /// Counts a reconcile; its duration is recorded when the returned guard drops.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles.get_or_create(&ControllerLabels { controller }).inc();
        ReconcileTimer {
            histogram: self.durations.get_or_create(&ControllerLabels { controller }).clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, controller: &'static str, error: &'static str) {
        self.failures.get_or_create(&FailureLabels { controller, error }).inc();
    }

    pub fn membership_change(&self, controller: &'static str, change: &'static str) {
        self.membership_changes.get_or_create(&ChangeLabels { controller, change }).inc();
    }

    /// A vault token the operator issued (`issued`) or revoked (`revoked`).
    pub fn token_change(&self, controller: &'static str, change: &'static str) {
        self.token_changes.get_or_create(&ChangeLabels { controller, change }).inc();
    }

    /// A vault's phase and its members' health as just written to its status.
    pub fn vault_observed(&self, namespace: &str, vault: &str, phase: &str, healthy: i64, unhealthy: i64) {
        let mut phases = self.phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        phases.insert((namespace.to_string(), vault.to_string()), phase.to_string());
        self.count_phases(&phases);
        for (health, count) in [("healthy", healthy), ("unhealthy", unhealthy)] {
            let labels = MemberLabels { vault_namespace: namespace.to_string(), vault: vault.to_string(), health };
            self.members.get_or_create(&labels).set(count);
        }
    }

    /// A reconcile of the vault succeeded at `unix_seconds`.
    pub fn vault_reconciled(&self, namespace: &str, vault: &str, unix_seconds: f64) {
        let labels = VaultLabels { vault_namespace: namespace.to_string(), vault: vault.to_string() };
        self.last_reconciled.get_or_create(&labels).set(unix_seconds);
    }

    /// The vault is gone: its series go, and it no longer counts in a phase.
    pub fn vault_removed(&self, namespace: &str, vault: &str) {
        let mut phases = self.phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        phases.remove(&(namespace.to_string(), vault.to_string()));
        self.count_phases(&phases);
        self.last_reconciled.remove(&VaultLabels { vault_namespace: namespace.to_string(), vault: vault.to_string() });
        for health in ["healthy", "unhealthy"] {
            let labels = MemberLabels { vault_namespace: namespace.to_string(), vault: vault.to_string(), health };
            self.members.remove(&labels);
        }
    }

    /// Sets the count of every phase a vault is in (a phase no vault is in has no series).
    fn count_phases(&self, phases: &BTreeMap<(String, String), String>) {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for phase in phases.values() {
            *counts.entry(phase).or_default() += 1;
        }
        self.vaults.clear();
        for (phase, count) in counts {
            self.vaults.get_or_create(&PhaseLabels { phase: phase.to_string() }).set(count);
        }
    }

    /// When the policy's next run is due (`None`: suspended, no series).
    pub fn retention_due(&self, vault_namespace: &str, vault: &str, policy: &str, due_unix_seconds: Option<f64>) {
        let labels = PolicyLabels {
            vault_namespace: vault_namespace.to_string(),
            vault: vault.to_string(),
            policy: policy.to_string(),
        };
        match due_unix_seconds {
            Some(due) => {
                self.retention_due.get_or_create(&labels).set(due);
            }
            None => {
                self.retention_due.remove(&labels);
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Observes the reconcile duration when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_failures_durations_and_changes_are_exposed() {
        let metrics = Metrics::default();
        drop(metrics.reconcile_started("piivault"));
        metrics.reconcile_failed("piivault", "vault");
        metrics.membership_change("piivault", "LearnerAdded");
        metrics.token_change("retentionpolicy", "issued");
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"strongroom_operator_reconciles_total{controller="piivault"} 1"#), "{text}");
        assert!(text.contains(r#"strongroom_operator_reconcile_failures_total{controller="piivault",error="vault"} 1"#));
        assert!(text.contains(r#"strongroom_operator_reconcile_duration_seconds_count{controller="piivault"} 1"#));
        assert!(text.contains(
            r#"strongroom_operator_membership_changes_total{controller="piivault",change="LearnerAdded"} 1"#
        ));
        assert!(
            text.contains(r#"strongroom_operator_token_changes_total{controller="retentionpolicy",change="issued"} 1"#)
        );
    }

    #[test]
    fn vaults_are_counted_by_phase_and_forgotten_when_removed() {
        let metrics = Metrics::default();
        metrics.vault_observed("pii", "a", "Running", 3, 0);
        metrics.vault_observed("pii", "b", "Running", 2, 1);
        metrics.vault_observed("shop", "a", "Degraded", 1, 2);
        metrics.vault_reconciled("pii", "a", 1_795_402_800.5);
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"strongroom_operator_vaults{phase="Running"} 2"#), "{text}");
        assert!(text.contains(r#"strongroom_operator_vaults{phase="Degraded"} 1"#), "{text}");
        assert!(
            text.contains(r#"strongroom_operator_vault_members{vault_namespace="pii",vault="b",health="unhealthy"} 1"#)
        );
        assert!(text.contains(
            r#"strongroom_operator_vault_last_successful_reconcile_timestamp_seconds{vault_namespace="pii",vault="a"} 1795402800.5"#
        ));

        // A phase change moves the vault; a removed vault leaves no series behind.
        metrics.vault_observed("shop", "a", "Running", 3, 0);
        metrics.vault_removed("pii", "a");
        let text = metrics.encode().unwrap();
        assert!(text.contains(r#"strongroom_operator_vaults{phase="Running"} 2"#), "{text}");
        assert!(!text.contains(r#"phase="Degraded""#), "{text}");
        assert!(!text.contains(r#"vault_namespace="pii",vault="a""#), "{text}");
    }

    #[test]
    fn a_retention_policy_is_due_until_suspended() {
        let metrics = Metrics::default();
        metrics.retention_due("shop", "customers", "shop/drop-phone", Some(1_795_489_200.0));
        let series = r#"strongroom_operator_retention_run_due_timestamp_seconds{vault_namespace="shop",vault="customers",policy="shop/drop-phone"}"#;
        assert!(metrics.encode().unwrap().contains(&format!("{series} 1795489200.0")));
        metrics.retention_due("shop", "customers", "shop/drop-phone", None);
        assert!(!metrics.encode().unwrap().contains(series));
    }
}
