//! A `vaultd serve` node: its command line, and its ports, chosen before it starts (not by
//! the node at bind time) because its peer address is what the leader records and dials
//! when it joins, and so that a killed node can come back at the same address.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// A free port on 127.0.0.1 (released for the process that binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port()
}

/// `count` distinct ports free on 127.0.0.1: bound together on port 0 (so the kernel
/// hands out distinct ones), then released for the nodes to bind. Another process could
/// take one in between; that node then fails to start with "cannot listen".
pub fn free_ports(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free ports on 127.0.0.1")?;
    Ok(listeners.iter().map(TcpListener::local_addr).collect::<std::io::Result<Vec<_>>>()?)
}

/// Where a cluster node listens: its API and peer (Raft) ports on `host`.
#[derive(Clone, Debug)]
pub struct NodeAddress {
    pub host: String,
    pub api_port: u16,
    pub peer_port: u16,
    /// Whether its API speaks HTTPS.
    pub tls: bool,
}

impl NodeAddress {
    /// Two free ports on 127.0.0.1.
    pub fn local() -> Self {
        Self::on("127.0.0.1")
    }

    /// Two ports free on 127.0.0.1, to be used on `host` (another address of this machine,
    /// or one in a network namespace).
    pub fn on(host: &str) -> Self {
        NodeAddress { host: host.to_string(), api_port: free_port(), peer_port: free_port(), tls: false }
    }

    /// Its API's URL, `http://HOST:PORT` (`https://` with TLS), as vaultd advertises it
    /// by default.
    pub fn url(&self) -> String {
        format!("{}://{}:{}", if self.tls { "https" } else { "http" }, self.host, self.api_port)
    }

    pub fn api(&self) -> String {
        format!("{}:{}", self.host, self.api_port)
    }

    pub fn raft_address(&self) -> String {
        format!("{}:{}", self.host, self.peer_port)
    }

    /// The flags a node at this address serves with: `--listen`, `--peer-listen`,
    /// `--peer-secret-file` and `--peer-plain-http` (local clusters run without peer TLS
    /// unless `extra` flags add it).
    pub fn flags(&self, peer_secret_file: &Path) -> Vec<String> {
        vec![
            format!("--listen={}", self.api()),
            format!("--peer-listen={}", self.raft_address()),
            format!("--peer-secret-file={}", peer_secret_file.display()),
            "--peer-plain-http".to_string(),
        ]
    }
}

/// `vaultd serve` on `data_dir` with the root token in `root_token_file`, the HSM
/// environment `hsm_env` (see [`crate::softhsm`]) and `extra` flags; `--listen=127.0.0.1:0`
/// unless `extra` says where. Cluster nodes add [`NodeAddress::flags`] (and the first one
/// `--hsm-create-key`) to `extra`.
pub fn serve_command<K, V>(
    binary: &Path,
    hsm_env: impl IntoIterator<Item = (K, V)>,
    data_dir: &Path,
    root_token_file: &Path,
    extra: &[String],
) -> Command
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut command = Command::new(binary);
    command.arg("serve");
    if !extra.iter().any(|arg| arg.starts_with("--listen")) {
        command.arg("--listen=127.0.0.1:0");
    }
    command.arg("--data-dir").arg(data_dir).arg("--root-token-file").arg(root_token_file).args(extra).envs(hsm_env);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let mut ports: Vec<u16> = free_ports(6).unwrap().iter().map(SocketAddr::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }

    #[test]
    fn a_node_listens_where_its_address_says() {
        let node = NodeAddress { host: "10.0.0.2".into(), api_port: 3000, peer_port: 3100, tls: false };
        assert_eq!(node.url(), "http://10.0.0.2:3000");
        assert_eq!(node.raft_address(), "10.0.0.2:3100");
        let command = serve_command(
            Path::new("vaultd"),
            [("A", "1")],
            Path::new("/d"),
            Path::new("/t"),
            &node.flags(Path::new("/s")),
        );
        let args: Vec<_> = command.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "serve",
                "--data-dir",
                "/d",
                "--root-token-file",
                "/t",
                "--listen=10.0.0.2:3000",
                "--peer-listen=10.0.0.2:3100",
                "--peer-secret-file=/s",
                "--peer-plain-http"
            ]
        );
    }
}
