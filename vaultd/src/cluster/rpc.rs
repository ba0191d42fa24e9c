//! What nodes say to each other on the peer port, besides openraft's own messages: the
//! paths, the headers that authenticate a peer, and the bodies of forwarded work.
//! Every body is postcard-encoded.

use serde::{Deserialize, Serialize};

use super::types::NodeId;
use crate::store::Receipt;

pub const APPEND: &str = "/raft/append";
pub const VOTE: &str = "/raft/vote";
pub const SNAPSHOT: &str = "/raft/snapshot";
/// A follower hands a batch of commands to the leader.
pub const PROPOSE: &str = "/raft/propose";
/// The leader hands a never-used node id to an uninitialised node.
pub const ADOPT: &str = "/raft/adopt";
/// A follower asks the leader for a linearizable read index.
pub const READ_INDEX: &str = "/raft/read-index";
/// A follower hands a `/v1/sys/cluster` request to the leader.
pub const ADMIN: &str = "/raft/admin";

/// Most snapshot bytes in one `SNAPSHOT` message (openraft's chunk size).
pub const SNAPSHOT_CHUNK: usize = 3 * 1024 * 1024;

/// The cluster's shared peer secret; compared in constant time.
pub const SECRET_HEADER: &str = "X-Strongroom-Peer";
/// Instead of the secret, the leader's call to a node it is adding (not yet a member, and
/// named by whoever asked) carries HMAC-SHA256 of the id it hands out, keyed by the
/// secret's SHA-256: the node, which knows the secret, can check it, but the secret itself
/// never goes to an address that merely claims to be a new node.
pub const ADOPT_PROOF_HEADER: &str = "X-Strongroom-Adopt-Proof";
/// The node id a Raft message (or an adoption) is meant for. A node refuses messages for another id, so a
/// wiped node that came back at an old member's address cannot answer in its name.
pub const TARGET_HEADER: &str = "X-Strongroom-Target";

/// Why the leader (or the node that was asked) could not take forwarded work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("this node is not the leader")]
    NotLeader,
    #[error("no leader: the cluster has no quorum")]
    NoLeader,
    #[error("this node has not joined a cluster")]
    Uninitialized,
    #[error("this node already belongs to a cluster")]
    AlreadyMember,
    #[error("the write was not confirmed by a quorum in time; its outcome is unknown")]
    Timeout,
    #[error("{0}")]
    Failed(String),
    /// The disk of the node that refused is nearly full (`free_space`); nothing was
    /// appended.
    #[error("the vault's storage is full: writes are refused until space is freed")]
    NoSpace,
    /// The node's Raft core stopped after a storage failure; it needs a restart.
    #[error("this node's storage failed; it needs a restart")]
    Stopped,
}

impl Refusal {
    /// Whether asking again later may succeed: the cluster was between leaders or could
    /// not confirm in time.
    pub fn is_transient(&self) -> bool {
        matches!(self, Refusal::NotLeader | Refusal::NoLeader | Refusal::Timeout)
    }
}

pub type ProposeResult = Result<Vec<Receipt>, Refusal>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Adopt {
    pub node_id: NodeId,
    /// Fresh random bytes the node must answer with [`adopted_proof`]: without the peer
    /// secret nobody can, so a node that does not hold it is never added (and never gets
    /// the Raft messages that carry the secret).
    pub challenge: [u8; 32],
}

/// The adoption proof for `id`, hex-encoded, from the SHA-256 of the peer secret.
pub fn adopt_proof(secret_hash: &[u8; 32], id: NodeId) -> String {
    keyed_hex(secret_hash, &[b"strongroom adopt ", &id.to_be_bytes()])
}

/// A node's answer to an adoption: proof that it holds the peer secret too.
pub fn adopted_proof(secret_hash: &[u8; 32], id: NodeId, challenge: &[u8; 32]) -> String {
    keyed_hex(secret_hash, &[b"strongroom adopted ", &id.to_be_bytes(), challenge])
}

/// HMAC-SHA256 of `parts` under `key`, hex-encoded.
fn keyed_hex(key: &[u8; 32], parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length; a 32-byte key cannot be refused.
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else { return String::new() };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// An adopted node's [`adopted_proof`].
pub type AdoptResult = Result<String, Refusal>;
pub type ReadIndexResult = Result<u64, Refusal>;
