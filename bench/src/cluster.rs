//! A local 3-node vaultd cluster for the cluster figures of spec §9, formed by
//! strongroom-testkit the way `hack/cluster.sh` forms one: one throwaway SoftHSM2 token
//! shared by every node (as the pods of a real cluster share one KEK), one root token and
//! one peer secret, ports chosen before the nodes start, then `init` on the first node and
//! every other node added as a learner and promoted. With HTTPS on the API, every node
//! serves one certificate for 127.0.0.1 from a CA the harness makes (testkit).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;
use strongroom_testkit::cluster::{self, SharedFiles};
use strongroom_testkit::NodeAddress;
use tempfile::TempDir;

use crate::http::{self, Endpoint};
use crate::servers::{self, Api, CliAccess, Server};

/// Nodes in the cluster (spec §9 measures three).
pub const NODES: usize = 3;
/// HTTP workers per node. Three nodes share the machine's two cores, so each gets the one
/// worker it would get under a CPU limit of one core (actix sizes its workers by the CPU
/// quota a container is given); with the default, six workers compete for two cores.
const WORKERS: usize = 1;

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
    /// How `vaultd backup` and `vaultd restore` reach the second node and the shared HSM.
    pub cli: CliAccess,
    _dir: TempDir,
}

impl Cluster {
    /// Starts `NODES` nodes (the first creates the KEK, the others start once it has), their
    /// API reached by `api`, and forms them into a cluster of voters. Blocking: call it
    /// outside the runtime's tasks.
    pub fn start(binary: &Path, softhsm_script: &Path, api: Api) -> anyhow::Result<Cluster> {
        servers::check_vaultd(binary)?;
        let dir = tempfile::Builder::new().prefix("strongroom-bench-cluster-").tempdir()?;
        let mut shared = SharedFiles::create(dir.path(), softhsm_script, None)?;
        if api == Api::Https {
            shared = shared.with_api_tls(dir.path())?;
        }
        let tls = shared.api_tls.as_ref().map(|tls| http::tls_connector(&tls.ca.pem())).transpose()?;
        let ports = strongroom_testkit::free_ports(2 * NODES)?;
        let addresses: Vec<NodeAddress> = ports
            .chunks_exact(2)
            .map(|pair| NodeAddress {
                host: "127.0.0.1".to_string(),
                api_port: pair[0].port(),
                peer_port: pair[1].port(),
                tls: tls.is_some(),
            })
            .collect();
        let mut nodes = Vec::with_capacity(NODES);
        for (index, address) in addresses.iter().enumerate() {
            let node_dir = tempfile::Builder::new().prefix(&format!("node{}-", index + 1)).tempdir_in(dir.path())?;
            let workers = ["--workers".to_string(), WORKERS.to_string()];
            let command = shared.serve_command(binary, address, &node_dir.path().join("data"), index == 0, &workers);
            let mut server = servers::spawn(command, servers::vaultd_listening(api), node_dir, shared.token.clone())
                .with_context(|| format!("node {} did not start", index + 1))?;
            server.tls = tls.clone();
            let api: SocketAddr = address.api().parse()?;
            if server.addr != api {
                bail!("node {} listens on {} instead of {api}", index + 1, server.addr);
            }
            let peer = address.raft_address().parse()?;
            nodes.push(Node { server, peer, id: 0, alive: true });
        }
        let shared_admin = shared.admin();
        let cli = CliAccess::new(
            nodes[1].server.addr,
            dir.path(),
            shared.token_file.clone(),
            shared.api_tls.as_ref(),
            shared.hsm_env.clone(),
        )?;
        let mut cluster = Cluster { nodes, token: shared.token, cli, _dir: dir };
        match cluster::form(&shared_admin, &addresses) {
            Ok(ids) => {
                for (node, id) in cluster.nodes.iter_mut().zip(ids) {
                    node.id = id;
                }
            }
            Err(error) => {
                eprintln!("{}", cluster.log_tails());
                return Err(error.context("cannot form the cluster"));
            }
        }
        Ok(cluster)
    }

    /// An admin request that must answer 200; its JSON body.
    async fn admin_ok(&self, via: Endpoint, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<Value> {
        let (status, text) = admin(&via, &self.token, method, path, body).await?;
        if status != 200 {
            bail!("{method} {path} on {via}: HTTP {status}: {}", text.trim());
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path} on {via}: not JSON: {text}"))
    }

    /// The leader as `GET /v1/sys/cluster` on node `via` reports it, as the index of its
    /// node here (found by the member's `apiAddress`).
    pub async fn leader(&self, via: usize) -> anyhow::Result<usize> {
        let status = self.admin_ok(self.nodes[via].server.endpoint(), "GET", "/v1/sys/cluster", None).await?;
        let leader = status["leader"].as_u64().with_context(|| format!("no leader in {status}"))?;
        let members = status["members"].as_array().with_context(|| format!("no members in {status}"))?;
        let api_address = members
            .iter()
            .find(|member| member["id"].as_u64() == Some(leader))
            .and_then(|member| member["apiAddress"].as_str())
            .with_context(|| format!("leader {leader} is not among the members: {status}"))?;
        self.nodes
            .iter()
            .position(|node| node.server.endpoint().url() == api_address.trim_end_matches('/'))
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
                    node.server.endpoint(),
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

    /// The APIs of every node, dead or alive, in node order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.nodes.iter().map(|node| node.server.endpoint()).collect()
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

/// One request with the root token on a fresh connection; the status and body.
async fn admin(
    endpoint: &Endpoint,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    http::exchange(endpoint, token, method, path, body, cluster::ADMIN_TIMEOUT).await
}
