//! The server side of the peer port: openraft's messages, and work that other nodes hand
//! to this one (proposals and membership changes for the leader, an id for a new node).
//! Every request must carry the cluster's peer secret; Raft messages must also name this
//! node's id.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::membership::{AdminRequest, AdminResult};
use super::rpc::{self, Refusal};
use super::types::{Raft, TypeConfig};
use super::Cluster;
use crate::store::{decode, encode, Batch};

/// Largest peer message: a batch of entries or a snapshot chunk, with room to spare.
const MAX_PEER_BODY: usize = 256 * 1024 * 1024;

/// Registers the peer routes; the app data must hold the node's `Arc<Cluster>`.
pub fn peer_app(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_PEER_BODY))
        .route(rpc::APPEND, web::post().to(append))
        .route(rpc::VOTE, web::post().to(vote))
        .route(rpc::SNAPSHOT, web::post().to(snapshot))
        .route(rpc::PROPOSE, web::post().to(propose))
        .route(rpc::ADOPT, web::post().to(adopt))
        .route(rpc::READ_INDEX, web::post().to(read_index))
        .route(rpc::ADMIN, web::post().to(admin));
}

type Node = web::Data<Arc<Cluster>>;

/// Why a peer request was turned away before it reached Raft.
struct Rejected(StatusCode, &'static str);

impl Rejected {
    fn response(self) -> HttpResponse {
        HttpResponse::build(self.0).body(self.1)
    }
}

/// Checks the peer secret.
fn admit(cluster: &Cluster, req: &HttpRequest) -> Result<(), Rejected> {
    let secret = req.headers().get(rpc::SECRET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if cluster.peer_secret_matches(secret) {
        Ok(())
    } else {
        Err(Rejected(StatusCode::UNAUTHORIZED, "peer secret missing or wrong"))
    }
}

/// For Raft's own messages: checks the peer secret and that this node is the one
/// addressed, and hands out its Raft instance.
fn admit_raft_message(cluster: &Cluster, req: &HttpRequest) -> Result<Raft, Rejected> {
    admit(cluster, req)?;
    let raft =
        cluster.raft().map_err(|_| Rejected(StatusCode::SERVICE_UNAVAILABLE, "this node has not joined a cluster"))?;
    let target = req.headers().get(rpc::TARGET_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if target != cluster.node_id() {
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

async fn propose(cluster: Node, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    try_or_answer!(admit(&cluster, &req));
    let batch: Batch = try_or_answer!(body(&bytes));
    reply(&cluster.propose_as_leader(batch).await)
}

async fn adopt(cluster: Node, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    try_or_answer!(admit(&cluster, &req));
    let message: rpc::Adopt = try_or_answer!(body(&bytes));
    let result: rpc::AdoptResult = cluster.adopt(message.node_id).await;
    reply(&result)
}

async fn read_index(cluster: Node, req: HttpRequest) -> HttpResponse {
    try_or_answer!(admit(&cluster, &req));
    let result: rpc::ReadIndexResult = cluster.leader_read_index().await;
    reply(&result)
}

async fn admin(cluster: Node, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    try_or_answer!(admit(&cluster, &req));
    let request: AdminRequest = try_or_answer!(body(&bytes));
    let leader = Arc::clone(&cluster);
    // Membership changes call other peers; that runs on the main runtime.
    let result: AdminResult = match cluster.runtime.spawn(async move { leader.admin_as_leader(request).await }).await {
        Ok(result) => result,
        Err(e) => Err(Refusal::Failed(e.to_string()).into()),
    };
    reply(&result)
}
