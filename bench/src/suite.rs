//! The sequence of runs against each system: start it, pre-create the users that gets
//! look up, run each workload, read the server's memory, stop it. vaultd then runs the
//! minimisation run (`minimize.rs`) when selected. A vaultd cluster runs the same
//! sequence with the clients spread over its nodes, then the failover run, last because
//! it kills a node.
//!
//! Keys continue across a server's runs (pre-create `u0..u{users}`, then creates from
//! there), so every create makes a new subject and every get finds one.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::runtime::Runtime;

use crate::backup;
use crate::cluster::{self, Cluster};
use crate::failover;
use crate::load::{self, Keys, Limits, LoadResult};
use crate::minimize;
use crate::postgres::{self, PgClient};
use crate::procfs::{self, Memory};
use crate::report::{CpuUse, Footprint, Report, Run, System};
use crate::servers::{self, Api, Mode, Server};
use crate::workloads::{self, HttpClient, HttpTarget, Workload};

/// Count-bounded phases (pre-creating users, filling to N subjects) stop after this long
/// at the latest.
const FILL_BOUND: Duration = Duration::from_secs(600);

/// What every run shares.
pub struct Settings {
    pub clients: usize,
    pub limits: Limits,
    pub workloads: Vec<Workload>,
    /// Users pre-created for the get workload.
    pub users: u64,
    /// Fill vaultd to this many subjects after the workloads and report its memory.
    pub subjects: Option<u64>,
    pub vaultd: PathBuf,
    pub softhsm_script: PathBuf,
    /// The failover run, when selected (vaultd cluster only).
    pub failover: Option<failover::Plan>,
    /// The minimisation run, when selected (vaultd only).
    pub minimize: Option<minimize::Plan>,
    /// The backup run, when selected (vaultd with its KEK in SoftHSM only).
    pub backup: Option<backup::Plan>,
}

impl Settings {
    pub fn fill_limits(&self, count: u64) -> Limits {
        Limits { duration: FILL_BOUND, requests: Some(count), ..self.limits }
    }

    /// A get load that runs beside a job until the job ends: `timeout` bounds the job,
    /// this only matters if it never does.
    pub fn beside_limits(&self, timeout: Duration) -> Limits {
        Limits { duration: timeout + Duration::from_secs(60), requests: None, ..self.limits }
    }
}

/// What a run beside the get load (retention, backup) measures first: the vault filled,
/// then the get load alone.
pub struct Baseline {
    /// Creates that failed filling the vault.
    pub fill_errors: u64,
    /// Every login sent as a create so far (a failed one shows up as a get error).
    pub gets: Keys,
    pub result: LoadResult,
    pub cpu: CpuUse,
}

/// Fills the vault to `subjects`, then measures the get load alone for `--duration`.
pub fn fill_and_baseline(
    runtime: &Runtime,
    settings: &Settings,
    servers: &[&Server],
    target: &HttpTarget,
    keyspace: &mut Keyspace,
    subjects: u64,
    what: &str,
) -> anyhow::Result<Baseline> {
    let fill_errors = fill(runtime, settings, servers, target, keyspace, subjects, what)?;
    let gets = Keys::Random { below: keyspace.next };
    let (result, cpu) = http_load(runtime, settings, servers, target, Workload::Get, gets, settings.limits)?;
    println!(
        "  {what}: baseline {:.0} gets/s, p50 {:.2} ms, p99 {:.2} ms ({} errors)",
        result.throughput(),
        result.percentile_ms(50.0),
        result.percentile_ms(99.0),
        result.errors()
    );
    Ok(Baseline { fill_errors, gets, result, cpu })
}

/// The kernel's own threads (children of kthreadd, pid 2): loopback networking done in
/// softirq threads is caused by the load, so it does not count as "elsewhere".
const KERNEL_THREADS: u32 = 2;

/// CPU counters at one moment: the server's (via `server_cpu`), this process's (the load
/// generator), and every process's, to see what else ran during a run.
struct CpuReading {
    server: u64,
    client: u64,
    all: procfs::CpuSnapshot,
}

fn cpu_now(server_cpu: &dyn Fn() -> anyhow::Result<u64>) -> anyhow::Result<CpuReading> {
    Ok(CpuReading {
        server: server_cpu()?,
        client: procfs::cpu_micros(std::process::id())?,
        all: procfs::CpuSnapshot::take()?,
    })
}

/// CPU use between two readings; "elsewhere" is other processes' CPU plus the time the
/// hypervisor gave our virtual CPUs to other guests (steal). `server_roots` are the server's process trees when they
/// are not children of this process (PostgreSQL's postmaster detaches).
fn cpu_use(before: &CpuReading, after: &CpuReading, result: &LoadResult, server_roots: &[u32]) -> CpuUse {
    let requests = tickets(result).max(1) as f64;
    let mut exclude = vec![std::process::id(), KERNEL_THREADS];
    exclude.extend_from_slice(server_roots);
    let elsewhere = procfs::cpu_elsewhere(&before.all, &after.all, &exclude) + before.all.steal_until(&after.all);
    CpuUse {
        server_micros: after.server.saturating_sub(before.server) as f64 / requests,
        client_micros: after.client.saturating_sub(before.client) as f64 / requests,
        elsewhere_cores: elsewhere as f64 / result.elapsed.as_micros().max(1) as f64,
    }
}

/// Runs the HTTP load against one server, or against several (the nodes of a cluster)
/// with the clients spread over them round-robin; their CPU is added up.
pub fn http_load(
    runtime: &Runtime,
    settings: &Settings,
    servers: &[&Server],
    target: &HttpTarget,
    workload: Workload,
    keys: Keys,
    limits: Limits,
) -> anyhow::Result<(LoadResult, CpuUse)> {
    let pending = std::future::pending::<()>();
    let (result, cpu, _) = http_load_until(runtime, settings, servers, target, workload, keys, limits, pending)?;
    Ok((result, cpu))
}

/// `http_load` that also stops when `until` completes (`load::run_until`), and returns
/// its output.
#[allow(clippy::too_many_arguments)]
pub fn http_load_until<U: Future>(
    runtime: &Runtime,
    settings: &Settings,
    servers: &[&Server],
    target: &HttpTarget,
    workload: Workload,
    keys: Keys,
    limits: Limits,
    until: U,
) -> anyhow::Result<(LoadResult, CpuUse, Option<U::Output>)> {
    let endpoints: Vec<_> = servers.iter().map(|server| server.endpoint()).collect();
    let connect = |index: usize| {
        let endpoint = endpoints[index % endpoints.len()].clone();
        let target = target.clone();
        async move { HttpClient::connect(endpoint, target, workload).await }
    };
    let server_cpu = || servers.iter().map(|server| procfs::cpu_micros(server.pid())).sum::<anyhow::Result<u64>>();
    let before = cpu_now(&server_cpu)?;
    let (result, clients, output) =
        runtime.block_on(load::run_until(settings.clients, keys, limits, connect, until))?;
    let after = cpu_now(&server_cpu)?;
    drop(clients);
    let cpu = cpu_use(&before, &after, &result, &[]);
    Ok((result, cpu, output))
}

/// What the trivial handler runs so that every throughput figure has its ratio: the load
/// workloads, creates for the failover run's rate and for retention's records changed/s,
/// and gets for the gets beside a retention run.
pub fn trivial_workloads(settings: &Settings) -> Vec<Workload> {
    let mut workloads = settings.workloads.clone();
    let mut need = |workload| {
        if !workloads.contains(&workload) {
            workloads.push(workload);
        }
    };
    if settings.failover.is_some() || settings.minimize.is_some() {
        need(Workload::Create);
    }
    if settings.minimize.is_some() || settings.backup.is_some() {
        need(Workload::Get);
    }
    workloads
}

pub fn tickets(result: &LoadResult) -> u64 {
    result.ok + result.rejected + result.failed
}

/// The failover run needs a cluster, and minimisation a vault; other systems note that
/// they skipped them.
fn skip_failover(settings: &Settings, system: &System, report: &mut Report) {
    if settings.failover.is_some() {
        report.skip(format!("failover for {}: only measured with --targets vaultd --mode cluster", system.label()));
    }
    if settings.minimize.is_some() && !matches!(system, System::Vaultd(_) | System::VaultdCluster { .. }) {
        report.skip(format!("minimize for {}: only measured with --targets vaultd", system.label()));
    }
    if settings.backup.is_some() && !matches!(system, System::Vaultd(_) | System::VaultdCluster { .. }) {
        report.skip(format!("backup for {}: only measured with --targets vaultd", system.label()));
    }
}

/// The largest resident and peak memory among `servers`.
pub fn largest_memory(servers: &[&Server]) -> anyhow::Result<Memory> {
    let mut largest = Memory::default();
    for server in servers {
        let memory = server.memory()?;
        largest.rss_kib = largest.rss_kib.max(memory.rss_kib);
        largest.peak_kib = largest.peak_kib.max(memory.peak_kib);
    }
    Ok(largest)
}

/// vaultd in `mode`, its API reached by `api`.
pub fn vaultd(runtime: &Runtime, settings: &Settings, mode: Mode, api: Api, report: &mut Report) -> anyhow::Result<()> {
    if mode == Mode::Cluster {
        return vaultd_cluster(runtime, settings, api, report);
    }
    let system = System::Vaultd(mode.label(api));
    println!("{}: starting {}", system.label(), settings.vaultd.display());
    let server = servers::start_vaultd(&settings.vaultd, mode, api, &settings.softhsm_script)?;
    let idle = server.memory()?.rss_kib;
    let target = HttpTarget::Vault { token: server.token.clone() };
    let outcome =
        vaultd_runs(runtime, settings, &[&server], &target, system.clone(), idle, report).and_then(|mut keyspace| {
            let servers = [&server];
            if let Some(plan) = &settings.minimize {
                let result = minimize::run(
                    runtime,
                    settings,
                    plan,
                    &servers,
                    &target,
                    &server.token,
                    server.endpoint(),
                    &mut keyspace,
                )?;
                report.add_minimize(system.clone(), result);
            }
            if let Some(plan) = &settings.backup {
                match &server.cli {
                    Some(access) => {
                        let result = backup::run(runtime, settings, plan, &servers, &target, access, &mut keyspace)?;
                        report.add_backup(system.clone(), result);
                    }
                    None => {
                        report.skip(format!("backup for {}: a demo vault's backups cannot be restored", system.label()))
                    }
                }
            }
            Ok(())
        });
    if outcome.is_err() {
        eprintln!("vaultd log:\n{}", server.log_tail());
    }
    skip_failover(settings, &system, report);
    outcome
}

/// A 3-node cluster: the workloads with the clients spread over the nodes, then failover.
fn vaultd_cluster(runtime: &Runtime, settings: &Settings, api: Api, report: &mut Report) -> anyhow::Result<()> {
    let system = System::VaultdCluster { nodes: cluster::NODES, https: api == Api::Https };
    println!("{}: starting {} nodes of {}", system.label(), cluster::NODES, settings.vaultd.display());
    let mut cluster = Cluster::start(&settings.vaultd, &settings.softhsm_script, api)?;
    let outcome = cluster_runs(runtime, settings, &mut cluster, system, report);
    if outcome.is_err() {
        eprintln!("{}", cluster.log_tails());
    }
    outcome
}

fn cluster_runs(
    runtime: &Runtime,
    settings: &Settings,
    cluster: &mut Cluster,
    system: System,
    report: &mut Report,
) -> anyhow::Result<()> {
    println!("{}", runtime.block_on(cluster.describe())?);
    let idle = largest_memory(&cluster.servers())?.rss_kib;
    let target = HttpTarget::Vault { token: cluster.token().to_string() };
    let mut keyspace = vaultd_runs(runtime, settings, &cluster.servers(), &target, system.clone(), idle, report)?;
    if let Some(plan) = &settings.minimize {
        let leader = runtime.block_on(cluster.leader(0)).context("cannot find the leader to run the policy on")?;
        let run_on = cluster.endpoints()[leader].clone();
        let token = cluster.token().to_string();
        let result =
            minimize::run(runtime, settings, plan, &cluster.servers(), &target, &token, run_on, &mut keyspace)?;
        report.add_minimize(system.clone(), result);
    }
    if let Some(plan) = &settings.backup {
        let access = cluster.cli.clone();
        let result = backup::run(runtime, settings, plan, &cluster.servers(), &target, &access, &mut keyspace)?;
        report.add_backup(system.clone(), result);
    }
    if let Some(plan) = &settings.failover {
        let result = failover::run(runtime, cluster, plan, keyspace.next)?;
        if result.figures.first_write.is_none() {
            eprintln!("no create succeeded after the kill; the nodes' logs:\n{}", cluster.log_tails());
        }
        report.add_failover(system, result);
    }
    Ok(())
}

/// Creates subjects (with the next logins) until the vault holds `subjects`; returns the
/// creates that failed. `what` names the run in the progress line.
fn fill(
    runtime: &Runtime,
    settings: &Settings,
    servers: &[&Server],
    target: &HttpTarget,
    keyspace: &mut Keyspace,
    subjects: u64,
    what: &str,
) -> anyhow::Result<u64> {
    let missing = subjects.saturating_sub(keyspace.created);
    if keyspace.next + missing > workloads::DISTINCT_PHONES {
        bail!(
            "{what}: filling to {subjects} subjects would use logins past u{}, whose phone numbers repeat earlier ones (the vault keeps phones unique)",
            workloads::DISTINCT_PHONES - 1
        );
    }
    let mut fill_errors = 0;
    if missing > 0 {
        println!("  {what}: filling to {subjects} subjects ({missing} more)");
        let keys = Keys::Sequential { start: keyspace.next };
        let (result, _) =
            http_load(runtime, settings, servers, target, Workload::Create, keys, settings.fill_limits(missing))?;
        keyspace.next += tickets(&result);
        keyspace.created += result.ok;
        fill_errors = result.errors();
        println!(
            "  … {} created in {:.1} s ({:.0}/s, {fill_errors} errors)",
            result.ok,
            result.elapsed.as_secs_f64(),
            result.throughput()
        );
    }
    Ok(fill_errors)
}

/// The logins the workloads have used so far: `u0..u{next}` were sent as creates, and
/// `created` of those succeeded.
pub struct Keyspace {
    pub next: u64,
    pub created: u64,
}

/// The workloads against vaultd (one server or a cluster's nodes); returns the keys used.
fn vaultd_runs(
    runtime: &Runtime,
    settings: &Settings,
    servers: &[&Server],
    target: &HttpTarget,
    system: System,
    idle: u64,
    report: &mut Report,
) -> anyhow::Result<Keyspace> {
    let mut next_key = 0;
    let mut created = 0;
    if settings.workloads.contains(&Workload::Get) {
        let fill = settings.fill_limits(settings.users);
        let (result, _) =
            http_load(runtime, settings, servers, target, Workload::Create, Keys::Sequential { start: 0 }, fill)?;
        println!(
            "  pre-created {} users in {:.1} s ({} errors)",
            result.ok,
            result.elapsed.as_secs_f64(),
            result.errors()
        );
        next_key += tickets(&result);
        created += result.ok;
    }
    for &workload in &settings.workloads {
        let keys = match workload {
            Workload::Create => Keys::Sequential { start: next_key },
            Workload::Get => Keys::Random { below: settings.users },
        };
        let (result, cpu) = http_load(runtime, settings, servers, target, workload, keys, settings.limits)?;
        if workload == Workload::Create {
            next_key += tickets(&result);
            created += result.ok;
        }
        let peak = largest_memory(servers)?.peak_kib;
        report.add(Run {
            system: system.clone(),
            workload,
            clients: settings.clients,
            result,
            cpu,
            idle_kib: Some(idle),
            peak_kib: Some(peak),
        });
    }
    if let Some(subjects) = settings.subjects {
        let missing = subjects.saturating_sub(created);
        let mut errors = 0;
        if missing > 0 {
            println!("  filling to {subjects} subjects ({missing} more)");
            let fill = settings.fill_limits(missing);
            let keys = Keys::Sequential { start: next_key };
            let (result, _) = http_load(runtime, settings, servers, target, Workload::Create, keys, fill)?;
            next_key += tickets(&result);
            created += result.ok;
            errors = result.errors();
            println!("  … {:.0} creates/s while filling", result.throughput());
        }
        let memory = largest_memory(servers)?;
        report.add_footprint(Footprint {
            system,
            subjects: created,
            idle_kib: idle,
            rss_kib: memory.rss_kib,
            peak_kib: memory.peak_kib,
            errors,
        });
    }
    Ok(Keyspace { next: next_key, created })
}

/// The trivial handler under `workloads` (`trivial_workloads`).
pub fn trivial(
    runtime: &Runtime,
    settings: &Settings,
    workloads: &[Workload],
    report: &mut Report,
) -> anyhow::Result<()> {
    println!("{}: starting", System::Trivial.label());
    skip_failover(settings, &System::Trivial, report);
    let server = servers::start_trivial()?;
    let idle = server.memory()?.rss_kib;
    for &workload in workloads {
        let keys = Keys::Sequential { start: 0 };
        let (result, cpu) =
            http_load(runtime, settings, &[&server], &HttpTarget::Trivial, workload, keys, settings.limits)?;
        let peak = server.memory()?.peak_kib;
        report.add(Run {
            system: System::Trivial,
            workload,
            clients: settings.clients,
            result,
            cpu,
            idle_kib: Some(idle),
            peak_kib: Some(peak),
        });
    }
    Ok(())
}

/// One throwaway cluster per entry of `pgp_options` (pgcrypto's options string for
/// `pgp_sym_encrypt`; the options are stored in each message, so decryption follows) and
/// per entry of `audited` (without and with an audit row per operation).
pub fn postgres(
    runtime: &Runtime,
    settings: &Settings,
    pgp_options: &[String],
    audited: &[bool],
    report: &mut Report,
) -> anyhow::Result<()> {
    let Some(bin) = postgres::find_binaries() else {
        report.skip("PostgreSQL comparison: initdb/pg_ctl not found (apt-get install postgresql)".into());
        return Ok(());
    };
    for options in pgp_options {
        for &audited in audited {
            postgres_runs(runtime, settings, &bin, options, audited, report)?;
            skip_failover(settings, &System::Postgres { options: options.clone(), audited }, report);
        }
    }
    Ok(())
}

fn postgres_runs(
    runtime: &Runtime,
    settings: &Settings,
    bin: &std::path::Path,
    options: &str,
    audited: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let system = System::Postgres { options: options.to_string(), audited };
    println!("{}: starting a throwaway cluster with {}", system.label(), bin.display());
    let cluster = postgres::Cluster::start(bin)?;
    runtime.block_on(cluster.create_schema())?;
    let idle = cluster.memory_kib()?;
    let config = cluster.config();
    let postmaster = cluster.pid()?;
    // The postmaster, its live processes and the backends it has reaped.
    let server_cpu = || procfs::tree_cpu_micros(postmaster);
    let load = |workload: Workload, keys: Keys, limits: Limits| -> anyhow::Result<(LoadResult, CpuUse, u64)> {
        let connect = |_| PgClient::connect(config.clone(), options.to_string(), workload, audited);
        let before = cpu_now(&server_cpu)?;
        let (result, clients) = runtime.block_on(load::run(settings.clients, keys, limits, connect))?;
        // Measured while every backend is still connected.
        let after = cpu_now(&server_cpu)?;
        let memory = cluster.memory_kib().context("cannot read PostgreSQL's memory")?;
        drop(clients);
        let cpu = cpu_use(&before, &after, &result, &[postmaster]);
        Ok((result, cpu, memory))
    };
    let mut next_key = 0;
    if settings.workloads.contains(&Workload::Get) {
        let (result, _, _) =
            load(Workload::Create, Keys::Sequential { start: 0 }, settings.fill_limits(settings.users))?;
        println!(
            "  pre-created {} users in {:.1} s ({} errors)",
            result.ok,
            result.elapsed.as_secs_f64(),
            result.errors()
        );
        next_key += tickets(&result);
    }
    for &workload in &settings.workloads {
        let keys = match workload {
            Workload::Create => Keys::Sequential { start: next_key },
            Workload::Get => Keys::Random { below: settings.users },
        };
        let (result, cpu, memory) = load(workload, keys, settings.limits)?;
        if workload == Workload::Create {
            next_key += tickets(&result);
        }
        report.add(Run {
            system: system.clone(),
            workload,
            clients: settings.clients,
            result,
            cpu,
            idle_kib: Some(idle),
            peak_kib: Some(memory),
        });
    }
    if audited {
        println!("  {} audit rows written", runtime.block_on(cluster.audit_rows())?);
    }
    Ok(())
}
