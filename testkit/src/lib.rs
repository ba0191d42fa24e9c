//! One home for setting up vaultd under test, used by vaultd's integration tests, the
//! system tests (`tests/`) and the bench: a throwaway SoftHSM token made by
//! `hack/softhsm-token.sh` ([`softhsm`]), the command line of a `vaultd serve` node whose
//! ports are chosen before it starts ([`node`]), starting a server process and waiting for
//! its listening line ([`process`]), forming such nodes into a cluster ([`cluster`]),
//! certificates for TLS on the API made with rcgen ([`tls`]), and an S3 server to back up
//! into ([`s3`]).
//!
//! Blocking throughout (std threads, reqwest's blocking client); async callers use it at
//! set-up time, outside their runtime's tasks.

pub mod cluster;
pub mod node;
pub mod process;
pub mod s3;
pub mod softhsm;
pub mod tls;

pub use node::{free_port, free_ports, serve_command, NodeAddress};

/// Prints `SKIPPED: test: why` on the real standard error, which the test harness does not
/// capture (its `println!`/`eprintln!` show only when a test fails), in one write so that
/// the lines of parallel tests do not interleave.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("SKIPPED: {test}: {why}\n").as_bytes());
}
pub use process::{spawn, vaultd_binary, Log, Started};
pub use softhsm::SoftHsm;
