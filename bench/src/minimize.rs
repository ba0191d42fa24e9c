//! The minimisation figure: how fast a retention run (`POST /v1/sys/retention/run`)
//! changes records in a full vault, and what it does to the latency of the requests the
//! vault serves meanwhile.
//!
//! It exists because a retention run is the one vault operation that is neither a single
//! request nor a background trickle: one request decrypts every selected profile, edits
//! it, re-encrypts it and commits a conditional, audited change per subject through Raft,
//! 256 in flight at a time, sharing the log and the cores with ordinary traffic. An
//! operator scheduling it (the `RetentionPolicy` CronJob) needs to know both how long a
//! run over N subjects takes and how much slower the application's reads get while it
//! runs; the per-request workloads say neither.
//!
//! The run: fill the vault to `subjects` subjects (every profile has a unique `phone`),
//! measure the get-by-login load alone for `--duration` (the baseline), then start a
//! policy dropping `phone` from every profile and keep the same get load going until the
//! run answers (`load::run_until`, the same clients and loop as every other workload).
//! Last, the same policy again: it must change nothing.

use std::time::Duration;

use anyhow::{bail, Context};
use strongroom_admin_api::retention::{Action, PolicySpec, Rule, RuleMatch, RunReport, RunRequest};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::http::{self, Endpoint};
use crate::load::LoadResult;
use crate::procfs::Memory;
use crate::report::CpuUse;
use crate::servers::Server;
use crate::suite::{self, Baseline, Keyspace, Settings};
use crate::workloads::{HttpTarget, Workload};

/// Subjects the vault is filled to when `--subjects` is not given (the issue's figure).
pub const DEFAULT_SUBJECTS: u64 = 100_000;
/// The label the runs are recorded under in the vault's run history.
pub const POLICY: &str = "bench/minimize";
/// The profile field the policy drops.
pub const FIELD: &str = "phone";

/// How the minimisation run goes.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Fill the vault to this many subjects first.
    pub subjects: u64,
    /// The retention request (and so the get load beside it) gives up after this long.
    pub run_timeout: Duration,
}

/// What the minimisation run measured.
pub struct MinimizeResult {
    /// Subjects in the vault when the run started, and creates that failed filling it.
    pub subjects: u64,
    pub fill_errors: u64,
    /// Get clients, in the baseline and during the run.
    pub clients: usize,
    pub baseline: LoadResult,
    pub baseline_cpu: CpuUse,
    /// The gets sent while the retention run was under way.
    pub during: LoadResult,
    pub during_cpu: CpuUse,
    /// The vault's report of the run, and the run's time as the client saw it (request
    /// sent to answer read).
    pub report: RunReport,
    pub client_time: Duration,
    /// The same policy run again afterwards (no load beside it).
    pub rerun: RunReport,
    /// The largest node's memory before the run, and after it.
    pub memory_before: Memory,
    pub memory_after: Memory,
}

impl MinimizeResult {
    /// The run's time as the vault reports it (`finishedAt - startedAt`).
    pub fn vault_time(&self) -> Duration {
        vault_time(&self.report)
    }

    /// Records changed per second of the vault's run time.
    pub fn changed_per_second(&self) -> f64 {
        per_second(self.report.changed, self.vault_time())
    }
}

/// The retention request: drop `phone` from every profile that has one.
pub fn policy_request(dry_run: bool) -> RunRequest {
    RunRequest {
        policy: POLICY.to_string(),
        spec: PolicySpec {
            dry_run,
            rules: vec![Rule {
                name: format!("drop-{FIELD}"),
                selector: RuleMatch { has_fields: vec![FIELD.to_string()], ..RuleMatch::default() },
                action: Action::DropFields,
                fields: vec![FIELD.to_string()],
                expiration: None,
            }],
            ..PolicySpec::default()
        },
    }
}

/// `finishedAt - startedAt` of a run report (zero if the clock went backwards).
pub fn vault_time(report: &RunReport) -> Duration {
    Duration::from_millis(report.finished_at.saturating_sub(report.started_at))
}

/// `count` per second of `time`; 0 for no time.
pub fn per_second(count: u64, time: Duration) -> f64 {
    if time.is_zero() {
        0.0
    } else {
        count as f64 / time.as_secs_f64()
    }
}

/// Subjects the run's rules left alone because they changed concurrently.
pub fn skipped(report: &RunReport) -> u64 {
    report.rules.iter().map(|rule| rule.skipped).sum()
}

/// Sends the policy to `endpoint` and waits up to `timeout` for its report; also returns the
/// time from sending the request to reading the answer.
async fn run_policy(endpoint: &Endpoint, token: &str, timeout: Duration) -> anyhow::Result<(RunReport, Duration)> {
    let body = serde_json::to_string(&policy_request(false))?;
    let sent = Instant::now();
    let (status, text) = http::exchange(endpoint, token, "POST", "/v1/sys/retention/run", Some(&body), timeout).await?;
    let took = sent.elapsed();
    if status != 200 {
        bail!("retention run on {endpoint}: HTTP {status}: {}", text.trim());
    }
    let report =
        serde_json::from_str(&text).with_context(|| format!("retention run on {endpoint}: not a report: {text}"))?;
    Ok((report, took))
}

/// The minimisation run against `servers` (one vaultd, or a cluster's nodes, which share
/// the get clients round-robin); the retention request goes to `run_on` (a cluster's
/// leader). `keyspace` is what the earlier workloads created; it is extended by the fill.
#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &Runtime,
    settings: &Settings,
    plan: &Plan,
    servers: &[&Server],
    target: &HttpTarget,
    token: &str,
    run_on: Endpoint,
    keyspace: &mut Keyspace,
) -> anyhow::Result<MinimizeResult> {
    let Baseline { fill_errors, gets, result: baseline, cpu: baseline_cpu } =
        suite::fill_and_baseline(runtime, settings, servers, target, keyspace, plan.subjects, "minimize")?;
    let memory_before = suite::largest_memory(servers)?;
    println!("  minimize: running the policy on {run_on} beside the get load");
    let during_limits = settings.beside_limits(plan.run_timeout);
    let (during, during_cpu, outcome) = suite::http_load_until(
        runtime,
        settings,
        servers,
        target,
        Workload::Get,
        gets,
        during_limits,
        run_policy(&run_on, token, plan.run_timeout),
    )?;
    let (report, client_time) = match outcome.context("the get load ended before the retention run answered")? {
        Ok(answer) => answer,
        Err(error) => {
            // What the gets saw until the run failed is part of the story.
            println!(
                "  minimize: the run failed after {:.1} s; meanwhile {:.0} gets/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                during.elapsed.as_secs_f64(),
                during.throughput(),
                during.percentile_ms(50.0),
                during.percentile_ms(99.0),
                during.errors()
            );
            return Err(error);
        }
    };
    let memory_after = suite::largest_memory(servers)?;
    let (rerun, _) = runtime.block_on(run_policy(&run_on, token, plan.run_timeout)).context("rerunning the policy")?;
    Ok(MinimizeResult {
        subjects: keyspace.created,
        fill_errors,
        clients: settings.clients,
        baseline,
        baseline_cpu,
        during,
        during_cpu,
        report,
        client_time,
        rerun,
        memory_before,
        memory_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongroom_admin_api::retention::RuleReport;

    #[test]
    fn the_request_drops_phone_from_profiles_that_have_one() {
        let value = serde_json::to_value(policy_request(false)).unwrap();
        assert_eq!(value["policy"], "bench/minimize");
        let spec = &value["spec"];
        assert_eq!(spec["dryRun"], false);
        let rules = spec["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["name"], "drop-phone");
        assert_eq!(rules[0]["match"]["hasFields"], serde_json::json!(["phone"]));
        assert_eq!(rules[0]["match"]["olderThan"], serde_json::Value::Null);
        assert_eq!(rules[0]["action"], "dropFields");
        assert_eq!(rules[0]["fields"], serde_json::json!(["phone"]));
        assert_eq!(serde_json::to_value(policy_request(true)).unwrap()["spec"]["dryRun"], true);
        // The vault's own validation accepts it.
        policy_request(false).spec.validate().unwrap();
    }

    fn report(started_at: u64, finished_at: u64, changed: u64, skipped: &[u64]) -> RunReport {
        RunReport {
            policy: POLICY.into(),
            dry_run: false,
            started_at,
            finished_at,
            matched: changed + skipped.iter().sum::<u64>(),
            changed,
            rules: skipped
                .iter()
                .map(|&skipped| RuleReport {
                    name: "r".into(),
                    action: Action::DropFields,
                    matched: 0,
                    changed: 0,
                    skipped,
                })
                .collect(),
            audit_event_id: String::new(),
        }
    }

    #[test]
    fn rate_is_changes_per_second_of_the_vaults_run_time() {
        let report = report(1_000, 21_000, 100_000, &[3, 4]);
        assert_eq!(vault_time(&report), Duration::from_secs(20));
        assert_eq!(per_second(report.changed, vault_time(&report)), 5_000.0);
        assert_eq!(skipped(&report), 7);
    }

    #[test]
    fn empty_or_backwards_runs_have_no_rate() {
        let backwards = report(5_000, 4_000, 10, &[]);
        assert_eq!(vault_time(&backwards), Duration::ZERO);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(skipped(&backwards), 0);
    }
}
