//! The desired state of a `PiiVault`'s children, as pure functions of the resource.
//!
//! Each builder renders one kind of object; none talks to the API server. The reconciler
//! applies what they return with server-side apply, so whatever a builder leaves out is not
//! managed by the operator, and whatever it sets is restored on the next reconcile.

pub mod alerts;
pub(crate) mod backup;
mod config_map;
mod disruption_budget;
mod layout;
pub mod monitoring;
mod network_policy;
mod restore;
mod secrets;
mod service_account;
mod services;
mod stateful_set;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::{labels, VaultNames};
use crate::controller_kit;
use crate::crd::PiiVault;
use crate::Error;

pub use backup::{backup_cron_job, ledger_shipper, restore_drill_cron_job};
pub use config_map::config_map;
pub use disruption_budget::disruption_budget;
pub use monitoring::{monitor, prometheus_rule};
pub use network_policy::network_policy;
pub use restore::{restore_claim, restore_job, RESTORE_OF};
pub use secrets::generated_secret;
pub use service_account::service_account;
pub use services::{client_service, headless_service};
pub use stateful_set::stateful_set;
/// Shared with the retention Jobs, which run the same image as the same user.
pub(crate) use stateful_set::{restricted_security_context, vaultd_pod_security_context, SECRET_FILE_MODE};

/// Every child object except the generated Secrets, in the order they are applied.
#[derive(Clone, Debug)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub client_service: Service,
    /// `None` while pod 0's volume is being restored.
    pub stateful_set: Option<StatefulSet>,
    pub disruption_budget: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
}

/// Renders the children of `vault` with the StatefulSet at `replicas` pods (which the
/// membership logic decides; it differs from `spec.replicas` while scaling), or without
/// one (`None`, while a restore runs).
pub fn children(vault: &PiiVault, replicas: Option<i32>) -> Result<Children, Error> {
    let config_map = config_map(vault)?;
    Ok(Children {
        service_account: service_account(vault)?,
        headless_service: headless_service(vault)?,
        client_service: client_service(vault)?,
        stateful_set: replicas.map(|replicas| stateful_set(vault, replicas, &config_map)).transpose()?,
        disruption_budget: disruption_budget(vault)?,
        network_policy: network_policy(vault)?,
        config_map,
    })
}

/// Metadata of a child: its name, the vault's namespace and labels, and the vault as its
/// controlling owner (so Kubernetes deletes it with the vault).
fn child_meta(vault: &PiiVault, name: String) -> Result<ObjectMeta, Error> {
    controller_kit::child_meta(vault, name, labels(&VaultNames::of(vault)), "PiiVault metadata.uid")
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A `PiiVault` as the API server would hand it to the reconciler.

    use kube::api::ObjectMeta;

    use crate::crd::piivault::{HsmSpec, SoftHsmSpec, StorageSpec, TlsSpec};
    use crate::crd::{PiiVault, PiiVaultSpec};

    pub fn softhsm_vault(replicas: i32) -> PiiVault {
        PiiVault {
            metadata: ObjectMeta {
                name: Some("vault".into()),
                namespace: Some("pii".into()),
                uid: Some("5f0c8f5e-0000-4000-8000-000000000001".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: PiiVaultSpec {
                replicas,
                image: "registry.example/strongroom/vaultd:0.1.0".into(),
                image_pull_policy: None,
                image_pull_secrets: vec![],
                storage: StorageSpec::default(),
                hsm: HsmSpec {
                    token_label: "strongroom".into(),
                    kek_label: "strongroom-kek-1".into(),
                    softhsm: Some(SoftHsmSpec { acknowledge_development_only: true }),
                    pkcs11: None,
                },
                tls: TlsSpec::default(),
                root_token_secret_ref: None,
                resources: None,
                node_selector: Default::default(),
                tolerations: vec![],
                affinity: None,
                priority_class_name: None,
                paused: false,
                backup: None,
                bootstrap: None,
                monitoring: None,
            },
            status: None,
        }
    }

    /// Asserts that an object carries the vault's labels and the vault as controlling owner.
    pub fn assert_owned_child(meta: &kube::api::ObjectMeta) {
        let owners = meta.owner_references.as_ref().expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "PiiVault");
        assert_eq!(owners[0].name, "vault");
        assert_eq!(owners[0].uid, "5f0c8f5e-0000-4000-8000-000000000001");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("pii"));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/instance"], "vault");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "strongroom-operator");
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn every_child_is_owned_by_the_vault() {
        let vault = softhsm_vault(3);
        let children = children(&vault, Some(3)).unwrap();
        assert_owned_child(&children.service_account.metadata);
        assert_owned_child(&children.config_map.metadata);
        assert_owned_child(&children.headless_service.metadata);
        assert_owned_child(&children.client_service.metadata);
        assert_owned_child(&children.stateful_set.as_ref().unwrap().metadata);
        assert_owned_child(&children.disruption_budget.metadata);
        assert_owned_child(&children.network_policy.metadata);
    }

    #[test]
    fn a_vault_without_uid_cannot_own_children() {
        let mut vault = softhsm_vault(3);
        vault.metadata.uid = None;
        assert!(matches!(children(&vault, Some(3)), Err(Error::MissingField(_))));
    }
}
