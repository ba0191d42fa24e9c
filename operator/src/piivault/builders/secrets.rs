//! The Secrets the operator generates (their content comes from `secret_material`; this
//! only wraps it in an owned, labelled object).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::child_meta;
use crate::crd::PiiVault;
use crate::Error;

pub fn generated_secret(vault: &PiiVault, name: String, data: BTreeMap<String, ByteString>) -> Result<Secret, Error> {
    Ok(Secret {
        metadata: child_meta(vault, name)?,
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_generated_secret_is_owned_and_carries_its_data() {
        let data = BTreeMap::from([("token".to_string(), ByteString(b"abc".to_vec()))]);
        let secret = generated_secret(&softhsm_vault(3), "vault-root-token".into(), data.clone()).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("vault-root-token"));
        assert_eq!(secret.data, Some(data));
        assert_owned_child(&secret.metadata);
    }
}
