//! The client side of the peer port: openraft's `RaftNetwork` over HTTP, and the calls a
//! node makes to forward work to the leader. Requests carry the cluster's peer secret and,
//! for Raft messages, the id of the node they are meant for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use super::rpc;
use super::types::{NodeId, NodeInfo, TypeConfig};
use crate::store::{decode, encode};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The request never reached the peer (connection refused, unresolvable name).
    #[error("peer unreachable: {0}")]
    Unreachable(reqwest::Error),
    /// The request may or may not have been processed.
    #[error("peer request failed: {0}")]
    Transport(reqwest::Error),
    /// The peer answered with an error status. Its body is not kept: the address may be
    /// anyone's (a node being added is named by the caller), and what it says must not
    /// be passed on.
    #[error("peer refused the request with HTTP {status}")]
    Refused { status: u16 },
    #[error("peer answer cannot be decoded")]
    Decode,
    #[error("request cannot be encoded")]
    Encode,
}

/// Longest answer taken from a member (a leader's receipts for a whole batch).
const MAX_MEMBER_ANSWER: usize = 256 * 1024 * 1024;
/// Longest answer taken from an address named as a new node: a few bytes are expected.
const MAX_ADOPT_ANSWER: usize = 64 * 1024;

/// How an outgoing peer request proves that it comes from a member.
enum Credential<'a> {
    /// The peer secret, for members (and, for Raft messages, the id addressed).
    Secret(Option<NodeId>),
    /// An adoption proof for the id handed out ([`rpc::ADOPT_PROOF_HEADER`]).
    AdoptProof(NodeId, &'a str),
}

/// An HTTP client for the peer port, shared by every outgoing peer call.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    scheme: &'static str,
    secret: Arc<Zeroizing<String>>,
}

impl PeerClient {
    pub fn new(http: reqwest::Client, tls: bool, secret: Zeroizing<String>) -> Self {
        PeerClient { http, scheme: if tls { "https" } else { "http" }, secret: Arc::new(secret) }
    }

    /// A call to a member, with the peer secret; `target` names the node a Raft message
    /// is meant for.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        target: Option<NodeId>,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        self.send(address, path, Credential::Secret(target), body, timeout, MAX_MEMBER_ANSWER).await
    }

    /// Hands `id` to the node at `address`, which is not a member yet: the request
    /// carries the adoption proof and a challenge, never the secret.
    pub async fn adopt(
        &self,
        address: &str,
        id: NodeId,
        proof: &str,
        challenge: [u8; 32],
        timeout: Duration,
    ) -> Result<rpc::AdoptResult, PeerError> {
        let body = rpc::Adopt { node_id: id, challenge };
        self.send(address, rpc::ADOPT, Credential::AdoptProof(id, proof), &body, timeout, MAX_ADOPT_ANSWER).await
    }

    async fn send<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        credential: Credential<'_>,
        body: &Req,
        timeout: Duration,
        max_answer: usize,
    ) -> Result<Resp, PeerError> {
        let body = encode(body).map_err(|_| PeerError::Encode)?;
        let request = self.http.post(format!("{}://{address}{path}", self.scheme)).timeout(timeout).body(body);
        let request = match credential {
            Credential::Secret(None) => request.header(rpc::SECRET_HEADER, self.secret.as_str()),
            Credential::Secret(Some(target)) => {
                request.header(rpc::SECRET_HEADER, self.secret.as_str()).header(rpc::TARGET_HEADER, target.to_string())
            }
            Credential::AdoptProof(id, proof) => {
                request.header(rpc::ADOPT_PROOF_HEADER, proof).header(rpc::TARGET_HEADER, id.to_string())
            }
        };
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                PeerError::Unreachable(e)
            } else {
                PeerError::Transport(e)
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(PeerError::Refused { status: status.as_u16() });
        }
        let bytes = read_at_most(response, max_answer).await?;
        decode(&bytes).map_err(|_| PeerError::Decode)
    }
}

/// Reads an answer's body, refusing one longer than `limit` bytes as it arrives.
async fn read_at_most(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, PeerError> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(PeerError::Decode);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(PeerError::Transport)? {
        if bytes.len() + chunk.len() > limit {
            return Err(PeerError::Decode);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// When this node last heard back from each peer: the leader's measure of member health.
#[derive(Default)]
pub struct PeerHealth {
    last_answer: Mutex<HashMap<NodeId, Instant>>,
}

impl PeerHealth {
    fn answered(&self, node: NodeId) {
        self.lock().insert(node, Instant::now());
    }

    /// How long ago `node` last answered a Raft message, if it ever did.
    pub fn silent_for(&self, node: NodeId) -> Option<Duration> {
        self.lock().get(&node).map(Instant::elapsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Instant>> {
        self.last_answer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// openraft's factory of connections to members.
pub struct Network {
    pub client: PeerClient,
    pub health: Arc<PeerHealth>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Connection {
        Connection {
            client: self.client.clone(),
            health: Arc::clone(&self.health),
            target,
            address: node.raft_address.clone(),
            snapshot_started: None,
        }
    }
}

pub struct Connection {
    client: PeerClient,
    health: Arc<PeerHealth>,
    target: NodeId,
    address: String,
    /// When the first chunk of the snapshot being sent went out.
    snapshot_started: Option<Instant>,
}

type RaftResult<T, E> = Result<T, RaftError<NodeId, E>>;

impl Connection {
    async fn send<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl();
        let answer: RaftResult<Resp, E> =
            self.client.call(&self.address, path, Some(self.target), request, ttl).await.map_err(|e| match e {
                PeerError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        self.health.answered(self.target);
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.send(rpc::APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>>
    {
        // openraft sends a snapshot in chunks, in order, on one connection.
        if rpc.offset == 0 {
            self.snapshot_started = Some(Instant::now());
        }
        let (done, end) = (rpc.done, rpc.offset + rpc.data.len() as u64);
        let answer = self.send(rpc::SNAPSHOT, &rpc, &option).await;
        if let (true, Ok(_), Some(started)) = (done, &answer, self.snapshot_started) {
            let instruments = crate::metrics::instruments();
            instruments.snapshot_sends.observe(started.elapsed().as_secs_f64());
            instruments.snapshot_sent_bytes.inc_by(end);
            self.snapshot_started = None;
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.send(rpc::VOTE, &rpc, &option).await
    }
}
