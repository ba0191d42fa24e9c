//! Shared records over HTTP against real `vaultd` processes: sharing chosen fields of a
//! profile, of an app record or of a session, reading them with nothing but the record id, the
//! current data on every read, bad requests that write nothing, shares that end (at
//! once for readers, then removed by the leader's sweeper), forget-me, audit events,
//! scopes, and the `--max-share-ttl` cap on `vaultd serve`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::cluster::poll;
use support::{
    admin_rows, audit_rows, audit_total, keys, raw, scoped_token, serve_scratch, with_operation, Client, Reply, Vault,
};
use uuid::Uuid;

fn share(client: &Client, mode: &str, id: &str, body: Value) -> Reply {
    client.post(&format!("/v1/sharedrecord/{mode}/{id}"), body)
}

/// Shares and returns the record id, checking the reply's exact shape.
fn share_ok(client: &Client, mode: &str, id: &str, body: Value) -> String {
    let reply = share(client, mode, id, body.clone());
    let reply_body = reply.assert_ok();
    assert_eq!(keys(reply_body), ["record", "status"], "{body}: {reply_body}");
    let record = reply_body["record"].as_str().unwrap_or_else(|| panic!("record is not a string: {reply_body}"));
    Uuid::parse_str(record).unwrap_or_else(|_| panic!("record is not a UUID: {reply_body}"));
    record.to_string()
}

/// `GET /v1/get/{record}` without any access token.
fn read(vault: &Vault, record: &str) -> Reply {
    vault.demo_client().with_token(None).get(&format!("/v1/get/{record}"))
}

fn read_with(client: &Client, record: &str) -> Reply {
    client.with_token(None).get(&format!("/v1/get/{record}"))
}

// ---------------------------------------------------------------------------------------
// Sharing a profile
// ---------------------------------------------------------------------------------------

#[test]
fn a_partner_reads_only_the_shared_profile_fields_with_the_record_id() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({
        "first": "Ada", "last": "Lovelace", "login": "ada", "email": "ada@example.com",
        "phone": "07700900123", "address": {"city": "London"}
    }));

    // Comma-separated string (with spaces), `token` meaning the subject's token, and a
    // field the profile lacks.
    let record =
        share_ok(&client, "login", "ada", json!({"fields": "first, email,token,address,missing", "partner": "Acme"}));
    let reply = read(&vault, &record);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"status": "ok", "data": {
            "first": "Ada", "email": "ada@example.com", "token": token,
            "address": {"city": "London"}, "missing": null
        }})
    );

    // An array of names, by every mode.
    for (mode, id) in
        [("token", token.as_str()), ("email", "ADA@example.com"), ("phone", "+447700900123"), ("login", "ada")]
    {
        let record = share_ok(&client, mode, id, json!({"fields": ["last"], "expiration": "1h"}));
        assert_eq!(read(&vault, &record).body, json!({"status": "ok", "data": {"last": "Lovelace"}}), "{mode}");
    }

    // A form body.
    let reply =
        raw(&client, "POST", "/v1/sharedrecord/login/ada", "application/x-www-form-urlencoded", "fields=first,phone");
    let form_record = reply.assert_ok()["record"].as_str().unwrap().to_string();
    assert_eq!(
        read(&vault, &form_record).body,
        json!({"status": "ok", "data": {"first": "Ada", "phone": "07700900123"}})
    );

    // A read shows the current profile, still limited to the shared fields.
    client.put("/v1/user/login/ada", json!({"first": "Adele", "email": "adele@example.com"})).assert_ok();
    let reply = read(&vault, &record);
    assert_eq!(reply.assert_ok()["data"]["first"], "Adele");
    assert_eq!(reply.body["data"]["email"], "adele@example.com");
    assert_eq!(keys(&reply.body["data"]), ["address", "email", "first", "missing", "token"]);
    client.put(&format!("/v1/user/token/{token}"), json!({"missing": 7})).assert_ok();
    assert_eq!(read(&vault, &record).body["data"]["missing"], 7);

    // An access token on the request changes nothing, wrong or right.
    for client in [client.clone(), client.with_token(Some("WRONG"))] {
        let reply = client.get(&format!("/v1/get/{form_record}"));
        assert_eq!(reply.assert_ok()["data"], json!({"first": "Adele", "phone": "07700900123"}));
    }
}

// ---------------------------------------------------------------------------------------
// Sharing an app record
// ---------------------------------------------------------------------------------------

#[test]
fn an_app_record_is_shared_with_its_name_and_only_while_it_exists() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "first": "Ada"}));
    let shop = format!("/v1/userapp/token/{token}/shop");
    client.post(&shop, json!({"basket": 3, "card": "4111-1111", "first": "from-the-app"})).assert_ok();

    let record =
        share_ok(&client, "login", "ada", json!({"app": "shop", "fields": ["basket", "first", "token", "gone"]}));
    let reply = read(&vault, &record);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"status": "ok", "app": "shop", "data": {"basket": 3, "first": "from-the-app", "token": token, "gone": null}})
    );
    // App names are case-insensitive, as on the app routes.
    let upper = share_ok(&client, "token", &token, json!({"app": "Shop", "fields": "basket"}));
    assert_eq!(read(&vault, &upper).body, json!({"status": "ok", "app": "shop", "data": {"basket": 3}}));

    // The current app record is shown.
    client.put(&shop, json!({"basket": 4})).assert_ok();
    assert_eq!(read(&vault, &record).body["data"]["basket"], 4);

    // An app the subject has no record in is 404; an invalid app name is 400.
    share(&client, "login", "ada", json!({"app": "crm", "fields": "x"})).assert_error(404);
    for bad in [json!("bad name!"), json!("a/b"), json!(42), json!(["shop"])] {
        let reply = share(&client, "login", "ada", json!({"app": bad, "fields": "x"}));
        assert_eq!(reply.status, 400, "app {bad}: {}", reply.body);
        reply.assert_error(400);
    }

    // Once the app record is deleted, its shares show nothing (not the profile instead).
    client.delete(&shop).assert_ok();
    for record in [&record, &upper] {
        let reply = read(&vault, record);
        assert_eq!(reply.status, 404, "a share of a deleted app record: {}", reply.body);
        reply.assert_error(404);
    }
}

// ---------------------------------------------------------------------------------------
// Bad requests
// ---------------------------------------------------------------------------------------

#[test]
fn a_session_of_the_subject_is_shared_with_its_id_and_only_while_it_lasts() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let ada = client.create_user(json!({"login": "ada", "first": "Ada"}));
    client.create_user(json!({"login": "bob"}));
    let session = Uuid::new_v4().to_string();
    let data = json!({"login": "ada", "ip": "203.0.113.7", "agent": "Firefox", "cart": {"items": 3}});
    client.post(&format!("/v1/session/{session}"), data).assert_ok();

    let record = share_ok(&client, "login", "ada", json!({"session": session, "fields": "ip,cart,token,missing"}));
    let reply = read(&vault, &record);
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["data", "session", "status"], "{body}");
    assert_eq!(body["session"], session.as_str());
    assert_eq!(
        body["data"],
        json!({"ip": "203.0.113.7", "cart": {"items": 3}, "token": ada, "missing": null}),
        "only the chosen fields of the session, never the profile's"
    );
    // The current session on every read.
    client.post(&format!("/v1/session/{session}"), json!({"login": "ada", "ip": "198.51.100.1"})).assert_ok();
    assert_eq!(read(&vault, &record).assert_ok()["data"]["ip"], "198.51.100.1");

    // Only the subject's own, live sessions can be shared: another subject's, an
    // unlinked one and an unknown id are not found, and nothing is stored.
    let unlinked = Uuid::new_v4().to_string();
    client.post(&format!("/v1/session/{unlinked}"), json!({"ip": "192.0.2.1"})).assert_ok();
    for other in [&session, &unlinked, &Uuid::new_v4().to_string()] {
        let mode_id = if other == &session { ("login", "bob") } else { ("login", "ada") };
        share(&client, mode_id.0, mode_id.1, json!({"session": other, "fields": "ip"})).assert_error(404);
    }
    // Bad input: not a UUID, and a session and an app at once.
    let events = audit_total(&client);
    for body in [
        json!({"session": "not-a-uuid", "fields": "ip"}),
        json!({"session": 7, "fields": "ip"}),
        json!({"session": session, "app": "shop", "fields": "ip"}),
        json!({"session": session}),
    ] {
        share(&client, "login", "ada", body.clone()).assert_error(400);
    }
    assert_eq!(audit_total(&client), events, "a refused share wrote an audit event");

    // Deleting the session ends what was shared from it.
    client.delete(&format!("/v1/session/{session}")).assert_ok();
    read(&vault, &record).assert_error(404);
}

#[test]
fn bad_share_requests_are_400_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "ada", "first": "Ada"}));
    let events = audit_total(&client);
    let too_many: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
    let long_field = "f".repeat(129);
    let bad_bodies = [
        json!({}),
        json!({"partner": "Acme"}),
        json!({"fields": ""}),
        json!({"fields": " "}),
        json!({"fields": ","}),
        json!({"fields": "first,"}),
        json!({"fields": []}),
        json!({"fields": [""]}),
        json!({"fields": [1]}),
        json!({"fields": ["first", null]}),
        json!({"fields": null}),
        json!({"fields": 1}),
        json!({"fields": {"first": true}}),
        json!({"fields": too_many}),
        json!({"fields": too_many.join(",")}),
        json!({"fields": [long_field]}),
        json!({"fields": "first", "partner": "p".repeat(129)}),
        json!({"fields": "first", "partner": 7}),
        json!({"fields": "first", "partner": "Acme\nLtd"}),
        json!({"fields": "first", "partner": ["Acme"]}),
        json!({"fields": "first", "expiration": "1w"}),
        json!({"fields": "first", "expiration": "-1d"}),
        json!({"fields": "first", "expiration": "1D"}),
        json!({"fields": "first", "expiration": "1d "}),
        json!({"fields": "first", "expiration": true}),
        json!({"fields": "first", "app": "bad name!"}),
        json!([]),
        json!("first"),
    ];
    for body in bad_bodies {
        let reply = share(&client, "login", "ada", body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        reply.assert_error(400);
    }
    for (content_type, body) in [
        ("application/json", ""),
        ("application/json", "{\"fields\":"),
        ("application/json", "fields=first"),
        ("application/x-www-form-urlencoded", ""),
        ("application/x-www-form-urlencoded", "partner=Acme"),
        ("application/x-www-form-urlencoded", "fields=first&expiration=soon"),
    ] {
        let reply = raw(&client, "POST", "/v1/sharedrecord/login/ada", content_type, body);
        assert_eq!(reply.status, 400, "{content_type} {body:?}: {}", reply.body);
        reply.assert_error(400);
    }
    share(&client, "shoe", "ada", json!({"fields": "first"})).assert_error(400);
    share(&client, "token", "not-a-uuid", json!({"fields": "first"})).assert_error(400);
    assert_eq!(audit_total(&client), events, "a refused share left an audit event");

    // The largest accepted: 64 fields, a 128-character partner.
    let most: Vec<String> = (0..64).map(|i| format!("f{i}")).collect();
    let record = share_ok(&client, "login", "ada", json!({"fields": most, "partner": "p".repeat(128)}));
    let data = read(&vault, &record).assert_ok()["data"].clone();
    assert_eq!(data.as_object().unwrap().len(), 64);
    assert!(data.as_object().unwrap().values().all(Value::is_null), "{data}");
}

#[test]
fn unknown_and_forgotten_subjects_cannot_be_shared() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "email": "ada@example.com"}));
    for (mode, id) in [
        ("login", "nobody".to_string()),
        ("email", "nobody@example.com".to_string()),
        ("phone", "07700900999".to_string()),
        ("custom", "nothing".to_string()),
        ("token", Uuid::new_v4().to_string()),
    ] {
        share(&client, mode, &id, json!({"fields": "login"})).assert_error(404);
    }
    let record = share_ok(&client, "login", "ada", json!({"fields": "login,email"}));
    assert_eq!(read(&vault, &record).assert_ok()["data"]["login"], "ada");

    // Forget-me ends every share of the subject, and no new one can be made.
    client.delete("/v1/user/login/ada").assert_ok();
    read(&vault, &record).assert_error(404);
    share(&client, "token", &token, json!({"fields": "login"})).assert_error(404);
    share(&client, "login", "ada", json!({"fields": "login"})).assert_error(404);
    share(&client, "email", "ada@example.com", json!({"fields": "login"})).assert_error(404);
}

#[test]
fn record_ids_that_are_malformed_or_unknown_are_refused() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada"}));
    let session = Uuid::new_v4().to_string();
    client.post(&format!("/v1/session/{session}"), json!({"login": "ada"})).assert_ok();
    let events = audit_total(&client);
    for malformed in ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"] {
        read(&vault, malformed).assert_error(400);
    }
    // Neither a random id, the subject's token, a session id nor the access token is a record.
    for unknown in [Uuid::new_v4().to_string(), token, session] {
        read(&vault, &unknown).assert_error(404);
    }
    read(&vault, "DEMO").assert_error(400);
    // Anyone may ask: a miss is answered without a write, so it cannot fill the disk.
    assert_eq!(audit_total(&client), events, "a miss wrote an audit event (and a log entry)");
    let record = share_ok(&client, "login", "ada", json!({"fields": "login"}));
    read(&vault, &record).assert_ok();
    assert_eq!(audit_total(&client), events + 2, "the share and the read it allowed are audited");
}

// ---------------------------------------------------------------------------------------
// Ending
// ---------------------------------------------------------------------------------------

#[test]
fn an_ended_share_is_unreadable_before_any_sweep() {
    // The sweeper runs once at start and then hourly: what ends here is never swept.
    let vault = Vault::demo_with(&["--expiration-sweep-secs", "3600"]);
    let client = vault.demo_client();
    client.create_user(json!({"login": "ada", "first": "Ada"}));
    let short = share_ok(&client, "login", "ada", json!({"fields": "first", "expiration": "1s"}));
    let long = share_ok(&client, "login", "ada", json!({"fields": "first", "expiration": "1d"}));
    poll("the 1s share to end", Duration::from_secs(30), || (read(&vault, &short).status == 404).then_some(()));
    read(&vault, &short).assert_error(404);
    assert_eq!(read(&vault, &long).assert_ok()["data"], json!({"first": "Ada"}));
    assert!(with_operation(&admin_rows(&client), "share-expire").is_empty(), "nothing was swept");
}

#[test]
fn the_sweeper_removes_ended_shares_with_a_system_event() {
    let vault = Vault::demo_with(&["--expiration-sweep-secs", "1"]);
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "first": "Ada"}));
    let other = client.create_user(json!({"login": "bob"}));
    let short = share_ok(&client, "login", "ada", json!({"fields": "first", "expiration": "1s"}));
    let long = share_ok(&client, "login", "ada", json!({"fields": "first", "expiration": "30d"}));
    let bobs = share_ok(&client, "login", "bob", json!({"fields": "login", "expiration": "2h"}));

    let events = poll("the sweeper to remove the ended share", Duration::from_secs(30), || {
        let rows = audit_rows(&client, &token);
        let events: Vec<Value> = with_operation(&rows, "share-expire").into_iter().cloned().collect();
        (!events.is_empty()).then_some(events)
    });
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["actor"], "system", "{}", events[0]);
    assert_eq!(events[0]["result"], "ok", "{}", events[0]);
    assert_eq!(events[0]["subject"], token.as_str(), "{}", events[0]);
    read(&vault, &short).assert_error(404);
    assert_eq!(read(&vault, &long).assert_ok()["data"], json!({"first": "Ada"}));
    assert_eq!(read(&vault, &bobs).assert_ok()["data"], json!({"login": "bob"}));
    assert!(with_operation(&audit_rows(&client, &other), "share-expire").is_empty());
    assert_eq!(with_operation(&admin_rows(&client), "share-expire").len(), 1);
}

// ---------------------------------------------------------------------------------------
// Audit, logs, disk
// ---------------------------------------------------------------------------------------

#[test]
fn shares_and_reads_are_audited_and_record_ids_are_kept_secret() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "first": "Ada"}));
    client.post(&format!("/v1/userapp/token/{token}/shop"), json!({"basket": 3})).assert_ok();
    let with_partner = share_ok(&client, "login", "ada", json!({"fields": "first", "partner": "Acme Insurance Ltd"}));
    let without_partner = share_ok(&client, "token", &token, json!({"fields": "basket", "app": "shop"}));
    read(&vault, &with_partner).assert_ok();
    read(&vault, &with_partner).assert_ok();
    read(&vault, &without_partner).assert_ok();

    let rows = audit_rows(&client, &token);
    let created = with_operation(&rows, "share-create");
    assert_eq!(created.len(), 2, "{rows:#?}");
    for event in &created {
        assert_eq!(event["result"], "ok", "{event}");
        assert_eq!(event["subject"], token.as_str(), "{event}");
    }
    // Newest first: the app share, then the partner's.
    assert_eq!(created[1]["purpose"], "shared with Acme Insurance Ltd", "{}", created[1]);
    assert_eq!(created[1]["mode"], "login", "{}", created[1]);
    assert_eq!(created[0]["app"], "shop", "{}", created[0]);
    assert!(
        created[0]["purpose"].as_str().is_none_or(|p| !p.starts_with("shared with")),
        "no partner, no partner in the purpose: {}",
        created[0]
    );
    let reads = with_operation(&rows, "share-read");
    assert_eq!(reads.len(), 3, "{rows:#?}");
    for event in &reads {
        assert_eq!(event["actor"], "shared-record", "{event}");
        assert_eq!(event["result"], "ok", "{event}");
        assert_eq!(event["subject"], token.as_str(), "{event}");
    }
    assert_eq!(client.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);

    // The record id is a credential: not in the audit trail, the log, or on disk.
    let text = serde_json::to_string(&admin_rows(&client)).unwrap();
    let log = vault.log();
    for record in [&with_partner, &without_partner] {
        assert!(!text.contains(record.as_str()), "a record id is in the audit trail");
    }
    support::assert_kept_secret(&[&with_partner, &without_partner], "record id", &log, &vault.data_dir);
}

// ---------------------------------------------------------------------------------------
// Access tokens
// ---------------------------------------------------------------------------------------

#[test]
fn sharing_needs_users_write_and_the_scope_that_reads_what_is_shared() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let token = root.create_user(json!({"login": "ada", "first": "Ada"}));
    root.post(&format!("/v1/userapp/token/{token}/shop"), json!({"basket": 3})).assert_ok();
    let session = Uuid::new_v4().to_string();
    root.post(&format!("/v1/session/{session}"), json!({"login": "ada", "ip": "203.0.113.9"})).assert_ok();
    let client = |name: &str, scopes: &[&str]| root.with_token(Some(&scoped_token(&root, name, scopes)));
    let reader = client("reader", &["users:read"]);
    let writer = client("writer", &["users:write"]);
    let sharer = client("sharer", &["users:write", "users:read"]);
    let shop_writer = client("shop", &["users:write", "apps:shop:read"]);
    let shop_only = client("shop-only", &["apps:shop:*"]);
    let events = audit_total(&root);

    for (label, client, body, code) in [
        ("missing", root.with_token(None), json!({"fields": "first"}), 401),
        ("wrong", root.with_token(Some("WRONG")), json!({"fields": "first"}), 401),
        ("users:read", reader.clone(), json!({"fields": "first"}), 403),
        // Writing alone must not read: the writer could read every share it makes.
        ("users:write", writer.clone(), json!({"fields": "first"}), 403),
        ("users:write, session", writer.clone(), json!({"fields": "ip", "session": session}), 403),
        ("users:write + apps:shop:read", shop_writer.clone(), json!({"fields": "first"}), 403),
        ("apps:shop:*", shop_only.clone(), json!({"fields": "basket", "app": "shop"}), 403),
        ("users:write, app", writer.clone(), json!({"fields": "basket", "app": "shop"}), 403),
        ("users:write, App", writer.clone(), json!({"fields": "basket", "app": "SHOP"}), 403),
        ("users:write + users:read, app", sharer.clone(), json!({"fields": "basket", "app": "shop"}), 403),
    ] {
        let reply = share(&client, "login", "ada", body);
        assert_eq!(reply.status, code, "{label}: {}", reply.body);
        reply.assert_error(code);
    }
    // Refused for the caller's scopes before anything was looked up or written.
    assert_eq!(audit_total(&root), events, "a refused share left an audit event");

    // users:write with users:read shares the profile and sessions; with apps:shop:read
    // the shop record. An empty app names none, as an empty session does.
    let profile = share_ok(&sharer, "login", "ada", json!({"fields": "first", "app": ""}));
    assert_eq!(read_with(&writer, &profile).assert_ok()["data"], json!({"first": "Ada"}));
    let shared_session = share_ok(&sharer, "login", "ada", json!({"fields": "ip", "session": session}));
    assert_eq!(read_with(&writer, &shared_session).assert_ok()["data"], json!({"ip": "203.0.113.9"}));
    let app = share_ok(&shop_writer, "login", "ada", json!({"fields": "basket", "app": "shop"}));
    assert_eq!(read_with(&reader, &app).body, json!({"status": "ok", "app": "shop", "data": {"basket": 3}}));
}

#[test]
fn a_partner_name_of_128_characters_is_accepted_whatever_the_script() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "first": "Ada"}));
    // 128 characters, 256 bytes in UTF-8.
    let partner = "é".repeat(128);
    let reply = share(&client, "login", "ada", json!({"fields": "first", "partner": partner}));
    assert_eq!(reply.status, 200, "a 128-character partner name was refused: {}", reply.body);
    let record = reply.assert_ok()["record"].as_str().unwrap().to_string();
    assert_eq!(read(&vault, &record).assert_ok()["data"], json!({"first": "Ada"}));
    let rows = audit_rows(&client, &token);
    assert_eq!(with_operation(&rows, "share-create")[0]["purpose"], format!("shared with {partner}"));
    // 129 characters are too many.
    share(&client, "login", "ada", json!({"fields": "first", "partner": "é".repeat(129)})).assert_error(400);
}

// ---------------------------------------------------------------------------------------
// --max-share-ttl (vaultd serve only; demo has no such flag)
// ---------------------------------------------------------------------------------------

#[test]
fn max_share_ttl_caps_every_share_on_serve() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault =
        Vault::hsm(&hsm, &data_dir, &["--hsm-create-key", "--max-share-ttl", "2s", "--expiration-sweep-secs", "3600"]);
    let client = vault.client();
    client.create_user(json!({"login": "ada", "first": "Ada"}));
    let records: Vec<(String, Value)> = [
        json!({"fields": "first"}),
        json!({"fields": "first", "expiration": "30d"}),
        json!({"fields": "first", "expiration": "1h"}),
    ]
    .into_iter()
    .map(|body| (share_ok(&client, "login", "ada", body.clone()), body))
    .collect();
    for (record, body) in &records {
        assert_eq!(read_with(&client, record).assert_ok()["data"], json!({"first": "Ada"}), "{body}");
    }
    for (record, body) in &records {
        poll(&format!("share {body} to end at the 2s cap"), Duration::from_secs(30), || {
            (read_with(&client, record).status == 404).then_some(())
        });
    }
}

#[test]
fn shares_survive_a_restart_of_serve() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let client = vault.client();
    let token = client.create_user(json!({"login": "ada", "first": "Ada"}));
    client.post(&format!("/v1/userapp/token/{token}/shop"), json!({"basket": 3})).assert_ok();
    let profile = share_ok(&client, "login", "ada", json!({"fields": "first,token", "partner": "Acme"}));
    let app = share_ok(&client, "login", "ada", json!({"fields": ["basket"], "app": "shop"}));
    let log = vault.kill();

    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let client = vault.client();
    assert_eq!(read_with(&client, &profile).body, json!({"status": "ok", "data": {"first": "Ada", "token": token}}));
    assert_eq!(read_with(&client, &app).body, json!({"status": "ok", "app": "shop", "data": {"basket": 3}}));
    let log = log + &vault.kill();
    support::assert_kept_secret(&[&profile, &app], "record id", &log, &data_dir);
}
