//! Local clusters: the files every node shares ([`SharedFiles`]: one SoftHSM token, the
//! root token, the peer secret, optionally the API's TLS certificate), each node's `vaultd serve` command, and forming running,
//! uninitialised nodes into a cluster as `hack/cluster.sh` documents it:
//! `POST /v1/sys/cluster/init` on the first node, then every other node added through it as
//! a learner and promoted once it has caught up, one at a time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::node::{serve_command, NodeAddress};
use crate::softhsm;
use crate::tls::{self, ApiTls};

/// How long a learner may take to catch up before promoting it gives up.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between promote attempts while the learner is not caught up.
const PROMOTE_RETRY: Duration = Duration::from_millis(50);
/// An admin request not answered within this fails (vaultd gives up on a proposal after 5 s).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What the nodes of a local cluster share, as files in one directory: a throwaway SoftHSM
/// token (every node uses the one KEK, as the pods of a real cluster share one HSM
/// partition), the root token and the peer secret (readable by their owner only), and,
/// when the API speaks HTTPS, its CA and the certificate every node serves (all on
/// 127.0.0.1).
pub struct SharedFiles {
    /// `SOFTHSM2_CONF` and the `VAULTD_HSM_*` variables.
    pub hsm_env: Vec<(String, String)>,
    pub token: String,
    pub token_file: PathBuf,
    pub secret_file: PathBuf,
    pub api_tls: Option<ApiTls>,
}

/// How admin requests reach a node's API: with the root token, and over HTTPS trusting
/// only `ca_pem` when the API speaks TLS.
#[derive(Clone)]
pub struct Admin {
    pub token: String,
    pub ca_pem: Option<String>,
}

impl Admin {
    /// Plain HTTP with `token`.
    pub fn new(token: &str) -> Self {
        Admin { token: token.to_string(), ca_pem: None }
    }

    fn client(&self) -> anyhow::Result<reqwest::blocking::Client> {
        match &self.ca_pem {
            Some(ca) => tls::https_client(ca, None, ADMIN_TIMEOUT),
            None => Ok(reqwest::blocking::Client::builder().timeout(ADMIN_TIMEOUT).build()?),
        }
    }
}

impl SharedFiles {
    /// Makes them in `dir`: the HSM token in `dir/hsm` by `softhsm_script` (the project's
    /// [`softhsm::script`]), and `token` as the root token, or a random one.
    pub fn create(dir: &Path, softhsm_script: &Path, token: Option<&str>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let hsm_env = softhsm::token_environment(softhsm_script, &dir.join("hsm"))?;
        let token = match token {
            Some(token) => token.to_string(),
            None => random_hex(24)?,
        };
        let token_file = dir.join("root-token");
        private_file(&token_file)?.write_all(token.as_bytes())?;
        let secret_file = dir.join("peer-secret");
        private_file(&secret_file)?.write_all(random_hex(24)?.as_bytes())?;
        Ok(SharedFiles { hsm_env, token, token_file, secret_file, api_tls: None })
    }

    /// The same, with a CA and an API certificate for 127.0.0.1 in `dir`: every node serves
    /// HTTPS (their addresses need `tls` set, so that their URLs say `https://`).
    pub fn with_api_tls(mut self, dir: &Path) -> anyhow::Result<Self> {
        self.api_tls = Some(ApiTls::create(dir)?);
        Ok(self)
    }

    /// How to make admin requests to these nodes.
    pub fn admin(&self) -> Admin {
        Admin { token: self.token.clone(), ca_pem: self.api_tls.as_ref().map(|tls| tls.ca.pem()) }
    }

    /// The `vaultd serve` command of the node at `address` with its data in `data_dir`;
    /// the first node to start (`creates_key`) creates the KEK in the token.
    pub fn serve_command(
        &self,
        binary: &Path,
        address: &NodeAddress,
        data_dir: &Path,
        creates_key: bool,
        extra: &[String],
    ) -> Command {
        let mut flags = address.flags(&self.secret_file);
        if creates_key {
            flags.push("--hsm-create-key".to_string());
        }
        if let Some(tls) = &self.api_tls {
            flags.extend(tls.flags());
        }
        flags.extend(extra.iter().cloned());
        serve_command(binary, self.hsm_env.iter().cloned(), data_dir, &self.token_file, &flags)
    }
}

/// `bytes` random bytes from the kernel, hex-encoded: tokens and secrets for test vaults.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new file only its owner may read or write.
pub fn private_file(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// One admin request with the root token: the status and the body (JSON, or null).
pub fn admin(admin: &Admin, url: &str, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
    let client = admin.client()?;
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut request = client.request(method.clone(), format!("{url}{path}")).header("X-Bunker-Token", &admin.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().with_context(|| format!("{method} {path} on {url}"))?;
    let status = response.status().as_u16();
    let text = response.text()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// An admin request that must answer 200; its JSON body.
fn admin_ok(via: &Admin, url: &str, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let (status, answer) = admin(via, url, method, path, body)?;
    if status != 200 {
        bail!("{method} {path} on {url}: HTTP {status}: {answer}");
    }
    Ok(answer)
}

/// The `id` of a `MemberAdded` answer.
pub fn id_of(answer: &Value) -> anyhow::Result<u64> {
    answer["id"].as_u64().with_context(|| format!("no node id in {answer}"))
}

/// `POST /v1/sys/cluster/init` on the node at `url`; its node id.
pub fn init(admin: &Admin, url: &str) -> anyhow::Result<u64> {
    id_of(&admin_ok(admin, url, "POST", "/v1/sys/cluster/init", Some(json!({})))?)
}

/// Adds the node at `node` as a learner through the member at `via` (with `replace`, in
/// place of a member at the same address), waits until it has caught up, and promotes it.
/// Returns its new node id.
pub fn join(admin: &Admin, via: &str, node: &NodeAddress, replace: bool) -> anyhow::Result<u64> {
    let body = json!({"raftAddress": node.raft_address(), "apiAddress": node.url(), "replace": replace});
    let id = id_of(&admin_ok(admin, via, "POST", "/v1/sys/cluster/learners", Some(body))?)
        .with_context(|| format!("cannot add {} as a learner", node.url()))?;
    let path = format!("/v1/sys/cluster/members/{id}/promote");
    let deadline = Instant::now() + PROMOTE_TIMEOUT;
    loop {
        let (status, answer) = self::admin(admin, via, "POST", &path, Some(json!({})))?;
        match status {
            200 => return Ok(id),
            // Not caught up yet, or no leader for the moment.
            409 | 503 if Instant::now() < deadline => std::thread::sleep(PROMOTE_RETRY),
            409 | 503 => bail!("node {id} was not caught up within {PROMOTE_TIMEOUT:?}: {answer}"),
            _ => bail!("promoting node {id}: HTTP {status}: {answer}"),
        }
    }
}

/// Forms running, uninitialised nodes into a cluster of voters: `init` on the first, the
/// others joined through it. Their node ids, in order.
pub fn form(admin: &Admin, nodes: &[NodeAddress]) -> anyhow::Result<Vec<u64>> {
    let (first, others) = nodes.split_first().context("no nodes to form a cluster of")?;
    let mut ids = vec![init(admin, &first.url())?];
    for node in others {
        ids.push(join(admin, &first.url(), node, false)?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_enough_for_vaultd() {
        let token = random_hex(16).unwrap();
        assert_eq!(token.len(), 32);
        assert_ne!(token, random_hex(16).unwrap());
    }

    #[test]
    fn reads_member_ids() {
        assert_eq!(id_of(&json!({"status": "ok", "id": 2})).unwrap(), 2);
        assert!(id_of(&json!({"status": "ok"})).is_err());
    }
}
