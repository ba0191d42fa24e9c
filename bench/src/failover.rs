//! The failover figure of spec §9: after a `kill -9` of the leader under a create load,
//! how long until the cluster acknowledges a write again (target ≤ 3 s), how long until
//! creates run at half their earlier rate again, and how many requests failed meanwhile.
//!
//! It has its own client loop rather than `load::run`'s, for two reasons. It needs every
//! attempt's send and finish time, to measure from the kill. And its clients behave like
//! clients of a cluster: each knows every node, sends to its current one, and after a
//! failure moves to the next node and tries again after a short pause. Each attempt
//! creates a new login, so a write that committed before its answer was lost does not
//! turn the retry into a duplicate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::load::{note_error, Client, Outcome};
use crate::workloads::{HttpClient, HttpTarget, Workload};

/// A client's pause after a failed attempt, before it tries the next node: enough that a
/// node refusing connections does not turn into a busy loop, short beside a failover.
pub const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Throughput after the kill is counted in windows of this length.
pub const RATE_WINDOW: Duration = Duration::from_millis(200);

/// How the failover run goes.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub clients: usize,
    /// Creates run this long before the leader is killed…
    pub before: Duration,
    /// …and this long after.
    pub after: Duration,
    pub request_timeout: Duration,
}

/// What the failover run measured.
pub struct FailoverResult {
    pub clients: usize,
    /// Raft id of the killed leader, and of the leader afterwards (if one was found).
    pub killed: u64,
    pub new_leader: Option<u64>,
    pub figures: Figures,
    /// Error messages of the attempts that finished after the kill, and how often.
    pub errors: BTreeMap<String, u64>,
}

/// The timeline's figures, all times measured from the kill.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Creates run this long before the kill.
    pub before: Duration,
    /// …and this long after it.
    pub after: Duration,
    /// Successful creates per second before the kill.
    pub rate_before: f64,
    pub errors_before: u64,
    /// The first 200 to a request sent after the kill.
    pub first_write: Option<Duration>,
    /// The end of the first window after the kill in which requests sent after the kill
    /// succeeded at least at half `rate_before`.
    pub half_rate: Option<Duration>,
    /// Successful creates sent after the kill.
    pub ok_after: u64,
    /// Failed attempts that finished after the kill.
    pub errors_after: u64,
}

/// One request, in time since the run started.
struct Attempt {
    sent: Duration,
    done: Duration,
    error: Option<String>,
}

/// Runs creates against every node of `cluster`, kills the leader after `plan.before`,
/// and keeps going for `plan.after`. Logins start at `u{first_key}`.
pub fn run(runtime: &Runtime, cluster: &mut Cluster, plan: &Plan, first_key: u64) -> anyhow::Result<FailoverResult> {
    let endpoints = cluster.endpoints();
    let target = HttpTarget::Vault { token: cluster.token().to_string() };
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Arc::new(AtomicU64::new(first_key));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for index in 0..plan.clients.max(1) {
            let nodes = endpoints
                .iter()
                .map(|endpoint| HttpClient::new(endpoint.clone(), target.clone(), Workload::Create))
                .collect();
            let (stop, keys) = (Arc::clone(&stop), Arc::clone(&keys));
            tasks.spawn(client_loop(nodes, index % endpoints.len(), start, plan.request_timeout, stop, keys));
        }
        tokio::time::sleep(plan.before).await;
        let leader = cluster.leader(0).await.context("cannot find the leader to kill")?;
        let killed = cluster.id(leader);
        let kill = start.elapsed();
        cluster.kill(leader)?;
        println!(
            "  killed the leader, node {} (id {killed}), with SIGKILL after {:.1} s",
            leader + 1,
            kill.as_secs_f64()
        );
        tokio::time::sleep(plan.after).await;
        stop.store(true, Ordering::Relaxed);
        let end = start.elapsed();
        let mut attempts = Vec::new();
        let collect = async {
            while let Some(joined) = tasks.join_next().await {
                attempts.extend(joined.context("a failover client panicked")?);
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(plan.request_timeout + Duration::from_secs(5), collect)
            .await
            .context("the failover clients did not stop in time")??;
        let mut errors = BTreeMap::new();
        for attempt in &attempts {
            if let (Some(message), true) = (&attempt.error, attempt.done >= kill) {
                note_error(&mut errors, message.clone(), 1);
            }
        }
        // The first survivor that names a live leader.
        let mut new_leader = None;
        let alive = cluster.alive();
        for &survivor in &alive {
            if let Ok(index) = cluster.leader(survivor).await {
                if alive.contains(&index) {
                    new_leader = Some(cluster.id(index));
                    break;
                }
            }
        }
        Ok(FailoverResult {
            clients: plan.clients.max(1),
            killed,
            new_leader,
            figures: figures(&attempts, kill, end),
            errors,
        })
    })
}

/// One client: sends creates to its current node until `stop`; after a failure it pauses
/// and moves on to the next node.
async fn client_loop(
    mut nodes: Vec<HttpClient>,
    mut current: usize,
    start: Instant,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    keys: Arc<AtomicU64>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let key = keys.fetch_add(1, Ordering::Relaxed);
        let sent = start.elapsed();
        let client = &mut nodes[current];
        let error = match tokio::time::timeout(timeout, client.call(key)).await {
            Ok(Outcome::Ok) => None,
            Ok(Outcome::Rejected(message) | Outcome::Failed(message)) => Some(message),
            Err(_) => {
                client.reset();
                Some(format!("no answer within {timeout:?}"))
            }
        };
        let error = error.map(|message| format!("node {}: {message}", current + 1));
        let failed = error.is_some();
        attempts.push(Attempt { sent, done: start.elapsed(), error });
        if failed {
            current = (current + 1) % nodes.len();
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    attempts
}

/// The figures of a timeline in which the leader was killed at `kill` and the clients
/// were told to stop at `end`.
fn figures(attempts: &[Attempt], kill: Duration, end: Duration) -> Figures {
    let ok_before = attempts.iter().filter(|a| a.error.is_none() && a.done < kill).count();
    let rate_before = ok_before as f64 / kill.as_secs_f64().max(1e-9);
    let after_kill: Vec<&Attempt> = attempts.iter().filter(|a| a.error.is_none() && a.sent >= kill).collect();
    let first_write = after_kill.iter().map(|a| a.done - kill).min();
    let windows = (end.saturating_sub(kill).as_micros() / RATE_WINDOW.as_micros()) as usize;
    let mut counts = vec![0u64; windows];
    for attempt in &after_kill {
        let window = ((attempt.done - kill).as_micros() / RATE_WINDOW.as_micros()) as usize;
        if let Some(count) = counts.get_mut(window) {
            *count += 1;
        }
    }
    let half = rate_before / 2.0 * RATE_WINDOW.as_secs_f64();
    let half_rate = if ok_before == 0 {
        None
    } else {
        counts.iter().position(|&count| count as f64 >= half).map(|window| RATE_WINDOW * (window as u32 + 1))
    };
    Figures {
        before: kill,
        after: end.saturating_sub(kill),
        rate_before,
        errors_before: attempts.iter().filter(|a| a.error.is_some() && a.done < kill).count() as u64,
        first_write,
        half_rate,
        ok_after: after_kill.len() as u64,
        errors_after: attempts.iter().filter(|a| a.error.is_some() && a.done >= kill).count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// One attempt every 10 ms from `from` to `to` (sent → done in 5 ms).
    fn steady(from: u64, to: u64, error: Option<&str>) -> Vec<Attempt> {
        (from..to)
            .step_by(10)
            .map(|t| Attempt { sent: ms(t), done: ms(t + 5), error: error.map(str::to_string) })
            .collect()
    }

    #[test]
    fn measures_from_the_kill() {
        // 100/s for 2 s; the leader dies at 2 s; errors until 2.9 s; a request sent at
        // 1.99 s is answered late (after the kill) and must not count as a recovery;
        // requests sent from 2.9 s succeed at 100/s again.
        let mut attempts = steady(0, 2000, None);
        attempts.push(Attempt { sent: ms(1995), done: ms(2100), error: None });
        attempts.extend(steady(2000, 2900, Some("HTTP 503")));
        attempts.extend(steady(2900, 5000, None));
        let figures = figures(&attempts, ms(2000), ms(5000));
        assert_eq!(figures.rate_before, 100.0);
        assert_eq!(figures.errors_before, 0);
        assert_eq!(figures.first_write, Some(ms(905)));
        // Windows of 200 ms: [0.8, 1.0) s holds 10 successes (half is 10).
        assert_eq!(figures.half_rate, Some(ms(1000)));
        assert_eq!(figures.errors_after, 90);
        assert_eq!(figures.ok_after, 210);
        assert_eq!(figures.after, ms(3000));
    }

    #[test]
    fn no_recovery_is_none() {
        let mut attempts = steady(0, 1000, None);
        attempts.extend(steady(1000, 3000, Some("connect: refused")));
        let figures = figures(&attempts, ms(1000), ms(3000));
        assert_eq!(figures.first_write, None);
        assert_eq!(figures.half_rate, None);
        assert_eq!(figures.errors_after, 200);
    }
}
