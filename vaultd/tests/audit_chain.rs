//! The audit chain is tamper-evident: it verifies as written, and editing or deleting one
//! stored event (with the vault stopped, as an attacker with disk access would) makes
//! `GET /v1/sys/audit/verify` fail and name the event. Each node also verifies its chain
//! at start and on a schedule, and reports the result in its metrics.

mod support;

use std::time::Duration;

use serde_json::json;
use support::cluster::poll;
use support::{sample, serve_scratch, Vault};
use vaultd::audit::AuditEvent;
use vaultd::store::Store;

/// Writes a few audited operations and returns the number of events in the chain.
fn write_history(vault: &Vault) -> u64 {
    let client = vault.client();
    let token = client.create_user(json!({"login": "alice", "email": "alice@example.com"}));
    client.get("/v1/user/login/alice").assert_ok();
    client.put(&format!("/v1/user/token/{token}"), json!({"city": "Leeds"})).assert_ok();
    client.get("/v1/user/login/nobody").assert_error(404);
    let report = client.get("/v1/sys/audit/verify");
    let verification = &report.assert_ok()["verification"];
    assert_eq!(verification["intact"], true);
    verification["events"].as_u64().unwrap()
}

/// Opens the stopped vault's audit trail, lets `edit` change the stored events (as an
/// attacker with the disk would) and writes them back, checksums and all.
fn tamper(data_dir: &std::path::Path, edit: impl FnOnce(&mut Vec<AuditEvent>)) {
    let store = Store::open(data_dir, vaultd::store::DEFAULT_CACHE_BYTES).unwrap();
    let mut events = store.raw_audit_events().unwrap();
    edit(&mut events);
    store.raw_rewrite_audit(&events).unwrap();
}

fn event_mut(events: &mut [AuditEvent], seq: u64) -> &mut AuditEvent {
    events.iter_mut().find(|e| e.seq == seq).unwrap()
}

/// The node's last verification by its metrics: intact or not, and when.
fn last_verification(vault: &Vault) -> Option<(bool, f64)> {
    let text = vault.client().metrics();
    let intact = sample(&text, "vaultd_audit_verification_ok")? == 1.0;
    Some((intact, sample(&text, "vaultd_audit_verification_timestamp_seconds")?))
}

#[test]
fn an_edited_event_breaks_verification_at_that_event() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--audit-verify-every-secs=1"]);
    let events = write_history(&vault);
    assert!(events >= 5, "init, create, read, update, failed lookup: {events}");
    // Verified on schedule, unasked.
    let (_, first) = poll("a verification", Duration::from_secs(30), || last_verification(&vault));
    poll("the next scheduled verification", Duration::from_secs(30), || {
        last_verification(&vault).filter(|(intact, at)| *intact && *at > first)
    });
    vault.stop();

    tamper(&data_dir, |events| {
        // Make the failed lookup look like it never failed: keep the hash, change content.
        let event = events.iter_mut().find(|e| e.result != "ok").unwrap();
        assert_eq!(event.seq, 5);
        event.result = "ok".into();
    });

    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    // Each node verifies its chain as it starts: the edit shows in its metrics unasked.
    let (intact, _) = poll("the verification at start", Duration::from_secs(30), || last_verification(&vault));
    assert!(!intact);
    let reply = vault.client().get("/v1/sys/audit/verify");
    reply.assert_error(409);
    assert_eq!(reply.body["verification"]["intact"], false);
    assert_eq!(reply.body["verification"]["broken_at"], 5, "{}", reply.body);
    assert!(reply.body["message"].as_str().unwrap().contains("does not match its hash"), "{}", reply.body);
}

#[test]
fn a_deleted_event_or_a_rehashed_edit_is_detected() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    write_history(&vault);
    vault.stop();

    tamper(&data_dir, |events| events.retain(|e| e.seq != 3));
    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let reply = vault.client().get("/v1/sys/audit/verify");
    reply.assert_error(409);
    assert_eq!(reply.body["verification"]["broken_at"], 3);
    vault.stop();

    // Re-hashing an edited event does not help: the next event's link no longer matches.
    tamper(&data_dir, |events| {
        let event = event_mut(events, 1);
        event.actor = "someone-else".into();
        event.hash = event.compute_hash();
        event.id = vaultd::audit::event_id(event.seq, &event.hash);
    });
    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let reply = vault.client().get("/v1/sys/audit/verify");
    reply.assert_error(409);
    assert_eq!(reply.body["verification"]["broken_at"], 2, "{}", reply.body);
}
