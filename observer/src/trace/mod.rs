//! `lazyvma trace`: anon_vma / anon_vma_chain slab ground truth from
//! `kmem:kmem_cache_alloc/free` (attributed by call_site), the process tree from sched
//! tracepoints, the workload's phase markers, and, where the kernel allows function hooks,
//! the `KernelOp` stream (`ops`). This file turns decoded events into counts.
pub mod counts;
pub mod feed;
pub mod ingest;
pub mod out;
pub mod session;
pub mod tree;

use counts::slab::{At, Live, Sizes, SlabCounts, SlabTally};
use ingest::symbols::Symbols;
use lazyvma_model::trace_abi::{Hook, Record, Slab, SlabFn, TallyKey};
use tree::pids::Tree;

pub struct Tracer {
    pub tree: Tree,
    pub tally: SlabTally,
    live: Live,
    pub syms: Symbols,
    pub sizes: Sizes,
    /// Counts since the last live row.
    pub interval: SlabCounts,
    /// Records decoded / of a kind or function this build does not know.
    pub received: u64,
    pub malformed: u64,
    /// `bpf_get_stack` failures (the reason then falls back to the function's).
    pub stack_errors: u64,
    /// Frees by the command's process before its exec of objects allocated before the trace:
    /// lazyvma's own forked image, excluded from the counts but shown.
    pub launcher_frees: u64,
    decoder: ingest::ops::Decoder,
    pub op_stats: counts::opstats::OpStats,
    /// `--ops`: print each counted op on stderr.
    pub print_ops: bool,
    /// `-o`: every record goes to the recording, as received, before it is counted.
    pub tap: Option<crate::record::writer::Writer>,
    /// Lazy-model knobs (`replay --knob`), for the model once trace feeds it.
    pub knobs: lazyvma_model::knobs::Knobs,
    /// anon_vma root rwsem contention.
    pub locks: counts::locks::Locks,
    /// Live objects at each live row (trace) or records chunk (replay).
    pub timeline: counts::timeline::Timeline,
    /// The model, fed in ring-buffer order (command and -p scopes).
    pub feed: Option<feed::Feed>,
    /// KSM merges / rmap_item removals and THP faults per process and phase.
    pub kernel_events: counts::ksm::KernelEvents,
    pub failed_forks: tree::failed_fork::FailedForks,
    /// The kernel's slab counts (`trace` without `-o`), read at markers, live rows, a
    /// recycled tgid's fork and the end (`sync`).
    pub kernel_tally: Option<ingest::bpf::TallyMap>,
    /// `TRACE_TALLY`'s per-CPU front, read only at the end (`front`).
    pub kernel_front: Option<ingest::bpf::Front>,
    pub kernel_counts: counts::slab::KernelCounts,
    /// The generation of the last marker handled.
    gen_seen: u64,
    /// The end marker's (generation, ktime), once handled: later records are not counted
    /// (`feed::seed::END_OF_TRACE`).
    pub ended: Option<(u64, u64)>,
    /// Records that arrived after the end marker (not counted).
    pub after_end: u64,
}

impl Tracer {
    pub fn new(tree: Tree, syms: Symbols, sizes: Sizes) -> Tracer {
        Tracer {
            tree,
            tally: SlabTally::default(),
            live: Live::default(),
            syms,
            sizes,
            interval: SlabCounts::default(),
            received: 0,
            malformed: 0,
            stack_errors: 0,
            launcher_frees: 0,
            decoder: ingest::ops::Decoder::default(),
            op_stats: counts::opstats::OpStats::default(),
            print_ops: false,
            tap: None,
            knobs: Default::default(),
            locks: counts::locks::Locks::default(),
            timeline: Default::default(),
            feed: None,
            kernel_events: Default::default(),
            failed_forks: Default::default(),
            kernel_tally: None,
            kernel_front: None,
            kernel_counts: Default::default(),
            gen_seen: 0,
            ended: None,
            after_end: 0,
        }
    }

    /// Adds to the tally what the kernel counted (`TRACE_TALLY`) in generations below
    /// `below`, for the processes the tree knows; `last`: the end, every tgid is taken.
    pub fn sync(&mut self, below: u64, last: bool) {
        if self.kernel_tally.is_none() {
            return;
        }
        let t0 = std::time::Instant::now();
        let keys = self.kernel_keys(last);
        self.kernel_counts.walked(t0);
        for (kind, alloc, function, why, key, n) in self.kernel_counts.grown(&keys, below) {
            if !last && !self.tree.known(key.tgid) {
                continue;
            }
            let Some(proc) = self.tree.traced(key.tgid) else {
                self.kernel_counts.unattributed += n;
                self.kernel_counts.taken(key, n);
                continue;
            };
            let p = self.tree.get(proc);
            let at = At { proc, tgid: p.tgid, phase: self.kernel_counts.log.at(proc, key.gen, p.phase) };
            let reason = ingest::reason::of(why, function, alloc, &[], &self.syms);
            self.tally.add_n(kind, alloc, function, reason, at, n);
            self.interval.add_n(kind, alloc, n);
            self.kernel_counts.taken(key, n);
        }
        if !last && self.kernel_counts.retire_error.is_none() {
            self.retire(&keys, below);
        }
    }

    /// Every key of the kernel's counts and its count; `last` (the programs detached):
    /// with what their per-CPU fronts still hold.
    fn kernel_keys(&self, last: bool) -> Vec<(TallyKey, u64)> {
        let Some(map) = self.kernel_tally.as_ref() else { return Vec::new() };
        let mut keys = ingest::bpf::read_tally(map);
        if let (true, Some(front)) = (last, self.kernel_front.as_ref()) {
            let mut at: std::collections::HashMap<TallyKey, usize> = keys.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
            for (key, n) in ingest::bpf::read_front(front) {
                match at.get(&key) {
                    Some(&i) => keys[i].1 += n,
                    None => {
                        at.insert(key, keys.len());
                        keys.push((key, n));
                    }
                }
            }
        }
        keys
    }

    /// Deletes from the map the keys of processes gone (`KernelCounts::retirable`).
    fn retire(&mut self, keys: &[(TallyKey, u64)], below: u64) {
        let tree = &self.tree;
        let gone = self.kernel_counts.retirable(keys, below, |tgid| tree.exited(tgid), std::time::Instant::now());
        let Some(map) = self.kernel_tally.as_mut() else { return };
        for (key, n) in gone {
            // Read again just before: a count since the walk (a recycled tgid's new process,
            // not yet read) keeps the key. What remains is a count landing between these
            // two syscalls, a microsecond, long after its process exited.
            if ingest::bpf::tally_count(map, key) != Some(n) {
                continue;
            }
            match map.remove(&ingest::bpf::PodKey(key)) {
                Ok(()) => self.kernel_counts.retired(key),
                // The map then fills as before this existed (its overflow is counted).
                Err(e) => {
                    self.kernel_counts.retire_error = Some(e.to_string());
                    break;
                }
            }
        }
    }

    /// The end: the kernel's counts before the end marker (or all, without one). A process
    /// the kernel counted after it (its exit's teardown, which 6.16+ runs after the exit
    /// record, or anything the detaching programs still saw) is flagged as the streamed
    /// records after it are (`after_the_end`).
    pub fn sync_end(&mut self) {
        let Some((gen, _)) = self.ended else { return self.sync(u64::MAX, true) };
        self.sync(gen, true);
        if self.kernel_tally.is_none() {
            return;
        }
        let after: std::collections::BTreeSet<u32> = self.kernel_keys(true).into_iter().filter(|(k, n)| k.gen >= gen && *n > 0).map(|(k, _)| k.tgid).collect();
        for tgid in after {
            if let (Some(f), Some(proc)) = (self.feed.as_mut(), self.tree.traced(tgid)) {
                let p = self.tree.get(proc);
                f.across_the_end(proc, At { proc, tgid: p.tgid, phase: p.phase }, "slab events counted by the kernel");
            }
        }
    }

    /// `sync` of what every marker handled so far places.
    pub fn sync_seen(&mut self) {
        self.sync(self.gen_seen + 1, false);
    }

    pub fn record(&mut self, bytes: &[u8]) {
        self.received += 1;
        if let Some(w) = self.tap.as_mut() {
            w.record(bytes, &self.syms);
        }
        self.tap_point();
        if let Some((_, end)) = self.ended {
            self.after_end += 1;
            self.after_the_end(bytes, end);
            return;
        }
        match lazyvma_model::trace_abi::decode_any(bytes) {
            Some(rec) => self.handle(rec),
            None => self.malformed += 1,
        }
    }

    /// A record after the end marker (the programs detaching): not counted. One that ends
    /// or continues an operation that may have begun before the end (a VMA syscall that
    /// took effect before it, a fork, exec or exit, a prepare's allocation or VMA, a streamed
    /// slab event) flags its process: part of what it did is counted, part is not.
    fn after_the_end(&mut self, bytes: &[u8], end: u64) {
        let what = match lazyvma_model::trace_abi::decode_any(bytes) {
            Some(Record::Syscall(ev)) if ev.key < end => (ev.tgid, "a VMA syscall"),
            Some(Record::Fork { tgid, .. }) => (tgid, "a fork"),
            Some(Record::Exec { tgid, .. }) => (tgid, "an exec"),
            Some(Record::Exit { tgid, .. }) => (tgid, "an exit"),
            Some(Record::Alloc(ev) | Record::Free(ev)) => (ev.tgid, "a slab event"),
            Some(Record::Prepare(ev)) => (ev.tgid, "a first fault (anon_vma_prepare)"),
            _ => return,
        };
        if let (Some(f), Some(proc)) = (self.feed.as_mut(), self.tree.traced(what.0)) {
            let p = self.tree.get(proc);
            f.across_the_end(proc, At { proc, tgid: p.tgid, phase: p.phase }, what.1);
        }
    }

    /// KSM and THP ops: ksmd's belong to the rmap_item's mm, not to ksmd.
    fn kernel_event(&mut self, op: ingest::ops::Op) {
        let Some(proc) = self.kernel_events.attribute(&op, &mut self.tree) else { return };
        if self.print_ops {
            eprintln!("op {op}");
        }
        self.op_stats.add(&op);
        let p = self.tree.get(proc);
        self.kernel_events.add(&op.op, At { proc, tgid: p.tgid, phase: p.phase });
        if let (Some(f), ingest::ops::KernelOp::KsmMerge { err: 0, .. }) = (self.feed.as_mut(), &op.op) {
            f.unmodelled("kernel event: ksm merge");
        }
    }

    fn hook(&mut self, ev: &Hook) {
        let mut out = Vec::new();
        self.decoder.feed(ev, &self.syms, &mut out);
        for op in out {
            if counts::ksm::KernelEvents::is_kernel_event(&op.op) {
                self.kernel_event(op);
            } else {
                self.op(op);
            }
        }
    }

    fn op(&mut self, op: ingest::ops::Op) {
        if self.tree.traced(op.tgid).is_none() {
            return;
        }
        let teardown =
            matches!(op.op, ingest::ops::KernelOp::Unlink { .. } | ingest::ops::KernelOp::PutAnonVma { .. } | ingest::ops::KernelOp::ExitMmap { .. });
        if teardown && self.tree.is_launcher(op.tgid) {
            self.op_stats.launcher += 1;
            return;
        }
        if let Some(f) = self.feed.as_mut() {
            f.prepare_hook(&self.tree, &op);
        }
        if self.print_ops {
            eprintln!("op {op}");
        }
        self.op_stats.add(&op);
    }

    /// After the final drain: ops still waiting for a record that will not come.
    pub fn finish(&mut self) {
        let mut out = Vec::new();
        self.decoder.flush(&mut out);
        for op in out {
            self.op(op);
        }
        self.locks.finish();
    }

    /// Hook records that did not pair (an exit without its entry, attached mid-call).
    pub fn unpaired(&self) -> u64 {
        self.decoder.unpaired
    }

    fn handle(&mut self, rec: Record) {
        match rec {
            Record::Alloc(ev) => self.alloc(&ev),
            Record::Free(ev) => self.free(&ev),
            Record::Hook(ev) => self.hook(&ev),
            Record::Syscall(ev) => {
                if let Some(f) = self.feed.as_mut() {
                    f.syscall(&self.tree, &ev);
                }
            }
            Record::Prepare(ev) => {
                if let Some(f) = self.feed.as_mut() {
                    f.prepare(&self.tree, &self.sizes, &ev);
                }
            }
            Record::Ksm(ev) => self.kernel_event(counts::ksm::tracepoint_op(&ev)),
            Record::NewTask { pid, tgid, child_pid, clone_flags } => {
                self.failed_forks.forked(pid);
                self.tree.newtask(child_pid, clone_flags);
                if let Some(f) = self.feed.as_mut() {
                    f.newtask(&self.tree, tgid, child_pid, clone_flags);
                }
            }
            Record::Fork { pid, tgid, child_pid, ktime } => {
                self.failed_forks.forked(pid);
                // A recycled tgid: what the kernel counted so far is the old process's, unless
                // its keys are retired already. A map walk per fork would stall a long
                // system-wide trace once pids wrap: at most one per 10 ms, and the forks left
                // unseparated are counted.
                if self.kernel_tally.is_some() && self.tree.exited(child_pid) && !self.kernel_counts.clean(child_pid) {
                    if self.kernel_counts.walk_due() {
                        self.sync_seen();
                    } else {
                        self.kernel_counts.recycled_unsynced += 1;
                    }
                }
                let n = self.tree.procs.len();
                self.tree.fork(tgid, child_pid);
                if let (Some(f), true) = (self.feed.as_mut(), self.tree.procs.len() > n) {
                    f.fork(&self.tree, n, ktime);
                }
            }
            Record::Exec { pid, tgid, ktime, .. } => {
                self.decoder.exec(pid);
                self.tree.exec(tgid);
                if let Some(f) = self.feed.as_mut() {
                    f.exec(&self.tree, tgid, ktime);
                }
            }
            Record::Exit { pid, tgid, group_dead, ktime } => {
                let live = self.tree.procs.iter().rposition(|p| p.tgid == tgid && !p.exited);
                self.tree.exit(tgid, pid, group_dead);
                if self.kernel_tally.is_some() && self.tree.exited(tgid) {
                    self.kernel_counts.exited(tgid);
                }
                if let (Some(f), Some(p)) = (self.feed.as_mut(), live) {
                    if self.tree.get(p).exited {
                        f.exit(&self.tree, p, ktime);
                    }
                }
            }
            Record::Marker { tgid, id, gen, ktime, .. } => {
                // The kernel's counts before this marker, in the phases before it.
                if gen > 0 {
                    // Counts read later still land in their phases (`PhaseLog`): a walk per
                    // marker would grow with the map and stall a tree that marks often.
                    if feed::seed::is_seed_marker(id) || self.kernel_counts.walk_due() {
                        self.sync(gen, false);
                    }
                    if let Some(p) = self.tree.traced(tgid) {
                        self.kernel_counts.log.marker(p, self.tree.get(p).phase, gen, id);
                    }
                    self.gen_seen = self.gen_seen.max(gen);
                }
                if let Some(f) = self.feed.as_mut() {
                    f.seed_marker(&self.tree, &self.tally.phases, tgid, id);
                }
                if id == feed::seed::END_OF_TRACE {
                    self.ended = Some((gen, ktime));
                    return;
                }
                self.tree.marker(tgid, id);
            }
            Record::LockBegin { lock, flags } => self.locks.begin(&lock, flags),
            Record::LockEnd { lock, ret } => self.locks.end(&lock, ret, &mut self.tree),
        }
    }

    fn frames<'a>(&mut self, ev: &'a Slab) -> &'a [u64] {
        if ev.stack_failed() {
            self.stack_errors += 1;
        }
        ev.stack()
    }

    fn alloc(&mut self, ev: &Slab) {
        let Some(proc) = self.tree.traced(ev.tgid) else { return };
        let kind = Live::alloc_kind(&self.sizes, ev.bytes_req);
        self.live.alloc(ev.ptr, kind, proc);
        let why = ingest::reason::of(ev.why, ev.function, true, self.frames(ev), &self.syms);
        self.failed_forks.alloc(ev.pid, &why, kind);
        self.count(kind, true, ev.function, why, proc);
        if let (Some(f), SlabFn::AnonVmaPrepare, counts::slab::Kind::AnonVmaChain) = (self.feed.as_mut(), ev.function, kind) {
            let p = self.tree.get(proc);
            f.prepare_counted(&self.tree, ev.pid, At { proc, tgid: p.tgid, phase: p.phase });
        }
    }

    fn free(&mut self, ev: &Slab) {
        let (kind, owner) = self.live.free(ev.ptr, ev.function);
        if owner.is_none() && self.tree.is_launcher(ev.tgid) {
            self.launcher_frees += 1;
            return;
        }
        // An object of the traced tree freed from elsewhere (ksmd, a /proc reader's mmput)
        // still counts, in its allocating process.
        let Some(proc) = self.tree.traced(ev.tgid).or(owner) else { return };
        let why = ingest::reason::of(ev.why, ev.function, false, self.frames(ev), &self.syms);
        self.failed_forks.free(ev.pid, kind, why == "fork", ev.failed_fork_first);
        self.count(kind, false, ev.function, why, proc);
        if let (Some(f), SlabFn::AnonVmaPrepare) = (self.feed.as_mut(), ev.function) {
            let p = self.tree.get(proc);
            f.race_spare(kind, At { proc, tgid: p.tgid, phase: p.phase });
        }
    }

    fn count(&mut self, kind: counts::slab::Kind, alloc: bool, function: SlabFn, why: String, proc: usize) {
        let p = self.tree.get(proc);
        self.tally.add(kind, alloc, function, why, At { proc, tgid: p.tgid, phase: p.phase });
        self.interval.add(kind, alloc);
    }

    /// Objects allocated during the trace and still live; `None` when the kernel counted
    /// the slab events (no pointer reached userspace: the timeline's net counts remain).
    pub fn live_objects(&self) -> Option<usize> {
        self.kernel_tally.is_none().then(|| self.live.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use counts::slab::AllocFree;
    use lazyvma_model::trace_abi::{
        HookEvent, SlabEvent, TraceEvent, BK_FENTRY, EV_ALLOC, EV_EXEC, EV_EXIT, EV_FORK, EV_FREE, EV_HOOK, EV_LOCK_BEGIN, EV_LOCK_END, EV_MARKER, EV_NEWTASK,
        EV_SLAB_ALLOC, EV_SLAB_FREE, FN_CLONE, FN_COUNT, FN_FORK, FN_PUT, FN_UNLINK, HK_MAX, LCB_F_WRITE, MARKER_BASE, PH_EXIT, WHY_COUNT, WHY_MUNMAP,
        WHY_SPLIT,
    };

    fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: plain integer records.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }.to_vec()
    }

    fn sizes() -> Sizes {
        let size = |object_size| lazyvma_model::sizes::Size { object_size, slab_size: object_size, source: String::new() };
        Sizes { anon_vma: size(88), anon_vma_chain: size(64), vm_area_struct: size(200) }
    }

    /// Every kind `Tracer` reads from the slab, sched, marker and lock programs, in both slab
    /// shapes: what each one counts, and which are malformed (a function index out of range
    /// in either shape, an unknown reason, an unknown kind, a cut record). After the end marker nothing counts.
    #[test]
    fn each_record_kind_is_counted_or_malformed() {
        let mut t = Tracer::new(Tree::roots(&[7]), Symbols::empty(), sizes());
        let ev = TraceEvent { pid: 7, tgid: 7, ..Default::default() };
        let slim = SlabEvent { pid: 7, tgid: 7, ..Default::default() };
        let child = TraceEvent { pid: 8, tgid: 8, ..ev };
        let records = [
            bytes(&TraceEvent { kind: EV_ALLOC, arg: FN_FORK, ptr: 0xa0, bytes_req: 88, stack_bytes: -14, ..ev }),
            bytes(&SlabEvent { kind: EV_SLAB_ALLOC, func: FN_CLONE, ptr: 0xb0, bytes_req: 64, why: WHY_SPLIT, ..slim }),
            bytes(&SlabEvent { kind: EV_SLAB_FREE, func: FN_UNLINK, ptr: 0xb0, why: WHY_MUNMAP, ..slim }),
            bytes(&TraceEvent { kind: EV_FREE, arg: FN_PUT, ptr: 0xa0, ..ev }),
            bytes(&TraceEvent { kind: EV_ALLOC, arg: FN_COUNT as u32, ptr: 0xd0, bytes_req: 88, ..ev }),
            bytes(&SlabEvent { kind: EV_SLAB_FREE, func: 99, ptr: 0xb0, ..slim }),
            // A reason number no program sends.
            bytes(&SlabEvent { kind: EV_SLAB_FREE, func: FN_UNLINK, ptr: 0xb0, why: WHY_COUNT, ..slim }),
            bytes(&TraceEvent { kind: EV_NEWTASK, arg: 8, ..ev }),
            bytes(&TraceEvent { kind: EV_FORK, arg: 8, ktime: 5, ..ev }),
            bytes(&TraceEvent { kind: EV_MARKER, ptr: MARKER_BASE + 3, ..ev }),
            bytes(&TraceEvent { kind: EV_EXEC, arg: 8, ..child }),
            bytes(&TraceEvent { kind: EV_EXIT, arg: 1, ..child }),
            bytes(&TraceEvent { kind: EV_LOCK_BEGIN, ptr: 0xc0, arg: LCB_F_WRITE, ktime: 10, ..ev }),
            bytes(&TraceEvent { kind: EV_LOCK_END, ptr: 0xc0, ktime: 30, ..ev }),
            bytes(&TraceEvent { kind: 8, ..ev }),
            bytes(&ev)[..100].to_vec(),
            // A hook record of a function number this build does not know.
            bytes(&HookEvent { kind: EV_HOOK, pid: 7, tgid: 7, hook: HK_MAX + 1, phase: PH_EXIT, backend: BK_FENTRY, ..Default::default() }),
            bytes(&TraceEvent { kind: EV_MARKER, ptr: MARKER_BASE + u64::from(feed::seed::END_OF_TRACE), ktime: 40, ..ev }),
            bytes(&TraceEvent { kind: EV_FORK, arg: 9, ..ev }),
        ];
        for r in &records {
            t.record(r);
        }
        assert_eq!((t.received, t.malformed, t.stack_errors, t.after_end), (19, 6, 1, 1));
        assert_eq!(t.unpaired(), 0);
        assert_eq!(t.tally.total.anon_vma, AllocFree { alloc: 1, free: 1 });
        assert_eq!(t.tally.total.anon_vma_chain, AllocFree { alloc: 1, free: 1 });
        assert_eq!(t.tally.total.unclassified, AllocFree::default());
        assert!(t.tally.by_reason.contains_key("split") && t.tally.by_reason.contains_key("munmap"), "{:?}", t.tally.by_reason.keys());
        assert_eq!((t.locks.begins, t.locks.ends, t.locks.paired), (1, 1, 1));
        assert_eq!(t.ended, Some((0, 40)));
        let procs: Vec<_> = t.tree.procs.iter().map(|p| (p.tgid, p.parent, p.phase, p.execs, p.exited)).collect();
        assert_eq!(procs, [(7, None, Some(3), 0, false), (8, Some(0), None, 1, true)]);
    }
}
