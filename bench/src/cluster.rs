//! A local 3-node vaultd cluster for the cluster figures of spec §9, formed the way
//! `hack/cluster.sh` forms one: one throwaway SoftHSM2 token shared by every node (as the
//! pods of a real cluster share one KEK), one root token and one peer secret, then
//! `init` on the first node and every other node added as a learner and promoted.
//!
//! The ports are picked before the nodes start, not by each node at bind time, because a
//! node's peer address is what the leader records and dials when the node joins.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::http;
use crate::servers::{self, Server};

/// Nodes in the cluster (spec §9 measures three).
pub const NODES: usize = 3;
/// HTTP workers per node. Three nodes share the machine's two cores, so each gets the one
/// worker it would get under a CPU limit of one core (actix sizes its workers by the CPU
/// quota a container is given); with the default, six workers compete for two cores.
const WORKERS: usize = 1;
/// How long a learner may take to catch up before promoting it gives up.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between promote attempts while the learner is not caught up (HTTP 409).
const PROMOTE_RETRY: Duration = Duration::from_millis(50);
/// An admin request not answered within this fails (vaultd gives up on a proposal after 5 s).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// One vaultd process of the cluster.
struct Node {
    server: Server,
    /// The node's peer (Raft) listener.
    peer: SocketAddr,
    /// The Raft node id it was given when it joined.
    id: u64,
    /// False once `kill` took it down.
    alive: bool,
}

/// A running cluster; every node is killed and every file removed when dropped.
pub struct Cluster {
    /// Dropped (killed) before `_dir`, which holds their data, logs and the HSM token.
    nodes: Vec<Node>,
    token: String,
    _dir: TempDir,
}

impl Cluster {
    /// Starts `NODES` nodes (the first creates the KEK, the others start once it has) and
    /// forms them into a cluster of voters.
    pub fn start(runtime: &Runtime, binary: &Path, softhsm_script: &Path) -> anyhow::Result<Cluster> {
        servers::check_vaultd(binary)?;
        let dir = tempfile::Builder::new().prefix("strongroom-bench-cluster-").tempdir()?;
        let environment = servers::softhsm_environment(softhsm_script, &dir.path().join("hsm"))?;
        let token = servers::random_hex(16)?;
        let token_file = dir.path().join("root-token");
        fs::write(&token_file, &token)?;
        let secret_file = dir.path().join("peer-secret");
        fs::write(&secret_file, servers::random_hex(16)?)?;
        let ports = free_ports(2 * NODES)?;
        let mut nodes = Vec::with_capacity(NODES);
        for (index, pair) in ports.chunks_exact(2).enumerate() {
            let (api, peer) = (pair[0], pair[1]);
            let node_dir = tempfile::Builder::new().prefix(&format!("node{}-", index + 1)).tempdir_in(dir.path())?;
            let mut command = Command::new(binary);
            command
                .envs(environment.iter().map(|(name, value)| (name, value)))
                .arg("serve")
                .arg("--data-dir")
                .arg(node_dir.path().join("data"))
                .arg("--root-token-file")
                .arg(&token_file)
                .arg("--listen")
                .arg(api.to_string())
                .arg("--peer-listen")
                .arg(peer.to_string())
                .arg("--peer-secret-file")
                .arg(&secret_file)
                .args(["--workers", &WORKERS.to_string()]);
            if index == 0 {
                command.arg("--hsm-create-key");
            }
            let server = servers::spawn(command, servers::VAULTD_LISTENING, node_dir, token.clone())
                .with_context(|| format!("node {} did not start", index + 1))?;
            if server.addr != api {
                bail!("node {} listens on {} instead of {api}", index + 1, server.addr);
            }
            nodes.push(Node { server, peer, id: 0, alive: true });
        }
        let mut cluster = Cluster { nodes, token, _dir: dir };
        if let Err(error) = runtime.block_on(cluster.form()) {
            eprintln!("{}", cluster.log_tails());
            return Err(error.context("cannot form the cluster"));
        }
        Ok(cluster)
    }

    /// `init` on the first node, then each other node added as a learner and promoted
    /// once it has caught up, one at a time.
    async fn form(&mut self) -> anyhow::Result<()> {
        let first = self.nodes[0].server.addr;
        let added = self.admin_ok(first, "POST", "/v1/sys/cluster/init", Some("{}")).await?;
        self.nodes[0].id = id_of(&added)?;
        for index in 1..self.nodes.len() {
            let node = &self.nodes[index];
            let body = json!({"raftAddress": node.peer.to_string(), "apiAddress": api_url(node.server.addr)});
            let added = self
                .admin_ok(first, "POST", "/v1/sys/cluster/learners", Some(&body.to_string()))
                .await
                .with_context(|| format!("cannot add node {} as a learner", index + 1))?;
            let id = id_of(&added)?;
            self.nodes[index].id = id;
            self.promote(first, id).await?;
        }
        Ok(())
    }

    /// Promotes learner `id`, retrying while the leader answers 409 (not caught up yet).
    async fn promote(&self, via: SocketAddr, id: u64) -> anyhow::Result<()> {
        let path = format!("/v1/sys/cluster/members/{id}/promote");
        let deadline = Instant::now() + PROMOTE_TIMEOUT;
        loop {
            let (status, body) = admin(via, &self.token, "POST", &path, Some("{}")).await?;
            match status {
                200 => return Ok(()),
                409 if Instant::now() < deadline => tokio::time::sleep(PROMOTE_RETRY).await,
                409 => bail!("node {id} was not caught up within {PROMOTE_TIMEOUT:?}: {}", body.trim()),
                _ => bail!("promoting node {id}: HTTP {status}: {}", body.trim()),
            }
        }
    }

    /// An admin request that must answer 200; its JSON body.
    async fn admin_ok(&self, via: SocketAddr, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<Value> {
        let (status, text) = admin(via, &self.token, method, path, body).await?;
        if status != 200 {
            bail!("{method} {path} on {via}: HTTP {status}: {}", text.trim());
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path} on {via}: not JSON: {text}"))
    }

    /// The leader as `GET /v1/sys/cluster` on node `via` reports it, as the index of its
    /// node here (found by the member's `apiAddress`).
    pub async fn leader(&self, via: usize) -> anyhow::Result<usize> {
        let status = self.admin_ok(self.nodes[via].server.addr, "GET", "/v1/sys/cluster", None).await?;
        let leader = status["leader"].as_u64().with_context(|| format!("no leader in {status}"))?;
        let members = status["members"].as_array().with_context(|| format!("no members in {status}"))?;
        let api_address = members
            .iter()
            .find(|member| member["id"].as_u64() == Some(leader))
            .and_then(|member| member["apiAddress"].as_str())
            .with_context(|| format!("leader {leader} is not among the members: {status}"))?;
        self.nodes
            .iter()
            .position(|node| api_url(node.server.addr) == api_address.trim_end_matches('/'))
            .with_context(|| format!("leader {leader}'s apiAddress {api_address} is none of this cluster's nodes"))
    }

    /// One line per node: its id, API address and role.
    pub async fn describe(&self) -> anyhow::Result<String> {
        let leader = self.leader(0).await?;
        let lines: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let role = if index == leader { "leader" } else { "follower" };
                format!(
                    "  node {} (id {}): {} peer {} pid {}, {role}",
                    index + 1,
                    node.id,
                    api_url(node.server.addr),
                    node.peer,
                    node.server.pid()
                )
            })
            .collect();
        Ok(lines.join("\n"))
    }

    /// `kill -9` of node `index`.
    pub fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        node.server.kill()?;
        node.alive = false;
        Ok(())
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The Raft id of node `index`.
    pub fn id(&self, index: usize) -> u64 {
        self.nodes[index].id
    }

    /// The API addresses of every node, dead or alive, in node order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.server.addr).collect()
    }

    /// The nodes still running.
    pub fn servers(&self) -> Vec<&Server> {
        self.nodes.iter().filter(|node| node.alive).map(|node| &node.server).collect()
    }

    /// Indices of the nodes still running.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&index| self.nodes[index].alive).collect()
    }

    /// The end of every node's log, for error messages.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let state = if node.alive { "" } else { ", killed" };
                format!("vaultd node {} (id {}{state}) log:\n{}", index + 1, node.id, node.server.log_tail())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `http://ADDR`, as vaultd advertises its API by default.
fn api_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The `id` of a `MemberAdded` answer.
fn id_of(answer: &Value) -> anyhow::Result<u64> {
    answer["id"].as_u64().with_context(|| format!("no node id in {answer}"))
}

/// One request with the root token on a fresh connection; the status and body.
async fn admin(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    http::exchange(addr, token, method, path, body, ADMIN_TIMEOUT).await
}

/// `count` distinct ports free on 127.0.0.1: bound together on port 0 (so the kernel
/// hands out distinct ones), then released for the nodes to bind. Another process could
/// take one in between; that node then fails to start with "cannot listen".
fn free_ports(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free ports on 127.0.0.1")?;
    Ok(listeners.iter().map(TcpListener::local_addr).collect::<std::io::Result<Vec<_>>>()?)
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
    fn reads_member_ids() {
        assert_eq!(id_of(&json!({"status": "ok", "id": 2})).unwrap(), 2);
        assert!(id_of(&json!({"status": "ok"})).is_err());
    }
}
