//! `/v1/sys/cluster`: membership of the Raft cluster (`cluster:admin`). The bodies are the
//! shared `strongroom_admin_api::cluster` types the operator also uses.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use strongroom_admin_api::cluster::AddLearner;

use super::body::Body;
use super::{ok, ok_body};
use crate::auth::{Caller, Scope};
use crate::cluster::{AdminAction, AdminAnswer, AdminRequest};
use crate::error::{VaultError, VaultResult};
use crate::vault::Vault;

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(default)]
    local: bool,
}

/// The leader's view of the cluster (this node's own with `?local=true`).
pub async fn status(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let query: StatusQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| VaultError::bad_request("local must be true or false"))?;
    let status = if query.local {
        vault.cluster().local_status()
    } else {
        match admin(&vault, &caller, AdminAction::Status).await? {
            AdminAnswer::Status(status) => status,
            _ => return Err(VaultError::Unavailable("unexpected answer from the leader")),
        }
    };
    ok_body(&status)
}

/// Bootstraps a one-voter cluster on this uninitialised node.
pub async fn init(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let added = vault.init_cluster().await?;
    ok_body(&added)
}

pub async fn add_learner(vault: web::Data<Vault>, caller: Caller, body: Body) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let request: AddLearner = body.parse()?;
    match admin(&vault, &caller, AdminAction::AddLearner(request)).await? {
        AdminAnswer::Added(added) => ok_body(&added),
        _ => Err(VaultError::Unavailable("unexpected answer from the leader")),
    }
}

pub async fn promote(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let id = node_id(&path)?;
    admin(&vault, &caller, AdminAction::Promote(id)).await?;
    Ok(ok(json!({"id": id, "voter": true})))
}

pub async fn remove(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let id = node_id(&path)?;
    admin(&vault, &caller, AdminAction::Remove(id)).await?;
    Ok(ok(json!({"id": id, "removed": true})))
}

async fn admin(vault: &Vault, caller: &Caller, action: AdminAction) -> VaultResult<AdminAnswer> {
    let request = AdminRequest { actor: caller.actor.clone(), action };
    Ok(vault.cluster().admin(request).await?)
}

fn node_id(text: &str) -> VaultResult<u64> {
    text.parse().map_err(|_| VaultError::bad_request("node id must be a positive integer"))
}
