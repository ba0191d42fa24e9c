//! The Raft cluster with real processes on loopback: replication and linearizable reads
//! from any node, leader failure under load, a wiped node rejoining under a new id,
//! erasures compacted out of every node's log, what the peer port lets through, and the
//! anonymous capabilities (shares, exptokens) on every node.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::cluster::{poll, TestCluster};
use support::sample;

#[test]
fn a_write_on_a_follower_is_read_at_once_on_every_node() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let token = cluster.client(follower).create_user(json!({"login": "ada", "email": "ada@example.com"}));
    for slot in 0..3 {
        let reply = cluster.client(slot).get("/v1/user/login/ada");
        assert_eq!(reply.assert_ok()["token"], token.as_str(), "node {slot}");
        assert_eq!(reply.body["data"]["email"], "ada@example.com");
    }
    // Reads right after an acknowledged write see it, whichever nodes take the two.
    for round in 0..20 {
        let (writer, reader) = (round % 3, (round + 1) % 3);
        let city = format!("city-{round}");
        cluster.client(writer).put(&format!("/v1/user/token/{token}"), json!({"city": city})).assert_ok();
        let reply = cluster.client(reader).get(&format!("/v1/user/token/{token}"));
        assert_eq!(reply.assert_ok()["data"]["city"], city.as_str(), "read on node {reader} after write on {writer}");
    }
    // Scoped tokens work on every node, and a revoked one nowhere.
    let reply = cluster.client(follower).post("/v1/sys/tokens", json!({"name": "reader", "scopes": ["users:read"]}));
    let (id, secret) =
        (reply.body["id"].as_str().unwrap().to_string(), reply.body["token"].as_str().unwrap().to_string());
    for slot in 0..3 {
        cluster.client(slot).with_token(Some(&secret)).get("/v1/user/login/ada").assert_ok();
    }
    cluster.client(leader).delete(&format!("/v1/sys/tokens/{id}")).assert_ok();
    for slot in 0..3 {
        cluster.client(slot).with_token(Some(&secret)).get("/v1/user/login/ada").assert_error(401);
    }
    let members = cluster.members();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|(_, voter)| *voter), "{members:?}");
    let verify = cluster.client(follower).get("/v1/sys/audit/verify");
    assert_eq!(verify.assert_ok()["verification"]["intact"], true);
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3, &["--enable-bulk-list"]);
    let leader = cluster.leader();
    let urls: Vec<_> = (0..3).map(|slot| cluster.client(slot)).collect();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let clients = urls.clone();
            let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let login = format!("w{writer}-{n}");
                    let client = &clients[n % clients.len()];
                    let request = client.request("POST", "/v1/user").json(&json!({"login": login}));
                    if let Ok(reply) = client.try_send(request) {
                        if reply.status == 200 {
                            acknowledged
                                .lock()
                                .unwrap()
                                .push((login, reply.body["token"].as_str().unwrap().to_string()));
                        }
                    }
                }
            })
        })
        .collect();
    poll("writes before the kill", Duration::from_secs(30), || {
        (acknowledged.lock().unwrap().len() >= 200).then_some(())
    });
    cluster.kill(leader);
    let before_kill = acknowledged.lock().unwrap().len();
    poll("writes acknowledged after the kill", Duration::from_secs(30), || {
        (acknowledged.lock().unwrap().len() >= before_kill + 200).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);

    let acknowledged = acknowledged.lock().unwrap().clone();
    let tokens: HashSet<_> = acknowledged.iter().map(|(_, token)| token.clone()).collect();
    assert_eq!(tokens.len(), acknowledged.len(), "no token was handed out twice");
    for slot in cluster.running() {
        // Each surviving node's own state, after catching up, holds every acknowledged user.
        let client = cluster.client(slot);
        client.get("/v1/sys/audit/verify").assert_ok();
        let listed = all_logins(&client);
        for (login, _) in &acknowledged {
            assert!(listed.contains(login), "node {slot} lost acknowledged user {login}");
        }
    }

    // The old leader comes back, catches up and serves the same data.
    cluster.restart(leader);
    let applied = cluster.local_status(new_leader)["appliedIndex"].as_u64().unwrap();
    poll("the old leader to catch up", Duration::from_secs(30), || {
        (cluster.local_status(leader)["appliedIndex"].as_u64()? >= applied).then_some(())
    });
    let listed = all_logins(&cluster.client(leader));
    assert!(acknowledged.iter().all(|(login, _)| listed.contains(login)), "the restarted node caught up");
}

/// Every login a node holds, listed from its own state (bulk listing is enabled).
fn all_logins(client: &support::Client) -> HashSet<String> {
    let mut logins = HashSet::new();
    let mut offset = 0;
    loop {
        let reply = client.send(client.request("POST", &format!("/v1/users?offset={offset}&limit=1000")));
        let rows = reply.assert_ok()["rows"].as_array().unwrap().clone();
        if rows.is_empty() {
            return logins;
        }
        offset += rows.len();
        logins.extend(rows.iter().filter_map(|row| row["data"]["login"].as_str().map(String::from)));
    }
}

#[test]
fn a_wiped_node_rejoins_under_a_new_id_through_a_snapshot() {
    let mut cluster = TestCluster::start(3, &["--snapshot-every=20"]);
    let leader = cluster.leader();
    let victim = (leader + 1) % 3;
    let old_id = cluster.node_id(victim);
    for n in 0..60 {
        cluster.client(n % 3).create_user(json!({"login": format!("before-{n}")}));
    }
    poll("the leader to purge its log", Duration::from_secs(30), || {
        (cluster.local_status(leader)["purgedIndex"].as_u64()? > 0).then_some(())
    });

    cluster.wipe(victim);
    cluster.restart(victim);
    assert_eq!(cluster.local_status(victim)["state"], "uninitialized");
    let without_replace = cluster.client(leader).post(
        "/v1/sys/cluster/learners",
        json!({"raftAddress": cluster.slots[victim].raft_address(), "apiAddress": cluster.slots[victim].url()}),
    );
    without_replace.assert_error(409);
    let new_id = cluster.join(victim, true);
    assert_ne!(new_id, old_id, "a wiped node never gets its old id back");

    let members = cluster.members();
    let ids: Vec<u64> = members.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 3, "{members:?}");
    assert!(!ids.contains(&old_id), "the old id was removed: {members:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no two members share an id");
    let status = cluster.local_status(victim);
    assert!(status["snapshotIndex"].as_u64().is_some_and(|i| i > 0), "caught up by snapshot: {status}");
    let reply = cluster.client(victim).get("/v1/user/login/before-7");
    reply.assert_ok();
    // The node's own copy is complete too.
    let applied = cluster.local_status(leader)["appliedIndex"].as_u64().unwrap();
    poll("the rejoined node to apply everything", Duration::from_secs(30), || {
        (cluster.local_status(victim)["appliedIndex"].as_u64()? >= applied).then_some(())
    });
    // The audit history came with the snapshot: the node's own trail verifies and holds
    // the events from before it was wiped.
    let verification =
        |slot: usize| cluster.client(slot).get("/v1/sys/audit/verify").assert_ok()["verification"].clone();
    let at_leader = verification(leader);
    assert_eq!(verification(victim), at_leader);
    assert_eq!(at_leader["intact"], true);
    // Both ends measured it.
    let metric = |slot: usize, series: &str| sample(&cluster.client(slot).metrics(), series);
    poll("the leader to count the snapshot it sent", Duration::from_secs(30), || {
        (metric(leader, "vaultd_raft_snapshot_send_duration_seconds_count")? >= 1.0).then_some(())
    });
    assert!(metric(leader, "vaultd_raft_snapshot_sent_bytes_total") > Some(0.0));
    assert_eq!(metric(victim, "vaultd_raft_snapshot_install_duration_seconds_count"), Some(1.0));
    let size = metric(victim, "vaultd_raft_snapshot_bytes");
    assert!(size > Some(0.0) && size <= metric(leader, "vaultd_raft_snapshot_sent_bytes_total"));
    let token = reply.body["token"].as_str().unwrap();
    let history = cluster.client(victim).get(&format!("/v1/audit/list/{token}"));
    let operations: Vec<&str> =
        history.assert_ok()["rows"].as_array().unwrap().iter().filter_map(|row| row["operation"].as_str()).collect();
    assert_eq!(operations, ["user-read", "user-create"]);
}

#[test]
fn erasures_reach_every_node_and_are_compacted_out_of_every_log() {
    let cluster = TestCluster::start(3, &["--erasure-compaction-secs=1"]);
    let token = cluster.client(0).create_user(json!({"login": "eve", "phone": "+447700900123"}));
    cluster.client(1).create_user(json!({"login": "kept"}));
    cluster.client(2).delete(&format!("/v1/user/token/{token}")).assert_ok();
    let leader = cluster.leader();
    let erased_at = cluster.local_status(leader)["appliedIndex"].as_u64().unwrap();
    for slot in 0..3 {
        let reply = cluster.client(slot).get(&format!("/v1/user/token/{token}"));
        assert_eq!(reply.assert_ok()["data"], json!({}), "node {slot}");
        cluster.client(slot).get("/v1/user/login/eve").assert_error(404);
    }
    for slot in 0..3 {
        let status = poll("the erasure to be compacted", Duration::from_secs(30), || {
            let status = cluster.local_status(slot);
            (status["erasures"]["pending"] == 0 && status["purgedIndex"].as_u64()? >= erased_at).then_some(status)
        });
        assert_eq!(status["erasures"]["compactionDeadlineMs"], 1000);
        poll("the compaction to be counted", Duration::from_secs(30), || {
            (sample(&cluster.client(slot).metrics(), "vaultd_erasure_compactions_total")? >= 1.0).then_some(())
        });
    }
    cluster.client(0).get("/v1/user/login/kept").assert_ok();
}

#[test]
fn an_isolated_node_refuses_writes_while_the_majority_serves_and_converges_after() {
    let Some(netns) = support::cluster::Netns::create() else {
        strongroom_testkit::skipped(
            "an_isolated_node_refuses_writes_while_the_majority_serves_and_converges_after",
            "network namespaces need root and iproute2 (CI runs this test as root)",
        );
        return;
    };
    let outside = || (netns.host_ip.clone(), None);
    let inside = (netns.inner_ip.clone(), Some(netns.name.clone()));
    // Plain HTTP on addresses other than loopback, as the namespace's curl speaks it.
    let cluster = TestCluster::start_at(&[outside(), outside(), inside], &["--enable-bulk-list", "--tls-disable"]);
    let isolated = 2;
    cluster.client(0).create_user(json!({"login": "before"}));
    let applied_before = cluster.local_status(isolated)["appliedIndex"].as_u64().unwrap();
    assert!(applied_before > 0);

    netns.set_connected(false);
    // The majority elects a leader if it lost one, and keeps taking writes.
    poll("the majority to take writes", Duration::from_secs(30), || {
        let client = cluster.client(0);
        let reply = client.try_send(client.request("POST", "/v1/user").json(&json!({"login": "during-0"}))).ok()?;
        (reply.status == 200).then_some(())
    });
    for n in 1..20 {
        cluster.client(n % 2).create_user(json!({"login": format!("during-{n}")}));
    }
    // The cut-off node refuses: no write is acknowledged without a quorum.
    let api = cluster.slots[isolated].url();
    let (status, body) = netns.curl("POST", &format!("{api}/v1/user"), Some(r#"{"login":"split-brain"}"#));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "error");
    let (status, _) = netns.curl("GET", &format!("{api}/v1/user/login/before"), None);
    assert_eq!(status, 503, "reads need the quorum too (they are audited through the log)");

    netns.set_connected(true);
    let leader = cluster.leader();
    let applied = cluster.local_status(leader)["appliedIndex"].as_u64().unwrap();
    poll("the isolated node to converge", Duration::from_secs(30), || {
        (cluster.local_status(isolated)["appliedIndex"].as_u64()? >= applied).then_some(())
    });
    let logins = all_logins(&cluster.client(isolated));
    assert!((0..20).all(|n| logins.contains(&format!("during-{n}"))), "{logins:?}");
    assert!(!logins.contains("split-brain"), "the refused write never appears");
    for slot in 0..2 {
        cluster.client(slot).get("/v1/user/login/split-brain").assert_error(404);
    }
}

#[test]
fn the_peer_port_speaks_mutual_tls_when_certificates_are_configured() {
    let certs = tempfile::tempdir().unwrap();
    let flags = support::cluster::peer_tls_flags(certs.path(), "cluster");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = TestCluster::start(3, &flags);
    let token = cluster.client(1).create_user(json!({"login": "tls"}));
    for slot in 0..3 {
        assert_eq!(cluster.client(slot).get("/v1/user/login/tls").assert_ok()["token"], token.as_str());
    }
    assert!(cluster.members().len() == 3);

    // Neither plain HTTP nor a certificate from another CA gets through to Raft.
    let peer = cluster.slots[0].raft_address();
    let plain = reqwest::blocking::Client::new().post(format!("http://{peer}/raft/vote")).send();
    assert!(plain.is_err(), "plain HTTP reached the TLS peer port");
    let stranger = support::cluster::peer_tls_flags(certs.path(), "stranger");
    let read = |flag: &str| std::fs::read(flag.split_once('=').unwrap().1).unwrap();
    let identity = reqwest::Identity::from_pem(&[read(&stranger[0]), read(&stranger[1])].concat()).unwrap();
    let stranger = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&read(flags[2])).unwrap())
        .identity(identity)
        .build()
        .unwrap();
    let answer = stranger.post(format!("https://{peer}/raft/vote")).send();
    assert!(answer.is_err(), "a certificate from another CA was accepted: {answer:?}");
}

#[test]
fn the_cluster_admin_api_checks_scope_and_input() {
    let mut cluster = TestCluster::start(1, &[]);
    let admin = cluster.client(0);
    let (_, reader) = {
        let reply = admin.post("/v1/sys/tokens", json!({"name": "reader", "scopes": ["users:read"]}));
        (reply.body["id"].clone(), reply.body["token"].as_str().unwrap().to_string())
    };
    admin.with_token(Some(&reader)).get("/v1/sys/cluster").assert_error(403);
    admin.with_token(None).get("/v1/sys/cluster").assert_error(401);
    admin.post("/v1/sys/cluster/init", json!({})).assert_error(409);
    admin.post("/v1/sys/cluster/learners", json!({"raftAddress": "nowhere"})).assert_error(400);
    admin.post("/v1/sys/cluster/learners", json!({"raftAddress": "x", "apiAddress": "http://x"})).assert_error(400);
    admin.post("/v1/sys/cluster/members/99/promote", json!({})).assert_error(404);
    admin.post("/v1/sys/cluster/members/1/promote", json!({})).assert_error(409);
    admin.post("/v1/sys/cluster/members/abc/promote", json!({})).assert_error(400);
    admin.delete("/v1/sys/cluster/members/1").assert_error(409);
    admin.delete("/v1/sys/cluster/members/7").assert_error(404);
    // An address where no vaultd listens cannot join; the id it was about to get is burnt.
    let reply = admin
        .post("/v1/sys/cluster/learners", json!({"raftAddress": "127.0.0.1:1", "apiAddress": "http://127.0.0.1:2"}));
    reply.assert_error(409);

    // An uninitialised node answers status and says so; data routes are unavailable.
    let fresh = cluster.add_slot("127.0.0.1", None);
    let status = cluster.client(fresh).get("/v1/status");
    assert_eq!(status.assert_ok()["node"]["state"], "uninitialized");
    let not_ready = cluster.client(fresh).get("/v1/status?ready=member");
    not_ready.assert_error(503);
    assert_eq!(not_ready.body["node"]["state"], "uninitialized");
    cluster.client(fresh).get("/v1/user/login/anyone").assert_error(503);
    let id = cluster.join(fresh, false);
    cluster.client(fresh).get("/v1/status?ready=member").assert_ok();
    assert!(id >= 3, "ids are never reused, even ones a failed join burnt: {id}");
    let status = cluster.client(fresh).get("/v1/status");
    assert_eq!(status.assert_ok()["node"]["id"], id);
    assert_eq!(cluster.members(), vec![(1, true), (id, true)]);
}

#[test]
fn a_retired_root_token_is_refused_by_every_node_and_after_a_restart() {
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = (0..3).find(|&slot| slot != leader).unwrap();
    let root = cluster.client(follower);
    let admin = root.post("/v1/sys/tokens", json!({"name": "admin", "scopes": support::EVERY_SCOPE}));
    let admin = root.with_token(admin.assert_ok()["token"].as_str());
    root.post("/v1/sys/root-token/retire", json!({})).assert_ok();
    for slot in 0..3 {
        poll(&format!("node {slot} to refuse the root token"), Duration::from_secs(15), || {
            (cluster.client(slot).get("/v1/sys/tokens").status == 401).then_some(())
        });
    }
    cluster.kill(leader);
    cluster.restart(leader);
    cluster.client(leader).get("/v1/sys/tokens").assert_error(401);
    admin.get("/v1/sys/tokens").assert_ok();
}

#[test]
fn a_subject_token_learns_nothing_of_identifiers_it_does_not_hold() {
    let mut cluster = TestCluster::start(3, &[]);
    let root = cluster.client(0);
    let ann = root.create_user(json!({"login": "ann", "email": "ann@example.com"}));
    root.create_user(json!({"login": "bob", "email": "bob@example.com"}));
    let own = support::subject_client(&root, &ann);
    let survivor = 2;
    let own_there = own.at(&cluster.slots[survivor].url());
    poll("node 2 to hold both subjects and the token", Duration::from_secs(15), || {
        (cluster.client(survivor).get("/v1/user/login/bob").status == 200
            && own_there.get("/v1/user/login/ann").status == 200)
            .then_some(())
    });
    // Cut off from the others, the node cannot confirm it is up to date. Whether another
    // subject holds an identifier, or nobody does, the subject token gets the same answer.
    cluster.kill(0);
    cluster.kill(1);
    let taken = own_there.get("/v1/user/email/bob@example.com");
    let free = own_there.get("/v1/user/email/nobody@example.com");
    assert_eq!((taken.status, &taken.body), (free.status, &free.body));
}

/// Sends `head` (a request line and headers, and no body) to the peer port and returns the
/// answer's status code.
fn peer_status(peer: &str, head: &str) -> u16 {
    let mut stream = TcpStream::connect(peer).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n") && stream.read(&mut byte).unwrap() == 1 {
        answer.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&answer).into_owned();
    line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status line: {line:?}"))
}

#[test]
fn the_peer_port_authenticates_before_reading_a_body_and_bounds_and_never_decompresses_it() {
    let cluster = TestCluster::start(1, &[]);
    let peer = cluster.slots[0].raft_address();
    let secret = cluster.peer_secret();
    // Without the secret, a body announced as huge is never waited for, on any path.
    let huge = "Content-Length: 300000000\r\n\r\n";
    assert_eq!(peer_status(&peer, &format!("POST /raft/vote HTTP/1.1\r\nHost: p\r\n{huge}")), 401);
    assert_eq!(peer_status(&peer, &format!("POST /raft/nowhere HTTP/1.1\r\nHost: p\r\n{huge}")), 401);
    let wrong = "X-Strongroom-Peer: not-the-secret-at-all\r\n";
    assert_eq!(peer_status(&peer, &format!("POST /raft/append HTTP/1.1\r\nHost: p\r\n{wrong}{huge}")), 401);
    // With it, a control message may not be large, and no body may be compressed.
    let with_secret = format!("POST /raft/vote HTTP/1.1\r\nHost: p\r\nX-Strongroom-Peer: {secret}\r\n");
    assert_eq!(peer_status(&peer, &format!("{with_secret}Content-Length: 1000000\r\n\r\n")), 413);
    assert_eq!(peer_status(&peer, &format!("{with_secret}Content-Encoding: gzip\r\nContent-Length: 10\r\n\r\n")), 415);
    // An adoption proof for another id, or none, admits nothing.
    let adopt = "POST /raft/adopt HTTP/1.1\r\nHost: p\r\nX-Strongroom-Target: 7\r\n";
    assert_eq!(peer_status(&peer, &format!("{adopt}X-Strongroom-Adopt-Proof: 00\r\n{huge}")), 401);
    assert_eq!(peer_status(&peer, &format!("{adopt}X-Strongroom-Peer: {secret}\r\n{huge}")), 401);
    // The node still serves its members.
    cluster.client(0).create_user(json!({"login": "after-the-probes"}));
}

/// Kills the process it holds when dropped (a test that fails must not leave it running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_peer_port_without_tls_must_be_allowed_explicitly() {
    let (hsm, _scratch, data_dir) = support::serve_scratch();
    let flags = ["--peer-listen=127.0.0.1:0".to_string(), "--hsm-create-key".to_string()];
    let mut command = support::serve_command(&hsm, &data_dir, &flags);
    command.env("VAULTD_PEER_SECRET", "a-peer-secret-of-enough-length").stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = Reaped(command.spawn().unwrap());
    let status = poll("vaultd to refuse to start", Duration::from_secs(30), || child.0.try_wait().unwrap());
    assert!(!status.success());
    let mut stderr = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("--peer-plain-http") && stderr.contains("mutual TLS"), "{stderr}");

    // Allowed, it starts.
    let allowed = [flags.to_vec(), vec!["--peer-plain-http".to_string()]].concat();
    let mut command = support::serve_command(&hsm, &data_dir, &allowed);
    command.env("VAULTD_PEER_SECRET", "a-peer-secret-of-enough-length");
    support::Vault::spawn_command(command).client().get("/v1/status").assert_ok();
}

#[test]
fn adding_a_learner_sends_no_secret_and_passes_on_nothing_the_address_answers() {
    let cluster = TestCluster::start(1, &[]);
    let secret = cluster.peer_secret();
    let impostor = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = impostor.local_addr().unwrap().to_string();
    let heard = std::thread::spawn(move || {
        let (mut stream, _) = impostor.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        let body = "IMPOSTOR-SAYS: call me at evil.example";
        let answer = format!("HTTP/1.1 500 Oops\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        stream.write_all(answer.as_bytes()).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    let reply = cluster
        .client(0)
        .post("/v1/sys/cluster/learners", json!({"raftAddress": address, "apiAddress": "http://127.0.0.1:9"}));
    reply.assert_error(409);
    let message = reply.body["message"].as_str().unwrap();
    assert!(!message.contains("IMPOSTOR"), "the remote answer was passed on: {message}");
    let request = heard.join().unwrap();
    assert!(request.starts_with("POST /raft/adopt "), "{request}");
    assert!(!request.contains(&secret), "the peer secret went to a non-member: {request}");
    assert!(request.to_lowercase().contains("x-strongroom-adopt-proof:"), "{request}");
    assert_eq!(cluster.members(), vec![(1, true)]);
}

#[test]
fn a_node_that_cannot_prove_it_holds_the_peer_secret_is_not_added_and_never_hears_it() {
    // Local test clusters run their peer ports in plain HTTP, where this matters most.
    let cluster = TestCluster::start(1, &[]);
    let secret = cluster.peer_secret();
    let impostor = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = impostor.local_addr().unwrap().to_string();
    // It accepts every adoption with a well-formed answer (postcard `Ok` of 64 hex
    // digits) and keeps what every request carried.
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let heard = std::sync::Arc::clone(&heard);
        std::thread::spawn(move || {
            for stream in impostor.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                heard.lock().unwrap().push(String::from_utf8_lossy(&request).into_owned());
                let mut body = vec![0u8, 64];
                body.extend_from_slice(&[b'0'; 64]);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            }
        });
    }
    let reply = cluster
        .client(0)
        .post("/v1/sys/cluster/learners", json!({"raftAddress": address, "apiAddress": "http://127.0.0.1:9"}));
    reply.assert_error(409);
    assert!(reply.body["message"].as_str().unwrap().contains("did not prove"), "{}", reply.body);
    assert_eq!(cluster.members(), vec![(1, true)]);
    // A member would now hear appends; the impostor heard the adoption only, without the secret.
    cluster.client(0).create_user(json!({"login": "after-the-impostor"}));
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(heard[0].starts_with("POST /raft/adopt "), "{heard:?}");
    assert!(!heard[0].contains(&secret), "the peer secret went to a non-member: {heard:?}");
}

#[test]
fn anonymous_capabilities_work_at_once_on_every_node_and_misses_write_nothing() {
    let cluster = TestCluster::start(3, &[]);
    for slot in 0..3 {
        let (writer, reader) = (cluster.client(slot), cluster.client((slot + 1) % 3).with_token(None));
        let login = format!("capable-{slot}");
        writer.create_user(json!({"login": login}));
        // Made through one node, the share and the exptoken work on the next one at once:
        // a node that does not know them yet catches up before it answers 404.
        let shared = writer.post(&format!("/v1/sharedrecord/login/{login}"), json!({"fields": "login"}));
        let record = shared.assert_ok()["record"].as_str().unwrap().to_string();
        assert_eq!(reader.get(&format!("/v1/get/{record}")).assert_ok()["data"]["login"], login.as_str());
        let started = writer.post(&format!("/v1/exp/start/login/{login}"), json!({"expiration": "30d"}));
        let exptoken = started.assert_ok()["exptoken"].as_str().unwrap().to_string();
        reader.get(&format!("/v1/exp/retain/{exptoken}")).assert_ok();
    }
    let events = support::audit_total(&cluster.client(0));
    for slot in 0..3 {
        let anonymous = cluster.client(slot).with_token(None);
        let unknown = uuid::Uuid::new_v4();
        anonymous.get(&format!("/v1/get/{unknown}")).assert_error(404);
        anonymous.get(&format!("/v1/exp/retain/{unknown}")).assert_error(404);
        anonymous.get(&format!("/v1/exp/delete/{unknown}")).assert_error(404);
    }
    assert_eq!(support::audit_total(&cluster.client(0)), events, "a miss was committed");
}
