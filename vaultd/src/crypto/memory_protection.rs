//! Keeps key material out of places it could be read from later: core dumps (the process
//! is made non-dumpable, which also keeps other users' debuggers out, and its core-file
//! limit is zero) and swap (memory is locked as it is touched, as Vault does with
//! `mlockall`). Locking needs `CAP_IPC_LOCK` or an unlimited `RLIMIT_MEMLOCK`; without
//! either the vault still starts and says so, since a pod without that capability is
//! common and a node without swap does not need it.

/// Applies the protections to this process, logging any that the system refused.
pub fn protect_process_memory() {
    // SAFETY: prctl(PR_SET_DUMPABLE) and setrlimit take plain integers and a pointer to a
    // valid rlimit; neither touches memory of ours beyond that.
    let no_core_dumps = unsafe {
        let limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 && libc::setrlimit(libc::RLIMIT_CORE, &limit) == 0
    };
    if !no_core_dumps {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot turn off core dumps");
    }
    // Locking all future memory under a finite RLIMIT_MEMLOCK would make allocations fail
    // once the limit is reached, and a failed allocation aborts: lock only where nothing
    // limits it.
    let locked = may_lock_everything() && {
        // MCL_ONFAULT: lock pages as they are touched, not every mapping up front (thread
        // stacks would otherwise be committed in full).
        // SAFETY: mlockall takes flags only.
        unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) == 0 }
    };
    if !locked {
        tracing::warn!(
            "memory is not locked against swapping (that needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK); \
             keys could reach swap"
        );
    }
}

/// Whether this process may lock as much memory as it will use: it holds CAP_IPC_LOCK, or
/// its RLIMIT_MEMLOCK is unlimited.
fn may_lock_everything() -> bool {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the rlimit it is given.
    let unlimited =
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0 && limit.rlim_cur == libc::RLIM_INFINITY;
    unlimited || holds_ipc_lock()
}

/// CAP_IPC_LOCK (capability 14) in this process's effective set, from /proc/self/status.
fn holds_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_IPC_LOCK) != 0)
}
