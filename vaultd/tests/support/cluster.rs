//! Multi-process clusters on 127.0.0.1: every node is a real `vaultd serve` with its own
//! data directory and fixed ports (so a killed node can come back at the same address),
//! all sharing one SoftHSM token, as spec §3 has it. The shared files, ports, command lines
//! and the forming of the cluster are strongroom-testkit's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use strongroom_testkit::cluster::{self, Admin, SharedFiles};
use strongroom_testkit::tls::Ca;
use strongroom_testkit::{softhsm, NodeAddress};

use super::{Client, Vault, ROOT_TOKEN};

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

/// Where a node lives: its address, ports and data directory survive restarts.
pub struct Slot {
    pub address: NodeAddress,
    /// The network namespace the node runs in, if not the test's own.
    pub netns: Option<String>,
    pub data_dir: PathBuf,
    pub vault: Option<Vault>,
}

impl Slot {
    pub fn url(&self) -> String {
        self.address.url()
    }

    pub fn raft_address(&self) -> String {
        self.address.raft_address()
    }
}

pub struct TestCluster {
    shared: SharedFiles,
    scratch: TempDir,
    pub slots: Vec<Slot>,
    extra: Vec<String>,
    key_created: bool,
}

impl TestCluster {
    /// `n` nodes on 127.0.0.1: the first bootstraps, the others join as learners and are
    /// promoted.
    pub fn start(n: usize, extra: &[&str]) -> Self {
        Self::start_at(&vec![("127.0.0.1".to_string(), None); n], extra)
    }

    /// `n` nodes on 127.0.0.1 whose API speaks HTTPS, with one certificate made by the
    /// testkit (`SharedFiles::with_api_tls`).
    pub fn start_with_api_tls(n: usize, extra: &[&str]) -> Self {
        Self::start_in(&vec![("127.0.0.1".to_string(), None); n], extra, true)
    }

    /// One node per `(host, network namespace)`, formed into a cluster.
    pub fn start_at(places: &[(String, Option<String>)], extra: &[&str]) -> Self {
        Self::start_in(places, extra, false)
    }

    fn start_in(places: &[(String, Option<String>)], extra: &[&str], api_tls: bool) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let shared_dir = scratch.path().join("shared");
        let mut shared = SharedFiles::create(&shared_dir, &softhsm::script(), Some(ROOT_TOKEN))
            .unwrap_or_else(|error| panic!("cannot make the cluster's files: {error:#}"));
        if api_tls {
            shared = shared.with_api_tls(&shared_dir).unwrap();
        }
        let mut cluster = TestCluster {
            shared,
            scratch,
            slots: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            key_created: false,
        };
        for (host, netns) in places {
            cluster.add_slot(host, netns.clone());
        }
        cluster::init(&cluster.admin(), &cluster.slots[0].url()).unwrap();
        for slot in 1..places.len() {
            cluster.join(slot, false);
        }
        cluster
    }

    /// A new slot with a running, uninitialised node.
    pub fn add_slot(&mut self, host: &str, netns: Option<String>) -> usize {
        let index = self.slots.len();
        let data_dir = self.scratch.path().join(format!("node{index}"));
        let address = NodeAddress { tls: self.shared.api_tls.is_some(), ..NodeAddress::on(host) };
        self.slots.push(Slot { address, netns, data_dir, vault: None });
        self.restart(index);
        index
    }

    /// A new slot on 127.0.0.1 whose data directory `prepare` writes first (a restore,
    /// say), then running.
    pub fn add_prepared_slot(&mut self, prepare: impl FnOnce(&Path)) -> usize {
        let index = self.slots.len();
        let data_dir = self.scratch.path().join(format!("node{index}"));
        prepare(&data_dir);
        let address = NodeAddress { tls: self.shared.api_tls.is_some(), ..NodeAddress::on("127.0.0.1") };
        self.slots.push(Slot { address, netns: None, data_dir, vault: None });
        self.restart(index);
        index
    }

    /// The files every node shares: the SoftHSM token's environment, the root token's
    /// file, the peer secret.
    pub fn shared(&self) -> &SharedFiles {
        &self.shared
    }

    pub fn restart(&mut self, slot: usize) {
        assert!(self.slots[slot].vault.is_none(), "node {slot} is running");
        let binary = Path::new(env!("CARGO_BIN_EXE_vaultd"));
        let node = &self.slots[slot];
        let mut command =
            self.shared.serve_command(binary, &node.address, &node.data_dir, !self.key_created, &self.extra);
        self.key_created = true;
        command.env("RUST_LOG", "info,openraft=warn");
        if let Some(netns) = &self.slots[slot].netns {
            command = in_netns(netns, &command);
        }
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

    /// The root token's client for node `slot` (trusting the API's CA, with TLS).
    pub fn client(&self, slot: usize) -> Client {
        match &self.shared.api_tls {
            Some(tls) => Client::https(&self.slots[slot].url(), ROOT_TOKEN, &tls.ca.pem(), None),
            None => Client::new(&self.slots[slot].url(), ROOT_TOKEN),
        }
    }

    /// How the testkit's admin requests reach the nodes.
    fn admin(&self) -> Admin {
        self.shared.admin()
    }

    /// The secret every member shares.
    pub fn peer_secret(&self) -> String {
        std::fs::read_to_string(&self.shared.secret_file).unwrap()
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
        cluster::join(&self.admin(), &self.slots[via].url(), &self.slots[slot].address, replace).unwrap()
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

/// The same command, run inside a network namespace (`ip netns exec`).
fn in_netns(netns: &str, command: &std::process::Command) -> std::process::Command {
    let mut wrapped = std::process::Command::new("ip");
    wrapped.args(["netns", "exec", netns]).arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    wrapped
}

/// A network namespace joined to this one by a veth pair: `host_ip` on our side,
/// `inner_ip` inside. Cutting the link isolates whatever runs inside. Removed on drop.
pub struct Netns {
    pub name: String,
    host_link: String,
    pub host_ip: String,
    pub inner_ip: String,
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

impl Netns {
    /// `None` where namespaces cannot be made (not root, no `ip`).
    pub fn create() -> Option<Self> {
        let id = std::process::id();
        let (name, host_link, inner_link) = (format!("srt{id}"), format!("srh{id}"), format!("srn{id}"));
        let subnet = format!("10.{}.{}", 64 + (id / 250) % 64, id % 250);
        let netns = Netns { name, host_link, host_ip: format!("{subnet}.1"), inner_ip: format!("{subnet}.2") };
        if !ip(&["netns", "add", &netns.name]) {
            return None;
        }
        let ok = ip(&["link", "add", &netns.host_link, "type", "veth", "peer", "name", &inner_link])
            && ip(&["link", "set", &inner_link, "netns", &netns.name])
            && ip(&["addr", "add", &format!("{}/24", netns.host_ip), "dev", &netns.host_link])
            && ip(&["link", "set", &netns.host_link, "up"])
            && ip(&[
                "netns",
                "exec",
                &netns.name,
                "ip",
                "addr",
                "add",
                &format!("{}/24", netns.inner_ip),
                "dev",
                &inner_link,
            ])
            && ip(&["netns", "exec", &netns.name, "ip", "link", "set", &inner_link, "up"])
            && ip(&["netns", "exec", &netns.name, "ip", "link", "set", "lo", "up"]);
        assert!(ok, "cannot set up network namespace {}", netns.name);
        Some(netns)
    }

    /// Cuts (or restores) the link: nothing crosses between the namespaces meanwhile.
    pub fn set_connected(&self, connected: bool) {
        assert!(ip(&["link", "set", &self.host_link, if connected { "up" } else { "down" }]));
    }

    /// A GET of `url` from inside the namespace, without a token: the body as text.
    pub fn get_text(&self, url: &str) -> String {
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-s", "-m", "30", url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs curl inside the namespace; returns (HTTP status, body).
    pub fn curl(&self, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
        let mut command = std::process::Command::new("ip");
        command.args(["netns", "exec", &self.name, "curl", "-s", "-m", "30", "-o", "-", "-w", "\n%{http_code}"]);
        command.args([
            "-X",
            method,
            "-H",
            &format!("X-Bunker-Token: {ROOT_TOKEN}"),
            "-H",
            "Content-Type: application/json",
        ]);
        if let Some(body) = body {
            command.args(["-d", body]);
        }
        let output = command.arg(url).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_link]);
        ip(&["netns", "del", &self.name]);
    }
}

/// A cluster CA and a peer certificate for 127.0.0.1 signed by it, as PEM files in `dir`;
/// returns the `--peer-tls-*` flags that use them.
pub fn peer_tls_flags(dir: &std::path::Path, name: &str) -> Vec<String> {
    let ca = Ca::new(name).unwrap();
    let path = |file: &str| dir.join(format!("{name}-{file}"));
    ca.write(&path("ca.pem")).unwrap();
    ca.issue_server(name).unwrap().write(&path("cert.pem"), &path("key.pem")).unwrap();
    vec![
        format!("--peer-tls-cert={}", path("cert.pem").display()),
        format!("--peer-tls-key={}", path("key.pem").display()),
        format!("--peer-tls-ca={}", path("ca.pem").display()),
    ]
}
