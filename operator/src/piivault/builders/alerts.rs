//! The vault alerts, as Prometheus rule groups: rendered into each vault's PrometheusRule
//! (scoped to that vault) and, for every vault at once, into the chart's plain rules file
//! `charts/strongroom-operator/alerts/strongroom-alerts.yaml` (see [`rules_file`]), which
//! `promtool check rules` and `promtool test rules` check.
//!
//! The vaultd series are selected by the `namespace` label (set by the Prometheus Operator)
//! and the `vault` label (set by the monitor's relabeling to the vault's name); the
//! operator's own retention series carry `vault_namespace` and `vault`.

use serde_json::{json, Value};

use crate::Error;

/// Where the runbooks are: the README, one section per alert (anchor: the alert's name in
/// lower case).
pub const RUNBOOK_BASE_URL: &str = "https://github.com/strongroom/strongroom/blob/main/README.md";

/// The rules file, relative to the workspace.
pub const RULES_FILE: &str = "charts/strongroom-operator/alerts/strongroom-alerts.yaml";

/// The name of the rule group.
pub const GROUP: &str = "strongroom-vault";

/// Which vaults the rules look at.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Every vault (the chart's rules file).
    AllVaults,
    /// One vault: its namespace and name.
    Vault { namespace: &'a str, name: &'a str },
}

impl Scope<'_> {
    /// Matchers of the vaultd series.
    fn vaultd(&self) -> String {
        match self {
            Scope::AllVaults => r#"vault!="""#.to_string(),
            Scope::Vault { namespace, name } => format!(r#"namespace="{namespace}",vault="{name}""#),
        }
    }

    /// For one vault, `or absent(<metric>{…})`: no series at all (no pod to scrape) is an
    /// alert too. Across every vault, absence names none.
    fn absent(&self, metric: &str) -> String {
        match self {
            Scope::AllVaults => String::new(),
            Scope::Vault { .. } => format!(" or absent({metric}{{{}}})", self.vaultd()),
        }
    }

    /// Matchers of the operator's per-vault series.
    fn operator(&self) -> String {
        match self {
            Scope::AllVaults => r#"vault!="""#.to_string(),
            Scope::Vault { namespace, name } => format!(r#"vault_namespace="{namespace}",vault="{name}""#),
        }
    }
}

/// One alerting rule.
struct Alert {
    name: &'static str,
    expr: String,
    /// How long the condition must hold (`None`: at once).
    for_: Option<&'static str>,
    severity: &'static str,
    summary: &'static str,
    description: &'static str,
}

impl Alert {
    fn to_json(&self) -> Value {
        let mut rule = json!({
            "alert": self.name,
            "expr": self.expr,
            "labels": { "severity": self.severity },
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": runbook_url(self.name),
            },
        });
        if let (Some(for_), Some(object)) = (self.for_, rule.as_object_mut()) {
            object.insert("for".to_string(), json!(for_));
        }
        rule
    }
}

/// The runbook of `alert`: its README section.
pub fn runbook_url(alert: &str) -> String {
    format!("{RUNBOOK_BASE_URL}#{}", alert.to_lowercase())
}

fn alerts(scope: Scope<'_>) -> Vec<Alert> {
    let s = scope.vaultd();
    let o = scope.operator();
    vec![
        Alert {
            name: "StrongroomVaultNoLeader",
            expr: format!("max by (namespace, vault) (vaultd_raft_has_leader{{{s}}}) == 0"),
            for_: Some("2m"),
            severity: "critical",
            summary: "A vault has no Raft leader",
            description: "No node of vault {{ $labels.namespace }}/{{ $labels.vault }} knows a leader: writes fail.",
        },
        Alert {
            name: "StrongroomVaultDown",
            expr: format!("max by (namespace, vault) (up{{{s}}}) == 0{}", scope.absent("up")),
            for_: Some("5m"),
            severity: "critical",
            summary: "No node of a vault can be scraped",
            description: "Prometheus has reached no node of vault {{ $labels.namespace }}/{{ $labels.vault }} for 5 minutes: the vault is down, or its metrics are out of reach.",
        },
        Alert {
            name: "StrongroomVaultFrequentLeaderChanges",
            expr: format!("max by (namespace, vault) (increase(vaultd_raft_leader_changes_total{{{s}}}[1h])) > 3"),
            for_: None,
            severity: "warning",
            summary: "A vault's Raft leader keeps changing",
            description: "Vault {{ $labels.namespace }}/{{ $labels.vault }} changed leader {{ $value }} times in the last hour.",
        },
        Alert {
            name: "StrongroomVaultFollowerLagging",
            expr: format!("max by (namespace, vault, member) (vaultd_raft_follower_lag_entries{{{s}}}) > 1000"),
            for_: Some("10m"),
            severity: "warning",
            summary: "A vault member lags behind the leader",
            description: "Member {{ $labels.member }} of vault {{ $labels.namespace }}/{{ $labels.vault }} is {{ $value }} log entries behind the leader.",
        },
        Alert {
            name: "StrongroomVaultMemberDown",
            // Only the leader exports the series: no leader, no alert (StrongroomVaultNoLeader).
            expr: format!("min by (namespace, vault, member) (vaultd_raft_member_healthy{{{s}}}) == 0"),
            for_: Some("5m"),
            severity: "warning",
            summary: "A vault member is unreachable",
            description: "The leader of vault {{ $labels.namespace }}/{{ $labels.vault }} has not heard from member {{ $labels.member }} for 5 minutes: the vault keeps its quorum but has lost fault tolerance (a vault of three survives no further failure).",
        },
        Alert {
            name: "StrongroomVaultSlowFsync",
            expr: format!(
                "histogram_quantile(0.99, sum by (namespace, vault, pod, le) \
                 (rate(vaultd_raft_log_fsync_duration_seconds_bucket{{{s}}}[5m]))) > 0.25"
            ),
            for_: Some("15m"),
            severity: "warning",
            summary: "A vault node's log fsyncs are slow",
            description: "The 99th percentile of Raft log fsyncs on {{ $labels.namespace }}/{{ $labels.pod }} is {{ $value }}s.",
        },
        Alert {
            name: "StrongroomVaultVolumeAlmostFull",
            // The last two parts hold without the free-space guard too (`--min-free-bytes
            // 0`: no reserve series).
            expr: format!(
                "vaultd_volume_free_bytes{{{s}}} < 2 * vaultd_volume_reserve_bytes{{{s}}} \
                 or predict_linear(vaultd_volume_free_bytes{{{s}}}[6h], 4 * 3600) < vaultd_volume_reserve_bytes{{{s}}} \
                 or vaultd_volume_free_bytes{{{s}}} < 0.05 * vaultd_volume_size_bytes{{{s}}} \
                 or predict_linear(vaultd_volume_free_bytes{{{s}}}[6h], 4 * 3600) < 0"
            ),
            for_: Some("10m"),
            severity: "critical",
            summary: "A vault node's volume is almost full",
            description: "The data volume of {{ $labels.namespace }}/{{ $labels.pod }} is below twice its reserve or 5% of its size, or will reach the reserve (or fill up) within 4 hours; at the reserve the node refuses writes, on a full volume its storage fails.",
        },
        Alert {
            name: "StrongroomVaultErasureCompactionOverdue",
            expr: format!(
                "vaultd_erasure_oldest_pending_age_seconds{{{s}}} > vaultd_erasure_compaction_deadline_seconds{{{s}}}"
            ),
            for_: Some("10m"),
            severity: "critical",
            summary: "Erased data is still on a vault node's disk past its deadline",
            description: "The oldest pending erasure on {{ $labels.namespace }}/{{ $labels.pod }} is older than the compaction deadline.",
        },
        Alert {
            name: "StrongroomVaultRetentionRunFailed",
            // A time, not a counter's increase: a failure is as old as it is, whenever
            // Prometheus first sees it (a policy's first run, a new scrape). 0: none yet.
            expr: format!(
                "time() - max by (namespace, vault, policy) \
                 (vaultd_retention_last_failure_timestamp_seconds{{{s}}} > 0) < 21600"
            ),
            for_: None,
            severity: "warning",
            summary: "A retention run failed",
            description: "A run of retention policy {{ $labels.policy }} on vault {{ $labels.namespace }}/{{ $labels.vault }} failed in the last 6 hours.",
        },
        Alert {
            name: "StrongroomVaultRetentionRunOverdue",
            // max by: a former leader replica may still export an old due time.
            expr: format!(
                "time() - max by (vault_namespace, vault, policy) \
                 (strongroom_operator_retention_run_due_timestamp_seconds{{{o}}}) > 3600"
            ),
            for_: None,
            severity: "warning",
            summary: "A retention policy did not run on schedule",
            description: "RetentionPolicy {{ $labels.policy }} of vault {{ $labels.vault_namespace }}/{{ $labels.vault }} was due to run more than an hour ago and has not.",
        },
        Alert {
            name: "StrongroomVaultHsmErrors",
            expr: format!("sum by (namespace, vault, pod, operation) (increase(vaultd_hsm_errors_total{{{s}}}[10m])) > 0"),
            for_: None,
            severity: "critical",
            summary: "A vault node's HSM calls fail",
            description: "HSM {{ $labels.operation }} calls failed on {{ $labels.namespace }}/{{ $labels.pod }} in the last 10 minutes.",
        },
        Alert {
            name: "StrongroomVaultAuditVerificationFailed",
            expr: format!("min by (namespace, vault, pod) (vaultd_audit_verification_ok{{{s}}}) == 0"),
            for_: None,
            severity: "critical",
            summary: "A vault's audit chain did not verify",
            description: "The last audit chain verification on {{ $labels.namespace }}/{{ $labels.pod }} found the chain broken or could not read the trail.",
        },
        Alert {
            name: "StrongroomVaultAuditVerificationStale",
            // The interval gauge is absent when scheduled verification is off: no alert then.
            // The second half: a node that has verified nothing since it started (the
            // timestamp is absent until its first verification ends).
            expr: {
                let age = format!("time() - vaultd_audit_verification_timestamp_seconds{{{s}}}");
                let uptime = format!("time() - vaultd_process_start_time_seconds{{{s}}}");
                let limit = format!("2 * vaultd_audit_verification_interval_seconds{{{s}}}");
                format!(
                    "{age} > {limit} \
                     or ({uptime} > {limit} unless vaultd_audit_verification_timestamp_seconds{{{s}}})"
                )
            },
            for_: Some("30m"),
            severity: "warning",
            summary: "A vault node's audit chain is not verified on schedule",
            description: "No audit chain verification has finished on {{ $labels.namespace }}/{{ $labels.pod }} for {{ $value | humanizeDuration }}, more than twice its interval: its scheduled verification does not run or does not end.",
        },
    ]
}

/// The names of the alerts, in the order they are rendered.
pub fn alert_names() -> Vec<&'static str> {
    alerts(Scope::AllVaults).iter().map(|alert| alert.name).collect()
}

/// The rule groups (`groups:` of a rules file, `spec.groups` of a PrometheusRule).
pub fn rule_groups(scope: Scope<'_>) -> Value {
    let rules: Vec<Value> = alerts(scope).iter().map(Alert::to_json).collect();
    json!([{ "name": GROUP, "rules": rules }])
}

/// The chart's rules file: the alerts of every vault, as `promtool` reads them.
pub fn rules_file() -> Result<String, Error> {
    let yaml = serde_saphyr::to_string(&json!({ "groups": rule_groups(Scope::AllVaults) }))
        .map_err(|error| Error::Render { what: "the alert rules", reason: error.to_string() })?;
    Ok(format!("# Generated by `cargo run -p strongroom-operator --bin crdgen`; do not edit.\n{yaml}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alert_has_a_severity_a_summary_a_description_and_its_runbook() {
        let groups = rule_groups(Scope::AllVaults);
        let rules = groups[0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), alert_names().len());
        for rule in rules {
            let name = rule["alert"].as_str().unwrap();
            assert!(["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap()), "{name}");
            assert!(!rule["annotations"]["summary"].as_str().unwrap().is_empty());
            assert!(!rule["annotations"]["description"].as_str().unwrap().is_empty());
            assert_eq!(rule["annotations"]["runbook_url"], format!("{RUNBOOK_BASE_URL}#{}", name.to_lowercase()));
        }
    }

    #[test]
    fn a_vaults_rules_select_only_its_series() {
        let groups = rule_groups(Scope::Vault { namespace: "pii", name: "vault" });
        for rule in groups[0]["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            assert!(!expr.contains(r#"vault!="""#), "{expr}");
            assert!(
                expr.contains(r#"namespace="pii",vault="vault""#)
                    || expr.contains(r#"vault_namespace="pii",vault="vault""#),
                "{expr}"
            );
        }
    }

    #[test]
    fn every_runbook_is_in_the_readme() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for name in alert_names() {
            assert!(readme.contains(&format!("\n#### {name}\n")), "no README section for {name}");
        }
    }
}
