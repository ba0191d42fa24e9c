//! What the storage, HSM and Raft layers count as it happens: one set per process,
//! registered with the node's metrics ([`super::Metrics`]).

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::now_seconds;

/// An HSM call's kind.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum HsmOperation {
    Encrypt,
    Decrypt,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HsmLabels {
    pub operation: HsmOperation,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Instruments {
    /// One `fdatasync` of the Raft log (each covers every append before it started).
    pub log_fsync: Histogram,
    /// Making the state store durable (a vote, a purge, a snapshot's cut).
    pub state_flush: Histogram,
    pub hsm_calls: HistogramFamily<HsmLabels>,
    pub hsm_errors: Family<HsmLabels, Counter>,
    /// HSM sessions inside a call now.
    pub hsm_sessions_busy: Gauge,
    pub key_cache_hits: Counter,
    pub key_cache_misses: Counter,
    /// Leaders this node saw elected: each term's leader once, the same node again too.
    pub leader_changes: Counter,
    /// Batches this node proposed as leader that were committed, and the commands in each.
    pub proposals: Counter,
    pub proposal_batch_size: Histogram,
    /// Batches this node proposed as leader whose commit it could not confirm (it stopped
    /// leading, its quorum did not answer in time, its Raft core stopped); some of them are
    /// committed after all, or proposed again through a new leader.
    pub proposals_failed: Counter,
    /// Batches this node sent to the leader to propose.
    pub forwarded: Counter,
    pub snapshot_builds: Histogram,
    /// Bytes of the newest snapshot this node built or installed, as it is sent.
    pub snapshot_bytes: Gauge,
    /// Sending a snapshot to a member, first chunk to last (on the leader).
    pub snapshot_sends: Histogram,
    pub snapshot_sent_bytes: Counter,
    pub snapshot_installs: Histogram,
    pub log_purges: Counter,
    /// Snapshots and purges made because an erasure's compaction deadline came.
    pub erasure_compactions: Counter,
    /// Retention runs this node served (valid requests only), by policy and outcome.
    pub retention_runs: Family<RunLabels, Counter>,
    /// The policies with series of their own (at most [`super::POLICY_SERIES`]).
    policies: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Subjects those runs changed, by policy and action.
    pub retention_changes: Family<ChangeLabels, Counter>,
    /// When a run of each policy last failed on this node (seconds since the epoch).
    pub retention_failures: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
    /// The last audit chain verification on this node: whether the chain was intact, and
    /// when (seconds since the Unix epoch); `None` before one (encoded by the storage
    /// collector, so that the gauges are absent rather than 0 until then).
    pub audit_verification: std::sync::Mutex<Option<(bool, f64)>>,
}

/// How a retention run ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RunOutcome {
    succeeded,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub policy: String,
    pub outcome: RunOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub policy: String,
    /// The rule's action, as the policy names it (`dropFields`).
    pub action: &'static str,
}

/// 50 µs to about 1.6 s.
fn io_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// 10 ms to about 5.5 min: building, sending and installing snapshots.
fn snapshot_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(Instruments::new);

/// This process's instruments.
pub fn instruments() -> &'static Instruments {
    &INSTRUMENTS
}

impl Instruments {
    fn new() -> Self {
        Instruments {
            log_fsync: io_histogram(),
            state_flush: io_histogram(),
            hsm_calls: Family::new_with_constructor(io_histogram),
            hsm_errors: Family::default(),
            hsm_sessions_busy: Gauge::default(),
            key_cache_hits: Counter::default(),
            key_cache_misses: Counter::default(),
            leader_changes: Counter::default(),
            proposals: Counter::default(),
            proposal_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            proposals_failed: Counter::default(),
            forwarded: Counter::default(),
            snapshot_builds: snapshot_histogram(),
            snapshot_bytes: Gauge::default(),
            snapshot_sends: snapshot_histogram(),
            snapshot_sent_bytes: Counter::default(),
            snapshot_installs: snapshot_histogram(),
            log_purges: Counter::default(),
            erasure_compactions: Counter::default(),
            retention_runs: Family::default(),
            policies: Default::default(),
            retention_changes: Family::default(),
            retention_failures: Family::default(),
            audit_verification: std::sync::Mutex::new(None),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        // Counters an alert reads exist from the start, so that their first increase counts.
        for operation in [HsmOperation::Encrypt, HsmOperation::Decrypt] {
            drop(self.hsm_errors.get_or_create(&HsmLabels { operation }));
        }
        let seconds = || Unit::Seconds;
        registry.register_with_unit(
            "raft_log_fsync_duration",
            "Duration of one fdatasync of the Raft log",
            seconds(),
            self.log_fsync.clone(),
        );
        registry.register_with_unit(
            "state_flush_duration",
            "Duration of making the state store durable",
            seconds(),
            self.state_flush.clone(),
        );
        registry.register_with_unit(
            "hsm_call_duration",
            "Duration of an HSM call, by operation",
            seconds(),
            self.hsm_calls.clone(),
        );
        registry.register("hsm_errors", "HSM calls that failed, by operation", self.hsm_errors.clone());
        registry.register("hsm_sessions_busy", "HSM sessions inside a call now", self.hsm_sessions_busy.clone());
        registry.register("key_cache_hits", "Data key lookups answered from memory", self.key_cache_hits.clone());
        registry.register(
            "key_cache_misses",
            "Data key lookups that needed the HSM to unwrap the key",
            self.key_cache_misses.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Leaders this node saw elected (a new term's leader, even the same node again)",
            self.leader_changes.clone(),
        );
        registry.register(
            "raft_proposals",
            "Batches this node proposed as leader that were committed",
            self.proposals.clone(),
        );
        registry.register(
            "raft_proposal_batch_size",
            "Commands in each batch this node proposed as leader that was committed",
            self.proposal_batch_size.clone(),
        );
        registry.register(
            "raft_proposals_failed",
            "Batches this node proposed as leader whose commit it could not confirm",
            self.proposals_failed.clone(),
        );
        registry.register("forwarded_requests", "Batches this node sent to the leader", self.forwarded.clone());
        registry.register_with_unit(
            "raft_snapshot_build_duration",
            "Duration of building a snapshot",
            seconds(),
            self.snapshot_builds.clone(),
        );
        registry.register_with_unit(
            "raft_snapshot",
            "Size of this node's newest snapshot as it is sent",
            Unit::Bytes,
            self.snapshot_bytes.clone(),
        );
        registry.register_with_unit(
            "raft_snapshot_send_duration",
            "Duration of sending a snapshot to a member",
            seconds(),
            self.snapshot_sends.clone(),
        );
        registry.register_with_unit(
            "raft_snapshot_sent",
            "Bytes of the snapshots this node sent",
            Unit::Bytes,
            self.snapshot_sent_bytes.clone(),
        );
        registry.register_with_unit(
            "raft_snapshot_install_duration",
            "Duration of installing a snapshot received from the leader",
            seconds(),
            self.snapshot_installs.clone(),
        );
        registry.register("raft_log_purges", "Purges of the Raft log up to a snapshot", self.log_purges.clone());
        registry.register(
            "erasure_compactions",
            "Snapshots and purges this node made to compact erasures away",
            self.erasure_compactions.clone(),
        );
        registry.register(
            "retention_runs",
            "Retention runs this node served, by policy and outcome",
            self.retention_runs.clone(),
        );
        registry.register_with_unit(
            "retention_last_failure_timestamp",
            "When a run of each retention policy last failed on this node",
            Unit::Seconds,
            self.retention_failures.clone(),
        );
        registry.register(
            "retention_records_changed",
            "Subjects the retention runs this node served changed, by policy and action",
            self.retention_changes.clone(),
        );
    }

    /// The `policy` label of a policy's series: its name, or `_other` once
    /// [`super::POLICY_SERIES`] other policies have series.
    pub fn policy_label(&self, policy: &str) -> String {
        let mut known = self.policies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.contains(policy) || known.len() < super::POLICY_SERIES {
            known.insert(policy.to_string());
            policy.to_string()
        } else {
            "_other".to_string()
        }
    }

    /// Counts a retention run of `policy`. Both outcomes' series and the last failure's
    /// time (0: none yet) are created together, so that a policy's first failure is an
    /// increase from 0.
    pub fn retention_run(&self, policy: &str, outcome: RunOutcome) {
        let policy = self.policy_label(policy);
        for each in [RunOutcome::succeeded, RunOutcome::failed] {
            let counter = self.retention_runs.get_or_create(&RunLabels { policy: policy.clone(), outcome: each });
            if each == outcome {
                counter.inc();
            }
        }
        let last_failure = self.retention_failures.get_or_create(&PolicyLabels { policy });
        if outcome == RunOutcome::failed {
            last_failure.set(now_seconds());
        }
    }

    /// Records an audit chain verification's result.
    pub fn audit_verified(&self, intact: bool) {
        *self.audit_verification.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((intact, now_seconds()));
    }

    /// The last verification's result and time, if one ran.
    pub fn last_audit_verification(&self) -> Option<(bool, f64)> {
        *self.audit_verification.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Times an HSM call and counts it as failed when `result` is an error.
    pub fn hsm_call<T, E>(&self, operation: HsmOperation, call: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let labels = HsmLabels { operation };
        self.hsm_sessions_busy.inc();
        let started = Instant::now();
        let result = call();
        self.hsm_calls.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        self.hsm_sessions_busy.dec();
        if result.is_err() {
            self.hsm_errors.get_or_create(&labels).inc();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_past_the_bound_share_one_label() {
        let instruments = Instruments::new();
        for n in 0..super::super::POLICY_SERIES {
            assert_eq!(instruments.policy_label(&format!("shop/p{n}")), format!("shop/p{n}"));
        }
        assert_eq!(instruments.policy_label("shop/late"), "_other");
        assert_eq!(instruments.policy_label("shop/p0"), "shop/p0", "a policy with series keeps them");
    }
}
