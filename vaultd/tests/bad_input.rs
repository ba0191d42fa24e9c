//! The bad-input catalogue against a real `vaultd demo`: oversized, deeply nested and
//! wrongly typed bodies, patch bombs, invalid UTF-8, huge headers and slow bodies. Every
//! case is refused with a 4xx (a JSON error wherever the request reaches the API), nothing
//! half-applied stays behind, the node keeps serving, and its memory stays bounded.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::{Client, Reply, Vault};

/// The node's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib(vault: &Vault) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", vault.child.id())).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// A 4xx with the API's JSON error.
fn refused(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert_eq!(reply.body["status"], "error", "{what}: {}", reply.body);
    assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {}", reply.body);
}

fn nested(depth: usize) -> String {
    format!("{{\"login\":\"deep\",\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth))
}

/// One request written by hand, and the answer's status line and body (read to the end).
fn by_hand(vault: &Vault, head: &str, body: &[u8]) -> (String, String) {
    let address = vault.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn every_bad_input_gets_a_4xx_and_the_node_stays_small_and_serving() {
    let vault = Vault::demo_with(&["--max-record-bytes=262144"]);
    let client = vault.demo_client();
    let raw = |method: &str, path: &str, body: Vec<u8>| {
        client.send(client.request(method, path).header("Content-Type", "application/json").body(body))
    };
    let token = client.create_user(json!({"login": "ann", "first": "Ann", "bio": "x".repeat(1000)}));
    let user = "/v1/user/login/ann";
    let before = client.get(user).assert_ok()["data"].clone();
    client.post("/v1/userapp/login/ann/shop", json!({"basket": 1})).assert_ok();

    // Oversized: a body over --max-body-bytes, and records over --max-record-bytes.
    refused(&raw("POST", "/v1/user", vec![b' '; 2 * 1024 * 1024]), 413, "2 MiB body");
    let big = "y".repeat(300 * 1024);
    refused(&client.post("/v1/user", json!({"login": "big", "bio": big})), 413, "300 KiB profile");
    refused(&client.put(user, json!({"bio": big})), 413, "merge to a 300 KiB profile");
    refused(&client.post("/v1/userapp/login/ann/crm", json!({"notes": big})), 413, "300 KiB app record");
    refused(&client.put("/v1/userapp/login/ann/shop", json!({"notes": big})), 413, "merge to a 300 KiB app record");
    let session = "/v1/session/7f4e1b2c-2d1e-4c8a-9a53-0f1e2d3c4b5a";
    refused(&client.post(session, json!({"login": "ann", "notes": big})), 413, "300 KiB session");

    // Deeply nested: past serde's recursion limit, and past the vault's own.
    refused(&raw("POST", "/v1/user", nested(5000).into_bytes()), 400, "5000 levels");
    refused(&raw("POST", "/v1/user", nested(40).into_bytes()), 400, "40 levels");
    refused(&raw("PUT", user, format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40)).into_bytes()), 400, "merge");

    // Patch bombs: each copy of the whole document into itself doubles it; 18 of them
    // grew a profile to hundreds of MB before there were bounds.
    let bomb: Vec<Value> = (0..18).map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")})).collect();
    refused(&client.put(user, Value::Array(bomb)), 413, "patch bomb");
    let app_bomb: Vec<Value> = (0..18).map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")})).collect();
    refused(&client.put("/v1/userapp/login/ann/shop", Value::Array(app_bomb)), 413, "app patch bomb");
    let deep_bomb: Vec<Value> = (0..40).map(|_| json!({"op": "copy", "from": "", "path": "/first"})).collect();
    refused(&client.put(user, Value::Array(deep_bomb)), 400, "a patch nesting the profile in itself");
    let long: Vec<Value> = (0..101).map(|i| json!({"op": "add", "path": format!("/f{i}"), "value": i})).collect();
    refused(&client.put(user, Value::Array(long)), 400, "101 patch operations");

    // Wrong types.
    refused(&client.post("/v1/user", json!([1, 2])), 400, "an array as a profile");
    refused(&client.post("/v1/user", json!("text")), 400, "a string as a profile");
    refused(&client.put(user, json!("text")), 400, "a string as a change");
    refused(&client.put(user, json!([{"op": "move"}])), 400, "a malformed patch");
    refused(&client.post("/v1/sys/tokens", json!({"name": "t", "scopes": 5})), 400, "scopes as a number");
    refused(&client.post("/v1/sys/tokens", json!({"name": ["t"], "scopes": ["users:read"]})), 400, "name as a list");
    refused(&client.post(session, json!(7)), 400, "a number as a session");

    // Invalid UTF-8, as JSON and as a form.
    refused(&raw("POST", "/v1/user", b"{\"login\":\"\xff\xfe\"}".to_vec()), 400, "invalid UTF-8 JSON");
    let form = client.send(
        client
            .request("POST", "/v1/user")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(b"login=%FF%FE&first=\xff".to_vec()),
    );
    refused(&form, 400, "invalid UTF-8 form");

    // Nothing of the above stayed behind.
    assert_eq!(client.get(user).assert_ok()["data"], before);
    assert_eq!(client.get("/v1/userapp/login/ann/shop").assert_ok()["data"], json!({"basket": 1}));
    client.get("/v1/user/login/big").assert_error(404);
    client.get(session).assert_error(404);

    // A head larger than the server reads is refused before it reaches the API (so
    // without the API's JSON), and the node goes on serving.
    let huge = format!(
        "GET /v1/user/login/ann HTTP/1.1\r\nHost: x\r\nX-Bunker-Token: DEMO\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "z".repeat(256 * 1024)
    );
    let (status, _) = by_hand(&vault, &huge, b"");
    assert!(status.starts_with("HTTP/1.1 4"), "huge header: {status}");

    // A body that never finishes is given up on, with the JSON error.
    let slow = "POST /v1/user HTTP/1.1\r\nHost: x\r\nX-Bunker-Token: DEMO\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\nConnection: close\r\n\r\n";
    let (status, body) = by_hand(&vault, slow, b"{\"login\":");
    assert!(status.starts_with("HTTP/1.1 408"), "slow body: {status} {body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("slow body: not JSON: {body}"));
    assert_eq!(body["status"], "error");

    assert_eq!(client.get(&format!("/v1/user/token/{token}")).assert_ok()["data"], before);
    client.create_user(json!({"login": "after"}));
    let peak = peak_rss_mib(&vault);
    assert!(peak < 256, "the node's memory peaked at {peak} MiB");
}

#[test]
fn a_subject_cannot_file_a_patch_bomb_as_a_request() {
    let vault = Vault::demo();
    let root = vault.demo_client();
    let token = root.create_user(json!({"login": "bo", "bio": "x".repeat(1000)}));
    let own: Client = support::subject_client(&root, &token);
    let bomb: Vec<Value> = (0..18).map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")})).collect();
    refused(&own.put("/v1/user/login/bo", Value::Array(bomb)), 413, "filed patch bomb");
    let dpo = root.with_token(Some(&support::scoped_token(&root, "dpo", &["requests:admin"])));
    assert_eq!(dpo.get("/v1/requests?status=open").assert_ok()["total"], 0);
}
