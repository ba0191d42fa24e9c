//! `/v1/sys/cluster`: membership of the Raft cluster (`cluster:admin`). The bodies are the
//! shared `strongroom_admin_api::cluster` types the operator also uses.

use super::doc;
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

/// `?local=`
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// `true` for the answering node's own view instead of the leader's (400 unless `true` or `false`)
    #[serde(default)]
    local: bool,
}

/// The leader's view of the cluster (this node's own with `?local=true`).
#[utoipa::path(
    get,
    path = "/v1/sys/cluster",
    operation_id = "getClusterStatus",
    tag = "cluster",
    summary = "Cluster status",
    description = r#"Requires scope `cluster:admin`. The leader's view of the cluster: a follower forwards the request to the leader (and answers with its own view when no leader is found in time). With `local=true`, the answering node's own view, without forwarding. Each member's `matchedIndex`, `lag` and `healthy` are the leader's view, null when the answering node is not the leader. `erasures` is the answering node's crypto-shredding progress: forget-me erasures applied but still present in its Raft log or snapshot. 400 when `local` is not a boolean; 503 when the node has not joined a cluster."#,
    extensions(("x-required-scope" = json!("cluster:admin"))),
    params(StatusQuery, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The cluster's state"#,
            body = doc::ClusterStatusReply,
            content_type = "application/json",
            example = json!(
                {
                    "status": "ok",
                    "nodeId": 1,
                    "state": "leader",
                    "leader": 1,
                    "term": 3,
                    "lastLogIndex": 1042,
                    "appliedIndex": 1042,
                    "snapshotIndex": 1000,
                    "purgedIndex": 990,
                    "members": [
                        {
                            "id": 1,
                            "raftAddress": "vault-0.vault-headless:3001",
                            "apiAddress": "http://vault-0.vault-headless:3000",
                            "voter": true,
                            "matchedIndex": 1042,
                            "lag": 0,
                            "healthy": true
                        },
                        {
                            "id": 2,
                            "raftAddress": "vault-1.vault-headless:3001",
                            "apiAddress": "http://vault-1.vault-headless:3000",
                            "voter": true,
                            "matchedIndex": 1042,
                            "lag": 0,
                            "healthy": true
                        },
                        {
                            "id": 4,
                            "raftAddress": "vault-2.vault-headless:3001",
                            "apiAddress": "http://vault-2.vault-headless:3000",
                            "voter": false,
                            "matchedIndex": 1017,
                            "lag": 25,
                            "healthy": true
                        }
                    ],
                    "erasures": {"pending": 1, "oldestPendingSince": 1718000000000_i64, "compactionDeadlineMs": 3600000}
                }
            )
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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
#[utoipa::path(
    post,
    path = "/v1/sys/cluster/init",
    operation_id = "initCluster",
    tag = "cluster",
    summary = "Bootstrap a cluster",
    description = r#"Requires scope `cluster:admin`. Makes this uninitialised node a one-voter cluster, with node id 1; further nodes join through `POST /v1/sys/cluster/learners`. Any request body is ignored. 409 when the node already belongs to a cluster."#,
    extensions(("x-required-scope" = json!("cluster:admin"))),
    params(doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The cluster was bootstrapped; this node's id"#,
            body = doc::MemberAddedReply,
            content_type = "application/json",
            example = json!({"status": "ok", "id": 1})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (
            status = 409,
            description = r#"This node already belongs to a cluster"#,
            body = doc::ErrorReply,
            content_type = "application/json",
            example = json!({"status": "error", "message": "this node already belongs to a cluster"})
        ),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn init(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let added = vault.init_cluster().await?;
    ok_body(&added)
}

#[utoipa::path(
    post,
    path = "/v1/sys/cluster/learners",
    operation_id = "addLearner",
    tag = "cluster",
    summary = "Add a node as a learner",
    description = r#"Requires scope `cluster:admin`. Allocates a node id that was never used before (audited as `node-id-allocate`), hands it to the uninitialised node listening at `raftAddress`, and adds that node as a learner: it replicates the log but does not vote until promoted. Any member accepts the request and forwards it to the leader. 400 for a malformed body or addresses; 409 when another member already has `raftAddress` (unless `replace` is set), or when the node cannot be reached or already belongs to a cluster."#,
    extensions(("x-required-scope" = json!("cluster:admin"))),
    params(doc::Purpose),
    request_body(
        content(
            (
                doc::AddLearner = "application/json",
                example = json!(
                    {
                        "raftAddress": "vault-2.vault-headless:3001",
                        "apiAddress": "http://vault-2.vault-headless:3000",
                        "replace": false
                    }
                )
            )
        )
    ),
    responses(
        (
            status = 200,
            description = r#"The node was added as a learner; its new id"#,
            links(
                (
                    "PromoteMember" = (
                        operation_id = "promoteMember",
                        parameters(("id" = "$response.body#/id")),
                        description = "Make the learner a voter"
                    )
                ),
                (
                    "RemoveMember" = (
                        operation_id = "removeMember",
                        parameters(("id" = "$response.body#/id")),
                        description = "Remove it again"
                    )
                )
            ),
            body = doc::MemberAddedReply,
            content_type = "application/json",
            example = json!({"status": "ok", "id": 4})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (
            status = 409,
            description = r#"Another member has `raftAddress` (and `replace` is not set), or the node at `raftAddress` cannot be reached or already belongs to a cluster"#,
            body = doc::ErrorReply,
            content_type = "application/json",
            example = json!(
                {"status": "error", "message": "raftAddress belongs to member 3; remove it first or set replace"}
            )
        ),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn add_learner(vault: web::Data<Vault>, caller: Caller, body: Body) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let request: AddLearner = body.parse()?;
    match admin(&vault, &caller, AdminAction::AddLearner(request)).await? {
        AdminAnswer::Added(added) => ok_body(&added),
        _ => Err(VaultError::Unavailable("unexpected answer from the leader")),
    }
}

#[utoipa::path(
    post,
    path = "/v1/sys/cluster/members/{id}/promote",
    operation_id = "promoteMember",
    tag = "cluster",
    summary = "Promote a learner to voter",
    description = r#"Requires scope `cluster:admin`. Makes a learner that has caught up with the leader (small `lag`, `healthy`) a voter. Any request body is ignored. 400 when `id` is not an integer; 404 when no member has that id; 409 when the member is already a voter or is still catching up (retry later)."#,
    extensions(("x-required-scope" = json!("cluster:admin"))),
    params(doc::NodePath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The member is now a voter"#,
            body = doc::PromotedReply,
            content_type = "application/json",
            example = json!({"status": "ok", "id": 4, "voter": true})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (
            status = 409,
            description = r#"The member is already a voter, or is still lagging behind the leader"#,
            body = doc::ErrorReply,
            content_type = "application/json",
            example = json!(
                {"status": "error", "message": "learner 4 is 312 entries behind; promote it once it has caught up"}
            )
        ),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn promote(vault: web::Data<Vault>, caller: Caller, path: web::Path<String>) -> VaultResult<HttpResponse> {
    caller.require(&Scope::cluster_admin())?;
    let id = node_id(&path)?;
    admin(&vault, &caller, AdminAction::Promote(id)).await?;
    Ok(ok(json!({"id": id, "voter": true})))
}

#[utoipa::path(
    delete,
    path = "/v1/sys/cluster/members/{id}",
    operation_id = "removeMember",
    tag = "cluster",
    summary = "Remove a member",
    description = r#"Requires scope `cluster:admin`. Removes a voter or a learner from the cluster, e.g. before its node is taken down. Its id is never reused: a node that comes back with a wiped data directory joins again under a new id. 400 when `id` is not an integer; 404 when no member has that id; 409 when it is the last voter."#,
    extensions(("x-required-scope" = json!("cluster:admin"))),
    params(doc::NodePath, doc::Purpose),
    responses(
        (
            status = 200,
            description = r#"The member was removed"#,
            body = doc::RemovedReply,
            content_type = "application/json",
            example = json!({"status": "ok", "id": 4, "removed": true})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (
            status = 409,
            description = r#"The member is the cluster's last voter"#,
            body = doc::ErrorReply,
            content_type = "application/json",
            example = json!({"status": "error", "message": "cannot remove the last voter"})
        ),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
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
