//! The guard that keeps a full disk from stopping Raft. openraft stops a node's Raft core
//! for good when its storage fails, and a write that meets ENOSPC is such a failure; so a
//! node refuses new work before its file system is full (etcd's NOSPACE alarm is the
//! model), measuring free space with `statvfs` before every proposal:
//!
//! - below the reserve (`--min-free-bytes`), commands that add data are refused
//!   (`Refusal::NoSpace`, 507); reads and erasures go on (`Change::is_essential`);
//! - below half the reserve, those are refused too, and so are the leader's entries and
//!   snapshots on the peer port (the follower lags instead of stopping): the rest is room
//!   for the snapshot and the log purge that free space, and for what is in flight.
//!
//! The leader also counts what it has admitted but not yet applied (twice each batch's
//! encoded size: the log entry and the state it writes) as already used, so that many
//! large writes at once cannot overrun the reserve between two measurements: each is
//! admitted only if there is room after those before it.
//!
//! Nothing needs clearing: once space is freed the next proposal or append is admitted.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::rpc::Refusal;

/// The reserve when none is configured, unless a quarter of the file system is less.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// What a command needs from the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// It adds data: refused below the reserve.
    Growth,
    /// It reads or removes data: refused only below half the reserve.
    Essential,
}

/// The data directory's file system as last measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// Below this, only essential commands are admitted.
    pub reserve: u64,
}

impl Room {
    pub fn is_full(&self) -> bool {
        self.free < self.reserve
    }

    fn admits(&self, need: Need) -> bool {
        match need {
            Need::Growth => self.free >= self.reserve,
            Need::Essential => self.free >= self.reserve / 2,
        }
    }
}

pub struct FreeSpace {
    dir: PathBuf,
    /// `None`: the default; `Some(0)`: the guard is off.
    min_free: Option<u64>,
    /// Whether the last measurement found less than the reserve (to log each change once).
    full: AtomicBool,
    /// Bytes admitted proposals will still write (see [`InFlight`]).
    in_flight: AtomicU64,
}

/// Bytes an admitted proposal is expected to write, counted as used until it is dropped.
pub struct InFlight<'a> {
    counter: &'a AtomicU64,
    bytes: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl FreeSpace {
    pub fn new(dir: &Path, min_free: Option<u64>) -> Self {
        FreeSpace { dir: dir.to_path_buf(), min_free, full: AtomicBool::new(false), in_flight: AtomicU64::new(0) }
    }

    /// The directory whose file system is measured (the data directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The reserve on a file system of `size` bytes; `None` when the guard is off.
    pub fn reserve_for(&self, size: u64) -> Option<u64> {
        match self.min_free {
            Some(0) => None,
            Some(min_free) => Some(min_free),
            None => Some(DEFAULT_MIN_FREE_BYTES.min(size / 4)),
        }
    }

    /// Measures the file system now. `None` when the guard is off or the measurement
    /// failed (then nothing is refused on its account; the failure is logged).
    pub fn measure(&self) -> Option<Room> {
        self.measure_beside(self.in_flight.load(Ordering::SeqCst))
    }

    /// [`measure`](Self::measure), counting `in_flight` bytes as used.
    fn measure_beside(&self, in_flight: u64) -> Option<Room> {
        if self.min_free == Some(0) {
            return None;
        }
        let (free, size) = match statvfs(&self.dir) {
            Ok(measured) => measured,
            Err(error) => {
                tracing::warn!(%error, "cannot measure the data directory's free space");
                return None;
            }
        };
        let reserve = self.reserve_for(size)?;
        let room = Room { free: free.saturating_sub(in_flight), reserve };
        let full = room.is_full();
        if self.full.swap(full, Ordering::Relaxed) != full {
            if full {
                tracing::warn!(
                    free_bytes = free,
                    reserve_bytes = reserve,
                    "the data directory's disk is nearly full: refusing writes until space is freed"
                );
            } else {
                tracing::info!(free_bytes = free, "the data directory's disk has room again: accepting writes");
            }
        }
        Some(room)
    }

    /// Whether a command with this need may be proposed now.
    pub fn admit(&self, need: Need) -> Result<(), Refusal> {
        match self.measure() {
            Some(room) if !room.admits(need) => Err(Refusal::NoSpace),
            _ => Ok(()),
        }
    }

    /// [`admit`](Self::admit), for a proposal that will write about `bytes`: what the
    /// proposals admitted before it will still write counts as used, and its own bytes
    /// count for those after it while the returned guard lives.
    pub fn admit_writing(&self, need: Need, bytes: u64) -> Result<InFlight<'_>, Refusal> {
        // Counted first, so that proposals admitted at the same moment see each other;
        // a refused one stops counting when its guard is dropped here.
        let before = self.in_flight.fetch_add(bytes, Ordering::SeqCst);
        let in_flight = InFlight { counter: &self.in_flight, bytes };
        match self.measure_beside(before) {
            Some(room) if !room.admits(need) => Err(Refusal::NoSpace),
            _ => Ok(in_flight),
        }
    }
}

/// Free bytes (for an unprivileged writer) and total size of the file system holding `dir`.
pub fn statvfs(dir: &Path) -> std::io::Result<(u64, u64)> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stats` is written by the call before
    // it is read (only when the call succeeds).
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stats.assume_init()
    };
    let unit = stats.f_frsize as u64;
    Ok((stats.f_bavail as u64 * unit, stats.f_blocks as u64 * unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_stops_at_the_reserve_and_reads_at_half_of_it() {
        let room = |free| Room { free, reserve: 100 };
        assert!(room(100).admits(Need::Growth) && !room(100).is_full());
        assert!(!room(99).admits(Need::Growth) && room(99).is_full());
        assert!(room(50).admits(Need::Essential));
        assert!(!room(49).admits(Need::Essential));
    }

    #[test]
    fn the_data_directory_is_measured_and_a_zero_reserve_turns_the_guard_off() {
        let dir = tempfile::tempdir().unwrap();
        let room = FreeSpace::new(dir.path(), None).measure().unwrap();
        assert!(room.free > 0 && room.reserve > 0 && room.reserve <= DEFAULT_MIN_FREE_BYTES);
        let all = FreeSpace::new(dir.path(), Some(u64::MAX));
        assert_eq!(all.admit(Need::Growth), Err(Refusal::NoSpace));
        assert_eq!(FreeSpace::new(dir.path(), Some(0)).measure(), None);
        assert_eq!(FreeSpace::new(dir.path(), Some(0)).admit(Need::Growth), Ok(()));
    }

    #[test]
    fn what_admitted_proposals_will_write_counts_as_used_until_they_finish() {
        let dir = tempfile::tempdir().unwrap();
        let free = FreeSpace::new(dir.path(), Some(1)).measure().unwrap().free;
        // A reserve of half what is free: one proposal writing two thirds of it fills it.
        let guard = FreeSpace::new(dir.path(), Some(free / 2));
        let large = guard.admit_writing(Need::Growth, free / 3 * 2).unwrap();
        assert_eq!(guard.admit_writing(Need::Growth, 1).err(), Some(Refusal::NoSpace));
        drop(large);
        assert!(guard.admit_writing(Need::Growth, 1).is_ok(), "a finished proposal counts no more");
    }
}
