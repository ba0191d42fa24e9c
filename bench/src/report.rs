//! Collects the figures of a suite and prints them: one line per run as it finishes, and
//! at the end Markdown tables with each vaultd figure beside the spec §9 target. Every
//! throughput figure is also given as a ratio to the trivial handler's for the same
//! kind of request in the same run: the machine's speed drifts between runs, so the
//! ratios are what compare across runs.

use std::time::Duration;

use crate::backup::BackupResult;
use crate::failover::{self, FailoverResult};
use crate::load::LoadResult;
use crate::minimize::{self, MinimizeResult};
use crate::procfs::mib;
use crate::workloads::Workload;

/// Above this much CPU taken by other processes (in cores), a run is flagged.
const DISTURBED_CORES: f64 = 0.10;

/// Says so when other processes or the hypervisor took enough CPU during `phase` to
/// disturb its figures.
fn warn_if_disturbed(phase: &str, cpu: &CpuUse) {
    if cpu.elsewhere_cores > DISTURBED_CORES {
        println!(
            "      warning: other processes or the hypervisor took {:.2} cores during {phase}; its figures are disturbed",
            cpu.elsewhere_cores
        );
    }
}

/// Which kind of system a row measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum System {
    Vaultd(&'static str),
    /// A cluster of this many vaultd nodes; the clients are spread over every node.
    /// With `https`, the API speaks TLS.
    VaultdCluster {
        nodes: usize,
        https: bool,
    },
    Trivial,
    /// With these pgcrypto options (empty: pgcrypto's defaults); `audited`: every operation
    /// writes an audit row in the same transaction as the operation (`postgres.rs`).
    Postgres {
        options: String,
        audited: bool,
    },
}

impl System {
    pub fn label(&self) -> String {
        match self {
            System::Vaultd(mode) => format!("vaultd ({mode})"),
            System::VaultdCluster { nodes, https: false } => format!("vaultd ({nodes}-node cluster)"),
            System::VaultdCluster { nodes, https: true } => format!("vaultd ({nodes}-node cluster, HTTPS)"),
            System::Trivial => "trivial actix handler".into(),
            System::Postgres { options, audited } => {
                let options = if options.is_empty() { String::new() } else { format!(" ({options})") };
                let audit = if *audited { "audited" } else { "unaudited" };
                format!("PostgreSQL + pgcrypto{options}, {audit}")
            }
        }
    }

    fn workload_label(&self, workload: Workload) -> &'static str {
        match (self, workload) {
            (System::Trivial, Workload::Create) => "POST /echo (same JSON)",
            (System::Trivial, Workload::Get) => "GET /",
            (System::Postgres { audited: false, .. }, Workload::Create) => "INSERT encrypted row",
            (System::Postgres { audited: false, .. }, Workload::Get) => "SELECT by HMAC + decrypt, no audit",
            (System::Postgres { audited: true, .. }, Workload::Create) => "INSERT row + audit row, one tx",
            (System::Postgres { audited: true, .. }, Workload::Get) => "SELECT + decrypt + audit row, one tx",
            (System::Vaultd(_), Workload::Create) => "create user (audited)",
            (System::Vaultd(_), Workload::Get) => "get user by login (audited)",
            (System::VaultdCluster { .. }, Workload::Create) => "create user (replicated, audited)",
            (System::VaultdCluster { .. }, Workload::Get) => "get user by login (linearizable, audited)",
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
    failovers: Vec<(System, FailoverResult)>,
    minimizations: Vec<(System, MinimizeResult)>,
    backups: Vec<(System, BackupResult)>,
    skipped: Vec<String>,
}

impl Report {
    pub fn add(&mut self, run: Run) {
        let ratio = self.ratio(run.workload, run.result.throughput());
        println!("{}", run_line(&run, ratio));
        for (message, count) in &run.result.errors {
            println!("      {count} × {message}");
        }
        warn_if_disturbed("this run", &run.cpu);
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

    pub fn add_failover(&mut self, system: System, failover: FailoverResult) {
        let figures = &failover.figures;
        println!(
            "  {:<34} failover: {} clients, {:.0} creates/s{} before the kill; first create acknowledged {} after it, ≥ 50% of the rate after {}; {} errors and {} creates in the {:.1} s after the kill; new leader {}",
            system.label(),
            failover.clients,
            figures.rate_before,
            times_trivial(self.ratio(Workload::Create, figures.rate_before)),
            seconds(figures.first_write),
            seconds(figures.half_rate),
            figures.errors_after,
            figures.ok_after,
            figures.after.as_secs_f64(),
            failover.new_leader.map_or("none found".to_string(), |id| format!("id {id}")),
        );
        for (message, count) in &failover.errors {
            println!("      {count} × {message}");
        }
        if figures.errors_before > 0 {
            println!("      {} errors before the kill", figures.errors_before);
        }
        self.failovers.push((system, failover));
    }

    pub fn add_minimize(&mut self, system: System, result: MinimizeResult) {
        let report = &result.report;
        println!(
            "  {:<34} minimize: {} subjects, {} changed ({} matched, {} skipped) in {:.1} s ({:.1} s at the client): {:.0} changed/s{}; gets {:.0}/s → {:.0}/s{}, p50 {:.2} → {:.2} ms, p99 {:.2} → {:.2} ms, {} errors during the run; rerun changed {}",
            system.label(),
            result.subjects,
            report.changed,
            report.matched,
            minimize::skipped(report),
            result.vault_time().as_secs_f64(),
            result.client_time.as_secs_f64(),
            result.changed_per_second(),
            times_trivial(self.ratio(Workload::Create, result.changed_per_second())),
            result.baseline.throughput(),
            result.during.throughput(),
            match (
                self.ratio(Workload::Get, result.baseline.throughput()),
                self.ratio(Workload::Get, result.during.throughput())
            ) {
                (Some(baseline), Some(during)) => format!(" ({baseline:.2} → {during:.2}× trivial)"),
                _ => String::new(),
            },
            result.baseline.percentile_ms(50.0),
            result.during.percentile_ms(50.0),
            result.baseline.percentile_ms(99.0),
            result.during.percentile_ms(99.0),
            result.during.errors(),
            result.rerun.changed,
        );
        for (message, count) in &result.during.errors {
            println!("      {count} × {message} (gets during the run)");
        }
        if result.fill_errors > 0 {
            println!("      warning: {} creates failed while filling the vault", result.fill_errors);
        }
        if report.changed + minimize::skipped(report) != result.subjects {
            println!(
                "      warning: the run changed {} of {} subjects (all have a phone)",
                report.changed, result.subjects
            );
        }
        if result.rerun.changed != 0 {
            println!("      warning: the rerun changed {} subjects; a rerun should change none", result.rerun.changed);
        }
        warn_if_disturbed("the baseline", &result.baseline_cpu);
        warn_if_disturbed("the run", &result.during_cpu);
        self.minimizations.push((system, result));
    }

    pub fn add_backup(&mut self, system: System, result: BackupResult) {
        println!(
            "  {:<34} backup: {} subjects, {:.1} MB in {:.1} s ({:.0} subjects/s, {:.1} MB/s); gets {:.0}/s → {:.0}/s, p50 {:.2} → {:.2} ms, p99 {:.2} → {:.2} ms, {} errors during it; restore of {} subjects in {:.1} s",
            system.label(),
            result.backup_subjects,
            result.backup_bytes as f64 / 1e6,
            result.backup_time.as_secs_f64(),
            result.subjects_per_second(),
            result.megabytes_per_second(),
            result.baseline.throughput(),
            result.during.throughput(),
            result.baseline.percentile_ms(50.0),
            result.during.percentile_ms(50.0),
            result.baseline.percentile_ms(99.0),
            result.during.percentile_ms(99.0),
            result.during.errors(),
            result.restore_subjects,
            result.restore_time.as_secs_f64(),
        );
        for (message, count) in &result.during.errors {
            println!("      {count} × {message} (gets during the backup)");
        }
        if result.fill_errors > 0 {
            println!("      warning: {} creates failed while filling the vault", result.fill_errors);
        }
        if result.backup_subjects < result.subjects || result.restore_subjects != result.backup_subjects {
            println!(
                "      warning: {} subjects in the vault, {} in the backup, {} restored",
                result.subjects, result.backup_subjects, result.restore_subjects
            );
        }
        warn_if_disturbed("the baseline", &result.baseline_cpu);
        warn_if_disturbed("the backup", &result.during_cpu);
        self.backups.push((system, result));
    }

    /// The trivial handler's run of `workload` in this run, if it was measured.
    fn trivial_run(&self, workload: Workload) -> Option<&Run> {
        self.runs.iter().find(|run| run.system == System::Trivial && run.workload == workload)
    }

    /// The trivial handler's throughput for `workload` in this run, if it was measured.
    fn trivial_rate(&self, workload: Workload) -> Option<f64> {
        self.trivial_run(workload).map(|run| run.result.throughput()).filter(|rate| *rate > 0.0)
    }

    /// A run's p99 latency and server CPU per request as multiples of the trivial
    /// handler's for the same kind of request (higher is slower).
    fn cost_ratios(&self, run: &Run) -> CostRatios {
        let Some(trivial) = self.trivial_run(run.workload) else { return CostRatios::default() };
        let divide = |value: f64, by: f64| (by > 0.0).then(|| value / by);
        let latency = |run: &Run| [run.result.percentile_ms(50.0), run.result.percentile_ms(99.0), run.result.max_ms()];
        let (mine, theirs) = (latency(run), latency(trivial));
        CostRatios {
            latency: [0, 1, 2].map(|i| divide(mine[i], theirs[i])),
            cpu: [
                divide(run.cpu.server_micros, trivial.cpu.server_micros),
                divide(run.cpu.client_micros, trivial.cpu.client_micros),
            ],
        }
    }

    /// `rate` divided by the trivial handler's rate for the same kind of request (creates
    /// and other writes: `POST /echo`; gets: `GET /`) in this run.
    fn ratio(&self, workload: Workload, rate: f64) -> Option<f64> {
        self.trivial_rate(workload).map(|top| rate / top)
    }

    pub fn skip(&mut self, message: String) {
        println!("  skipped: {message}");
        self.skipped.push(message);
    }

    /// The Markdown summary.
    pub fn tables(&self) -> String {
        let mut out = String::new();
        // Only the failover or minimize run selected: no per-request table.
        if !self.runs.is_empty() {
            out.push_str(
                "| system | workload | clients | req/s | p50 ms | p99 ms | max ms | errors | vs trivial | p50 / p99 / max × trivial | spec target | CPU µs/req server / client | CPU × trivial server / client | other load (cores) | server memory idle / peak MiB |\n\
                 |---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|\n",
            );
        }
        for run in &self.runs {
            let result = &run.result;
            let ratio = ratio_cell(self.ratio(run.workload, result.throughput()));
            let costs = self.cost_ratios(run);
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {:.2} | {} |\n",
                run.system.label(),
                run.system.workload_label(run.workload),
                run.clients,
                result.throughput(),
                result.percentile_ms(50.0),
                result.percentile_ms(99.0),
                result.max_ms(),
                result.errors(),
                ratio,
                costs.latency.map(ratio_cell).join(" / "),
                spec_target(&run.system, run.workload),
                run.cpu.server_micros,
                run.cpu.client_micros,
                costs.cpu.map(ratio_cell).join(" / "),
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
        if let Some(nodes) = self.runs.iter().find_map(|run| match run.system {
            System::VaultdCluster { nodes, .. } => Some(nodes),
            _ => None,
        }) {
            out.push_str(&format!(
                "\nvaultd ({nodes}-node cluster): the clients are spread round-robin over the {nodes} nodes; server CPU µs/req is the sum over the {nodes} vaultd processes, and memory is the largest node's (idle: once the cluster is formed; peak: VmHWM).\n"
            ));
        }
        if !self.failovers.is_empty() {
            out.push_str(&self.failover_table());
        }
        if !self.minimizations.is_empty() {
            out.push_str(&self.minimize_table());
        }
        if !self.backups.is_empty() {
            out.push_str(&self.backup_table());
        }
        if !(self.runs.is_empty()
            && self.failovers.is_empty()
            && self.minimizations.is_empty()
            && self.backups.is_empty())
        {
            out.push_str(&self.ratio_note());
        }
        for message in &self.skipped {
            out.push_str(&format!("\nSkipped: {message}\n"));
        }
        out
    }

    fn failover_table(&self) -> String {
        let mut out = String::from(
            "\n| system | clients | creates/s before kill | vs trivial | leader killed → new leader | first successful create after kill (target ≤ 3 s) | back to ≥ 50% of creates/s | errors after kill | creates after kill | window after kill s |\n\
             |---|--:|--:|--:|---|--:|--:|--:|--:|--:|\n",
        );
        for (system, failover) in &self.failovers {
            let figures = &failover.figures;
            out.push_str(&format!(
                "| {} | {} | {:.0} | {} | id {} → {} | {} | {} | {} | {} | {:.1} |\n",
                system.label(),
                failover.clients,
                figures.rate_before,
                ratio_cell(self.ratio(Workload::Create, figures.rate_before)),
                failover.killed,
                failover.new_leader.map_or("none found".to_string(), |id| format!("id {id}")),
                seconds(figures.first_write),
                seconds(figures.half_rate),
                figures.errors_after,
                figures.ok_after,
                figures.after.as_secs_f64(),
            ));
        }
        out.push_str(&format!(
            "\nFailover: creates from clients spread over the nodes; a client whose request fails pauses {} ms and tries the next node, with a new login. The leader gets SIGKILL after the load has run for `--duration`. \"First successful create\" is the first 200 to a request sent after the kill; \"back to ≥ 50%\" is the end of the first {} ms window in which such requests succeeded at half the earlier rate or more. Every failed attempt (refused connection, non-200 answer, timeout) counts as an error.\n",
            failover::RETRY_PAUSE.as_millis(),
            failover::RATE_WINDOW.as_millis(),
        ));
        out
    }

    fn minimize_table(&self) -> String {
        let mut out = String::from(
            "\n| system | subjects | changed | skipped | run s (vault / client) | changed/s | vs trivial | get clients | gets/s baseline → during | vs trivial | get p50 ms baseline → during | get p99 ms baseline → during | get errors during | rerun changed | largest node RSS MiB before → after (peak) | other load (cores) baseline / during |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for (system, result) in &self.minimizations {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} / {:.1} | {:.0} | {} | {} | {:.0} → {:.0} | {} → {} | {:.2} → {:.2} | {:.2} → {:.2} | {} | {} | {:.1} → {:.1} ({:.1}) | {:.2} / {:.2} |\n",
                system.label(),
                result.subjects,
                result.report.changed,
                minimize::skipped(&result.report),
                result.vault_time().as_secs_f64(),
                result.client_time.as_secs_f64(),
                result.changed_per_second(),
                ratio_cell(self.ratio(Workload::Create, result.changed_per_second())),
                result.clients,
                result.baseline.throughput(),
                result.during.throughput(),
                ratio_cell(self.ratio(Workload::Get, result.baseline.throughput())),
                ratio_cell(self.ratio(Workload::Get, result.during.throughput())),
                result.baseline.percentile_ms(50.0),
                result.during.percentile_ms(50.0),
                result.baseline.percentile_ms(99.0),
                result.during.percentile_ms(99.0),
                result.during.errors(),
                result.rerun.changed,
                mib(result.memory_before.rss_kib),
                mib(result.memory_after.rss_kib),
                mib(result.memory_after.peak_kib),
                result.baseline_cpu.elsewhere_cores,
                result.during_cpu.elsewhere_cores,
            ));
        }
        out.push_str(&format!(
            "\nMinimize: one `POST /v1/sys/retention/run` (policy `{}`, dropping `{}` from every profile that has one) to the leader, with the get-by-login load going on meanwhile over every node and stopped when the run answers. The baseline is the same get load for `--duration` just before. Run time \"vault\" is the report's `finishedAt - startedAt`, \"client\" from sending the request to reading its answer; changed/s uses the vault's. The rerun (same policy, no load) must change 0.\n",
            minimize::POLICY,
            minimize::FIELD,
        ));
        out
    }

    fn backup_table(&self) -> String {
        let mut out = String::from(
            "\n| system | subjects | backup MB | backup s | subjects/s | MB/s | get clients | gets/s baseline → during | vs trivial | get p50 ms baseline → during | get p99 ms baseline → during | get errors during | restore s | other load (cores) baseline / during |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for (system, result) in &self.backups {
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {} | {:.0} → {:.0} | {} → {} | {:.2} → {:.2} | {:.2} → {:.2} | {} | {:.1} | {:.2} / {:.2} |\n",
                system.label(),
                result.backup_subjects,
                result.backup_bytes as f64 / 1e6,
                result.backup_time.as_secs_f64(),
                result.subjects_per_second(),
                result.megabytes_per_second(),
                result.clients,
                result.baseline.throughput(),
                result.during.throughput(),
                ratio_cell(self.ratio(Workload::Get, result.baseline.throughput())),
                ratio_cell(self.ratio(Workload::Get, result.during.throughput())),
                result.baseline.percentile_ms(50.0),
                result.during.percentile_ms(50.0),
                result.baseline.percentile_ms(99.0),
                result.during.percentile_ms(99.0),
                result.during.errors(),
                result.restore_time.as_secs_f64(),
                result.baseline_cpu.elsewhere_cores,
                result.during_cpu.elsewhere_cores,
            ));
        }
        out.push_str(
            "\nBackup: `vaultd backup` (the release binary, as a user runs it) into a local directory on the same disk, through the second node of a cluster, with the get-by-login load going on meanwhile over every node and stopped when the command exits; backup s is the command's run time (snapshot, stream, store, ledger). The baseline is the same get load for `--duration` just before. Restore s: `vaultd restore` of that backup into a new data directory (fetch, check, unwrap a key sample, load, snapshot), no load beside it.\n",
        );
        out
    }

    /// What the "vs trivial" figures are, and which are missing.
    fn ratio_note(&self) -> String {
        let mut out = String::from(
            "\nvs trivial: every throughput divided by the trivial actix handler's, measured in this same run with `--clients` clients — creates, failover creates and retention's records changed/s by its `POST /echo` rate, gets by its `GET /` rate; the \"× trivial\" columns divide a run's latencies (p50, p99, max) and CPU per request (server, client) by the trivial handler's for the same kind of request (higher is costlier). The machine's speed drifts between runs and other work may share it, so compare these ratios across runs, not the absolute figures.\n",
        );
        for workload in [Workload::Create, Workload::Get] {
            if self.trivial_rate(workload).is_none() {
                out.push_str(&format!(
                    "No trivial-handler {} figure in this run: the ratios that need it are shown as –.\n",
                    workload.name()
                ));
            }
        }
        out
    }
}

/// A run's latencies (p50, p99, max) and CPU per request (server, client) as multiples of
/// the trivial handler's.
#[derive(Default)]
struct CostRatios {
    latency: [Option<f64>; 3],
    cpu: [Option<f64>; 2],
}

/// A ratio for a table cell, "–" when the trivial figure is missing.
fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or("–".to_string(), |ratio| format!("{ratio:.2}"))
}

/// " (0.25× trivial)" for a progress line, nothing when the trivial figure is not known yet.
fn times_trivial(ratio: Option<f64>) -> String {
    ratio.map_or(String::new(), |ratio| format!(" ({ratio:.2}× trivial)"))
}

/// `1.23 s`, or "not within the run" when it never happened.
fn seconds(time: Option<Duration>) -> String {
    time.map_or("not within the run".to_string(), |time| format!("{:.2} s", time.as_secs_f64()))
}

fn run_line(run: &Run, ratio: Option<f64>) -> String {
    let result = &run.result;
    format!(
        "  {:<34} {:<28} {:>3} clients {:>5.1} s  ok {:>8}  errors {:>5}  {:>9.0} req/s{}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.1} ms  CPU/req {:.0}+{:.0} µs  mem {} MiB",
        run.system.label(),
        run.system.workload_label(run.workload),
        run.clients,
        result.elapsed.as_secs_f64(),
        result.ok,
        result.errors(),
        result.throughput(),
        times_trivial(ratio),
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

/// The spec §9 target for a vaultd figure.
fn spec_target(system: &System, workload: Workload) -> &'static str {
    match (system, workload) {
        (System::Vaultd(_), Workload::Create) => "≥ 10,000/s",
        (System::Vaultd(_), Workload::Get) => "≥ 20,000/s, p99 ≤ 10 ms",
        (System::VaultdCluster { .. }, Workload::Create) => "≥ 5,000/s",
        (System::VaultdCluster { .. }, Workload::Get) => "≥ 10,000/s",
        (System::Postgres { .. }, Workload::Create) => "(spec saw ~3,700/s)",
        (System::Postgres { .. }, Workload::Get) => "(spec saw ~5,000/s)",
        (System::Trivial, Workload::Get) => "(spec saw ~130,000/s)",
        (System::Trivial, Workload::Create) => "",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hdrhistogram::Histogram;

    use super::*;
    use crate::failover::Figures;

    fn run(system: System, workload: Workload, ok: u64) -> Run {
        let mut latency = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        latency.record(1_000).unwrap();
        Run {
            system,
            workload,
            clients: 64,
            result: LoadResult {
                ok,
                rejected: 0,
                failed: 0,
                elapsed: Duration::from_secs(1),
                latency,
                errors: BTreeMap::new(),
            },
            cpu: CpuUse { server_micros: 1.0, client_micros: 1.0, elsewhere_cores: 0.0 },
            idle_kib: None,
            peak_kib: None,
        }
    }

    fn audited(audited: bool) -> System {
        System::Postgres { options: "s2k-mode=1".into(), audited }
    }

    #[test]
    fn postgres_variants_say_whether_they_audit() {
        assert_eq!(audited(false).label(), "PostgreSQL + pgcrypto (s2k-mode=1), unaudited");
        assert_eq!(audited(true).label(), "PostgreSQL + pgcrypto (s2k-mode=1), audited");
        let default = System::Postgres { options: String::new(), audited: true };
        assert_eq!(default.label(), "PostgreSQL + pgcrypto, audited");
    }

    #[test]
    fn every_throughput_has_its_ratio_to_the_trivial_handler_of_the_run() {
        let mut report = Report::default();
        report.add(run(audited(true), Workload::Get, 20_000));
        report.add(run(System::Trivial, Workload::Get, 80_000));
        report.add(run(System::Trivial, Workload::Create, 50_000));
        report.add(run(System::VaultdCluster { nodes: 3, https: false }, Workload::Create, 5_000));
        let figures = Figures {
            before: Duration::from_secs(5),
            after: Duration::from_secs(5),
            rate_before: 4_000.0,
            errors_before: 0,
            first_write: Some(Duration::from_secs(2)),
            half_rate: None,
            ok_after: 1,
            errors_after: 0,
        };
        let failover = FailoverResult { clients: 16, killed: 1, new_leader: Some(2), figures, errors: BTreeMap::new() };
        report.add_failover(System::VaultdCluster { nodes: 3, https: false }, failover);
        let tables = report.tables();
        assert!(tables.contains("| SELECT + decrypt + audit row, one tx | 64 | 20000 |"), "{tables}");
        assert!(tables.contains("| 0 | 0.25 |"), "PostgreSQL get ÷ trivial GET: {tables}");
        assert!(tables.contains("| 0 | 1.00 |"), "trivial rows: {tables}");
        assert!(tables.contains("| 0 | 0.10 |"), "cluster create ÷ trivial POST: {tables}");
        assert!(tables.contains("| 16 | 4000 | 0.08 |"), "failover creates ÷ trivial POST: {tables}");
        assert!(tables.contains("vs trivial: every throughput divided by"), "{tables}");
        assert!(!tables.contains("No trivial-handler"), "{tables}");
    }

    #[test]
    fn a_missing_trivial_figure_is_said() {
        let mut report = Report::default();
        report.add(run(System::Vaultd("demo"), Workload::Get, 20_000));
        let tables = report.tables();
        assert!(tables.contains("| 0 | – |"), "{tables}");
        assert!(tables.contains("No trivial-handler get figure in this run"), "{tables}");
    }
}
