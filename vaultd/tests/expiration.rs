//! Databunker's expiration flow over HTTP against a real `vaultd demo`: start, status,
//! retain, cancel and delete with their exact shapes and audit events; exptokens as the
//! only credential of retain/delete; bad input that writes nothing; the leader's sweeper
//! forgetting subjects whose expiration ended and leaving retained ones alone.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::poll;
use support::{
    assert_uuid, audit_rows, audit_total, events, keys, now_secs, scoped_token, serve_scratch, subject_client,
    with_operation, Client, Reply, Vault,
};
use uuid::Uuid;

const DAY: u64 = 86_400;

fn start(client: &Client, mode: &str, id: &str, body: Value) -> Reply {
    client.post(&format!("/v1/exp/start/{mode}/{id}"), body)
}

/// Starts an expiration and returns its exptoken, checking the reply's shape.
fn start_ok(client: &Client, mode: &str, id: &str, expiration: &str) -> String {
    let reply = start(client, mode, id, json!({"expiration": expiration}));
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["exptoken", "status"], "{body}");
    assert_uuid(&body["exptoken"]).to_string()
}

fn status(client: &Client, mode: &str, id: &str) -> Value {
    let reply = client.get(&format!("/v1/exp/status/{mode}/{id}"));
    let body = reply.assert_ok().clone();
    assert_eq!(keys(&body), ["expstatus", "exptime", "exptoken", "status"], "{body}");
    body
}

fn retain(anonymous: &Client, exptoken: &str) -> Reply {
    anonymous.get(&format!("/v1/exp/retain/{exptoken}"))
}

fn delete(anonymous: &Client, exptoken: &str) -> Reply {
    anonymous.get(&format!("/v1/exp/delete/{exptoken}"))
}

fn cancel(client: &Client, mode: &str, id: &str) -> Reply {
    client.delete(&format!("/v1/exp/cancel/{mode}/{id}"))
}

/// `exptime` is `seconds` after a moment between `before` and now.
fn assert_exptime(body: &Value, before: u64, seconds: u64) {
    let exptime = body["exptime"].as_u64().unwrap_or_else(|| panic!("exptime is not a number: {body}"));
    assert!(exptime >= before + seconds && exptime <= now_secs() + seconds, "exptime {exptime}: {body}");
}

#[test]
fn start_status_retain_cancel_and_delete_with_their_shapes_and_audit_events() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let anonymous = client.with_token(None);
    let token = client.create_user(json!({"login": "ada", "email": "ada@example.com", "first": "Ada"}));

    // No expiration yet.
    let body = status(&client, "login", "ada");
    assert_eq!(body, json!({"status": "ok", "exptime": 0, "expstatus": "", "exptoken": ""}));

    // Start: 30 days from now, status wait, the exptoken readable back by an admin.
    let before = now_secs();
    let first = start_ok(&client, "login", "ada", "30d");
    let body = status(&client, "login", "ada");
    assert_eq!(body["expstatus"], "wait", "{body}");
    assert_eq!(body["exptoken"], first.as_str());
    assert_exptime(&body, before, 30 * DAY);

    // Restarting (form body, explicit status wait) replaces the exptoken; the old one is dead.
    let before = now_secs();
    let reply = client.send(
        client
            .request("POST", "/v1/exp/start/login/ada")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("expiration=2m&status=wait"),
    );
    let second = assert_uuid(&reply.assert_ok()["exptoken"]).to_string();
    assert_ne!(second, first);
    let body = status(&client, "login", "ada");
    assert_eq!(body["exptoken"], second.as_str(), "{body}");
    assert_eq!(body["expstatus"], "wait");
    assert_exptime(&body, before, 2 * 31 * DAY);
    retain(&anonymous, &first).assert_error(404);
    delete(&anonymous, &first).assert_error(404);
    assert_eq!(client.get(&format!("/v1/user/token/{token}")).assert_ok()["data"]["first"], "Ada");

    // Retain: no access token needed; the countdown stays but the subject keeps its data.
    let reply = retain(&anonymous, &second);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "ok", "result": "retained"}));
    let retained = status(&client, "login", "ada");
    assert_eq!(retained["expstatus"], "retain", "{retained}");
    assert_eq!(retained["exptime"], body["exptime"]);

    // Cancel: the expiration is gone and the exptoken stops working.
    let reply = cancel(&client, "login", "ada");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "ok"}));
    let body = status(&client, "login", "ada");
    assert_eq!(body, json!({"status": "ok", "exptime": 0, "expstatus": "", "exptoken": ""}));
    retain(&anonymous, &second).assert_error(404);
    delete(&anonymous, &second).assert_error(404);
    assert_eq!(client.get(&format!("/v1/user/token/{token}")).assert_ok()["data"]["first"], "Ada");

    // Delete through a fresh exptoken: forgotten at once, status expired, exptoken dead.
    let third = start_ok(&client, "login", "ada", "10d");
    let reply = delete(&anonymous, &third);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "ok", "result": "deleted"}));
    assert_eq!(
        client.get(&format!("/v1/user/token/{token}")).body,
        json!({"status": "ok", "token": token, "data": {}})
    );
    client.get("/v1/user/login/ada").assert_error(404);
    client.get("/v1/user/email/ada@example.com").assert_error(404);
    let body = status(&client, "token", &token);
    assert_eq!(body["expstatus"], "expired", "{body}");
    assert_eq!(body["exptoken"], "", "a forgotten subject's exptoken is not shown: {body}");
    delete(&anonymous, &third).assert_error(404);
    retain(&anonymous, &third).assert_error(404);

    // Every step is in the subject's trail, successful ones with result ok.
    let rows = audit_rows(&client, &token);
    for (operation, expected) in [
        ("expiration-start", 3),
        ("expiration-status", 6),
        ("expiration-retain", 1),
        ("expiration-cancel", 1),
        ("expiration-delete", 1),
    ] {
        let ok: Vec<&Value> =
            rows.iter().filter(|row| row["operation"] == operation && row["result"] == "ok").collect();
        assert_eq!(ok.len(), expected, "{operation} events with result ok: {rows:#?}");
        assert!(ok.iter().all(|row| row["subject"] == token.as_str()), "{operation}: {rows:#?}");
    }
    let text = serde_json::to_string(&rows).unwrap();
    for secret in [&first, &second, &third] {
        assert!(!text.contains(secret.as_str()), "an exptoken is in the audit trail: {text}");
    }
    assert!(!text.contains("ada@example.com"));
    let verify = client.get("/v1/sys/audit/verify");
    assert_eq!(verify.assert_ok()["verification"]["intact"], true);
    // Exptokens are credentials: neither logged nor stored in the clear.
    let log = vault.log();
    support::assert_kept_secret(&[&first, &second, &third], "exptoken", &log, &vault.data_dir);
}

#[test]
fn exptokens_that_are_malformed_unknown_or_used_up_are_refused() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let anonymous = client.with_token(None);
    let token = client.create_user(json!({"login": "bob"}));
    let exptoken = start_ok(&client, "login", "bob", "30d");
    for malformed in ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"] {
        retain(&anonymous, malformed).assert_error(400);
        delete(&anonymous, malformed).assert_error(400);
    }
    // An access token is not an exptoken, and neither is the subject's own token; anyone
    // may ask, so a miss is answered without a write (no log entry, no audit event).
    let events = audit_total(&client);
    for unknown in [Uuid::new_v4().to_string(), token.clone()] {
        retain(&anonymous, &unknown).assert_error(404);
        delete(&anonymous, &unknown).assert_error(404);
        retain(&client, &unknown).assert_error(404);
    }
    assert_eq!(audit_total(&client), events, "a miss wrote an audit event");
    // None of that touched the subject.
    let body = status(&client, "login", "bob");
    assert_eq!(body["expstatus"], "wait");
    assert_eq!(body["exptoken"], exptoken.as_str());
    assert_eq!(client.get("/v1/user/login/bob").assert_ok()["data"], json!({"login": "bob"}));

    // After cancel the exptoken is unknown; after delete too.
    cancel(&client, "login", "bob").assert_ok();
    let events = audit_total(&client);
    retain(&anonymous, &exptoken).assert_error(404);
    delete(&anonymous, &exptoken).assert_error(404);
    assert_eq!(audit_total(&client), events, "a used-up exptoken wrote an audit event");
    assert_eq!(client.get("/v1/user/login/bob").assert_ok()["data"], json!({"login": "bob"}));

    let exptoken = start_ok(&client, "login", "bob", "30d");
    delete(&anonymous, &exptoken).assert_ok();
    delete(&anonymous, &exptoken).assert_error(404);
    retain(&anonymous, &exptoken).assert_error(404);
    assert_eq!(status(&client, "token", &token)["expstatus"], "expired");
    // A forgotten subject cannot start a new expiration.
    start(&client, "token", &token, json!({"expiration": "1d"})).assert_error(404);
    assert_eq!(status(&client, "token", &token)["expstatus"], "expired");
}

#[test]
fn bad_durations_and_statuses_are_400_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "cy"}));
    let exptoken = start_ok(&client, "login", "cy", "30d");
    let before = status(&client, "login", "cy");
    let events = audit_total(&client);

    let bad_bodies = [
        json!({"expiration": "d"}),
        json!({"expiration": -1.5}),
        json!({"expiration": -5}),
        json!({"expiration": true}),
        json!({"expiration": ["30d"]}),
        json!({"expiration": "99999999999999999999"}),
        json!({"expiration": "30w"}),
        json!({"expiration": "-1d"}),
        json!({"expiration": "1.5d"}),
        json!({"expiration": " 30d"}),
        json!({"expiration": "30d "}),
        json!({"expiration": "30D"}),
        json!({"expiration": "30dd"}),
        json!({"expiration": "30 days"}),
        json!({"expiration": "30d", "status": "retain"}),
        json!({"expiration": "30d", "status": "expired"}),
        json!({"expiration": "30d", "status": ""}),
        json!({"expiration": "30d", "status": 1}),
        json!(["30d"]),
    ];
    for body in bad_bodies {
        let reply = start(&client, "login", "cy", body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        reply.assert_error(400);
    }
    for (content_type, raw) in [
        ("application/json", "{\"expiration\":"),
        ("application/json", "not json"),
        ("application/x-www-form-urlencoded", "expiration=30x"),
        ("application/x-www-form-urlencoded", "expiration=30d&status=retain"),
    ] {
        let reply = client
            .send(client.request("POST", "/v1/exp/start/login/cy").header("Content-Type", content_type).body(raw));
        assert_eq!(reply.status, 400, "{raw}: {}", reply.body);
        reply.assert_error(400);
    }
    // Nothing was written: no audit event, the expiration and its exptoken are unchanged.
    assert_eq!(audit_total(&client), events, "a refused start wrote an audit event");
    assert_eq!(status(&client, "login", "cy"), before);
    assert_eq!(before["exptoken"], exptoken.as_str());

    // Unknown subject, unknown mode, empty identifier.
    start(&client, "login", "nobody", json!({"expiration": "1d"})).assert_error(404);
    client.get("/v1/exp/status/login/nobody").assert_error(404);
    cancel(&client, "login", "nobody").assert_error(404);
    start(&client, "shoe", "cy", json!({"expiration": "1d"})).assert_error(400);
    client.get("/v1/exp/status/shoe/cy").assert_error(400);
    cancel(&client, "shoe", "cy").assert_error(400);
    client.get("/v1/user/login/nobody").assert_error(404);
    assert_eq!(status(&client, "login", "cy"), before);
}

#[test]
fn start_status_and_cancel_need_a_token_with_the_right_scope() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let token = root.create_user(json!({"login": "dee"}));
    let exptoken = start_ok(&root, "login", "dee", "30d");
    let before = status(&root, "login", "dee");

    let reader = root.with_token(Some(&scoped_token(&root, "reader", &["users:read"])));
    let retention = root.with_token(Some(&scoped_token(&root, "retention", &["retention:run"])));
    for (label, client, code) in [
        ("missing", root.with_token(None), 401),
        ("wrong", root.with_token(Some("WRONG")), 401),
        ("users:read", reader.clone(), 403),
        ("retention:run", retention.clone(), 403),
    ] {
        let reply = start(&client, "login", "dee", json!({"expiration": "1s"}));
        assert_eq!(reply.status, code, "{label} start: {}", reply.body);
        reply.assert_error(code);
        let reply = cancel(&client, "login", "dee");
        assert_eq!(reply.status, code, "{label} cancel: {}", reply.body);
        reply.assert_error(code);
    }
    for (label, client, code) in [
        ("missing", root.with_token(None), 401),
        ("wrong", root.with_token(Some("x")), 401),
        ("retention", retention, 403),
    ] {
        let reply = client.get("/v1/exp/status/login/dee");
        assert_eq!(reply.status, code, "{label} status: {}", reply.body);
        reply.assert_error(code);
    }
    // A reader may read the status; it shows the same expiration, untouched, but not the
    // exptoken, which would let it erase the subject.
    let reply = reader.get("/v1/exp/status/login/dee");
    assert_eq!(reply.assert_ok()["expstatus"], before["expstatus"]);
    assert_eq!(reply.body["exptoken"], "");
    assert_eq!(status(&root, "login", "dee"), before);
    let editor = root.with_token(Some(&scoped_token(&root, "editor", &["users:read", "users:write"])));
    assert_eq!(editor.get("/v1/exp/status/login/dee").assert_ok()["exptoken"], exptoken.as_str());
    // Nor does the subject's own token while its erasure goes through a DPO.
    let own = subject_client(&root, &token);
    assert_eq!(own.get("/v1/exp/status/login/dee").assert_ok()["exptoken"], "");
    let writer = root.with_token(Some(&scoped_token(&root, "writer", &["users:write"])));
    let replaced = start(&writer, "login", "dee", json!({"expiration": "2d"}));
    assert_ne!(assert_uuid(&replaced.assert_ok()["exptoken"]).to_string(), exptoken);
    cancel(&writer, "login", "dee").assert_ok();
    assert_eq!(status(&root, "token", &token)["expstatus"], "");
}

#[test]
fn every_mode_reaches_the_same_subject() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let anonymous = client.with_token(None);
    let profile = json!({"login": "eve", "email": "Eve@Example.com", "phone": "07700900123", "custom": "crm-9"});
    let token = client.create_user(profile.clone());
    let ids = [
        ("login", "eve".to_string()),
        ("email", "EVE@example.COM".to_string()),
        ("phone", "+447700900123".to_string()),
        ("custom", "crm-9".to_string()),
        ("token", token.clone()),
    ];
    for (start_mode, start_id) in &ids {
        let exptoken = start_ok(&client, start_mode, start_id, "7d");
        // Every mode sees the expiration just started.
        for (mode, id) in &ids {
            let body = status(&client, mode, id);
            assert_eq!(body["exptoken"], exptoken.as_str(), "started by {start_mode}, read by {mode}");
            assert_eq!(body["expstatus"], "wait");
        }
        let (cancel_mode, cancel_id) = &ids[(ids.iter().position(|(m, _)| m == start_mode).unwrap() + 1) % ids.len()];
        cancel(&client, cancel_mode, cancel_id).assert_ok();
        assert_eq!(status(&client, start_mode, start_id)["expstatus"], "", "cancelled by {cancel_mode}");
        retain(&anonymous, &exptoken).assert_error(404);
    }
    let rows = audit_rows(&client, &token);
    assert_eq!(with_operation(&rows, "expiration-start").len(), ids.len());
    assert_eq!(with_operation(&rows, "expiration-cancel").len(), ids.len());
    let modes: Vec<&str> =
        rows.iter().filter(|r| r["operation"] == "expiration-start").filter_map(|r| r["mode"].as_str()).collect();
    for (mode, _) in &ids {
        assert!(modes.contains(mode), "expiration-start by {mode} is audited with its mode: {modes:?}");
    }
    assert_eq!(client.get("/v1/user/login/eve").assert_ok()["data"], profile);
}

#[test]
fn the_sweeper_forgets_due_subjects_but_not_retained_cancelled_or_later_ones() {
    let vault = Vault::demo_with(&["--expiration-sweep-secs", "1"]);
    let client = vault.demo_client();
    let anonymous = client.with_token(None);
    let retained = client.create_user(json!({"login": "retained", "phone": "07700900001"}));
    let cancelled = client.create_user(json!({"login": "cancelled"}));
    let later = client.create_user(json!({"login": "later"}));
    let due = client.create_user(json!({"login": "due", "email": "due@example.com"}));

    // The retained and cancelled subjects' expirations end before the due one's, so the
    // sweep that forgets the due subject has seen them due too.
    let exptoken = start_ok(&client, "token", &retained, "1s");
    retain(&anonymous, &exptoken).assert_ok();
    start_ok(&client, "token", &cancelled, "1s");
    cancel(&client, "token", &cancelled).assert_ok();
    start_ok(&client, "token", &later, "30d");
    let due_exptoken = start_ok(&client, "token", &due, "1s");

    poll("the sweeper to forget the due subject", Duration::from_secs(30), || {
        let reply = client.get(&format!("/v1/user/token/{due}"));
        (reply.assert_ok()["data"] == json!({})).then_some(())
    });
    client.get("/v1/user/login/due").assert_error(404);
    client.get("/v1/user/email/due@example.com").assert_error(404);
    let body = status(&client, "token", &due);
    assert_eq!(body["expstatus"], "expired", "{body}");
    retain(&anonymous, &due_exptoken).assert_error(404);
    let rows = audit_rows(&client, &due);
    let sweeps: Vec<&Value> = rows.iter().filter(|row| row["operation"] == "expiration-delete").collect();
    assert_eq!(sweeps.len(), 1, "{rows:#?}");
    assert_eq!(sweeps[0]["actor"], "system", "{}", sweeps[0]);
    assert_eq!(sweeps[0]["result"], "ok", "{}", sweeps[0]);
    assert_eq!(sweeps[0]["subject"], due.as_str());

    // The others keep their data.
    for (token, login, expstatus) in
        [(&retained, "retained", "retain"), (&cancelled, "cancelled", ""), (&later, "later", "wait")]
    {
        let reply = client.get(&format!("/v1/user/token/{token}"));
        assert_eq!(reply.assert_ok()["data"]["login"], login, "{login} was forgotten");
        assert_eq!(status(&client, "token", token)["expstatus"], expstatus, "{login}");
        assert_eq!(events(&client, token, "expiration-delete").len(), 0, "{login}");
    }
    assert_eq!(client.get("/v1/user/login/retained").assert_ok()["data"]["phone"], "07700900001");
}

#[test]
fn an_expiration_without_a_length_runs_the_maximum_and_a_longer_one_is_capped_to_it() {
    const MAXIMUM: u64 = 186 * DAY; // Databunker's `6m`: six months of 31 days
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "ann"}));
    let requests: [(&str, Option<&str>, &str); 7] = [
        ("no body", None, ""),
        ("an empty object", Some("application/json"), "{}"),
        ("a null expiration", Some("application/json"), r#"{"expiration":null}"#),
        ("an empty expiration", Some("application/json"), r#"{"expiration":""}"#),
        ("a zero expiration", Some("application/json"), r#"{"expiration":0}"#),
        ("twelve months", Some("application/json"), r#"{"expiration":"12m"}"#),
        ("a form with a year in days", Some("application/x-www-form-urlencoded"), "expiration=365d"),
    ];
    for (what, content_type, body) in requests {
        let before = now_secs();
        let mut request = client.request("POST", "/v1/exp/start/login/ann");
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let reply = client.send(request.body(body));
        assert_uuid(&reply.assert_ok()["exptoken"]).to_string();
        assert_exptime(&status(&client, "login", "ann"), before, MAXIMUM);
        assert_eq!(status(&client, "login", "ann")["expstatus"], "wait", "{what}");
    }
}

#[test]
fn a_bare_number_is_seconds_and_a_number_past_now_is_a_unix_time() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "ann"}));
    for (body, seconds) in [
        (json!({"expiration": "90"}), 90),
        (json!({"expiration": 7200}), 7200),
        (json!({"expiration": "2h"}), 7200),
        (json!({"expiration": "2m"}), 62 * DAY),
    ] {
        let before = now_secs();
        start(&client, "login", "ann", body.clone()).assert_ok();
        assert_exptime(&status(&client, "login", "ann"), before, seconds);
    }
    // A Unix time is kept as it is, as a string or a number.
    let moment = now_secs() + 3 * DAY;
    for body in [json!({"expiration": moment}), json!({"expiration": moment.to_string()})] {
        start(&client, "login", "ann", body.clone()).assert_ok();
        assert_eq!(status(&client, "login", "ann")["exptime"], moment, "{body}");
    }
}

#[test]
fn databunkers_data_minimisation_example_forgets_the_subject_a_second_later() {
    // https://databunker.org/doc/data-minimization/ sends exactly this body.
    let vault = Vault::demo_with(&["--expiration-sweep-secs", "1"]);
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "brief", "email": "brief@example.com"}));
    let before = now_secs();
    start(&client, "email", "brief@example.com", json!({"expiration": "1"})).assert_ok();
    assert_exptime(&status(&client, "token", &token), before, 1);
    poll("the sweeper to forget the subject", Duration::from_secs(30), || {
        let reply = client.get(&format!("/v1/user/token/{token}"));
        (reply.assert_ok()["data"] == json!({})).then_some(())
    });
    client.get("/v1/user/email/brief@example.com").assert_error(404);
}

#[test]
fn the_maximum_retention_period_is_a_setting() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--max-user-retention-period", "2d"]);
    let client = vault.client();
    client.create_user(json!({"login": "ann"}));
    for body in [json!({}), json!({"expiration": "30d"})] {
        let before = now_secs();
        start(&client, "login", "ann", body).assert_ok();
        assert_exptime(&status(&client, "login", "ann"), before, 2 * DAY);
    }
    let before = now_secs();
    start(&client, "login", "ann", json!({"expiration": "1h"})).assert_ok();
    assert_exptime(&status(&client, "login", "ann"), before, 3600);
}
