//! The closed-loop load generator: N clients, each with its own connection, sending one
//! request after another until a deadline or a request budget runs out.
//!
//! It knows nothing about HTTP or SQL: a `Client` turns a key into one request and says
//! how it went. That keeps the vault, the trivial handler and PostgreSQL under exactly
//! the same client loop, timing and accounting, so their figures compare.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Latencies are recorded in microseconds, up to one minute.
const MAX_LATENCY_MICROS: u64 = 60_000_000;
/// Distinct error messages kept per run; the rest are counted under "other".
const MAX_ERROR_KINDS: usize = 8;

/// How one request went.
pub enum Outcome {
    Ok,
    /// The server answered, but not with success (e.g. a non-200 status).
    Rejected(String),
    /// No answer: the connection failed. The client reconnects on its next call.
    Failed(String),
}

/// One client: a connection to the system under test and the requests it sends.
pub trait Client: Send + 'static {
    /// Sends the request for `key` and waits for the whole answer.
    fn call(&mut self, key: u64) -> impl Future<Output = Outcome> + Send;
    /// Forgets the connection (after a timeout left it mid-request).
    fn reset(&mut self);
}

/// Which key each request uses.
#[derive(Clone, Copy, Debug)]
pub enum Keys {
    /// `start`, `start + 1`, ... across all clients: every request gets a unique key.
    Sequential { start: u64 },
    /// Uniformly random in `0..below`.
    Random { below: u64 },
}

/// When a run stops: at the deadline or after `requests` requests, whichever is first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub duration: Duration,
    pub requests: Option<u64>,
    /// A request not answered within this counts as failed.
    pub request_timeout: Duration,
}

/// What a run measured.
pub struct LoadResult {
    pub ok: u64,
    pub rejected: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Latency of successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Error messages and how often each occurred.
    pub errors: BTreeMap<String, u64>,
}

impl LoadResult {
    pub fn errors(&self) -> u64 {
        self.rejected + self.failed
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

struct ClientStats {
    ok: u64,
    rejected: u64,
    failed: u64,
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl ClientStats {
    fn new() -> Self {
        ClientStats {
            ok: 0,
            rejected: 0,
            failed: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds"),
            errors: BTreeMap::new(),
        }
    }

    fn note_error(&mut self, message: String) {
        note_error(&mut self.errors, message, 1);
    }
}

/// Counts `count` occurrences of `message`, shortened, among at most `MAX_ERROR_KINDS`
/// kinds (the rest under "other").
pub fn note_error(errors: &mut BTreeMap<String, u64>, mut message: String, count: u64) {
    if message.len() > 160 {
        let mut cut = 160;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    if errors.len() >= MAX_ERROR_KINDS && !errors.contains_key(&message) {
        message = "other".into();
    }
    *errors.entry(message).or_default() += count;
}

/// Runs `clients` clients made by `connect` (called with the client's index) under
/// `limits`. Connections are made before the clock starts. Returns the result and the
/// clients, still connected, so the caller can look at the server before they go.
pub async fn run<C, F, Fut>(
    clients: usize,
    keys: Keys,
    limits: Limits,
    connect: F,
) -> anyhow::Result<(LoadResult, Vec<C>)>
where
    C: Client,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<C>> + Send + 'static,
{
    let (result, clients, _) = run_until(clients, keys, limits, connect, std::future::pending::<()>()).await?;
    Ok((result, clients))
}

/// `run`, with one more way to stop: `until` starts when the clock does (every client
/// connected), runs beside the load, and when it completes the clients stop after their
/// current request. Its output is returned, or `None` when `limits` ended the load first
/// (then `until` is dropped unfinished). This is how a load measures the latency of other
/// requests while one long operation runs.
pub async fn run_until<C, F, Fut, U>(
    clients: usize,
    keys: Keys,
    limits: Limits,
    connect: F,
    until: U,
) -> anyhow::Result<(LoadResult, Vec<C>, Option<U::Output>)>
where
    C: Client,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<C>> + Send + 'static,
    U: Future,
{
    if clients == 0 {
        bail!("at least one client is needed");
    }
    let start_line = Arc::new(Barrier::new(clients + 1));
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for index in 0..clients {
        let connecting = connect(index);
        let start_line = Arc::clone(&start_line);
        let issued = Arc::clone(&issued);
        let stop = Arc::clone(&stop);
        tasks.spawn(async move {
            let connected = connecting.await;
            start_line.wait().await;
            let mut client = connected?;
            // All clients leave the barrier together, so their deadlines agree.
            let deadline = Instant::now() + limits.duration;
            let stats = drive(&mut client, index as u64, keys, limits, deadline, &issued, &stop).await;
            anyhow::Ok((stats, client))
        });
    }
    // The clients connect concurrently; the clock starts when the last one is ready.
    // Waiting at the barrier alone would hang if a client panicked while connecting, so
    // bound the wait: connecting 64 sockets takes milliseconds.
    let connect_timeout = limits.request_timeout + Duration::from_secs(5);
    let barrier_opened = async {
        start_line.wait().await;
        Instant::now()
    };
    let started =
        tokio::time::timeout(connect_timeout, barrier_opened).await.context("clients did not all connect in time")?;

    // Every request is bounded by the request timeout, so the run ends by itself; this
    // outer bound only guards against a bug in the loop.
    let outer = limits.duration + limits.request_timeout * 2 + Duration::from_secs(10);
    let mut total = ClientStats::new();
    let mut finished = Vec::with_capacity(clients);
    let mut first_error = None;
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            match joined.context("a client task panicked")? {
                Ok((stats, client)) => {
                    total.ok += stats.ok;
                    total.rejected += stats.rejected;
                    total.failed += stats.failed;
                    total.latency.add(&stats.latency).expect("histograms with equal bounds add");
                    for (message, count) in stats.errors {
                        note_error(&mut total.errors, message, count);
                    }
                    finished.push(client);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        anyhow::Ok(())
    };
    // `until` and the clients run together; the clients are collected as they finish.
    let output = {
        let mut collect = std::pin::pin!(tokio::time::timeout(outer, collect));
        let mut until = std::pin::pin!(until);
        let mut output = None;
        loop {
            tokio::select! {
                done = &mut until, if output.is_none() => {
                    output = Some(done);
                    stop.store(true, Ordering::Relaxed);
                }
                collected = &mut collect => {
                    collected.context("the load run did not stop in time")??;
                    break output;
                }
            }
        }
    };
    let elapsed = started.elapsed();
    if let Some(error) = first_error {
        return Err(error.context("a client could not connect"));
    }
    let result = LoadResult {
        ok: total.ok,
        rejected: total.rejected,
        failed: total.failed,
        elapsed,
        latency: total.latency,
        errors: total.errors,
    };
    Ok((result, finished, output))
}

/// One client's loop.
async fn drive<C: Client>(
    client: &mut C,
    seed: u64,
    keys: Keys,
    limits: Limits,
    deadline: Instant,
    issued: &AtomicU64,
    stop: &AtomicBool,
) -> ClientStats {
    let mut stats = ClientStats::new();
    let mut random = XorShift::new(seed);
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let ticket = issued.fetch_add(1, Ordering::Relaxed);
        if limits.requests.is_some_and(|budget| ticket >= budget) {
            break;
        }
        let key = match keys {
            Keys::Sequential { start } => start + ticket,
            Keys::Random { below } => random.next() % below.max(1),
        };
        let sent = Instant::now();
        match tokio::time::timeout(limits.request_timeout, client.call(key)).await {
            Ok(Outcome::Ok) => {
                let micros = (sent.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_MICROS);
                stats.ok += 1;
                stats.latency.record(micros).expect("latency clamped into the histogram's range");
            }
            Ok(Outcome::Rejected(message)) => {
                stats.rejected += 1;
                stats.note_error(message);
            }
            Ok(Outcome::Failed(message)) => {
                stats.failed += 1;
                stats.note_error(message);
            }
            Err(_) => {
                client.reset();
                stats.failed += 1;
                stats.note_error(format!("no answer within {:?}", limits.request_timeout));
            }
        }
    }
    stats
}

/// A tiny xorshift generator: random keys without a dependency or shared state.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Spread small seeds (client indices) apart; never zero.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers instantly; every seventh key is "rejected".
    struct Fake {
        keys: Vec<u64>,
    }

    impl Client for Fake {
        async fn call(&mut self, key: u64) -> Outcome {
            self.keys.push(key);
            tokio::task::yield_now().await;
            if key % 7 == 6 {
                Outcome::Rejected("seven".into())
            } else {
                Outcome::Ok
            }
        }

        fn reset(&mut self) {}
    }

    fn limits(requests: Option<u64>) -> Limits {
        Limits { duration: Duration::from_secs(5), requests, request_timeout: Duration::from_secs(1) }
    }

    #[tokio::test]
    async fn request_budget_gives_unique_sequential_keys() {
        let (result, clients) =
            run(4, Keys::Sequential { start: 100 }, limits(Some(70)), |_| async { Ok(Fake { keys: Vec::new() }) })
                .await
                .unwrap();
        assert_eq!(result.ok + result.rejected, 70);
        assert_eq!(result.rejected, 10);
        assert_eq!(result.errors.get("seven"), Some(&10));
        let mut keys: Vec<u64> = clients.into_iter().flat_map(|c| c.keys).collect();
        keys.sort_unstable();
        assert_eq!(keys, (100..170).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn deadline_stops_the_run() {
        let limits = Limits { duration: Duration::from_millis(100), ..limits(None) };
        let (result, _) =
            run(2, Keys::Random { below: 10 }, limits, |_| async { Ok(Fake { keys: Vec::new() }) }).await.unwrap();
        assert!(result.ok > 0);
        assert!(result.elapsed < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn until_stops_the_clients_and_returns_its_output() {
        // The deadline is far off; `until` finishing after 100 ms is what stops the load.
        let limits = Limits { duration: Duration::from_secs(30), ..limits(None) };
        let until = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            7
        };
        let (result, _, output) =
            run_until(2, Keys::Random { below: 10 }, limits, |_| async { Ok(Fake { keys: Vec::new() }) }, until)
                .await
                .unwrap();
        assert_eq!(output, Some(7));
        assert!(result.ok > 0);
        assert!(result.elapsed >= Duration::from_millis(100));
        assert!(result.elapsed < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn limits_ending_first_leave_until_unfinished() {
        let until = tokio::time::sleep(Duration::from_secs(30));
        let (result, _, output) = run_until(
            2,
            Keys::Sequential { start: 0 },
            limits(Some(20)),
            |_| async { Ok(Fake { keys: Vec::new() }) },
            until,
        )
        .await
        .unwrap();
        assert_eq!(output, None);
        assert_eq!(result.ok + result.rejected, 20);
    }

    #[tokio::test]
    async fn connect_failure_is_an_error() {
        let outcome = run(3, Keys::Random { below: 10 }, limits(Some(10)), |index| async move {
            if index == 1 {
                anyhow::bail!("refused")
            }
            Ok(Fake { keys: Vec::new() })
        })
        .await;
        assert!(outcome.is_err());
    }

    #[test]
    fn long_and_many_error_messages_are_bounded() {
        let mut errors = BTreeMap::new();
        for i in 0..20 {
            note_error(&mut errors, format!("{i}{}", "x".repeat(300)), 1);
        }
        assert_eq!(errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(errors["other"], 20 - MAX_ERROR_KINDS as u64);
        assert!(errors.keys().all(|k| k.chars().count() <= 161));
    }
}
