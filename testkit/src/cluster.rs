//! Forming running, uninitialised `vaultd serve` nodes into a cluster, as `hack/cluster.sh`
//! documents it: `POST /v1/sys/cluster/init` on the first node, then every other node added
//! through it as a learner and promoted once it has caught up, one at a time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::node::NodeAddress;

/// How long a learner may take to catch up before promoting it gives up.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between promote attempts while the learner is not caught up.
const PROMOTE_RETRY: Duration = Duration::from_millis(50);
/// An admin request not answered within this fails (vaultd gives up on a proposal after 5 s).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// One admin request with the root token: the status and the body (JSON, or null).
pub fn admin(url: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
    let client = reqwest::blocking::Client::builder().timeout(ADMIN_TIMEOUT).build()?;
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut request = client.request(method.clone(), format!("{url}{path}")).header("X-Bunker-Token", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().with_context(|| format!("{method} {path} on {url}"))?;
    let status = response.status().as_u16();
    let text = response.text()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// An admin request that must answer 200; its JSON body.
fn admin_ok(url: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let (status, answer) = admin(url, token, method, path, body)?;
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
pub fn init(url: &str, token: &str) -> anyhow::Result<u64> {
    id_of(&admin_ok(url, token, "POST", "/v1/sys/cluster/init", Some(json!({})))?)
}

/// Adds the node at `node` as a learner through the member at `via` (with `replace`, in
/// place of a member at the same address), waits until it has caught up, and promotes it.
/// Returns its new node id.
pub fn join(via: &str, token: &str, node: &NodeAddress, replace: bool) -> anyhow::Result<u64> {
    let body = json!({"raftAddress": node.raft_address(), "apiAddress": node.url(), "replace": replace});
    let id = id_of(&admin_ok(via, token, "POST", "/v1/sys/cluster/learners", Some(body))?)
        .with_context(|| format!("cannot add {} as a learner", node.url()))?;
    let path = format!("/v1/sys/cluster/members/{id}/promote");
    let deadline = Instant::now() + PROMOTE_TIMEOUT;
    loop {
        let (status, answer) = admin(via, token, "POST", &path, Some(json!({})))?;
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
pub fn form(token: &str, nodes: &[NodeAddress]) -> anyhow::Result<Vec<u64>> {
    let (first, others) = nodes.split_first().context("no nodes to form a cluster of")?;
    let mut ids = vec![init(&first.url(), token)?];
    for node in others {
        ids.push(join(&first.url(), token, node, false)?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_member_ids() {
        assert_eq!(id_of(&json!({"status": "ok", "id": 2})).unwrap(), 2);
        assert!(id_of(&json!({"status": "ok"})).is_err());
    }
}
