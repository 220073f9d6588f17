//! What happened to lazy VMAs before their first share (issue 5, the reviewers' question:
//! does the lazy state survive split, merge, mremap, KSM and THP collapse until fork?).
//!
//! A VMA carries one bit per kind of event it went through while LAZY (`Vma::hist`).
//! The bits are settled once: at its first fork (shared), or when it is torn down or the
//! model ends with it still unshared (never shared). Split pieces inherit the bits and are
//! settled one by one; a merge ORs the bits of the VMAs it joins.

use serde::{Deserialize, Serialize};

/// One bit per event kind, in `Vma::hist`.
pub(crate) mod bit {
    /// The VMA was LAZY at some point (L1, L17, L18).
    pub const SEEN: u8 = 1 << 0;
    pub const SPLIT: u8 = 1 << 1;
    pub const MERGED: u8 = 1 << 2;
    pub const MREMAPPED: u8 = 1 << 3;
    pub const KSM_MERGED: u8 = 1 << 4;
    pub const THP_COLLAPSED: u8 = 1 << 5;
}

/// VMAs with one kind of event in their lazy past, by how their story ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Later forked: the event happened before their first share.
    pub shared: u64,
    /// Torn down (munmap, exit, exec) or still alive without ever being forked.
    pub never_shared: u64,
}

impl Outcome {
    fn add(&mut self, shared: bool, n: u64) {
        if shared {
            self.shared += n
        } else {
            self.never_shared += n
        }
    }
    pub fn total(&self) -> u64 {
        self.shared + self.never_shared
    }
}

/// VMAs settled per combination of history bits: one increment on the model's hot paths
/// (fork, teardown); [`History`] is decoded from it when read.
#[derive(Clone, Debug)]
pub(crate) struct HistoryTally([[u64; 2]; 64]);

impl Default for HistoryTally {
    fn default() -> Self {
        HistoryTally([[0; 2]; 64])
    }
}

impl HistoryTally {
    #[inline]
    pub(crate) fn settle(&mut self, h: u8, shared: bool) {
        self.0[h as usize & 63][shared as usize] += 1;
    }
    pub(crate) fn history(&self) -> History {
        let mut out = History::default();
        for (h, n) in self.0.iter().enumerate() {
            for (shared, &count) in [false, true].into_iter().zip(n) {
                out.settle_n(h as u8, shared, count);
            }
        }
        out
    }
}

/// Lazy-VMA histories: `lazy` counts every VMA that was ever LAZY; the others count the
/// subset that was split, merged, ... while LAZY. Counted per VMA (a split's pieces are
/// separate VMAs from then on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub lazy: Outcome,
    pub split: Outcome,
    pub merged: Outcome,
    pub mremapped: Outcome,
    pub ksm_merged: Outcome,
    pub thp_collapsed: Outcome,
}

impl History {
    /// The rows in a fixed order, for tables and charts.
    pub fn rows(&self) -> [(&'static str, Outcome); 6] {
        [
            ("lazy", self.lazy),
            ("split", self.split),
            ("merged", self.merged),
            ("mremapped", self.mremapped),
            ("ksm_merged", self.ksm_merged),
            ("thp_collapsed", self.thp_collapsed),
        ]
    }

    /// Settle a VMA's history bits `h` (not 0).
    pub(crate) fn settle(&mut self, h: u8, shared: bool) {
        self.settle_n(h, shared, 1);
    }

    fn settle_n(&mut self, h: u8, shared: bool, n: u64) {
        let each = |b: u8, o: &mut Outcome| {
            if h & b != 0 {
                o.add(shared, n)
            }
        };
        each(bit::SEEN, &mut self.lazy);
        each(bit::SPLIT, &mut self.split);
        each(bit::MERGED, &mut self.merged);
        each(bit::MREMAPPED, &mut self.mremapped);
        each(bit::KSM_MERGED, &mut self.ksm_merged);
        each(bit::THP_COLLAPSED, &mut self.thp_collapsed);
    }

    /// Sum (a fleet, or several runs).
    pub fn add(&mut self, o: &History) {
        let add = |a: &mut Outcome, b: &Outcome| {
            a.shared += b.shared;
            a.never_shared += b.never_shared;
        };
        add(&mut self.lazy, &o.lazy);
        add(&mut self.split, &o.split);
        add(&mut self.merged, &o.merged);
        add(&mut self.mremapped, &o.mremapped);
        add(&mut self.ksm_merged, &o.ksm_merged);
        add(&mut self.thp_collapsed, &o.thp_collapsed);
    }
}
