//! The backup figures: how fast `vaultd backup` copies a full vault while it serves the
//! standard get load, what the backup does to that load's latency, and how long
//! `vaultd restore` takes to make a new vault from the backup.
//!
//! The run: fill the vault to `subjects` subjects, measure the get-by-login load alone for
//! `--duration` (the baseline), then run `vaultd backup` into a local directory with the
//! same get load going on until the command exits (`load::run_until`), then `vaultd
//! restore` of that backup into a scratch data directory (no load). Both commands are the
//! release binaries beside the harness, reached as a user would run them.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::load::LoadResult;
use crate::report::CpuUse;
use crate::servers::{CliAccess, Server};
use crate::suite::{self, Baseline, Keyspace, Settings};
use crate::workloads::{HttpTarget, Workload};

/// Subjects the vault is filled to when `--subjects` is not given (the figure).
pub const DEFAULT_SUBJECTS: u64 = 100_000;

#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub subjects: u64,
    /// `vaultd backup` and `vaultd restore` each give up after this long.
    pub timeout: Duration,
}

/// What the backup run measured.
pub struct BackupResult {
    pub subjects: u64,
    pub fill_errors: u64,
    pub clients: usize,
    pub baseline: LoadResult,
    pub baseline_cpu: CpuUse,
    /// The gets sent while the backup ran.
    pub during: LoadResult,
    pub during_cpu: CpuUse,
    /// The backup command's time (start to exit), the subjects it says it copied and the
    /// bytes it stored.
    pub backup_time: Duration,
    pub backup_subjects: u64,
    pub backup_bytes: u64,
    /// The restore command's time, and the subjects it restored.
    pub restore_time: Duration,
    pub restore_subjects: u64,
}

impl BackupResult {
    pub fn subjects_per_second(&self) -> f64 {
        self.backup_subjects as f64 / self.backup_time.as_secs_f64().max(f64::EPSILON)
    }

    pub fn megabytes_per_second(&self) -> f64 {
        self.backup_bytes as f64 / 1e6 / self.backup_time.as_secs_f64().max(f64::EPSILON)
    }
}

/// Runs `vaultd <args>` with the vault's HSM variables; its JSON report and how long it took.
async fn vaultd_command(
    settings: &Settings,
    access: &CliAccess,
    args: &[String],
    timeout: Duration,
) -> anyhow::Result<(Value, Duration)> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&settings.vaultd);
    command.args(args).envs(access.hsm_env.iter().cloned()).kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .with_context(|| format!("vaultd {} took longer than {timeout:?}", args[0]))??;
    let took = started.elapsed();
    if !output.status.success() {
        bail!("vaultd {} failed ({}): {}", args[0], output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    let report = serde_json::from_slice(&output.stdout).with_context(|| {
        format!("vaultd {} printed no report: {}", args[0], String::from_utf8_lossy(&output.stdout))
    })?;
    Ok((report, took))
}

/// The backup run against `servers` (one vaultd, or a cluster's nodes, which share the get
/// clients); the commands reach the vault through `access`.
pub fn run(
    runtime: &Runtime,
    settings: &Settings,
    plan: &Plan,
    servers: &[&Server],
    target: &HttpTarget,
    access: &CliAccess,
    keyspace: &mut Keyspace,
) -> anyhow::Result<BackupResult> {
    let Baseline { fill_errors, gets, result: baseline, cpu: baseline_cpu } =
        suite::fill_and_baseline(runtime, settings, servers, target, keyspace, plan.subjects, "backup")?;
    let scratch = tempfile::Builder::new().prefix("strongroom-bench-backup-").tempdir()?;
    let store = scratch.path().join("backups");
    let mut backup_args = vec![
        "backup".to_string(),
        "--vault".into(),
        access.url.clone(),
        "--token-file".into(),
        access.token_file.display().to_string(),
        "--to".into(),
        store.display().to_string(),
    ];
    if let Some(ca) = &access.ca_file {
        backup_args.extend(["--ca-file".to_string(), ca.display().to_string()]);
    }
    println!("  backup: vaultd backup of {} beside the get load", access.url);
    let during_limits = settings.beside_limits(plan.timeout);
    let (during, during_cpu, outcome) = suite::http_load_until(
        runtime,
        settings,
        servers,
        target,
        Workload::Get,
        gets,
        during_limits,
        vaultd_command(settings, access, &backup_args, plan.timeout),
    )?;
    let (taken, backup_time) = outcome.context("the get load ended before the backup did")??;
    let restore_args = [
        "restore".to_string(),
        "--from".into(),
        store.display().to_string(),
        "--data-dir".into(),
        scratch.path().join("restored").display().to_string(),
    ];
    println!("  backup: vaultd restore of it into a new data directory");
    let (restored, restore_time) =
        runtime.block_on(vaultd_command(settings, access, &restore_args, plan.timeout)).context("restoring")?;
    let number = |report: &Value, field: &str| report[field].as_u64().unwrap_or(0);
    Ok(BackupResult {
        subjects: keyspace.created,
        fill_errors,
        clients: settings.clients,
        baseline,
        baseline_cpu,
        during,
        during_cpu,
        backup_time,
        backup_subjects: number(&taken, "subjects"),
        backup_bytes: number(&taken, "bytes"),
        restore_time,
        restore_subjects: number(&restored, "subjects"),
    })
}
