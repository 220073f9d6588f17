//! Prepares (`__anon_vma_prepare`): a prepare's two records paired by thread (the slab
//! count, the VMA), or its VMA taken from the prepare hook, then placed as a write fault on
//! the kernel's VMA (mapped first when the model never saw it: the exec image). Apart from
//! the syscalls: a different record, paired and placed by rules of its own.
use super::{flags::PGOFF_ARCH, queue::Queued, Feed};
use crate::trace::{
    counts::slab::{At, Sizes},
    tree::pids::Tree,
};
use lazyvma_model::{
    event::{Event, FaultKind, PAGE_SIZE},
    trace_abi::*,
};
use std::collections::VecDeque;

/// A phase marker from another thread can fall between the two records of one prepare
/// (two programs on one tracepoint): the model counts the prepare where the slab did.
/// Prepares outside a fault inside a VMA syscall send their VMA at its exit, so one
/// thread may have several counted before their VMAs come: each side is a queue.
#[derive(Default)]
pub(super) struct Pairing {
    counted: VecDeque<At>,
    waiting: VecDeque<PrepareVma>,
}

/// `ev` (its thread, time, slab size) placed on the `__anon_vma_prepare` hook's VMA. The hook
/// reads no vm_file: a pgoff other than the address's marks a file.
fn on_hook_vma(vma: &lazyvma_model::hook_abi::VmaSnap, ev: PrepareVma) -> PrepareVma {
    PrepareVma {
        found: 1,
        addr: vma.start,
        start: vma.start,
        end: vma.end,
        pgoff: vma.pgoff,
        flags: vma.flags,
        file: (vma.pgoff != vma.start / PAGE_SIZE) as u64,
        anon_vma: vma.anon_vma,
        ..ev
    }
}

impl Feed {
    /// A `kmem_cache_alloc` from `__anon_vma_prepare` and the VMA it prepares (x86: the
    /// fault address comes from the `exceptions` tracepoints).
    pub fn prepare(&mut self, tree: &Tree, sizes: &Sizes, ev: &PrepareVma) {
        self.touched(ev.tgid, "a first fault (anon_vma_prepare)");
        // One prepare allocates its anon_vma_chain first, then maybe an anon_vma.
        if self.from_hooks || ev.bytes_req != sizes.anon_vma_chain.object_size || !tree.procs.iter().any(|p| p.tgid == ev.tgid && !p.exited) {
            return;
        }
        let p = self.pairing.entry(ev.pid).or_default();
        let counted = p.counted.pop_front();
        if counted.is_none() {
            p.waiting.push_back(*ev);
        }
        self.unpair(ev.pid);
        if let Some(at) = counted {
            self.prepared(tree, ev, Some(at));
        }
    }

    /// The slab tally counted thread `pid`'s prepare's anon_vma_chain at `at`: the model
    /// counts the same prepare there too.
    pub fn prepare_counted(&mut self, tree: &Tree, pid: u32, at: At) {
        if self.from_hooks {
            return;
        }
        let p = self.pairing.entry(pid).or_default();
        let waiting = p.waiting.pop_front();
        if waiting.is_none() {
            p.counted.push_back(at);
        }
        self.unpair(pid);
        if let Some(ev) = waiting {
            self.prepared(tree, &ev, Some(at));
        }
    }

    /// A thread with nothing left to pair keeps no entry.
    fn unpair(&mut self, pid: u32) {
        if self.pairing.get(&pid).is_some_and(|p| p.counted.is_empty() && p.waiting.is_empty()) {
            self.pairing.remove(&pid);
        }
    }

    /// `__anon_vma_prepare` returned (function hooks; where no fault tracepoint exists).
    /// No fault address: the VMA itself says where. No vm_file either: a pgoff other than
    /// the address's marks a file.
    /// `op.ktime`: the hook's exit, inside the fault's mmap_lock read section. Otherwise
    /// (the fault tracepoints feed) it places a prepare that waits for it, if any.
    pub fn prepare_hook(&mut self, tree: &Tree, op: &crate::trace::ingest::ops::Op) {
        let crate::trace::ingest::ops::KernelOp::Prepare { vma, ret, task_mm, .. } = &op.op else { return };
        if !self.from_hooks {
            if let Some((ev, at)) = self.awaiting_hook.remove(&op.pid) {
                self.hooked(tree, ev, at, vma, *ret, *task_mm);
            }
            return;
        }
        if *ret != 0 {
            return;
        }
        self.touched(op.tgid, "a first fault (anon_vma_prepare)");
        let ev = on_hook_vma(vma, PrepareVma { kind: EV_PREPARE_VMA, pid: op.pid, tgid: op.tgid, key: op.ktime, ..Default::default() });
        self.prepared(tree, &ev, None);
    }

    /// A prepare with no fault address meets its hook's exit: placed on the hook's VMA if
    /// it is in the task's own mm (GUP in its own mm: MADV_POPULATE_WRITE outside a VMA
    /// syscall, a write to /proc/self/mem, O_DIRECT reads); else (another process's mm, a
    /// failed prepare) left unplaced, as without the hook.
    fn hooked(&mut self, tree: &Tree, ev: PrepareVma, at: Option<At>, vma: &lazyvma_model::hook_abi::VmaSnap, ret: i32, task_mm: u64) {
        let own = ret == 0 && vma.vma != 0 && task_mm != 0 && vma.mm == task_mm && vma.start < vma.end;
        if !own {
            return self.prepared_now(tree, &ev, at);
        }
        self.coverage.prepares_placed_by_hook += 1;
        self.prepared_now(tree, &on_hook_vma(vma, ev), at);
    }

    /// A prepare's two records are in: to the model, unless it has no fault address and
    /// its hook's exit is still to come.
    fn prepared(&mut self, tree: &Tree, ev: &PrepareVma, at: Option<At>) {
        if self.prepare_hooked && !self.from_hooks && ev.addr == 0 && (ev.found == 0 || ev.found == FOUND_NOT_IN_FAULT) {
            if let Some((old, old_at)) = self.awaiting_hook.insert(ev.pid, (*ev, at)) {
                // Its hook never came (lost?): unplaced, as without the hook.
                self.prepared_now(tree, &old, old_at);
            }
            return;
        }
        self.prepared_now(tree, ev, at);
    }

    pub(super) fn prepared_now(&mut self, tree: &Tree, ev: &PrepareVma, at: Option<At>) {
        let Some(proc) = tree.procs.iter().rposition(|p| p.tgid == ev.tgid && !p.exited) else { return };
        if let Some(during) = self.in_exec.get_mut(&proc) {
            during.push(*ev);
            return;
        }
        if let Some(mm) = self.mm_of(proc) {
            let at = at.unwrap_or_else(|| Self::at(tree, proc));
            self.queue(mm, ev.key, Queued::Prepare(*ev, at));
        }
    }

    /// A prepare in the mm of modelled process `proc`: a write fault on the kernel's VMA,
    /// mapped first if the model has not been told of it (the exec image).
    pub(super) fn place(&mut self, proc: usize, ev: &PrepareVma, at: At) {
        if ev.addr == 0 {
            self.coverage.faults_not_placed += 1;
            self.coverage.prepares_outside_fault += matches!(ev.found, FOUND_NOT_IN_FAULT | FOUND_HELD) as u64;
            self.inexact(proc, at, "a prepare not placed on a VMA (no fault address: GUP, uprobes)");
            return;
        }
        let pid = Self::pid(proc);
        let vmas = self.pair.eager().vmas(pid).unwrap_or_default();
        let here = vmas.iter().find(|v| v.start <= ev.addr && ev.addr < v.end);
        match here {
            Some(v) => {
                // The model knows the VMA: the fault needs no kernel bounds (a failed
                // bpf_find_vma changes nothing here).
                if ev.found == 1 && (v.start, v.end) != (ev.start, ev.end) {
                    self.coverage.layout_mismatches += 1;
                    self.inexact(proc, at, "a prepare's kernel VMA had other bounds than the model's");
                }
            }
            None if ev.found != 1 => {
                // bpf_find_vma failed (mmap_lock contended) on a VMA the model never saw.
                self.coverage.faults_not_placed += 1;
                self.coverage.find_vma_errors.push(ev.found >> 8);
                self.inexact(proc, at, "a prepare not placed on a VMA (bpf_find_vma failed)");
                return;
            }
            None => {
                if vmas.iter().any(|v| v.start < ev.end && ev.start < v.end) {
                    self.coverage.layout_mismatches += 1;
                    self.coverage.faults_not_placed += 1;
                    self.inexact(proc, at, "a prepare not placed: its kernel VMA overlaps the model's VMAs");
                    return;
                }
                let (flags, tag) = self.vm_flags(ev.flags, ev.file != 0);
                let pgoff = ev.pgoff | tag;
                if tag & !PGOFF_ARCH == 0 {
                    if let Some(p) = self.procs.get_mut(&proc) {
                        p.image_anon.push((ev.end, tag));
                    }
                }
                self.apply(Event::MapPgoff { pid, start: ev.start, pages: (ev.end - ev.start) / PAGE_SIZE, flags, pgoff }, at);
            }
        }
        self.apply(Event::Fault { pid, addr: ev.addr & !(PAGE_SIZE - 1), kind: FaultKind::Write }, at);
    }
}

#[cfg(test)]
mod tests {
    use super::super::flags::{VM_READ, VM_WRITE};
    use super::super::tests::*;
    use super::*;

    /// Another thread's phase marker between the slab count and the VMA record of one
    /// prepare: the model counts the prepare where the slab did.
    #[test]
    fn a_prepare_counts_in_the_phase_its_slab_record_did() {
        let (mut tree, mut f) = execed();
        f.syscall(&tree, &sys(100, SYS_MMAP, [0, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON, u64::MAX, 0], 0x1_0000_0000));
        tree.marker(100, 2);
        f.prepare_counted(&tree, 101, Feed::at(&tree, 0));
        tree.marker(100, 3);
        f.prepare(&tree, &s(), &PrepareVma { pid: 101, ..prep(100, 0x1_0000_0000, Some((0x1_0000_0000, 0x1_0000_4000, 3))) });
        let rows: Vec<_> = f.rows.iter().map(|r| (r.phase, r.eager.anon_vma.alloc)).collect();
        assert_eq!(rows, [(Some(2), 1)]);
    }

    /// MADV_POPULATE_WRITE over two fresh VMAs: both prepares are counted by the slab
    /// tally before the syscall's exit sends their VMAs (`place.rs`); each is placed.
    #[test]
    fn prepares_placed_at_their_syscalls_exit_pair_in_order() {
        let (tree, mut f) = execed();
        let (a, b) = (0x1_0000_0000, 0x2_0000_0000);
        for v in [a, b] {
            f.syscall(&tree, &sys(100, SYS_MMAP, [v, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], v as i64));
        }
        f.prepare_counted(&tree, 100, Feed::at(&tree, 0));
        f.prepare_counted(&tree, 100, Feed::at(&tree, 0));
        for v in [a, b] {
            f.prepare(&tree, &s(), &prep(100, v, Some((v, v + PAGE_SIZE, VM_READ | VM_WRITE))));
        }
        f.finish(&tree, 0, &[]);
        assert_eq!((f.eager.anon_vma.alloc, f.eager.anon_vma_chain.alloc, f.coverage.faults_not_placed), (2, 2, 0));
        assert!(f.coverage.incomplete.is_empty(), "{:?}", f.coverage.incomplete);
        assert!(f.pairing.is_empty());
    }

    /// With the prepare hook attached, a prepare with no fault address waits for the hook's
    /// exit: placed on its VMA in the task's own mm, never on another mm's (a write to
    /// /proc/PID/mem of another process) or by a record held to a syscall's exit.
    #[test]
    fn a_prepare_outside_a_fault_takes_its_hooks_vma() {
        let (tree, mut f) = execed();
        f.prepare_hooked = true;
        use crate::trace::ingest::ops::{KernelOp, Op};
        let exit =
            |vma, task_mm, ktime| Op { tgid: 100, pid: 100, ktime, backend: None, op: KernelOp::Prepare { vma, ret: 0, reused_neighbour: false, task_mm } };
        let snap = |mm: u64| lazyvma_model::hook_abi::VmaSnap {
            vma: 0xffff_8880_0000_1000,
            mm,
            start: 0x1_0000_0000,
            end: 0x1_0000_4000,
            pgoff: 0x1_0000_0000 / PAGE_SIZE,
            flags: 0x73,
            anon_vma: 0xffff_8880_0000_2000,
            chain_len: 1,
        };
        // Own mm: the model maps the kernel's VMA and faults it.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_NOT_IN_FAULT, ..prep(100, 0, None) });
        assert!(f.events.iter().all(|e| !matches!(e, Event::Fault { .. })), "no fault before the hook: {:?}", f.events);
        f.prepare_hook(&tree, &exit(snap(0xaa), 0xaa, 5));
        assert!(matches!(f.events.last(), Some(Event::Fault { addr: 0x1_0000_0000, .. })), "{:?}", f.events);
        // Another mm's VMA: not placed.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_NOT_IN_FAULT, ..prep(100, 0, None) });
        f.prepare_hook(&tree, &exit(snap(0xbb), 0xaa, 6));
        // Held to a syscall's exit (its hook came before): never waits for the next hook.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_HELD, ..prep(100, 0, None) });
        // Its hook lost: unplaced at the end.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_NOT_IN_FAULT, ..prep(100, 0, None) });
        f.finish(&tree, 0, &[]);
        let c = &f.coverage;
        assert_eq!((c.prepares_placed_by_hook, c.faults_not_placed, c.prepares_outside_fault), (1, 3, 3));
        assert_eq!(f.eager.anon_vma.alloc, 1);
    }
}
