//! Figures about processes, read from Linux's /proc: memory, CPU time, our own uid.
//!
//! The spec sets targets on vaultd's resident memory (idle, after 100k subjects), so the
//! harness reads `VmRSS` (now) and `VmHWM` (peak since start) of the server process.
//! PostgreSQL is many processes sharing memory, where adding their RSS would count shared
//! buffers once per backend; for it the harness adds up `Pss` (proportional share).
//! CPU time per request, of the server and of the load generator itself, shows where a
//! machine's two cores go.

use std::collections::{HashMap, HashSet};
use std::fs;

use anyhow::Context;

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most it has been resident.
    pub peak_kib: u64,
}

/// `VmRSS` and `VmHWM` of one process.
pub fn process(pid: u32) -> anyhow::Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid} is gone"))?;
    Ok(Memory { rss_kib: status_field(&status, "VmRSS:")?, peak_kib: status_field(&status, "VmHWM:")? })
}

/// The sum of `Pss` over a process and all its descendants, in KiB.
pub fn tree_pss_kib(root: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in tree(root)? {
        // A backend may exit between listing and reading; it no longer uses memory.
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            total += status_field(&rollup, "Pss:").unwrap_or(0);
        }
    }
    Ok(total)
}

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of a process (all its threads), in microseconds.
pub fn cpu_micros(pid: u32) -> anyhow::Result<u64> {
    Ok(cpu_times(pid)?.0)
}

/// CPU time of a process tree, in microseconds: what its live processes used plus what
/// their exited (reaped) children used, so the figure only grows as backends come and go.
pub fn tree_cpu_micros(root: u32) -> anyhow::Result<u64> {
    Ok(tree(root)?.into_iter().filter_map(|pid| cpu_times(pid).ok()).map(|(own, children)| own + children).sum())
}

/// Every process's parent and CPU time (own plus reaped children's) at one moment: two
/// of these tell how much CPU *other* processes took during a run, i.e. whether the
/// machine was quiet enough for the figures to mean anything.
pub struct CpuSnapshot {
    processes: HashMap<u32, (u32, u64)>,
    /// Time the hypervisor ran other guests on our virtual CPUs, in microseconds.
    steal: u64,
}

impl CpuSnapshot {
    pub fn take() -> anyhow::Result<Self> {
        let mut processes = HashMap::new();
        for pid in pids()? {
            if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
                if let (Some(parent), Some((own, children))) = (parent_of(&stat), stat_cpu_micros(&stat)) {
                    processes.insert(pid, (parent, own + children));
                }
            }
        }
        let stat = fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        let steal = steal_micros(&stat).context("malformed /proc/stat")?;
        Ok(CpuSnapshot { processes, steal })
    }

    /// Microseconds of CPU stolen by the hypervisor between `self` and `later`.
    pub fn steal_until(&self, later: &CpuSnapshot) -> u64 {
        later.steal.saturating_sub(self.steal)
    }

    fn descendants(&self, root: u32) -> HashSet<u32> {
        let parents: Vec<(u32, u32)> = self.processes.iter().map(|(pid, (parent, _))| (*pid, *parent)).collect();
        descendants(&parents, root).into_iter().collect()
    }
}

/// CPU microseconds used between two snapshots by processes outside the trees rooted at
/// `exclude`. A process that exits in between moves its whole CPU time into its parent's
/// reaped-children time, so the sum over the second snapshot minus the sum over the first
/// (not process by process) is what was used in between.
pub fn cpu_elsewhere(before: &CpuSnapshot, after: &CpuSnapshot, exclude: &[u32]) -> u64 {
    let mut excluded = HashSet::new();
    for &root in exclude {
        excluded.extend(before.descendants(root));
        excluded.extend(after.descendants(root));
    }
    let total = |snapshot: &CpuSnapshot| -> u64 {
        snapshot.processes.iter().filter(|(pid, _)| !excluded.contains(pid)).map(|(_, (_, used))| used).sum()
    };
    total(after).saturating_sub(total(before))
}

/// The `steal` column of /proc/stat's `cpu` line (the eighth number), in microseconds.
fn steal_micros(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some(ticks * 1_000_000 / TICKS_PER_SECOND)
}

/// (utime + stime, cutime + cstime) of a process, in microseconds.
fn cpu_times(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    stat_cpu_micros(&stat).context("malformed /proc/PID/stat")
}

/// Fields 14–17 (utime, stime, cutime, cstime), counted after the command name's `)`.
fn stat_cpu_micros(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11).map(|field| field.parse::<u64>().ok());
    let mut next = || fields.next().flatten().map(|ticks| ticks * 1_000_000 / TICKS_PER_SECOND);
    let own = next()? + next()?;
    let children = next()? + next()?;
    Some((own, children))
}

/// The pids of all processes.
fn pids() -> anyhow::Result<Vec<u32>> {
    Ok(fs::read_dir("/proc")
        .context("cannot list /proc")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
        .collect())
}

/// `root` and every process descended from it.
fn tree(root: u32) -> anyhow::Result<Vec<u32>> {
    let mut parents = Vec::new();
    for pid in pids()? {
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(parent) = parent_of(&stat) {
                parents.push((pid, parent));
            }
        }
    }
    Ok(descendants(&parents, root))
}

/// `root` and its descendants, from (pid, parent) pairs.
fn descendants(parents: &[(u32, u32)], root: u32) -> Vec<u32> {
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let current = found[index];
        found.extend(parents.iter().filter(|(_, parent)| *parent == current).map(|(pid, _)| *pid));
        index += 1;
    }
    found
}

/// The parent pid from a `/proc/PID/stat` line; the command name may hold spaces and
/// parentheses, so parse from the last `)`.
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A `Name:   123 kB` field.
fn status_field(text: &str, name: &str) -> anyhow::Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .with_context(|| format!("no {name} field"))
}

/// The real user id of this process, from /proc (no libc needed).
pub fn current_uid() -> anyhow::Result<u32> {
    let status = fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .context("no Uid field")
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory() {
        let memory = process(std::process::id()).unwrap();
        assert!(memory.rss_kib > 0);
        assert!(memory.peak_kib >= memory.rss_kib);
        assert!(tree_pss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn reads_cpu_time() {
        let line = "42 (x y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(stat_cpu_micros(line), Some((3_000_000, 0)));
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(cpu_micros(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn cpu_elsewhere_counts_other_trees_only() {
        let snapshot = |entries: &[(u32, u32, u64)]| CpuSnapshot {
            processes: entries.iter().map(|&(pid, parent, used)| (pid, (parent, used))).collect(),
            steal: 0,
        };
        let before = snapshot(&[(1, 0, 100), (10, 1, 50), (20, 1, 0), (30, 20, 5), (60, 1, 500)]);
        // 10 used 30 more; 20's tree (30 exited, 40 started) is excluded; 50 is new and
        // used 3; 60 used 20 more, exited, and 1 reaped it (its 520 now count under 1).
        let after = snapshot(&[(1, 0, 620), (10, 1, 80), (20, 1, 40), (40, 20, 7), (50, 1, 3)]);
        assert_eq!(cpu_elsewhere(&before, &after, &[20]), 53);
        assert!(CpuSnapshot::take().unwrap().processes.contains_key(&std::process::id()));
    }

    #[test]
    fn reads_steal_time() {
        let stat = "cpu  445469 0 62422 739627 5970 0 9312 5756 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(steal_micros(stat), Some(57_560_000));
        assert!(CpuSnapshot::take().is_ok());
    }

    #[test]
    fn parent_survives_odd_command_names() {
        assert_eq!(parent_of("123 (a) b (c)) S 77 123 123 0"), Some(77));
    }

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tvaultd\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_field(text, "VmRSS:").unwrap(), 10240);
        assert_eq!(status_field(text, "VmHWM:").unwrap(), 20480);
        assert!(status_field(text, "Pss:").is_err());
    }
}
