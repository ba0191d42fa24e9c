//! `vaultd`: `demo` starts a throwaway vault with no HSM; `serve` runs a real one.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use vaultd::backup::{Destination, RestoreOptions, VaultApi};
use vaultd::cluster::ClusterOptions;
use vaultd::config::{BehaviourSettings, HsmSettings, ServeSettings, Span};
use vaultd::crypto::{import_key as import_key_into, HsmConfig, HsmKek, Imported, Kek, SoftwareKek};
use vaultd::minimize::MinimizeOptions;
use vaultd::server;
use vaultd::vault::Vault;

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
    Serve(Box<ServeSettings>),
    /// Store a given 32-byte key as the KEK in the token, unless one is there already:
    /// how every node of a SoftHSM (dev mode) cluster gets the same KEK.
    HsmImportKey(ImportKeyArgs),
    /// Run a retention policy once against a vault and print the report (JSON); exits
    /// non-zero when the run fails. What a RetentionPolicy's CronJob runs.
    Minimize(MinimizeArgs),
    /// Take a backup of a running vault into a directory or an S3 bucket (then ship the
    /// erasure ledger); or, with a subcommand, look after the backups stored there.
    Backup(Box<BackupArgs>),
    /// Make a new one-member vault from a backup, and apply every erasure recorded after
    /// it. Run `vaultd serve` on the data directory afterwards.
    Restore(Box<RestoreArgs>),
    /// Print the API's OpenAPI document (JSON), as `GET /v1/openapi.json` serves it.
    Openapi,
}

/// Where backups are kept.
#[derive(Args)]
struct StoreArgs {
    /// File of `KEY=value` lines (e.g. `AWS_ACCESS_KEY_ID=...`) for an s3:// location;
    /// otherwise the `AWS_*` environment variables are used.
    #[arg(long, env = "VAULTD_BACKUP_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
}

/// The vault whose API a backup command calls.
#[derive(Args)]
struct VaultArgs {
    /// Base URL of the vault's API (any node).
    #[arg(long, env = "VAULTD_VAULT_URL")]
    vault: Option<String>,
    /// File holding a token with the `backup:read` scope.
    #[arg(long, env = "VAULTD_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https:// vault.
    #[arg(long, env = "VAULTD_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl VaultArgs {
    fn api(&self) -> anyhow::Result<VaultApi> {
        let vault = self.vault.as_deref().context("--vault is required")?;
        let token_file = self.token_file.as_deref().context("--token-file is required")?;
        Ok(VaultApi::new(vault, token_file, self.ca_file.as_deref(), std::time::Duration::from_secs(600))?)
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BackupArgs {
    #[command(subcommand)]
    action: Option<BackupAction>,
    #[command(flatten)]
    vault: VaultArgs,
    /// Where to store it: a directory, or s3://bucket/prefix.
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// After a successful backup, also write its report (one line of JSON) to this file:
    /// `/dev/termination-log` in the operator's backup Jobs, which read it from the pod.
    #[arg(long)]
    summary_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BackupAction {
    /// Print the complete backups' ids, oldest first.
    List {
        #[arg(long)]
        from: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a backup (the newest by default): checksums, the state's framing and subject
    /// count, the audit hash chain; with the HSM flags, that its keys unwrap.
    Verify {
        #[arg(long)]
        from: String,
        #[arg(long)]
        backup: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        hsm: HsmSettings,
    },
    /// Delete backups beyond the newest `--keep-last` that are also older than
    /// `--keep-within` (the newest backup is always kept).
    Prune {
        #[arg(long)]
        from: String,
        #[arg(long, default_value_t = 7)]
        keep_last: usize,
        /// e.g. 30days
        #[arg(long)]
        keep_within: Option<Span>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Ship the erasure ledger entries the destination lacks, without a backup; with
    /// `--every`, again and again (what keeps a destination's ledger current).
    ShipLedger {
        #[command(flatten)]
        vault: VaultArgs,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Ship again after this long (e.g. 30s), until stopped; a failed round is logged
        /// and the next one tries again.
        #[arg(long)]
        every: Option<Span>,
    },
}

#[derive(Args)]
struct RestoreArgs {
    /// Where the backups are: a directory, or s3://bucket/prefix.
    #[arg(long)]
    from: String,
    /// The backup's id (`vaultd backup list`); the newest by default.
    #[arg(long)]
    backup: Option<String>,
    /// The new vault's data directory: absent, empty or holding only `lost+found`. Run
    /// again on a finished restore of the same backup, restore prints its report again.
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    /// The HSM holding the KEK the backup's keys are wrapped by.
    #[command(flatten)]
    hsm: HsmSettings,
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
    /// A loopback address (the demo refuses any other).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Where to keep data (a temporary directory, removed at exit, when not given).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    behaviour: BehaviourSettings,
}

#[derive(Args)]
struct ImportKeyArgs {
    /// File holding exactly 32 bytes: the AES-256 KEK to store in the token.
    #[arg(long)]
    key_file: PathBuf,
    #[command(flatten)]
    hsm: HsmSettings,
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
    if matches!(cli.command, Command::Demo(_) | Command::Serve(_)) {
        vaultd::crypto::protect_process_memory();
    }
    let result =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
            |runtime| match cli.command {
                Command::Demo(args) => runtime.block_on(demo(args)),
                Command::Serve(args) => serve(*args, &runtime),
                Command::HsmImportKey(args) => import_key(args),
                Command::Minimize(args) => minimize(args),
                Command::Backup(args) => runtime.block_on(backup(*args)),
                Command::Restore(args) => runtime.block_on(restore(*args)),
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
    let settings = args.behaviour.vault_settings()?;
    let kek = Kek::Software(SoftwareKek::generate());
    // Plain HTTP with a root token everyone knows: never reachable from other hosts.
    if !args.bind.to_canonical().is_loopback() {
        anyhow::bail!(
            "vaultd demo serves plain HTTP with the root token DEMO, so it listens on a loopback address only \
             (127.0.0.1 or ::1), not {}; run vaultd serve for a vault other hosts can reach",
            args.bind
        );
    }
    let listener = server::bind(SocketAddr::new(args.bind, args.port))?;
    let vault = Vault::open(&data_dir, kek, Zeroizing::new("DEMO".into()), settings, ClusterOptions::default())
        .await
        .with_context(|| format!("cannot open demo vault in {}", data_dir.display()))?;
    server::serve(vault, listener, None, args.behaviour.server_options()).await?;
    Ok(())
}

fn serve(given: ServeSettings, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let settings = given.load()?;
    let data_dir = settings.data_dir()?;
    let root_token = settings.root_token()?;
    let hsm = settings.hsm_config()?;
    let vault_settings = settings.behaviour.vault_settings()?;
    let listen = settings.listen();
    let api_tls = match settings.api_tls()? {
        Some(tls) => Some(tls.server_config().context("cannot load the API's TLS certificate")?),
        None => None,
    };
    let api_listener = server::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let peer_listener = settings
        .peer_listen
        .map(|address| server::bind(address).with_context(|| format!("cannot listen on {address}")))
        .transpose()?;
    let cluster = settings.cluster_options(
        api_listener.local_addr()?,
        peer_listener.as_ref().map(TcpListener::local_addr).transpose()?,
    )?;
    let peer_listener =
        peer_listener.map(|listener| (listener, cluster.peer.as_ref().and_then(|peer| peer.tls.clone())));
    let kek = Kek::Hsm(HsmKek::open(&hsm).context("cannot open the HSM")?);
    runtime.block_on(async {
        let vault = Vault::open(&data_dir, kek, root_token, vault_settings, cluster)
            .await
            .with_context(|| format!("cannot open vault in {}", data_dir.display()))?;
        vaultd::backup::forget_finished_restore(&data_dir)
            .with_context(|| format!("cannot remove the restore report in {}", data_dir.display()))?;
        let options = server::ServerOptions { tls: api_tls, ..settings.behaviour.server_options() };
        server::serve(vault, api_listener, peer_listener, options).await?;
        anyhow::Ok(())
    })
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
    let hsm = args.hsm.location()?;
    match import_key_into(&hsm.module, &hsm.token_label, &hsm.pin, &hsm.key_label, &value)? {
        Imported::Stored => eprintln!("vaultd: stored KEK {:?} in token {:?}", hsm.key_label, hsm.token_label),
        Imported::AlreadyPresent => {
            eprintln!("vaultd: token {:?} already holds KEK {:?}; left unchanged", hsm.token_label, hsm.key_label)
        }
    }
    Ok(())
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let open = |location: &str, store: &StoreArgs| Destination::open(location, store.credentials_file.as_deref());
    let report = match args.action {
        None => {
            let to = args.to.as_deref().context("--to is required")?;
            let report = vaultd::backup::take(&args.vault.api()?, &open(to, &args.store)?).await?;
            if let Some(path) = &args.summary_file {
                // The backup is stored: a summary that cannot be written is only reported,
                // lest the Job take another backup.
                let written = serde_json::to_vec(&report)
                    .map_err(std::io::Error::from)
                    .and_then(|json| std::fs::write(path, json));
                if let Err(error) = written {
                    tracing::warn!(path = %path.display(), %error, "cannot write the backup's summary");
                }
            }
            serde_json::to_value(report)?
        }
        Some(BackupAction::List { from, store }) => {
            for id in open(&from, &store)?.backups().await? {
                println!("{id}");
            }
            return Ok(());
        }
        Some(BackupAction::Verify { from, backup, store, hsm }) => {
            let kek = match hsm.module.is_some() {
                true => Some(open_kek(&hsm)?),
                false => None,
            };
            serde_json::to_value(vaultd::backup::verify(&open(&from, &store)?, backup.as_deref(), kek.as_ref()).await?)?
        }
        Some(BackupAction::Prune { from, keep_last, keep_within, store }) => {
            let keep_within = keep_within.map(|span| span.0);
            serde_json::to_value(vaultd::backup::prune(&open(&from, &store)?, keep_last, keep_within).await?)?
        }
        Some(BackupAction::ShipLedger { vault, to, store, every }) => {
            let (api, destination) = (vault.api()?, open(&to, &store)?);
            if let Some(every) = every {
                loop {
                    match vaultd::backup::ship_ledger(&api, &destination).await {
                        Ok(0) => {}
                        Ok(shipped) => tracing::info!(shipped, "shipped erasure ledger entries"),
                        Err(error) => tracing::warn!(%error, "cannot ship the erasure ledger; trying again"),
                    }
                    tokio::time::sleep(every.0).await;
                }
            }
            serde_json::json!({ "ledgerEntriesShipped": vaultd::backup::ship_ledger(&api, &destination).await? })
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let source = Destination::open(&args.from, args.store.credentials_file.as_deref())?;
    let kek = open_kek(&args.hsm)?;
    let options = RestoreOptions { backup: args.backup, data_dir: args.data_dir };
    let report = vaultd::backup::restore(&source, kek, &options).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The KEK in the HSM the flags name (one session: the backup commands unwrap few keys).
fn open_kek(hsm: &HsmSettings) -> anyhow::Result<Kek> {
    let location = hsm.location()?;
    let config = HsmConfig {
        module: location.module,
        token_label: location.token_label,
        pin: location.pin,
        key_label: location.key_label,
        create_key: false,
        sessions: 1,
    };
    Ok(Kek::Hsm(HsmKek::open(&config).context("cannot open the HSM")?))
}
