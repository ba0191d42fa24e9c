//! Logging: `tracing` events to stdout, filtered by `RUST_LOG` (default `info`), as JSON-free
//! compact lines that `kubectl logs` shows readably.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).compact().init();
}
