//! Waiting for what the operator does: poll a check until it passes, with a deadline. A
//! failure names what was awaited and the last thing the check saw.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long anything may take (`STRONGROOM_E2E_TIMEOUT`, seconds; default 60).
pub const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// [`TIMEOUT`], or what `STRONGROOM_E2E_TIMEOUT` says.
pub fn timeout() -> Duration {
    std::env::var("STRONGROOM_E2E_TIMEOUT")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .map_or(TIMEOUT, Duration::from_secs)
}

/// Calls `check` until it returns `Ok`, and returns that; panics after the timeout with
/// the last `Err`'s message.
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let timeout = timeout();
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// `Ok(())` when `condition` holds, else `Err(describe())`: for [`until`] checks.
pub fn check(condition: bool, describe: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(describe())
    }
}
