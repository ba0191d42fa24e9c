//! The vault's ConfigMap: vaultd's non-secret settings, as the environment of its
//! containers (`envFrom`). Per-pod values (the advertised addresses) are set on the
//! container itself from the Downward API. The pod template carries a hash of this data,
//! so changing it rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::child_meta;
use super::layout;
use crate::crd::piivault::SOFTHSM_MODULE_PATH;
use crate::crd::PiiVault;
use crate::piivault::names::{VaultNames, API_PORT, PEER_PORT};
use crate::Error;

pub fn config_map(vault: &PiiVault) -> Result<ConfigMap, Error> {
    let spec = &vault.spec;
    let mut env = BTreeMap::from([
        ("VAULTD_LISTEN", format!("0.0.0.0:{API_PORT}")),
        ("VAULTD_PEER_LISTEN", format!("0.0.0.0:{PEER_PORT}")),
        ("VAULTD_DATA_DIR", layout::DATA_DIR.to_string()),
        ("VAULTD_ROOT_TOKEN_FILE", layout::ROOT_TOKEN_FILE.to_string()),
        ("VAULTD_PEER_SECRET_FILE", layout::PEER_AUTH_FILE.to_string()),
        ("VAULTD_HSM_TOKEN_LABEL", spec.hsm.token_label.clone()),
        ("VAULTD_HSM_KEY_LABEL", spec.hsm.kek_label.clone()),
        ("VAULTD_HSM_PIN_FILE", layout::HSM_PIN_FILE.to_string()),
    ]);
    if spec.tls.enabled {
        env.insert("VAULTD_PEER_TLS_CERT", format!("{}/tls.crt", layout::PEER_TLS_DIR));
        env.insert("VAULTD_PEER_TLS_KEY", format!("{}/tls.key", layout::PEER_TLS_DIR));
        env.insert("VAULTD_PEER_TLS_CA", format!("{}/ca.crt", layout::PEER_TLS_DIR));
        // vaultd re-reads these when the mounted Secret changes (a renewed certificate).
        env.insert("VAULTD_TLS_CERT", format!("{}/tls.crt", layout::API_TLS_DIR));
        env.insert("VAULTD_TLS_KEY", format!("{}/tls.key", layout::API_TLS_DIR));
    } else {
        // `tls.enabled: false` is the user's explicit choice of plain HTTP, on the API
        // (a listener on 0.0.0.0) and between pods.
        env.insert("VAULTD_TLS_DISABLE", "true".to_string());
        env.insert("VAULTD_PEER_PLAIN_HTTP", "true".to_string());
    }
    match &spec.hsm.pkcs11 {
        Some(pkcs11) => {
            env.insert("VAULTD_HSM_MODULE", pkcs11.module_path.clone());
        }
        None => {
            env.insert("VAULTD_HSM_MODULE", SOFTHSM_MODULE_PATH.to_string());
            env.insert("SOFTHSM2_CONF", layout::SOFTHSM_CONF.to_string());
        }
    }
    Ok(ConfigMap {
        metadata: child_meta(vault, VaultNames::of(vault).config_map())?,
        data: Some(env.into_iter().map(|(key, value)| (key.to_string(), value)).collect()),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::crd::piivault::{Pkcs11Spec, SecretKeyRef};

    fn data(vault: &PiiVault) -> BTreeMap<String, String> {
        config_map(vault).unwrap().data.unwrap()
    }

    #[test]
    fn softhsm_mode_points_vaultd_at_the_shared_token() {
        let data = data(&softhsm_vault(3));
        assert_eq!(data["VAULTD_LISTEN"], "0.0.0.0:3000");
        assert_eq!(data["VAULTD_PEER_LISTEN"], "0.0.0.0:3001");
        assert_eq!(data["VAULTD_DATA_DIR"], "/var/lib/strongroom");
        assert_eq!(data["VAULTD_HSM_MODULE"], "/usr/lib/softhsm/libsofthsm2.so");
        assert_eq!(data["SOFTHSM2_CONF"], "/hsm/softhsm2.conf");
        assert_eq!(data["VAULTD_HSM_TOKEN_LABEL"], "strongroom");
        assert_eq!(data["VAULTD_HSM_KEY_LABEL"], "strongroom-kek-1");
        assert_eq!(data["VAULTD_HSM_PIN_FILE"], "/etc/strongroom/hsm-pin/pin");
        assert_eq!(data["VAULTD_PEER_TLS_CA"], "/etc/strongroom/peer-tls/ca.crt");
        assert!(!data.contains_key("VAULTD_PEER_PLAIN_HTTP"));
    }

    #[test]
    fn vendor_mode_uses_the_vendor_module_and_no_softhsm_config() {
        let mut vault = softhsm_vault(3);
        vault.spec.hsm.softhsm = None;
        vault.spec.hsm.pkcs11 = Some(Pkcs11Spec {
            module_path: "/opt/strongroom/pkcs11/libvendor.so".into(),
            module_image: None,
            pin_secret_ref: SecretKeyRef { name: "hsm-pin".into(), key: "pin".into() },
            config_secret_name: None,
            env: vec![],
        });
        let data = data(&vault);
        assert_eq!(data["VAULTD_HSM_MODULE"], "/opt/strongroom/pkcs11/libvendor.so");
        assert!(!data.contains_key("SOFTHSM2_CONF"));
    }

    #[test]
    fn without_tls_no_certificate_is_configured() {
        let mut vault = softhsm_vault(3);
        vault.spec.tls.enabled = false;
        let data = data(&vault);
        assert!(data.keys().all(|key| !key.starts_with("VAULTD_PEER_TLS") && !key.starts_with("VAULTD_TLS_C")));
        assert_eq!(data["VAULTD_TLS_DISABLE"], "true", "a plain listener on 0.0.0.0 is chosen explicitly");
        assert_eq!(data["VAULTD_PEER_PLAIN_HTTP"], "true");
        assert_eq!(data["VAULTD_PEER_SECRET_FILE"], "/etc/strongroom/peer-auth/secret");
    }

    #[test]
    fn with_tls_the_api_serves_the_mounted_certificate() {
        let data = data(&softhsm_vault(3));
        assert_eq!(data["VAULTD_TLS_CERT"], "/etc/strongroom/api-tls/tls.crt");
        assert_eq!(data["VAULTD_TLS_KEY"], "/etc/strongroom/api-tls/tls.key");
        assert!(!data.contains_key("VAULTD_TLS_DISABLE"));
    }
}
