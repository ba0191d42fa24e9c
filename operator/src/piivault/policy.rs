//! What a `PiiVault` may ask the operator to run, set once at install time (Helm values
//! `policy.*`): which vaultd images, which PKCS#11 module images and which extra
//! environment variables. Whoever may create a `PiiVault` would otherwise run any image,
//! with any environment, next to the vault's Secrets.
//!
//! Secrets are constrained by the spec's shape rather than by this policy: a vault's pods
//! mount only the Secrets the operator generates for it and the ones named in the spec
//! fields it knows (`rootTokenSecretRef`, `tls.secretName`, `tls.apiSecretName`,
//! `hsm.pkcs11.pinSecretRef`, `hsm.pkcs11.configSecretName`) — there is no free-form volume
//! field — and `hsm.pkcs11.env` may not read Secrets or ConfigMaps (`valueFrom` with
//! `secretKeyRef` or `configMapKeyRef` is refused).

use k8s_openapi::api::core::v1::EnvVar;

use crate::crd::PiiVault;

/// The project's own vaultd images: what the chart allows by default.
pub const PROJECT_IMAGES: &str = "ghcr.io/strongroom/vaultd:*";

/// One allowed value: exact, or — ending in `*` — a prefix (`*` alone allows everything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    pub fn matches(&self, value: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => value == self.0,
        }
    }
}

/// The allow-lists. An empty list allows nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultPolicy {
    /// `spec.image`.
    pub allowed_images: Vec<Pattern>,
    /// `spec.hsm.pkcs11.moduleImage.image` (the operator-wide default module image is
    /// always allowed: the administrator chose it).
    pub allowed_module_images: Vec<Pattern>,
    /// Names of `spec.hsm.pkcs11.env` entries.
    pub allowed_env: Vec<Pattern>,
    /// Whether a vault may turn TLS off (`spec.tls.enabled: false`: plain HTTP on the API
    /// and between its pods, tokens and personal data in clear on the pod network).
    pub allow_plain_http: bool,
}

impl Default for VaultPolicy {
    /// The project's images only, no module image, no extra environment.
    fn default() -> Self {
        Self {
            allowed_images: vec![Pattern::new(PROJECT_IMAGES)],
            allowed_module_images: vec![],
            allowed_env: vec![],
            allow_plain_http: false,
        }
    }
}

impl VaultPolicy {
    /// Parses comma-separated lists (the operator's flags); blanks are ignored. Plain HTTP
    /// stays refused ([`VaultPolicy::allowing_plain_http`] changes that).
    pub fn from_lists(images: &[String], module_images: &[String], env: &[String]) -> Self {
        let patterns = |list: &[String]| {
            list.iter().map(|item| item.trim()).filter(|item| !item.is_empty()).map(Pattern::new).collect()
        };
        Self {
            allowed_images: patterns(images),
            allowed_module_images: patterns(module_images),
            allowed_env: patterns(env),
            allow_plain_http: false,
        }
    }

    /// This policy, with vaults allowed (or not) to turn TLS off.
    pub fn allowing_plain_http(self, allow: bool) -> Self {
        Self { allow_plain_http: allow, ..self }
    }

    /// Why `vault` (with the operator's defaults filled in) may not be rendered, if it may
    /// not. `default_module_image` is the operator-wide module image.
    pub fn check(&self, vault: &PiiVault, default_module_image: Option<&str>) -> Result<(), String> {
        let allowed = |patterns: &[Pattern], value: &str| patterns.iter().any(|pattern| pattern.matches(value));
        let spec = &vault.spec;
        self.check_image(&spec.image)?;
        if !spec.tls.enabled && !self.allow_plain_http {
            return Err("tls.enabled: false (plain HTTP on the API and between the pods) is not allowed by the \
                        operator's policy (policy.allowPlainHttp)"
                .to_string());
        }
        let Some(pkcs11) = &spec.hsm.pkcs11 else { return Ok(()) };
        if let Some(module) = &pkcs11.module_image {
            if Some(module.image.as_str()) != default_module_image
                && !allowed(&self.allowed_module_images, &module.image)
            {
                return Err(format!(
                    "module image {:?} is not allowed by the operator's policy (policy.allowedModuleImages)",
                    module.image
                ));
            }
        }
        for var in &pkcs11.env {
            if !allowed(&self.allowed_env, &var.name) {
                return Err(format!(
                    "environment variable {:?} in hsm.pkcs11.env is not allowed by the operator's policy \
                     (policy.allowedEnv)",
                    var.name
                ));
            }
            if reads_a_secret_or_config_map(var) {
                return Err(format!(
                    "environment variable {:?} in hsm.pkcs11.env reads a Secret or ConfigMap; name Secrets in \
                     hsm.pkcs11.pinSecretRef or hsm.pkcs11.configSecretName instead",
                    var.name
                ));
            }
        }
        Ok(())
    }
}

impl VaultPolicy {
    /// Why a vaultd image may not run, if it may not: the vault's own pods, and every Job
    /// run with the vault's image (a RetentionPolicy's CronJob).
    pub fn check_image(&self, image: &str) -> Result<(), String> {
        match self.allowed_images.iter().any(|pattern| pattern.matches(image)) {
            true => Ok(()),
            false => Err(format!("image {image:?} is not allowed by the operator's policy (policy.allowedImages)")),
        }
    }
}

fn reads_a_secret_or_config_map(var: &EnvVar) -> bool {
    var.value_from.as_ref().is_some_and(|from| from.secret_key_ref.is_some() || from.config_map_key_ref.is_some())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector};

    use super::*;
    use crate::crd::piivault::{ModuleImage, Pkcs11Spec, SecretKeyRef};
    use crate::piivault::builders::test_support::softhsm_vault;

    fn vendor_vault(module: Option<&str>, env: Vec<EnvVar>) -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.spec.image = "ghcr.io/strongroom/vaultd:0.1.0".into();
        vault.spec.hsm.softhsm = None;
        vault.spec.hsm.pkcs11 = Some(Pkcs11Spec {
            module_path: "/opt/strongroom/pkcs11/libvendor.so".into(),
            module_image: module.map(|image| ModuleImage { image: image.into(), path: "/usr/lib/vendor".into() }),
            pin_secret_ref: SecretKeyRef { name: "pin".into(), key: "pin".into() },
            config_secret_name: None,
            env,
        });
        vault
    }

    fn literal(name: &str) -> EnvVar {
        EnvVar { name: name.into(), value: Some("x".into()), value_from: None }
    }

    #[test]
    fn patterns_are_exact_or_prefixes() {
        assert!(Pattern::new("ghcr.io/strongroom/vaultd:*").matches("ghcr.io/strongroom/vaultd:0.1.0"));
        assert!(!Pattern::new("ghcr.io/strongroom/vaultd:*").matches("ghcr.io/strongroom/vaultd-evil:1"));
        assert!(Pattern::new("A").matches("A"));
        assert!(!Pattern::new("A").matches("AB"));
        assert!(Pattern::new("*").matches("anything"));
    }

    #[test]
    fn the_default_allows_only_the_projects_images() {
        let policy = VaultPolicy::default();
        let mut vault = softhsm_vault(3);
        vault.spec.image = "ghcr.io/strongroom/vaultd:0.1.0".into();
        assert_eq!(policy.check(&vault, None), Ok(()));
        vault.spec.image = "docker.io/attacker/vaultd:latest".into();
        let refused = policy.check(&vault, None).unwrap_err();
        assert!(refused.contains("docker.io/attacker/vaultd:latest") && refused.contains("allowedImages"), "{refused}");
    }

    #[test]
    fn module_images_and_env_need_the_policy() {
        let policy = VaultPolicy::default();
        let refused = policy.check(&vendor_vault(Some("vendor/pkcs11:7"), vec![]), None).unwrap_err();
        assert!(refused.contains("allowedModuleImages"), "{refused}");
        assert_eq!(policy.check(&vendor_vault(Some("vendor/pkcs11:7"), vec![]), Some("vendor/pkcs11:7")), Ok(()));
        let refused = policy.check(&vendor_vault(None, vec![literal("LD_PRELOAD")]), None).unwrap_err();
        assert!(refused.contains("LD_PRELOAD") && refused.contains("allowedEnv"), "{refused}");

        let open = VaultPolicy::from_lists(
            &["ghcr.io/strongroom/*".into()],
            &["vendor/*".into(), " ".into()],
            &["Chrystoki*".into()],
        );
        let vault = vendor_vault(Some("vendor/pkcs11:7"), vec![literal("ChrystokiConfigurationPath")]);
        assert_eq!(open.check(&vault, None), Ok(()));
    }

    #[test]
    fn turning_tls_off_needs_the_policy() {
        let mut vault = softhsm_vault(3);
        vault.spec.image = "ghcr.io/strongroom/vaultd:0.1.0".into();
        vault.spec.tls.enabled = false;
        let refused = VaultPolicy::default().check(&vault, None).unwrap_err();
        assert!(refused.contains("allowPlainHttp"), "{refused}");
        assert_eq!(VaultPolicy::default().allowing_plain_http(true).check(&vault, None), Ok(()));
    }

    #[test]
    fn env_may_not_read_secrets() {
        let policy = VaultPolicy::from_lists(&["*".into()], &[], &["*".into()]);
        let from_secret = EnvVar {
            name: "PIN".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector { name: "other".into(), key: "k".into(), optional: None }),
                ..EnvVarSource::default()
            }),
        };
        let refused = policy.check(&vendor_vault(None, vec![from_secret]), None).unwrap_err();
        assert!(refused.contains("reads a Secret"), "{refused}");
    }
}
