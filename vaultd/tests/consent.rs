//! Consent over HTTP against a real `vaultd demo`, with Databunker's shapes: legal bases
//! (`/v1/lbasis`), subjects' agreements (`/v1/agreement`, `/v1/agreements`) and
//! processing activities (`/v1/pactivity`); normalised briefs; agreements kept after
//! forget-me; revoking a basis for everyone; audit events without identifiers; scopes;
//! bad input that writes nothing.

mod support;

use serde_json::{json, Value};
use support::cluster::TestCluster;
use support::{
    admin_rows, audit_rows, audit_total, keys, now_secs, raw, scoped_token, serve_scratch, Client, Reply, Vault,
};
use uuid::Uuid;
use vaultd::store::Store;

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

/// Sends a raw body with a content type.
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

#[test]
fn agreements_are_accepted_read_listed_and_withdrawn_with_their_shapes_and_audit_events() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ada", "email": "Ada@Example.com", "phone": "07700900123"}));
    for brief in ["newsletter", "analytics", "contract", "profiling"] {
        put_basis(&client, brief, json!({})).assert_ok();
    }

    // No agreements yet.
    assert!(agreements(&client, "token", &token).is_empty());

    // Accept with no body: status yes, method api, no start or end.
    let before = now_secs();
    let reply = accept(&client, "newsletter", "login", "ada", json!({}));
    assert_eq!(reply.body, json!({"status": "ok"}));
    let row = agreement(&client, "newsletter", "token", &token);
    let created = row["creationtime"].as_u64().unwrap();
    assert!(created >= before && created <= now_secs(), "{row}");
    assert_eq!(
        row,
        json!({
            "token": token,
            "brief": "newsletter",
            "status": "yes",
            "creationtime": created,
            "when": created,
            "starttime": 0,
            "endtime": 0,
            "mode": "login",
            "agreementmethod": "api",
            "referencecode": "",
            "lastmodifiedby": "",
        })
    );

    // Accept with every field; durations are from now, Unix seconds as number or string.
    let before = now_secs();
    accept(
        &client,
        "analytics",
        "email",
        "ADA@example.COM",
        json!({
            "status": "accept",
            "agreementmethod": "web-form",
            "referencecode": "ref-1",
            "lastmodifiedby": "support-desk",
            "starttime": "1d",
            "expiration": "30d",
        }),
    )
    .assert_ok();
    let row = agreement(&client, "analytics", "phone", "+447700900123");
    assert_eq!(row["status"], "yes", "{row}");
    assert_eq!(row["mode"], "email");
    assert_eq!(row["agreementmethod"], "web-form");
    assert_eq!(row["referencecode"], "ref-1");
    assert_eq!(row["lastmodifiedby"], "support-desk");
    let (start, end) = (row["starttime"].as_u64().unwrap(), row["endtime"].as_u64().unwrap());
    assert!(start >= before + DAY && start <= now_secs() + DAY, "{row}");
    assert!(end >= before + 30 * DAY && end <= now_secs() + 30 * DAY, "{row}");
    let future = now_secs() + 100 * DAY;
    accept(&client, "contract", "phone", "07700900123", json!({"starttime": 1_700_000_000u64, "expiration": future}))
        .assert_ok();
    let row = agreement(&client, "contract", "login", "ada");
    assert_eq!((row["starttime"].as_u64(), row["endtime"].as_u64()), (Some(1_700_000_000), Some(future)), "{row}");
    assert_eq!(row["mode"], "phone");
    accept(&client, "profiling", "token", &token, json!({"expiration": future.to_string()})).assert_ok();
    assert_eq!(agreement(&client, "profiling", "token", &token)["endtime"].as_u64(), Some(future));

    // Listed in brief order, the same by every mode.
    let expected: Vec<(String, String)> =
        ["analytics", "contract", "newsletter", "profiling"].iter().map(|b| (b.to_string(), "yes".into())).collect();
    for (mode, id) in
        [("token", token.as_str()), ("login", "ada"), ("email", "aDa@eXample.com"), ("phone", "07700900123")]
    {
        let rows = agreements(&client, mode, id);
        assert_eq!(briefs_and_statuses(&rows), expected, "by {mode}");
        assert!(rows.iter().all(|row| row["token"] == token.as_str()), "by {mode}: {rows:#?}");
    }

    // Accepting again updates the fields given; the method takes its default again, the
    // reference code stays when not given.
    accept(&client, "analytics", "login", "ada", json!({"lastmodifiedby": "ada-herself"})).assert_ok();
    let row = agreement(&client, "analytics", "login", "ada");
    assert_eq!(row["status"], "yes");
    assert_eq!(row["agreementmethod"], "api", "{row}");
    assert_eq!(row["referencecode"], "ref-1", "{row}");
    assert_eq!(row["endtime"], 0, "an accept without expiration has no end: {row}");
    assert_eq!(row["lastmodifiedby"], "ada-herself");
    assert_eq!(row["mode"], "login");

    // Withdraw with DELETE: status no, no end time; creationtime kept.
    let reply = withdraw(&client, "analytics", "email", "ada@example.com");
    assert_eq!(reply.body, json!({"status": "ok"}));
    let row = agreement(&client, "analytics", "token", &token);
    assert_eq!(row["status"], "no", "{row}");
    assert_eq!(row["endtime"], 0, "{row}");
    assert_eq!(row["mode"], "email");
    assert!(row["creationtime"].as_u64().unwrap() <= row["when"].as_u64().unwrap(), "{row}");

    // Withdraw with POST and every synonym of no; accept with every synonym of yes (any case).
    for (no, yes) in
        [("no", "yes"), ("withdraw", "accept"), ("disagree", "agree"), ("deny", "allow"), ("FALSE", "True")]
    {
        accept(&client, "newsletter", "login", "ada", json!({"status": no})).assert_ok();
        assert_eq!(agreement(&client, "newsletter", "login", "ada")["status"], "no", "status {no}");
        accept(&client, "newsletter", "login", "ada", json!({"status": yes})).assert_ok();
        assert_eq!(agreement(&client, "newsletter", "login", "ada")["status"], "yes", "status {yes}");
    }
    // A form body works too.
    raw(&client, "POST", "/v1/agreement/newsletter/login/ada", "application/x-www-form-urlencoded", "status=no")
        .assert_ok();
    assert_eq!(agreement(&client, "newsletter", "login", "ada")["status"], "no");
    raw(
        &client,
        "POST",
        "/v1/agreement/newsletter/login/ada",
        "application/x-www-form-urlencoded",
        "status=yes&referencecode=form-2&expiration=2d",
    )
    .assert_ok();
    let row = agreement(&client, "newsletter", "login", "ada");
    assert_eq!((row["status"].as_str(), row["referencecode"].as_str()), (Some("yes"), Some("form-2")), "{row}");

    // An agreement whose end has passed shows expired; withdrawing it shows no.
    accept(&client, "contract", "login", "ada", json!({"expiration": now_secs() - 60})).assert_ok();
    assert_eq!(agreement(&client, "contract", "login", "ada")["status"], "expired");
    accept(&client, "profiling", "login", "ada", json!({"expiration": "1000000000"})).assert_ok();
    assert_eq!(agreement(&client, "profiling", "login", "ada")["status"], "expired");
    assert_eq!(
        briefs_and_statuses(&agreements(&client, "login", "ada")),
        [("analytics", "no"), ("contract", "expired"), ("newsletter", "yes"), ("profiling", "expired")]
            .map(|(b, s)| (b.to_string(), s.to_string()))
    );
    withdraw(&client, "contract", "login", "ada").assert_ok();
    assert_eq!(agreement(&client, "contract", "login", "ada")["status"], "no");

    // Audit: every accept/withdraw/read is in the subject's trail with its token; no
    // identifier appears in it.
    let rows = audit_rows(&client, &token);
    // Accepts: 4 + 1 (again) + 5 synonyms + 1 form + 2 expiring.
    assert_eq!(ok_count(&rows, "consent-accept"), 13, "{rows:#?}");
    // Withdrawals: 1 DELETE + 5 synonyms + 1 form + 1 DELETE.
    assert_eq!(ok_count(&rows, "consent-withdraw"), 8, "{rows:#?}");
    assert!(ok_count(&rows, "consent-read") >= 20, "{rows:#?}");
    for row in rows.iter().filter(|row| row["operation"].as_str().is_some_and(|op| op.starts_with("consent-"))) {
        assert_eq!(row["subject"], token.as_str(), "{row}");
        assert_eq!(row["result"], "ok", "{row}");
    }
    let modes: Vec<&str> =
        rows.iter().filter(|r| r["operation"] == "consent-accept").filter_map(|r| r["mode"].as_str()).collect();
    for mode in ["login", "email", "phone", "token"] {
        assert!(modes.contains(&mode), "consent-accept by {mode} is audited with its mode: {modes:?}");
    }
    let text = serde_json::to_string(&admin_rows(&client)).unwrap().to_lowercase();
    for identifier in ["ada@example.com", "07700900123", "447700900123", "\"ada\""] {
        assert!(!text.contains(identifier), "{identifier} is in the audit trail");
    }
    assert_eq!(client.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);
}

#[test]
fn bad_agreement_requests_are_400_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "bea"}));
    put_basis(&client, "newsletter", json!({})).assert_ok();
    accept(&client, "newsletter", "login", "bea", json!({"referencecode": "r1", "expiration": "30d"})).assert_ok();
    let state = consent_state(&client, &[&token]);
    let events = audit_total(&client);

    let bad_bodies = [
        json!({"status": "maybe"}),
        json!({"status": "revoked"}),
        json!({"status": "expired"}),
        json!({"status": " "}),
        json!({"status": 1}),
        json!({"status": ["yes"]}),
        json!({"expiration": "soon"}),
        json!({"expiration": "30w"}),
        json!({"expiration": "-1d"}),
        json!({"expiration": "1.5d"}),
        json!({"expiration": -5}),
        json!({"expiration": 1.5}),
        json!({"expiration": true}),
        json!({"expiration": ["30d"]}),
        json!({"starttime": "tomorrow"}),
        json!({"starttime": -1}),
        json!({"starttime": {"d": 1}}),
        json!({"agreementmethod": 5}),
        json!({"referencecode": false}),
        json!({"lastmodifiedby": ["x"]}),
        json!({"lastmodifiedby": "x".repeat(4097)}),
    ];
    for body in bad_bodies {
        let reply = accept(&client, "newsletter", "login", "bea", body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        reply.assert_error(400);
    }
    let reply =
        client.send(client.request("DELETE", "/v1/agreement/newsletter/login/bea").json(&json!({"lastmodifiedby": 3})));
    reply.assert_error(400);
    for (content_type, body) in [
        ("application/json", "{\"status\":"),
        ("application/json", "{\"status\": \"no\""),
        ("application/json", "not json"),
        ("application/json", "[\"no\"]"),
        ("application/json", "null"),
        ("application/x-www-form-urlencoded", "status=maybe"),
        ("application/x-www-form-urlencoded", "expiration=3x"),
    ] {
        for method in ["POST", "DELETE"] {
            if method == "DELETE" && content_type.ends_with("urlencoded") {
                continue; // DELETE reads only lastmodifiedby
            }
            let reply = raw(&client, method, "/v1/agreement/newsletter/login/bea", content_type, body);
            assert_eq!(reply.status, 400, "{method} {body:?}: {}", reply.body);
            reply.assert_error(400);
        }
    }
    // Unknown mode, a token that is not a UUID, an empty identifier.
    for path in ["/v1/agreement/newsletter/shoe/bea", "/v1/agreement/newsletter/token/not-a-uuid"] {
        for method in ["POST", "DELETE", "GET"] {
            let reply = bare(&client, method, path);
            assert_eq!(reply.status, 400, "{method} {path}: {}", reply.body);
            reply.assert_error(400);
        }
    }
    client.get("/v1/agreements/shoe/bea").assert_error(400);
    client.get("/v1/agreements/token/not-a-uuid").assert_error(400);

    assert_eq!(consent_state(&client, &[&token]), state, "a refused request changed an agreement");
    assert_eq!(audit_total(&client), events + 1, "a refused request wrote an audit event");
    let row = agreement(&client, "newsletter", "login", "bea");
    assert_eq!((row["status"].as_str(), row["referencecode"].as_str()), (Some("yes"), Some("r1")), "{row}");
}

#[test]
fn unknown_briefs_and_subjects_and_withdrawing_what_was_never_agreed_are_404() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "cid", "email": "cid@example.com"}));
    put_basis(&client, "newsletter", json!({})).assert_ok();
    put_basis(&client, "analytics", json!({})).assert_ok();
    accept(&client, "newsletter", "login", "cid", json!({})).assert_ok();

    // Unknown brief.
    accept(&client, "no-such-basis", "login", "cid", json!({})).assert_error(404);
    accept(&client, "no-such-basis", "login", "cid", json!({"status": "no"})).assert_error(404);
    withdraw(&client, "no-such-basis", "login", "cid").assert_error(404);
    client.get("/v1/agreement/no-such-basis/login/cid").assert_error(404);
    client.delete("/v1/agreement/no-such-basis").assert_error(404);
    // A known brief never agreed to: nothing to read or withdraw.
    client.get("/v1/agreement/analytics/login/cid").assert_error(404);
    withdraw(&client, "analytics", "login", "cid").assert_error(404);
    accept(&client, "analytics", "login", "cid", json!({"status": "no"})).assert_error(404);
    client.get("/v1/agreement/analytics/login/cid").assert_error(404);
    // Unknown subject, by every mode (an email or phone that names nobody may be agreed
    // to, see the consent-before-sign-up tests, but there is nothing to read or withdraw).
    let stranger = Uuid::new_v4().to_string();
    for (mode, id) in [("login", "nobody"), ("custom", "nobody"), ("token", stranger.as_str())] {
        let reply = accept(&client, "newsletter", mode, id, json!({}));
        assert_eq!(reply.status, 404, "accept by {mode}: {}", reply.body);
        reply.assert_error(404);
    }
    for (mode, id) in [
        ("login", "nobody"),
        ("custom", "nobody"),
        ("email", "nobody@example.com"),
        ("phone", "+447700900999"),
        ("token", stranger.as_str()),
    ] {
        withdraw(&client, "newsletter", mode, id).assert_error(404);
        accept(&client, "newsletter", mode, id, json!({"status": "no"})).assert_error(404);
        client.get(&format!("/v1/agreement/newsletter/{mode}/{id}")).assert_error(404);
        client.get(&format!("/v1/agreements/{mode}/{id}")).assert_error(404);
    }
    // None of that touched cid.
    assert_eq!(briefs_and_statuses(&agreements(&client, "token", &token)), [("newsletter".into(), "yes".into())]);
}

#[test]
fn listing_the_agreements_of_an_unknown_token_is_404() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "dan"}));
    put_basis(&client, "newsletter", json!({})).assert_ok();
    accept(&client, "newsletter", "login", "dan", json!({})).assert_ok();
    let stranger = Uuid::new_v4().to_string();
    // As for every other mode (and as the user routes answer for an unknown token).
    client.get(&format!("/v1/user/token/{stranger}")).assert_error(404);
    client.get("/v1/agreements/login/nobody").assert_error(404);
    let reply = client.get(&format!("/v1/agreements/token/{stranger}"));
    // No successful read is audited against a subject that does not exist.
    let rows = audit_rows(&client, &stranger);
    let audited: Vec<&Value> = rows.iter().filter(|row| row["result"] == "ok").collect();
    assert_eq!(
        reply.status, 404,
        "agreements of a token that names no subject: {}; its audit trail: {audited:?}",
        reply.body
    );
    reply.assert_error(404);
    assert!(audited.is_empty(), "{audited:#?}");
}

#[test]
fn revoking_a_basis_marks_every_agreement_to_it_revoked_and_nothing_else() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let first = client.create_user(json!({"login": "eli"}));
    let second = client.create_user(json!({"login": "fay"}));
    let third = client.create_user(json!({"login": "gus"}));
    // `news` is a prefix of `news-2` and `newsletter`: revoking one leaves the others.
    for brief in ["news", "news-2", "newsletter"] {
        put_basis(&client, brief, json!({})).assert_ok();
    }
    for login in ["eli", "fay"] {
        for brief in ["news", "news-2", "newsletter"] {
            accept(&client, brief, "login", login, json!({})).assert_ok();
        }
    }
    withdraw(&client, "news", "login", "fay").assert_ok();
    accept(&client, "news-2", "login", "gus", json!({})).assert_ok();

    let reply = client.delete("/v1/agreement/news");
    assert_eq!(reply.body, json!({"status": "ok"}));
    let revoked = |b: &str, s: &str| (b.to_string(), s.to_string());
    assert_eq!(
        briefs_and_statuses(&agreements(&client, "token", &first)),
        [revoked("news", "revoked"), revoked("news-2", "yes"), revoked("newsletter", "yes")]
    );
    // A withdrawn agreement is revoked too (the basis is gone for everyone).
    assert_eq!(
        briefs_and_statuses(&agreements(&client, "token", &second)),
        [revoked("news", "revoked"), revoked("news-2", "yes"), revoked("newsletter", "yes")]
    );
    assert_eq!(briefs_and_statuses(&agreements(&client, "token", &third)), [revoked("news-2", "yes")]);
    // The basis itself stays.
    assert!(basis(&client, "news").is_some());
    // Revoking again is fine; a subject may agree again afterwards.
    client.delete("/v1/agreement/news").assert_ok();
    accept(&client, "news", "login", "eli", json!({})).assert_ok();
    assert_eq!(agreement(&client, "news", "login", "eli")["status"], "yes");
    assert_eq!(agreement(&client, "news", "login", "fay")["status"], "revoked");
    // Unknown brief: 404.
    client.delete("/v1/agreement/no-such-basis").assert_error(404);

    let rows = admin_rows(&client);
    assert_eq!(ok_count(&rows, "consent-revoke-all"), 2, "{rows:#?}");
    for row in rows.iter().filter(|row| row["operation"] == "consent-revoke-all") {
        assert_eq!(row["actor"], "root", "{row}");
    }
}

#[test]
fn forget_me_keeps_the_subjects_agreements_and_only_withdrawing_still_works() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "hal", "email": "hal@example.com"}));
    for brief in ["newsletter", "analytics", "contract"] {
        put_basis(&client, brief, json!({})).assert_ok();
    }
    accept(&client, "newsletter", "login", "hal", json!({"referencecode": "r-9"})).assert_ok();
    accept(&client, "analytics", "email", "hal@example.com", json!({})).assert_ok();
    let before = agreements(&client, "token", &token);

    client.delete("/v1/user/login/hal").assert_ok();
    client.get("/v1/user/login/hal").assert_error(404);

    // The history is readable by token, unchanged.
    assert_eq!(agreements(&client, "token", &token), before);
    assert_eq!(agreement(&client, "newsletter", "token", &token)["referencecode"], "r-9");
    // Identifiers no longer lead to the subject.
    client.get("/v1/agreements/login/hal").assert_error(404);
    client.get("/v1/agreements/email/hal@example.com").assert_error(404);
    accept(&client, "newsletter", "login", "hal", json!({})).assert_error(404);

    // A forgotten subject cannot agree (to a new basis, or again), in any form.
    accept(&client, "contract", "token", &token, json!({})).assert_error(404);
    accept(&client, "contract", "token", &token, json!({"status": "yes"})).assert_error(404);
    raw(
        &client,
        "POST",
        &format!("/v1/agreement/newsletter/token/{token}"),
        "application/x-www-form-urlencoded",
        "status=agree",
    )
    .assert_error(404);
    // But withdrawing works, with DELETE or POST status no.
    withdraw(&client, "newsletter", "token", &token).assert_ok();
    accept(&client, "analytics", "token", &token, json!({"status": "withdraw"})).assert_ok();
    assert_eq!(
        briefs_and_statuses(&agreements(&client, "token", &token)),
        [("analytics".to_string(), "no".to_string()), ("newsletter".to_string(), "no".to_string())]
    );
    // Revoking a basis reaches forgotten subjects too.
    client.delete("/v1/agreement/analytics").assert_ok();
    assert_eq!(agreement(&client, "analytics", "token", &token)["status"], "revoked");

    let rows = audit_rows(&client, &token);
    assert_eq!(ok_count(&rows, "user-forget"), 1, "{rows:#?}");
    assert_eq!(ok_count(&rows, "consent-accept"), 2, "{rows:#?}");
    assert_eq!(ok_count(&rows, "consent-withdraw"), 2, "{rows:#?}");
    let refused = rows.iter().filter(|row| row["operation"] == "consent-accept" && row["result"] != "ok").count();
    assert_eq!(refused, 3, "refused accepts of the forgotten subject are audited: {rows:#?}");
    let text = serde_json::to_string(&admin_rows(&client)).unwrap();
    assert!(!text.contains("hal@example.com") && !text.contains("\"hal\""), "{text}");
}

#[test]
fn deleting_a_basis_unlinks_it_from_every_activity_but_keeps_agreements_to_it() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ivy"}));
    for brief in ["newsletter", "analytics"] {
        put_basis(&client, brief, json!({})).assert_ok();
    }
    for name in ["send-mail", "track-usage"] {
        client.post(&format!("/v1/pactivity/{name}"), json!({})).assert_ok();
        for brief in ["newsletter", "analytics"] {
            client.post(&format!("/v1/pactivity/{name}/{brief}"), json!({})).assert_ok();
        }
    }
    accept(&client, "newsletter", "login", "ivy", json!({})).assert_ok();
    accept(&client, "analytics", "login", "ivy", json!({})).assert_ok();
    assert_eq!(activity(&client, "send-mail").unwrap()["legalbasis"], "analytics,newsletter");

    client.delete("/v1/lbasis/newsletter").assert_ok();
    for name in ["send-mail", "track-usage"] {
        assert_eq!(activity(&client, name).unwrap()["legalbasis"], "analytics", "{name}");
    }
    assert_eq!(
        briefs_and_statuses(&agreements(&client, "token", &token)),
        [("analytics".to_string(), "yes".to_string()), ("newsletter".to_string(), "yes".to_string())]
    );
    assert_eq!(agreement(&client, "newsletter", "login", "ivy")["status"], "yes");
    // It cannot be linked or agreed to any more.
    client.post("/v1/pactivity/send-mail/newsletter", json!({})).assert_error(404);
    accept(&client, "newsletter", "login", "ivy", json!({})).assert_error(404);
    client.delete("/v1/agreement/newsletter").assert_error(404);
    // Re-created, it is not linked again by itself.
    put_basis(&client, "newsletter", json!({})).assert_ok();
    assert_eq!(activity(&client, "send-mail").unwrap()["legalbasis"], "analytics");
}

#[test]
fn processing_activities_are_created_linked_renamed_and_deleted_with_their_shapes() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    assert_eq!(client.get("/v1/pactivity").body, json!({"status": "ok", "total": 0, "rows": []}));
    for brief in ["newsletter", "analytics", "contract"] {
        put_basis(&client, brief, json!({})).assert_ok();
    }

    // No body: the title is the activity's name.
    let before = now_secs();
    let reply = bare(&client, "POST", "/v1/pactivity/send-mail");
    assert_eq!(reply.body, json!({"status": "ok"}));
    let row = activity(&client, "send-mail").expect("send-mail is listed");
    let created = row["creationtime"].as_u64().unwrap();
    assert!(created >= before && created <= now_secs(), "{row}");
    assert_eq!(
        row,
        json!({
            "activity": "send-mail",
            "title": "send-mail",
            "script": "",
            "fulldesc": "",
            "applicableto": "",
            "legalbasis": "",
            "creationtime": created,
        })
    );
    // Every field, JSON and form.
    client
        .post(
            "/v1/pactivity/track-usage",
            json!({"title": "Track usage", "script": "<script>t()</script>", "fulldesc": "Counts clicks", "applicableto": "web"}),
        )
        .assert_ok();
    raw(
        &client,
        "POST",
        "/v1/pactivity/billing",
        "application/x-www-form-urlencoded",
        "title=Billing&applicableto=customers",
    )
    .assert_ok();
    let row = activity(&client, "track-usage").unwrap();
    assert_eq!(
        (&row["title"], &row["script"], &row["fulldesc"], &row["applicableto"]),
        (&json!("Track usage"), &json!("<script>t()</script>"), &json!("Counts clicks"), &json!("web"))
    );
    let row = activity(&client, "billing").unwrap();
    assert_eq!((&row["title"], &row["applicableto"]), (&json!("Billing"), &json!("customers")));
    let names: Vec<Value> = activities(&client).iter().map(|row| row["activity"].clone()).collect();
    assert_eq!(names, [json!("billing"), json!("send-mail"), json!("track-usage")]);

    // Linking: comma-separated in brief order; linking twice is one link.
    for brief in ["newsletter", "analytics", "newsletter"] {
        let reply = client.post(&format!("/v1/pactivity/send-mail/{brief}"), json!({}));
        assert_eq!(reply.body, json!({"status": "ok"}));
    }
    assert_eq!(activity(&client, "send-mail").unwrap()["legalbasis"], "analytics,newsletter");
    bare(&client, "POST", "/v1/pactivity/billing/contract").assert_ok();
    client.post("/v1/pactivity/send-mail/no-such-basis", json!({})).assert_error(404);
    client.post("/v1/pactivity/no-such-activity/newsletter", json!({})).assert_error(404);
    client.delete("/v1/pactivity/no-such-activity/newsletter").assert_error(404);

    // Updating keeps links and creation time; the title defaults again to the name.
    client.post("/v1/pactivity/send-mail", json!({"fulldesc": "Mails"})).assert_ok();
    let row = activity(&client, "send-mail").unwrap();
    assert_eq!(row["legalbasis"], "analytics,newsletter", "{row}");
    assert_eq!(row["creationtime"], created, "{row}");
    assert_eq!((&row["title"], &row["fulldesc"]), (&json!("send-mail"), &json!("Mails")));

    // Unlinking.
    let reply = client.delete("/v1/pactivity/send-mail/analytics");
    assert_eq!(reply.body, json!({"status": "ok"}));
    assert_eq!(activity(&client, "send-mail").unwrap()["legalbasis"], "newsletter");

    // Renaming keeps links and creation time; onto an existing activity it is 409.
    client.post("/v1/pactivity/send-mail", json!({"activity": " Mailing ", "title": "Mailing"})).assert_ok();
    assert!(activity(&client, "send-mail").is_none());
    let row = activity(&client, "mailing").expect("renamed activity is listed");
    assert_eq!(
        (&row["legalbasis"], &row["creationtime"], &row["title"]),
        (&json!("newsletter"), &json!(created), &json!("Mailing"))
    );
    let listed = activities(&client);
    client.post("/v1/pactivity/mailing", json!({"activity": "billing"})).assert_error(409);
    assert_eq!(activities(&client), listed);

    // Deleting: gone, then 404; the bases stay.
    let reply = client.delete("/v1/pactivity/mailing");
    assert_eq!(reply.body, json!({"status": "ok"}));
    assert!(activity(&client, "mailing").is_none());
    client.delete("/v1/pactivity/mailing").assert_error(404);
    client.delete("/v1/pactivity/mailing/newsletter").assert_error(404);
    assert_eq!(bases(&client).len(), 3);
    assert_eq!(activities(&client).len(), 2);

    // 3 creations, 4 links, 1 update, 1 unlink, 1 rename, 1 deletion.
    let rows = admin_rows(&client);
    assert_eq!(ok_count(&rows, "activity-change"), 11, "{rows:#?}");
}

#[test]
fn renaming_a_basis_leaves_no_activity_linked_to_a_basis_that_does_not_exist() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    put_basis(&client, "newsletter", json!({})).assert_ok();
    client.post("/v1/pactivity/send-mail", json!({})).assert_ok();
    client.post("/v1/pactivity/send-mail/newsletter", json!({})).assert_ok();

    put_basis(&client, "newsletter", json!({"brief": "mailing-list"})).assert_ok();
    let briefs: Vec<Value> = bases(&client).iter().map(|row| row["brief"].clone()).collect();
    assert_eq!(briefs, [json!("mailing-list")]);
    // Everywhere else an activity only links existing bases (linking an unknown brief is
    // 404, deleting a basis unlinks it): a rename must not leave a dangling link.
    let linked = activity(&client, "send-mail").unwrap()["legalbasis"].clone();
    assert!(
        linked == "mailing-list" || linked == "",
        "after renaming newsletter to mailing-list, send-mail links {linked}, a basis that does not exist"
    );
}

#[test]
fn consent_routes_need_a_token_with_the_right_scope() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let token = root.create_user(json!({"login": "jo"}));
    put_basis(&root, "newsletter", json!({})).assert_ok();
    put_basis(&root, "analytics", json!({})).assert_ok();
    root.post("/v1/pactivity/send-mail", json!({})).assert_ok();
    root.post("/v1/pactivity/send-mail/newsletter", json!({})).assert_ok();
    accept(&root, "newsletter", "login", "jo", json!({})).assert_ok();

    let reader = root.with_token(Some(&scoped_token(&root, "reader", &["users:read"])));
    let writer = root.with_token(Some(&scoped_token(&root, "writer", &["users:write"])));
    let admin = root.with_token(Some(&scoped_token(&root, "admin", &["consent:admin"])));
    let auditor = root.with_token(Some(&scoped_token(&root, "auditor", &["audit:read"])));
    let state = consent_state(&root, &[&token]);

    let reads = [
        "/v1/lbasis".to_string(),
        "/v1/pactivity".to_string(),
        "/v1/agreement/newsletter/login/jo".to_string(),
        "/v1/agreements/login/jo".to_string(),
        format!("/v1/agreements/token/{token}"),
    ];
    let subject_changes =
        [("POST", "/v1/agreement/analytics/login/jo"), ("DELETE", "/v1/agreement/newsletter/login/jo")];
    let admin_changes = [
        ("POST", "/v1/lbasis/newsletter"),
        ("POST", "/v1/lbasis/brand-new"),
        ("DELETE", "/v1/lbasis/analytics"),
        ("DELETE", "/v1/agreement/newsletter"),
        ("POST", "/v1/pactivity/send-mail"),
        ("POST", "/v1/pactivity/new-activity"),
        ("DELETE", "/v1/pactivity/send-mail"),
        ("POST", "/v1/pactivity/send-mail/analytics"),
        ("DELETE", "/v1/pactivity/send-mail/newsletter"),
    ];
    let check = |label: &str, client: &Client, method: &str, path: &str, code: u16| {
        let reply = client.send(client.request(method, path).json(&json!({"status": "no", "shortdesc": "changed"})));
        assert_eq!(reply.status, code, "{label}: {method} {path}: {}", reply.body);
        reply.assert_error(code);
    };
    for (label, client) in [("missing", root.with_token(None)), ("wrong", root.with_token(Some("WRONG")))] {
        for path in &reads {
            check(label, &client, "GET", path, 401);
        }
        for (method, path) in subject_changes.iter().chain(&admin_changes) {
            check(label, &client, method, path, 401);
        }
    }
    // users:read reads, and changes nothing.
    for (method, path) in subject_changes.iter().chain(&admin_changes) {
        check("users:read", &reader, method, path, 403);
    }
    // users:write records agreements but does not manage bases or activities.
    for (method, path) in &admin_changes {
        check("users:write", &writer, method, path, 403);
    }
    // consent:admin manages bases and activities but not a subject's agreements, nor reads them.
    for (method, path) in &subject_changes {
        check("consent:admin", &admin, method, path, 403);
    }
    for path in &reads {
        check("consent:admin", &admin, "GET", path, 403);
        check("audit:read", &auditor, "GET", path, 403);
    }
    for (method, path) in subject_changes.iter().chain(&admin_changes) {
        check("audit:read", &auditor, method, path, 403);
    }
    assert_eq!(consent_state(&root, &[&token]), state, "a refused request changed something");

    // Each scope does what it allows.
    for path in &reads {
        reader.get(path).assert_ok();
    }
    accept(&writer, "analytics", "login", "jo", json!({})).assert_ok();
    withdraw(&writer, "newsletter", "login", "jo").assert_ok();
    assert_eq!(
        briefs_and_statuses(&agreements(&reader, "token", &token)),
        [("analytics".to_string(), "yes".to_string()), ("newsletter".to_string(), "no".to_string())]
    );
    put_basis(&admin, "brand-new", json!({"shortdesc": "New"})).assert_ok();
    admin.post("/v1/pactivity/send-mail/brand-new", json!({})).assert_ok();
    admin.delete("/v1/agreement/analytics").assert_ok();
    assert_eq!(activity(&reader, "send-mail").unwrap()["legalbasis"], "brand-new,newsletter");
    assert_eq!(agreement(&reader, "analytics", "login", "jo")["status"], "revoked");

    // The events name the token that acted, by id.
    let rows = admin_rows(&root);
    let revoke = rows.iter().find(|row| row["operation"] == "consent-revoke-all").expect("revoke-all is audited");
    assert_ne!(revoke["actor"], "root", "{revoke}");
    let accepted = audit_rows(&root, &token);
    let accept_row = accepted.iter().find(|row| row["operation"] == "consent-accept" && row["actor"] != "root");
    assert!(accept_row.is_some(), "the writer's accept is audited under its own actor: {accepted:#?}");
}

#[test]
fn consent_records_survive_a_crash_and_restart() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let client = vault.client();
    let kept = client.create_user(json!({"login": "kim", "email": "kim@example.com"}));
    let forgotten = client.create_user(json!({"login": "lee"}));
    for brief in ["newsletter", "analytics"] {
        put_basis(&client, brief, json!({"shortdesc": brief, "usercontrol": true})).assert_ok();
    }
    client.post("/v1/pactivity/send-mail", json!({"title": "Send mail"})).assert_ok();
    client.post("/v1/pactivity/send-mail/newsletter", json!({})).assert_ok();
    accept(&client, "newsletter", "email", "kim@example.com", json!({"referencecode": "r-1", "expiration": "30d"}))
        .assert_ok();
    accept(&client, "analytics", "login", "kim", json!({})).assert_ok();
    withdraw(&client, "analytics", "login", "kim").assert_ok();
    accept(&client, "newsletter", "login", "lee", json!({})).assert_ok();
    client.delete("/v1/user/login/lee").assert_ok();
    client.delete("/v1/agreement/newsletter").assert_ok();
    let state = consent_state(&client, &[&kept, &forgotten]);
    vault.kill();

    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let client = vault.client();
    assert_eq!(consent_state(&client, &[&kept, &forgotten]), state);
    assert_eq!(agreement(&client, "newsletter", "email", "KIM@example.com")["status"], "revoked");
    assert_eq!(agreement(&client, "newsletter", "token", &forgotten)["status"], "revoked");
    accept(&client, "newsletter", "token", &forgotten, json!({})).assert_error(404);
    assert_eq!(client.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);
}

#[test]
fn consent_given_to_a_basis_stays_withdrawable_after_the_basis_is_renamed() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "max"}));
    put_basis(&client, "newsletter", json!({})).assert_ok();
    accept(&client, "newsletter", "login", "max", json!({})).assert_ok();

    put_basis(&client, "newsletter", json!({"brief": "mailing-list"})).assert_ok();
    // The subject withdraws: under the new name, or (if agreements keep the name they were
    // given under) the old one. One of them must work, and no `yes` may be left.
    let by_new = withdraw(&client, "mailing-list", "login", "max");
    let by_old = withdraw(&client, "newsletter", "login", "max");
    let rows = agreements(&client, "token", &token);
    assert!(
        by_new.status == 200 || by_old.status == 200,
        "after renaming newsletter to mailing-list the subject cannot withdraw its consent: \
         DELETE .../mailing-list/... gave {} {}, DELETE .../newsletter/... gave {} {}; agreements: {:?}",
        by_new.status,
        by_new.body,
        by_old.status,
        by_old.body,
        briefs_and_statuses(&rows)
    );
    assert!(rows.iter().all(|row| row["status"] != "yes"), "{rows:#?}");
}

#[test]
fn withdrawing_with_delete_records_who_did_it_and_renaming_to_the_same_name_is_an_update() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    client.create_user(json!({"login": "ned"}));
    put_basis(&client, "newsletter", json!({"shortdesc": "News"})).assert_ok();
    let created = basis(&client, "newsletter").unwrap()["creationtime"].clone();
    accept(&client, "newsletter", "login", "ned", json!({"agreementmethod": "web", "referencecode": "r-5"}))
        .assert_ok();

    let reply = client
        .send(client.request("DELETE", "/v1/agreement/newsletter/login/ned").json(&json!({"lastmodifiedby": "dpo"})));
    reply.assert_ok();
    let row = agreement(&client, "newsletter", "login", "ned");
    assert_eq!(row["status"], "no", "{row}");
    assert_eq!(row["lastmodifiedby"], "dpo", "{row}");
    assert_eq!((&row["starttime"], &row["endtime"]), (&json!(0), &json!(0)), "{row}");
    // What the agreement was given with stays on record.
    assert_eq!((&row["agreementmethod"], &row["referencecode"]), (&json!("web"), &json!("r-5")), "{row}");

    // A "rename" to the basis's own name (in any case) is an ordinary update.
    put_basis(&client, "newsletter", json!({"brief": " NewsLetter ", "shortdesc": "Letters"})).assert_ok();
    let rows = bases(&client);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((&rows[0]["brief"], &rows[0]["shortdesc"]), (&json!("newsletter"), &json!("Letters")));
    assert_eq!(rows[0]["creationtime"], created);
    client.post("/v1/pactivity/send-mail", json!({})).assert_ok();
    client.post("/v1/pactivity/send-mail", json!({"activity": "SEND-MAIL", "title": "Mail"})).assert_ok();
    let rows = activities(&client);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((&rows[0]["activity"], &rows[0]["title"]), (&json!("send-mail"), &json!("Mail")));
}

#[test]
fn agreements_outlive_a_subject_deleted_by_its_expiration() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "ola"}));
    put_basis(&client, "newsletter", json!({})).assert_ok();
    accept(&client, "newsletter", "login", "ola", json!({"referencecode": "r-7"})).assert_ok();
    let before = agreements(&client, "token", &token);

    let reply = client.post("/v1/exp/start/login/ola", json!({"expiration": "30d"}));
    let exptoken = reply.assert_ok()["exptoken"].as_str().unwrap().to_string();
    client.with_token(None).get(&format!("/v1/exp/delete/{exptoken}")).assert_ok();
    client.get("/v1/user/login/ola").assert_error(404);

    assert_eq!(agreements(&client, "token", &token), before);
    accept(&client, "newsletter", "token", &token, json!({})).assert_error(404);
    withdraw(&client, "newsletter", "token", &token).assert_ok();
    assert_eq!(agreement(&client, "newsletter", "token", &token)["status"], "no");
}

#[test]
fn consent_written_on_any_node_is_read_at_once_on_every_node() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let token = cluster.client(follower).create_user(json!({"login": "pia", "email": "pia@example.com"}));
    put_basis(&cluster.client(follower), "newsletter", json!({"shortdesc": "News"})).assert_ok();
    cluster.client(follower).post("/v1/pactivity/send-mail", json!({})).assert_ok();
    cluster.client(leader).post("/v1/pactivity/send-mail/newsletter", json!({})).assert_ok();
    for slot in 0..3 {
        let client = cluster.client(slot);
        assert_eq!(basis(&client, "newsletter").expect("basis on every node")["shortdesc"], "News", "node {slot}");
        assert_eq!(activity(&client, "send-mail").unwrap()["legalbasis"], "newsletter", "node {slot}");
    }
    // Each write is seen by the next read, whichever nodes take the two.
    for round in 0..9 {
        let (writer, reader) = (cluster.client(round % 3), cluster.client((round + 1) % 3));
        let expected = if round % 2 == 0 {
            accept(&writer, "newsletter", "email", "PIA@example.com", json!({"referencecode": format!("r-{round}")}))
                .assert_ok();
            "yes"
        } else {
            withdraw(&writer, "newsletter", "login", "pia").assert_ok();
            "no"
        };
        let row = agreement(&reader, "newsletter", "token", &token);
        assert_eq!(row["status"], expected, "round {round}: {row}");
        assert_eq!(row["referencecode"], format!("r-{}", round - round % 2), "round {round}: {row}");
    }
    cluster.client(follower).delete("/v1/agreement/newsletter").assert_ok();
    for slot in 0..3 {
        assert_eq!(agreement(&cluster.client(slot), "newsletter", "login", "pia")["status"], "revoked", "node {slot}");
    }
    let verify = cluster.client(follower).get("/v1/sys/audit/verify");
    assert_eq!(verify.assert_ok()["verification"]["intact"], true);
}

// Consent before sign-up: a cookie banner records an agreement by an email or phone
// number that is no subject yet.

/// The only row of an agreement listing, or of a single agreement's `data`.
fn pending_rows(client: &Client, mode: &str, id: &str) -> Vec<Value> {
    let rows = agreements(client, mode, id);
    assert!(rows.iter().all(|row| row["token"].is_null()), "kept agreements name no subject: {rows:#?}");
    rows
}

/// Successful audit rows of an operation that name no subject.
fn subjectless_rows<'a>(rows: &'a [Value], operation: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|row| row["operation"] == operation && row["result"] == "ok")
        .filter(|row| row.get("subject").is_none_or(Value::is_null))
        .collect()
}

#[test]
fn consent_before_sign_up_is_kept_by_email_or_phone_and_taken_over_at_sign_up() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    for brief in ["cookies", "newsletter", "analytics"] {
        put_basis(&client, brief, json!({})).assert_ok();
    }

    // The banner records a visitor's choices by email and by phone.
    let before = now_secs();
    let reply = accept(&client, "cookies", "email", "Visitor@Example.com", json!({"agreementmethod": "banner"}));
    assert_eq!(reply.body, json!({"status": "ok"}));
    accept(&client, "newsletter", "email", "visitor@example.com", json!({"referencecode": "r-1", "expiration": "30d"}))
        .assert_ok();
    accept(&client, "analytics", "phone", "020%207946%200018", json!({})).assert_ok();

    // Listed and read by the identifier, in any spelling, with Databunker's shape and no token.
    let rows = pending_rows(&client, "email", "%20VISITOR@example.COM%20");
    assert_eq!(briefs_and_statuses(&rows), [("cookies".into(), "yes".into()), ("newsletter".into(), "yes".into())]);
    let row = agreement(&client, "cookies", "email", "visitor@example.com");
    let created = row["creationtime"].as_u64().unwrap();
    assert!(created >= before && created <= now_secs(), "{row}");
    assert_eq!(
        row,
        json!({
            "token": null,
            "brief": "cookies",
            "status": "yes",
            "creationtime": created,
            "when": created,
            "starttime": 0,
            "endtime": 0,
            "mode": "email",
            "agreementmethod": "banner",
            "referencecode": "",
            "lastmodifiedby": "",
        })
    );
    let end = agreement(&client, "newsletter", "email", "visitor@example.com")["endtime"].as_u64().unwrap();
    assert!(end >= before + 30 * DAY, "{end}");
    assert_eq!(
        briefs_and_statuses(&pending_rows(&client, "phone", "+442079460018")),
        [("analytics".into(), "yes".into())]
    );
    client.get("/v1/agreement/analytics/email/visitor@example.com").assert_error(404);

    // Withdrawn with DELETE or POST status no; what was never agreed is 404.
    withdraw(&client, "analytics", "phone", "02079460018").assert_ok();
    accept(&client, "newsletter", "email", "visitor@example.com", json!({"status": "no"})).assert_ok();
    let row = agreement(&client, "newsletter", "email", "visitor@example.com");
    assert_eq!((&row["status"], &row["referencecode"]), (&json!("no"), &json!("r-1")), "{row}");
    assert_eq!(agreement(&client, "analytics", "phone", "+442079460018")["status"], "no");
    withdraw(&client, "analytics", "email", "visitor@example.com").assert_error(404);
    accept(&client, "no-such-basis", "email", "visitor@example.com", json!({})).assert_error(404);
    // Other modes still need a subject, as in Databunker.
    accept(&client, "cookies", "login", "visitor", json!({})).assert_error(404);
    accept(&client, "cookies", "custom", "visitor", json!({})).assert_error(404);

    // Sign-up with the email: its agreements are the new subject's, at once.
    let token = client.create_user(json!({"login": "vis", "email": "VISITOR@example.com"}));
    let expected: Vec<(String, String)> = vec![("cookies".into(), "yes".into()), ("newsletter".into(), "no".into())];
    for (mode, id) in [("token", token.as_str()), ("login", "vis"), ("email", "visitor@example.com")] {
        let rows = agreements(&client, mode, id);
        assert_eq!(briefs_and_statuses(&rows), expected, "by {mode}");
        assert!(rows.iter().all(|row| row["token"] == token.as_str()), "by {mode}: {rows:#?}");
    }
    assert_eq!(agreement(&client, "cookies", "token", &token)["creationtime"], created, "its history stays");
    // The phone is not the subject's yet: its agreement is still kept apart.
    assert_eq!(
        briefs_and_statuses(&pending_rows(&client, "phone", "+442079460018")),
        [("analytics".into(), "no".into())]
    );
    // Until a change gives the subject the phone.
    client.put(&format!("/v1/user/token/{token}"), json!({"phone": "020 7946 0018"})).assert_ok();
    let rows = agreements(&client, "phone", "+442079460018");
    assert_eq!(
        briefs_and_statuses(&rows),
        [("analytics".into(), "no".into()), ("cookies".into(), "yes".into()), ("newsletter".into(), "no".into())]
    );
    assert!(rows.iter().all(|row| row["token"] == token.as_str()), "{rows:#?}");
    // From now on the subject's own agreements change.
    accept(&client, "analytics", "email", "visitor@example.com", json!({})).assert_ok();
    assert_eq!(agreement(&client, "analytics", "token", &token)["status"], "yes");

    // Revoking a basis reaches agreements kept for visitors too.
    accept(&client, "cookies", "email", "other@example.com", json!({})).assert_ok();
    client.delete("/v1/agreement/cookies").assert_ok();
    assert_eq!(agreement(&client, "cookies", "email", "other@example.com")["status"], "revoked");
    assert_eq!(agreement(&client, "cookies", "token", &token)["status"], "revoked");

    // Every access is audited; the kept ones name no subject, and no identifier appears.
    let rows = admin_rows(&client);
    assert_eq!(subjectless_rows(&rows, "consent-accept").len(), 4, "{rows:#?}");
    assert_eq!(subjectless_rows(&rows, "consent-withdraw").len(), 2, "{rows:#?}");
    assert!(subjectless_rows(&rows, "consent-read").len() >= 8, "{rows:#?}");
    for row in subjectless_rows(&rows, "consent-accept") {
        assert!(row["mode"] == "email" || row["mode"] == "phone", "{row}");
    }
    let text = serde_json::to_string(&rows).unwrap().to_lowercase();
    for identifier in ["visitor@example.com", "other@example.com", "2079460018", "\"vis\""] {
        assert!(!text.contains(identifier), "{identifier} is in the audit trail");
    }
    assert_eq!(client.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);
    let log = vault.log().to_lowercase();
    assert!(!log.contains("visitor@example.com") && !log.contains("2079460018"), "an identifier reached the log");
}

#[test]
fn forget_me_of_an_identifier_with_only_kept_agreements_drops_the_identifier_and_keeps_the_evidence() {
    let (hsm, _scratch, data_dir) = serve_scratch();
    let vault = Vault::hsm(&hsm, &data_dir, &["--hsm-create-key"]);
    let client = vault.client();
    put_basis(&client, "cookies", json!({})).assert_ok();
    put_basis(&client, "newsletter", json!({})).assert_ok();
    accept(&client, "cookies", "email", "kim.visitor@example.com", json!({"referencecode": "banner-7"})).assert_ok();
    accept(&client, "newsletter", "email", "kim.visitor@example.com", json!({})).assert_ok();
    accept(&client, "cookies", "phone", "+14155552671", json!({})).assert_ok();
    let evidence = pending_rows(&client, "email", "kim.visitor@example.com");

    let reply = client.delete("/v1/user/email/Kim.Visitor@example.com");
    assert_eq!(reply.body, json!({"status": "ok", "result": "done", "token": null}));
    let reply = client.delete("/v1/user/email/kim.visitor@example.com");
    assert_eq!(reply.body, json!({"status": "ok", "result": "done", "token": null}), "forgetting twice is fine");
    client.delete("/v1/user/email/nobody@example.com").assert_error(404);
    client.delete("/v1/user/phone/+14155550000").assert_error(404);
    client.delete("/v1/user/login/kim").assert_error(404);

    // The evidence stays, keyed by the blind index; withdrawing still works.
    assert_eq!(pending_rows(&client, "email", "kim.visitor@example.com"), evidence);
    withdraw(&client, "newsletter", "email", "kim.visitor@example.com").assert_ok();
    let rows = admin_rows(&client);
    let forgets = subjectless_rows(&rows, "user-forget");
    assert_eq!(forgets.len(), 2, "{rows:#?}");
    assert_eq!(forgets[0]["mode"], "email");
    vault.stop(); // SIGTERM: sled is flushed, so the store can be read below

    // On disk: agreements under blind-index entries, the phone's sealed identifier, and
    // no plaintext identifier anywhere (state, Raft log, audit trail).
    for secret in ["kim.visitor@example.com", "kim.visitor", "4155552671"] {
        assert_eq!(support::occurs_in_files(&data_dir, secret), None, "{secret} in the clear");
    }
    let store = Store::open(&data_dir, vaultd::store::DEFAULT_CACHE_BYTES).unwrap();
    let count = |prefix: u8| store.state_tree().scan_prefix([prefix]).count();
    assert_eq!(count(b'e'), 3, "three kept agreements");
    assert_eq!(count(b'v'), 1, "only the phone's sealed identifier is left");
    drop(store);

    // A later sign-up with the identifier takes the kept agreements over (the decision:
    // the agreements are the consent evidence of whoever holds the address).
    let vault = Vault::hsm(&hsm, &data_dir, &[]);
    let client = vault.client();
    let token = client.create_user(json!({"email": "kim.visitor@example.com", "phone": "+1 415 555 2671"}));
    let rows = agreements(&client, "token", &token);
    assert_eq!(briefs_and_statuses(&rows), [("cookies".into(), "yes".into()), ("newsletter".into(), "no".into())]);
    assert_eq!(rows[0]["referencecode"], "banner-7");
    // A subject's forget-me answers its token as ever.
    let reply = client.delete("/v1/user/email/kim.visitor@example.com");
    assert_eq!(reply.body, json!({"status": "ok", "result": "done", "token": token}));
    assert_eq!(agreements(&client, "token", &token).len(), 2);
    vault.stop();
    let store = Store::open(&data_dir, vaultd::store::DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.state_tree().scan_prefix([b'v']).count(), 0, "sign-up took the sealed identifiers away");
    assert_eq!(store.state_tree().scan_prefix([b'e']).count(), 0, "and the kept agreements");
}

#[test]
fn agreements_by_a_malformed_identifier_or_the_wrong_caller_are_refused_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    put_basis(&client, "cookies", json!({})).assert_ok();
    accept(&client, "cookies", "email", "kept@example.com", json!({})).assert_ok();
    // A subject whose email is not shaped like one still reaches its agreements by it.
    let odd = client.create_user(json!({"login": "odd", "email": "odd-at-example"}));
    accept(&client, "cookies", "email", "odd-at-example", json!({})).assert_ok();
    assert_eq!(agreement(&client, "cookies", "token", &odd)["status"], "yes");
    let reader = client.with_token(Some(&scoped_token(&client, "reader", &["users:read"])));
    let self_token = client.post("/v1/sys/tokens", json!({"name": "odd-self", "subject": odd}));
    let own = client.with_token(Some(self_token.assert_ok()["token"].as_str().unwrap()));
    let state = consent_state(&client, &[&odd]);
    let kept = pending_rows(&client, "email", "kept@example.com");
    let events = audit_total(&client);

    let long = format!("{}@example.com", "a".repeat(250));
    for (mode, id) in [
        ("email", "not-an-email"),
        ("email", "a@b@example.com"),
        ("email", "@example.com"),
        ("email", "ann@"),
        ("email", "ann%20smith@example.com"),
        ("email", "%20%20"),
        ("email", long.as_str()),
        ("phone", "call-me"),
        ("phone", "12a34"),
        ("phone", "%2B"),
        ("phone", "%20"),
    ] {
        for (method, path) in [
            ("POST", format!("/v1/agreement/cookies/{mode}/{id}")),
            ("DELETE", format!("/v1/agreement/cookies/{mode}/{id}")),
            ("GET", format!("/v1/agreement/cookies/{mode}/{id}")),
            ("GET", format!("/v1/agreements/{mode}/{id}")),
        ] {
            let reply = bare(&client, method, &path);
            assert_eq!(reply.status, 400, "{method} {path}: {}", reply.body);
            reply.assert_error(400);
        }
    }
    // Bad bodies and briefs are refused before anything is kept.
    for body in [json!({"status": "maybe"}), json!({"expiration": "soon"}), json!({"referencecode": 5})] {
        accept(&client, "cookies", "email", "new@example.com", body).assert_error(400);
    }
    accept(&client, "bad_brief", "email", "new@example.com", json!({})).assert_error(400);
    raw(&client, "POST", "/v1/agreement/cookies/email/new@example.com", "application/json", "{\"status\":")
        .assert_error(400);
    // A reader cannot record consent; a subject token reaches only its own subject.
    accept(&reader, "cookies", "email", "new@example.com", json!({})).assert_error(403);
    accept(&own, "cookies", "email", "new@example.com", json!({})).assert_error(403);
    own.get("/v1/agreements/email/kept@example.com").assert_error(403);
    withdraw(&own, "cookies", "email", "kept@example.com").assert_error(403);
    own.delete("/v1/user/email/kept@example.com").assert_error(403);

    assert_eq!(consent_state(&client, &[&odd]), state, "a refused request changed an agreement");
    assert_eq!(pending_rows(&client, "email", "kept@example.com"), kept);
    client.get("/v1/agreements/email/new@example.com").assert_error(404);
    let reads = 3; // consent_state's listing, the two listings by email
    assert_eq!(audit_total(&client), events + reads, "a refused request wrote an audit event");
    // Unknown brief, basis deleted: an agreement is not kept for it.
    accept(&client, "no-such-basis", "email", "new@example.com", json!({})).assert_error(404);
    client.get("/v1/agreements/email/new@example.com").assert_error(404);
}

#[test]
fn consent_before_sign_up_is_consistent_across_a_three_node_cluster() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.leader();
    let (first, second) = ((leader + 1) % 3, (leader + 2) % 3);
    put_basis(&cluster.client(first), "cookies", json!({})).assert_ok();
    put_basis(&cluster.client(second), "newsletter", json!({})).assert_ok();

    // Kept on one follower, read at once on every node.
    accept(&cluster.client(first), "cookies", "email", "eve@example.com", json!({"referencecode": "c-1"})).assert_ok();
    accept(&cluster.client(second), "newsletter", "phone", "+447700900555", json!({})).assert_ok();
    for slot in 0..3 {
        let client = cluster.client(slot);
        let row = agreement(&client, "cookies", "email", "EVE@example.com");
        assert_eq!(
            (&row["status"], &row["token"], &row["referencecode"]),
            (&json!("yes"), &json!(null), &json!("c-1"))
        );
        assert_eq!(pending_rows(&client, "phone", "07700900555").len(), 1, "node {slot}");
    }
    // Each change is seen by the next read, whichever nodes take the two.
    for round in 0..6 {
        let (writer, reader) = (cluster.client(round % 3), cluster.client((round + 1) % 3));
        let expected = if round % 2 == 0 {
            withdraw(&writer, "cookies", "email", "eve@example.com").assert_ok();
            "no"
        } else {
            accept(&writer, "cookies", "email", "eve@example.com", json!({})).assert_ok();
            "yes"
        };
        assert_eq!(agreement(&reader, "cookies", "email", "eve@example.com")["status"], expected, "round {round}");
    }

    // Sign-up through one node: every node shows the agreements as the subject's.
    let token = cluster.client(second).create_user(json!({"email": "eve@example.com", "phone": "07700900555"}));
    for slot in 0..3 {
        let rows = agreements(&cluster.client(slot), "email", "eve@example.com");
        assert_eq!(
            briefs_and_statuses(&rows),
            [("cookies".into(), "yes".into()), ("newsletter".into(), "yes".into())],
            "node {slot}"
        );
        assert!(rows.iter().all(|row| row["token"] == token.as_str()), "node {slot}: {rows:#?}");
    }

    // Forget-me of another visitor through a follower; the evidence stays on every node.
    accept(&cluster.client(leader), "cookies", "phone", "+447700900666", json!({})).assert_ok();
    let reply = cluster.client(first).delete("/v1/user/phone/+447700900666");
    assert_eq!(reply.body, json!({"status": "ok", "result": "done", "token": null}));
    for slot in 0..3 {
        let rows = pending_rows(&cluster.client(slot), "phone", "+447700900666");
        assert_eq!(briefs_and_statuses(&rows), [("cookies".into(), "yes".into())], "node {slot}");
    }
    cluster.client(second).delete("/v1/agreement/cookies").assert_ok();
    for slot in 0..3 {
        assert_eq!(agreement(&cluster.client(slot), "cookies", "phone", "+447700900666")["status"], "revoked");
    }
    let verify = cluster.client(first).get("/v1/sys/audit/verify");
    assert_eq!(verify.assert_ok()["verification"]["intact"], true);
}
