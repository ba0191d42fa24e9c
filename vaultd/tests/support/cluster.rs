//! Multi-process clusters on 127.0.0.1: every node is a real `vaultd serve` with its own
//! data directory and fixed ports (so a killed node can come back at the same address),
//! all sharing one SoftHSM token, as spec §3 has it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::{serve_command, Client, SoftHsm, Vault, ROOT_TOKEN};

pub const PEER_SECRET: &str = "test-peer-secret-0123456789";

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where a node lives: its ports and data directory survive restarts.
pub struct Slot {
    pub api_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub vault: Option<Vault>,
}

impl Slot {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn raft_address(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }
}

pub struct TestCluster {
    pub hsm: SoftHsm,
    scratch: TempDir,
    pub slots: Vec<Slot>,
    extra: Vec<String>,
    key_created: bool,
}

impl TestCluster {
    /// `n` nodes: the first bootstraps, the others join as learners and are promoted.
    pub fn start(n: usize, extra: &[&str]) -> Self {
        let mut cluster = TestCluster {
            hsm: SoftHsm::new(),
            scratch: tempfile::tempdir().unwrap(),
            slots: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            key_created: false,
        };
        for _ in 0..n {
            cluster.add_slot();
        }
        cluster.client(0).post("/v1/sys/cluster/init", json!({})).assert_ok();
        for slot in 1..n {
            cluster.join(slot, false);
        }
        cluster
    }

    /// A new slot with a running, uninitialised node.
    pub fn add_slot(&mut self) -> usize {
        let index = self.slots.len();
        let data_dir = self.scratch.path().join(format!("node{index}"));
        self.slots.push(Slot { api_port: free_port(), peer_port: free_port(), data_dir, vault: None });
        self.restart(index);
        index
    }

    pub fn restart(&mut self, slot: usize) {
        assert!(self.slots[slot].vault.is_none(), "node {slot} is running");
        let secret_file = self.scratch.path().join("peer-secret");
        std::fs::write(&secret_file, PEER_SECRET).unwrap();
        let mut extra = vec![
            format!("--listen=127.0.0.1:{}", self.slots[slot].api_port),
            format!("--peer-listen=127.0.0.1:{}", self.slots[slot].peer_port),
            format!("--peer-secret-file={}", secret_file.display()),
        ];
        if !self.key_created {
            extra.push("--hsm-create-key".into());
            self.key_created = true;
        }
        extra.extend(self.extra.iter().cloned());
        let mut command = serve_command(&self.hsm, &self.slots[slot].data_dir, &extra);
        command.env("RUST_LOG", "info,openraft=warn");
        self.slots[slot].vault = Some(Vault::spawn_command(command));
    }

    /// SIGKILL; the data directory stays.
    pub fn kill(&mut self, slot: usize) -> String {
        self.slots[slot].vault.take().expect("node is running").kill()
    }

    /// Kills the node and deletes its data directory.
    pub fn wipe(&mut self, slot: usize) {
        if self.slots[slot].vault.is_some() {
            self.kill(slot);
        }
        std::fs::remove_dir_all(&self.slots[slot].data_dir).unwrap();
    }

    pub fn client(&self, slot: usize) -> Client {
        Client::new(&self.slots[slot].url(), ROOT_TOKEN)
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].vault.is_some()).collect()
    }

    /// A node's own view: `GET /v1/sys/cluster?local=true`.
    pub fn local_status(&self, slot: usize) -> Value {
        self.client(slot).get("/v1/sys/cluster?local=true").assert_ok().clone()
    }

    /// The slot of the node every running node agrees is leader.
    pub fn leader(&self) -> usize {
        poll("an agreed leader", Duration::from_secs(15), || {
            let views: Vec<Value> = self.running().iter().map(|&slot| self.local_status(slot)).collect();
            let leader = views.first()?["leader"].as_u64()?;
            if !views.iter().all(|v| v["leader"].as_u64() == Some(leader)) {
                return None;
            }
            self.running().into_iter().zip(&views).find(|(_, v)| v["nodeId"].as_u64() == Some(leader)).map(|(s, _)| s)
        })
    }

    pub fn node_id(&self, slot: usize) -> u64 {
        self.local_status(slot)["nodeId"].as_u64().expect("node has an id")
    }

    /// Adds the node in `slot` as a learner through another member, waits until it has
    /// caught up, and promotes it. Returns its new node id.
    pub fn join(&self, slot: usize, replace: bool) -> u64 {
        let via = self.running().into_iter().find(|&s| s != slot && self.local_status(s)["nodeId"].is_u64()).unwrap();
        let body = json!({
            "raftAddress": self.slots[slot].raft_address(),
            "apiAddress": self.slots[slot].url(),
            "replace": replace,
        });
        let reply = self.client(via).post("/v1/sys/cluster/learners", body);
        let id = reply.assert_ok()["id"].as_u64().unwrap();
        poll("the learner to catch up and be promoted", Duration::from_secs(30), || {
            let reply = self.client(via).post(&format!("/v1/sys/cluster/members/{id}/promote"), json!({}));
            match reply.status {
                200 => Some(()),
                409 | 503 => None,
                other => panic!("promote answered {other}: {}", reply.body),
            }
        });
        id
    }

    /// The leader's member list: (id, voter).
    pub fn members(&self) -> Vec<(u64, bool)> {
        let slot = self.running()[0];
        let status = self.client(slot).get("/v1/sys/cluster").assert_ok().clone();
        status["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_u64().unwrap(), m["voter"].as_bool().unwrap()))
            .collect()
    }
}
