//! Per-mm order: VMA syscalls and prepares wait in their mm's queue (`trace/feed/order.rs`) and
//! are applied in the order the mm serialised them; a fork, exec or exit first runs
//! everything queued before it. Apart because when a record runs is not what it means.
use super::Feed;
use crate::trace::counts::slab::At;
use lazyvma_model::trace_abi::{PrepareVma, SyscallEvent};

/// A syscall or prepare waiting for its place in its mm's order, with where it counts
/// (captured on arrival, where the slab tally counted what it did).
pub(super) enum Queued {
    Syscall(SyscallEvent, At),
    Prepare(PrepareVma, At),
}

impl Feed {
    /// Apply `item` to mm `mm` once its turn comes (`order.rs`), and whatever is due.
    pub(super) fn queue(&mut self, mm: usize, key: u64, item: Queued) {
        let late = self.order.out_of_order;
        if let Err(item) = self.order.push(mm, key, item) {
            self.run(mm, item);
        }
        self.coverage.out_of_order += self.order.out_of_order - late;
        for (mm, item) in self.order.ready() {
            self.run(mm, item);
        }
    }

    /// Everything queued for `proc`'s mm goes first: a fork, exec or exit (at `ktime`)
    /// comes after it.
    pub(super) fn barrier(&mut self, proc: usize, ktime: u64) {
        let mm = self.borrowed.get(&proc).copied().unwrap_or(proc);
        for item in self.order.barrier(mm, ktime) {
            self.run(mm, item);
        }
    }

    pub(super) fn run(&mut self, mm: usize, item: Queued) {
        if !self.procs.contains_key(&mm) {
            return;
        }
        match item {
            Queued::Syscall(ev, at) => self.apply_syscall(mm, &ev, at),
            Queued::Prepare(ev, at) => self.place(mm, &ev, at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use lazyvma_model::{event::PAGE_SIZE, trace_abi::*};

    /// Thread 101's munmap took mmap_lock before thread 102's fault but reached the ring
    /// buffer after it: the model applies them by key, and a record keyed before one
    /// already applied is counted, never placed by guess.
    #[test]
    fn syscalls_and_prepares_are_applied_in_lock_order() {
        let (tree, mut f) = execed();
        const MS: u64 = 1_000_000;
        let map = |a: u64, key| SyscallEvent { key, ..sys(100, SYS_MMAP, [a, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64) };
        f.syscall(&tree, &map(0x1_0000_0000, MS));
        f.syscall(&tree, &map(0x1_0000_4000, 2 * MS));
        // The fault on the second VMA (key 4 ms) arrives before the munmap of the first (3 ms).
        let fault = PrepareVma { pid: 102, key: 4 * MS, ..prep(100, 0x1_0000_4000, Some((0x1_0000_4000, 0x1_0000_8000, 3))) };
        prepare(&mut f, &tree, &fault);
        f.syscall(&tree, &SyscallEvent { pid: 101, key: 3 * MS, ..sys(100, SYS_MUNMAP, [0x1_0000_0000, 4 * PAGE_SIZE, 0, 0, 0, 0], 0) });
        assert_eq!(f.events.len(), 2, "held back until the window passed");
        // A record far later lets them go; one keyed before an applied one is not placed.
        f.syscall(
            &tree,
            &SyscallEvent { key: 10 * MS + crate::trace::feed::order::WINDOW_NS, ..sys(100, SYS_MPROTECT, [0x1_0000_4000, PAGE_SIZE, 1, 0, 0, 0], 0) },
        );
        f.syscall(&tree, &SyscallEvent { key: 3 * MS + 1, ..sys(100, SYS_MADVISE, [0x1_0000_4000, PAGE_SIZE, 12, 0, 0, 0], 0) });
        f.finish(&tree, 0, &[]);
        let kinds = kinds(&f);
        assert_eq!(kinds, ["Spawn", "Exec", "MapPgoff", "MapPgoff", "Munmap", "Fault", "Madvise", "Mprotect"]);
        assert_eq!((f.coverage.out_of_order, f.reordered()), (1, 1));
        assert_eq!(f.coverage.incomplete, ["1 syscalls or prepares arrived after a later one of their mm was applied (out of order)"]);
    }
}
