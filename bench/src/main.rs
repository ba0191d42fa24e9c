//! `strongroom-bench`: measures vaultd against the spec §9 performance targets, beside
//! a trivial actix-web handler (the machine's ceiling for the same load generator) and
//! PostgreSQL with pgcrypto (what a team would otherwise build).
//!
//! `strongroom-bench run` starts each server itself on 127.0.0.1, drives it with N
//! keep-alive clients for a fixed time, and prints throughput, latency percentiles,
//! errors and server memory. Every throughput is also printed as a ratio to the trivial
//! handler's in the same run, which is measured even when `--targets` leaves it out.
//! `hack/bench.sh` runs the standard suite. `--mode cluster` measures a local 3-node
//! vaultd cluster, and `failover` its recovery from a leader `kill -9`. `--api http,https`
//! measures each vaultd mode with plain HTTP and with TLS on its API, in the same run.
//!
//! `--workloads minimize` measures a retention run (`POST /v1/sys/retention/run`, see
//! `minimize.rs`): the vault is filled to `--subjects` subjects (default 100,000), the
//! get-by-login load with `--clients` clients runs for `--duration` seconds as a
//! baseline, then a policy dropping `phone` from every profile runs while the same get
//! load goes on until the run answers (at most `--retention-timeout` seconds), and the
//! policy runs once more, which must change nothing. It reports records changed per
//! second and the gets' throughput and p50/p99 beside the baseline. It runs after the
//! other load workloads and before failover; with `--mode cluster` the run goes to the
//! leader and the gets to every node:
//!
//! ```sh
//! strongroom-bench run --targets vaultd --mode cluster --workloads minimize \
//!   --clients 64 --duration 10 --subjects 100000
//! ```
//!
//! `--workloads backup` (see `backup.rs`) fills the vault the same way, measures the get
//! load as a baseline, then runs `vaultd backup` into a local directory while the get load
//! goes on, and `vaultd restore` of that backup: subjects/s and MB/s of the backup, the
//! gets beside the baseline, and the restore's time. Modes softhsm and cluster only (a
//! demo vault's KEK dies with it, so its backups cannot be restored).

mod backup;
mod cluster;
mod failover;
mod http;
mod load;
mod minimize;
mod postgres;
mod procfs;
mod report;
mod servers;
mod suite;
mod trivial;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use load::Limits;
use report::Report;
use servers::{Api, Mode};
use workloads::Workload;

/// The same allocator as vaultd, so the trivial handler's ceiling is comparable.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "strongroom-bench", about = "Load generator comparing vaultd with a trivial handler and PostgreSQL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the selected systems one after another and measure each.
    Run(Box<RunArgs>),
    /// Serve the trivial handler (started by `run`; prints its listening line).
    #[command(hide = true)]
    TrivialServer {
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Worker threads (default: one per core, as vaultd).
        #[arg(long)]
        workers: Option<usize>,
    },
}

/// What `--workloads` accepts: the load workloads, and the cluster's failover run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Choice {
    /// Create users (POST /v1/user).
    Create,
    /// Get users by login (GET /v1/user/login/...), after pre-creating --users of them.
    Get,
    /// Creates while the cluster's leader is killed with SIGKILL: time to the first
    /// successful write and to half the earlier rate (--mode cluster only).
    Failover,
    /// A retention run dropping `phone` from --subjects subjects (default 100,000): its
    /// records changed per second, and get latency during the run beside a baseline
    /// (vaultd only; runs after the other load workloads, before failover).
    Minimize,
    /// `vaultd backup` of --subjects subjects (default 100,000) beside the get load, then
    /// `vaultd restore` of it (softhsm and cluster modes; after minimize, before failover).
    Backup,
}

/// Systems the suite can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// vaultd, in each `--mode`.
    Vaultd,
    /// The trivial actix-web handler (measured last when not listed: every figure's ratio
    /// needs it).
    Trivial,
    /// PostgreSQL + pgcrypto (skipped when PostgreSQL is not installed).
    Postgres,
}

/// The PostgreSQL comparison's variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PgAudit {
    /// Each create or get is its one statement; no audit record.
    Unaudited,
    /// Each create or get, and an audit row of it, in one synchronously committed
    /// transaction.
    Audited,
}

#[derive(Args)]
struct RunArgs {
    /// Systems to measure, in this order.
    #[arg(long, value_delimiter = ',', default_values = ["vaultd", "trivial"])]
    targets: Vec<Target>,
    /// vaultd modes: demo (software KEK), softhsm (KEK in a throwaway SoftHSM2 token) and/or
    /// cluster (three softhsm nodes on 127.0.0.1 formed into a Raft cluster).
    #[arg(long, value_delimiter = ',', default_values = ["demo"])]
    mode: Vec<Mode>,
    /// How vaultd's API is reached, each in turn for every mode: http, and/or https (TLS
    /// with a certificate the harness makes; softhsm and cluster modes only, as `vaultd
    /// demo` is plain HTTP).
    #[arg(long, value_delimiter = ',', default_values = ["http"])]
    api: Vec<Api>,
    /// Workloads, in this order (minimize runs after the others, failover last and only in
    /// --mode cluster).
    #[arg(long, value_delimiter = ',', default_values = ["create", "get"])]
    workloads: Vec<Choice>,
    /// Clients of the failover run, spread over the cluster's nodes.
    #[arg(long, default_value_t = 16)]
    failover_clients: usize,
    /// Seconds the failover run goes on after the leader is killed (it is killed after
    /// --duration seconds of load).
    #[arg(long, default_value_t = 10.0)]
    failover_window: f64,
    /// Concurrent clients, one keep-alive connection each.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each workload runs.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop a workload after this many requests if the duration has not run out first.
    #[arg(long)]
    requests: Option<u64>,
    /// Users pre-created for the get workload.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// After the workloads, fill vaultd to this many subjects and report its memory
    /// (spec: ≤ 300 MiB after 100,000). Also the subjects the minimize workload runs its
    /// policy over (default there: 100,000).
    #[arg(long)]
    subjects: Option<u64>,
    /// Seconds the minimize workload's retention request may take; also what the backup
    /// workload's backup and restore may each take.
    #[arg(long, default_value_t = 1800.0)]
    retention_timeout: f64,
    /// Seconds a request may take before it counts as failed.
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    /// Threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The vaultd binary (default: `vaultd` beside this binary, i.e. target/release).
    #[arg(long)]
    vaultd: Option<PathBuf>,
    /// pgcrypto options for the PostgreSQL comparison's `pgp_sym_encrypt`, one cluster
    /// each; "" is pgcrypto's defaults (iterated, salted S2K key derivation per call),
    /// "s2k-mode=1" derives the key without iterations. Repeat the flag for several.
    #[arg(long, default_values = [""])]
    pgp_options: Vec<String>,
    /// PostgreSQL variants, in this order, one cluster each (per --pgp-options).
    #[arg(long, value_delimiter = ',', default_values = ["unaudited", "audited"])]
    pg_audit: Vec<PgAudit>,
    /// The script that makes a SoftHSM2 token and prints its environment.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/softhsm-token.sh"))]
    softhsm_script: PathBuf,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::TrivialServer { port, workers } => trivial::serve(port, workers),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("strongroom-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if !(args.duration > 0.0
        && args.request_timeout > 0.0
        && args.failover_window > 0.0
        && args.retention_timeout > 0.0)
    {
        anyhow::bail!("--duration, --request-timeout, --failover-window and --retention-timeout must be positive");
    }
    let vaultd = match args.vaultd {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("vaultd"),
    };
    let limits = Limits {
        duration: Duration::from_secs_f64(args.duration),
        requests: args.requests,
        request_timeout: Duration::from_secs_f64(args.request_timeout),
    };
    let mut workloads = Vec::new();
    let mut failover = None;
    let mut minimize = None;
    let mut backup = None;
    for choice in args.workloads {
        match choice {
            Choice::Create => workloads.push(Workload::Create),
            Choice::Get => workloads.push(Workload::Get),
            Choice::Failover => {
                failover = Some(failover::Plan {
                    clients: args.failover_clients.max(1),
                    before: limits.duration,
                    after: Duration::from_secs_f64(args.failover_window),
                    request_timeout: limits.request_timeout,
                })
            }
            Choice::Minimize => {
                minimize = Some(minimize::Plan {
                    subjects: args.subjects.unwrap_or(minimize::DEFAULT_SUBJECTS),
                    run_timeout: Duration::from_secs_f64(args.retention_timeout),
                })
            }
            Choice::Backup => {
                backup = Some(backup::Plan {
                    subjects: args.subjects.unwrap_or(backup::DEFAULT_SUBJECTS),
                    timeout: Duration::from_secs_f64(args.retention_timeout),
                })
            }
        }
    }
    let settings = suite::Settings {
        clients: args.clients,
        limits,
        workloads,
        users: args.users.max(1),
        subjects: args.subjects,
        vaultd,
        softhsm_script: args.softhsm_script,
        failover,
        minimize,
        backup,
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.client_threads.max(1)).enable_all().build()?;
    println!(
        "strongroom-bench: {} clients, {} s per workload, {} client thread(s), {} cores",
        settings.clients,
        args.duration,
        args.client_threads.max(1),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut targets = args.targets;
    if !targets.contains(&Target::Trivial) {
        println!("(the trivial handler runs last: every figure's ratio needs it)");
        targets.push(Target::Trivial);
    }
    let audited: Vec<bool> = args.pg_audit.iter().map(|variant| *variant == PgAudit::Audited).collect();
    let mut report = Report::default();
    for target in targets {
        match target {
            Target::Vaultd => {
                for &mode in &args.mode {
                    for &api in &args.api {
                        if mode == Mode::Demo && api == Api::Https {
                            report.skip("vaultd (demo) over HTTPS: vaultd demo serves plain HTTP only".into());
                            continue;
                        }
                        suite::vaultd(&runtime, &settings, mode, api, &mut report)?;
                    }
                }
            }
            Target::Trivial => suite::trivial(&runtime, &settings, &suite::trivial_workloads(&settings), &mut report)?,
            Target::Postgres => suite::postgres(&runtime, &settings, &args.pgp_options, &audited, &mut report)?,
        }
    }
    println!("\n{}", report.tables());
    Ok(())
}
