//! `/v1/sys/cluster`: bootstrapping, adding learners, promoting, removing, and the status
//! the operator reads. Membership changes run on the leader (other nodes forward them),
//! one at a time, and node ids come from a replicated counter, so no id is used twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, ErasureCompaction, Member, MemberAdded, NodeState};

use super::network::PeerError;
use super::rpc::{self, Refusal};
use super::types::{NodeId, NodeInfo};
use super::{Cluster, PROPOSE_TIMEOUT};
use crate::audit::{AuditDraft, Operation};
use crate::store::{Applied, Batch, Change, Command};

/// A learner this many entries behind the leader is not promoted yet.
const PROMOTE_MAX_LAG: u64 = 64;
/// The leader counts a member unhealthy after this long without an answer.
const UNHEALTHY_AFTER: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// A membership request, as forwarded to the leader. `actor` is audited.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminRequest {
    pub actor: String,
    pub action: AdminAction,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminAction {
    Status,
    AddLearner(AddLearner),
    Promote(NodeId),
    Remove(NodeId),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminAnswer {
    Status(ClusterStatus),
    Added(MemberAdded),
    Done,
}

pub type AdminResult = Result<AdminAnswer, AdminError>;

fn client_write_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> AdminError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Refusal::NotLeader.into(),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => AdminError::Conflict(e.to_string()),
        RaftError::Fatal(e) => {
            tracing::error!(error = %e, "Raft has stopped; this node needs a restart");
            Refusal::Stopped.into()
        }
    }
}

impl Cluster {
    /// `POST /v1/sys/cluster/init`: makes this uninitialised node a one-voter cluster.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<MemberAdded, AdminError> {
        const FIRST: NodeId = 1;
        if self.raft.get().is_some() {
            return Err(Refusal::AlreadyMember.into());
        }
        self.claim_node_id(FIRST)?;
        self.start(FIRST).await.map_err(|e| Refusal::Failed(e.to_string()))?;
        let raft = self.raft()?.clone();
        let me = self.me.clone();
        self.on_runtime(async move {
            raft.initialize(BTreeMap::from([(FIRST, me)])).await.map_err(|e| Refusal::Failed(e.to_string()))?;
            raft.wait(Some(PROPOSE_TIMEOUT))
                .metrics(|m| m.current_leader == Some(FIRST), "bootstrap leader")
                .await
                .map_err(|_| Refusal::NoLeader)?;
            Ok::<(), Refusal>(())
        })
        .await?;
        tracing::info!("bootstrapped a new cluster as node {FIRST}");
        Ok(MemberAdded { id: FIRST })
    }

    /// A restored vault's first member was made offline, without addresses: once this
    /// node leads, it writes its own addresses into the membership if they differ there.
    pub(super) async fn advertise_own_addresses(self: Arc<Self>, id: NodeId) {
        let Ok(raft) = self.raft().cloned() else { return };
        let leading = raft.wait(None).metrics(|m| m.current_leader == Some(id), "this node leads").await;
        if leading.is_err() {
            return;
        }
        let listed =
            raft.metrics().borrow().membership_config.nodes().find(|(n, _)| **n == id).map(|(_, info)| info.clone());
        if listed.is_none_or(|info| info == self.me) {
            return;
        }
        let change = ChangeMembers::SetNodes(BTreeMap::from([(id, self.me.clone())]));
        match raft.change_membership(change, true).await {
            Ok(_) => tracing::info!(node = id, "wrote this node's addresses into the membership"),
            Err(error) => tracing::warn!(%error, "cannot write this node's addresses into the membership"),
        }
    }

    /// On an uninitialised node, from the leader: take this id and start Raft under it.
    pub(super) async fn adopt(self: &Arc<Self>, id: NodeId) -> Result<(), Refusal> {
        if self.raft.get().is_some() {
            return Err(Refusal::AlreadyMember);
        }
        self.claim_node_id(id)?;
        self.start(id).await.map(drop).map_err(|e| Refusal::Failed(e.to_string()))
    }

    /// Runs a membership request on the leader, forwarding it when this node is not.
    pub async fn admin(self: &Arc<Self>, request: AdminRequest) -> AdminResult {
        let cluster = Arc::clone(self);
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        self.on_runtime(async move {
            loop {
                let attempt = match cluster.leader()? {
                    Some((leader, _)) if Some(leader) == cluster.node_id() => {
                        cluster.admin_as_leader(request.clone()).await
                    }
                    Some((_, node)) => cluster
                        .peers
                        .call::<_, AdminResult>(&node.raft_address, rpc::ADMIN, None, &request, PROPOSE_TIMEOUT)
                        .await
                        .unwrap_or_else(|e| Err(super::refusal_of(e).into())),
                    None => Err(Refusal::NoLeader.into()),
                };
                match attempt {
                    Err(AdminError::Refused(Refusal::NotLeader | Refusal::NoLeader))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        cluster.await_leader_change().await
                    }
                    // Without a leader, status is still worth showing: this node's view.
                    Err(AdminError::Refused(Refusal::NotLeader | Refusal::NoLeader))
                        if matches!(request.action, AdminAction::Status) =>
                    {
                        return Ok(AdminAnswer::Status(cluster.local_status()))
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    pub(super) async fn admin_as_leader(self: &Arc<Self>, request: AdminRequest) -> AdminResult {
        if self.summary().state != NodeState::Leader {
            return Err(Refusal::NotLeader.into());
        }
        match request.action {
            AdminAction::Status => Ok(AdminAnswer::Status(self.local_status())),
            AdminAction::AddLearner(add) => self.add_learner(&request.actor, add).await.map(AdminAnswer::Added),
            AdminAction::Promote(id) => self.promote(id).await.map(|()| AdminAnswer::Done),
            AdminAction::Remove(id) => self.remove(id).await.map(|()| AdminAnswer::Done),
        }
    }

    async fn add_learner(self: &Arc<Self>, actor: &str, add: AddLearner) -> Result<MemberAdded, AdminError> {
        if add.raft_address.trim().is_empty() || !add.raft_address.contains(':') {
            return Err(AdminError::BadRequest("raftAddress must be host:port".into()));
        }
        if !(add.api_address.starts_with("http://") || add.api_address.starts_with("https://")) {
            return Err(AdminError::BadRequest("apiAddress must be an http:// or https:// URL".into()));
        }
        let holder = self.with_metrics(|metrics| {
            let membership = metrics.membership_config.membership();
            membership.nodes().find(|(_, node)| node.raft_address == add.raft_address).map(|(id, _)| *id)
        })?;
        if let Some(old) = holder {
            if !add.replace {
                return Err(AdminError::Conflict(format!(
                    "raftAddress belongs to member {old}; remove it first or set replace"
                )));
            }
            tracing::info!(old, "replacing the member at a re-used address");
            self.remove(old).await?;
        }
        let id = self.allocate_node_id(actor).await?;
        // The address is the caller's word: the call carries a proof rather than the peer
        // secret, and what comes back is reported in fixed words, never passed on.
        // Its answer must prove it holds the peer secret before it becomes a learner: Raft
        // messages to members carry the secret.
        let challenge = crate::crypto::random_bytes::<32>();
        let answer = self.peers.adopt(&add.raft_address, id, &self.adopt_proof(id), challenge, PROPOSE_TIMEOUT).await;
        match answer {
            Ok(Ok(proof)) if self.adopted_proof_matches(id, &challenge, &proof) => {}
            Ok(Ok(_)) => {
                return Err(AdminError::Conflict(
                    "the node at raftAddress did not prove that it holds the cluster's peer secret; it was not added"
                        .into(),
                ))
            }
            Ok(Err(refusal)) => return Err(AdminError::Conflict(adopt_refused(&refusal).into())),
            Err(error) => return Err(AdminError::Conflict(adopt_failed(&error))),
        }
        let node = NodeInfo { raft_address: add.raft_address, api_address: add.api_address };
        self.raft()?.add_learner(id, node, false).await.map_err(client_write_error)?;
        tracing::info!(node = id, "added learner");
        Ok(MemberAdded { id })
    }

    async fn allocate_node_id(&self, actor: &str) -> Result<NodeId, AdminError> {
        let audit = AuditDraft {
            time: crate::audit::now_ms(),
            actor: actor.to_string(),
            operation: Operation::NodeIdAllocate,
            subject: None,
            app: None,
            mode: None,
            purpose: None,
        };
        let batch = Batch { commands: [Command { audit, change: Change::AllocateNodeId }].into() };
        let receipts = self.propose_as_leader(batch).await?;
        match receipts.into_iter().next().map(|r| r.outcome) {
            Some(Ok(Applied::NodeId(id))) => Ok(id),
            _ => Err(Refusal::Failed("node id allocation gave no id".into()).into()),
        }
    }

    async fn promote(&self, id: NodeId) -> Result<(), AdminError> {
        let (is_voter, is_member, lag) = self.with_metrics(|metrics| {
            let membership = metrics.membership_config.membership();
            let matched = metrics.replication.as_ref().and_then(|r| r.get(&id).cloned()).flatten();
            let lag = metrics.last_log_index.unwrap_or(0).saturating_sub(matched.map_or(0, |m| m.index));
            (membership.voter_ids().any(|v| v == id), membership.get_node(&id).is_some(), lag)
        })?;
        if !is_member {
            return Err(AdminError::NotFound(format!("node {id} is not a member")));
        }
        if is_voter {
            return Err(AdminError::Conflict(format!("node {id} is already a voter")));
        }
        if lag > PROMOTE_MAX_LAG || !self.is_healthy(id) {
            return Err(AdminError::Conflict(format!(
                "learner {id} is {lag} entries behind; promote it once it has caught up"
            )));
        }
        self.raft()?
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(client_write_error)?;
        tracing::info!(node = id, "promoted to voter");
        Ok(())
    }

    async fn remove(&self, id: NodeId) -> Result<(), AdminError> {
        let (voters, is_member) = self.with_metrics(|metrics| {
            let membership = metrics.membership_config.membership();
            (membership.voter_ids().collect::<BTreeSet<_>>(), membership.get_node(&id).is_some())
        })?;
        if !is_member {
            return Err(AdminError::NotFound(format!("node {id} is not a member")));
        }
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(AdminError::Conflict("cannot remove the last voter".into()));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft()?.change_membership(change, false).await.map_err(client_write_error)?;
        tracing::info!(node = id, "removed from the cluster");
        Ok(())
    }

    fn is_healthy(&self, id: NodeId) -> bool {
        Some(id) == self.node_id() || self.health.silent_for(id).is_some_and(|silence| silence < UNHEALTHY_AFTER)
    }

    /// This node's own view of the cluster.
    pub fn local_status(&self) -> ClusterStatus {
        let deadline = ErasureCompaction {
            compaction_deadline_ms: self.erasure_compaction.as_millis() as u64,
            ..Default::default()
        };
        let Some(raft) = self.raft.get() else {
            return ClusterStatus {
                node_id: None,
                state: NodeState::Uninitialized,
                leader: None,
                term: 0,
                last_log_index: None,
                applied_index: None,
                snapshot_index: None,
                purged_index: None,
                members: Vec::new(),
                erasures: deadline,
            };
        };
        let metrics = raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let (matched, healthy) = match &metrics.replication {
                    Some(_) if *id == metrics.id => (Some(last), Some(true)),
                    Some(replication) => (
                        replication.get(id).cloned().flatten().map(|m| m.index).or(Some(0)),
                        Some(self.is_healthy(*id)),
                    ),
                    None => (None, None),
                };
                Member {
                    id: *id,
                    raft_address: node.raft_address.clone(),
                    api_address: node.api_address.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag: matched.map(|m| last.saturating_sub(m)),
                    healthy,
                }
            })
            .collect();
        let purged = metrics.purged.map_or(0, |p| p.index);
        let (pending, oldest_pending_since) = self.store.erasures_after(purged).unwrap_or((0, None));
        ClusterStatus {
            node_id: Some(metrics.id),
            state: super::node_state(metrics.state),
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|l| l.index),
            snapshot_index: metrics.snapshot.map(|s| s.index),
            purged_index: metrics.purged.map(|p| p.index),
            members,
            erasures: ErasureCompaction { pending, oldest_pending_since, ..deadline },
        }
    }
}

/// Why the node at a new learner's address did not take its id, in fixed words: its
/// answer is not trusted enough to be shown.
fn adopt_refused(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::AlreadyMember => "the node at raftAddress already belongs to a cluster",
        _ => "the node at raftAddress refused to join",
    }
}

/// Why a new learner's address could not be asked, without anything it answered.
fn adopt_failed(error: &PeerError) -> String {
    match error {
        PeerError::Unreachable(_) => "cannot reach the new node at raftAddress".into(),
        PeerError::Refused { .. } => "the node at raftAddress refused the peer request".into(),
        PeerError::Transport(_) | PeerError::Decode | PeerError::Encode => {
            "the node at raftAddress did not answer as a vaultd peer".into()
        }
    }
}
