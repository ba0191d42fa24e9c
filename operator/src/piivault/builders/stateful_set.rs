//! The StatefulSet: one vaultd pod per node, each with its own data volume and a stable
//! DNS name through the headless Service.
//!
//! The HSM decides the rest of the pod: in SoftHSM development mode an init container
//! creates the token in an emptyDir and imports the operator-generated KEK (so every pod
//! holds the same KEK); with a vendor HSM an init container may copy the vendor's PKCS#11
//! library out of its image into an emptyDir.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::{child_meta, layout};
use crate::crd::PiiVault;
use crate::piivault::api_tls::api_tls_secret;
use crate::piivault::names::{labels, selector_labels, VaultNames, API_PORT, PEER_PORT};
use crate::Error;

/// Pod template annotation holding a hash of the ConfigMap, so a config change rolls pods.
pub const CONFIG_HASH_ANNOTATION: &str = "strongroom.dev/config-hash";
/// The user and group of the vaultd image (`docker/vaultd.Dockerfile`).
const VAULTD_UID: i64 = 10001;
/// Secret files readable by the owner and the pod's fsGroup only.
pub(crate) const SECRET_FILE_MODE: i32 = 0o440;

pub(super) const DATA_VOLUME: &str = "data";
const ROOT_TOKEN_VOLUME: &str = "root-token";
const PEER_AUTH_VOLUME: &str = "peer-auth";
const PEER_TLS_VOLUME: &str = "peer-tls";
const API_TLS_VOLUME: &str = "api-tls";
const HSM_PIN_VOLUME: &str = "hsm-pin";
const SOFTHSM_TOKEN_VOLUME: &str = "softhsm-token";
const SOFTHSM_SECRET_VOLUME: &str = "softhsm-secret";
const PKCS11_MODULE_VOLUME: &str = "pkcs11-module";
const PKCS11_CONFIG_VOLUME: &str = "pkcs11-config";
const TMP_VOLUME: &str = "tmp";

/// The SoftHSM init container's script: write the SoftHSM configuration, create the token
/// unless this pod's emptyDir already holds it (a restarted init container), then import
/// the shared KEK (vaultd skips the import when the token already has the label).
const SOFTHSM_INIT_SCRIPT: &str = r#"set -eu
mkdir -p /hsm/tokens
printf 'directories.tokendir = /hsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' > "$SOFTHSM2_CONF"
if ! softhsm2-util --show-slots | awk -v want="$VAULTD_HSM_TOKEN_LABEL" '
    $1 == "Label:" { sub(/^[[:space:]]*Label:[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); if ($0 == want) found = 1 }
    END { exit !found }'; then
  softhsm2-util --init-token --free --label "$VAULTD_HSM_TOKEN_LABEL" \
    --pin "$(cat /hsm-secret/user.pin)" --so-pin "$(cat /hsm-secret/so.pin)" >/dev/null
fi
exec vaultd hsm-import-key --key-file /hsm-secret/kek
"#;

/// Where a volume is mounted in a container.
fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn secret_volume(volume: &str, secret: &str, items: Option<Vec<(&str, &str)>>) -> Volume {
    Volume {
        name: volume.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            default_mode: Some(SECRET_FILE_MODE),
            items: items.map(|items| {
                items
                    .into_iter()
                    .map(|(key, path)| KeyToPath { key: key.to_string(), path: path.to_string(), mode: None })
                    .collect()
            }),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn empty_dir(volume: &str) -> Volume {
    Volume { name: volume.to_string(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.to_string(), api_version: None }),
            ..EnvVarSource::default()
        }),
        value: None,
    }
}

fn env(name: &str, value: String) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value), value_from: None }
}

/// The pod security context of every pod running the vaultd image: as the vaultd user and
/// group (which owns the mounted volumes), with the runtime's default seccomp profile.
pub(crate) fn vaultd_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(VAULTD_UID),
        run_as_group: Some(VAULTD_UID),
        fs_group: Some(VAULTD_UID),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_string(), localhost_profile: None }),
        ..PodSecurityContext::default()
    }
}

pub(crate) fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), add: None }),
        ..SecurityContext::default()
    }
}

/// `GET /v1/status` answers 200 while vaultd serves; with `?ready=member` it answers 503
/// until the node is a member of a cluster with a leader, which keeps a Service from
/// routing clients to a pod that has not joined yet.
const STATUS: &str = "/v1/status";
const READY_MEMBER: &str = "/v1/status?ready=member";

/// The kubelet does not verify the certificate of an HTTPS probe; it only needs the scheme.
fn status_probe(names: &VaultNames, path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("api".to_string()),
            scheme: Some(names.scheme().to_ascii_uppercase()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// A stable hash of the ConfigMap's data (hex SHA-256).
fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// By default the pods prefer distinct nodes, so one node failure costs one vault node.
/// The pods' affinity: the spec's, or by default spread over nodes.
pub(crate) fn vault_affinity(vault: &PiiVault) -> Affinity {
    vault.spec.affinity.clone().unwrap_or_else(|| default_affinity(&VaultNames::of(vault)))
}

fn default_affinity(names: &VaultNames) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(names)),
                        match_expressions: None,
                    }),
                    topology_key: "kubernetes.io/hostname".to_string(),
                    ..PodAffinityTerm::default()
                },
            }]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

/// The volumes of the pod and the mounts of the vaultd container and the init containers.
struct PodVolumes {
    volumes: Vec<Volume>,
    vaultd_mounts: Vec<VolumeMount>,
    init_containers: Vec<Container>,
}

fn pod_volumes(vault: &PiiVault) -> PodVolumes {
    let spec = &vault.spec;
    let names = VaultNames::of(vault);
    let (root_token_secret, root_token_key) = match &spec.root_token_secret_ref {
        Some(reference) => (reference.name.clone(), reference.key.clone()),
        None => (names.root_token_secret(), "token".to_string()),
    };
    let HsmAccess { mut volumes, mounts, init_containers } = hsm_access(vault);
    volumes.extend([
        secret_volume(ROOT_TOKEN_VOLUME, &root_token_secret, Some(vec![(&root_token_key, "token")])),
        secret_volume(PEER_AUTH_VOLUME, &names.peer_auth_secret(), Some(vec![("secret", "secret")])),
    ]);
    let mut vaultd_mounts = vec![
        mount(DATA_VOLUME, layout::DATA_DIR, false),
        mount(ROOT_TOKEN_VOLUME, layout::ROOT_TOKEN_DIR, true),
        mount(PEER_AUTH_VOLUME, layout::PEER_AUTH_DIR, true),
    ];
    vaultd_mounts.extend(mounts);
    if spec.tls.enabled {
        let secret = spec.tls.secret_name.clone().unwrap_or_else(|| names.peer_tls_secret());
        let files = vec![("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("ca.crt", "ca.crt")];
        volumes.push(secret_volume(PEER_TLS_VOLUME, &secret, Some(files)));
        vaultd_mounts.push(mount(PEER_TLS_VOLUME, layout::PEER_TLS_DIR, true));
    }
    if let Some(secret) = api_tls_secret(vault) {
        // ca.crt too: what a node trusts when it forwards a request to the leader's API.
        let files = vec![("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("ca.crt", "ca.crt")];
        volumes.push(secret_volume(API_TLS_VOLUME, &secret, Some(files)));
        vaultd_mounts.push(mount(API_TLS_VOLUME, layout::API_TLS_DIR, true));
    }
    PodVolumes { volumes, vaultd_mounts, init_containers }
}

/// What a pod needs to open the vault's KEK (a vault node, a restore): the volumes, the
/// mounts of the container that opens the HSM (with `/tmp`: the root filesystem is
/// read-only), and the init containers that prepare the HSM. That container also needs the
/// ConfigMap as its environment ([`vaultd_env_from`]) and the module's extra `env`.
pub(crate) struct HsmAccess {
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
    pub init_containers: Vec<Container>,
}

pub(crate) fn hsm_access(vault: &PiiVault) -> HsmAccess {
    let spec = &vault.spec;
    let names = VaultNames::of(vault);
    let mut volumes = vec![empty_dir(TMP_VOLUME)];
    let mut mounts = vec![mount(TMP_VOLUME, layout::TMP_DIR, false)];
    let mut init_containers = Vec::new();
    match &spec.hsm.pkcs11 {
        None => {
            // SoftHSM development mode.
            let secret = names.softhsm_secret();
            volumes.push(secret_volume(HSM_PIN_VOLUME, &secret, Some(vec![("user.pin", "pin")])));
            volumes.push(secret_volume(SOFTHSM_SECRET_VOLUME, &secret, None));
            volumes.push(empty_dir(SOFTHSM_TOKEN_VOLUME));
            mounts.push(mount(HSM_PIN_VOLUME, layout::HSM_PIN_DIR, true));
            mounts.push(mount(SOFTHSM_TOKEN_VOLUME, layout::SOFTHSM_DIR, false));
            init_containers.push(Container {
                name: "softhsm-init".to_string(),
                image: Some(spec.image.clone()),
                image_pull_policy: spec.image_pull_policy.clone(),
                command: Some(vec!["/bin/sh".to_string(), "-c".to_string(), SOFTHSM_INIT_SCRIPT.to_string()]),
                env_from: Some(vaultd_env_from(vault)),
                volume_mounts: Some(vec![
                    mount(SOFTHSM_TOKEN_VOLUME, layout::SOFTHSM_DIR, false),
                    mount(SOFTHSM_SECRET_VOLUME, layout::SOFTHSM_SECRET_DIR, true),
                    mount(HSM_PIN_VOLUME, layout::HSM_PIN_DIR, true),
                    mount(TMP_VOLUME, layout::TMP_DIR, false),
                ]),
                security_context: Some(restricted_security_context()),
                ..Container::default()
            });
        }
        Some(pkcs11) => {
            let pin = &pkcs11.pin_secret_ref;
            volumes.push(secret_volume(HSM_PIN_VOLUME, &pin.name, Some(vec![(&pin.key, "pin")])));
            mounts.push(mount(HSM_PIN_VOLUME, layout::HSM_PIN_DIR, true));
            if let Some(config_secret) = &pkcs11.config_secret_name {
                volumes.push(secret_volume(PKCS11_CONFIG_VOLUME, config_secret, None));
                mounts.push(mount(PKCS11_CONFIG_VOLUME, layout::PKCS11_CONFIG_DIR, true));
            }
            if let Some(module) = &pkcs11.module_image {
                volumes.push(empty_dir(PKCS11_MODULE_VOLUME));
                mounts.push(mount(PKCS11_MODULE_VOLUME, layout::PKCS11_MODULE_DIR, true));
                init_containers.push(Container {
                    name: "pkcs11-module".to_string(),
                    image: Some(module.image.clone()),
                    // No shell needed in the vendor image, only `cp`.
                    command: Some(vec![
                        "cp".to_string(),
                        "-R".to_string(),
                        format!("{}/.", module.path.trim_end_matches('/')),
                        format!("{}/", layout::PKCS11_MODULE_DIR),
                    ]),
                    volume_mounts: Some(vec![mount(PKCS11_MODULE_VOLUME, layout::PKCS11_MODULE_DIR, false)]),
                    security_context: Some(restricted_security_context()),
                    ..Container::default()
                });
            }
        }
    }
    HsmAccess { volumes, mounts, init_containers }
}

/// The vault's ConfigMap as a container's environment (vaultd's settings, the HSM's among
/// them).
pub(crate) fn vaultd_env_from(vault: &PiiVault) -> Vec<EnvFromSource> {
    vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource { name: VaultNames::of(vault).config_map(), optional: Some(false) }),
        ..EnvFromSource::default()
    }]
}

/// The module's extra environment (`hsm.pkcs11.env`).
pub(crate) fn hsm_env(vault: &PiiVault) -> Vec<EnvVar> {
    vault.spec.hsm.pkcs11.as_ref().map(|pkcs11| pkcs11.env.clone()).unwrap_or_default()
}

/// Each node's data volume (the claim template's spec; a restore creates pod 0's claim
/// with it before the StatefulSet exists).
pub(crate) fn data_claim_spec(vault: &PiiVault) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".to_string()]),
        storage_class_name: vault.spec.storage.storage_class_name.clone(),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".to_string(), vault.spec.storage.size.clone())])),
            limits: None,
        }),
        ..PersistentVolumeClaimSpec::default()
    }
}

/// Renders the StatefulSet at `replicas` pods.
pub fn stateful_set(vault: &PiiVault, replicas: i32, config_map: &ConfigMap) -> Result<StatefulSet, Error> {
    let spec = &vault.spec;
    let names = VaultNames::of(vault);
    let PodVolumes { volumes, vaultd_mounts, init_containers } = pod_volumes(vault);

    let peer_host = format!("$(POD_NAME).{}.$(POD_NAMESPACE).svc", names.headless_service());
    let mut vaultd_env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        env("VAULTD_ADVERTISE_PEER", format!("{peer_host}:{PEER_PORT}")),
        env("VAULTD_ADVERTISE_API", format!("{}://{peer_host}:{API_PORT}", names.scheme())),
    ];
    vaultd_env.extend(hsm_env(vault));

    let vaultd = Container {
        name: "vaultd".to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: Some(vec!["serve".to_string()]),
        ports: Some(vec![
            ContainerPort {
                name: Some("api".to_string()),
                container_port: API_PORT,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("peer".to_string()),
                container_port: PEER_PORT,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
        ]),
        env: Some(vaultd_env),
        env_from: Some(vaultd_env_from(vault)),
        volume_mounts: Some(vaultd_mounts),
        resources: spec.resources.clone(),
        // The HSM login and opening the data directory may take a while on first start.
        startup_probe: Some(status_probe(&names, STATUS, 2, 60)),
        readiness_probe: Some(status_probe(&names, READY_MEMBER, 5, 3)),
        liveness_probe: Some(status_probe(&names, STATUS, 10, 6)),
        security_context: Some(restricted_security_context()),
        ..Container::default()
    };

    let template_labels = labels(&names);
    let pod = PodSpec {
        service_account_name: Some(names.service_account()),
        automount_service_account_token: Some(false),
        init_containers: (!init_containers.is_empty()).then_some(init_containers),
        containers: vec![vaultd],
        volumes: Some(volumes),
        security_context: Some(vaultd_pod_security_context()),
        affinity: Some(vault_affinity(vault)),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        priority_class_name: spec.priority_class_name.clone(),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty()).then(|| spec.image_pull_secrets.clone()),
        termination_grace_period_seconds: Some(30),
        ..PodSpec::default()
    };

    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_string()),
            labels: Some(selector_labels(&names)),
            ..ObjectMeta::default()
        },
        spec: Some(data_claim_spec(vault)),
        status: None,
    };

    Ok(StatefulSet {
        metadata: child_meta(vault, names.stateful_set())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.headless_service()),
            selector: LabelSelector { match_labels: Some(selector_labels(&names)), match_expressions: None },
            // Pods may start together; the operator adds them to the cluster one at a time.
            pod_management_policy: Some("Parallel".to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: None,
            }),
            // A pod scaled away was removed from Raft first, so its volume holds nothing
            // the cluster needs, and a pod that comes back must join afresh. Deleting the
            // whole vault keeps the volumes (see the finalizer for SoftHSM mode).
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_scaled: Some("Delete".to_string()),
                when_deleted: Some("Retain".to_string()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), config_hash(config_map))])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::config_map;
    use super::super::test_support::*;
    use super::*;
    use crate::crd::piivault::{ModuleImage, Pkcs11Spec, SecretKeyRef};

    fn render(vault: &PiiVault, replicas: i32) -> StatefulSet {
        stateful_set(vault, replicas, &config_map(vault).unwrap()).unwrap()
    }

    fn pod(set: &StatefulSet) -> &PodSpec {
        set.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn vaultd(set: &StatefulSet) -> &Container {
        pod(set).containers.iter().find(|container| container.name == "vaultd").unwrap()
    }

    fn mounts(container: &Container) -> BTreeMap<String, String> {
        container.volume_mounts.iter().flatten().map(|m| (m.name.clone(), m.mount_path.clone())).collect()
    }

    fn volume<'a>(set: &'a StatefulSet, name: &str) -> &'a Volume {
        pod(set).volumes.iter().flatten().find(|volume| volume.name == name).unwrap()
    }

    fn env_value(container: &Container, name: &str) -> Option<String> {
        container.env.iter().flatten().find(|var| var.name == name).and_then(|var| var.value.clone())
    }

    fn vendor_vault() -> PiiVault {
        let mut vault = softhsm_vault(3);
        vault.spec.hsm.softhsm = None;
        vault.spec.hsm.pkcs11 = Some(Pkcs11Spec {
            module_path: "/opt/strongroom/pkcs11/libvendor.so".into(),
            module_image: Some(ModuleImage { image: "vendor/pkcs11:7".into(), path: "/usr/lib/vendor/".into() }),
            pin_secret_ref: SecretKeyRef { name: "hsm-credentials".into(), key: "user-pin".into() },
            config_secret_name: Some("hsm-client-config".into()),
            env: vec![env("VENDOR_CONF", "/etc/strongroom/pkcs11/vendor.conf".into())],
        });
        vault
    }

    #[test]
    fn replicas_service_and_selector() {
        let set = render(&softhsm_vault(5), 4);
        let spec = set.spec.as_ref().unwrap();
        assert_eq!(set.metadata.name.as_deref(), Some("vault"));
        assert_eq!(spec.replicas, Some(4), "the replicas the reconciler decided, not spec.replicas");
        assert_eq!(spec.service_name.as_deref(), Some("vault-headless"));
        let selector = spec.selector.match_labels.as_ref().unwrap();
        let template_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        for (key, value) in selector {
            assert_eq!(template_labels.get(key), Some(value), "the template matches the selector");
        }
        assert_owned_child(&set.metadata);
    }

    #[test]
    fn vaultd_serves_api_and_peer_ports() {
        let set = render(&softhsm_vault(3), 3);
        let container = vaultd(&set);
        let ports: Vec<_> =
            container.ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.container_port)).collect();
        assert_eq!(ports, vec![("api".to_string(), 3000), ("peer".to_string(), 3001)]);
        assert_eq!(container.args.as_deref(), Some(&["serve".to_string()][..]));
        assert_eq!(container.image.as_deref(), Some("registry.example/strongroom/vaultd:0.1.0"));
    }

    #[test]
    fn each_pod_advertises_its_own_stable_addresses() {
        let set = render(&softhsm_vault(3), 3);
        let container = vaultd(&set);
        assert_eq!(
            env_value(container, "VAULTD_ADVERTISE_PEER").as_deref(),
            Some("$(POD_NAME).vault-headless.$(POD_NAMESPACE).svc:3001")
        );
        assert_eq!(
            env_value(container, "VAULTD_ADVERTISE_API").as_deref(),
            Some("https://$(POD_NAME).vault-headless.$(POD_NAMESPACE).svc:3000")
        );
        // `$(VAR)` only expands variables defined before it in the list.
        let position = |name: &str| container.env.iter().flatten().position(|var| var.name == name).unwrap();
        assert!(position("POD_NAME") < position("VAULTD_ADVERTISE_PEER"));
        assert!(position("POD_NAMESPACE") < position("VAULTD_ADVERTISE_API"));
        let pod_name = container.env.iter().flatten().find(|var| var.name == "POD_NAME").unwrap();
        let field = pod_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, "metadata.name");
        let env_from = container.env_from.as_ref().unwrap();
        assert_eq!(env_from[0].config_map_ref.as_ref().unwrap().name, "vault-config");
    }

    #[test]
    fn probes_use_the_unauthenticated_status_endpoint() {
        let set = render(&softhsm_vault(3), 3);
        let container = vaultd(&set);
        let probes = [
            (&container.readiness_probe, "/v1/status?ready=member"),
            (&container.liveness_probe, "/v1/status"),
            (&container.startup_probe, "/v1/status"),
        ];
        for (probe, path) in probes {
            let http = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(http.path.as_deref(), Some(path));
            assert_eq!(http.port, IntOrString::String("api".into()));
        }
    }

    #[test]
    fn volumes_hold_data_secrets_and_the_softhsm_token() {
        let vault = softhsm_vault(3);
        let set = render(&vault, 3);
        let paths = mounts(vaultd(&set));
        assert_eq!(paths["data"], "/var/lib/strongroom");
        assert_eq!(paths["root-token"], "/etc/strongroom/root-token");
        assert_eq!(paths["peer-auth"], "/etc/strongroom/peer-auth");
        assert_eq!(paths["peer-tls"], "/etc/strongroom/peer-tls");
        assert_eq!(paths["hsm-pin"], "/etc/strongroom/hsm-pin");
        assert_eq!(paths["softhsm-token"], "/hsm");
        assert!(!paths.contains_key("softhsm-secret"), "the KEK file is for the init container only");

        let root = volume(&set, "root-token").secret.as_ref().unwrap();
        assert_eq!(root.secret_name.as_deref(), Some("vault-root-token"));
        assert_eq!(root.items.as_ref().unwrap()[0].key, "token");
        assert_eq!(root.default_mode, Some(0o440));
        let pin = volume(&set, "hsm-pin").secret.as_ref().unwrap();
        assert_eq!(pin.secret_name.as_deref(), Some("vault-softhsm"));
        assert_eq!(pin.items.as_ref().unwrap()[0].key, "user.pin");
        assert_eq!(volume(&set, "peer-tls").secret.as_ref().unwrap().secret_name.as_deref(), Some("vault-peer-tls"));
        assert!(volume(&set, "softhsm-token").empty_dir.is_some());

        let claims = set.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap();
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        let claim = claims[0].spec.as_ref().unwrap();
        assert_eq!(claim.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0, "10Gi");
    }

    #[test]
    fn softhsm_mode_imports_the_shared_kek_before_vaultd_starts() {
        let set = render(&softhsm_vault(3), 3);
        let init = pod(&set).init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        assert_eq!(init[0].name, "softhsm-init");
        assert_eq!(init[0].image, vaultd(&set).image, "the vaultd image carries softhsm2-util");
        let script = init[0].command.as_ref().unwrap().last().unwrap();
        assert!(script.contains("softhsm2-util --init-token --free --label \"$VAULTD_HSM_TOKEN_LABEL\""));
        assert!(script.contains("vaultd hsm-import-key --key-file /hsm-secret/kek"));
        let paths = mounts(&init[0]);
        assert_eq!(paths["softhsm-token"], "/hsm");
        assert_eq!(paths["softhsm-secret"], "/hsm-secret");
        assert_eq!(init[0].env_from, vaultd(&set).env_from, "same VAULTD_HSM_* settings as serve");
    }

    #[test]
    fn vendor_mode_copies_the_module_and_mounts_pin_and_config() {
        let set = render(&vendor_vault(), 3);
        let init = pod(&set).init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        assert_eq!(init[0].image.as_deref(), Some("vendor/pkcs11:7"));
        assert_eq!(
            init[0].command.as_deref(),
            Some(&["cp".into(), "-R".into(), "/usr/lib/vendor/.".into(), "/opt/strongroom/pkcs11/".into()][..])
        );
        let paths = mounts(vaultd(&set));
        assert_eq!(paths["pkcs11-module"], "/opt/strongroom/pkcs11");
        assert_eq!(paths["pkcs11-config"], "/etc/strongroom/pkcs11");
        assert!(!paths.contains_key("softhsm-token"));
        let pin = volume(&set, "hsm-pin").secret.as_ref().unwrap();
        assert_eq!(pin.secret_name.as_deref(), Some("hsm-credentials"));
        let item = &pin.items.as_ref().unwrap()[0];
        assert_eq!((item.key.as_str(), item.path.as_str()), ("user-pin", "pin"));
        assert_eq!(env_value(vaultd(&set), "VENDOR_CONF").as_deref(), Some("/etc/strongroom/pkcs11/vendor.conf"));
    }

    #[test]
    fn a_referenced_root_token_and_tls_secret_are_mounted_instead_of_generated_ones() {
        let mut vault = softhsm_vault(3);
        vault.spec.root_token_secret_ref = Some(SecretKeyRef { name: "my-token".into(), key: "root".into() });
        vault.spec.tls.secret_name = Some("cert-manager-peer".into());
        let set = render(&vault, 3);
        let root = volume(&set, "root-token").secret.as_ref().unwrap();
        assert_eq!(root.secret_name.as_deref(), Some("my-token"));
        assert_eq!(root.items.as_ref().unwrap()[0].key, "root");
        assert_eq!(root.items.as_ref().unwrap()[0].path, "token");
        let tls = volume(&set, "peer-tls").secret.as_ref().unwrap();
        assert_eq!(tls.secret_name.as_deref(), Some("cert-manager-peer"));
        assert_eq!(volume(&set, "api-tls").secret.as_ref().unwrap().secret_name.as_deref(), Some("vault-api-tls"));
        vault.spec.tls.api_secret_name = Some("cert-manager-api".into());
        let set = render(&vault, 3);
        let api = volume(&set, "api-tls").secret.as_ref().unwrap();
        assert_eq!(api.secret_name.as_deref(), Some("cert-manager-api"));
        let keys: Vec<&str> = api.items.iter().flatten().map(|item| item.key.as_str()).collect();
        assert_eq!(keys, ["tls.crt", "tls.key", "ca.crt"]);
        assert_eq!(mounts(vaultd(&set))["api-tls"], "/etc/strongroom/api-tls");
    }

    #[test]
    fn without_tls_no_certificate_is_mounted() {
        let mut vault = softhsm_vault(3);
        vault.spec.tls.enabled = false;
        let set = render(&vault, 3);
        assert!(!mounts(vaultd(&set)).contains_key("peer-tls"));
        assert!(pod(&set).volumes.iter().flatten().all(|volume| volume.name != "peer-tls" && volume.name != "api-tls"));
        let probe = vaultd(&set).liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(probe.scheme.as_deref(), Some("HTTP"));
        assert_eq!(
            env_value(vaultd(&set), "VAULTD_ADVERTISE_API").unwrap(),
            "http://$(POD_NAME).vault-headless.$(POD_NAMESPACE).svc:3000"
        );
    }

    #[test]
    fn pods_run_unprivileged_without_an_api_token() {
        let set = render(&softhsm_vault(3), 3);
        let pod = pod(&set);
        assert_eq!(pod.service_account_name.as_deref(), Some("vault"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.fs_group, Some(10001));
        let container = vaultd(&set).security_context.as_ref().unwrap();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
    }

    #[test]
    fn placement_defaults_to_spreading_over_nodes_and_follows_the_spec() {
        let set = render(&softhsm_vault(3), 3);
        let anti = pod(&set).affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
        let term = &anti.preferred_during_scheduling_ignored_during_execution.as_ref().unwrap()[0];
        assert_eq!(term.pod_affinity_term.topology_key, "kubernetes.io/hostname");

        let mut vault = softhsm_vault(3);
        vault.spec.affinity = Some(Affinity::default());
        vault.spec.node_selector = BTreeMap::from([("pool".to_string(), "pii".to_string())]);
        let set = render(&vault, 3);
        assert_eq!(pod(&set).affinity, Some(Affinity::default()));
        assert_eq!(pod(&set).node_selector.as_ref().unwrap()["pool"], "pii");
    }

    #[test]
    fn scaled_away_volumes_are_deleted_and_a_deleted_vault_keeps_them() {
        let set = render(&softhsm_vault(3), 3);
        let policy = set.spec.as_ref().unwrap().persistent_volume_claim_retention_policy.as_ref().unwrap();
        assert_eq!(policy.when_scaled.as_deref(), Some("Delete"));
        assert_eq!(policy.when_deleted.as_deref(), Some("Retain"));
    }

    #[test]
    fn a_config_change_changes_the_pod_template() {
        let hash = |vault: &PiiVault| {
            let set = render(vault, 3);
            set.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
        };
        let vault = softhsm_vault(3);
        let mut other_kek = softhsm_vault(3);
        other_kek.spec.hsm.kek_label = "strongroom-kek-2".into();
        assert_eq!(hash(&vault), hash(&softhsm_vault(3)));
        assert_ne!(hash(&vault), hash(&other_kek));
    }
}
