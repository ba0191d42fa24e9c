//! The Raft type configuration: what a log entry carries (a `Batch` of commands), what
//! applying it answers (one `Receipt` per command), and how members are addressed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::{Batch, Receipt};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Strongroom's Raft types.
    pub TypeConfig:
        D = Batch,
        R = Vec<Receipt>,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = super::snapshot_stream::SnapshotData,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, NodeInfo>;

/// How the rest of the cluster reaches a member. Stored in the membership, so every node
/// knows every member's addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the peer (Raft) listener.
    pub raft_address: String,
    /// Base URL of the API, e.g. `http://vault-1.vault-headless:3000`.
    pub api_address: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.raft_address)
    }
}
