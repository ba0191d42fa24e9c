//! Databunker's session API over HTTP against real `vaultd` processes: create, read,
//! replace and delete with their exact shapes; linking to a subject by token, login,
//! email, phone or custom; listing a subject's sessions with paging; forget-me; sessions
//! that end (unreadable at once, then removed by the leader's sweeper); audit events
//! without session data; scopes; and the `--max-session-ttl` cap on `vaultd serve`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::poll;
use support::{
    admin_rows, audit_rows, audit_total, keys, now_secs, raw, scoped_token, serve_scratch, with_operation, Client,
    Vault,
};
use uuid::Uuid;

fn session_path(session: &str) -> String {
    format!("/v1/session/{session}")
}

/// Sends `body` as is with a Content-Type.
/// Creates (or replaces) a session and checks the reply's exact shape.
fn create_ok(client: &Client, session: &str, body: Value) {
    let reply = client.post(&session_path(session), body.clone());
    assert_eq!(reply.status, 200, "{body}: {}", reply.body);
    assert_eq!(reply.body, json!({"status": "ok", "session": session}), "{body}");
}

/// Reads a session and checks the reply's shape; returns it.
fn read_ok(client: &Client, session: &str) -> Value {
    let reply = client.get(&session_path(session));
    let body = reply.assert_ok().clone();
    assert_eq!(keys(&body), ["data", "session", "status", "when"], "{body}");
    assert_eq!(body["session"], session, "{body}");
    body
}

/// A subject's sessions: (total, rows), checking the reply's shape.
fn list(client: &Client, mode: &str, id: &str, query: &str) -> (u64, Vec<Value>) {
    let reply = client.get(&format!("/v1/sessions/{mode}/{id}{query}"));
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["rows", "status", "total"], "{body}");
    let rows = body["rows"].as_array().unwrap().clone();
    for row in &rows {
        assert_eq!(keys(row), ["data", "session", "when"], "{row}");
    }
    (body["total"].as_u64().unwrap(), rows)
}

fn listed_sessions(rows: &[Value]) -> BTreeSet<String> {
    rows.iter().map(|row| row["session"].as_str().unwrap().to_string()).collect()
}

fn new_session() -> String {
    Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------------------
// Create, read, replace, delete
// ---------------------------------------------------------------------------------------

#[test]
fn create_read_replace_and_delete_an_unlinked_session() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let session = new_session();
    let first = json!({"ip": "203.0.113.7", "agent": "curl/8.5", "visits": 3, "nested": {"a": [1, 2]}});

    let before = now_secs();
    create_ok(&client, &session, first.clone());
    let body = read_ok(&client, &session);
    assert_eq!(body["data"], first, "the stored body comes back as given");
    let when = body["when"].as_u64().unwrap_or_else(|| panic!("when is not a number: {body}"));
    assert!(when >= before && when <= now_secs(), "when {when} is the creation time: {body}");

    // Replacing the id overwrites the data (and the creation time moves with it).
    let second = json!({"ip": "203.0.113.8", "expiration": "1h"});
    let before = now_secs();
    create_ok(&client, &session, second.clone());
    let body = read_ok(&client, &session);
    assert_eq!(body["data"], second, "{body}");
    assert!(body["when"].as_u64().unwrap() >= before, "{body}");

    // Months are 31-day months; the expiration field is kept as part of the data.
    let months = new_session();
    create_ok(&client, &months, json!({"ip": "203.0.113.9", "expiration": "2m"}));
    assert_eq!(read_ok(&client, &months)["data"]["expiration"], "2m");

    // A form body is stored as an object of strings.
    let other = new_session();
    let reply =
        raw(&client, "POST", &session_path(&other), "application/x-www-form-urlencoded", "ip=192.0.2.1&os=linux");
    assert_eq!(reply.assert_ok()["session"], other.as_str());
    assert_eq!(read_ok(&client, &other)["data"], json!({"ip": "192.0.2.1", "os": "linux"}));

    // Delete: exact reply, then unknown to every route.
    let reply = client.delete(&session_path(&session));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "ok"}));
    client.get(&session_path(&session)).assert_error(404);
    // Deleting it again succeeds, as in Databunker (express-session destroys ids it
    // never saved).
    client.delete(&session_path(&session)).assert_ok();
    // The other session is untouched.
    assert_eq!(read_ok(&client, &other)["data"]["ip"], "192.0.2.1");
    // Never-created ids read as 404 too, with Databunker's message, which its
    // express-session store relies on.
    let unknown = new_session();
    let reply = client.get(&session_path(&unknown));
    reply.assert_error(404);
    assert_eq!(reply.body["message"], "not found");
    client.delete(&session_path(&unknown)).assert_ok();
}

#[test]
fn bad_session_ids_and_bodies_are_400_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "ada"}));
    let events = audit_total(&client);

    for bad_id in ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"] {
        client.post(&session_path(bad_id), json!({"ip": "1.2.3.4"})).assert_error(400);
        client.get(&session_path(bad_id)).assert_error(400);
        client.delete(&session_path(bad_id)).assert_error(400);
    }

    let session = new_session();
    let path = session_path(&session);
    let bad_bodies = [json!({}), json!([]), json!(["ip"]), json!("ip"), json!(42), json!(null)];
    for body in bad_bodies {
        let reply = client.post(&path, body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        reply.assert_error(400);
    }
    for (content_type, body) in [
        ("application/json", ""),
        ("application/json", "   "),
        ("application/json", "{\"ip\":"),
        ("application/json", "not json"),
        ("application/x-www-form-urlencoded", ""),
        ("application/x-www-form-urlencoded", "=nameless"),
    ] {
        let reply = raw(&client, "POST", &path, content_type, body);
        assert_eq!(reply.status, 400, "{content_type} {body:?}: {}", reply.body);
        reply.assert_error(400);
    }
    assert_eq!(audit_total(&client), events, "a refused session write left an audit event");
    client.get(&path).assert_error(404);
}

#[test]
fn an_expiration_the_vault_cannot_read_asks_for_the_maximum_as_databunker_reads_it() {
    // It is the application's own session field too (express-session keeps whatever the
    // application puts in the session, a Date included), and a refusal would crash the
    // application through Databunker's session store.
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "ada"}));
    for body in [
        json!({"ip": "1.2.3.4", "expiration": "d"}),
        json!({"ip": "1.2.3.4", "expiration": "-1h"}),
        json!({"ip": "1.2.3.4", "expiration": "1 hour"}),
        json!({"ip": "1.2.3.4", "expiration": "2026-12-07T15:00:00.000Z"}),
        json!({"ip": "1.2.3.4", "expiration": true}),
        json!({"ip": "1.2.3.4", "expiration": {"h": 1}}),
        json!({"login": "ada", "expiration": "1x"}),
    ] {
        let session = new_session();
        create_ok(&client, &session, body.clone());
        assert_eq!(read_ok(&client, &session)["data"], body);
    }
    let form = new_session();
    raw(&client, "POST", &session_path(&form), "application/x-www-form-urlencoded", "ip=1.2.3.4&expiration=1y")
        .assert_ok();
    assert_eq!(read_ok(&client, &form)["data"], json!({"ip": "1.2.3.4", "expiration": "1y"}));
}

// ---------------------------------------------------------------------------------------
// Linking to a subject, listing
// ---------------------------------------------------------------------------------------

#[test]
fn sessions_link_by_every_identifier_and_are_listed_under_every_mode() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({
        "login": "ada", "email": "ada@example.com", "phone": "07700900123", "custom": "crm-1"
    }));
    let bob = client.create_user(json!({"login": "bob"}));
    let ids = [
        ("token", token.clone()),
        ("login", "ada".to_string()),
        ("email", "ADA@Example.com".to_string()),
        ("phone", "+447700900123".to_string()),
        ("custom", "crm-1".to_string()),
    ];
    let mut expected = BTreeSet::new();
    for (field, id) in &ids {
        let session = new_session();
        create_ok(&client, &session, json!({field.to_string(): id, "via": field}));
        expected.insert(session);
    }
    // Fields are tried in Databunker's order, login, email, phone, custom, token; empty
    // ones are skipped. A token that is some other token (CSRF, OAuth) does not get in
    // the way of an email.
    let ordered = new_session();
    create_ok(&client, &ordered, json!({"custom": "nobody", "login": "ada", "email": "", "token": ""}));
    expected.insert(ordered.clone());
    let csrf = new_session();
    create_ok(&client, &csrf, json!({"token": "csrf-abc", "email": "ada@example.com"}));
    expected.insert(csrf.clone());
    let bobs = new_session();
    create_ok(&client, &bobs, json!({"token": token, "login": "bob"}));
    assert_eq!(list(&client, "token", &bob, "").0, 1, "the login decided, not the token");
    let unlinked = new_session();
    create_ok(&client, &unlinked, json!({"ip": "198.51.100.1"}));

    for (mode, id) in &ids {
        let (total, rows) = list(&client, mode, id, "");
        assert_eq!(total, expected.len() as u64, "listed by {mode}");
        assert_eq!(listed_sessions(&rows), expected, "listed by {mode}");
        for row in &rows {
            let session = row["session"].as_str().unwrap();
            assert_eq!(row["data"], read_ok(&client, session)["data"], "{row}");
            assert_eq!(row["when"], read_ok(&client, session)["when"], "{row}");
        }
    }
    let (total, rows) = list(&client, "login", "bob", "");
    assert_eq!(total, 1);
    assert_eq!(listed_sessions(&rows), BTreeSet::from([bobs.clone()]));

    // Paging: pages of two cover every session once; total is the count, not the page.
    let mut paged = BTreeSet::new();
    for offset in (0..expected.len()).step_by(2) {
        let (total, rows) = list(&client, "token", &token, &format!("?offset={offset}&limit=2"));
        assert_eq!(total, expected.len() as u64);
        assert_eq!(rows.len(), 2.min(expected.len() - offset), "offset {offset}");
        for session in listed_sessions(&rows) {
            assert!(paged.insert(session), "a session is on two pages");
        }
    }
    assert_eq!(paged, expected);
    let (total, rows) = list(&client, "token", &token, "?offset=100&limit=10");
    assert_eq!((total, rows.len()), (expected.len() as u64, 0));

    // Unknown subject 404, unknown mode 400, bad paging 400.
    client.get("/v1/sessions/login/nobody").assert_error(404);
    client.get("/v1/sessions/shoe/ada").assert_error(400);
    client.get("/v1/sessions/login/ada?offset=-1").assert_error(400);
    client.get("/v1/sessions/login/ada?limit=x").assert_error(400);
}

#[test]
fn listing_the_sessions_of_an_unknown_token_is_404() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "ada"}));
    let unknown = Uuid::new_v4().to_string();
    // Like every other route, the profile route does not know this token...
    client.get(&format!("/v1/user/token/{unknown}")).assert_error(404);
    client.get(&format!("/v1/exp/status/token/{unknown}")).assert_error(404);
    // ...and neither should the session list (a forgotten subject's is 200 with total 0;
    // a token that never existed is not a subject).
    let reply = client.get(&format!("/v1/sessions/token/{unknown}"));
    assert_eq!(reply.status, 404, "sessions of a token that never existed: {}", reply.body);
    reply.assert_error(404);
    client.get("/v1/sessions/token/not-a-uuid").assert_error(400);
}

#[test]
fn a_field_naming_no_subject_leaves_the_session_unlinked() {
    // Databunker stores such sessions unlinked; express-session's store crashes on any
    // other answer, and applications keep a visitor's email in the session before sign-up.
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "email": "ada@example.com"}));
    for body in [
        json!({"login": "nobody", "ip": "1.2.3.4"}),
        json!({"email": "nobody@example.com"}),
        json!({"phone": "07700900999"}),
        json!({"custom": "nothing"}),
        json!({"token": Uuid::new_v4().to_string()}),
        json!({"token": "not-a-uuid"}),
        // The first non-empty identifier in Databunker's order (login, email, phone,
        // custom, token) decides, even when a later one would match.
        json!({"login": "nobody", "token": token}),
        json!({"login": "nobody", "email": "ada@example.com"}),
    ] {
        let session = new_session();
        create_ok(&client, &session, body.clone());
        assert_eq!(read_ok(&client, &session)["data"], body);
    }
    assert_eq!(list(&client, "token", &token, "").0, 0, "none of them is ada's");
}

#[test]
fn replacing_a_session_moves_it_between_subjects() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let ada = client.create_user(json!({"login": "ada"}));
    let bob = client.create_user(json!({"login": "bob"}));
    let session = new_session();

    create_ok(&client, &session, json!({"login": "ada", "n": 1}));
    assert_eq!(list(&client, "token", &ada, "").0, 1);
    create_ok(&client, &session, json!({"login": "bob", "n": 2}));
    assert_eq!(list(&client, "token", &ada, "").0, 0, "the replaced session is still listed under ada");
    let (total, rows) = list(&client, "token", &bob, "");
    assert_eq!(total, 1);
    assert_eq!(rows[0]["data"], json!({"login": "bob", "n": 2}));

    // Forgetting ada does not touch the session that now belongs to bob.
    client.delete("/v1/user/login/ada").assert_ok();
    assert_eq!(read_ok(&client, &session)["data"]["n"], 2);

    // Replaced by an unlinked body, it leaves bob's list and survives bob's forget-me.
    create_ok(&client, &session, json!({"n": 3}));
    assert_eq!(list(&client, "token", &bob, "").0, 0);
    client.delete("/v1/user/login/bob").assert_ok();
    assert_eq!(read_ok(&client, &session)["data"], json!({"n": 3}));
}

#[test]
fn forget_me_removes_linked_sessions_and_leaves_unlinked_ones() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "email": "ada@example.com"}));
    let other = client.create_user(json!({"login": "cy"}));
    let linked = [new_session(), new_session()];
    create_ok(&client, &linked[0], json!({"token": token, "ip": "203.0.113.9"}));
    create_ok(&client, &linked[1], json!({"email": "ada@example.com", "ip": "203.0.113.10"}));
    let others = new_session();
    create_ok(&client, &others, json!({"login": "cy"}));
    let unlinked = new_session();
    create_ok(&client, &unlinked, json!({"ip": "203.0.113.11"}));

    client.delete(&format!("/v1/user/token/{token}")).assert_ok();
    for session in &linked {
        client.get(&session_path(session)).assert_error(404);
    }
    let (total, rows) = list(&client, "token", &token, "");
    assert_eq!((total, rows.len()), (0, 0), "a forgotten subject has no sessions");
    client.get("/v1/sessions/login/ada").assert_error(404);
    assert_eq!(read_ok(&client, &unlinked)["data"]["ip"], "203.0.113.11");
    assert_eq!(read_ok(&client, &others)["data"]["login"], "cy");
    assert_eq!(list(&client, "token", &other, "").0, 1);

    // Sessions naming a forgotten subject, by token or by a former identifier, are kept
    // unlinked: nothing is sealed under its destroyed key, and they outlive it.
    for body in [json!({"token": token}), json!({"login": "ada"})] {
        let fresh = new_session();
        create_ok(&client, &fresh, body.clone());
        assert_eq!(read_ok(&client, &fresh)["data"], body);
    }
    assert_eq!(list(&client, "token", &token, "").0, 0);
}

// ---------------------------------------------------------------------------------------
// Ended sessions
// ---------------------------------------------------------------------------------------

#[test]
fn an_ended_session_is_unreadable_before_any_sweep() {
    // The sweeper runs once at start and then hourly: what ends here is never swept.
    let vault = Vault::demo_with(&["--expiration-sweep-secs", "3600"]);
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada"}));
    let short = new_session();
    let long = new_session();
    create_ok(&client, &short, json!({"token": token, "expiration": "1s"}));
    create_ok(&client, &long, json!({"token": token, "expiration": "2h"}));

    poll("the 1s session to end", Duration::from_secs(30), || {
        (client.get(&session_path(&short)).status == 404).then_some(())
    });
    client.get(&session_path(&short)).assert_error(404);
    let (total, rows) = list(&client, "token", &token, "");
    assert_eq!(total, 1, "an ended session is counted: {rows:?}");
    assert_eq!(listed_sessions(&rows), BTreeSet::from([long.clone()]));
    assert_eq!(read_ok(&client, &long)["data"]["expiration"], "2h");
    assert!(with_operation(&admin_rows(&client), "session-expire").is_empty(), "nothing was swept");
}

#[test]
fn the_sweeper_removes_ended_sessions_with_a_system_event() {
    let vault = Vault::demo_with(&["--expiration-sweep-secs", "1"]);
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada"}));
    let linked = new_session();
    let unlinked = new_session();
    let lasting = new_session();
    create_ok(&client, &linked, json!({"login": "ada", "expiration": "1s"}));
    create_ok(&client, &unlinked, json!({"ip": "192.0.2.44", "expiration": "1s"}));
    create_ok(&client, &lasting, json!({"login": "ada", "expiration": "1d"}));

    let events = poll("the sweeper to remove both ended sessions", Duration::from_secs(30), || {
        let rows = admin_rows(&client);
        let events: Vec<Value> = with_operation(&rows, "session-expire").into_iter().cloned().collect();
        (events.len() >= 2).then_some(events)
    });
    assert_eq!(events.len(), 2, "each ended session is swept once: {events:#?}");
    for event in &events {
        assert_eq!(event["actor"], "system", "{event}");
        assert_eq!(event["result"], "ok", "{event}");
    }
    // The linked one's event is in the subject's trail.
    let rows = audit_rows(&client, &token);
    let swept = with_operation(&rows, "session-expire");
    assert_eq!(swept.len(), 1, "{rows:#?}");
    assert_eq!(swept[0]["subject"], token.as_str());
    assert_eq!(swept[0]["actor"], "system");

    for session in [&linked, &unlinked] {
        client.get(&session_path(session)).assert_error(404);
    }
    // Removed, not just hidden: deleting them finds nothing to delete (the answer is ok
    // either way, as in Databunker; the audit result tells).
    for session in [&linked, &unlinked] {
        client.delete(&session_path(session)).assert_ok();
        let deleted = admin_rows(&client);
        let delete = with_operation(&deleted, "session-delete")[0];
        assert_ne!(delete["result"], "ok", "{session} was still stored: {delete}");
    }
    let (total, rows) = list(&client, "login", "ada", "");
    assert_eq!(total, 1);
    assert_eq!(listed_sessions(&rows), BTreeSet::from([lasting.clone()]));
    assert_eq!(read_ok(&client, &lasting)["data"]["expiration"], "1d");
}

// ---------------------------------------------------------------------------------------
// Audit, logs, disk
// ---------------------------------------------------------------------------------------

#[test]
fn session_operations_are_audited_without_session_data() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada"}));
    let ip = "198.51.100.237";
    let agent = "Mozilla/5.0 (Quokka; Wobbleframe 91.7)";
    let session = new_session();
    create_ok(&client, &session, json!({"login": "ada", "ip": ip, "agent": agent}));
    read_ok(&client, &session);
    list(&client, "login", "ada", "");
    client.delete(&session_path(&session)).assert_ok();
    let unlinked = new_session();
    let unlinked_ip = "198.51.100.238";
    create_ok(&client, &unlinked, json!({"ip": unlinked_ip}));
    read_ok(&client, &unlinked);

    let rows = audit_rows(&client, &token);
    for operation in ["session-create", "session-read", "session-list", "session-delete"] {
        let events = with_operation(&rows, operation);
        assert_eq!(events.len(), 1, "{operation} in the subject's trail: {rows:#?}");
        assert_eq!(events[0]["result"], "ok", "{}", events[0]);
        assert_eq!(events[0]["subject"], token.as_str(), "{}", events[0]);
    }
    // The unlinked session's events are in the admin trail.
    let all = admin_rows(&client);
    assert_eq!(with_operation(&all, "session-create").len(), 2, "{all:#?}");
    assert_eq!(with_operation(&all, "session-read").len(), 2, "{all:#?}");
    assert_eq!(client.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);

    let text = serde_json::to_string(&all).unwrap();
    let log = vault.log();
    for secret in [ip, agent, unlinked_ip] {
        assert!(!text.contains(secret), "session data {secret:?} is in the audit trail");
    }
    support::assert_kept_secret(&[ip, agent, unlinked_ip], "session data", &log, &vault.data_dir);
}

// ---------------------------------------------------------------------------------------
// Access tokens
// ---------------------------------------------------------------------------------------

#[test]
fn session_routes_need_a_token_with_the_right_scope() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    root.create_user(json!({"login": "ada"}));
    let session = new_session();
    create_ok(&root, &session, json!({"login": "ada", "n": 1}));
    let path = session_path(&session);
    let reader = root.with_token(Some(&scoped_token(&root, "reader", &["users:read"])));
    let retention = root.with_token(Some(&scoped_token(&root, "retention", &["retention:run"])));
    let writer = root.with_token(Some(&scoped_token(&root, "writer", &["users:write"])));

    for (label, client, code) in [
        ("missing", root.with_token(None), 401),
        ("wrong", root.with_token(Some("WRONG")), 401),
        ("users:read", reader.clone(), 403),
        ("retention:run", retention.clone(), 403),
    ] {
        let reply = client.post(&path, json!({"login": "ada", "n": 2}));
        assert_eq!(reply.status, code, "{label} create: {}", reply.body);
        reply.assert_error(code);
        let reply = client.delete(&path);
        assert_eq!(reply.status, code, "{label} delete: {}", reply.body);
        reply.assert_error(code);
    }
    for (label, client, code) in [
        ("missing", root.with_token(None), 401),
        ("wrong", root.with_token(Some("WRONG")), 401),
        ("retention:run", retention, 403),
    ] {
        for route in [path.clone(), "/v1/sessions/login/ada".to_string()] {
            let reply = client.get(&route);
            assert_eq!(reply.status, code, "{label} GET {route}: {}", reply.body);
            reply.assert_error(code);
        }
    }
    // Nothing changed; a reader reads and lists, a writer replaces and deletes.
    assert_eq!(read_ok(&reader, &session)["data"]["n"], 1);
    assert_eq!(list(&reader, "login", "ada", "").0, 1);
    create_ok(&writer, &session, json!({"login": "ada", "n": 3}));
    assert_eq!(read_ok(&root, &session)["data"]["n"], 3);
    writer.delete(&path).assert_ok();
    root.get(&path).assert_error(404);
}

// ---------------------------------------------------------------------------------------
// --max-session-ttl
// ---------------------------------------------------------------------------------------

#[test]
fn max_session_ttl_reads_1m_as_one_minute() {
    // Duration settings are humantime's: `1m` is a minute (it was once read as a month of
    // 31 days, Databunker's `m`, which only the API's own values keep).
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--max-session-ttl", "1m"]);
    let client = vault.client();
    let session = new_session();
    create_ok(&client, &session, json!({"ip": "192.0.2.11", "expiration": "1h"}));
    poll("a session to end at the 1m cap", Duration::from_secs(120), || {
        (client.get(&session_path(&session)).status == 404).then_some(())
    });
}

#[test]
fn max_session_ttl_caps_every_session_on_serve() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(
        &hsm,
        &data_dir,
        &["--hsm-create-key", "--max-session-ttl", "2s", "--expiration-sweep-secs", "3600"],
    );
    let client = vault.client();
    let token = client.create_user(json!({"login": "ada"}));
    let sessions: Vec<(String, Value)> = [
        json!({"login": "ada"}),
        json!({"login": "ada", "expiration": "30d"}),
        json!({"ip": "192.0.2.9", "expiration": "1h"}),
        json!({"ip": "192.0.2.10"}),
    ]
    .into_iter()
    .map(|body| (new_session(), body))
    .collect();
    for (session, body) in &sessions {
        create_ok(&client, session, body.clone());
        assert_eq!(read_ok(&client, session)["data"], *body);
    }
    for (session, body) in &sessions {
        poll(&format!("session {body} to end at the 2s cap"), Duration::from_secs(30), || {
            (client.get(&session_path(session)).status == 404).then_some(())
        });
    }
    assert_eq!(list(&client, "token", &token, "").0, 0);
}

#[test]
fn sessions_survive_a_restart_of_serve_and_stay_sealed_on_disk() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let client = vault.client();
    let token = client.create_user(json!({"login": "ada"}));
    let linked = new_session();
    let unlinked = new_session();
    let linked_body = json!({"login": "ada", "ip": "198.51.100.201", "agent": "Zanzibar-Browser/3.14"});
    let unlinked_body = json!({"ip": "198.51.100.202", "device": "Quibbleton tablet"});
    create_ok(&client, &linked, linked_body.clone());
    create_ok(&client, &unlinked, unlinked_body.clone());
    let when = read_ok(&client, &linked)["when"].clone();
    let log = vault.kill();

    // Acknowledged writes were fsynced: after SIGKILL and restart both sessions are there.
    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let client = vault.client();
    let body = read_ok(&client, &linked);
    assert_eq!(body["data"], linked_body);
    assert_eq!(body["when"], when);
    assert_eq!(read_ok(&client, &unlinked)["data"], unlinked_body);
    let (total, rows) = list(&client, "token", &token, "");
    assert_eq!(total, 1);
    assert_eq!(listed_sessions(&rows), BTreeSet::from([linked.clone()]));
    let log = log + &vault.kill();
    let secrets = ["198.51.100.201", "Zanzibar-Browser", "198.51.100.202", "Quibbleton"];
    support::assert_kept_secret(&secrets, "session data", &log, &data_dir);
}
