//! Subject tokens and requests for a DPO (`/v1/requests`, `/v1/request/{rtoken}`) against
//! real `vaultd demo` processes: filing, the exact reply and row shapes, approval
//! (merge and JSON patch), cancellation, forget-me closing open requests, paging and
//! filters, audit events, and what a subject token may and may not reach.

mod support;

use serde_json::{json, Value};
use support::cluster::TestCluster;
use support::{
    audit_rows, keys, occurs_in_files, operations, profile, serve_scratch, subject_client, Client, Reply, Vault,
};
use uuid::Uuid;

/// Creates a scoped token with the root client and returns its secret.
fn scoped(root: &Client, name: &str, scopes: &[&str]) -> Client {
    let reply = root.post("/v1/sys/tokens", json!({"name": name, "scopes": scopes}));
    root.with_token(reply.assert_ok()["token"].as_str())
}

fn dpo(root: &Client) -> Client {
    scoped(root, "dpo", &["requests:admin"])
}

/// The rtoken of a reply that filed a request, checking its exact shape.
fn filed(reply: Reply) -> String {
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["result", "rtoken", "status"], "{body}");
    assert_eq!(body["result"], "request-created", "{body}");
    let rtoken = body["rtoken"].as_str().unwrap();
    Uuid::parse_str(rtoken).unwrap();
    rtoken.to_string()
}

fn request(client: &Client, rtoken: &str) -> Value {
    client.get(&format!("/v1/request/{rtoken}")).assert_ok()["request"].clone()
}

fn assert_row(row: &Value, rtoken: &str, subject: &str, action: &str, status: &str, app: Option<&str>) {
    let mut expected = vec!["action", "creationtime", "reason", "rtoken", "status", "token", "when"];
    if app.is_some() {
        expected.push("app");
        expected.sort();
    }
    let mut got = keys(row);
    got.retain(|k| *k != "original" && *k != "change");
    assert_eq!(got, expected, "{row}");
    assert_eq!(row["rtoken"], rtoken, "{row}");
    assert_eq!(row["token"], subject, "{row}");
    assert_eq!(row["action"], action, "{row}");
    assert_eq!(row["status"], status, "{row}");
    assert!(row["creationtime"].as_u64().is_some_and(|t| t > 1_600_000_000), "{row}");
    assert!(row["when"].as_u64().unwrap() >= row["creationtime"].as_u64().unwrap(), "{row}");
    assert_eq!(row["app"].as_str(), app, "{row}");
}

#[test]
fn each_kind_of_subject_change_is_filed_with_its_exact_row_and_changes_nothing() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "first": "Ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);

    let change = filed(own.put("/v1/user/login/ann", json!({"first": "Annie"})));
    let app = filed(own.put("/v1/userapp/token/{ann}/SHOP".replace("{ann}", &ann).as_str(), json!({"city": "York"})));
    let forget = filed(own.delete("/v1/user/login/ann"));
    assert_eq!(profile(&root, &ann), json!({"login": "ann", "first": "Ann"}));
    assert_eq!(root.get("/v1/userapp/login/ann/shop").assert_ok()["data"], json!({"city": "Leeds"}));

    // Rows: the subject's own list, newest or oldest first, and the DPO's queue agree.
    let mine = own.get("/v1/requests/login/ann").assert_ok().clone();
    assert_eq!(mine["total"], 3, "{mine}");
    let queue = dpo.get("/v1/requests").assert_ok().clone();
    assert_eq!(queue["total"], 3, "{queue}");
    for rows in [&mine["rows"], &queue["rows"]] {
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 3);
        let find = |rtoken: &str| rows.iter().find(|r| r["rtoken"] == rtoken).unwrap().clone();
        assert_row(&find(&change), &change, &ann, "change-profile", "open", None);
        assert_row(&find(&app), &app, &ann, "change-app-data", "open", Some("shop"));
        assert_row(&find(&forget), &forget, &ann, "forget-me", "open", None);
        assert_eq!(find(&change)["reason"], "");
    }

    // One request: the current data and the requested change, for the DPO and the subject.
    for client in [&dpo, &own] {
        let one = request(client, &change);
        assert_row(&one, &change, &ann, "change-profile", "open", None);
        assert_eq!(one["original"], json!({"login": "ann", "first": "Ann"}));
        assert_eq!(one["change"], json!({"first": "Annie"}));
        let one = request(client, &app);
        assert_row(&one, &app, &ann, "change-app-data", "open", Some("shop"));
        assert_eq!(one["original"], json!({"city": "Leeds"}));
        assert_eq!(one["change"], json!({"city": "York"}));
        let one = request(client, &forget);
        assert_row(&one, &forget, &ann, "forget-me", "open", None);
        assert_eq!(one["original"], json!({"login": "ann", "first": "Ann"}));
        assert!(one.get("change").is_none(), "{one}");
    }

    // Reads stay direct; staff writes are never diverted, not even with users:* scopes.
    assert_eq!(own.get("/v1/user/login/ann").assert_ok()["data"]["first"], "Ann");
    let staff = scoped(&root, "staff", &["users:*", "apps:*:*"]);
    let reply = staff.put("/v1/user/login/ann", json!({"last": "Smith"}));
    assert_eq!(reply.assert_ok()["token"], ann.as_str());
    assert_eq!(profile(&root, &ann)["last"], "Smith");
    staff.put("/v1/userapp/login/ann/shop", json!({"zip": "LS1"})).assert_ok();
    assert_eq!(root.get("/v1/userapp/login/ann/shop").assert_ok()["data"], json!({"city": "Leeds", "zip": "LS1"}));
    assert_eq!(dpo.get("/v1/requests").assert_ok()["total"], 3, "staff writes filed no request");
    // The DPO's view shows the data as it is now.
    assert_eq!(request(&dpo, &change)["original"]["last"], "Smith");
}

#[test]
fn filing_checks_that_the_subject_and_app_record_exist_and_is_refused_for_others() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    root.create_user(json!({"login": "bob"}));
    root.post("/v1/userapp/login/bob/shop", json!({"a": 1})).assert_ok();
    let own = subject_client(&root, &ann);
    // An app record she does not have: 404, and nothing is filed.
    own.put("/v1/userapp/login/ann/shop", json!({"a": 2})).assert_error(404);
    // Other subjects, and identifiers nobody has: 403.
    own.put("/v1/user/login/bob", json!({"a": 2})).assert_error(403);
    own.delete("/v1/user/login/bob").assert_error(403);
    own.put("/v1/userapp/login/bob/shop", json!({"a": 2})).assert_error(403);
    own.put("/v1/user/login/nobody", json!({"a": 2})).assert_error(403);
    own.delete(&format!("/v1/user/token/{}", Uuid::new_v4())).assert_error(403);
    own.put("/v1/user/bogus/ann", json!({"a": 2})).assert_error(400);
    own.put("/v1/user/token/not-a-uuid", json!({"a": 2})).assert_error(400);
    assert_eq!(dpo(&root).get("/v1/requests").assert_ok()["total"], 0);
    assert_eq!(root.get("/v1/userapp/login/bob/shop").assert_ok()["data"], json!({"a": 1}));
}

#[test]
fn approval_applies_a_merge_or_a_patch_once_and_is_audited_as_the_change_itself() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "first": "Ann", "tags": ["a"]}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds", "zip": "LS1"})).assert_ok();
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);

    let patch =
        json!([{"op": "replace", "path": "/first", "value": "Annie"}, {"op": "add", "path": "/tags/-", "value": "b"}]);
    let by_patch = filed(own.put("/v1/user/login/ann", patch.clone()));
    let by_merge = filed(own.put("/v1/userapp/login/ann/shop", json!({"city": "York", "zip": null})));
    assert_eq!(request(&dpo, &by_patch)["change"], patch);

    let reply = dpo.post(&format!("/v1/request/{by_patch}"), json!({"reason": "verified by phone"}));
    assert_eq!(reply.assert_ok()["result"], "done");
    assert_eq!(profile(&root, &ann), json!({"login": "ann", "first": "Annie", "tags": ["a", "b"]}));
    // No body at all is as good as an empty one.
    let bare = dpo.send(dpo.request("POST", &format!("/v1/request/{by_merge}")));
    bare.assert_ok();
    assert_eq!(root.get("/v1/userapp/login/ann/shop").assert_ok()["data"], json!({"city": "York"}));

    let approved = request(&dpo, &by_patch);
    assert_row(&approved, &by_patch, &ann, "change-profile", "approved", None);
    assert_eq!(approved["reason"], "verified by phone");
    assert_eq!(request(&dpo, &by_merge)["status"], "approved");
    assert_eq!(request(&own, &by_merge)["reason"], "");

    // Once only: approving again, or cancelling, an approved request is 409.
    dpo.post(&format!("/v1/request/{by_patch}"), json!({})).assert_error(409);
    dpo.delete(&format!("/v1/request/{by_patch}")).assert_error(409);
    own.delete(&format!("/v1/request/{by_merge}")).assert_error(409);
    assert_eq!(profile(&root, &ann)["tags"], json!(["a", "b"]), "the patch was applied once");

    // The approval is audited as the change it applied, naming the request.
    let rows = audit_rows(&root, &ann);
    let update = rows.iter().find(|r| r["operation"] == "user-update").unwrap();
    assert_eq!(update["purpose"], format!("request {by_patch} approved"), "{update}");
    let app_update = rows.iter().find(|r| r["operation"] == "app-update").unwrap();
    assert_eq!(app_update["purpose"], format!("request {by_merge} approved"), "{app_update}");
    let ops = operations(&rows);
    assert_eq!(ops.iter().filter(|o| **o == "user-update").count(), 1, "{ops:?}");
    assert_eq!(ops.iter().filter(|o| **o == "request-create").count(), 2, "{ops:?}");

    // Status filters.
    assert_eq!(dpo.get("/v1/requests?status=approved").assert_ok()["total"], 2);
    assert_eq!(dpo.get("/v1/requests?status=open").assert_ok()["total"], 0);
    assert_eq!(dpo.get("/v1/requests?status=cancelled").assert_ok()["total"], 0);
}

#[test]
fn a_change_that_cannot_apply_is_refused_and_the_request_stays_open() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "first": "Ann"}));
    root.create_user(json!({"login": "bob"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);

    // Patches that do not apply to her records as they are now are refused when filed.
    let events = || root.get("/v1/audit/admin?limit=1").assert_ok()["total"].clone();
    let before = events();
    own.put("/v1/user/login/ann", json!([{"op": "test", "path": "/first", "value": "Zed"}])).assert_error(400);
    own.put("/v1/userapp/login/ann/shop", json!([{"op": "remove", "path": "/nope"}])).assert_error(400);
    assert_eq!(events(), before, "a refused filing wrote an audit event");
    assert_eq!(own.get("/v1/requests/login/ann").assert_ok()["total"], 0);

    // Patches that apply when filed but not once her records have changed.
    let failing = filed(own.put("/v1/user/login/ann", json!([{"op": "test", "path": "/first", "value": "Ann"}])));
    let missing = filed(own.put("/v1/userapp/login/ann/shop", json!([{"op": "remove", "path": "/city"}])));
    root.put("/v1/user/login/ann", json!({"first": "Annie"})).assert_ok();
    root.put("/v1/userapp/login/ann/shop", json!([{"op": "remove", "path": "/city"}])).assert_ok();
    // Taking bob's login.
    let duplicate = filed(own.put("/v1/user/login/ann", json!({"login": "bob"})));
    // Taking a login nobody has, but changing identifiers.
    let rename = filed(own.put("/v1/user/login/ann", json!({"login": "anna"})));

    dpo.post(&format!("/v1/request/{failing}"), json!({})).assert_error(400);
    dpo.post(&format!("/v1/request/{missing}"), json!({})).assert_error(400);
    dpo.post(&format!("/v1/request/{duplicate}"), json!({})).assert_error(409);
    for rtoken in [&failing, &missing, &duplicate] {
        assert_eq!(request(&dpo, rtoken)["status"], "open", "{rtoken}");
    }
    assert_eq!(profile(&root, &ann), json!({"login": "ann", "first": "Annie"}));
    assert_eq!(root.get("/v1/user/login/bob").assert_ok()["data"], json!({"login": "bob"}));

    // An approved identifier change moves the identifier.
    dpo.post(&format!("/v1/request/{rename}"), json!({})).assert_ok();
    assert_eq!(root.get("/v1/user/login/anna").assert_ok()["token"], ann.as_str());
    root.get("/v1/user/login/ann").assert_error(404);
    // Her own token follows her to the new identifier, and the old one names nobody.
    own.get("/v1/user/login/anna").assert_ok();
    own.get("/v1/requests/login/anna").assert_ok();
    own.get("/v1/user/login/ann").assert_error(403);

    // The stuck requests can still be cancelled, by the subject or the DPO.
    own.delete(&format!("/v1/request/{failing}")).assert_ok();
    dpo.send(dpo.request("DELETE", &format!("/v1/request/{missing}")).json(&json!({"reason": "not possible"})))
        .assert_ok();
    assert_eq!(request(&dpo, &missing)["reason"], "not possible");
    assert_eq!(dpo.get("/v1/requests?status=cancelled").assert_ok()["total"], 2);
    assert_eq!(dpo.get("/v1/requests?status=canceled").assert_ok()["total"], 2);
    assert_eq!(dpo.get("/v1/requests?status=open").assert_ok()["total"], 1);
}

#[test]
fn reasons_are_strings_of_at_most_1024_characters() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);
    let first = filed(own.put("/v1/user/login/ann", json!({"a": 1})));
    let second = filed(own.put("/v1/user/login/ann", json!({"b": 1})));
    let path = format!("/v1/request/{first}");
    for bad in [json!({"reason": 42}), json!({"reason": ["x"]}), json!({"reason": "x".repeat(1025)})] {
        dpo.post(&path, bad.clone()).assert_error(400);
        dpo.send(dpo.request("DELETE", &path).json(&bad)).assert_error(400);
    }
    // Characters are counted, not bytes (as the API document's maxLength counts them).
    dpo.post(&path, json!({"reason": "é".repeat(1025)})).assert_error(400);
    dpo.post(&path, json!({"reason": [1]})).assert_error(400);
    dpo.post(&path, json!(["reason"])).assert_error(400);
    assert_eq!(request(&dpo, &first)["status"], "open");
    assert_eq!(profile(&root, &ann), json!({"login": "ann"}));
    // Exactly 1024 characters (2048 bytes), and null, are accepted.
    dpo.post(&path, json!({"reason": "é".repeat(1024)})).assert_ok();
    assert_eq!(request(&dpo, &first)["reason"], "é".repeat(1024));
    dpo.post(&format!("/v1/request/{second}"), json!({"reason": null})).assert_ok();
    assert_eq!(profile(&root, &ann), json!({"login": "ann", "a": 1, "b": 1}));
}

#[test]
fn forgetting_a_subject_cancels_its_open_requests_and_hides_their_changes() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let bob = root.create_user(json!({"login": "bob"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let bobs = subject_client(&root, &bob);
    let dpo = dpo(&root);

    let approved = filed(own.put("/v1/user/login/ann", json!({"first": "Ann"})));
    dpo.post(&format!("/v1/request/{approved}"), json!({"reason": "ok"})).assert_ok();
    let cancelled = filed(own.put("/v1/user/login/ann", json!({"first": "X"})));
    own.delete(&format!("/v1/request/{cancelled}")).assert_ok();
    let open_profile = filed(own.put("/v1/user/login/ann", json!({"first": "Y"})));
    let open_app = filed(own.put("/v1/userapp/login/ann/shop", json!({"city": "York"})));
    let bobs_open = filed(bobs.put("/v1/user/login/bob", json!({"first": "Bob"})));

    // Staff forget her directly.
    root.delete("/v1/user/login/ann").assert_ok();

    for rtoken in [&open_profile, &open_app] {
        let one = request(&dpo, rtoken);
        assert_eq!(one["status"], "cancelled", "{one}");
        assert_eq!(one["reason"], "the subject was forgotten", "{one}");
        assert!(one.get("change").is_none(), "{one}");
    }
    let one = request(&dpo, &approved);
    assert_eq!((one["status"].as_str(), one["reason"].as_str()), (Some("approved"), Some("ok")), "{one}");
    assert!(one.get("change").is_none(), "{one}");
    let one = request(&dpo, &cancelled);
    assert_eq!(one["status"], "cancelled", "{one}");
    assert_eq!(one["reason"], "", "{one}");
    assert!(one.get("change").is_none(), "{one}");
    // Cancelled requests are closed: approving is 409 and applies nothing.
    dpo.post(&format!("/v1/request/{open_profile}"), json!({})).assert_error(409);
    dpo.delete(&format!("/v1/request/{open_app}")).assert_error(409);
    assert_eq!(profile(&root, &ann), json!({}));

    // Bob's request is untouched, and still approvable.
    assert_eq!(request(&dpo, &bobs_open)["status"], "open");
    assert_eq!(request(&dpo, &bobs_open)["change"], json!({"first": "Bob"}));
    assert_eq!(dpo.get("/v1/requests?status=open").assert_ok()["total"], 1);
    assert_eq!(dpo.get("/v1/requests?status=cancelled").assert_ok()["total"], 3);

    // A forgotten subject's list is still readable by staff; subject tokens for her are refused.
    assert_eq!(root.get(&format!("/v1/requests/token/{ann}")).assert_ok()["total"], 4);
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": ann})).assert_error(404);
}

#[test]
fn an_approved_forget_me_cancels_the_other_open_requests_but_stays_approved() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "email": "ann@example.com"}));
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);
    let other = filed(own.put("/v1/user/login/ann", json!({"first": "Ann"})));
    let forget = filed(own.delete("/v1/user/token/{ann}".replace("{ann}", &ann).as_str()));
    dpo.post(&format!("/v1/request/{forget}"), json!({"reason": "identity checked"})).assert_ok();

    let one = request(&dpo, &forget);
    assert_row(&one, &forget, &ann, "forget-me", "approved", None);
    assert_eq!(one["reason"], "identity checked");
    let one = request(&dpo, &other);
    assert_eq!(
        (one["status"].as_str(), one["reason"].as_str()),
        (Some("cancelled"), Some("the subject was forgotten"))
    );
    assert!(one.get("change").is_none(), "{one}");
    root.get("/v1/user/email/ann@example.com").assert_error(404);
    assert_eq!(profile(&root, &ann), json!({}));

    let rows = audit_rows(&root, &ann);
    let forgot = rows.iter().find(|r| r["operation"] == "user-forget").unwrap();
    assert_eq!(forgot["purpose"], format!("request {forget} approved"), "{forgot}");
    // Approving again is 409.
    dpo.post(&format!("/v1/request/{forget}"), json!({})).assert_error(409);
}

#[test]
fn request_lists_page_and_refuse_bad_parameters() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let bob = root.create_user(json!({"login": "bob"}));
    let own = subject_client(&root, &ann);
    let bobs = subject_client(&root, &bob);
    let dpo = dpo(&root);
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(filed(own.put("/v1/user/login/ann", json!({ "n": n }))));
    }
    filed(bobs.put("/v1/user/login/bob", json!({"n": 9})));

    let all = dpo.get("/v1/requests?limit=1000").assert_ok().clone();
    assert_eq!((all["total"].as_u64(), all["rows"].as_array().unwrap().len()), (Some(6), 6));
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let page = dpo.get(&format!("/v1/requests?offset={offset}&limit=2")).assert_ok().clone();
        assert_eq!(page["total"], 6, "{page}");
        assert_eq!(page["rows"].as_array().unwrap().len(), 2, "{page}");
        seen.extend(page["rows"].as_array().unwrap().iter().map(|r| r["rtoken"].as_str().unwrap().to_string()));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "pages overlap or skip");
    let beyond = dpo.get("/v1/requests?offset=6").assert_ok().clone();
    assert_eq!((beyond["total"].as_u64(), beyond["rows"].as_array().unwrap().len()), (Some(6), 0));

    let own_page = own.get("/v1/requests/login/ann?offset=1&limit=3").assert_ok().clone();
    assert_eq!(own_page["total"], 5);
    assert_eq!(own_page["rows"].as_array().unwrap().len(), 3);
    assert!(own_page["rows"].as_array().unwrap().iter().all(|r| r["token"] == ann.as_str()));
    let default = own.get("/v1/requests/login/ann").assert_ok().clone();
    assert_eq!(default["rows"].as_array().unwrap().len(), 5);

    dpo.send(dpo.request("DELETE", &format!("/v1/request/{}", mine[0]))).assert_ok();
    let open = dpo.get("/v1/requests?status=open&limit=2").assert_ok().clone();
    assert_eq!(open["total"], 5);
    assert_eq!(open["rows"].as_array().unwrap().len(), 2);
    assert!(open["rows"].as_array().unwrap().iter().all(|r| r["status"] == "open"));
    let empty_status = dpo.get("/v1/requests?status=").assert_ok().clone();
    assert_eq!(empty_status["total"], 6);

    for bad in ["limit=0", "limit=1001", "offset=-1", "limit=x", "status=OPEN", "status=done"] {
        dpo.get(&format!("/v1/requests?{bad}")).assert_error(400);
    }
    for bad in ["limit=0", "offset=-1", "limit=abc"] {
        own.get(&format!("/v1/requests/login/ann?{bad}")).assert_error(400);
    }
    // One subject's list: users:read, not requests:admin; a name nobody has is 404 for staff.
    dpo.get("/v1/requests/login/ann").assert_error(403);
    let reader = scoped(&root, "reader", &["users:read"]);
    assert_eq!(reader.get("/v1/requests/login/ann").assert_ok()["total"], 5);
    reader.get("/v1/requests/login/nobody").assert_error(404);
    reader.get("/v1/requests/bogus/ann").assert_error(400);
    reader.get("/v1/requests").assert_error(403);
    // A subject token: only its own, under any identifier of its own.
    own.get(&format!("/v1/requests/token/{ann}")).assert_ok();
    own.get("/v1/requests/login/bob").assert_error(403);
    own.get(&format!("/v1/requests/token/{bob}")).assert_error(403);
    own.get("/v1/requests/login/nobody").assert_error(403);
}

#[test]
fn who_may_read_approve_and_cancel_a_request() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let bob = root.create_user(json!({"login": "bob"}));
    let own = subject_client(&root, &ann);
    let bobs = subject_client(&root, &bob);
    let dpo = dpo(&root);
    let rtoken = filed(own.put("/v1/user/login/ann", json!({"first": "Ann"})));
    let path = format!("/v1/request/{rtoken}");

    // Staff without requests:admin.
    let staff = scoped(&root, "staff", &["users:*", "apps:*:*"]);
    staff.get(&path).assert_error(403);
    staff.post(&path, json!({})).assert_error(403);
    staff.delete(&path).assert_error(403);
    staff.get("/v1/requests").assert_error(403);
    // Subject tokens: never the DPO routes; another subject's request does not exist for them.
    own.get("/v1/requests").assert_error(403);
    own.post(&path, json!({})).assert_error(403);
    bobs.post(&path, json!({})).assert_error(403);
    bobs.get(&path).assert_error(404);
    bobs.delete(&path).assert_error(404);
    // Malformed and unknown rtokens.
    for client in [&dpo, &own] {
        client.get("/v1/request/not-a-uuid").assert_error(400);
        client.delete("/v1/request/not-a-uuid").assert_error(400);
        client.get(&format!("/v1/request/{}", Uuid::new_v4())).assert_error(404);
        client.delete(&format!("/v1/request/{}", Uuid::new_v4())).assert_error(404);
    }
    dpo.post("/v1/request/not-a-uuid", json!({})).assert_error(400);
    dpo.post(&format!("/v1/request/{}", Uuid::new_v4()), json!({})).assert_error(404);
    // Anonymous and wrong tokens.
    root.with_token(None).get(&path).assert_error(401);
    root.with_token(Some("wrong")).post(&path, json!({})).assert_error(401);
    assert_eq!(request(&dpo, &rtoken)["status"], "open");
    assert!(profile(&root, &ann).get("first").is_none());

    // The subject withdraws its own request; a subject cannot approve it by any route.
    own.delete(&path).assert_ok();
    assert_eq!(request(&own, &rtoken)["status"], "cancelled");
    own.delete(&path).assert_error(409);
    dpo.post(&path, json!({})).assert_error(409);
}

#[test]
fn a_subject_token_is_refused_on_every_route_not_about_its_own_subject() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "email": "ann@example.com"}));
    let bob = root.create_user(json!({"login": "bob"}));
    root.post("/v1/lbasis/contract", json!({})).assert_ok();
    root.post("/v1/agreement/contract/login/bob", json!({})).assert_ok();
    let own = subject_client(&root, &ann);

    // Routes that name a subject: bob, and identifiers nobody has, are 403.
    for (who, id) in [("login", "bob".to_string()), ("token", bob.clone()), ("login", "nobody".into())] {
        own.get(&format!("/v1/userapp/{who}/{id}")).assert_error(403);
        own.get(&format!("/v1/sessions/{who}/{id}")).assert_error(403);
        own.get(&format!("/v1/agreements/{who}/{id}")).assert_error(403);
        own.get(&format!("/v1/agreement/contract/{who}/{id}")).assert_error(403);
        own.post(&format!("/v1/agreement/contract/{who}/{id}"), json!({})).assert_error(403);
        own.delete(&format!("/v1/agreement/contract/{who}/{id}")).assert_error(403);
        own.post(&format!("/v1/sharedrecord/{who}/{id}"), json!({"fields": "login"})).assert_error(403);
        own.post(&format!("/v1/exp/start/{who}/{id}"), json!({"expiration": "1d"})).assert_error(403);
        own.get(&format!("/v1/exp/status/{who}/{id}")).assert_error(403);
        own.delete(&format!("/v1/exp/cancel/{who}/{id}")).assert_error(403);
        own.get(&format!("/v1/requests/{who}/{id}")).assert_error(403);
        own.post(&format!("/v1/userapp/{who}/{id}/shop"), json!({"a": 1})).assert_error(403);
        own.delete(&format!("/v1/userapp/{who}/{id}/shop")).assert_error(403);
    }
    // Her own, on the same routes.
    own.get("/v1/userapp/login/ann").assert_ok();
    own.get("/v1/sessions/email/ann@example.com").assert_ok();
    own.get("/v1/agreements/login/ann").assert_ok();
    own.post("/v1/agreement/contract/login/ann", json!({})).assert_ok();
    own.post("/v1/sharedrecord/login/ann", json!({"fields": "login"})).assert_ok();
    own.get(&format!("/v1/requests/token/{ann}")).assert_ok();

    // Routes not about one subject.
    own.post("/v1/user", json!({"login": "eve"})).assert_error(403);
    own.post("/v1/users", json!({})).assert_error(403);
    own.get("/v1/audit/admin").assert_error(403);
    own.get(&format!("/v1/audit/list/{bob}")).assert_error(403);
    own.get("/v1/sys/tokens").assert_error(403);
    own.post("/v1/sys/tokens", json!({"name": "x", "subject": ann})).assert_error(403);
    own.get("/v1/sys/cluster").assert_error(403);
    own.post("/v1/sys/retention/run", json!({})).assert_error(403);
    own.get("/v1/sys/retention/runs").assert_error(403);
    own.post("/v1/lbasis/marketing", json!({})).assert_error(403);
    own.delete("/v1/lbasis/contract").assert_error(403);
    own.get("/v1/requests").assert_error(403);
    // Nothing of bob's changed.
    assert_eq!(root.get("/v1/user/login/bob").assert_ok()["data"], json!({"login": "bob"}));
    assert_eq!(root.get("/v1/agreements/login/bob").assert_ok()["total"], 1);
    root.get("/v1/sys/retention/runs").assert_ok();
}

#[test]
fn exptokens_and_shared_record_ids_are_not_access_tokens() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let own = subject_client(&root, &ann);
    let rtoken = filed(own.put("/v1/user/login/ann", json!({"first": "Ann"})));
    let exp = root.post("/v1/exp/start/login/ann", json!({"expiration": "1d"}));
    let exptoken = exp.assert_ok()["exptoken"].as_str().unwrap().to_string();
    let shared = root.post("/v1/sharedrecord/login/ann", json!({"fields": "login"}));
    let record = shared.assert_ok()["record"].as_str().unwrap().to_string();
    for secret in [exptoken.as_str(), record.as_str(), rtoken.as_str(), ann.as_str()] {
        let stranger = root.with_token(Some(secret));
        stranger.get("/v1/user/login/ann").assert_error(401);
        stranger.get(&format!("/v1/request/{rtoken}")).assert_error(401);
        stranger.get("/v1/requests").assert_error(401);
        stranger.put("/v1/user/login/ann", json!({"first": "Eve"})).assert_error(401);
    }
    assert_eq!(dpo(&root).get("/v1/requests").assert_ok()["total"], 1);
    // A revoked subject token is refused.
    let id = root.get("/v1/sys/tokens").assert_ok()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["subject"] == ann.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    root.delete(&format!("/v1/sys/tokens/{id}")).assert_ok();
    own.get("/v1/user/login/ann").assert_error(401);
    own.delete(&format!("/v1/request/{rtoken}")).assert_error(401);
}

#[test]
fn a_forgotten_subjects_token_is_revoked_with_it() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let own = subject_client(&root, &ann);
    let rtoken = filed(own.put("/v1/user/login/ann", json!({"first": "Ann"})));
    root.delete("/v1/user/login/ann").assert_ok();
    // Her token went with her: it authenticates nothing any more.
    own.put(&format!("/v1/user/token/{ann}"), json!({"first": "Again"})).assert_error(401);
    own.delete(&format!("/v1/user/token/{ann}")).assert_error(401);
    own.get(&format!("/v1/user/token/{ann}")).assert_error(401);
    assert!(root.get("/v1/sys/tokens").assert_ok()["tokens"].as_array().unwrap().is_empty());
    // Her closed request, without its change or the data it would change.
    let one = request(&dpo(&root), &rtoken);
    assert_row(&one, &rtoken, &ann, "change-profile", "cancelled", None);
    assert!(one.get("change").is_none() && one.get("original").is_none(), "{one}");
    // Her list stays readable to staff, as evidence.
    let list = root.get(&format!("/v1/requests/token/{ann}")).assert_ok().clone();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["rows"][0]["reason"], "the subject was forgotten", "{list}");
    assert_eq!(dpo(&root).get("/v1/requests").assert_ok()["total"], 1);
}

#[test]
fn requested_values_stay_out_of_audit_events_and_data_files() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "email": "ann@example.com"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);
    let email = "zq-new-address-7731@example.org";
    let city = "Zqxville-4410";
    let note = "zq-cancelled-value-0093";
    let change = filed(own.put("/v1/user/login/ann", json!({"email": email})));
    let app = filed(own.put("/v1/userapp/login/ann/shop", json!({"city": city})));
    let withdrawn = filed(own.put("/v1/user/login/ann", json!({"note": note})));
    assert_eq!(request(&dpo, &change)["change"]["email"], email);
    own.get(&format!("/v1/request/{app}")).assert_ok();
    dpo.get("/v1/requests").assert_ok();
    own.get("/v1/requests/login/ann").assert_ok();
    own.delete(&format!("/v1/request/{withdrawn}")).assert_ok();
    dpo.post(&format!("/v1/request/{change}"), json!({})).assert_ok();
    dpo.post(&format!("/v1/request/{app}"), json!({})).assert_ok();
    assert_eq!(root.get(&format!("/v1/user/email/{email}")).assert_ok()["token"], ann.as_str());

    let rows = audit_rows(&root, &ann);
    let ops = operations(&rows);
    for op in ["request-create", "request-read", "request-list", "request-cancel", "user-update", "app-update"] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let admin = root.get("/v1/audit/admin?limit=1000").assert_ok().clone();
    let admin_ops: Vec<&str> =
        admin["rows"].as_array().unwrap().iter().filter_map(|r| r["operation"].as_str()).collect();
    assert!(admin_ops.contains(&"request-list"), "{admin_ops:?}");
    let everything = format!("{rows:?}{admin}");
    for value in [email, city, note] {
        assert!(!everything.contains(value), "{value} in audit events");
    }
    // Each audit event in full, too.
    for row in &rows {
        if let Some(atoken) = row["atoken"].as_str() {
            let event = root.get(&format!("/v1/audit/get/{atoken}")).assert_ok().clone();
            for value in [email, city, note] {
                assert!(!event.to_string().contains(value), "{value} in {event}");
            }
        }
    }
    for value in [email, city, note, "zq-new-address-7731"] {
        assert_eq!(occurs_in_files(&vault.data_dir, value), None, "{value} in the clear");
    }
}

#[test]
fn subject_tokens_are_made_only_for_active_subjects_without_scopes() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": ann, "scopes": []})).assert_ok();
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": ann, "scopes": ["users:read"]})).assert_error(400);
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": "ann"})).assert_error(400);
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": ""})).assert_error(400);
    root.post("/v1/sys/tokens", json!({"name": "x", "subject": Uuid::new_v4()})).assert_error(404);
    root.post("/v1/sys/tokens", json!({"name": "", "subject": ann})).assert_error(400);
    // A token-maker with fewer scopes than a subject token holds cannot make one.
    let narrow = scoped(&root, "narrow", &["users:read", "tokens:admin"]);
    let reply = narrow.post("/v1/sys/tokens", json!({"name": "x", "subject": ann}));
    reply.assert_error(403);
    // Made for one subject, it reaches that subject by every identifier mode.
    let own = subject_client(&root, &ann);
    assert_eq!(own.get(&format!("/v1/user/token/{ann}")).assert_ok()["token"], ann.as_str());
    let rtoken = filed(own.put(&format!("/v1/user/token/{ann}"), json!({"first": "Ann"})));
    assert_eq!(request(&own, &rtoken)["token"], ann.as_str());
}

#[test]
fn with_direct_subject_changes_nothing_is_filed_and_app_changes_are_direct() {
    let vault = Vault::demo_with(&["--subject-changes", "direct"]);
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let reply = own.put("/v1/userapp/login/ann/shop", json!({"city": "York"}));
    assert_eq!(reply.assert_ok()["token"], ann.as_str());
    assert_eq!(root.get("/v1/userapp/login/ann/shop").assert_ok()["data"], json!({"city": "York"}));
    own.put("/v1/user/login/bob", json!({"a": 1})).assert_error(403);
    assert_eq!(dpo(&root).get("/v1/requests").assert_ok()["total"], 0);
    assert_eq!(own.get("/v1/requests/login/ann").assert_ok()["total"], 0);
}

#[test]
fn an_unknown_subject_changes_value_stops_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::vaultd()
        .args(["demo", "--port", "0", "--subject-changes", "sometimes", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn a_body_that_is_neither_a_merge_object_nor_a_patch_is_refused_when_filed() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let bad = [json!(42), json!("text"), json!(null), json!([1]), json!([{"op": "frob", "path": "/a"}])];
    // Staff are told at once.
    for body in &bad {
        root.put("/v1/user/login/ann", body.clone()).assert_error(400);
        root.put("/v1/userapp/login/ann/shop", body.clone()).assert_error(400);
    }
    // A subject's change is filed only if it could ever be approved.
    for body in &bad {
        let reply = own.put("/v1/user/login/ann", body.clone());
        assert_eq!(reply.status, 400, "PUT /v1/user with {body}: {}", reply.body);
        let reply = own.put("/v1/userapp/login/ann/shop", body.clone());
        assert_eq!(reply.status, 400, "PUT /v1/userapp with {body}: {}", reply.body);
    }
    assert_eq!(dpo(&root).get("/v1/requests").assert_ok()["total"], 0);
}

#[test]
fn an_app_change_whose_record_was_deleted_cannot_be_approved_and_stays_open() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);
    let rtoken = filed(own.put("/v1/userapp/login/ann/shop", json!({"city": "York"})));
    root.delete("/v1/userapp/login/ann/shop").assert_ok();
    let one = request(&dpo, &rtoken);
    assert_eq!(one["original"], Value::Null, "{one}");
    assert_eq!(one["change"], json!({"city": "York"}), "{one}");
    dpo.post(&format!("/v1/request/{rtoken}"), json!({})).assert_error(404);
    assert_eq!(request(&dpo, &rtoken)["status"], "open");
    root.get("/v1/userapp/login/ann/shop").assert_error(404);
    dpo.delete(&format!("/v1/request/{rtoken}")).assert_ok();
}

#[test]
fn an_approved_merge_applies_over_the_data_as_it_is_at_approval() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "first": "Ann"}));
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);
    let rtoken = filed(own.put("/v1/user/login/ann", json!({"first": "Annie"})));
    root.put("/v1/user/login/ann", json!({"last": "Smith", "first": "Anne"})).assert_ok();
    assert_eq!(request(&dpo, &rtoken)["original"], json!({"login": "ann", "first": "Anne", "last": "Smith"}));
    dpo.post(&format!("/v1/request/{rtoken}"), json!({})).assert_ok();
    assert_eq!(profile(&root, &ann), json!({"login": "ann", "first": "Annie", "last": "Smith"}));
}

#[test]
fn concurrent_approvals_apply_a_request_exactly_once() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "tags": []}));
    let own = subject_client(&root, &ann);
    let dpo = dpo(&root);
    let rtoken = filed(own.put("/v1/user/login/ann", json!([{"op": "add", "path": "/tags/-", "value": "x"}])));
    let path = format!("/v1/request/{rtoken}");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let (dpo, own, path) = (dpo.clone(), own.clone(), path.clone());
                scope.spawn(move || match n % 4 {
                    3 => own.delete(&path).status,
                    _ => dpo.post(&path, json!({})).status,
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    let status = request(&dpo, &rtoken)["status"].as_str().unwrap().to_string();
    let tags = profile(&root, &ann)["tags"].clone();
    match status.as_str() {
        "approved" => assert_eq!(tags, json!(["x"])),
        "cancelled" => assert_eq!(tags, json!([])),
        other => panic!("status {other}"),
    }
}

#[test]
fn open_requests_and_subject_tokens_survive_a_restart_and_are_approved_after_it() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let root = vault.client();
    let ann = root.create_user(json!({"login": "ann", "first": "Ann"}));
    let own = subject_client(&root, &ann);
    let rtoken = filed(own.put("/v1/user/login/ann", json!({"first": "Annie"})));
    let forget = filed(own.delete("/v1/user/login/ann"));
    vault.kill();

    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let root = vault.client();
    let own = Client::new(&vault.url, &own_secret(&own));
    let dpo = dpo(&root);
    // The sealed change opens after the restart (no cached key), for the DPO and the subject.
    assert_eq!(request(&dpo, &rtoken)["change"], json!({"first": "Annie"}));
    assert_eq!(request(&own, &rtoken)["original"]["first"], "Ann");
    dpo.post(&format!("/v1/request/{rtoken}"), json!({})).assert_ok();
    assert_eq!(profile(&root, &ann)["first"], "Annie");
    dpo.post(&format!("/v1/request/{forget}"), json!({})).assert_ok();
    assert_eq!(profile(&root, &ann), json!({}));
    let verify = root.get("/v1/sys/audit/verify");
    assert_eq!(verify.assert_ok()["verification"]["intact"], true);
}

/// The secret a client sends, to use it against another process or node.
fn own_secret(client: &Client) -> String {
    let request = client.request("GET", "/").build().unwrap();
    request.headers()["X-Bunker-Token"].to_str().unwrap().to_string()
}

#[test]
fn requests_filed_on_one_node_are_read_approved_and_cancelled_on_any_other() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.leader();
    let (first, second) = ((leader + 1) % 3, (leader + 2) % 3);
    let root = cluster.client(first);
    let ann = root.create_user(json!({"login": "ann", "first": "Ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    let secret = &own_secret(&own);
    let dpo_secret = {
        let reply = cluster.client(second).post("/v1/sys/tokens", json!({"name": "dpo", "scopes": ["requests:admin"]}));
        reply.assert_ok()["token"].as_str().unwrap().to_string()
    };
    let node = |slot: usize, token: &str| Client::new(&cluster.slots[slot].url(), token);

    let change = filed(node(first, secret).put("/v1/user/login/ann", json!({"first": "Annie"})));
    let app = filed(node(second, secret).put("/v1/userapp/login/ann/shop", json!({"city": "York"})));
    for slot in 0..3 {
        let dpo = node(slot, &dpo_secret);
        assert_eq!(dpo.get("/v1/requests?status=open").assert_ok()["total"], 2, "node {slot}");
        assert_eq!(request(&dpo, &change)["change"]["first"], "Annie", "node {slot}");
        assert_eq!(request(&node(slot, secret), &app)["original"]["city"], "Leeds", "node {slot}");
    }
    node(second, &dpo_secret).post(&format!("/v1/request/{change}"), json!({})).assert_ok();
    for slot in 0..3 {
        assert_eq!(profile(&cluster.client(slot), &ann)["first"], "Annie", "node {slot}");
        assert_eq!(request(&node(slot, &dpo_secret), &change)["status"], "approved", "node {slot}");
    }
    node(leader, secret).delete(&format!("/v1/request/{app}")).assert_ok();
    node(first, &dpo_secret).post(&format!("/v1/request/{app}"), json!({})).assert_error(409);
    let forget = filed(node(leader, secret).delete("/v1/user/login/ann"));
    node(first, &dpo_secret).post(&format!("/v1/request/{forget}"), json!({})).assert_ok();
    for slot in 0..3 {
        assert_eq!(profile(&cluster.client(slot), &ann), json!({}), "node {slot}");
        assert_eq!(request(&node(slot, &dpo_secret), &forget)["status"], "approved", "node {slot}");
    }
}

#[test]
fn a_subject_token_uses_the_subject_routes_for_itself_and_is_audited_by_its_id() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "phone": "+447700900321"}));
    let created = root.post("/v1/sys/tokens", json!({"name": "ann-self", "subject": ann})).assert_ok().clone();
    let (id, secret) = (created["id"].as_str().unwrap(), created["token"].as_str().unwrap());
    let own = root.with_token(Some(secret));

    // She may see her expiration, by any identifier, but starting or cancelling one is
    // the controller's (she could otherwise erase herself past the DPO with the exptoken).
    let started = root.post("/v1/exp/start/phone/+447700900321", json!({"expiration": "30d"}));
    let exptoken = started.assert_ok()["exptoken"].as_str().unwrap().to_string();
    let status = own.get("/v1/exp/status/login/ann").assert_ok().clone();
    assert_eq!(status["expstatus"], "wait");
    assert_eq!(status["exptoken"], "", "the exptoken would erase her past the DPO");
    assert_ne!(exptoken, "");
    own.post("/v1/exp/start/login/ann", json!({"expiration": "1s"})).assert_error(403);
    own.delete(&format!("/v1/exp/cancel/token/{ann}")).assert_error(403);
    // Her own audit trail is not hers to read: that is audit:read.
    own.get(&format!("/v1/audit/list/{ann}")).assert_error(403);

    // Filing, reading and withdrawing are audited with the token's id as actor, never the secret.
    let rtoken = filed(own.put("/v1/user/login/ann", json!({"first": "Ann"})));
    request(&own, &rtoken);
    own.get("/v1/requests/login/ann").assert_ok();
    own.delete(&format!("/v1/request/{rtoken}")).assert_ok();
    let rows = audit_rows(&root, &ann);
    for op in ["request-create", "request-read", "request-list", "request-cancel"] {
        let row = rows.iter().find(|r| r["operation"] == op).unwrap_or_else(|| panic!("{op} missing: {rows:?}"));
        assert!(row["actor"].as_str().unwrap().contains(id), "{row}");
        assert_eq!(row["result"], "ok", "{row}");
    }
    assert!(!format!("{rows:?}").contains(secret));
    assert_eq!(occurs_in_files(&vault.data_dir, secret), None);
}

#[test]
fn a_subject_token_cannot_replace_its_app_data_with_post_while_changes_are_requests() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    root.post("/v1/userapp/login/ann/shop", json!({"city": "Leeds"})).assert_ok();
    let own = subject_client(&root, &ann);
    // PUT files a request and changes nothing...
    filed(own.put("/v1/userapp/login/ann/shop", json!({"city": "York"})));
    assert_eq!(root.get("/v1/userapp/login/ann/shop").assert_ok()["data"], json!({"city": "Leeds"}));
    // ...so POST over the existing record must not change it either, whatever it answers
    // (refused, or filed as a request).
    let reply = own.post("/v1/userapp/login/ann/shop", json!({"city": "York"}));
    assert_eq!(
        root.get("/v1/userapp/login/ann/shop").assert_ok()["data"],
        json!({"city": "Leeds"}),
        "POST replaced the app record directly, bypassing the DPO: {} {}",
        reply.status,
        reply.body
    );
}

#[test]
fn a_person_has_at_most_100_open_requests_and_a_settled_one_makes_room() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann", "first": "Ann"}));
    let own = subject_client(&root, &ann);
    let first = filed(own.put("/v1/user/login/ann", json!({"first": "A0"})));
    for n in 1..100 {
        filed(own.put("/v1/user/login/ann", json!({"first": format!("A{n}")})));
    }
    let refused = own.put("/v1/user/login/ann", json!({"first": "one too many"}));
    refused.assert_error(409);
    assert!(refused.body["message"].as_str().unwrap().contains("open requests"), "{}", refused.body);
    own.delete("/v1/user/login/ann").assert_error(409);
    assert_eq!(own.get("/v1/requests/login/ann").assert_ok()["total"], 100);
    let dpo = dpo(&root);
    dpo.delete(&format!("/v1/request/{first}")).assert_ok();
    // A settled request keeps no change: withdrawing and filing again costs no space.
    let settled = request(&dpo, &first);
    assert!(settled.get("change").is_none(), "{settled}");
    filed(own.put("/v1/user/login/ann", json!({"first": "room again"})));
}

#[test]
fn a_subject_token_starts_at_most_100_app_records_while_staff_may_start_more() {
    let vault = Vault::demo_with(&["--subject-changes", "direct"]);
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let own = subject_client(&root, &ann);
    for n in 0..100 {
        own.post(&format!("/v1/userapp/login/ann/app{n}"), json!({"n": n})).assert_ok();
    }
    let refused = own.post("/v1/userapp/login/ann/app100", json!({"n": 100}));
    refused.assert_error(409);
    assert!(refused.body["message"].as_str().unwrap().contains("app records"), "{}", refused.body);
    // Replacing one it has is still allowed, and staff are not limited.
    own.post("/v1/userapp/login/ann/app0", json!({"n": "again"})).assert_ok();
    root.post("/v1/userapp/login/ann/app100", json!({"n": 100})).assert_ok();
}

#[test]
fn a_subject_token_starts_at_most_100_sessions_and_100_shares_for_its_subject() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let own = subject_client(&root, &ann);
    let sessions: Vec<String> = (0..100).map(|_| Uuid::new_v4().to_string()).collect();
    for session in &sessions {
        own.post(&format!("/v1/session/{session}"), json!({"token": ann, "n": 1})).assert_ok();
    }
    let refused = own.post(&format!("/v1/session/{}", Uuid::new_v4()), json!({"token": ann}));
    refused.assert_error(409);
    assert!(refused.body["message"].as_str().unwrap().contains("sessions"), "{}", refused.body);
    own.post(&format!("/v1/session/{}", sessions[0]), json!({"token": ann, "n": 2})).assert_ok();
    root.post(&format!("/v1/session/{}", Uuid::new_v4()), json!({"token": ann})).assert_ok();

    for _ in 0..100 {
        own.post("/v1/sharedrecord/login/ann", json!({"fields": "login"})).assert_ok();
    }
    let refused = own.post("/v1/sharedrecord/login/ann", json!({"fields": "login"}));
    refused.assert_error(409);
    assert!(refused.body["message"].as_str().unwrap().contains("share"), "{}", refused.body);
    root.post("/v1/sharedrecord/login/ann", json!({"fields": "login"})).assert_ok();
}

#[test]
fn concurrent_starts_by_a_subject_token_do_not_pass_its_cap_together() {
    let vault = Vault::demo_with(&["--subject-changes", "direct"]);
    let root = vault.demo_client();
    let ann = root.create_user(json!({"login": "ann"}));
    let own = subject_client(&root, &ann);
    for n in 0..95 {
        own.post(&format!("/v1/userapp/login/ann/app{n}"), json!({"n": n})).assert_ok();
    }
    let racers: Vec<_> = (0..20)
        .map(|n| {
            let own = own.clone();
            std::thread::spawn(move || own.post(&format!("/v1/userapp/login/ann/race{n}"), json!({"n": n})).status)
        })
        .collect();
    let statuses: Vec<u16> = racers.into_iter().map(|racer| racer.join().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    let apps = root.get("/v1/userapp/login/ann").assert_ok()["apps"].as_array().unwrap().len();
    assert_eq!(apps, 100);
}
