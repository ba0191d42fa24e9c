//! Backups and restores against real `vaultd serve` processes (SoftHSM): `vaultd backup`
//! into a local directory, `list`, `verify`, `prune`; `vaultd restore` applying the
//! erasure ledger so that nobody erased after the backup comes back; and every damaged,
//! cut-short or foreign backup refused before anything is written.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use strongroom_testkit::s3::S3Server;
use strongroom_testkit::SoftHsm;
use support::cluster::TestCluster;
use support::{admin_rows, occurs_in_files, operations, profile, serve_scratch, Client, Vault, ROOT_TOKEN};

/// Runs a `vaultd` command with the SoftHSM token's environment: exit code, the JSON it
/// printed (or the raw output), stderr.
fn run(hsm: &SoftHsm, args: &[&str]) -> (i32, Value, String) {
    run_in(hsm_env(hsm), args)
}

fn hsm_env(hsm: &SoftHsm) -> Vec<(String, String)> {
    hsm.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn run_in(env: Vec<(String, String)>, args: &[&str]) -> (i32, Value, String) {
    let output = support::vaultd()
        .args(args)
        .envs(env)
        .env_remove("VAULTD_VAULT_URL")
        .env_remove("VAULTD_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let printed = serde_json::from_str(stdout.trim()).unwrap_or(Value::String(stdout));
    (output.status.code().unwrap_or(-1), printed, stderr)
}

fn ok(result: (i32, Value, String)) -> Value {
    let (code, printed, stderr) = result;
    assert_eq!(code, 0, "printed {printed}\nstderr {stderr}");
    printed
}

fn refused(result: (i32, Value, String), says: &str) {
    let (code, printed, stderr) = result;
    assert_ne!(code, 0, "printed {printed}");
    assert!(stderr.contains(says), "expected {says:?} in: {stderr}");
}

/// `vaultd backup`: its report, which it also writes to `--summary-file` (on one line).
fn take(hsm: &SoftHsm, vault: &Vault, token_file: &Path, to: &Path) -> Value {
    let summary = to.with_extension("summary.json");
    let (to, token_file) = (to.to_str().unwrap(), token_file.to_str().unwrap());
    let args = ["backup", "--vault", &vault.url, "--token-file", token_file, "--to", to, "--summary-file"];
    let printed = ok(run(hsm, &[&args[..], &[summary.to_str().unwrap()]].concat()));
    let written = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), printed);
    printed
}

fn restore(hsm: &SoftHsm, from: &Path, data_dir: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["restore", "--from", from.to_str().unwrap(), "--data-dir", data_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(hsm, &args)
}

fn list(hsm: &SoftHsm, from: &Path) -> Vec<String> {
    let (code, printed, stderr) = run(hsm, &["backup", "list", "--from", from.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    match printed {
        Value::String(text) => text.lines().map(String::from).collect(),
        one => vec![one.to_string()],
    }
}

struct Source {
    hsm: SoftHsm,
    _scratch: tempfile::TempDir,
    vault: Vault,
    token_file: PathBuf,
    backups: PathBuf,
}

fn source() -> Source {
    let (hsm, scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let token_file = data_dir.with_extension("root-token");
    let backups = scratch.path().join("backups");
    Source { hsm, vault, token_file, backups, _scratch: scratch }
}

#[test]
fn a_restore_brings_back_what_was_backed_up_and_no_one_erased_after_it() {
    let source = source();
    let client = source.vault.client();
    let alice = client.create_user(json!({"login": "alice", "email": "alice@example.com", "phone": "+447700900123"}));
    let bob = client.create_user(json!({"login": "bob", "name": "Bob Backupson"}));
    let carol = client.create_user(json!({"login": "carol"}));
    client.post(&format!("/v1/userapp/token/{carol}/shop"), json!({"size": "M"})).assert_ok();
    client.post(&format!("/v1/userapp/token/{carol}/crm"), json!({"tier": "gold"})).assert_ok();
    let (leaked_id, leaked) = support::access_token(&client, "leaked", &["users:read"]);
    // A visitor's consent before sign-up keeps the email, sealed, beside the agreement.
    client.post("/v1/lbasis/cookies", json!({})).assert_ok();
    client.post("/v1/agreement/cookies/email/visitor@example.com", json!({})).assert_ok();

    let taken = take(&source.hsm, &source.vault, &source.token_file, &source.backups);
    assert_eq!(taken["subjects"], 3, "{taken}");
    let id = taken["backup"].as_str().unwrap().to_string();
    assert_eq!(list(&source.hsm, &source.backups), std::slice::from_ref(&id));
    for plaintext in ["alice@example.com", "Bob Backupson", "+447700900123", "gold"] {
        assert_eq!(occurs_in_files(&source.backups, plaintext), None, "{plaintext} is in the backup");
    }
    let verified = ok(run(&source.hsm, &["backup", "verify", "--from", source.backups.to_str().unwrap()]));
    assert_eq!(verified["backup"], id.as_str());
    assert_eq!(verified["subjects"], 3, "{verified}");

    // After the backup: bob forgets himself, retention drops alice's phone, carol's crm
    // record is deleted; dave signs up. The ledger ships without another backup.
    client.delete(&format!("/v1/user/token/{bob}")).assert_ok();
    let rule =
        json!({"name": "drop-phone", "match": {"hasFields": ["phone"]}, "action": "dropFields", "fields": ["phone"]});
    let run_report = client.post("/v1/sys/retention/run", json!({"policy": "shop/phones", "spec": {"rules": [rule]}}));
    assert_eq!(run_report.assert_ok()["changed"], 1, "{}", run_report.body);
    client.delete(&format!("/v1/userapp/token/{carol}/crm")).assert_ok();
    client.delete(&format!("/v1/sys/tokens/{leaked_id}")).assert_ok();
    assert_eq!(client.delete("/v1/user/email/visitor@example.com").assert_ok()["token"], Value::Null);
    let dave = client.create_user(json!({"login": "dave"}));
    let ledger = client.get("/v1/sys/erasures").assert_ok().clone();
    let kinds: Vec<&str> = ledger["erasures"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["forget", "dropFields", "deleteApp", "revokeToken", "forgetIdentifier"], "{ledger}");
    assert_eq!(ledger["erasures"][3]["accessToken"], leaked_id.as_str(), "{ledger}");
    let entry = ledger["erasures"][4]["entry"].as_str().unwrap();
    assert!(entry.len() == 66 && ledger["erasures"][4]["token"].is_null(), "a blind-index entry only: {ledger}");
    let shipped = ok(run(
        &source.hsm,
        &[
            "backup",
            "ship-ledger",
            "--vault",
            &source.vault.url,
            "--token-file",
            source.token_file.to_str().unwrap(),
            "--to",
            source.backups.to_str().unwrap(),
        ],
    ));
    assert_eq!(shipped["ledgerEntriesShipped"], 5, "{shipped}");

    // The restore: a new vault from the old backup, with the three erasures applied.
    let restored_dir = source.backups.with_file_name("restored");
    let report = ok(restore(&source.hsm, &source.backups, &restored_dir, &[]));
    assert_eq!(report["erasuresApplied"], 5, "{report}");
    assert_eq!(report["erasuresNotApplicable"], 0, "{report}");
    assert_ne!(report["clusterId"], report["sourceClusterId"], "{report}");
    let restored = Vault::hsm(&source.hsm, &restored_dir, &[]);
    let client = restored.client();
    assert_eq!(profile(&client, &alice), json!({"login": "alice", "email": "alice@example.com"}));
    // Bob resolves to the empty record of a forgotten subject, as on the source.
    assert_eq!(profile(&client, &bob), json!({}));
    client.get("/v1/user/login/bob").assert_error(404);
    client.get(&format!("/v1/user/token/{dave}")).assert_error(404);
    client.get(&format!("/v1/userapp/token/{carol}/shop")).assert_ok();
    client.get(&format!("/v1/userapp/token/{carol}/crm")).assert_error(404);
    let verify = client.get("/v1/sys/audit/verify");
    assert_eq!(verify.assert_ok()["verification"]["intact"], true, "{}", verify.body);
    let rows = admin_rows(&client);
    let replayed = operations(&rows).iter().filter(|op| **op == "ledger-replay").count();
    assert_eq!(replayed, 5, "{}", restored.log());
    // The token revoked after the backup stays revoked.
    client.with_token(Some(&leaked)).get(&format!("/v1/user/token/{alice}")).assert_error(401);
    // The restored vault keeps its own ledger, under its own id, and takes writes.
    let own = client.get("/v1/sys/erasures").assert_ok().clone();
    assert_eq!(own["clusterId"], report["clusterId"], "{own}");
    client.create_user(json!({"login": "erin"}));
}

#[test]
fn damaged_cut_short_foreign_and_newer_backups_are_refused_before_anything_is_written() {
    let source = source();
    let client: Client = source.vault.client();
    client.create_user(json!({"login": "alice"}));
    let id =
        take(&source.hsm, &source.vault, &source.token_file, &source.backups)["backup"].as_str().unwrap().to_string();
    let folder = source.backups.join("backups").join(&id);
    let target = source.backups.with_file_name("target");
    let pristine: Vec<(PathBuf, Vec<u8>)> = ["state.bin", "audit.bin", "manifest.json"]
        .iter()
        .map(|n| (folder.join(n), std::fs::read(folder.join(n)).unwrap()))
        .collect();
    let put_back = || pristine.iter().for_each(|(path, bytes)| std::fs::write(path, bytes).unwrap());

    // One flipped byte in the state; a truncated trail.
    let mut state = pristine[0].1.clone();
    let middle = state.len() / 2;
    state[middle] ^= 0x40;
    std::fs::write(&pristine[0].0, &state).unwrap();
    refused(restore(&source.hsm, &source.backups, &target, &[]), "state.bin");
    assert!(!target.exists(), "nothing is written for a damaged backup");
    put_back();
    std::fs::write(&pristine[1].0, &pristine[1].1[..pristine[1].1.len() - 7]).unwrap();
    refused(restore(&source.hsm, &source.backups, &target, &[]), "audit.bin");
    refused(run(&source.hsm, &["backup", "verify", "--from", source.backups.to_str().unwrap()]), "audit.bin");
    put_back();

    // A newer data format.
    let mut manifest: Value = serde_json::from_slice(&pristine[2].1).unwrap();
    manifest["format"] = json!(999);
    std::fs::write(&pristine[2].0, serde_json::to_vec(&manifest).unwrap()).unwrap();
    refused(restore(&source.hsm, &source.backups, &target, &[]), "newer vaultd");
    put_back();

    // Another HSM's KEK.
    let other = SoftHsm::new();
    let created = Vault::hsm(&other, &source.backups.with_file_name("other-vault"), &["--hsm-create-key"]);
    drop(created);
    refused(restore(&other, &source.backups, &target, &[]), "cannot unwrap");
    assert!(!target.exists());

    // A backup without its manifest (cut short) is not listed, and not restored.
    std::fs::remove_file(&pristine[2].0).unwrap();
    assert!(list(&source.hsm, &source.backups).is_empty());
    refused(restore(&source.hsm, &source.backups, &target, &[]), "no complete backup");
    put_back();
    assert_eq!(list(&source.hsm, &source.backups), [id]);
    ok(restore(&source.hsm, &source.backups, &target, &[]));
}

#[test]
fn a_restore_run_again_after_an_interruption_or_a_success_ends_with_one_whole_vault() {
    let source = source();
    let alice = source.vault.client().create_user(json!({"login": "alice", "email": "alice@example.com"}));
    let id =
        take(&source.hsm, &source.vault, &source.token_file, &source.backups)["backup"].as_str().unwrap().to_string();
    let target = source.backups.with_file_name("volume");

    // A new volume's root holds lost+found; a restore stopped half-way left its staging.
    std::fs::create_dir_all(target.join("lost+found")).unwrap();
    std::fs::create_dir_all(target.join(".restoring/db")).unwrap();
    std::fs::write(target.join(".restoring/db/conf"), b"half-written").unwrap();
    let report = ok(restore(&source.hsm, &source.backups, &target, &[]));
    assert_eq!(report["backup"], id.as_str(), "{report}");
    assert!(!target.join(".restoring").exists());

    // Stopped while moving into place: part of the vault and its report still staged.
    let staged = target.join(".restoring");
    std::fs::create_dir(&staged).unwrap();
    let vault_entries: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != "lost+found" && name != ".restoring")
        .collect();
    assert!(vault_entries.len() > 2, "{vault_entries:?}");
    let one_part = vault_entries.iter().find(|name| *name != "restore-report.json").unwrap();
    for name in ["restore-report.json".as_ref(), one_part.as_os_str()] {
        std::fs::rename(target.join(name), staged.join(name)).unwrap();
    }
    // Run again: the move is finished, and the same report comes back (a retried Job).
    assert_eq!(ok(restore(&source.hsm, &source.backups, &target, &[])), report);
    assert_eq!(ok(restore(&source.hsm, &source.backups, &target, &["--backup", &id])), report);
    refused(restore(&source.hsm, &source.backups, &target, &["--backup", "20200101T000000Z-0"]), "already holds");
    // The same backup, copied elsewhere, is another source.
    let copy = source.backups.with_file_name("copied-backups");
    std::fs::create_dir_all(copy.join("backups")).unwrap();
    std::fs::rename(source.backups.join("backups"), copy.join("backups")).unwrap();
    refused(restore(&source.hsm, &copy, &target, &[]), "already holds");

    // Once served, the directory is the vault's own: a restore over it is refused.
    let restored = Vault::hsm(&source.hsm, &target, &[]);
    assert_eq!(profile(&restored.client(), &alice)["email"], "alice@example.com");
    assert!(!target.join("restore-report.json").exists());
    drop(restored);
    refused(restore(&source.hsm, &copy, &target, &[]), "is not empty");
}

#[test]
fn a_cluster_backed_up_under_write_load_restores_into_a_new_three_node_cluster() {
    let mut cluster = TestCluster::start(3, &[]);
    let env = cluster.shared().hsm_env.clone();
    let token_file = cluster.shared().token_file.clone();
    let backups = token_file.with_file_name("backups");

    // Writes go on through one node while another takes the backup.
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, Value)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, acknowledged, stop) = (cluster.slots[0].url(), Arc::clone(&acknowledged), Arc::clone(&stop));
        std::thread::spawn(move || {
            let client = Client::new(&url, ROOT_TOKEN);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let profile = json!({"login": format!("w{n}"), "note": format!("written {n}")});
                let reply = client.post("/v1/user", profile.clone());
                if reply.status == 200 {
                    acknowledged.lock().unwrap().push((reply.body["token"].as_str().unwrap().to_string(), profile));
                }
                n += 1;
            }
        })
    };
    support::cluster::poll("writes under way", std::time::Duration::from_secs(30), || {
        (acknowledged.lock().unwrap().len() >= 20).then_some(())
    });
    let before: Vec<(String, Value)> = acknowledged.lock().unwrap().clone();
    let taken = ok(run_in(
        env.clone(),
        &[
            "backup",
            "--vault",
            &cluster.slots[1].url(),
            "--token-file",
            token_file.to_str().unwrap(),
            "--to",
            backups.to_str().unwrap(),
        ],
    ));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let subjects = taken["subjects"].as_u64().unwrap();
    assert!(subjects >= before.len() as u64, "{taken}");
    assert!(subjects <= acknowledged.lock().unwrap().len() as u64 + 1, "{taken}");

    // The old cluster goes; the restored node is the new one's first member.
    for slot in 0..3 {
        cluster.kill(slot);
    }
    let first = cluster.add_prepared_slot(|data_dir| {
        let report = ok(run_in(
            env.clone(),
            &["restore", "--from", backups.to_str().unwrap(), "--data-dir", data_dir.to_str().unwrap()],
        ));
        assert_eq!(report["subjects"].as_u64(), Some(subjects), "{report}");
    });
    let status = cluster.local_status(first);
    assert_eq!(status["nodeId"], 1, "{status}");
    for _ in 0..2 {
        let slot = cluster.add_slot("127.0.0.1", None);
        cluster.join(slot, false);
    }
    assert_eq!(cluster.members().len(), 3);
    for slot in cluster.running() {
        let client = cluster.client(slot);
        for (token, written) in &before {
            assert_eq!(&profile(&client, token), written, "node {slot}, subject {token}");
        }
        let verify = client.get("/v1/sys/audit/verify");
        assert_eq!(verify.assert_ok()["verification"]["intact"], true, "{}", verify.body);
    }
    // The new cluster takes writes through any member: they know the first one's
    // addresses, which it wrote into the membership once it led.
    cluster.client(cluster.running()[2]).create_user(json!({"login": "after-restore"}));
    let log = cluster.slots[first].vault.as_ref().unwrap().log();
    assert!(log.contains("wrote this node's addresses into the membership"), "{log}");
}

#[test]
fn backups_go_to_an_s3_bucket_and_restore_from_it() {
    let Some(s3) = S3Server::start("backup to S3", "strongroom-backups") else { return };
    let source = source();
    let client = source.vault.client();
    let alice = client.create_user(json!({"login": "alice", "email": "alice@example.com"}));
    let bob = client.create_user(json!({"login": "bob"}));
    let env = [hsm_env(&source.hsm), s3.env()].concat();
    let bucket = "s3://strongroom-backups/shop/customers";
    let vault_args = ["--vault", source.vault.url.as_str(), "--token-file", source.token_file.to_str().unwrap()];
    let first = ok(run_in(env.clone(), &[&["backup"][..], &vault_args, &["--to", bucket]].concat()));
    client.delete(&format!("/v1/user/token/{bob}")).assert_ok();
    let second = ok(run_in(env.clone(), &[&["backup"][..], &vault_args, &["--to", bucket]].concat()));
    assert_eq!(second["ledgerEntriesShipped"], 1, "{second}");
    let (code, listed, stderr) = run_in(env.clone(), &["backup", "list", "--from", bucket]);
    assert_eq!(code, 0, "{stderr}");
    let ids: Vec<&str> = listed.as_str().unwrap().lines().collect();
    assert_eq!(ids, [first["backup"].as_str().unwrap(), second["backup"].as_str().unwrap()]);
    let verified = ok(run_in(env.clone(), &["backup", "verify", "--from", bucket, "--backup", ids[0]]));
    assert_eq!(verified["keysUnwrapped"], 3, "the index key and both subjects' keys: {verified}");

    // The older backup still has bob; the shipped ledger keeps him forgotten.
    let restored_dir = source.backups.with_file_name("restored-from-s3");
    let dir = restored_dir.to_str().unwrap();
    let report = ok(run_in(env.clone(), &["restore", "--from", bucket, "--backup", ids[0], "--data-dir", dir]));
    assert_eq!(report["erasuresApplied"], 1, "{report}");
    let restored = Vault::hsm(&source.hsm, &restored_dir, &[]);
    assert_eq!(profile(&restored.client(), &alice)["email"], "alice@example.com");
    restored.client().get("/v1/user/login/bob").assert_error(404);

    // Pruning keeps the newest.
    let pruned = ok(run_in(env.clone(), &["backup", "prune", "--from", bucket, "--keep-last", "1"]));
    assert_eq!(pruned["deleted"], json!([ids[0]]), "{pruned}");
    let (_, listed, _) = run_in(env, &["backup", "list", "--from", bucket]);
    assert_eq!(listed.as_str().unwrap().trim(), ids[1]);
}

/// A proxy to `target` for one connection that passes the request on whole but only the
/// first `forward` bytes of the answer, then holds the connection: whoever reads through
/// it is stuck mid-answer, for as long as the test likes.
fn stalling_proxy(target: &str, forward: usize) -> String {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let target = target.trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(&target).unwrap();
        let (mut client_in, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut client_in, &mut server_out));
        let mut passed = 0;
        let mut buffer = vec![0; 8192];
        while passed < forward {
            let read = server.read(&mut buffer[..(forward - passed).min(8192)]).unwrap();
            if read == 0 {
                return;
            }
            client.write_all(&buffer[..read]).unwrap();
            passed += read;
        }
        // Held until the reader goes away.
        let _ = client.read(&mut buffer);
    });
    format!("http://{address}")
}

/// `count` subjects, each with a filler of `bytes` bytes.
fn fill(client: &Client, count: usize, bytes: usize) {
    let filler = "x".repeat(bytes);
    for n in 0..count {
        client.create_user(json!({"login": format!("user{n}"), "filler": filler}));
    }
}

/// `vaultd backup` through [`stalling_proxy`]: it gets the manifest and part of the state,
/// starts its upload (returned then) and waits for the rest as long as it lives.
fn stalled_backup(source: &Source) -> std::process::Child {
    let stalled = stalling_proxy(&source.vault.url, 100_000);
    let backup = support::vaultd()
        .args(["backup", "--vault", &stalled, "--token-file", source.token_file.to_str().unwrap(), "--to"])
        .arg(&source.backups)
        .envs(&source.hsm.env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let folder = source.backups.join("backups");
    support::cluster::poll("the upload to begin", std::time::Duration::from_secs(30), || {
        let begun = std::fs::read_dir(&folder).ok()?.flatten().any(|entry| entry.path().is_dir());
        begun.then_some(())
    });
    backup
}

#[test]
fn a_backup_killed_mid_upload_is_never_listed_or_restored() {
    let source = source();
    fill(&source.vault.client(), 100, 4000);
    let mut backup = stalled_backup(&source);
    backup.kill().unwrap();
    backup.wait().unwrap();
    assert!(list(&source.hsm, &source.backups).is_empty(), "a cut-short backup is listed");
    let target = source.backups.with_file_name("target");
    refused(restore(&source.hsm, &source.backups, &target, &[]), "no complete backup");
    assert!(!target.exists());
    // The vault is unharmed, and the next backup is complete.
    take(&source.hsm, &source.vault, &source.token_file, &source.backups);
    assert_eq!(list(&source.hsm, &source.backups).len(), 1);
}

#[test]
fn ship_ledger_every_keeps_the_destination_current_without_backups() {
    let source = source();
    let client = source.vault.client();
    let ann = client.create_user(json!({"login": "ann"}));
    let mut shipper = support::vaultd()
        .args(["backup", "ship-ledger", "--every", "1s", "--vault", &source.vault.url, "--token-file"])
        .arg(&source.token_file)
        .arg("--to")
        .arg(&source.backups)
        .envs(&source.hsm.env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    client.delete(&format!("/v1/user/token/{ann}")).assert_ok();
    let ledger = source.backups.join("ledger");
    let shipped = support::cluster::poll("the erasure to be shipped", std::time::Duration::from_secs(30), || {
        let cluster = std::fs::read_dir(&ledger).ok()?.flatten().next()?.path();
        let segment = std::fs::read_dir(cluster).ok()?.flatten().next()?.path();
        let rows: Value = serde_json::from_slice(&std::fs::read(segment).ok()?).ok()?;
        Some(rows)
    });
    shipper.kill().unwrap();
    shipper.wait().unwrap();
    assert_eq!(shipped[0]["token"], ann.as_str(), "{shipped}");
    assert_eq!(shipped[0]["kind"], "forget", "{shipped}");
}

#[test]
fn one_backup_at_a_time_per_node() {
    let source = source();
    // More than the sockets between the vault and a stalled reader can buffer (~16 MB).
    fill(&source.vault.client(), 500, 32_000);
    // A backup held mid-stream (its reader stalls) keeps the node's one backup slot.
    let mut held = stalled_backup(&source);
    let http = reqwest::blocking::Client::new();
    let second = http.get(format!("{}/v1/sys/backup", source.vault.url)).header("X-Bunker-Token", ROOT_TOKEN).send();
    let second = second.unwrap();
    assert_eq!(second.status(), 409, "a second backup started while the first was being sent");
    let message = second.json::<Value>().unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains("being taken"), "{message}");
    // Once that reader goes away, the slot is free again.
    held.kill().unwrap();
    held.wait().unwrap();
    support::cluster::poll("the slot to be free", std::time::Duration::from_secs(30), || {
        let reply =
            http.get(format!("{}/v1/sys/backup", source.vault.url)).header("X-Bunker-Token", ROOT_TOKEN).send().ok()?;
        (reply.status() == 200).then_some(())
    });
}
