//! VMA merges (spec §1.6): a new range next to compatible neighbours (mmap, brk,
//! copy_vma) and a modified range (mprotect, madvise: `vma_modify`), with the anon_vma
//! eligibility rules of 6.1 and 6.18.

use super::anon_vma::NIL;
use super::machine::Core;
use super::vma::{Mm, State, Vma, LAZY_FOLIOS};
use crate::event::PAGE_SIZE;
use crate::kernel::Kernel;
use crate::lazy::history::bit::MERGED;

/// Where the anon side of the range being merged comes from.
#[derive(Clone, Copy)]
pub(crate) enum Prop {
    /// A new range (mmap/brk): no anon_vma.
    New,
    /// An existing VMA being modified (`vmg->middle`).
    Middle(Vma),
    /// `copy_vma` (mremap): `vmg->anon_vma` set but no `middle`.
    Copy(Vma),
}

impl Prop {
    pub fn vma(&self) -> Option<&Vma> {
        match self {
            Prop::New => None,
            Prop::Middle(v) | Prop::Copy(v) => Some(v),
        }
    }
}

impl Core {
    /// `is_mergeable_anon_vma` for target neighbour `tgt`.
    pub fn eager_anon_ok(&self, tgt: &Vma, p: &Prop) -> bool {
        let p_av = p.vma().map_or(NIL, |v| v.av);
        let l = |v: &Vma| self.avs.len(v.chain);
        match self.kernel {
            // 6.18: `vma_had_uncowed_parents` cases 1-3. Case 1 with no `middle` is copy_vma.
            Kernel::V6_18 => {
                if tgt.av == NIL && p_av != NIL {
                    match p {
                        Prop::Middle(s) => l(s) == 1,
                        _ => true,
                    }
                } else if tgt.av != NIL && p_av == NIL {
                    l(tgt) == 1
                } else {
                    p_av == tgt.av
                }
            }
            // 6.1: `(!av1 || !av2) && list_is_singular(existing)`, else `av1 == av2`.
            Kernel::V6_1 | Kernel::Pre6_0 => ((p_av == NIL || tgt.av == NIL) && l(tgt) == 1) || p_av == tgt.av,
        }
    }

    fn anon_ok(&mut self, tgt: &Vma, p: &Prop) -> bool {
        match self.lz() {
            Some(k) => self.lazy_anon_ok(tgt, p, k),
            None => self.eager_anon_ok(tgt, p),
        }
    }

    /// Merging both sides also needs prev and next compatible with each other.
    fn pair_ok(&self, prev: &Vma, next: &Vma) -> bool {
        if self.lz().is_some() {
            return self.lazy_pair_ok(prev, next);
        }
        prev.av == NIL || next.av == NIL || prev.av == next.av
    }

    /// L8, and every LAZY VMA joining the merge is marked merged (the survivor takes the
    /// marks of those it absorbs). `copy`: copy_vma's source, marked in place.
    fn note_merge(&mut self, mm: &mut Mm, at: &[Option<usize>], copy: Option<&mut Vma>) {
        let lazy = |v: &Vma| v.state() == State::Lazy;
        let copy = copy.filter(|c| lazy(c));
        if copy.is_none() && !at.iter().flatten().any(|&i| lazy(&mm.vmas[i])) {
            return;
        }
        self.fire(crate::lazy::Rule::L8);
        for &i in at.iter().flatten() {
            if lazy(&mm.vmas[i]) {
                mm.vmas[i].add_hist(MERGED);
            }
        }
        if let Some(c) = copy {
            c.add_hist(MERGED);
        }
    }

    /// Place `[s, e)` (free) with `flags`: expand a neighbour when allowed
    /// (`vma_merge_new_range`), else a new VMA. `copy` is copy_vma's source (mremap).
    /// Returns the index of the VMA now covering the range.
    pub fn map_new(&mut self, mm: &mut Mm, s: u64, e: u64, pgoff: u64, flags: u16, mut copy: Option<Vma>) -> usize {
        let i = self.lower_bound(mm, s);
        let pages = (e - s) / PAGE_SIZE;
        let prop = copy.map_or(Prop::New, Prop::Copy);
        let prev = (i > 0 && mm.vmas[i - 1].end() == s).then(|| i - 1);
        let next = (i < mm.vmas.len() && mm.vmas[i].start() == e).then_some(i);
        let prev_fits = |mm: &Mm| {
            prev.is_some_and(|p| {
                let v = &mm.vmas[p];
                v.merge_flags() == flags && v.pgoff() + v.pages() == pgoff
            })
        };
        let next_fits = |mm: &Mm| {
            next.is_some_and(|n| {
                let v = &mm.vmas[n];
                v.merge_flags() == flags && v.pgoff() == pgoff + pages
            })
        };
        if prev_fits(mm) && next_fits(mm) {
            self.upgrade_for_merge(mm, prev.unwrap(), i);
        }
        let can_left = prev_fits(mm) && {
            let pv = mm.vmas[prev.unwrap()];
            self.anon_ok(&pv, &prop)
        };
        let can_right = next_fits(mm) && {
            let nv = mm.vmas[i];
            self.anon_ok(&nv, &prop) && (!can_left || self.pair_ok(&mm.vmas[prev.unwrap()], &nv))
        };
        if can_left || can_right {
            self.note_merge(mm, &[prev.filter(|_| can_left), next.filter(|_| can_right)], copy.as_mut());
        }
        if can_left {
            let p = prev.unwrap();
            mm.vmas[p].set_end(e);
            if let Some(src) = copy {
                self.dup_anon_vma(mm, p, &src);
            }
            if can_right {
                let nv = mm.vmas[i];
                mm.vmas[p].set_end(nv.end());
                self.dup_anon_vma(mm, p, &nv);
                self.remove_merged(mm, p, i);
            }
            return p;
        }
        if can_right {
            mm.vmas[i].set_start(s);
            mm.vmas[i].set_pgoff(pgoff);
            if let Some(src) = copy {
                self.dup_anon_vma(mm, i, &src);
            }
            return i;
        }
        let mut v = Vma::new(s, e, pgoff, flags);
        self.vma.add(1);
        if let Some(src) = copy {
            if src.chain != NIL {
                // vm_area_dup + anon_vma_clone: +L AVC.
                let (chain, av) = self.avs.clone_chain(src.chain, src.av);
                v.chain = chain;
                v.av = av;
            }
            v.add_flags(src.flags() & LAZY_FOLIOS);
            v.add_hist(src.hist());
        }
        mm.vmas.insert(i, v);
        i
    }

    /// Apply `f` to the flags of every VMA part inside `[s, e)` (mprotect, madvise).
    pub fn modify_range(&mut self, mm: &mut Mm, s: u64, e: u64, f: impl Fn(u16) -> u16) {
        let mut addr = s;
        while addr < e {
            let i = self.lower_bound(mm, addr);
            if i >= mm.vmas.len() || mm.vmas[i].start() >= e {
                return;
            }
            let v = mm.vmas[i];
            let (rs, re) = (addr.max(v.start()), e.min(v.end()));
            let nf = f(v.merge_flags());
            if nf != v.merge_flags() {
                self.vma_modify(mm, i, rs, re, nf);
            }
            addr = re;
        }
    }

    /// `vma_modify`: try `vma_merge_existing_range`, else split off the parts outside
    /// `[rs, re)` (spec §1.5, §1.6).
    fn vma_modify(&mut self, mm: &mut Mm, i: usize, rs: u64, re: u64, nf: u16) {
        let v0 = mm.vmas[i];
        let (left_side, right_side) = (rs == v0.start(), re == v0.end());
        let pgoff = v0.pgoff_at(rs);
        let pages = (re - rs) / PAGE_SIZE;
        let prev = (left_side && i > 0 && mm.vmas[i - 1].end() == v0.start()).then(|| i - 1);
        let next = (right_side && i + 1 < mm.vmas.len() && mm.vmas[i + 1].start() == v0.end()).then(|| i + 1);
        let prev_fits = |mm: &Mm| {
            prev.is_some_and(|p| {
                let v = &mm.vmas[p];
                v.merge_flags() == nf && v.pgoff() + v.pages() == pgoff
            })
        };
        let next_fits = |mm: &Mm| {
            next.is_some_and(|n| {
                let v = &mm.vmas[n];
                v.merge_flags() == nf && v.pgoff() == pgoff + pages
            })
        };
        if prev_fits(mm) {
            self.upgrade_for_merge(mm, prev.unwrap(), i);
        }
        if next_fits(mm) {
            self.upgrade_for_merge(mm, i, i + 1);
        }
        if prev_fits(mm) && next_fits(mm) {
            self.upgrade_for_merge(mm, i - 1, i + 1);
        }
        let mid = mm.vmas[i];
        let prop = Prop::Middle(mid);
        let merge_left = prev_fits(mm) && {
            let pv = mm.vmas[i - 1];
            self.anon_ok(&pv, &prop)
        };
        let merge_right = next_fits(mm) && {
            let nv = mm.vmas[i + 1];
            self.anon_ok(&nv, &prop) && (!merge_left || self.pair_ok(&mm.vmas[i - 1], &nv))
        };
        if merge_left || merge_right {
            self.note_merge(mm, &[prev.filter(|_| merge_left), next.filter(|_| merge_right), Some(i)], None);
        }
        let mid = mm.vmas[i];
        if merge_left && merge_right {
            // prev extends over middle and next; dup from whichever has an anon_vma.
            let nv = mm.vmas[i + 1];
            mm.vmas[i - 1].set_end(nv.end());
            self.dup_anon_vma(mm, i - 1, &nv);
            self.dup_anon_vma(mm, i - 1, &mid);
            self.remove_merged(mm, i - 1, i + 1);
            self.remove_merged(mm, i - 1, i);
        } else if merge_left {
            mm.vmas[i - 1].set_end(re);
            self.dup_anon_vma(mm, i - 1, &mid);
            if right_side {
                self.remove_merged(mm, i - 1, i);
            } else {
                mm.vmas[i].set_start(re);
                mm.vmas[i].set_pgoff(mid.pgoff_at(re));
            }
        } else if merge_right {
            if left_side {
                mm.vmas[i + 1].set_start(mid.start());
                mm.vmas[i + 1].set_pgoff(mid.pgoff());
                self.dup_anon_vma(mm, i + 1, &mid);
                self.remove_merged(mm, i + 1, i);
            } else {
                mm.vmas[i + 1].set_start(rs);
                mm.vmas[i + 1].set_pgoff(pgoff);
                self.dup_anon_vma(mm, i + 1, &mid);
                mm.vmas[i].set_end(rs);
            }
        } else {
            let mut j = i;
            if rs > mm.vmas[j].start() {
                self.split(mm, j, rs, true);
                j += 1;
            }
            if re < mm.vmas[j].end() {
                self.split(mm, j, re, false);
            }
            let v = &mut mm.vmas[j];
            v.set_flags(nf | (v.flags() & LAZY_FOLIOS));
        }
    }

    /// mremap growing `mm.vmas[i]` in place to `ne` (the range after it is free). 6.18:
    /// `vma_merge_extend`, a new range whose anon_vma is the VMA's own, merged into it and,
    /// when compatible, into the next VMA as well; 6.1: `vma_adjust` moves its end only.
    pub fn expand(&mut self, mm: &mut Mm, i: usize, ne: u64) {
        let v = mm.vmas[i];
        let oe = v.end();
        match self.kernel {
            Kernel::V6_18 => {
                self.map_new(mm, oe, ne, v.pgoff_at(oe), v.merge_flags(), Some(v));
            }
            Kernel::V6_1 | Kernel::Pre6_0 => mm.vmas[i].set_end(ne),
        }
    }

    /// mremap move (spec §1.7): MREMAP_FIXED unmaps the target, `copy_vma` places the
    /// range there (merge or vm_area_dup + anon_vma_clone), then the source is unmapped,
    /// or with DONTUNMAP the whole old VMA is unlinked and kept.
    /// The copy is `[ns, ne)`, longer than the source when the move also grows it.
    pub fn mremap(&mut self, mm: &mut Mm, os: u64, oe: u64, ns: u64, ne: u64, dontunmap: bool) {
        self.munmap(mm, ns, ne);
        let i = mm.find(os).expect("checked by the caller");
        self.before_mremap(mm, i);
        let v = mm.vmas[i];
        // An unfaulted anon VMA takes the new address as pgoff, to merge more easily.
        let pgoff = if v.state() == State::None { ns / PAGE_SIZE } else { v.pgoff_at(os) };
        let mut src = v;
        src.set_start(os);
        src.set_end(oe);
        src.set_pgoff(v.pgoff_at(os));
        self.map_new(mm, ns, ne, pgoff, v.merge_flags(), Some(src));
        if !dontunmap {
            self.moving = true;
            self.munmap(mm, os, oe);
            self.moving = false;
            return;
        }
        let i = mm.find(os).expect("DONTUNMAP keeps the source");
        let w = mm.vmas[i];
        if w.start() == os && w.end() == oe {
            if w.chain != NIL {
                self.avs.unlink(w.chain, w.av);
            }
            let w = &mut mm.vmas[i];
            w.chain = NIL;
            w.av = NIL;
            w.clear_flags(LAZY_FOLIOS);
            w.set_hist(0);
            w.set_owner(false);
        }
    }
}
