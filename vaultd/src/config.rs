//! How `vaultd serve` is configured: a TOML file, overridden by flags and environment.
//! The HSM PIN and the root token come from files or the environment, never from flags
//! (flags are visible to every user of the machine in the process list).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::identity::PhoneRegion;

pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
pub const DEFAULT_KEK_LABEL: &str = "strongroom-kek-1";

/// The configuration file's shape. Every field can also be given as a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub root_token_file: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub default_country: Option<String>,
    pub bulk_list_enabled: Option<bool>,
    pub anonymous_create: Option<bool>,
    /// `direct` or `request`.
    pub subject_changes: Option<String>,
    pub dek_cache_capacity: Option<usize>,
    pub storage_cache_mb: Option<u64>,
    pub workers: Option<usize>,
    /// Cluster nodes only: where the peer (Raft) port listens.
    pub peer_listen: Option<SocketAddr>,
    /// `host:port` other members use for this node's peer port.
    pub advertise_peer: Option<String>,
    /// Base URL other members and clients use for this node's API.
    pub advertise_api: Option<String>,
    pub peer_secret_file: Option<PathBuf>,
    /// PEM files for mutual TLS on the peer port (all three, or none).
    pub peer_tls_cert: Option<PathBuf>,
    pub peer_tls_key: Option<PathBuf>,
    pub peer_tls_ca: Option<PathBuf>,
    pub snapshot_every: Option<u64>,
    pub erasure_compaction_secs: Option<u64>,
    pub expiration_sweep_secs: Option<u64>,
    /// The longest a session lives, e.g. `30d`.
    pub max_session_ttl: Option<String>,
    /// The longest a shared record lasts, e.g. `7d`.
    pub max_share_ttl: Option<String>,
    /// The longest expiration countdown, e.g. `90d`.
    pub max_user_retention_period: Option<String>,
    #[serde(default)]
    pub hsm: FileHsmConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHsmConfig {
    pub module: Option<PathBuf>,
    pub token_label: Option<String>,
    pub pin_file: Option<PathBuf>,
    pub key_label: Option<String>,
    pub sessions: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0} is required (flag, environment variable or configuration file)")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.message().to_string() })
    }
}

/// Reads a secret from a file, trimming the trailing newline editors add.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?,
    );
    let secret = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
    if secret.is_empty() {
        return Err(ConfigError::Invalid(format!("{} is empty", path.display())));
    }
    Ok(secret)
}

pub fn parse_region(code: Option<&str>) -> Result<PhoneRegion, ConfigError> {
    code.map(str::parse).transpose().map_err(ConfigError::Invalid).map(Option::unwrap_or_default)
}
