//! Raft membership decisions, as one pure function: what the operator observed (the pods'
//! own status and the leader's view of the cluster) in, at most one next step out.
//!
//! The rules, in the order they are checked:
//! 0. Pod 0's volume is being restored from a backup: wait (the StatefulSet follows).
//! 1. No cluster yet: bootstrap pod 0 once every pod that answers is uninitialised — unless
//!    the vault had members before (then all data would be lost silently; a human decides).
//!    A restored pod 0 answers as a cluster of one; pod 0 of a vault made from a backup is
//!    never bootstrapped.
//! 2. No leader: wait.
//! 3. Removals need every *other* member healthy, so a removal never costs the quorum:
//!    a wiped pod's old member (its pod answers `uninitialized` at the member's address),
//!    a member whose pod now runs another node id, an *unhealthy* member that no pod of
//!    the StatefulSet has the address of, and — when scaling down — the highest ordinal.
//!    A healthy member is never removed merely because its address does not match a pod:
//!    it is reported ([`Wait::ForeignMember`]) and left to a human.
//! 4. Everything else needs every voter healthy: promote a caught-up learner, add an
//!    uninitialised pod as a learner, grow the StatefulSet. A learner that is not healthy
//!    yet while its pod runs is catching up (progress, not a problem); one whose pod does
//!    not answer blocks as an unhealthy member.
//! 5. The StatefulSet shrinks only after its highest pod has left the cluster.
//!
//! One change at a time: each step is taken, then the next reconcile looks again.

use std::collections::BTreeMap;

use strongroom_admin_api::cluster::{AddLearner, ClusterStatus, Member, NodeState};

use super::names::VaultNames;

/// Learners this many log entries (or fewer) behind the leader are asked to become voters;
/// vaultd has the last word (it answers 409 while a learner lags).
pub const PROMOTE_MAX_LAG: u64 = 100;

/// What one pod said about itself (`GET /v1/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// The pod did not answer (not scheduled, starting, crashed, network).
    Unreachable,
    /// The pod answered; `id` is its node id once it belongs to a cluster.
    Answered { state: NodeState, id: Option<u64> },
}

/// Everything the decision depends on.
#[derive(Clone, Debug)]
pub struct Observation {
    pub names: VaultNames,
    /// `spec.replicas`.
    pub desired_replicas: i32,
    /// The StatefulSet's current `spec.replicas`; `None` before it exists.
    pub stateful_set_replicas: Option<i32>,
    /// The state of pods `0..stateful_set_replicas`, by ordinal.
    pub pods: BTreeMap<i32, PodState>,
    /// The leader's view of the cluster, when some member answered.
    pub cluster: Option<ClusterStatus>,
    /// The vault's last status listed members: a cluster existed.
    pub had_members: bool,
    /// Pod 0's volume is being restored from a backup (`spec.bootstrap.fromBackup`), before
    /// the StatefulSet exists; `None` once restored, or with nothing to restore.
    pub restore: Option<Restore>,
    /// The vault is made from a backup: pod 0 is never bootstrapped empty.
    pub from_backup: bool,
}

/// A restore that has not finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The restore Job runs (or waits for its pod).
    Running { job: String },
    /// The restore Job gave up; `message` says why.
    Failed { job: String, message: String },
    /// No restore Job is made, for the reason `message` gives (what is in the way).
    Refused { message: String },
}

/// Why a member is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Scaling down: the highest ordinal leaves first.
    ScaleDown,
    /// Its pod lost its volume and came back uninitialised; it rejoins under a new id.
    Wiped,
    /// No pod of the StatefulSet has its address, and the leader does not hear from it.
    Orphaned,
    /// Its pod answers as another node (`pod_node_id`): the member is not there any more.
    Replaced { pod_node_id: u64 },
}

/// Why nothing can be done now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A pod that must act next has not answered yet.
    PodNotReady { pod: String },
    /// The vault had (or some pod reports) a cluster, but no member answered with its state.
    VaultUnreachable,
    /// Every pod is uninitialised although the vault had members: its data is gone.
    ClusterLost,
    /// Members exist but none is the leader.
    NoLeader,
    /// A membership change waits for these members to be healthy.
    MembersUnhealthy { node_ids: Vec<u64> },
    /// A learner is still catching up with the leader's log.
    LearnerCatchingUp { pod: String, lag: Option<u64> },
    /// A pod belongs to some cluster but not (any more) to this one: its volume must be
    /// removed before it can rejoin.
    StalePod { pod: String, node_id: Option<u64> },
    /// A healthy member that no pod of the StatefulSet has the address of: not removed by
    /// the operator, and no other change is made while it is there.
    ForeignMember { node_id: u64, raft_address: String },
    /// Pod 0's volume is being restored; the StatefulSet follows.
    Restoring { job: String },
    /// The restore failed: no StatefulSet is made from a volume that was not restored.
    RestoreFailed { job: String, message: String },
    /// The restore cannot start: something in the way (see its message).
    RestoreRefused { message: String },
    /// Pod 0 of a vault made from a backup answers uninitialised: its volume does not hold
    /// the restore, and an empty vault is not started in its place.
    NotRestored { pod: String },
}

impl Wait {
    /// Waits that need attention (as opposed to waiting for progress).
    pub fn is_problem(&self) -> bool {
        !matches!(self, Wait::PodNotReady { .. } | Wait::LearnerCatchingUp { .. } | Wait::Restoring { .. })
    }
}

/// The one next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `POST /v1/sys/cluster/init` on this pod.
    Bootstrap {
        pod: String,
        api_address: String,
    },
    /// `POST /v1/sys/cluster/learners` for this uninitialised pod.
    AddLearner {
        pod: String,
        learner: AddLearner,
    },
    /// `POST /v1/sys/cluster/members/{node_id}/promote`.
    Promote {
        pod: String,
        node_id: u64,
    },
    /// `DELETE /v1/sys/cluster/members/{node_id}`.
    RemoveMember {
        pod: Option<String>,
        node_id: u64,
        reason: Removal,
    },
    /// Set the StatefulSet's replicas.
    ResizeStatefulSet {
        from: i32,
        to: i32,
    },
    Wait(Wait),
    /// Nothing to do: every pod is a healthy voter and the size is right.
    Converged,
}

impl Step {
    /// Whether the step changes the cluster or the StatefulSet.
    pub fn is_change(&self) -> bool {
        !matches!(self, Step::Wait(_) | Step::Converged)
    }
}

/// The StatefulSet size to apply while taking `step`; `None`: no StatefulSet yet (pod 0's
/// volume is being restored).
pub fn stateful_set_replicas(observation: &Observation, step: &Step) -> Option<i32> {
    match step {
        Step::Wait(Wait::Restoring { .. } | Wait::RestoreFailed { .. } | Wait::RestoreRefused { .. }) => None,
        Step::ResizeStatefulSet { to, .. } => Some(*to),
        _ => Some(observation.stateful_set_replicas.unwrap_or(observation.desired_replicas)),
    }
}

/// The ordinal of the pod whose raft address a member has, if it is one of ours.
pub fn ordinal_of_member(names: &VaultNames, member: &Member) -> Option<i32> {
    let host = member.raft_address.rsplit_once(':').map_or(member.raft_address.as_str(), |(host, _)| host);
    let pod = host.split('.').next()?;
    let ordinal = names.ordinal_of(pod)?;
    (names.raft_address(ordinal) == member.raft_address).then_some(ordinal)
}

fn is_healthy(member: &Member) -> bool {
    member.healthy == Some(true)
}

/// Members other than `except` that are not healthy.
fn unhealthy_except(members: &[Member], except: Option<u64>) -> Vec<u64> {
    members.iter().filter(|member| Some(member.id) != except && !is_healthy(member)).map(|member| member.id).collect()
}

/// Whether the vault has — or had — a cluster: its last status listed members, or some pod
/// answers as an initialised node. From then on the generated Secrets its nodes depend on
/// must never be generated anew.
pub fn vault_initialised(had_members: bool, pods: &BTreeMap<i32, PodState>) -> bool {
    had_members
        || pods
            .values()
            .any(|pod| matches!(pod, PodState::Answered { state, .. } if *state != NodeState::Uninitialized))
}

/// Decides the next step.
pub fn next_step(observation: &Observation) -> Step {
    let names = &observation.names;
    match &observation.restore {
        Some(Restore::Running { job }) => return Step::Wait(Wait::Restoring { job: job.clone() }),
        Some(Restore::Failed { job, message }) => {
            return Step::Wait(Wait::RestoreFailed { job: job.clone(), message: message.clone() })
        }
        Some(Restore::Refused { message }) => return Step::Wait(Wait::RestoreRefused { message: message.clone() }),
        None => {}
    }
    let Some(set_replicas) = observation.stateful_set_replicas else {
        // The StatefulSet is created at the desired size; its pods start uninitialised.
        return not_ready(names, 0);
    };

    let Some(cluster) = &observation.cluster else {
        return without_cluster(observation);
    };
    if cluster.leader.is_none() {
        return Step::Wait(Wait::NoLeader);
    }
    let members = &cluster.members;
    let member_at = |ordinal: i32| members.iter().find(|member| ordinal_of_member(names, member) == Some(ordinal));

    // Removals: each needs every other member healthy.
    let removal = |member: &Member, reason: Removal| {
        let unhealthy = unhealthy_except(members, Some(member.id));
        if !unhealthy.is_empty() {
            return Step::Wait(Wait::MembersUnhealthy { node_ids: unhealthy });
        }
        let pod = ordinal_of_member(names, member).map(|ordinal| names.pod(ordinal));
        Step::RemoveMember { pod, node_id: member.id, reason }
    };
    for (ordinal, pod) in &observation.pods {
        let wiped = matches!(pod, PodState::Answered { state: NodeState::Uninitialized, .. });
        if let (true, Some(member)) = (wiped, member_at(*ordinal)) {
            return removal(member, Removal::Wiped);
        }
    }
    // The pod of this member's address, when it is one of the StatefulSet's.
    let pod_of = |member: &Member| ordinal_of_member(names, member).filter(|ordinal| *ordinal < set_replicas);
    for member in members {
        match pod_of(member) {
            Some(ordinal) => {
                if let Some(PodState::Answered { id: Some(id), .. }) = observation.pods.get(&ordinal) {
                    if *id != member.id {
                        return removal(member, Removal::Replaced { pod_node_id: *id });
                    }
                }
            }
            // Never a healthy member: its address may merely be spelled differently.
            None if !is_healthy(member) => return removal(member, Removal::Orphaned),
            None => {}
        }
    }
    if set_replicas > observation.desired_replicas {
        let top = set_replicas - 1;
        return match member_at(top) {
            Some(member) => removal(member, Removal::ScaleDown),
            None => Step::ResizeStatefulSet { from: set_replicas, to: top },
        };
    }

    // Additions and promotions: every voter healthy, every member one of ours.
    let unhealthy_voters: Vec<u64> =
        members.iter().filter(|member| member.voter && !is_healthy(member)).map(|member| member.id).collect();
    if !unhealthy_voters.is_empty() {
        return Step::Wait(Wait::MembersUnhealthy { node_ids: unhealthy_voters });
    }
    if let Some(member) = members.iter().find(|member| pod_of(member).is_none()) {
        return Step::Wait(Wait::ForeignMember { node_id: member.id, raft_address: member.raft_address.clone() });
    }
    // An unhealthy learner first: promotions wait until every member is healthy.
    let learners = || members.iter().filter(|member| !member.voter);
    if let Some(member) = learners().find(|member| !is_healthy(member)).or_else(|| learners().next()) {
        let ordinal = pod_of(member);
        let pod = ordinal.map(|ordinal| names.pod(ordinal)).unwrap_or_default();
        let pod_answers = ordinal.is_some_and(|ordinal| {
            matches!(observation.pods.get(&ordinal), Some(PodState::Answered { state, .. }) if *state != NodeState::Uninitialized)
        });
        return match (is_healthy(member), member.lag) {
            (true, Some(lag)) if lag <= PROMOTE_MAX_LAG => Step::Promote { pod, node_id: member.id },
            // Just added: the leader has not heard from it yet, but its pod runs.
            (false, _) if !pod_answers => Step::Wait(Wait::MembersUnhealthy { node_ids: vec![member.id] }),
            (_, lag) => Step::Wait(Wait::LearnerCatchingUp { pod, lag }),
        };
    }
    for ordinal in 0..set_replicas {
        if member_at(ordinal).is_some() {
            continue;
        }
        return match observation.pods.get(&ordinal) {
            Some(PodState::Answered { state: NodeState::Uninitialized, .. }) => Step::AddLearner {
                pod: names.pod(ordinal),
                learner: AddLearner {
                    raft_address: names.raft_address(ordinal),
                    api_address: names.api_address(ordinal),
                    replace: false,
                },
            },
            Some(PodState::Answered { id, .. }) => Step::Wait(Wait::StalePod { pod: names.pod(ordinal), node_id: *id }),
            Some(PodState::Unreachable) | None => not_ready(names, ordinal),
        };
    }
    if set_replicas < observation.desired_replicas {
        return Step::ResizeStatefulSet { from: set_replicas, to: observation.desired_replicas };
    }
    Step::Converged
}

fn not_ready(names: &VaultNames, ordinal: i32) -> Step {
    Step::Wait(Wait::PodNotReady { pod: names.pod(ordinal) })
}

/// No member answered with the cluster's state.
fn without_cluster(observation: &Observation) -> Step {
    let pods = &observation.pods;
    let answered = |wanted: fn(NodeState) -> bool| {
        pods.values().filter(|pod| matches!(pod, PodState::Answered { state, .. } if wanted(*state))).count()
    };
    if answered(|state| state != NodeState::Uninitialized) > 0 {
        return Step::Wait(Wait::VaultUnreachable);
    }
    if observation.had_members {
        let all_wiped = !pods.is_empty() && answered(|state| state == NodeState::Uninitialized) == pods.len();
        return Step::Wait(if all_wiped { Wait::ClusterLost } else { Wait::VaultUnreachable });
    }
    match pods.get(&0) {
        Some(PodState::Answered { .. }) if observation.from_backup => {
            Step::Wait(Wait::NotRestored { pod: observation.names.pod(0) })
        }
        Some(PodState::Answered { .. }) => {
            Step::Bootstrap { pod: observation.names.pod(0), api_address: observation.names.api_address(0) }
        }
        _ => not_ready(&observation.names, 0),
    }
}

#[cfg(test)]
mod tests {
    use strongroom_admin_api::cluster::ErasureCompaction;

    use super::*;

    fn names() -> VaultNames {
        VaultNames::new("vault", "pii")
    }

    /// A member at pod `ordinal` with node id `id`.
    fn voter(ordinal: i32, id: u64) -> Member {
        Member {
            id,
            raft_address: names().raft_address(ordinal),
            api_address: names().api_address(ordinal),
            voter: true,
            matched_index: Some(10),
            lag: Some(0),
            healthy: Some(true),
        }
    }

    fn learner(ordinal: i32, id: u64, lag: Option<u64>) -> Member {
        Member { voter: false, lag, ..voter(ordinal, id) }
    }

    fn unhealthy(member: Member) -> Member {
        Member { healthy: Some(false), ..member }
    }

    fn cluster(leader: Option<u64>, members: Vec<Member>) -> ClusterStatus {
        ClusterStatus {
            node_id: leader,
            state: NodeState::Leader,
            leader,
            term: 3,
            last_log_index: Some(10),
            applied_index: Some(10),
            snapshot_index: None,
            purged_index: None,
            members,
            erasures: ErasureCompaction::default(),
        }
    }

    fn answered(state: NodeState, id: Option<u64>) -> PodState {
        PodState::Answered { state, id }
    }

    fn uninitialized() -> PodState {
        answered(NodeState::Uninitialized, None)
    }

    fn observe(desired: i32, set: i32, pods: Vec<PodState>, cluster: Option<ClusterStatus>) -> Observation {
        Observation {
            names: names(),
            desired_replicas: desired,
            stateful_set_replicas: Some(set),
            pods: (0..).zip(pods).collect(),
            had_members: cluster.is_some(),
            cluster,
            restore: None,
            from_backup: false,
        }
    }

    /// A healthy cluster of `count` voters at pods 0..count with ids 1..=count, leader 1.
    fn healthy(count: i32) -> (Vec<PodState>, ClusterStatus) {
        let pods = (0..count).map(|i| answered(NodeState::Follower, Some(i as u64 + 1))).collect();
        let members = (0..count).map(|i| voter(i, i as u64 + 1)).collect();
        (pods, cluster(Some(1), members))
    }

    #[test]
    fn before_the_stateful_set_exists_it_waits_for_pod_0() {
        let observation = Observation { stateful_set_replicas: None, ..observe(3, 0, vec![], None) };
        assert_eq!(next_step(&observation), Step::Wait(Wait::PodNotReady { pod: "vault-0".into() }));
        assert_eq!(
            stateful_set_replicas(&observation, &next_step(&observation)),
            Some(3),
            "created at the desired size"
        );
    }

    #[test]
    fn fresh_pods_are_bootstrapped_at_pod_0() {
        let observation = observe(3, 3, vec![uninitialized(), PodState::Unreachable, uninitialized()], None);
        assert_eq!(
            next_step(&observation),
            Step::Bootstrap {
                pod: "vault-0".into(),
                api_address: "https://vault-0.vault-headless.pii.svc:3000".into()
            }
        );
    }

    #[test]
    fn bootstrap_waits_for_pod_0() {
        let observation = observe(3, 3, vec![PodState::Unreachable, uninitialized(), uninitialized()], None);
        assert_eq!(next_step(&observation), Step::Wait(Wait::PodNotReady { pod: "vault-0".into() }));
    }

    #[test]
    fn an_initialised_pod_without_a_readable_cluster_blocks_everything() {
        let observation = observe(3, 3, vec![uninitialized(), answered(NodeState::Follower, Some(2))], None);
        assert_eq!(next_step(&observation), Step::Wait(Wait::VaultUnreachable));
    }

    #[test]
    fn a_restore_under_way_or_failed_comes_before_the_stateful_set() {
        let mut observation = observe(3, 0, vec![], None);
        observation.stateful_set_replicas = None;
        observation.restore = Some(Restore::Running { job: "vault-restore".into() });
        let step = next_step(&observation);
        assert_eq!(step, Step::Wait(Wait::Restoring { job: "vault-restore".into() }));
        assert!(!matches!(&step, Step::Wait(wait) if wait.is_problem()), "progress, not a problem");
        assert_eq!(stateful_set_replicas(&observation, &step), None);
        let failed = Restore::Failed { job: "vault-restore".into(), message: "BackoffLimitExceeded".into() };
        observation.restore = Some(failed);
        let step = next_step(&observation);
        assert!(matches!(&step, Step::Wait(wait @ Wait::RestoreFailed { .. }) if wait.is_problem()), "{step:?}");
        assert_eq!(stateful_set_replicas(&observation, &step), None);
        // Restored: the StatefulSet is made at the desired size, and pod 0 (a cluster of
        // one) is never bootstrapped.
        observation.restore = None;
        assert_eq!(stateful_set_replicas(&observation, &next_step(&observation)), Some(3));
        observation.stateful_set_replicas = Some(3);
        observation.pods = BTreeMap::from([(0, answered(NodeState::Leader, Some(7))), (1, uninitialized())]);
        assert_eq!(next_step(&observation), Step::Wait(Wait::VaultUnreachable));
        // Pod 0 of a vault made from a backup answering uninitialised is not bootstrapped.
        observation.from_backup = true;
        observation.pods = BTreeMap::from([(0, uninitialized()), (1, uninitialized())]);
        let step = next_step(&observation);
        assert_eq!(step, Step::Wait(Wait::NotRestored { pod: "vault-0".into() }));
        assert!(matches!(&step, Step::Wait(wait) if wait.is_problem()));
    }

    #[test]
    fn a_vault_that_had_members_is_never_bootstrapped_again() {
        let mut observation = observe(3, 3, vec![uninitialized(), uninitialized(), uninitialized()], None);
        observation.had_members = true;
        assert_eq!(next_step(&observation), Step::Wait(Wait::ClusterLost));
        observation.pods.insert(2, PodState::Unreachable);
        assert_eq!(next_step(&observation), Step::Wait(Wait::VaultUnreachable));
    }

    #[test]
    fn without_a_leader_nothing_changes() {
        let (pods, mut status) = healthy(3);
        status.leader = None;
        assert_eq!(next_step(&observe(3, 3, pods, Some(status))), Step::Wait(Wait::NoLeader));
    }

    #[test]
    fn an_uninitialised_pod_is_added_as_a_learner() {
        let pods = vec![answered(NodeState::Leader, Some(1)), uninitialized(), uninitialized()];
        let status = cluster(Some(1), vec![voter(0, 1)]);
        assert_eq!(
            next_step(&observe(3, 3, pods, Some(status))),
            Step::AddLearner {
                pod: "vault-1".into(),
                learner: AddLearner {
                    raft_address: "vault-1.vault-headless.pii.svc:3001".into(),
                    api_address: "https://vault-1.vault-headless.pii.svc:3000".into(),
                    replace: false,
                },
            }
        );
    }

    #[test]
    fn a_caught_up_learner_is_promoted_before_anything_else() {
        let pods = vec![answered(NodeState::Leader, Some(1)), answered(NodeState::Learner, Some(2)), uninitialized()];
        let status = cluster(Some(1), vec![voter(0, 1), learner(1, 2, Some(3))]);
        assert_eq!(next_step(&observe(3, 3, pods, Some(status))), Step::Promote { pod: "vault-1".into(), node_id: 2 });
    }

    #[test]
    fn a_lagging_learner_is_waited_for() {
        let pods = vec![answered(NodeState::Leader, Some(1)), answered(NodeState::Learner, Some(2))];
        for lag in [Some(PROMOTE_MAX_LAG + 1), None] {
            let status = cluster(Some(1), vec![voter(0, 1), learner(1, 2, lag)]);
            assert_eq!(
                next_step(&observe(3, 2, pods.clone(), Some(status))),
                Step::Wait(Wait::LearnerCatchingUp { pod: "vault-1".into(), lag })
            );
        }
    }

    #[test]
    fn an_unhealthy_member_blocks_additions_and_promotions() {
        let pods = vec![answered(NodeState::Leader, Some(1)), answered(NodeState::Follower, Some(2)), uninitialized()];
        let status = cluster(Some(1), vec![voter(0, 1), unhealthy(voter(1, 2))]);
        assert_eq!(
            next_step(&observe(3, 3, pods, Some(status))),
            Step::Wait(Wait::MembersUnhealthy { node_ids: vec![2] })
        );
        let pods = vec![answered(NodeState::Leader, Some(1)), answered(NodeState::Follower, Some(2))];
        let status = cluster(Some(1), vec![voter(0, 1), Member { healthy: None, ..voter(1, 2) }]);
        assert_eq!(
            next_step(&observe(3, 2, pods, Some(status))),
            Step::Wait(Wait::MembersUnhealthy { node_ids: vec![2] }),
            "a voter's health unknown counts as unhealthy"
        );
    }

    #[test]
    fn a_new_learner_not_heard_from_yet_is_catching_up_not_unhealthy() {
        let pods = vec![answered(NodeState::Leader, Some(1)), answered(NodeState::Learner, Some(2)), uninitialized()];
        for healthy in [None, Some(false)] {
            let status = cluster(Some(1), vec![voter(0, 1), Member { healthy, ..learner(1, 2, None) }]);
            let step = next_step(&observe(3, 3, pods.clone(), Some(status)));
            assert_eq!(step, Step::Wait(Wait::LearnerCatchingUp { pod: "vault-1".into(), lag: None }), "{healthy:?}");
            let Step::Wait(wait) = step else { unreachable!() };
            assert!(!wait.is_problem(), "a normal scale-up is progress, not a problem");
        }
        // Caught up but not heard from: still not promoted.
        let status = cluster(Some(1), vec![voter(0, 1), Member { healthy: None, ..learner(1, 2, Some(0)) }]);
        assert_eq!(
            next_step(&observe(3, 3, pods, Some(status))),
            Step::Wait(Wait::LearnerCatchingUp { pod: "vault-1".into(), lag: Some(0) })
        );
    }

    #[test]
    fn a_learner_whose_pod_is_down_blocks_as_unhealthy() {
        let pods = vec![answered(NodeState::Leader, Some(1)), PodState::Unreachable];
        let status = cluster(Some(1), vec![voter(0, 1), Member { healthy: Some(false), ..learner(1, 2, Some(0)) }]);
        assert_eq!(
            next_step(&observe(3, 2, pods, Some(status))),
            Step::Wait(Wait::MembersUnhealthy { node_ids: vec![2] })
        );
    }

    #[test]
    fn a_healthy_cluster_grows_the_stateful_set_to_the_desired_size() {
        let (pods, status) = healthy(3);
        assert_eq!(next_step(&observe(5, 3, pods, Some(status))), Step::ResizeStatefulSet { from: 3, to: 5 });
    }

    #[test]
    fn scaling_down_removes_the_highest_member_before_shrinking() {
        let (pods, status) = healthy(5);
        let observation = observe(3, 5, pods, Some(status));
        let step = next_step(&observation);
        assert_eq!(step, Step::RemoveMember { pod: Some("vault-4".into()), node_id: 5, reason: Removal::ScaleDown });
        assert_eq!(stateful_set_replicas(&observation, &step), Some(5), "the StatefulSet keeps its size meanwhile");

        // Member 5 has left; its pod still runs.
        let (pods, mut status) = healthy(5);
        status.members.pop();
        let observation = observe(3, 5, pods, Some(status));
        let step = next_step(&observation);
        assert_eq!(step, Step::ResizeStatefulSet { from: 5, to: 4 });
        assert_eq!(stateful_set_replicas(&observation, &step), Some(4));
    }

    #[test]
    fn a_removal_needs_every_other_member_healthy() {
        let (pods, mut status) = healthy(5);
        status.members[4] = unhealthy(status.members[4].clone());
        assert_eq!(
            next_step(&observe(3, 5, pods.clone(), Some(status))),
            Step::RemoveMember { pod: Some("vault-4".into()), node_id: 5, reason: Removal::ScaleDown },
            "the member being removed may be the broken one"
        );
        let (_, mut status) = healthy(5);
        status.members[1] = unhealthy(status.members[1].clone());
        assert_eq!(
            next_step(&observe(3, 5, pods, Some(status))),
            Step::Wait(Wait::MembersUnhealthy { node_ids: vec![2] })
        );
    }

    #[test]
    fn a_wiped_pod_loses_its_old_member_then_joins_under_a_new_id() {
        let (mut pods, mut status) = healthy(3);
        pods[2] = uninitialized();
        status.members[2] = unhealthy(status.members[2].clone());
        assert_eq!(
            next_step(&observe(3, 3, pods.clone(), Some(status.clone()))),
            Step::RemoveMember { pod: Some("vault-2".into()), node_id: 3, reason: Removal::Wiped }
        );
        status.members.pop();
        match next_step(&observe(3, 3, pods, Some(status))) {
            Step::AddLearner { pod, learner } => {
                assert_eq!(pod, "vault-2");
                assert!(!learner.replace);
            }
            other => panic!("expected the pod to be added again, got {other:?}"),
        }
    }

    #[test]
    fn an_unhealthy_member_without_a_pod_is_removed() {
        let (pods, mut status) = healthy(3);
        let mut stranger = unhealthy(voter(0, 9));
        stranger.raft_address = "somewhere-else:3001".into();
        status.members.push(stranger);
        assert_eq!(
            next_step(&observe(3, 3, pods.clone(), Some(status.clone()))),
            Step::RemoveMember { pod: None, node_id: 9, reason: Removal::Orphaned }
        );
        // Health unknown counts as unhealthy.
        status.members[3].healthy = None;
        assert_eq!(
            next_step(&observe(3, 3, pods, Some(status))),
            Step::RemoveMember { pod: None, node_id: 9, reason: Removal::Orphaned }
        );
    }

    #[test]
    fn a_healthy_member_whose_address_matches_no_pod_is_never_removed() {
        let (pods, mut status) = healthy(3);
        let mut stranger = voter(0, 9);
        // The same pod under its fully qualified name: a naming mismatch, not a dead node.
        stranger.raft_address = "vault-0.vault-headless.pii.svc.cluster.local:3001".into();
        status.members.push(stranger);
        let step = next_step(&observe(3, 3, pods, Some(status)));
        assert_eq!(
            step,
            Step::Wait(Wait::ForeignMember {
                node_id: 9,
                raft_address: "vault-0.vault-headless.pii.svc.cluster.local:3001".into()
            })
        );
        let Step::Wait(wait) = step else { unreachable!() };
        assert!(wait.is_problem(), "reported for a human to decide");

        // Beyond the StatefulSet (scaled down by hand), still answering: kept until it stops.
        let (pods, status) = healthy(5);
        let observation = observe(5, 3, pods[..3].to_vec(), Some(status));
        assert_eq!(
            next_step(&observation),
            Step::Wait(Wait::ForeignMember { node_id: 4, raft_address: names().raft_address(3) })
        );
    }

    #[test]
    fn a_member_whose_pod_runs_another_node_is_removed() {
        let (mut pods, status) = healthy(3);
        pods[2] = answered(NodeState::Follower, Some(7));
        assert_eq!(
            next_step(&observe(3, 3, pods, Some(status))),
            Step::RemoveMember {
                pod: Some("vault-2".into()),
                node_id: 3,
                reason: Removal::Replaced { pod_node_id: 7 }
            }
        );
    }

    #[test]
    fn a_pod_of_another_cluster_is_reported_not_added() {
        let (mut pods, mut status) = healthy(3);
        status.members.pop();
        pods[2] = answered(NodeState::Follower, Some(7));
        assert_eq!(
            next_step(&observe(3, 3, pods, Some(status))),
            Step::Wait(Wait::StalePod { pod: "vault-2".into(), node_id: Some(7) })
        );
    }

    #[test]
    fn a_complete_healthy_cluster_has_converged() {
        let (pods, status) = healthy(3);
        let observation = observe(3, 3, pods, Some(status));
        assert_eq!(next_step(&observation), Step::Converged);
        assert_eq!(stateful_set_replicas(&observation, &Step::Converged), Some(3));
    }

    /// Every combination of a small state space: the safety rules hold for whatever step is
    /// chosen.
    #[test]
    fn safety_rules_hold_in_every_observed_state() {
        let mut checked = 0;
        for desired in [1, 3, 5] {
            for set in 1..=5 {
                for members in 0..=set {
                    for health in 0u32..(1 << members) {
                        for last_is_learner in [false, true] {
                            for last_is_foreign in [false, true] {
                                let shape = Shape { last_is_learner, last_is_foreign };
                                for pod_states in 0u32..shape.pod_states().pow(set as u32) {
                                    let observation = enumerated(desired, set, members, health, shape, pod_states);
                                    check_safety(&observation, &next_step(&observation));
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000, "enumerated {checked} states");
    }

    /// What a pod may say: nothing, uninitialised, its member's node id, another node id.
    const POD_STATES: u32 = 4;

    #[derive(Clone, Copy)]
    struct Shape {
        /// The last member (of several) is a learner.
        last_is_learner: bool,
        /// The last member's address matches no pod.
        last_is_foreign: bool,
    }

    impl Shape {
        /// How many pod states are combined: with a foreign member, the first three only
        /// (that keeps the enumeration fast in debug builds).
        fn pod_states(self) -> u32 {
            if self.last_is_foreign {
                POD_STATES - 1
            } else {
                POD_STATES
            }
        }
    }

    fn enumerated(desired: i32, set: i32, members: i32, health: u32, shape: Shape, states: u32) -> Observation {
        let cluster = (members > 0).then(|| {
            let list = (0..members)
                .map(|i| {
                    let last = i == members - 1;
                    let mut member = if shape.last_is_learner && last && i > 0 {
                        learner(i, i as u64 + 1, Some(0))
                    } else {
                        voter(i, i as u64 + 1)
                    };
                    if shape.last_is_foreign && last {
                        member.raft_address = format!("elsewhere-{i}:3001");
                    }
                    member.healthy = Some(health & (1 << i) != 0);
                    member
                })
                .collect();
            cluster(Some(1), list)
        });
        let pods = (0..set)
            .map(|i| match (states / shape.pod_states().pow(i as u32)) % shape.pod_states() {
                0 => PodState::Unreachable,
                1 => uninitialized(),
                2 => answered(NodeState::Follower, Some(i as u64 + 1)),
                _ => answered(NodeState::Follower, Some(i as u64 + 50)),
            })
            .collect();
        observe(desired, set, pods, cluster)
    }

    fn check_safety(observation: &Observation, step: &Step) {
        let members = observation.cluster.as_ref().map(|c| c.members.clone()).unwrap_or_default();
        let all_healthy = members.iter().all(is_healthy);
        let member_at =
            |ordinal: i32| members.iter().any(|m| ordinal_of_member(&observation.names, m) == Some(ordinal));
        match step {
            Step::Bootstrap { .. } => {
                assert!(observation.cluster.is_none() && !observation.had_members, "{observation:?}")
            }
            Step::AddLearner { pod, .. } => {
                assert!(all_healthy, "add while unhealthy: {observation:?}");
                let ordinal = observation.names.ordinal_of(pod).unwrap();
                assert_eq!(observation.pods.get(&ordinal), Some(&uninitialized()));
                assert!(!member_at(ordinal), "added a pod that is a member: {observation:?}");
            }
            Step::Promote { node_id, .. } => {
                assert!(all_healthy, "promote while unhealthy: {observation:?}");
                assert!(members.iter().any(|m| m.id == *node_id && !m.voter));
            }
            Step::RemoveMember { node_id, reason, .. } => {
                assert!(
                    members.iter().filter(|m| m.id != *node_id).all(is_healthy),
                    "removal while another member is unhealthy: {observation:?}"
                );
                let member = members.iter().find(|m| m.id == *node_id).expect("removes a member");
                let set = observation.stateful_set_replicas.unwrap_or(0);
                let ordinal = ordinal_of_member(&observation.names, member).filter(|o| *o < set);
                let pod = ordinal.and_then(|o| observation.pods.get(&o));
                match reason {
                    Removal::Orphaned => {
                        assert!(!is_healthy(member), "removed a healthy member as orphaned: {observation:?}");
                        assert_eq!(ordinal, None, "{observation:?}");
                    }
                    Removal::Replaced { pod_node_id } => {
                        assert!(
                            matches!(pod, Some(PodState::Answered { id: Some(id), .. }) if id == pod_node_id && *id != member.id),
                            "{observation:?}"
                        );
                    }
                    Removal::Wiped => assert_eq!(pod, Some(&uninitialized()), "{observation:?}"),
                    Removal::ScaleDown => {
                        assert!(set > observation.desired_replicas, "{observation:?}");
                        assert_eq!(ordinal, Some(set - 1), "{observation:?}");
                    }
                }
            }
            Step::ResizeStatefulSet { from, to } if to < from => {
                assert!((*to..*from).all(|ordinal| !member_at(ordinal)), "shrank under a member: {observation:?}");
            }
            Step::ResizeStatefulSet { .. } => assert!(all_healthy, "grew while unhealthy: {observation:?}"),
            Step::Wait(_) | Step::Converged => {}
        }
    }
}
