//! Consent over HTTP against a real `vaultd demo`, with Databunker's shapes: legal bases
//! (`/v1/lbasis`), subjects' agreements (`/v1/agreement`, `/v1/agreements`) and
//! processing activities (`/v1/pactivity`); normalised briefs; agreements kept after
//! forget-me; revoking a basis for everyone; audit events without identifiers; scopes;
//! bad input that writes nothing.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{Client, Reply, Vault};
use uuid::Uuid;

const DAY: u64 = 86_400;

const BASIS_KEYS: [&str; 10] = [
    "basistype",
    "brief",
    "creationtime",
    "fulldesc",
    "module",
    "requiredflag",
    "requiredmsg",
    "shortdesc",
    "status",
    "usercontrol",
];

const AGREEMENT_KEYS: [&str; 11] = [
    "agreementmethod",
    "brief",
    "creationtime",
    "endtime",
    "lastmodifiedby",
    "mode",
    "referencecode",
    "starttime",
    "status",
    "token",
    "when",
];

const ACTIVITY_KEYS: [&str; 7] =
    ["activity", "applicableto", "creationtime", "fulldesc", "legalbasis", "script", "title"];

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> =
        value.as_object().unwrap_or_else(|| panic!("not an object: {value}")).keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn scoped_token(client: &Client, name: &str, scopes: &[&str]) -> String {
    let reply = client.post("/v1/sys/tokens", json!({"name": name, "scopes": scopes}));
    reply.assert_ok()["token"].as_str().unwrap().to_string()
}

/// Sends a raw body with a content type.
fn raw(client: &Client, method: &str, path: &str, content_type: &str, body: &str) -> Reply {
    client.send(client.request(method, path).header("Content-Type", content_type).body(body.to_string()))
}

/// Sends a request without a body.
fn bare(client: &Client, method: &str, path: &str) -> Reply {
    client.send(client.request(method, path))
}

fn put_basis(client: &Client, brief: &str, body: Value) -> Reply {
    client.post(&format!("/v1/lbasis/{brief}"), body)
}

/// Every legal basis, checking the list's shape.
fn bases(client: &Client) -> Vec<Value> {
    let reply = client.get("/v1/lbasis");
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["rows", "status", "total"], "{body}");
    let rows = body["rows"].as_array().unwrap().clone();
    assert_eq!(body["total"].as_u64().unwrap() as usize, rows.len(), "{body}");
    for row in &rows {
        assert_eq!(keys(row), BASIS_KEYS, "{row}");
    }
    rows
}

fn basis(client: &Client, brief: &str) -> Option<Value> {
    bases(client).into_iter().find(|row| row["brief"] == brief)
}

fn accept(client: &Client, brief: &str, mode: &str, id: &str, body: Value) -> Reply {
    client.post(&format!("/v1/agreement/{brief}/{mode}/{id}"), body)
}

fn withdraw(client: &Client, brief: &str, mode: &str, id: &str) -> Reply {
    bare(client, "DELETE", &format!("/v1/agreement/{brief}/{mode}/{id}"))
}

/// One agreement, checking its shape.
fn agreement(client: &Client, brief: &str, mode: &str, id: &str) -> Value {
    let reply = client.get(&format!("/v1/agreement/{brief}/{mode}/{id}"));
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["data", "status"], "{body}");
    assert_eq!(keys(&body["data"]), AGREEMENT_KEYS, "{body}");
    body["data"].clone()
}

/// A subject's agreements, checking the list's shape.
fn agreements(client: &Client, mode: &str, id: &str) -> Vec<Value> {
    let reply = client.get(&format!("/v1/agreements/{mode}/{id}"));
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["rows", "status", "total"], "{body}");
    let rows = body["rows"].as_array().unwrap().clone();
    assert_eq!(body["total"].as_u64().unwrap() as usize, rows.len(), "{body}");
    for row in &rows {
        assert_eq!(keys(row), AGREEMENT_KEYS, "{row}");
    }
    rows
}

fn briefs_and_statuses(rows: &[Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|row| (row["brief"].as_str().unwrap().to_string(), row["status"].as_str().unwrap().to_string()))
        .collect()
}

/// Every processing activity, checking the list's shape.
fn activities(client: &Client) -> Vec<Value> {
    let reply = client.get("/v1/pactivity");
    let body = reply.assert_ok();
    assert_eq!(keys(body), ["rows", "status", "total"], "{body}");
    let rows = body["rows"].as_array().unwrap().clone();
    assert_eq!(body["total"].as_u64().unwrap() as usize, rows.len(), "{body}");
    for row in &rows {
        assert_eq!(keys(row), ACTIVITY_KEYS, "{row}");
    }
    rows
}

fn activity(client: &Client, name: &str) -> Option<Value> {
    activities(client).into_iter().find(|row| row["activity"] == name)
}

/// A subject's audit rows.
fn audit_rows(client: &Client, token: &str) -> Vec<Value> {
    let reply = client.get(&format!("/v1/audit/list/{token}?limit=1000"));
    reply.assert_ok()["rows"].as_array().unwrap().clone()
}

fn admin_rows(client: &Client) -> Vec<Value> {
    let reply = client.get("/v1/audit/admin?limit=1000");
    reply.assert_ok()["rows"].as_array().unwrap().clone()
}

fn audit_total(client: &Client) -> u64 {
    client.get("/v1/audit/admin?limit=1").assert_ok()["total"].as_u64().unwrap()
}

fn ok_count(rows: &[Value], operation: &str) -> usize {
    rows.iter().filter(|row| row["operation"] == operation && row["result"] == "ok").count()
}

/// Everything the consent routes show, to check that refused requests wrote nothing.
fn consent_state(client: &Client, subjects: &[&str]) -> Value {
    let agreements: Vec<Value> = subjects.iter().map(|token| json!(agreements(client, "token", token))).collect();
    json!({"bases": bases(client), "activities": activities(client), "agreements": agreements})
}

#[test]
fn legal_bases_are_created_listed_updated_renamed_and_deleted_with_their_shapes() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    assert_eq!(client.get("/v1/lbasis").body, json!({"status": "ok", "total": 0, "rows": []}));
    let events = audit_total(&client);

    // A full JSON body.
    let before = now_secs();
    let reply = put_basis(
        &client,
        "marketing",
        json!({
            "module": "newsletter",
            "shortdesc": "Marketing emails",
            "fulldesc": "We send you offers",
            "basistype": "consent",
            "requiredmsg": "",
            "usercontrol": true,
            "requiredflag": 1,
        }),
    );
    assert_eq!(reply.body, json!({"status": "ok"}));
    let marketing = basis(&client, "marketing").expect("marketing is listed");
    let creationtime = marketing["creationtime"].as_u64().unwrap();
    assert!(creationtime >= before && creationtime <= now_secs(), "{marketing}");
    assert_eq!(
        marketing,
        json!({
            "brief": "marketing",
            "status": "active",
            "module": "newsletter",
            "shortdesc": "Marketing emails",
            "fulldesc": "We send you offers",
            "basistype": "consent",
            "requiredmsg": "",
            "usercontrol": true,
            "requiredflag": true,
            "creationtime": creationtime,
        })
    );

    // No body at all: every field takes its default.
    bare(&client, "POST", "/v1/lbasis/contract").assert_ok();
    let contract = basis(&client, "contract").expect("contract is listed");
    assert_eq!(contract["status"], "active");
    assert_eq!(contract["usercontrol"], false);
    assert_eq!(contract["requiredflag"], false);
    assert_eq!(contract["shortdesc"], "");

    // A form body; "true"/"false" flags; status disabled.
    raw(
        &client,
        "POST",
        "/v1/lbasis/analytics",
        "application/x-www-form-urlencoded",
        "shortdesc=Usage+stats&status=disabled&usercontrol=false&requiredflag=true",
    )
    .assert_ok();
    let analytics = basis(&client, "analytics").expect("analytics is listed");
    assert_eq!(analytics["status"], "disabled");
    assert_eq!(analytics["shortdesc"], "Usage stats");
    assert_eq!(analytics["usercontrol"], false);
    assert_eq!(analytics["requiredflag"], true);

    // Listed in brief order.
    let briefs: Vec<Value> = bases(&client).iter().map(|row| row["brief"].clone()).collect();
    assert_eq!(briefs, [json!("analytics"), json!("contract"), json!("marketing")]);

    // Any status other than `disabled` is `active`; 0/1 and "0"/"1" flags.
    for (status, expected) in [("active", "active"), ("whatever", "active"), ("", "active"), ("disabled", "disabled")] {
        put_basis(&client, "analytics", json!({"status": status, "usercontrol": 1, "requiredflag": "0"})).assert_ok();
        let row = basis(&client, "analytics").unwrap();
        assert_eq!(row["status"], expected, "status {status:?}: {row}");
        assert_eq!(row["usercontrol"], true);
        assert_eq!(row["requiredflag"], false);
    }

    // Updating keeps the creation time.
    put_basis(&client, "marketing", json!({"shortdesc": "Offers", "status": "disabled"})).assert_ok();
    let updated = basis(&client, "marketing").unwrap();
    assert_eq!(updated["shortdesc"], "Offers");
    assert_eq!(updated["status"], "disabled");
    assert_eq!(updated["creationtime"], creationtime, "{updated}");

    // Renaming: the old name is gone, the creation time stays; renaming onto an existing
    // basis is 409 and changes nothing.
    put_basis(&client, "marketing", json!({"brief": " Promotions ", "shortdesc": "Promos"})).assert_ok();
    assert!(basis(&client, "marketing").is_none());
    let renamed = basis(&client, "promotions").expect("renamed basis is listed");
    assert_eq!(renamed["creationtime"], creationtime, "{renamed}");
    assert_eq!(renamed["shortdesc"], "Promos");
    let listed = bases(&client);
    put_basis(&client, "promotions", json!({"brief": "contract"})).assert_error(409);
    put_basis(&client, "promotions", json!({"brief": "CONTRACT"})).assert_error(409);
    assert_eq!(bases(&client), listed, "a refused rename changed the bases");

    // Deleting: gone, then 404.
    let reply = client.delete("/v1/lbasis/contract");
    assert_eq!(reply.body, json!({"status": "ok"}));
    assert!(basis(&client, "contract").is_none());
    client.delete("/v1/lbasis/contract").assert_error(404);
    client.delete("/v1/lbasis/never-was").assert_error(404);
    assert_eq!(bases(&client).len(), 2);

    // Each change is one legal-basis-change event: 3 creations, 4 + 1 updates, 1 rename,
    // 1 deletion (refused ones are not ok).
    let rows = admin_rows(&client);
    assert_eq!(ok_count(&rows, "legal-basis-change"), 10, "{rows:#?}");
    assert!(audit_total(&client) > events);
    assert_eq!(client.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);
}

#[test]
fn briefs_are_normalised_and_bad_briefs_and_fields_are_400_writing_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "nora"}));

    // Trimmed and lower-cased, in the path and in the body.
    put_basis(&client, "%20Marketing-Email2%20", json!({})).assert_ok();
    assert!(basis(&client, "marketing-email2").is_some(), "{:?}", bases(&client));
    accept(&client, "MARKETING-email2", "token", &token, json!({})).assert_ok();
    assert_eq!(agreement(&client, "%20marketing-EMAIL2", "token", &token)["brief"], "marketing-email2");
    client.post("/v1/pactivity/%20Send-Newsletter%20", json!({})).assert_ok();
    assert!(activity(&client, "send-newsletter").is_some(), "{:?}", activities(&client));
    client.post("/v1/pactivity/SEND-NEWSLETTER/Marketing-Email2", json!({})).assert_ok();
    assert_eq!(activity(&client, "send-newsletter").unwrap()["legalbasis"], "marketing-email2");
    let longest = "a".repeat(64);
    put_basis(&client, &longest, json!({})).assert_ok();
    client.delete(&format!("/v1/lbasis/{longest}")).assert_ok();

    let state = consent_state(&client, &[&token]);
    let events = audit_total(&client);
    let too_long = "a".repeat(65);
    let bad_briefs = ["a_b", "a%20b", "a.b", "%C3%BC", "%20%20", too_long.as_str(), "a%2Fb"];
    for bad in bad_briefs {
        for (method, path) in [
            ("POST", format!("/v1/lbasis/{bad}")),
            ("DELETE", format!("/v1/lbasis/{bad}")),
            ("POST", format!("/v1/agreement/{bad}/token/{token}")),
            ("DELETE", format!("/v1/agreement/{bad}/token/{token}")),
            ("GET", format!("/v1/agreement/{bad}/token/{token}")),
            ("DELETE", format!("/v1/agreement/{bad}")),
            ("POST", format!("/v1/pactivity/{bad}")),
            ("DELETE", format!("/v1/pactivity/{bad}")),
            ("POST", format!("/v1/pactivity/{bad}/marketing-email2")),
            ("DELETE", format!("/v1/pactivity/{bad}/marketing-email2")),
            ("POST", format!("/v1/pactivity/send-newsletter/{bad}")),
            ("DELETE", format!("/v1/pactivity/send-newsletter/{bad}")),
        ] {
            let reply = bare(&client, method, &path);
            assert_eq!(reply.status, 400, "{method} {path}: {}", reply.body);
            reply.assert_error(400);
        }
    }
    // Renames to a bad name.
    for bad in ["a b", "a_b", "-%", too_long.as_str()] {
        put_basis(&client, "marketing-email2", json!({"brief": bad})).assert_error(400);
        client.post("/v1/pactivity/send-newsletter", json!({"activity": bad})).assert_error(400);
    }
    // Text fields that are not strings; flags that are not booleans.
    for field in ["brief", "status", "module", "shortdesc", "fulldesc", "basistype", "requiredmsg"] {
        for value in [json!(1), json!(true), json!(["x"]), json!({"a": "b"})] {
            let reply = put_basis(&client, "marketing-email2", json!({ field: value }));
            assert_eq!(reply.status, 400, "{field}: {value}: {}", reply.body);
            reply.assert_error(400);
        }
    }
    for field in ["usercontrol", "requiredflag"] {
        for value in [json!("maybe"), json!([true]), json!({"a": 1})] {
            let reply = put_basis(&client, "marketing-email2", json!({ field: value }));
            assert_eq!(reply.status, 400, "{field}: {value}: {}", reply.body);
        }
    }
    for field in ["activity", "title", "script", "fulldesc", "applicableto"] {
        let reply = client.post("/v1/pactivity/send-newsletter", json!({ field: 7 }));
        assert_eq!(reply.status, 400, "{field}: {}", reply.body);
        reply.assert_error(400);
    }
    let big = "x".repeat(4097);
    put_basis(&client, "marketing-email2", json!({"fulldesc": big})).assert_error(400);
    // Malformed bodies.
    for (content_type, body) in [
        ("application/json", "{\"shortdesc\":"),
        ("application/json", "not json"),
        ("application/json", "[1,2]"),
        ("application/json", "\"text\""),
        ("application/x-www-form-urlencoded", "=x"),
    ] {
        for path in ["/v1/lbasis/marketing-email2", "/v1/lbasis/brand-new", "/v1/pactivity/send-newsletter"] {
            let reply = raw(&client, "POST", path, content_type, body);
            assert_eq!(reply.status, 400, "{path} {body:?}: {}", reply.body);
            reply.assert_error(400);
        }
    }
    assert_eq!(consent_state(&client, &[&token]), state, "a refused request changed something");
    let reads = 1; // consent_state's own listing of the subject's agreements
    assert_eq!(audit_total(&client), events + reads, "a refused request wrote an audit event");
}
