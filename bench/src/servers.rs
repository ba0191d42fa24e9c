//! Starting and stopping the HTTP servers under test: vaultd (demo or SoftHSM mode) and
//! the trivial actix handler, each a child process on 127.0.0.1 with a kernel-chosen port.
//! The nodes of a vaultd cluster are started with the same pieces (`cluster.rs`).
//!
//! Readiness is the `... listening on http://ADDR` line (`https://` for a vaultd whose API
//! speaks TLS) each prints once its socket is bound; strongroom-testkit's `spawn` waits
//! for that line (with a timeout) instead of sleeping.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{bail, Context};
use strongroom_testkit::process::STARTUP_TIMEOUT;
use strongroom_testkit::tls::ApiTls;
use strongroom_testkit::{softhsm, Log};
use tempfile::TempDir;

use crate::http::{self, Endpoint};
use crate::procfs::{self, Memory};

/// How vaultd keeps its key encryption key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `vaultd demo`: software KEK in memory, root token DEMO.
    Demo,
    /// `vaultd serve` with the KEK in a throwaway SoftHSM2 token.
    Softhsm,
    /// Three `vaultd serve` nodes formed into a Raft cluster, sharing one SoftHSM2 token.
    Cluster,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Demo => "demo",
            Mode::Softhsm => "softhsm",
            Mode::Cluster => "cluster",
        }
    }

    /// Its name, with `, HTTPS` when the API speaks TLS.
    pub fn label(self, api: Api) -> &'static str {
        match (self, api) {
            (mode, Api::Http) => mode.name(),
            (Mode::Demo, Api::Https) => "demo, HTTPS",
            (Mode::Softhsm, Api::Https) => "softhsm, HTTPS",
            (Mode::Cluster, Api::Https) => "cluster, HTTPS",
        }
    }
}

/// How vaultd's API is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Plain HTTP.
    Http,
    /// HTTPS: a certificate for 127.0.0.1 from a CA made by the harness (rcgen), given with
    /// `--tls-cert`/`--tls-key` (`vaultd serve` only); the load generator trusts that CA.
    Https,
}

/// A running server process; killed and reaped when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// How to reach its API over TLS, when it speaks HTTPS.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Root token for vaultd; unused by the trivial handler.
    pub token: String,
    /// How `vaultd backup` and `vaultd restore` reach this vault and its HSM (a vaultd
    /// with its KEK in SoftHSM only).
    pub cli: Option<CliAccess>,
    log: PathBuf,
    /// Data directory, HSM token and log, removed after the process is gone.
    _dir: TempDir,
}

impl Server {
    /// Where and how to connect to it.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint { addr: self.addr, tls: self.tls.clone() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        procfs::process(self.pid())
    }

    /// The end of the server's stderr, for error messages.
    pub fn log_tail(&self) -> String {
        Log::File(self.log.clone()).tail(15)
    }

    /// Kills the process with SIGKILL (`kill -9`) and reaps it; its files stay until drop.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().with_context(|| format!("cannot kill process {}", self.pid()))?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// vaultd's readiness line's prefix; the API address follows.
pub const VAULTD_LISTENING: &str = "vaultd listening on http://";
/// The same, for an API that speaks TLS.
pub const VAULTD_LISTENING_HTTPS: &str = "vaultd listening on https://";

/// The marker vaultd prints when its API is reached by `api`.
pub fn vaultd_listening(api: Api) -> &'static str {
    match api {
        Api::Http => VAULTD_LISTENING,
        Api::Https => VAULTD_LISTENING_HTTPS,
    }
}

/// Fails early, naming the build command, when the vaultd binary is missing.
pub fn check_vaultd(binary: &Path) -> anyhow::Result<()> {
    if !binary.is_file() {
        bail!("vaultd binary {} not found (cargo build --release -p vaultd)", binary.display());
    }
    Ok(())
}

/// Starts vaultd in `mode` (demo or softhsm; a cluster is `cluster::Cluster::start`) on a
/// fresh data directory, its API reached by `api`; the SoftHSM token, the `serve` command
/// line and the TLS certificate are strongroom-testkit's.
/// What the vaultd commands that call a vault (`vaultd backup`, `vaultd restore`) need:
/// its URL, a file with its root token, the CA of an HTTPS API, and the HSM's variables.
#[derive(Clone, Debug)]
pub struct CliAccess {
    pub url: String,
    pub token_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub hsm_env: Vec<(String, String)>,
}

impl CliAccess {
    /// For a vault at `addr` whose files are in `dir`.
    pub fn new(
        addr: SocketAddr,
        dir: &Path,
        token_file: PathBuf,
        tls: Option<&ApiTls>,
        hsm_env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let ca_file = match tls {
            Some(tls) => {
                let path = dir.join("api-ca.pem");
                fs::write(&path, tls.ca.pem())?;
                Some(path)
            }
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(CliAccess { url: format!("{scheme}://{addr}"), token_file, ca_file, hsm_env })
    }
}

pub fn start_vaultd(binary: &Path, mode: Mode, api: Api, softhsm_script: &Path) -> anyhow::Result<Server> {
    check_vaultd(binary)?;
    let dir = tempfile::Builder::new().prefix("strongroom-bench-").tempdir()?;
    let data = dir.path().join("data");
    let mut command = Command::new(binary);
    let tls = match api {
        Api::Http => None,
        Api::Https => Some(ApiTls::create(dir.path())?),
    };
    let mut flags = vec!["--hsm-create-key".to_string()];
    flags.extend(tls.iter().flat_map(ApiTls::flags));
    let mut cli = None;
    let token = match mode {
        Mode::Demo if tls.is_some() => bail!("vaultd demo serves plain HTTP only; HTTPS is measured with softhsm"),
        Mode::Demo => {
            command.arg("demo").arg("--port").arg("0").arg("--data-dir").arg(&data);
            "DEMO".to_string()
        }
        Mode::Softhsm => {
            let environment = softhsm::token_environment(softhsm_script, &dir.path().join("hsm"))?;
            let token = strongroom_testkit::cluster::random_hex(16)?;
            let token_file = dir.path().join("root-token");
            fs::write(&token_file, &token)?;
            // On 127.0.0.1:0, the kit's default.
            command = strongroom_testkit::serve_command(binary, environment.clone(), &data, &token_file, &flags);
            cli = Some((token_file, environment));
            token
        }
        Mode::Cluster => bail!("a vaultd cluster is started by cluster::Cluster::start"),
    };
    let files = dir.path().to_path_buf();
    let mut server = spawn(command, vaultd_listening(api), dir, token)?;
    server.tls = tls.as_ref().map(|tls| http::tls_connector(&tls.ca.pem())).transpose()?;
    if let Some((token_file, environment)) = cli {
        server.cli = Some(CliAccess::new(server.addr, &files, token_file, tls.as_ref(), environment)?);
    }
    Ok(server)
}

/// Starts the trivial handler: this same binary's hidden `trivial-server` command.
pub fn start_trivial() -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("strongroom-bench-trivial-").tempdir()?;
    let mut command = Command::new(std::env::current_exe().context("cannot find the harness binary")?);
    command.arg("trivial-server").arg("--port").arg("0");
    spawn(command, crate::trivial::LISTENING, dir, String::new())
}

/// Spawns `command` with stderr to a log file in `dir` (strongroom-testkit's `spawn`), then
/// waits for the line starting with `marker` followed by the address.
pub fn spawn(command: Command, marker: &str, dir: TempDir, token: String) -> anyhow::Result<Server> {
    let log = dir.path().join("server.log");
    let started = strongroom_testkit::spawn(command, marker, &Log::File(log.clone()), STARTUP_TIMEOUT)?;
    let mut child = started.child;
    let addr = match started.address.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("bad listening line {marker}{}: {error}", started.address);
        }
    };
    Ok(Server { child, addr, tls: None, token, cli: None, log, _dir: dir })
}
