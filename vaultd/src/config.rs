//! How `vaultd serve` is configured: one set of settings, each readable from a flag, the
//! environment or a TOML file, layered in that order of precedence. The HSM PIN, the root
//! token and the peer secret come from files or the environment, never from flags (flags
//! are visible to every user of the machine in the process list).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cluster::{ClusterOptions, PeerOptions, PeerTls};
use crate::crypto::HsmConfig;
use crate::identifiers::PhoneRegion;
use crate::server::ServerOptions;
use crate::throttle::ThrottleSettings;
use crate::tls::ApiTls;
use crate::vault::{SubjectChanges, VaultSettings};

pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
const DEFAULT_ANONYMOUS_PER_MINUTE: u32 = 600;
const DEFAULT_FAILED_AUTH_PER_MINUTE: u32 = 60;
const DEFAULT_SUBJECT_TOKEN_PER_MINUTE: u32 = 300;
pub const DEFAULT_KEK_LABEL: &str = "strongroom-kek-1";
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3000);
const DEFAULT_HSM_SESSIONS: usize = 4;

/// Every setting of `vaultd serve`, declared once: each field is a flag (`--max-body-bytes`),
/// an environment variable (`VAULTD_MAX_BODY_BYTES`) and a key of the TOML file
/// (`max_body_bytes`; the `--hsm-*` settings are the file's `[hsm]` table). A flag wins
/// over the environment (clap reads both), and either over the file ([`ServeSettings::load`]).
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct ServeSettings {
    /// TOML configuration file; flags and environment override it.
    #[arg(long, env = "VAULTD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where the API listens (default 127.0.0.1:3000).
    #[arg(long, env = "VAULTD_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "VAULTD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// File holding the root token (or set VAULTD_ROOT_TOKEN).
    #[arg(long, env = "VAULTD_ROOT_TOKEN_FILE")]
    pub root_token_file: Option<PathBuf>,
    /// The API's certificate chain (PEM); with --tls-key the API speaks HTTPS. Re-read
    /// when the file changes.
    #[arg(long, env = "VAULTD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "VAULTD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose certificates callers must present (mutual TLS); tokens are still
    /// checked.
    #[arg(long, env = "VAULTD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Allow plain HTTP on a listen address other than loopback (without --tls-cert);
    /// `--tls-disable=false` turns off a file's `true`.
    #[arg(long, env = "VAULTD_TLS_DISABLE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub tls_disable: Option<bool>,
    #[command(flatten)]
    #[serde(flatten)]
    pub behaviour: BehaviourSettings,
    #[command(flatten)]
    #[serde(default)]
    pub hsm: ServeHsmSettings,
    /// Create the KEK when the token does not hold it yet.
    #[arg(long)]
    #[serde(skip)]
    pub hsm_create_key: bool,
    /// Make this node clusterable: the peer (Raft) port listens here. Without it the vault
    /// is a standalone one-member cluster.
    #[arg(long, env = "VAULTD_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    /// host:port other members use to reach this node's peer port (default: the bound
    /// peer address).
    #[arg(long, env = "VAULTD_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// Base URL of this node's API as others see it (default: http://, or https:// with
    /// --tls-cert, + the bound address).
    #[arg(long, env = "VAULTD_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// File holding the secret every member shares (or set VAULTD_PEER_SECRET).
    #[arg(long, env = "VAULTD_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,
    /// This node's peer certificate (PEM); with --peer-tls-key and --peer-tls-ca the peer
    /// port speaks mutual TLS.
    #[arg(long, env = "VAULTD_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,
    #[arg(long, env = "VAULTD_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,
    /// The cluster CA that signed every member's peer certificate (PEM).
    #[arg(long, env = "VAULTD_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// Allow the peer port without TLS: the peer secret and every replicated record then
    /// cross the network in clear. Without peer TLS, `--peer-listen` needs this.
    #[arg(long, env = "VAULTD_PEER_PLAIN_HTTP", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub peer_plain_http: Option<bool>,
    /// Raft log entries between snapshots (default 20000).
    #[arg(long, env = "VAULTD_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Longest an erasure waits before it is compacted out of the Raft log (default 60 s;
    /// each compaction snapshots the whole state, so a shorter deadline costs more under a
    /// steady stream of erasures such as a retention run).
    #[arg(long, env = "VAULTD_ERASURE_COMPACTION_SECS")]
    pub erasure_compaction_secs: Option<u64>,
    /// Free bytes the data directory's file system keeps: with less, writes are refused
    /// (507) until space is freed, and reads and erasures go on down to half of it
    /// (default 64 MiB, or a quarter of a smaller file system; 0 turns the guard off).
    #[arg(long, env = "VAULTD_MIN_FREE_BYTES")]
    pub min_free_bytes: Option<u64>,
}

/// How the vault treats its callers and its data: the settings `vaultd demo` takes too
/// (with the same flags and environment variables).
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct BehaviourSettings {
    /// Largest accepted request body in bytes (default 1 MiB).
    #[arg(long, env = "VAULTD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest JSON encoding of a stored profile, app record or session, in bytes (default
    /// 1048576, the default body limit); a change that would make one larger is 413.
    #[arg(long, env = "VAULTD_MAX_RECORD_BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Country for phone numbers written without a country code (ISO 3166, default GB).
    #[arg(long, env = "VAULTD_DEFAULT_COUNTRY")]
    pub default_country: Option<String>,
    /// Allow `POST /v1/users` (bulk listing); `--enable-bulk-list=false` turns off a
    /// file's `true`.
    #[arg(long, env = "VAULTD_ENABLE_BULK_LIST", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub enable_bulk_list: Option<bool>,
    /// Allow `POST /v1/user` without a token (e.g. a public sign-up form).
    #[arg(long, env = "VAULTD_ENABLE_ANONYMOUS_CREATE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub enable_anonymous_create: Option<bool>,
    /// Whether a subject token's changes apply directly (`direct`) or become requests for
    /// a DPO (`request`, the default).
    #[arg(long, env = "VAULTD_SUBJECT_CHANGES")]
    pub subject_changes: Option<SubjectChanges>,
    /// Unwrapped data keys kept in memory (default 100000).
    #[arg(long, env = "VAULTD_DEK_CACHE_CAPACITY")]
    pub dek_cache_capacity: Option<usize>,
    /// MiB of storage page cache (default 96).
    #[arg(long, env = "VAULTD_STORAGE_CACHE_MB")]
    pub storage_cache_mb: Option<u64>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "VAULTD_WORKERS")]
    pub workers: Option<usize>,
    /// How often the leader forgets subjects whose expiration has ended and deletes ended
    /// sessions (default 10 s).
    #[arg(long, env = "VAULTD_EXPIRATION_SWEEP_SECS")]
    pub expiration_sweep_secs: Option<u64>,
    /// How often each node walks its whole audit chain to verify it, as well as once at
    /// start (default 21600, six hours; 0: only on `GET /v1/sys/audit/verify`).
    #[arg(long, env = "VAULTD_AUDIT_VERIFY_EVERY_SECS")]
    pub audit_verify_every_secs: Option<u64>,
    /// The longest a session lives, e.g. `12h` or `30days` (the default).
    #[arg(long, env = "VAULTD_MAX_SESSION_TTL")]
    pub max_session_ttl: Option<Span>,
    /// The longest a shared record lasts, e.g. `7days` or `30days` (the default).
    #[arg(long, env = "VAULTD_MAX_SHARE_TTL")]
    pub max_share_ttl: Option<Span>,
    /// The longest expiration countdown, and the one started when a request names none,
    /// e.g. `90days` (default `186days`: Databunker's six months of 31 days).
    #[arg(long, env = "VAULTD_MAX_USER_RETENTION_PERIOD")]
    pub max_user_retention_period: Option<Span>,
    /// Requests per minute one client address may make to the routes that take no token
    /// (default 600; 0: no limit).
    #[arg(long, env = "VAULTD_ANONYMOUS_REQUESTS_PER_MINUTE")]
    pub anonymous_requests_per_minute: Option<u32>,
    /// Failed authentications per minute one client address may make before it is told
    /// 429 (default 60; 0: no limit).
    #[arg(long, env = "VAULTD_FAILED_AUTH_PER_MINUTE")]
    pub failed_auth_per_minute: Option<u32>,
    /// Requests per minute one subject token (handed to the person, e.g. by a privacy
    /// portal) may make before it is told 429 (default 300; 0: no limit).
    #[arg(long, env = "VAULTD_SUBJECT_TOKEN_REQUESTS_PER_MINUTE")]
    pub subject_token_requests_per_minute: Option<u32>,
}

/// Where the KEK lives: `--hsm-*` flags, `VAULTD_HSM_*` variables, the file's `[hsm]`
/// table. Shared by `serve` and `hsm-import-key`.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct HsmSettings {
    /// Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long = "hsm-module", env = "VAULTD_HSM_MODULE")]
    pub module: Option<PathBuf>,
    /// Label of the HSM token (tokens are chosen by label, never by slot).
    #[arg(long = "hsm-token-label", env = "VAULTD_HSM_TOKEN_LABEL")]
    pub token_label: Option<String>,
    /// File holding the user PIN (or set VAULTD_HSM_PIN). There is no PIN flag.
    #[arg(long = "hsm-pin-file", env = "VAULTD_HSM_PIN_FILE")]
    pub pin_file: Option<PathBuf>,
    /// Label of the KEK inside the token (default strongroom-kek-1).
    #[arg(long = "hsm-key-label", env = "VAULTD_HSM_KEY_LABEL")]
    pub key_label: Option<String>,
}

/// `serve`'s `[hsm]` table: where the KEK lives, and how many sessions to use it through.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct ServeHsmSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub location: HsmSettings,
    /// PKCS#11 sessions, one worker thread each (default 4).
    #[arg(long = "hsm-sessions", env = "VAULTD_HSM_SESSIONS")]
    pub sessions: Option<usize>,
}

/// A duration setting in the standard form `humantime` reads (`90s`, `30m` = minutes,
/// `12h`, `30days`); the Databunker API's own `m` = month applies to API values only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match humantime::parse_duration(text) {
            Ok(duration) if !duration.is_zero() => Ok(Span(duration)),
            Ok(_) => Err("must be longer than zero".into()),
            Err(error) => Err(format!("{error} (a duration like 90s, 30m, 12h or 30days)")),
        }
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|message| serde::de::Error::custom(format!("{text:?}: {message}")))
    }
}

/// Keys an older configuration file may use, and their current names.
const RENAMED_KEYS: [(&str, &str); 2] =
    [("bulk_list_enabled", "enable_bulk_list"), ("anonymous_create", "enable_anonymous_create")];

impl ServeSettings {
    /// These settings (flags and environment) over those of the `--config` file.
    pub fn load(self) -> Result<Self, ConfigError> {
        let Some(path) = self.config.clone() else { return Ok(self) };
        let parse = |message: String| ConfigError::Parse { path: path.clone(), message };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let mut file: Value = toml::from_str(&text).map_err(|e: toml::de::Error| parse(e.message().to_string()))?;
        if let Value::Object(keys) = &mut file {
            for (old, new) in RENAMED_KEYS {
                if let Some(value) = keys.remove(old) {
                    keys.entry(new).or_insert(value);
                }
            }
        }
        let as_value =
            |settings: &Self| serde_json::to_value(settings).map_err(|e| ConfigError::Invalid(e.to_string()));
        // The file alone first, so that its mistakes are reported as the file's.
        refuse_unknown_keys(&file, &as_value(&Self::default())?, "").map_err(parse)?;
        let file = Self::deserialize(&file).map_err(|e| parse(e.to_string()))?;
        let mut merged = as_value(&file)?;
        overlay(&mut merged, as_value(&self)?);
        let merged = Self::deserialize(&merged).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(ServeSettings { config: self.config, hsm_create_key: self.hsm_create_key, ..merged })
    }

    /// Where the API listens.
    pub fn listen(&self) -> SocketAddr {
        self.listen.unwrap_or(DEFAULT_LISTEN)
    }

    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        self.data_dir.clone().ok_or(ConfigError::Missing("--data-dir"))
    }

    /// The root token, from its file or `VAULTD_ROOT_TOKEN`; at least 16 characters.
    pub fn root_token(&self) -> Result<Zeroizing<String>, ConfigError> {
        secret(
            self.root_token_file.as_deref(),
            "VAULTD_ROOT_TOKEN",
            "--root-token-file or VAULTD_ROOT_TOKEN",
            "root token",
        )
    }

    /// The HSM to open: its location, the PIN read, the session count and whether to
    /// create the KEK.
    pub fn hsm_config(&self) -> Result<HsmConfig, ConfigError> {
        let location = self.hsm.location.location()?;
        Ok(HsmConfig {
            module: location.module,
            token_label: location.token_label,
            pin: location.pin,
            key_label: location.key_label,
            create_key: self.hsm_create_key,
            sessions: self.hsm.sessions.unwrap_or(DEFAULT_HSM_SESSIONS),
        })
    }

    /// TLS for the API: the certificate and key, both or neither, and the client CA (which
    /// needs them). Without them the API is plain HTTP, which is refused on a listen
    /// address other than loopback unless `--tls-disable` allows it.
    pub fn api_tls(&self) -> Result<Option<ApiTls>, ConfigError> {
        let disabled = self.tls_disable.unwrap_or(false);
        let invalid = |message: &str| Err(ConfigError::Invalid(message.into()));
        match (&self.tls_cert, &self.tls_key) {
            (None, None) if self.tls_client_ca.is_some() => invalid("--tls-client-ca needs --tls-cert and --tls-key"),
            (None, None) if disabled || is_loopback(self.listen()) => Ok(None),
            (None, None) => Err(ConfigError::Invalid(format!(
                "refusing plain HTTP on {}, which is not a loopback address: give --tls-cert and --tls-key \
                 (HTTPS), or --tls-disable to allow plain HTTP",
                self.listen()
            ))),
            _ if disabled => invalid("--tls-disable contradicts --tls-cert and --tls-key: give one or the other"),
            (Some(cert), Some(key)) => {
                Ok(Some(ApiTls { cert: cert.clone(), key: key.clone(), client_ca: self.tls_client_ca.clone() }))
            }
            _ => invalid("API TLS needs both --tls-cert and --tls-key"),
        }
    }

    /// Mutual TLS for the peer port: all three files, or none (plain HTTP).
    pub fn peer_tls(&self) -> Result<Option<PeerTls>, ConfigError> {
        match (&self.peer_tls_cert, &self.peer_tls_key, &self.peer_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                Ok(Some(PeerTls { cert: cert.clone(), key: key.clone(), ca: ca.clone() }))
            }
            (None, None, None) => Ok(None),
            _ => Err(ConfigError::Invalid(
                "peer TLS needs all of --peer-tls-cert, --peer-tls-key and --peer-tls-ca".into(),
            )),
        }
    }

    /// How this node takes part in a cluster, given where its API and (when it is
    /// clusterable) its peer port are bound; the advertised addresses default to those.
    pub fn cluster_options(&self, api: SocketAddr, peer: Option<SocketAddr>) -> Result<ClusterOptions, ConfigError> {
        let defaults = ClusterOptions::default();
        let tls = self.peer_tls()?;
        if peer.is_some() && tls.is_none() && !self.peer_plain_http.unwrap_or(false) {
            return Err(ConfigError::Invalid(
                "the peer port needs mutual TLS (--peer-tls-cert, --peer-tls-key and --peer-tls-ca); \
                 --peer-plain-http allows plain HTTP between members, which sends the peer secret \
                 and every replicated record in clear"
                    .into(),
            ));
        }
        let peer = match peer {
            None => None,
            Some(peer) => Some(PeerOptions {
                advertise_peer: self.advertise_peer.clone().unwrap_or_else(|| peer.to_string()),
                advertise_api: self.advertise_api.clone().unwrap_or_else(|| {
                    let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
                    format!("{scheme}://{api}")
                }),
                secret: secret(
                    self.peer_secret_file.as_deref(),
                    "VAULTD_PEER_SECRET",
                    "--peer-secret-file or VAULTD_PEER_SECRET (with --peer-listen)",
                    "peer secret",
                )?,
                tls,
            }),
        };
        Ok(ClusterOptions {
            peer,
            snapshot_every: self.snapshot_every.map_or(defaults.snapshot_every, |every| every.max(1)),
            erasure_compaction: self.erasure_compaction_secs.map_or(defaults.erasure_compaction, Duration::from_secs),
            min_free_bytes: self.min_free_bytes,
        })
    }
}

impl BehaviourSettings {
    /// The settings the vault's behaviour depends on, defaults filled in.
    pub fn vault_settings(&self) -> Result<VaultSettings, ConfigError> {
        let defaults = VaultSettings::default();
        let span = |setting: Option<Span>, default: Duration| setting.map_or(default, |span| span.0);
        Ok(VaultSettings {
            phone_region: parse_region(self.default_country.as_deref())?,
            bulk_list_enabled: self.enable_bulk_list.unwrap_or(false),
            anonymous_create: self.enable_anonymous_create.unwrap_or(false),
            subject_changes: self.subject_changes.unwrap_or_default(),
            dek_cache_capacity: self.dek_cache_capacity.unwrap_or(defaults.dek_cache_capacity),
            storage_cache_bytes: self
                .storage_cache_mb
                .map_or(defaults.storage_cache_bytes, |mb| mb.saturating_mul(1024 * 1024)),
            expiration_sweep: self
                .expiration_sweep_secs
                .map_or(defaults.expiration_sweep, |secs| Duration::from_secs(secs.max(1))),
            max_session_ttl: span(self.max_session_ttl, defaults.max_session_ttl),
            max_share_ttl: span(self.max_share_ttl, defaults.max_share_ttl),
            max_user_retention: span(self.max_user_retention_period, defaults.max_user_retention),
            max_record_bytes: self.max_record_bytes.unwrap_or(defaults.max_record_bytes),
            audit_verification: match self.audit_verify_every_secs {
                None => defaults.audit_verification,
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
            },
        })
    }

    /// The HTTP server's settings, defaults filled in.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            max_body_bytes: self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            workers: self.workers,
            throttle: ThrottleSettings {
                anonymous_per_minute: self.anonymous_requests_per_minute.unwrap_or(DEFAULT_ANONYMOUS_PER_MINUTE),
                failed_auth_per_minute: self.failed_auth_per_minute.unwrap_or(DEFAULT_FAILED_AUTH_PER_MINUTE),
                subject_token_per_minute: self
                    .subject_token_requests_per_minute
                    .unwrap_or(DEFAULT_SUBJECT_TOKEN_PER_MINUTE),
            },
            tls: None,
        }
    }
}

impl HsmSettings {
    /// Where the KEK is, with the PIN read from its file or `VAULTD_HSM_PIN`.
    pub fn location(&self) -> Result<HsmLocation, ConfigError> {
        let pin = match &self.pin_file {
            Some(path) => read_secret_file(path)?,
            None => Zeroizing::new(
                std::env::var("VAULTD_HSM_PIN")
                    .map_err(|_| ConfigError::Missing("--hsm-pin-file or VAULTD_HSM_PIN"))?,
            ),
        };
        Ok(HsmLocation {
            module: self.module.clone().ok_or(ConfigError::Missing("--hsm-module"))?,
            token_label: self.token_label.clone().ok_or(ConfigError::Missing("--hsm-token-label"))?,
            pin,
            key_label: self.key_label.clone().unwrap_or_else(|| DEFAULT_KEK_LABEL.into()),
        })
    }
}

/// The HSM token and key to use, and the PIN that opens the token.
pub struct HsmLocation {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: Zeroizing<String>,
    pub key_label: String,
}

/// Whether `address` is only reachable from this machine (127.0.0.0/8, ::1).
fn is_loopback(address: SocketAddr) -> bool {
    address.ip().to_canonical().is_loopback()
}

/// Writes `top`'s settings over `base`'s; absent (null) ones leave `base`'s in place.
fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(base), Value::Object(top)) => {
            for (key, value) in top {
                match base.get_mut(&key) {
                    Some(existing) => overlay(existing, value),
                    None if !value.is_null() => drop(base.insert(key, value)),
                    None => {}
                }
            }
        }
        (_, Value::Null) => {}
        (base, top) => *base = top,
    }
}

/// Names the first key of `file` that `known` (every setting, as serialised) lacks; serde's
/// own check does not combine with the flattened groups of settings.
fn refuse_unknown_keys(file: &Value, known: &Value, table: &str) -> Result<(), String> {
    let (Value::Object(file), Value::Object(known)) = (file, known) else { return Ok(()) };
    for (key, value) in file {
        match known.get(key) {
            None => return Err(format!("unknown field `{table}{key}`")),
            Some(inner @ Value::Object(_)) => refuse_unknown_keys(value, inner, &format!("{table}{key}."))?,
            Some(_) => {}
        }
    }
    Ok(())
}

/// A secret from its file, or else from the environment variable `variable`; at least 16
/// characters.
fn secret(
    file: Option<&Path>,
    variable: &str,
    missing: &'static str,
    what: &str,
) -> Result<Zeroizing<String>, ConfigError> {
    let secret = match file {
        Some(path) => read_secret_file(path)?,
        None => Zeroizing::new(std::env::var(variable).map_err(|_| ConfigError::Missing(missing))?),
    };
    if secret.len() < 16 {
        return Err(ConfigError::Invalid(format!("the {what} must be at least 16 characters")));
    }
    Ok(secret)
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: ServeSettings,
    }

    /// `vaultd serve` with `flags`, over a configuration file holding `file`.
    fn load(file: &str, flags: &[&str]) -> Result<ServeSettings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vaultd.toml");
        std::fs::write(&path, file).unwrap();
        let args = ["serve", "--config", path.to_str().unwrap()].into_iter().chain(flags.iter().copied());
        Cli::try_parse_from(args).unwrap().settings.load()
    }

    #[test]
    fn a_flag_turns_off_what_the_file_turns_on() {
        for key in ["enable_bulk_list", "bulk_list_enabled"] {
            let file = format!("{key} = true\nenable_anonymous_create = true\n");
            let on = load(&file, &[]).unwrap().behaviour.vault_settings().unwrap();
            assert!(on.bulk_list_enabled && on.anonymous_create, "{key}");
            let off = load(&file, &["--enable-bulk-list=false", "--enable-anonymous-create=no"]).unwrap();
            let off = off.behaviour.vault_settings().unwrap();
            assert!(!off.bulk_list_enabled && !off.anonymous_create, "{key}");
        }
        let bare = load("", &["--enable-bulk-list"]).unwrap().behaviour.vault_settings().unwrap();
        assert!(bare.bulk_list_enabled && !bare.anonymous_create);
    }

    #[test]
    fn durations_read_m_as_minutes() {
        let flags = load("", &["--max-session-ttl", "30m", "--max-share-ttl=2h", "--max-user-retention-period=90days"]);
        let settings = flags.unwrap().behaviour.vault_settings().unwrap();
        assert_eq!(settings.max_session_ttl, Duration::from_secs(30 * 60));
        assert_eq!(settings.max_share_ttl, Duration::from_secs(2 * 3600));
        assert_eq!(settings.max_user_retention, Duration::from_secs(90 * 86_400));
        let file = load("max_session_ttl = \"30m\"\n", &[]).unwrap().behaviour.vault_settings().unwrap();
        assert_eq!(file.max_session_ttl, Duration::from_secs(30 * 60));
        let defaults = load("", &[]).unwrap().behaviour.vault_settings().unwrap();
        assert_eq!(defaults.max_user_retention, Duration::from_secs(186 * 86_400));
        for bad in ["0s", "30", "30x", "-1d", ""] {
            let flag = format!("--max-session-ttl={bad}");
            assert!(Cli::try_parse_from(["serve", flag.as_str()]).is_err(), "{bad:?}");
            let file = format!("max_session_ttl = {bad:?}\n");
            assert!(matches!(load(&file, &[]), Err(ConfigError::Parse { .. })), "{bad:?}");
        }
    }

    #[test]
    fn flags_win_over_the_file_setting_by_setting_and_in_the_hsm_table() {
        let file = "listen = \"127.0.0.1:4000\"\nworkers = 3\nsubject_changes = \"direct\"\n\n\
                    [hsm]\nmodule = \"/lib/from-file.so\"\nsessions = 2\n";
        let settings = load(file, &["--workers", "5", "--hsm-sessions", "7"]).unwrap();
        assert_eq!(settings.listen, Some(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert_eq!(settings.behaviour.workers, Some(5));
        assert_eq!(settings.hsm.sessions, Some(7));
        assert_eq!(settings.hsm.location.module.as_deref(), Some(Path::new("/lib/from-file.so")));
        assert_eq!(settings.behaviour.vault_settings().unwrap().subject_changes, SubjectChanges::Direct);
    }

    #[test]
    fn mistakes_in_the_file_are_named_as_the_files() {
        for (file, named) in [
            ("unknown_setting = 1\n", "unknown field `unknown_setting`"),
            ("[hsm]\npin = \"1234\"\n", "unknown field `hsm.pin`"),
            ("workers = \"many\"\n", "invalid type"),
            ("listen = \n", ""),
        ] {
            match load(file, &[]) {
                Err(ConfigError::Parse { message, .. }) => assert!(message.contains(named), "{file:?}: {message}"),
                other => panic!("{file:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn api_tls_needs_a_certificate_and_key_or_a_loopback_address_or_tls_disable() {
        let tls = |flags: &[&str]| load("", flags).unwrap().api_tls();
        let invalid = |flags: &[&str]| match tls(flags) {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("{flags:?}: {other:?}"),
        };
        let on = tls(&["--listen=0.0.0.0:3000", "--tls-cert=/c", "--tls-key=/k"]).unwrap().unwrap();
        assert_eq!((on.cert.as_path(), on.key.as_path(), on.client_ca), (Path::new("/c"), Path::new("/k"), None));
        for loopback in ["127.0.0.1:3000", "127.8.0.1:3000", "[::1]:3000", "[::ffff:127.0.0.1]:3000"] {
            assert!(tls(&[&format!("--listen={loopback}")]).unwrap().is_none(), "{loopback}");
        }
        assert!(tls(&[]).unwrap().is_none(), "the default listen address is loopback");
        assert!(tls(&["--listen=0.0.0.0:3000", "--tls-disable"]).unwrap().is_none());
        assert!(invalid(&["--listen=[::]:3000"]).contains("--tls-disable"));
        assert!(invalid(&["--listen=10.0.0.1:3000", "--tls-disable=false"]).contains("--tls-cert"));
        assert!(invalid(&["--tls-cert=/c"]).contains("both"));
        assert!(invalid(&["--tls-key=/k"]).contains("both"));
        assert!(invalid(&["--tls-client-ca=/ca"]).contains("needs --tls-cert"));
        assert!(invalid(&["--tls-cert=/c", "--tls-key=/k", "--tls-disable"]).contains("contradicts"));
        let file = load("tls_cert = \"/c\"\ntls_key = \"/k\"\ntls_client_ca = \"/ca\"\n", &[]).unwrap();
        assert_eq!(file.api_tls().unwrap().unwrap().client_ca.as_deref(), Some(Path::new("/ca")));
    }

    #[test]
    fn the_advertised_api_says_https_with_tls() {
        let api = SocketAddr::from(([10, 0, 0, 1], 3000));
        let peer = Some(SocketAddr::from(([10, 0, 0, 1], 3001)));
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "a-peer-secret-of-enough-length").unwrap();
        let secret_flag = format!("--peer-secret-file={}", secret.path().display());
        let advertised = |flags: &[&str]| {
            let settings = load("", &[flags, &[secret_flag.as_str(), "--peer-plain-http"]].concat()).unwrap();
            settings.cluster_options(api, peer).unwrap().peer.unwrap().advertise_api
        };
        assert_eq!(advertised(&["--tls-cert=/c", "--tls-key=/k"]), "https://10.0.0.1:3000");
        assert_eq!(advertised(&["--tls-disable"]), "http://10.0.0.1:3000");
        assert_eq!(
            advertised(&["--tls-cert=/c", "--tls-key=/k", "--advertise-api=https://vault:3000"]),
            "https://vault:3000"
        );
    }

    /// The README's configuration table lists every setting, each under its flag, its
    /// environment variable and its file key, and nothing else.
    #[test]
    fn the_readme_table_lists_every_setting() {
        let readme = include_str!("../../README.md");
        let section = readme.split("\n\n").find(|block| block.starts_with("| flag | environment")).unwrap();
        let first_code = |cell: &str| cell.split('`').nth(1).unwrap_or("").to_string();
        let listed: Vec<[String; 3]> = section
            .lines()
            .skip(2)
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                [first_code(cells[1]), first_code(cells[2]), first_code(cells[3])]
            })
            .collect();
        let hsm_ids: Vec<String> = ServeHsmSettings::augment_args(clap::Command::new("hsm"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        let mut expected = Vec::new();
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().to_string();
            if id == "config" {
                continue;
            }
            let flag = format!("--{}", arg.get_long().unwrap());
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            let key = match id.as_str() {
                "hsm_create_key" => String::new(),
                _ if hsm_ids.contains(&id) => format!("hsm.{id}"),
                _ => id.clone(),
            };
            // One mechanism, one spelling: --a-b, VAULTD_A_B, a_b.
            if !env.is_empty() {
                assert_eq!(env, format!("VAULTD_{}", flag[2..].replace('-', "_").to_uppercase()), "{flag}");
            }
            expected.push([flag, env, key]);
        }
        assert_eq!(listed, expected);
    }
}
