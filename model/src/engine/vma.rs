//! `struct vm_area_struct` as the model keeps it, and one mm's VMAs in address order.

use super::anon_vma::NIL;
use crate::event::{vm, PAGE_SIZE};

/// Model-only flag bit: the VMA has folios whose `mapping` points at a VMA (LAZY folios).
pub(crate) const LAZY_FOLIOS: u16 = 1 << 7;

/// Addresses the model accepts end at or below this (x86-64 with 5-level paging tops out
/// here): page numbers then fit in 45 bits, leaving `pgoff`'s top bits for `pins`.
pub(crate) const ADDR_LIMIT: u64 = 1 << 57;
const PAGE_BITS: u64 = PAGE_SIZE - 1;
const OWNER: u64 = 1 << 8;
const PINS_SHIFT: u32 = 48;
/// Page numbers fit in 45 bits (`ADDR_LIMIT`); `off`'s bits 45-47 hold history.
const PGOFF_MASK: u64 = (1 << crate::event::PGOFF_BITS) - 1;
/// `crate::lazy::history` bits: 0-2 in `lo`'s bits 9-11, 3-5 in `off`'s bits 45-47.
const HIST_LO: u32 = 9;
const HIST_OFF: u32 = 45;

/// 32 bytes (two per cache line): the bench's memory target is per live VMA, and a
/// random process's VMA array is a cold binary search per event. The flags' low byte and
/// `owner` live in `start`'s page-offset bits, their high byte in `end`'s, `pins` in
/// `pgoff`'s top 16 bits (page numbers stay below 2^45, see `ADDR_LIMIT`), the lazy
/// history bits in what is left of `start` and `pgoff`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vma {
    /// Start address | flags (bits 0-7) | `owner` (bit 8). Lazy folios' `mapping` points
    /// at this struct when `owner` (the VMA that first faulted; a split keeps it with the
    /// original piece, as `__split_vma` keeps the original struct).
    lo: u64,
    /// End address | flags' high byte (bits 0-7).
    hi: u64,
    /// `pgoff` | `pins` << 48: vm_area_structs of merged-away LAZY VMAs kept alive by this
    /// VMA's lazy folios (`K_LAZY_FOLIO_PINS_VMA`, spec §3.2 L8/L10, [S4]).
    off: u64,
    /// `vma->anon_vma_chain` (a chain id, `NIL` when empty).
    pub chain: u32,
    /// `vma->anon_vma` (an AV id, `NIL` when NULL).
    pub av: u32,
}

const _: () = assert!(std::mem::size_of::<Vma>() == 32);

/// The LAZY model's per-VMA state (spec §3.1). Eager VMAs are only NONE or TREE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    None,
    Lazy,
    Tree,
    TreeParent,
}

impl Vma {
    pub fn new(start: u64, end: u64, pgoff: u64, flags: u16) -> Vma {
        debug_assert!(start & PAGE_BITS == 0 && end & PAGE_BITS == 0 && end <= ADDR_LIMIT && pgoff <= PGOFF_MASK);
        Vma { lo: start | (flags & 0xff) as u64, hi: end | (flags >> 8) as u64, off: pgoff, chain: NIL, av: NIL }
    }
    #[inline]
    pub fn end(&self) -> u64 {
        self.hi & !PAGE_BITS
    }
    #[inline]
    pub fn set_end(&mut self, end: u64) {
        debug_assert!(end & PAGE_BITS == 0);
        self.hi = end | (self.hi & PAGE_BITS);
    }
    /// `end() <= addr` without unpacking `end` (the binary searches' compare): the flag
    /// bits below a page boundary never reach the next one.
    #[inline]
    pub fn ends_by(&self, addr: u64) -> bool {
        self.hi <= addr | PAGE_BITS
    }
    #[inline]
    pub fn start(&self) -> u64 {
        self.lo & !PAGE_BITS
    }
    #[inline]
    pub fn set_start(&mut self, start: u64) {
        debug_assert!(start & PAGE_BITS == 0);
        self.lo = start | (self.lo & PAGE_BITS);
    }
    #[inline]
    pub fn pgoff(&self) -> u64 {
        self.off & PGOFF_MASK
    }
    #[inline]
    pub fn set_pgoff(&mut self, pgoff: u64) {
        debug_assert!(pgoff <= PGOFF_MASK);
        self.off = pgoff | (self.off & !PGOFF_MASK);
    }
    /// What this VMA went through while LAZY (`crate::lazy::history::bit`).
    #[inline]
    pub fn hist(&self) -> u8 {
        ((self.lo >> HIST_LO) & 7) as u8 | (((self.off >> HIST_OFF) & 7) as u8) << 3
    }
    /// `hist() != 0`, from one bit (teardown and fork test every VMA): every other bit is
    /// set only on a VMA that has been LAZY, which set `SEEN` (bit 0, in `lo`) first.
    #[inline]
    pub fn has_hist(&self) -> bool {
        debug_assert!(self.hist() == 0 || self.hist() & 1 != 0, "history without SEEN: {:#x}", self.hist());
        self.lo & 1 << HIST_LO != 0
    }
    #[inline]
    pub fn set_hist(&mut self, h: u8) {
        self.lo = (self.lo & !(7 << HIST_LO)) | ((h & 7) as u64) << HIST_LO;
        self.off = (self.off & !(7 << HIST_OFF)) | ((h >> 3 & 7) as u64) << HIST_OFF;
    }
    #[inline]
    pub fn add_hist(&mut self, h: u8) {
        if h != 0 {
            self.set_hist(self.hist() | h);
        }
    }
    #[inline]
    pub fn flags(&self) -> u16 {
        (self.lo & 0xff) as u16 | ((self.hi & 0xff) as u16) << 8
    }
    #[inline]
    pub fn set_flags(&mut self, flags: u16) {
        self.lo = (self.lo & !0xff) | (flags & 0xff) as u64;
        self.hi = (self.hi & !0xff) | (flags >> 8) as u64;
    }
    #[inline]
    pub fn add_flags(&mut self, flags: u16) {
        self.lo |= (flags & 0xff) as u64;
        self.hi |= (flags >> 8) as u64;
    }
    #[inline]
    pub fn clear_flags(&mut self, flags: u16) {
        self.lo &= !((flags & 0xff) as u64);
        self.hi &= !((flags >> 8) as u64);
    }
    #[inline]
    pub fn owner(&self) -> bool {
        self.lo & OWNER != 0
    }
    #[inline]
    pub fn set_owner(&mut self, owner: bool) {
        self.lo = (self.lo & !OWNER) | if owner { OWNER } else { 0 };
    }
    #[inline]
    pub fn pins(&self) -> u16 {
        (self.off >> PINS_SHIFT) as u16
    }
    #[inline]
    pub fn set_pins(&mut self, pins: u16) {
        self.off = (self.off & ((1 << PINS_SHIFT) - 1)) | (pins as u64) << PINS_SHIFT;
    }
    pub fn take_pins(&mut self) -> u16 {
        let p = self.pins();
        self.set_pins(0);
        p
    }
    #[inline]
    pub fn pages(&self) -> u64 {
        (self.end() - self.start()) / PAGE_SIZE
    }
    #[inline]
    pub fn state(&self) -> State {
        if self.av != NIL {
            State::Tree
        } else if self.chain != NIL {
            State::TreeParent
        } else if self.flags() & LAZY_FOLIOS != 0 {
            State::Lazy
        } else {
            State::None
        }
    }
    /// Flags that must be equal for a VMA merge (`VM_SOFTDIRTY` is not modelled).
    #[inline]
    pub fn merge_flags(&self) -> u16 {
        self.flags() & vm::USER
    }
    #[inline]
    pub fn pgoff_at(&self, addr: u64) -> u64 {
        self.pgoff() + (addr - self.start()) / PAGE_SIZE
    }
}

#[derive(Default)]
pub(crate) struct Mm {
    /// Sorted by `start`, non-overlapping.
    pub vmas: Vec<Vma>,
}

impl Mm {
    /// Load the VMAs at each eighth of the array and drop them, before an event searches
    /// it: a binary search's first three probes (one of these seven lines each) wait on
    /// each other, and a random process's array is cold; loaded together, their misses
    /// overlap. Measured: +4-6 % on the bench's uniform replay; touching every line, or
    /// lazy's array too, was slower (more lines than the search needs).
    #[inline]
    pub fn touch(&self) {
        let (v, n) = (&self.vmas, self.vmas.len());
        if n >= 16 {
            let at = |k: usize| v[k * n / 8].hi;
            std::hint::black_box((at(1), at(2), at(3), at(4), at(5), at(6), at(7)));
        }
    }
    /// Index of the VMA containing `addr`.
    #[inline]
    pub fn find(&self, addr: u64) -> Option<usize> {
        let i = self.lower_bound(addr);
        (i < self.vmas.len() && self.vmas[i].start() <= addr).then_some(i)
    }
    /// `find`, trying index `near` first: the other model of a `Pair` has just found the
    /// same address there (their layouts rarely differ), and one probe beats a binary
    /// search whose every probe waits on the last.
    #[inline]
    pub fn find_near(&self, addr: u64, near: usize) -> Option<usize> {
        match self.vmas.get(near) {
            Some(v) if v.start() <= addr && addr < v.end() => Some(near),
            _ => self.find(addr),
        }
    }
    /// Is `i` what `lower_bound(addr)` returns?
    #[inline]
    pub fn is_lower_bound(&self, addr: u64, i: usize) -> bool {
        i <= self.vmas.len() && (i == 0 || self.vmas[i - 1].ends_by(addr)) && self.vmas.get(i).is_none_or(|v| !v.ends_by(addr))
    }
    /// Index of the first VMA ending after `addr` (the insertion point for `addr`).
    #[inline]
    pub fn lower_bound(&self, addr: u64) -> usize {
        self.vmas.partition_point(|v| v.ends_by(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_is_taken_only_where_the_search_would_land() {
        for n in 0..6u64 {
            let mm = Mm { vmas: (0..n).map(|i| Vma::new((2 * i + 1) * PAGE_SIZE, (2 * i + 2) * PAGE_SIZE, 0, 0)).collect() };
            for a in 0..(2 * n + 3) * 2 {
                let addr = a * PAGE_SIZE / 2;
                for v in &mm.vmas {
                    for f in [0, vm::READ, vm::USER | LAZY_FOLIOS] {
                        let mut w = *v;
                        w.set_flags(f);
                        assert_eq!(w.ends_by(addr), w.end() <= addr, "end {:#x} flags {f:#x} addr {addr:#x}", w.end());
                    }
                }
                for i in 0..n as usize + 3 {
                    assert_eq!(mm.is_lower_bound(addr, i), i == mm.lower_bound(addr), "n {n} addr {addr:#x} i {i}");
                }
            }
        }
    }

    #[test]
    fn packed_fields_round_trip_at_their_limits() {
        let top = ADDR_LIMIT - PAGE_SIZE;
        let mut v = Vma::new(top, ADDR_LIMIT, top / PAGE_SIZE, vm::USER | LAZY_FOLIOS);
        v.set_owner(true);
        v.set_pins(u16::MAX);
        assert_eq!((v.start(), v.end(), v.pgoff(), v.flags(), v.owner(), v.pins()), (top, ADDR_LIMIT, top / PAGE_SIZE, 0x7fff, true, u16::MAX));
        v.set_end(ADDR_LIMIT - PAGE_SIZE);
        v.set_end(ADDR_LIMIT);
        assert_eq!((v.end(), v.flags()), (ADDR_LIMIT, 0x7fff));
        v.set_start(PAGE_SIZE);
        v.set_pgoff(7);
        v.clear_flags(LAZY_FOLIOS);
        assert_eq!((v.start(), v.pgoff(), v.flags(), v.owner(), v.take_pins(), v.pins()), (PAGE_SIZE, 7, vm::USER, true, u16::MAX, 0));
        v.set_owner(false);
        assert_eq!((v.start(), v.flags(), v.owner()), (PAGE_SIZE, vm::USER, false));
    }

    #[test]
    fn history_bits_leave_the_other_fields_alone() {
        let top = ADDR_LIMIT - PAGE_SIZE;
        let mut v = Vma::new(top, ADDR_LIMIT, PGOFF_MASK, vm::USER | LAZY_FOLIOS);
        v.set_owner(true);
        v.set_pins(u16::MAX);
        for h in [0x3f, 0x2a, 0x15, 0] {
            v.set_hist(h);
            assert_eq!((v.start(), v.end(), v.pgoff(), v.flags(), v.owner(), v.pins(), v.hist()), (top, ADDR_LIMIT, PGOFF_MASK, 0x7fff, true, u16::MAX, h));
        }
        v.set_hist(0x3f);
        v.set_pgoff(1);
        v.set_pins(2);
        v.set_start(PAGE_SIZE);
        v.set_flags(0);
        v.set_owner(false);
        assert_eq!((v.pgoff(), v.pins(), v.start(), v.flags(), v.hist()), (1, 2, PAGE_SIZE, 0, 0x3f));
    }
}
