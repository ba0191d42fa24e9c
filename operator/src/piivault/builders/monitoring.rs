//! `spec.monitoring`: the Prometheus Operator objects of a vault (`monitoring.coreos.com/v1`),
//! rendered as [`DynamicObject`]s so the operator neither ships nor needs their CRDs.
//!
//! - The PodMonitor (or ServiceMonitor, through the headless Service) scrapes `/metrics` on
//!   every vault pod's `api` port — over HTTPS trusting the vault's API CA unless TLS is off —
//!   and labels the series `vault=<name>`.
//! - The PrometheusRule holds the vault's alerts ([`super::alerts`]) scoped to that vault.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{json, Value};

use super::alerts::{rule_groups, Scope};
use super::child_meta;
use crate::crd::piivault::{MonitorKind, MonitoringSpec};
use crate::crd::PiiVault;
use crate::piivault::api_tls;
use crate::piivault::names::{selector_labels, VaultNames};
use crate::Error;

pub const MONITORING_GROUP: &str = "monitoring.coreos.com";
pub const MONITORING_VERSION: &str = "v1";
pub const PROMETHEUS_RULE: &str = "PrometheusRule";
/// The label the headless Service carries, so a ServiceMonitor selects it and not the
/// client Service (which has the same pods).
pub const HEADLESS_LABEL: (&str, &str) = ("strongroom.dev/service", "headless");

/// The API resource of a `monitoring.coreos.com/v1` kind.
pub fn api_resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(MONITORING_GROUP, MONITORING_VERSION, kind), &plural)
}

pub fn kind_name(kind: MonitorKind) -> &'static str {
    match kind {
        MonitorKind::PodMonitor => "PodMonitor",
        MonitorKind::ServiceMonitor => "ServiceMonitor",
    }
}

/// The name of every monitoring object of the vault (one of each kind).
pub fn monitoring_name(names: &VaultNames) -> String {
    names.vault().to_string()
}

/// A `monitoring.coreos.com/v1` object of `kind` owned by the vault, with the vault's labels
/// and the spec's extra ones.
fn object(vault: &PiiVault, spec: &MonitoringSpec, kind: &str, body: Value) -> Result<DynamicObject, Error> {
    let names = VaultNames::of(vault);
    let mut metadata = child_meta(vault, monitoring_name(&names))?;
    let labels = metadata.labels.get_or_insert_with(Default::default);
    for (key, value) in &spec.labels {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let mut object = DynamicObject::new(&monitoring_name(&names), &api_resource(kind));
    object.metadata = metadata;
    object.data = json!({ "spec": body });
    Ok(object)
}

/// The scrape endpoint: port `api`, `/metrics`, HTTPS trusting the vault's API CA (TLS on).
fn endpoint(vault: &PiiVault, spec: &MonitoringSpec) -> Value {
    let names = VaultNames::of(vault);
    let mut endpoint = json!({
        "port": "api",
        "path": "/metrics",
        "scheme": names.scheme(),
        "relabelings": [
            { "action": "replace", "targetLabel": "vault", "replacement": names.vault() },
        ],
    });
    if let Some(interval) = &spec.interval {
        endpoint["interval"] = json!(interval);
    }
    if let Some(secret) = api_tls::api_tls_secret(vault) {
        endpoint["tlsConfig"] = json!({
            "ca": { "secret": { "name": secret, "key": "ca.crt" } },
            "serverName": format!("{}.{}.svc", names.client_service(), names.namespace()),
        });
    }
    endpoint
}

/// The PodMonitor or ServiceMonitor of the vault; `None` without `spec.monitoring`.
pub fn monitor(vault: &PiiVault) -> Result<Option<DynamicObject>, Error> {
    let Some(spec) = &vault.spec.monitoring else { return Ok(None) };
    let names = VaultNames::of(vault);
    let namespaces = json!({ "matchNames": [names.namespace()] });
    let body = match spec.kind {
        MonitorKind::PodMonitor => json!({
            "selector": { "matchLabels": selector_labels(&names) },
            "namespaceSelector": namespaces,
            "podMetricsEndpoints": [endpoint(vault, spec)],
        }),
        MonitorKind::ServiceMonitor => {
            let mut labels = selector_labels(&names);
            labels.insert(HEADLESS_LABEL.0.to_string(), HEADLESS_LABEL.1.to_string());
            json!({
                "selector": { "matchLabels": labels },
                "namespaceSelector": namespaces,
                "endpoints": [endpoint(vault, spec)],
            })
        }
    };
    object(vault, spec, kind_name(spec.kind), body).map(Some)
}

/// The PrometheusRule with the vault's alerts; `None` without `spec.monitoring` or with
/// `alerts: false`.
pub fn prometheus_rule(vault: &PiiVault) -> Result<Option<DynamicObject>, Error> {
    let Some(spec) = vault.spec.monitoring.as_ref().filter(|spec| spec.alerts) else { return Ok(None) };
    let names = VaultNames::of(vault);
    let scope = Scope::Vault { namespace: names.namespace(), name: names.vault() };
    object(vault, spec, PROMETHEUS_RULE, json!({ "groups": rule_groups(scope) })).map(Some)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_support::*;
    use super::*;

    fn monitored(kind: MonitorKind) -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.spec.monitoring = Some(MonitoringSpec {
            kind,
            labels: BTreeMap::from([("release".to_string(), "prometheus".to_string())]),
            interval: Some("30s".to_string()),
            alerts: true,
        });
        vault
    }

    #[test]
    fn nothing_is_rendered_without_monitoring() {
        let vault = softhsm_vault(3);
        assert!(monitor(&vault).unwrap().is_none());
        assert!(prometheus_rule(&vault).unwrap().is_none());
    }

    #[test]
    fn the_pod_monitor_scrapes_the_vault_pods_over_https_with_the_api_ca() {
        let monitor = monitor(&monitored(MonitorKind::PodMonitor)).unwrap().unwrap();
        assert_eq!(monitor.types.as_ref().unwrap().kind, "PodMonitor");
        assert_eq!(monitor.types.as_ref().unwrap().api_version, "monitoring.coreos.com/v1");
        assert_owned_child(&monitor.metadata);
        assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prometheus");
        let spec = &monitor.data["spec"];
        assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/instance"], "vault");
        assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/name"], "vaultd");
        assert_eq!(spec["namespaceSelector"]["matchNames"], json!(["pii"]));
        let endpoint = &spec["podMetricsEndpoints"][0];
        assert_eq!(endpoint["port"], "api");
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(endpoint["scheme"], "https");
        assert_eq!(endpoint["interval"], "30s");
        assert_eq!(endpoint["tlsConfig"]["ca"]["secret"], json!({ "name": "vault-api-tls", "key": "ca.crt" }));
        assert_eq!(endpoint["tlsConfig"]["serverName"], "vault.pii.svc");
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "vault");
        assert_eq!(endpoint["relabelings"][0]["replacement"], "vault");
    }

    #[test]
    fn without_tls_the_monitor_scrapes_plain_http() {
        let mut vault = monitored(MonitorKind::PodMonitor);
        vault.spec.tls.enabled = false;
        let monitor = monitor(&vault).unwrap().unwrap();
        let endpoint = &monitor.data["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["scheme"], "http");
        assert!(endpoint.get("tlsConfig").is_none());
    }

    #[test]
    fn the_service_monitor_selects_only_the_headless_service() {
        let monitor = monitor(&monitored(MonitorKind::ServiceMonitor)).unwrap().unwrap();
        assert_eq!(monitor.types.as_ref().unwrap().kind, "ServiceMonitor");
        let spec = &monitor.data["spec"];
        assert_eq!(spec["selector"]["matchLabels"][HEADLESS_LABEL.0], HEADLESS_LABEL.1);
        assert_eq!(spec["endpoints"][0]["port"], "api");
        let headless = super::super::headless_service(&softhsm_vault(3)).unwrap();
        let client = super::super::client_service(&softhsm_vault(3)).unwrap();
        assert_eq!(headless.metadata.labels.unwrap()[HEADLESS_LABEL.0], HEADLESS_LABEL.1);
        assert!(!client.metadata.labels.unwrap().contains_key(HEADLESS_LABEL.0));
    }

    #[test]
    fn the_rule_holds_the_vaults_alerts_unless_they_are_off() {
        let mut vault = monitored(MonitorKind::PodMonitor);
        let rule = prometheus_rule(&vault).unwrap().unwrap();
        assert_eq!(rule.types.as_ref().unwrap().kind, "PrometheusRule");
        assert_eq!(rule.metadata.name.as_deref(), Some("vault"));
        assert_eq!(rule.metadata.labels.as_ref().unwrap()["release"], "prometheus");
        assert_owned_child(&rule.metadata);
        let rules = rule.data["spec"]["groups"][0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), super::super::alerts::alert_names().len());
        vault.spec.monitoring.as_mut().unwrap().alerts = false;
        assert!(prometheus_rule(&vault).unwrap().is_none());
    }

    #[test]
    fn extra_labels_do_not_replace_the_vaults_own() {
        let mut vault = monitored(MonitorKind::PodMonitor);
        let labels = &mut vault.spec.monitoring.as_mut().unwrap().labels;
        labels.insert("app.kubernetes.io/instance".to_string(), "other".to_string());
        let monitor = monitor(&vault).unwrap().unwrap();
        assert_eq!(monitor.metadata.labels.unwrap()["app.kubernetes.io/instance"], "vault");
    }
}
