//! The VMA syscalls' numbers on this architecture, in `trace_abi`'s slot order: the BPF
//! side keeps the syscall records and contexts of these only (`SYSCALL_IDS`), and the
//! seeding pass's brackets are told from them. A loader fact, not the feed's: the loader
//! and the seed need it without the model.
use lazyvma_model::trace_abi::*;

/// `SYSCALL_IDS` for this architecture.
pub fn syscall_ids() -> [u64; SYS_COUNT] {
    let mut ids = [NO_SYSCALL; SYS_COUNT];
    ids[SYS_MMAP] = libc::SYS_mmap as u64;
    ids[SYS_MUNMAP] = libc::SYS_munmap as u64;
    ids[SYS_MPROTECT] = libc::SYS_mprotect as u64;
    ids[SYS_PKEY_MPROTECT] = libc::SYS_pkey_mprotect as u64;
    ids[SYS_MREMAP] = libc::SYS_mremap as u64;
    ids[SYS_MADVISE] = libc::SYS_madvise as u64;
    ids[SYS_BRK] = libc::SYS_brk as u64;
    ids[SYS_EXECVE] = libc::SYS_execve as u64;
    ids[SYS_EXECVEAT] = libc::SYS_execveat as u64;
    ids[SYS_MLOCK] = libc::SYS_mlock as u64;
    ids[SYS_MLOCK2] = libc::SYS_mlock2 as u64;
    ids[SYS_MUNLOCK] = libc::SYS_munlock as u64;
    ids[SYS_MLOCKALL] = libc::SYS_mlockall as u64;
    ids[SYS_MUNLOCKALL] = libc::SYS_munlockall as u64;
    ids[SYS_MSEAL] = 462; // the same on every architecture since 424
    ids[SYS_MBIND] = libc::SYS_mbind as u64;
    ids[SYS_PRCTL] = libc::SYS_prctl as u64;
    ids
}
