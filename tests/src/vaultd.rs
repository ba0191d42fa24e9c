//! A real vaultd for the operator to talk to, although no pod runs: the vaultd binary on
//! loopback with a SoftHSM token, and an HTTP proxy that the operator (and `vaultd
//! minimize`) reach the vault's cluster DNS names through (`HTTP_PROXY`). The proxy sends a
//! name it was given a route for to that address, and answers 502 for any other — as an
//! unresolvable name would fail. The SoftHSM token and the ports are strongroom-testkit's.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use strongroom_testkit::{softhsm, NodeAddress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::run;

/// Why a real vaultd cannot run here, if it cannot: no vaultd binary or no SoftHSM.
pub fn unavailable() -> Option<String> {
    if !binary().exists() {
        return Some(format!("{} is absent (cargo build -p vaultd)", binary().display()));
    }
    if Command::new("softhsm2-util").arg("--version").output().is_err() {
        return Some("softhsm2-util is absent (apt-get install softhsm2)".to_string());
    }
    None
}

/// `vaultd` of this build (`target/<profile>/vaultd`, beside the test binaries' directory).
pub fn binary() -> PathBuf {
    strongroom_testkit::vaultd_binary()
}

/// The HTTP proxy: `host:port` → where it really is.
pub struct Proxy {
    pub address: SocketAddr,
    routes: Arc<Mutex<HashMap<String, SocketAddr>>>,
}

impl Proxy {
    /// Starts the proxy on a thread (and runtime) of its own, so that it serves whatever the
    /// test's own runtime is blocked on.
    pub fn start() -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("address");
        let routes: Arc<Mutex<HashMap<String, SocketAddr>>> = Arc::default();
        let table = routes.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(forward(client, table.clone()));
                }
            });
        });
        Self { address, routes }
    }

    /// `http://` + its address, for `HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Sends requests for `authority` (`host:port`) to `to`.
    pub fn route(&self, authority: &str, to: SocketAddr) {
        self.routes.lock().unwrap().insert(authority.to_string(), to);
    }
}

/// One request (absolute-form, as clients send it to a proxy) to its route, with
/// `Connection: close`; the answer back; then the connection closes.
async fn forward(mut client: TcpStream, routes: Arc<Mutex<HashMap<String, SocketAddr>>>) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if client.read_buf(&mut buffer).await? == 0 {
            return Ok(());
        }
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.splitn(3, ' ');
    let (method, target, version) =
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (authority, path) = match target.strip_prefix("http://").and_then(|rest| rest.split_once('/')) {
        Some((authority, path)) => (authority.to_string(), format!("/{path}")),
        None => (target.strip_prefix("http://").unwrap_or(target).to_string(), "/".to_string()),
    };
    let headers: Vec<&str> = lines
        .filter(|line| !line.is_empty())
        .filter(|line| {
            let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
            name != "connection" && name != "proxy-connection"
        })
        .collect();
    let route = routes.lock().unwrap().get(&authority).copied();
    let Some(to) = route else {
        let body = format!("no route to {authority}");
        let answer =
            format!("HTTP/1.1 502 Bad Gateway\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        client.write_all(answer.as_bytes()).await?;
        return client.shutdown().await;
    };
    let mut upstream = TcpStream::connect(to).await?;
    let mut request = format!("{method} {path} {version}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("connection: close\r\n\r\n");
    upstream.write_all(request.as_bytes()).await?;
    // The body (whatever came with the head, then the rest, however it is framed) and the
    // answer, until the upstream closes after answering.
    upstream.write_all(&buffer[head_end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// What every node of a vault shares, from the Secrets the operator generated.
#[derive(Clone, Debug)]
pub struct NodeSecrets {
    pub root_token: String,
    pub peer_secret: String,
    /// The SoftHSM KEK (32 bytes).
    pub kek: Vec<u8>,
}

/// A Job's `vaultd` command: its arguments and its environment beyond the HSM's.
pub struct JobCommand {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A vault pod's data directory (the operator's `layout::DATA_DIR`).
pub const POD_DATA_DIR: &str = "/var/lib/strongroom";

/// A vaultd process (`vaultd serve`, uninitialised: it waits to be bootstrapped or added).
pub struct Vaultd {
    child: Option<Child>,
    /// Its API on loopback.
    pub api: SocketAddr,
    /// Its peer (Raft) port on loopback.
    pub peer: SocketAddr,
    pub log: PathBuf,
    /// `vaultd serve`'s arguments and environment, to start it again.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Vaultd {
    /// Starts a vaultd in `dir` as the pod at `pod_host` (`vault-<n>.vault-headless.<ns>.svc`,
    /// which it advertises) would run: a SoftHSM token of its own holding the vault's `kek`
    /// (as the pod's init container imports it), the vault's root token and peer secret, and
    /// its calls to other nodes through `proxy`.
    pub fn start(repo: &Path, dir: &Path, pod_host: &str, secrets: &NodeSecrets, proxy: &str) -> Self {
        Self::start_after(repo, dir, pod_host, secrets, proxy, None).0
    }

    /// [`Vaultd::start`], after a Job's `vaultd` command has run with the node's HSM on its
    /// volume (as a restore Job writes pod 0's claim before the pod starts): `job` is its
    /// arguments, in which the pod's data directory stands for the node's, and its further
    /// environment. Returns what the command printed too.
    pub fn start_after(
        repo: &Path,
        dir: &Path,
        pod_host: &str,
        secrets: &NodeSecrets,
        proxy: &str,
        job: Option<&JobCommand>,
    ) -> (Self, String) {
        std::fs::create_dir_all(dir).expect("vaultd dir");
        let mut env = softhsm::token_environment(&repo.join("hack/softhsm-token.sh"), &dir.join("hsm"))
            .unwrap_or_else(|error| panic!("cannot make a SoftHSM token: {error:#}"));
        let kek = dir.join("kek");
        std::fs::write(&kek, &secrets.kek).expect("kek file");
        run(Command::new(binary()).arg("hsm-import-key").arg("--key-file").arg(&kek).envs(env.clone()), None)
            .unwrap_or_else(|error| panic!("cannot import the KEK: {error:#}"));
        std::fs::remove_file(&kek).expect("remove the kek file");
        let data_dir = dir.join("data").to_string_lossy().into_owned();
        let printed = match job {
            None => String::new(),
            Some(JobCommand { args, env: job_env }) => {
                let args: Vec<&str> =
                    args.iter().map(|arg| if arg == POD_DATA_DIR { data_dir.as_str() } else { arg.as_str() }).collect();
                let mut command = Command::new(binary());
                command.args(&args).envs(env.clone()).envs(job_env.iter().cloned());
                run(&mut command, None).unwrap_or_else(|error| panic!("vaultd {args:?}: {error:#}"))
            }
        };
        let address = NodeAddress::local();
        let api: SocketAddr = address.api().parse().unwrap();
        let peer: SocketAddr = address.raft_address().parse().unwrap();
        let args = vec![
            "serve".to_string(),
            "--data-dir".to_string(),
            data_dir,
            format!("--listen={api}"),
            format!("--peer-listen={peer}"),
            // The system tests' pods talk through a plain-HTTP proxy, as a cluster without
            // peer TLS does.
            "--peer-plain-http".to_string(),
            format!("--advertise-peer={pod_host}:3001"),
            format!("--advertise-api=http://{pod_host}:3000"),
        ];
        env.extend([
            ("VAULTD_ROOT_TOKEN".to_string(), secrets.root_token.clone()),
            ("VAULTD_PEER_SECRET".to_string(), secrets.peer_secret.clone()),
            ("HTTP_PROXY".to_string(), proxy.to_string()),
            ("NO_PROXY".to_string(), "127.0.0.1,localhost".to_string()),
        ]);
        let mut node = Self { child: None, api, peer, log: dir.join("vaultd.log"), args, env };
        node.restart();
        (node, printed)
    }

    /// Kills it (as a crashed pod's container dies), unless it is dead already.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it, deletes its data and starts it again (a pod whose volume was lost): it
    /// comes back uninitialised.
    pub fn wipe(&mut self) {
        self.kill();
        let data = PathBuf::from(&self.args[2]);
        std::fs::remove_dir_all(&data).unwrap_or_else(|error| panic!("cannot delete {}: {error}", data.display()));
        self.restart();
    }

    /// Starts it again with the same data, token and ports (as a restarted container).
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let child = Command::new(binary())
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot start vaultd");
        self.child = Some(child);
    }
}

impl Drop for Vaultd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- vaultd log ({}), last lines:", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
