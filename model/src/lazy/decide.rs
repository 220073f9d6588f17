//! Where LAZY departs from eager: the decisions of spec §3.2, on the shared engine
//! (`crate::engine`). The EAGER half's fault path is here too: `Core::fault` when `Core::lz`
//! is `None`.

use super::history::bit;
use super::Rule;
use crate::engine::anon_vma::{Allocs, NIL};
use crate::engine::vma::{Mm, State, Vma, LAZY_FOLIOS};
use crate::engine::Core;
use crate::engine::Prop;
use crate::event::{vm, FaultKind, RmapCaller};
use crate::knobs::{CowInTreeParent, ForkOfTreeParent, Knobs, MergeLazyLazy, MergeLazyTree};

impl Core {
    /// A fault that would call `anon_vma_prepare` today (spec §1.2).
    pub(crate) fn fault(&mut self, mm: &mut Mm, i: usize, kind: FaultKind) {
        let v = mm.vmas[i];
        if v.flags() & vm::SHARED != 0 || kind == FaultKind::Read {
            return; // shmem folios, or the zero page
        }
        let Some(k) = self.lz() else {
            if v.av == NIL {
                if self.knobs.is_some() {
                    self.rules.fire(Rule::L1b);
                }
                self.prepare(mm, i, true);
            }
            return;
        };
        let thp = kind == FaultKind::Thp;
        match v.state() {
            State::None | State::Lazy => {
                if thp {
                    self.fire(Rule::L15);
                    if k.thp_upgrades {
                        self.upgrade(mm, i, k);
                        return;
                    }
                }
                if v.state() == State::None {
                    self.fire(Rule::L1);
                    mm.vmas[i].add_flags(LAZY_FOLIOS);
                    mm.vmas[i].add_hist(bit::SEEN);
                    mm.vmas[i].set_owner(true);
                }
            }
            State::Tree => {}
            State::TreeParent => {
                self.fire(Rule::L6);
                match k.cow_in_tree_parent {
                    CowInTreeParent::LazyToVma => {
                        mm.vmas[i].add_flags(LAZY_FOLIOS);
                        mm.vmas[i].set_owner(true);
                    }
                    CowInTreeParent::ParentAv => {}
                    CowInTreeParent::Upgrade => self.own_anon_vma(mm, i),
                }
            }
        }
    }

    /// L16: LAZY (or NONE) → TREE, as `__anon_vma_prepare` plus re-pointing the lazy
    /// folios, which releases the VMA structs they pinned.
    pub(crate) fn upgrade(&mut self, mm: &mut Mm, i: usize, k: Knobs) {
        self.fire(Rule::L16);
        self.prepare(mm, i, k.upgrade_uses_neighbour_reuse);
        self.repoint(mm, i);
    }

    /// A TREE_PARENT VMA gets its own anon_vma, a child of its chain's newest AV as
    /// `anon_vma_fork` would have made it (spec §3.3 `upgrade_first`/`upgrade`): +1 AV +1 AVC.
    pub(crate) fn own_anon_vma(&mut self, mm: &mut Mm, i: usize) {
        let old = mm.vmas[i].chain;
        let (chain, av) = self.avs.child_of(old);
        self.avs.chain_put(old);
        mm.vmas[i].chain = chain;
        mm.vmas[i].av = av;
        self.repoint(mm, i);
    }

    fn repoint(&mut self, mm: &mut Mm, i: usize) {
        let v = &mut mm.vmas[i];
        v.clear_flags(LAZY_FOLIOS);
        v.set_owner(false);
        let pins = v.take_pins();
        self.vma.sub(pins as u64);
    }

    /// `dup_mmap`: every parent VMA in address order (spec §1.4, §3.2 L2-L5).
    /// `buf`: an empty array to fill (a pooled one, or new).
    pub(crate) fn fork(&mut self, pmm: &mut Mm, mut buf: Vec<Vma>) -> Mm {
        debug_assert!(buf.is_empty());
        buf.reserve_exact(pmm.vmas.len());
        let mut child = Mm { vmas: buf };
        let lz = self.lz();
        // Counted once per fork (or before anything that frees, so peaks stay exact).
        let mut vmas = 0;
        let mut allocs = Allocs::default();
        for i in 0..pmm.vmas.len() {
            let pv = pmm.vmas[i];
            if pv.flags() & vm::DONTCOPY != 0 {
                self.fire(Rule::L4);
                continue;
            }
            vmas += 1;
            // dup_mmap: a child's VMAs are never mlocked (VM_LOCKED_MASK cleared).
            let mut cv = Vma::new(pv.start(), pv.end(), pv.pgoff(), pv.merge_flags() & !(vm::LOCKED | vm::LOCKONFAULT));
            if pv.flags() & vm::WIPEONFORK != 0 {
                self.fire(Rule::L4);
                child.vmas.push(cv);
                continue;
            }
            match lz {
                None => {
                    if pv.av != NIL {
                        let (chain, av) = self.avs.fork(pv.chain, pv.av, self.kernel, &mut allocs);
                        cv.chain = chain;
                        cv.av = av;
                    }
                }
                Some(k) => {
                    match pv.state() {
                        State::None if k.upgrade_when_parent_has_no_pages && pv.flags() & vm::SHARED == 0 => {
                            self.fire(Rule::L2);
                            self.vma.add(std::mem::take(&mut vmas));
                            self.upgrade(pmm, i, k);
                        }
                        State::None => self.fire(Rule::L4),
                        State::Lazy => {
                            self.fire(Rule::L2);
                            self.vma.add(std::mem::take(&mut vmas));
                            self.upgrade(pmm, i, k);
                        }
                        State::Tree => self.fire(Rule::L3),
                        State::TreeParent => {
                            self.fire(Rule::L5);
                            if k.fork_of_tree_parent == ForkOfTreeParent::UpgradeFirst {
                                self.vma.add(std::mem::take(&mut vmas));
                                self.own_anon_vma(pmm, i);
                            }
                        }
                    }
                    // The child is TREE_PARENT: it links the parent's chain, no own AV.
                    let pv = pmm.vmas[i];
                    if pv.has_hist() {
                        self.history.settle(pv.hist(), true);
                        pmm.vmas[i].set_hist(0);
                    }
                    if pv.chain != NIL {
                        cv.chain = self.avs.link_chain(pv.chain, &mut allocs);
                    }
                }
            }
            child.vmas.push(cv);
        }
        self.vma.add(vmas);
        self.avs.count(allocs);
        child
    }

    pub(crate) fn before_split(&mut self, mm: &mut Mm, i: usize) {
        let Some(k) = self.lz() else { return };
        match mm.vmas[i].state() {
            State::Lazy => {
                self.fire(Rule::L7);
                mm.vmas[i].add_hist(bit::SPLIT);
                if k.split_upgrades {
                    self.upgrade(mm, i, k);
                }
            }
            State::Tree | State::TreeParent => self.fire(Rule::L7b),
            State::None => {}
        }
    }

    pub(crate) fn before_mremap(&mut self, mm: &mut Mm, i: usize) {
        let Some(k) = self.lz() else { return };
        match mm.vmas[i].state() {
            State::Lazy => {
                self.fire(Rule::L9);
                mm.vmas[i].add_hist(bit::MREMAPPED);
                if k.mremap_upgrades {
                    self.upgrade(mm, i, k);
                }
            }
            State::Tree | State::TreeParent => self.fire(Rule::L9b),
            State::None => {}
        }
    }

    /// ksmd merging pages of `mm.vmas[i]`: the anon_vma its rmap_items will reference, if
    /// KSM scans this VMA at all (VM_MERGEABLE with an anon_vma, spec §1.10, L12).
    pub(crate) fn ksm_merge(&mut self, mm: &mut Mm, i: usize) -> Option<u32> {
        let v = mm.vmas[i];
        if v.flags() & vm::MERGEABLE == 0 {
            return None;
        }
        if let Some(k) = self.lz() {
            match v.state() {
                State::Lazy | State::TreeParent => {
                    self.fire(Rule::L12);
                    if !k.ksm_upgrades {
                        return None;
                    }
                    if v.state() == State::Lazy {
                        mm.vmas[i].add_hist(bit::KSM_MERGED);
                        self.upgrade(mm, i, k);
                    } else {
                        self.own_anon_vma(mm, i);
                    }
                }
                _ => {}
            }
        }
        let av = mm.vmas[i].av;
        (av != NIL).then_some(av)
    }

    /// khugepaged collapse: a write-locked walk; skipped for VMAs without anon folios.
    pub(crate) fn collapse(&mut self, mm: &mut Mm, i: usize) {
        if let Some(k) = self.lz() {
            if mm.vmas[i].state() == State::Lazy {
                self.fire(Rule::L15);
                mm.vmas[i].add_hist(bit::THP_COLLAPSED);
                if k.thp_upgrades {
                    self.upgrade(mm, i, k);
                }
            }
        }
        let v = mm.vmas[i];
        if v.state() != State::None {
            self.walk(RmapCaller::Collapse, &v);
        }
    }

    /// `MADV_GUARD_INSTALL` (6.13+) prepares every VMA in the range (L18 in LAZY).
    pub(crate) fn guard_install(&mut self, mm: &mut Mm, s: u64, e: u64) {
        if !self.kernel.has_guard_install() {
            return; // EINVAL before 6.13
        }
        let mut i = mm.lower_bound(s);
        while i < mm.vmas.len() && mm.vmas[i].start() < e {
            let v = mm.vmas[i];
            if v.flags() & vm::SHARED == 0 {
                if self.lz().is_some() {
                    if v.state() == State::None {
                        self.fire(Rule::L18);
                        mm.vmas[i].add_flags(LAZY_FOLIOS);
                        mm.vmas[i].add_hist(bit::SEEN);
                        mm.vmas[i].set_owner(true);
                    }
                } else if v.av == NIL {
                    self.prepare(mm, i, true);
                }
            }
            i += 1;
        }
    }

    /// L17: a TREE VMA whose anon_vma nothing else links (all children gone) goes back to
    /// LAZY: its AVC and AV are freed.
    pub(crate) fn downgrade(&mut self, mm: &mut Mm) {
        for i in 0..mm.vmas.len() {
            let v = mm.vmas[i];
            if v.av == NIL || self.avs.len(v.chain) != 1 {
                continue;
            }
            let a = *self.avs.get(v.av);
            if a.root == v.av && self.avs.only_user(v.chain) && a.refcount == 1 && a.num_children == 1 {
                self.fire(Rule::L17);
                self.avs.unlink(v.chain, v.av);
                let w = &mut mm.vmas[i];
                w.chain = NIL;
                w.av = NIL;
                w.add_flags(LAZY_FOLIOS);
                w.add_hist(bit::SEEN);
                w.set_owner(true);
            }
        }
    }

    fn same_chain(&self, a: u32, b: u32) -> bool {
        a == b || self.avs.chain(a).eq(self.avs.chain(b))
    }

    /// L8/L8b: may the anon side `p` join neighbour `tgt`?
    pub(crate) fn lazy_anon_ok(&mut self, tgt: &Vma, p: &Prop, k: Knobs) -> bool {
        let ps = p.vma().map_or(State::None, |v| v.state());
        match (tgt.state(), ps) {
            (State::None, State::None) => true,
            (State::Lazy | State::None, State::Lazy | State::None) => k.merge_lazy_lazy == MergeLazyLazy::SameBase,
            (State::Lazy, State::Tree) | (State::Tree, State::Lazy) => {
                self.fire(Rule::L8b);
                false
            }
            // A child linked to its parent's chain merges only with a piece of the same chain
            // (choice; spec §3.3 leaves TREE_PARENT merges open).
            (State::TreeParent, State::TreeParent) => self.same_chain(tgt.chain, p.vma().map_or(NIL, |v| v.chain)),
            (State::TreeParent, _) | (_, State::TreeParent) => false,
            _ => self.eager_anon_ok(tgt, p),
        }
    }

    pub(crate) fn lazy_pair_ok(&self, prev: &Vma, next: &Vma) -> bool {
        match (prev.state(), next.state()) {
            (State::Lazy | State::None, State::Lazy | State::None) => true,
            (State::TreeParent, State::TreeParent) => self.same_chain(prev.chain, next.chain),
            (State::Tree | State::None, State::Tree | State::None) => prev.av == NIL || next.av == NIL || prev.av == next.av,
            _ => false,
        }
    }

    /// `K_MERGE_LAZY_TREE=upgrade`: before a merge is judged, a LAZY VMA next to a TREE one
    /// is upgraded (L8b, L16), so the eager rules decide.
    pub(crate) fn upgrade_for_merge(&mut self, mm: &mut Mm, a: usize, b: usize) {
        let Some(k) = self.lz() else { return };
        if k.merge_lazy_tree != MergeLazyTree::Upgrade {
            return;
        }
        let lazy = match (mm.vmas[a].state(), mm.vmas[b].state()) {
            (State::Lazy, State::Tree) => a,
            (State::Tree, State::Lazy) => b,
            _ => return,
        };
        self.fire(Rule::L8b);
        self.upgrade(mm, lazy, k);
    }
}
