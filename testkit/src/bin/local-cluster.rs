//! `hack/cluster.sh`'s commands: a local N-node cluster on 127.0.0.1 whose vaultd processes
//! outlive this command, one per node, sharing one throwaway SoftHSM token.
//!
//!   local-cluster up N     start N nodes; prints each API URL and the root token
//!   local-cluster status   the leader's view of the members
//!   local-cluster down     stop every node and delete the cluster's files
//!
//! Node i (1-based) serves its API on 127.0.0.1:BASE_PORT+i-1 and Raft on
//! 127.0.0.1:BASE_PORT+100+i-1. Environment: CLUSTER_DIR (default /tmp/strongroom-cluster),
//! BASE_PORT (default 3000), VAULTD (default: target/release/vaultd beside this binary).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use strongroom_testkit::cluster::{self, private_file, SharedFiles};
use strongroom_testkit::process::{self, STARTUP_TIMEOUT};
use strongroom_testkit::{softhsm, NodeAddress};

fn main() {
    if let Err(error) = run() {
        eprintln!("cluster.sh: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::var("CLUSTER_DIR").unwrap_or_else(|_| "/tmp/strongroom-cluster".to_string()));
    let base: u16 = std::env::var("BASE_PORT").unwrap_or_else(|_| "3000".to_string()).parse().context("BASE_PORT")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => {
            let n: usize = args.get(1).map_or(Ok(3), |n| n.parse()).context("usage: cluster.sh up N")?;
            up(&dir, base, n)
        }
        Some("status") => {
            let token = fs::read_to_string(dir.join("root-token")).context("no cluster is up")?;
            let (_, answer) =
                cluster::admin(&cluster::Admin::new(&token), &address(base, 1).url(), "GET", "/v1/sys/cluster", None)?;
            println!("{answer}");
            Ok(())
        }
        Some("down") => down(&dir),
        _ => {
            eprintln!("usage: cluster.sh up N | status | down");
            std::process::exit(2);
        }
    }
}

/// Node `i` (1-based).
fn address(base: u16, i: usize) -> NodeAddress {
    let i = u16::try_from(i - 1).expect("a small cluster");
    NodeAddress { host: "127.0.0.1".to_string(), api_port: base + i, peer_port: base + 100 + i, tls: false }
}

fn up(dir: &Path, base: u16, n: usize) -> anyhow::Result<()> {
    if dir.join("pids").exists() {
        bail!("a cluster is already up in {} (cluster.sh down first)", dir.display());
    }
    let vaultd = std::env::var_os("VAULTD").map_or_else(process::vaultd_binary, PathBuf::from);
    if !vaultd.is_file() {
        bail!("{} not found (cargo build --release -p vaultd, or set VAULTD)", vaultd.display());
    }
    let shared = SharedFiles::create(dir, &softhsm::script(), None)?;
    let nodes: Vec<NodeAddress> = (1..=n).map(|i| address(base, i)).collect();
    let mut pids = OpenOptions::new().create(true).append(true).open(dir.join("pids"))?;
    for (index, node) in nodes.iter().enumerate() {
        let i = index + 1;
        let out = dir.join(format!("node{i}.out"));
        let mut child = shared
            .serve_command(&vaultd, node, &dir.join(format!("node{i}")), i == 1, &[])
            .stdin(Stdio::null())
            .stdout(private_file(&out)?)
            .stderr(private_file(&dir.join(format!("node{i}.log")))?)
            .spawn()
            .with_context(|| format!("cannot start {}", vaultd.display()))?;
        writeln!(pids, "{}", child.id())?;
        // The node outlives this command, so its stdout is a file, read until it says it
        // listens.
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !fs::read_to_string(&out).unwrap_or_default().contains(process::VAULTD_LISTENING) {
            if let Some(status) = child.try_wait()? {
                bail!("node {i} exited ({status}); see {}", dir.join(format!("node{i}.log")).display());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for 'vaultd listening on' in {}", out.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    cluster::form(&shared.admin(), &nodes)?;
    println!("Strongroom cluster of {n} nodes (logs in {}):", dir.display());
    for (index, node) in nodes.iter().enumerate() {
        println!("  node {}: {}", index + 1, node.url());
    }
    println!("root token: {}", shared.token);
    Ok(())
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let pids: Vec<String> =
        fs::read_to_string(dir.join("pids")).unwrap_or_default().lines().map(str::to_string).collect();
    let alive =
        |pid: &str| Command::new("kill").args(["-0", pid]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    for pid in &pids {
        let _ = Command::new("kill").arg(pid).stderr(Stdio::null()).status();
    }
    for pid in &pids {
        while alive(pid) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot delete {}", dir.display()))?;
    }
    println!("cluster.sh: stopped");
    Ok(())
}
