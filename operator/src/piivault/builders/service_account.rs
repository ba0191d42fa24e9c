//! The vault pods' ServiceAccount: an identity of their own, with no API permissions.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::child_meta;
use crate::crd::PiiVault;
use crate::piivault::names::VaultNames;
use crate::Error;

pub fn service_account(vault: &PiiVault) -> Result<ServiceAccount, Error> {
    Ok(ServiceAccount {
        metadata: child_meta(vault, VaultNames::of(vault).service_account())?,
        // vaultd never calls the Kubernetes API; no token in its pods.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn the_service_account_mounts_no_token() {
        let account = service_account(&softhsm_vault(3)).unwrap();
        assert_eq!(account.metadata.name.as_deref(), Some("vault"));
        assert_eq!(account.automount_service_account_token, Some(false));
        assert_owned_child(&account.metadata);
    }
}
