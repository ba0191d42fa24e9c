//! Operator-wide defaults for `PiiVault`s, set once at install time (Helm values), so that
//! every vault of a platform can use the same vendor PKCS#11 module without repeating it.

use crate::crd::piivault::ModuleImage;
use crate::crd::PiiVault;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VaultDefaults {
    /// The image carrying the PKCS#11 library, for vaults with `hsm.pkcs11` that name no
    /// `moduleImage` of their own.
    pub pkcs11_module_image: Option<ModuleImage>,
}

impl VaultDefaults {
    /// The vault with the defaults filled in where its spec leaves a choice open.
    pub fn apply(&self, vault: &PiiVault) -> PiiVault {
        let mut vault = vault.clone();
        if let Some(pkcs11) = vault.spec.hsm.pkcs11.as_mut() {
            if pkcs11.module_image.is_none() {
                pkcs11.module_image = self.pkcs11_module_image.clone();
            }
        }
        vault
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::piivault::{Pkcs11Spec, SecretKeyRef};
    use crate::piivault::builders::test_support::softhsm_vault;

    fn module(image: &str) -> ModuleImage {
        ModuleImage { image: image.into(), path: "/usr/lib/vendor".into() }
    }

    fn vendor_vault(module_image: Option<ModuleImage>) -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.spec.hsm.softhsm = None;
        vault.spec.hsm.pkcs11 = Some(Pkcs11Spec {
            module_path: "/opt/strongroom/pkcs11/libvendor.so".into(),
            module_image,
            pin_secret_ref: SecretKeyRef { name: "pin".into(), key: "pin".into() },
            config_secret_name: None,
            env: vec![],
        });
        vault
    }

    #[test]
    fn the_default_module_image_fills_only_an_open_choice() {
        let defaults = VaultDefaults { pkcs11_module_image: Some(module("vendor/default:1")) };
        let filled = defaults.apply(&vendor_vault(None));
        assert_eq!(filled.spec.hsm.pkcs11.unwrap().module_image, Some(module("vendor/default:1")));
        let own = defaults.apply(&vendor_vault(Some(module("vendor/own:2"))));
        assert_eq!(own.spec.hsm.pkcs11.unwrap().module_image, Some(module("vendor/own:2")));
        assert_eq!(defaults.apply(&softhsm_vault(3)), softhsm_vault(3), "SoftHSM needs no module image");
    }
}
