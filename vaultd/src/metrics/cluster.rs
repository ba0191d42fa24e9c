//! The node's Raft state, read at scrape time from its own view of the cluster (the same
//! as `GET /v1/sys/cluster` answers): leadership, term, log positions, each follower's
//! lag (on the leader), membership and the erasures waiting to be compacted away.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use strongroom_admin_api::cluster::NodeState;

use super::{gauge, gauges_by};
use crate::cluster::Cluster;
use crate::crypto::DekCache;
use crate::vault::Vault;

pub struct ClusterCollector {
    cluster: Arc<Cluster>,
    keys: Arc<DekCache>,
}

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCollector")
    }
}

impl ClusterCollector {
    pub fn new(vault: &Vault) -> Self {
        ClusterCollector { cluster: Arc::clone(vault.cluster()), keys: Arc::clone(vault.key_cache()) }
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = self.cluster.local_status();
        let e = &mut encoder;
        let flag = |yes: bool| i64::from(yes);
        let leader = status.state != NodeState::Uninitialized && self.cluster.has_working_leader();
        let help = "1 when this node knows a leader that its quorum acknowledges";
        gauge(e, "raft_has_leader", help, None, flag(leader))?;
        let is_leader = status.state == NodeState::Leader;
        gauge(e, "raft_is_leader", "1 when this node is its cluster's leader", None, flag(is_leader))?;
        gauge(e, "raft_term", "The Raft term this node is in", None, status.term as i64)?;
        let index = |value: Option<u64>| value.unwrap_or(0) as i64;
        gauge(
            e,
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            None,
            index(status.last_log_index),
        )?;
        let committed = crate::cluster::committed_index(self.cluster.store()).unwrap_or(0);
        let help = "Index of the last entry this node knows committed";
        gauge(e, "raft_committed_index", help, None, committed as i64)?;
        gauge(e, "raft_applied_index", "Index of the last entry this node applied", None, index(status.applied_index))?;
        gauge(e, "raft_snapshot_index", "Last index in this node's snapshot", None, index(status.snapshot_index))?;
        gauge(e, "raft_purged_index", "Last index purged from this node's log", None, index(status.purged_index))?;
        let voters = status.members.iter().filter(|member| member.voter).count() as i64;
        let learners = status.members.len() as i64 - voters;
        let roles = [("voter".to_string(), voters), ("learner".to_string(), learners)];
        gauges_by(e, "raft_members", "Members of the cluster, by role", None, "role", &roles)?;
        // On a working leader only: one cut off from its quorum may still think it leads,
        // and would report every other member as lagging and unhealthy.
        let members = if is_leader && leader { &status.members[..] } else { &[] };
        let lags: Vec<(String, i64)> = members
            .iter()
            .filter(|member| Some(member.id) != status.node_id)
            .filter_map(|member| Some((member.id.to_string(), member.lag? as i64)))
            .collect();
        let help = "Log entries a member is behind the leader (reported by the leader), by Raft id";
        gauges_by(e, "raft_follower_lag_entries", help, None, "member", &lags)?;
        let healthy: Vec<(String, i64)> =
            members.iter().filter_map(|member| Some((member.id.to_string(), flag(member.healthy?)))).collect();
        let help = "1 when the leader heard from a member lately, by Raft id (reported by the leader)";
        gauges_by(e, "raft_member_healthy", help, None, "member", &healthy)?;

        let erasures = &status.erasures;
        let help = "Erasures applied but still in the Raft log (compacted away by a snapshot)";
        gauge(e, "erasures_pending", help, None, erasures.pending as i64)?;
        let now_ms = crate::audit::now_ms();
        let age = erasures.oldest_pending_since.map_or(0.0, |since| now_ms.saturating_sub(since) as f64 / 1000.0);
        let help = "Age of the oldest erasure still in the Raft log (0 when none)";
        gauge(e, "erasure_oldest_pending_age", help, Some(&Unit::Seconds), age)?;
        let help = "The longest an erasure may wait before this node compacts it away";
        let deadline = erasures.compaction_deadline_ms as f64 / 1000.0;
        gauge(e, "erasure_compaction_deadline", help, Some(&Unit::Seconds), deadline)?;
        gauge(e, "dek_cache_entries", "Unwrapped data keys held in memory", None, self.keys.len() as i64)
    }
}
