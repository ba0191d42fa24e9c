//! `strongroom-bench`: measures vaultd against the spec §9 performance targets, beside
//! a trivial actix-web handler (the machine's ceiling for the same load generator) and
//! PostgreSQL with pgcrypto (what a team would otherwise build).
//!
//! `strongroom-bench run` starts each server itself on 127.0.0.1, drives it with N
//! keep-alive clients for a fixed time, and prints throughput, latency percentiles,
//! errors and server memory. `hack/bench.sh` runs the standard suite.

mod http;
mod load;
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
use servers::Mode;
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
    Run(RunArgs),
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

/// Systems the suite can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// vaultd, in each `--mode`.
    Vaultd,
    /// The trivial actix-web handler.
    Trivial,
    /// PostgreSQL + pgcrypto (skipped when PostgreSQL is not installed).
    Postgres,
}

#[derive(Args)]
struct RunArgs {
    /// Systems to measure, in this order.
    #[arg(long, value_delimiter = ',', default_values = ["vaultd", "trivial"])]
    targets: Vec<Target>,
    /// vaultd modes: demo (software KEK) and/or softhsm (KEK in a throwaway SoftHSM2 token).
    #[arg(long, value_delimiter = ',', default_values = ["demo"])]
    mode: Vec<Mode>,
    /// Workloads, in this order.
    #[arg(long, value_delimiter = ',', default_values = ["create", "get"])]
    workloads: Vec<Workload>,
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
    /// (spec: ≤ 300 MiB after 100,000).
    #[arg(long)]
    subjects: Option<u64>,
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
    /// The script that makes a SoftHSM2 token and prints its environment.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/softhsm-token.sh"))]
    softhsm_script: PathBuf,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => run(args),
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
    if !(args.duration > 0.0 && args.request_timeout > 0.0) {
        anyhow::bail!("--duration and --request-timeout must be positive");
    }
    let vaultd = match args.vaultd {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("vaultd"),
    };
    let settings = suite::Settings {
        clients: args.clients,
        limits: Limits {
            duration: Duration::from_secs_f64(args.duration),
            requests: args.requests,
            request_timeout: Duration::from_secs_f64(args.request_timeout),
        },
        workloads: args.workloads,
        users: args.users.max(1),
        subjects: args.subjects,
        vaultd,
        softhsm_script: args.softhsm_script,
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
    let mut report = Report::default();
    for target in args.targets {
        match target {
            Target::Vaultd => {
                for &mode in &args.mode {
                    suite::vaultd(&runtime, &settings, mode, &mut report)?;
                }
            }
            Target::Trivial => suite::trivial(&runtime, &settings, &mut report)?,
            Target::Postgres => suite::postgres(&runtime, &settings, &args.pgp_options, &mut report)?,
        }
    }
    println!("\n{}", report.tables());
    Ok(())
}
