//! Single-process scenarios: faults, VMA surgery (split, mremap, munmap) and threads.
use crate::fail::{os, Fail, Res};
use crate::out::{hold, marker, Phase};
use crate::vma::{self, addr, page, PAGES};
use crate::{Ctx, Done};

/// Map the test VMAs; optionally write them. Returns the pages written.
pub fn setup(c: &Ctx, write: bool) -> Res<usize> {
    marker(Phase::Map);
    vma::map_all(c.n, PAGES)?;
    if !write {
        return Ok(0);
    }
    marker(Phase::Touch);
    Ok(vma::write_all(c.n))
}

pub fn touch(c: &Ctx) -> Res<Done> {
    let pages = setup(c, true)?;
    hold(c.hold, c.role);
    Ok(Done::pages(pages))
}

pub fn touch_read(c: &Ctx) -> Res<Done> {
    setup(c, false)?;
    marker(Phase::Touch);
    for i in 0..c.n {
        vma::read_pages(addr(i), PAGES);
    }
    hold(c.hold, c.role);
    Ok(Done::pages(c.n * PAGES))
}

/// VMAs mapped, never touched: creating a VMA allocates no anon objects (spec §1.1).
pub fn noop(c: &Ctx) -> Res<Done> {
    setup(c, false)?;
    hold(c.hold, c.role);
    Ok(Done::pages(0))
}

/// The VMAs written by `MADV_POPULATE_WRITE` (5.14+): the kernel faults them in through GUP,
/// so each prepare runs inside madvise with no user page fault, and the thread's last fault
/// address names some other VMA. Same objects as `touch` (spec §5 A).
pub fn populate(c: &Ctx) -> Res<Done> {
    setup(c, false)?;
    marker(Phase::Touch);
    for i in 0..c.n {
        vma::madvise(addr(i), PAGES * page(), libc::MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE")?;
    }
    hold(c.hold, c.role);
    Ok(Done::pages(c.n * PAGES))
}

/// The VMAs written through /proc/self/mem (a debugger's write): GUP with FOLL_FORCE inside
/// write(2), not a VMA syscall, so no syscall exit places these prepares; the thread's last
/// fault address names another VMA. Same objects as `touch` (spec §5 A).
pub fn proc_mem(c: &Ctx) -> Res<Done> {
    use std::os::unix::fs::FileExt;
    setup(c, false)?;
    let mem = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/mem").map_err(|e| Fail::Broken(format!("open /proc/self/mem: {e}")))?;
    let data = vec![0x5au8; PAGES * page()];
    marker(Phase::Touch);
    for i in 0..c.n {
        mem.write_all_at(&data, addr(i) as u64).map_err(|e| Fail::Broken(format!("write /proc/self/mem at {:#x}: {e}", addr(i))))?;
    }
    hold(c.hold, c.role);
    Ok(Done::pages(c.n * PAGES))
}

/// Per slot i: A = [addr(i), +4 pages) rw-, B = the next 4 pages rwx. The exec bit keeps them
/// two VMAs; B's first write finds A's anon_vma through find_mergeable_anon_vma (spec §1.2).
pub fn adjacent(c: &Ctx) -> Res<Done> {
    let len = PAGES * page();
    marker(Phase::Map);
    for i in 0..c.n {
        vma::map(addr(i), len, libc::PROT_READ | libc::PROT_WRITE)?;
        vma::map(addr(i) + len, len, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC)?;
    }
    marker(Phase::Touch);
    for i in 0..c.n {
        vma::write_pages(addr(i), PAGES);
        vma::write_pages(addr(i) + len, PAGES);
    }
    hold(c.hold, c.role);
    Ok(Done::pages(2 * PAGES * c.n))
}

/// mprotect the middle page (page 1) read-only: two splits. Held split; then restored, which
/// merges the three pieces back (spec §5 E).
pub fn split(c: &Ctx) -> Res<Done> {
    let pages = setup(c, true)?;
    let pg = page();
    marker(Phase::Split);
    for i in 0..c.n {
        vma::mprotect(addr(i) + pg, pg, libc::PROT_READ)?;
    }
    hold(c.hold, c.role);
    marker(Phase::Merge);
    for i in 0..c.n {
        vma::mprotect(addr(i) + pg, pg, libc::PROT_READ | libc::PROT_WRITE)?;
    }
    Ok(Done::pages(pages))
}

pub fn mremap(c: &Ctx) -> Res<Done> {
    let pages = setup(c, true)?;
    let len = PAGES * page();
    marker(Phase::Mremap);
    for i in 0..c.n {
        let to = vma::moved(i);
        let p = unsafe { libc::mremap(addr(i) as *mut libc::c_void, len, len, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, to) };
        if p == libc::MAP_FAILED {
            return Err(os(format_args!("mremap {len:#x} bytes from {:#x} to {to:#x}", addr(i))));
        }
    }
    hold(c.hold, c.role);
    Ok(Done::pages(pages))
}

/// Whole VMA, or (hole) only its middle page: two splits and one unlink (spec §1.8).
pub fn munmap(c: &Ctx, hole: bool) -> Res<Done> {
    let pages = setup(c, true)?;
    let pg = page();
    marker(Phase::Munmap);
    for i in 0..c.n {
        if hole {
            vma::munmap(addr(i) + pg, pg)?;
        } else {
            vma::munmap(addr(i), PAGES * pg)?;
        }
    }
    hold(c.hold, c.role);
    Ok(Done::pages(pages))
}

/// Fixed, so N=0 and N=3 runs create the same thread stacks.
const THREADS: usize = 3;

/// Threads share the mm: clone(CLONE_VM) never reaches dup_mmap, so the only cost is each
/// VMA's first fault. Each VMA is written by exactly one thread (i mod 3), so no two threads
/// race in __anon_vma_prepare and the counts stay exact.
pub fn threads(c: &Ctx) -> Res<Done> {
    marker(Phase::Map);
    vma::map_all(c.n, PAGES)?;
    marker(Phase::Threads);
    let start = std::sync::Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let start = &start;
            s.spawn(move || {
                // Thread stacks fault before the barrier, outside the touch phase.
                start.wait();
                for i in (t..c.n).step_by(THREADS) {
                    vma::write_pages(addr(i), PAGES);
                }
            });
        }
        marker(Phase::Touch);
        start.wait();
    });
    hold(c.hold, c.role);
    Ok(Done::pages(c.n * PAGES))
}
