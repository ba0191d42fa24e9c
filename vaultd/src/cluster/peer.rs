//! The server side of the peer port: openraft's messages, and work that other nodes hand
//! to this one (proposals and membership changes for the leader, an id for a new node).
//! Every request is authenticated before its body is read — by the cluster's peer secret,
//! or for an adoption by a proof derived from it — and Raft messages must also name this
//! node's id. Bodies are never compressed, and only the messages that carry log entries
//! or snapshot chunks may be large.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::membership::{AdminRequest, AdminResult};
use super::rpc::{self, Refusal};
use super::types::{NodeId, Raft, TypeConfig};
use super::Cluster;
use crate::store::{decode, encode, Batch};

/// Largest message that carries log entries (appended or proposed): up to 64 entries of
/// up to 512 commands each, so it can be large; only members, who hold the secret, can
/// send one.
const MAX_ENTRIES_BODY: usize = 256 * 1024 * 1024;
/// Largest snapshot message: one chunk and its metadata.
const MAX_SNAPSHOT_BODY: usize = rpc::SNAPSHOT_CHUNK + 1024 * 1024;
/// Largest of every other message (votes, adoptions, read indexes, membership requests).
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Registers the peer routes; the app data must hold the node's `Arc<Cluster>`.
pub fn peer_app(cfg: &mut web::ServiceConfig) {
    let route = |path: &'static str, limit: usize| web::resource(path).app_data(web::PayloadConfig::new(limit));
    cfg.service(
        web::scope("")
            .wrap(from_fn(authenticate))
            .service(route(rpc::APPEND, MAX_ENTRIES_BODY).route(web::post().to(append)))
            .service(route(rpc::PROPOSE, MAX_ENTRIES_BODY).route(web::post().to(propose)))
            .service(route(rpc::SNAPSHOT, MAX_SNAPSHOT_BODY).route(web::post().to(snapshot)))
            .service(route(rpc::VOTE, MAX_CONTROL_BODY).route(web::post().to(vote)))
            .service(route(rpc::ADOPT, MAX_CONTROL_BODY).route(web::post().to(adopt)))
            .service(route(rpc::READ_INDEX, MAX_CONTROL_BODY).route(web::post().to(read_index)))
            .service(route(rpc::ADMIN, MAX_CONTROL_BODY).route(web::post().to(admin))),
    );
}

/// Turns a request away before anything reads its body: a compressed body, or no valid
/// credential. Routing comes after this, so an unknown path is no way around it.
async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let admitted = match req.app_data::<Node>() {
        Some(cluster) => admit(cluster, req.request()),
        None => Err(Rejected(StatusCode::SERVICE_UNAVAILABLE, "the peer port is not ready")),
    };
    match admitted {
        Ok(()) => Ok(next.call(req).await?.map_into_boxed_body()),
        Err(rejected) => Ok(req.into_response(rejected.response())),
    }
}

type Node = web::Data<Arc<Cluster>>;

/// Why a peer request was turned away before it reached Raft.
struct Rejected(StatusCode, &'static str);

impl Rejected {
    fn response(self) -> HttpResponse {
        HttpResponse::build(self.0).body(self.1)
    }
}

/// Checks the body's encoding and the request's credential: the adoption proof for the
/// id it names on `ADOPT`, the peer secret everywhere else.
fn admit(cluster: &Cluster, req: &HttpRequest) -> Result<(), Rejected> {
    let encoding = req.headers().get(header::CONTENT_ENCODING).map(|v| v.as_bytes());
    if encoding.is_some_and(|v| !v.eq_ignore_ascii_case(b"identity")) {
        return Err(Rejected(StatusCode::UNSUPPORTED_MEDIA_TYPE, "peer messages are never compressed"));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let admitted = if req.path() == rpc::ADOPT {
        match (target(req), header(rpc::ADOPT_PROOF_HEADER)) {
            (Some(id), Some(proof)) => cluster.adopt_proof_matches(id, proof),
            _ => false,
        }
    } else {
        cluster.peer_secret_matches(header(rpc::SECRET_HEADER).unwrap_or(""))
    };
    if admitted {
        Ok(())
    } else {
        Err(Rejected(StatusCode::UNAUTHORIZED, "peer credential missing or wrong"))
    }
}

/// The node id a request names in its target header.
fn target(req: &HttpRequest) -> Option<NodeId> {
    req.headers().get(rpc::TARGET_HEADER).and_then(|v| v.to_str().ok()?.parse::<NodeId>().ok())
}

/// For Raft's own messages (already authenticated): checks that this node is the one
/// addressed, and hands out its Raft instance.
fn admit_raft_message(cluster: &Cluster, req: &HttpRequest) -> Result<Raft, Rejected> {
    let raft =
        cluster.raft().map_err(|_| Rejected(StatusCode::SERVICE_UNAVAILABLE, "this node has not joined a cluster"))?;
    if target(req) != cluster.node_id() {
        return Err(Rejected(StatusCode::CONFLICT, "message addressed to another node id"));
    }
    Ok(raft.clone())
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejected> {
    decode(bytes).map_err(|_| Rejected(StatusCode::BAD_REQUEST, "malformed peer message"))
}

fn reply<T: Serialize>(value: &T) -> HttpResponse {
    match encode(value) {
        Ok(bytes) => HttpResponse::Ok().content_type("application/octet-stream").body(bytes),
        Err(_) => HttpResponse::InternalServerError().body("answer cannot be encoded"),
    }
}

macro_rules! try_or_answer {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(rejected) => return rejected.response(),
        }
    };
}

async fn append(cluster: Node, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let raft = try_or_answer!(admit_raft_message(&cluster, &req));
    let message: AppendEntriesRequest<TypeConfig> = try_or_answer!(body(&bytes));
    let room = room_to_store(&cluster);
    if !message.entries.is_empty() {
        try_or_answer!(room);
    }
    reply(&raft.append_entries(message).await)
}

/// A follower whose disk is nearly full refuses entries and snapshots before storing
/// them, rather than meet ENOSPC, which would stop its Raft core; the leader tries again
/// later, and heartbeats still pass. Measured at every append, so that the follower
/// takes entries (and stands for elections) again as soon as space is freed.
fn room_to_store(cluster: &Cluster) -> Result<(), Rejected> {
    cluster.admit_replication().map_err(|_| Rejected(StatusCode::INSUFFICIENT_STORAGE, "this node's disk is full"))
}

async fn vote(cluster: Node, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let raft = try_or_answer!(admit_raft_message(&cluster, &req));
    let message: VoteRequest<u64> = try_or_answer!(body(&bytes));
    reply(&raft.vote(message).await)
}

async fn snapshot(cluster: Node, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let raft = try_or_answer!(admit_raft_message(&cluster, &req));
    let message: InstallSnapshotRequest<TypeConfig> = try_or_answer!(body(&bytes));
    try_or_answer!(room_to_store(&cluster));
    reply(&raft.install_snapshot(message).await)
}

async fn propose(cluster: Node, bytes: web::Bytes) -> HttpResponse {
    let batch: Batch = try_or_answer!(body(&bytes));
    reply(&cluster.propose_as_leader(batch).await)
}

async fn adopt(cluster: Node, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let message: rpc::Adopt = try_or_answer!(body(&bytes));
    // The proof was checked for the id in the header; the body must name the same one.
    if target(&req) != Some(message.node_id) {
        return Rejected(StatusCode::BAD_REQUEST, "the adoption names two ids").response();
    }
    let adopted = cluster.adopt(message.node_id).await;
    let result: rpc::AdoptResult = adopted.map(|()| cluster.adopted_proof(message.node_id, &message.challenge));
    reply(&result)
}

async fn read_index(cluster: Node) -> HttpResponse {
    let result: rpc::ReadIndexResult = cluster.leader_read_index().await;
    reply(&result)
}

async fn admin(cluster: Node, bytes: web::Bytes) -> HttpResponse {
    let request: AdminRequest = try_or_answer!(body(&bytes));
    let leader = Arc::clone(&cluster);
    // Membership changes call other peers; that runs on the main runtime.
    let result: AdminResult = match cluster.runtime.spawn(async move { leader.admin_as_leader(request).await }).await {
        Ok(result) => result,
        Err(e) => Err(Refusal::Failed(e.to_string()).into()),
    };
    reply(&result)
}
