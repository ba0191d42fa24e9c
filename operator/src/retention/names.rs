//! The names and labels of everything a `RetentionPolicy` owns, and the names it is known
//! by in the vault (its run history label and its token's name), in one place.

use std::collections::BTreeMap;

use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::crd::RetentionPolicy;
use crate::piivault::names::VaultNames;

/// The annotation on the token Secret naming the vault token's id.
pub const TOKEN_ID_ANNOTATION: &str = "strongroom.dev/token-id";
/// The annotation on the token Secret naming the vault (its uid) that issued the token: a
/// vault deleted and created again under the same name does not know the old token.
pub const VAULT_UID_ANNOTATION: &str = "strongroom.dev/vault-uid";
/// The key of the token Secret that holds the bearer secret.
pub const TOKEN_KEY: &str = "token";
/// The key of the policy ConfigMap that holds the policy file.
pub const POLICY_KEY: &str = "policy.yaml";
/// Pods of a retention Job carry this label with the vault's name (what a NetworkPolicy
/// of the vault would select them by).
pub const JOB_VAULT_LABEL: &str = "strongroom.dev/retention-vault";
/// The longest token name the vault accepts.
const MAX_TOKEN_NAME: usize = 64;

/// The names of one policy's children and of its vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyNames {
    name: String,
    namespace: String,
    vault: String,
}

impl PolicyNames {
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, vault: impl Into<String>) -> Self {
        Self { name: name.into(), namespace: namespace.into(), vault: vault.into() }
    }

    pub fn of(policy: &RetentionPolicy) -> Self {
        Self::new(policy.name_any(), policy.namespace().unwrap_or_default(), policy.spec.vault_ref.name.clone())
    }

    pub fn policy(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The referenced `PiiVault`'s names (same namespace).
    pub fn vault(&self) -> VaultNames {
        VaultNames::new(self.vault.clone(), self.namespace.clone())
    }

    /// `namespace/name`: what `vaultd minimize` records the runs under.
    pub fn run_label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn cron_job(&self) -> String {
        format!("retention-{}", self.name)
    }

    /// The ConfigMap with the policy file.
    pub fn config_map(&self) -> String {
        format!("retention-{}-policy", self.name)
    }

    /// The Secret with the policy's vault token.
    pub fn token_secret(&self) -> String {
        format!("retention-{}-token", self.name)
    }

    /// The token's name in the vault: `retention-<namespace>-<name>`, or — when that is
    /// longer than the vault allows — its start and a hash of `namespace/name`, so that two
    /// policies never share a name (leftover tokens are found by it).
    pub fn token_name(&self) -> String {
        let full = format!("retention-{}-{}", self.namespace, self.name);
        if full.len() <= MAX_TOKEN_NAME {
            return full;
        }
        let digest = Sha256::digest(self.run_label().as_bytes());
        let hash: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
        format!("{}-{hash}", &full[..MAX_TOKEN_NAME - hash.len() - 1])
    }
}

/// The labels on every child object.
pub fn labels(names: &PolicyNames) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "strongroom-retention".to_string()),
        ("app.kubernetes.io/instance".to_string(), names.name.clone()),
        ("app.kubernetes.io/component".to_string(), "retention".to_string()),
        ("app.kubernetes.io/part-of".to_string(), "strongroom".to_string()),
        ("app.kubernetes.io/managed-by".to_string(), crate::FIELD_MANAGER.to_string()),
    ])
}

/// The labels of the Jobs and their pods: the children's, the vault's name, and the
/// component `retention-job`. Never the vault pods' selector labels (the vault's Services
/// would route clients to them).
pub fn job_labels(names: &PolicyNames) -> BTreeMap<String, String> {
    let mut labels = labels(names);
    labels.insert("app.kubernetes.io/component".to_string(), "retention-job".to_string());
    labels.insert(JOB_VAULT_LABEL.to_string(), names.vault.clone());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::piivault::names::selector_labels;

    #[test]
    fn children_are_named_after_the_policy() {
        let names = PolicyNames::new("drop-phone", "shop", "customers");
        assert_eq!(names.cron_job(), "retention-drop-phone");
        assert_eq!(names.config_map(), "retention-drop-phone-policy");
        assert_eq!(names.token_secret(), "retention-drop-phone-token");
        assert_eq!(names.run_label(), "shop/drop-phone");
        assert_eq!(names.token_name(), "retention-shop-drop-phone");
        assert_eq!(names.vault().client_address(), "https://customers.shop.svc:3000");
    }

    #[test]
    fn long_token_names_are_shortened_without_colliding() {
        let a = PolicyNames::new("a".repeat(42), "n".repeat(40), "v").token_name();
        let b = PolicyNames::new(format!("{}b", "a".repeat(41)), "n".repeat(40), "v").token_name();
        assert_eq!(a.len(), 64);
        assert!(a.starts_with("retention-nnnn"));
        assert_ne!(a, b);
    }

    #[test]
    fn job_pods_are_never_selected_as_vault_pods() {
        let names = PolicyNames::new("drop-phone", "shop", "customers");
        let job = job_labels(&names);
        let vault_selector = selector_labels(&names.vault());
        assert!(vault_selector.iter().any(|(key, value)| job.get(key) != Some(value)));
        assert_eq!(job[JOB_VAULT_LABEL], "customers");
        assert_eq!(job["app.kubernetes.io/component"], "retention-job");
    }
}
