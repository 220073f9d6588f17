//! `contend`: many processes take one anon_vma root's rwsem for write at once, so
//! `lock:contention_*` fires for sure. The parent writes its N VMAs (one root each) and forks
//! CHILDREN children that, for RUN, each split and re-merge every VMA (anon_vma_clone, then
//! unlink_anon_vmas) and fork a grandchild that exits at once (anon_vma_fork, unlink on
//! exit): all under the write lock of the parent's roots, which every child shares. Not
//! exact by nature: how often they collide depends on the scheduler.
use crate::fail::Res;
use crate::out::{hold, marker, Phase};
use crate::procs::{self, child};
use crate::single::setup;
use crate::vma::{self, addr, page};
use crate::{Ctx, Done};
use std::time::{Duration, Instant};

const CHILDREN: usize = 32;
const RUN: Duration = Duration::from_secs(1);

pub fn contend(c: &Ctx) -> Res<Done> {
    let pages = setup(c, true)?;
    let until = Instant::now() + RUN;
    marker(Phase::Fork);
    let mut pids = [0; CHILDREN];
    for p in pids.iter_mut() {
        *p = match procs::fork()? {
            None => child(|| churn(c, until)),
            Some(pid) => pid,
        };
    }
    for p in pids {
        procs::wait(p)?;
    }
    hold(c.hold, c.role);
    Ok(Done { pages, extra: Some(("children", CHILDREN as u64)) })
}

fn churn(c: &Ctx, until: Instant) -> Res<()> {
    let pg = page();
    while Instant::now() < until {
        for i in 0..c.n {
            vma::mprotect(addr(i) + pg, pg, libc::PROT_READ)?;
            vma::mprotect(addr(i) + pg, pg, libc::PROT_READ | libc::PROT_WRITE)?;
        }
        match procs::fork()? {
            // No marker, no cleanup: the exit's unlink_anon_vmas is the point.
            None => unsafe { libc::_exit(0) },
            Some(pid) => procs::wait(pid)?,
        }
    }
    Ok(())
}
