//! Ring-buffer records → counters, for the scope (whole system by default), for as long as
//! serve runs. Unlike `trace::Tracer` it keeps no per-process or per-phase rows (they would
//! grow without bound in a daemon): only the live-object map, bounded by the objects alive.
use super::{metrics::Metrics, scope::Scope};
use crate::trace::{
    counts::slab::{Kind, Live, Sizes},
    ingest::reason,
    ingest::symbols::Symbols,
    tree::pids::Threads,
};
use lazyvma_model::trace_abi::{decode_any, AggSlot, Record, Slab};
use std::sync::Arc;

/// `Live`'s owner mark: allocated by a process in the scope.
const IN_SCOPE: usize = 1;

pub struct Counter {
    metrics: Arc<Metrics>,
    syms: Symbols,
    sizes: Sizes,
    live: Live,
    scope: Arc<Scope>,
    /// Tids announced as threads, until their fork event (scoped only).
    threads: Threads,
    /// The kernel's slab counts already added (`SLAB_COUNTS`, per slot).
    counted: Vec<u64>,
}

impl Counter {
    pub fn new(metrics: Arc<Metrics>, syms: Symbols, sizes: Sizes, scope: Arc<Scope>) -> Counter {
        Counter { metrics, syms, sizes, live: Live::default(), scope, threads: Threads::default(), counted: Vec::new() }
    }

    pub fn record(&mut self, bytes: &[u8]) {
        self.metrics.events.received.inc();
        match decode_any(bytes) {
            Some(Record::Alloc(ev)) => {
                let kind = Live::alloc_kind(&self.sizes, ev.bytes_req);
                let ours = self.scope.contains(ev.tgid);
                self.live.alloc(ev.ptr, kind, usize::from(ours) * IN_SCOPE);
                if ours {
                    self.count(&ev, kind, true);
                }
            }
            Some(Record::Free(ev)) => {
                // An object of the scope freed from elsewhere (ksmd, a /proc reader) counts too.
                let (kind, owner) = self.live.free(ev.ptr, ev.function);
                if owner == Some(IN_SCOPE) || self.scope.contains(ev.tgid) {
                    self.count(&ev, kind, false);
                }
            }
            Some(Record::NewTask { child_pid, clone_flags, .. }) if self.scope.scoped() => self.threads.newtask(child_pid, clone_flags),
            Some(Record::Fork { tgid, child_pid, .. }) if self.scope.scoped() => {
                if self.threads.is_process(child_pid) {
                    self.scope.fork(tgid, child_pid);
                }
            }
            // The scope needs forks only; the whole system needs no tree at all.
            Some(Record::NewTask { .. } | Record::Fork { .. } | Record::Exec { .. } | Record::Exit { .. } | Record::Marker { .. }) => {}
            // serve loads no lock, hook, syscall, prepare or KSM program: such a record, like
            // one that did not decode, is not one of its own.
            Some(Record::LockBegin { .. } | Record::LockEnd { .. } | Record::Hook(_) | Record::Syscall(_) | Record::Prepare(_) | Record::Ksm(_)) | None => {
                self.metrics.events.malformed.inc();
            }
        }
    }

    /// The kernel's slab counts (already scoped there): what grew since the last call.
    pub fn aggregated(&mut self, counts: &[u64]) {
        self.counted.resize(counts.len(), 0);
        for (slot, (&now, was)) in counts.iter().zip(self.counted.iter_mut()).enumerate() {
            let n = now.saturating_sub(*was);
            *was = now.max(*was);
            if n == 0 {
                continue;
            }
            // The map has `AGG_SLOTS` slots, each an `agg_slot`: none fails to decode.
            let Some(AggSlot { function, alloc, anon_vma_chain, why }) = u32::try_from(slot).ok().and_then(AggSlot::of) else { continue };
            let kind = if anon_vma_chain { Kind::AnonVmaChain } else { Kind::AnonVma };
            let reason = reason::of(why, function, alloc, &[], &self.syms);
            self.metrics.count_slab_n(kind, alloc, function.name(), reason, n);
        }
    }

    fn count(&mut self, ev: &Slab, kind: Kind, alloc: bool) {
        if ev.stack_failed() {
            self.metrics.events.stack_errors.inc();
        }
        let why = reason::of(ev.why, ev.function, alloc, ev.stack(), &self.syms);
        self.metrics.count_slab(kind, alloc, ev.function.name(), why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazyvma_model::trace_abi::{
        HookEvent, KsmEvent, PrepareVma, SlabEvent, SyscallEvent, TraceEvent, BK_FENTRY, EV_ALLOC, EV_EXEC, EV_EXIT, EV_FORK, EV_FREE, EV_HOOK, EV_KSM_MERGE,
        EV_LOCK_BEGIN, EV_LOCK_END, EV_MARKER, EV_NEWTASK, EV_PREPARE_VMA, EV_SLAB_ALLOC, EV_SLAB_FREE, EV_SYSCALL, FN_CLONE, FN_COUNT, FN_FORK, FN_PUT,
        FN_UNLINK, HK_PREPARE, MARKER_BASE, PH_EXIT, WHY_SPLIT,
    };

    fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: plain integer records.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }.to_vec()
    }

    fn counter(scope: Scope) -> (Arc<Metrics>, Counter) {
        let size = |object_size| lazyvma_model::sizes::Size { object_size, slab_size: object_size, source: String::new() };
        let sizes = Sizes { anon_vma: size(88), anon_vma_chain: size(64), vm_area_struct: size(200) };
        let m = Arc::new(Metrics::new(vec![], vec![]));
        (m.clone(), Counter::new(m, Symbols::empty(), sizes, Arc::new(scope)))
    }

    fn samples(m: &Metrics, family: &str) -> Vec<String> {
        m.encode().lines().filter(|l| l.starts_with(family)).map(String::from).collect()
    }

    /// Every record kind once, in both slab shapes: serve counts slab events, follows forks
    /// in a scope, passes over the other sched and marker records, and calls malformed what
    /// it has no programs for (lock, hook, syscall, prepare, KSM), a function index out of
    /// range, an unknown kind and a cut record.
    #[test]
    fn each_record_kind_is_counted_or_malformed() {
        let (m, mut c) = counter(Scope::system());
        let ev = TraceEvent { pid: 7, tgid: 7, ..Default::default() };
        let slim = SlabEvent { pid: 7, tgid: 7, ..Default::default() };
        let records = [
            bytes(&TraceEvent { kind: EV_ALLOC, arg: FN_FORK, ptr: 0xa0, bytes_req: 88, stack_bytes: -14, ..ev }),
            bytes(&SlabEvent { kind: EV_SLAB_ALLOC, func: FN_CLONE, ptr: 0xb0, bytes_req: 64, why: WHY_SPLIT, ..slim }),
            bytes(&SlabEvent { kind: EV_SLAB_FREE, func: FN_UNLINK, ptr: 0xb0, ..slim }),
            bytes(&TraceEvent { kind: EV_FREE, arg: FN_PUT, ptr: 0xa0, ..ev }),
            bytes(&TraceEvent { kind: EV_ALLOC, arg: FN_COUNT as u32, ptr: 0xd0, bytes_req: 88, ..ev }),
            bytes(&SlabEvent { kind: EV_SLAB_FREE, func: 99, ptr: 0xb0, ..slim }),
            bytes(&TraceEvent { kind: EV_NEWTASK, arg: 8, ..ev }),
            bytes(&TraceEvent { kind: EV_FORK, arg: 8, ..ev }),
            bytes(&TraceEvent { kind: EV_EXEC, ..ev }),
            bytes(&TraceEvent { kind: EV_EXIT, arg: 1, ..ev }),
            bytes(&TraceEvent { kind: EV_MARKER, ptr: MARKER_BASE + 3, ..ev }),
            bytes(&TraceEvent { kind: EV_LOCK_BEGIN, ptr: 0xc0, ..ev }),
            bytes(&TraceEvent { kind: EV_LOCK_END, ptr: 0xc0, ..ev }),
            bytes(&HookEvent { kind: EV_HOOK, hook: HK_PREPARE, phase: PH_EXIT, backend: BK_FENTRY, ..Default::default() }),
            bytes(&SyscallEvent { kind: EV_SYSCALL, ..Default::default() }),
            bytes(&PrepareVma { kind: EV_PREPARE_VMA, ..Default::default() }),
            bytes(&KsmEvent { kind: EV_KSM_MERGE, ..Default::default() }),
            bytes(&TraceEvent { kind: 8, ..ev }),
            bytes(&ev)[..100].to_vec(),
        ];
        for r in &records {
            c.record(r);
        }
        let e = &m.events;
        assert_eq!((e.received.get(), e.malformed.get(), e.stack_errors.get()), (19, 10, 1));
        let av = samples(&m, "lazyvma_anon_vma_allocations_total{");
        assert!(av.len() == 1 && av[0].starts_with("lazyvma_anon_vma_allocations_total{function=\"anon_vma_fork\"") && av[0].ends_with(" 1"), "{av:?}");
        let avc = samples(&m, "lazyvma_anon_vma_chain_allocations_total{");
        assert_eq!(avc, ["lazyvma_anon_vma_chain_allocations_total{function=\"anon_vma_clone\",reason=\"split\"} 1"]);
        assert_eq!(samples(&m, "lazyvma_anon_vma_frees_total{").len(), 1);
        assert_eq!(samples(&m, "lazyvma_anon_vma_chain_frees_total{").len(), 1);
    }

    /// A scope grows by its members' forks, not by their threads (task_newtask's
    /// CLONE_THREAD), and counts only its members' allocations.
    #[test]
    fn a_scope_follows_forks_not_threads() {
        let (m, mut c) = counter(Scope::of(vec![7]));
        let ev = TraceEvent { pid: 7, tgid: 7, ..Default::default() };
        c.record(&bytes(&TraceEvent { kind: EV_NEWTASK, arg: 9, ptr: 0x0001_0000, ..ev }));
        c.record(&bytes(&TraceEvent { kind: EV_FORK, arg: 9, ..ev }));
        c.record(&bytes(&TraceEvent { kind: EV_NEWTASK, arg: 8, ..ev }));
        c.record(&bytes(&TraceEvent { kind: EV_FORK, arg: 8, ..ev }));
        for tgid in [8, 9] {
            c.record(&bytes(&TraceEvent { kind: EV_ALLOC, pid: tgid, tgid, arg: FN_FORK, ptr: u64::from(tgid) << 8, bytes_req: 88, ..ev }));
        }
        assert_eq!(m.events.malformed.get(), 0);
        let av = samples(&m, "lazyvma_anon_vma_allocations_total{");
        assert!(av.len() == 1 && av[0].ends_with(" 1"), "{av:?}");
        assert!(c.scope.contains(8) && !c.scope.contains(9));
    }
}
