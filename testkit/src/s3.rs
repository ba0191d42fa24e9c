//! A real S3-protocol server for backup tests: moto's (from PyPI; `hack/test.sh` installs
//! it and names it in `STRONGROOM_MOTO_SERVER`) on a free loopback port, with one bucket,
//! killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts it and creates `bucket`; `None` (the test is reported skipped) when moto is
    /// not installed.
    pub fn start(test: &str, bucket: &str) -> Option<Self> {
        let binary = std::env::var("STRONGROOM_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = crate::free_port();
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
        let http = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.put(format!("{}/{bucket}", server.endpoint)).send().is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "moto's S3 server did not answer on {}", server.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// The environment `vaultd backup` and `vaultd restore` reach it with.
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
