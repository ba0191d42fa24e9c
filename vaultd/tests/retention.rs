//! Retention runs (`POST /v1/sys/retention/run`, `GET /v1/sys/retention/runs`) and
//! `vaultd minimize` against a real `vaultd demo`: each action changes exactly the
//! subjects its rule selects, dry runs and reruns change nothing, every change and every
//! run is audited, and bad policies are refused without writing anything.

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::{
    audit_rows, audit_total, events, keys, minimize, profile, rule_counts, scoped_token, Client, Reply, Vault,
};
use uuid::Uuid;

fn run(client: &Client, policy: &str, spec: Value) -> Reply {
    client.post("/v1/sys/retention/run", json!({"policy": policy, "spec": spec}))
}

/// Runs a policy and returns its report, checking the report's shape.
fn run_ok(client: &Client, policy: &str, spec: Value) -> Value {
    let reply = run(client, policy, spec.clone());
    let report = reply.assert_ok().clone();
    assert_eq!(
        keys(&report),
        ["auditEventId", "changed", "dryRun", "finishedAt", "matched", "policy", "rules", "startedAt", "status"],
        "{report}"
    );
    assert_eq!(report["policy"], policy);
    assert_eq!(report["dryRun"], spec["dryRun"].as_bool().unwrap_or(false));
    let (started, finished) = (report["startedAt"].as_u64().unwrap(), report["finishedAt"].as_u64().unwrap());
    assert!(started > 1_600_000_000_000 && started <= finished, "times in ms: {report}");
    Uuid::parse_str(report["auditEventId"].as_str().unwrap()).unwrap();
    let rules = report["rules"].as_array().unwrap();
    let spec_rules = spec["rules"].as_array().unwrap();
    assert_eq!(rules.len(), spec_rules.len(), "{report}");
    for (rule, spec_rule) in rules.iter().zip(spec_rules) {
        assert_eq!(keys(rule), ["action", "changed", "matched", "name", "skipped"], "{rule}");
        assert_eq!(rule["name"], spec_rule["name"]);
        assert_eq!(rule["action"], spec_rule["action"]);
    }
    let sum = |field: &str| rules.iter().map(|r| r[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!(report["matched"], sum("matched"), "{report}");
    assert_eq!(report["changed"], sum("changed"), "{report}");
    report
}

fn is_pseudonym(value: &Value) -> bool {
    value
        .as_str()
        .and_then(|s| s.strip_prefix("psn_"))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn drop_phone(older_than: &str) -> Value {
    json!({"rules": [{
        "name": "drop-phone",
        "match": {"olderThan": older_than, "since": "created", "hasFields": ["phone"]},
        "action": "dropFields",
        "fields": ["phone"],
    }]})
}

#[test]
fn drop_fields_removes_the_field_from_exactly_the_subjects_that_have_it() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let a = client.create_user(json!({"login": "a", "phone": "07700900001", "city": "Leeds"}));
    let b = client.create_user(json!({"login": "b", "phone": "07700900002", "email": "b@example.com"}));
    let c = client.create_user(json!({"login": "c", "city": "York"}));
    let d = client.create_user(json!({"login": "d", "phone": null}));
    let gone = client.create_user(json!({"login": "gone", "phone": "07700900003"}));
    client.delete(&format!("/v1/user/token/{gone}")).assert_ok();

    // Nothing is 730 days old.
    let report = run_ok(&client, "shop/drop-phone", drop_phone("730d"));
    assert_eq!(rule_counts(&report), [(0, 0, 0)]);
    assert_eq!(profile(&client, &a)["phone"], "07700900001");

    let report = run_ok(&client, "shop/drop-phone", drop_phone("0s"));
    assert_eq!(
        report["rules"][0],
        json!({"name": "drop-phone", "action": "dropFields", "matched": 2, "changed": 2, "skipped": 0})
    );
    assert_eq!(report["matched"], 2);
    assert_eq!(report["changed"], 2);
    assert_eq!(profile(&client, &a), json!({"login": "a", "city": "Leeds"}));
    assert_eq!(profile(&client, &b), json!({"login": "b", "email": "b@example.com"}));
    assert_eq!(profile(&client, &c), json!({"login": "c", "city": "York"}));
    assert_eq!(profile(&client, &d), json!({"login": "d", "phone": null}));
    assert_eq!(profile(&client, &gone), json!({}));
    // The dropped phone no longer finds anybody; the other identifiers still do.
    client.get("/v1/user/phone/07700900001").assert_error(404);
    client.get("/v1/user/phone/07700900002").assert_error(404);
    assert_eq!(client.get("/v1/user/email/b@example.com").assert_ok()["token"], b.as_str());
    assert_eq!(client.get("/v1/user/login/a").assert_ok()["token"], a.as_str());
    // The dropped phone is free for somebody else.
    let newcomer = client.create_user(json!({"login": "newcomer", "phone": "07700900001"}));
    assert_eq!(client.get("/v1/user/phone/07700900001").assert_ok()["token"], newcomer.as_str());
    client.delete(&format!("/v1/user/token/{newcomer}")).assert_ok();

    // A rerun finds nothing to do.
    let report = run_ok(&client, "shop/drop-phone", drop_phone("0s"));
    assert_eq!(rule_counts(&report), [(0, 0, 0)]);

    // Without hasFields every active subject matches; only those with the field change.
    let e = client.create_user(json!({"login": "e", "phone": "07700900005"}));
    let spec =
        json!({"rules": [{"name": "drop-phone", "match": {}, "action": "dropFields", "fields": ["phone", "fax"]}]});
    let report = run_ok(&client, "shop/drop-any", spec.clone());
    assert_eq!(rule_counts(&report), [(5, 2, 0)], "a, b, c, d and e match; d's null phone and e's phone go: {report}");
    assert_eq!(profile(&client, &e), json!({"login": "e"}));
    assert_eq!(profile(&client, &d), json!({"login": "d"}));
    assert_eq!(rule_counts(&run_ok(&client, "shop/drop-any", spec)), [(5, 0, 0)]);

    // Each change is audited on its subject, with the policy and rule as purpose.
    for token in [&a, &b] {
        let rows = events(&client, token, "retention-drop-fields");
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0]["purpose"], "retention shop/drop-phone rule drop-phone", "{}", rows[0]);
        assert_eq!(rows[0]["result"], "ok");
        assert_eq!(rows[0]["subject"], token.as_str());
        assert!(!serde_json::to_string(&rows[0]).unwrap().contains("0770090000"), "PII in {}", rows[0]);
    }
    for token in [&c, &gone] {
        assert!(events(&client, token, "retention-drop-fields").is_empty());
    }
    let rows = events(&client, &d, "retention-drop-fields");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["purpose"], "retention shop/drop-any rule drop-phone");
}

#[test]
fn delete_forgets_exactly_the_selected_subjects_and_later_rules_do_not_see_them() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let closed = client
        .create_user(json!({"login": "closed", "email": "closed@example.com", "closed": true, "phone": "07700900010"}));
    let closed2 = client.create_user(json!({"login": "closed2", "closed": "yes"}));
    let open = client.create_user(json!({"login": "open", "phone": "07700900011"}));
    let spec = json!({"rules": [
        {"name": "forget-closed", "match": {"olderThan": "0s", "hasFields": ["closed"]}, "action": "delete"},
        {"name": "drop-phone", "match": {"hasFields": ["phone"]}, "action": "dropFields", "fields": ["phone"]},
    ]});
    let report = run_ok(&client, "crm/forget", spec.clone());
    assert_eq!(rule_counts(&report), [(2, 2, 0), (1, 1, 0)], "the forgotten subject is not seen by the second rule");
    for token in [&closed, &closed2] {
        assert_eq!(
            client.get(&format!("/v1/user/token/{token}")).body,
            json!({"status": "ok", "token": token, "data": {}})
        );
        let rows = events(&client, token, "retention-delete");
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0]["purpose"], "retention crm/forget rule forget-closed");
        assert!(events(&client, token, "retention-drop-fields").is_empty());
    }
    client.get("/v1/user/login/closed").assert_error(404);
    client.get("/v1/user/email/closed@example.com").assert_error(404);
    assert_eq!(profile(&client, &open), json!({"login": "open"}));
    assert!(events(&client, &open, "retention-delete").is_empty());

    let report = run_ok(&client, "crm/forget", spec);
    assert_eq!(rule_counts(&report), [(0, 0, 0), (0, 0, 0)]);
    // The freed identifiers can be used again, and the new subject is not touched.
    let again = client.create_user(json!({"login": "closed"}));
    let report = run_ok(
        &client,
        "crm/forget-old",
        json!({"rules": [{"name": "old", "match": {"olderThan": "730d"}, "action": "delete"}]}),
    );
    assert_eq!(rule_counts(&report), [(0, 0, 0)]);
    assert_eq!(profile(&client, &again), json!({"login": "closed"}));
}

#[test]
fn pseudonymize_replaces_values_with_stable_keyed_pseudonyms_once() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let a = client.create_user(json!({"login": "pa", "email": "pa@example.com", "city": "Paris", "age": 41}));
    let b = client.create_user(json!({"login": "pb", "city": "Paris"}));
    let c = client.create_user(json!({"login": "pc", "city": "Rome"}));
    let untouched = client.create_user(json!({"login": "pd", "town": "Paris"}));
    let spec = json!({"rules": [{
        "name": "mask", "match": {"olderThan": "0s", "hasFields": ["city"]},
        "action": "pseudonymize", "fields": ["city", "email", "age"],
    }]});
    let report = run_ok(&client, "analytics/mask", spec.clone());
    assert_eq!(rule_counts(&report), [(3, 3, 0)]);

    let (pa, pb, pc) = (profile(&client, &a), profile(&client, &b), profile(&client, &c));
    for (profile, fields) in [(&pa, &["city", "email", "age"][..]), (&pb, &["city"]), (&pc, &["city"])] {
        for field in fields {
            assert!(is_pseudonym(&profile[field]), "{field} of {profile} is not psn_ + 32 hex");
        }
    }
    assert_eq!(pa["login"], "pa");
    assert_eq!(keys(&pa), ["age", "city", "email", "login"]);
    assert_eq!(pa["city"], pb["city"], "equal values get equal pseudonyms");
    assert_ne!(pa["city"], pc["city"]);
    assert_ne!(pa["city"], pa["email"]);
    assert_eq!(profile(&client, &untouched), json!({"login": "pd", "town": "Paris"}));
    // The old email finds nobody any more.
    client.get("/v1/user/email/pa@example.com").assert_error(404);
    assert_eq!(client.get("/v1/user/login/pa").assert_ok()["token"], a.as_str());
    let reuser = client.create_user(json!({"login": "reuser", "email": "pa@example.com"}));
    client.delete(&format!("/v1/user/token/{reuser}")).assert_ok();

    // A rerun does not pseudonymise pseudonyms; a later subject gets the same pseudonym.
    let report = run_ok(&client, "analytics/mask", spec.clone());
    assert_eq!(rule_counts(&report), [(3, 0, 0)]);
    assert_eq!(profile(&client, &a), pa);
    let later = client.create_user(json!({"login": "pe", "city": "Paris"}));
    let report = run_ok(&client, "analytics/mask", spec);
    assert_eq!(rule_counts(&report), [(4, 1, 0)]);
    assert_eq!(profile(&client, &later)["city"], pa["city"], "pseudonyms are stable across runs");

    let rows = events(&client, &a, "retention-pseudonymize");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["purpose"], "retention analytics/mask rule mask");
    let text = serde_json::to_string(&audit_rows(&client, &a)).unwrap();
    assert!(!text.contains("Paris") && !text.contains("pa@example.com"), "PII in the audit trail: {text}");
}

#[test]
fn a_subject_whose_pseudonyms_would_pass_the_record_limit_is_skipped_not_the_run() {
    let vault = Vault::demo_with(&["--max-record-bytes=200"]);
    let client = vault.demo_client();
    // Pseudonyms are longer than short values: this profile fits, its pseudonymised form
    // would not.
    let full = client.create_user(json!({"login": "full", "a": 1, "b": 2, "c": 3, "d": "x".repeat(100)}));
    let small = client.create_user(json!({"login": "small", "a": 1}));
    let before = profile(&client, &full);
    let spec = json!({"rules": [{
        "name": "mask", "match": {"olderThan": "0s", "hasFields": ["a"]},
        "action": "pseudonymize", "fields": ["a", "b", "c"],
    }]});
    let report = run_ok(&client, "analytics/mask", spec);
    assert_eq!(rule_counts(&report), [(2, 1, 1)], "{report}");
    assert_eq!(profile(&client, &full), before);
    assert!(is_pseudonym(&profile(&client, &small)["a"]));
}

#[test]
fn delete_app_removes_only_that_apps_records_and_app_selects_by_the_app_record() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let both = client.create_user(json!({"login": "both", "phone": "07700900020"}));
    let trial_only = client.create_user(json!({"login": "trial", "phone": "07700900021"}));
    let shop_only = client.create_user(json!({"login": "shop", "phone": "07700900022"}));
    let none = client.create_user(json!({"login": "none", "phone": "07700900023"}));
    for token in [&both, &trial_only] {
        client.post(&format!("/v1/userapp/token/{token}/trial"), json!({"plan": "free"})).assert_ok();
    }
    for token in [&both, &shop_only] {
        client.post(&format!("/v1/userapp/token/{token}/shop"), json!({"basket": 2})).assert_ok();
    }

    // The app record's age counts: none is 730 days old.
    let old = json!({"rules": [{"name": "end-trial", "match": {"olderThan": "730d", "app": "trial"}, "action": "deleteApp"}]});
    assert_eq!(rule_counts(&run_ok(&client, "shop/trials", old)), [(0, 0, 0)]);

    let spec = json!({"rules": [{"name": "end-trial", "match": {"olderThan": "0s", "since": "updated", "app": "trial"}, "action": "deleteApp"}]});
    let report = run_ok(&client, "shop/trials", spec.clone());
    assert_eq!(rule_counts(&report), [(2, 2, 0)]);
    for token in [&both, &trial_only] {
        client.get(&format!("/v1/userapp/token/{token}/trial")).assert_error(404);
        let rows = events(&client, token, "retention-delete-app");
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!(rows[0]["app"], "trial", "{}", rows[0]);
        assert_eq!(rows[0]["purpose"], "retention shop/trials rule end-trial");
    }
    for token in [&both, &shop_only] {
        assert_eq!(client.get(&format!("/v1/userapp/token/{token}/shop")).assert_ok()["data"], json!({"basket": 2}));
    }
    assert_eq!(profile(&client, &both)["phone"], "07700900020", "deleteApp leaves the profile alone");
    assert!(events(&client, &none, "retention-delete-app").is_empty());
    assert_eq!(rule_counts(&run_ok(&client, "shop/trials", spec)), [(0, 0, 0)]);

    // match.app also narrows other actions: only shop customers lose their phone.
    let spec =
        json!({"rules": [{"name": "drop", "match": {"app": "shop"}, "action": "dropFields", "fields": ["phone"]}]});
    assert_eq!(rule_counts(&run_ok(&client, "shop/phones", spec)), [(2, 2, 0)]);
    assert_eq!(profile(&client, &both), json!({"login": "both"}));
    assert_eq!(profile(&client, &shop_only), json!({"login": "shop"}));
    assert_eq!(profile(&client, &trial_only)["phone"], "07700900021");
    assert_eq!(profile(&client, &none)["phone"], "07700900023");
}

#[test]
fn start_expiration_starts_the_flow_unless_one_is_under_way_and_since_expiration_start_selects_them() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let anonymous = client.with_token(None);
    let fresh = client.create_user(json!({"login": "fresh", "inactive": true}));
    let retained = client.create_user(json!({"login": "retained", "inactive": true}));
    let active = client.create_user(json!({"login": "active"}));
    let exptoken = client.post(&format!("/v1/exp/start/token/{retained}"), json!({"expiration": "1d"})).assert_ok()
        ["exptoken"]
        .as_str()
        .unwrap()
        .to_string();
    anonymous.get(&format!("/v1/exp/retain/{exptoken}")).assert_ok();

    let spec = json!({"rules": [{
        "name": "notify", "match": {"olderThan": "0s", "hasFields": ["inactive"]},
        "action": "startExpiration", "expiration": "30d",
    }]});
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let report = run_ok(&client, "crm/notify", spec.clone());
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(rule_counts(&report), [(2, 1, 0)], "the retained subject's choice stands: {report}");
    let status = client.get(&format!("/v1/exp/status/token/{fresh}")).assert_ok().clone();
    assert_eq!(status["expstatus"], "wait", "{status}");
    let exptime = status["exptime"].as_u64().unwrap();
    assert!(exptime >= before + 30 * 86_400 && exptime <= after + 30 * 86_400, "{status}");
    let new_exptoken = status["exptoken"].as_str().unwrap().to_string();
    Uuid::parse_str(&new_exptoken).unwrap();
    assert_eq!(client.get(&format!("/v1/exp/status/token/{retained}")).assert_ok()["expstatus"], "retain");
    assert_eq!(client.get(&format!("/v1/exp/status/token/{active}")).assert_ok()["expstatus"], "");
    let rows = events(&client, &fresh, "retention-start-expiration");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["purpose"], "retention crm/notify rule notify");
    assert!(!serde_json::to_string(&rows).unwrap().contains(&new_exptoken));
    assert!(events(&client, &retained, "retention-start-expiration").is_empty());

    // A rerun does not restart it (the exptoken stays valid).
    assert_eq!(rule_counts(&run_ok(&client, "crm/notify", spec)), [(2, 0, 0)]);
    assert_eq!(client.get(&format!("/v1/exp/status/token/{fresh}")).assert_ok()["exptoken"], new_exptoken.as_str());

    // Age since the expiration started: only subjects with one are selected.
    let spec = json!({"rules": [{"name": "after-notice", "match": {"olderThan": "0s", "since": "expirationStart"}, "action": "delete"}]});
    assert_eq!(rule_counts(&run_ok(&client, "crm/after-notice", spec)), [(2, 2, 0)]);
    for token in [&fresh, &retained] {
        assert_eq!(profile(&client, token), json!({}));
    }
    assert_eq!(profile(&client, &active), json!({"login": "active"}));
    anonymous.get(&format!("/v1/exp/retain/{new_exptoken}")).assert_error(404);
}

#[test]
fn a_dry_run_reports_what_would_change_changes_nothing_and_is_recorded() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let with_phone: Vec<String> = (0..3)
        .map(|n| client.create_user(json!({"login": format!("p{n}"), "phone": format!("0770090030{n}")})))
        .collect();
    let doomed = client.create_user(json!({"login": "doomed", "closed": true}));
    let trial = client.create_user(json!({"login": "trial", "city": "Leeds"}));
    client.post(&format!("/v1/userapp/token/{trial}/trial"), json!({"plan": "x"})).assert_ok();
    // startExpiration first: a real run's delete would hide a subject from later rules.
    let rules = json!([
        {"name": "notify", "match": {"hasFields": ["login"]}, "action": "startExpiration", "expiration": "30d"},
        {"name": "drop-phone", "match": {"hasFields": ["phone"]}, "action": "dropFields", "fields": ["phone"]},
        {"name": "forget", "match": {"hasFields": ["closed"]}, "action": "delete"},
        {"name": "mask", "match": {"hasFields": ["city"]}, "action": "pseudonymize", "fields": ["city"]},
        {"name": "trial", "match": {"app": "trial"}, "action": "deleteApp"},
    ]);
    let all: Vec<&String> = with_phone.iter().chain([&doomed, &trial]).collect();
    let before: Vec<Value> = all.iter().map(|t| profile(&client, t)).collect();

    let dry = run_ok(&client, "shop/everything", json!({"dryRun": true, "rules": rules}));
    assert_eq!(dry["dryRun"], true);
    assert_eq!(rule_counts(&dry), [(5, 5, 0), (3, 3, 0), (1, 1, 0), (1, 1, 0), (1, 1, 0)], "{dry}");
    let after: Vec<Value> = all.iter().map(|t| profile(&client, t)).collect();
    assert_eq!(after, before, "a dry run changed a profile");
    assert_eq!(client.get(&format!("/v1/userapp/token/{trial}/trial")).assert_ok()["data"], json!({"plan": "x"}));
    for token in &all {
        assert_eq!(client.get(&format!("/v1/exp/status/token/{token}")).assert_ok()["expstatus"], "");
        let changes: Vec<Value> = audit_rows(&client, token)
            .into_iter()
            .filter(|row| row["operation"].as_str().unwrap().starts_with("retention-"))
            .collect();
        assert!(changes.is_empty(), "a dry run audited a change: {changes:#?}");
    }
    // The dry run is recorded, and has its audit event.
    let runs = client.get("/v1/sys/retention/runs?policy=shop/everything").assert_ok()["runs"].clone();
    let mut listed = dry.clone();
    listed.as_object_mut().unwrap().remove("status");
    assert_eq!(runs, json!([listed]));
    let event =
        client.get(&format!("/v1/audit/get/{}", dry["auditEventId"].as_str().unwrap())).assert_ok()["event"].clone();
    assert_eq!(event["operation"], "retention-run", "{event}");

    // The real run then changes what the dry run said it would.
    let real = run_ok(&client, "shop/everything", json!({"dryRun": false, "rules": rules}));
    assert_eq!(rule_counts(&real), rule_counts(&dry), "{real}");
    assert_eq!(real["changed"], dry["changed"]);
    assert_eq!(profile(&client, &doomed), json!({}));
    assert!(with_phone.iter().all(|t| profile(&client, t).get("phone").is_none()));
    let second_dry = run_ok(&client, "shop/everything", json!({"dryRun": true, "rules": rules}));
    assert_eq!(second_dry["changed"], 0, "{second_dry}");
}

#[test]
fn runs_are_audited_and_listed_newest_first_per_policy() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "r", "phone": "07700900040"}));
    let first = run_ok(&client, "shop/drop-phone", drop_phone("730d"));
    let second = run_ok(&client, "shop/drop-phone", drop_phone("0s"));
    let other = run_ok(
        &client,
        "crm/other",
        json!({"dryRun": true, "rules": [{"name": "x", "match": {}, "action": "delete"}]}),
    );
    assert_eq!(profile(&client, &token), json!({"login": "r"}));
    let ids: BTreeSet<&str> = [&first, &second, &other].iter().map(|r| r["auditEventId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each run has its own audit event");

    // Each run's audit event, by its id.
    for report in [&first, &second, &other] {
        let reply = client.get(&format!("/v1/audit/get/{}", report["auditEventId"].as_str().unwrap()));
        let event = &reply.assert_ok()["event"];
        assert_eq!(event["operation"], "retention-run", "{event}");
        assert_eq!(event["id"], report["auditEventId"]);
        assert_eq!(event["result"], "ok");
        assert_eq!(event["actor"], "root");
    }
    // The per-subject change and the run event are in the chain, which still verifies.
    assert_eq!(events(&client, &token, "retention-drop-fields").len(), 1);
    assert_eq!(client.get("/v1/sys/audit/verify").assert_ok()["verification"]["intact"], true);

    let listed = |report: &Value| {
        let mut report = report.clone();
        report.as_object_mut().unwrap().remove("status");
        report
    };
    let runs = |query: &str| client.get(&format!("/v1/sys/retention/runs{query}")).assert_ok().clone();
    let body = runs("?policy=shop/drop-phone");
    assert_eq!(keys(&body), ["runs", "status"]);
    assert_eq!(body["runs"], json!([listed(&second), listed(&first)]));
    assert_eq!(runs("?policy=shop/drop-phone&limit=1")["runs"], json!([listed(&second)]));
    assert_eq!(runs("?policy=crm/other&limit=100")["runs"], json!([listed(&other)]));
    assert_eq!(runs("?policy=shop/nothing")["runs"], json!([]));
    assert_eq!(runs("?policy=shop/drop")["runs"], json!([]), "a policy name is not a prefix match");
    assert_eq!(runs("?policy=shop")["runs"], json!([]));
    assert_eq!(runs("")["runs"], json!([listed(&other), listed(&second), listed(&first)]));
    assert_eq!(runs("?limit=2")["runs"], json!([listed(&other), listed(&second)]));
    for bad in [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?limit=-1",
        "?policy=shop/drop-phone&limit=1000",
        "?policy=Shop/x",
        "?policy=%C2%84",
    ] {
        let reply = client.get(&format!("/v1/sys/retention/runs{bad}"));
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        reply.assert_error(400);
    }
}

#[test]
fn bad_policies_and_callers_without_the_scope_are_refused_and_write_nothing() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let token = client.create_user(json!({"login": "z", "phone": "07700900050"}));
    client.post(&format!("/v1/userapp/token/{token}/trial"), json!({"plan": "x"})).assert_ok();
    let writer = client.with_token(Some(&scoped_token(&client, "writer", &["users:write", "users:read"])));
    let before = profile(&client, &token);
    let events_before = audit_total(&client);

    let drop = |m: Value| json!({"name": "r", "match": m, "action": "dropFields", "fields": ["phone"]});
    let bad_specs = [
        ("empty rules", json!({"rules": []})),
        ("no rules", json!({})),
        ("bad duration", json!({"rules": [drop(json!({"olderThan": "90 days"}))]})),
        ("week unit", json!({"rules": [drop(json!({"olderThan": "2w"}))]})),
        ("too long", json!({"rules": [drop(json!({"olderThan": "1234567d"}))]})),
        ("bad since", json!({"rules": [drop(json!({"since": "birthday"}))]})),
        ("dropFields without fields", json!({"rules": [{"name": "r", "match": {}, "action": "dropFields"}]})),
        (
            "pseudonymize without fields",
            json!({"rules": [{"name": "r", "match": {}, "action": "pseudonymize", "fields": []}]}),
        ),
        ("delete with fields", json!({"rules": [{"name": "r", "match": {}, "action": "delete", "fields": ["phone"]}]})),
        ("deleteApp without app", json!({"rules": [{"name": "r", "match": {}, "action": "deleteApp"}]})),
        ("bad app name", json!({"rules": [{"name": "r", "match": {"app": "Bad App!"}, "action": "deleteApp"}]})),
        (
            "startExpiration without expiration",
            json!({"rules": [{"name": "r", "match": {}, "action": "startExpiration"}]}),
        ),
        (
            "bad expiration",
            json!({"rules": [{"name": "r", "match": {}, "action": "startExpiration", "expiration": "soon"}]}),
        ),
        (
            "expiration on delete",
            json!({"rules": [{"name": "r", "match": {}, "action": "delete", "expiration": "1d"}]}),
        ),
        ("unknown action", json!({"rules": [{"name": "r", "match": {}, "action": "shred"}]})),
        ("duplicate names", json!({"rules": [drop(json!({})), drop(json!({}))]})),
        ("bad rule name", json!({"rules": [{"name": "a rule", "match": {}, "action": "delete"}]})),
        ("empty rule name", json!({"rules": [{"name": "", "match": {}, "action": "delete"}]})),
        ("empty field", json!({"rules": [{"name": "r", "match": {}, "action": "dropFields", "fields": [""]}]})),
        ("empty hasFields entry", json!({"rules": [{"name": "r", "match": {"hasFields": [""]}, "action": "delete"}]})),
        ("no match", json!({"rules": [{"name": "r", "action": "delete"}]})),
        ("rules not a list", json!({"rules": {"name": "r"}})),
    ];
    for (label, spec) in bad_specs {
        let reply = run(&client, "shop/bad", spec);
        assert_eq!(reply.status, 400, "{label}: {}", reply.body);
        reply.assert_error(400);
    }
    let good_spec = json!({"rules": [{"name": "r", "match": {}, "action": "delete"}]});
    for (label, policy) in [
        ("spaces and capitals", "Shop Policy"),
        ("capitals", "Shop/drop"),
        ("empty", ""),
        ("too long", &"a".repeat(254)),
    ] {
        let reply = run(&client, policy, good_spec.clone());
        assert_eq!(reply.status, 400, "policy {label}: {}", reply.body);
        reply.assert_error(400);
    }
    let raw_bodies = [
        json!({"policy": "shop/x", "spec": good_spec, "extra": 1}),
        json!({"spec": good_spec}),
        json!({"policy": "shop/x"}),
        json!({"policy": 7, "spec": good_spec}),
        json!([]),
    ];
    for body in raw_bodies {
        let reply = client.post("/v1/sys/retention/run", body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        reply.assert_error(400);
    }
    let reply = client.send(
        client.request("POST", "/v1/sys/retention/run").header("Content-Type", "application/json").body("{\"policy\":"),
    );
    reply.assert_error(400);

    // Callers without retention:run.
    for (label, caller, code) in [
        ("missing", client.with_token(None), 401),
        ("wrong", client.with_token(Some("WRONG")), 401),
        ("users:write", writer, 403),
    ] {
        let reply = run(&caller, "shop/x", good_spec.clone());
        assert_eq!(reply.status, code, "{label} run: {}", reply.body);
        reply.assert_error(code);
        let reply = caller.get("/v1/sys/retention/runs");
        assert_eq!(reply.status, code, "{label} runs: {}", reply.body);
        reply.assert_error(code);
    }

    assert_eq!(audit_total(&client), events_before, "a refused run wrote an audit event");
    assert_eq!(profile(&client, &token), before);
    assert_eq!(client.get(&format!("/v1/userapp/token/{token}/trial")).assert_ok()["data"], json!({"plan": "x"}));
    assert_eq!(client.get("/v1/sys/retention/runs").assert_ok()["runs"], json!([]), "no run was recorded");

    // A token with just retention:run may run and list.
    let runner = client.with_token(Some(&scoped_token(&client, "runner", &["retention:run"])));
    let report = run_ok(&runner, "shop/drop-phone", drop_phone("0s"));
    assert_eq!(report["changed"], 1);
    assert_eq!(runner.get("/v1/sys/retention/runs").assert_ok()["runs"].as_array().unwrap().len(), 1);
    let event =
        client.get(&format!("/v1/audit/get/{}", report["auditEventId"].as_str().unwrap())).assert_ok()["event"].clone();
    assert_ne!(event["actor"], "root", "the run is attributed to the runner's token: {event}");
}

#[test]
fn vaultd_minimize_runs_a_policy_file_and_fails_loudly() {
    let vault = Vault::demo();
    let client = vault.demo_client();
    let with_phone = client.create_user(json!({"login": "m1", "phone": "07700900060"}));
    let without = client.create_user(json!({"login": "m2"}));
    let dir = tempfile::tempdir().unwrap();
    let root_token = dir.path().join("root-token");
    std::fs::write(&root_token, "DEMO\n").unwrap();
    let policy = dir.path().join("policy.yaml");
    let yaml = |dry_run: bool| {
        format!(
            "apiVersion: strongroom.dev/v1alpha1\nkind: RetentionPolicy\nmetadata:\n  name: drop-phone\n  namespace: shop\n\
             spec:\n  vaultRef: {{name: customers}}\n  schedule: \"0 3 * * *\"\n  dryRun: {dry_run}\n  rules:\n\
             \x20 - name: drop-phone-after-90d\n    match: {{olderThan: 0s, since: created, hasFields: [phone]}}\n\
             \x20   action: dropFields\n    fields: [phone]\n"
        )
    };

    std::fs::write(&policy, yaml(true)).unwrap();
    let (code, report, stderr) = minimize(&vault.url, &root_token, &policy, &[]);
    assert_eq!(code, 0, "dry run failed: {stderr}");
    assert_eq!(report["policy"], "shop/drop-phone", "{report}");
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["changed"], 1);
    assert_eq!(profile(&client, &with_phone)["phone"], "07700900060");

    std::fs::write(&policy, yaml(false)).unwrap();
    let (code, report, stderr) = minimize(&vault.url, &root_token, &policy, &[]);
    assert_eq!(code, 0, "run failed: {stderr}");
    assert_eq!(report["dryRun"], false, "{report}");
    assert_eq!(report["matched"], 1);
    assert_eq!(report["changed"], 1);
    assert_eq!(report["rules"][0]["name"], "drop-phone-after-90d");
    assert_eq!(profile(&client, &with_phone), json!({"login": "m1"}));
    assert_eq!(profile(&client, &without), json!({"login": "m2"}));
    // What it printed is the run as the vault recorded it.
    let runs = client.get("/v1/sys/retention/runs?policy=shop/drop-phone&limit=1").assert_ok()["runs"].clone();
    assert_eq!(runs[0], report);
    let (code, report, _) = minimize(&vault.url, &root_token, &policy, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["changed"], 0, "a rerun changes nothing: {report}");

    // A token without retention:run: refused, non-zero, and says why.
    let reader = dir.path().join("reader-token");
    std::fs::write(&reader, scoped_token(&client, "reader", &["users:read"])).unwrap();
    let (code, report, stderr) = minimize(&vault.url, &reader, &policy, &[]);
    assert_ne!(code, 0, "printed {report}");
    assert!(stderr.contains("403") || stderr.to_lowercase().contains("refused"), "{stderr}");
    // A wrong token, an unreachable vault, a bad policy file, a missing token file.
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "WRONG").unwrap();
    let (code, _, stderr) = minimize(&vault.url, &wrong, &policy, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("401") || stderr.to_lowercase().contains("refused"), "{stderr}");
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, _, stderr) = minimize(&format!("http://{unused}"), &root_token, &policy, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot reach"), "{stderr}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "metadata: {name: x}\nspec:\n  rules:\n  - {name: r, match: {}, action: dropFields}\n")
        .unwrap();
    let (code, _, stderr) = minimize(&vault.url, &root_token, &bad, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("needs fields"), "{stderr}");
    // A policy only the vault can judge (app names are checked there): refused with 400.
    let bad_app = dir.path().join("bad-app.json");
    let document = json!({"metadata": {"name": "bad-app", "namespace": "shop"},
                          "spec": {"rules": [{"name": "r", "match": {"app": "Bad App!"}, "action": "deleteApp"}]}});
    std::fs::write(&bad_app, document.to_string()).unwrap();
    let (code, _, stderr) = minimize(&vault.url, &root_token, &bad_app, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("400"), "{stderr}");
    let (code, _, stderr) = minimize(&vault.url, &dir.path().join("absent"), &policy, &[]);
    assert_ne!(code, 0);
    assert!(!stderr.is_empty());
    // None of the failures ran anything.
    assert_eq!(
        client.get("/v1/sys/retention/runs?policy=shop/drop-phone").assert_ok()["runs"].as_array().unwrap().len(),
        3
    );
    assert!(client.get("/v1/sys/retention/runs?policy=x").assert_ok()["runs"].as_array().unwrap().is_empty());
    assert_eq!(client.get("/v1/sys/retention/runs").assert_ok()["runs"].as_array().unwrap().len(), 3);

    // A JSON policy file, without a namespace, works the same way.
    let json_policy = dir.path().join("policy.json");
    let document = json!({"metadata": {"name": "trial"}, "spec": {"rules": [
        {"name": "forget", "match": {"hasFields": ["phone"]}, "action": "delete"}]}});
    std::fs::write(&json_policy, document.to_string()).unwrap();
    let phoned = client.create_user(json!({"login": "m3", "phone": "07700900061"}));
    let (code, report, stderr) = minimize(&vault.url, &root_token, &json_policy, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["policy"], "trial", "{report}");
    assert_eq!(report["changed"], 1);
    assert_eq!(profile(&client, &phoned), json!({}));
    assert_eq!(profile(&client, &without), json!({"login": "m2"}));
}

#[test]
fn an_expiration_started_by_a_rule_ends_in_the_sweeper() {
    let vault = Vault::demo_with(&["--expiration-sweep-secs", "1"]);
    let client = vault.demo_client();
    let kept = client.create_user(json!({"login": "kept"}));
    let lapsed = client.create_user(json!({"login": "lapsed", "lapsed": true}));
    let spec = json!({"rules": [{
        "name": "lapse", "match": {"hasFields": ["lapsed"]}, "action": "startExpiration", "expiration": "1s",
    }]});
    assert_eq!(rule_counts(&run_ok(&client, "crm/lapse", spec)), [(1, 1, 0)]);
    // The kept subject's expiration ends after the lapsed one's: the sweep that forgets
    // the lapsed subject has seen the kept one due as well (and it retained its data).
    let exptoken = client.post(&format!("/v1/exp/start/token/{kept}"), json!({"expiration": "1s"})).assert_ok()
        ["exptoken"]
        .as_str()
        .unwrap()
        .to_string();
    client.with_token(None).get(&format!("/v1/exp/retain/{exptoken}")).assert_ok();
    support::cluster::poll("the sweeper to forget the lapsed subject", std::time::Duration::from_secs(30), || {
        (profile(&client, &lapsed) == json!({})).then_some(())
    });
    let swept = events(&client, &lapsed, "expiration-delete");
    assert_eq!(swept.len(), 1, "{swept:#?}");
    assert_eq!(swept[0]["actor"], "system", "{}", swept[0]);
    assert_eq!(swept[0]["result"], "ok", "{}", swept[0]);
    assert_eq!(events(&client, &lapsed, "retention-start-expiration").len(), 1);
    assert!(events(&client, &kept, "expiration-delete").is_empty());
    assert_eq!(client.get(&format!("/v1/exp/status/token/{lapsed}")).assert_ok()["expstatus"], "expired");
    assert_eq!(profile(&client, &kept), json!({"login": "kept"}));
}

#[test]
fn a_run_alongside_concurrent_updates_loses_no_update_and_a_rerun_finishes_the_rest() {
    const SUBJECTS: usize = 400;
    const WRITERS: usize = 4;
    let vault = Vault::demo();
    let client = vault.demo_client();
    let tokens: Vec<String> = (0..SUBJECTS)
        .map(|n| client.create_user(json!({"login": format!("c{n}"), "phone": format!("+4477009{n:05}")})))
        .collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each writer owns every WRITERS-th subject and keeps bumping its note until the run
    // has finished; it remembers the last note the vault acknowledged for each subject.
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (client, done) = (client.clone(), std::sync::Arc::clone(&done));
            let mine: Vec<(usize, String)> =
                tokens.iter().cloned().enumerate().filter(|(n, _)| n % WRITERS == writer).collect();
            std::thread::spawn(move || {
                let mut acknowledged = vec![None; mine.len()];
                let mut round = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || round == 0 {
                    round += 1;
                    for (i, (_, token)) in mine.iter().enumerate() {
                        let reply = client.put(&format!("/v1/user/token/{token}"), json!({"note": round}));
                        match reply.status {
                            200 => acknowledged[i] = Some(round),
                            409 => reply.assert_error(409),
                            other => panic!("update answered {other}: {}", reply.body),
                        }
                    }
                }
                mine.into_iter().map(|(n, _)| n).zip(acknowledged).collect::<Vec<_>>()
            })
        })
        .collect();
    let first = run_ok(&client, "shop/drop-phone", drop_phone("0s"));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut notes = vec![None; SUBJECTS];
    for writer in writers {
        for (n, note) in writer.join().unwrap() {
            notes[n] = note;
        }
    }
    eprintln!("run alongside updates: {first}");
    let (matched, changed, skipped) = rule_counts(&first)[0];
    assert!(matched <= SUBJECTS as u64 && changed + skipped <= matched, "{first}");

    // The rerun changes what the first run skipped or did not see; then nothing is left.
    let rerun = run_ok(&client, "shop/drop-phone", drop_phone("0s"));
    eprintln!("rerun: {rerun}");
    assert_eq!(rule_counts(&rerun)[0].2, 0, "nothing else is writing now: {rerun}");
    assert_eq!(rule_counts(&run_ok(&client, "shop/drop-phone", drop_phone("0s"))), [(0, 0, 0)]);
    for (n, token) in tokens.iter().enumerate() {
        let mut want = json!({"login": format!("c{n}")});
        if let Some(note) = notes[n] {
            want["note"] = json!(note);
        }
        assert_eq!(
            profile(&client, token),
            want,
            "subject {n}: the phone is gone and the last acknowledged note stays"
        );
        let drops: Vec<Value> =
            events(&client, token, "retention-drop-fields").into_iter().filter(|row| row["result"] == "ok").collect();
        assert_eq!(drops.len(), 1, "subject {n}: {drops:#?}");
    }
}
