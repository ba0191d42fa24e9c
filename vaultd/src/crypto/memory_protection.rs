//! Keeps key material out of places it could be read from later: core dumps (the process
//! is made non-dumpable, which also keeps other users' debuggers out, and its core-file
//! limit is zero) and swap (memory is locked as it is touched, as Vault does with
//! `mlockall`). Locking needs `CAP_IPC_LOCK` or a large enough `RLIMIT_MEMLOCK`; without
//! either the vault still starts and says so, since a pod without that capability is
//! common and a node without swap does not need it.

/// What [`protect_process_memory`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryProtection {
    pub no_core_dumps: bool,
    pub locked: bool,
}

/// Applies the protections to this process, logging any that the system refused.
pub fn protect_process_memory() -> MemoryProtection {
    // SAFETY: prctl(PR_SET_DUMPABLE) and setrlimit take plain integers and a pointer to a
    // valid rlimit; neither touches memory of ours beyond that.
    let no_core_dumps = unsafe {
        let limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 && libc::setrlimit(libc::RLIMIT_CORE, &limit) == 0
    };
    if !no_core_dumps {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot turn off core dumps");
    }
    // MCL_ONFAULT: lock pages as they are touched, not every mapping up front (thread
    // stacks would otherwise be committed in full).
    // SAFETY: mlockall takes flags only.
    let locked = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } == 0;
    if !locked {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lock memory against swapping (needs CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK); keys could reach swap"
        );
    }
    MemoryProtection { no_core_dumps, locked }
}
