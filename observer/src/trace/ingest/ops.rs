//! Function-hook records → a typed stream of kernel operations, the input an eager model
//! replays: every VMA carries its pointer, mm, geometry, flags, anon_vma and chain length as
//! the hook saw them. Entry and exit records of one call are paired per thread here.
use crate::trace::ingest::symbols::Symbols;
use lazyvma_model::{hook_abi::*, trace_abi::Hook};
use std::{collections::HashMap, fmt};

/// One vm_area_struct as the hook read it (the ABI record itself).
pub type Vma = VmaSnap;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KernelOp {
    /// `__anon_vma_prepare` returned: `vma` as it is after (anon_vma set, chain 1).
    /// `task_mm`: the preparing task's own mm (0 where the hook did not read it).
    Prepare {
        vma: Vma,
        ret: i32,
        reused_neighbour: bool,
        #[serde(skip)]
        task_mm: u64,
    },
    /// `anon_vma_fork(vma, pvma)` returned. `reused_ancestor`: the child's anon_vma is an
    /// existing one of pvma's chain (its parent is not pvma's anon_vma), no AV allocated.
    Fork {
        vma: Vma,
        pvma: Vma,
        ret: i32,
        reused_ancestor: bool,
    },
    /// `anon_vma_clone(dst, src)` returned; `reason` = the operation it ran in.
    Clone {
        dst: Vma,
        src: Vma,
        ret: i32,
        reason: &'static str,
    },
    /// `unlink_anon_vmas(vma)` called: it frees `vma.chain_len` AVCs.
    Unlink {
        vma: Vma,
        reason: &'static str,
    },
    /// `__put_anon_vma(av)`: frees av, and its root too when `root_freed`.
    PutAnonVma {
        av: u64,
        root: u64,
        root_freed: bool,
    },
    /// `__split_vma(vma, addr, new_below)`: `vma` before, `after` once it returned.
    Split {
        vma: Vma,
        addr: u64,
        new_below: bool,
        ret: i32,
        after: Vma,
    },
    /// One merge function call. `vma`/`other`: the VMAs its arguments name (see `HK_MERGE`);
    /// `caller`: the operation around it ("" at top level, "merge" when nested in another).
    Merge {
        function: &'static str,
        caller: &'static str,
        vma: Vma,
        other: Vma,
        start: u64,
        end: u64,
        ret: u64,
        merged: bool,
    },
    /// `copy_vma` (mremap's move): `src` from *vmap, `new` = the VMA returned (vma 0: failed).
    CopyVma {
        src: Vma,
        addr: u64,
        len: u64,
        pgoff: u64,
        new: Vma,
    },
    DupMmap {
        mm: u64,
        oldmm: u64,
    },
    ExitMmap {
        mm: u64,
    },
    /// One rmap walk: an rmap_walk[_locked] call, or a folio_lock_anon_vma_read whose walk
    /// was inlined into its caller (try_to_migrate's). `caller`: the hooked caller around
    /// it, else named from the return address ("other:FUNC" when no caller of §2).
    /// `anon_vma`: what folio_lock_anon_vma_read locked (0: not called, or try-lock failed).
    RmapWalk {
        caller: String,
        folio: u64,
        anon: bool,
        locked: bool,
        anon_vma: u64,
        wait_ns: u64,
        contended: bool,
    },
    /// ksmd merged (`err` 0: +1 reference on `anon_vma`) the page at `address` of `mm` into
    /// `ksm_page` (0: the page itself became the KSM page). `owner`: the mm's tgid then (0:
    /// none). Tracepoint records carry `pfn` but no anon_vma; hook records the reverse.
    KsmMerge {
        mm: u64,
        owner: u32,
        rmap_item: u64,
        address: u64,
        anon_vma: u64,
        ksm_page: u64,
        pfn: u64,
        err: i32,
    },
    /// An rmap_item leaves KSM's trees; `stable`: it held an anon_vma reference, dropped now.
    KsmRemoveRmapItem {
        mm: u64,
        owner: u32,
        rmap_item: u64,
        address: u64,
        anon_vma: u64,
        pfn: u64,
        stable: bool,
    },
    /// `do_huge_pmd_anonymous_page` returned: `vma` after (its anon_vma prepared even for a
    /// read fault), `ret` the vm_fault_t.
    ThpFault {
        vma: Vma,
        address: u64,
        write: bool,
        ret: u32,
    },
}

impl KernelOp {
    pub fn name(&self) -> &'static str {
        match self {
            KernelOp::Prepare { .. } => "prepare",
            KernelOp::Fork { .. } => "fork",
            KernelOp::Clone { .. } => "clone",
            KernelOp::Unlink { .. } => "unlink",
            KernelOp::PutAnonVma { .. } => "put_anon_vma",
            KernelOp::Split { .. } => "split",
            KernelOp::Merge { .. } => "merge",
            KernelOp::CopyVma { .. } => "copy_vma",
            KernelOp::DupMmap { .. } => "dup_mmap",
            KernelOp::ExitMmap { .. } => "exit_mmap",
            KernelOp::RmapWalk { .. } => "rmap_walk",
            KernelOp::KsmMerge { .. } => "ksm_merge",
            KernelOp::KsmRemoveRmapItem { .. } => "ksm_remove_rmap_item",
            KernelOp::ThpFault { .. } => "thp_fault",
        }
    }
}

pub const OP_NAMES: [&str; 14] = [
    "prepare",
    "fork",
    "clone",
    "unlink",
    "put_anon_vma",
    "split",
    "merge",
    "copy_vma",
    "dup_mmap",
    "exit_mmap",
    "rmap_walk",
    "ksm_merge",
    "ksm_remove_rmap_item",
    "thp_fault",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub tgid: u32,
    pub pid: u32,
    pub ktime: u64,
    /// The program kind of the hook record that completed it (None: a tracepoint's, or a
    /// walk ended by the trace's end).
    pub backend: Option<HookBackend>,
    pub op: KernelOp,
}

/// The reason a clone or unlink inside `caller` has (`default` outside these).
fn reason(caller: Caller, default: &'static str) -> &'static str {
    match caller {
        Caller::AnonVmaFork => "fork",
        Caller::SplitVma => "split",
        Caller::Merge => "merge",
        Caller::CopyVma | Caller::Mremap => "mremap",
        _ => default,
    }
}

/// A walk seen at rmap_walk entry, waiting for its folio_lock_anon_vma_read.
struct Walk {
    tgid: u32,
    caller: String,
    folio: u64,
    mapping: u64,
    locked: bool,
    lock_entry: Option<u64>,
}

#[derive(Default)]
struct Thread {
    /// find_mergeable_anon_vma's last result, for the prepare it ran in.
    mergeable: Option<u64>,
    /// Entries waiting for their exits (split, merge, copy_vma), innermost last.
    open: Vec<Hook>,
    walk: Option<Walk>,
}

#[derive(Default)]
pub struct Decoder {
    threads: HashMap<u32, Thread>,
    /// (task, mm) whose exit_mmap began: that task's unlinks in that mm are "exit" (an mm
    /// address freed and reused later belongs to another task's exit, or to none).
    exiting: std::collections::HashSet<(u32, u64)>,
    /// Exits without their entry (attached mid-call) and other malformed records.
    pub unpaired: u64,
    /// [_stext, _etext): where a return address can name a kernel function.
    text: Option<(u64, u64)>,
}

fn kernel_text(syms: &Symbols) -> (u64, u64) {
    match (syms.range("_stext"), syms.range("_etext")) {
        (Ok(s), Ok(e)) => (s.0, e.0),
        _ => (0, 0),
    }
}

fn int(ret: u64) -> i32 {
    ret as u32 as i32
}

const FOLIO_MAPPING_ANON: u64 = 1;

impl Decoder {
    /// `sched_process_exec` in task `pid`: the old mm's teardown (its exit_mmap) is over.
    /// Its key goes, or a later mm of the task at the freed address (a second exec's new
    /// mm, seen on arm64) would have its munmaps called "exit".
    pub fn exec(&mut self, pid: u32) {
        self.exiting.retain(|(p, _)| *p != pid);
    }

    /// Turn one record into zero or more finished operations.
    pub fn feed(&mut self, ev: &Hook, syms: &Symbols, out: &mut Vec<Op>) {
        use HookFn::*;
        use Phase::{Entry, Exit};
        let mk = |op| Op { tgid: ev.tgid, pid: ev.pid, ktime: ev.ktime, backend: Some(ev.backend), op };
        let t = self.threads.entry(ev.pid).or_default();
        // A walk that never locked (remove_migration_ptes, locked walks) ends when its
        // thread does anything else: ops keep their order.
        if !matches!(ev.function, RmapWalk | FolioLockAnonVmaRead) {
            if let Some(w) = t.walk.take() {
                out.push(mk(walk_op(w, 0, 0, false)));
            }
        }
        match (ev.function, ev.phase, ev.args) {
            (FindMergeableAnonVma, Exit, _) => t.mergeable = Some(ev.ret),
            (AnonVmaPrepare, Exit, HookArgs::Prepare { task_mm }) => {
                let vma = ev.a;
                let lent = t.mergeable.take().unwrap_or(0);
                out.push(mk(KernelOp::Prepare { vma, ret: int(ev.ret), reused_neighbour: lent != 0 && lent == vma.anon_vma, task_mm }));
            }
            (AnonVmaFork, Exit, HookArgs::Fork { anon_vma_parent }) => {
                let (vma, pvma) = (ev.a, ev.b);
                let reused = int(ev.ret) == 0 && vma.anon_vma != 0 && anon_vma_parent != pvma.anon_vma;
                out.push(mk(KernelOp::Fork { vma, pvma, ret: int(ev.ret), reused_ancestor: reused }));
            }
            (AnonVmaClone, Exit, _) => {
                let r = reason(ev.caller, "other");
                out.push(mk(KernelOp::Clone { dst: ev.a, src: ev.b, ret: int(ev.ret), reason: r }));
            }
            (UnlinkAnonVmas, Entry, _) => {
                let vma = ev.a;
                let dflt = if self.exiting.contains(&(ev.pid, vma.mm)) { "exit" } else { "munmap" };
                out.push(mk(KernelOp::Unlink { vma, reason: reason(ev.caller, dflt) }));
            }
            (PutAnonVma, Entry, HookArgs::PutAnonVma { anon_vma: av, root, root_refcount, .. }) => {
                out.push(mk(KernelOp::PutAnonVma { av, root, root_freed: root != av && root_refcount as i64 == 1 }));
            }
            (DupMmap, Entry, HookArgs::DupMmap { mm, oldmm }) => out.push(mk(KernelOp::DupMmap { mm, oldmm })),
            (ExitMmap, Entry, HookArgs::ExitMmap { mm }) => {
                self.exiting.insert((ev.pid, mm));
                out.push(mk(KernelOp::ExitMmap { mm }));
            }
            (TryToMergeWithKsmPage, Exit, _) | (RemoveRmapItemFromTree, Entry, _) => out.extend(ksm_hook_op(ev).map(mk)),
            (DoHugePmdAnonymousPage, Exit, HookArgs::ThpFault { address, flags }) => {
                const FAULT_FLAG_WRITE: u64 = 1;
                out.push(mk(KernelOp::ThpFault { vma: ev.a, address, write: flags & FAULT_FLAG_WRITE != 0, ret: ev.ret as u32 }));
            }
            (SplitVma | Merge(_) | CopyVma, Entry, _) => t.open.push(*ev),
            (SplitVma | Merge(_) | CopyVma, Exit, _) => {
                // A merge's function is part of `function`: an exit pairs only with an entry of
                // the same merge function.
                let Some(i) = t.open.iter().rposition(|e| e.function == ev.function) else {
                    self.unpaired += 1;
                    return;
                };
                let entry = t.open.remove(i);
                // Entries above it never saw their exit (a missed kretprobe): drop them.
                self.unpaired += t.open.drain(i..).count() as u64;
                match complete(&entry, ev) {
                    Some(op) => out.push(mk(op)),
                    None => self.unpaired += 1,
                }
            }
            (RmapWalk | FolioLockAnonVmaRead, Entry, HookArgs::Folio { folio, mapping, locked }) => {
                let lock = ev.function == FolioLockAnonVmaRead;
                // A lock of the pending walk's folio belongs to it; any other entry starts a walk.
                if lock && t.walk.as_ref().is_some_and(|w| w.lock_entry.is_none() && w.folio == folio) {
                    t.walk.as_mut().expect("checked").lock_entry = Some(ev.ktime);
                    return;
                }
                if let Some(w) = t.walk.take() {
                    out.push(mk(walk_op(w, 0, 0, false)));
                }
                t.walk = Some(Walk {
                    tgid: ev.tgid,
                    caller: walk_caller(ev, syms, *self.text.get_or_insert_with(|| kernel_text(syms))),
                    folio,
                    mapping,
                    locked,
                    lock_entry: lock.then_some(ev.ktime),
                });
            }
            (FolioLockAnonVmaRead, Exit, _) => match t.walk.take() {
                Some(w) if w.lock_entry.is_some() => {
                    let wait = ev.ktime.saturating_sub(w.lock_entry.unwrap_or(ev.ktime));
                    out.push(mk(walk_op(w, ev.ret, wait, ev.ret == 0)));
                }
                other => {
                    t.walk = other;
                    self.unpaired += 1;
                }
            },
            // A phase of a function no program sends (e.g. a prepare's entry): malformed.
            _ => self.unpaired += 1,
        }
    }

    /// Walks still waiting for a lock that never came (remove_migration_ptes, locked walks).
    pub fn flush(&mut self, out: &mut Vec<Op>) {
        let mut tids: Vec<u32> = self.threads.keys().copied().collect();
        tids.sort_unstable();
        for pid in tids {
            let t = self.threads.get_mut(&pid).expect("listed");
            if let Some(w) = t.walk.take() {
                out.push(Op { tgid: w.tgid, pid, ktime: 0, backend: None, op: walk_op(w, 0, 0, false) });
            }
        }
    }
}

/// The hooked caller frame, else the first return address outside the walk itself:
/// migrate.c calls rmap_walk only from remove_migration_ptes, which both kernels inline
/// into migrate.c's other functions.
fn walk_caller(ev: &Hook, syms: &Symbols, text: (u64, u64)) -> String {
    let frame = ev.caller.name();
    if !frame.is_empty() {
        return frame.into();
    }
    // Trampoline and module addresses fall outside the kernel text: their "symbol" would be
    // whatever precedes them.
    for &addr in ev.stack.iter().filter(|a| (text.0..text.1).contains(*a)) {
        let Some(name) = syms.name(addr) else { continue };
        if name.starts_with("rmap_walk") || name.starts_with("bpf_") || name == "folio_lock_anon_vma_read" {
            continue;
        }
        if let Some(c) = CALLERS.iter().find(|c| **c == name) {
            return c.to_string();
        }
        // 6.1 inlines it up to migrate_pages, 6.12 to migrate_pages_batch / migrate_folio_move.
        if name.starts_with("migrate_pages") || name.starts_with("migrate_folio") || name.starts_with("__migrate_folio") || name.contains("unmap_and_move") {
            return "remove_migration_ptes".into();
        }
        return format!("other:{name}");
    }
    "other".into()
}

fn walk_op(w: Walk, anon_vma: u64, wait_ns: u64, contended: bool) -> KernelOp {
    KernelOp::RmapWalk { caller: w.caller, folio: w.folio, anon: w.mapping & FOLIO_MAPPING_ANON != 0, locked: w.locked, anon_vma, wait_ns, contended }
}

/// The op of a paired entry and exit (of the same function: [`Decoder::feed`] pairs them);
/// `None` for a function whose entries are not held for their exits.
fn complete(entry: &Hook, exit: &Hook) -> Option<KernelOp> {
    Some(match (entry.function, entry.args) {
        (HookFn::SplitVma, HookArgs::SplitVma { addr, new_below }) => KernelOp::Split { vma: entry.a, addr, new_below, ret: int(exit.ret), after: exit.a },
        (HookFn::CopyVma, HookArgs::CopyVma { addr, len, pgoff }) => KernelOp::CopyVma { src: entry.a, addr, len, pgoff, new: exit.a },
        (HookFn::Merge(f), HookArgs::Merge { start, end }) => {
            let merged = if f.returns_vma() { exit.ret != 0 } else { int(exit.ret) == 0 };
            KernelOp::Merge { function: f.name(), caller: entry.caller.name(), vma: entry.a, other: entry.b, start, end, ret: exit.ret, merged }
        }
        _ => return None,
    })
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bk = self.backend.map_or("-", HookBackend::name);
        write!(f, "{:>14} {:>7}/{:<7} {bk:<6} {:<12} ", self.ktime, self.tgid, self.pid, self.op.name())?;
        match &self.op {
            KernelOp::Prepare { vma, ret, reused_neighbour, .. } => write!(f, "{vma} ret={ret} reused_neighbour={reused_neighbour}"),
            KernelOp::Fork { vma, pvma, ret, reused_ancestor } => write!(f, "{vma} parent {pvma} ret={ret} reused_ancestor={reused_ancestor}"),
            KernelOp::Clone { dst, src, ret, reason } => write!(f, "reason={reason} dst {dst} src {src} ret={ret}"),
            KernelOp::Unlink { vma, reason } => write!(f, "reason={reason} {vma}"),
            KernelOp::PutAnonVma { av, root, root_freed } => write!(f, "av={av:#x} root={root:#x} root_freed={root_freed}"),
            KernelOp::Split { vma, addr, new_below, ret, after } => {
                write!(f, "{vma} addr={addr:#x} new_below={new_below} ret={ret} after [{:#x}-{:#x}]", after.start, after.end)
            }
            KernelOp::Merge { function, caller, vma, other, start, end, merged, .. } => {
                write!(f, "{function} caller={caller:?} merged={merged} range={start:#x}-{end:#x} {vma} other {other}")
            }
            KernelOp::CopyVma { src, addr, len, new, .. } => write!(f, "src {src} to {addr:#x}+{len:#x} new {new}"),
            KernelOp::DupMmap { mm, oldmm } => write!(f, "mm={mm:#x} oldmm={oldmm:#x}"),
            KernelOp::ExitMmap { mm } => write!(f, "mm={mm:#x}"),
            KernelOp::RmapWalk { caller, folio, anon, locked, anon_vma, wait_ns, contended } => {
                write!(f, "caller={caller} folio={folio:#x} anon={anon} locked={locked} av={anon_vma:#x} wait_ns={wait_ns} contended={contended}")
            }
            KernelOp::KsmMerge { mm, owner, rmap_item, address, anon_vma, ksm_page, pfn, err } => {
                write!(f, "mm={mm:#x} owner={owner} rmap_item={rmap_item:#x} addr={address:#x} av={anon_vma:#x} ksm_page={ksm_page:#x} pfn={pfn:#x} err={err}")
            }
            KernelOp::KsmRemoveRmapItem { mm, owner, rmap_item, address, anon_vma, pfn, stable } => {
                write!(f, "mm={mm:#x} owner={owner} rmap_item={rmap_item:#x} addr={address:#x} av={anon_vma:#x} pfn={pfn:#x} stable={stable}")
            }
            KernelOp::ThpFault { vma, address, write, ret } => write!(f, "{vma} addr={address:#x} write={write} ret={ret:#x}"),
        }
    }
}

/// A KSM hook record (`try_to_merge_with_ksm_page` exit or `remove_rmap_item_from_tree`
/// entry) as its op; `None` for another function's record.
pub fn ksm_hook_op(ev: &Hook) -> Option<KernelOp> {
    let HookArgs::Ksm { rmap_item, mm, address, kpage, owner_tgid: owner, anon_vma } = ev.args else { return None };
    match ev.function {
        HookFn::TryToMergeWithKsmPage => Some(KernelOp::KsmMerge { mm, owner, rmap_item, address, anon_vma, ksm_page: kpage, pfn: 0, err: int(ev.ret) }),
        HookFn::RemoveRmapItemFromTree => {
            Some(KernelOp::KsmRemoveRmapItem { mm, owner, rmap_item, address, anon_vma, pfn: 0, stable: address & KSM_STABLE_FLAG != 0 })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use HookFn::*;
    use Phase::{Entry, Exit};

    impl Decoder {
        fn feed_(&mut self, ev: &Hook, out: &mut Vec<Op>) {
            self.feed(ev, &syms(), out)
        }
    }

    fn syms() -> Symbols {
        Symbols::parse("ffffffff81000000 T _stext\nffffffff81000000 T rmap_walk\nffffffff81000100 t migrate_folio_move\nffffffff81000200 T other_fn\nffffffff81000300 T _etext\nffffffff81000400 T zz\n").unwrap()
    }

    fn ev(function: HookFn, phase: Phase) -> Hook {
        let none = VmaSnap::default();
        Hook {
            function,
            phase,
            backend: HookBackend::Fentry,
            pid: 7,
            tgid: 7,
            ktime: 0,
            caller: Caller::TopLevel,
            ret: 0,
            args: HookArgs::of(function, phase, [0; 6]),
            a: none,
            b: none,
            stack: [0; 6],
        }
    }

    /// A split's exit pairs with the split's entry, a merge function's with its own
    /// function's entry only (not another merge function's, nor a split's).
    #[test]
    fn an_exit_pairs_with_its_own_function_s_entry() {
        let (mut d, mut out) = (Decoder::default(), vec![]);
        let mut entry = ev(Merge(MergeFn::VmaExpand), Entry);
        entry.args = HookArgs::Merge { start: 0x1000, end: 0x3000 };
        d.feed_(&entry, &mut out);
        d.feed_(&ev(SplitVma, Entry), &mut out);
        d.feed_(&ev(Merge(MergeFn::CommitMerge), Exit), &mut out);
        assert_eq!((out.len(), d.unpaired), (0, 1));
        // The split's entry above the merge's never saw its exit: dropped, counted.
        d.feed_(&ev(Merge(MergeFn::VmaExpand), Exit), &mut out);
        assert_eq!(d.unpaired, 2);
        assert!(matches!(
            out[..],
            [Op { backend: Some(HookBackend::Fentry), op: KernelOp::Merge { function: "vma_expand", start: 0x1000, end: 0x3000, merged: true, .. }, .. }]
        ));
        // A phase no program sends for its function.
        d.feed_(&ev(AnonVmaPrepare, Entry), &mut out);
        assert_eq!((out.len(), d.unpaired), (1, 3));
    }

    fn vma(p: u64, av: u64, l: u64) -> VmaSnap {
        VmaSnap { vma: p, mm: 0x100, start: 0x1000, end: 0x5000, anon_vma: av, chain_len: l, ..Default::default() }
    }

    #[test]
    fn prepare_reuse_fork_reuse_and_clone_reason() {
        let mut d = Decoder::default();
        let mut out = vec![];
        let mut m = ev(FindMergeableAnonVma, Exit);
        m.ret = 0xa0;
        d.feed_(&m, &mut out);
        let mut p = ev(AnonVmaPrepare, Exit);
        p.a = vma(1, 0xa0, 1);
        d.feed_(&p, &mut out);
        // The next prepare has no find_mergeable result left: not reused.
        d.feed_(&p, &mut out);
        let mut c = ev(AnonVmaClone, Exit);
        c.caller = Caller::AnonVmaFork;
        d.feed_(&c, &mut out);
        let mut f = ev(AnonVmaFork, Exit);
        f.a = vma(2, 0xb0, 2);
        f.b = vma(1, 0xa0, 1);
        f.args = HookArgs::Fork { anon_vma_parent: 0xa0 };
        d.feed_(&f, &mut out);
        f.args = HookArgs::Fork { anon_vma_parent: 0x90 };
        d.feed_(&f, &mut out);
        let got: Vec<_> = out.iter().map(|o| o.op.clone()).collect();
        assert!(matches!(got[0], KernelOp::Prepare { reused_neighbour: true, .. }));
        assert!(matches!(got[1], KernelOp::Prepare { reused_neighbour: false, .. }));
        assert!(matches!(got[2], KernelOp::Clone { reason: "fork", .. }));
        assert!(matches!(got[3], KernelOp::Fork { reused_ancestor: false, .. }));
        assert!(matches!(got[4], KernelOp::Fork { reused_ancestor: true, .. }));
    }

    /// An exec's teardown unlinks are "exit"; after the exec, a munmap in a new mm at the
    /// old one's address (arm64: a second exec's mm) is a munmap again.
    #[test]
    fn an_exec_ends_its_old_mm_s_teardown() {
        let (mut d, mut out) = (Decoder::default(), vec![]);
        let mut x = ev(ExitMmap, Entry);
        x.args = HookArgs::ExitMmap { mm: 0x100 };
        d.feed_(&x, &mut out);
        let mut u = ev(UnlinkAnonVmas, Entry);
        u.a = vma(1, 0xa0, 1);
        d.feed_(&u, &mut out);
        d.exec(7);
        d.feed_(&u, &mut out);
        let reasons: Vec<_> = out
            .iter()
            .filter_map(|o| match o.op {
                KernelOp::Unlink { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, ["exit", "munmap"]);
    }

    #[test]
    fn a_thp_fault_carries_its_vma_and_fault_type() {
        let (mut d, mut out) = (Decoder::default(), vec![]);
        let mut t = ev(DoHugePmdAnonymousPage, Exit);
        t.a = vma(1, 0xa0, 1);
        t.args = HookArgs::ThpFault { address: 0x1_0000_0000, flags: 0 };
        d.feed_(&t, &mut out);
        t.args = HookArgs::ThpFault { address: 0x1_0000_0000, flags: 1 }; // FAULT_FLAG_WRITE
        d.feed_(&t, &mut out);
        assert!(matches!(out[0].op, KernelOp::ThpFault { write: false, address: 0x1_0000_0000, vma: VmaSnap { anon_vma: 0xa0, .. }, .. }));
        assert!(matches!(out[1].op, KernelOp::ThpFault { write: true, .. }));
        assert_eq!(out[0].op.name(), "thp_fault");
        assert_eq!(d.unpaired, 0);
    }

    #[test]
    fn an_unlink_inside_mremap_is_mremap() {
        let (mut d, mut out) = (Decoder::default(), vec![]);
        let mut u = ev(UnlinkAnonVmas, Entry);
        u.caller = Caller::Mremap;
        d.feed_(&u, &mut out);
        u.caller = Caller::TopLevel;
        d.feed_(&u, &mut out);
        assert!(matches!(out[0].op, KernelOp::Unlink { reason: "mremap", .. }));
        assert!(matches!(out[1].op, KernelOp::Unlink { reason: "munmap", .. }));
    }

    #[test]
    fn entries_pair_with_exits_and_walks_take_their_lock() {
        let mut d = Decoder::default();
        let mut out = vec![];
        let mut s = ev(SplitVma, Entry);
        s.a = vma(1, 0xa0, 1);
        s.args = HookArgs::SplitVma { addr: 0x2000, new_below: true };
        d.feed_(&s, &mut out);
        let mut s2 = ev(SplitVma, Exit);
        s2.a = vma(1, 0xa0, 1);
        d.feed_(&s2, &mut out);
        assert!(matches!(out[0].op, KernelOp::Split { addr: 0x2000, new_below: true, ret: 0, .. }));
        d.feed_(&s2, &mut out);
        assert_eq!(d.unpaired, 1);

        let mut w = ev(RmapWalk, Entry);
        w.caller = Caller::TryToMigrate;
        w.args = HookArgs::Folio { folio: 0xf0, mapping: 0xa1, locked: false };
        d.feed_(&w, &mut out);
        let mut l = ev(FolioLockAnonVmaRead, Entry);
        l.args = HookArgs::Folio { folio: 0xf0, mapping: 0xa1, locked: false };
        l.ktime = 100;
        d.feed_(&l, &mut out);
        let mut x = ev(FolioLockAnonVmaRead, Exit);
        x.ktime = 150;
        x.ret = 0xa0;
        d.feed_(&x, &mut out);
        // remove_migration_ptes inlined into migrate_folio_move: named by the return address.
        w.caller = Caller::TopLevel;
        w.stack = [0xffffffff81000010, 0xffffffff81000110, 0, 0, 0, 0];
        d.feed_(&w, &mut out);
        // A lock whose walk was inlined into its (hooked) caller is a walk of its own.
        let mut l2 = ev(FolioLockAnonVmaRead, Entry);
        l2.args = HookArgs::Folio { folio: 0xf8, mapping: 0xa1, locked: false };
        l2.caller = Caller::TryToMigrate;
        d.feed_(&l2, &mut out);
        // A trampoline address past _etext is skipped.
        w.stack = [0xffffffffc0001000, 0xffffffff81000210, 0, 0, 0, 0];
        d.feed_(&w, &mut out);
        d.flush(&mut out);
        let walks: Vec<_> = out[1..].iter().map(|o| o.op.clone()).collect();
        let walk = |caller: &str, anon_vma, wait_ns| KernelOp::RmapWalk {
            caller: caller.into(),
            folio: 0xf0,
            anon: true,
            locked: false,
            anon_vma,
            wait_ns,
            contended: false,
        };
        assert_eq!(
            walks,
            vec![
                walk("try_to_migrate", 0xa0, 50),
                walk("remove_migration_ptes", 0, 0),
                KernelOp::RmapWalk { caller: "try_to_migrate".into(), folio: 0xf8, anon: true, locked: false, anon_vma: 0, wait_ns: 0, contended: false },
                walk("other:other_fn", 0, 0)
            ]
        );
    }
}
