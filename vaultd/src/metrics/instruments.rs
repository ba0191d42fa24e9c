//! What the storage, HSM and Raft layers count as it happens: one set per process,
//! registered with the node's metrics ([`super::Metrics`]).

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

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
    pub hsm_calls: HistogramFamily<HsmLabels>,
    pub hsm_errors: Family<HsmLabels, Counter>,
    /// HSM sessions inside a call now.
    pub hsm_sessions_busy: Gauge,
    pub key_cache_hits: Counter,
    pub key_cache_misses: Counter,
    /// Times this node saw the cluster's leader change (to another node, or to none).
    pub leader_changes: Counter,
}

/// 50 µs to about 1.6 s.
fn io_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| Instruments {
    log_fsync: io_histogram(),
    hsm_calls: Family::new_with_constructor(io_histogram),
    hsm_errors: Family::default(),
    hsm_sessions_busy: Gauge::default(),
    key_cache_hits: Counter::default(),
    key_cache_misses: Counter::default(),
    leader_changes: Counter::default(),
});

/// This process's instruments.
pub fn instruments() -> &'static Instruments {
    &INSTRUMENTS
}

impl Instruments {
    pub(super) fn register(&self, registry: &mut Registry) {
        let seconds = || Unit::Seconds;
        registry.register_with_unit(
            "raft_log_fsync_duration",
            "Duration of one fdatasync of the Raft log",
            seconds(),
            self.log_fsync.clone(),
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
            "Times this node saw the cluster's leader change",
            self.leader_changes.clone(),
        );
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
