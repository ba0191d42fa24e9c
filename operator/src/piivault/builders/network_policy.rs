//! The NetworkPolicy: anyone in the cluster may reach the API port (applications, the
//! operator, Prometheus, the Jobs of the vault's `RetentionPolicy`s), but only the vault's
//! own pods may reach the peer (Raft) port.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::crd::PiiVault;
use crate::piivault::names::{selector_labels, VaultNames, API_PORT, PEER_PORT};
use crate::Error;

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { port: Some(IntOrString::Int(port)), protocol: Some("TCP".to_string()), end_port: None }
}

pub fn network_policy(vault: &PiiVault) -> Result<NetworkPolicy, Error> {
    let names = VaultNames::of(vault);
    let vault_pods = LabelSelector { match_labels: Some(selector_labels(&names)), match_expressions: None };
    Ok(NetworkPolicy {
        metadata: child_meta(vault, names.network_policy())?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(vault_pods.clone()),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule { from: None, ports: Some(vec![tcp(API_PORT)]) },
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(vault_pods),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![tcp(PEER_PORT)]),
                },
            ]),
            egress: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn only_vault_pods_reach_the_peer_port() {
        let policy = network_policy(&softhsm_vault(3)).unwrap();
        let spec = policy.spec.as_ref().unwrap();
        let own_pods = selector_labels(&VaultNames::new("vault", "pii"));
        assert_eq!(spec.pod_selector.as_ref().unwrap().match_labels.as_ref(), Some(&own_pods));
        assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
        let rules = spec.ingress.as_ref().unwrap();
        let peer_rule = rules.iter().find(|rule| rule.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(3001)));
        let peers = peer_rule.expect("a rule for the peer port").from.as_ref().expect("restricted sources");
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].pod_selector.as_ref().unwrap().match_labels.as_ref(), Some(&own_pods));
        assert_eq!(peers[0].namespace_selector, None, "only this namespace");
        let api_rule = rules.iter().find(|rule| rule.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(3000)));
        assert_eq!(api_rule.expect("a rule for the API port").from, None);
        assert_owned_child(&policy.metadata);
    }

    /// Whether `policy` lets a pod of this namespace with `labels` reach `port`.
    fn admits(policy: &NetworkPolicy, labels: &std::collections::BTreeMap<String, String>, port: i32) -> bool {
        let rules = policy.spec.as_ref().and_then(|spec| spec.ingress.as_ref()).cloned().unwrap_or_default();
        rules.iter().any(|rule| {
            let port_ok =
                rule.ports.as_ref().is_none_or(|ports| ports.iter().any(|p| p.port == Some(IntOrString::Int(port))));
            let from_ok = rule.from.as_ref().is_none_or(|peers| {
                peers.iter().any(|peer| {
                    peer.namespace_selector.is_none()
                        && peer.pod_selector.as_ref().is_some_and(|selector| {
                            selector.match_expressions.is_none()
                                && selector
                                    .match_labels
                                    .iter()
                                    .flatten()
                                    .all(|(key, value)| labels.get(key) == Some(value))
                        })
                })
            });
            port_ok && from_ok
        })
    }

    #[test]
    fn retention_jobs_reach_the_api_port_but_not_the_peer_port() {
        let policy = network_policy(&softhsm_vault(3)).unwrap();
        let job = crate::retention::names::job_labels(&crate::retention::names::PolicyNames::new("p", "pii", "vault"));
        assert!(admits(&policy, &job, API_PORT));
        assert!(!admits(&policy, &job, PEER_PORT));
        assert!(admits(&policy, &selector_labels(&VaultNames::new("vault", "pii")), PEER_PORT));
    }
}
