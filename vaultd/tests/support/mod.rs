//! Test support: real `vaultd` processes on 127.0.0.1 ports, throwaway SoftHSM tokens
//! (strongroom-testkit's, made by `hack/softhsm-token.sh`), and a small HTTP client.
#![allow(dead_code)]

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tempfile::TempDir;

use strongroom_testkit::tls::Leaf;
use strongroom_testkit::{process, Log};

pub use strongroom_testkit::SoftHsm;

pub const ROOT_TOKEN: &str = "test-root-token-0123456789";

/// Scopes that together hold everything: an administrator token's.
pub const EVERY_SCOPE: [&str; 9] = [
    "users:*",
    "apps:*:*",
    "audit:read",
    "tokens:admin",
    "retention:run",
    "cluster:admin",
    "consent:admin",
    "requests:admin",
    "backup:read",
];

/// How to start a vault.
pub enum Mode<'a> {
    Demo,
    Hsm { hsm: &'a SoftHsm, extra: Vec<String> },
}

/// A running `vaultd`; killed when dropped. Keeps what it logged.
pub struct Vault {
    pub child: Child,
    pub url: String,
    /// The peer (Raft) port's address, on cluster nodes.
    pub peer: Option<String>,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
    _owned_dir: Option<TempDir>,
}

pub fn vaultd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vaultd"))
}

/// The `serve` command line for a SoftHSM-backed vault in `data_dir`.
pub fn serve_command(hsm: &SoftHsm, data_dir: &Path, extra: &[String]) -> Command {
    let token_file = data_dir.with_extension("root-token");
    std::fs::write(&token_file, ROOT_TOKEN).unwrap();
    let mut command = strongroom_testkit::serve_command(
        Path::new(env!("CARGO_BIN_EXE_vaultd")),
        &hsm.env,
        data_dir,
        &token_file,
        extra,
    );
    command.env("RUST_LOG", "debug");
    command
}

impl Vault {
    pub fn demo() -> Self {
        Self::demo_with(&[])
    }

    pub fn demo_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = vaultd();
        command.args(["demo", "--port", "0", "--data-dir"]).arg(dir.path()).args(extra).env("RUST_LOG", "debug");
        let mut vault = Self::spawn(command, dir.path().to_path_buf());
        vault._owned_dir = Some(dir);
        vault
    }

    /// Starts a SoftHSM-backed vault on `data_dir` (which the caller keeps, to restart).
    pub fn hsm(hsm: &SoftHsm, data_dir: &Path, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(serve_command(hsm, data_dir, &extra), data_dir.to_path_buf())
    }

    /// Starts an arbitrary `vaultd` command line that ends up listening.
    pub fn spawn_command(command: Command) -> Self {
        Self::spawn(command, PathBuf::new())
    }

    fn spawn(command: Command, data_dir: PathBuf) -> Self {
        let log = Arc::new(Mutex::new(String::new()));
        let started = strongroom_testkit::spawn(
            command,
            process::VAULTD_LISTENING,
            &Log::Memory(Arc::clone(&log)),
            process::STARTUP_TIMEOUT,
        )
        .unwrap_or_else(|error| panic!("vaultd did not start: {error:#}"));
        let peer = started.vaultd_peer();
        Vault { child: started.child, url: started.address, peer, data_dir, log, _owned_dir: None }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, ROOT_TOKEN)
    }

    pub fn demo_client(&self) -> Client {
        Client::new(&self.url, "DEMO")
    }

    /// Stops the process (SIGKILL: durability must not depend on a clean shutdown).
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log.lock().unwrap().clone()
    }

    /// Stops the process cleanly (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) -> String {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "vaultd exited with {exit} after SIGTERM:\n{}", self.log());
        self.log.lock().unwrap().clone()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test of one `serve` vault needs: a throwaway SoftHSM token, a scratch directory
/// (removed when dropped) and the path of the vault's data directory in it.
pub fn serve_scratch() -> (SoftHsm, TempDir, PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("vault");
    (SoftHsm::new(), scratch, data_dir)
}

/// Runs a command that is expected to fail at startup; returns its status and stderr.
pub fn run_to_exit(mut command: Command) -> (ExitStatus, String) {
    let output = command.stdout(Stdio::null()).output().unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A blocking JSON client with a fixed token.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// The value of the sample `series` (name and labels, as printed) in a `/metrics` scrape.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Client {
    /// The node's `/metrics` text.
    pub fn metrics(&self) -> String {
        self.get("/metrics").body.as_str().unwrap_or_default().to_string()
    }

    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
        Client { base: base.to_string(), token: Some(token.to_string()), http }
    }

    /// A client of an `https://` vault that trusts only `ca_pem` and, with `identity`,
    /// presents that client certificate.
    pub fn https(base: &str, token: &str, ca_pem: &str, identity: Option<&Leaf>) -> Self {
        let http = strongroom_testkit::tls::https_client(ca_pem, identity, CLIENT_TIMEOUT).unwrap();
        Client { base: base.to_string(), token: Some(token.to_string()), http }
    }

    pub fn with_token(&self, token: Option<&str>) -> Self {
        Client { token: token.map(String::from), ..self.clone() }
    }

    /// The same token, sent to another node.
    pub fn at(&self, base: &str) -> Self {
        Client { base: base.to_string(), ..self.clone() }
    }

    pub fn request(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let builder = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(token) => builder.header("X-Bunker-Token", token),
            None => builder,
        }
    }

    pub fn send(&self, builder: reqwest::blocking::RequestBuilder) -> Reply {
        self.try_send(builder).unwrap()
    }

    /// Like `send`, but a transport failure (refused connection, timeout) is an `Err`.
    pub fn try_send(&self, builder: reqwest::blocking::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let response = builder.send()?;
        let status = response.status().as_u16();
        let text = response.text()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send(self.request("GET", path))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.send(self.request("DELETE", path))
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.request("POST", path).json(&body))
    }

    pub fn put(&self, path: &str, body: Value) -> Reply {
        self.send(self.request("PUT", path).json(&body))
    }

    /// Creates a user and returns its token.
    pub fn create_user(&self, profile: Value) -> String {
        let reply = self.post("/v1/user", profile);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["token"].as_str().unwrap().to_string()
    }
}

impl Reply {
    /// Asserts an error envelope with this status code.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "unexpected reply {}", self.body);
        assert_eq!(self.body["status"], "error", "{}", self.body);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
    }

    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, 200, "unexpected reply {}", self.body);
        assert_eq!(self.body["status"], "ok", "{}", self.body);
        &self.body
    }
}

/// Runs `vaultd minimize` against `vault_url` with `extra` flags: its exit code, its
/// report (JSON, or the raw output) and its stderr.
pub fn minimize(vault_url: &str, token_file: &Path, policy_file: &Path, extra: &[&str]) -> (i32, Value, String) {
    let output = vaultd()
        .arg("minimize")
        .arg("--vault")
        .arg(vault_url)
        .arg("--token-file")
        .arg(token_file)
        .arg("--policy")
        .arg(policy_file)
        .arg("--timeout-secs")
        .arg("60")
        .args(extra)
        .env_remove("VAULTD_VAULT_URL")
        .env_remove("VAULTD_TOKEN_FILE")
        .env_remove("VAULTD_CA_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::String(stdout));
    (output.status.code().unwrap_or(-1), report, stderr)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

/// Whether `needle` occurs in any file under `dir` (as UTF-8 or UTF-16 bytes).
pub fn occurs_in_files(dir: &Path, needle: &str) -> Option<PathBuf> {
    let utf16: Vec<u8> = needle.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    files_under(dir).into_iter().find(|file| {
        let bytes = std::fs::read(file).unwrap();
        contains(&bytes, needle.as_bytes()) || contains(&bytes, &utf16)
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Answers and the audit trail, as the tests read them
// ---------------------------------------------------------------------------------------

/// An object's keys, sorted.
pub fn keys(value: &Value) -> Vec<&str> {
    let object = value.as_object().unwrap_or_else(|| panic!("not an object: {value}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// A subject's audit events, newest first.
pub fn audit_rows(client: &Client, token: &str) -> Vec<Value> {
    let reply = client.get(&format!("/v1/audit/list/{token}?limit=1000"));
    reply.assert_ok()["rows"].as_array().unwrap().clone()
}

/// The newest 1,000 audit events of all, newest first.
pub fn admin_rows(client: &Client) -> Vec<Value> {
    client.get("/v1/audit/admin?limit=1000").assert_ok()["rows"].as_array().unwrap().clone()
}

/// How many audit events there are.
pub fn audit_total(client: &Client) -> u64 {
    client.get("/v1/audit/admin?limit=1").assert_ok()["total"].as_u64().unwrap()
}

/// The events of one operation.
pub fn with_operation<'a>(rows: &'a [Value], operation: &str) -> Vec<&'a Value> {
    rows.iter().filter(|row| row["operation"] == operation).collect()
}

/// Each event's operation, in order.
pub fn operations(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|row| row["operation"].as_str().unwrap()).collect()
}

/// A new access token with `scopes`: its id and its secret.
pub fn access_token(client: &Client, name: &str, scopes: &[&str]) -> (String, String) {
    let reply = client.post("/v1/sys/tokens", json!({"name": name, "scopes": scopes}));
    let body = reply.assert_ok();
    (body["id"].as_str().unwrap().to_string(), body["token"].as_str().unwrap().to_string())
}

/// The secret of a new access token with `scopes`.
pub fn scoped_token(client: &Client, name: &str, scopes: &[&str]) -> String {
    access_token(client, name, scopes).1
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Asserts that none of `secrets` (personal data, credentials) is in `log` or stored in the
/// clear anywhere under `data_dir`; `what` names them in the failure.
pub fn assert_kept_secret<S: AsRef<str>>(secrets: &[S], what: &str, log: &str, data_dir: &Path) {
    for secret in secrets {
        let secret = secret.as_ref();
        assert!(!log.contains(secret), "{what} {secret:?} is in the log");
        let found = occurs_in_files(data_dir, secret);
        assert!(found.is_none(), "{what} {secret:?} is stored in the clear in {found:?}");
    }
}

/// Sends a body as it is, with a content type.
pub fn raw(client: &Client, method: &str, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    client.send(client.request(method, path).header("Content-Type", content_type).body(body.into()))
}

/// The UUID a reply field holds (panics naming the value when it holds none).
pub fn assert_uuid(value: &Value) -> uuid::Uuid {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    uuid::Uuid::parse_str(text).unwrap_or_else(|_| panic!("not a UUID: {value}"))
}

/// (matched, changed, skipped) of each rule of a retention report.
pub fn rule_counts(report: &Value) -> Vec<(u64, u64, u64)> {
    report["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("not a report: {report}"))
        .iter()
        .map(|r| (r["matched"].as_u64().unwrap(), r["changed"].as_u64().unwrap(), r["skipped"].as_u64().unwrap()))
        .collect()
}

/// The audit events of one operation about the subject `token`.
pub fn events(client: &Client, token: &str, operation: &str) -> Vec<Value> {
    audit_rows(client, token).into_iter().filter(|row| row["operation"] == operation).collect()
}

/// A subject's profile, read by its token.
pub fn profile(client: &Client, token: &str) -> Value {
    client.get(&format!("/v1/user/token/{token}")).assert_ok()["data"].clone()
}

/// A client holding a subject token for the subject whose token is `subject`, made with
/// the root client.
pub fn subject_client(root: &Client, subject: &str) -> Client {
    let reply = root.post("/v1/sys/tokens", json!({"name": "self", "subject": subject}));
    root.with_token(reply.assert_ok()["token"].as_str())
}
