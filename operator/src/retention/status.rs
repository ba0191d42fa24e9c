//! The `RetentionPolicy` status, computed from what a reconcile did and what the vault's
//! run history says — never from the Jobs alone (a Job that succeeded says nothing about
//! what the vault changed).
//!
//! Conditions (each with `observedGeneration`, a reason and a message):
//! - `Ready`: the CronJob and its token are in place, the vault answers for the policy's
//!   runs, and the last scheduled run did not fail. Reason `Scheduled` or `Suspended`.
//! - `Degraded`: what needs attention, most pressing first: a failure that kept the CronJob
//!   from being applied (e.g. `VaultNotFound`), a run history the vault did not give
//!   (`RunsUnavailable`), a failed scheduled run (`LastRunFailed`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use strongroom_admin_api::retention::RunReport;

use crate::controller_kit::condition;
use crate::crd::retention_policy::{IssuedToken, LastRun};
use crate::crd::{RetentionPolicy, RetentionPolicyStatus};
use crate::piivault::status::Explanation;

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";

/// What the vault's run history said.
#[derive(Clone, Debug, PartialEq)]
pub enum Runs {
    /// Not asked (the reconcile stopped before).
    NotAsked,
    /// The newest run of this policy, if it has run.
    Read(Option<RunReport>),
    /// The vault did not answer; why.
    Unavailable(String),
}

/// What a reconcile did and saw, for the status.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// A failure that stopped the reconcile before the CronJob was in place.
    pub failure: Option<Explanation>,
    /// The CronJob, when it was applied.
    pub cron_job: Option<String>,
    /// The token the Jobs use, when one is in place.
    pub token: Option<IssuedToken>,
    pub runs: Runs,
    /// Why the last scheduled Job failed, when it did (from the CronJob's status).
    pub last_job_failed: Option<String>,
    /// The next start, when the CronJob is in place and not suspended.
    pub next_run: Option<Timestamp>,
}

/// A run report as the status shows it.
pub fn last_run(report: &RunReport) -> LastRun {
    let time =
        |ms: u64| Time(Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX));
    LastRun {
        time: time(report.finished_at),
        started: time(report.started_at),
        matched: i64::try_from(report.matched).unwrap_or(i64::MAX),
        changed: i64::try_from(report.changed).unwrap_or(i64::MAX),
        dry_run: report.dry_run,
        audit_event_id: report.audit_event_id.clone(),
    }
}

/// The status to write after a reconcile.
pub fn compute(policy: &RetentionPolicy, outcome: &Outcome, now: Timestamp) -> RetentionPolicyStatus {
    let previous = policy.status.as_ref();
    let generation = policy.metadata.generation;
    let problem: Option<Explanation> = match (&outcome.failure, &outcome.runs, &outcome.last_job_failed) {
        (Some(failure), _, _) => Some(failure.clone()),
        (None, Runs::Unavailable(why), _) => Some(Explanation {
            reason: "RunsUnavailable",
            message: format!("cannot read the policy's runs from the vault: {why}"),
        }),
        (None, _, Some(why)) => Some(Explanation { reason: "LastRunFailed", message: why.clone() }),
        (None, _, None) => None,
    };
    let ready = match &problem {
        Some(problem) => (false, problem.reason, problem.message.clone()),
        None if policy.spec.suspend => (true, "Suspended", "suspended: the CronJob starts no new runs".to_string()),
        None => {
            let next = outcome.next_run.map_or(String::new(), |next| format!("; next run at {next}"));
            (true, "Scheduled", format!("runs on {:?} (UTC){next}", policy.spec.schedule))
        }
    };
    let degraded = match &problem {
        Some(problem) => (true, problem.reason, problem.message.clone()),
        None => (false, "AsExpected", "nothing needs attention".to_string()),
    };
    let last_run = match &outcome.runs {
        Runs::Read(Some(report)) => Some(last_run(report)),
        Runs::Read(None) => None,
        // Unobserved: what the vault said last time still holds.
        Runs::NotAsked | Runs::Unavailable(_) => previous.and_then(|previous| previous.last_run.clone()),
    };
    let earlier = previous.map_or(&[][..], |previous| &previous.conditions[..]);
    RetentionPolicyStatus {
        observed_generation: generation,
        conditions: vec![
            condition(earlier, generation, now, READY, ready.0, ready.1, ready.2),
            condition(earlier, generation, now, DEGRADED, degraded.0, degraded.1, degraded.2),
        ],
        last_run,
        next_run: outcome.next_run.map(Time),
        cron_job: outcome.cron_job.clone().or_else(|| previous.and_then(|previous| previous.cron_job.clone())),
        // Kept until a new token replaces it: the finalizer revokes what the status names.
        token: outcome.token.clone().or_else(|| previous.and_then(|previous| previous.token.clone())),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    use super::*;
    use crate::retention::test_support::{issue_example, run_report};

    fn now() -> Timestamp {
        "2026-11-23T05:00:00Z".parse().unwrap()
    }

    fn scheduled() -> Outcome {
        Outcome {
            failure: None,
            cron_job: Some("retention-drop-phone".into()),
            token: Some(IssuedToken {
                id: "tok-1".into(),
                secret_name: "retention-drop-phone-token".into(),
                vault_uid: "vault-uid".into(),
            }),
            runs: Runs::Read(None),
            last_job_failed: None,
            next_run: Some("2026-11-24T03:00:00Z".parse().unwrap()),
        }
    }

    fn get<'a>(status: &'a RetentionPolicyStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_scheduled_policy_is_ready_with_its_next_run() {
        let status = compute(&issue_example(), &scheduled(), now());
        assert_eq!(get(&status, READY).status, "True");
        assert_eq!(get(&status, READY).reason, "Scheduled");
        assert!(get(&status, READY).message.contains("2026-11-24T03:00:00Z"));
        assert_eq!(get(&status, READY).observed_generation, Some(1));
        assert_eq!(get(&status, DEGRADED).status, "False");
        assert_eq!(status.next_run, Some(Time("2026-11-24T03:00:00Z".parse().unwrap())));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.last_run, None);
    }

    #[test]
    fn the_last_run_comes_from_the_report() {
        let mut outcome = scheduled();
        outcome.runs = Runs::Read(Some(run_report(12, 5)));
        let status = compute(&issue_example(), &outcome, now());
        let run = status.last_run.unwrap();
        assert_eq!((run.matched, run.changed, run.dry_run), (12, 5, false));
        assert_eq!(run.audit_event_id, "evt-42");
        assert_eq!(run.time, Time("2026-11-23T03:00:05Z".parse().unwrap()));
        assert_eq!(run.started, Time("2026-11-23T03:00:00Z".parse().unwrap()));
    }

    #[test]
    fn an_unanswered_run_history_keeps_the_last_run_and_degrades() {
        let mut policy = issue_example();
        policy.status =
            Some(compute(&policy, &Outcome { runs: Runs::Read(Some(run_report(1, 1))), ..scheduled() }, now()));
        let outcome = Outcome { runs: Runs::Unavailable("connection refused".into()), ..scheduled() };
        let status = compute(&policy, &outcome, now());
        assert_eq!(status.last_run.as_ref().unwrap().changed, 1);
        assert_eq!(get(&status, DEGRADED).reason, "RunsUnavailable");
        assert!(get(&status, DEGRADED).message.contains("connection refused"));
        assert_eq!(get(&status, READY).status, "False");
    }

    #[test]
    fn a_failure_comes_before_a_failed_run_and_suspension_is_said() {
        let outcome = Outcome {
            failure: Some(Explanation { reason: "VaultNotFound", message: "no PiiVault customers".into() }),
            last_job_failed: Some("the Job failed".into()),
            ..scheduled()
        };
        let status = compute(&issue_example(), &outcome, now());
        assert_eq!(
            (get(&status, READY).status.as_str(), get(&status, READY).reason.as_str()),
            ("False", "VaultNotFound")
        );
        assert_eq!(get(&status, DEGRADED).reason, "VaultNotFound");

        let outcome = Outcome { last_job_failed: Some("the Job failed".into()), ..scheduled() };
        assert_eq!(get(&compute(&issue_example(), &outcome, now()), DEGRADED).reason, "LastRunFailed");

        let mut policy = issue_example();
        policy.spec.suspend = true;
        let status = compute(&policy, &Outcome { next_run: None, ..scheduled() }, now());
        assert_eq!(get(&status, READY).reason, "Suspended");
        assert_eq!(status.next_run, None);
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let mut policy = issue_example();
        policy.status = Some(compute(&policy, &scheduled(), now()));
        let later: Timestamp = "2026-11-23T06:00:00Z".parse().unwrap();
        let status = compute(&policy, &scheduled(), later);
        assert_eq!(get(&status, READY).last_transition_time, Time(now()));
        let failed = Outcome { last_job_failed: Some("failed".into()), ..scheduled() };
        assert_eq!(get(&compute(&policy, &failed, later), READY).last_transition_time, Time(later));
    }
}
