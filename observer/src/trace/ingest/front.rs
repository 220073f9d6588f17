//! `TALLY_FRONT` (see `lazyvma_model::trace_abi::TallyFront`): the per-CPU entries the slab
//! programs keep in front of `TRACE_TALLY`. Userspace never reads them while the programs
//! run; where a read of the map must hold every count so far (the seed's end marker, a
//! live row), each online CPU is asked to add its entries to the map first: a thread pinned
//! to it sends lazyvma's `MARKER_FLUSH_FRONT`, whose program runs there. The end reads the
//! entries left, once the programs are detached (`bpf::read_front`). Also the one sender of
//! lazyvma's own markers (`marker`).
use lazyvma_model::trace_abi::{MARKER_BASE, MARKER_FLUSH_FRONT};

/// Whether this process may run on every online CPU: else the front is not used (a CPU
/// whose entries could not be flushed would hide counts from the seed's end marker).
pub fn usable() -> bool {
    let Ok(cpus) = aya::util::online_cpus() else { return false };
    // SAFETY: a zeroed cpu_set_t is a valid buffer for sched_getaffinity.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: this thread's mask into a buffer of the size given.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return false;
    }
    // SAFETY: CPU_ISSET reads the set; the index is checked against its size first.
    cpus.iter().all(|&c| (c as usize) < 8 * std::mem::size_of::<libc::cpu_set_t>() && unsafe { libc::CPU_ISSET(c as usize, &set) })
}

/// Every online CPU's front into the map. A CPU that cannot be reached (gone offline since
/// `usable`) keeps its entries until the end, when they are read.
pub fn flush() {
    let Ok(cpus) = aya::util::online_cpus() else { return };
    // A thread of its own: the caller's CPU affinity stays as it was.
    std::thread::scope(|s| {
        s.spawn(|| {
            for cpu in cpus {
                if pin(cpu) {
                    marker(MARKER_FLUSH_FRONT);
                }
            }
        });
    });
}

/// `madvise(0, 0, MARKER_BASE + id)` from this thread: an invalid advice on an empty range
/// (EINVAL, nothing changes), seen by `trace_marker` on the CPU it runs on.
pub fn marker(id: u32) {
    // SAFETY: madvise of no memory.
    unsafe { libc::syscall(libc::SYS_madvise, 0usize, 0usize, (MARKER_BASE + u64::from(id)) as libc::c_long) };
}

/// This thread on `cpu` only.
fn pin(cpu: u32) -> bool {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET bounds-checks the index.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu as usize >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return false;
        }
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
