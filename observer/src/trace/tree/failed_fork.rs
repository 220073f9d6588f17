//! Forks that failed after `dup_mmap` (a cgroup's `pids.max`, a fatal signal, -ENOMEM
//! late in `copy_process`): the child's anon_vmas and chains are allocated and freed in the
//! parent's thread, and no `sched_process_fork` ever comes, so the model never sees them.
//! Told apart per thread: a fork's allocations are pending until the thread's
//! `task_newtask` / `sched_process_fork`; a free by the same thread first is the failed
//! child's teardown (nothing in a successful `copy_process` frees anon_vma objects).
//! Where the kernel counts the allocations (`TRACE_TALLY`), none reaches userspace: the
//! teardown's frees (inside a fork syscall, `WHY_FORK`) still stream, its first one flagged
//! (`WHY_FAILED_FORK`), and they tell the allocations (the teardown frees every object the
//! child had).
use crate::trace::counts::slab::{Kind, SlabCounts};
use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub struct FailedForks {
    /// Thread id → what its fork in progress allocated so far.
    pending: HashMap<u32, SlabCounts>,
    /// Forks that failed, and what they allocated (all freed by their teardown).
    pub failed: u64,
    pub allocated: SlabCounts,
    /// Of `failed`: still pending when the trace ended (in flight, or freed unseen).
    pub unfinished: u64,
    /// Threads in the teardown of a failed fork the kernel counted the allocations of.
    tearing: HashSet<u32>,
}

impl FailedForks {
    /// An allocation the reason classifier put on a fork (`anon_vma_fork`, or a clone
    /// inside a fork syscall).
    pub fn alloc(&mut self, tid: u32, reason: &str, kind: Kind) {
        if reason == "fork" {
            self.pending.entry(tid).or_default().add(kind, true);
        }
    }

    /// The thread's fork made a child (`task_newtask`, `sched_process_fork`).
    pub fn forked(&mut self, tid: u32) {
        self.pending.remove(&tid);
        self.tearing.remove(&tid);
    }

    /// A free by thread `tid`; `teardown`: inside a fork syscall (reason `fork`); `first`:
    /// the first of a failed fork whose allocations the kernel counted.
    pub fn free(&mut self, tid: u32, kind: Kind, teardown: bool, first: bool) {
        // Nearly every free: no fork in progress and none tearing down; no lookup per record.
        if !first && self.pending.is_empty() && (!teardown || self.tearing.is_empty()) {
            return;
        }
        let streamed = self.pending.remove(&tid);
        if first {
            // Its teardown's frees tell what it allocated, the streamed ones too.
            self.failed += 1;
            self.tearing.insert(tid);
        } else if let Some(c) = streamed {
            self.fail(c);
            return;
        }
        if teardown && self.tearing.contains(&tid) {
            self.allocated.add(kind, true);
        }
    }

    fn fail(&mut self, c: SlabCounts) {
        self.failed += 1;
        self.allocated.anon_vma.alloc += c.anon_vma.alloc;
        self.allocated.anon_vma_chain.alloc += c.anon_vma_chain.alloc;
        self.allocated.unclassified.alloc += c.unclassified.alloc;
    }

    /// After the last record; the line for the model's `incomplete`, if any fork failed.
    pub fn finish(&mut self) -> Option<String> {
        let left: Vec<SlabCounts> = self.pending.drain().map(|(_, c)| c).collect();
        self.unfinished += left.len() as u64;
        for c in left {
            self.fail(c);
        }
        if self.failed == 0 {
            return None;
        }
        let (a, u) = (self.allocated, self.unfinished);
        let unfinished = if u > 0 { format!(", {u} of them still copying when the trace ended") } else { String::new() };
        Some(format!(
            "{} forks failed after copying their parent's VMAs (e.g. a cgroup's pids.max){unfinished}: their {} anon_vma and {} anon_vma_chain allocations are observed, not modelled",
            self.failed, a.anon_vma.alloc, a.anon_vma_chain.alloc
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_freeing_before_its_child_exists_failed() {
        let mut f = FailedForks::default();
        // Thread 10: a successful fork; thread 11: a failed one, then a good one.
        f.alloc(10, "fork", Kind::AnonVma);
        f.alloc(11, "fork", Kind::AnonVma);
        f.alloc(11, "fork", Kind::AnonVmaChain);
        f.alloc(11, "prepare", Kind::AnonVma);
        f.forked(10);
        f.free(10, Kind::AnonVma, false, false);
        f.free(11, Kind::AnonVma, true, false);
        f.free(11, Kind::AnonVmaChain, true, false);
        f.alloc(11, "fork", Kind::AnonVmaChain);
        f.forked(11);
        assert_eq!(f.finish().unwrap(), "1 forks failed after copying their parent's VMAs (e.g. a cgroup's pids.max): their 1 anon_vma and 1 anon_vma_chain allocations are observed, not modelled");
    }

    #[test]
    fn a_failed_fork_the_kernel_counted_is_told_by_its_teardown() {
        let mut f = FailedForks::default();
        // Thread 13: two failed forks (allocations counted in the kernel), then a good one.
        for _ in 0..2 {
            f.free(13, Kind::AnonVmaChain, true, true);
            f.free(13, Kind::AnonVmaChain, true, false);
            f.free(13, Kind::AnonVma, true, false);
        }
        f.forked(13);
        f.free(13, Kind::AnonVma, false, false);
        assert_eq!(f.finish().unwrap(), "2 forks failed after copying their parent's VMAs (e.g. a cgroup's pids.max): their 2 anon_vma and 4 anon_vma_chain allocations are observed, not modelled");
    }

    #[test]
    fn a_fork_cut_by_the_end_is_named() {
        let mut f = FailedForks::default();
        assert_eq!(f.finish(), None);
        f.alloc(12, "fork", Kind::AnonVmaChain);
        assert!(f.finish().unwrap().contains("1 of them still copying when the trace ended"));
        // Its streamed allocations are named; a second finish counts nothing twice.
        assert_eq!(f.finish().unwrap(), "1 forks failed after copying their parent's VMAs (e.g. a cgroup's pids.max), 1 of them still copying when the trace ended: their 0 anon_vma and 1 anon_vma_chain allocations are observed, not modelled");
    }
}
