//! `vaultd`: `demo` starts a throwaway vault with no HSM; `serve` runs a real one.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use vaultd::cluster::{ClusterOptions, PeerOptions, PeerTls};
use vaultd::config::{self, FileConfig};
use vaultd::crypto::{import_key as import_key_into, HsmConfig, HsmKek, Imported, Kek, SoftwareKek};
use vaultd::minimize::MinimizeOptions;
use vaultd::server::{self, ServerOptions};
use vaultd::vault::{SubjectChanges, Vault, VaultSettings};

/// mimalloc: the request path allocates many small buffers across worker threads; with it,
/// `wrk` at 64 connections measured ~7.7k → ~10.3k creates/s against glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "vaultd", version, about = "Strongroom vault daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a demo vault: root token DEMO, an in-memory software KEK, no HSM needed.
    Demo(DemoArgs),
    /// Run a vault with its KEK in a PKCS#11 HSM.
    Serve(Box<ServeArgs>),
    /// Store a given 32-byte key as the KEK in the token, unless one is there already:
    /// how every node of a SoftHSM (dev mode) cluster gets the same KEK.
    HsmImportKey(ImportKeyArgs),
    /// Run a retention policy once against a vault and print the report (JSON); exits
    /// non-zero when the run fails. What a RetentionPolicy's CronJob runs.
    Minimize(MinimizeArgs),
    /// Print the API's OpenAPI document (JSON), as `GET /v1/openapi.json` serves it.
    Openapi,
}

#[derive(Args)]
struct MinimizeArgs {
    /// Base URL of the vault's API (any node).
    #[arg(long, env = "VAULTD_VAULT_URL")]
    vault: String,
    /// File holding a token with the `retention:run` scope.
    #[arg(long, env = "VAULTD_TOKEN_FILE")]
    token_file: PathBuf,
    /// The RetentionPolicy resource, YAML or JSON.
    #[arg(long)]
    policy: PathBuf,
    /// CA certificate (PEM) to trust for an https:// vault.
    #[arg(long, env = "VAULTD_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Longest the run may take, in seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value_t = 3000)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Where to keep data (a temporary directory, removed at exit, when not given).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Allow `POST /v1/users` (bulk listing).
    #[arg(long)]
    enable_bulk_list: bool,
    /// Allow `POST /v1/user` without a token (e.g. a public sign-up form).
    #[arg(long)]
    enable_anonymous_create: bool,
    /// Whether a subject token's changes apply directly or become requests for a DPO.
    #[arg(long, default_value = "request")]
    subject_changes: SubjectChanges,
    /// How often subjects whose expiration has ended are forgotten (default 10 s).
    #[arg(long)]
    expiration_sweep_secs: Option<u64>,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; flags and environment override it.
    #[arg(long, env = "VAULTD_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "VAULTD_LISTEN")]
    listen: Option<SocketAddr>,
    #[arg(long, env = "VAULTD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// File holding the root token (or set VAULTD_ROOT_TOKEN).
    #[arg(long, env = "VAULTD_ROOT_TOKEN_FILE")]
    root_token_file: Option<PathBuf>,
    /// Largest accepted request body in bytes (default 1 MiB).
    #[arg(long, env = "VAULTD_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Country for phone numbers written without a country code (ISO 3166, default GB).
    #[arg(long, env = "VAULTD_DEFAULT_COUNTRY")]
    default_country: Option<String>,
    #[arg(long, env = "VAULTD_ENABLE_BULK_LIST")]
    enable_bulk_list: bool,
    /// Allow `POST /v1/user` without a token (e.g. a public sign-up form).
    #[arg(long, env = "VAULTD_ENABLE_ANONYMOUS_CREATE")]
    enable_anonymous_create: bool,
    /// Whether a subject token's changes apply directly (`direct`) or become requests for
    /// a DPO (`request`, the default).
    #[arg(long, env = "VAULTD_SUBJECT_CHANGES")]
    subject_changes: Option<SubjectChanges>,
    #[arg(long, env = "VAULTD_DEK_CACHE_CAPACITY")]
    dek_cache_capacity: Option<usize>,
    /// MiB of storage page cache (default 96).
    #[arg(long, env = "VAULTD_STORAGE_CACHE_MB")]
    storage_cache_mb: Option<u64>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "VAULTD_WORKERS")]
    workers: Option<usize>,
    #[command(flatten)]
    hsm: HsmArgs,
    /// Create the KEK when the token does not hold it yet.
    #[arg(long)]
    hsm_create_key: bool,
    /// PKCS#11 sessions (one worker thread each).
    #[arg(long, env = "VAULTD_HSM_SESSIONS")]
    hsm_sessions: Option<usize>,
    /// Make this node clusterable: the peer (Raft) port listens here. Without it the vault
    /// is a standalone one-member cluster.
    #[arg(long, env = "VAULTD_PEER_LISTEN")]
    peer_listen: Option<SocketAddr>,
    /// host:port other members use to reach this node's peer port (default: the bound
    /// peer address).
    #[arg(long, env = "VAULTD_ADVERTISE_PEER")]
    advertise_peer: Option<String>,
    /// Base URL of this node's API as others see it (default: http:// + the bound address).
    #[arg(long, env = "VAULTD_ADVERTISE_API")]
    advertise_api: Option<String>,
    /// File holding the secret every member shares (or set VAULTD_PEER_SECRET).
    #[arg(long, env = "VAULTD_PEER_SECRET_FILE")]
    peer_secret_file: Option<PathBuf>,
    /// This node's peer certificate (PEM); with --peer-tls-key and --peer-tls-ca the peer
    /// port speaks mutual TLS.
    #[arg(long, env = "VAULTD_PEER_TLS_CERT")]
    peer_tls_cert: Option<PathBuf>,
    #[arg(long, env = "VAULTD_PEER_TLS_KEY")]
    peer_tls_key: Option<PathBuf>,
    /// The cluster CA that signed every member's peer certificate (PEM).
    #[arg(long, env = "VAULTD_PEER_TLS_CA")]
    peer_tls_ca: Option<PathBuf>,
    /// Raft log entries between snapshots (default 20000).
    #[arg(long, env = "VAULTD_SNAPSHOT_EVERY")]
    snapshot_every: Option<u64>,
    /// Longest an erasure waits before it is compacted out of the Raft log (default 60 s;
    /// each compaction snapshots the whole state, so a shorter deadline costs more under a
    /// steady stream of erasures such as a retention run).
    #[arg(long, env = "VAULTD_ERASURE_COMPACTION_SECS")]
    erasure_compaction_secs: Option<u64>,
    /// How often the leader forgets subjects whose expiration has ended and deletes ended
    /// sessions (default 10 s).
    #[arg(long, env = "VAULTD_EXPIRATION_SWEEP_SECS")]
    expiration_sweep_secs: Option<u64>,
    /// The longest a session lives, e.g. `12h` or `30d` (the default).
    #[arg(long, env = "VAULTD_MAX_SESSION_TTL")]
    max_session_ttl: Option<String>,
    /// The longest a shared record lasts, e.g. `7d` or `30d` (the default).
    #[arg(long, env = "VAULTD_MAX_SHARE_TTL")]
    max_share_ttl: Option<String>,
    /// The longest expiration countdown, and the one started when a request names none,
    /// e.g. `90d` (default `186d`: Databunker's six months of 31 days).
    #[arg(long, env = "VAULTD_MAX_USER_RETENTION_PERIOD")]
    max_user_retention_period: Option<String>,
}

/// Where the KEK lives: shared by `serve` and `hsm-import-key`.
#[derive(Args)]
struct HsmArgs {
    /// Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, env = "VAULTD_HSM_MODULE")]
    hsm_module: Option<PathBuf>,
    /// Label of the HSM token (tokens are chosen by label, never by slot).
    #[arg(long, env = "VAULTD_HSM_TOKEN_LABEL")]
    hsm_token_label: Option<String>,
    /// File holding the user PIN (or set VAULTD_HSM_PIN). There is no PIN flag.
    #[arg(long, env = "VAULTD_HSM_PIN_FILE")]
    hsm_pin_file: Option<PathBuf>,
    /// Label of the KEK inside the token.
    #[arg(long, env = "VAULTD_HSM_KEY_LABEL")]
    hsm_key_label: Option<String>,
}

/// The HSM settings, flags and environment first, then the configuration file.
struct HsmLocation {
    module: PathBuf,
    token_label: String,
    pin: Zeroizing<String>,
    key_label: String,
}

impl HsmArgs {
    fn resolve(self, file: config::FileHsmConfig) -> anyhow::Result<HsmLocation> {
        let pin = match self.hsm_pin_file.or(file.pin_file) {
            Some(path) => config::read_secret_file(&path)?,
            None => Zeroizing::new(
                std::env::var("VAULTD_HSM_PIN")
                    .map_err(|_| config::ConfigError::Missing("--hsm-pin-file or VAULTD_HSM_PIN"))?,
            ),
        };
        Ok(HsmLocation {
            module: self.hsm_module.or(file.module).ok_or(config::ConfigError::Missing("--hsm-module"))?,
            token_label: self
                .hsm_token_label
                .or(file.token_label)
                .ok_or(config::ConfigError::Missing("--hsm-token-label"))?,
            pin,
            key_label: self.hsm_key_label.or(file.key_label).unwrap_or_else(|| config::DEFAULT_KEK_LABEL.into()),
        })
    }
}

#[derive(Args)]
struct ImportKeyArgs {
    /// File holding exactly 32 bytes: the AES-256 KEK to store in the token.
    #[arg(long)]
    key_file: PathBuf,
    #[command(flatten)]
    hsm: HsmArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
            |runtime| match cli.command {
                Command::Demo(args) => runtime.block_on(demo(args)),
                Command::Serve(args) => serve(*args, &runtime),
                Command::HsmImportKey(args) => import_key(args),
                Command::Minimize(args) => minimize(args),
                Command::Openapi => {
                    println!("{}", vaultd::api::doc::document());
                    Ok(())
                }
            },
        );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vaultd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    eprintln!(
        "\n  ************************************************************\n  \
         *  DEMO MODE: the key encryption key lives in memory only.  *\n  \
         *  Data cannot be decrypted after this process exits.       *\n  \
         *  Root token: DEMO. Never use demo mode for real data.     *\n  \
         ************************************************************\n"
    );
    tracing::warn!("demo mode: software KEK in memory, root token DEMO");
    let temporary;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => {
            temporary = tempfile::Builder::new().prefix("vaultd-demo-").tempdir()?;
            temporary.path().to_path_buf()
        }
    };
    let defaults = VaultSettings::default();
    let settings = VaultSettings {
        bulk_list_enabled: args.enable_bulk_list,
        anonymous_create: args.enable_anonymous_create,
        subject_changes: args.subject_changes,
        expiration_sweep: args
            .expiration_sweep_secs
            .map_or(defaults.expiration_sweep, |secs| std::time::Duration::from_secs(secs.max(1))),
        ..defaults
    };
    let kek = Kek::Software(SoftwareKek::generate());
    let listener = server::bind(SocketAddr::new(args.bind, args.port))?;
    let vault = Vault::open(&data_dir, kek, Zeroizing::new("DEMO".into()), settings, ClusterOptions::default())
        .await
        .with_context(|| format!("cannot open demo vault in {}", data_dir.display()))?;
    let options = ServerOptions { max_body_bytes: config::DEFAULT_MAX_BODY, workers: None };
    server::serve(vault, listener, None, options).await?;
    Ok(())
}

fn serve(args: ServeArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let data_dir = args.data_dir.or(file.data_dir).ok_or(config::ConfigError::Missing("--data-dir"))?;
    let root_token = match args.root_token_file.or(file.root_token_file) {
        Some(path) => config::read_secret_file(&path)?,
        None => Zeroizing::new(
            std::env::var("VAULTD_ROOT_TOKEN")
                .map_err(|_| config::ConfigError::Missing("--root-token-file or VAULTD_ROOT_TOKEN"))?,
        ),
    };
    if root_token.len() < 16 {
        anyhow::bail!("the root token must be at least 16 characters");
    }
    let sessions = args.hsm_sessions.or(file.hsm.sessions).unwrap_or(4);
    let location = args.hsm.resolve(file.hsm)?;
    let hsm = HsmConfig {
        module: location.module,
        token_label: location.token_label,
        pin: location.pin,
        key_label: location.key_label,
        create_key: args.hsm_create_key,
        sessions,
    };
    let defaults = VaultSettings::default();
    let settings = VaultSettings {
        phone_region: config::parse_region(args.default_country.as_deref().or(file.default_country.as_deref()))?,
        bulk_list_enabled: args.enable_bulk_list || file.bulk_list_enabled.unwrap_or(false),
        anonymous_create: args.enable_anonymous_create || file.anonymous_create.unwrap_or(false),
        subject_changes: match args.subject_changes {
            Some(choice) => choice,
            None => file
                .subject_changes
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or_default(),
        },
        dek_cache_capacity: args.dek_cache_capacity.or(file.dek_cache_capacity).unwrap_or(defaults.dek_cache_capacity),
        storage_cache_bytes: args
            .storage_cache_mb
            .or(file.storage_cache_mb)
            .map_or(defaults.storage_cache_bytes, |mb| mb.saturating_mul(1024 * 1024)),
        expiration_sweep: args
            .expiration_sweep_secs
            .or(file.expiration_sweep_secs)
            .map_or(defaults.expiration_sweep, |secs| std::time::Duration::from_secs(secs.max(1))),
        max_session_ttl: ttl_setting("--max-session-ttl", args.max_session_ttl.or(file.max_session_ttl))?
            .unwrap_or(defaults.max_session_ttl),
        max_share_ttl: ttl_setting("--max-share-ttl", args.max_share_ttl.or(file.max_share_ttl))?
            .unwrap_or(defaults.max_share_ttl),
        max_user_retention: ttl_setting(
            "--max-user-retention-period",
            args.max_user_retention_period.or(file.max_user_retention_period),
        )?
        .unwrap_or(defaults.max_user_retention),
    };
    let options = ServerOptions {
        max_body_bytes: args.max_body_bytes.or(file.max_body_bytes).unwrap_or(config::DEFAULT_MAX_BODY),
        workers: args.workers.or(file.workers),
    };
    let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
    let api_listener = server::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let peer_listen = args.peer_listen.or(file.peer_listen);
    let peer_listener = peer_listen
        .map(|address| server::bind(address).with_context(|| format!("cannot listen on {address}")))
        .transpose()?;
    let mut cluster = ClusterOptions::default();
    if let Some(every) = args.snapshot_every.or(file.snapshot_every) {
        cluster.snapshot_every = every.max(1);
    }
    if let Some(secs) = args.erasure_compaction_secs.or(file.erasure_compaction_secs) {
        cluster.erasure_compaction = std::time::Duration::from_secs(secs);
    }
    let peer_tls = match (
        args.peer_tls_cert.or(file.peer_tls_cert),
        args.peer_tls_key.or(file.peer_tls_key),
        args.peer_tls_ca.or(file.peer_tls_ca),
    ) {
        (Some(cert), Some(key), Some(ca)) => Some(PeerTls { cert, key, ca }),
        (None, None, None) => None,
        _ => anyhow::bail!("peer TLS needs all of --peer-tls-cert, --peer-tls-key and --peer-tls-ca"),
    };
    if let Some(listener) = &peer_listener {
        let secret = match args.peer_secret_file.or(file.peer_secret_file) {
            Some(path) => config::read_secret_file(&path)?,
            None => Zeroizing::new(std::env::var("VAULTD_PEER_SECRET").map_err(|_| {
                config::ConfigError::Missing("--peer-secret-file or VAULTD_PEER_SECRET (with --peer-listen)")
            })?),
        };
        if secret.len() < 16 {
            anyhow::bail!("the peer secret must be at least 16 characters");
        }
        cluster.peer = Some(PeerOptions {
            advertise_peer: args
                .advertise_peer
                .or(file.advertise_peer)
                .unwrap_or_else(|| listener.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            advertise_api: args
                .advertise_api
                .or(file.advertise_api)
                .unwrap_or_else(|| api_listener.local_addr().map(|a| format!("http://{a}")).unwrap_or_default()),
            secret,
            tls: peer_tls.clone(),
        });
    }
    let peer_listener = peer_listener.map(|listener| (listener, peer_tls));
    let kek = Kek::Hsm(HsmKek::open(&hsm).context("cannot open the HSM")?);
    runtime.block_on(async {
        let vault = Vault::open(&data_dir, kek, root_token, settings, cluster)
            .await
            .with_context(|| format!("cannot open vault in {}", data_dir.display()))?;
        server::serve(vault, api_listener, peer_listener, options).await?;
        anyhow::Ok(())
    })
}

/// A positive duration setting such as `30d`.
fn ttl_setting(flag: &str, text: Option<String>) -> anyhow::Result<Option<std::time::Duration>> {
    text.map(|text| {
        strongroom_admin_api::retention::parse_duration(&text)
            .filter(|secs| *secs > 0)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| anyhow::anyhow!("{flag} {text:?} is not a duration like 12h or 30d"))
    })
    .transpose()
}

fn minimize(args: MinimizeArgs) -> anyhow::Result<()> {
    let options = MinimizeOptions {
        vault: args.vault,
        token_file: args.token_file,
        policy_file: args.policy,
        ca_file: args.ca_file,
        timeout: std::time::Duration::from_secs(args.timeout_secs),
    };
    let report = vaultd::minimize::run(&options)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn import_key(args: ImportKeyArgs) -> anyhow::Result<()> {
    let value = Zeroizing::new(
        std::fs::read(&args.key_file).with_context(|| format!("cannot read {}", args.key_file.display()))?,
    );
    let hsm = args.hsm.resolve(config::FileHsmConfig::default())?;
    match import_key_into(&hsm.module, &hsm.token_label, &hsm.pin, &hsm.key_label, &value)? {
        Imported::Stored => eprintln!("vaultd: stored KEK {:?} in token {:?}", hsm.key_label, hsm.token_label),
        Imported::AlreadyPresent => {
            eprintln!("vaultd: token {:?} already holds KEK {:?}; left unchanged", hsm.token_label, hsm.key_label)
        }
    }
    Ok(())
}
