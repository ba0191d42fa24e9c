//! The process: when it started, what it is (version and data format), and how many files
//! it holds open.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Unit;

use super::{gauge, now_seconds};

#[derive(Debug)]
pub struct ProcessCollector {
    started: f64,
}

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector { started: now_seconds() }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut encoder;
        let help = "When this vaultd process started, in seconds since the Unix epoch";
        gauge(e, "process_start_time", help, Some(&Unit::Seconds), self.started)?;
        let build = Info::new([
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("data_format", crate::store::format::CURRENT.to_string()),
        ]);
        build.encode(e.encode_descriptor(
            "build",
            "This vaultd's version and data format.",
            None,
            build.metric_type(),
        )?)?;
        // Linux: one entry per open descriptor.
        if let Ok(open) = std::fs::read_dir("/proc/self/fd") {
            gauge(e, "open_files", "File descriptors this process holds open", None, open.count() as i64)?;
        }
        Ok(())
    }
}
