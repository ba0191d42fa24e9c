//! The two Services: a headless one that gives every pod a stable DNS name for Raft, and a
//! client one that applications use to reach the API of any ready node.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use super::monitoring::HEADLESS_LABEL;
use crate::crd::PiiVault;
use crate::piivault::names::{selector_labels, VaultNames, API_PORT, PEER_PORT};
use crate::Error;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        app_protocol: None,
        node_port: None,
    }
}

/// Pods are published before they are ready: a node must be reachable by its peers (and by
/// the operator) to join the cluster at all.
pub fn headless_service(vault: &PiiVault) -> Result<Service, Error> {
    let names = VaultNames::of(vault);
    let mut metadata = child_meta(vault, names.headless_service())?;
    // Marks it for a ServiceMonitor (`spec.monitoring`): the client Service has the same pods.
    let (key, value) = HEADLESS_LABEL;
    metadata.labels.get_or_insert_with(Default::default).insert(key.to_string(), value.to_string());
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&names)),
            ports: Some(vec![port("api", API_PORT), port("peer", PEER_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Only the API port: the peer port is for the nodes alone.
pub fn client_service(vault: &PiiVault) -> Result<Service, Error> {
    let names = VaultNames::of(vault);
    Ok(Service {
        metadata: child_meta(vault, names.client_service())?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(&names)),
            ports: Some(vec![port("api", API_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn ports(service: &Service) -> Vec<(String, i32)> {
        let spec = service.spec.as_ref().unwrap();
        spec.ports.as_ref().unwrap().iter().map(|p| (p.name.clone().unwrap(), p.port)).collect()
    }

    #[test]
    fn the_headless_service_publishes_both_ports_of_unready_pods() {
        let service = headless_service(&softhsm_vault(3)).unwrap();
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("vault-headless"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(ports(&service), vec![("api".to_string(), 3000), ("peer".to_string(), 3001)]);
        assert_eq!(spec.selector.as_ref().unwrap()["app.kubernetes.io/instance"], "vault");
        assert_owned_child(&service.metadata);
    }

    #[test]
    fn the_client_service_exposes_only_the_api() {
        let service = client_service(&softhsm_vault(3)).unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("vault"));
        assert_eq!(ports(&service), vec![("api".to_string(), 3000)]);
        assert_eq!(service.spec.as_ref().unwrap().publish_not_ready_addresses, None);
        assert_owned_child(&service.metadata);
    }
}
