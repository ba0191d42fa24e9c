//! Starting and stopping the HTTP servers under test: vaultd (demo or SoftHSM mode) and
//! the trivial actix handler, each a child process on 127.0.0.1 with a kernel-chosen port.
//! The nodes of a vaultd cluster are started with the same pieces (`cluster.rs`).
//!
//! Readiness is the `... listening on http://ADDR` line each prints once its socket is
//! bound; the harness waits for that line (with a timeout) instead of sleeping.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::procfs::{self, Memory};

/// How long a server may take to print its listening line (SoftHSM key creation and
/// sled's first open included).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

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
}

/// A running server process; killed and reaped when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Root token for vaultd; unused by the trivial handler.
    pub token: String,
    log: PathBuf,
    /// Data directory, HSM token and log, removed after the process is gone.
    _dir: TempDir,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        procfs::process(self.pid())
    }

    /// The end of the server's stderr, for error messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
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

/// Fails early, naming the build command, when the vaultd binary is missing.
pub fn check_vaultd(binary: &Path) -> anyhow::Result<()> {
    if !binary.is_file() {
        bail!("vaultd binary {} not found (cargo build --release -p vaultd)", binary.display());
    }
    Ok(())
}

/// Starts vaultd in `mode` (demo or softhsm; a cluster is `cluster::Cluster::start`) on a
/// fresh data directory.
pub fn start_vaultd(binary: &Path, mode: Mode, softhsm_script: &Path) -> anyhow::Result<Server> {
    check_vaultd(binary)?;
    let dir = tempfile::Builder::new().prefix("strongroom-bench-").tempdir()?;
    let data = dir.path().join("data");
    let mut command = Command::new(binary);
    let token = match mode {
        Mode::Demo => {
            command.arg("demo").arg("--port").arg("0").arg("--data-dir").arg(&data);
            "DEMO".to_string()
        }
        Mode::Softhsm => {
            for (name, value) in softhsm_environment(softhsm_script, &dir.path().join("hsm"))? {
                command.env(name, value);
            }
            let token = random_hex(16)?;
            let token_file = dir.path().join("root-token");
            fs::write(&token_file, &token)?;
            command
                .arg("serve")
                .arg("--data-dir")
                .arg(&data)
                .arg("--root-token-file")
                .arg(&token_file)
                .arg("--listen")
                .arg("127.0.0.1:0")
                .arg("--hsm-create-key");
            token
        }
        Mode::Cluster => bail!("a vaultd cluster is started by cluster::Cluster::start"),
    };
    spawn(command, VAULTD_LISTENING, dir, token)
}

/// Starts the trivial handler: this same binary's hidden `trivial-server` command.
pub fn start_trivial() -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("strongroom-bench-trivial-").tempdir()?;
    let mut command = Command::new(std::env::current_exe().context("cannot find the harness binary")?);
    command.arg("trivial-server").arg("--port").arg("0");
    spawn(command, crate::trivial::LISTENING, dir, String::new())
}

/// Runs `hack/softhsm-token.sh DIR` and returns the variables it exports.
pub fn softhsm_environment(script: &Path, dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new("bash")
        .arg(script)
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({})", script.display(), output.status);
    }
    let variables = parse_exports(&String::from_utf8_lossy(&output.stdout));
    if !variables.iter().any(|(name, _)| name == "VAULTD_HSM_MODULE") {
        bail!("{} printed no VAULTD_HSM_MODULE", script.display());
    }
    Ok(variables)
}

/// `export NAME=VALUE` lines (values without quoting, as the script prints them).
fn parse_exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().trim_matches('"').to_string()))
        .collect()
}

/// `bytes` random bytes from the kernel, hex-encoded.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Spawns `command` with stdout piped and stderr to a log file in `dir`, then waits for
/// the line starting with `marker` followed by the address.
pub fn spawn(mut command: Command, marker: &str, dir: TempDir, token: String) -> anyhow::Result<Server> {
    let log = dir.path().join("server.log");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(File::create(&log)?);
    let mut child = command.spawn().with_context(|| format!("cannot start {command:?}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, lines) = mpsc::channel();
    // Reads stdout to its end, so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                // Nobody listens any more; keep draining.
                continue;
            }
        }
    });
    let started = std::time::Instant::now();
    let addr = loop {
        let remaining = STARTUP_TIMEOUT.saturating_sub(started.elapsed());
        match lines.recv_timeout(remaining) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix(marker) {
                    break rest.trim().parse::<SocketAddr>().with_context(|| format!("bad listening line {line:?}"))?;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                bail!("server exited ({status}) before listening:\n{}", tail(&log));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("server did not print its listening line within {STARTUP_TIMEOUT:?}:\n{}", tail(&log));
            }
        }
    };
    Ok(Server { child, addr, token, log, _dir: dir })
}

/// The last few lines of a log file.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_softhsm_script_output() {
        let text = "export SOFTHSM2_CONF=/t/softhsm2.conf\nexport VAULTD_HSM_MODULE=/usr/lib/x.so\nnoise\n";
        assert_eq!(
            parse_exports(text),
            vec![
                ("SOFTHSM2_CONF".to_string(), "/t/softhsm2.conf".to_string()),
                ("VAULTD_HSM_MODULE".to_string(), "/usr/lib/x.so".to_string()),
            ]
        );
    }

    #[test]
    fn random_tokens_are_long_enough_for_vaultd() {
        let token = random_hex(16).unwrap();
        assert_eq!(token.len(), 32);
        assert_ne!(token, random_hex(16).unwrap());
    }
}
