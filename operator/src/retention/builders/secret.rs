//! The Secret holding the policy's vault token (scope `retention:run`), mounted by the
//! Jobs. Its annotations say which token (id) of which vault (uid) it holds, so the
//! reconciler knows when to issue a new one and the finalizer which one to revoke.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::child_meta;
use crate::crd::RetentionPolicy;
use crate::retention::names::{PolicyNames, TOKEN_ID_ANNOTATION, TOKEN_KEY, VAULT_UID_ANNOTATION};
use crate::vaultd_client::NewToken;
use crate::Error;

pub fn token_secret(policy: &RetentionPolicy, token: &NewToken, vault_uid: &str) -> Result<Secret, Error> {
    let names = PolicyNames::of(policy);
    let mut metadata = child_meta(policy, names.token_secret())?;
    metadata.annotations = Some(BTreeMap::from([
        (TOKEN_ID_ANNOTATION.to_string(), token.id.clone()),
        (VAULT_UID_ANNOTATION.to_string(), vault_uid.to_string()),
    ]));
    Ok(Secret {
        metadata,
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), ByteString(token.secret.expose().as_bytes().to_vec()))])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_owned_by_policy;
    use super::*;
    use crate::retention::test_support::issue_example;
    use crate::vaultd_client::RootToken;

    #[test]
    fn the_token_secret_holds_the_secret_and_names_token_and_vault() {
        let token = NewToken { id: "tok-1".into(), secret: RootToken::new("scoped-secret") };
        let secret = token_secret(&issue_example(), &token, "vault-uid-1").unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("retention-drop-phone-token"));
        assert_owned_by_policy(&secret.metadata);
        let annotations = secret.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[TOKEN_ID_ANNOTATION], "tok-1");
        assert_eq!(annotations[VAULT_UID_ANNOTATION], "vault-uid-1");
        assert_eq!(secret.data.as_ref().unwrap()[TOKEN_KEY].0, b"scoped-secret");
    }
}
