//! The `PiiVault` status, computed from what the vault reported and the step the operator
//! chose — never guessed from Kubernetes objects alone.
//!
//! Conditions (each with `observedGeneration`, a reason and a message):
//! - `Ready`: every desired node is a healthy voter and nothing is left to do.
//! - `Available`: a leader and a quorum of healthy voters: the vault serves requests.
//! - `Progressing`: a restore, a membership change or a resize is under way (or waits for
//!   a pod).
//! - `Degraded`: something needs attention; the reason says what (a failure that stopped
//!   the reconcile, such as a missing Secret, before a failed membership change, before a
//!   problem the membership logic waits on).
//! - `InsecureKeyStorage` (only while `hsm.softhsm` is used, always `True`, reason
//!   `SoftHsmDevelopmentMode`): a warning that the KEK is kept in a Secret.
//! - `BackupsHealthy` (only with `spec.backup`): `False` when the last scheduled backup
//!   (reason `LastBackupFailed`) or the last restore drill (`RestoreDrillFailed`) did not
//!   succeed.

use k8s_openapi::jiff::Timestamp;
use strongroom_admin_api::cluster::Member;

use super::backups::Backups;
use super::membership::{ordinal_of_member, Observation, Removal, Step, Wait};
use super::names::VaultNames;
use crate::controller_kit;
use crate::crd::piivault::{BackupStatus, MemberRole, MemberStatus, Phase};
use crate::crd::{PiiVault, PiiVaultStatus};

pub const READY: &str = "Ready";
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const INSECURE_KEY_STORAGE: &str = "InsecureKeyStorage";
pub const BACKUPS_HEALTHY: &str = "BackupsHealthy";
/// The reason of `InsecureKeyStorage` and of its Warning Event.
pub const SOFTHSM_DEVELOPMENT_MODE: &str = "SoftHsmDevelopmentMode";

/// Why a SoftHSM vault's key storage is insecure (the `InsecureKeyStorage` message).
pub fn softhsm_warning(names: &VaultNames) -> String {
    format!(
        "hsm.softhsm is for development only: the raw KEK is kept in the Secret {}, readable by anyone who may \
         read Secrets of this namespace and stored in etcd and its backups; never keep real personal data here",
        names.softhsm_secret()
    )
}

/// Whether `status` already carries the `InsecureKeyStorage` warning.
pub fn warns_of_insecure_key_storage(status: Option<&PiiVaultStatus>) -> bool {
    status.is_some_and(|status| {
        status.conditions.iter().any(|condition| condition.type_ == INSECURE_KEY_STORAGE && condition.status == "True")
    })
}

/// A condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub reason: &'static str,
    pub message: String,
}

impl Explanation {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// What a reconcile saw and did, for the status.
#[derive(Clone, Debug)]
pub struct Outcome<'a> {
    pub observation: &'a Observation,
    pub step: &'a Step,
    /// Label of the active KEK, as a node reported it.
    pub kek: Option<String>,
    /// Why the cluster's state could not be read, when it could not.
    pub observe_error: Option<String>,
    /// A step that was tried and failed.
    pub step_error: Option<Explanation>,
    /// A failure that stopped the reconcile before any step (a missing, incomplete or
    /// conflicting Secret, a refused apply): nothing was changed.
    pub failure: Option<Explanation>,
    pub paused: bool,
    /// What the backup children said, when they were looked at.
    pub backups: Option<&'a Backups>,
}

/// Explains a step: the reason of `Progressing` (or of `Degraded` for problem waits).
pub fn explain(step: &Step, observe_error: Option<&str>) -> Explanation {
    match step {
        Step::Bootstrap { pod, .. } => Explanation::new("Bootstrapping", format!("initialising the cluster on {pod}")),
        Step::AddLearner { pod, .. } => Explanation::new("AddingLearner", format!("adding {pod} as a learner")),
        Step::Promote { pod, node_id } => {
            Explanation::new("PromotingLearner", format!("promoting {pod} (node {node_id}) to voter"))
        }
        Step::RemoveMember { pod, node_id, reason } => {
            let pod = pod.as_deref().unwrap_or("no pod");
            let why = match reason {
                Removal::ScaleDown => "scaling down".to_string(),
                Removal::Wiped => "its pod lost its data and rejoins under a new id".to_string(),
                Removal::Orphaned => "no pod has its address and the leader does not hear from it".to_string(),
                Removal::Replaced { pod_node_id } => format!("its pod now runs node {pod_node_id}"),
            };
            Explanation::new("RemovingMember", format!("removing node {node_id} ({pod}) from the cluster: {why}"))
        }
        Step::ResizeStatefulSet { from, to } => {
            Explanation::new("ScalingStatefulSet", format!("resizing the StatefulSet from {from} to {to} pods"))
        }
        Step::Converged => Explanation::new("Converged", "every node is a healthy voter"),
        Step::Wait(wait) => match wait {
            Wait::PodNotReady { pod } => Explanation::new("WaitingForPod", format!("waiting for {pod} to answer")),
            Wait::LearnerCatchingUp { pod, lag } => Explanation::new(
                "LearnerCatchingUp",
                match lag {
                    Some(lag) => format!("{pod} is {lag} log entries behind the leader"),
                    None => format!("{pod} has not reported its progress yet"),
                },
            ),
            Wait::VaultUnreachable => Explanation::new(
                "VaultUnreachable",
                match observe_error {
                    Some(error) => format!("cannot read the cluster state: {error}"),
                    None => "no member answered with the cluster state".to_string(),
                },
            ),
            Wait::ClusterLost => Explanation::new(
                "ClusterLost",
                "every pod is uninitialised although the vault had members; not bootstrapping an empty \
                 cluster over lost data (delete the PiiVault's status or restore the volumes)",
            ),
            Wait::NoLeader => Explanation::new("NoLeader", "the cluster has no leader"),
            Wait::MembersUnhealthy { node_ids } => Explanation::new(
                "MembersUnhealthy",
                format!("membership changes wait until nodes {node_ids:?} are healthy"),
            ),
            Wait::ForeignMember { node_id, raft_address } => Explanation::new(
                "ForeignMember",
                format!(
                    "node {node_id} ({raft_address}) is a healthy member but no pod of this vault has its address; \
                     the operator does not remove it and makes no other change meanwhile (remove it through \
                     /v1/sys/cluster if it should go)"
                ),
            ),
            Wait::Restoring { job } => Explanation::new(
                "Restoring",
                format!("the Job {job} restores the first node's volume from a backup; the StatefulSet follows"),
            ),
            Wait::RestoreFailed { job, message } => Explanation::new(
                "RestoreFailed",
                format!(
                    "the Job {job} could not restore the backup ({message}); its pod's log says why \
                     (kubectl logs job/{job}). Fix the cause, then delete the Job to try again"
                ),
            ),
            Wait::RestoreRefused { message } => Explanation::new("RestoreRefused", message.clone()),
            Wait::NotRestored { pod } => Explanation::new(
                "NotRestored",
                format!(
                    "{pod} answers uninitialised although this vault is made from a backup: its volume does not \
                     hold the restore (was it replaced?); the operator does not start an empty vault in its place"
                ),
            ),
            Wait::StalePod { pod, node_id } => Explanation::new(
                "StalePod",
                format!(
                    "{pod} holds data of node {} which is not a member; delete its PersistentVolumeClaim \
                     and pod so it rejoins",
                    node_id.map_or("?".to_string(), |id| id.to_string())
                ),
            ),
        },
    }
}

fn member_status(names: &VaultNames, member: &Member) -> MemberStatus {
    MemberStatus {
        pod: ordinal_of_member(names, member).map(|ordinal| names.pod(ordinal)),
        node_id: member.id,
        role: if member.voter { MemberRole::Voter } else { MemberRole::Learner },
        lag: member.lag,
        healthy: member.healthy == Some(true),
    }
}

/// The status to write after a reconcile.
pub fn compute(vault: &PiiVault, outcome: &Outcome<'_>, now: Timestamp) -> PiiVaultStatus {
    let names = &outcome.observation.names;
    let generation = vault.metadata.generation;
    let previous = vault.status.as_ref();
    let members_seen = outcome.observation.cluster.as_ref().map(|cluster| cluster.members.as_slice()).unwrap_or(&[]);

    let mut members: Vec<MemberStatus> = match &outcome.observation.cluster {
        Some(_) => members_seen.iter().map(|member| member_status(names, member)).collect(),
        // Unobserved: keep the membership the vault last reported (so the vault is never
        // mistaken for a new one), with nothing claimed about its health.
        None => previous
            .map(|previous| previous.members.iter().map(|m| MemberStatus { lag: None, healthy: false, ..m.clone() }))
            .into_iter()
            .flatten()
            .collect(),
    };
    members.sort_by_key(|member| (member.pod.as_deref().and_then(|pod| names.ordinal_of(pod)), member.node_id));
    let voters = members.iter().filter(|m| m.role == MemberRole::Voter).count() as i32;
    let healthy_voters = members.iter().filter(|m| m.role == MemberRole::Voter && m.healthy).count() as i32;
    let quorum = voters / 2 + 1;
    let leader_id = outcome.observation.cluster.as_ref().and_then(|cluster| cluster.leader);
    let leader = leader_id
        .and_then(|id| members.iter().find(|m| m.node_id == id))
        .map(|m| m.pod.clone().unwrap_or_else(|| format!("node {}", m.node_id)));

    let progress = explain(outcome.step, outcome.observe_error.as_deref());
    let problem = match (&outcome.failure, &outcome.step_error, outcome.step) {
        (Some(failure), _, _) => Some(failure.clone()),
        (None, Some(error), _) => Some(error.clone()),
        (None, None, Step::Wait(wait)) if wait.is_problem() => Some(progress.clone()),
        _ => None,
    };
    let available = leader.is_some() && voters > 0 && healthy_voters >= quorum;
    let ready = *outcome.step == Step::Converged
        && problem.is_none()
        && healthy_voters == vault.spec.replicas
        && !outcome.paused;
    let progressing = !outcome.paused && problem.is_none() && *outcome.step != Step::Converged;

    let available_why = if available {
        Explanation::new("QuorumAvailable", format!("{healthy_voters} of {voters} voters are healthy"))
    } else if voters == 0 {
        Explanation::new("NotInitialized", "the cluster has no members yet")
    } else {
        Explanation::new("QuorumLost", format!("{healthy_voters} of {voters} voters are healthy, {quorum} needed"))
    };
    let paused = Explanation::new("Paused", "spec.paused is set: no changes are made");
    let ready_why = match (&problem, outcome.paused, ready) {
        (Some(problem), _, _) => problem.clone(),
        (None, true, _) => paused.clone(),
        (None, false, true) => Explanation::new("ClusterReady", format!("{healthy_voters} healthy voters")),
        (None, false, false) => progress.clone(),
    };
    let progressing_why = if outcome.paused { paused.clone() } else { progress.clone() };
    let degraded_why = problem.clone().unwrap_or_else(|| Explanation::new("AsExpected", "no problem observed"));

    let phase = if outcome.paused {
        Phase::Paused
    } else if problem.is_some() {
        Phase::Degraded
    } else if ready {
        Phase::Running
    } else if members.is_empty() {
        match outcome.step {
            Step::Bootstrap { .. } => Phase::Initializing,
            Step::Wait(Wait::Restoring { .. }) => Phase::Restoring,
            _ => Phase::Pending,
        }
    } else {
        Phase::Scaling
    };

    let earlier = previous.map_or(&[][..], |previous| &previous.conditions[..]);
    let condition = |type_: &str, status: bool, why: &Explanation| {
        controller_kit::condition(earlier, generation, now, type_, status, why.reason, why.message.clone())
    };
    let mut conditions = vec![
        condition(READY, ready, &ready_why),
        condition(AVAILABLE, available, &available_why),
        condition(PROGRESSING, progressing, &progressing_why),
        condition(DEGRADED, problem.is_some(), &degraded_why),
    ];
    if vault.spec.hsm.softhsm.is_some() {
        let why = Explanation::new(SOFTHSM_DEVELOPMENT_MODE, softhsm_warning(names));
        conditions.push(condition(INSECURE_KEY_STORAGE, true, &why));
    }
    let mut backups = None;
    if let Some(spec) = &vault.spec.backup {
        match outcome.backups {
            Some(seen) => {
                let failed = seen.failed.clone().or_else(|| seen.drill_failed.clone());
                let why = failed.clone().unwrap_or_else(|| match (&spec.schedule, &seen.last_successful) {
                    (None, _) => {
                        Explanation::new("LedgerShipped", "the erasure ledger is shipped; no backups are scheduled")
                    }
                    (Some(_), None) => Explanation::new("NoBackupYet", "no scheduled backup has run yet"),
                    (Some(_), Some(_)) => {
                        Explanation::new("LastBackupSucceeded", "the last scheduled backup succeeded")
                    }
                });
                conditions.push(condition(BACKUPS_HEALTHY, failed.is_none(), &why));
                backups = Some(BackupStatus {
                    last_successful_backup: seen.last_successful.clone(),
                    next_scheduled_backup: seen.next.clone(),
                    last_successful_restore_drill: seen.last_successful_drill.clone(),
                });
            }
            // Not looked at this time: what was seen last stands.
            None => {
                conditions.extend(earlier.iter().filter(|c| c.type_ == BACKUPS_HEALTHY).cloned());
                backups = previous.and_then(|previous| previous.backups.clone());
            }
        }
    }
    PiiVaultStatus {
        observed_generation: generation,
        conditions,
        phase: Some(phase),
        ready_replicas: healthy_voters,
        leader,
        members,
        failure_tolerance: (healthy_voters - quorum).max(0),
        kek_version: outcome.kek.clone(),
        backups,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use strongroom_admin_api::cluster::{ClusterStatus, ErasureCompaction, NodeState};

    use super::*;
    use crate::piivault::builders::test_support::softhsm_vault;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn member(ordinal: i32, id: u64, voter: bool, healthy: bool) -> Member {
        let names = VaultNames::new("vault", "pii");
        Member {
            id,
            raft_address: names.raft_address(ordinal),
            api_address: names.api_address(ordinal),
            voter,
            matched_index: None,
            lag: Some(if voter { 0 } else { 7 }),
            healthy: Some(healthy),
        }
    }

    fn observation(desired: i32, members: Vec<Member>, leader: Option<u64>) -> Observation {
        Observation {
            names: VaultNames::new("vault", "pii"),
            desired_replicas: desired,
            stateful_set_replicas: Some(desired),
            pods: BTreeMap::new(),
            cluster: Some(ClusterStatus {
                node_id: leader,
                state: NodeState::Leader,
                leader,
                term: 1,
                last_log_index: None,
                applied_index: None,
                snapshot_index: None,
                purged_index: None,
                members,
                erasures: ErasureCompaction::default(),
            }),
            had_members: true,
            restore: None,
            from_backup: false,
        }
    }

    fn outcome<'a>(observation: &'a Observation, step: &'a Step) -> Outcome<'a> {
        Outcome {
            observation,
            step,
            kek: Some("strongroom-kek-1".into()),
            observe_error: None,
            step_error: None,
            failure: None,
            paused: false,
            backups: None,
        }
    }

    fn get<'a>(status: &'a PiiVaultStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn a_converged_cluster_is_ready_and_available() {
        let observation = observation(3, (0..3).map(|o| member(o, o as u64 + 1, true, true)).collect(), Some(2));
        let status = compute(&softhsm_vault(3), &outcome(&observation, &Step::Converged), now());
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!(status.ready_replicas, 3);
        assert_eq!(status.leader.as_deref(), Some("vault-1"));
        assert_eq!(status.failure_tolerance, 1);
        assert_eq!(status.kek_version.as_deref(), Some("strongroom-kek-1"));
        assert_eq!(status.observed_generation, Some(1));
        for (type_, expected) in
            [("Ready", "True"), ("Available", "True"), ("Progressing", "False"), ("Degraded", "False")]
        {
            let condition = get(&status, type_);
            assert_eq!(condition.status, expected, "{type_}");
            assert_eq!(condition.observed_generation, Some(1));
            assert!(!condition.reason.is_empty());
        }
        let pods: Vec<_> = status.members.iter().map(|m| m.pod.clone().unwrap()).collect();
        assert_eq!(pods, vec!["vault-0", "vault-1", "vault-2"]);
    }

    #[test]
    fn failure_tolerance_counts_healthy_voters_above_the_quorum() {
        let cases =
            [(5, vec![true; 5], 2), (5, vec![true, true, true, true, false], 1), (3, vec![true, false, true], 0)];
        for (voters, health, tolerance) in cases {
            let members = health.iter().enumerate().map(|(i, h)| member(i as i32, i as u64 + 1, true, *h)).collect();
            let observation = observation(voters, members, Some(1));
            let step = Step::Wait(Wait::MembersUnhealthy { node_ids: vec![] });
            let status = compute(&softhsm_vault(voters), &outcome(&observation, &step), now());
            assert_eq!(status.failure_tolerance, tolerance, "{health:?}");
        }
        // Learners do not vote.
        let members = vec![member(0, 1, true, true), member(1, 2, false, true)];
        let observation = observation(3, members, Some(1));
        let status = compute(&softhsm_vault(3), &outcome(&observation, &Step::Converged), now());
        assert_eq!((status.ready_replicas, status.failure_tolerance), (1, 0));
        assert_eq!(status.members[1].role, MemberRole::Learner);
        assert_eq!(status.members[1].lag, Some(7));
    }

    #[test]
    fn a_lost_quorum_is_unavailable_and_degraded() {
        let members = vec![member(0, 1, true, true), member(1, 2, true, false), member(2, 3, true, false)];
        let observation = observation(3, members, Some(1));
        let step = Step::Wait(Wait::MembersUnhealthy { node_ids: vec![2, 3] });
        let status = compute(&softhsm_vault(3), &outcome(&observation, &step), now());
        assert_eq!(get(&status, "Available").status, "False");
        assert_eq!(get(&status, "Available").reason, "QuorumLost");
        assert_eq!(get(&status, "Degraded").reason, "MembersUnhealthy");
        assert_eq!(status.phase, Some(Phase::Degraded));
    }

    #[test]
    fn a_change_in_progress_is_progressing_not_ready() {
        let observation = observation(3, vec![member(0, 1, true, true)], Some(1));
        let step = Step::Promote { pod: "vault-1".into(), node_id: 2 };
        let status = compute(&softhsm_vault(3), &outcome(&observation, &step), now());
        assert_eq!(get(&status, "Progressing").status, "True");
        assert_eq!(get(&status, "Progressing").reason, "PromotingLearner");
        assert_eq!(get(&status, "Ready").status, "False");
        assert_eq!(get(&status, "Degraded").status, "False");
        assert_eq!(status.phase, Some(Phase::Scaling));
    }

    #[test]
    fn a_failed_step_is_degraded_with_its_message() {
        let observation = observation(3, vec![member(0, 1, true, true)], Some(1));
        let step = Step::Promote { pod: "vault-1".into(), node_id: 2 };
        let mut outcome = outcome(&observation, &step);
        outcome.step_error = Some(Explanation::new("MembershipChangeFailed", "vault-0 answered 500: boom"));
        let status = compute(&softhsm_vault(3), &outcome, now());
        let degraded = get(&status, "Degraded");
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "MembershipChangeFailed"));
        assert_eq!(degraded.message, "vault-0 answered 500: boom");
    }

    #[test]
    fn a_failure_before_the_step_is_degraded_with_its_reason_and_never_ready() {
        let observation = observation(3, (0..3).map(|o| member(o, o as u64 + 1, true, true)).collect(), Some(1));
        let mut outcome = outcome(&observation, &Step::Converged);
        outcome.failure = Some(Explanation::new("SecretMissing", "Secret vault-softhsm is missing"));
        outcome.step_error = Some(Explanation::new("MembershipChangeFailed", "boom"));
        let status = compute(&softhsm_vault(3), &outcome, now());
        let degraded = get(&status, "Degraded");
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "SecretMissing"));
        assert_eq!(degraded.message, "Secret vault-softhsm is missing");
        assert_eq!(get(&status, "Ready").status, "False");
        assert_eq!(get(&status, "Ready").reason, "SecretMissing");
        assert_eq!(get(&status, "Progressing").status, "False");
        assert_eq!(get(&status, "Available").status, "True", "the cluster itself still serves");
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(status.members.len(), 3, "members are still reported");
    }

    #[test]
    fn a_learner_catching_up_during_a_scale_up_is_progressing_not_degraded() {
        let mut members: Vec<Member> = (0..3).map(|o| member(o, o as u64 + 1, true, true)).collect();
        members.push(Member { healthy: None, lag: None, ..member(3, 4, false, false) });
        let observation = observation(5, members, Some(1));
        let step = Step::Wait(Wait::LearnerCatchingUp { pod: "vault-3".into(), lag: None });
        let status = compute(&softhsm_vault(5), &outcome(&observation, &step), now());
        assert_eq!(get(&status, "Degraded").status, "False");
        assert_eq!(get(&status, "Progressing").status, "True");
        assert_eq!(get(&status, "Progressing").reason, "LearnerCatchingUp");
        assert_eq!(status.phase, Some(Phase::Scaling));
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let observation = observation(3, (0..3).map(|o| member(o, o as u64 + 1, true, true)).collect(), Some(1));
        let mut vault = softhsm_vault(3);
        let first = compute(&vault, &outcome(&observation, &Step::Converged), now());
        vault.status = Some(first);
        let later = Timestamp::from_second(1_800_000_600).unwrap();
        let second = compute(&vault, &outcome(&observation, &Step::Converged), later);
        assert_eq!(get(&second, "Ready").last_transition_time.0, now(), "unchanged");
        vault.status = Some(second);
        let step = Step::Wait(Wait::NoLeader);
        let third = compute(&vault, &outcome(&observation, &step), later);
        assert_eq!(get(&third, "Ready").last_transition_time.0, later, "flipped to False");
        assert_eq!(get(&third, "Available").last_transition_time.0, now(), "still True");
    }

    #[test]
    fn an_unobserved_cluster_keeps_its_last_members_without_health() {
        let seen = observation(3, (0..3).map(|o| member(o, o as u64 + 1, true, true)).collect(), Some(1));
        let mut vault = softhsm_vault(3);
        vault.status = Some(compute(&vault, &outcome(&seen, &Step::Converged), now()));
        let unseen = Observation { cluster: None, ..seen.clone() };
        let step = Step::Wait(Wait::VaultUnreachable);
        let status = compute(&vault, &outcome(&unseen, &step), now());
        let ids: Vec<u64> = status.members.iter().map(|m| m.node_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(status.members.iter().all(|m| !m.healthy && m.lag.is_none()));
        assert_eq!((status.ready_replicas, status.failure_tolerance, status.leader.clone()), (0, 0, None));
        assert_eq!(get(&status, "Degraded").reason, "VaultUnreachable");
    }

    #[test]
    fn a_paused_vault_reports_paused() {
        let observation = observation(3, (0..3).map(|o| member(o, o as u64 + 1, true, true)).collect(), Some(1));
        let step = Step::ResizeStatefulSet { from: 3, to: 5 };
        let mut outcome = outcome(&observation, &step);
        outcome.paused = true;
        let status = compute(&softhsm_vault(5), &outcome, now());
        assert_eq!(status.phase, Some(Phase::Paused));
        assert_eq!(get(&status, "Progressing").status, "False");
        assert_eq!(get(&status, "Progressing").reason, "Paused");
        assert_eq!(get(&status, "Ready").status, "False");
    }

    #[test]
    fn backups_are_reported_only_with_spec_backup_and_a_failed_one_is_unhealthy() {
        let observation = observation(3, (0..3).map(|o| member(o, o as u64 + 1, true, true)).collect(), Some(1));
        let step = Step::Converged;
        let mut vault = softhsm_vault(3);
        let status = compute(&vault, &outcome(&observation, &step), now());
        assert!(status.backups.is_none() && !status.conditions.iter().any(|c| c.type_ == BACKUPS_HEALTHY));

        vault.spec.backup = Some(crate::crd::piivault::BackupSpec {
            destination: "s3://b/p".into(),
            credentials_secret: "s3".into(),
            schedule: Some("0 2 * * *".into()),
            retention: Default::default(),
            restore_drill: None,
        });
        let last = Time("2027-01-15T02:00:00Z".parse().unwrap());
        let next = Time("2027-01-16T02:00:00Z".parse().unwrap());
        let ok = Backups { last_successful: Some(last.clone()), next: Some(next.clone()), ..Backups::default() };
        let status = compute(&vault, &Outcome { backups: Some(&ok), ..outcome(&observation, &step) }, now());
        let backups = status.backups.clone().unwrap();
        assert_eq!((backups.last_successful_backup, backups.next_scheduled_backup), (Some(last), Some(next)));
        assert_eq!(
            (get(&status, BACKUPS_HEALTHY).status.as_str(), get(&status, BACKUPS_HEALTHY).reason.as_str()),
            ("True", "LastBackupSucceeded")
        );

        let failed = Backups {
            failed: Some(Explanation::new("LastBackupFailed", "the run at 02:00 did not succeed")),
            ..ok.clone()
        };
        let status = compute(&vault, &Outcome { backups: Some(&failed), ..outcome(&observation, &step) }, now());
        assert_eq!(
            (get(&status, BACKUPS_HEALTHY).status.as_str(), get(&status, BACKUPS_HEALTHY).reason.as_str()),
            ("False", "LastBackupFailed")
        );

        // A failed restore drill makes the backups unhealthy too, after a failed backup.
        let drill = Backups {
            drill_failed: Some(Explanation::new("RestoreDrillFailed", "the drill at 04:00 did not succeed")),
            ..ok.clone()
        };
        let drilled = compute(&vault, &Outcome { backups: Some(&drill), ..outcome(&observation, &step) }, now());
        assert_eq!(get(&drilled, BACKUPS_HEALTHY).reason, "RestoreDrillFailed");
        let both = Backups { failed: failed.failed.clone(), ..drill };
        let both = compute(&vault, &Outcome { backups: Some(&both), ..outcome(&observation, &step) }, now());
        assert_eq!(get(&both, BACKUPS_HEALTHY).reason, "LastBackupFailed");

        // Not looked at (the cluster did not answer): the last word stands.
        vault.status = Some(status.clone());
        let kept = compute(&vault, &outcome(&observation, &step), now());
        assert_eq!(kept.backups, status.backups);
        assert_eq!(get(&kept, BACKUPS_HEALTHY).reason, "LastBackupFailed");
    }
}
