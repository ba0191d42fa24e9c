//! Starting a server process and waiting, without sleeping, for the stdout line that says
//! its socket is bound (`vaultd listening on http://ADDR`, or `https://ADDR` with TLS, for
//! vaultd).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// vaultd's readiness line's prefix; its API's URL (`http://` or `https://`) follows.
pub const VAULTD_LISTENING: &str = "vaultd listening on ";
/// vaultd's line naming its peer (Raft) port, printed before the readiness line.
pub const VAULTD_PEER_PORT: &str = "vaultd peer port on ";
/// How long a server may take to print its listening line (SoftHSM key creation and
/// sled's first open included).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a process's stderr goes.
#[derive(Clone)]
pub enum Log {
    /// Kept in memory, for tests that read what it logged.
    Memory(Arc<Mutex<String>>),
    /// Written to a file (created or truncated), for long runs.
    File(PathBuf),
}

impl Log {
    /// A new, empty log in memory.
    pub fn memory() -> Self {
        Log::Memory(Arc::default())
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        match self {
            Log::Memory(text) => text.lock().unwrap().clone(),
            Log::File(path) => fs::read_to_string(path).unwrap_or_default(),
        }
    }

    /// The last `lines` lines logged.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.text(), lines)
    }

    /// What an error names: all of a log in memory, the end of a file.
    fn for_error(&self) -> String {
        match self {
            Log::Memory(_) => self.text(),
            Log::File(_) => self.tail(15),
        }
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A process that has printed its listening line.
pub struct Started {
    pub child: Child,
    /// The rest of the listening line (after the marker), trimmed.
    pub address: String,
    /// The stdout lines before it, trimmed.
    pub before: Vec<String>,
}

impl Started {
    /// vaultd's peer (Raft) address, when it printed one.
    pub fn vaultd_peer(&self) -> Option<String> {
        self.before.iter().find_map(|line| line.strip_prefix(VAULTD_PEER_PORT)).map(str::to_string)
    }
}

/// Spawns `command` (stdin closed, stdout piped, stderr to `log`) and waits up to `timeout`
/// for the stdout line starting with `marker`. Stdout is read to its end meanwhile and
/// afterwards, so the child never blocks on a full pipe. A process that exits or is not
/// ready in time is an error naming what it logged (and is killed).
pub fn spawn(mut command: Command, marker: &str, log: &Log, timeout: Duration) -> anyhow::Result<Started> {
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    match log {
        Log::Memory(_) => command.stderr(Stdio::piped()),
        Log::File(path) => {
            command.stderr(File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
        }
    };
    let mut child = command.spawn().with_context(|| format!("cannot start {command:?}"))?;
    if let Log::Memory(text) = log {
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(text);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Once nobody listens any more, keep draining.
            let _ = sender.send(line);
        }
    });
    let started = Instant::now();
    let mut before = Vec::new();
    loop {
        match lines.recv_timeout(timeout.saturating_sub(started.elapsed())) {
            Ok(line) => {
                let line = line.trim().to_string();
                if let Some(rest) = line.strip_prefix(marker) {
                    return Ok(Started { child, address: rest.trim().to_string(), before });
                }
                before.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait()?;
                // The stderr reader may still be copying the last of it.
                std::thread::sleep(Duration::from_millis(100));
                bail!("server exited ({status}) before listening:\n{}", log.for_error());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("server did not print its listening line within {timeout:?}:\n{}", log.for_error());
            }
        }
    }
}

/// The vaultd binary of this build, for a test binary or a binary of this workspace:
/// `target/<profile>/vaultd`, beside the running executable (or its `deps/` directory).
pub fn vaultd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let dir = exe.parent().expect("its directory");
    let dir: &Path = if dir.ends_with("deps") { dir.parent().expect("target directory") } else { dir };
    dir.join("vaultd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_marker_and_keeps_the_lines_before() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo vaultd peer port on 127.0.0.1:9; echo oops >&2; echo 'ready at x:1'; sleep 5"]);
        let log = Log::memory();
        let mut started = spawn(command, "ready at ", &log, Duration::from_secs(10)).unwrap();
        assert_eq!(started.address, "x:1");
        assert_eq!(started.vaultd_peer().as_deref(), Some("127.0.0.1:9"));
        started.child.kill().unwrap();
        started.child.wait().unwrap();
        // The stderr copier is a thread of its own: its line may land after the marker.
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.text().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(log.text(), "oops\n");
    }

    #[test]
    fn a_process_that_exits_first_is_an_error_with_its_log() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo broken >&2; exit 3"]);
        let error = spawn(command, "ready", &Log::memory(), Duration::from_secs(10)).err().unwrap();
        assert!(format!("{error}").contains("broken"), "{error}");
    }

    #[test]
    fn tails_are_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
