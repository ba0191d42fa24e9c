//! `spec.monitoring` against a real API server, under the chart's RBAC: without the
//! Prometheus Operator's API the vault is still run and a Warning Event says what is
//! missing; once its CRDs exist (minimal ones here, the schema left open) the PodMonitor
//! and the PrometheusRule appear, owned by the vault; without `spec.monitoring` they go.
//!
//! Its own test binary, so its own API server: the CRDs it installs affect no other test.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;
use strongroom_operator::crd::PiiVault;
use strongroom_operator::piivault::builders::alerts::alert_names;
use strongroom_system_tests::operator::Deployed;
use strongroom_system_tests::resources::*;
use strongroom_system_tests::wait::{check, until};
use strongroom_system_tests::{Env, TEST_MANAGER};

const KINDS: [(&str, &str); 3] =
    [("PodMonitor", "podmonitors"), ("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules")];

/// A minimal `monitoring.coreos.com/v1` CRD of `kind`: any spec is accepted.
fn minimal_crd(kind: &str, plural: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.monitoring.coreos.com") },
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List") },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
            }],
        },
    }))
    .expect("a CRD")
}

fn api(client: &kube::Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind), plural);
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The object `vault` of `api`, once the operator has applied it (once its API is served).
async fn applied(api: &Api<DynamicObject>, kind: &str) -> DynamicObject {
    until(&format!("the {kind}"), || async {
        api.get_opt("vault").await.map_err(|error| error.to_string())?.ok_or_else(|| "absent".to_string())
    })
    .await
}

#[tokio::test]
async fn monitoring_objects_follow_spec_monitoring_and_wait_for_their_api() {
    let Some(env) = Env::get("monitoring_objects_follow_spec_monitoring_and_wait_for_their_api") else { return };
    let deployed = Deployed::new(env, "monitoring").await;
    let (client, namespace) = (&deployed.client, deployed.namespace.as_str());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let installed = crds.get_opt("podmonitors.monitoring.coreos.com").await.expect("get CRD").is_some();

    let mut vault: PiiVault = serde_json::from_value(strongroom_system_tests::read_yaml(
        &env.path("charts/strongroom-operator/examples/piivault-softhsm.yaml"),
    ))
    .unwrap();
    vault.spec.monitoring =
        Some(serde_json::from_value(json!({ "labels": { "release": "prometheus" } })).expect("a monitoring spec"));
    let vaults: Api<PiiVault> = Api::namespaced(client.clone(), namespace);
    vaults.patch("vault", &PatchParams::apply(TEST_MANAGER), &Patch::Apply(&vault)).await.expect("apply the vault");
    let vault = vault_reported(&vaults, "vault", &WAITING_FOR_POD).await;

    // A cluster used again may have the CRDs already; a fresh API server has not.
    if !installed {
        until("a MonitoringUnavailable Warning Event", || async {
            let events = events_about(client, namespace, "vault").await;
            let warned = events.iter().any(|(type_, reason)| type_ == "Warning" && reason == "MonitoringUnavailable");
            check(warned, || format!("{events:?}"))
        })
        .await;
        for (kind, plural) in KINDS {
            let crd = minimal_crd(kind, plural);
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(&name, &PatchParams::apply(TEST_MANAGER), &Patch::Apply(&crd)).await.expect("apply a CRD");
        }
    }

    let pod_monitors = api(client, namespace, "PodMonitor", "podmonitors");
    let rules = api(client, namespace, "PrometheusRule", "prometheusrules");
    let monitor = applied(&pod_monitors, "PodMonitor").await;
    assert_child_of(&monitor.metadata, &vault, "the PodMonitor");
    assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prometheus");
    let endpoint = &monitor.data["spec"]["podMetricsEndpoints"][0];
    assert_eq!((endpoint["port"].as_str(), endpoint["scheme"].as_str()), (Some("api"), Some("https")));
    let rule = applied(&rules, "PrometheusRule").await;
    assert_child_of(&rule.metadata, &vault, "the PrometheusRule");
    let alerts = rule.data["spec"]["groups"][0]["rules"].as_array().map_or(0, Vec::len);
    assert_eq!(alerts, alert_names().len(), "{:?}", rule.data);

    // spec.monitoring removed: both go.
    let patch = json!({ "spec": { "monitoring": null } });
    vaults.patch("vault", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("remove spec.monitoring");
    until("the monitoring objects to go", || async {
        let monitor = pod_monitors.get_opt("vault").await.map_err(|error| error.to_string())?;
        let rule = rules.get_opt("vault").await.map_err(|error| error.to_string())?;
        check(monitor.is_none() && rule.is_none(), || "still there".to_string())
    })
    .await;
}
