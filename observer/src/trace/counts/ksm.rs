//! KSM merges / rmap_item removals and THP faults: their records (KSM tracepoints or the
//! function hooks) as `KernelOp`s, attributed to a traced process and phase and counted.
//! ksmd sends the KSM records, so the process is the rmap_item's mm: its owner's tgid
//! while it has one, else the process that mm was last seen merging for (an exited
//! process's items are removed by ksmd after its exit, when the mm has no owner left).
//! Not fed to the model: `Event::KsmMerge` would need its KSM cleanup too, which the
//! tracepoints do not show (the model's coverage lists merges as unmodelled instead).
use crate::load::backend::KSM_TRACEPOINTS;
use crate::trace::{
    counts::slab::At,
    ingest::format::Format,
    ingest::ops::{KernelOp, Op},
    tree::pids::Tree,
};
use lazyvma_model::trace_abi::{Ksm, KsmItem, KsmOffsets, NO_FIELD};
use std::collections::HashMap;

/// `KsmOffsets` as the loader wants it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Pod(pub KsmOffsets);
// SAFETY: KsmOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for Pod {}

/// The KSM tracepoints' field offsets; all [`NO_FIELD`] on kernels without them (6.1).
pub fn offsets() -> KsmOffsets {
    let mut o = KsmOffsets::UNSET;
    let get = |f: &Option<Format>, name: &str| f.as_ref().and_then(|f| f.get(name)).unwrap_or(NO_FIELD);
    let merge = Format::read(KSM_TRACEPOINTS[0]).ok();
    let remove = Format::read(KSM_TRACEPOINTS[1]).ok();
    o.merge_ksm_page = get(&merge, "ksm_page");
    o.merge_pfn = get(&merge, "pfn");
    o.merge_rmap_item = get(&merge, "rmap_item");
    o.merge_mm = get(&merge, "mm");
    o.merge_err = get(&merge, "err");
    o.remove_pfn = get(&remove, "pfn");
    o.remove_rmap_item = get(&remove, "rmap_item");
    o.remove_mm = get(&remove, "mm");
    o
}

/// A KSM tracepoint record as an op. `ksm_remove_rmap_item` fires only for stable items.
pub fn tracepoint_op(ev: &Ksm) -> Op {
    let &KsmItem { pid, tgid, ktime, mm, owner_tgid: owner, rmap_item, address, pfn } = ev.item();
    let op = match *ev {
        Ksm::MergeWithKsmPage { ksm_page, err, .. } => KernelOp::KsmMerge { mm, owner, rmap_item, address, anon_vma: 0, ksm_page, pfn, err },
        Ksm::RemoveRmapItem(_) => KernelOp::KsmRemoveRmapItem { mm, owner, rmap_item, address, anon_vma: 0, pfn, stable: true },
    };
    Op { tgid, pid, ktime, backend: None, op }
}

/// Per (process, phase) counts, and their row: the report's own types.
pub use crate::report::trace_doc::{KernelEventCounts, KernelEventRow as Row};

/// `vm_fault_t` VM_FAULT_FALLBACK (include/linux/mm_types.h, the same since 4.x).
const VM_FAULT_FALLBACK: u32 = 0x800;

impl KernelEventCounts {
    fn add(&mut self, op: &KernelOp) {
        match op {
            KernelOp::KsmMerge { err: 0, .. } => self.ksm_merges += 1,
            KernelOp::KsmMerge { .. } => self.ksm_merge_failures += 1,
            KernelOp::KsmRemoveRmapItem { stable: true, .. } => self.ksm_rmap_items_removed += 1,
            KernelOp::ThpFault { ret, .. } if ret & VM_FAULT_FALLBACK != 0 => self.thp_fallbacks += 1,
            KernelOp::ThpFault { .. } => self.thp_faults += 1,
            _ => {}
        }
    }
}

#[derive(Default)]
pub struct KernelEvents {
    pub total: KernelEventCounts,
    pub rows: Vec<Row>,
    index: HashMap<(usize, Option<u32>), usize>,
    /// mm → the traced process it belongs to, learnt while its owner was alive.
    mms: HashMap<u64, usize>,
    /// KSM records whose mm had no owner and was never seen with one: whose they were is
    /// unknown (counted, not dropped).
    pub unattributed: u64,
}

impl KernelEvents {
    pub fn is_kernel_event(op: &KernelOp) -> bool {
        matches!(op, KernelOp::KsmMerge { .. } | KernelOp::KsmRemoveRmapItem { .. } | KernelOp::ThpFault { .. })
    }

    /// The traced process an op belongs to (None: not traced, or unknown and counted so).
    pub fn attribute(&mut self, op: &Op, tree: &mut Tree) -> Option<usize> {
        let (mm, owner) = match &op.op {
            KernelOp::KsmMerge { mm, owner, .. } | KernelOp::KsmRemoveRmapItem { mm, owner, .. } => (*mm, *owner),
            _ => return tree.traced(op.tgid),
        };
        if owner != 0 {
            if let Some(p) = tree.traced(owner) {
                self.mms.insert(mm, p);
                return Some(p);
            }
        }
        match self.mms.get(&mm) {
            Some(p) => Some(*p),
            None if owner == 0 => {
                self.unattributed += 1;
                None
            }
            None => None,
        }
    }

    pub fn add(&mut self, op: &KernelOp, at: At) {
        self.total.add(op);
        let next = self.rows.len();
        let i = *self.index.entry((at.proc, at.phase)).or_insert(next);
        if i == next {
            self.rows.push(Row { proc: at.proc, tgid: at.tgid, phase: at.phase, counts: KernelEventCounts::default() });
        }
        self.rows[i].counts.add(op);
    }

    /// Rows where `shown(phase)`, for the report (its `backend` filled by the caller).
    pub fn doc(&self, shown: impl Fn(Option<u32>) -> bool) -> crate::report::trace_doc::KernelEvents {
        crate::report::trace_doc::KernelEvents {
            total: self.total,
            unattributed_ksm_records: self.unattributed,
            phases: self.rows.iter().filter(|r| shown(r.phase)).cloned().collect(),
            backend: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazyvma_model::{hook_abi::*, trace_abi::Hook};

    fn merge(mm: u64, owner: u32, err: i32) -> Ksm {
        Ksm::MergeWithKsmPage { item: KsmItem { pid: 40, tgid: 40, mm, owner_tgid: owner, ..Default::default() }, ksm_page: 0, err }
    }

    fn remove(mm: u64) -> Ksm {
        Ksm::RemoveRmapItem(*merge(mm, 0, 0).item())
    }

    #[test]
    fn ksm_records_count_for_the_mm_owner_and_after_it_is_gone() {
        let mut tree = Tree::command(10);
        let mut k = KernelEvents::default();
        let run = |ev: Ksm, tree: &mut Tree, k: &mut KernelEvents| {
            let op = tracepoint_op(&ev);
            if let Some(p) = k.attribute(&op, tree) {
                let at = At { proc: p, tgid: tree.get(p).tgid, phase: tree.get(p).phase };
                k.add(&op.op, at);
            }
        };
        run(merge(0x100, 10, 0), &mut tree, &mut k);
        run(merge(0x100, 10, -14), &mut tree, &mut k);
        // Another process's mm: not traced, not counted, not "unattributed".
        run(merge(0x200, 99, 0), &mut tree, &mut k);
        // After the exit the mm has no owner: still the traced process's.
        run(remove(0x100), &mut tree, &mut k);
        run(remove(0x300), &mut tree, &mut k);
        assert_eq!(k.total, KernelEventCounts { ksm_merges: 1, ksm_merge_failures: 1, ksm_rmap_items_removed: 1, thp_faults: 0, thp_fallbacks: 0 });
        assert_eq!(k.unattributed, 1);
        assert_eq!(k.rows.len(), 1);
    }

    #[test]
    fn a_thp_fallback_is_no_thp_fault() {
        let mut c = KernelEventCounts::default();
        c.add(&KernelOp::ThpFault { vma: Default::default(), address: 0x1_0000_0000, write: true, ret: 0 });
        c.add(&KernelOp::ThpFault { vma: Default::default(), address: 0x2_0000_0000, write: true, ret: VM_FAULT_FALLBACK });
        assert_eq!((c.thp_faults, c.thp_fallbacks), (1, 1));
    }

    #[test]
    fn hook_records_decode_to_the_same_ops() {
        let mut raw = HookEvent { kind: EV_HOOK, hook: HK_KSM_MERGE, phase: PH_EXIT, backend: BK_KPROBE, ..Default::default() };
        raw.args = [0x10, 0x100, 0x7000_0000_1000 | KSM_STABLE_FLAG, 0, 10, 0xa0];
        let mut ev = Hook::of(&raw).expect("a KSM merge hook record");
        let op = |ev: &Hook| crate::trace::ingest::ops::ksm_hook_op(ev);
        assert!(matches!(op(&ev), Some(KernelOp::KsmMerge { mm: 0x100, owner: 10, anon_vma: 0xa0, err: 0, .. })));
        ev.ret = (-14i64) as u64;
        assert!(matches!(op(&ev), Some(KernelOp::KsmMerge { err: -14, .. })));
        ev.function = HookFn::RemoveRmapItemFromTree;
        assert!(matches!(op(&ev), Some(KernelOp::KsmRemoveRmapItem { stable: true, .. })));
        let HookArgs::Ksm { address, .. } = &mut ev.args else { panic!("a KSM hook's args") };
        *address = 0x7000_0000_1000 | KSM_UNSTABLE_FLAG;
        assert!(matches!(op(&ev), Some(KernelOp::KsmRemoveRmapItem { stable: false, .. })));
        ev.function = HookFn::DoHugePmdAnonymousPage;
        assert_eq!(op(&ev), None);
    }
}
