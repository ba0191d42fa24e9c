//! HTTP API conformance: every route of the Databunker-v1-compatible API and Strongroom's
//! `/v1/sys/...` additions, against a real `vaultd demo` process. Each test checks the
//! exact response shape on success, and on bad input a JSON error envelope with the
//! fitting 4xx and no half-applied write.

mod support;

use std::collections::BTreeSet;
use std::sync::Barrier;

use serde_json::{json, Value};
use support::{
    access_token, admin_rows, assert_uuid, audit_rows, keys, operations, raw, subject_client, with_operation, Client,
    Reply, Vault,
};
use uuid::Uuid;

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn form(client: &Client, method: &str, path: &str, body: &str) -> Reply {
    raw(client, method, path, "application/x-www-form-urlencoded", body)
}

fn json_body(client: &Client, method: &str, path: &str, body: &str) -> Reply {
    raw(client, method, path, "application/json", body)
}

/// Asserts the error envelope and that the message mentions `needle`.
fn assert_error_naming(reply: &Reply, status: u16, needle: &str) {
    reply.assert_error(status);
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains(needle), "message {message:?} should name {needle:?}");
}

/// The total number of audit events and the newest one.
fn audit_head(client: &Client) -> (u64, Value) {
    let reply = client.get("/v1/audit/admin?limit=1");
    let body = reply.assert_ok();
    (body["total"].as_u64().unwrap(), body["rows"][0].clone())
}

fn user_path(mode: &str, id: &str) -> String {
    format!("/v1/user/{mode}/{id}")
}

// ---------------------------------------------------------------------------------------
// POST /v1/user
// ---------------------------------------------------------------------------------------

#[test]
fn quick_start_sequence_creates_and_reads_by_login() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let created = json_body(&client, "POST", "/v1/user", r#"{"first":"John","last":"Doe","login":"john","email":""}"#);
    let body = created.assert_ok();
    assert_eq!(keys(body), ["status", "token"], "{body}");
    let token = assert_uuid(&body["token"]).to_string();

    let read = client.get("/v1/user/login/john");
    assert_eq!(
        read.body,
        json!({"status": "ok", "token": token, "data": {"first": "John", "last": "Doe", "login": "john", "email": ""}})
    );
    assert_eq!(read.status, 200);
    // The stored profile is returned as given, empty email included, and by token too.
    assert_eq!(client.get(&user_path("token", &token)).body, read.body);
}

#[test]
fn anonymous_creation_is_off_unless_enabled_and_grants_nothing_else() {
    let vault = Vault::demo();
    let anonymous = vault.demo_client().with_token(None);
    anonymous.post("/v1/user", json!({"login": "ann"})).assert_error(401);

    let vault = Vault::demo_with(&["--enable-anonymous-create"]);
    let root = vault.demo_client();
    let anonymous = root.with_token(None);
    let reply = anonymous.post("/v1/user", json!({"login": "ann"}));
    let token = assert_uuid(&reply.assert_ok()["token"]).to_string();
    let rows = audit_rows(&root, &token);
    assert_eq!((rows[0]["operation"].as_str(), rows[0]["actor"].as_str()), (Some("user-create"), Some("anonymous")));
    // Only creation: reading, and a wrong token, are refused as before.
    anonymous.get("/v1/user/login/ann").assert_error(401);
    root.with_token(Some("wrong")).post("/v1/user", json!({"login": "bob"})).assert_error(401);
    let (_, reader) = access_token(&root, "reader", &["users:read"]);
    root.with_token(Some(&reader)).post("/v1/user", json!({"login": "bob"})).assert_error(403);
    root.get("/v1/user/login/bob").assert_error(404);

    // A duplicate looks like a creation to an anonymous caller (and stays refused), so a
    // public form cannot tell which addresses are registered; staff still get the 409.
    root.post("/v1/user", json!({"login": "cy", "email": "cy@example.com"})).assert_ok();
    let fresh = anonymous.post("/v1/user", json!({"login": "dee", "email": "dee@example.com"}));
    let taken = anonymous.post("/v1/user", json!({"login": "eve", "email": "cy@example.com"}));
    assert_eq!(keys(fresh.assert_ok()), keys(taken.assert_ok()));
    let decoy = assert_uuid(&taken.body["token"]).to_string();
    root.get(&format!("/v1/user/token/{decoy}")).assert_error(404);
    root.get("/v1/user/login/eve").assert_error(404);
    root.post("/v1/user", json!({"login": "fay", "email": "cy@example.com"})).assert_error(409);
    let refused = admin_rows(&root).into_iter().filter(|row| row["result"] == "rejected: duplicate email").count();
    assert_eq!(refused, 2, "both refused creations are audited");
}

#[test]
fn a_subject_token_reaches_its_own_subject_and_nothing_else() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "email": "ann@example.com"}));
    let bob = root.create_user(json!({"login": "bob"}));
    root.post("/v1/userapp/login/bob/shop", json!({"card": "4111"})).assert_ok();

    let created = root.post("/v1/sys/tokens", json!({"name": "ann-self", "subject": ann}));
    let body = created.assert_ok();
    assert_eq!(body["subject"], json!(ann));
    assert_eq!(body["scopes"], json!(["users:*", "apps:*:*"]));
    let own = root.with_token(body["token"].as_str());

    // Her own data, by any identifier.
    assert_eq!(own.get("/v1/user/email/ANN@example.com").assert_ok()["token"], json!(ann));
    assert_eq!(own.put("/v1/user/login/ann", json!({"first": "Ann"})).assert_ok()["result"], "request-created");
    // Creating app data has no request form, so while changes go to the DPO it is refused.
    assert_error_naming(&own.post("/v1/userapp/login/ann/shop", json!({"card": "5500"})), 403, "request");
    let session = Uuid::new_v4();
    own.post(&format!("/v1/session/{session}"), json!({"login": "ann", "ip": "203.0.113.7"})).assert_ok();
    own.get(&format!("/v1/session/{session}")).assert_ok();

    // Nobody else's, whichever way it is named, and nothing that is not about her.
    for path in ["/v1/user/login/bob".to_string(), format!("/v1/user/token/{bob}"), "/v1/userapp/login/bob/shop".into()]
    {
        own.get(&path).assert_error(403);
    }
    own.put("/v1/user/login/bob", json!({"first": "Eve"})).assert_error(403);
    own.delete("/v1/user/login/bob").assert_error(403);
    own.get("/v1/user/login/nobody").assert_error(403);
    own.post("/v1/user", json!({"login": "eve"})).assert_error(403);
    own.post(&format!("/v1/session/{}", Uuid::new_v4()), json!({"ip": "203.0.113.8"})).assert_error(403);
    own.post(&format!("/v1/session/{}", Uuid::new_v4()), json!({"login": "bob"})).assert_error(403);
    own.get("/v1/audit/admin").assert_error(403);
    own.post("/v1/sys/tokens", json!({"name": "more", "scopes": ["users:read"]})).assert_error(403);
    let bobs_session = Uuid::new_v4();
    root.post(&format!("/v1/session/{bobs_session}"), json!({"login": "bob"})).assert_ok();
    own.get(&format!("/v1/session/{bobs_session}")).assert_error(404);
    // Deleting a session that is not one's own answers as for one that does not exist:
    // ok, and nothing is deleted.
    own.delete(&format!("/v1/session/{bobs_session}")).assert_ok();
    own.post(&format!("/v1/session/{bobs_session}"), json!({"login": "ann"})).assert_error(409);
    assert_eq!(root.get("/v1/user/login/bob").assert_ok()["data"], json!({"login": "bob"}));
    root.get(&format!("/v1/session/{bobs_session}")).assert_ok();

    // A subject token takes no scopes, and needs an active subject.
    let reply = root.post("/v1/sys/tokens", json!({"name": "x", "subject": ann, "scopes": ["users:read"]}));
    assert_error_naming(&reply, 400, "no scopes");
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": Uuid::new_v4()})).assert_error(404);
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": "ann"})).assert_error(400);
    let listed = root.get("/v1/sys/tokens").assert_ok()["tokens"].clone();
    assert_eq!(listed[0]["subject"], json!(ann));
}

/// A subject token for `login`, made with the root client.
fn client_of(root: &Client, login: &str) -> Client {
    let subject = root.get(&format!("/v1/user/login/{login}")).assert_ok()["token"].clone();
    subject_client(root, subject.as_str().unwrap())
}

#[test]
fn a_subjects_own_changes_become_requests_that_a_dpo_approves_or_cancels() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "first": "Ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = client_of(&root, "ann");
    // The app names of every subject are not the subject's own data.
    own.get("/v1/userapps").assert_error(403);
    assert_eq!(own.get("/v1/userapp/login/ann").assert_ok()["apps"], json!(["shop"]));

    let filed = |reply: Reply| reply.assert_ok()["rtoken"].as_str().unwrap().to_string();
    let rename = filed(own.put("/v1/user/login/ann", json!({"first": "Annie"})));
    let moved = filed(own.put("/v1/userapp/login/ann/shop", json!({"city": "York"})));
    assert_eq!(root.get("/v1/user/login/ann").assert_ok()["data"]["first"], "Ann", "nothing changed yet");

    // The subject sees its own requests; a DPO sees the queue with the change.
    let mine = own.get("/v1/requests/login/ann").assert_ok().clone();
    assert_eq!(mine["total"], 2);
    let (_, dpo) = access_token(&root, "dpo", &["requests:admin"]);
    let dpo = root.with_token(Some(&dpo));
    let queue = dpo.get("/v1/requests?status=open").assert_ok().clone();
    assert_eq!(queue["total"], 2);
    let request = dpo.get(&format!("/v1/request/{rename}")).assert_ok()["request"].clone();
    assert_eq!((request["action"].as_str(), request["token"].as_str()), (Some("change-profile"), Some(ann.as_str())));
    assert_eq!(
        (request["original"]["first"].as_str(), request["change"]["first"].as_str()),
        (Some("Ann"), Some("Annie"))
    );

    // Approval applies the change once; cancelling leaves the data alone.
    dpo.post(&format!("/v1/request/{rename}"), json!({"reason": "verified"})).assert_ok();
    assert_eq!(root.get("/v1/user/login/ann").assert_ok()["data"]["first"], "Annie");
    dpo.post(&format!("/v1/request/{rename}"), json!({})).assert_error(409);
    own.delete(&format!("/v1/request/{moved}")).assert_ok();
    assert_eq!(root.get("/v1/userapp/login/ann/shop").assert_ok()["data"]["city"], "Leeds");
    let closed = dpo.get("/v1/requests?status=open").assert_ok()["total"].clone();
    assert_eq!(closed, 0);

    // Forget-me too: approved, the subject is gone and the request says so.
    let forget = filed(own.delete("/v1/user/login/ann"));
    own.post(&format!("/v1/request/{forget}"), json!({})).assert_error(403);
    dpo.post(&format!("/v1/request/{forget}"), json!({})).assert_ok();
    assert_eq!(root.get(&format!("/v1/user/token/{ann}")).assert_ok()["data"], json!({}));
    assert_eq!(dpo.get(&format!("/v1/request/{forget}")).assert_ok()["request"]["status"], "approved");
    let ops = operations(&audit_rows(&root, &ann)).join(",");
    assert!(ops.starts_with("request-read,user-read,user-forget,request-create"), "{ops}");

    // Bad input and other people's requests.
    dpo.get("/v1/request/nope").assert_error(400);
    dpo.get(&format!("/v1/request/{}", Uuid::new_v4())).assert_error(404);
    dpo.get("/v1/requests?status=maybe").assert_error(400);
    root.create_user(json!({"login": "bob"}));
    let bob = client_of(&root, "bob");
    bob.get(&format!("/v1/request/{moved}")).assert_error(404);
    bob.delete(&format!("/v1/request/{moved}")).assert_error(404);
    let (_, writer) = access_token(&root, "writer", &["users:write"]);
    root.with_token(Some(&writer)).get("/v1/requests").assert_error(403);
}

#[test]
fn a_write_only_token_merges_but_cannot_patch_its_way_to_reading() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    root.create_user(json!({"login": "ann", "first": "Ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"basket": 1})).assert_ok();
    let (_, writer) = access_token(&root, "writer", &["users:write", "apps:shop:write"]);
    let writer = root.with_token(Some(&writer));
    // A `test` that succeeds or fails would tell the value; so would a remove of a path
    // that may not exist.
    let probe = json!([{"op": "test", "path": "/first", "value": "Ann"}]);
    writer.put("/v1/user/login/ann", probe.clone()).assert_error(403);
    writer.put("/v1/userapp/login/ann/shop", json!([{"op": "test", "path": "/basket", "value": 1}])).assert_error(403);
    writer.put("/v1/user/login/ann", json!([{"op": "remove", "path": "/middle"}])).assert_error(403);
    // Merges need no read, and a token that may read may patch.
    writer.put("/v1/user/login/ann", json!({"city": "Leeds"})).assert_ok();
    writer.put("/v1/userapp/login/ann/shop", json!({"basket": 2})).assert_ok();
    root.put("/v1/user/login/ann", probe).assert_ok();
}

#[test]
fn with_direct_subject_changes_a_subject_token_changes_its_own_data() {
    let vault = Vault::demo_with(&["--subject-changes", "direct"]);
    let root = vault.demo_client();
    root.create_user(json!({"login": "ann"}));
    let own = client_of(&root, "ann");
    own.put("/v1/user/login/ann", json!({"first": "Ann"})).assert_ok();
    assert_eq!(root.get("/v1/user/login/ann").assert_ok()["data"]["first"], "Ann");
    own.delete("/v1/user/login/ann").assert_ok();
    root.get("/v1/user/login/ann").assert_error(404);
}

#[test]
fn create_accepts_a_form_encoded_body() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let reply =
        form(&client, "POST", "/v1/user", "first=Ann+Marie&last=O%27Brien&login=annm&email=&phone=07700+900321");
    let token = assert_uuid(&reply.assert_ok()["token"]).to_string();
    let expected =
        json!({"first": "Ann Marie", "last": "O'Brien", "login": "annm", "email": "", "phone": "07700 900321"});
    assert_eq!(client.get("/v1/user/login/annm").assert_ok()["data"], expected);
    assert_eq!(client.get("/v1/user/phone/+447700900321").assert_ok()["token"], token.as_str());
    // The empty email of the form is absent, so another user may also leave it empty.
    form(&client, "POST", "/v1/user", "login=other&email=").assert_ok();

    // A form with no fields, or a field without a name, is refused.
    form(&client, "POST", "/v1/user", "").assert_error(400);
    form(&client, "POST", "/v1/user", "=nameless").assert_error(400);
    // A JSON object sent with a form content type (`curl -d`) is read as JSON.
    let reply = form(&client, "POST", "/v1/user", r#"{"login":"curly","age":42}"#);
    let token = reply.assert_ok()["token"].as_str().unwrap().to_string();
    assert_eq!(client.get(&user_path("token", &token)).assert_ok()["data"], json!({"login": "curly", "age": 42}));
}

#[test]
fn empty_identifiers_are_absent_and_never_duplicates() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let empty = json!({"login": "", "email": "", "phone": "", "custom": ""});
    let a = client.create_user(json!({"first": "A", "login": "a", "email": "", "phone": "", "custom": ""}));
    let b = client.create_user(json!({"first": "B", "login": "b", "email": "", "phone": "", "custom": ""}));
    let c = client.create_user(json!({"first": "C", "email": "   ", "login": null, "custom": "c"}));
    assert_ne!(a, b);
    assert_ne!(b, c);
    let mut profile_a = empty.clone();
    profile_a["first"] = json!("A");
    profile_a["login"] = json!("a");
    assert_eq!(client.get(&user_path("token", &a)).assert_ok()["data"], profile_a);
    // Empty identifiers cannot be looked up: that is a bad request, not a match.
    for mode in ["login", "email", "phone", "custom"] {
        assert_error_naming(&client.get(&user_path(mode, "%20")), 400, mode);
    }
}

#[test]
fn duplicate_identifiers_are_409_naming_the_field_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let first = json!({
        "first": "Alice", "login": "alice", "email": "A@X.com ", "phone": "+44 7700 900123", "custom": "crm-77"
    });
    let alice = client.create_user(first.clone());
    let cases = [
        ("login", json!({"login": "alice", "email": "fresh1@x.com"})),
        ("login", json!({"login": " alice ", "email": "fresh1b@x.com"})),
        ("email", json!({"login": "fresh2", "email": "a@x.com"})),
        ("email", json!({"login": "fresh3", "email": "  A@X.COM"})),
        ("phone", json!({"login": "fresh4", "phone": "07700900123"})),
        ("phone", json!({"login": "fresh5", "phone": "+447700900123"})),
        ("custom", json!({"login": "fresh6", "custom": "crm-77"})),
    ];
    for (field, profile) in cases {
        let reply = client.post("/v1/user", profile.clone());
        assert_error_naming(&reply, 409, field);

        // The rejection is audited against the would-be subject, which does not exist.
        let (_, newest) = audit_head(&client);
        assert_eq!(newest["operation"], "user-create", "{newest}");
        assert_eq!(newest["result"], format!("rejected: duplicate {field}"), "{newest}");
        let ghost = newest["subject"].as_str().unwrap().to_string();
        assert_ne!(ghost, alice);
        client.get(&user_path("token", &ghost)).assert_error(404);
        // The refused profile's other identifier was not indexed.
        let login = profile["login"].as_str().unwrap().trim();
        if login != "alice" {
            client.get(&user_path("login", login)).assert_error(404);
        } else {
            client.get(&user_path("email", profile["email"].as_str().unwrap())).assert_error(404);
        }
    }
    // Alice is untouched and still found by every identifier.
    for (mode, id) in [("login", "alice"), ("email", "a@x.com"), ("phone", "07700900123"), ("custom", "crm-77")] {
        let reply = client.get(&user_path(mode, id));
        assert_eq!(reply.assert_ok()["token"], alice.as_str(), "{mode}");
        assert_eq!(reply.body["data"], first);
    }
}

#[test]
fn malformed_create_bodies_are_400_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let (events_before, _) = audit_head(&client);
    let bad_json = [
        r#"{"login":"x""#,
        r#"{"login": "x",}"#,
        "not json",
        r#"[{"login":"x"}]"#,
        "[]",
        r#""a string""#,
        "42",
        "null",
        "true",
        "",
        "   \n",
        "{}",
        r#"{"login": {"nested": "object"}}"#,
        r#"{"login": ["list"]}"#,
        r#"{"email": true}"#,
        r#"{"phone": {"cc": 44}}"#,
        r#"{"custom": [1]}"#,
    ];
    for body in bad_json {
        let reply = json_body(&client, "POST", "/v1/user", body);
        assert_eq!(reply.status, 400, "body {body:?}: {}", reply.body);
        reply.assert_error(400);
    }
    // Nesting deeper than the parser allows is refused, not a crash.
    let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    json_body(&client, "POST", "/v1/user", &deep).assert_error(400);
    // Without any Content-Type, too.
    client.send(client.request("POST", "/v1/user").body("{oops")).assert_error(400);
    client.send(client.request("POST", "/v1/user").body("")).assert_error(400);
    // The non-string identifier is named.
    assert_error_naming(&client.post("/v1/user", json!({"login": {"a": 1}})), 400, "login");

    // Nothing was written: no audit event, and the identifiers resolve to no one.
    let (events_after, _) = audit_head(&client);
    assert_eq!(events_after, events_before, "a refused body must not reach the command log");
    client.get("/v1/user/login/x").assert_error(404);
}

#[test]
fn oversized_bodies_are_413() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let (events_before, _) = audit_head(&client);
    let filler = "x".repeat(MIB);
    let oversized = format!(r#"{{"login":"big","note":"{filler}"}}"#);
    assert!(oversized.len() > MIB);

    // With a Content-Length that announces it.
    let reply = json_body(&client, "POST", "/v1/user", &oversized);
    assert_error_naming(&reply, 413, "exceeds");
    // Chunked, so the limit is only discovered while reading.
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(oversized.clone().into_bytes()));
    let reply =
        client.send(client.request("POST", "/v1/user").header("Content-Type", "application/json").body(chunked));
    reply.assert_error(413);
    // PUT and app routes share the limit.
    let token = client.create_user(json!({"login": "small"}));
    json_body(&client, "PUT", &user_path("token", &token), &oversized).assert_error(413);
    json_body(&client, "POST", &format!("/v1/userapp/token/{token}/shop"), &oversized).assert_error(413);
    assert_eq!(client.get(&user_path("token", &token)).assert_ok()["data"], json!({"login": "small"}));
    client.get("/v1/user/login/big").assert_error(404);

    // Just under the limit is fine.
    let fits = format!(r#"{{"login":"fits","note":"{}"}}"#, "y".repeat(MIB - 64));
    assert!(fits.len() <= MIB);
    json_body(&client, "POST", "/v1/user", &fits).assert_ok();
    let (events_after, _) = audit_head(&client);
    // Only the small user's creation, the two reads and the fitting creation were audited.
    assert_eq!(events_after, events_before + 4);
}

// ---------------------------------------------------------------------------------------
// GET/PUT/DELETE /v1/user/{mode}/{id}
// ---------------------------------------------------------------------------------------

#[test]
fn get_resolves_every_mode_with_normalised_identifiers() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let profile = json!({
        "first": "Bob", "login": "bob", "email": "Bob.Smith@Example.COM", "phone": "+44 7700 900456",
        "custom": "ext-42", "address": {"city": "Leeds"}
    });
    let token = client.create_user(profile.clone());
    let lookups = [
        ("token", token.as_str()),
        ("login", "bob"),
        ("email", "bob.smith@example.com"),
        ("email", "BOB.SMITH@EXAMPLE.COM"),
        ("email", "%20Bob.Smith@Example.COM%20"),
        ("phone", "07700900456"),
        ("phone", "+447700900456"),
        ("phone", "+44%207700%20900456"),
        ("custom", "ext-42"),
    ];
    for (mode, id) in lookups {
        let reply = client.get(&user_path(mode, id));
        assert_eq!(reply.status, 200, "{mode}/{id}: {}", reply.body);
        assert_eq!(reply.body, json!({"status": "ok", "token": token, "data": profile}), "{mode}/{id}");
    }
    // Short or unusual phone numbers are normalised, not rejected.
    let short = client.create_user(json!({"phone": "4444"}));
    assert_eq!(client.get("/v1/user/phone/%204444%20").assert_ok()["token"], short.as_str());
    let odd = client.create_user(json!({"phone": "call me maybe"}));
    assert_eq!(client.get("/v1/user/phone/call%20me%20maybe").assert_ok()["token"], odd.as_str());
    let numeric = client.create_user(json!({"phone": 7700900457_u64, "login": 1234}));
    assert_eq!(client.get("/v1/user/phone/+447700900457").assert_ok()["token"], numeric.as_str());
    assert_eq!(client.get("/v1/user/login/1234").assert_ok()["token"], numeric.as_str());
    // Login and custom are exact (after trimming): no case folding.
    client.get("/v1/user/login/BOB").assert_error(404);
    client.get("/v1/user/custom/EXT-42").assert_error(404);
}

#[test]
fn unknown_mode_bad_token_and_unknown_user_for_every_method() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "carol", "email": "carol@example.com"}));
    let unknown = Uuid::new_v4().to_string();
    for method in ["GET", "PUT", "DELETE"] {
        let send = |path: &str| match method {
            "GET" => client.get(path),
            "PUT" => client.put(path, json!({"x": 1})),
            _ => client.delete(path),
        };
        assert_error_naming(&send("/v1/user/nickname/carol"), 400, "mode");
        assert_error_naming(&send("/v1/user/Token/carol"), 400, "mode");
        assert_error_naming(&send("/v1/user/token/not-a-uuid"), 400, "UUID");
        assert_error_naming(&send("/v1/user/token/carol@example.com"), 400, "UUID");
        send(&user_path("token", &unknown)).assert_error(404);
        send("/v1/user/login/nobody").assert_error(404);
        send("/v1/user/email/nobody@example.com").assert_error(404);
        send("/v1/user/phone/07700900999").assert_error(404);
        send("/v1/user/custom/nothing").assert_error(404);
    }
    // None of that touched carol.
    let reply = client.get("/v1/user/email/carol@example.com");
    assert_eq!(reply.assert_ok()["token"], token.as_str());
    assert_eq!(reply.body["data"], json!({"login": "carol", "email": "carol@example.com"}));
}

#[test]
fn put_merge_object_follows_rfc_7396() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({
        "first": "Dan", "last": "Ng", "login": "dan", "email": "dan@example.com",
        "address": {"city": "York", "zip": "YO1"}, "tags": ["a", "b"]
    }));
    let reply = client.put(
        "/v1/user/login/dan",
        json!({"last": null, "age": 40, "address": {"zip": null, "street": "High St"}, "tags": ["c"]}),
    );
    assert_eq!(reply.body, json!({"status": "ok", "token": token}));
    let expected = json!({
        "first": "Dan", "login": "dan", "email": "dan@example.com",
        "address": {"city": "York", "street": "High St"}, "tags": ["c"], "age": 40
    });
    assert_eq!(client.get(&user_path("token", &token)).assert_ok()["data"], expected);

    // Every mode addresses the same record for PUT.
    client.put("/v1/user/email/DAN@example.com", json!({"e": 1})).assert_ok();
    client.put(&user_path("token", &token), json!({"t": 1})).assert_ok();
    let data = client.get("/v1/user/login/dan").assert_ok()["data"].clone();
    assert_eq!((data["e"].clone(), data["t"].clone()), (json!(1), json!(1)));

    // Removing the email drops it from the index.
    client.put("/v1/user/login/dan", json!({"email": null})).assert_ok();
    client.get("/v1/user/email/dan@example.com").assert_error(404);
    assert!(client.get("/v1/user/login/dan").assert_ok()["data"].get("email").is_none());
    // And the address is free for someone else.
    client.create_user(json!({"email": "dan@example.com"}));
}

#[test]
fn put_patch_array_follows_rfc_6902() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "erin", "phone": "07700900111", "prefs": {"lang": "en"}}));
    let patch = json!([
        {"op": "test", "path": "/login", "value": "erin"},
        {"op": "add", "path": "/custom", "value": "erin-1"},
        {"op": "replace", "path": "/prefs/lang", "value": "fr"},
        {"op": "remove", "path": "/phone"},
        {"op": "add", "path": "/list", "value": [1]},
        {"op": "add", "path": "/list/-", "value": 2},
        {"op": "copy", "from": "/prefs", "path": "/prefs2"}
    ]);
    let reply = client.put("/v1/user/phone/+447700900111", patch);
    assert_eq!(reply.body, json!({"status": "ok", "token": token}));
    let expected =
        json!({"login": "erin", "custom": "erin-1", "prefs": {"lang": "fr"}, "list": [1, 2], "prefs2": {"lang": "fr"}});
    assert_eq!(client.get("/v1/user/custom/erin-1").assert_ok()["data"], expected);
    client.get("/v1/user/phone/07700900111").assert_error(404);

    // A failing `test` makes the whole patch fail: nothing of it is applied.
    let reply = client.put(
        "/v1/user/login/erin",
        json!([{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/login", "value": "nope"}]),
    );
    reply.assert_error(400);
    assert_eq!(client.get("/v1/user/login/erin").assert_ok()["data"], expected);
}

#[test]
fn put_duplicating_another_users_identifier_is_409_and_changes_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let frank = client.create_user(json!({"login": "frank", "email": "frank@example.com", "phone": "07700900222"}));
    let gina_profile = json!({"login": "gina", "email": "gina@example.com", "custom": "g-1"});
    let gina = client.create_user(gina_profile.clone());

    let attempts = [
        ("email", json!({"email": " FRANK@example.com", "city": "Hull"})),
        ("login", json!({"login": "frank", "city": "Hull"})),
        ("phone", json!({"phone": "+44 7700 900222", "city": "Hull"})),
        ("email", json!([{"op": "replace", "path": "/email", "value": "frank@example.com"}])),
    ];
    for (field, update) in attempts {
        let reply = client.put("/v1/user/login/gina", update);
        assert_error_naming(&reply, 409, field);
        let (_, newest) = audit_head(&client);
        assert_eq!(
            (newest["operation"].as_str(), newest["subject"].as_str()),
            (Some("user-update"), Some(gina.as_str()))
        );
        assert_eq!(newest["result"], format!("rejected: duplicate {field}"));
        // Gina is unchanged and keeps her identifiers; frank keeps his.
        assert_eq!(client.get(&user_path("token", &gina)).assert_ok()["data"], gina_profile);
        assert_eq!(client.get("/v1/user/email/gina@example.com").assert_ok()["token"], gina.as_str());
        assert_eq!(client.get("/v1/user/email/frank@example.com").assert_ok()["token"], frank.as_str());
        assert_eq!(client.get("/v1/user/phone/07700900222").assert_ok()["token"], frank.as_str());
    }
    // Setting one's own identifier again (differently spelled) is not a duplicate.
    client.put("/v1/user/login/gina", json!({"email": "GINA@example.com "})).assert_ok();
    assert_eq!(client.get("/v1/user/email/gina@example.com").assert_ok()["token"], gina.as_str());
}

#[test]
fn put_changing_login_moves_the_lookup() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "hank", "email": "hank@example.com"}));
    client.put("/v1/user/login/hank", json!({"login": "henry"})).assert_ok();
    client.get("/v1/user/login/hank").assert_error(404);
    let reply = client.get("/v1/user/login/henry");
    assert_eq!(reply.assert_ok()["token"], token.as_str());
    assert_eq!(reply.body["data"], json!({"login": "henry", "email": "hank@example.com"}));
    // The old login is free again.
    let other = client.create_user(json!({"login": "hank"}));
    assert_eq!(client.get("/v1/user/login/hank").assert_ok()["token"], other.as_str());
    // Changing email and phone moves them too.
    client.put("/v1/user/login/henry", json!({"email": "henry@example.com", "phone": "07700900333"})).assert_ok();
    client.get("/v1/user/email/hank@example.com").assert_error(404);
    assert_eq!(client.get("/v1/user/email/henry@example.com").assert_ok()["token"], token.as_str());
    assert_eq!(client.get("/v1/user/phone/+447700900333").assert_ok()["token"], token.as_str());
}

#[test]
fn malformed_put_bodies_are_400_and_change_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let profile = json!({"login": "ivy", "email": "ivy@example.com", "n": 1});
    let token = client.create_user(profile.clone());
    let path = user_path("token", &token);
    let bad = [
        r#"{"n": 2"#,
        "not json",
        "",
        "  ",
        r#""string""#,
        "7",
        "null",
        r#"[{"op": "explode", "path": "/n"}]"#,
        r#"[{"op": "add"}]"#,
        r#"[{"op": "remove", "path": "/missing"}]"#,
        r#"[{"op": "replace", "path": "/nope/deeper", "value": 1}]"#,
        r#"[{"op": "replace", "path": "", "value": 5}]"#,
        r#"[{"op": "replace", "path": "", "value": ["a"]}]"#,
        r#"[1, 2]"#,
        r#"{"login": {"not": "a string"}}"#,
        r#"{"email": false}"#,
        r#"[{"op": "add", "path": "/phone", "value": {"cc": 44}}]"#,
    ];
    for body in bad {
        let reply = json_body(&client, "PUT", &path, body);
        assert_eq!(reply.status, 400, "body {body:?}: {}", reply.body);
        reply.assert_error(400);
        assert_eq!(client.get(&path).assert_ok()["data"], profile, "after {body:?}");
    }
    // Nor is a malformed form.
    form(&client, "PUT", &path, "=3").assert_error(400);
    assert_eq!(client.get("/v1/user/login/ivy").assert_ok()["data"], profile);
    // No update was ever recorded for the subject.
    let rows = audit_rows(&client, &token);
    assert!(!operations(&rows).contains(&"user-update"), "{rows:?}");
}

#[test]
fn delete_forgets_the_subject_and_leaves_a_tombstone() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let profile = json!({
        "first": "Jill", "login": "jill", "email": "jill@example.com", "phone": "07700900444", "custom": "j-9"
    });
    let token = client.create_user(profile);
    client.post(&format!("/v1/userapp/token/{token}/shop"), json!({"basket": 3})).assert_ok();

    let reply = client.delete("/v1/user/email/JILL@example.com");
    assert_eq!(reply.body, json!({"status": "ok", "result": "done", "token": token}));
    assert_eq!(reply.status, 200);

    // The token still resolves, to an empty record, as evidence of the erasure.
    assert_eq!(client.get(&user_path("token", &token)).body, json!({"status": "ok", "token": token, "data": {}}));
    // Every identifier is gone from the index and is free for reuse.
    for (mode, id) in [("login", "jill"), ("email", "jill@example.com"), ("phone", "07700900444"), ("custom", "j-9")] {
        client.get(&user_path(mode, id)).assert_error(404);
    }
    // A forgotten subject cannot be updated, nor get app data; its app data is gone.
    client.put(&user_path("token", &token), json!({"first": "Back"})).assert_error(404);
    client.get(&format!("/v1/userapp/token/{token}/shop")).assert_error(404);
    client.post(&format!("/v1/userapp/token/{token}/shop"), json!({"basket": 1})).assert_error(404);
    assert_eq!(client.get(&format!("/v1/userapp/token/{token}")).assert_ok()["apps"], json!([]));
    // Forgetting twice is not an error.
    assert_eq!(client.delete(&user_path("token", &token)).assert_ok()["result"], "done");
    assert_eq!(client.get(&user_path("token", &token)).assert_ok()["data"], json!({}));

    // The identifiers can be used by a new subject.
    let again = client.create_user(json!({"login": "jill", "email": "jill@example.com"}));
    assert_ne!(again, token);

    // DELETE by the other modes.
    for (mode, id, profile) in [
        ("login", "kim", json!({"login": "kim"})),
        ("phone", "+44 7700 900555", json!({"phone": "07700900555"})),
        ("custom", "c-5", json!({"custom": "c-5"})),
    ] {
        let token = client.create_user(profile);
        assert_eq!(client.delete(&user_path(mode, id)).assert_ok()["token"], token.as_str(), "{mode}");
        assert_eq!(client.get(&user_path("token", &token)).assert_ok()["data"], json!({}));
        client.get(&user_path(mode, id)).assert_error(404);
    }
    let ops = operations(&audit_rows(&client, &token)).join(",");
    assert!(ops.contains("user-forget"), "{ops}");
}

// ---------------------------------------------------------------------------------------
// POST /v1/users
// ---------------------------------------------------------------------------------------

#[test]
fn bulk_list_is_forbidden_unless_enabled() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "lee", "email": "lee@example.com"}));
    assert_eq!(client.get("/v1/status").assert_ok()["bulkListEnabled"], false);
    let (events_before, _) = audit_head(&client);
    let reply = client.post("/v1/users", json!({}));
    reply.assert_error(403);
    assert!(!reply.body.to_string().contains("lee@example.com"));
    client.send(client.request("POST", "/v1/users?offset=0&limit=10")).assert_error(403);
    assert_eq!(audit_head(&client).0, events_before, "a refused listing reads nobody");
}

#[test]
fn bulk_list_pages_through_active_users_when_enabled() {
    let vault = Vault::demo_with(&["--enable-bulk-list"]);
    let client = vault.demo_client();
    assert_eq!(client.get("/v1/status").assert_ok()["bulkListEnabled"], true);
    let mut profiles = std::collections::BTreeMap::new();
    for i in 0..6 {
        let profile = json!({"login": format!("user{i}"), "n": i});
        profiles.insert(client.create_user(profile.clone()), profile);
    }
    let forgotten = client.create_user(json!({"login": "gone"}));
    client.delete(&user_path("token", &forgotten)).assert_ok();

    let list = |query: &str| client.send(client.request("POST", &format!("/v1/users{query}")));
    let all = list("?limit=100");
    let body = all.assert_ok();
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "forgotten subjects are not listed: {body}");
    for row in rows {
        assert_eq!(keys(row), ["data", "token"]);
        let token = row["token"].as_str().unwrap();
        assert_eq!(&row["data"], &profiles[token], "{row}");
    }
    let tokens: Vec<&str> = rows.iter().map(|r| r["token"].as_str().unwrap()).collect();
    // Default paging, offset and limit.
    assert_eq!(list("").assert_ok()["rows"].as_array().unwrap().len(), 6);
    let page = list("?offset=2&limit=3");
    let page_tokens: Vec<&str> =
        page.assert_ok()["rows"].as_array().unwrap().iter().map(|r| r["token"].as_str().unwrap()).collect();
    assert_eq!(page_tokens, tokens[2..5]);
    assert_eq!(list("?offset=5&limit=3").assert_ok()["rows"].as_array().unwrap().len(), 1);
    assert_eq!(list("?offset=50").assert_ok()["rows"], json!([]));
    // Each listed profile is an audited read.
    let ops = operations(&audit_rows(&client, tokens[0])).join(",");
    assert!(ops.contains("user-list"), "{ops}");

    for bad in ["?limit=0", "?limit=1001", "?limit=-1", "?limit=ten", "?offset=-2"] {
        list(bad).assert_error(400);
    }
    list("?limit=1000").assert_ok();
    // Listing needs users:read.
    let (_, writer) = access_token(&client, "writer", &["users:write"]);
    let writer_client = client.with_token(Some(&writer));
    writer_client.send(writer_client.request("POST", "/v1/users")).assert_error(403);
}

#[test]
fn bulk_list_total_counts_every_user_not_the_page() {
    let vault = Vault::demo_with(&["--enable-bulk-list"]);
    let client = vault.demo_client();
    for i in 0..5 {
        client.create_user(json!({"login": format!("t{i}")}));
    }
    let page = client.send(client.request("POST", "/v1/users?offset=0&limit=2"));
    let body = page.assert_ok();
    assert_eq!(body["rows"].as_array().unwrap().len(), 2);
    assert_eq!(body["total"], 5, "{body}");
}

// ---------------------------------------------------------------------------------------
// /v1/userapp and /v1/userapps
// ---------------------------------------------------------------------------------------

#[test]
fn userapp_create_replace_merge_get_delete() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "mia", "email": "mia@example.com"}));
    let app = format!("/v1/userapp/token/{token}/shipping");

    let reply = client.post(&app, json!({"street": "Main St 1", "city": "Leeds", "zip": "LS1"}));
    assert_eq!(reply.body, json!({"status": "ok", "token": token}));
    let reply = client.get("/v1/userapp/login/mia/shipping");
    assert_eq!(
        reply.body,
        json!({"status": "ok", "token": token, "app": "shipping",
               "data": {"street": "Main St 1", "city": "Leeds", "zip": "LS1"}})
    );

    // POST replaces the whole record.
    client.post("/v1/userapp/email/mia@example.com/shipping", json!({"street": "Side Rd 2"})).assert_ok();
    assert_eq!(client.get(&app).assert_ok()["data"], json!({"street": "Side Rd 2"}));
    // A form body works for POST too.
    form(&client, "POST", "/v1/userapp/login/mia/prefs", "lang=en&theme=dark").assert_ok();
    assert_eq!(client.get("/v1/userapp/login/mia/prefs").assert_ok()["data"], json!({"lang": "en", "theme": "dark"}));

    // PUT merges (RFC 7396) or patches (RFC 6902).
    let reply = client.put(&app, json!({"city": "York", "street": null}));
    assert_eq!(reply.body, json!({"status": "ok", "token": token}));
    assert_eq!(client.get(&app).assert_ok()["data"], json!({"city": "York"}));
    client.put(&app, json!([{"op": "add", "path": "/zip", "value": "YO1"}])).assert_ok();
    assert_eq!(client.get(&app).assert_ok()["data"], json!({"city": "York", "zip": "YO1"}));

    // The profile is untouched by app data.
    assert_eq!(
        client.get("/v1/user/login/mia").assert_ok()["data"],
        json!({"login": "mia", "email": "mia@example.com"})
    );

    let reply = client.delete("/v1/userapp/login/mia/shipping");
    assert_eq!(reply.body, json!({"status": "ok", "result": "done", "token": token}));
    client.get(&app).assert_error(404);
    client.delete(&app).assert_error(404);
    client.put(&app, json!({"city": "Hull"})).assert_error(404);
    assert_eq!(client.get("/v1/userapp/login/mia/prefs").assert_ok()["data"]["lang"], "en");

    let rows = audit_rows(&client, &token);
    let ops = operations(&rows);
    for op in ["app-create", "app-read", "app-update", "app-delete"] {
        assert!(ops.contains(&op), "{op} in {ops:?}");
    }
    assert!(rows.iter().any(|r| r["app"] == "shipping" && r["operation"] == "app-delete"));
}

#[test]
fn userapp_lists_names_per_user_and_overall() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    assert_eq!(client.get("/v1/userapps").body, json!({"status": "ok", "apps": []}));
    let nina = client.create_user(json!({"login": "nina"}));
    let omar = client.create_user(json!({"login": "omar", "phone": "07700900666"}));
    client.post(&format!("/v1/userapp/token/{nina}/shop"), json!({"a": 1})).assert_ok();
    client.post(&format!("/v1/userapp/token/{nina}/crm"), json!({"b": 2})).assert_ok();
    client.post("/v1/userapp/phone/07700900666/loyalty_points", json!({"p": 10})).assert_ok();

    assert_eq!(
        client.get(&format!("/v1/userapp/token/{nina}")).body,
        json!({"status": "ok", "token": nina, "apps": ["crm", "shop"]})
    );
    assert_eq!(
        client.get("/v1/userapp/login/omar").body,
        json!({"status": "ok", "token": omar, "apps": ["loyalty_points"]})
    );
    assert_eq!(client.get("/v1/userapps").body, json!({"status": "ok", "apps": ["crm", "loyalty_points", "shop"]}));

    client.delete(&format!("/v1/userapp/token/{nina}/crm")).assert_ok();
    assert_eq!(client.get("/v1/userapp/login/nina").assert_ok()["apps"], json!(["shop"]));

    client.get("/v1/userapp/login/nobody").assert_error(404);
    client.get("/v1/userapp/nickname/nina").assert_error(400);
    client.get("/v1/userapp/token/not-a-uuid").assert_error(400);
}

#[test]
fn userapp_bad_input_is_4xx_and_writes_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "pat"}));
    let long = "a".repeat(65);
    let invalid = ["shop%20name", "2shop", "-shop", "shop.name", "sh%C3%B6p", long.as_str()];
    for app in invalid {
        let path = format!("/v1/userapp/token/{token}/{app}");
        assert_error_naming(&client.post(&path, json!({"a": 1})), 400, "app name");
        assert_error_naming(&client.put(&path, json!({"a": 1})), 400, "app name");
        assert_error_naming(&client.get(&path), 400, "app name");
        assert_error_naming(&client.delete(&path), 400, "app name");
    }
    // App names are lower-cased first, as Databunker does: `Shop` is the app `shop`.
    client.post(&format!("/v1/userapp/token/{token}/Shop"), json!({"case": "folded"})).assert_ok();
    assert_eq!(client.get(&format!("/v1/userapp/token/{token}/shop")).assert_ok()["data"]["case"], "folded");
    client.delete(&format!("/v1/userapp/token/{token}/SHOP")).assert_ok();
    // The longest valid name is fine.
    let longest = "a".repeat(64);
    client.post(&format!("/v1/userapp/token/{token}/{longest}"), json!({"ok": true})).assert_ok();

    let shop = format!("/v1/userapp/token/{token}/shop");
    // PUT and GET and DELETE of a record that does not exist.
    assert_error_naming(&client.put(&shop, json!({"a": 1})), 404, "app record");
    client.get(&shop).assert_error(404);
    client.delete(&shop).assert_error(404);
    // Unknown user, bad mode, bad token.
    client.post(&format!("/v1/userapp/token/{}/shop", Uuid::new_v4()), json!({"a": 1})).assert_error(404);
    client.post("/v1/userapp/login/nobody/shop", json!({"a": 1})).assert_error(404);
    client.post("/v1/userapp/nickname/pat/shop", json!({"a": 1})).assert_error(400);
    client.post("/v1/userapp/token/pat/shop", json!({"a": 1})).assert_error(400);
    // Bodies that are not objects.
    for body in ["", "[1]", r#""x""#, "{broken", "null"] {
        json_body(&client, "POST", &shop, body).assert_error(400);
    }
    client.post(&shop, json!({"v": 1})).assert_ok();
    for body in
        ["", r#""x""#, "{broken", r#"[{"op": "remove", "path": "/nope"}]"#, r#"[{"op":"replace","path":"","value":1}]"#]
    {
        json_body(&client, "PUT", &shop, body).assert_error(400);
    }
    assert_eq!(client.get(&shop).assert_ok()["data"], json!({"v": 1}));
    assert_eq!(client.get("/v1/userapps").assert_ok()["apps"], json!([longest, "shop"]));
}

#[test]
fn userapp_data_of_one_user_is_not_visible_through_another() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let quinn = client.create_user(json!({"login": "quinn"}));
    let rosa = client.create_user(json!({"login": "rosa"}));
    client.post(&format!("/v1/userapp/token/{quinn}/shop"), json!({"card": "quinn-secret"})).assert_ok();

    let reply = client.get(&format!("/v1/userapp/token/{rosa}/shop"));
    reply.assert_error(404);
    assert!(!reply.body.to_string().contains("quinn-secret"));
    client.get("/v1/userapp/login/rosa/shop").assert_error(404);
    client.put("/v1/userapp/login/rosa/shop", json!({"x": 1})).assert_error(404);
    client.delete("/v1/userapp/login/rosa/shop").assert_error(404);
    assert_eq!(client.get("/v1/userapp/login/rosa").assert_ok()["apps"], json!([]));

    // Rosa's own record does not change Quinn's.
    client.post("/v1/userapp/login/rosa/shop", json!({"card": "rosa-card"})).assert_ok();
    assert_eq!(client.get("/v1/userapp/login/quinn/shop").assert_ok()["data"], json!({"card": "quinn-secret"}));
    assert_eq!(client.get("/v1/userapp/login/rosa/shop").assert_ok()["data"], json!({"card": "rosa-card"}));
    // Forgetting Rosa leaves Quinn's app data alone.
    client.delete("/v1/user/login/rosa").assert_ok();
    assert_eq!(client.get("/v1/userapp/login/quinn/shop").assert_ok()["data"], json!({"card": "quinn-secret"}));
}

// ---------------------------------------------------------------------------------------
// Authentication, scoped tokens, X-Purpose
// ---------------------------------------------------------------------------------------

#[test]
fn missing_or_wrong_token_is_401_on_every_protected_route() {
    // Many failures from one address: the limit on them is tested on its own.
    let vault = Vault::demo_with(&["--failed-auth-per-minute=0"]);
    let root = vault.demo_client();
    let token = root.create_user(json!({"login": "sam"}));
    let (events_before, _) = audit_head(&root);
    let routes: Vec<(&str, String)> = vec![
        ("POST", "/v1/user".into()),
        ("GET", user_path("token", &token)),
        ("PUT", user_path("login", "sam")),
        ("DELETE", user_path("login", "sam")),
        ("POST", "/v1/users".into()),
        ("POST", format!("/v1/userapp/token/{token}/shop")),
        ("PUT", format!("/v1/userapp/token/{token}/shop")),
        ("GET", format!("/v1/userapp/token/{token}/shop")),
        ("DELETE", format!("/v1/userapp/token/{token}/shop")),
        ("GET", format!("/v1/userapp/token/{token}")),
        ("GET", "/v1/userapps".into()),
        ("GET", "/v1/audit/admin".into()),
        ("GET", format!("/v1/audit/list/{token}")),
        ("GET", format!("/v1/audit/get/{}", Uuid::new_v4())),
        ("GET", "/v1/sys/audit/verify".into()),
        ("GET", "/v1/sys/tokens".into()),
        ("POST", "/v1/sys/tokens".into()),
        ("DELETE", "/v1/sys/tokens/tok-0000".into()),
    ];
    let anonymous = root.with_token(None);
    let clients = [
        ("missing", anonymous.clone()),
        ("wrong", root.with_token(Some("WRONG"))),
        ("demo-ish", root.with_token(Some("DEMO2"))),
        ("empty", root.with_token(Some(""))),
        ("fake sr_", root.with_token(Some("sr_0000000000000000000000000000000000000000000000000000000000000000"))),
    ];
    for (label, client) in &clients {
        for (method, path) in &routes {
            let reply = client.send(client.request(method, path).json(&json!({"login": "intruder"})));
            assert_eq!(reply.status, 401, "{label} {method} {path}: {}", reply.body);
            reply.assert_error(401);
        }
    }
    // The token header name is matched case-insensitively, as HTTP requires; the value is not.
    let reply = anonymous.send(anonymous.request("GET", &user_path("login", "sam")).header("x-bunker-token", "DEMO"));
    reply.assert_ok();
    let reply = anonymous.send(anonymous.request("GET", &user_path("login", "sam")).header("X-Bunker-Token", "demo"));
    reply.assert_error(401);
    // Nobody was created, nothing was read by the rejected callers.
    assert_eq!(audit_head(&root).0, events_before + 1);
    root.get("/v1/user/login/intruder").assert_error(404);
}

#[test]
fn a_users_read_token_reads_but_cannot_write_or_administer() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let token = root.create_user(json!({"login": "tess", "email": "tess@example.com"}));
    root.post(&format!("/v1/userapp/token/{token}/shop"), json!({"a": 1})).assert_ok();

    let reply = root.post("/v1/sys/tokens", json!({"name": "reader", "scopes": ["users:read"]}));
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["id", "name", "scopes", "status", "token"], "{body}");
    assert_eq!(body["name"], "reader");
    assert_eq!(body["scopes"], json!(["users:read"]));
    let id = body["id"].as_str().unwrap().to_string();
    let secret = body["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sr_"), "{secret}");
    assert!(secret.len() >= 32, "{secret}");
    assert!(!id.is_empty() && !secret.contains(&id));

    let reader = root.with_token(Some(&secret));
    let reply = reader.get("/v1/user/login/tess");
    assert_eq!(reply.assert_ok()["token"], token.as_str());
    assert_eq!(reader.get(&format!("/v1/userapp/token/{token}")).assert_ok()["apps"], json!(["shop"]));

    let forbidden: Vec<(&str, String)> = vec![
        ("POST", "/v1/user".into()),
        ("PUT", user_path("login", "tess")),
        ("DELETE", user_path("login", "tess")),
        ("GET", format!("/v1/userapp/token/{token}/shop")),
        ("POST", format!("/v1/userapp/token/{token}/shop")),
        ("GET", "/v1/userapps".into()),
        ("GET", "/v1/audit/admin".into()),
        ("GET", format!("/v1/audit/list/{token}")),
        ("GET", "/v1/sys/audit/verify".into()),
        ("GET", "/v1/sys/tokens".into()),
        ("POST", "/v1/sys/tokens".into()),
        ("DELETE", format!("/v1/sys/tokens/{id}")),
    ];
    for (method, path) in &forbidden {
        let body = json!({"login": "mallory", "name": "escalate", "scopes": ["users:read"]});
        let reply = reader.send(reader.request(method, path).json(&body));
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        reply.assert_error(403);
    }
    root.get("/v1/user/login/mallory").assert_error(404);
    assert_eq!(
        root.get("/v1/user/login/tess").assert_ok()["data"],
        json!({"login": "tess", "email": "tess@example.com"})
    );
    // The reader's read was audited under its token id, not the secret.
    let rows = audit_rows(&root, &token);
    assert!(rows.iter().any(|r| r["actor"] == id.as_str() && r["operation"] == "user-read"), "{rows:?}");
    assert!(!serde_json::to_string(&rows).unwrap().contains(&secret));
}

#[test]
fn an_app_scoped_token_reaches_its_app_only() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let token = root.create_user(json!({"login": "uma"}));
    let (id, secret) = access_token(&root, "shop-backend", &["apps:shop:*"]);
    let shop = root.with_token(Some(&secret));
    let shop_path = format!("/v1/userapp/token/{token}/shop");
    let crm_path = format!("/v1/userapp/token/{token}/crm");

    assert_eq!(shop.post(&shop_path, json!({"cart": [1]})).assert_ok()["token"], token.as_str());
    assert_eq!(shop.get("/v1/userapp/login/uma/shop").assert_ok()["data"], json!({"cart": [1]}));
    shop.put(&shop_path, json!({"paid": true})).assert_ok();
    assert_eq!(shop.get(&shop_path).assert_ok()["data"], json!({"cart": [1], "paid": true}));

    root.post(&crm_path, json!({"note": "vip"})).assert_ok();
    for reply in [
        shop.post(&crm_path, json!({"x": 1})),
        shop.put(&crm_path, json!({"x": 1})),
        shop.get(&crm_path),
        shop.delete(&crm_path),
        shop.get(&user_path("token", &token)),
        shop.post("/v1/user", json!({"login": "fromshop"})),
        shop.put(&user_path("token", &token), json!({"x": 1})),
        shop.delete(&user_path("token", &token)),
        shop.get(&format!("/v1/userapp/token/{token}")),
        shop.get("/v1/userapps"),
        shop.get("/v1/audit/admin"),
    ] {
        reply.assert_error(403);
    }
    assert_eq!(root.get(&crm_path).assert_ok()["data"], json!({"note": "vip"}));
    assert_eq!(root.get(&user_path("token", &token)).assert_ok()["data"], json!({"login": "uma"}));
    assert_eq!(shop.delete(&shop_path).assert_ok()["result"], "done");
    root.get(&shop_path).assert_error(404);

    // The error names the missing scope.
    let reply = shop.get(&crm_path);
    assert!(reply.body["message"].as_str().unwrap().contains("apps:crm:read"), "{}", reply.body);
    let rows = audit_rows(&root, &token);
    assert!(rows.iter().any(|r| r["actor"] == id.as_str() && r["app"] == "shop"), "{rows:?}");
}

#[test]
fn the_root_token_retires_once_another_token_holds_every_scope() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let retire = |client: &Client| client.post("/v1/sys/root-token/retire", json!({}));
    let reply = retire(&root);
    reply.assert_error(409);
    assert!(reply.body["message"].as_str().unwrap().contains("every scope"), "{}", reply.body);
    // A subject token holding everything of its subject does not count, nor does a token
    // that could not hand every scope out again (as the operator's own).
    let ann = root.create_user(json!({"login": "ann"}));
    subject_client(&root, &ann);
    access_token(&root, "operator", &["cluster:admin", "tokens:admin", "retention:run"]);
    retire(&root).assert_error(409);

    let (admin_id, admin) = access_token(&root, "admin", &support::EVERY_SCOPE);
    let admin = root.with_token(Some(&admin));
    retire(&admin).assert_error(403);
    assert_eq!(retire(&root).body, json!({"status": "ok", "result": "done"}));
    root.get("/v1/sys/tokens").assert_error(401);
    root.get("/v1/user/login/ann").assert_error(401);
    assert_eq!(admin.get("/v1/user/login/ann").assert_ok()["token"], ann.as_str());
    // The administrator hands out what the root token did.
    let auditor = admin.post("/v1/sys/tokens", json!({"name": "auditor", "scopes": ["users:read"]}));
    root.with_token(auditor.assert_ok()["token"].as_str()).get("/v1/user/login/ann").assert_ok();
    subject_client(&admin, &ann).get("/v1/user/login/ann").assert_ok();
    let rows = admin_rows(&admin);
    let results: Vec<&Value> = with_operation(&rows, "root-token-retire").iter().map(|row| &row["result"]).collect();
    let refused = json!("rejected: no other token holds every scope");
    assert_eq!(results, [&json!("ok"), &refused, &refused], "the refused tries are audited too");
    // The last administrator cannot be revoked: nobody could hand out its scopes again.
    admin.delete(&format!("/v1/sys/tokens/{admin_id}")).assert_error(409);
    let (second_id, second) = access_token(&admin, "second", &support::EVERY_SCOPE);
    root.with_token(Some(&second)).delete(&format!("/v1/sys/tokens/{admin_id}")).assert_ok();
    admin.get("/v1/sys/tokens").assert_error(401);
    root.with_token(Some(&second)).delete(&format!("/v1/sys/tokens/{second_id}")).assert_error(409);
}

#[test]
fn tokens_are_listed_without_secrets_and_revoked() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    assert_eq!(root.get("/v1/sys/tokens").body, json!({"status": "ok", "tokens": []}));
    let (reader_id, reader_secret) = access_token(&root, "reader", &["users:read"]);
    let (admin_id, admin_secret) = access_token(&root, "admin", &["tokens:admin", "users:*"]);

    let reply = root.get("/v1/sys/tokens");
    let tokens = reply.assert_ok()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    for token in &tokens {
        assert_eq!(keys(token), ["created", "id", "name", "scopes"], "{token}");
        assert!(token["created"].as_u64().unwrap() > 0);
    }
    let listed = serde_json::to_string(&reply.body).unwrap();
    assert!(!listed.contains(&reader_secret) && !listed.contains(&admin_secret), "{listed}");
    assert!(!listed.contains("sr_"), "{listed}");
    let by_id = |id: &str| tokens.iter().find(|t| t["id"] == id).cloned().unwrap();
    assert_eq!(by_id(&reader_id)["scopes"], json!(["users:read"]));
    assert_eq!(by_id(&reader_id)["name"], "reader");
    assert_eq!(by_id(&admin_id)["scopes"], json!(["tokens:admin", "users:*"]));

    // A tokens:admin token may list and revoke.
    let admin = root.with_token(Some(&admin_secret));
    assert_eq!(admin.get("/v1/sys/tokens").assert_ok()["tokens"].as_array().unwrap().len(), 2);
    let reader = root.with_token(Some(&reader_secret));
    reader.get("/v1/user/login/anyone").assert_error(404);

    // It cannot revoke a token holding a scope it lacks itself.
    let (auditor_id, _) = access_token(&root, "auditor", &["audit:read"]);
    let reply = admin.delete(&format!("/v1/sys/tokens/{auditor_id}"));
    reply.assert_error(403);
    assert!(reply.body["message"].as_str().unwrap().contains("audit:read"), "{}", reply.body);
    root.delete(&format!("/v1/sys/tokens/{auditor_id}")).assert_ok();

    let reply = admin.delete(&format!("/v1/sys/tokens/{reader_id}"));
    assert_eq!(reply.body, json!({"status": "ok", "result": "done"}));
    reader.get("/v1/user/login/anyone").assert_error(401);
    admin.delete(&format!("/v1/sys/tokens/{reader_id}")).assert_error(404);
    root.delete("/v1/sys/tokens/tok-doesnotexist").assert_error(404);
    let remaining = root.get("/v1/sys/tokens");
    let ids: Vec<&str> =
        remaining.assert_ok()["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [admin_id.as_str()]);

    // Revoking itself locks the admin out.
    admin.delete(&format!("/v1/sys/tokens/{admin_id}")).assert_ok();
    admin.get("/v1/sys/tokens").assert_error(401);
    assert_eq!(root.get("/v1/sys/tokens").assert_ok()["tokens"], json!([]));
}

#[test]
fn token_creation_is_validated_and_cannot_escalate() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let bad_requests = [
        json!({"name": "x", "scopes": ["users:delete"]}),
        json!({"name": "x", "scopes": ["root"]}),
        json!({"name": "x", "scopes": ["*"]}),
        json!({"name": "x", "scopes": ["apps:Shop:read"]}),
        json!({"name": "x", "scopes": ["users:read", "bogus"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "", "scopes": ["users:read"]}),
        json!({"name": "   ", "scopes": ["users:read"]}),
        json!({"name": "n".repeat(65), "scopes": ["users:read"]}),
        json!({"name": "x"}),
        json!({"scopes": ["users:read"]}),
        json!({"name": "x", "scopes": "users:read"}),
        json!({"name": "x", "scopes": ["users:read"], "admin": true}),
        json!(["users:read"]),
    ];
    for request in &bad_requests {
        let reply = root.post("/v1/sys/tokens", request.clone());
        assert_eq!(reply.status, 400, "{request}: {}", reply.body);
        reply.assert_error(400);
    }
    json_body(&root, "POST", "/v1/sys/tokens", "{not json").assert_error(400);
    json_body(&root, "POST", "/v1/sys/tokens", "").assert_error(400);
    assert_error_naming(&root.post("/v1/sys/tokens", json!({"name": "x", "scopes": ["users:delete"]})), 400, "scope");
    assert_eq!(root.get("/v1/sys/tokens").assert_ok()["tokens"], json!([]), "no token was half-created");

    // A name is 1-64 characters, not bytes: 64 two-byte characters are a good name.
    root.post("/v1/sys/tokens", json!({"name": "é".repeat(65), "scopes": ["users:read"]})).assert_error(400);
    let reply = root.post("/v1/sys/tokens", json!({"name": "é".repeat(64), "scopes": ["users:read"]}));
    assert_eq!(reply.assert_ok()["name"], "é".repeat(64));
    let created = reply.body["id"].as_str().unwrap().to_string();
    root.delete(&format!("/v1/sys/tokens/{created}")).assert_ok();

    // A users:read token cannot create tokens at all.
    let (_, reader) = access_token(&root, "reader", &["users:read"]);
    let reader = root.with_token(Some(&reader));
    reader.post("/v1/sys/tokens", json!({"name": "r2", "scopes": ["users:read"]})).assert_error(403);

    // A tokens:admin token can only hand out what it holds.
    let (_, admin) = access_token(&root, "delegator", &["tokens:admin", "users:read", "apps:shop:*"]);
    let admin = root.with_token(Some(&admin));
    for scopes in [
        json!(["users:write"]),
        json!(["users:*"]),
        json!(["apps:crm:read"]),
        json!(["apps:*:read"]),
        json!(["users:read", "audit:read"]),
        json!(["cluster:admin"]),
    ] {
        let reply = admin.post("/v1/sys/tokens", json!({"name": "esc", "scopes": scopes}));
        assert_eq!(reply.status, 403, "{scopes}: {}", reply.body);
        reply.assert_error(403);
    }
    let reply = admin.post("/v1/sys/tokens", json!({"name": "sub", "scopes": ["users:read", "apps:shop:read"]}));
    assert_eq!(reply.assert_ok()["scopes"], json!(["users:read", "apps:shop:read"]));
    admin.post("/v1/sys/tokens", json!({"name": "sub2", "scopes": ["tokens:admin"]})).assert_ok();
    let names: BTreeSet<String> = root.get("/v1/sys/tokens").assert_ok()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["delegator", "reader", "sub", "sub2"].into_iter().map(String::from).collect());
}

#[test]
fn x_purpose_is_validated_and_audited() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "vera"}));
    let with_purpose = |purpose: &str| client.request("GET", "/v1/user/login/vera").header("X-Purpose", purpose);

    let (events_before, _) = audit_head(&client);
    assert_error_naming(&client.send(with_purpose(&"p".repeat(129))), 400, "X-Purpose");
    client.send(with_purpose("bad\tpurpose")).assert_error(400);
    let reply = client.send(
        client.request("POST", "/v1/user").header("X-Purpose", "x".repeat(500)).json(&json!({"login": "purposeless"})),
    );
    reply.assert_error(400);
    client.get("/v1/user/login/purposeless").assert_error(404);
    assert_eq!(audit_head(&client).0, events_before + 1, "only the 404 lookup was audited");

    client.send(with_purpose(&"q".repeat(128))).assert_ok();
    client.send(with_purpose("support ticket 1234")).assert_ok();
    let rows = audit_rows(&client, &token);
    assert_eq!(rows[0]["purpose"], "support ticket 1234", "{}", rows[0]);
    assert_eq!(rows[0]["operation"], "user-read");
    assert_eq!(rows[1]["purpose"], "q".repeat(128));
    // Without the header, there is no purpose.
    assert!(rows.last().unwrap().get("purpose").is_none(), "{}", rows.last().unwrap());
    // Writes carry it too.
    let reply = client.send(
        client.request("PUT", &user_path("token", &token)).header("X-Purpose", "address change").json(&json!({"a": 1})),
    );
    reply.assert_ok();
    let newest = &audit_rows(&client, &token)[0];
    assert_eq!(
        (newest["operation"].as_str(), newest["purpose"].as_str()),
        (Some("user-update"), Some("address change"))
    );
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

#[test]
fn audit_trail_of_a_subject_is_newest_first_and_free_of_pii() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let email = "wanda.pii@example.com";
    let token = client.create_user(json!({"first": "Wandaleen", "email": email, "phone": "07700900777"}));
    client.get(&user_path("email", email)).assert_ok();

    let reply = client.get(&format!("/v1/audit/list/{token}"));
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["rows", "status", "total"]);
    assert_eq!(body["total"], 2);
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(operations(rows), ["user-read", "user-create"]);
    for row in rows {
        assert_eq!(row["actor"], "root");
        assert_eq!(row["subject"], token.as_str());
        assert_eq!(row["result"], "ok");
        assert_uuid(&row["id"]);
        assert!(row["time"].as_u64().unwrap() > 1_600_000_000_000, "time is in ms: {row}");
        assert_eq!(row["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(rows[0]["mode"], "email");
    assert!(rows[0]["seq"].as_u64().unwrap() > rows[1]["seq"].as_u64().unwrap());
    assert!(rows[0]["time"].as_u64().unwrap() >= rows[1]["time"].as_u64().unwrap());
    let text = serde_json::to_string(rows).unwrap().to_lowercase();
    for pii in [email, "wandaleen", "07700900777", "+447700900777", "wanda.pii"] {
        assert!(!text.contains(pii), "audit rows contain {pii}: {text}");
    }

    // One event by id.
    let id = rows[0]["id"].as_str().unwrap();
    let reply = client.get(&format!("/v1/audit/get/{id}"));
    assert_eq!(reply.body, json!({"status": "ok", "event": rows[0]}));
    client.get(&format!("/v1/audit/get/{}", Uuid::new_v4())).assert_error(404);
    // An id for an existing sequence number but a wrong hash part is not that event.
    let mut forged = Uuid::parse_str(id).unwrap().into_bytes();
    forged[15] ^= 0xff;
    client.get(&format!("/v1/audit/get/{}", Uuid::from_bytes(forged))).assert_error(404);
    assert_error_naming(&client.get("/v1/audit/get/not-a-uuid"), 400, "UUID");
    assert_error_naming(&client.get("/v1/audit/list/not-a-uuid"), 400, "UUID");

    // Paging of a subject's trail.
    client.get(&user_path("token", &token)).assert_ok();
    let page = client.get(&format!("/v1/audit/list/{token}?offset=1&limit=1"));
    let body = page.assert_ok();
    assert_eq!(body["total"], 3);
    assert_eq!(body["rows"].as_array().unwrap().len(), 1);
    assert_eq!(body["rows"][0]["id"].as_str().unwrap(), id);
    client.get(&format!("/v1/audit/list/{token}?limit=0")).assert_error(400);
    client.get(&format!("/v1/audit/list/{token}?limit=1001")).assert_error(400);
    // A subject nobody has touched has an empty trail.
    assert_eq!(
        client.get(&format!("/v1/audit/list/{}", Uuid::new_v4())).body,
        json!({"status": "ok", "total": 0, "rows": []})
    );
}

#[test]
fn audit_admin_pages_all_events_and_records_failed_lookups() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "xena"}));
    client.get("/v1/user/login/xena").assert_ok();
    client.get("/v1/user/email/ghost@example.com").assert_error(404);

    let reply = client.get("/v1/audit/admin?limit=1000");
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["rows", "status", "total"]);
    let total = body["total"].as_u64().unwrap();
    let rows = body["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len() as u64, total, "{body}");
    let seqs: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=total).rev().collect::<Vec<_>>(), "newest first, no gaps");

    // The failed lookup: a user-read with no subject and a not-found result.
    let failed = &rows[0];
    assert_eq!(failed["operation"], "user-read", "{failed}");
    assert_eq!(failed["result"], "not-found", "{failed}");
    assert_eq!(failed["mode"], "email");
    assert_eq!(failed["actor"], "root");
    assert!(failed.get("subject").is_none(), "{failed}");
    assert!(!serde_json::to_string(&rows).unwrap().contains("ghost"));
    assert_eq!(operations(&rows[1..3]), ["user-read", "user-create"]);
    assert_eq!(rows[1]["subject"], token.as_str());

    // offset/limit.
    let page = client.get("/v1/audit/admin?offset=1&limit=2");
    let body = page.assert_ok();
    assert_eq!(body["total"].as_u64().unwrap(), total);
    assert_eq!(body["rows"], json!(rows[1..3]));
    // Default limit is 10, and paging past the end is empty.
    for _ in 0..12 {
        client.get("/v1/user/login/xena").assert_ok();
    }
    assert_eq!(client.get("/v1/audit/admin").assert_ok()["rows"].as_array().unwrap().len(), 10);
    assert_eq!(client.get("/v1/audit/admin?offset=1000").assert_ok()["rows"], json!([]));
    // An offset past any integer type is still past the end, not malformed.
    let huge = "36554690095555482155483136";
    assert_eq!(client.get(&format!("/v1/audit/admin?offset={huge}")).assert_ok()["rows"], json!([]));
    assert_eq!(client.get(&format!("/v1/sessions/login/xena?offset={huge}")).assert_ok()["rows"], json!([]));
    for bad in ["?limit=0", "?limit=1001", "?limit=x", "?offset=-1", "?offset=", "?offset=1.5"] {
        client.get(&format!("/v1/audit/admin{bad}")).assert_error(400);
    }
}

#[test]
fn audit_chain_verifies() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "yuri"}));
    client.get("/v1/user/login/yuri").assert_ok();
    client.put(&user_path("token", &token), json!({"a": 1})).assert_ok();
    client.get("/v1/user/login/nobody").assert_error(404);
    client.post("/v1/user", json!({"login": "yuri"})).assert_error(409);
    client.delete(&user_path("token", &token)).assert_ok();

    let reply = client.get("/v1/sys/audit/verify");
    let verification = &reply.assert_ok()["verification"];
    assert_eq!(verification["intact"], true, "{verification}");
    let (total, newest) = audit_head(&client);
    assert_eq!(verification["events"].as_u64().unwrap(), total);
    assert_eq!(verification["head"], newest["hash"]);
    assert!(verification.get("broken_at").is_none());
}

// ---------------------------------------------------------------------------------------
// System routes, unknown routes and methods
// ---------------------------------------------------------------------------------------

#[test]
fn status_needs_no_token() {
    let vault = Vault::demo();
    let anonymous = vault.demo_client().with_token(None);
    let reply = anonymous.get("/v1/status");
    let body = reply.assert_ok();
    assert_eq!(body["status"], "ok");
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()), "{body}");
    assert_eq!(body["bulkListEnabled"], false);
    // A wrong token does not matter to a public route.
    vault.demo_client().with_token(Some("WRONG")).get("/v1/status").assert_ok();
}

#[test]
fn metrics_count_route_patterns_never_identifiers() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"email": "secret@example.com", "phone": "07700900888"}));
    client.get("/v1/user/email/secret@example.com").assert_ok();
    client.get("/v1/user/phone/07700900888").assert_ok();
    client.get(&user_path("token", &token)).assert_ok();
    client.get("/v1/user/email/missing.person@example.com").assert_error(404);
    client.get("/v1/no/such/route/secret@example.com").assert_error(404);
    client.post(&format!("/v1/userapp/token/{token}/hidden-app"), json!({"a": 1})).assert_ok();
    // A made-up method is counted, under `other`: nobody can add label values at will.
    let brew = reqwest::Method::from_bytes(b"BREWCOFFEE").unwrap();
    let brewed = reqwest::blocking::Client::new().request(brew, format!("{}/v1/status", vault.url)).send().unwrap();
    assert!(brewed.status().is_client_error(), "{}", brewed.status());

    let anonymous = client.with_token(None);
    for path in ["/metrics", "/v1/metrics"] {
        let response = reqwest::blocking::get(format!("{}{path}", vault.url)).unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("application/openmetrics-text") || content_type.starts_with("text/plain"),
            "{content_type}"
        );
        let text = response.text().unwrap();
        assert!(text.contains("vaultd_http_requests_total"), "{text}");
        assert!(text.contains(r#"route="/v1/user/{mode}/{id}""#), "{text}");
        assert!(text.contains(r#"route="/v1/user""#), "{text}");
        assert!(text.contains(r#"route="/v1/userapp/{mode}/{id}/{app}""#), "{text}");
        assert!(text.contains(r#"status="404""#), "{text}");
        assert!(text.contains(r#"method="other""#) && !text.contains("BREWCOFFEE"), "{text}");
        for identifier in [
            "secret@example.com",
            "07700900888",
            "447700900888",
            "missing.person",
            token.as_str(),
            "hidden-app",
            "/v1/no/such",
        ] {
            assert!(!text.contains(identifier), "metrics contain {identifier}:\n{text}");
        }
        // The same through the JSON client (no token).
        let reply = anonymous.get(path);
        assert_eq!(reply.status, 200);
        assert!(reply.body.as_str().unwrap().contains("vaultd_http_requests_total"));
    }
}

#[test]
fn openapi_document_is_served_as_json_without_a_token() {
    let vault = Vault::demo();
    let response = reqwest::blocking::get(format!("{}/v1/openapi.json", vault.url)).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let document: Value = serde_json::from_str(&response.text().unwrap()).expect("the document parses as JSON");
    assert!(document.is_object(), "{document}");
}

/// (method, path) of every operation in the served API document.
fn documented_operations(client: &Client) -> BTreeSet<(String, String)> {
    let reply = client.with_token(None).get("/v1/openapi.json");
    assert_eq!(reply.status, 200);
    assert!(reply.body["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{}", reply.body);
    let mut operations = BTreeSet::new();
    for (path, item) in reply.body["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[test]
fn the_api_document_describes_exactly_the_routes_served() {
    let vault = Vault::demo();
    let documented = documented_operations(&vault.demo_client());
    let served: BTreeSet<(String, String)> = vaultd::api::ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (m.to_string(), path.to_string())))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes served but not documented: {undocumented:?}");
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(unserved.is_empty(), "operations documented but not served: {unserved:?}");
}

#[test]
fn the_api_document_states_the_handlers_constraints_and_links_operations() {
    let vault = Vault::demo();
    let document = vault.demo_client().with_token(None).get("/v1/openapi.json").body;
    let operation = |method: &str, path: &str| document["paths"][path][method].clone();
    let parameter = |method: &str, path: &str, name: &str| {
        let parameters = operation(method, path)["parameters"].as_array().cloned().unwrap_or_default();
        parameters.into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{method} {path}: no {name}"))
    };
    assert_eq!(document["openapi"], "3.1.0");
    // X-Purpose: at most 128 printable ASCII characters, and 400 otherwise.
    let purpose = parameter("get", "/v1/user/{mode}/{id}", "X-Purpose");
    assert_eq!(purpose["schema"]["maxLength"], 128);
    assert_eq!(purpose["schema"]["pattern"], "^[ -~]*$");
    assert!(operation("get", "/v1/lbasis")["responses"]["400"].is_object(), "a bad X-Purpose is 400 everywhere");
    // Enums, UUIDs, paging bounds.
    let mode = parameter("get", "/v1/user/{mode}/{id}", "mode");
    assert_eq!(mode["schema"]["enum"], json!(["token", "login", "email", "phone", "custom"]));
    for (path, name) in
        [("/v1/session/{session}", "session"), ("/v1/get/{record}", "record"), ("/v1/audit/get/{atoken}", "atoken")]
    {
        assert_eq!(parameter("get", path, name)["schema"]["format"], "uuid", "{path}");
    }
    let limit = parameter("get", "/v1/audit/admin", "limit");
    assert_eq!((limit["schema"]["minimum"].clone(), limit["schema"]["maximum"].clone()), (json!(1), json!(1000)));
    assert_eq!(parameter("get", "/v1/sys/retention/runs", "limit")["schema"]["maximum"], 100);
    // Required fields and optional bodies.
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["ShareRequest"]["required"], json!(["fields"]));
    assert_eq!(schemas["TokenRequest"]["required"], json!(["name"]));
    assert_eq!(operation("post", "/v1/exp/start/{mode}/{id}")["requestBody"]["required"], false);
    assert!(schemas["DoneTokenReply"]["properties"]["token"]["type"]
        .as_array()
        .is_some_and(|t| t.contains(&json!("null"))));
    // What creates something links to what reads, changes and deletes it.
    let links = &operation("post", "/v1/user")["responses"]["200"]["links"];
    for (link, target) in [("GetUser", "getUser"), ("UpdateUser", "updateUser"), ("ForgetUser", "forgetUser")] {
        assert_eq!(links[link]["operationId"], target);
        assert_eq!(links[link]["parameters"], json!({"mode": "token", "id": "$response.body#/token"}));
    }
    let links = &operation("post", "/v1/session/{session}")["responses"]["200"]["links"];
    assert_eq!(links["GetSession"]["parameters"]["session"], "$response.body#/session");
    assert_eq!(links["DeleteSession"]["operationId"], "deleteSession");
    let mut operation_ids = BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            assert!(operation_ids.insert(operation["operationId"].as_str().unwrap().to_string()), "{operation}");
        }
    }
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for response in operation["responses"].as_object().unwrap().values() {
                for link in response["links"].as_object().into_iter().flat_map(|l| l.values()) {
                    let target = link["operationId"].as_str().unwrap();
                    assert!(operation_ids.contains(target), "a link to unknown operation {target}");
                }
            }
        }
    }
    // `vaultd openapi` prints the same document.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_vaultd")).arg("openapi").output().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&printed.stdout).unwrap(), document);
}

#[test]
fn every_route_in_the_table_is_routed() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    for (template, methods) in vaultd::api::ROUTES {
        let path = template
            .split('/')
            .map(|part| match part {
                "{mode}" => "token",
                "{brief}" => "marketing",
                "{activity}" => "newsletter",
                "{app}" => "shop",
                part if part.starts_with('{') => "00000000-0000-4000-8000-000000000000",
                part => part,
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in *methods {
            let reply = client.send(client.request(method, &path).json(&json!({"probe": 1})));
            let unrouted = reply.body["message"] == "route not found" || reply.status == 405;
            assert!(!unrouted, "{method} {template} is in the table but not routed: {} {}", reply.status, reply.body);
        }
    }
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405_with_json_envelopes() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    for path in
        ["/", "/v1", "/v1/nope", "/v1/user/token", "/v1/user/a/b/c", "/v2/user", "/v1/userapp/token", "/v1/nope/"]
    {
        let reply = client.get(path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        reply.assert_error(404);
        assert_eq!(reply.body["message"], "route not found", "{path}");
    }
    // Without a token, too: the route is unknown before anyone is authenticated.
    client.with_token(None).get("/v1/nope").assert_error(404);

    let token = client.create_user(json!({"login": "zoe"}));
    let wrong: Vec<(&str, String, &str)> = vec![
        ("PATCH", "/v1/user".into(), "POST"),
        ("GET", "/v1/user".into(), "POST"),
        ("DELETE", "/v1/user/".into(), "POST"),
        ("POST", user_path("token", &token), "GET, PUT, DELETE"),
        ("PATCH", user_path("token", &token), "GET, PUT, DELETE"),
        ("GET", "/v1/users".into(), "POST"),
        ("PATCH", format!("/v1/userapp/token/{token}/shop"), "POST, PUT, GET, DELETE"),
        ("POST", "/v1/userapps".into(), "GET"),
        ("POST", "/v1/status".into(), "GET"),
        ("HEAD", "/v1/status".into(), "GET"),
        ("OPTIONS", "/v1/status".into(), "GET"),
        ("DELETE", "/v1/sys/tokens".into(), "POST, GET"),
        ("POST", "/v1/audit/admin".into(), "GET"),
        ("PUT", "/v1/openapi.json".into(), "GET"),
    ];
    for (method, path, allow) in &wrong {
        let response = client.request(method, path).json(&json!({"login": "zoe2"})).send().unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        let header = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(header.as_deref(), Some(*allow), "{method} {path}");
        if *method != "HEAD" {
            let body: Value = response.json().unwrap();
            assert_eq!(body, json!({"status": "error", "message": "method not allowed"}), "{method} {path}");
        }
    }
    assert_eq!(client.get(&user_path("token", &token)).assert_ok()["data"], json!({"login": "zoe"}));
    client.get("/v1/user/login/zoe2").assert_error(404);
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

#[test]
fn concurrent_creates_with_one_email_have_exactly_one_winner() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let barrier = Barrier::new(16);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let client = client.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    let email = if i % 2 == 0 { "race@example.com" } else { " RACE@example.com" };
                    let request = client.request("POST", "/v1/user").json(&json!({"email": email, "n": i}));
                    barrier.wait();
                    client.send(request)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{:?}", replies.iter().map(|r| (r.status, r.body.to_string())).collect::<Vec<_>>());
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_error_naming(reply, 409, "email");
    }
    let winner = winners[0].body["token"].as_str().unwrap();
    let reply = client.get("/v1/user/email/race@example.com");
    assert_eq!(reply.assert_ok()["token"], winner);
    // The 15 refusals are audited; only the winner exists.
    let rows = client.get("/v1/audit/admin?limit=100");
    let rejected = rows.assert_ok()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "user-create" && r["result"] == "rejected: duplicate email")
        .count();
    assert_eq!(rejected, 15);
}

/// One round of 8 simultaneous PUTs to `path`, each merging its own field
/// `r{round}f{i}`; returns each field with its reply.
fn concurrent_put_round(client: &Client, path: &str, round: usize) -> Vec<(String, Reply)> {
    let barrier = Barrier::new(8);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let client = client.clone();
                let barrier = &barrier;
                scope.spawn(move || {
                    let field = format!("r{round}f{i}");
                    let request = client.request("PUT", path).json(&json!({field.clone(): i}));
                    barrier.wait();
                    (field, client.send(request))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// `i` of a field named `r{round}f{i}`.
fn field_index(field: &str) -> u64 {
    field.rsplit('f').next().unwrap().parse().unwrap()
}

#[test]
fn concurrent_updates_never_lose_an_acknowledged_write() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "busy"}));
    client.post(&format!("/v1/userapp/token/{token}/prefs"), json!({"login": "busy"})).assert_ok();
    for path in [user_path("token", &token), format!("/v1/userapp/token/{token}/prefs")] {
        let mut expected = json!({"login": "busy"});
        for round in 0..3 {
            for (field, reply) in concurrent_put_round(&client, &path, round) {
                if reply.status == 200 {
                    assert_eq!(reply.body, json!({"status": "ok", "token": token}));
                    expected[field.as_str()] = json!(field_index(&field));
                } else {
                    // Giving up under contention is allowed here; silently losing is not.
                    assert_error_naming(&reply, 409, "concurrently");
                }
            }
        }
        // Exactly the acknowledged fields are stored: none lost, none applied despite a 409.
        assert_eq!(client.get(&path).assert_ok()["data"], expected, "{path}");
    }
}

#[test]
fn concurrent_updates_of_one_record_all_land() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "busy"}));
    client.post(&format!("/v1/userapp/token/{token}/prefs"), json!({"login": "busy"})).assert_ok();
    // Several rounds, so that a failure which happens in a few percent of rounds shows.
    for path in [user_path("token", &token), format!("/v1/userapp/token/{token}/prefs")] {
        let mut expected = json!({"login": "busy"});
        for round in 0..25 {
            for (field, reply) in concurrent_put_round(&client, &path, round) {
                assert_eq!(
                    reply.status, 200,
                    "{path} {field}: every concurrent PUT lands after retrying: {}",
                    reply.body
                );
                expected[field.as_str()] = json!(field_index(&field));
            }
        }
        assert_eq!(client.get(&path).assert_ok()["data"], expected, "{path}");
    }
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

#[test]
fn personal_data_never_reaches_the_logs() {
    let vault = Vault::demo_with(&["--enable-bulk-list"]);
    let client = vault.demo_client();
    let pii = [
        "Xanthippe",
        "Quarrington-Blythe",
        "xanthippe.qb@example.net",
        "07700900999",
        "447700900999",
        "login-xqb",
        "custom-xqb-771",
        "Flat 9 Wobbly Mews",
        "ghost.person@example.net",
        "shop-card-4111",
    ];
    let token = client.create_user(json!({
        "first": pii[0], "last": pii[1], "email": pii[2], "phone": pii[3], "login": pii[5], "custom": pii[6]
    }));
    form(&client, "POST", "/v1/user", "first=Xanthippe&email=Xanthippe.QB%40example.net").assert_error(409);
    client.get("/v1/user/email/XANTHIPPE.QB@example.net").assert_ok();
    client.get("/v1/user/phone/+447700900999").assert_ok();
    client.get("/v1/user/login/login-xqb").assert_ok();
    client.get("/v1/user/custom/custom-xqb-771").assert_ok();
    client.get("/v1/user/email/ghost.person@example.net").assert_error(404);
    client.put("/v1/user/login/login-xqb", json!({"address": pii[7]})).assert_ok();
    client.put("/v1/user/login/login-xqb", json!({"login": {"bad": pii[1]}})).assert_error(400);
    json_body(&client, "PUT", "/v1/user/login/login-xqb", &format!(r#"{{"first": "{}""#, pii[0])).assert_error(400);
    client.post(&format!("/v1/userapp/token/{token}/shop"), json!({"card": pii[9]})).assert_ok();
    client.get("/v1/userapp/login/login-xqb/shop").assert_ok();
    client.send(client.request("POST", "/v1/users")).assert_ok();
    client.get(&format!("/v1/audit/list/{token}")).assert_ok();
    client.post("/v1/sys/tokens", json!({"name": "n", "scopes": [pii[2]]})).assert_error(400);
    let (_, secret) = access_token(&client, "log-check", &["users:read"]);
    client.with_token(Some(&secret)).get("/v1/user/login/login-xqb").assert_ok();
    client.delete("/v1/user/email/xanthippe.qb@example.net").assert_ok();

    let log = vault.log();
    assert!(log.contains("request"), "the debug log is captured:\n{log}");
    let lower = log.to_lowercase();
    for item in pii.iter().chain([&secret.as_str()]) {
        assert!(!lower.contains(&item.to_lowercase()), "log contains {item}:\n{log}");
    }
}

#[test]
fn a_stop_right_after_start_is_graceful() {
    // `stop` sends SIGTERM as soon as the `listening` line is out and requires exit code 0.
    for _ in 0..3 {
        let log = Vault::demo().stop();
        assert!(log.contains("vaultd stopped"), "{log}");
    }
}

#[test]
fn a_subject_needs_a_lookup_field_at_creation_and_keeps_one_through_changes() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let (events, _) = audit_head(&client);
    for body in [
        json!({"first": "Ann"}),
        json!({"first": "Ann", "login": "", "email": "  ", "phone": null, "custom": ""}),
        json!({"address": {"email": "nested@example.com"}}),
    ] {
        assert_error_naming(&client.post("/v1/user", body.clone()), 400, "lookup field");
    }
    let reply = client.send(
        client
            .request("POST", "/v1/user")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("first=Ann"),
    );
    assert_error_naming(&reply, 400, "lookup field");
    assert_eq!(audit_head(&client).0, events, "a refused creation wrote an audit event");

    let ann = client.create_user(json!({"first": "Ann", "login": "ann"}));
    let path = format!("/v1/user/token/{ann}");
    for change in [
        json!({"login": null}),
        json!({"login": ""}),
        json!([{"op": "remove", "path": "/login"}]),
        json!([{"op": "replace", "path": "", "value": {"first": "Ann"}}]),
    ] {
        assert_error_naming(&client.put(&path, change.clone()), 400, "lookup field");
    }
    assert_eq!(client.get(&path).assert_ok()["data"], json!({"first": "Ann", "login": "ann"}));
    // Swapping one lookup field for another keeps the subject findable.
    client.put(&path, json!({"login": null, "email": "ann@example.com"})).assert_ok();
    assert_eq!(client.get("/v1/user/email/ann@example.com").assert_ok()["token"], ann.as_str());
    client.get("/v1/user/login/ann").assert_error(404);

    // The subject's own change that would remove it is refused when filed, not left for
    // a DPO to find unapprovable.
    let created = client.post("/v1/sys/tokens", json!({"name": "ann-self", "subject": ann}));
    let own = client.with_token(created.assert_ok()["token"].as_str());
    assert_error_naming(&own.put(&path, json!({"email": null})), 400, "lookup field");
    assert_eq!(client.get("/v1/requests").assert_ok()["total"], 0);
    let filed = own.put(&path, json!({"first": "Annie"})).assert_ok().clone();
    assert_eq!(filed["result"], "request-created", "{filed}");

    // Retention may drop every lookup field; such a subject can still be changed.
    let spec = json!({"rules": [{"name": "drop", "match": {}, "action": "dropFields", "fields": ["email"]}]});
    client.post("/v1/sys/retention/run", json!({"policy": "crm/drop-email", "spec": spec})).assert_ok();
    assert_eq!(client.get(&path).assert_ok()["data"], json!({"first": "Ann"}));
    client.put(&path, json!({"first": "Anne"})).assert_ok();
    assert_eq!(client.get(&path).assert_ok()["data"], json!({"first": "Anne"}));
}

#[test]
fn an_empty_change_is_refused_and_writes_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let ann = client.create_user(json!({"login": "ann"}));
    client.post(&format!("/v1/userapp/token/{ann}/shop"), json!({"cart": 1})).assert_ok();
    let (events, _) = audit_head(&client);
    for path in [format!("/v1/user/token/{ann}"), format!("/v1/userapp/token/{ann}/shop")] {
        for (content_type, body) in [
            ("application/json", ""),
            ("application/json", "  "),
            ("application/json", "{}"),
            ("application/json", "[]"),
            ("application/json", " { } "),
            ("application/x-www-form-urlencoded", ""),
            ("application/x-www-form-urlencoded", "{}"),
            ("application/x-www-form-urlencoded", "=x"),
        ] {
            let request = client.request("PUT", &path).header("Content-Type", content_type).body(body);
            let reply = client.send(request);
            assert_eq!(reply.status, 400, "{path} {content_type} {body:?}: {}", reply.body);
            reply.assert_error(400);
        }
    }
    assert_eq!(audit_head(&client).0, events, "a refused change wrote an audit event");
    assert_eq!(client.get(&format!("/v1/userapp/token/{ann}/shop")).assert_ok()["data"], json!({"cart": 1}));
}

#[test]
fn a_change_may_be_a_form_as_databunker_takes_it() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let ann = client.create_user(json!({"login": "ann", "first": "Ann"}));
    client.post(&format!("/v1/userapp/token/{ann}/shop"), json!({"cart": 1})).assert_ok();
    let form = |path: &str, body: &str| {
        let request = client.request("PUT", path).header("Content-Type", "application/x-www-form-urlencoded");
        client.send(request.body(body.to_string()))
    };
    form(&format!("/v1/user/token/{ann}"), "first=Annie&city=Leeds%20North").assert_ok();
    let profile = json!({"login": "ann", "first": "Annie", "city": "Leeds North"});
    assert_eq!(client.get(&format!("/v1/user/token/{ann}")).assert_ok()["data"], profile);
    form(&format!("/v1/userapp/token/{ann}/shop"), "cart=2").assert_ok();
    assert_eq!(client.get(&format!("/v1/userapp/token/{ann}/shop")).assert_ok()["data"], json!({"cart": "2"}));
    // JSON labelled as a form (`curl -d`) is still JSON, a patch included.
    form(&format!("/v1/user/token/{ann}"), r#"[{"op": "remove", "path": "/city"}]"#).assert_ok();
    let profile = json!({"login": "ann", "first": "Annie"});
    assert_eq!(client.get(&format!("/v1/user/token/{ann}")).assert_ok()["data"], profile);
}

#[test]
fn look_alike_identifiers_are_one_identifier() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "Jos\u{e9}", "email": "r\u{e9}my@example.com"}));
    client.post("/v1/user", json!({"login": "Jose\u{301}"})).assert_error(409);
    client.post("/v1/user", json!({"login": "other", "email": "RE\u{301}MY@example.com"})).assert_error(409);
    let by_email = client.get("/v1/user/email/RE%CC%81MY%40example.com");
    assert_eq!(by_email.assert_ok()["token"], token.as_str());
}

#[test]
fn anonymous_requests_and_failed_authentications_are_rate_limited_per_address() {
    let vault = Vault::demo_with(&["--anonymous-requests-per-minute=3", "--failed-auth-per-minute=2"]);
    let client = vault.demo_client();
    let anonymous = client.with_token(None);
    let unknown = Uuid::new_v4();
    for path in [format!("/v1/get/{unknown}"), format!("/v1/exp/retain/{unknown}"), format!("/v1/exp/delete/{unknown}")]
    {
        anonymous.get(&path).assert_error(404);
    }
    let refused = reqwest::blocking::get(format!("{}/v1/get/{unknown}", vault.url)).unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let wait = refused.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    assert!(wait.is_some_and(|secs| (1..=60).contains(&secs)), "Retry-After: {wait:?}");
    assert_eq!(refused.json::<Value>().unwrap()["status"], "error");
    // Requests with a token are not anonymous traffic.
    client.get("/v1/status").assert_ok();

    // Two wrong tokens are 401; the third is 429. The right token still works, and the
    // failures are counted without what was presented.
    let wrong = client.with_token(Some("not-a-token-but-a-guess"));
    wrong.get("/v1/user/login/anyone").assert_error(401);
    wrong.get("/v1/user/login/anyone").assert_error(401);
    wrong.get("/v1/user/login/anyone").assert_error(429);
    client.create_user(json!({"login": "still-served"}));
    let metrics = anonymous.get("/metrics");
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("vaultd_auth_failures_total 3"), "{text}");
    assert!(!text.contains("not-a-token-but-a-guess"));
    assert!(!vault.log().contains("not-a-token-but-a-guess"));
}

#[test]
fn requests_without_a_token_to_authenticated_routes_count_as_failed_authentications() {
    let vault = Vault::demo_with(&["--failed-auth-per-minute=2", "--enable-anonymous-create"]);
    let client = vault.demo_client();
    let anonymous = client.with_token(None);
    // Anonymous sign-ups are anonymous traffic, not failed authentications.
    for n in 0..3 {
        anonymous.post("/v1/user", json!({"login": format!("signup-{n}")})).assert_ok();
    }
    anonymous.get("/v1/user/login/signup-0").assert_error(401);
    anonymous.get("/v1/user/login/signup-0").assert_error(401);
    anonymous.get("/v1/user/login/signup-0").assert_error(429);
    // A token known to the node still works from the same address.
    client.get("/v1/user/login/signup-0").assert_ok();
}

#[test]
fn each_subject_token_has_its_own_request_allowance() {
    let vault = Vault::demo_with(&["--subject-token-requests-per-minute=2"]);
    let client = vault.demo_client();
    let alice = client.create_user(json!({"login": "alice"}));
    let bob = client.create_user(json!({"login": "bob"}));
    let as_alice = subject_client(&client, &alice);
    let as_bob = subject_client(&client, &bob);
    as_alice.get(&format!("/v1/user/token/{alice}")).assert_ok();
    as_alice.get(&format!("/v1/user/token/{alice}")).assert_ok();
    as_alice.get(&format!("/v1/user/token/{alice}")).assert_error(429);
    as_bob.get(&format!("/v1/user/token/{bob}")).assert_ok();
    // Staff tokens are not subject tokens.
    for _ in 0..3 {
        client.get(&format!("/v1/user/token/{alice}")).assert_ok();
    }
}
