//! `struct vm_area_struct` as the model keeps it, and one mm's VMAs in address order.

use super::anon_vma::NIL;
use crate::event::{vm, PAGE_SIZE};

/// Model-only flag bit: the VMA has folios whose `mapping` points at a VMA (LAZY folios).
pub(crate) const LAZY_FOLIOS: u8 = 1 << 7;

/// 40 bytes: the bench's memory target is per live VMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vma {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    /// `vma->anon_vma_chain` (a chain id, `NIL` when empty).
    pub chain: u32,
    /// `vma->anon_vma` (an AV id, `NIL` when NULL).
    pub av: u32,
    pub flags: u8,
    /// vm_area_structs of merged-away LAZY VMAs kept alive by this VMA's lazy folios
    /// (`K_LAZY_FOLIO_PINS_VMA`, spec §3.2 L8/L10, [S4]).
    pub pins: u16,
    /// Lazy folios' `mapping` points at this struct (the VMA that first faulted; a split
    /// keeps it with the original piece, as `__split_vma` keeps the original struct).
    pub owner: bool,
}

/// The LAZY model's per-VMA state (spec §3.1). Eager VMAs are only NONE or TREE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    None,
    Lazy,
    Tree,
    TreeParent,
}

impl Vma {
    pub fn new(start: u64, end: u64, pgoff: u64, flags: u8) -> Vma {
        Vma { start, end, pgoff, chain: NIL, av: NIL, flags, pins: 0, owner: false }
    }
    #[inline]
    pub fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }
    #[inline]
    pub fn state(&self) -> State {
        if self.av != NIL {
            State::Tree
        } else if self.chain != NIL {
            State::TreeParent
        } else if self.flags & LAZY_FOLIOS != 0 {
            State::Lazy
        } else {
            State::None
        }
    }
    /// Flags that must be equal for a VMA merge (`VM_SOFTDIRTY` is not modelled).
    #[inline]
    pub fn merge_flags(&self) -> u8 {
        self.flags & vm::USER
    }
    #[inline]
    pub fn pgoff_at(&self, addr: u64) -> u64 {
        self.pgoff + (addr - self.start) / PAGE_SIZE
    }
}

#[derive(Default)]
pub(crate) struct Mm {
    /// Sorted by `start`, non-overlapping.
    pub vmas: Vec<Vma>,
}

impl Mm {
    /// Index of the VMA containing `addr`.
    #[inline]
    pub fn find(&self, addr: u64) -> Option<usize> {
        let i = self.vmas.partition_point(|v| v.end <= addr);
        (i < self.vmas.len() && self.vmas[i].start <= addr).then_some(i)
    }
    /// `find`, trying index `near` first: the other model of a `Pair` has just found the
    /// same address there (their layouts rarely differ), and one probe beats a binary
    /// search whose every probe waits on the last.
    #[inline]
    pub fn find_near(&self, addr: u64, near: usize) -> Option<usize> {
        match self.vmas.get(near) {
            Some(v) if v.start <= addr && addr < v.end => Some(near),
            _ => self.find(addr),
        }
    }
    /// Index of the first VMA ending after `addr` (the insertion point for `addr`).
    #[inline]
    pub fn lower_bound(&self, addr: u64) -> usize {
        self.vmas.partition_point(|v| v.end <= addr)
    }
}
