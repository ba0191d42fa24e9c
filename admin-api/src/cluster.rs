//! Cluster membership (`/v1/sys/cluster`) and the node summary in `GET /v1/status`.
//!
//! How a cluster is formed and changed, one membership change at a time:
//! 1. Every node starts `uninitialized` unless its data directory already belongs to a
//!    cluster. `POST /v1/sys/cluster/init` on one node makes it a one-voter cluster.
//! 2. `POST /v1/sys/cluster/learners` (on any member; it is forwarded to the leader)
//!    allocates a node id that was never used before, hands it to the uninitialised
//!    node at `raftAddress`, and adds that node as a learner.
//! 3. When the learner has caught up (`lag` small, `healthy`),
//!    `POST /v1/sys/cluster/members/{id}/promote` makes it a voter.
//! 4. `DELETE /v1/sys/cluster/members/{id}` removes a member (before its pod goes away).
//!
//! A node whose data directory was wiped comes back `uninitialized` and is added again
//! under a new id; its old id is removed, never reused.

use serde::{Deserialize, Serialize};

/// A node's Raft role as seen by that node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Not (yet) part of a cluster: waiting for `init` or to be added as a learner.
    Uninitialized,
    Leader,
    Follower,
    Learner,
    Candidate,
    /// The Raft instance has stopped after a fatal error; the node must be restarted.
    Shutdown,
}

/// The `node` object of `GET /v1/status` (no token needed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub id: Option<u64>,
    pub state: NodeState,
    pub leader: Option<u64>,
}

/// `GET /v1/status` (no token): what the node is and how it takes part in the cluster.
/// `?ready=member` answers 503 (with this body) until the node is a member of a cluster
/// that has a leader; use it as the readiness probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    pub version: String,
    /// The label of the KEK version in use.
    pub kek: String,
    #[serde(default)]
    pub bulk_list_enabled: bool,
    pub node: NodeSummary,
}

/// `GET /v1/sys/cluster`: the leader's view when a leader is known (a follower forwards
/// the request), this node's own view with `?local=true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: Option<u64>,
    pub state: NodeState,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The last log index included in this node's latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Log entries up to here have been removed from this node's disk.
    pub purged_index: Option<u64>,
    pub members: Vec<Member>,
    pub erasures: ErasureCompaction,
}

/// One member of the cluster. `matchedIndex`, `lag` and `healthy` are the leader's view
/// and are null when the answering node is not the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: u64,
    /// `host:port` of the node's peer (Raft) listener.
    pub raft_address: String,
    /// Base URL of the node's API, e.g. `http://vault-1.vault-headless:3000`.
    pub api_address: String,
    pub voter: bool,
    #[serde(default)]
    pub matched_index: Option<u64>,
    /// Log entries the member is behind the leader.
    #[serde(default)]
    pub lag: Option<u64>,
    /// The leader heard from this member recently (within a few election timeouts).
    #[serde(default)]
    pub healthy: Option<bool>,
}

/// Crypto-shredding progress on the answering node: erasures (forget-me, app record
/// deletions, retention and expiration changes) applied but still present in the Raft
/// log or an older snapshot on this node's disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasureCompaction {
    pub pending: u64,
    /// Milliseconds since the Unix epoch at which the oldest pending erasure was applied.
    #[serde(default)]
    pub oldest_pending_since: Option<u64>,
    /// The longest an erasure waits before the node compacts it away, in milliseconds.
    pub compaction_deadline_ms: u64,
}

/// `POST /v1/sys/cluster/learners`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddLearner {
    pub raft_address: String,
    pub api_address: String,
    /// When another member already has `raftAddress` (its node was wiped and restarted),
    /// remove that member first instead of refusing with 409.
    #[serde(default)]
    pub replace: bool,
}

/// The answer to `POST /v1/sys/cluster/learners` and `POST /v1/sys/cluster/init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAdded {
    pub id: u64,
}
