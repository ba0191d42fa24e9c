//! The `PiiVault` custom resource: one replicated vaultd cluster.
//!
//! The Rust types are the source of truth for the CRD: `crdgen` renders them (with their CEL
//! rules, printer columns and short name) into `crds/` and the Helm chart.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The token label used when `hsm.tokenLabel` is not set.
pub const DEFAULT_TOKEN_LABEL: &str = "strongroom";
/// The KEK label used when `hsm.kekLabel` is not set (vaultd's own default).
pub const DEFAULT_KEK_LABEL: &str = "strongroom-kek-1";
/// Where Debian's softhsm2 package installs the PKCS#11 module in the vaultd image.
pub const SOFTHSM_MODULE_PATH: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A replicated Strongroom vault: a StatefulSet of vaultd pods forming one Raft cluster.
// Several `printcolumn(type_ = ...)` entries look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strongroom.dev",
    version = "v1alpha1",
    kind = "PiiVault",
    plural = "piivaults",
    shortname = "pvault",
    category = "strongroom",
    namespaced,
    status = "PiiVaultStatus",
    derive = "PartialEq",
    doc = "A replicated Strongroom vault for personal data (a vaultd Raft cluster).",
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.readyReplicas"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Last Backup", type_ = "date", json_path = ".status.backups.lastSuccessfulBackup"),
    // A string, not a date: kubectl prints a date as an age, and a future one as <invalid>.
    printcolumn(name = "Next Backup", type_ = "string", json_path = ".status.backups.nextScheduledBackup"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.bootstrap) == has(oldSelf.bootstrap)").message("bootstrap is fixed at creation"),
    validation = Rule::new(
        "!has(self.bootstrap) || has(self.hsm.softhsm) == has(self.bootstrap.fromBackup.softhsmSecret)"
    ).message(
        "bootstrap.fromBackup.softhsmSecret names the source vault's SoftHSM Secret (its KEK wrapped the backup): \
         it is needed with hsm.softhsm, and only there"
    )
)]
pub struct PiiVaultSpec {
    /// Number of vaultd nodes (Raft voters): 1, 3 or 5.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self == 1 || self == 3 || self == 5").message("replicas must be 1, 3 or 5"))]
    pub replicas: i32,

    /// The vaultd container image (it must contain SoftHSM2 for `hsm.softhsm`).
    pub image: String,

    /// Image pull policy of the vaultd containers (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,

    /// Secrets for pulling the vaultd image (and a PKCS#11 module image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// The data volume of each node.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Where the key encryption key lives.
    pub hsm: HsmSpec,

    /// Transport security between the nodes (Raft port).
    #[serde(default)]
    pub tls: TlsSpec,

    /// The Secret key holding the root token. When absent the operator generates a random
    /// token in the Secret `<name>-root-token` (key `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_token_secret_ref: Option<SecretKeyRef>,

    /// Compute resources of the vaultd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the vault pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the vault pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity of the vault pods. When absent, pods prefer to run on different nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Priority class of the vault pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Stop all changes: no children are applied and no membership change is made; the
    /// status is still observed and reported.
    #[serde(default)]
    pub paused: bool,

    /// Backups to an S3-compatible bucket: the erasure ledger shipped there continuously,
    /// and, with a schedule, backups taken and pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Where a new vault's data comes from; absent: it starts empty. Read only while the
    /// vault has no nodes yet, and fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,

    /// Prometheus Operator objects for this vault: a PodMonitor or ServiceMonitor scraping
    /// the pods' `/metrics`, and a PrometheusRule with the vault's alerts. Absent: none
    /// (any rendered before are deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
}

/// What the operator renders for the Prometheus Operator (`monitoring.coreos.com/v1`).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// The kind of scrape object: `PodMonitor` (default) or `ServiceMonitor`.
    #[serde(default)]
    pub kind: MonitorKind,
    /// Labels added to the monitor and the rule objects, so that a Prometheus's
    /// `podMonitorSelector`, `serviceMonitorSelector` and `ruleSelector` find them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval (e.g. `30s`); absent: the Prometheus's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
    /// Render the PrometheusRule with the vault's alerts (default true).
    #[serde(default = "default_true")]
    pub alerts: bool,
}

/// The Prometheus Operator object that scrapes the vault pods.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MonitorKind {
    /// Scrapes the pods directly (port `api`).
    #[default]
    PodMonitor,
    /// Scrapes the pods through the headless Service's endpoints (port `api`).
    ServiceMonitor,
}

/// How a new vault is created.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("bootstrap is fixed at creation"))]
pub struct BootstrapSpec {
    /// Restore the first node from a backup (`vaultd restore`, in the Job `<name>-restore`),
    /// with every erasure the source's shipped ledger recorded after it; the other nodes
    /// then join it. The backup's keys must be wrapped by this vault's KEK.
    pub from_backup: FromBackupSpec,
}

/// A backup to restore.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FromBackupSpec {
    /// Where the backups are: the source vault's `backup.destination` (`s3://bucket/prefix`).
    #[schemars(length(min = 6, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('s3://')").message("bootstrap.fromBackup.source must be s3://bucket/prefix"))]
    pub source: String,
    /// A Secret of this namespace whose keys become the restore's environment, as for
    /// `backup.credentialsSecret`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// The backup's id (`vaultd backup list`); the newest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub backup_id: Option<String>,
    /// SoftHSM development mode only: the source vault's `<source>-softhsm` Secret. This
    /// vault's KEK is copied from its key `kek` (the backup's keys are wrapped by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub softhsm_secret: Option<String>,
}

/// Where and when the vault is backed up (`vaultd backup`), and how many backups are kept.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The bucket and prefix: `s3://bucket/prefix` (AWS or any S3-compatible store).
    #[schemars(length(min = 6, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('s3://')").message("backup.destination must be s3://bucket/prefix"))]
    pub destination: String,
    /// A Secret of this namespace whose keys become the backup containers' environment:
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, and as needed `AWS_REGION`,
    /// `AWS_ENDPOINT` (another S3-compatible store) and `AWS_ALLOW_HTTP`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// When backups are taken: a cron schedule of five space-separated fields, in UTC.
    /// Absent: no scheduled backups (the ledger is still shipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[^ ]+( +[^ ]+){4}$')").message("backup.schedule must be a cron schedule of 5 space-separated fields, e.g. \"0 2 * * *\""))]
    pub schedule: Option<String>,
    /// Backups kept after each scheduled one: the newest `keepLast` (default 7), and any
    /// younger than `keepWithin` (e.g. `30days`).
    #[serde(default)]
    pub retention: BackupRetention,
    /// A scheduled restore drill: the newest backup restored into a throwaway volume with
    /// the vault's HSM (every checksum, the audit chain, the keys, the erasure ledger), then
    /// `vaultd backup verify`; the result is in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_drill: Option<RestoreDrillSpec>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillSpec {
    /// When the drill runs: a cron schedule of five space-separated fields, in UTC.
    #[schemars(length(min = 9, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[^ ]+( +[^ ]+){4}$')").message("backup.restoreDrill.schedule must be a cron schedule of 5 space-separated fields, e.g. \"0 4 * * 0\""))]
    pub schedule: String,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetention {
    #[serde(default = "default_keep_last")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep_last: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32))]
    pub keep_within: Option<String>,
}

fn default_keep_last() -> i32 {
    7
}

impl Default for BackupRetention {
    fn default() -> Self {
        Self { keep_last: default_keep_last(), keep_within: None }
    }
}

fn default_replicas() -> i32 {
    3
}

/// The persistent volume of each node. Both fields are fixed at creation: a StatefulSet's
/// volume claim template cannot change.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "has(self.storageClassName) == has(oldSelf.storageClassName) && \
         (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
    ).message("storage.storageClassName is immutable"),
    validation = Rule::new("self.size == oldSelf.size").message("storage.size is immutable")
)]
pub struct StorageSpec {
    /// Requested size of each node's data volume.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// Storage class of the data volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_string())
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None }
    }
}

/// The HSM holding the key encryption key (KEK). Exactly one of `softhsm` (development) or
/// `pkcs11` (a vendor HSM) is set.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.softhsm) != has(self.pkcs11)").message("set exactly one of hsm.softhsm and hsm.pkcs11"))]
pub struct HsmSpec {
    /// Label of the PKCS#11 token (tokens are chosen by label, never by slot).
    #[serde(default = "default_token_label")]
    pub token_label: String,
    /// Label of the AES-256 KEK inside the token.
    #[serde(default = "default_kek_label")]
    pub kek_label: String,
    /// Development mode: the operator generates one SoftHSM2 token (PINs and KEK in the
    /// Secret `<name>-softhsm`) and provisions the same KEK into every pod. The KEK exists
    /// outside an HSM, so this mode is not for production data: it must be acknowledged
    /// with `acknowledgeDevelopmentOnly: true`, and the status carries the condition
    /// `InsecureKeyStorage` while it is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softhsm: Option<SoftHsmSpec>,
    /// A vendor HSM reached through its PKCS#11 module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<Pkcs11Spec>,
}

fn default_token_label() -> String {
    DEFAULT_TOKEN_LABEL.to_string()
}

fn default_kek_label() -> String {
    DEFAULT_KEK_LABEL.to_string()
}

/// SoftHSM2 development mode. The raw KEK sits in a Kubernetes Secret, readable by anyone
/// who may read Secrets of the namespace (and in etcd and its backups).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.acknowledgeDevelopmentOnly) && self.acknowledgeDevelopmentOnly").message(
    "hsm.softhsm keeps the raw KEK in a Secret and is for development only: set \
     hsm.softhsm.acknowledgeDevelopmentOnly: true to use it"
))]
pub struct SoftHsmSpec {
    /// Must be `true`: states that this vault holds no production data, because its KEK is
    /// stored outside an HSM (in the Secret `<name>-softhsm`).
    #[serde(default)]
    pub acknowledge_development_only: bool,
}

/// A vendor HSM: its PKCS#11 library, how that library reaches the pod, and the PIN.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pkcs11Spec {
    /// Absolute path of the PKCS#11 library inside the vaultd container. With
    /// `moduleImage`, the library's directory is copied to `/opt/strongroom/pkcs11`, so the
    /// path starts there (e.g. `/opt/strongroom/pkcs11/libvendor.so`).
    pub module_path: String,
    /// An image that carries the vendor library. An init container copies its directory
    /// `path` into a volume mounted at `/opt/strongroom/pkcs11` in the vaultd container.
    /// Absent when the library is already part of the vaultd image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_image: Option<ModuleImage>,
    /// The Secret key holding the token's user PIN.
    pub pin_secret_ref: SecretKeyRef,
    /// A Secret with the module's configuration files and client credentials, mounted
    /// read-only at `/etc/strongroom/pkcs11`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret_name: Option<String>,
    /// Extra environment for the module (e.g. the path of its configuration file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// An image holding a PKCS#11 library. The image needs a `cp` binary.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModuleImage {
    pub image: String,
    /// Directory inside the image whose contents are copied (e.g. `/usr/lib/vendor`).
    pub path: String,
}

/// Transport security: mutual TLS on the peer (Raft) port and HTTPS on the client API.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Use mutual TLS between the nodes and HTTPS on the API (default true). When false
    /// both are plain (vaultd runs with `--tls-disable`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A Secret with `tls.crt`, `tls.key` and `ca.crt` (as cert-manager writes them). The
    /// certificate must be valid for server and client authentication, with DNS names
    /// `<name>-<n>.<name>-headless.<namespace>.svc` for every node. When absent the
    /// operator generates a CA and certificate in the Secret `<name>-peer-tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// A Secret with `tls.crt`, `tls.key` and `ca.crt` (as cert-manager writes them) for the
    /// client API, valid for `<name>.<namespace>.svc` and every node's name as above; it
    /// is renewed by whoever issued it. When absent the operator issues the certificate
    /// from a CA of its own (`<name>-api-ca`) into `<name>-api-tls` and renews it. The
    /// operator and the retention Jobs trust only this `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_secret_name: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self { enabled: true, secret_name: None, api_secret_name: None }
    }
}

/// A key of a Secret in the vault's namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// What the operator observed, from the vault's own cluster API.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PiiVaultStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Available`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Healthy voting members.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The pod of the Raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// How many more voters can fail before the vault loses its quorum.
    #[serde(default)]
    pub failure_tolerance: i32,
    /// Label of the active key encryption key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_version: Option<String>,
    /// Scheduled backups, when `spec.backup` has a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupStatus>,
}

/// What the scheduled backups did, from their CronJob.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// When the last backup Job that succeeded was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<Time>,
    /// When the next scheduled backup starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled_backup: Option<Time>,
    /// When the last restore drill that succeeded was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_restore_drill: Option<Time>,
}

/// A summary of the vault's state.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The pods are starting; no cluster exists yet.
    Pending,
    /// The first node's volume is being restored from a backup.
    Restoring,
    /// The first node is being bootstrapped.
    Initializing,
    /// Members are being added, promoted or removed.
    Scaling,
    /// Every node is a healthy voter.
    Running,
    /// Something needs attention; see the `Degraded` condition.
    Degraded,
    /// `spec.paused` is set.
    Paused,
}

/// One Raft member.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The pod that serves this member; absent when no pod has its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub node_id: u64,
    pub role: MemberRole,
    /// Log entries behind the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    pub healthy: bool,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    Voter,
    Learner,
}

#[cfg(test)]
mod tests {
    //! The CEL rules, evaluated client-side as the API server would (kube's `cel` feature).

    use kube::core::cel::{validate_cel, validate_cel_update};

    use super::*;
    use crate::piivault::builders::test_support::softhsm_vault;

    #[test]
    fn replicas_must_be_1_3_or_5() {
        for replicas in [1, 3, 5] {
            assert!(validate_cel(&softhsm_vault(replicas)).is_ok(), "{replicas}");
        }
        for replicas in [0, 2, 4, 6, 7] {
            let error = validate_cel(&softhsm_vault(replicas)).expect_err("rejected");
            assert!(format!("{error:?}").contains("replicas must be 1, 3 or 5"), "{error:?}");
        }
    }

    #[test]
    fn exactly_one_hsm_mode_is_set() {
        let mut neither = softhsm_vault(3);
        neither.spec.hsm.softhsm = None;
        let mut both = softhsm_vault(3);
        both.spec.hsm.pkcs11 = Some(Pkcs11Spec {
            module_path: "/opt/strongroom/pkcs11/lib.so".into(),
            module_image: None,
            pin_secret_ref: SecretKeyRef { name: "pin".into(), key: "pin".into() },
            config_secret_name: None,
            env: vec![],
        });
        for vault in [neither, both] {
            let error = validate_cel(&vault).expect_err("rejected");
            assert!(format!("{error:?}").contains("exactly one of hsm.softhsm and hsm.pkcs11"), "{error:?}");
        }
    }

    #[test]
    fn softhsm_mode_must_be_acknowledged_as_development_only() {
        let mut vault = softhsm_vault(3);
        assert!(validate_cel(&vault).is_ok());
        vault.spec.hsm.softhsm = Some(SoftHsmSpec::default());
        let error = validate_cel(&vault).expect_err("rejected");
        assert!(format!("{error:?}").contains("acknowledgeDevelopmentOnly: true"), "{error:?}");
    }

    #[test]
    fn the_storage_class_and_size_cannot_change() {
        let mut old = softhsm_vault(3);
        old.spec.storage.storage_class_name = Some("fast".into());
        let mut scaled = old.clone();
        scaled.spec.replicas = 5;
        assert!(validate_cel_update(&scaled, &old).is_ok());

        let mut other_class = old.clone();
        other_class.spec.storage.storage_class_name = Some("slow".into());
        let mut no_class = old.clone();
        no_class.spec.storage.storage_class_name = None;
        for new in [other_class, no_class] {
            let error = validate_cel_update(&new, &old).expect_err("rejected");
            assert!(format!("{error:?}").contains("storage.storageClassName is immutable"), "{error:?}");
        }
        let mut bigger = old.clone();
        bigger.spec.storage.size = Quantity("20Gi".into());
        let error = validate_cel_update(&bigger, &old).expect_err("rejected");
        assert!(format!("{error:?}").contains("storage.size is immutable"), "{error:?}");
    }

    fn from_backup(softhsm_secret: Option<&str>) -> BootstrapSpec {
        BootstrapSpec {
            from_backup: FromBackupSpec {
                source: "s3://backups/pii/old".into(),
                credentials_secret: "backup-s3".into(),
                backup_id: None,
                softhsm_secret: softhsm_secret.map(String::from),
            },
        }
    }

    #[test]
    fn the_bootstrap_is_fixed_at_creation_and_softhsm_needs_the_sources_kek() {
        let mut restored = softhsm_vault(3);
        restored.spec.bootstrap = Some(from_backup(Some("old-softhsm")));
        assert!(validate_cel(&restored).is_ok());
        let plain = softhsm_vault(3);
        for (new, old) in [(&plain, &restored), (&restored, &plain)] {
            let error = validate_cel_update(new, old).expect_err("rejected");
            assert!(format!("{error:?}").contains("bootstrap is fixed at creation"), "{error:?}");
        }
        let mut without_kek = softhsm_vault(3);
        without_kek.spec.bootstrap = Some(from_backup(None));
        let error = validate_cel(&without_kek).expect_err("rejected");
        assert!(format!("{error:?}").contains("softhsmSecret names the source"), "{error:?}");
    }

    #[test]
    fn an_empty_monitoring_asks_for_a_pod_monitor_and_the_alerts() {
        let spec: MonitoringSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(
            spec,
            MonitoringSpec { kind: MonitorKind::PodMonitor, labels: BTreeMap::new(), interval: None, alerts: true }
        );
        let spec: MonitoringSpec =
            serde_json::from_value(serde_json::json!({"kind": "ServiceMonitor", "alerts": false})).unwrap();
        assert_eq!((spec.kind, spec.alerts), (MonitorKind::ServiceMonitor, false));
    }
}
