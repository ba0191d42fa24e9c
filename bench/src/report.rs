//! Collects the figures of a suite and prints them: one line per run as it finishes, and
//! at the end Markdown tables with each vaultd figure beside the spec §9 target and the
//! trivial handler's figure for the same workload.

use std::collections::BTreeMap;

use crate::load::LoadResult;
use crate::procfs::mib;
use crate::workloads::Workload;

/// Above this much CPU taken by other processes (in cores), a run is flagged.
const DISTURBED_CORES: f64 = 0.10;

/// Which kind of system a row measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum System {
    Vaultd(&'static str),
    Trivial,
    /// With these pgcrypto options (empty: pgcrypto's defaults).
    Postgres(String),
}

impl System {
    pub fn label(&self) -> String {
        match self {
            System::Vaultd(mode) => format!("vaultd ({mode})"),
            System::Trivial => "trivial actix handler".into(),
            System::Postgres(options) if options.is_empty() => "PostgreSQL + pgcrypto".into(),
            System::Postgres(options) => format!("PostgreSQL + pgcrypto ({options})"),
        }
    }

    fn workload_label(&self, workload: Workload) -> &'static str {
        match (self, workload) {
            (System::Trivial, Workload::Create) => "POST /echo (same JSON)",
            (System::Trivial, Workload::Get) => "GET /",
            (System::Postgres(_), Workload::Create) => "INSERT encrypted row",
            (System::Postgres(_), Workload::Get) => "SELECT by HMAC + decrypt",
            (System::Vaultd(_), Workload::Create) => "create user",
            (System::Vaultd(_), Workload::Get) => "get user by login (audited)",
        }
    }
}

/// CPU time spent per request, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    /// By the server (for PostgreSQL: the postmaster and all its processes).
    pub server_micros: f64,
    /// By the load generator (this process).
    pub client_micros: f64,
    /// Cores' worth of CPU that other processes on the machine, or the hypervisor (steal),
    /// took during the run; more than a few hundredths means the figures are disturbed.
    pub elsewhere_cores: f64,
}

/// One measured run.
pub struct Run {
    pub system: System,
    pub workload: Workload,
    pub clients: usize,
    pub result: LoadResult,
    pub cpu: CpuUse,
    /// Server memory before the load (KiB); for vaultd its RSS right after start.
    pub idle_kib: Option<u64>,
    /// Server memory at its peak so far (vaultd: VmHWM) or at the end of the run with
    /// every client still connected (PostgreSQL: Pss of all processes), in KiB.
    pub peak_kib: Option<u64>,
}

/// vaultd's memory after holding many subjects.
pub struct Footprint {
    pub system: System,
    pub subjects: u64,
    pub idle_kib: u64,
    pub rss_kib: u64,
    pub peak_kib: u64,
    pub errors: u64,
}

#[derive(Default)]
pub struct Report {
    runs: Vec<Run>,
    footprints: Vec<Footprint>,
    skipped: Vec<String>,
}

impl Report {
    pub fn add(&mut self, run: Run) {
        println!("{}", run_line(&run));
        for (message, count) in &run.result.errors {
            println!("      {count} × {message}");
        }
        if run.cpu.elsewhere_cores > DISTURBED_CORES {
            println!(
                "      warning: other processes or the hypervisor took {:.2} cores during this run; its figures are disturbed",
                run.cpu.elsewhere_cores
            );
        }
        self.runs.push(run);
    }

    pub fn add_footprint(&mut self, footprint: Footprint) {
        println!(
            "  {:<34} {} subjects: RSS {:.1} MiB (idle was {:.1} MiB), peak {:.1} MiB, {} errors",
            footprint.system.label(),
            footprint.subjects,
            mib(footprint.rss_kib),
            mib(footprint.idle_kib),
            mib(footprint.peak_kib),
            footprint.errors
        );
        self.footprints.push(footprint);
    }

    pub fn skip(&mut self, message: String) {
        println!("  skipped: {message}");
        self.skipped.push(message);
    }

    /// The Markdown summary.
    pub fn tables(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| system | workload | clients | req/s | p50 ms | p99 ms | max ms | errors | vs trivial | spec target | CPU µs/req server / client | other load (cores) | server memory idle / peak MiB |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|---|\n",
        );
        let ceiling: BTreeMap<Workload, f64> = self
            .runs
            .iter()
            .filter(|run| run.system == System::Trivial)
            .map(|run| (run.workload, run.result.throughput()))
            .collect();
        for run in &self.runs {
            let result = &run.result;
            let ratio = match (&run.system, ceiling.get(&run.workload)) {
                (System::Trivial, _) => "1.00".to_string(),
                (_, Some(top)) if *top > 0.0 => format!("{:.2}", result.throughput() / top),
                _ => "–".to_string(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {:.0} / {:.0} | {:.2} | {} |\n",
                run.system.label(),
                run.system.workload_label(run.workload),
                run.clients,
                result.throughput(),
                result.percentile_ms(50.0),
                result.percentile_ms(99.0),
                result.max_ms(),
                result.errors(),
                ratio,
                spec_target(&run.system, run.workload),
                run.cpu.server_micros,
                run.cpu.client_micros,
                run.cpu.elsewhere_cores,
                memory_cell(run.idle_kib, run.peak_kib),
            ));
        }
        if !self.footprints.is_empty() {
            out.push_str(
                "\n| system | subjects | idle RSS MiB (target ≤ 50) | RSS after MiB (target ≤ 300) | peak RSS MiB | errors |\n\
                 |---|--:|--:|--:|--:|--:|\n",
            );
            for footprint in &self.footprints {
                out.push_str(&format!(
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {} |\n",
                    footprint.system.label(),
                    footprint.subjects,
                    mib(footprint.idle_kib),
                    mib(footprint.rss_kib),
                    mib(footprint.peak_kib),
                    footprint.errors
                ));
            }
        }
        for message in &self.skipped {
            out.push_str(&format!("\nSkipped: {message}\n"));
        }
        out
    }
}

fn run_line(run: &Run) -> String {
    let result = &run.result;
    format!(
        "  {:<34} {:<28} {:>3} clients {:>5.1} s  ok {:>8}  errors {:>5}  {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.1} ms  CPU/req {:.0}+{:.0} µs  mem {} MiB",
        run.system.label(),
        run.system.workload_label(run.workload),
        run.clients,
        result.elapsed.as_secs_f64(),
        result.ok,
        result.errors(),
        result.throughput(),
        result.percentile_ms(50.0),
        result.percentile_ms(99.0),
        result.max_ms(),
        run.cpu.server_micros,
        run.cpu.client_micros,
        memory_cell(run.idle_kib, run.peak_kib),
    )
}

fn memory_cell(idle: Option<u64>, peak: Option<u64>) -> String {
    let show = |kib: Option<u64>| kib.map_or("–".to_string(), |kib| format!("{:.1}", mib(kib)));
    format!("{} / {}", show(idle), show(peak))
}

/// The spec §9 single-node target for a vaultd figure.
fn spec_target(system: &System, workload: Workload) -> &'static str {
    match (system, workload) {
        (System::Vaultd(_), Workload::Create) => "≥ 10,000/s",
        (System::Vaultd(_), Workload::Get) => "≥ 20,000/s, p99 ≤ 10 ms",
        (System::Postgres(_), Workload::Create) => "(spec saw ~3,700/s)",
        (System::Postgres(_), Workload::Get) => "(spec saw ~5,000/s)",
        (System::Trivial, Workload::Get) => "(spec saw ~130,000/s)",
        (System::Trivial, Workload::Create) => "",
    }
}
