//! Outputs: allocations, frees, live and peak per object kind, and bytes.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub alloc: u64,
    pub free: u64,
    pub live: u64,
    pub peak: u64,
}

impl Counter {
    #[inline]
    pub(crate) fn add(&mut self, n: u64) {
        self.alloc += n;
        self.live += n;
        if self.live > self.peak {
            self.peak = self.live;
        }
    }
    #[inline]
    pub(crate) fn sub(&mut self, n: u64) {
        debug_assert!(self.live >= n, "freeing more than is live");
        self.free += n;
        self.live -= n;
    }
}

/// One counter per object kind the series changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub anon_vma: Counter,
    pub anon_vma_chain: Counter,
    pub vm_area_struct: Counter,
}

/// Allocations and frees between two points (a step, a phase).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub alloc: u64,
    pub free: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Deltas {
    pub anon_vma: Delta,
    pub anon_vma_chain: Delta,
    pub vm_area_struct: Delta,
}

impl Counts {
    pub fn since(&self, before: &Counts) -> Deltas {
        let d = |a: &Counter, b: &Counter| Delta { alloc: a.alloc - b.alloc, free: a.free - b.free };
        Deltas {
            anon_vma: d(&self.anon_vma, &before.anon_vma),
            anon_vma_chain: d(&self.anon_vma_chain, &before.anon_vma_chain),
            vm_area_struct: d(&self.vm_area_struct, &before.vm_area_struct),
        }
    }
}

/// Live and peak bytes per kind, at `sizes::Sizes`' slab slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bytes {
    pub anon_vma: u64,
    pub anon_vma_chain: u64,
    pub vm_area_struct: u64,
    pub peak_anon_vma: u64,
    pub peak_anon_vma_chain: u64,
    pub peak_vm_area_struct: u64,
}

/// Rmap walks by one caller: how many found an anon folio, how many took the root rwsem,
/// and how many a lazy folio answered without any anon_vma lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RmapStat {
    pub walks: u64,
    pub locked: u64,
    pub lock_avoided: u64,
    /// Walks on an address with no anon folio (never faulted): nothing to lock.
    pub no_folio: u64,
}
