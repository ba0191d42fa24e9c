//! Prometheus metrics for `/metrics` (OpenMetrics text), in one registry of three kinds:
//! - [`http`]: requests by route pattern and status, their latency and the failed
//!   authentications, counted by the API middleware;
//! - [`instruments`]: what the code deep inside counts as it happens (log fsyncs, HSM
//!   calls, the key cache, leader changes). They are process-wide: one process runs one
//!   vault, and threading a handle through the storage and HSM layers would buy nothing;
//! - collectors that read the node's state at scrape time: [`cluster`] (Raft, replication,
//!   pending erasures), [`storage`] (bytes by part, free space, the audit trail) and
//!   [`process`] (start time, build, open files).
//!
//! Every label is bounded: route patterns and HTTP methods, HSM operations, the Raft ids of
//! the cluster's members, retention actions, and the names of the retention policies that
//! ran (named by `retention:run` callers, one series per policy). No personal data is a
//! label.

pub mod cluster;
pub mod http;
pub mod instruments;
pub mod process;
pub mod storage;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

pub use http::{method_label, RequestLabels};

/// Retention policies with series of their own: the most recently run, for the last-run
/// time; the first seen by this process, for its counters (later ones count as `_other`,
/// which no policy can be named).
pub const POLICY_SERIES: usize = 100;
pub use instruments::{instruments, HsmOperation, Instruments};

use crate::vault::Vault;

pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: the collectors read the disk, and the route needs no token,
    /// so a flood of scrapes queues instead of multiplying that work.
    pub scrapes: std::sync::Arc<tokio::sync::Semaphore>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Histogram,
    /// Requests whose access token was not valid (the token itself is not recorded).
    pub auth_failures: Counter,
}

impl Metrics {
    /// The metrics of the node that runs `vault`.
    pub fn new(vault: &Vault) -> Self {
        let mut registry = Registry::with_prefix("vaultd");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register("http_requests", "HTTP requests by route pattern and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        let auth_failures = Counter::default();
        registry.register("auth_failures", "Requests whose access token was not valid", auth_failures.clone());
        instruments().register(&mut registry);
        registry.register_collector(Box::new(cluster::ClusterCollector::new(vault)));
        registry.register_collector(Box::new(storage::StorageCollector::new(vault)));
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        Metrics {
            registry,
            scrapes: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            requests,
            latency,
            auth_failures,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, nor can the collectors (they leave out what
        // they cannot read).
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Now, in seconds since the Unix epoch (the unit of the `_timestamp_seconds` gauges).
fn now_seconds() -> f64 {
    crate::audit::now_ms() as f64 / 1000.0
}

/// Encodes one gauge read at scrape time (for the collectors).
fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, &format!("{help}."), unit, gauge.metric_type())?)
}

/// Encodes a gauge with one value per label value (`label` = each key of `values`).
fn gauges_by<N: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &'static str,
    values: &[(String, N)],
) -> std::fmt::Result {
    let help = format!("{help}.");
    let mut metric = encoder.encode_descriptor(name, &help, unit, MetricType::Gauge)?;
    for (key, value) in values {
        let labels = [(label, key.clone())];
        ConstGauge::new(*value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}
