//! The PodDisruptionBudget: voluntary disruptions (node drains) take one vault pod at a
//! time, so a 3- or 5-node cluster keeps its quorum.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::crd::PiiVault;
use crate::piivault::names::{selector_labels, VaultNames};
use crate::Error;

pub fn disruption_budget(vault: &PiiVault) -> Result<PodDisruptionBudget, Error> {
    let names = VaultNames::of(vault);
    Ok(PodDisruptionBudget {
        metadata: child_meta(vault, names.disruption_budget())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(&names)), match_expressions: None }),
            // A pod that is not ready yet may still be evicted: it is not serving anyone.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            min_available: None,
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn one_pod_at_a_time_may_be_disrupted() {
        let budget = disruption_budget(&softhsm_vault(5)).unwrap();
        let spec = budget.spec.as_ref().unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        let selector = spec.selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(selector, &selector_labels(&VaultNames::new("vault", "pii")));
        assert_owned_child(&budget.metadata);
    }
}
