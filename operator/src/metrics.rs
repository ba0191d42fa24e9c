//! Prometheus metrics of the operator, served on `/metrics`.
//!
//! Every series carries a `controller` label, so each custom resource's controller reports
//! into the same families.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
        Self { registry, reconciles, failures, durations, membership_changes, token_changes }
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
}
