//! The names, labels and network addresses of everything a `PiiVault` owns, in one place:
//! the builders, the membership logic and the tests all derive them from here.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::PiiVault;

/// vaultd's API port (HTTP: the Databunker API, `/v1/status`, `/metrics`).
pub const API_PORT: i32 = 3000;
/// vaultd's peer (Raft) port.
pub const PEER_PORT: i32 = 3001;

/// The Kubernetes names and DNS addresses of one vault's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultNames {
    name: String,
    namespace: String,
    /// `https`, or `http` when the vault's TLS is off.
    scheme: &'static str,
}

impl VaultNames {
    /// The names of a vault with TLS on (the default).
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self { name: name.into(), namespace: namespace.into(), scheme: "https" }
    }

    pub fn of(vault: &PiiVault) -> Self {
        let names = Self::new(vault.name_any(), vault.namespace().unwrap_or_default());
        match vault.spec.tls.enabled {
            true => names,
            false => Self { scheme: "http", ..names },
        }
    }

    /// `https`, or `http` when the vault's TLS is off.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    pub fn vault(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The StatefulSet; its pods are `<name>-0`, `<name>-1`, ...
    pub fn stateful_set(&self) -> String {
        self.name.clone()
    }

    /// The client Service (`https://<name>.<namespace>.svc:3000`).
    pub fn client_service(&self) -> String {
        self.name.clone()
    }

    /// Base URL of the client Service: any ready node's API (each forwards what it must).
    pub fn client_address(&self) -> String {
        format!("{}://{}.{}.svc:{API_PORT}", self.scheme, self.client_service(), self.namespace)
    }

    /// The headless Service that gives each pod a stable DNS name.
    pub fn headless_service(&self) -> String {
        format!("{}-headless", self.name)
    }

    pub fn config_map(&self) -> String {
        format!("{}-config", self.name)
    }

    pub fn service_account(&self) -> String {
        self.name.clone()
    }

    pub fn disruption_budget(&self) -> String {
        self.name.clone()
    }

    pub fn network_policy(&self) -> String {
        self.name.clone()
    }

    /// The generated root token (when the spec names no Secret).
    pub fn root_token_secret(&self) -> String {
        format!("{}-root-token", self.name)
    }

    /// The generated shared secret that authenticates peers to each other.
    pub fn peer_auth_secret(&self) -> String {
        format!("{}-peer-auth", self.name)
    }

    /// The CA (`ca.crt`, `ca.key`) that issues the API certificate (never mounted).
    pub fn api_ca_secret(&self) -> String {
        format!("{}-api-ca", self.name)
    }

    /// The issued API certificate (`tls.crt`, `tls.key`, `ca.crt`).
    pub fn api_tls_secret(&self) -> String {
        format!("{}-api-tls", self.name)
    }

    /// The generated CA and certificate of the peer port (when the spec names no Secret).
    pub fn peer_tls_secret(&self) -> String {
        format!("{}-peer-tls", self.name)
    }

    /// The Secret holding the backup Jobs' vault token (scope `backup:read`).
    pub fn backup_token_secret(&self) -> String {
        format!("{}-backup-token", self.name)
    }

    /// The CronJob of the scheduled backups.
    pub fn backup_cron_job(&self) -> String {
        format!("{}-backup", self.name)
    }

    /// The CronJob of the restore drills.
    pub fn restore_drill_cron_job(&self) -> String {
        format!("{}-restore-drill", self.name)
    }

    /// The Deployment that ships the erasure ledger to the backup destination.
    pub fn ledger_shipper(&self) -> String {
        format!("{}-ledger-shipper", self.name)
    }

    /// The Job that restores pod 0's volume from a backup (`spec.bootstrap.fromBackup`).
    pub fn restore_job(&self) -> String {
        format!("{}-restore", self.name)
    }

    /// The data volume of a pod, as the StatefulSet's claim template names it.
    pub fn data_claim(&self, ordinal: i32) -> String {
        format!("data-{}", self.pod(ordinal))
    }

    /// The operator's own scoped vault token (keys `token`, `id`), created once the cluster
    /// exists; every admin call after the bootstrap uses it instead of the root token.
    pub fn operator_token_secret(&self) -> String {
        format!("{}-operator-token", self.name)
    }

    /// The generated SoftHSM PINs and KEK (development mode).
    pub fn softhsm_secret(&self) -> String {
        format!("{}-softhsm", self.name)
    }

    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The ordinal of one of this vault's pods, from the pod's name.
    pub fn ordinal_of(&self, pod: &str) -> Option<i32> {
        pod.strip_prefix(&self.name)?.strip_prefix('-')?.parse().ok().filter(|ordinal| *ordinal >= 0)
    }

    /// The stable DNS name of a pod (through the headless Service).
    pub fn pod_host(&self, ordinal: i32) -> String {
        format!("{}.{}.{}.svc", self.pod(ordinal), self.headless_service(), self.namespace)
    }

    /// `host:port` of a pod's peer listener, as the pod advertises it to Raft.
    pub fn raft_address(&self, ordinal: i32) -> String {
        format!("{}:{PEER_PORT}", self.pod_host(ordinal))
    }

    /// Base URL of a pod's API, as the pod advertises it to the cluster.
    pub fn api_address(&self, ordinal: i32) -> String {
        format!("{}://{}:{API_PORT}", self.scheme, self.pod_host(ordinal))
    }
}

/// The labels that select a vault's pods. They never change (a StatefulSet's selector is
/// immutable).
pub fn selector_labels(names: &VaultNames) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "vaultd".to_string()),
        ("app.kubernetes.io/instance".to_string(), names.vault().to_string()),
    ])
}

/// The labels on every child object.
pub fn labels(names: &VaultNames) -> BTreeMap<String, String> {
    let mut labels = selector_labels(names);
    labels.insert("app.kubernetes.io/component".to_string(), "vault".to_string());
    labels.insert("app.kubernetes.io/part-of".to_string(), "strongroom".to_string());
    labels.insert("app.kubernetes.io/managed-by".to_string(), crate::FIELD_MANAGER.to_string());
    labels
}

/// The labels of the pods that work for a vault without being its nodes (backups, the
/// ledger shipper, the restore): the vault's labels under a name of their own, so that no
/// selector of the vault's nodes (its Services, StatefulSet, PodDisruptionBudget and
/// NetworkPolicy) takes them for one.
pub fn helper_labels(names: &VaultNames, component: &str) -> BTreeMap<String, String> {
    let mut labels = labels(names);
    labels.insert("app.kubernetes.io/name".to_string(), format!("strongroom-{component}"));
    labels.insert("app.kubernetes.io/component".to_string(), component.to_string());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_go_through_the_headless_service() {
        let names = VaultNames::new("vault", "pii");
        assert_eq!(names.pod(2), "vault-2");
        assert_eq!(names.raft_address(2), "vault-2.vault-headless.pii.svc:3001");
        assert_eq!(names.api_address(0), "https://vault-0.vault-headless.pii.svc:3000");
        assert_eq!(names.client_address(), "https://vault.pii.svc:3000");
    }

    #[test]
    fn ordinals_are_read_back_from_pod_names() {
        let names = VaultNames::new("vault", "pii");
        assert_eq!(names.ordinal_of("vault-4"), Some(4));
        assert_eq!(names.ordinal_of("vault-x"), None);
        assert_eq!(names.ordinal_of("vault2-1"), None);
        assert_eq!(names.ordinal_of("other-1"), None);
    }

    #[test]
    fn selector_labels_are_a_subset_of_the_labels() {
        let names = VaultNames::new("vault", "pii");
        let all = labels(&names);
        for (key, value) in selector_labels(&names) {
            assert_eq!(all.get(&key), Some(&value));
        }
        assert_eq!(all["app.kubernetes.io/instance"], "vault");
    }

    #[test]
    fn helper_pods_are_never_selected_as_the_vaults_nodes() {
        let names = VaultNames::new("vault", "pii");
        let helper = helper_labels(&names, "backup");
        assert!(selector_labels(&names).iter().any(|(key, value)| helper.get(key) != Some(value)), "{helper:?}");
        assert_eq!(
            (helper["app.kubernetes.io/component"].as_str(), helper["app.kubernetes.io/instance"].as_str()),
            ("backup", "vault")
        );
        assert_eq!(names.data_claim(0), "data-vault-0");
    }
}
