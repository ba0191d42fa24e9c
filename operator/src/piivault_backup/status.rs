//! What a `PiiVaultBackup`'s status says, as pure functions of what the reconciler saw:
//! its vault, its Job and the Job's pods, whose `backup` container leaves `vaultd backup`'s
//! report (or, when it fails, the end of its log) as its termination message.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use strongroom_admin_api::backup::TakeReport;

use crate::crd::piivault_backup::BackupPhase;
use crate::crd::PiiVaultBackupStatus;
use crate::piivault::builders::backup::TAKE_CONTAINER;

/// How much of a failed pod's termination message the status keeps (its end).
pub const MESSAGE_TAIL: usize = 1024;

/// What the reconciler saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// Nothing is started yet; why.
    Waiting(String),
    /// The Job runs (or was just created); when it started, once it has.
    Running { job: String, started: Option<Time> },
    /// The Job succeeded; the report its pod left, or why there is none.
    Succeeded { job: String, started: Option<Time>, completed: Option<Time>, report: Result<TakeReport, String> },
    /// No backup is stored: why (and the Job, when there is one).
    Failed { job: Option<String>, started: Option<Time>, message: String },
}

/// The status after `observed`; what `previous` knew and `observed` does not (the Job's
/// name, when it started) is kept.
pub fn compute(previous: &PiiVaultBackupStatus, observed: Observed) -> PiiVaultBackupStatus {
    let kept = PiiVaultBackupStatus {
        job: previous.job.clone(),
        started_at: previous.started_at.clone(),
        ..PiiVaultBackupStatus::default()
    };
    match observed {
        Observed::Waiting(message) => {
            PiiVaultBackupStatus { phase: Some(BackupPhase::Pending), message: Some(message), ..kept }
        }
        Observed::Running { job, started } => PiiVaultBackupStatus {
            phase: Some(BackupPhase::Running),
            started_at: started.or(kept.started_at),
            job: Some(job),
            ..PiiVaultBackupStatus::default()
        },
        Observed::Failed { job, started, message } => PiiVaultBackupStatus {
            phase: Some(BackupPhase::Failed),
            message: Some(message),
            started_at: started.or(kept.started_at),
            job: job.or(kept.job),
            ..PiiVaultBackupStatus::default()
        },
        Observed::Succeeded { job, started, completed, report } => {
            let done = PiiVaultBackupStatus {
                phase: Some(BackupPhase::Completed),
                started_at: started.or(kept.started_at),
                completed_at: completed,
                job: Some(job.clone()),
                ..PiiVaultBackupStatus::default()
            };
            match report {
                Ok(report) => PiiVaultBackupStatus {
                    backup_id: Some(report.backup),
                    destination: Some(report.destination),
                    subjects: Some(i64::try_from(report.subjects).unwrap_or(i64::MAX)),
                    bytes: Some(i64::try_from(report.bytes).unwrap_or(i64::MAX)),
                    message: report.ledger_error.map(|error| {
                        format!("the backup is stored, but the erasure ledger could not be shipped after it: {error}")
                    }),
                    ..done
                },
                // The Job succeeded, so the backup is stored; only its summary is lost.
                Err(why) => PiiVaultBackupStatus {
                    message: Some(format!(
                        "the Job {job} succeeded, but its summary could not be read ({why}); `vaultd backup list` \
                         lists the backup"
                    )),
                    ..done
                },
            }
        }
    }
}

/// How a Job ended, if it has.
#[derive(Clone, Debug, PartialEq)]
pub enum JobEnd {
    Complete {
        completed: Option<Time>,
    },
    /// Its `Failed` condition's reason and message.
    Failed(String),
}

/// The Job's end, from its `Complete` and `Failed` conditions.
pub fn job_end(job: &Job) -> Option<JobEnd> {
    let status = job.status.as_ref()?;
    let holds = |type_: &str| status.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True");
    if let Some(complete) = holds("Complete") {
        let completed = status.completion_time.clone().or_else(|| complete.last_transition_time.clone());
        return Some(JobEnd::Complete { completed });
    }
    holds("Failed").map(|failed| {
        let reason = failed.reason.as_deref().unwrap_or("Failed");
        JobEnd::Failed(match failed.message.as_deref().filter(|message| !message.is_empty()) {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_string(),
        })
    })
}

/// The report the Job's succeeded pod left, or why there is none.
pub fn report(pods: &[Pod]) -> Result<TakeReport, String> {
    let pod = pods.iter().find(|pod| phase(pod) == Some("Succeeded")).ok_or("no succeeded pod of the Job is left")?;
    let message = termination_message(pod).ok_or("its backup container left no termination message")?;
    serde_json::from_str(message.trim())
        .map_err(|error| format!("its termination message is no backup report: {error}"))
}

/// Why the Job failed: its condition, and the end of what its newest failed pod said.
pub fn failure(job: &str, condition: &str, pods: &[Pod]) -> String {
    let newest = pods
        .iter()
        .filter(|pod| phase(pod) == Some("Failed"))
        .max_by_key(|pod| pod.metadata.creation_timestamp.as_ref().map(|time| time.0));
    match newest.and_then(termination_message).map(str::trim).filter(|message| !message.is_empty()) {
        Some(said) => format!("the Job {job} failed ({condition}); its last pod said: {}", tail(said, MESSAGE_TAIL)),
        None => format!("the Job {job} failed ({condition})"),
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// The termination message of the pod's backup container.
fn termination_message(pod: &Pod) -> Option<&str> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let container = statuses.iter().find(|status| status.name == TAKE_CONTAINER)?;
    container.state.as_ref()?.terminated.as_ref()?.message.as_deref()
}

/// The last `max` bytes of `text` (at a character boundary), marked when cut.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use serde_json::json;

    use super::*;
    use crate::piivault_backup::test_support::{pod, take_report};

    fn time(at: &str) -> Time {
        Time(at.parse().unwrap())
    }

    #[test]
    fn a_succeeded_job_completes_the_backup_with_its_report() {
        let previous = compute(
            &PiiVaultBackupStatus::default(),
            Observed::Running { job: "nightly-backup".into(), started: Some(time("2026-11-23T02:00:00Z")) },
        );
        let observed = Observed::Succeeded {
            job: "nightly-backup".into(),
            started: None,
            completed: Some(time("2026-11-23T02:03:00Z")),
            report: Ok(take_report()),
        };
        let status = compute(&previous, observed);
        assert_eq!(status.phase, Some(BackupPhase::Completed));
        assert_eq!(status.backup_id.as_deref(), Some("20261123T020001.123Z-42"));
        assert_eq!(status.destination.as_deref(), Some("s3://backups/pii/vault"));
        assert_eq!((status.subjects, status.bytes), (Some(1200), Some(5_000_000)));
        assert_eq!(status.started_at, Some(time("2026-11-23T02:00:00Z")), "kept from before");
        assert_eq!(status.completed_at, Some(time("2026-11-23T02:03:00Z")));
        assert_eq!((status.job.as_deref(), status.message), (Some("nightly-backup"), None));
    }

    #[test]
    fn a_succeeded_job_without_a_readable_report_still_completes() {
        let observed = Observed::Succeeded {
            job: "nightly-backup".into(),
            started: None,
            completed: None,
            report: Err("no succeeded pod of the Job is left".into()),
        };
        let status = compute(&PiiVaultBackupStatus::default(), observed);
        assert_eq!(status.phase, Some(BackupPhase::Completed));
        assert_eq!(status.backup_id, None);
        let message = status.message.unwrap();
        assert!(message.contains("summary could not be read (no succeeded pod of the Job is left)"), "{message}");
    }

    #[test]
    fn the_report_is_read_from_the_succeeded_pods_backup_container() {
        let report = serde_json::to_string(&take_report()).unwrap();
        let pods =
            [pod("nightly-backup-a", "Failed", Some("boom")), pod("nightly-backup-b", "Succeeded", Some(&report))];
        assert_eq!(super::report(&pods), Ok(take_report()));
        assert_eq!(
            super::report(&[pod("p", "Failed", Some(&report))]),
            Err("no succeeded pod of the Job is left".to_string())
        );
        assert_eq!(
            super::report(&[pod("p", "Succeeded", None)]),
            Err("its backup container left no termination message".to_string())
        );
        let garbled = super::report(&[pod("p", "Succeeded", Some("backup done"))]).unwrap_err();
        assert!(garbled.starts_with("its termination message is no backup report"), "{garbled}");
    }

    #[test]
    fn a_failure_names_the_condition_and_the_end_of_the_newest_failed_pods_message() {
        let mut older = pod("nightly-backup-a", "Failed", Some("the first attempt"));
        older.metadata.creation_timestamp = Some(time("2026-11-23T02:00:00Z"));
        let mut newer =
            pod("nightly-backup-b", "Failed", Some(&format!("{}the vault refused (403)", "x".repeat(2000))));
        newer.metadata.creation_timestamp = Some(time("2026-11-23T02:01:00Z"));
        let message = failure("nightly-backup", "BackoffLimitExceeded: too many failures", &[newer, older]);
        assert!(
            message.starts_with(
                "the Job nightly-backup failed (BackoffLimitExceeded: too many failures); its last pod said: …"
            ),
            "{message}"
        );
        assert!(message.ends_with("the vault refused (403)") && !message.contains("first attempt"), "{message}");
        assert!(message.len() < MESSAGE_TAIL + 200, "{}", message.len());
        assert_eq!(failure("j", "DeadlineExceeded", &[]), "the Job j failed (DeadlineExceeded)");
        assert_eq!(tail("äöü", 4), "…öü", "cut at a character boundary");
    }

    #[test]
    fn a_job_ends_by_its_complete_or_failed_condition() {
        let job = |conditions: serde_json::Value| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"conditions": conditions}})).unwrap()
        };
        assert_eq!(job_end(&job(json!([]))), None);
        let met = json!({"type": "SuccessCriteriaMet", "status": "True"});
        assert_eq!(job_end(&job(json!([met]))), None, "not complete until the pods are done");
        let complete = json!({"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-23T02:03:00Z"});
        assert_eq!(
            job_end(&job(json!([met, complete]))),
            Some(JobEnd::Complete { completed: Some(time("2026-11-23T02:03:00Z")) })
        );
        let failed = json!({"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"});
        assert_eq!(
            job_end(&job(json!([failed]))),
            Some(JobEnd::Failed("DeadlineExceeded: Job was active longer than specified deadline".into()))
        );
        let with_time = Job {
            status: Some(JobStatus {
                completion_time: Some(time("2026-11-23T02:04:00Z")),
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
            ..Job::default()
        };
        assert_eq!(job_end(&with_time), Some(JobEnd::Complete { completed: Some(time("2026-11-23T02:04:00Z")) }));
    }
}
