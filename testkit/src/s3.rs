//! A real S3-protocol server for the backup tests (vaultd's and the system tests'): moto's
//! `moto_server` (from PyPI; `hack/test.sh` installs it and names it in
//! `STRONGROOM_MOTO_SERVER`) on a free loopback port, with one bucket; killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long the server may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running moto server.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts one and creates `bucket` in it. `None`, after printing `SKIPPED: test: why`,
    /// when moto is not installed; panics when it is but does not answer.
    pub fn start(test: &str, bucket: &str) -> Option<Self> {
        let binary = std::env::var("STRONGROOM_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            crate::skipped(test, &format!("{binary} is not installed (hack/test.sh installs it)"));
            return None;
        };
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        // Creating the bucket is also the first request that succeeds once it listens.
        let http = reqwest::blocking::Client::builder().no_proxy().build().expect("an HTTP client");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !http.put(format!("{}/{bucket}", server.endpoint)).send().is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "{binary} did not answer within {STARTUP_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// The variables that let `vaultd` (object_store) reach it: endpoint, plain HTTP, a
    /// region and test credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "strongroom-test"),
            ("AWS_SECRET_ACCESS_KEY", "strongroom-test-secret"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
