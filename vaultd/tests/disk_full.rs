//! A full disk (issue 17, finding 9): a vault whose data directory's file system fills up
//! refuses writes with 507 before it is full, keeps serving reads, and takes writes again
//! once space is freed, without a restart; a node whose storage failed anyway answers 503
//! with a plain message everywhere, `/v1/status` included, so that its liveness probe
//! restarts it; and in a cluster, a follower's full disk stops neither the cluster nor the
//! follower, while a leader's full disk refuses every node's writes but not its reads.
//! Each test mounts a small tmpfs as a data directory (tests run as root; where `mount` is
//! refused they print SKIPPED and pass).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::{poll, TestCluster};
use support::{profile, serve_scratch, Client, Reply, Vault};

const MIB: u64 = 1024 * 1024;
/// Of the 48 MiB volume (the size the finding was confirmed on).
const RESERVE: u64 = 16 * MIB;
/// Smaller in the cluster test, whose profiles are smaller.
const CLUSTER_RESERVE: u64 = 4 * MIB;

/// A tmpfs mounted on a directory; unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes on `dir` (created), or prints SKIPPED and returns
    /// `None` when mounting is not permitted.
    fn mount(dir: &Path, size: u64, test: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map(|output| output.status.success());
        match mounted {
            Ok(true) => Some(Tmpfs { dir: dir.to_path_buf() }),
            _ => {
                strongroom_testkit::skipped(test, "mounting a tmpfs needs root (CI runs this test as root)");
                None
            }
        }
    }

    /// Bytes still free on the file system.
    fn free(&self) -> u64 {
        let output = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.dir).output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        text.lines().nth(1).and_then(|line| line.trim().parse().ok()).unwrap_or_else(|| panic!("df said {text:?}"))
    }

    /// Writes a file that leaves `leave` bytes free (give or take a block).
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let path = self.dir.join("filler");
        let size = self.free().saturating_sub(leave);
        let chunk = vec![0x5a_u8; MIB as usize];
        let mut file = std::fs::File::create(&path).unwrap();
        let mut written = 0;
        while written < size {
            let part = (size - written).min(MIB) as usize;
            std::io::Write::write_all(&mut file, &chunk[..part]).unwrap();
            written += part as u64;
        }
        file.sync_all().unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A profile of about 200 KiB, so that a few dozen writes fill a few MiB.
fn big_profile(login: &str) -> Value {
    json!({"login": login, "notes": "n".repeat(200 * 1024)})
}

/// A profile of about 16 KiB: a follower that lags catches up through appends of up to
/// 64 entries, each of which must arrive within Raft's heartbeat interval (150 ms).
fn cluster_profile(login: &str) -> Value {
    json!({"login": login, "notes": "n".repeat(16 * 1024)})
}

/// A 5xx answer says what happened in plain words, never a component's error text.
fn assert_plain(reply: &Reply) {
    let text = reply.body.to_string();
    for internal in ["sled", "os error", "No space", "StorageFull", "StorageError", "Io(", "io error"] {
        assert!(!text.contains(internal), "internal error text in a {} answer: {text}", reply.status);
    }
    assert_eq!(reply.body["status"], "error", "{text}");
}

/// Creates users with `profile`s until one is refused; every answer is 200 or `refused`.
/// Returns the logins acknowledged and the refusal.
fn write_until_refused(
    client: &Client,
    prefix: &str,
    profile: fn(&str) -> Value,
    refused: &[u16],
) -> (Vec<String>, Reply) {
    let mut acknowledged = Vec::new();
    for n in 0..4000 {
        let login = format!("{prefix}{n}");
        let reply = client.post("/v1/user", profile(&login));
        match reply.status {
            200 => acknowledged.push(login),
            status if refused.contains(&status) => {
                assert_plain(&reply);
                return (acknowledged, reply);
            }
            status => panic!("write {n} answered {status}: {}", reply.body),
        }
    }
    panic!("4000 writes fitted on a 48 MiB volume");
}

fn assert_readable(client: &Client, logins: &[String], profile: fn(&str) -> Value) {
    for login in logins {
        let reply = client.get(&format!("/v1/user/login/{login}"));
        assert_eq!(reply.assert_ok()["data"], profile(login), "{login}");
    }
}

fn assert_chain_intact(client: &Client) {
    let reply = client.get("/v1/sys/audit/verify");
    assert_eq!(reply.assert_ok()["verification"]["intact"], true, "{}", reply.body);
}

#[test]
fn a_nearly_full_disk_refuses_writes_with_507_serves_reads_and_recovers_without_restart() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let Some(tmpfs) = Tmpfs::mount(&data_dir, 48 * MIB, "a_nearly_full_disk_refuses_writes") else { return };
    let reserve = RESERVE.to_string();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--min-free-bytes", &reserve]);
    let client = vault.client();
    let keeper = client.create_user(json!({"login": "keeper", "email": "keeper@example.com"}));
    let leaver = client.create_user(json!({"login": "leaver"}));
    let status = client.get("/v1/status");
    assert_eq!(status.assert_ok()["storage"]["state"], "ok", "{}", status.body);

    // A few MiB above the reserve: big writes use them up and then get 507.
    let filler = tmpfs.fill_leaving(RESERVE + 4 * MIB);
    let (acknowledged, refusal) = write_until_refused(&client, "big", big_profile, &[507]);
    assert!(!acknowledged.is_empty(), "the writes above the reserve were taken");
    assert!(refusal.body["message"].as_str().unwrap().contains("storage is full"), "{}", refusal.body);

    // Full: every write is refused, whatever its size and route; reads, audit listings
    // and erasures go on; the probes pass (a restart would not free space).
    client.post("/v1/user", json!({"login": "small"})).assert_error(507);
    client.post(&format!("/v1/userapp/token/{keeper}/shop"), json!({"size": "M"})).assert_error(507);
    client.put(&format!("/v1/user/token/{keeper}"), json!({"city": "Leeds"})).assert_error(507);
    assert_eq!(profile(&client, &keeper)["login"], "keeper");
    assert_readable(&client, &acknowledged, big_profile);
    client.get("/v1/user/login/nobody").assert_error(404);
    client.get("/v1/audit/admin?limit=5").assert_ok();
    client.delete(&format!("/v1/user/token/{leaver}")).assert_ok();
    let status = client.get("/v1/status");
    let storage = &status.assert_ok()["storage"];
    assert_eq!(storage["state"], "full", "{}", status.body);
    assert_eq!(storage["minFreeBytes"].as_u64(), Some(RESERVE));
    assert!(storage["freeBytes"].as_u64().unwrap() < RESERVE, "{}", status.body);
    client.get("/v1/status?ready=member").assert_ok();

    // Space comes back: writes are taken again, with no restart.
    std::fs::remove_file(filler).unwrap();
    poll("a write after space was freed", Duration::from_secs(10), || {
        let reply = client.post("/v1/user", json!({"login": "after"}));
        match reply.status {
            200 => Some(()),
            507 => None,
            status => panic!("answered {status}: {}", reply.body),
        }
    });
    assert_eq!(client.get("/v1/status").assert_ok()["storage"]["state"], "ok");
    client.put(&format!("/v1/user/token/{keeper}"), json!({"city": "Leeds"})).assert_ok();
    assert_readable(&client, &acknowledged, big_profile);
    assert_chain_intact(&client);

    // Nothing acknowledged is lost across a restart, and the chain still verifies.
    vault.stop();
    let vault = Vault::hsm(&hsm, &data_dir, &["--min-free-bytes", &reserve]);
    let client = vault.client();
    assert_readable(&client, &acknowledged, big_profile);
    assert_eq!(profile(&client, &keeper)["city"], "Leeds");
    client.get("/v1/user/login/after").assert_ok();
    assert_eq!(client.get("/v1/user/login/leaver").status, 404, "the erasure made while full holds");
    assert_chain_intact(&client);
    drop(vault);
    drop(tmpfs);
}

#[test]
fn a_node_whose_storage_failed_answers_503_everywhere_until_restarted() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let Some(tmpfs) = Tmpfs::mount(&data_dir, 48 * MIB, "a_node_whose_storage_failed") else { return };
    // The guard off: the disk fills up under Raft, as it would under another process.
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--min-free-bytes", "0"]);
    let client = vault.client();
    let keeper = client.create_user(json!({"login": "keeper"}));

    let filler = tmpfs.fill_leaving(4 * MIB);
    let (acknowledged, failure) = write_until_refused(&client, "big", big_profile, &[503]);
    assert!(!acknowledged.is_empty(), "the writes that fitted were taken");
    eprintln!("the write that met the full disk: {}", failure.body);

    // The Raft core has stopped: the status says so with 503 (liveness fails), and
    // every request, reads too, gets the same plain 503.
    let status = poll("/v1/status to report the failure", Duration::from_secs(10), || {
        let reply = client.get("/v1/status");
        (reply.status == 503).then_some(reply)
    });
    assert_plain(&status);
    assert_eq!(status.body["storage"]["state"], "failed", "{}", status.body);
    assert_eq!(status.body["node"]["state"], "shutdown", "{}", status.body);
    client.get("/v1/status?ready=member").assert_error(503);
    let requests = [
        client.get(&format!("/v1/user/token/{keeper}")),
        client.get("/v1/user/login/keeper"),
        client.post("/v1/user", json!({"login": "late"})),
        client.get("/v1/sys/audit/verify"),
        client.get("/v1/audit/admin"),
        client.get("/v1/sys/cluster"),
    ];
    for reply in requests {
        reply.assert_error(503);
        assert_plain(&reply);
        assert_eq!(reply.body["message"], "this node's storage failed; it needs a restart");
    }
    let metrics = client.get("/metrics");
    assert_eq!(metrics.status, 200, "metrics still answer");

    // Space freed and restarted: everything acknowledged is there and the chain verifies.
    std::fs::remove_file(filler).unwrap();
    vault.kill();
    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let client = vault.client();
    assert_eq!(profile(&client, &keeper)["login"], "keeper");
    assert_readable(&client, &acknowledged, big_profile);
    assert_chain_intact(&client);
    drop(vault);
    drop(tmpfs);
}

/// The slot's node, stopped, continues on a tmpfs of 48 MiB holding a copy of its data.
fn move_onto_tmpfs(cluster: &mut TestCluster, slot: usize, test: &str) -> Option<Tmpfs> {
    cluster.kill(slot);
    let data_dir = cluster.slots[slot].data_dir.clone();
    let moved = data_dir.with_extension("moved");
    std::fs::rename(&data_dir, &moved).unwrap();
    let Some(tmpfs) = Tmpfs::mount(&data_dir, 48 * MIB, test) else {
        std::fs::rename(&moved, &data_dir).unwrap();
        return None;
    };
    let copied = Command::new("cp").arg("-a").arg(moved.join(".")).arg(&data_dir).status().unwrap();
    assert!(copied.success());
    cluster.restart(slot);
    Some(tmpfs)
}

/// Waits until the node in `slot` has applied everything the leader has.
fn caught_up(cluster: &TestCluster, slot: usize, leader: usize) {
    let applied = cluster.local_status(leader)["appliedIndex"].as_u64().unwrap();
    poll("the node to catch up", Duration::from_secs(20), || {
        (cluster.local_status(slot)["appliedIndex"].as_u64()? >= applied).then_some(())
    });
}

#[test]
fn in_a_cluster_a_full_follower_lags_without_stopping_and_a_full_leader_refuses_writes_but_not_reads() {
    let reserve = CLUSTER_RESERVE.to_string();
    let mut cluster = TestCluster::start(3, &["--min-free-bytes", &reserve]);
    let first = cluster.leader();
    let full = (first + 1) % 3;
    let Some(tmpfs) = move_onto_tmpfs(&mut cluster, full, "in_a_cluster_a_full_follower") else { return };
    let leader = cluster.leader();
    assert_ne!(leader, full, "a restarted node rejoins as a follower");
    let other = (0..3).find(|&slot| slot != leader && slot != full).unwrap();
    let keeper = cluster.client(leader).create_user(json!({"login": "keeper"}));
    caught_up(&cluster, full, leader);

    // A follower's disk nearly full: it refuses writes made through it, and once the
    // leader's entries have used half its reserve it refuses them too and lags behind,
    // while the leader and the other follower go on. It never stops.
    let filler = tmpfs.fill_leaving(CLUSTER_RESERVE + MIB);
    let (mut acknowledged, _) = write_until_refused(&cluster.client(full), "via-full", cluster_profile, &[507]);
    let free = |cluster: &TestCluster| {
        let status = cluster.client(full).get("/v1/status");
        status.assert_ok()["storage"]["freeBytes"].as_u64().unwrap()
    };
    for n in 0.. {
        let login = format!("past-full-{n}");
        cluster.client(leader).post("/v1/user", cluster_profile(&login)).assert_ok();
        acknowledged.push(login);
        // A few more once it is below half its reserve: those it refuses.
        if free(&cluster) < CLUSTER_RESERVE / 2 {
            for more in 0..3 {
                let login = format!("past-half-{more}");
                cluster.client(leader).post("/v1/user", cluster_profile(&login)).assert_ok();
                acknowledged.push(login);
            }
            break;
        }
        assert!(n < 1000, "the follower's disk never filled");
    }
    let status = cluster.client(full).get("/v1/status");
    assert_eq!(status.assert_ok()["storage"]["state"], "full", "{}", status.body);
    assert_eq!(status.body["node"]["state"], "follower", "{}", status.body);
    let behind = cluster.local_status(full)["appliedIndex"].as_u64().unwrap();
    assert!(behind < cluster.local_status(leader)["appliedIndex"].as_u64().unwrap(), "it refused entries");
    let newest = &acknowledged[acknowledged.len() - 5..];
    assert_readable(&cluster.client(other), newest, cluster_profile);

    // Space back: it catches up, with no restart, and takes writes again.
    std::fs::remove_file(filler).unwrap();
    caught_up(&cluster, full, leader);
    cluster.client(full).post("/v1/user", json!({"login": "after-follower"})).assert_ok();
    assert_readable(&cluster.client(full), newest, cluster_profile);

    // The same node as the leader (leadership moves on when the leader is killed; the
    // others come back as followers).
    let mut leader = cluster.leader();
    for _ in 0..20 {
        if leader == full {
            break;
        }
        cluster.kill(leader);
        let killed = leader;
        leader = cluster.leader();
        cluster.restart(killed);
    }
    assert_eq!(leader, full, "the node on the tmpfs never became the leader");
    let follower = (full + 1) % 3;
    caught_up(&cluster, follower, leader);

    // A leader's disk nearly full: writes through any node get 507; reads, audit listings
    // and erasures through any node go on.
    let filler = tmpfs.fill_leaving(CLUSTER_RESERVE + MIB);
    let (more, refusal) = write_until_refused(&cluster.client(follower), "via-follower", cluster_profile, &[507]);
    acknowledged.extend(more);
    assert!(refusal.body["message"].as_str().unwrap().contains("storage is full"), "{}", refusal.body);
    cluster.client((full + 2) % 3).post("/v1/user", json!({"login": "small"})).assert_error(507);
    for slot in 0..3 {
        assert_eq!(profile(&cluster.client(slot), &keeper)["login"], "keeper", "node {slot}");
        cluster.client(slot).get("/v1/audit/admin?limit=5").assert_ok();
    }
    let status = cluster.client(full).get("/v1/status");
    assert_eq!(status.assert_ok()["storage"]["state"], "full", "{}", status.body);
    assert_eq!(status.body["node"]["state"], "leader", "{}", status.body);
    // An erasure goes through (and, compacted, may free a little space).
    let leaver = acknowledged.pop().unwrap();
    cluster.client(follower).delete(&format!("/v1/user/login/{leaver}")).assert_ok();

    // Space back: writes through every node are taken again.
    std::fs::remove_file(filler).unwrap();
    for slot in 0..3 {
        cluster.client(slot).post("/v1/user", json!({"login": format!("after-leader-{slot}")})).assert_ok();
    }
    assert_readable(&cluster.client(follower), &acknowledged, cluster_profile);
    assert_chain_intact(&cluster.client(follower));
    drop(cluster);
    drop(tmpfs);
}
