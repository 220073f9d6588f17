//! Timed loops for `cargo xtask bench overhead`: each sets up, then times only its loop
//! (CLOCK_MONOTONIC) and reports it as `elapsed_ns=` on the done line, so a tracer's start-up
//! and the set-up faults are not what is compared. No markers inside a loop: a marker is a
//! syscall the tracer sees, and would be measured too.
use crate::fail::{os, unavailable, Res};
use crate::out::{errno, hold, marker, Phase};
use crate::single::setup;
use crate::vma::{self, addr, page, PAGES};
use crate::{Ctx, Done};

/// <linux/mempolicy.h>; the libc crate does not carry it.
const MPOL_MF_MOVE: i32 = 1 << 1;

fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn timed(pages: usize, f: impl FnOnce() -> Res<()>) -> Res<Done> {
    let t = now_ns();
    f()?;
    Ok(Done { pages, extra: Some(("elapsed_ns", now_ns() - t)) })
}

/// `loops` forks of a process with N written VMAs; each child `_exit`s at once (its exit
/// tears down the copied mm), the parent reaps it before the next fork.
pub fn fork_loop(c: &Ctx) -> Res<Done> {
    let pages = setup(c, true)?;
    marker(Phase::Fork);
    timed(pages, || {
        for _ in 0..c.loops {
            match crate::procs::fork()? {
                None => unsafe { libc::_exit(0) },
                Some(pid) => crate::procs::wait(pid)?,
            }
        }
        Ok(())
    })
}

/// `loops` times: map the N VMAs, write every page (one prepare per VMA), unmap them.
pub fn fault_loop(c: &Ctx) -> Res<Done> {
    let len = PAGES * page();
    marker(Phase::Touch);
    timed(c.loops * c.n * PAGES, || {
        for _ in 0..c.loops {
            vma::map_all(c.n, PAGES)?;
            vma::write_all(c.n);
            for i in 0..c.n {
                vma::munmap(addr(i), len)?;
            }
        }
        Ok(())
    })
}

fn has_swap() -> bool {
    let mut buf = [0u8; 4096];
    crate::sysfs::read(c"/proc/swaps", &mut buf).is_some_and(|t| t.lines().count() > 1)
}

/// `loops` times: write every page back in (a swap-in fault for what went out), then
/// MADV_PAGEOUT each VMA: reclaim unmaps each page through an rmap walk of its anon_vma.
/// Without swap reclaim keeps anon pages before any walk: not available.
pub fn pageout_loop(c: &Ctx) -> Res<Done> {
    if !has_swap() {
        return Err(unavailable("no swap area is active (/proc/swaps): MADV_PAGEOUT cannot reclaim anonymous pages"));
    }
    let pages = setup(c, true)?;
    let len = PAGES * page();
    marker(Phase::Pageout);
    timed(pages, || {
        for _ in 0..c.loops {
            vma::write_all(c.n);
            for i in 0..c.n {
                vma::madvise(addr(i), len, libc::MADV_PAGEOUT, "MADV_PAGEOUT")?;
            }
        }
        Ok(())
    })
}

/// `loops` move_pages(2) of every test page, alternating between the first two NUMA nodes:
/// try_to_migrate and remove_migration_ptes walk each page's anon_vma.
pub fn migrate_loop(c: &Ctx) -> Res<Done> {
    let mut buf = [0u8; 256];
    let Some(online) = crate::sysfs::read(c"/sys/devices/system/node/online", &mut buf) else {
        return Err(unavailable("no NUMA support (/sys/devices/system/node/online is missing)"));
    };
    let mut nodes = [0i32; 64];
    if crate::sysfs::node_list(online, &mut nodes) < 2 {
        return Err(unavailable(format!("only one NUMA node is online ({online}): migrate-loop needs two")));
    }
    let count = c.n * PAGES;
    let ptrs: Vec<*mut libc::c_void> = (0..count).map(|k| (addr(k / PAGES) + (k % PAGES) * page()) as *mut libc::c_void).collect();
    let targets = [vec![nodes[0]; count], vec![nodes[1]; count]];
    let mut status = vec![0i32; count];
    let pages = setup(c, true)?;
    marker(Phase::Migrate);
    timed(pages, || {
        for l in 0..c.loops {
            let to = &targets[(l + 1) % 2];
            let r = unsafe { libc::syscall(libc::SYS_move_pages, 0, count, ptrs.as_ptr(), to.as_ptr(), status.as_mut_ptr(), MPOL_MF_MOVE) };
            if r < 0 {
                return Err(if errno() == libc::ENOSYS { unavailable("move_pages(2) is not built in") } else { os("move_pages") });
            }
        }
        Ok(())
    })
}

/// Children of `manyvmas`.
const MANY_CHILDREN: usize = 16;
/// Far above the test VMAs' 0x1_0000_0000 * (i + 1) slots.
const MANY_BASE: usize = 0x7000_0000_0000 / 2;

/// A machine-sized VMA population for the snapshot benchmark: one process with `loops`
/// (default 60,000) one-page written anonymous VMAs, a page apart (no merging; 512 VMAs per
/// page table page, so children stay small), and 16 forked children that write nothing:
/// 17 × `loops` VMAs, each child's with an anon_vma of its own. Meant for `--hold`.
pub fn manyvmas(c: &Ctx) -> Res<Done> {
    let pg = page();
    marker(Phase::Map);
    for i in 0..c.loops {
        vma::map(MANY_BASE + 2 * i * pg, pg, libc::PROT_READ | libc::PROT_WRITE)?;
    }
    marker(Phase::Touch);
    for i in 0..c.loops {
        vma::write_pages(MANY_BASE + 2 * i * pg, 1);
    }
    let mut pids = [0i32; MANY_CHILDREN];
    for p in pids.iter_mut() {
        marker(Phase::Fork);
        match crate::procs::fork()? {
            None => crate::procs::child(|| {
                hold(c.hold, "child");
                Ok(())
            }),
            Some(pid) => *p = pid,
        }
    }
    hold(c.hold, c.role);
    for pid in pids {
        crate::procs::wait(pid)?;
    }
    Ok(Done { pages: c.loops, extra: Some(("processes", 1 + MANY_CHILDREN as u64)) })
}
